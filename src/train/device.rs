//! The device path of the epoch loop: first-order updates with θ and the optimizer's
//! state on the device, one submit per update (`engine::training`).
//!
//! The scheduler takes it when the optimizer describes its rule
//! ([`Optimizer::device_rule`](crate::optim::Optimizer::device_rule): the first-order
//! methods) and the training engine offers the capability
//! ([`Backend::device_training`](crate::engine::Backend::device_training): the GPU
//! engine; behind `--verify every` or `--verify-every K > 0` not, whose checks need
//! every update's gradient on the host; `--verify auto` splits a run where it checks);
//! otherwise every update is an optimizer step on the host, as before.
//!
//! A device run covers the epoch's batches from `next_row` to its end: the
//! optimizer's state is exported ([`Optimizer::export_state`]) and uploaded with θ,
//! each batch is one update (one submit, nothing read back), and at the end θ, the
//! state and the sum of the batch losses come back in one readback; the state goes
//! back into the optimizer through [`Optimizer::import_state`], so a checkpoint holds
//! exactly what the host path would write, and a run resumed on the same device
//! continues bit for bit. Between two updates the interrupt flag is polled and the
//! callbacks are told, as on the host path, so a pause lands on the same update
//! boundary; their reports carry no losses ([`StepReport::on_device`]).
//!
//! ## NaN and ∞: how this differs from the host path
//! The host path checks every update (its E, ∇E, step and E at the trial point) and
//! undoes the one that failed; the rest of the epoch goes on. On the device nothing
//! is read back between updates, so detection is **per run, at its end**: a
//! non-finite batch loss (each update's at the θ it starts from, summed — the losses
//! are ≥ 0, so the sum is finite exactly when all are — and the last batch's at the
//! final θ), θ or state vector undoes the **whole run** — θ and the optimizer's state are
//! those of the run's start, which the host still holds — counts **one** failure in
//! the guard's streak ([`Guarded::device_updates_failed`]: after `max_failures` runs
//! in a row it stops with `Diverged`), applies the optimizer's own `recover` (η
//! halved; gd also zeroes v, rmsprop b), counts the run's updates as rejected, and
//! runs the same batches again with the recovered state. A NaN also costs the
//! updates before it in the run, and the epoch's record follows the rerun.

use super::callback::any_stop;
use super::resume::TrainState;
use super::scheduler::{Batches, Scheduler};
use crate::engine::{DeviceRule, DeviceUpdates};
use crate::optim::finite::{first_non_finite, NonFinite, Point, Quantity};
use crate::optim::state::StateTensor;
use crate::optim::{OptimError, Optimizer, OptimizerState, Result, StepReport};
use std::sync::atomic::Ordering;

impl Scheduler<'_, '_, '_> {
    /// The optimizer's rule when the device path can run it: the optimizer describes
    /// one and the training engine offers device updates.
    pub(super) fn device_rule(&mut self) -> Option<DeviceRule> {
        let rule = self.optimizer.device_rule()?;
        self.engines.training.device_training()?;
        Some(rule)
    }

    /// The epoch's batches from `state.next_row` to its end on the device (see the
    /// module doc), rerun after a recovered failure.
    pub(super) fn run_device_batches(&mut self, state: &mut TrainState) -> Result<Batches> {
        let n = self.train.x.nrows();
        let w = self.theta.len();
        let batch = self.batch;
        let interrupt = self.interrupt;
        loop {
            let start = state.next_row;
            let saved = self.optimizer.export_state();
            let Some(rule) = self.optimizer.device_rule() else {
                return Err(device_path_lost("the optimizer"));
            };
            let (vectors, step) = state_vectors(&rule, &saved, w);
            let l2 = self.engines.training.mlp().l2();
            let Some(device) = self.engines.training.device_training() else {
                return Err(device_path_lost("the engine"));
            };
            device.begin_updates(&rule, self.theta, &vectors, step, l2)?;
            let mut end = Batches::Done;
            while state.next_row < n {
                let rows = state.next_row..(state.next_row + batch).min(n);
                state.next_row = rows.end;
                device.device_update(rows)?;
                if any_stop(self.callbacks, |cb| {
                    cb.on_update_end(&StepReport::on_device())
                }) {
                    end = Batches::StoppedByCallback;
                    break;
                }
                if state.next_row < n && interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                    end = Batches::Paused;
                    break;
                }
            }
            let out = device.finish_updates()?;
            match first_problem(&out) {
                None => {
                    let updated = updated_state(&rule, saved, &out, step);
                    self.optimizer
                        .import_state(&updated, w)
                        .map_err(|e| OptimError::Training(format!("device updates: {e}")))?;
                    self.theta.copy_from_slice(&out.theta);
                    state.epoch_updates += out.updates;
                    let mean_loss = out.loss_sum / out.updates.max(1) as f64;
                    self.optimizer
                        .device_updates_succeeded(out.updates, mean_loss);
                    return Ok(end);
                }
                Some(failure) => {
                    // θ and the optimizer were left as at the run's start.
                    state.next_row = start;
                    state.epoch_rejected += out.updates;
                    self.optimizer
                        .device_updates_failed(failure, self.theta, out.updates)?;
                    if !matches!(end, Batches::Done) {
                        return Ok(end);
                    }
                }
            }
        }
    }
}

/// The device path was offered and then not: an internal error (neither an
/// optimizer nor an engine changes its mind between two calls).
fn device_path_lost(which: &str) -> OptimError {
    OptimError::Training(format!(
        "{which} stopped offering device updates in the middle of an epoch"
    ))
}

/// The rule's state vectors (W each, in its slot order; empty for unused slots) from
/// the optimizer's exported state — a slot not made yet (before the first step)
/// holds its initial value — and t, the steps taken.
fn state_vectors(rule: &DeviceRule, saved: &OptimizerState, w: usize) -> ([Vec<f64>; 3], usize) {
    let vector = |k: usize| match &rule.slots[k] {
        None => Vec::new(),
        Some(slot) => match saved.tensors.get(slot.key) {
            Some(t) if t.data.len() == w => t.data.clone(),
            _ => vec![slot.initial; w],
        },
    };
    let step = rule
        .step_key
        .and_then(|key| saved.scalars.get(key))
        .map_or(0, |&t| t as usize);
    ([vector(0), vector(1), vector(2)], step)
}

/// The optimizer's state after the device's updates: `saved` with the state vectors
/// read back and t counted on.
fn updated_state(
    rule: &DeviceRule,
    mut saved: OptimizerState,
    out: &DeviceUpdates,
    step: usize,
) -> OptimizerState {
    for (slot, data) in rule.slots.iter().zip(&out.state) {
        if let Some(slot) = slot {
            saved.tensors.insert(
                slot.key.to_string(),
                StateTensor {
                    shape: vec![data.len()],
                    data: data.clone(),
                },
            );
        }
    }
    if let Some(key) = rule.step_key {
        saved
            .scalars
            .insert(key.to_string(), (step + out.updates) as f64);
    }
    saved
}

/// The first NaN or ∞ of a device run: in θ, in the batch losses (each at the point
/// its update started from, and the last batch's at the final θ), in the state.
fn first_problem(out: &DeviceUpdates) -> Option<NonFinite> {
    let at = |quantity, (index, value)| NonFinite {
        quantity,
        point: Point::Trial,
        index: Some(index),
        value,
    };
    if let Some(bad) = first_non_finite(&out.theta) {
        return Some(at(Quantity::Parameters, bad));
    }
    if let Some(value) = [out.loss_sum, out.final_loss]
        .into_iter()
        .find(|v| !v.is_finite())
    {
        return Some(NonFinite {
            quantity: Quantity::Loss,
            point: Point::Trial,
            index: None,
            value,
        });
    }
    out.state
        .iter()
        .find_map(first_non_finite)
        .map(|bad| at(Quantity::Step, bad))
}
