//! The L2 term of E, (λ/2) Σ_l ‖W_l‖² on weights (not biases) — the one place λ
//! enters any result. The face ([`super::Curvature`]) adds it to what a backend
//! returns for the data term; the f64 reference functions of `cpu/`, which are the
//! specification of the whole E, add it through the same functions.
//!
//! | result      | the L2 term's part                 |
//! |-------------|------------------------------------|
//! | E           | + (λ/2) Σ_l ‖W_l‖²                 |
//! | ∇E          | + λθ on weight entries             |
//! | H·v, G·v    | + λv on weight entries             |
//! | diagonals   | + λ on weight entries              |
//! | H, G (W, W) | + λ·I_w (weight entries of the diagonal) |
//! | K-FAC and Fisher products, Fisher diagonals and matrices | as H·v, diagonals, H |
//! | K-FAC factors, EKFAC's diagonal | none: of the data term (λ·I_w, zero on biases, is no Kronecker factor and not diagonal in EKFAC's basis) |
//! | per-sample gradients, their variance | none: λθ is the same for every sample |

use crate::model::{LayerLayout, Mlp};
use ndarray::{Array2, ArrayView2};

/// λ and where the weights sit in θ.
#[derive(Clone, Debug)]
pub struct L2 {
    lambda: f64,
    layers: Vec<LayerLayout>,
}

impl L2 {
    /// The penalty of `mlp` (its `l2()`).
    pub fn of(mlp: &Mlp) -> L2 {
        L2 {
            lambda: mlp.l2(),
            layers: mlp.layout(),
        }
    }

    /// λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The weight entries of θ (every layer's W_l, not its b_l).
    fn weight_entries(&self) -> impl Iterator<Item = usize> + '_ {
        self.layers.iter().flat_map(|l| l.weights.clone())
    }

    /// Every layer's weight range of θ.
    fn weight_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.layers.iter().map(|l| l.weights.clone())
    }

    /// (λ/2) Σ_l ‖W_l‖².
    pub fn value(&self, theta: &[f64]) -> f64 {
        if self.lambda == 0.0 {
            return 0.0;
        }
        // Eight partial sums per layer (`sum_of_squares`): a single running sum
        // is one dependent add per weight, 0.13 ms at W = 10⁵ — a quarter of a
        // 32-row mini-batch update.
        let sq: f64 = self
            .weight_ranges()
            .map(|r| crate::optim::vector::sum_of_squares(&theta[r]))
            .sum();
        0.5 * self.lambda * sq
    }

    /// out += λ·u on weight entries: the gradient (u = θ) or a product (u = v).
    pub fn add_times(&self, u: &[f64], out: &mut [f64]) {
        if self.lambda == 0.0 {
            return;
        }
        for r in self.weight_ranges() {
            for (o, x) in out[r.clone()].iter_mut().zip(&u[r]) {
                *o += self.lambda * x;
            }
        }
    }

    /// Row i of `out` (k, W) += λ·(row i of V) on weight entries.
    pub fn add_to_products(&self, v: ArrayView2<f64>, out: &mut Array2<f64>) {
        if self.lambda == 0.0 {
            return;
        }
        for (v_i, mut out_i) in v.rows().into_iter().zip(out.rows_mut()) {
            for p in self.weight_entries() {
                out_i[p] += self.lambda * v_i[p];
            }
        }
    }

    /// d += λ on weight entries of a diagonal (W).
    pub fn add_to_diagonal(&self, d: &mut [f64]) {
        if self.lambda == 0.0 {
            return;
        }
        for i in self.weight_entries() {
            d[i] += self.lambda;
        }
    }

    /// m += λ·I_w for a (W, W) matrix.
    pub fn add_to_matrix(&self, m: &mut Array2<f64>) {
        if self.lambda == 0.0 {
            return;
        }
        for i in self.weight_entries() {
            m[[i, i]] += self.lambda;
        }
    }
}
