//! Gradient descent, full-batch or mini-batch (the scheduler chooses the rows),
//! with optional momentum, classical or Nesterov.
//!
//! - plain:     θ ← θ − η ∇E(θ)                         (PRML 5.41)
//! - classical: v ← μ v − η ∇E(θ),        θ ← θ + v      (Polyak's heavy ball)
//! - Nesterov:  v ← μ v − η ∇E(θ + μ v),  θ ← θ + v      (Sutskever et al. 2013)
//!
//! Defaults: η = 0.1, μ = 0.9 (momentum variants), v₀ = 0. Every finite step
//! is accepted: a first-order step is not checked against the loss, and costs
//! one gradient (two for Nesterov), as in PyTorch: E is not evaluated again at
//! the new θ (the next update's E there is the check).
//!
//! η is the scheduled rate ([`schedule`](super::schedule): constant unless a
//! schedule is set), changed once per epoch. It sits inside the velocity
//! (v ← μv − η∇E), so a change of η acts on the new gradient only; PyTorch's
//! SGD keeps η outside (v ← μv + ∇E, θ ← θ − ηv), which is the same update
//! while η is constant.
//!
//! Divergence: a NaN or ∞ in E or ∇E (at θ or at the look-ahead point), in the
//! step or in the new θ returns [`OptimError::NonFinite`](super::OptimError::NonFinite)
//! with θ and v unchanged; [`Optimizer::recover`] then halves η and zeroes v
//! (the velocity carried the step that overflowed). E or ∇E non-finite at θ
//! means the previous update overflowed: the guard undoes it first.

use super::finite::{check_slice, start_loss_grad, NonFinite, Point, Quantity};
use super::schedule::{LearningRate, Schedule};
use super::vector::{added, fast_norm, sum_of_squares};
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use crate::engine::{DeviceRule, StateSlot, UpdateRule};
use std::ops::Range;

/// Which momentum, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Momentum {
    None,
    Classical,
    Nesterov,
}

/// Parameters of [`GradientDescent`].
#[derive(Clone, Debug, PartialEq)]
pub struct GdConfig {
    /// η, the learning rate (default 0.1).
    pub learning_rate: f64,
    /// μ, the momentum coefficient (default 0.9; unused without momentum).
    pub momentum: f64,
    pub kind: Momentum,
    /// η's schedule over the epochs (default constant).
    pub schedule: Schedule,
}

impl GdConfig {
    pub fn new(kind: Momentum) -> GdConfig {
        GdConfig {
            learning_rate: 0.1,
            momentum: 0.9,
            kind,
            schedule: Schedule::default(),
        }
    }
}

/// Gradient descent; its state is the velocity v (W).
#[derive(Clone, Debug)]
pub struct GradientDescent {
    config: GdConfig,
    /// η: configured, halved by each recovery, scheduled per epoch.
    lr: LearningRate,
    velocity: Vec<f64>,
    /// The next velocity, built here and swapped in when the step commits (a
    /// buffer kept across steps: no allocation per update).
    next: Vec<f64>,
}

impl GradientDescent {
    pub fn new(config: GdConfig) -> GradientDescent {
        GradientDescent {
            lr: LearningRate::new(config.learning_rate, config.schedule.clone()),
            config,
            velocity: Vec::new(),
            next: Vec::new(),
        }
    }

    /// η of the next update (scheduled, halved by each recovery).
    pub fn learning_rate(&self) -> f64 {
        self.lr.now()
    }
}

impl Optimizer for GradientDescent {
    fn name(&self) -> &str {
        match self.config.kind {
            Momentum::None => "gd",
            Momentum::Classical => "momentum",
            Momentum::Nesterov => "nesterov",
        }
    }

    /// η ← η/2 and v ← 0: the step that overflowed was too long.
    fn recover(&mut self, _what: &NonFinite) {
        self.lr.halve();
        self.velocity.iter_mut().for_each(|v| *v = 0.0);
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
        let (eta, mu) = (self.lr.now(), self.config.momentum);
        if self.velocity.len() != theta.len() {
            self.velocity = vec![0.0; theta.len()];
        }
        let w = theta.len();
        let (loss_before, grad) = start_loss_grad(engine, theta, rows.clone())?;
        let grad_norm = fast_norm(&grad);
        // The gradient that drives the update: at θ, or at the look-ahead θ + μv.
        let drive = match self.config.kind {
            Momentum::Nesterov => {
                let ahead = added(theta, mu, &self.velocity);
                let g_ahead = engine.loss_grad(&ahead, rows.clone())?.1;
                check_slice(Quantity::Gradient, Point::Trial, &g_ahead)?;
                g_ahead
            }
            _ => grad,
        };
        let keep = if self.config.kind == Momentum::None {
            0.0
        } else {
            mu
        };
        // The new velocity is built aside and committed only when it and θ + v
        // are finite, so a failed step leaves θ and v as they were.
        self.next.resize(w, 0.0);
        let mut finite = true;
        for ((next, v), (g, t)) in self
            .next
            .iter_mut()
            .zip(&self.velocity)
            .zip(drive.iter().zip(theta.iter()))
        {
            *next = v * keep - eta * g;
            finite &= (t + *next).is_finite();
        }
        let v_sq = sum_of_squares(&self.next);
        if !(finite && v_sq.is_finite()) {
            // Name the first offending entry.
            check_slice(Quantity::Step, Point::Trial, &self.next)?;
            check_slice(
                Quantity::Parameters,
                Point::Trial,
                &added(theta, 1.0, &self.next),
            )?;
        }
        for (t, v) in theta.iter_mut().zip(&self.next) {
            *t += v;
        }
        std::mem::swap(&mut self.velocity, &mut self.next);
        Ok(StepReport {
            loss_before,
            loss_after: None,
            grad_norm,
            step_norm: v_sq.sqrt(),
            damping: None,
            inner_iterations: 0,
            accepted: true,
        })
    }

    fn reset(&mut self) {
        self.velocity.clear();
        self.lr.reset();
    }

    fn export_state(&self) -> OptimizerState {
        // η (before its schedule) is state: a recovery from NaN halves it.
        // v₀ = 0 is made at the first step, so there is no velocity before it.
        OptimizerState::new(self.name())
            .with_scalar("learning_rate", self.lr.base())
            .with_vector_if_made("velocity", &self.velocity)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let learning_rate = r.positive("learning_rate")?;
        let velocity = r.optional_tensor("velocity", &[num_params])?;
        r.finish()?;
        self.lr.set_base(learning_rate);
        self.velocity = velocity.unwrap_or_default();
        Ok(())
    }

    /// v ← μv − η∇E (μ = 0 for `gd`, whose v is then −η∇E, as here), at the
    /// look-ahead θ + μv for Nesterov; the state is the exported velocity.
    fn device_rule(&self) -> Option<DeviceRule> {
        Some(DeviceRule {
            update: UpdateRule::GradientDescent {
                momentum: match self.config.kind {
                    Momentum::None => 0.0,
                    Momentum::Classical | Momentum::Nesterov => self.config.momentum,
                },
                nesterov: self.config.kind == Momentum::Nesterov,
            },
            learning_rate: self.lr.now(),
            slots: [
                Some(StateSlot {
                    key: "velocity",
                    initial: 0.0,
                }),
                None,
                None,
            ],
            step_key: None,
        })
    }
}
