//! Dense symmetric algebra on the host (faer): eigen-decomposition, Cholesky
//! inverse and log-determinant. Matrices are symmetrised, ½(A + Aᵀ), first,
//! since an engine's H is symmetric only up to rounding.

use crate::error::{Error, Result};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use ndarray::Array2;

/// The largest side for which `curvature hessian` runs a dense
/// eigendecomposition as a cross-check by default: 4096² f64 are 128 MiB and
/// the symmetric eigensolver costs ~(4/3)·W³ ≈ 10¹¹ flops, tens of seconds on
/// a laptop core. Above it only the matrix-free estimates are reported.
pub const DEFAULT_MAX_DENSE_EIGEN: usize = 4096;

fn to_faer_symmetric(a: &Array2<f64>, shift: f64) -> Result<Mat<f64>> {
    let (n, m) = a.dim();
    if n != m {
        return Err(Error::Shape(format!("a {n}×{m} matrix is not square")));
    }
    if !a.iter().all(|v| v.is_finite()) {
        return Err(Error::Input(
            "the matrix holds NaN or ∞ (is the model diverged?)".to_string(),
        ));
    }
    Ok(Mat::from_fn(n, n, |i, j| {
        0.5 * (a[[i, j]] + a[[j, i]]) + if i == j { shift } else { 0.0 }
    }))
}

/// The eigenvalues of the symmetric A (n, n), ascending.
pub fn eigenvalues(a: &Array2<f64>) -> Result<Vec<f64>> {
    let m = to_faer_symmetric(a, 0.0)?;
    m.self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Input(format!("symmetric eigensolver failed: {e:?}")))
}

/// (eigenvalues ascending (n), eigenvectors as columns (n, n)) of the symmetric A.
pub fn eigen(a: &Array2<f64>) -> Result<(Vec<f64>, Array2<f64>)> {
    let m = to_faer_symmetric(a, 0.0)?;
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Input(format!("symmetric eigensolver failed: {e:?}")))?;
    let n = a.nrows();
    let s = evd.S().column_vector();
    let u = evd.U();
    let values = (0..n).map(|i| s[i]).collect();
    let vectors = Array2::from_shape_fn((n, n), |(i, j)| u[(i, j)]);
    Ok((values, vectors))
}

/// The Cholesky factorisation of A + shift·I, or an error naming the shift.
fn cholesky(a: &Array2<f64>, shift: f64) -> Result<faer::linalg::solvers::Llt<f64>> {
    let m = to_faer_symmetric(a, shift)?;
    m.llt(Side::Lower).map_err(|_| {
        Error::Input(format!(
            "the matrix plus {shift:e}·I is not positive definite: use the Gauss-Newton matrix or a larger α"
        ))
    })
}

/// (A + shift·I)⁻¹ (n, n) by Cholesky.
pub fn cholesky_inverse(a: &Array2<f64>, shift: f64) -> Result<Array2<f64>> {
    let inv = cholesky(a, shift)?.inverse();
    let n = a.nrows();
    Ok(Array2::from_shape_fn((n, n), |(i, j)| {
        0.5 * (inv[(i, j)] + inv[(j, i)])
    }))
}

/// ln|A + shift·I| = 2 Σ ln L_ii by Cholesky.
pub fn log_det(a: &Array2<f64>, shift: f64) -> Result<f64> {
    let llt = cholesky(a, shift)?;
    let l = llt.L();
    Ok((0..a.nrows()).map(|i| 2.0 * l[(i, i)].ln()).sum())
}
