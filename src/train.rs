//! The training scheduler: runs any [`Optimizer`] for epochs over mini-batches
//! or the full batch, evaluates on held-out data after every epoch, keeps a
//! [`History`], stops early on a stalled validation loss, and lets
//! [`Callback`]s watch and stop training.
//!
//! ## Mini-batches and the shuffle
//! An engine is bound to one data set and every operation takes a contiguous
//! `rows` range. So the scheduler holds the training set on the host and, at
//! the start of every epoch, permutes its rows with a seeded shuffle and binds
//! the permuted copy to a fresh engine through the caller's factory closure
//! (`(x (N, D), t (N, K)) → Box<dyn Curvature>`): one upload per epoch, after
//! which the batches are the contiguous ranges 0..B, B..2B, … (the last one
//! possibly shorter). The permutation of epoch e comes from ChaCha8 seeded
//! with (seed, e), so a run is reproducible and independent of the device.
//! Full-batch training (`batch_size: None`, or B ≥ N) binds the data once,
//! unshuffled, and makes one update per epoch. After a rebind the optimizer is
//! told to [`forget_cached`](Optimizer::forget_cached) what it computed on the
//! old rows; its learned state (velocity, B, damping) carries over.
//!
//! ## Evaluation
//! Epoch 0 records the starting point. After every epoch, E(θ) on the whole
//! training set and on the validation set (one engine bound once), and the
//! accuracy from `outputs` (argmax against one-hot targets; y ≥ ½ against 0/1
//! targets for one output; none for real-valued targets).
//!
//! ## Interruption and resumption
//! [`train_resumable`] polls an interrupt flag (`&AtomicBool`, raised by a
//! signal handler or for a periodic checkpoint) after every update and before
//! every epoch, and hands back a [`TrainState`]: the epoch and the next batch's
//! first row, the epoch's counters, the History so far, the best (value, epoch,
//! θ) for early stopping, the shuffle seed. The permutation of an epoch is a
//! function of (seed, epoch) alone, so that position is the whole RNG state.
//! Called again with that state, θ and the optimizer's state
//! ([`Optimizer::export_state`]), it rebinds the same permuted data and
//! continues with the same batches; on the CPU the end is bit-identical to an
//! uninterrupted run (`tests/resume_library.rs`). `src/checkpoint.rs` puts all
//! of it in one file.

use crate::engine::Curvature;
use crate::optim::finite::first_non_finite;
use crate::optim::{
    GuardConfig, Guarded, OptimError, Optimizer, Result, StepReport, DEFAULT_MAX_FAILURES,
};
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training data (default 100).
    pub epochs: usize,
    /// Rows per update; `None` = the full batch (default).
    pub batch_size: Option<usize>,
    /// Failed (NaN/∞) updates in a row before training stops with
    /// [`OptimError::Diverged`] (default [`DEFAULT_MAX_FAILURES`]); see [`Guarded`].
    pub max_failures: usize,
    /// Seed of the per-epoch shuffle (default 0).
    pub shuffle_seed: u64,
    /// Stop after this many epochs without a validation-loss improvement
    /// (training loss when there is no validation set); `None` = never (default).
    pub patience: Option<usize>,
    /// The least decrease that counts as an improvement (default 0).
    pub min_delta: f64,
    /// On early stopping, put back the θ of the best epoch (default true).
    pub restore_best: bool,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 100,
            batch_size: None,
            max_failures: DEFAULT_MAX_FAILURES,
            shuffle_seed: 0,
            patience: None,
            min_delta: 0.0,
            restore_best: true,
        }
    }
}

/// A data set on the host: inputs x (N, D) and targets t (N, K).
#[derive(Clone, Copy, Debug)]
pub struct DataView<'a> {
    pub x: ArrayView2<'a, f32>,
    pub t: ArrayView2<'a, f32>,
}

/// Builds an engine bound to (x (N, D), t (N, K)).
pub type EngineFactory<'f> =
    dyn FnMut(ArrayView2<f32>, ArrayView2<f32>) -> crate::Result<Box<dyn Curvature>> + 'f;

/// What a callback tells the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Hooks into training; every method has a do-nothing default.
pub trait Callback {
    fn on_train_start(&mut self, _config: &TrainConfig) {}
    fn on_train_end(&mut self, _history: &History) {}
    /// Before epoch `epoch` (1-based).
    fn on_epoch_start(&mut self, _epoch: usize) -> Control {
        Control::Continue
    }
    /// After an epoch's record was added to `history`.
    fn on_epoch_end(&mut self, _history: &History) -> Control {
        Control::Continue
    }
    /// After every update (accepted or rejected).
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        Control::Continue
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// 0 for the starting point, then 1, 2, …
    pub epoch: usize,
    /// E(θ) on the whole training set.
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Wall time since training started, evaluation included (s).
    pub seconds: f64,
    /// Accepted updates in this epoch.
    pub updates: usize,
    /// Rejected updates in this epoch.
    pub rejected: usize,
}

/// Why training ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// All epochs ran.
    Completed,
    /// No improvement for `patience` epochs; the best epoch is given.
    EarlyStopping { best_epoch: usize },
    /// A callback said stop.
    Callback,
    /// The training loss became NaN or infinite.
    Diverged,
}

/// The record of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    pub optimizer: String,
    /// Epoch 0 (start) and one per epoch run.
    pub records: Vec<EpochRecord>,
    /// Accepted updates in all.
    pub updates: usize,
    /// Rejected updates in all.
    pub rejected: usize,
    pub stop: StopReason,
}

impl History {
    /// The last epoch run (0 if none).
    pub fn last_epoch(&self) -> usize {
        self.records.last().map_or(0, |r| r.epoch)
    }
    /// The last record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.records.last()
    }

    /// The history as a JSON object (hand-written: no serde in the crate).
    pub fn to_json(&self) -> String {
        fn num(v: f64) -> String {
            if v.is_finite() {
                format!("{v}")
            } else {
                "null".to_string()
            }
        }
        fn opt(v: Option<f64>) -> String {
            v.map_or("null".to_string(), num)
        }
        let stop = match &self.stop {
            StopReason::Completed => "\"completed\"".to_string(),
            StopReason::EarlyStopping { best_epoch } => {
                format!("{{\"early_stopping\":{{\"best_epoch\":{best_epoch}}}}}")
            }
            StopReason::Callback => "\"callback\"".to_string(),
            StopReason::Diverged => "\"diverged\"".to_string(),
        };
        let records: Vec<String> = self
            .records
            .iter()
            .map(|r| {
                format!(
                    "{{\"epoch\":{},\"train_loss\":{},\"train_accuracy\":{},\"val_loss\":{},\"val_accuracy\":{},\"seconds\":{},\"updates\":{},\"rejected\":{}}}",
                    r.epoch,
                    num(r.train_loss),
                    opt(r.train_accuracy),
                    opt(r.val_loss),
                    opt(r.val_accuracy),
                    num(r.seconds),
                    r.updates,
                    r.rejected
                )
            })
            .collect();
        format!(
            "{{\"optimizer\":\"{}\",\"last_epoch\":{},\"updates\":{},\"rejected\":{},\"stop\":{},\"epochs\":[{}]}}",
            self.optimizer.replace('\\', "\\\\").replace('"', "\\\""),
            self.last_epoch(),
            self.updates,
            self.rejected,
            stop,
            records.join(",")
        )
    }
}

/// The fraction of rows whose predicted class matches the target's, or None
/// when the targets are not classes (one-hot rows, or 0/1 for one output).
/// y (N, K) network outputs, t (N, K) targets.
pub fn accuracy(y: &Array2<f64>, t: ArrayView2<f32>) -> Option<f64> {
    let (n, k) = t.dim();
    if n == 0 || y.dim() != (n, k) {
        return None;
    }
    let binary = |v: f32| v == 0.0 || v == 1.0;
    let mut correct = 0usize;
    for (yr, tr) in y.outer_iter().zip(t.outer_iter()) {
        if !tr.iter().all(|&v| binary(v)) {
            return None;
        }
        let hit = if k == 1 {
            (yr[0] >= 0.5) == (tr[0] == 1.0)
        } else {
            if tr.iter().filter(|&&v| v == 1.0).count() != 1 {
                return None;
            }
            argmax(yr.iter().copied()) == argmax(tr.iter().map(|&v| v as f64))
        };
        correct += usize::from(hit);
    }
    Some(correct as f64 / n as f64)
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// (E on all rows, accuracy) of θ on an engine's data.
fn evaluate(
    engine: &mut dyn Curvature,
    theta: &[f64],
    t: ArrayView2<f32>,
) -> Result<(f64, Option<f64>)> {
    let rows = 0..engine.num_rows();
    let loss = engine.loss(theta, rows.clone())?;
    let y = engine.outputs(theta, rows)?;
    Ok((loss, accuracy(&y, t)))
}

/// The rows of (x, t) in the order `perm`.
fn permuted(data: DataView, perm: &[usize]) -> (Array2<f32>, Array2<f32>) {
    (data.x.select(Axis(0), perm), data.t.select(Axis(0), perm))
}

/// The seeded permutation of 0..n for one epoch.
fn epoch_permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    // Mix the epoch into the seed with a large odd constant (golden ratio).
    let mixed = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = ChaCha8Rng::seed_from_u64(mixed);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    perm
}

/// Asks every callback (none is skipped, so all see the event) and says
/// whether any of them asked to stop.
fn any_stop(
    callbacks: &mut [&mut dyn Callback],
    mut ask: impl FnMut(&mut dyn Callback) -> Control,
) -> bool {
    let mut stop = false;
    for cb in callbacks.iter_mut() {
        stop |= ask(&mut **cb) == Control::Stop;
    }
    stop
}

/// Errs, naming the row and column, when x or t of either set holds a NaN or
/// ∞, or naming the entry when θ (W) does: no recovery can start from those.
fn check_finite_inputs(theta: &[f64], train: DataView, validation: Option<DataView>) -> Result<()> {
    if let Some((i, v)) = first_non_finite(theta) {
        return Err(OptimError::Training(format!(
            "the starting parameters hold {v} at entry {i}: start from finite weights"
        )));
    }
    let sets = [
        ("training inputs x", Some(train.x)),
        ("training targets t", Some(train.t)),
        ("validation inputs x", validation.map(|v| v.x)),
        ("validation targets t", validation.map(|v| v.t)),
    ];
    for (what, data) in sets {
        let Some(data) = data else { continue };
        if let Some(((row, col), &value)) = data.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(OptimError::NonFiniteData {
                what,
                row,
                col,
                value,
            });
        }
    }
    Ok(())
}

/// Trains θ (W) in place with `optimizer` on `train`, evaluating on
/// `validation` after every epoch; engines come from `factory`. Runs to the
/// end (no interruption): [`train_resumable`] is the same with an interrupt
/// flag and a state to continue from.
///
/// Refuses data or a starting θ holding NaN or ∞ (naming row and column).
/// The optimizer runs inside a [`Guarded`]: an update that meets NaN or ∞ is
/// undone, recovered from and counted as rejected; `max_failures` of them in
/// a row end training with [`OptimError::Diverged`], θ left at the last
/// finite parameters.
pub fn train(
    config: &TrainConfig,
    optimizer: &mut dyn Optimizer,
    factory: &mut EngineFactory,
    theta: &mut [f64],
    train: DataView,
    validation: Option<DataView>,
    callbacks: &mut [&mut dyn Callback],
) -> Result<History> {
    let run = Resume::default();
    match train_resumable(
        config, optimizer, factory, theta, train, validation, callbacks, run,
    )? {
        TrainOutcome::Finished(history) => Ok(history),
        // Without an interrupt flag nothing can interrupt the run.
        TrainOutcome::Interrupted(state) => Err(OptimError::Training(format!(
            "interrupted at epoch {} without an interrupt flag",
            state.epoch
        ))),
    }
}

/// Where an interrupted run stands between two updates: with θ, the
/// optimizer's state ([`Optimizer::export_state`]) and the same data, config
/// and engine kind, everything [`train_resumable`] needs to continue exactly
/// as if it had not stopped.
///
/// There is no random-number generator state beyond `shuffle_seed`: the
/// permutation of epoch e is a pure function of (seed, e) (ChaCha8 seeded with
/// their mix, see the module doc), so the position (epoch, next_row) fixes
/// every batch still to come.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// The epoch in progress, 1-based: its permutation and the batches from
    /// `next_row` on are still to run.
    pub epoch: usize,
    /// The first row (in the epoch's permuted order) of the next batch;
    /// 0 = the epoch has not begun (its `on_epoch_start` has not been called).
    pub next_row: usize,
    /// Accepted and rejected updates of the epoch in progress so far.
    pub epoch_updates: usize,
    pub epoch_rejected: usize,
    /// The history up to the last finished epoch (its totals count finished
    /// epochs only).
    pub history: History,
    /// The best monitored value (validation loss, else training loss), its
    /// epoch and θ (W) then, for early stopping.
    pub best_value: f64,
    pub best_epoch: usize,
    pub best_theta: Vec<f64>,
    /// The run's shuffle seed, checked against the config on resume.
    pub shuffle_seed: u64,
    /// N of the training set and the effective batch size B (min(B, N)),
    /// checked on resume: the position means nothing for other data.
    pub train_rows: usize,
    pub batch_size: usize,
    /// Wall time of the run so far (s); records continue counting from it.
    pub elapsed_seconds: f64,
    /// Failed (NaN/∞) updates in a row at the interruption: the guard's
    /// bound counts on from them.
    pub failures_in_a_row: usize,
}

/// How [`train_resumable`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainOutcome {
    /// Training ended by itself (all epochs, early stopping, a callback, divergence).
    Finished(History),
    /// The interrupt flag was raised: the state to continue from.
    Interrupted(Box<TrainState>),
}

/// The resumable part of a run: where to continue from, and a flag that asks
/// the scheduler to stop at the next update boundary.
#[derive(Clone, Debug, Default)]
pub struct Resume<'a> {
    /// The state an interrupted run returned (None: a fresh run).
    pub from: Option<TrainState>,
    /// Checked after every update and before every epoch (a signal handler
    /// sets it). The current update always finishes; so does the evaluation
    /// of an epoch whose last update was the one in progress.
    pub interrupt: Option<&'a AtomicBool>,
}

/// Checks a state against the run it is to continue.
fn check_resume(
    state: &TrainState,
    config: &TrainConfig,
    n: usize,
    batch: usize,
    w: usize,
) -> Result<()> {
    let bad = |what: String| Err(OptimError::Training(format!("cannot resume: {what}")));
    if state.shuffle_seed != config.shuffle_seed {
        return bad(format!(
            "the run used shuffle seed {}, the config says {}",
            state.shuffle_seed, config.shuffle_seed
        ));
    }
    if state.train_rows != n || state.batch_size != batch {
        return bad(format!(
            "the run had {} training rows in batches of {}, this one {n} in batches of {batch}",
            state.train_rows, state.batch_size
        ));
    }
    if state.best_theta.len() != w {
        return bad(format!(
            "the saved best θ has {} entries, θ has {w}",
            state.best_theta.len()
        ));
    }
    if state.epoch == 0
        || state.next_row >= n
        || state.history.last_epoch() + 1 != state.epoch
        || state.history.records.is_empty()
    {
        return bad(format!(
            "inconsistent position (epoch {}, row {}, last recorded epoch {})",
            state.epoch,
            state.next_row,
            state.history.last_epoch()
        ));
    }
    if state.next_row > 0 && config.epochs < state.epoch {
        return bad(format!(
            "the run stopped inside epoch {}: ask for at least {} epochs",
            state.epoch, state.epoch
        ));
    }
    Ok(())
}

/// [`train`] that can be interrupted between updates and continued: with
/// `run.from` = None it starts afresh; with the state an interrupted call
/// returned (and θ and the optimizer's state as they were then, the same data,
/// config and kind of engine) it continues with the same batches, the same
/// permutation and the same evaluation records (all but `seconds`), so on the
/// CPU the final θ is bit-identical to an uninterrupted run's.
/// `on_train_end` is not called for an interrupted call (the run has not ended).
#[allow(clippy::too_many_arguments)] // train()'s seven plus the resume part
pub fn train_resumable(
    config: &TrainConfig,
    optimizer: &mut dyn Optimizer,
    factory: &mut EngineFactory,
    theta: &mut [f64],
    train: DataView,
    validation: Option<DataView>,
    callbacks: &mut [&mut dyn Callback],
    run: Resume,
) -> Result<TrainOutcome> {
    let n = train.x.nrows();
    if n == 0 || train.t.nrows() != n {
        return Err(OptimError::Training(format!(
            "the training set needs rows and as many targets as inputs (x has {n} rows, t has {})",
            train.t.nrows()
        )));
    }
    if config.batch_size == Some(0) {
        return Err(OptimError::Training(
            "batch size 0: give a positive batch size, or none for the full batch".to_string(),
        ));
    }
    let batch = config.batch_size.unwrap_or(n).min(n);
    let full_batch = batch == n;
    if let Some(state) = &run.from {
        check_resume(state, config, n, batch, theta.len())?;
    }
    let interrupted = || {
        run.interrupt
            .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst))
    };
    check_finite_inputs(theta, train, validation)?;
    // Every update goes through the guard: NaN/∞ steps are undone and recovered from.
    let input_scale = train
        .x
        .iter()
        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let updates_per_epoch = n.div_ceil(batch);
    // A resumed run numbers its updates on from where it stopped.
    let updates_before = run.from.as_ref().map_or(0, |s| {
        (s.epoch - 1) * updates_per_epoch + s.next_row / batch
    });
    let guard = GuardConfig {
        max_failures: config.max_failures,
        updates_per_epoch: Some(updates_per_epoch),
        updates_before,
        input_scale: Some(input_scale),
        failures_in_a_row: run.from.as_ref().map_or(0, |s| s.failures_in_a_row),
    };
    let mut guarded = Guarded::new(optimizer, guard);
    let optimizer = &mut guarded;
    let start = Instant::now();
    let offset = run.from.as_ref().map_or(0.0, |s| s.elapsed_seconds);
    let elapsed = || offset + start.elapsed().as_secs_f64();
    for cb in callbacks.iter_mut() {
        cb.on_train_start(config);
    }
    let mut engine = factory(train.x, train.t)?;
    let mut val_engine = match validation {
        Some(v) => Some((factory(v.x, v.t)?, v.t)),
        None => None,
    };
    // Evaluates θ into a record; `t` is the targets in the engine's current row order.
    let record = |engine: &mut dyn Curvature,
                  t: ArrayView2<f32>,
                  val_engine: &mut Option<(Box<dyn Curvature>, ArrayView2<f32>)>,
                  theta: &[f64],
                  epoch: usize,
                  updates: usize,
                  rejected: usize|
     -> Result<EpochRecord> {
        let (train_loss, train_accuracy) = evaluate(engine, theta, t)?;
        let (val_loss, val_accuracy) = match val_engine {
            Some((e, vt)) => {
                let (l, a) = evaluate(e.as_mut(), theta, *vt)?;
                (Some(l), a)
            }
            None => (None, None),
        };
        Ok(EpochRecord {
            epoch,
            train_loss,
            train_accuracy,
            val_loss,
            val_accuracy,
            seconds: elapsed(),
            updates,
            rejected,
        })
    };
    let monitored = |r: &EpochRecord| r.val_loss.unwrap_or(r.train_loss);
    // (history, best (value, epoch, θ), first epoch, (next row, updates, rejected) in it)
    let (mut history, mut best, first_epoch, mut position) = match run.from {
        Some(state) => (
            state.history,
            (state.best_value, state.best_epoch, state.best_theta),
            state.epoch,
            (state.next_row, state.epoch_updates, state.epoch_rejected),
        ),
        None => {
            let mut history = History {
                optimizer: optimizer.name().to_string(),
                records: Vec::new(),
                updates: 0,
                rejected: 0,
                stop: StopReason::Completed,
            };
            history.records.push(record(
                engine.as_mut(),
                train.t,
                &mut val_engine,
                theta,
                0,
                0,
                0,
            )?);
            let best = (monitored(&history.records[0]), 0usize, theta.to_vec());
            (history, best, 1, (0, 0, 0))
        }
    };
    // The state to hand back when interrupted at (epoch, next row, counts).
    let pause = |history: &History,
                 best: &(f64, usize, Vec<f64>),
                 epoch: usize,
                 (next_row, epoch_updates, epoch_rejected): (usize, usize, usize),
                 failures_in_a_row: usize| {
        TrainOutcome::Interrupted(Box::new(TrainState {
            epoch,
            next_row,
            epoch_updates,
            epoch_rejected,
            history: history.clone(),
            best_value: best.0,
            best_epoch: best.1,
            best_theta: best.2.clone(),
            shuffle_seed: config.shuffle_seed,
            train_rows: n,
            batch_size: batch,
            elapsed_seconds: elapsed(),
            failures_in_a_row,
        }))
    };
    let mut shuffled_t: Option<Array2<f32>> = None;
    'epochs: for epoch in first_epoch..=config.epochs {
        let (mut begin, mut updates, mut rejected) = std::mem::take(&mut position);
        if begin == 0 {
            if interrupted() {
                return Ok(pause(
                    &history,
                    &best,
                    epoch,
                    (0, 0, 0),
                    optimizer.failures_in_a_row(),
                ));
            }
            if any_stop(callbacks, |cb| cb.on_epoch_start(epoch)) {
                history.stop = StopReason::Callback;
                break;
            }
        }
        if !full_batch {
            let perm = epoch_permutation(n, config.shuffle_seed, epoch);
            let (x, t) = permuted(train, &perm);
            engine = factory(x.view(), t.view())?;
            shuffled_t = Some(t);
            optimizer.forget_cached();
        }
        let mut stop_now = false;
        while begin < n {
            let rows = begin..(begin + batch).min(n);
            begin = rows.end;
            let report = optimizer.step(engine.as_mut(), theta, rows)?;
            if report.accepted {
                updates += 1;
            } else {
                rejected += 1;
            }
            if any_stop(callbacks, |cb| cb.on_update_end(&report)) {
                stop_now = true;
                break;
            }
            if begin < n && interrupted() {
                return Ok(pause(
                    &history,
                    &best,
                    epoch,
                    (begin, updates, rejected),
                    optimizer.failures_in_a_row(),
                ));
            }
        }
        history.updates += updates;
        history.rejected += rejected;
        let t_now = shuffled_t.as_ref().map_or(train.t, |t| t.view());
        let rec = record(
            engine.as_mut(),
            t_now,
            &mut val_engine,
            theta,
            epoch,
            updates,
            rejected,
        )?;
        let diverged = !rec.train_loss.is_finite();
        let value = monitored(&rec);
        history.records.push(rec);
        if stop_now {
            history.stop = StopReason::Callback;
            break;
        }
        if diverged {
            history.stop = StopReason::Diverged;
            break;
        }
        if value < best.0 - config.min_delta {
            best = (value, epoch, theta.to_vec());
        } else if let Some(patience) = config.patience {
            if epoch - best.1 >= patience {
                if config.restore_best {
                    theta.copy_from_slice(&best.2);
                }
                history.stop = StopReason::EarlyStopping { best_epoch: best.1 };
                break 'epochs;
            }
        }
        if any_stop(callbacks, |cb| cb.on_epoch_end(&history)) {
            history.stop = StopReason::Callback;
            break;
        }
    }
    for cb in callbacks.iter_mut() {
        cb.on_train_end(&history);
    }
    Ok(TrainOutcome::Finished(history))
}
