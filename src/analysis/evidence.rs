//! λ by the evidence: MacKay's re-estimation of the prior precision α (and, for
//! regression, the noise precision β) at the current weights (PRML 3.5.2 and
//! 5.7.2), the step `train --l2 evidence` takes every few epochs.
//!
//! The model: a Gaussian prior N(0, α⁻¹) on the WEIGHTS (not the biases, as the
//! L2 term of E) and the loss as a negative log-likelihood. With this crate's
//! batch-mean objective E = (1/N) Σ_n E_n + (λ/2)‖W‖²:
//! - classification (ce, bce): −ln p(D|θ) = Σ_n E_n, so N·E is the negative log
//!   posterior with α = N·λ;
//! - regression (sse, mse): E_n = β₀·½‖y_n − t_n‖² with β₀ = 1 (sse) or 2/K
//!   (mse); with a noise precision β the negative log posterior is
//!   (β/β₀)·Σ_n E_n + (α/2)‖W‖², whose minimiser is E's with λ = α·β₀ / (β·N).
//!
//! At θ, with A = (β/β₀)·N·G_data + α·I_w the posterior precision (the
//! Gauss-Newton form of PRML 5.161, G_data of the mean data term):
//! ```text
//!   γ = Σ_{i ∈ weights} (1 − α·[A⁻¹]_ii)          (PRML 3.91 for a prior on the weights)
//!   α ← γ / ‖W‖²                                    (PRML 3.92, 5.178)
//!   1/β ← Σ_n ‖y_n − t_n‖² / (N·K − γ)              (PRML 3.95, 5.180; regression only)
//! ```
//! (with an isotropic prior and A = V diag(μ + α) Vᵀ the first is PRML's
//! Σ μ_i/(μ_i + α)). A⁻¹ is exact (dense, by Cholesky) while W is within the dense
//! limit; above it the diagonal of A stands for A (`Method::Diagonal`,
//! γ ≈ Σ_w μ_w/(μ_w + α) with μ = (β/β₀)·N·diag(G_data)), an approximation that
//! ignores the correlations between weights and so over-counts γ.

use super::dense;
use crate::engine::{Curvature, DataTerm};
use crate::error::{Error, Result};
use crate::loss::Loss;
use std::fmt;
use std::ops::Range;

/// The largest W for which training's re-estimation forms A densely (4096² f64:
/// 128 MiB, a Cholesky of ~2·10¹⁰ flops, under a second); above it, the diagonal.
pub const DENSE_LIMIT: usize = 4096;

/// How A⁻¹'s diagonal was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The dense A and its Cholesky inverse (exact).
    Dense,
    /// diag(A) only (W above the dense limit): an approximation.
    Diagonal,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Dense => "dense Gauss-Newton matrix",
            Method::Diagonal => "Gauss-Newton diagonal (approximation)",
        })
    }
}

/// One re-estimation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reestimate {
    /// The prior precision before (from the model's λ) and after.
    pub alpha_before: f64,
    pub alpha: f64,
    /// The noise precision after (regression), relative to the loss's own β₀.
    pub beta: Option<f64>,
    /// γ, the number of well-determined weights.
    pub gamma: f64,
    /// The model's new λ.
    pub lambda: f64,
    pub method: Method,
}

/// β₀, the noise precision a regression loss already carries (sse 1, mse 2/K);
/// None for the classification losses, which have no β.
fn loss_precision(loss: Loss, k: usize) -> Option<f64> {
    match loss {
        Loss::Sse => Some(1.0),
        Loss::Mse => Some(2.0 / k as f64),
        Loss::Ce | Loss::Bce => None,
    }
}

/// The α that E's λ means for `n` rows at noise precision β (β/β₀ = `beta_ratio`).
pub fn alpha_of_lambda(lambda: f64, n: usize, beta_ratio: f64) -> f64 {
    lambda * n as f64 * beta_ratio
}

/// One MacKay step at θ on `rows` of the engine's data, starting from the model's
/// λ and (regression) the noise precision `beta_ratio` = β/β₀ (1 at the start).
/// `dense_limit`: the largest W for the exact dense form.
pub fn reestimate(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    beta_ratio: f64,
    dense_limit: usize,
) -> Result<Reestimate> {
    let mlp = engine.mlp().clone();
    let n = rows.len();
    let k = mlp.num_outputs();
    let regression = loss_precision(mlp.loss(), k);
    let beta_ratio = if regression.is_some() {
        beta_ratio
    } else {
        1.0
    };
    let alpha_before = alpha_of_lambda(mlp.l2(), n, beta_ratio).max(f64::MIN_POSITIVE);
    let weights: Vec<usize> = mlp
        .layout()
        .iter()
        .flat_map(|l| l.weights.clone())
        .collect();
    let w_sq: f64 = weights.iter().map(|&i| theta[i] * theta[i]).sum();
    if w_sq == 0.0 {
        return Err(Error::Input(
            "the evidence re-estimation needs weights that are not all zero".into(),
        ));
    }
    let scale = beta_ratio * n as f64; // A's data part is (β/β₀)·N·G_data
    let mut data = DataTerm::of(engine)?;
    let (gamma, method) = if theta.len() <= dense_limit {
        let mut a = data.ggn(theta, rows.clone())?;
        a *= scale;
        for &i in &weights {
            a[[i, i]] += alpha_before;
        }
        // Biases have no prior: a dead unit's bias direction can be singular; a
        // jitter far below the data's scale keeps the factorisation alive.
        let jitter = 1e-12 * (0..a.nrows()).map(|i| a[[i, i]]).fold(0.0, f64::max);
        let inv = dense::cholesky_inverse(&a, 0.0)
            .or_else(|_| dense::cholesky_inverse(&a, jitter.max(f64::MIN_POSITIVE)))?;
        let gamma: f64 = weights
            .iter()
            .map(|&i| 1.0 - alpha_before * inv[[i, i]])
            .sum();
        (gamma, Method::Dense)
    } else {
        let d = data.diag_ggn(theta, rows.clone())?;
        let gamma = weights
            .iter()
            .map(|&i| {
                let mu = (scale * d[i]).max(0.0);
                mu / (mu + alpha_before)
            })
            .sum();
        (gamma, Method::Diagonal)
    };
    let gamma = gamma.clamp(0.0, weights.len() as f64);
    let alpha = (gamma / w_sq).max(f64::MIN_POSITIVE);
    let (beta, lambda) = match regression {
        None => (None, alpha / n as f64),
        Some(beta0) => {
            // Σ_n ‖y_n − t_n‖² = 2·N·E_data/β₀ for E_n = β₀·½‖y − t‖².
            let sq_residuals = 2.0 * n as f64 * data.loss(theta, rows)? / beta0;
            let dof = (n * k) as f64 - gamma;
            if !(sq_residuals > 0.0 && dof > 0.0) {
                return Err(Error::Input(
                    "the evidence re-estimation of β needs a non-zero residual and more targets than well-determined weights".into(),
                ));
            }
            let ratio = dof / sq_residuals / beta0; // β/β₀
            (Some(ratio), alpha / (ratio * n as f64))
        }
    };
    Ok(Reestimate {
        alpha_before,
        alpha,
        beta,
        gamma,
        lambda,
        method,
    })
}
