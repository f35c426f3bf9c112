//! Checkpoint files: everything an interrupted training run needs to continue
//! bit-identically, in one safetensors file written atomically (a temporary
//! file, then a rename: never half a file).
//!
//! Tensors, all f64 (so θ comes back with the same bits, unlike a model file's f32):
//! - `theta` (W): the parameters now; `best_theta` (W): at the best epoch so far;
//! - `optimizer.<key>`: the optimizer's state tensors ([`OptimizerState`]).
//!
//! Header metadata, all strings:
//! - `format` = `curvature-checkpoint`, `version` = `2`;
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
//! correctly: no value changes by a bit through the file.
//!
//! Version 1 stored the optimizer spec as its `Debug` text; this build reads
//! version 2 only, and says so in one line for any other.

use crate::activation::Activation;
use crate::files::{read_tensors, write_tensors, FileError, NamedTensor, Overwrite, MODEL_FORMAT};
use crate::loss::Loss;
use crate::model::Mlp;
use crate::optim::state::{OptimizerState, StateTensor};
use crate::optim::OptimizerSpec;
use crate::train::{EpochRecord, History, StopReason, TrainConfig, TrainState};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The value of the `format` metadata key.
pub const CHECKPOINT_FORMAT: &str = "curvature-checkpoint";
/// The version this build writes and the only one it reads (2: the optimizer
/// spec in its `key=value` stored form).
pub const CHECKPOINT_VERSION: u32 = 2;

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

fn num(v: f64) -> Value {
    Value::String(v.to_string())
}

fn opt_num(v: Option<f64>) -> Value {
    v.map_or(Value::Null, num)
}

fn stop_text(stop: &StopReason) -> String {
    match stop {
        StopReason::Completed => "completed".into(),
        StopReason::EarlyStopping { best_epoch } => format!("early_stopping:{best_epoch}"),
        StopReason::Callback => "callback".into(),
        StopReason::Diverged => "diverged".into(),
    }
}

fn history_json(h: &History) -> Value {
    let records: Vec<Value> = h
        .records
        .iter()
        .map(|r| {
            json!({
                "epoch": r.epoch,
                "train_loss": num(r.train_loss),
                "train_accuracy": opt_num(r.train_accuracy),
                "val_loss": opt_num(r.val_loss),
                "val_accuracy": opt_num(r.val_accuracy),
                "seconds": num(r.seconds),
                "updates": r.updates,
                "rejected": r.rejected,
            })
        })
        .collect();
    json!({
        "optimizer": h.optimizer,
        "updates": h.updates,
        "rejected": h.rejected,
        "stop": stop_text(&h.stop),
        "records": records,
    })
}

/// Serialises a checkpoint's metadata and tensors and writes them atomically,
/// replacing an older checkpoint at `path`. A non-finite θ or state tensor is
/// refused (the file would not load, and no NaN is ever saved).
pub fn save_checkpoint(path: &Path, c: &Checkpoint) -> Result<(), FileError> {
    let invalid = |reason: String| FileError::Invalid {
        path: path.into(),
        reason,
    };
    let w = c.mlp.num_params();
    if c.theta.len() != w || c.state.best_theta.len() != w {
        return Err(invalid(format!(
            "θ has {} entries and the best θ {}, the network {w}",
            c.theta.len(),
            c.state.best_theta.len()
        )));
    }
    let mut tensors = vec![
        NamedTensor {
            name: "theta".into(),
            shape: vec![w],
            data: c.theta.clone(),
        },
        NamedTensor {
            name: "best_theta".into(),
            shape: vec![w],
            data: c.state.best_theta.clone(),
        },
    ];
    for (key, t) in &c.optimizer.tensors {
        tensors.push(NamedTensor {
            name: format!("optimizer.{key}"),
            shape: t.shape.clone(),
            data: t.data.clone(),
        });
    }
    for t in &tensors {
        if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
            return Err(invalid(format!(
                "refusing to write a checkpoint whose `{}` has a non-finite entry at {i} ({})",
                t.name, t.data[i]
            )));
        }
    }
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), CHECKPOINT_FORMAT.into());
    meta.insert("version".into(), CHECKPOINT_VERSION.to_string());
    let join = |v: Vec<String>| v.join(",");
    meta.insert(
        "sizes".into(),
        join(c.mlp.sizes().iter().map(|s| s.to_string()).collect()),
    );
    meta.insert(
        "activations".into(),
        join(
            c.mlp
                .activations()
                .iter()
                .map(|a| a.name().to_string())
                .collect(),
        ),
    );
    meta.insert("loss".into(), c.mlp.loss().name().into());
    meta.insert("l2".into(), c.mlp.l2().to_string());
    meta.insert("optimizer".into(), c.optimizer.optimizer.clone());
    let spec = c
        .optimizer_spec
        .to_stored()
        .map_err(|e| invalid(e.to_string()))?;
    meta.insert("optimizer_spec".into(), spec);
    let scalars: Map<String, Value> = c
        .optimizer
        .scalars
        .iter()
        .map(|(k, v)| (k.clone(), num(*v)))
        .collect();
    meta.insert(
        "optimizer_scalars".into(),
        Value::Object(scalars).to_string(),
    );
    let cfg = &c.config;
    meta.insert(
        "config".into(),
        json!({
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "shuffle_seed": cfg.shuffle_seed,
            "patience": cfg.patience,
            "min_delta": num(cfg.min_delta),
            "restore_best": cfg.restore_best,
            "max_failures": cfg.max_failures,
        })
        .to_string(),
    );
    let s = &c.state;
    meta.insert(
        "scheduler".into(),
        json!({
            "epoch": s.epoch,
            "next_row": s.next_row,
            "epoch_updates": s.epoch_updates,
            "epoch_rejected": s.epoch_rejected,
            "best_value": num(s.best_value),
            "best_epoch": s.best_epoch,
            "shuffle_seed": s.shuffle_seed,
            "train_rows": s.train_rows,
            "batch_size": s.batch_size,
            "elapsed_seconds": num(s.elapsed_seconds),
            "failures_in_a_row": s.failures_in_a_row,
        })
        .to_string(),
    );
    meta.insert("history".into(), history_json(&s.history).to_string());
    for (k, v) in &c.run {
        meta.insert(format!("run.{k}"), v.clone());
    }
    write_tensors(path, &tensors, meta, false, Overwrite::Allow)
}

/// Reads JSON values out of the metadata, naming the file and the key on any error.
struct Reader<'p> {
    path: &'p Path,
}

impl Reader<'_> {
    fn bad(&self, reason: String) -> FileError {
        FileError::Invalid {
            path: self.path.into(),
            reason,
        }
    }
    fn json(&self, meta: &HashMap<String, String>, key: &str) -> Result<Value, FileError> {
        let text = meta
            .get(key)
            .ok_or_else(|| self.bad(format!("checkpoint metadata `{key}` is missing")))?;
        serde_json::from_str(text)
            .map_err(|e| self.bad(format!("checkpoint metadata `{key}` is not JSON: {e}")))
    }
    fn field<'v>(&self, v: &'v Value, key: &str, within: &str) -> Result<&'v Value, FileError> {
        v.get(key)
            .ok_or_else(|| self.bad(format!("checkpoint `{within}` lacks `{key}`")))
    }
    fn uint(&self, v: &Value, key: &str, within: &str) -> Result<u64, FileError> {
        self.field(v, key, within)?.as_u64().ok_or_else(|| {
            self.bad(format!(
                "checkpoint `{within}.{key}` is not a whole number ≥ 0"
            ))
        })
    }
    fn usize(&self, v: &Value, key: &str, within: &str) -> Result<usize, FileError> {
        let u = self.uint(v, key, within)?;
        usize::try_from(u)
            .map_err(|_| self.bad(format!("checkpoint `{within}.{key}` = {u} is too large")))
    }
    fn opt_usize(&self, v: &Value, key: &str, within: &str) -> Result<Option<usize>, FileError> {
        match self.field(v, key, within)? {
            Value::Null => Ok(None),
            _ => self.usize(v, key, within).map(Some),
        }
    }
    fn float_of(&self, v: &Value, what: &str) -> Result<f64, FileError> {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| self.bad(format!("checkpoint `{what}` is not a number in a string")))
    }
    fn float(&self, v: &Value, key: &str, within: &str) -> Result<f64, FileError> {
        self.float_of(self.field(v, key, within)?, &format!("{within}.{key}"))
    }
    fn opt_float(&self, v: &Value, key: &str, within: &str) -> Result<Option<f64>, FileError> {
        match self.field(v, key, within)? {
            Value::Null => Ok(None),
            x => self.float_of(x, &format!("{within}.{key}")).map(Some),
        }
    }
    fn string(&self, v: &Value, key: &str, within: &str) -> Result<String, FileError> {
        self.field(v, key, within)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad(format!("checkpoint `{within}.{key}` is not a string")))
    }
    fn boolean(&self, v: &Value, key: &str, within: &str) -> Result<bool, FileError> {
        self.field(v, key, within)?
            .as_bool()
            .ok_or_else(|| self.bad(format!("checkpoint `{within}.{key}` is not true or false")))
    }

    fn stop(&self, text: &str) -> Result<StopReason, FileError> {
        Ok(match text {
            "completed" => StopReason::Completed,
            "callback" => StopReason::Callback,
            "diverged" => StopReason::Diverged,
            other => match other
                .strip_prefix("early_stopping:")
                .and_then(|e| e.parse().ok())
            {
                Some(best_epoch) => StopReason::EarlyStopping { best_epoch },
                None => {
                    return Err(self.bad(format!("checkpoint history stop `{other}` is unknown")))
                }
            },
        })
    }

    fn history(&self, v: &Value) -> Result<History, FileError> {
        let w = "history";
        let records = self
            .field(v, "records", w)?
            .as_array()
            .ok_or_else(|| self.bad("checkpoint `history.records` is not a list".into()))?
            .iter()
            .map(|r| {
                let w = "history.records[]";
                Ok(EpochRecord {
                    epoch: self.usize(r, "epoch", w)?,
                    train_loss: self.float(r, "train_loss", w)?,
                    train_accuracy: self.opt_float(r, "train_accuracy", w)?,
                    val_loss: self.opt_float(r, "val_loss", w)?,
                    val_accuracy: self.opt_float(r, "val_accuracy", w)?,
                    seconds: self.float(r, "seconds", w)?,
                    updates: self.usize(r, "updates", w)?,
                    rejected: self.usize(r, "rejected", w)?,
                })
            })
            .collect::<Result<Vec<_>, FileError>>()?;
        Ok(History {
            optimizer: self.string(v, "optimizer", w)?,
            records,
            updates: self.usize(v, "updates", w)?,
            rejected: self.usize(v, "rejected", w)?,
            stop: self.stop(&self.string(v, "stop", w)?)?,
        })
    }
}

/// Reads a checkpoint. A file that is not one — garbage, a model file, a
/// checkpoint of a newer version, or one whose parts disagree — is an error
/// naming the file and what is wrong.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, FileError> {
    let (tensors, meta) = read_tensors(path)?;
    let r = Reader { path };
    match meta.get("format").map(String::as_str) {
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
    let version: u32 = meta
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
             optimizer differently; this build reads version {CHECKPOINT_VERSION} only: start the run again"
        )));
    }
    let text = |key: &str| {
        meta.get(key)
            .ok_or_else(|| r.bad(format!("checkpoint metadata `{key}` is missing")))
    };
    let sizes: Vec<usize> = text("sizes")?
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| r.bad(format!("checkpoint metadata `sizes`: {e}")))?;
    let activations: Vec<Activation> = text("activations")?
        .split(',')
        .map(|s| s.parse::<Activation>())
        .collect::<Result<_, _>>()
        .map_err(|e| r.bad(format!("checkpoint metadata `activations`: {e}")))?;
    let loss: Loss = text("loss")?
        .parse()
        .map_err(|e| r.bad(format!("checkpoint metadata `loss`: {e}")))?;
    let l2: f64 = text("l2")?
        .parse()
        .map_err(|e| r.bad(format!("checkpoint metadata `l2`: {e}")))?;
    let mlp = Mlp::new(&sizes, &activations, loss, l2)
        .map_err(|e| r.bad(format!("checkpoint metadata: {e}")))?;
    let w = mlp.num_params();

    let mut theta = None;
    let mut best_theta = None;
    let mut opt_tensors = BTreeMap::new();
    for t in tensors {
        match t.name.as_str() {
            "theta" => theta = Some(t),
            "best_theta" => best_theta = Some(t),
            name => match name.strip_prefix("optimizer.") {
                Some(key) => {
                    opt_tensors.insert(
                        key.to_string(),
                        StateTensor {
                            shape: t.shape,
                            data: t.data,
                        },
                    );
                }
                None => return Err(r.bad(format!("unexpected tensor `{name}` in a checkpoint"))),
            },
        }
    }
    let vector = |t: Option<NamedTensor>, name: &str| -> Result<Vec<f64>, FileError> {
        let t = t.ok_or_else(|| r.bad(format!("checkpoint tensor `{name}` is missing")))?;
        if t.shape != [w] {
            return Err(r.bad(format!(
                "checkpoint tensor `{name}` has shape {:?}, the network (W = {w}) needs [{w}]",
                t.shape
            )));
        }
        Ok(t.data)
    };
    let theta = vector(theta, "theta")?;
    let best_theta = vector(best_theta, "best_theta")?;

    let scalars = r.json(&meta, "optimizer_scalars")?;
    let scalars = scalars
        .as_object()
        .ok_or_else(|| r.bad("checkpoint `optimizer_scalars` is not an object".into()))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), r.float_of(v, &format!("optimizer_scalars.{k}"))?)))
        .collect::<Result<BTreeMap<_, _>, FileError>>()?;
    let optimizer = OptimizerState {
        optimizer: text("optimizer")?.clone(),
        tensors: opt_tensors,
        scalars,
    };

    let optimizer_spec = OptimizerSpec::from_stored(text("optimizer_spec")?)
        .map_err(|e| r.bad(format!("checkpoint metadata `optimizer_spec`: {e}")))?;

    let cfg = r.json(&meta, "config")?;
    let config = TrainConfig {
        epochs: r.usize(&cfg, "epochs", "config")?,
        batch_size: r.opt_usize(&cfg, "batch_size", "config")?,
        shuffle_seed: r.uint(&cfg, "shuffle_seed", "config")?,
        patience: r.opt_usize(&cfg, "patience", "config")?,
        min_delta: r.float(&cfg, "min_delta", "config")?,
        restore_best: r.boolean(&cfg, "restore_best", "config")?,
        max_failures: r.usize(&cfg, "max_failures", "config")?,
    };
    let s = r.json(&meta, "scheduler")?;
    let sc = "scheduler";
    let state = TrainState {
        epoch: r.usize(&s, "epoch", sc)?,
        next_row: r.usize(&s, "next_row", sc)?,
        epoch_updates: r.usize(&s, "epoch_updates", sc)?,
        epoch_rejected: r.usize(&s, "epoch_rejected", sc)?,
        history: r.history(&r.json(&meta, "history")?)?,
        best_value: r.float(&s, "best_value", sc)?,
        best_epoch: r.usize(&s, "best_epoch", sc)?,
        best_theta,
        shuffle_seed: r.uint(&s, "shuffle_seed", sc)?,
        train_rows: r.usize(&s, "train_rows", sc)?,
        batch_size: r.usize(&s, "batch_size", sc)?,
        elapsed_seconds: r.float(&s, "elapsed_seconds", sc)?,
        failures_in_a_row: r.usize(&s, "failures_in_a_row", sc)?,
    };
    let run = meta
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("run.").map(|k| (k.to_string(), v.clone())))
        .collect();
    Ok(Checkpoint {
        mlp,
        theta,
        config,
        optimizer_spec,
        optimizer,
        state,
        run,
    })
}
