//! Limited-memory BFGS (Nocedal & Wright Algorithm 7.4 and 7.5): the m most
//! recent pairs (s_i, y_i) stand for the inverse Hessian, applied to g by the
//! two-loop recursion in O(m·W):
//!
//!   q = g;  for i newest→oldest: a_i = ρ_i s_iᵀq, q −= a_i y_i
//!   r = γ q, γ = s_kᵀy_k / y_kᵀy_k  (N&W 7.20)
//!   for i oldest→newest: b = ρ_i y_iᵀr, r += s_i (a_i − b)
//!   d = −r,  θ ← θ + α d  (strong Wolfe, c₂ = 0.9, α₀ = 1)
//!
//! Defaults: m = 10. A pair with yᵀs ≤ 1e-10·‖s‖‖y‖ is not stored (it would
//! break positive definiteness); a non-descent direction or a failed search
//! clears the history. The first step is α₀ = min(1, 1/‖g‖) along −g.
//!
//! Divergence: NaN or ∞ trials inside the line search shrink α; a pair with a
//! NaN or ∞ yᵀs is not stored. A NaN or ∞ in E or ∇E at θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite), and
//! [`Optimizer::recover`] restarts (pairs cleared, cached gradient dropped)
//! with the first trial α ×0.1 ([`RECOVERY_SHRINK`]) per recovery, back to ×1
//! after an accepted step.

use super::cg::RECOVERY_SHRINK;
use super::finite::NonFinite;
use super::line_search::{descent_or_steepest, initial_step, strong_wolfe, WolfeConfig};
use super::vector::{axpy, dot, norm, sub};
use super::{GradCache, Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use std::collections::VecDeque;
use std::ops::Range;

/// The relative threshold on yᵀs below which a pair is not stored.
const CURVATURE_SKIP: f64 = 1e-10;

/// Parameters of [`Lbfgs`].
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsConfig {
    /// m, the pairs kept (default 10).
    pub history: usize,
    /// Default: strong Wolfe with c₂ = 0.9.
    pub wolfe: WolfeConfig,
}

impl Default for LbfgsConfig {
    fn default() -> LbfgsConfig {
        LbfgsConfig {
            history: 10,
            wolfe: WolfeConfig::quasi_newton(),
        }
    }
}

/// One stored pair with ρ = 1 / yᵀs.
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
}

/// L-BFGS; its state is the last m pairs.
pub struct Lbfgs {
    config: LbfgsConfig,
    pairs: VecDeque<Pair>,
    cache: GradCache,
    /// Factor on the next search's first α: RECOVERY_SHRINK^k after k recoveries.
    first_step_scale: f64,
}

impl Lbfgs {
    pub fn new(config: LbfgsConfig) -> Lbfgs {
        Lbfgs {
            config,
            pairs: VecDeque::new(),
            cache: GradCache::default(),
            first_step_scale: 1.0,
        }
    }

    /// The two-loop recursion: r ≈ H⁻¹ g (W).
    fn apply_inverse(&self, g: &[f64]) -> Vec<f64> {
        let mut q = g.to_vec();
        let mut a = vec![0.0; self.pairs.len()];
        for (i, p) in self.pairs.iter().enumerate().rev() {
            a[i] = p.rho * dot(&p.s, &q);
            axpy(-a[i], &p.y, &mut q);
        }
        if let Some(last) = self.pairs.back() {
            let gamma = dot(&last.s, &last.y) / dot(&last.y, &last.y);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for (i, p) in self.pairs.iter().enumerate() {
            let b = p.rho * dot(&p.y, &q);
            axpy(a[i] - b, &p.s, &mut q);
        }
        q
    }
}

impl Optimizer for Lbfgs {
    fn name(&self) -> &str {
        "lbfgs"
    }

    /// Restart: pairs cleared, the cached gradient dropped, the first α ×0.1.
    fn recover(&mut self, _what: &NonFinite) {
        self.pairs.clear();
        self.cache.clear();
        self.first_step_scale *= RECOVERY_SHRINK;
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let (loss, grad) = self.cache.loss_grad(engine, theta, rows.clone())?;
        let grad_norm = norm(&grad);
        if grad_norm == 0.0 {
            return Ok(StepReport::stationary(loss, None));
        }
        if self.pairs.front().is_some_and(|p| p.s.len() != grad.len()) {
            self.pairs.clear();
        }
        let quasi_newton: Vec<f64> = self.apply_inverse(&grad).iter().map(|v| -v).collect();
        let (direction, slope, fell_back) = descent_or_steepest(quasi_newton, &grad, grad_norm);
        if fell_back {
            self.pairs.clear();
        }
        // With no pairs the direction is −g.
        let alpha0 = initial_step(self.pairs.is_empty(), grad_norm) * self.first_step_scale;
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
            self.pairs.clear();
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
        // Written so that a NaN yᵀs fails it: the pair is not stored.
        if ys.is_finite() && ys > CURVATURE_SKIP * norm(&s) * norm(&y) && self.config.history > 0 {
            if self.pairs.len() == self.config.history {
                self.pairs.pop_front();
            }
            self.pairs.push_back(Pair {
                s: s.clone(),
                y,
                rho: 1.0 / ys,
            });
        }
        axpy(1.0, &s, theta);
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
        self.pairs.clear();
        self.cache.clear();
        self.first_step_scale = 1.0;
    }

    fn forget_cached(&mut self) {
        self.cache.clear();
    }

    /// The m stored pairs, oldest first: `s` and `y` (m, W) and `rho` (m)
    /// (ρ kept as computed, not recomputed); none when m = 0. The (E, ∇E)
    /// cached at the current point is left out.
    fn export_state(&self) -> OptimizerState {
        let state =
            OptimizerState::new(self.name()).with_scalar("first_step_scale", self.first_step_scale);
        let m = self.pairs.len();
        let Some(w) = self.pairs.front().map(|p| p.s.len()) else {
            return state;
        };
        let flat = |f: &dyn Fn(&Pair) -> &[f64]| -> Vec<f64> {
            self.pairs
                .iter()
                .flat_map(|p| f(p).iter().copied())
                .collect()
        };
        state
            .with_tensor("s", vec![m, w], flat(&|p| &p.s))
            .with_tensor("y", vec![m, w], flat(&|p| &p.y))
            .with_tensor("rho", vec![m], self.pairs.iter().map(|p| p.rho).collect())
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let first_step_scale = r.positive("first_step_scale")?;
        let m = r
            .shape_of("s")
            .and_then(|s| s.first().copied())
            .unwrap_or(0);
        if m > self.config.history {
            return Err(StateError::BadValue {
                optimizer: self.name().to_string(),
                key: "s".to_string(),
                value: m as f64,
                reason: format!(
                    "{m} pairs, more than this optimizer's history of {}",
                    self.config.history
                ),
            });
        }
        let mut pairs = VecDeque::with_capacity(m);
        if m > 0 && num_params > 0 {
            let s = r.tensor("s", &[m, num_params])?;
            let y = r.tensor("y", &[m, num_params])?;
            let rho = r.tensor("rho", &[m])?;
            for ((s, y), rho) in s
                .chunks_exact(num_params)
                .zip(y.chunks_exact(num_params))
                .zip(rho)
            {
                pairs.push_back(Pair {
                    s: s.to_vec(),
                    y: y.to_vec(),
                    rho,
                });
            }
        }
        r.finish()?;
        self.pairs = pairs;
        self.first_step_scale = first_step_scale;
        self.cache.clear();
        Ok(())
    }
}
