//! Nonlinear conjugate gradients (PRML §5.4 notebook; Nocedal & Wright §5.2):
//!
//!   d₀ = −g₀,   d_k = −g_k + β_k d_{k−1},   θ ← θ + α_k d_k
//!
//! with y = g_k − g_{k−1} and β_k by
//! - Fletcher-Reeves  `cg-fr`: β = g_kᵀg_k / g_{k−1}ᵀg_{k−1}
//! - Polak-Ribière+   `cg-pr`: β = max(0, g_kᵀy / g_{k−1}ᵀg_{k−1})
//! - Hestenes-Stiefel `cg-hs`: β = g_kᵀy / d_{k−1}ᵀy
//! - Dai-Yuan         `cg-dy`: β = g_kᵀg_k / d_{k−1}ᵀy
//!
//! The step length α comes from a strong-Wolfe line search (c₂ = 0.1, the
//! default) or, with `--line-search hessian`, from the exact minimiser of the
//! local quadratic along d, α = −gᵀd / dᵀHd, costing one Hessian-vector
//! product; where dᵀHd ≤ 0 (negative curvature) or that step does not lower E,
//! the Wolfe search takes over. Restarts (d = −g): every W iterations (default),
//! when d is not a descent direction, when a β denominator vanishes, and after
//! a failed line search.
//!
//! Divergence: NaN or ∞ trials inside the line search shrink α (see
//! `line_search.rs`); a Hessian step whose E or ∇E is not finite falls back to
//! the search. A NaN or ∞ in E, ∇E or H·d at θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite), and
//! [`Optimizer::recover`] restarts (d = −g, cached gradient dropped) with the
//! first trial α of the next search ×0.1 ([`RECOVERY_SHRINK`]) per recovery,
//! back to ×1 after an accepted step.

use super::finite::{check_slice, NonFinite, Point, Quantity};
use super::line_search::{strong_wolfe, WolfeConfig};
use super::vector::{added, all_finite, dot, is_negative, norm, sub};
use super::{GradCache, Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use std::ops::Range;

/// The factor on the first trial step after each recovery: a step that met a
/// NaN or ∞ is retried an order of magnitude shorter.
pub const RECOVERY_SHRINK: f64 = 0.1;

/// The formula for β.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaFormula {
    FletcherReeves,
    PolakRibierePlus,
    HestenesStiefel,
    DaiYuan,
}

impl BetaFormula {
    pub fn name(self) -> &'static str {
        match self {
            BetaFormula::FletcherReeves => "cg-fr",
            BetaFormula::PolakRibierePlus => "cg-pr",
            BetaFormula::HestenesStiefel => "cg-hs",
            BetaFormula::DaiYuan => "cg-dy",
        }
    }
}

/// How the step length along d is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum StepLength {
    /// Strong-Wolfe line search.
    Wolfe(WolfeConfig),
    /// α = −gᵀd / dᵀHd from one Hv product (Wolfe as the fallback).
    Hessian(WolfeConfig),
}

/// Parameters of [`ConjugateGradient`].
#[derive(Clone, Debug, PartialEq)]
pub struct CgConfig {
    pub beta: BetaFormula,
    /// Default: strong Wolfe with c₂ = 0.1.
    pub step_length: StepLength,
    /// Restart every this many iterations (default None = every W).
    pub restart_every: Option<usize>,
}

impl CgConfig {
    pub fn new(beta: BetaFormula) -> CgConfig {
        CgConfig {
            beta,
            step_length: StepLength::Wolfe(WolfeConfig::conjugate_gradient()),
            restart_every: None,
        }
    }
}

/// The previous iteration: its gradient, direction, slope gᵀd and step length.
#[derive(Clone, Debug)]
struct Previous {
    grad: Vec<f64>,
    direction: Vec<f64>,
    slope: f64,
    alpha: f64,
}

/// Nonlinear conjugate gradients.
pub struct ConjugateGradient {
    config: CgConfig,
    previous: Option<Previous>,
    since_restart: usize,
    cache: GradCache,
    /// Factor on the next search's first α: RECOVERY_SHRINK^k after k recoveries.
    first_step_scale: f64,
}

impl ConjugateGradient {
    pub fn new(config: CgConfig) -> ConjugateGradient {
        ConjugateGradient {
            config,
            previous: None,
            since_restart: 0,
            cache: GradCache::default(),
            first_step_scale: 1.0,
        }
    }

    /// β_k, or None when its denominator vanishes (then restart).
    fn beta(&self, g: &[f64], prev: &Previous) -> Option<f64> {
        let y = sub(g, &prev.grad);
        let (num, den) = match self.config.beta {
            BetaFormula::FletcherReeves => (dot(g, g), dot(&prev.grad, &prev.grad)),
            BetaFormula::PolakRibierePlus => (dot(g, &y), dot(&prev.grad, &prev.grad)),
            BetaFormula::HestenesStiefel => (dot(g, &y), dot(&prev.direction, &y)),
            BetaFormula::DaiYuan => (dot(g, g), dot(&prev.direction, &y)),
        };
        let beta = num / den;
        if den == 0.0 || !beta.is_finite() {
            return None;
        }
        Some(match self.config.beta {
            BetaFormula::PolakRibierePlus => beta.max(0.0),
            _ => beta,
        })
    }
}

impl Optimizer for ConjugateGradient {
    fn name(&self) -> &str {
        self.config.beta.name()
    }

    /// Restart: d = −g next, the cached gradient dropped, the first α ×0.1.
    fn recover(&mut self, _what: &NonFinite) {
        self.previous = None;
        self.since_restart = 0;
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
        let restart_every = self.config.restart_every.unwrap_or(theta.len()).max(1);
        let continued = self
            .previous
            .as_ref()
            .filter(|p| p.grad.len() == grad.len() && self.since_restart < restart_every)
            .and_then(|p| self.beta(&grad, p).map(|b| (b, p)));
        let mut direction: Vec<f64> = match continued {
            Some((beta, p)) => grad
                .iter()
                .zip(&p.direction)
                .map(|(g, d)| -g + beta * d)
                .collect(),
            None => grad.iter().map(|g| -g).collect(),
        };
        let mut slope = dot(&grad, &direction);
        let mut restarted = continued.is_none();
        if !is_negative(slope) {
            direction = grad.iter().map(|g| -g).collect();
            slope = -grad_norm * grad_norm;
            restarted = true;
        }
        let mut inner = 0;
        // The Hessian step, when asked for and when it lowers E.
        let mut found = None;
        let wolfe = match &self.config.step_length {
            StepLength::Wolfe(w) => w.clone(),
            StepLength::Hessian(w) => {
                let hd = engine.hvp(theta, rows.clone(), &direction)?;
                check_slice(Quantity::HessianProduct, Point::Current, &hd)?;
                let curvature = dot(&direction, &hd);
                inner += 1;
                if curvature > 0.0 {
                    let alpha = -slope / curvature;
                    let (trial_loss, trial_grad) =
                        engine.loss_grad(&added(theta, alpha, &direction), rows.clone())?;
                    inner += 1;
                    if trial_loss.is_finite() && all_finite(&trial_grad) && trial_loss <= loss {
                        found = Some((alpha, trial_loss, trial_grad));
                    }
                }
                w.clone()
            }
        };
        if found.is_none() {
            // N&W 3.60: the previous step's first-order change as the first guess.
            let alpha0 = match &self.previous {
                Some(p) if !restarted => p.alpha * p.slope / slope,
                _ => (1.0 / grad_norm).min(1.0),
            };
            let alpha0 = if alpha0.is_finite() && alpha0 > 0.0 {
                alpha0
            } else {
                (1.0 / grad_norm).min(1.0)
            } * self.first_step_scale;
            let outcome = strong_wolfe(
                engine,
                theta,
                rows.clone(),
                loss,
                slope,
                &direction,
                alpha0,
                &wolfe,
            )?;
            if let Some(o) = outcome {
                inner += o.evaluations;
                found = Some((o.alpha, o.loss, o.grad));
            }
        }
        let Some((alpha, loss_after, grad_after)) = found else {
            // No acceptable step along d: restart from steepest descent next time.
            self.previous = None;
            self.since_restart = 0;
            return Ok(StepReport::rejected(loss, grad_norm, None, inner));
        };
        for (t, d) in theta.iter_mut().zip(&direction) {
            *t += alpha * d;
        }
        self.cache.store(theta, rows, loss_after, grad_after);
        self.first_step_scale = 1.0;
        self.since_restart = if restarted { 1 } else { self.since_restart + 1 };
        let step_norm = alpha.abs() * norm(&direction);
        self.previous = Some(Previous {
            grad,
            direction,
            slope,
            alpha,
        });
        Ok(StepReport {
            loss_before: loss,
            loss_after: Some(loss_after),
            grad_norm,
            step_norm,
            damping: None,
            inner_iterations: inner,
            accepted: true,
        })
    }

    fn reset(&mut self) {
        self.previous = None;
        self.since_restart = 0;
        self.cache.clear();
        self.first_step_scale = 1.0;
    }

    fn forget_cached(&mut self) {
        self.cache.clear();
    }

    /// The previous gradient and direction (W each), their slope gᵀd and step
    /// length α, and the iterations since the last restart; the (E, ∇E)
    /// cached at the current point is left out.
    fn export_state(&self) -> OptimizerState {
        let state = OptimizerState::new(self.name())
            .with_scalar("since_restart", self.since_restart as f64)
            .with_scalar("first_step_scale", self.first_step_scale);
        match &self.previous {
            None => state,
            Some(p) => state
                .with_tensor("previous_grad", vec![p.grad.len()], p.grad.clone())
                .with_tensor(
                    "previous_direction",
                    vec![p.direction.len()],
                    p.direction.clone(),
                )
                .with_scalar("previous_slope", p.slope)
                .with_scalar("previous_alpha", p.alpha),
        }
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let since_restart = r.count("since_restart")?;
        let first_step_scale = r.positive("first_step_scale")?;
        let previous = match r.optional_tensor("previous_grad", &[num_params])? {
            None => None,
            Some(grad) => Some(Previous {
                grad,
                direction: r.tensor("previous_direction", &[num_params])?,
                slope: r.scalar("previous_slope")?,
                alpha: r.scalar("previous_alpha")?,
            }),
        };
        r.finish()?;
        self.since_restart = since_restart;
        self.first_step_scale = first_step_scale;
        self.previous = previous;
        self.cache.clear();
        Ok(())
    }
}
