//! `Net`: the network as the fast passes see it — the architecture, θ in the
//! engine's precision, and the per-sample output curvature written without
//! allocation (the same formulas as `loss.rs`).

use super::real::Real;
use crate::activation::Activation;
use crate::loss::{softmax, OutputCurvature};
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

/// Whether the output Hessian is softmax-ce's s·(diag(p) − ppᵀ), which the
/// passes prepare as p and s per sample (applied to k vectors without `exp`);
/// otherwise it is diagonal and prepared as its diagonal (`Loss::diagonal_hessian`).
pub fn softmax_output(mlp: &Mlp) -> bool {
    mlp.loss().output_curvature() == OutputCurvature::Softmax
}

/// Writes p = softmax(a) into `p` and returns s = Σ_k t_k (loss.rs, ce).
pub fn softmax_and_scale(a: &[f64], t: &[f64], p: &mut [f64]) -> f64 {
    softmax(a, p);
    t.iter().sum()
}
