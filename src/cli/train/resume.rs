//! `curvature train --resume FILE`: the run rebuilt from the arguments stored
//! in the checkpoint (only --epochs, --quiet and --checkpoint-every may be
//! given beside it; clap refuses the others), checked against the saved
//! network, optimizer spec and config, then continued.

use super::args::{reparse, TrainArgs};
use super::execute::execute;
use super::outputs::Outputs;
use super::prepare::{prepare, Prepared};
use curvature::checkpoint::{load_checkpoint, Checkpoint};
use curvature::files::FileError;
use curvature::train::TrainConfig;
use curvature::{Error, Result};
use std::path::{Path, PathBuf};

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
    let original = stored_args(args, &checkpoint).map_err(bad)?;
    let prepared = prepare(&original)?;
    check_same_run(&prepared, &checkpoint).map_err(bad)?;
    let outputs = stored_outputs(&checkpoint).map_err(bad)?;
    if !original.force {
        for p in [&outputs.model, &outputs.history, &outputs.plot] {
            if p.exists() {
                return Err(bad(format!(
                    "{} exists already: the run seems to have finished; nothing was changed",
                    p.display()
                )));
            }
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

/// The run's arguments as stored in the checkpoint (`run.args`), with
/// --epochs, --quiet and --checkpoint-every taken from this command line.
fn stored_args(args: &TrainArgs, checkpoint: &Checkpoint) -> Result<TrainArgs, String> {
    let stored = checkpoint
        .run
        .get("args")
        .ok_or("the checkpoint lacks the train arguments (`run.args`)")?;
    let argv: Vec<String> = serde_json::from_str(stored)
        .map_err(|e| format!("the stored train arguments are not a JSON list: {e}"))?;
    let mut original = reparse(&argv).map_err(|e| {
        format!(
            "the stored train arguments do not parse: {}",
            e.to_string().trim()
        )
    })?;
    if let Some(epochs) = args.epochs {
        original.epochs = Some(epochs);
    }
    original.quiet = args.quiet;
    original.checkpoint_every = args.checkpoint_every;
    Ok(original)
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

/// The output paths stored in the checkpoint (`run.model`, …).
fn stored_outputs(checkpoint: &Checkpoint) -> Result<Outputs, String> {
    let path_of = |key: &str| {
        checkpoint
            .run
            .get(key)
            .map(PathBuf::from)
            .ok_or_else(|| format!("the checkpoint lacks its output path `run.{key}`"))
    };
    Ok(Outputs {
        model: path_of("model")?,
        history: path_of("history")?,
        plot: path_of("plot")?,
        checkpoint: path_of("checkpoint")?,
    })
}
