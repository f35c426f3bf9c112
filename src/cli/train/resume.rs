//! `curvature train --resume FILE`: the run rebuilt from the arguments stored
//! in the checkpoint (only --data, --epochs, --quiet and --checkpoint-every may
//! be given beside it; clap refuses the others), checked against the saved
//! network, optimizer spec and config, then continued.
//!
//! Trust model: a checkpoint is data, not instructions. One from elsewhere can
//! at worst fail to load. It restores only training hyperparameters
//! ([`STORED_KEYS`]); its outputs are plain file names resolved in the
//! checkpoint's own directory (so a moved run directory resumes where it now
//! is), never replacing a file that exists; it reads no file but a bundled data
//! set or the data file the user names again with `--data`; and the only file a
//! finished resume deletes is the checkpoint it resumed.

use super::args::{recorded_data, reparse, TrainArgs, STORED_KEYS};
use super::execute::execute;
use super::outputs::Outputs;
use super::prepare::{prepare, Prepared};
use curvature::checkpoint::{load_checkpoint, Checkpoint};
use curvature::data::DATASET_NAMES;
use curvature::files::FileError;
use curvature::train::TrainConfig;
use curvature::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Loads the checkpoint, rebuilds and checks the run, and continues it.
pub(super) fn resume(args: &TrainArgs, file: &Path) -> Result<Option<u8>> {
    let checkpoint = load_checkpoint(file)?;
    let bad = |reason: String| -> Error {
        FileError::Invalid {
            path: file.into(),
            reason,
        }
        .into()
    };
    // The outputs first: a checkpoint that names files outside its directory
    // is refused before any data is read.
    let outputs = stored_outputs(file, &checkpoint).map_err(bad)?;
    let original = stored_args(args, &checkpoint).map_err(bad)?;
    let prepared = prepare(&original)?;
    check_same_run(&prepared, &checkpoint).map_err(bad)?;
    for p in [&outputs.model, &outputs.history, &outputs.plot] {
        if p.symlink_metadata().is_ok() {
            return Err(bad(format!(
                "{} exists already: the run seems to have finished (remove it to resume); \
                 nothing was changed",
                p.display()
            )));
        }
    }
    let original = prepared.args.clone();
    execute(
        &original,
        prepared,
        outputs,
        Some((file.to_path_buf(), checkpoint)),
    )
}

/// The run's arguments as stored in the checkpoint (`run.args`): only the keys
/// of [`STORED_KEYS`], the data confirmed by this command line's `--data`
/// where it is a file, and --epochs, --quiet and --checkpoint-every from this
/// command line. The result never has --force or an output path.
fn stored_args(args: &TrainArgs, checkpoint: &Checkpoint) -> Result<TrainArgs, String> {
    let stored = checkpoint
        .run
        .get("args")
        .ok_or("the checkpoint lacks the train arguments (`run.args`)")?;
    let argv: Vec<String> = serde_json::from_str(stored)
        .map_err(|e| format!("the stored train arguments are not a JSON list: {e}"))?;
    for word in &argv {
        let key = word
            .strip_prefix("--")
            .map(|w| w.split_once('=').map_or(w, |(k, _)| k));
        if !key.is_some_and(|k| STORED_KEYS.contains(&k) && word.contains('=')) {
            return Err(format!(
                "the stored train arguments hold `{word}`, which a checkpoint may not set \
                 (only training hyperparameters are restored); nothing was changed"
            ));
        }
    }
    let mut original = reparse(&argv).map_err(|e| {
        format!(
            "the stored train arguments do not parse: {}",
            e.to_string().trim()
        )
    })?;
    original.data = Some(confirmed_data(
        original.data.as_deref(),
        args.data.as_deref(),
    )?);
    if let Some(epochs) = args.epochs {
        original.epochs = Some(epochs);
    }
    original.quiet = args.quiet;
    original.checkpoint_every = args.checkpoint_every;
    // Belt and braces: the key check above already refuses these.
    original.force = false;
    original.out = None;
    original.run_dir = None;
    original.plot = None;
    original.resume = None;
    Ok(original)
}

/// The data to resume on: a bundled data set by its recorded name, or the
/// recorded file when this command line's `--data` names the same one.
fn confirmed_data(recorded: Option<&str>, given: Option<&str>) -> Result<String, String> {
    let recorded = recorded.ok_or("the stored train arguments lack the data (`--data`)")?;
    match given {
        None if DATASET_NAMES.contains(&recorded) => Ok(recorded.to_string()),
        None => Err(format!(
            "the run was trained on the file {recorded}: give `--data {recorded}` with --resume \
             to confirm it (a checkpoint never chooses a file to read)"
        )),
        Some(given) if recorded_data(given) == recorded || same_files(given, recorded) => {
            Ok(given.to_string())
        }
        Some(given) => Err(format!(
            "--data {given} is not the data this run was trained on ({recorded}); nothing was changed"
        )),
    }
}

/// Whether two data specs (`PATH` or `IMAGES,LABELS`) name the same files
/// (through links and `..`).
fn same_files(a: &str, b: &str) -> bool {
    let canonical = |spec: &str| -> Option<Vec<PathBuf>> {
        spec.split(',')
            .map(|p| std::fs::canonicalize(p).ok())
            .collect()
    };
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// The network, the optimizer spec and the config (all but the epochs, which
/// a resume may extend) that the stored arguments give must be the checkpoint's.
fn check_same_run(prepared: &Prepared, checkpoint: &Checkpoint) -> Result<(), String> {
    if prepared.mlp != checkpoint.mlp {
        return Err(format!(
            "the stored arguments give the network {}, the checkpoint holds {}",
            prepared.mlp.describe(),
            checkpoint.mlp.describe()
        ));
    }
    if prepared.spec != checkpoint.optimizer_spec {
        return Err(format!(
            "the stored arguments give the optimizer {:?}, the checkpoint was made with {:?}",
            prepared.spec, checkpoint.optimizer_spec
        ));
    }
    let same_but_epochs = TrainConfig {
        epochs: checkpoint.config.epochs,
        ..prepared.config.clone()
    };
    if same_but_epochs != checkpoint.config {
        return Err(format!(
            "the stored arguments give the training config {:?}, the checkpoint holds {:?}",
            prepared.config, checkpoint.config
        ));
    }
    Ok(())
}

/// The outputs of the resumed run: the stored file names (`run.model`,
/// `run.history`, `run.plot`) in the directory of the checkpoint `file`, which
/// is itself the checkpoint the run goes on writing (and deletes when it
/// finishes). A stored name that is absolute, has a folder or `..` in it, or
/// does not end as its kind of file must, is refused.
fn stored_outputs(file: &Path, checkpoint: &Checkpoint) -> Result<Outputs, String> {
    let dir = file.parent().unwrap_or(Path::new(""));
    let path_of = |key: &str, endings: &[&str]| -> Result<PathBuf, String> {
        let name = checkpoint
            .run
            .get(key)
            .ok_or_else(|| format!("the checkpoint lacks its output name `run.{key}`"))?;
        let plain = {
            let mut parts = Path::new(name).components();
            matches!(
                (parts.next(), parts.next()),
                (Some(Component::Normal(_)), None)
            )
        };
        if !plain || name.contains(['/', '\\']) {
            return Err(format!(
                "the checkpoint's output `run.{key}` = `{name}` is not a plain file name; a \
                 checkpoint writes only beside itself (one from an older curvature stored \
                 absolute paths: start that run again); nothing was changed"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if !endings.iter().any(|e| lower.ends_with(e)) {
            return Err(format!(
                "the checkpoint's output `run.{key}` = `{name}` does not end in {}; nothing was changed",
                endings.join(" or ")
            ));
        }
        Ok(dir.join(name))
    };
    let outputs = Outputs {
        model: path_of("model", &[".safetensors"])?,
        history: path_of("history", &[".json"])?,
        plot: path_of("plot", &[".png", ".svg"])?,
        checkpoint: file.to_path_buf(),
    };
    if outputs.model == outputs.checkpoint {
        return Err("the checkpoint names itself as the model to write".into());
    }
    Ok(outputs)
}
