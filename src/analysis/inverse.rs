//! The inverse of the curvature matrix, two ways that agree where both apply:
//!
//! - sequential Sherman-Morrison on the outer-product approximation (PRML
//!   5.86–5.89), built up one rank-one term b_r b_rᵀ at a time from
//!   (α + λ·\[weight\]) I, on the CPU reference (`cpu::inverse_outer_product`);
//! - a Cholesky factorisation of (H or G) + α I, with the matrix built by the
//!   engine (CPU or GPU) and factorised on the host (faer).
//!
//! Since the outer product equals G, (outer product + αI)⁻¹ = (G + αI)⁻¹.

use super::dense;
use crate::cpu;
use crate::engine::Curvature;
use crate::engine::Kind;
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::ops::Range;

fn check_alpha(alpha: f64, strictly_positive: bool) -> Result<()> {
    if !alpha.is_finite() || alpha < 0.0 || (strictly_positive && alpha == 0.0) {
        return Err(Error::Input(format!(
            "α = {alpha}: give a finite α {} 0",
            if strictly_positive { ">" } else { "≥" }
        )));
    }
    Ok(())
}

/// (Σ_r b_r b_rᵀ + λ I_w + α I)⁻¹ = (G + αI)⁻¹ (W, W) by sequential
/// Sherman-Morrison updates over the N·K outer-product vectors of the rows
/// x (N, D), t (N, K). α > 0 (the start (α + λ·\[weight\]) I must be invertible).
pub fn sherman_morrison_inverse(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    alpha: f64,
) -> Result<Array2<f64>> {
    check_alpha(alpha, true)?;
    if theta.len() != mlp.num_params() || x.nrows() != t.nrows() || x.nrows() == 0 {
        return Err(Error::Shape(format!(
            "θ has {} entries (W = {}), x {} rows, t {} rows",
            theta.len(),
            mlp.num_params(),
            x.nrows(),
            t.nrows()
        )));
    }
    Ok(cpu::inverse_outer_product(mlp, theta, x, t, alpha))
}

/// (A + αI)⁻¹ (W, W), A = H or G built by the engine on `rows`, by Cholesky.
/// Errs when A + αI is not positive definite (H away from a minimum).
pub fn cholesky_inverse(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    kind: Kind,
    alpha: f64,
) -> Result<Array2<f64>> {
    check_alpha(alpha, false)?;
    let a = engine.matrix(kind, theta, rows)?;
    dense::cholesky_inverse(&a, alpha)
}
