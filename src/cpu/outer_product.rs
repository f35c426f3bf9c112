//! The outer-product (Levenberg-Marquardt / Gauss-Newton) approximation,
//! accumulated sample by sample (PRML 5.84 for regression, 5.85 and its
//! softmax form for classification), and its inverse by sequential
//! Sherman-Morrison updates (PRML 5.87–5.89).
//!
//! Per sample n the Gauss-Newton output Hessian (K, K) is factored as
//! H_out,GN,n = Σ_k c_k c_kᵀ:
//! ```text
//!   ce (softmax):    c_k = √(s·p_k) (e_k − p)      s = Σ_k t_k (1 for one-hot),
//!                    since Σ_k p_k (e_k − p)(e_k − p)ᵀ = diag(p) − p pᵀ when Σ_k p_k = 1;
//!   sse, mse, bce:   c_k = √(h_kk) e_k             (the output Hessian is diagonal).
//! ```
//! and each c is carried back to θ by one linear backward pass, b = J_nᵀ c / √N,
//! so that G = Σ_r b_r b_rᵀ + λ I_w with R = N·K vectors b_r (r = n·K + k).

use super::passes::{forward, weights};
use crate::activation::Activation;
use crate::engine::penalty::L2;
use crate::loss::Loss;
use crate::model::Mlp;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2};

/// The factor C (K, K) of one sample's Gauss-Newton output Hessian: row k is
/// c_k with Σ_k c_k c_kᵀ = H_out,GN (`Loss::gauss_newton_factor`).
pub(crate) fn output_factor(loss: Loss, act: Activation, a: &[f64], t: &[f64]) -> Array2<f64> {
    let k = a.len();
    Array2::from_shape_vec((k, k), loss.gauss_newton_factor(act, a, t))
        .unwrap_or_else(|_| Array2::zeros((k, k)))
}

/// The vectors b_r (R, W), R = N·K, row r = n·K + k, with
/// Σ_r b_r b_rᵀ = G − λ I_w = (1/N) Σ_n J_nᵀ H_out,GN,n J_n (PRML 5.84/5.85):
/// b = J_nᵀ c_k / √N, J_nᵀ c by a linear backward pass of the K rows c_k of
/// sample n at once: δ[L−1] = C, δ[l−1] = (δ\[l\] W_l) ⊙ h′(a[l−1]);
/// b on W_l\[j\]\[i\] is δ\[l\]_j z\[l\]_i, on b_l\[j\] it is δ\[l\]_j.
pub fn outer_product_vectors(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
) -> Array2<f64> {
    let layers = mlp.layout();
    let last = layers.len() - 1;
    let (n, k) = (x.nrows(), mlp.num_outputs());
    let fw = forward(mlp, theta, x);
    let scale = 1.0 / (n as f64).sqrt();
    let mut b = Array2::zeros((n * k, theta.len()));
    for sample in 0..n {
        let a_out = fw.a[last].row(sample).to_vec();
        let mut delta = output_factor(
            mlp.loss(),
            mlp.output_activation(),
            &a_out,
            &t.row(sample).to_vec(),
        ); // (K, out_l)
        let mut rows = b.slice_mut(s![sample * k..(sample + 1) * k, ..]); // (K, W)
        for l in (0..=last).rev() {
            let layer = &layers[l];
            let z = fw.z[l].row(sample); // (in_l)
            for r in 0..k {
                for j in 0..layer.fan_out {
                    let d = delta[[r, j]] * scale;
                    for i in 0..layer.fan_in {
                        rows[[r, layer.weights.start + j * layer.fan_in + i]] = d * z[i];
                    }
                    rows[[r, layer.bias.start + j]] = d;
                }
            }
            if l > 0 {
                let act = mlp.activations()[l - 1];
                let dh = fw.a[l - 1].row(sample).mapv(|a| act.dh(a)); // (in_l)
                delta = delta.dot(&weights(layer, theta)) * &dh; // (K, in_l)
            }
        }
    }
    b
}

/// The outer-product approximation Σ_r b_r b_rᵀ + λ I_w (W, W), accumulated
/// sample by sample (PRML 5.84/5.85: each sample adds B_nᵀ B_n for its K rows
/// of [`outer_product_vectors`]). Equals G, the Gauss-Newton matrix.
pub fn outer_product(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
) -> Array2<f64> {
    let b = outer_product_vectors(mlp, theta, x, t);
    let k = mlp.num_outputs();
    let w = theta.len();
    let mut m = Array2::zeros((w, w));
    for sample in 0..x.nrows() {
        let rows = b.slice(s![sample * k..(sample + 1) * k, ..]); // B_n (K, W)
        general_mat_mul(1.0, &rows.t(), &rows, 1.0, &mut m);
    }
    L2::of(mlp).add_to_matrix(&mut m);
    m
}

/// (outer_product + α I)⁻¹ (W, W) by sequential Sherman-Morrison updates
/// (PRML 5.87–5.89): from H₀ = diag(α + λ·\[weight\]) (diagonal, inverted
/// entrywise), for each b_r in order
/// A⁻¹ ← A⁻¹ − (A⁻¹ b)(A⁻¹ b)ᵀ / (1 + bᵀ A⁻¹ b).
/// α must be > 0 (biases get no λ, so H₀ would be singular at α = 0).
pub fn inverse_outer_product(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    alpha: f64,
) -> Array2<f64> {
    let b = outer_product_vectors(mlp, theta, x, t);
    // H₀ = αI + λI_w, inverted entrywise.
    let mut h0 = vec![alpha; theta.len()];
    L2::of(mlp).add_to_diagonal(&mut h0);
    let mut inv = Array2::from_diag(&ndarray::Array1::from_iter(h0.iter().map(|h| 1.0 / h)));
    for b_r in b.rows() {
        let u = inv.dot(&b_r); // A⁻¹ b (W)
        let denom = 1.0 + b_r.dot(&u);
        let u_col = u.view().insert_axis(ndarray::Axis(1)); // (W, 1)
        let u_row = u.view().insert_axis(ndarray::Axis(0)); // (1, W)
        general_mat_mul(-1.0 / denom, &u_col, &u_row, 1.0, &mut inv);
    }
    inv
}
