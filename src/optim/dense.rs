//! Dense W×W algebra on the host for Newton, Levenberg-Marquardt and BFGS:
//! the size limit and the damped Cholesky solve (faer).

use super::{OptimError, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ndarray::{Array1, Array2, ArrayView1};

/// The largest W for which the dense methods build a W×W matrix by default.
///
/// 8192² f64 entries are 512 MiB, and a Cholesky factorisation of that size
/// (W³/3 ≈ 1.8·10¹¹ flops) takes seconds to minutes on a laptop; beyond it the
/// matrix-free methods (`hessian-free`, `lbfgs`, `cg-*`) are the right tools.
/// The dense matrix is built on the engine's device and brought to the host,
/// so this host limit is also the device limit the optimizers impose.
pub const DEFAULT_MAX_DENSE_PARAMS: usize = 8192;

/// The largest W a dense Hessian, Gauss-Newton matrix or BFGS inverse may have.
pub fn max_dense_params() -> usize {
    DEFAULT_MAX_DENSE_PARAMS
}

/// Errs, naming the limit, when a dense W×W matrix is larger than `max` allows.
pub fn check_dense(method: &'static str, what: &'static str, w: usize, max: usize) -> Result<()> {
    if w > max {
        return Err(OptimError::TooLargeForDense {
            method,
            what,
            w,
            max,
            max_mib: max * max * 8 / (1 << 20),
        });
    }
    Ok(())
}

/// Solves (A + c·I) x = b (A (W, W) symmetric, b (W)) by a Cholesky
/// factorisation. `None` when A + c·I is not numerically positive definite
/// (or holds NaN/∞): the caller raises c and retries.
pub fn solve_damped(a: &Array2<f64>, c: f64, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    if a.dim() != (n, n) || !a.iter().all(|v| v.is_finite()) || !c.is_finite() {
        return None;
    }
    // Symmetrise explicitly: the engine's H is symmetric only up to rounding.
    let m = Mat::<f64>::from_fn(n, n, |i, j| {
        0.5 * (a[[i, j]] + a[[j, i]]) + if i == j { c } else { 0.0 }
    });
    let llt = m.llt(Side::Lower).ok()?;
    let mut x = Mat::<f64>::from_fn(n, 1, |i, _| b[i]);
    llt.solve_in_place(x.as_mut());
    let x: Vec<f64> = (0..n).map(|i| x[(i, 0)]).collect();
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// xᵀ A x for A (W, W).
pub fn quadratic_form(a: &Array2<f64>, x: &[f64]) -> f64 {
    let x = ArrayView1::from(x);
    x.dot(&a.dot(&x))
}

/// A x for A (W, W).
pub fn mat_vec(a: &Array2<f64>, x: &[f64]) -> Array1<f64> {
    a.dot(&ArrayView1::from(x))
}
