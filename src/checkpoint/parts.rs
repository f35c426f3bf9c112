//! The parts of a checkpoint, each written beside its reader: the network,
//! the tensors (θ, best θ, the optimizer's), the optimizer (spec, name and
//! scalars), the config, the scheduler's state and the History.
//!
//! Every f64 in the JSON is a string in Rust's shortest round-trip form
//! ([`num`]) and is parsed back with `str::parse`, which rounds correctly.

use super::reader::Reader;
use crate::activation::Activation;
use crate::files::{FileError, NamedTensor};
use crate::loss::Loss;
use crate::model::Mlp;
use crate::optim::state::{OptimizerState, StateTensor};
use crate::optim::OptimizerSpec;
use crate::train::{EpochRecord, History, StopReason, TrainConfig, TrainState};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

type Meta = HashMap<String, String>;

fn num(v: f64) -> Value {
    Value::String(v.to_string())
}

fn opt_num(v: Option<f64>) -> Value {
    v.map_or(Value::Null, num)
}

// ---- the network: `sizes`, `activations`, `loss`, `l2`, as in a model file

pub(super) fn write_network(mlp: &Mlp, meta: &mut Meta) {
    let join = |v: Vec<String>| v.join(",");
    meta.insert(
        "sizes".into(),
        join(mlp.sizes().iter().map(|s| s.to_string()).collect()),
    );
    meta.insert(
        "activations".into(),
        join(
            mlp.activations()
                .iter()
                .map(|a| a.name().to_string())
                .collect(),
        ),
    );
    meta.insert("loss".into(), mlp.loss().name().into());
    meta.insert("l2".into(), mlp.l2().to_string());
}

pub(super) fn read_network(r: &Reader) -> Result<Mlp, FileError> {
    let sizes: Vec<usize> = r
        .text("sizes")?
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| r.bad(format!("checkpoint metadata `sizes`: {e}")))?;
    let activations: Vec<Activation> = r
        .text("activations")?
        .split(',')
        .map(|s| s.parse::<Activation>())
        .collect::<Result<_, _>>()
        .map_err(|e| r.bad(format!("checkpoint metadata `activations`: {e}")))?;
    let loss: Loss = r
        .text("loss")?
        .parse()
        .map_err(|e| r.bad(format!("checkpoint metadata `loss`: {e}")))?;
    let l2: f64 = r
        .text("l2")?
        .parse()
        .map_err(|e| r.bad(format!("checkpoint metadata `l2`: {e}")))?;
    Mlp::new(&sizes, &activations, loss, l2).map_err(|e| r.bad(format!("checkpoint metadata: {e}")))
}

// ---- the tensors: `theta` (W), `best_theta` (W), `optimizer.<key>`

/// The tensors of a checkpoint, all f64; an error (the reason) when θ or the
/// best θ do not have W entries, or any entry is not finite (the file would
/// not load, and no NaN is ever saved).
pub(super) fn write_tensors(
    w: usize,
    theta: &[f64],
    best_theta: &[f64],
    optimizer: &OptimizerState,
) -> Result<Vec<NamedTensor>, String> {
    if theta.len() != w || best_theta.len() != w {
        return Err(format!(
            "θ has {} entries and the best θ {}, the network {w}",
            theta.len(),
            best_theta.len()
        ));
    }
    let vector = |name: &str, data: &[f64]| NamedTensor {
        name: name.into(),
        shape: vec![w],
        data: data.to_vec(),
    };
    let mut tensors = vec![vector("theta", theta), vector("best_theta", best_theta)];
    for (key, t) in &optimizer.tensors {
        tensors.push(NamedTensor {
            name: format!("optimizer.{key}"),
            shape: t.shape.clone(),
            data: t.data.clone(),
        });
    }
    for t in &tensors {
        if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "refusing to write a checkpoint whose `{}` has a non-finite entry at {i} ({})",
                t.name, t.data[i]
            ));
        }
    }
    Ok(tensors)
}

/// The tensors read back: θ (W), the best θ (W) and the optimizer's.
pub(super) struct Tensors {
    pub theta: Vec<f64>,
    pub best_theta: Vec<f64>,
    pub optimizer: BTreeMap<String, StateTensor>,
}

pub(super) fn read_tensors(
    r: &Reader,
    tensors: Vec<NamedTensor>,
    w: usize,
) -> Result<Tensors, FileError> {
    let mut theta = None;
    let mut best_theta = None;
    let mut optimizer = BTreeMap::new();
    for t in tensors {
        match t.name.as_str() {
            "theta" => theta = Some(t),
            "best_theta" => best_theta = Some(t),
            name => match name.strip_prefix("optimizer.") {
                Some(key) => {
                    let state = StateTensor {
                        shape: t.shape,
                        data: t.data,
                    };
                    optimizer.insert(key.to_string(), state);
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
    Ok(Tensors {
        theta: vector(theta, "theta")?,
        best_theta: vector(best_theta, "best_theta")?,
        optimizer,
    })
}

// ---- the optimizer: `optimizer` (its name), `optimizer_scalars` (JSON),
// `optimizer_spec` (OptimizerSpec::to_stored: `optimizer=NAME,key=value,…`)

/// An error (the reason) for a spec that has no faithful stored form.
pub(super) fn write_optimizer(
    spec: &OptimizerSpec,
    state: &OptimizerState,
    meta: &mut Meta,
) -> Result<(), String> {
    let spec = spec.to_stored().map_err(|e| e.to_string())?;
    meta.insert("optimizer".into(), state.optimizer.clone());
    meta.insert("optimizer_spec".into(), spec);
    let scalars: Map<String, Value> = state
        .scalars
        .iter()
        .map(|(k, v)| (k.clone(), num(*v)))
        .collect();
    meta.insert(
        "optimizer_scalars".into(),
        Value::Object(scalars).to_string(),
    );
    Ok(())
}

/// The optimizer's state (its tensors from [`read_tensors`]) and spec.
pub(super) fn read_optimizer(
    r: &Reader,
    tensors: BTreeMap<String, StateTensor>,
) -> Result<(OptimizerState, OptimizerSpec), FileError> {
    let scalars = r.json("optimizer_scalars")?;
    let scalars = scalars
        .as_object()
        .ok_or_else(|| r.bad("checkpoint `optimizer_scalars` is not an object".into()))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), r.float_of(v, &format!("optimizer_scalars.{k}"))?)))
        .collect::<Result<BTreeMap<_, _>, FileError>>()?;
    let state = OptimizerState {
        optimizer: r.text("optimizer")?.to_string(),
        tensors,
        scalars,
    };
    let spec = OptimizerSpec::from_stored(r.text("optimizer_spec")?)
        .map_err(|e| r.bad(format!("checkpoint metadata `optimizer_spec`: {e}")))?;
    Ok((state, spec))
}

// ---- `config`: the TrainConfig (JSON)

pub(super) fn config_json(cfg: &TrainConfig) -> Value {
    json!({
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "shuffle_seed": cfg.shuffle_seed,
        "patience": cfg.patience,
        "min_delta": num(cfg.min_delta),
        "restore_best": cfg.restore_best,
        "max_failures": cfg.max_failures,
        "evidence_every": cfg.evidence_every,
    })
}

pub(super) fn read_config(r: &Reader) -> Result<TrainConfig, FileError> {
    let cfg = r.json("config")?;
    let c = "config";
    Ok(TrainConfig {
        epochs: r.usize(&cfg, "epochs", c)?,
        batch_size: r.opt_usize(&cfg, "batch_size", c)?,
        shuffle_seed: r.uint(&cfg, "shuffle_seed", c)?,
        patience: r.opt_usize(&cfg, "patience", c)?,
        min_delta: r.float(&cfg, "min_delta", c)?,
        restore_best: r.boolean(&cfg, "restore_best", c)?,
        max_failures: r.usize(&cfg, "max_failures", c)?,
        evidence_every: r.opt_usize(&cfg, "evidence_every", c)?,
    })
}

// ---- `scheduler`: the TrainState's position, counters and best value (JSON);
// its History under `history`, its best θ a tensor

pub(super) fn scheduler_json(s: &TrainState) -> Value {
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
        "l2": num(s.l2),
        "beta_ratio": num(s.beta_ratio),
    })
}

pub(super) fn read_state(r: &Reader, best_theta: Vec<f64>) -> Result<TrainState, FileError> {
    let s = r.json("scheduler")?;
    let sc = "scheduler";
    Ok(TrainState {
        epoch: r.usize(&s, "epoch", sc)?,
        next_row: r.usize(&s, "next_row", sc)?,
        epoch_updates: r.usize(&s, "epoch_updates", sc)?,
        epoch_rejected: r.usize(&s, "epoch_rejected", sc)?,
        history: read_history(r, &r.json("history")?)?,
        best_value: r.float(&s, "best_value", sc)?,
        best_epoch: r.usize(&s, "best_epoch", sc)?,
        best_theta,
        shuffle_seed: r.uint(&s, "shuffle_seed", sc)?,
        train_rows: r.usize(&s, "train_rows", sc)?,
        batch_size: r.usize(&s, "batch_size", sc)?,
        elapsed_seconds: r.float(&s, "elapsed_seconds", sc)?,
        failures_in_a_row: r.usize(&s, "failures_in_a_row", sc)?,
        l2: r.float(&s, "l2", sc)?,
        beta_ratio: r.float(&s, "beta_ratio", sc)?,
    })
}

// ---- `history`: the History so far (JSON)

pub(super) fn history_json(h: &History) -> Value {
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
                "l2": num(r.l2),
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

fn read_history(r: &Reader, v: &Value) -> Result<History, FileError> {
    let w = "history";
    let records = r
        .field(v, "records", w)?
        .as_array()
        .ok_or_else(|| r.bad("checkpoint `history.records` is not a list".into()))?
        .iter()
        .map(|record| read_record(r, record))
        .collect::<Result<Vec<_>, FileError>>()?;
    Ok(History {
        optimizer: r.string(v, "optimizer", w)?,
        records,
        updates: r.usize(v, "updates", w)?,
        rejected: r.usize(v, "rejected", w)?,
        stop: read_stop(r, &r.string(v, "stop", w)?)?,
    })
}

fn read_record(r: &Reader, v: &Value) -> Result<EpochRecord, FileError> {
    let w = "history.records[]";
    Ok(EpochRecord {
        epoch: r.usize(v, "epoch", w)?,
        train_loss: r.float(v, "train_loss", w)?,
        train_accuracy: r.opt_float(v, "train_accuracy", w)?,
        val_loss: r.opt_float(v, "val_loss", w)?,
        val_accuracy: r.opt_float(v, "val_accuracy", w)?,
        seconds: r.float(v, "seconds", w)?,
        updates: r.usize(v, "updates", w)?,
        rejected: r.usize(v, "rejected", w)?,
        l2: r.float(v, "l2", w)?,
    })
}

fn stop_text(stop: &StopReason) -> String {
    match stop {
        StopReason::Completed => "completed".into(),
        StopReason::EarlyStopping { best_epoch } => format!("early_stopping:{best_epoch}"),
        StopReason::Callback => "callback".into(),
        StopReason::Diverged => "diverged".into(),
    }
}

fn read_stop(r: &Reader, text: &str) -> Result<StopReason, FileError> {
    Ok(match text {
        "completed" => StopReason::Completed,
        "callback" => StopReason::Callback,
        "diverged" => StopReason::Diverged,
        other => match other
            .strip_prefix("early_stopping:")
            .and_then(|e| e.parse().ok())
        {
            Some(best_epoch) => StopReason::EarlyStopping { best_epoch },
            None => return Err(r.bad(format!("checkpoint history stop `{other}` is unknown"))),
        },
    })
}
