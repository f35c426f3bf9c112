//! Interruption and resumption: the [`TrainState`] a paused run hands back
//! (also the scheduler's live state while it runs), how a call ended
//! ([`TrainOutcome`]), what a call continues from ([`Resume`]), and the
//! checks that a state belongs to the run it is to continue.

use super::config::TrainConfig;
use super::history::History;
use crate::optim::{OptimError, Result};
use std::sync::atomic::AtomicBool;

/// Where an interrupted run stands between two updates: with θ, the
/// optimizer's state ([`Optimizer::export_state`](crate::optim::Optimizer::export_state))
/// and the same data, config and engine kind, everything
/// [`train_resumable`](super::train_resumable) needs to continue exactly as if
/// it had not stopped.
///
/// There is no random-number generator state beyond `shuffle_seed`: the
/// permutation of epoch e is a pure function of (seed, e) (ChaCha8 seeded with
/// their mix, see `shuffle.rs`), so the position (epoch, next_row) fixes every
/// batch still to come.
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
    /// λ in force (the model's, or the last re-estimate of `--l2 evidence`).
    pub l2: f64,
    /// β/β₀, the noise precision the evidence re-estimated relative to the
    /// loss's own (regression; 1 otherwise and at the start).
    pub beta_ratio: f64,
}

impl TrainState {
    /// Updates attempted before this position (accepted and rejected), as the
    /// uninterrupted run numbers them: full epochs of `updates_per_epoch`, then
    /// the batches of the epoch in progress.
    pub(super) fn updates_before(&self, updates_per_epoch: usize) -> usize {
        (self.epoch - 1) * updates_per_epoch + self.next_row / self.batch_size
    }

    /// Moves the position to the start of the next epoch.
    pub(super) fn next_epoch(&mut self) {
        self.epoch += 1;
        self.next_row = 0;
        self.epoch_updates = 0;
        self.epoch_rejected = 0;
    }
}

/// How [`train_resumable`](super::train_resumable) ended.
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

/// Checks a state against the run it is to continue: N training rows in
/// batches of `batch`, θ of `w` entries.
pub(super) fn check_resume(
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
