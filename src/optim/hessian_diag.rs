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
//! Defaults (neupy's): η = 0.1, m = 0.01, exact diagonal. Every finite step is
//! accepted.
//!
//! Divergence: a NaN or ∞ in E, ∇E, the diagonal, or E at the new θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite) with θ unchanged;
//! [`Optimizer::recover`] then halves η and doubles the floor m, so the step
//! shrinks at least ×2 everywhere and ×4 where |d_i| is below the floor (the
//! coordinates whose tiny curvature made the step blow up).

use super::finite::{check_scalar, check_slice, start_loss_grad, NonFinite, Point, Quantity};
use super::vector::norm;
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::{Curvature, Diagonal};
use std::ops::Range;

/// Parameters of [`HessianDiagonal`].
#[derive(Clone, Debug, PartialEq)]
pub struct HessianDiagConfig {
    /// η (default 0.1).
    pub learning_rate: f64,
    /// m, the floor on |d_i| (default 0.01).
    pub min_eigval: f64,
    /// The diagonal used: exact diag(H) (`Diagonal::Hessian`, the default), Becker-LeCun,
    /// or diag(G) (`diagonal=ggn`: positive, so no floor is ever reached from below).
    pub diagonal: Diagonal,
}

impl Default for HessianDiagConfig {
    fn default() -> HessianDiagConfig {
        HessianDiagConfig {
            learning_rate: 0.1,
            min_eigval: 0.01,
            diagonal: Diagonal::Hessian,
        }
    }
}

/// The Hessian-diagonal method; stateless between steps.
#[derive(Clone, Debug)]
pub struct HessianDiagonal {
    config: HessianDiagConfig,
    /// The configuration as given, restored by `reset` (recovery changes η and m).
    initial: HessianDiagConfig,
}

impl HessianDiagonal {
    pub fn new(config: HessianDiagConfig) -> HessianDiagonal {
        HessianDiagonal {
            initial: config.clone(),
            config,
        }
    }

    /// (η, m) now in force.
    pub fn learning_rate_and_floor(&self) -> (f64, f64) {
        (self.config.learning_rate, self.config.min_eigval)
    }
}

impl Optimizer for HessianDiagonal {
    fn name(&self) -> &str {
        "hessian-diag"
    }

    /// η ← η/2, m ← 2m.
    fn recover(&mut self, _what: &NonFinite) {
        self.config.learning_rate *= 0.5;
        self.config.min_eigval *= 2.0;
    }

    /// Back to the configured η and m.
    fn reset(&mut self) {
        self.config = self.initial.clone();
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let (loss_before, grad) = start_loss_grad(engine, theta, rows.clone())?;
        let diag = engine.diagonal(self.config.diagonal, theta, rows.clone())?;
        check_slice(Quantity::HessianDiagonal, Point::Current, &diag)?;
        let (eta, floor) = (self.config.learning_rate, self.config.min_eigval);
        let mut step_sq = 0.0;
        // θ + Δ built aside: committed only when E is finite there.
        let mut trial = theta.to_vec();
        for ((t, g), d) in trial.iter_mut().zip(&grad).zip(&diag) {
            let delta = -eta * g / d.abs().max(floor);
            *t += delta;
            step_sq += delta * delta;
        }
        check_slice(Quantity::Parameters, Point::Trial, &trial)?;
        let loss_after = check_scalar(Quantity::Loss, Point::Trial, engine.loss(&trial, rows)?)?;
        theta.copy_from_slice(&trial);
        Ok(StepReport {
            loss_before,
            loss_after: Some(loss_after),
            grad_norm: norm(&grad),
            step_norm: step_sq.sqrt(),
            damping: None,
            inner_iterations: 0,
            accepted: true,
        })
    }

    /// η and the floor m: a recovery from NaN halves η and doubles m.
    fn export_state(&self) -> OptimizerState {
        OptimizerState::new(self.name())
            .with_scalar("learning_rate", self.config.learning_rate)
            .with_scalar("min_eigval", self.config.min_eigval)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        _num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let learning_rate = r.positive("learning_rate")?;
        let min_eigval = r.positive("min_eigval")?;
        r.finish()?;
        self.config.learning_rate = learning_rate;
        self.config.min_eigval = min_eigval;
        Ok(())
    }
}
