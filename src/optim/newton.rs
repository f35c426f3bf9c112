//! Newton's method with an adaptive penalty (neupy's `Hessian`, made safe):
//!
//!   Δ = −(H + c·I)⁻¹ g,   H the exact Hessian of E (W, W), g = ∇E (W).
//!
//! The penalty c (default 1) adapts by ρ = actual / predicted reduction
//! (see [`Damping`]); the prediction is the undamped quadratic model
//! −gᵀΔ − ½ΔᵀHΔ, which is positive whenever H + cI is positive definite. A
//! trial point whose E is not below the current one is REJECTED: θ stays, c
//! grows ×4 and the next step retries from the same (cached) H and g, so no
//! accepted step ever increases E. When H + cI is not positive definite (H
//! indefinite away from a minimum) the Cholesky factorisation fails, c grows
//! ×4 and the factorisation is retried within the same step — never a panic.
//!
//! The same machinery with the Gauss-Newton matrix G in place of H is
//! Levenberg-Marquardt (`levenberg_marquardt.rs`).
//!
//! Divergence: a trial point whose E is NaN or ∞ is rejected like any trial
//! that does not lower E (c grows ×4). A NaN or ∞ in E, ∇E or the matrix at θ
//! returns [`OptimError::NonFinite`] with θ
//! unchanged, and [`Optimizer::recover`] raises c by its rejection factor (×4)
//! and drops the cached linearisation. A singular or indefinite matrix is no
//! failure: the factorisation is retried with c ×4, at most
//! `MAX_FACTORISATION_TRIES` times, then a [`OptimError::Numerical`] error.

use super::damping::Damping;
use super::dense::{check_dense, max_dense_params, quadratic_form, solve_damped};
use super::finite::{check_matrix, start_loss_grad, NonFinite, Point, Quantity};
use super::vector::{added, dot, negated, norm};
use super::{OptimError, Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::{Curvature, Kind};
use ndarray::Array2;
use std::ops::Range;

/// How many times one step may raise the damping after failed factorisations.
const MAX_FACTORISATION_TRIES: usize = 64;

/// Parameters of [`Newton`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonConfig {
    /// The initial penalty c (default 1) and its adaptation.
    pub damping: Damping,
    /// The largest W allowed for the dense matrix (default [`max_dense_params`]).
    pub max_dense_params: usize,
}

impl Default for NewtonConfig {
    fn default() -> NewtonConfig {
        NewtonConfig {
            damping: Damping::new(1.0),
            max_dense_params: max_dense_params(),
        }
    }
}

/// E, ∇E and the curvature matrix at one (θ, rows), kept across rejected steps.
struct Linearisation {
    theta: Vec<f64>,
    rows: Range<usize>,
    loss: f64,
    grad: Vec<f64>,
    matrix: Array2<f64>,
}

/// A damped Newton step on H (Newton) or G (Levenberg-Marquardt).
pub struct DampedNewton {
    name: &'static str,
    matrix_kind: Kind,
    initial: NewtonConfig,
    config: NewtonConfig,
    cache: Option<Linearisation>,
}

/// Newton's method with an adaptive penalty c.
pub type Newton = DampedNewton;

impl DampedNewton {
    /// Newton: Δ = −(H + cI)⁻¹g.
    pub fn newton(config: NewtonConfig) -> DampedNewton {
        DampedNewton::with_matrix("newton", Kind::Hessian, config)
    }

    /// Any name and matrix (Levenberg-Marquardt uses G).
    pub fn with_matrix(
        name: &'static str,
        matrix_kind: Kind,
        config: NewtonConfig,
    ) -> DampedNewton {
        DampedNewton {
            name,
            matrix_kind,
            initial: config.clone(),
            config,
            cache: None,
        }
    }

    /// The damping now in force.
    pub fn damping(&self) -> f64 {
        self.config.damping.value
    }

    fn linearise(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Linearisation> {
        if let Some(lin) = self.cache.take() {
            if lin.rows == rows && lin.theta == theta {
                return Ok(lin);
            }
        }
        let (loss, grad) = start_loss_grad(engine, theta, rows.clone())?;
        let matrix = engine.matrix(self.matrix_kind, theta, rows.clone())?;
        let quantity = match self.matrix_kind {
            Kind::Hessian => Quantity::Hessian,
            Kind::GaussNewton => Quantity::GaussNewton,
        };
        check_matrix(quantity, Point::Current, &matrix)?;
        Ok(Linearisation {
            theta: theta.to_vec(),
            rows,
            loss,
            grad,
            matrix,
        })
    }
}

impl Optimizer for DampedNewton {
    fn name(&self) -> &str {
        self.name
    }

    /// c ← 4c (the rejection factor), and H or G recomputed at the restored θ.
    fn recover(&mut self, _what: &NonFinite) {
        self.config.damping.rejected();
        self.cache = None;
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let what = self.matrix_kind.name();
        check_dense(self.name, what, theta.len(), self.config.max_dense_params)?;
        let lin = self.linearise(engine, theta, rows.clone())?;
        let grad_norm = norm(&lin.grad);
        if grad_norm == 0.0 {
            return Ok(StepReport::stationary(
                lin.loss,
                Some(self.config.damping.value),
            ));
        }
        let rhs = negated(&lin.grad);
        let mut tries = 0;
        let delta = loop {
            tries += 1;
            if let Some(delta) = solve_damped(&lin.matrix, self.config.damping.value, &rhs) {
                break delta;
            }
            self.config.damping.rejected();
            if tries >= MAX_FACTORISATION_TRIES || self.config.damping.exhausted() {
                return Err(OptimError::Numerical {
                    method: self.name,
                    detail: format!(
                        "the {what} plus c·I stayed not positive definite after {tries} Cholesky tries up to c = {:e}: {}",
                        self.config.damping.value,
                        match self.matrix_kind {
                            Kind::Hessian => "H has an eigenvalue below −c (a saddle or maximum); try a larger L2 penalty (--l2), a larger damping ceiling, or levenberg-marquardt, whose G is positive semidefinite",
                            Kind::GaussNewton => "G is positive semidefinite, so its entries must be too large for f64; scale the inputs or add an L2 penalty (--l2)",
                        }
                    ),
                });
            }
        };
        // The undamped quadratic model's prediction of the decrease.
        let predicted = -dot(&lin.grad, &delta) - 0.5 * quadratic_form(&lin.matrix, &delta);
        let trial = added(theta, 1.0, &delta);
        let trial_loss = engine.loss(&trial, rows)?;
        let loss_before = lin.loss;
        if trial_loss.is_finite() && trial_loss <= loss_before {
            let actual = loss_before - trial_loss;
            // A prediction at rounding level says nothing about the model's quality.
            if predicted > f64::EPSILON * loss_before.abs().max(1.0) {
                self.config.damping.accepted(actual / predicted);
            }
            theta.copy_from_slice(&trial);
            Ok(StepReport {
                loss_before,
                loss_after: Some(trial_loss),
                grad_norm,
                step_norm: norm(&delta),
                damping: Some(self.config.damping.value),
                inner_iterations: tries,
                accepted: true,
            })
        } else {
            self.config.damping.rejected();
            self.cache = Some(lin);
            Ok(StepReport::rejected(
                loss_before,
                grad_norm,
                Some(self.config.damping.value),
                tries,
            ))
        }
    }

    fn reset(&mut self) {
        self.config = self.initial.clone();
        self.cache = None;
    }

    fn forget_cached(&mut self) {
        self.cache = None;
    }

    /// The damping c (μ) in force; the cached linearisation of a rejected
    /// step is left out and recomputed at the same (θ, rows).
    fn export_state(&self) -> OptimizerState {
        OptimizerState::new(self.name).with_scalar("damping", self.config.damping.value)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        _num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name)?;
        let damping = r.positive("damping")?;
        r.finish()?;
        self.config.damping.value = damping;
        self.cache = None;
        Ok(())
    }
}
