//! The scheduler loop: epochs of contiguous batches, an evaluation after each
//! epoch, early stopping, callbacks, and pausing at an update boundary.
//!
//! Its whole mutable state is a [`TrainState`] (the position, the epoch's
//! counters, the History, the best θ): a pause hands that state back as it
//! is, and a resumed run continues from it.

use super::callback::{any_stop, Callback};
use super::config::{DataView, TrainConfig};
use super::engines::BoundEngines;
use super::evaluate::evaluate;
use super::history::{EpochRecord, History, StopReason};
use super::resume::{TrainOutcome, TrainState};
use super::shuffle::{epoch_permutation, permuted};
use crate::analysis::evidence::{reestimate, DENSE_LIMIT};
use crate::engine::{Curvature, WithL2};
use crate::optim::{GuardConfig, Guarded, Optimizer, Result};
use ndarray::{Array2, ArrayView2};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Wall time of a run, counting on from the time before an interruption.
pub(super) struct Clock {
    start: Instant,
    before: f64,
}

impl Clock {
    /// Starts now; a resumed run counts on from its state's elapsed seconds.
    pub(super) fn start(from: Option<&TrainState>) -> Clock {
        Clock {
            start: Instant::now(),
            before: from.map_or(0.0, |s| s.elapsed_seconds),
        }
    }

    /// Seconds of the run so far (s).
    fn elapsed(&self) -> f64 {
        self.before + self.start.elapsed().as_secs_f64()
    }
}

/// The guard's view of a run: its bound, the updates per epoch (so that it
/// names the epoch of a failure), the updates already made before `from`, and
/// the largest |x| (unscaled inputs are a likely cause of overflow).
pub(super) fn guard_config(
    config: &TrainConfig,
    train: DataView,
    batch: usize,
    from: Option<&TrainState>,
) -> GuardConfig {
    let input_scale = train
        .x
        .iter()
        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let updates_per_epoch = train.x.nrows().div_ceil(batch);
    GuardConfig {
        max_failures: config.max_failures,
        updates_per_epoch: Some(updates_per_epoch),
        // A resumed run numbers its updates on from where it stopped.
        updates_before: from.map_or(0, |s| s.updates_before(updates_per_epoch)),
        input_scale: Some(input_scale),
        failures_in_a_row: from.map_or(0, |s| s.failures_in_a_row),
    }
}

/// How an epoch ended.
enum EpochEnd {
    /// Go on with the next epoch.
    Next,
    /// Training ends, for this reason.
    Stopped(StopReason),
    /// The interrupt flag was raised: hand the state back.
    Paused,
}

/// How an epoch's batches ended.
pub(super) enum Batches {
    /// All of them ran.
    Done,
    /// A callback asked to stop after an update.
    StoppedByCallback,
    /// The interrupt flag was raised between two updates.
    Paused,
}

/// One call of the scheduler: the run's fixed parts and what it works on
/// (the optimizer's own lifetime `'o`: the guard holds it invariantly).
pub(super) struct Scheduler<'a, 'c, 'o> {
    pub(super) config: &'a TrainConfig,
    pub(super) train: DataView<'a>,
    pub(super) validation: Option<DataView<'a>>,
    /// B = min(batch size, N).
    pub(super) batch: usize,
    pub(super) interrupt: Option<&'a AtomicBool>,
    pub(super) clock: Clock,
    pub(super) optimizer: Guarded<'o>,
    pub(super) engines: &'a mut BoundEngines,
    pub(super) theta: &'a mut [f64],
    pub(super) callbacks: &'a mut [&'c mut dyn Callback],
}

/// `engine` seen with λ = `l2` (the model's, or `--l2 evidence`'s latest).
fn with_l2(engine: &mut dyn Curvature, l2: f64) -> Result<WithL2<&mut dyn Curvature>> {
    Ok(WithL2::new(engine, l2)?)
}

impl Scheduler<'_, '_, '_> {
    /// Runs epochs from `from` (None: records the starting point first) until
    /// the last epoch, a stop, or the interrupt flag.
    pub(super) fn run(mut self, from: Option<TrainState>) -> Result<TrainOutcome> {
        let mut state = match from {
            Some(state) => state,
            None => self.starting_state()?,
        };
        while state.epoch <= self.config.epochs {
            match self.run_epoch(&mut state)? {
                EpochEnd::Next => state.next_epoch(),
                EpochEnd::Stopped(reason) => {
                    state.history.stop = reason;
                    break;
                }
                EpochEnd::Paused => {
                    return Ok(TrainOutcome::Interrupted(Box::new(self.paused(state))));
                }
            }
        }
        for cb in self.callbacks.iter_mut() {
            cb.on_train_end(&state.history);
        }
        Ok(TrainOutcome::Finished(state.history))
    }

    fn rows(&self) -> usize {
        self.train.x.nrows()
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// A fresh run: epoch 0's record (θ as given) is the best so far.
    fn starting_state(&mut self) -> Result<TrainState> {
        let mut history = History::new(self.optimizer.name());
        let l2 = self.engines.training.mlp().l2();
        let start = self.record(self.train.t, 0, 0, 0, l2)?;
        let best_value = start.monitored();
        history.records.push(start);
        Ok(TrainState {
            epoch: 1,
            next_row: 0,
            epoch_updates: 0,
            epoch_rejected: 0,
            history,
            best_value,
            best_epoch: 0,
            best_theta: self.theta.to_vec(),
            shuffle_seed: self.config.shuffle_seed,
            train_rows: self.rows(),
            batch_size: self.batch,
            elapsed_seconds: 0.0,
            failures_in_a_row: 0,
            l2,
            beta_ratio: 1.0,
        })
    }

    /// The state to hand back at a pause: the position as it is, with the
    /// wall time and the guard's streak of failures at this moment.
    fn paused(&self, mut state: TrainState) -> TrainState {
        state.elapsed_seconds = self.clock.elapsed();
        state.failures_in_a_row = self.optimizer.failures_in_a_row();
        state
    }

    /// The epoch `state.epoch` from `state.next_row` on, then its evaluation.
    fn run_epoch(&mut self, state: &mut TrainState) -> Result<EpochEnd> {
        if state.next_row == 0 {
            if self.interrupted() {
                return Ok(EpochEnd::Paused);
            }
            let epoch = state.epoch;
            if any_stop(self.callbacks, |cb| cb.on_epoch_start(epoch)) {
                return Ok(EpochEnd::Stopped(StopReason::Callback));
            }
        }
        let shuffled_targets = self.bind_epoch_rows(state.epoch)?;
        // The epoch's learning rate (first-order schedules), also when a
        // resumed run continues inside it.
        self.optimizer.start_epoch(state.epoch, self.config.epochs);
        let stopped_by_callback = match self.run_batches(state)? {
            Batches::Done => false,
            Batches::StoppedByCallback => true,
            Batches::Paused => return Ok(EpochEnd::Paused),
        };
        let targets = shuffled_targets.as_ref().map_or(self.train.t, |t| t.view());
        self.end_epoch(state, targets, stopped_by_callback)
    }

    /// Mini-batches: rebinds the training engine to this epoch's permutation
    /// of the rows (its buffers kept, only the rows uploaded), tells the
    /// optimizer that what it cached belongs to the old rows, and returns the
    /// targets in the new order. The full batch keeps the rows as given (None).
    fn bind_epoch_rows(&mut self, epoch: usize) -> Result<Option<Array2<f32>>> {
        let n = self.rows();
        if self.batch == n {
            return Ok(None);
        }
        let perm = epoch_permutation(n, self.config.shuffle_seed, epoch);
        let (x, t) = permuted(self.train, &perm);
        self.engines.training.rebind(x.view(), t.view())?;
        self.optimizer.forget_cached();
        Ok(Some(t))
    }

    /// The updates on the batches next_row..next_row+B, … of the epoch,
    /// counting accepted and rejected ones into the state: on the device when
    /// the optimizer and the engine both can (`device.rs`), else optimizer steps
    /// on the host.
    fn run_batches(&mut self, state: &mut TrainState) -> Result<Batches> {
        let n = self.rows();
        while state.next_row < n {
            if self.device_rule().is_some() {
                return self.run_device_batches(state);
            }
            let rows = state.next_row..(state.next_row + self.batch).min(n);
            state.next_row = rows.end;
            let mut engine = with_l2(self.engines.training.as_mut(), state.l2)?;
            let report = self.optimizer.step(&mut engine, self.theta, rows)?;
            if report.accepted {
                state.epoch_updates += 1;
            } else {
                state.epoch_rejected += 1;
            }
            if any_stop(self.callbacks, |cb| cb.on_update_end(&report)) {
                return Ok(Batches::StoppedByCallback);
            }
            // After the epoch's last update its evaluation comes first; the
            // flag is seen at the next epoch's start.
            if state.next_row < n && self.interrupted() {
                return Ok(Batches::Paused);
            }
        }
        Ok(Batches::Done)
    }

    /// Adds the epoch's counts and record to the History, then decides: a
    /// callback's stop, divergence, a new best θ, early stopping.
    /// `train_targets` are in the training engine's row order.
    fn end_epoch(
        &mut self,
        state: &mut TrainState,
        train_targets: ArrayView2<f32>,
        stopped_by_callback: bool,
    ) -> Result<EpochEnd> {
        let mut record = self.record(
            train_targets,
            state.epoch,
            state.epoch_updates,
            state.epoch_rejected,
            state.l2,
        )?;
        // The first-order methods do not evaluate E after their step: when the
        // epoch's last update overflowed E, the guard undoes and recovers it as
        // the next update would have, and the epoch is evaluated again.
        if !record.train_loss.is_finite()
            && self
                .optimizer
                .overflowed_at(self.theta, record.train_loss)?
        {
            state.epoch_updates = state.epoch_updates.saturating_sub(1);
            state.epoch_rejected += 1;
            record = self.record(
                train_targets,
                state.epoch,
                state.epoch_updates,
                state.epoch_rejected,
                state.l2,
            )?;
        }
        state.history.updates += state.epoch_updates;
        state.history.rejected += state.epoch_rejected;
        let diverged = !record.train_loss.is_finite();
        let value = record.monitored();
        state.history.records.push(record);
        if stopped_by_callback {
            return Ok(EpochEnd::Stopped(StopReason::Callback));
        }
        if diverged {
            return Ok(EpochEnd::Stopped(StopReason::Diverged));
        }
        if value < state.best_value - self.config.min_delta {
            state.best_value = value;
            state.best_epoch = state.epoch;
            state.best_theta.clear();
            state.best_theta.extend_from_slice(self.theta);
        } else if let Some(patience) = self.config.patience {
            if state.epoch - state.best_epoch >= patience {
                if self.config.restore_best {
                    self.theta.copy_from_slice(&state.best_theta);
                }
                return Ok(EpochEnd::Stopped(StopReason::EarlyStopping {
                    best_epoch: state.best_epoch,
                }));
            }
        }
        if any_stop(self.callbacks, |cb| cb.on_epoch_end(&state.history)) {
            return Ok(EpochEnd::Stopped(StopReason::Callback));
        }
        self.evidence(state)?;
        Ok(EpochEnd::Next)
    }

    /// `--l2 evidence`: after every `evidence_every` epochs, λ (and β for
    /// regression) re-estimated at θ on the whole training set by MacKay's fixed
    /// point; the next epochs train with it. The optimizer forgets what it cached
    /// of the old objective.
    fn evidence(&mut self, state: &mut TrainState) -> Result<()> {
        let Some(every) = self.config.evidence_every.filter(|&k| k > 0) else {
            return Ok(());
        };
        if !state.epoch.is_multiple_of(every) {
            return Ok(());
        }
        let rows = 0..self.rows();
        let mut engine = with_l2(self.engines.training.as_mut(), state.l2)?;
        let step = reestimate(&mut engine, self.theta, rows, state.beta_ratio, DENSE_LIMIT)?;
        state.l2 = step.lambda;
        state.beta_ratio = step.beta.unwrap_or(1.0);
        self.optimizer.forget_cached();
        Ok(())
    }

    /// Evaluates θ on the training engine (`train_targets` in its row order)
    /// and the validation engine into the record of `epoch`.
    fn record(
        &mut self,
        train_targets: ArrayView2<f32>,
        epoch: usize,
        updates: usize,
        rejected: usize,
        l2: f64,
    ) -> Result<EpochRecord> {
        let mut training = with_l2(self.engines.training.as_mut(), l2)?;
        let (train_loss, train_accuracy) = evaluate(&mut training, self.theta, train_targets)?;
        let (val_loss, val_accuracy) = match (&mut self.engines.validation, self.validation) {
            (Some(engine), Some(v)) => {
                let mut engine = with_l2(engine.as_mut(), l2)?;
                let (loss, accuracy) = evaluate(&mut engine, self.theta, v.t)?;
                (Some(loss), accuracy)
            }
            _ => (None, None),
        };
        Ok(EpochRecord {
            epoch,
            train_loss,
            train_accuracy,
            val_loss,
            val_accuracy,
            seconds: self.clock.elapsed(),
            updates,
            rejected,
            l2,
        })
    }
}
