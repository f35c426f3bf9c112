//! [`Guarded`]: bounded recovery from NaN and ∞ around any [`Optimizer`].
//!
//! Before each step the guard copies θ (W f64, cheap beside any step). A step
//! fails when it returns [`OptimError::NonFinite`], or when its report or the
//! θ it leaves is not finite. Then the guard
//! 1. puts θ back: the θ before this step, or — when the failure was at the
//!    point the step started from (E or ∇E already NaN there) — the θ before
//!    the previous accepted update, which produced that point;
//! 2. calls the optimizer's [`recover`](Optimizer::recover) (a smaller
//!    learning rate, more damping, a restart) and drops its cached (θ, rows)
//!    values;
//! 3. reports the step as rejected.
//!
//! After `max_failures` failures in a row (default [`DEFAULT_MAX_FAILURES`])
//! it stops with [`OptimError::Diverged`], whose one line names the update
//! (and epoch), the quantity, its value, the likely cause and what to try. A
//! loss that is not finite at the starting θ cannot be recovered from: that is
//! an immediate `Diverged` error. θ always holds the last finite parameters,
//! so no NaN reaches a saved model.

use super::finite::{first_non_finite, NonFinite, Point, Quantity};
use super::{OptimError, Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::{Curvature, DeviceRule};
use std::fmt;
use std::ops::Range;

/// Failed updates in a row before training stops. 20 halvings of a learning
/// rate (÷10⁶) or 20 rises of a damping by ×4 (×10¹²) cover any step size that
/// a recovery can still fix; beyond them the cause is elsewhere (data, model).
pub const DEFAULT_MAX_FAILURES: usize = 20;

/// Inputs with |x| above this are taken as unscaled: standardised or min-max
/// scaled inputs are O(1), and raw pixel or sensor values are 10²–10⁴.
const UNSCALED_INPUT: f64 = 1e3;
/// Weights with |θ_i| above this are taken as overflowing: a unit with
/// weights this large saturates or explodes for any O(1) input.
const OVERFLOWING_WEIGHT: f64 = 1e4;

/// How the guard counts and names failures.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardConfig {
    /// Failed updates in a row before giving up (default [`DEFAULT_MAX_FAILURES`]).
    pub max_failures: usize,
    /// Updates per epoch, to name the epoch of a failed update (None: not named).
    pub updates_per_epoch: Option<usize>,
    /// Updates attempted before the guard's first (0; for a resumed run,
    /// (epoch − 1)·updates_per_epoch + the updates already made in its epoch),
    /// so that updates and epochs are numbered as in the uninterrupted run.
    pub updates_before: usize,
    /// max |x| over the training inputs, to name unscaled inputs as the cause.
    pub input_scale: Option<f64>,
    /// Failed updates in a row already counted before the guard's first (0;
    /// for a resumed run, the streak it stopped in), so that a run continued
    /// from a checkpoint stops exactly where the uninterrupted run would.
    pub failures_in_a_row: usize,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            max_failures: DEFAULT_MAX_FAILURES,
            updates_per_epoch: None,
            updates_before: 0,
            input_scale: None,
            failures_in_a_row: 0,
        }
    }
}

/// Why training stopped on a NaN or ∞, in one line.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// The optimizer's CLI name.
    pub optimizer: String,
    /// The update (1-based, counting rejected ones) that failed last.
    pub update: usize,
    /// Its epoch, when the guard knows the updates per epoch.
    pub epoch: Option<usize>,
    /// Failed updates in a row; 0 when the loss was not finite at the start.
    pub failures: usize,
    /// The last failure.
    pub failure: NonFinite,
    /// The last finite E seen (on a step's rows).
    pub last_loss: Option<f64>,
    /// The largest |θ_i| of the last finite θ.
    pub max_weight: f64,
    pub cause: String,
    pub advice: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = match self.epoch {
            Some(e) => format!("update {} (epoch {e})", self.update),
            None => format!("update {}", self.update),
        };
        if self.failures == 0 {
            write!(
                f,
                "{}: cannot start at {at}: {} at the starting parameters",
                self.optimizer,
                self.failure.what()
            )?;
        } else {
            write!(
                f,
                "{}: training stopped at {at} after {} failed updates in a row: {}",
                self.optimizer, self.failures, self.failure
            )?;
            if let Some(l) = self.last_loss {
                write!(f, " (last finite loss {l:.6e})")?;
            }
        }
        write!(
            f,
            "; likely cause: {}; try: {}; the parameters are the last finite ones",
            self.cause, self.advice
        )
    }
}

/// An optimizer with bounded recovery from NaN and ∞ (see the module doc).
pub struct Guarded<'a> {
    inner: &'a mut dyn Optimizer,
    config: GuardConfig,
    /// Steps attempted so far, counting `updates_before`.
    update: usize,
    /// Failed steps in a row.
    consecutive: usize,
    /// `consecutive` as it was before the last accepted step, restored when
    /// that step is undone (so an accept-then-fail cycle still counts up).
    consecutive_before_accept: usize,
    /// θ before the last accepted step (W), for undoing it.
    previous: Option<Vec<f64>>,
    /// A θ-sized buffer for the next step's copy of θ (the copies are swapped,
    /// not allocated, on every update).
    spare: Vec<f64>,
    /// Whether any step succeeded.
    started: bool,
    last_loss: Option<f64>,
    /// ‖∇E‖ of the last successful step, for the reports of failed ones.
    last_grad_norm: f64,
    failures: usize,
}

impl<'a> Guarded<'a> {
    pub fn new(inner: &'a mut dyn Optimizer, config: GuardConfig) -> Guarded<'a> {
        Guarded {
            inner,
            update: config.updates_before,
            consecutive: config.failures_in_a_row,
            consecutive_before_accept: config.failures_in_a_row,
            previous: None,
            spare: Vec::new(),
            // A resumed run has made updates: a NaN now is not at the start.
            started: config.updates_before > 0,
            config,
            last_loss: None,
            last_grad_norm: 0.0,
            failures: 0,
        }
    }

    /// Failed updates in the current streak (0 after a success).
    pub fn failures_in_a_row(&self) -> usize {
        self.consecutive
    }

    /// Failed (and recovered) steps so far.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// A run of `updates` updates made on the device (`train`'s device path) whose
    /// batch losses, θ and state came back finite: they count as accepted updates
    /// (the streak of failures ends), and the θ before them is forgotten (a NaN
    /// met later at the point they reached is undone by the next device run's
    /// restart, not by the host's undo of one update). `mean_loss` is the mean
    /// batch loss of the run, the last finite loss seen.
    pub fn device_updates_succeeded(&mut self, updates: usize, mean_loss: f64) {
        self.update += updates;
        self.started = true;
        self.previous = None;
        self.consecutive = 0;
        self.consecutive_before_accept = 0;
        self.last_loss = Some(mean_loss);
    }

    /// A run of `updates` updates made on the device that met `failure` (a NaN or
    /// ∞ in a batch loss, θ or the state, seen once at the run's end): the caller has
    /// put θ and the state back to the run's start. Counts ONE failed update in
    /// the streak (the host counts one per failed update: the device detects per
    /// run), stops with [`OptimError::Diverged`] after `max_failures` in a row, and
    /// otherwise applies the optimizer's [`recover`](Optimizer::recover) as the host
    /// path does after a failed update. The updates are not counted on: the caller
    /// runs the same batches again.
    pub fn device_updates_failed(
        &mut self,
        failure: NonFinite,
        theta: &[f64],
        updates: usize,
    ) -> Result<()> {
        self.consecutive += 1;
        self.failures += 1;
        if self.consecutive >= self.config.max_failures {
            // Named by the run's last update; the run's batches are not counted on
            // (they are run again after a recovery).
            self.update += updates;
            let divergence = self.divergence(failure, theta, self.consecutive);
            self.update -= updates;
            return Err(OptimError::Diverged(Box::new(divergence)));
        }
        self.inner.recover(&failure);
        self.inner.forget_cached();
        Ok(())
    }

    fn epoch(&self) -> Option<usize> {
        self.config
            .updates_per_epoch
            .filter(|&u| u > 0)
            .map(|u| 1 + self.update.saturating_sub(1) / u)
    }

    fn divergence(&self, failure: NonFinite, theta: &[f64], failures: usize) -> Divergence {
        let max_weight = theta.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (cause, advice) = likely_cause(
            self.inner.name(),
            &failure,
            failures == 0,
            max_weight,
            self.config.input_scale,
        );
        Divergence {
            optimizer: self.inner.name().to_string(),
            update: self.update,
            epoch: self.epoch(),
            failures,
            failure,
            last_loss: self.last_loss,
            max_weight,
            cause,
            advice,
        }
    }
}

/// The first non-finite figure of a report or θ, as a failure.
fn report_problem(report: &StepReport, theta: &[f64]) -> Option<NonFinite> {
    let scalar = |quantity, point, value: f64| {
        (!value.is_finite()).then_some(NonFinite {
            quantity,
            point,
            index: None,
            value,
        })
    };
    if let Some((index, value)) = first_non_finite(theta) {
        return Some(NonFinite {
            quantity: Quantity::Parameters,
            point: Point::Trial,
            index: Some(index),
            value,
        });
    }
    scalar(Quantity::Loss, Point::Current, report.loss_before)
        .or_else(|| scalar(Quantity::Gradient, Point::Current, report.grad_norm))
        .or_else(|| {
            report
                .loss_after
                .and_then(|l| scalar(Quantity::Loss, Point::Trial, l))
        })
        .or_else(|| scalar(Quantity::Step, Point::Trial, report.step_norm))
}

/// (likely cause, what to try) for a failure, from what the guard can see.
fn likely_cause(
    optimizer: &str,
    failure: &NonFinite,
    at_start: bool,
    max_weight: f64,
    input_scale: Option<f64>,
) -> (String, String) {
    if let Some(s) = input_scale.filter(|&s| s > UNSCALED_INPUT) {
        return (
            format!("the inputs are not scaled (|x| up to {s:.3e})"),
            "standardise the inputs (zero mean, unit variance) or divide them by their range"
                .to_string(),
        );
    }
    if max_weight > OVERFLOWING_WEIGHT {
        return (
            format!("the weights are overflowing (max |θ_i| = {max_weight:.3e})"),
            "a smaller step (learning rate or more damping) or a larger L2 penalty (--l2)"
                .to_string(),
        );
    }
    if at_start {
        return (
            "the network's outputs overflow at the starting weights, or the engine returns NaN"
                .to_string(),
            "start from a fresh initialisation (another --seed) and check the run with --device cpu"
                .to_string(),
        );
    }
    if failure.quantity == Quantity::Gradient && failure.point == Point::Current {
        return (
            "backpropagation overflowed, or the device returned NaN, where the loss was finite"
                .to_string(),
            "the same run with --device cpu, or a smaller step (--set lr=... or damping=...)"
                .to_string(),
        );
    }
    if failure.quantity.is_curvature() {
        return (
            format!(
                "the {} overflowed or the device returned NaN for it",
                failure.quantity
            ),
            "the same run with --device cpu, or a first-order method (gd, lbfgs)".to_string(),
        );
    }
    match optimizer {
        "gd" | "momentum" | "nesterov" | "hessian-diag" | "adam" | "adamw" | "rmsprop"
        | "adagrad" => (
            "the learning rate is too large".to_string(),
            "a learning rate 10 times smaller (--set lr=...)".to_string(),
        ),
        "newton" | "levenberg-marquardt" | "hessian-free" | "kfac" => (
            "the damped curvature system is singular or ill-conditioned".to_string(),
            "a larger initial damping (--set damping=...) or a larger L2 penalty (--l2)"
                .to_string(),
        ),
        _ => (
            "the line search keeps stepping where the loss overflows".to_string(),
            "scaled inputs, a larger L2 penalty (--l2), or levenberg-marquardt".to_string(),
        ),
    }
}

impl Optimizer for Guarded<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn recover(&mut self, what: &NonFinite) {
        self.inner.recover(what);
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        self.update += 1;
        let mut before = std::mem::take(&mut self.spare);
        before.clear();
        before.extend_from_slice(theta);
        let failure = match self.inner.step(engine, theta, rows) {
            Ok(report) => match report_problem(&report, theta) {
                None => {
                    self.started = true;
                    self.last_loss = Some(report.loss_after.unwrap_or(report.loss_before));
                    self.last_grad_norm = report.grad_norm;
                    if report.accepted {
                        self.spare = self.previous.replace(before).unwrap_or_default();
                        self.consecutive_before_accept = self.consecutive;
                    } else {
                        self.spare = before;
                    }
                    self.consecutive = 0;
                    return Ok(report);
                }
                Some(problem) => problem,
            },
            Err(OptimError::NonFinite(problem)) => problem,
            Err(e) => return Err(e),
        };
        theta.copy_from_slice(&before);
        self.spare = before;
        self.fail(failure, theta)
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.previous = None;
        self.consecutive = 0;
    }

    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        self.inner.start_epoch(epoch, epochs);
    }

    fn forget_cached(&mut self) {
        self.inner.forget_cached();
    }

    /// The wrapped optimizer's state: the guard's own counters start afresh on
    /// a resume (a run is only checkpointed between updates, and a failure
    /// streak in progress at an interruption is rare enough not to carry).
    fn export_state(&self) -> OptimizerState {
        self.inner.export_state()
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        self.inner.import_state(state, num_params)
    }

    fn device_rule(&self) -> Option<DeviceRule> {
        self.inner.device_rule()
    }
}

impl Guarded<'_> {
    /// A failed update at θ: undoes the update before it when E or ∇E is already
    /// non-finite at θ (`Point::Current`: that update overflowed), counts the
    /// failure, and recovers — or stops with [`OptimError::Diverged`] after too
    /// many in a row, or when E is non-finite before any update succeeded.
    fn fail(&mut self, failure: NonFinite, theta: &mut [f64]) -> Result<StepReport> {
        if failure.point == Point::Current {
            if failure.quantity == Quantity::Loss && !self.started {
                return Err(OptimError::Diverged(Box::new(
                    self.divergence(failure, theta, 0),
                )));
            }
            // E or ∇E is already NaN at this θ: undo the update that led here.
            if let Some(previous) = self.previous.take() {
                theta.copy_from_slice(&previous);
                self.consecutive = self.consecutive_before_accept;
            }
        }
        self.consecutive += 1;

        self.failures += 1;
        if self.consecutive >= self.config.max_failures {
            return Err(OptimError::Diverged(Box::new(self.divergence(
                failure,
                theta,
                self.consecutive,
            ))));
        }
        self.inner.recover(&failure);
        self.inner.forget_cached();
        // Before any success no loss is known: the report says NaN ("unknown").
        Ok(StepReport::rejected(
            self.last_loss.unwrap_or(f64::NAN),
            self.last_grad_norm,
            None,
            0,
        ))
    }

    /// E found non-finite at θ after the last update by someone else (the
    /// scheduler's evaluation at the end of an epoch: the first-order methods do
    /// not evaluate E after their step): handled as the next update would have
    /// handled it — the update undone, counted, recovered. `Ok(false)` when no
    /// update is there to undo (θ is as given).
    pub fn overflowed_at(&mut self, theta: &mut [f64], loss: f64) -> Result<bool> {
        if self.previous.is_none() {
            return Ok(false);
        }
        let failure = NonFinite {
            quantity: Quantity::Loss,
            point: Point::Current,
            index: None,
            value: loss,
        };
        self.fail(failure, theta)?;
        Ok(true)
    }
}
