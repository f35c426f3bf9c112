//! Hessian-free optimization (Martens 2010, "Deep learning via Hessian-free
//! optimization"): each step solves the damped Gauss-Newton system
//!
//!   (G + λ·I) p = −g      (G (W, W) never formed: only G·v products)
//!
//! by (optionally preconditioned) linear conjugate gradients, minimising the
//! quadratic model φ(x) = ½ xᵀ(G + λI)x + gᵀx (Martens §4.1–4.2, §4.5):
//! - g on the step's rows; G·v on a separate, smaller curvature mini-batch,
//!   the first ⌈f·|rows|⌉ of them (`curvature_fraction` f, default 1 — all;
//!   the scheduler's per-epoch shuffle makes that sub-range a random subset);
//! - warm start x₀ = 0.95·p_prev, the previous CG solution (§4.3 — "0.95×");
//! - relative-progress stopping (§4.4): stop at iteration i when i > k,
//!   φ(x_i) < 0 and (φ(x_i) − φ(x_{i−k})) / φ(x_i) < k·ε, k = max(10, 0.1·i),
//!   ε = 5e-4; also at `max_cg_iterations` (default 250) or a vanishing residual;
//! - CG backtracking (§4.6): iterates are kept at i = ⌈1.3^j⌉ and the last;
//!   walking back from the last, the one with the lowest true E(θ + x) is taken;
//! - Levenberg-Marquardt damping (§4.1): ρ = (E(θ+p) − E(θ)) / (q(p) − q(0)),
//!   q the undamped model; ρ < ¼ ⇒ λ ← 3/2·λ, ρ > ¾ ⇒ λ ← 2/3·λ (λ₀ = 1);
//! - optional diagonal preconditioner M = (diag(G) + λ)^0.75 (§4.7 uses the
//!   empirical Fisher diagonal; the exact diag(G) from `diag_ggn` is used here).
//!
//! A step whose E is not below the current one is rejected (θ stays).
//!
//! Divergence: a CG iterate whose E is NaN or ∞ is never chosen (the
//! backtracking stops at it), so a step with no finite improvement is rejected
//! and λ grows ×3/2. A NaN or ∞ in E, ∇E, a product G·v or the preconditioner's
//! diag(G) returns [`OptimError::NonFinite`](super::OptimError::NonFinite)
//! with θ unchanged, and [`Optimizer::recover`] raises λ by the same ×3/2 and
//! drops the warm start (the previous solution may hold the overflow).
//!
//! φ(x_i) is free inside CG: with r = b − Ax, b = −g, φ(x) = −½ xᵀ(b + r).

use super::finite::{check_slice, start_loss_grad, NonFinite, Point, Quantity};
use super::vector::{axpy, dot, is_positive, norm};
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use std::ops::Range;

/// Parameters of [`HessianFree`].
#[derive(Clone, Debug, PartialEq)]
pub struct HessianFreeConfig {
    /// λ₀, the initial damping (default 1).
    pub initial_damping: f64,
    /// The most CG iterations per step (default 250).
    pub max_cg_iterations: usize,
    /// ε of the relative-progress rule (default 5e-4).
    pub progress_epsilon: f64,
    /// The warm-start factor on the previous solution (default 0.95).
    pub warm_start: f64,
    /// Whether to precondition CG by (diag(G) + λ)^0.75 (default false).
    pub preconditioner: bool,
    /// Fraction of the step's rows used for G·v (default 1.0).
    pub curvature_fraction: f64,
}

impl Default for HessianFreeConfig {
    fn default() -> HessianFreeConfig {
        HessianFreeConfig {
            initial_damping: 1.0,
            max_cg_iterations: 250,
            progress_epsilon: 5e-4,
            warm_start: 0.95,
            preconditioner: false,
            curvature_fraction: 1.0,
        }
    }
}

/// The factor on λ after a poor (ρ < ¼) or failed step, and after a recovery.
const DAMPING_RAISE: f64 = 1.5;
/// λ stays within these bounds so that ×3/2 and ×2/3 never over/underflow.
const DAMPING_BOUNDS: (f64, f64) = (1e-12, 1e12);
/// CG stops when ‖r‖ falls below this fraction of ‖b‖ (the system is solved).
const RESIDUAL_TOLERANCE: f64 = 1e-12;

/// One saved CG iterate with its (damped) model value φ.
struct Iterate {
    x: Vec<f64>,
    phi: f64,
}

/// Hessian-free optimization; its state is λ and the previous CG solution.
pub struct HessianFree {
    config: HessianFreeConfig,
    damping: f64,
    previous: Vec<f64>,
}

impl HessianFree {
    pub fn new(config: HessianFreeConfig) -> HessianFree {
        HessianFree {
            damping: config.initial_damping,
            config,
            previous: Vec::new(),
        }
    }

    /// The damping λ now in force.
    pub fn damping(&self) -> f64 {
        self.damping
    }

    /// Runs CG on (G + λI)x = b from x₀; returns the saved iterates (last one
    /// last) and the number of iterations.
    fn conjugate_gradients(
        &self,
        engine: &mut dyn Curvature,
        theta: &[f64],
        curvature_rows: Range<usize>,
        b: &[f64],
        x0: Vec<f64>,
    ) -> Result<(Vec<Iterate>, usize)> {
        let lambda = self.damping;
        // M⁻¹ as a vector (W): ones without the preconditioner.
        let inverse_m: Vec<f64> = if self.config.preconditioner {
            apply_diag(&mut *engine, theta, curvature_rows.clone(), lambda)?
        } else {
            vec![1.0; b.len()]
        };
        let mut apply = |v: &[f64]| -> Result<Vec<f64>> {
            let mut av = engine.gvp(theta, curvature_rows.clone(), v)?;
            check_slice(Quantity::GaussNewtonProduct, Point::Current, &av)?;
            axpy(lambda, v, &mut av);
            Ok(av)
        };
        let precondition =
            |r: &[f64]| -> Vec<f64> { r.iter().zip(&inverse_m).map(|(r, m)| r * m).collect() };
        let mut x = x0;
        let mut r = b.to_vec();
        if x.iter().any(|v| *v != 0.0) {
            let ax = apply(&x)?;
            axpy(-1.0, &ax, &mut r);
        }
        let mut y = precondition(&r);
        let mut p = y.clone();
        let mut ry = dot(&r, &y);
        let b_norm = norm(b);
        let mut phis: Vec<f64> = Vec::new(); // φ(x_i), i = 1..
        let mut saved: Vec<Iterate> = Vec::new();
        let mut next_save = 1usize;
        let mut iterations = 0;
        while iterations < self.config.max_cg_iterations {
            if norm(&r) <= RESIDUAL_TOLERANCE * b_norm || ry <= 0.0 {
                break;
            }
            let ap = apply(&p)?;
            let pap = dot(&p, &ap);
            if !is_positive(pap) {
                break; // cannot happen for G + λI with λ > 0, but never divide by it
            }
            let alpha = ry / pap;
            axpy(alpha, &p, &mut x);
            axpy(-alpha, &ap, &mut r);
            y = precondition(&r);
            let ry_new = dot(&r, &y);
            let beta = ry_new / ry;
            ry = ry_new;
            for (pi, yi) in p.iter_mut().zip(&y) {
                *pi = yi + beta * *pi;
            }
            iterations += 1;
            let i = iterations;
            let phi = -0.5
                * x.iter()
                    .zip(b.iter().zip(&r))
                    .map(|(x, (b, r))| x * (b + r))
                    .sum::<f64>();
            phis.push(phi);
            if i == next_save {
                saved.push(Iterate { x: x.clone(), phi });
                next_save = ((next_save as f64) * 1.3).ceil() as usize;
            }
            // Martens §4.4: relative progress over the last k iterations.
            let k = 10usize.max((0.1 * i as f64) as usize);
            if i > k && phi < 0.0 {
                let earlier = phis[i - k - 1];
                if (phi - earlier) / phi < k as f64 * self.config.progress_epsilon {
                    break;
                }
            }
        }
        let final_phi = phis.last().copied().unwrap_or(f64::NAN);
        if saved.last().is_none_or(|s| s.x != x) {
            saved.push(Iterate { x, phi: final_phi });
        }
        Ok((saved, iterations))
    }
}

/// M⁻¹ = (diag(G) + λ)^−0.75 (W).
fn apply_diag(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    lambda: f64,
) -> Result<Vec<f64>> {
    let d = engine.diag_ggn(theta, rows)?;
    check_slice(Quantity::GaussNewtonDiagonal, Point::Current, &d)?;
    Ok(d.iter()
        .map(|d| (d.max(0.0) + lambda).powf(-0.75))
        .collect())
}

impl Optimizer for HessianFree {
    fn name(&self) -> &str {
        "hessian-free"
    }

    /// λ ← 3λ/2 (its rise on a poor step) and no warm start from the last solution.
    fn recover(&mut self, _what: &NonFinite) {
        self.damping = (self.damping * DAMPING_RAISE).clamp(DAMPING_BOUNDS.0, DAMPING_BOUNDS.1);
        self.previous.clear();
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let (loss, grad) = start_loss_grad(engine, theta, rows.clone())?;
        let grad_norm = norm(&grad);
        if grad_norm == 0.0 {
            return Ok(StepReport::stationary(loss, Some(self.damping)));
        }
        let len = rows.end - rows.start;
        let fraction = self.config.curvature_fraction.clamp(0.0, 1.0);
        let curvature_len = ((fraction * len as f64).ceil() as usize).clamp(1, len);
        let curvature_rows = rows.start..rows.start + curvature_len;
        let b: Vec<f64> = grad.iter().map(|g| -g).collect();
        let x0 = if self.previous.len() == theta.len() {
            self.previous
                .iter()
                .map(|p| self.config.warm_start * p)
                .collect()
        } else {
            vec![0.0; theta.len()]
        };
        let (saved, cg_iterations) =
            self.conjugate_gradients(engine, theta, curvature_rows, &b, x0)?;
        // Martens §4.6: walk back from the last iterate while E keeps falling.
        let mut best: Option<(usize, f64)> = None;
        for (j, it) in saved.iter().enumerate().rev() {
            let trial: Vec<f64> = theta.iter().zip(&it.x).map(|(t, x)| t + x).collect();
            let e = engine.loss(&trial, rows.clone())?;
            match best {
                Some((_, best_e)) if e >= best_e || e.is_nan() => break,
                _ if e.is_finite() => best = Some((j, e)),
                _ => {}
            }
        }
        if let Some(last) = saved.last() {
            self.previous = last.x.clone();
        }
        let chosen = best.filter(|&(_, e)| e <= loss);
        let rho = match chosen {
            Some((j, e)) => {
                let it = &saved[j];
                let model = it.phi - 0.5 * self.damping * dot(&it.x, &it.x);
                (e - loss) / model
            }
            None => f64::NEG_INFINITY,
        };
        // ρ is finite or −∞ (no finite improvement) except 0/0 at a stationary
        // point, where λ is left alone.
        if rho < 0.25 {
            self.damping *= DAMPING_RAISE;
        } else if rho > 0.75 {
            self.damping *= 2.0 / 3.0;
        }
        self.damping = self.damping.clamp(DAMPING_BOUNDS.0, DAMPING_BOUNDS.1);
        let Some((j, loss_after)) = chosen else {
            return Ok(StepReport::rejected(
                loss,
                grad_norm,
                Some(self.damping),
                cg_iterations,
            ));
        };
        axpy(1.0, &saved[j].x, theta);
        Ok(StepReport {
            loss_before: loss,
            loss_after: Some(loss_after),
            grad_norm,
            step_norm: norm(&saved[j].x),
            damping: Some(self.damping),
            inner_iterations: cg_iterations,
            accepted: true,
        })
    }

    fn reset(&mut self) {
        self.damping = self.config.initial_damping;
        self.previous.clear();
    }

    /// λ in force and the previous CG solution p (W), the warm start of the
    /// next CG run (none before the first step).
    fn export_state(&self) -> OptimizerState {
        OptimizerState::new(self.name())
            .with_scalar("damping", self.damping)
            .with_vector_if_made("previous", &self.previous)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let damping = r.positive("damping")?;
        let previous = r.optional_tensor("previous", &[num_params])?;
        r.finish()?;
        self.damping = damping;
        self.previous = previous.unwrap_or_default();
        Ok(())
    }
}
