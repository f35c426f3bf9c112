//! Checkpoint files: everything an interrupted training run needs to continue
//! bit-identically, in one safetensors file written atomically (a temporary
//! file, then a rename: never half a file).
//!
//! Tensors, all f64 (so θ comes back with the same bits, unlike a model file's f32):
//! - `theta` (W): the parameters now; `best_theta` (W): at the best epoch so far;
//! - `optimizer.<key>`: the optimizer's state tensors ([`OptimizerState`]).
//!
//! Header metadata, all strings:
//! - `format` = `curvature-checkpoint`, `version` = `3`;
//! - `sizes`, `activations`, `loss`, `l2`: the network, as in a model file;
//! - `optimizer` (its name), `optimizer_spec` (its spec in the stored form of
//!   [`OptimizerSpec::to_stored`], `optimizer=NAME,key=value,…`, parsed back and
//!   compared on resume), `optimizer_scalars` (JSON);
//! - `config` (the [`TrainConfig`]), `scheduler` (the [`TrainState`] position,
//!   counters and best value), `history` (the [`History`] so far): JSON;
//! - `run.<key>`: the caller's own entries (the CLI stores its train arguments
//!   and output paths there).
//!
//! Every f64 in the JSON is a string in Rust's shortest round-trip form
//! (`0.1`, `NaN`, `inf`) and is parsed back with `str::parse`, which rounds
//! correctly: no value changes by a bit through the file. `parts.rs` writes
//! and reads each part (the writer beside the reader), `reader.rs` reads
//! typed fields naming the file and key on any error.
//!
//! Version 1 stored the optimizer spec as its `Debug` text, version 2 had no λ
//! in the scheduler's state (`--l2 evidence` changes it); this build reads
//! version 3 only, and says so in one line for any other.

mod parts;
mod reader;

use crate::files::{self, FileError, Overwrite, MODEL_FORMAT};
use crate::model::Mlp;
use crate::optim::state::OptimizerState;
use crate::optim::OptimizerSpec;
use crate::train::{TrainConfig, TrainState};
use reader::Reader;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The value of the `format` metadata key.
pub const CHECKPOINT_FORMAT: &str = "curvature-checkpoint";
/// The version this build writes and the only one it reads (2: the optimizer
/// spec in its `key=value` stored form; 3: λ and β/β₀ in the scheduler's state
/// and λ per epoch record, for `--l2 evidence`).
pub const CHECKPOINT_VERSION: u32 = 3;

/// An interrupted run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub mlp: Mlp,
    /// θ (W) when the run stopped.
    pub theta: Vec<f64>,
    pub config: TrainConfig,
    /// The optimizer's spec (stored in its `key=value` form): the resumed
    /// run's must be the same.
    pub optimizer_spec: OptimizerSpec,
    pub optimizer: OptimizerState,
    /// The scheduler's position, History and best θ.
    pub state: TrainState,
    /// The caller's entries (stored as `run.<key>`).
    pub run: BTreeMap<String, String>,
}

/// Serialises a checkpoint's metadata and tensors and writes them atomically,
/// replacing an older checkpoint at `path`. A non-finite θ or state tensor is
/// refused (the file would not load, and no NaN is ever saved), and so is an
/// optimizer spec without a faithful stored form.
pub fn save_checkpoint(path: &Path, c: &Checkpoint) -> Result<(), FileError> {
    let invalid = |reason: String| FileError::Invalid {
        path: path.into(),
        reason,
    };
    let w = c.mlp.num_params();
    let tensors =
        parts::write_tensors(w, &c.theta, &c.state.best_theta, &c.optimizer).map_err(invalid)?;
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), CHECKPOINT_FORMAT.into());
    meta.insert("version".into(), CHECKPOINT_VERSION.to_string());
    parts::write_network(&c.mlp, &mut meta);
    parts::write_optimizer(&c.optimizer_spec, &c.optimizer, &mut meta).map_err(invalid)?;
    meta.insert("config".into(), parts::config_json(&c.config).to_string());
    meta.insert(
        "scheduler".into(),
        parts::scheduler_json(&c.state).to_string(),
    );
    meta.insert(
        "history".into(),
        parts::history_json(&c.state.history).to_string(),
    );
    for (k, v) in &c.run {
        meta.insert(format!("run.{k}"), v.clone());
    }
    files::write_tensors(path, &tensors, meta, false, Overwrite::Allow)
}

/// Reads a checkpoint. A file that is not one — garbage, a model file, a
/// checkpoint of another version, or one whose parts disagree — is an error
/// naming the file and what is wrong.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, FileError> {
    let (tensors, meta) = files::read_tensors(path)?;
    let r = Reader { path, meta: &meta };
    check_format(&r)?;
    let mlp = parts::read_network(&r)?;
    let tensors = parts::read_tensors(&r, tensors, mlp.num_params())?;
    let (optimizer, optimizer_spec) = parts::read_optimizer(&r, tensors.optimizer)?;
    let config = parts::read_config(&r)?;
    let state = parts::read_state(&r, tensors.best_theta)?;
    let run = meta
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("run.").map(|k| (k.to_string(), v.clone())))
        .collect();
    Ok(Checkpoint {
        mlp,
        theta: tensors.theta,
        config,
        optimizer_spec,
        optimizer,
        state,
        run,
    })
}

/// The `format` and `version` a checkpoint of this build has.
fn check_format(r: &Reader) -> Result<(), FileError> {
    match r.meta.get("format").map(String::as_str) {
        Some(CHECKPOINT_FORMAT) => {}
        Some(MODEL_FORMAT) => {
            return Err(r.bad(
                "this is a curvature model file, not a checkpoint: give --resume the \
                 checkpoint.safetensors an interrupted `curvature train` wrote"
                    .into(),
            ))
        }
        Some(other) => {
            return Err(r.bad(format!(
                "not a curvature checkpoint (metadata `format` is `{other}`, expected `{CHECKPOINT_FORMAT}`)"
            )))
        }
        None => {
            return Err(r.bad(format!(
                "not a curvature checkpoint (no metadata `format` = `{CHECKPOINT_FORMAT}`)"
            )))
        }
    }
    let version: u32 = r
        .meta
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| r.bad("checkpoint metadata `version` is missing or not a number".into()))?;
    if version > CHECKPOINT_VERSION {
        return Err(r.bad(format!(
            "checkpoint version {version} was written by a newer curvature; this build reads up to version {CHECKPOINT_VERSION}"
        )));
    }
    if version < CHECKPOINT_VERSION {
        return Err(r.bad(format!(
            "checkpoint version {version} was written by an older curvature, which stored the \
             run differently; this build reads version {CHECKPOINT_VERSION} only: start the run again"
        )));
    }
    Ok(())
}
