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

impl<T: Real> super::engine::FastCpuEngine<T> {
    /// The outer-product matrix (W, W) over `rows` at the loaded θ: one part, chunk
    /// after chunk (its (W, W) accumulator is too large to keep per thread).
    pub(super) fn outer_product(&mut self, rows: std::ops::Range<usize>) -> ndarray::Array2<f64> {
        use super::workspace::OuterBuffers;
        use crate::engine::{Diagonal, Kind};
        self.outer_space();
        let net = self.model.net();
        let Some(space) = self.spaces.outer.as_mut() else {
            return ndarray::Array2::zeros((0, 0));
        };
        space.parts[0].work.diag.load_weights(&net);
        space.run(
            &self.data,
            &net,
            &rows,
            1,
            &mut self.part_sums,
            |net, ch, part| {
                let gn = Kind::GaussNewton;
                let base = &mut part.base;
                super::engine::curvature_base(net, ch.x, ch.t, ch.c, ch.inv_n, base, gn);
                let OuterBuffers { diag, b, acc } = &mut part.work;
                let which = Diagonal::GaussNewton;
                diag.chunk(net, ch.x, ch.c, &part.base, which, ch.inv_n, ch.first);
                accumulate(net, ch.x, ch.c, &part.base, diag, b, acc, ch.first);
                0.0
            },
        );
        let w = net.mlp.num_params();
        let acc = &space.parts[0].work.acc;
        ndarray::Array2::from_shape_fn((w, w), |(i, j)| acc[i * w + j].to_f64())
    }
}
