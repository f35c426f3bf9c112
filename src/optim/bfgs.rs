//! BFGS with a dense inverse-Hessian estimate H⁻¹ ≈ B (W, W) (Nocedal & Wright
//! §6.1), for W up to a few thousand:
//!
//!   d = −B g,  θ ← θ + α d  (α by a strong-Wolfe search, c₂ = 0.9, α₀ = 1)
//!   s = α d,  y = g_new − g,  ρ = 1 / yᵀs
//!   B ← (I − ρ s yᵀ) B (I − ρ y sᵀ) + ρ s sᵀ                     (N&W 6.17)
//!
//! B₀ = I; before the first update it is rescaled to (yᵀs / yᵀy) I (N&W 6.20)
//! so the first step's length carries over. The update is SKIPPED when
//! yᵀs ≤ 1e-10·‖s‖‖y‖ (curvature condition fails, e.g. a mini-batch changed
//! under the step): it would make B indefinite. When d is not a descent
//! direction or the search fails, B is reset to I. The first step is
//! α₀ = min(1, 1/‖g‖) along −g. O(W²) memory and work per step on the host.
//!
//! Divergence: NaN or ∞ trials inside the line search shrink α; an update
//! with yᵀs ≤ 0 or not finite is skipped, and one that would leave B with a
//! NaN or ∞ resets B to I instead. A NaN or ∞ in E or ∇E at θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite), and
//! [`Optimizer::recover`] restarts (B = I, cached gradient dropped) with the
//! first trial α ×0.1 ([`RECOVERY_SHRINK`]) per recovery, back to ×1 after an
//! accepted step.

use super::cg::RECOVERY_SHRINK;
use super::dense::{check_dense, max_dense_params};
use super::finite::{first_non_finite, NonFinite};
use super::line_search::{descent_or_steepest, initial_step, strong_wolfe, WolfeConfig};
use super::vector::{dot, norm, sub};
use super::{GradCache, Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use ndarray::{Array1, Array2, ArrayView1};
use std::ops::Range;

/// The relative threshold on yᵀs below which the update is skipped.
const CURVATURE_SKIP: f64 = 1e-10;

/// Parameters of [`Bfgs`].
#[derive(Clone, Debug, PartialEq)]
pub struct BfgsConfig {
    /// Default: strong Wolfe with c₂ = 0.9.
    pub wolfe: WolfeConfig,
    /// The largest W allowed for the dense B (default [`max_dense_params`]).
    pub max_dense_params: usize,
}

impl Default for BfgsConfig {
    fn default() -> BfgsConfig {
        BfgsConfig {
            wolfe: WolfeConfig::quasi_newton(),
            max_dense_params: max_dense_params(),
        }
    }
}

/// BFGS; its state is B (None until the first step: then B = I, unscaled).
pub struct Bfgs {
    config: BfgsConfig,
    inverse: Option<Array2<f64>>,
    /// Whether B has been updated since the last reset (the 6.20 scaling is due before the first).
    updated: bool,
    cache: GradCache,
    /// Updates skipped because yᵀs ≤ 0 (for tests and diagnostics).
    pub skipped_updates: usize,
    /// Factor on the next search's first α: RECOVERY_SHRINK^k after k recoveries.
    first_step_scale: f64,
}

impl Bfgs {
    pub fn new(config: BfgsConfig) -> Bfgs {
        Bfgs {
            config,
            inverse: None,
            updated: false,
            cache: GradCache::default(),
            skipped_updates: 0,
            first_step_scale: 1.0,
        }
    }

    /// B ← (I − ρ s yᵀ) B (I − ρ y sᵀ) + ρ s sᵀ, expanded to rank-two updates with
    /// u = B y:  B ← B − ρ (s uᵀ + u sᵀ) + (ρ² yᵀu + ρ) s sᵀ.
    fn update(b: &mut Array2<f64>, s: &[f64], y: &[f64]) {
        let rho = 1.0 / dot(y, s);
        let u: Array1<f64> = b.dot(&ArrayView1::from(y));
        let coef = rho * rho * ArrayView1::from(y).dot(&u) + rho;
        let n = s.len();
        for i in 0..n {
            for j in 0..n {
                b[[i, j]] += -rho * (s[i] * u[j] + u[i] * s[j]) + coef * s[i] * s[j];
            }
        }
    }
}

impl Optimizer for Bfgs {
    fn name(&self) -> &str {
        "bfgs"
    }

    /// Restart: B = I, the cached gradient dropped, the first α ×0.1.
    fn recover(&mut self, _what: &NonFinite) {
        self.inverse = None;
        self.updated = false;
        self.cache.clear();
        self.first_step_scale *= RECOVERY_SHRINK;
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let w = theta.len();
        check_dense(
            "bfgs",
            "inverse-Hessian estimate",
            w,
            self.config.max_dense_params,
        )?;
        let (loss, grad) = self.cache.loss_grad(engine, theta, rows.clone())?;
        let grad_norm = norm(&grad);
        if grad_norm == 0.0 {
            return Ok(StepReport::stationary(loss, None));
        }
        let fresh = self.inverse.as_ref().is_none_or(|b| b.nrows() != w);
        if fresh {
            self.inverse = Some(Array2::eye(w));
            self.updated = false;
        }
        let b = self.inverse.get_or_insert_with(|| Array2::eye(w));
        let quasi_newton: Vec<f64> = b.dot(&ArrayView1::from(&grad[..])).mapv(|v| -v).to_vec();
        let (direction, slope, fell_back) = descent_or_steepest(quasi_newton, &grad, grad_norm);
        if fell_back {
            *b = Array2::eye(w);
            self.updated = false;
        }
        // Before the first update B = I, so the direction is −g as well.
        let alpha0 = initial_step(fell_back || !self.updated, grad_norm) * self.first_step_scale;
        let outcome = strong_wolfe(
            engine,
            theta,
            rows.clone(),
            loss,
            slope,
            &direction,
            alpha0,
            &self.config.wolfe,
        )?;
        let Some(o) = outcome else {
            *b = Array2::eye(w);
            self.updated = false;
            return Ok(StepReport::rejected(
                loss,
                grad_norm,
                None,
                self.config.wolfe.max_evaluations,
            ));
        };
        let s: Vec<f64> = direction.iter().map(|d| o.alpha * d).collect();
        let y = sub(&o.grad, &grad);
        let ys = dot(&y, &s);
        // Written so that a NaN yᵀs fails it, and an overflowing ‖y‖ (whose
        // yᵀy would scale B to 0) makes the threshold ∞: the update is skipped.
        if ys.is_finite() && ys > CURVATURE_SKIP * norm(&s) * norm(&y) {
            if !self.updated {
                *b *= ys / dot(&y, &y);
            }
            Bfgs::update(b, &s, &y);
            self.updated = true;
            if first_non_finite(b.iter()).is_some() {
                // ρ = 1/yᵀs or B·y overflowed: start again from B = I.
                *b = Array2::eye(w);
                self.updated = false;
                self.skipped_updates += 1;
            }
        } else {
            self.skipped_updates += 1;
        }
        for (t, si) in theta.iter_mut().zip(&s) {
            *t += si;
        }
        self.cache.store(theta, rows, o.loss, o.grad);
        self.first_step_scale = 1.0;
        Ok(StepReport {
            loss_before: loss,
            loss_after: Some(o.loss),
            grad_norm,
            step_norm: norm(&s),
            damping: None,
            inner_iterations: o.evaluations,
            accepted: true,
        })
    }

    fn reset(&mut self) {
        self.inverse = None;
        self.updated = false;
        self.cache.clear();
        self.first_step_scale = 1.0;
    }

    fn forget_cached(&mut self) {
        self.cache.clear();
    }

    /// B (W, W) once made, whether it was updated since the last reset (the
    /// N&W 6.20 scaling is due before the first update), and the count of
    /// skipped updates; the (E, ∇E) cached at the current point is left out.
    fn export_state(&self) -> OptimizerState {
        let state = OptimizerState::new(self.name())
            .with_scalar("updated", f64::from(u8::from(self.updated)))
            .with_scalar("skipped_updates", self.skipped_updates as f64)
            .with_scalar("first_step_scale", self.first_step_scale);
        match &self.inverse {
            None => state,
            // `iter` walks the logical row-major order whatever the memory layout.
            Some(b) => state.with_tensor(
                "inverse",
                vec![b.nrows(), b.ncols()],
                b.iter().copied().collect(),
            ),
        }
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let updated = r.flag("updated")?;
        let skipped_updates = r.count("skipped_updates")?;
        let first_step_scale = r.positive("first_step_scale")?;
        let inverse = r
            .optional_tensor("inverse", &[num_params, num_params])?
            .map(|data| Array2::from_shape_vec((num_params, num_params), data))
            .transpose()
            .map_err(|e| StateError::WrongShape {
                optimizer: self.name().to_string(),
                key: "inverse".to_string(),
                shape: vec![num_params, num_params],
                expected: e.to_string(),
            })?;
        r.finish()?;
        self.inverse = inverse;
        self.updated = updated;
        self.skipped_updates = skipped_updates;
        self.first_step_scale = first_step_scale;
        self.cache.clear();
        Ok(())
    }
}
