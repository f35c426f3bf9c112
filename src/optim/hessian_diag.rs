//! The Hessian-diagonal method (PRML §5.4.1, Becker & LeCun 1989):
//!
//!   Δ_i = −η g_i / max(|d_i|, m)
//!
//! a Newton step with H replaced by its diagonal d (W). d is the EXACT
//! diagonal of H (default; `Curvature::diag_hessian`) or the Becker-LeCun
//! approximation (PRML 5.79–5.81; `diag_becker_lecun`). |d| keeps the step a
//! descent direction where H has negative diagonal entries, and the floor m
//! (`min_eigval`) bounds the step where the curvature vanishes — neupy's
//! HessianDiagonal computed block row sums of H instead of its diagonal.
//!
//! Defaults (neupy's): η = 0.1, m = 0.01, exact diagonal. Every step is accepted.

use super::vector::norm;
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::curvature::Curvature;
use std::ops::Range;

/// Which diagonal of H the step divides by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagonalKind {
    /// The exact diag(H).
    Exact,
    /// The Becker-LeCun approximation (PRML 5.81).
    BeckerLeCun,
}

/// Parameters of [`HessianDiagonal`].
#[derive(Clone, Debug, PartialEq)]
pub struct HessianDiagConfig {
    /// η (default 0.1).
    pub learning_rate: f64,
    /// m, the floor on |d_i| (default 0.01).
    pub min_eigval: f64,
    /// The diagonal used (default exact).
    pub diagonal: DiagonalKind,
}

impl Default for HessianDiagConfig {
    fn default() -> HessianDiagConfig {
        HessianDiagConfig {
            learning_rate: 0.1,
            min_eigval: 0.01,
            diagonal: DiagonalKind::Exact,
        }
    }
}

/// The Hessian-diagonal method; stateless between steps.
#[derive(Clone, Debug)]
pub struct HessianDiagonal {
    config: HessianDiagConfig,
}

impl HessianDiagonal {
    pub fn new(config: HessianDiagConfig) -> HessianDiagonal {
        HessianDiagonal { config }
    }
}

impl Optimizer for HessianDiagonal {
    fn name(&self) -> &str {
        "hessian-diag"
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let (loss_before, grad) = engine.loss_grad(theta, rows.clone())?;
        let diag = match self.config.diagonal {
            DiagonalKind::Exact => engine.diag_hessian(theta, rows.clone())?,
            DiagonalKind::BeckerLeCun => engine.diag_becker_lecun(theta, rows.clone())?,
        };
        let (eta, floor) = (self.config.learning_rate, self.config.min_eigval);
        let mut step_sq = 0.0;
        for ((t, g), d) in theta.iter_mut().zip(&grad).zip(&diag) {
            let delta = -eta * g / d.abs().max(floor);
            *t += delta;
            step_sq += delta * delta;
        }
        let loss_after = engine.loss(theta, rows)?;
        Ok(StepReport {
            loss_before,
            loss_after,
            grad_norm: norm(&grad),
            step_norm: step_sq.sqrt(),
            damping: None,
            inner_iterations: 0,
            accepted: true,
        })
    }

    /// Stateless between steps: an empty state.
    fn export_state(&self) -> OptimizerState {
        OptimizerState::new(self.name())
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        _num_params: usize,
    ) -> Result<(), StateError> {
        state.reader(self.name())?.finish()
    }
}
