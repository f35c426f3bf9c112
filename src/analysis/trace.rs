//! Stochastic trace estimates from matrix-vector products only.
//!
//! - Hutchinson: tr(A) ≈ (1/m) Σ zᵢᵀ A zᵢ with Rademacher zᵢ; unbiased, with
//!   variance 2(‖A‖_F² − Σ A_ii²)/m. The standard error reported is the
//!   sample standard deviation of the zᵢᵀ A zᵢ over √m.
//! - Hutch++ (Meyer, Musco, Musco & Woodruff 2021): with m products, a third
//!   sketch S (dim, m/3), Q = orth(A S), then
//!   tr(A) ≈ tr(Qᵀ A Q) + Hutchinson on (I − QQᵀ) A (I − QQᵀ) with the last
//!   third; the top of the spectrum is captured exactly, so the variance left
//!   is that of the deflated remainder. Its standard error is that of the
//!   Hutchinson part (the first term has none given Q).

use super::lanczos::rademacher;
use super::operator::Operator;
use crate::error::{Error, Result};
use ndarray::{Array2, Axis};

/// An estimate of tr(A), its standard error and the products it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceEstimate {
    pub value: f64,
    pub std_error: f64,
    pub products: usize,
}

/// Products per engine pass: large enough to use the device, small enough
/// that a block (k, W) stays a few MiB for the largest networks.
const BLOCK: usize = 32;

/// Mean and standard error of the mean of samples.
fn mean_and_error(samples: &[f64]) -> (f64, f64) {
    let m = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / m;
    if samples.len() < 2 {
        return (mean, f64::INFINITY);
    }
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (m - 1.0);
    (mean, (var / m).sqrt())
}

/// zᵀ A z for each row z of Z (k, dim), in blocks.
fn quadratic_forms(op: &mut Operator, z: &Array2<f64>) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(z.nrows());
    for chunk in z.axis_chunks_iter(Axis(0), BLOCK) {
        let az = op.apply_block(chunk)?;
        for (zi, azi) in chunk.rows().into_iter().zip(az.rows()) {
            out.push(zi.dot(&azi));
        }
    }
    Ok(out)
}

/// Hutchinson's estimate with `samples` Rademacher vectors (seeded).
pub fn hutchinson(op: &mut Operator, samples: usize, seed: u64) -> Result<TraceEstimate> {
    if samples == 0 {
        return Err(Error::Input("Hutchinson needs at least one sample".into()));
    }
    let z = rademacher(samples, op.dim(), seed);
    let q = quadratic_forms(op, &z)?;
    let (value, std_error) = mean_and_error(&q);
    Ok(TraceEstimate {
        value,
        std_error,
        products: samples,
    })
}

/// Orthonormal rows spanning the rows of V (k, dim), by Gram-Schmidt twice;
/// rows that are (numerically) dependent are dropped.
fn orthonormal_rows(v: &Array2<f64>) -> Array2<f64> {
    let mut rows: Vec<ndarray::Array1<f64>> = Vec::new();
    for r in v.rows() {
        let mut w = r.to_owned();
        let n0 = w.dot(&w).sqrt();
        for _ in 0..2 {
            for q in &rows {
                let c = q.dot(&w);
                w.scaled_add(-c, q);
            }
        }
        let n = w.dot(&w).sqrt();
        if n > 1e-10 * n0 && n > 0.0 {
            rows.push(w.mapv(|x| x / n));
        }
    }
    let dim = v.ncols();
    Array2::from_shape_fn((rows.len(), dim), |(i, j)| rows[i][j])
}

/// Hutch++ with `products` matrix-vector products (at least 3, split in thirds).
pub fn hutch_plus_plus(op: &mut Operator, products: usize, seed: u64) -> Result<TraceEstimate> {
    if products < 6 {
        return Err(Error::Input(
            "Hutch++ needs at least 6 products (3 thirds of 2)".into(),
        ));
    }
    let dim = op.dim();
    let third = products / 3;
    let s = rademacher(third, dim, seed);
    let g = rademacher(products - 2 * third, dim, seed ^ 0x4875_7463);
    let mut as_rows = Array2::zeros((third, dim));
    for (i, chunk) in s.axis_chunks_iter(Axis(0), BLOCK).enumerate() {
        let a = op.apply_block(chunk)?;
        let start = i * BLOCK;
        as_rows
            .slice_mut(ndarray::s![start..start + a.nrows(), ..])
            .assign(&a);
    }
    let q = orthonormal_rows(&as_rows); // (r, dim)
    let exact: f64 = quadratic_forms(op, &q)?.iter().sum(); // tr(Qᵀ A Q)
                                                            // Project the Hutchinson probes: g ← g − Q Qᵀ g (rows).
    let coeffs = g.dot(&q.t()); // (m3, r)
    let g_perp = &g - &coeffs.dot(&q);
    let rest = quadratic_forms(op, &g_perp)?;
    let (mean, std_error) = mean_and_error(&rest);
    Ok(TraceEstimate {
        value: exact + mean,
        std_error,
        products: op_products(third, q.nrows(), rest.len()),
    })
}

fn op_products(sketch: usize, basis: usize, probes: usize) -> usize {
    sketch + basis + probes
}
