//! Diagonals of the curvature without building the W × W matrix: the exact
//! diag(H), the Becker-LeCun approximation (PRML 5.79–5.81), and diag(G).
//!
//! All three rest on one fact: E_n depends on w_ji (layer l) only through
//! a_j = a\[l\]_j, and ∂a_j/∂w_ji = z\[l\]_i does not depend on w_ji, so
//! ```text
//!   ∂²E_n/∂w_ji² = z[l]_i² · [M_l]_jj,     ∂²E_n/∂b_j² = [M_l]_jj,
//! ```
//! where M_l = ∂²E_n/∂a\[l\]∂a\[l\] (out_l, out_l) is the per-sample Hessian in
//! layer l's pre-activations. It is propagated backwards from the output
//! (indexing as in `passes.rs`; δ\[l\] here is per sample, NOT divided by N):
//! ```text
//!   M_{L−1} = ∂²E_n/∂a² (Loss::hessian)
//!   M_{l−1} = diag(h′) W_lᵀ M_l W_l diag(h′) + diag(h″ ⊙ (δ[l] W_l)),   h = h_{l−1}(a[l−1])
//!   δ[l−1]  = h′ ⊙ (δ[l] W_l)
//! ```
//! (the second term is PRML 5.80's second-derivative term, the first its
//! outer sum kept in full). The results are the mean over N plus λ on weights.

use super::passes::{forward, weights};
use crate::engine::penalty::L2;
use crate::engine::Diagonal;
use crate::model::{LayerLayout, Mlp};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Adds one sample's z[l]_i² · m_j on W_l[j][i] and m_j on b_l[j], for m = diag(M_l) (out_l).
fn accumulate(layer: &LayerLayout, z: ArrayView1<f64>, m: &Array1<f64>, diag: &mut [f64]) {
    let w = &mut diag[layer.weights.clone()];
    for j in 0..layer.fan_out {
        for i in 0..layer.fan_in {
            w[j * layer.fan_in + i] += z[i] * z[i] * m[j];
        }
    }
    for (dst, m_j) in diag[layer.bias.clone()].iter_mut().zip(m) {
        *dst += m_j;
    }
}

/// The shared driver: per sample, propagate M (or its diagonal) from the output
/// to the input layer, accumulating each layer's diagonal; then mean and λ.
fn diagonal(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    kind: Diagonal,
) -> Vec<f64> {
    debug_assert_eq!(t.dim(), (x.nrows(), mlp.num_outputs()));
    let layers = mlp.layout();
    let last = layers.len() - 1;
    let (loss, out_act) = (mlp.loss(), mlp.output_activation());
    let fw = forward(mlp, theta, x);
    let n = x.nrows();
    let mut diag = vec![0.0; theta.len()];
    for s in 0..n {
        let a_out = fw.a[last].row(s).to_vec();
        let t_s = t.row(s).to_vec();
        let k = a_out.len();
        let out_hessian = match kind {
            Diagonal::GaussNewton => loss.gauss_newton_hessian(out_act, &a_out, &t_s),
            Diagonal::Hessian | Diagonal::BeckerLeCun => loss.hessian(out_act, &a_out, &t_s),
        };
        // M_{L−1} (K, K); for Becker-LeCun only its diagonal is ever used.
        let mut m =
            Array2::from_shape_vec((k, k), out_hessian).unwrap_or_else(|_| Array2::zeros((k, k)));
        let mut delta = vec![0.0; k];
        loss.delta(out_act, &a_out, &t_s, &mut delta);
        let mut delta = Array1::from(delta); // δ[l] of this sample (out_l)

        for l in (0..=last).rev() {
            accumulate(&layers[l], fw.z[l].row(s), &m.diag().to_owned(), &mut diag);
            if l == 0 {
                break;
            }
            let w_l = weights(&layers[l], theta); // (out_l, in_l)
            let act = mlp.activations()[l - 1];
            let a_prev = fw.a[l - 1].row(s);
            let dh = a_prev.mapv(|a| act.dh(a)); // h′ (in_l)
            let d2h = a_prev.mapv(|a| act.d2h(a)); // h″ (in_l)
            let back = delta.dot(&w_l); // δ[l] W_l (in_l)
            let second_order = &d2h * &back; // h″ ⊙ (δ[l] W_l)
            m = match kind {
                Diagonal::Hessian | Diagonal::GaussNewton => {
                    let p = w_l.t().dot(&m).dot(&w_l); // W_lᵀ M_l W_l (in_l, in_l)
                    let mut next =
                        Array2::from_shape_fn(p.dim(), |(i, j)| dh[i] * p[[i, j]] * dh[j]);
                    if kind == Diagonal::Hessian {
                        for i in 0..next.nrows() {
                            next[[i, i]] += second_order[i];
                        }
                    }
                    next
                }
                Diagonal::BeckerLeCun => {
                    // PRML 5.81: m_{l−1} = h′² ⊙ ((W_l ∘ W_l)ᵀ m_l) + h″ ⊙ (δ[l] W_l).
                    let w_sq = w_l.mapv(|w| w * w);
                    let diag_next = &dh * &dh * w_sq.t().dot(&m.diag()) + &second_order;
                    Array2::from_diag(&diag_next)
                }
            };
            delta = dh * back;
        }
    }
    for d in diag.iter_mut() {
        *d /= n as f64;
    }
    L2::of(mlp).add_to_diagonal(&mut diag);
    diag
}

/// The EXACT diagonal of H (W) for X (N, D), T (N, K), without building H:
/// ∂²E/∂w_ji² = (1/N) Σ_n z_i² \[M_l\]_jj + λ with the full per-sample M_l of the
/// module header (PRML 5.79–5.80 without dropping any term). Cost per sample
/// O(Σ_l out_l·in_l·(out_l + in_l)).
pub fn diag_hessian(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>, t: ArrayView2<f64>) -> Vec<f64> {
    diagonal(mlp, theta, x, t, Diagonal::Hessian)
}

/// The Becker-LeCun diagonal (PRML 5.79–5.81), (W): the recursion of the module
/// header keeping only the diagonal of M_l at every step, starting from the
/// diagonal of the exact output Hessian:
/// m_{l−1} = h′² ⊙ ((W_l ∘ W_l)ᵀ m_l) + h″ ⊙ (δ\[l\] W_l).
///
/// It is EXACT for the last layer's weights and biases (they use the exact
/// diagonal of M_{L−1}), hence for a network with one layer of weights; for
/// earlier layers it is an APPROXIMATION, since the dropped off-diagonal terms
/// of M_l (e.g. −p pᵀ of softmax-ce) do contribute to diag(H).
pub fn diag_becker_lecun(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
) -> Vec<f64> {
    diagonal(mlp, theta, x, t, Diagonal::BeckerLeCun)
}

/// The exact diagonal of G = (1/N) Σ_n J_nᵀ H_out,GN,n J_n + λ I_w (W): the
/// M_l recursion from the Gauss-Newton output Hessian, without the h″ term.
pub fn diag_ggn(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>, t: ArrayView2<f64>) -> Vec<f64> {
    diagonal(mlp, theta, x, t, Diagonal::GaussNewton)
}
