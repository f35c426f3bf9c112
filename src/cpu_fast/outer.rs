//! The outer-product matrix Σ_n J_nᵀ H_out,GN,n J_n / N + λ I_w (PRML 5.84/5.85)
//! from stacked per-sample factor rows: the Gauss-Newton factor rows of every
//! layer (`diagonal.rs`, with 1/√N) give b = J_nᵀ c / √N with entries
//! f_j z_i on W_l\[j\]\[i\] and f_j on b_l\[j\]; a chunk of c samples stacks its
//! c·K rows into B (c·K, W) and adds BᵀB by ONE GEMM.

use super::diagonal::DiagBuffers;
use super::gemm::{gemm, mat};
use super::net::Net;
use super::passes::{input, Base};
use super::real::Real;

/// Fills B (c·K, W) from the factor rows of the last Gauss-Newton diagonal chunk
/// and adds BᵀB into `acc` (W, W).
#[allow(clippy::too_many_arguments)]
pub fn accumulate<T: Real>(
    net: &Net<T>,
    x: &[T],
    c: usize,
    base: &Base<T>,
    factors: &DiagBuffers<T>,
    b: &mut [T],
    acc: &mut [T],
    first: bool,
) {
    let w = net.theta.len();
    let kk = net.k_out();
    let rows = c * kk;
    for (l, layer) in net.layers.iter().enumerate() {
        let (fin, fout) = (layer.fan_in, layer.fan_out);
        let z = input(base, x, l);
        let fac = &factors.fac[l];
        for row in 0..rows {
            let s = row % c;
            let f = &fac[row * fout..(row + 1) * fout];
            let z_s = &z[s * fin..(s + 1) * fin];
            let dst = &mut b[row * w..(row + 1) * w];
            for (j, fv) in f.iter().enumerate() {
                let start = layer.weights.start + j * fin;
                for (o, zv) in dst[start..start + fin].iter_mut().zip(z_s) {
                    *o = *fv * *zv;
                }
                dst[layer.bias.start + j] = *fv;
            }
        }
    }
    gemm(acc, mat(b, rows, w).t(), mat(b, rows, w), T::one(), !first);
}
