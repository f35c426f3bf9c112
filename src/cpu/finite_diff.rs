//! Finite differences of E and ∇E: the independent checks of every analytic
//! quantity of the reference (PRML 5.69, 5.90, 5.91). Each costs O(W) or
//! O(W²) passes, so they are for tiny networks and tests only.

use super::passes::{gradient, loss};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};

/// θ + Σ (step_i · e_i) for the given (index, step) pairs.
fn shifted(theta: &[f64], steps: &[(usize, f64)]) -> Vec<f64> {
    let mut p = theta.to_vec();
    for &(i, s) in steps {
        p[i] += s;
    }
    p
}

/// The central-difference gradient (PRML 5.69): ∂E/∂θ_i ≈ (E(θ + εe_i) −
/// E(θ − εe_i)) / 2ε, error O(ε²). Returns (W).
pub fn fd_gradient(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    eps: f64,
) -> Vec<f64> {
    (0..theta.len())
        .map(|i| {
            let plus = loss(mlp, &shifted(theta, &[(i, eps)]), x, t);
            let minus = loss(mlp, &shifted(theta, &[(i, -eps)]), x, t);
            (plus - minus) / (2.0 * eps)
        })
        .collect()
}

/// The Hessian from the error alone (PRML 5.90), (W, W):
/// ∂²E/∂θ_i∂θ_j ≈ [E(+ε_i +ε_j) − E(+ε_i −ε_j) − E(−ε_i +ε_j) + E(−ε_i −ε_j)] / 4ε²,
/// error O(ε²). On the diagonal (i = j) the same formula is a second difference
/// with step 2ε. Symmetric by construction (each pair is evaluated once).
pub fn fd_hessian_from_loss(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    eps: f64,
) -> Array2<f64> {
    let w = theta.len();
    let e = |steps: &[(usize, f64)]| loss(mlp, &shifted(theta, steps), x, t);
    let mut h = Array2::zeros((w, w));
    for i in 0..w {
        for j in i..w {
            let value =
                (e(&[(i, eps), (j, eps)]) - e(&[(i, eps), (j, -eps)]) - e(&[(i, -eps), (j, eps)])
                    + e(&[(i, -eps), (j, -eps)]))
                    / (4.0 * eps * eps);
            h[[i, j]] = value;
            h[[j, i]] = value;
        }
    }
    h
}

/// The Hessian from central differences of the gradient (PRML 5.91), (W, W):
/// column j = (∇E(θ + εe_j) − ∇E(θ − εe_j)) / 2ε, error O(ε²). The result is
/// SYMMETRISED, (H + Hᵀ)/2, which halves the difference error without changing
/// its order; compare against an exact H only with that in mind.
pub fn fd_hessian_from_grad(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    eps: f64,
) -> Array2<f64> {
    let w = theta.len();
    let mut h = Array2::zeros((w, w));
    for j in 0..w {
        let (_, g_plus) = gradient(mlp, &shifted(theta, &[(j, eps)]), x, t);
        let (_, g_minus) = gradient(mlp, &shifted(theta, &[(j, -eps)]), x, t);
        for i in 0..w {
            h[[i, j]] = (g_plus[i] - g_minus[i]) / (2.0 * eps);
        }
    }
    (&h + &h.t()) / 2.0
}

/// H v ≈ (∇E(θ + εv) − ∇E(θ − εv)) / 2ε (PRML 5.91 along v), (W), error O(ε²).
pub fn fd_hvp(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    v: &[f64],
    eps: f64,
) -> Vec<f64> {
    debug_assert_eq!(v.len(), theta.len());
    let plus: Vec<f64> = theta.iter().zip(v).map(|(p, d)| p + eps * d).collect();
    let minus: Vec<f64> = theta.iter().zip(v).map(|(p, d)| p - eps * d).collect();
    let (_, g_plus) = gradient(mlp, &plus, x, t);
    let (_, g_minus) = gradient(mlp, &minus, x, t);
    g_plus
        .iter()
        .zip(&g_minus)
        .map(|(a, b)| (a - b) / (2.0 * eps))
        .collect()
}
