//! Gradient descent, full-batch or mini-batch (the scheduler chooses the rows),
//! with optional momentum, classical or Nesterov.
//!
//! - plain:     θ ← θ − η ∇E(θ)                         (PRML 5.41)
//! - classical: v ← μ v − η ∇E(θ),        θ ← θ + v      (Polyak's heavy ball)
//! - Nesterov:  v ← μ v − η ∇E(θ + μ v),  θ ← θ + v      (Sutskever et al. 2013)
//!
//! Defaults: η = 0.1, μ = 0.9 (momentum variants), v₀ = 0. Every step is
//! accepted: a first-order step is not checked against the loss.

use super::vector::{added, axpy, norm};
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::curvature::Curvature;
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
}

impl GdConfig {
    pub fn new(kind: Momentum) -> GdConfig {
        GdConfig {
            learning_rate: 0.1,
            momentum: 0.9,
            kind,
        }
    }
}

/// Gradient descent; its state is the velocity v (W).
#[derive(Clone, Debug)]
pub struct GradientDescent {
    config: GdConfig,
    velocity: Vec<f64>,
}

impl GradientDescent {
    pub fn new(config: GdConfig) -> GradientDescent {
        GradientDescent {
            config,
            velocity: Vec::new(),
        }
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

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let (eta, mu) = (self.config.learning_rate, self.config.momentum);
        if self.velocity.len() != theta.len() {
            self.velocity = vec![0.0; theta.len()];
        }
        let (loss_before, grad) = engine.loss_grad(theta, rows.clone())?;
        let grad_norm = norm(&grad);
        // The gradient that drives the update: at θ, or at the look-ahead θ + μv.
        let drive = match self.config.kind {
            Momentum::Nesterov => {
                let ahead = added(theta, mu, &self.velocity);
                engine.loss_grad(&ahead, rows.clone())?.1
            }
            _ => grad,
        };
        let keep = if self.config.kind == Momentum::None {
            0.0
        } else {
            mu
        };
        for v in &mut self.velocity {
            *v *= keep;
        }
        axpy(-eta, &drive, &mut self.velocity);
        axpy(1.0, &self.velocity, theta);
        let loss_after = engine.loss(theta, rows)?;
        Ok(StepReport {
            loss_before,
            loss_after,
            grad_norm,
            step_norm: norm(&self.velocity),
            damping: None,
            inner_iterations: 0,
            accepted: true,
        })
    }

    fn reset(&mut self) {
        self.velocity.clear();
    }

    fn export_state(&self) -> OptimizerState {
        let state = OptimizerState::new(self.name());
        if self.velocity.is_empty() {
            return state; // before the first step: v₀ = 0 is made at the first step
        }
        state.with_tensor("velocity", vec![self.velocity.len()], self.velocity.clone())
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let velocity = r.optional_tensor("velocity", &[num_params])?;
        r.finish()?;
        self.velocity = velocity.unwrap_or_default();
        Ok(())
    }
}
