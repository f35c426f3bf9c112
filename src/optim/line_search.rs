//! A strong-Wolfe line search (Nocedal & Wright 2006, Algorithms 3.5 and 3.6):
//! along a descent direction d from θ, find α with
//!
//!   φ(α) ≤ φ(0) + c₁ α φ′(0)        (sufficient decrease)
//!   |φ′(α)| ≤ c₂ |φ′(0)|            (strong curvature condition)
//!
//! where φ(α) = E(θ + α d), φ′(α) = ∇E(θ + α d)ᵀ d: one `loss_grad` per trial.
//! A bracketing phase doubles α until the interval [α_lo, α_hi] must contain
//! such a point, then `zoom` shrinks it with the minimiser of the cubic through
//! both ends' values and slopes (N&W 3.59), safeguarded to the inner 80 % of
//! the interval and replaced by bisection where the cubic is not defined.
//!
//! Defaults: c₁ = 1e-4, c₂ = 0.9 for quasi-Newton methods (BFGS, L-BFGS) and
//! 0.1 for conjugate gradients (which need a more exact step to keep their
//! directions conjugate), at most 25 evaluations, α ≤ 1e10.
//!
//! A trial whose E or ∇E holds NaN or ∞ is a failed trial: its φ counts as +∞
//! (it never meets sufficient decrease), so the bracket closes on it and the
//! zoom bisects towards the last finite point — the step shrinks instead of a
//! NaN being accepted (`NaN > φ(0)` is false, so a plain comparison would).

use super::vector::{added, all_finite, dot, is_negative};
use super::Result;
use crate::engine::Curvature;
use std::ops::Range;

/// Parameters of the strong-Wolfe search.
#[derive(Clone, Debug, PartialEq)]
pub struct WolfeConfig {
    /// c₁ of the sufficient-decrease condition (default 1e-4).
    pub c1: f64,
    /// c₂ of the curvature condition (0.9 quasi-Newton, 0.1 CG).
    pub c2: f64,
    /// The most `loss_grad` evaluations one search may make (default 25).
    pub max_evaluations: usize,
    /// The largest step length tried (default 1e10).
    pub alpha_max: f64,
}

impl WolfeConfig {
    /// c₂ = 0.9, for BFGS and L-BFGS.
    pub fn quasi_newton() -> WolfeConfig {
        WolfeConfig {
            c1: 1e-4,
            c2: 0.9,
            max_evaluations: 25,
            alpha_max: 1e10,
        }
    }
    /// c₂ = 0.1, for nonlinear conjugate gradients.
    pub fn conjugate_gradient() -> WolfeConfig {
        WolfeConfig {
            c2: 0.1,
            ..WolfeConfig::quasi_newton()
        }
    }
}

/// The point a search settled on.
#[derive(Clone, Debug, PartialEq)]
pub struct LineSearchOutcome {
    /// The step length α.
    pub alpha: f64,
    /// E(θ + α d).
    pub loss: f64,
    /// ∇E(θ + α d) (W).
    pub grad: Vec<f64>,
    /// `loss_grad` evaluations made.
    pub evaluations: usize,
    /// Whether both strong-Wolfe conditions hold (false: the budget ran out
    /// and this is the best point with sufficient decrease).
    pub strong_wolfe: bool,
}

/// One trial: α, φ(α), φ′(α) and the gradient there.
#[derive(Clone, Debug)]
struct Trial {
    alpha: f64,
    loss: f64,
    slope: f64,
    grad: Vec<f64>,
}

struct Search<'a> {
    engine: &'a mut dyn Curvature,
    theta: &'a [f64],
    rows: Range<usize>,
    direction: &'a [f64],
    loss0: f64,
    slope0: f64,
    config: &'a WolfeConfig,
    evaluations: usize,
    /// The lowest trial meeting sufficient decrease, for when the budget runs out.
    best: Option<Trial>,
}

impl Search<'_> {
    fn evaluate(&mut self, alpha: f64) -> Result<Trial> {
        self.evaluations += 1;
        let point = added(self.theta, alpha, self.direction);
        let (loss, grad) = self.engine.loss_grad(&point, self.rows.clone())?;
        let finite = loss.is_finite() && all_finite(&grad);
        // A non-finite trial: φ = +∞ and no slope, so only bisection uses it.
        let (loss, slope) = if finite {
            (loss, dot(&grad, self.direction))
        } else {
            (f64::INFINITY, f64::NAN)
        };
        let trial = Trial {
            alpha,
            loss,
            slope,
            grad,
        };
        if self.sufficient_decrease(&trial)
            && self.best.as_ref().is_none_or(|b| trial.loss < b.loss)
        {
            self.best = Some(trial.clone());
        }
        Ok(trial)
    }

    fn sufficient_decrease(&self, t: &Trial) -> bool {
        // Written so that a NaN or ∞ loss fails it.
        t.loss.is_finite() && t.loss <= self.loss0 + self.config.c1 * t.alpha * self.slope0
    }

    fn curvature_ok(&self, t: &Trial) -> bool {
        t.slope.abs() <= -self.config.c2 * self.slope0
    }

    fn out_of_budget(&self) -> bool {
        self.evaluations >= self.config.max_evaluations
    }

    fn done(&self, t: Trial) -> LineSearchOutcome {
        LineSearchOutcome {
            alpha: t.alpha,
            loss: t.loss,
            grad: t.grad,
            evaluations: self.evaluations,
            strong_wolfe: true,
        }
    }

    fn fallback(&mut self) -> Option<LineSearchOutcome> {
        self.best.take().map(|t| LineSearchOutcome {
            alpha: t.alpha,
            loss: t.loss,
            grad: t.grad,
            evaluations: self.evaluations,
            strong_wolfe: false,
        })
    }

    /// N&W Algorithm 3.6: `lo` satisfies sufficient decrease with the lowest
    /// loss so far; `hi` is the other end; a point between meets both conditions.
    fn zoom(&mut self, mut lo: Trial, mut hi: Trial) -> Result<Option<LineSearchOutcome>> {
        while !self.out_of_budget() {
            let alpha = interpolate(&lo, &hi);
            if alpha == lo.alpha || alpha == hi.alpha {
                break; // the interval has shrunk to rounding level
            }
            let t = self.evaluate(alpha)?;
            if !self.sufficient_decrease(&t) || t.loss >= lo.loss {
                hi = t;
            } else {
                if self.curvature_ok(&t) {
                    return Ok(Some(self.done(t)));
                }
                if t.slope * (hi.alpha - lo.alpha) >= 0.0 {
                    hi = lo;
                }
                lo = t;
            }
        }
        Ok(self.fallback())
    }
}

/// The minimiser of the cubic through (a, φ(a), φ′(a)) and (b, φ(b), φ′(b))
/// (N&W 3.59), kept inside the middle 80 % of [a, b]; bisection where the
/// cubic has no minimiser or an end is not finite.
fn interpolate(a: &Trial, b: &Trial) -> f64 {
    let (lo, hi) = (a.alpha.min(b.alpha), a.alpha.max(b.alpha));
    let mid = 0.5 * (lo + hi);
    let width = hi - lo;
    if !(a.loss.is_finite() && b.loss.is_finite() && a.slope.is_finite() && b.slope.is_finite()) {
        return mid;
    }
    let d1 = a.slope + b.slope - 3.0 * (a.loss - b.loss) / (a.alpha - b.alpha);
    let disc = d1 * d1 - a.slope * b.slope;
    if disc < 0.0 {
        return mid;
    }
    let d2 = (b.alpha - a.alpha).signum() * disc.sqrt();
    let denom = b.slope - a.slope + 2.0 * d2;
    if denom == 0.0 {
        return mid;
    }
    let x = b.alpha - (b.alpha - a.alpha) * (b.slope + d2 - d1) / denom;
    if x.is_finite() && x >= lo + 0.1 * width && x <= hi - 0.1 * width {
        x
    } else {
        mid
    }
}

/// A quasi-Newton search direction made safe to search along: `direction` if
/// it descends (gᵀd < 0), else steepest descent −g. Returns (d, gᵀd, whether
/// it fell back to −g), so the caller can reset its curvature model.
pub(crate) fn descent_or_steepest(
    direction: Vec<f64>,
    grad: &[f64],
    grad_norm: f64,
) -> (Vec<f64>, f64, bool) {
    let slope = super::vector::dot(grad, &direction);
    if super::vector::is_negative(slope) {
        (direction, slope, false)
    } else {
        (super::vector::negated(grad), -grad_norm * grad_norm, true)
    }
}

/// The first trial step of a quasi-Newton line search: 1 along a quasi-Newton
/// direction, whose length is already a step, but at most 1/‖g‖ along −g,
/// which carries the gradient's scale.
pub(crate) fn initial_step(steepest: bool, grad_norm: f64) -> f64 {
    if steepest {
        (1.0 / grad_norm).min(1.0)
    } else {
        1.0
    }
}

/// Searches along `direction` d (W) from θ, where E(θ) = `loss0` and
/// φ′(0) = ∇E(θ)ᵀd = `slope0` < 0, starting from the step `alpha0`.
/// `Ok(None)` when no point with sufficient decrease was found within the budget.
#[allow(clippy::too_many_arguments)]
pub fn strong_wolfe(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    loss0: f64,
    slope0: f64,
    direction: &[f64],
    alpha0: f64,
    config: &WolfeConfig,
) -> Result<Option<LineSearchOutcome>> {
    if !is_negative(slope0) {
        return Ok(None);
    }
    let mut search = Search {
        engine,
        theta,
        rows,
        direction,
        loss0,
        slope0,
        config,
        evaluations: 0,
        best: None,
    };
    let mut prev = Trial {
        alpha: 0.0,
        loss: loss0,
        slope: slope0,
        grad: Vec::new(),
    };
    let mut alpha = alpha0.min(config.alpha_max);
    while !search.out_of_budget() {
        let t = search.evaluate(alpha)?;
        if !search.sufficient_decrease(&t) || (prev.alpha > 0.0 && t.loss >= prev.loss) {
            return search.zoom(prev, t);
        }
        if search.curvature_ok(&t) {
            return Ok(Some(search.done(t)));
        }
        if t.slope >= 0.0 {
            return search.zoom(t, prev);
        }
        if alpha >= config.alpha_max {
            break;
        }
        alpha = (2.0 * alpha).min(config.alpha_max);
        prev = t;
    }
    Ok(search.fallback())
}
