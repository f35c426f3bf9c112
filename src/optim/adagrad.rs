//! Adagrad (Duchi, Hazan & Singer 2011), with PyTorch's parameterisation,
//! update rule and defaults (`torch.optim.Adagrad`).
//!
//! Step t = 1, 2, … with g = ∇E(θ) on the batch, η the scheduled rate
//! ([`schedule`](super::schedule)) and the sum s₀ = τ (every entry):
//!
//! ```text
//! η̃ = η / (1 + (t − 1)·lr_decay)
//! s ← s + g²
//! θ ← θ − η̃ · g / (√s + ε)
//! ```
//!
//! Defaults: `lr` 1e-2, `lr-decay` 0, `initial-accumulator-value` (τ) 0,
//! `eps` 1e-10. PyTorch's `weight_decay` (λθ added to g) is E's own `--l2`
//! penalty here, on weights only, already in ∇E. `lr-decay` acts per update,
//! as in PyTorch; a schedule acts per epoch, on top of it.
//!
//! Divergence: a NaN or ∞ in ∇E, the update or E at the new θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite) with θ, s and t
//! unchanged; [`Optimizer::recover`] then halves η and keeps s and t.

use super::finite::{start_loss_grad, NonFinite};
use super::first_order::{commit_trial, made_or};
use super::schedule::{LearningRate, Schedule};
use super::vector::fast_norm;
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use crate::engine::{DeviceRule, StateSlot, UpdateRule};
use std::ops::Range;

/// Parameters of [`Adagrad`] (the module doc gives the update).
#[derive(Clone, Debug, PartialEq)]
pub struct AdagradConfig {
    /// η (default 1e-2).
    pub learning_rate: f64,
    /// η's decay per update (default 0).
    pub lr_decay: f64,
    /// τ, every entry of the sum before the first step (default 0).
    pub initial_accumulator_value: f64,
    /// ε, added to the denominator (default 1e-10).
    pub eps: f64,
    pub schedule: Schedule,
}

impl Default for AdagradConfig {
    fn default() -> AdagradConfig {
        AdagradConfig {
            learning_rate: 1e-2,
            lr_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            schedule: Schedule::default(),
        }
    }
}

/// Adagrad; its state is t, the sum s (W) and η.
#[derive(Clone, Debug)]
pub struct Adagrad {
    config: AdagradConfig,
    lr: LearningRate,
    /// t, the steps taken.
    step: usize,
    sum: Vec<f64>,
}

impl Adagrad {
    pub fn new(config: AdagradConfig) -> Adagrad {
        Adagrad {
            lr: LearningRate::new(config.learning_rate, config.schedule.clone()),
            config,
            step: 0,
            sum: Vec::new(),
        }
    }

    /// η of the next update before `lr-decay` (scheduled, halved by each recovery).
    pub fn learning_rate(&self) -> f64 {
        self.lr.now()
    }
}

impl Optimizer for Adagrad {
    fn name(&self) -> &str {
        "adagrad"
    }

    /// η ← η/2; s and t are kept.
    fn recover(&mut self, _what: &NonFinite) {
        self.lr.halve();
    }

    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        self.lr.start_epoch(epoch, epochs);
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let c = &self.config;
        let (loss_before, grad) = start_loss_grad(engine, theta, rows)?;
        let t = self.step + 1;
        let clr = self.lr.now() / (1.0 + (t - 1) as f64 * c.lr_decay);
        let mut sum = made_or(&self.sum, theta.len(), c.initial_accumulator_value);
        let mut trial = theta.to_vec();
        for ((x, s), g) in trial.iter_mut().zip(&mut sum).zip(&grad) {
            *s += g * g;
            *x -= clr * g / (s.sqrt() + c.eps);
        }
        let report = commit_trial(theta, &trial, loss_before, fast_norm(&grad))?;
        self.step = t;
        self.sum = sum;
        Ok(report)
    }

    fn reset(&mut self) {
        self.step = 0;
        self.sum.clear();
        self.lr.reset();
    }

    fn export_state(&self) -> OptimizerState {
        // The sum is made at the first step: absent before it (t = 0).
        OptimizerState::new(self.name())
            .with_scalar("learning_rate", self.lr.base())
            .with_scalar("step", self.step as f64)
            .with_vector_if_made("sum", &self.sum)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let learning_rate = r.positive("learning_rate")?;
        let step = r.count("step")?;
        let sum = if step == 0 {
            Vec::new()
        } else {
            r.tensor("sum", &[num_params])?
        };
        r.finish()?;
        self.lr.set_base(learning_rate);
        self.step = step;
        self.sum = sum;
        Ok(())
    }

    /// The update above in f32 on the device; the state is the exported sum
    /// (τ before the first step) and t (`step`).
    fn device_rule(&self) -> Option<DeviceRule> {
        let c = &self.config;
        Some(DeviceRule {
            update: UpdateRule::Adagrad {
                lr_decay: c.lr_decay,
                eps: c.eps,
            },
            learning_rate: self.lr.now(),
            slots: [
                Some(StateSlot {
                    key: "sum",
                    initial: c.initial_accumulator_value,
                }),
                None,
                None,
            ],
            step_key: Some("step"),
        })
    }
}
