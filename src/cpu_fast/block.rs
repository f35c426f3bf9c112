//! R-propagation for a block of k vectors at once (PRML 5.101–5.111, as in
//! `cpu/passes.rs::r_pass`), every layer's products ONE GEMM over the stacked
//! (c·k, width) rows. Rows are sample-major: row s·k + i is sample s, vector i,
//! so that z\[l\] (c, in)·[V_1ᵀ … V_kᵀ] (in, k·out) lands directly in (c·k, out).
//! ```text
//!   R{a[l]}   = R{z[l]} W_lᵀ + z[l] V_lᵀ + Vb_l       (c·k, out_l)  (no R{z[0]}: it is 0)
//!   R{z[l+1]} = h′ ⊙ R{a[l]}
//!   R{δ[L−1]} = H_out R{a[L−1]} / N
//!   R{δ[l]}   = h″ ⊙ R{a[l]} ⊙ (δ[l+1] W_{l+1}) + h′ ⊙ (R{δ[l+1]} W_{l+1} + δ[l+1] V_{l+1})
//!   R{∂E/∂W_l} = R{δ[l]}ᵀ z[l] + δ[l]ᵀ R{z[l]},   R{∂E/∂b_l} = Σ_n R{δ[l]}
//! ```
//! Gauss-Newton (G v) drops the h″ term, δ V and δᵀ R{z}.

use super::gemm::{gemm, mat, Layout, Operand};
use super::net::{softmax_output, Net};
use super::par::{self, rows_per_task};
use super::passes::{add_assign, input, sum_over_samples, Base};
use super::real::Real;
use crate::engine::Kind;
use ndarray::ArrayView2;

/// The k loaded vectors in the layouts the GEMMs read, shared read-only by
/// every part of a data-parallel block pass (loaded once per operation).
pub struct BlockVectors<T> {
    /// V_l stacked by vector (k, out_l, in_l), by unit (out_l, k, in_l), Vb_l (k, out_l).
    vstack: Vec<Vec<T>>,
    vcat: Vec<Vec<T>>,
    vb: Vec<Vec<T>>,
    /// When every loaded vector is a unit vector e_p (columns of H asked for
    /// as such): p of each, so that z V_lᵀ and δ V are gathers instead of
    /// products with zeros.
    units: Option<Vec<usize>>,
}

impl<T: Real> BlockVectors<T> {
    pub fn new(net: &Net<T>, k_cap: usize) -> BlockVectors<T> {
        let per = |f: &dyn Fn(usize, usize) -> usize| -> Vec<Vec<T>> {
            net.layers
                .iter()
                .map(|l| vec![T::zero(); f(l.fan_in, l.fan_out)])
                .collect()
        };
        BlockVectors {
            vstack: per(&|i, o| k_cap * o * i),
            vcat: per(&|i, o| k_cap * o * i),
            vb: per(&|_, o| k_cap * o),
            units: None,
        }
    }

    /// Copies V (k, W) into the two stacked layouts the GEMMs read, or notes
    /// the unit vectors' indices.
    pub fn load(&mut self, net: &Net<T>, v: ArrayView2<f64>) {
        self.units = unit_indices(v);
        let k = v.nrows();
        if let Some(units) = &self.units {
            for (l, layer) in net.layers.iter().enumerate() {
                self.vb[l][..k * layer.fan_out]
                    .iter_mut()
                    .for_each(|b| *b = T::zero());
                for (i, &p) in units.iter().enumerate() {
                    if layer.bias.contains(&p) {
                        self.vb[l][i * layer.fan_out + p - layer.bias.start] = T::one();
                    }
                }
            }
            return;
        }
        for (l, layer) in net.layers.iter().enumerate() {
            let (fin, fout) = (layer.fan_in, layer.fan_out);
            for (i, v_i) in v.rows().into_iter().enumerate() {
                for j in 0..fout {
                    for m in 0..fin {
                        let val = T::from_f64(v_i[layer.weights.start + j * fin + m]);
                        self.vstack[l][(i * fout + j) * fin + m] = val;
                        self.vcat[l][(j * k + i) * fin + m] = val;
                    }
                    self.vb[l][i * fout + j] = T::from_f64(v_i[layer.bias.start + j]);
                }
            }
        }
    }
}

/// Buffers of one part's block pass for up to `cap` samples and `k_cap` vectors.
pub struct Block<T> {
    /// R{a[l]} (cap·k, out_l), R{z[l+1]} (cap·k, out_l) (hidden), R{δ[l]} (cap·k, out_l).
    ra: Vec<Vec<T>>,
    rz: Vec<Vec<T>>,
    rd: Vec<Vec<T>>,
    /// Accumulators: R{δ}ᵀz (k·out_l, in_l) in `gstack_layout[l]` (the layout
    /// faer runs faster for its shape, see `sum_over_samples`), δᵀR{z}
    /// (out_l, k, in_l), bias (k, out_l).
    gstack: Vec<Vec<T>>,
    gstack_layout: Vec<Layout>,
    gcat: Vec<Vec<T>>,
    gb: Vec<Vec<T>>,
}

impl<T: Real> Block<T> {
    pub fn new(net: &Net<T>, cap: usize, k_cap: usize) -> Block<T> {
        let depth = net.depth();
        let per = |f: &dyn Fn(usize, usize) -> usize| -> Vec<Vec<T>> {
            (0..depth)
                .map(|l| vec![T::zero(); f(net.layers[l].fan_in, net.layers[l].fan_out)])
                .collect()
        };
        let rows = cap * k_cap;
        Block {
            ra: per(&|_, o| rows * o),
            rz: (0..depth)
                .map(|l| {
                    let n = if l + 1 < depth {
                        rows * net.layers[l].fan_out
                    } else {
                        0
                    };
                    vec![T::zero(); n]
                })
                .collect(),
            rd: per(&|_, o| rows * o),
            gstack: per(&|i, o| k_cap * o * i),
            gstack_layout: vec![Layout::RowMajor; depth],
            gcat: per(&|i, o| k_cap * o * i),
            gb: per(&|_, o| k_cap * o),
        }
    }

    /// One chunk of c samples: R-forward, R-backward and the accumulation of
    /// R{∇E} for the k loaded vectors. `base` holds the chunk's forward pass
    /// (with h′, and for H h″), for H its backward pass, and its prepared
    /// output curvature.
    #[allow(clippy::too_many_arguments)]
    pub fn chunk(
        &mut self,
        net: &Net<T>,
        vectors: &BlockVectors<T>,
        x: &[T],
        x_cols: Operand<T>,
        c: usize,
        k: usize,
        base: &Base<T>,
        kind: Kind,
        inv_n: f64,
        first: bool,
    ) {
        let depth = net.depth();
        let last = depth - 1;
        let rows = c * k;
        // R-forward.
        for l in 0..depth {
            let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
            let ra = &mut self.ra[l];
            if let Some(units) = &vectors.units {
                // z[l] e_pᵀ: column j of vector i is z[l][:, m] for p = W_l[j][m]; else 0.
                ra[..rows * fout].iter_mut().for_each(|v| *v = T::zero());
                let zin = input(base, x, l);
                for (i, &p) in units.iter().enumerate() {
                    if let Some((j, m)) = weight_position(&net.layers[l], p) {
                        for s in 0..c {
                            ra[(s * k + i) * fout + j] = zin[s * fin + m];
                        }
                    }
                }
            } else {
                // z[l] V_lᵀ: (c, in)·(in, k·out) = (c, k·out) ≡ (c·k, out) sample-major.
                gemm(
                    ra,
                    mat(input(base, x, l), c, fin),
                    mat(&vectors.vstack[l], k * fout, fin).t(),
                    T::one(),
                    false,
                );
            }
            if l > 0 {
                // R{z[l]} W_lᵀ: (c·k, in)·(in, out).
                gemm(
                    ra,
                    mat(&self.rz[l - 1], rows, fin),
                    mat(net.w(l), fout, fin).t(),
                    T::one(),
                    true,
                );
            }
            // + Vb_l, then R{z[l+1]} = h′ ⊙ R{a[l]} for hidden layers: row r is
            // sample r / k, vector r % k.
            let vb = &vectors.vb[l];
            let add_vb = |first: usize, ra: &mut [T]| {
                for (r, row) in ra.chunks_exact_mut(fout).enumerate() {
                    let i = (first + r) % k;
                    for (v, b) in row.iter_mut().zip(&vb[i * fout..(i + 1) * fout]) {
                        *v += *b;
                    }
                }
            };
            if l < last {
                let dh = &base.dh[l];
                par::rows2(
                    &mut ra[..rows * fout],
                    &mut self.rz[l][..rows * fout],
                    fout,
                    rows_per_task(fout),
                    |first, ra, rz| {
                        add_vb(first, ra);
                        for (r, (rz_row, ra_row)) in rz
                            .chunks_exact_mut(fout)
                            .zip(ra.chunks_exact(fout))
                            .enumerate()
                        {
                            let s = (first + r) / k;
                            for ((o, a), d) in rz_row.iter_mut().zip(ra_row).zip(&dh[s * fout..]) {
                                *o = *d * *a;
                            }
                        }
                    },
                );
            } else {
                par::rows1(&mut ra[..rows * fout], fout, rows_per_task(fout), add_vb);
            }
        }
        // Output: R{δ} = H_out R{a} / N, per row.
        let kk = net.k_out();
        let scale = T::from_f64(inv_n);
        let ce = softmax_output(net.mlp);
        {
            let (ra, rd) = (&self.ra[last], &mut self.rd[last]);
            let (out_p, out_s) = (&base.out_p, &base.out_s);
            par::rows1(
                &mut rd[..rows * kk],
                kk,
                rows_per_task(2 * kk),
                |first, rd| {
                    for (i, d_row) in rd.chunks_exact_mut(kk).enumerate() {
                        let r = first + i;
                        let s = r / k;
                        let p = &out_p[s * kk..(s + 1) * kk];
                        let a_row = &ra[r * kk..(r + 1) * kk];
                        if ce {
                            // s·(diag(p) − ppᵀ) r = s·p_k·Σ_j p_j (r_k − r_j) (Σ_j p_j = 1):
                            // free of the cancellation of r_k − pᵀr when p is nearly
                            // one-hot (the GPU's loss_hess has the same form and says why).
                            let f = out_s[s] * scale;
                            for ((d, pv), rk) in d_row.iter_mut().zip(p).zip(a_row) {
                                let mut spread = T::zero();
                                for (pj, rj) in p.iter().zip(a_row) {
                                    spread += *pj * (*rk - *rj);
                                }
                                *d = f * *pv * spread;
                            }
                        } else {
                            for ((d, h), rv) in d_row.iter_mut().zip(p).zip(a_row) {
                                *d = scale * *h * *rv;
                            }
                        }
                    }
                },
            );
        }
        // R-backward.
        for l in (0..last).rev() {
            let (out_next, out_l) = (net.layers[l + 1].fan_out, net.layers[l].fan_out);
            let (rd_lo, rd_hi) = self.rd.split_at_mut(l + 1);
            let rd = &mut rd_lo[l];
            // R{δ[l+1]} W_{l+1}: (c·k, out_{l+1})·(out_{l+1}, out_l).
            gemm(
                rd,
                mat(&rd_hi[0], rows, out_next),
                mat(net.w(l + 1), out_next, out_l),
                T::one(),
                false,
            );
            if kind == Kind::Hessian && vectors.units.is_some() {
                // δ[l+1] e_pᵀ: entry m of vector i is δ[l+1][:, j] for p = W_{l+1}[j][m].
                let delta = &base.delta[l + 1];
                for (i, &p) in vectors.units.iter().flatten().enumerate() {
                    if let Some((j, m)) = weight_position(&net.layers[l + 1], p) {
                        for s in 0..c {
                            rd[(s * k + i) * out_l + m] += delta[s * out_next + j];
                        }
                    }
                }
            } else if kind == Kind::Hessian {
                // δ[l+1] V_{l+1}: (c, out_{l+1})·(out_{l+1}, k·out_l) ≡ (c·k, out_l).
                gemm(
                    rd,
                    mat(&base.delta[l + 1], c, out_next),
                    mat(&vectors.vcat[l + 1], out_next, k * out_l),
                    T::one(),
                    true,
                );
            }
            let (dh, d2h, back, ra) = (&base.dh[l], &base.d2h[l], &base.back[l], &self.ra[l]);
            par::rows1(
                &mut rd[..rows * out_l],
                out_l,
                rows_per_task(out_l),
                |first, rd| {
                    for (i, rd_row) in rd.chunks_exact_mut(out_l).enumerate() {
                        let r = first + i;
                        let s = r / k;
                        let span = s * out_l..(s + 1) * out_l;
                        if kind == Kind::GaussNewton {
                            for (o, d) in rd_row.iter_mut().zip(&dh[span]) {
                                *o = *d * *o;
                            }
                        } else {
                            let ra_row = &ra[r * out_l..(r + 1) * out_l];
                            for ((((o, a), d), d2), b) in rd_row
                                .iter_mut()
                                .zip(ra_row)
                                .zip(&dh[span.clone()])
                                .zip(&d2h[span.clone()])
                                .zip(&back[span])
                            {
                                *o = *d2 * *a * *b + *d * *o;
                            }
                        }
                    }
                },
            );
        }
        // R{∇E} accumulation.
        for l in 0..depth {
            let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
            // R{δ[l]}ᵀ z[l]: (k·out, c)·(c, in).
            self.gstack_layout[l] = sum_over_samples(
                &mut self.gstack[l],
                &self.rd[l],
                k * fout,
                base,
                x,
                x_cols,
                l,
                c,
                fin,
                !first,
            );
            if kind == Kind::Hessian && l > 0 {
                // δ[l]ᵀ R{z[l]}: (out, c)·(c, k·in) = (out, k, in).
                gemm(
                    &mut self.gcat[l],
                    mat(&base.delta[l], c, fout).t(),
                    mat(&self.rz[l - 1], c, k * fin),
                    T::one(),
                    !first,
                );
            }
            // Σ_n R{δ[l]}: (1, c)·(c, k·out) = (k, out).
            gemm(
                &mut self.gb[l],
                mat(&base.ones, 1, c),
                mat(&self.rd[l], c, k * fout),
                T::one(),
                !first,
            );
        }
    }

    /// Adds another part's accumulators for k vectors into these.
    pub fn add_accumulators(&mut self, net: &Net<T>, other: &Block<T>, k: usize, kind: Kind) {
        for (l, layer) in net.layers.iter().enumerate() {
            let (fin, fout) = (layer.fan_in, layer.fan_out);
            add_assign(&mut self.gstack[l][..k * fout * fin], &other.gstack[l]);
            if kind == Kind::Hessian && l > 0 {
                add_assign(&mut self.gcat[l][..k * fout * fin], &other.gcat[l]);
            }
            add_assign(&mut self.gb[l][..k * fout], &other.gb[l]);
        }
    }

    /// Writes R{∇E} of the data term for the k vectors into `out` (k, W) f64.
    pub fn finish(&self, net: &Net<T>, k: usize, kind: Kind, out: &mut [f64]) {
        let w = net.theta.len();
        for (l, layer) in net.layers.iter().enumerate() {
            let (fin, fout) = (layer.fan_in, layer.fan_out);
            let with_cat = kind == Kind::Hessian && l > 0;
            let stack_layout = self.gstack_layout[l];
            for i in 0..k {
                let row = &mut out[i * w..(i + 1) * w];
                for j in 0..fout {
                    for m in 0..fin {
                        let at = stack_layout.at(i * fout + j, m, k * fout, fin);
                        let mut g = self.gstack[l][at].to_f64();
                        if with_cat {
                            g += self.gcat[l][(j * k + i) * fin + m].to_f64();
                        }
                        let p = layer.weights.start + j * fin + m;
                        row[p] = g;
                    }
                    row[layer.bias.start + j] = self.gb[l][i * fout + j].to_f64();
                }
            }
        }
    }
}

/// (j, m) when θ index `p` is the weight W_l[j][m] of `layer`.
fn weight_position(layer: &crate::model::LayerLayout, p: usize) -> Option<(usize, usize)> {
    layer.weights.contains(&p).then(|| {
        (
            (p - layer.weights.start) / layer.fan_in,
            (p - layer.weights.start) % layer.fan_in,
        )
    })
}

/// The index p of every row when each row of V is a unit vector e_p, else None.
fn unit_indices(v: ArrayView2<f64>) -> Option<Vec<usize>> {
    v.rows()
        .into_iter()
        .map(|row| {
            let mut one = None;
            for (p, &x) in row.iter().enumerate() {
                if x == 1.0 && one.is_none() {
                    one = Some(p);
                } else if x != 0.0 {
                    return None;
                }
            }
            one
        })
        .collect()
}
