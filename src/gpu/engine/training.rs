//! The device path of first-order training ([`DeviceTraining`], `engine/training.rs`):
//! θ, the optimizer's state vectors and the data stay on the device, and one update is
//! one submit of
//!
//! ```text
//!   [lookahead]            nesterov: θ_ahead = θ + μv into the passes' θ buffer
//!   clear ∇E; per slice: forward, colsum (the slice's (1/|rows|) Σ E_n added to the
//!                          run's loss sum), backward (∇E_data into its buffer)
//!   <rule>_step            g = ∇E_data + λ·mask⊙θ, then the rule's update of θ and state
//! ```
//!
//! with nothing read back; `finish_updates` evaluates E on the last batch at the θ
//! reached and reads θ, the state and the losses back, in one submit and one readback. Each update's constants (η, Adam's bias corrections, Adagrad's decayed
//! rate) are computed here in f64 from (η, t) and uploaded as its f32 uniforms, so a
//! run split in two (a checkpoint and a resume) makes the same updates bit for bit as
//! one run. For Nesterov θ lives in `base` and the passes' θ buffer holds the look-ahead.

use super::GpuEngine;
use crate::engine::{DeviceRule, DeviceTraining, DeviceUpdates, UpdateRule};
use crate::error::{Error, Result};
use crate::gpu::context::{GpuBuffer, Op, Readback};
use crate::gpu::kernels::{elementwise_groups, Kernel};
use crate::gpu::params::{flag, u, ReduceParams, UpdateParams};
use std::ops::Range;

/// The device path's buffers, made on its first use and kept by the engine (no
/// allocation per update or per epoch).
pub(super) struct TrainingBuffers {
    /// 1 on weight entries, 0 on biases (W): the L2 term and AdamW's decay.
    mask: GpuBuffer,
    /// The rule's state vectors (W each), in its slot order.
    slots: [GpuBuffer; 3],
    /// θ (W) of Nesterov's updates (the passes run at the look-ahead).
    base: GpuBuffer,
    /// [Σ of the run's batch losses, the last batch's loss at the final θ] (2).
    loss: GpuBuffer,
}

/// A run of updates in progress: from `begin_updates` to `finish_updates`.
pub(super) struct Updates {
    rule: DeviceRule,
    l2: f64,
    /// t, the steps taken (counted on from the optimizer's).
    step: usize,
    /// Updates made in this run.
    made: usize,
    /// The rows of the last update.
    last_rows: Option<Range<usize>>,
}

impl Updates {
    fn nesterov(&self) -> bool {
        matches!(
            self.rule.update,
            UpdateRule::GradientDescent { nesterov: true, .. }
        )
    }

    /// The step kernel of the rule and its uniforms for update t = `self.step + 1`
    /// over W entries, every constant computed in f64 (as the host optimizers do)
    /// and rounded once to f32.
    fn step_params(&self, w: usize) -> (Kernel, UpdateParams) {
        let t = self.step + 1;
        let eta = self.rule.learning_rate;
        let base = UpdateParams {
            count: u(w),
            w: u(w),
            rate: eta as f32,
            l2: self.l2 as f32,
            shrink: 1.0,
            ..UpdateParams::default()
        };
        let power = |beta: f64| beta.powi(i32::try_from(t).unwrap_or(i32::MAX));
        match self.rule.update {
            UpdateRule::GradientDescent { momentum, nesterov } => (
                if nesterov {
                    Kernel::NesterovStep
                } else {
                    Kernel::SgdStep
                },
                UpdateParams {
                    k1: momentum as f32,
                    ..base
                },
            ),
            UpdateRule::Adam {
                beta1,
                beta2,
                eps,
                amsgrad,
                weight_decay,
            } => (
                Kernel::AdamStep,
                UpdateParams {
                    rate: (eta / (1.0 - power(beta1))) as f32,
                    k1: beta1 as f32,
                    k1c: (1.0 - beta1) as f32,
                    k2: beta2 as f32,
                    k2c: (1.0 - beta2) as f32,
                    bias2: (1.0 - power(beta2)).sqrt() as f32,
                    shrink: weight_decay.map_or(1.0, |wd| (1.0 - eta * wd) as f32),
                    eps: eps as f32,
                    flags: flag(amsgrad),
                    ..base
                },
            ),
            UpdateRule::RmsProp {
                alpha,
                eps,
                momentum,
                centered,
            } => (
                Kernel::RmspropStep,
                UpdateParams {
                    k1: alpha as f32,
                    k1c: (1.0 - alpha) as f32,
                    k2: momentum as f32,
                    eps: eps as f32,
                    flags: flag(centered) | (flag(momentum > 0.0) << 1),
                    ..base
                },
            ),
            UpdateRule::Adagrad { lr_decay, eps } => (
                Kernel::AdagradStep,
                UpdateParams {
                    rate: (eta / (1.0 + (t - 1) as f64 * lr_decay)) as f32,
                    eps: eps as f32,
                    ..base
                },
            ),
        }
    }
}

impl GpuEngine {
    /// The device path's buffers, made (and the weight mask uploaded) on first use.
    fn training_buffers(&mut self) -> Result<&TrainingBuffers> {
        if self.training.is_none() {
            let w = self.num_params;
            let buffers = TrainingBuffers {
                mask: self.ctx.buffer("weight mask", w)?,
                slots: [
                    self.ctx.buffer("optimizer state 1", w)?,
                    self.ctx.buffer("optimizer state 2", w)?,
                    self.ctx.buffer("optimizer state 3", w)?,
                ],
                base: self.ctx.buffer("θ (look-ahead base)", w)?,
                loss: self.ctx.buffer("batch losses", 2)?,
            };
            let mask: Vec<f32> = self.mlp.weight_mask().iter().map(|&m| m as f32).collect();
            self.ctx.write(&buffers.mask, 0, &mask);
            self.training = Some(buffers);
        }
        self.training
            .as_ref()
            .ok_or_else(|| Error::Internal("device training buffers".into()))
    }

    /// Records the forward pass over `rows` (and with `grad` the backward pass, ∇E_data
    /// accumulated into the gradient's buffer) with the batch loss (1/|rows|) Σ E_n
    /// added to `loss` at its index: each slice's column sum of E_n goes there scaled,
    /// in slice order (no separate sum of the slices' sums).
    fn record_batch_loss(
        &self,
        op: &mut Op,
        rows: &Range<usize>,
        (loss, at): (&GpuBuffer, usize),
        grad: bool,
    ) {
        let scale = 1.0 / rows.len() as f32;
        for s in self.slices(rows, self.chunk_rows) {
            self.record_forward(op, &s, scale, None);
            op.dispatch(
                Kernel::Colsum,
                &[&self.bufs.row_loss, loss],
                ReduceParams {
                    rows: u(s.n),
                    cols: 1,
                    src_rs: 1,
                    dst_off: u(at),
                    accumulate: 1,
                    scale,
                    ..ReduceParams::default()
                },
                [1, 1, 1],
            );
            if grad {
                self.record_backward(op, &s, Some(&self.bufs.grad));
            }
        }
    }

    fn shape_error(&self, what: &str, len: usize) -> Error {
        Error::Shape(format!(
            "device updates: {what} has {len} entries, expected W = {}",
            self.num_params
        ))
    }
}

impl DeviceTraining for GpuEngine {
    fn begin_updates(
        &mut self,
        rule: &DeviceRule,
        theta: &[f64],
        state: &[Vec<f64>; 3],
        step: usize,
        l2: f64,
    ) -> Result<()> {
        let w = self.num_params;
        if theta.len() != w {
            return Err(self.shape_error("θ", theta.len()));
        }
        for (slot, vector) in rule.slots.iter().zip(state) {
            if let Some(slot) = slot {
                if vector.len() != w {
                    return Err(self.shape_error(slot.key, vector.len()));
                }
            }
        }
        let run = Updates {
            rule: rule.clone(),
            l2,
            step,
            made: 0,
            last_rows: None,
        };
        let nesterov = run.nesterov();
        self.training_buffers()?;
        let Some(bufs) = &self.training else {
            return Err(Error::Internal("device training buffers".into()));
        };
        let to_f32 = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        let theta_buffer = if nesterov {
            &bufs.base
        } else {
            &self.bufs.theta
        };
        self.ctx.write(theta_buffer, 0, &to_f32(theta));
        for ((slot, vector), buffer) in rule.slots.iter().zip(state).zip(&bufs.slots) {
            if slot.is_some() {
                self.ctx.write(buffer, 0, &to_f32(vector));
            }
        }
        self.ctx.write(&bufs.loss, 0, &[0.0, 0.0]);
        // The passes' θ buffer now changes with every update.
        self.passes = None;
        self.updates = Some(run);
        Ok(())
    }

    fn device_update(&mut self, rows: Range<usize>) -> Result<()> {
        if rows.is_empty() || rows.end > self.num_rows {
            return Err(Error::Shape(format!(
                "device update on rows {rows:?} of {} bound rows",
                self.num_rows
            )));
        }
        let w = self.num_params;
        let (Some(run), Some(bufs)) = (&self.updates, &self.training) else {
            return Err(Error::Internal(
                "a device update without begin_updates".into(),
            ));
        };
        let (kernel, params) = run.step_params(w);
        let nesterov = run.nesterov();
        let mut op = Op::new("device update");
        if nesterov {
            op.dispatch(
                Kernel::Lookahead,
                &[&bufs.base, &bufs.slots[0], &self.bufs.theta],
                params,
                elementwise_groups(w),
            );
        }
        op.clear(&self.bufs.grad);
        self.record_batch_loss(&mut op, &rows, (&bufs.loss, 0), true);
        let [s1, s2, s3] = &bufs.slots;
        let (grad, mask) = (&self.bufs.grad, &bufs.mask);
        let buffers: Vec<&GpuBuffer> = match kernel {
            Kernel::NesterovStep => vec![grad, mask, &bufs.base, s1, &self.bufs.theta],
            Kernel::AdamStep | Kernel::RmspropStep => {
                vec![grad, mask, &self.bufs.theta, s1, s2, s3]
            }
            _ => vec![grad, mask, &self.bufs.theta, s1],
        };
        op.dispatch(kernel, &buffers, params, elementwise_groups(w));
        self.runner.run(op, None)?;
        if let Some(run) = &mut self.updates {
            run.step += 1;
            run.made += 1;
            run.last_rows = Some(rows);
        }
        Ok(())
    }

    fn finish_updates(&mut self) -> Result<DeviceUpdates> {
        let w = self.num_params;
        let (Some(run), Some(bufs)) = (self.updates.take(), &self.training) else {
            return Err(Error::Internal(
                "finishing device updates without begin_updates".into(),
            ));
        };
        let nesterov = run.nesterov();
        let theta_buffer = if nesterov {
            &bufs.base
        } else {
            &self.bufs.theta
        };
        // E on the last batch at the θ reached (the host path's E at the trial
        // point of its last update), recorded into the readback's own submit.
        let mut op = Op::new("device updates: read back");
        if let Some(rows) = &run.last_rows {
            if nesterov {
                op.copy(&bufs.base, &self.bufs.theta);
            }
            self.record_batch_loss(&mut op, rows, (&bufs.loss, 1), false);
        }
        let mut ranges: Vec<Readback> = vec![(theta_buffer, 0, w), (&bufs.loss, 0, 2)];
        for (slot, buffer) in run.rule.slots.iter().zip(&bufs.slots) {
            ranges.push((buffer, 0, if slot.is_some() { w } else { 0 }));
        }
        let mut back = self
            .runner
            .run_gather(op, &ranges)?
            .into_iter()
            .map(|v| v.into_iter().map(f64::from).collect::<Vec<f64>>());
        let mut next = || back.next().unwrap_or_default();
        let theta = next();
        let losses = next();
        let state = [next(), next(), next()];
        let loss = |i: usize| losses.get(i).copied().unwrap_or(f64::NAN);
        Ok(DeviceUpdates {
            theta,
            state,
            updates: run.made,
            loss_sum: loss(0),
            final_loss: if run.made > 0 { loss(1) } else { f64::NAN },
        })
    }
}
