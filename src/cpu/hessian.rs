//! The full Hessian H and Gauss-Newton matrix G (W × W), built column block by
//! column block from [`hvp_block`] / [`gvp_block`] with unit vectors: the
//! matrix-free products are the primitive, the matrices their consequence.

use super::passes::{gvp_block, hvp_block};
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};

/// Columns of H (or G) computed per block pass: enough to share each forward
/// and backward pass among many R-passes, small enough that the block of unit
/// vectors (k, W) stays modest for the largest networks.
pub const HESSIAN_BLOCK: usize = 32;

/// Builds the (W, W) matrix whose column j is `product(E_j)` row j, from
/// blocks of HESSIAN_BLOCK unit vectors e_j.
fn from_blocks(w: usize, mut product: impl FnMut(ArrayView2<f64>) -> Array2<f64>) -> Array2<f64> {
    let mut m = Array2::zeros((w, w));
    let mut start = 0;
    while start < w {
        let k = HESSIAN_BLOCK.min(w - start);
        let mut units = Array2::zeros((k, w)); // (k, W): row i = e_{start+i}
        for i in 0..k {
            units[[i, start + i]] = 1.0;
        }
        let columns = product(units.view()); // (k, W): row i = M e_{start+i}
        m.slice_mut(s![.., start..start + k]).assign(&columns.t());
        start += k;
    }
    m
}

/// The exact Hessian H = ∂²E/∂θ∂θ (W, W) of E (batch mean + L2) for X (N, D),
/// T (N, K): column j is H e_j by R-propagation (PRML 5.96–5.111).
pub fn hessian(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>, t: ArrayView2<f64>) -> Array2<f64> {
    from_blocks(theta.len(), |v| hvp_block(mlp, theta, x, t, v))
}

/// The Gauss-Newton matrix G = (1/N) Σ_n J_nᵀ H_out,GN,n J_n + λ I_w (W, W)
/// (PRML 5.84/5.85 generalised): column j is G e_j.
pub fn ggn(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>, t: ArrayView2<f64>) -> Array2<f64> {
    from_blocks(theta.len(), |v| gvp_block(mlp, theta, x, t, v))
}
