//! `Net`: the network as the fast passes see it — the architecture, θ in the
//! engine's precision, and the per-sample output curvature written without
//! allocation (the same formulas as `loss.rs`).

use super::real::Real;
use crate::activation::Activation;
use crate::loss::{softmax, Loss};
use crate::model::{LayerLayout, Mlp};

/// The architecture and θ (W) in precision T, borrowed for one operation.
pub struct Net<'a, T> {
    pub mlp: &'a Mlp,
    pub layers: &'a [LayerLayout],
    pub theta: &'a [T],
}

impl<T: Real> Net<'_, T> {
    /// L, the layers of weights.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }
    /// W_l (out_l, in_l) row-major.
    pub fn w(&self, l: usize) -> &[T] {
        &self.theta[self.layers[l].weights.clone()]
    }
    /// b_l (out_l).
    pub fn b(&self, l: usize) -> &[T] {
        &self.theta[self.layers[l].bias.clone()]
    }
    /// h_l, the activation of layer l.
    pub fn act(&self, l: usize) -> Activation {
        self.mlp.activations()[l]
    }
    /// K, the outputs.
    pub fn k_out(&self) -> usize {
        self.mlp.num_outputs()
    }
}

/// How the output Hessian in the pre-activations of one sample acts, prepared
/// once per sample so that the R-pass applies it to k vectors without `exp`:
/// ce: s·(diag(p) − ppᵀ) (`Full`); sse, mse, bce: a diagonal (`Diagonal`).
pub fn is_softmax_ce(mlp: &Mlp) -> bool {
    mlp.loss() == Loss::Ce
}

/// Writes p = softmax(a) into `p` and returns s = Σ_k t_k (loss.rs, ce).
pub fn softmax_and_scale(a: &[f64], t: &[f64], p: &mut [f64]) -> f64 {
    softmax(a, p);
    t.iter().sum()
}

/// The diagonal of a diagonal output Hessian (sse, mse, bce), exact or its
/// Gauss-Newton part, written into `out` (K): the table of `loss.rs`:
/// sse/mse c·(h′² + (y − t) h″) (GN: c·h′²), bce σ(1 − σ).
pub fn diagonal_output_hessian(
    loss: Loss,
    act: Activation,
    a: &[f64],
    t: &[f64],
    gauss_newton: bool,
    out: &mut [f64],
) {
    let k = a.len();
    match loss {
        Loss::Sse | Loss::Mse => {
            let c = if loss == Loss::Mse {
                2.0 / k as f64
            } else {
                1.0
            };
            for i in 0..k {
                let d = act.dh(a[i]);
                let residual = if gauss_newton {
                    0.0
                } else {
                    (act.h(a[i]) - t[i]) * act.d2h(a[i])
                };
                out[i] = c * (d * d + residual);
            }
        }
        Loss::Bce => {
            for i in 0..k {
                let s = crate::activation::sigmoid(a[i]);
                out[i] = s * (1.0 - s);
            }
        }
        Loss::Ce => {
            // Not diagonal: callers use the softmax form; zero keeps this total.
            out.iter_mut().for_each(|o| *o = 0.0);
        }
    }
}
