//! The full H and G (W, W) as sums over samples of Kronecker products of small
//! per-sample factors: a few large GEMMs per chunk instead of W Hessian-vector
//! products (the reference, `cpu/hessian.rs`, builds them column by column
//! from Hv; `tests/parity/cpu_fast.rs` checks this against it).
//! (About 670 lines, over the ~600 guideline: H's and G's Kronecker sums share
//! one chunk loop and its factor buffers; split, each half would repeat it.)
//!
//! Write z̃\[l\] = (z\[l\], 1) for layer l's input extended by the bias's 1, and
//! (l, i, a) for parameter W_l[i, a] (a < in_l) or b_l\[i\] (a = in_l), so that
//! ∂E/∂θ(l,i,a) = Σ_n δ\[l\]_i z̃\[l\]_a. Differentiating by θ(m, j, b) with m ≤ l
//! (δ\[l\] depends on θ_m only through a\[l\]; z\[l\] through a\[m\]):
//! ```text
//!   l = m:  H = Σ_n M_l[i,j] · z̃[l]_a z̃[l]_b
//!   l > m:  H = Σ_n A_lm[i,j] · z̃[l]_a z̃[m]_b  +  Σ_n δ[l]_i · C_lm[a,j] · z̃[m]_b   (a < in_l)
//!
//!   M_l  = ∂²E_n/∂a[l]² / N, per sample: M_{L−1} = H_out / N,
//!          M_{l−1} = D_{l−1} W_lᵀ M_l W_l D_{l−1} + diag(h″_{l−1} ⊙ (δ[l] W_l))     (D_l = diag h′_l)
//!   A_lm = M_l J_lm,   J_lm = ∂a[l]/∂a[m] = W_l D_{l−1} ⋯ W_{m+1} D_m
//!   C_lm = D_{l−1} J_{l−1,m}   (= D_{l−1} itself when m = l − 1: C_lm[a,j] = h′_a [a = j])
//! ```
//! The Gauss-Newton matrix is the same without the h″ residual and without
//! the δ·C term. Each Σ_n is one GEMM over the chunk's samples,
//! (pairs i, j)ᵀ·(pairs a, b): the symmetric l = m blocks on packed upper
//! triangles of M_l and z̃z̃ᵀ (a quarter of the block's entries), 2 flops per
//! entry per sample. For S (64-50-10, W = 3760) that is ~16 GFLOP against
//! ~70 for W Hv products — see [`flops`].
//!
//! A layer whose extended input is wide next to its units (784-10-10's first
//! layer: pk(e) = 308 505 entries of z̃z̃ᵀ per sample against pk(out) = 55 of
//! M) would spend its time writing z̃z̃ᵀ for every sample; its diagonal block is
//! instead formed as one weighted Gram matrix per entry of M,
//! Σ_n M_l\[i,j\] z̃ z̃ᵀ = (diag(M\[i,j\]) Z̃)ᵀ Z̃, upper triangle only ("Gram
//! layers"): the same flops, no per-sample z̃z̃ᵀ.
//!
//! Parallelism is within a chunk, by shape only: the per-sample factors are
//! products over stacked samples split into fixed row tiles, and every sum's
//! result is split into fixed row tiles, each one GEMM on one thread. Every
//! entry is therefore computed the same way on any number of threads.

use super::gemm::{gemm, gemm_upper, mat, mat_strided, Operand};
use super::net::{softmax_output, Net};
use super::par::{self, rows_per_task};
use super::passes::{input, Base};
use super::real::Real;
pub use super::shapes::flops;
use super::shapes::{packed_at, packed_len, Shapes, GRAM_GROUPS};
use crate::engine::Kind;
use ndarray::Array2;
use rayon::prelude::*;

/// Entries of the per-sample stacks of one chunk, at most (32 MB in f32).
pub const FULL_BUDGET: usize = 1 << 23;
/// Rows of a stacked per-sample product per task.
const STACK_TILE_ROWS: usize = 2048;
/// Rows of a sum's result per task (measured on S, f32: 64 and 128 alike).
const SUM_TILE_ROWS: usize = 64;

/// The factors and sums of one layer pair (l, m < l).
struct PairBuffers<T> {
    l: usize,
    m: usize,
    /// A_lm per sample (cap, out_l, out_m).
    a: Vec<T>,
    /// J_{l−1,m} per sample (cap, in_l, out_m), exact with m < l − 1 only.
    j: Vec<T>,
    /// z̃[l] ⊗ z̃[m] per sample (cap, e_l·e_m), and Σ_n A_lmᵀ ⊗ that (out_l·out_m, e_l·e_m).
    q: Vec<T>,
    acc: Vec<T>,
    /// The δ·C term's right factor per sample (cap, c_cols) and Σ_n δ[l]ᵀ ⊗ that (out_l, c_cols).
    qc: Vec<T>,
    acc_c: Vec<T>,
}

/// The buffers of the full-matrix pass for chunks of up to `cap` samples,
/// allocated once per engine and shape and reused.
pub struct FullBuffers<T> {
    shapes: Shapes,
    pub cap: usize,
    pub base: Base<T>,
    /// M_l per sample (cap, out_l, out_l).
    m: Vec<Vec<T>>,
    /// (M_l W_l)ᵀ per sample (cap, in_l, out_l), l ≥ 1.
    bt: Vec<Vec<T>>,
    /// Packed M_l (cap, pk(out_l)), packed z̃z̃ᵀ (cap, pk(e_l)), and Σ_n of their
    /// products (pk(out_l), pk(e_l)). Gram layers: pz holds z̃ (cap, e_l) and
    /// the groups' scratch (GRAM_GROUPS, cap, e_l); acc (pk(out_l), e_l, e_l).
    pm: Vec<Vec<T>>,
    pz: Vec<Vec<T>>,
    acc: Vec<Vec<T>>,
    pairs: Vec<PairBuffers<T>>,
    /// For each layer, where (min(a, b), max(a, b)) lies in a row of its
    /// diagonal-block sum, for every (a, b) of its e_l × e_l (read when the
    /// result is written out).
    packed_index: Vec<Vec<usize>>,
}

impl<T: Real> FullBuffers<T> {
    /// Samples per chunk for this network: [`FULL_BUDGET`] over the stacks' per-sample size.
    pub fn capacity(net: &Net<T>, kind: Kind) -> usize {
        (FULL_BUDGET / Shapes::new(net.layers, kind).per_sample().max(1)).max(1)
    }

    /// Whether these buffers serve `kind` with chunks of `cap`.
    pub fn fits(&self, kind: Kind, cap: usize) -> bool {
        self.shapes.kind == kind && self.cap == cap
    }

    pub fn new(net: &Net<T>, cap: usize, kind: Kind) -> FullBuffers<T> {
        let s = Shapes::new(net.layers, kind);
        let zeros = |n: usize| vec![T::zero(); n];
        let depth = s.depth();
        let pairs = s
            .pairs()
            .into_iter()
            .map(|(l, m)| {
                let j = if s.has_j(l, m) {
                    cap * s.inp[l] * s.out[m]
                } else {
                    0
                };
                let (o2, e2, cc) = (s.out[l] * s.out[m], s.ext(l) * s.ext(m), s.c_cols(l, m));
                PairBuffers {
                    l,
                    m,
                    a: zeros(cap * o2),
                    j: zeros(j),
                    q: zeros(cap * e2),
                    acc: zeros(o2 * e2),
                    qc: zeros(cap * cc),
                    acc_c: zeros(s.out[l] * cc),
                }
            })
            .collect();
        let packed_index = (0..depth)
            .map(|l| {
                let e = s.ext(l);
                (0..e * e)
                    .map(|q| {
                        let (a, b) = (q / e, q % e);
                        let (lo, hi) = (a.min(b), a.max(b));
                        if s.gram(l) {
                            lo * e + hi
                        } else {
                            packed_at(lo, hi, e)
                        }
                    })
                    .collect()
            })
            .collect();
        FullBuffers {
            cap,
            base: Base::new(net, cap),
            m: (0..depth)
                .map(|l| zeros(cap * s.out[l] * s.out[l]))
                .collect(),
            bt: (0..depth)
                .map(|l| zeros(if l > 0 { cap * s.inp[l] * s.out[l] } else { 0 }))
                .collect(),
            pm: (0..depth)
                .map(|l| zeros(cap * packed_len(s.out[l])))
                .collect(),
            pz: (0..depth)
                .map(|l| {
                    zeros(if s.gram(l) {
                        (GRAM_GROUPS + 1) * cap * s.ext(l)
                    } else {
                        cap * packed_len(s.ext(l))
                    })
                })
                .collect(),
            acc: (0..depth)
                .map(|l| zeros(packed_len(s.out[l]) * s.acc_row(l)))
                .collect(),
            pairs,
            packed_index,
            shapes: s,
        }
    }

    /// One chunk of c samples: `self.base` holds its forward pass (with h″
    /// for the exact H), backward pass and output curvature; `x` is its
    /// inputs (c, D), `inv_n` 1/N of the whole operation. The first chunk
    /// writes the sums, later ones add to them.
    pub fn chunk(&mut self, net: &Net<T>, x: &[T], c: usize, inv_n: f64, first: bool) {
        self.output_factor(net, c, inv_n);
        let depth = self.shapes.depth();
        for l in (1..depth).rev() {
            self.lower_factor(net, c, l);
            self.pair_factors(net, c, l);
        }
        self.stacks(x, c);
        self.sums(c, first);
    }

    /// M_{L−1} = H_out / N for every sample: ce s(diag(p) − ppᵀ), else the
    /// diagonal prepared in `base.out_p`.
    fn output_factor(&mut self, net: &Net<T>, c: usize, inv_n: f64) {
        let last = self.shapes.depth() - 1;
        let k = self.shapes.out[last];
        let (p, s) = (&self.base.out_p, &self.base.out_s);
        let ce = softmax_output(net.mlp);
        let inv_n = T::from_f64(inv_n);
        par::rows1(
            &mut self.m[last][..c * k * k],
            k * k,
            rows_per_task(k * k),
            |first, m| {
                for (r, mn) in m.chunks_exact_mut(k * k).enumerate() {
                    let n = first + r;
                    let pn = &p[n * k..(n + 1) * k];
                    for i in 0..k {
                        for j in 0..k {
                            mn[i * k + j] = if ce {
                                let d = if i == j { pn[i] } else { T::zero() };
                                s[n] * (d - pn[i] * pn[j]) * inv_n
                            } else if i == j {
                                pn[i] * inv_n
                            } else {
                                T::zero()
                            };
                        }
                    }
                }
            },
        );
    }

    /// From M_l: B = M_l W_l into A_{l,l−1}'s buffer, M_{l−1} = D Bᵀ W_l D (+ the
    /// h″ residual), then A_{l,l−1} = B D.
    fn lower_factor(&mut self, net: &Net<T>, c: usize, l: usize) {
        let (o, i) = (self.shapes.out[l], self.shapes.inp[l]);
        let exact = self.shapes.kind == Kind::Hessian;
        let w = net.w(l);
        let pair = &mut self.pairs[Shapes::pair(l, l - 1)];
        // B per sample (o, i): the stack (c·o, o)·W_l (o, i).
        stacked_product(&mut pair.a, &self.m[l], c * o, o, mat(w, o, i), i);
        // Bᵀ per sample (i, o).
        let b = &pair.a;
        par::rows1(
            &mut self.bt[l][..c * i * o],
            i * o,
            rows_per_task(i * o),
            |first, bt| {
                for (r, btn) in bt.chunks_exact_mut(i * o).enumerate() {
                    let bn = &b[(first + r) * o * i..(first + r + 1) * o * i];
                    for p in 0..o {
                        for q in 0..i {
                            btn[q * o + p] = bn[p * i + q];
                        }
                    }
                }
            },
        );
        // Bᵀ W_l per sample (i, i) = W_lᵀ M_l W_l, then D·D and the residual.
        let (m_lo, _) = self.m.split_at_mut(l);
        let below = &mut m_lo[l - 1];
        stacked_product(below, &self.bt[l], c * i, o, mat(w, o, i), i);
        let (dh, d2h, back) = (
            &self.base.dh[l - 1],
            &self.base.d2h[l - 1],
            &self.base.back[l - 1],
        );
        par::rows1(
            &mut below[..c * i * i],
            i * i,
            rows_per_task(i * i),
            |first, m| {
                for (r, mn) in m.chunks_exact_mut(i * i).enumerate() {
                    let n = first + r;
                    let d = &dh[n * i..(n + 1) * i];
                    for p in 0..i {
                        for q in 0..i {
                            mn[p * i + q] *= d[p] * d[q];
                        }
                        if exact {
                            mn[p * i + p] += d2h[n * i + p] * back[n * i + p];
                        }
                    }
                }
            },
        );
        scale_columns(&mut pair.a, c, o, i, &self.base.dh[l - 1]);
    }

    /// A_lm = A_{l,m+1} W_{m+1} D_m for m < l − 1, and (exact) J_{l−1,m}:
    /// W_{l−1} D_{l−2} for m = l − 2, J_{l−1,m+1} W_{m+1} D_m below.
    fn pair_factors(&mut self, net: &Net<T>, c: usize, l: usize) {
        let s = &self.shapes;
        for m in (0..l.saturating_sub(1)).rev() {
            let (lo, hi) = self.pairs.split_at_mut(Shapes::pair(l, m + 1));
            let (dst, src) = (&mut lo[Shapes::pair(l, m)], &hi[0]);
            let (width, w) = (s.out[m + 1], net.w(m + 1));
            let inner = s.inp[m + 1];
            stacked_product(
                &mut dst.a,
                &src.a,
                c * s.out[l],
                width,
                mat(w, width, inner),
                inner,
            );
            scale_columns(&mut dst.a, c, s.out[l], inner, &self.base.dh[m]);
            if !s.has_j(l, m) {
                continue;
            }
            let rows = s.inp[l];
            if m + 2 == l {
                // J_{l−1,l−2} = W_{l−1} D_{l−2} for every sample.
                let dh = &self.base.dh[m];
                par::rows1(
                    &mut dst.j[..c * rows * inner],
                    rows * inner,
                    rows_per_task(rows * inner),
                    |first, j| {
                        for (r, jn) in j.chunks_exact_mut(rows * inner).enumerate() {
                            let d = &dh[(first + r) * inner..(first + r + 1) * inner];
                            for (row, wrow) in jn.chunks_exact_mut(inner).zip(w.chunks_exact(inner))
                            {
                                for ((v, wv), dv) in row.iter_mut().zip(wrow).zip(d) {
                                    *v = *wv * *dv;
                                }
                            }
                        }
                    },
                );
            } else {
                stacked_product(
                    &mut dst.j,
                    &src.j,
                    c * rows,
                    width,
                    mat(w, width, inner),
                    inner,
                );
                scale_columns(&mut dst.j, c, rows, inner, &self.base.dh[m]);
            }
        }
    }

    /// The right factors of every sum: packed M_l and z̃z̃ᵀ, z̃[l] ⊗ z̃[m], and the δ·C terms'.
    fn stacks(&mut self, x: &[T], c: usize) {
        let s = &self.shapes;
        let base = &self.base;
        let z_ext = |l: usize, n: usize, a: usize| -> T {
            if a < s.inp[l] {
                input(base, x, l)[n * s.inp[l] + a]
            } else {
                T::one()
            }
        };
        for l in 0..s.depth() {
            let (o, e) = (s.out[l], s.ext(l));
            let (po, pe) = (packed_len(o), packed_len(e));
            let m = &self.m[l];
            par::rows1(
                &mut self.pm[l][..c * po],
                po,
                rows_per_task(o * o),
                |first, pm| {
                    for (r, row) in pm.chunks_exact_mut(po).enumerate() {
                        let mn = &m[(first + r) * o * o..(first + r + 1) * o * o];
                        let mut q = 0;
                        for i in 0..o {
                            row[q..q + o - i].copy_from_slice(&mn[i * o + i..(i + 1) * o]);
                            q += o - i;
                        }
                    }
                },
            );
            if s.gram(l) {
                // z̃ (c, e); the weighted copies are made in `sums`.
                par::rows1(
                    &mut self.pz[l][..c * e],
                    e,
                    rows_per_task(e),
                    |first, pz| {
                        for (r, row) in pz.chunks_exact_mut(e).enumerate() {
                            for (a, v) in row.iter_mut().enumerate() {
                                *v = z_ext(l, first + r, a);
                            }
                        }
                    },
                );
                continue;
            }
            par::rows1(
                &mut self.pz[l][..c * pe],
                pe,
                rows_per_task(pe),
                |first, pz| {
                    for (r, row) in pz.chunks_exact_mut(pe).enumerate() {
                        let n = first + r;
                        let mut q = 0;
                        for a in 0..e {
                            let za = z_ext(l, n, a);
                            for b in a..e {
                                row[q] = za * z_ext(l, n, b);
                                q += 1;
                            }
                        }
                    }
                },
            );
        }
        for pair in self.pairs.iter_mut() {
            let (l, m) = (pair.l, pair.m);
            let (el, em) = (s.ext(l), s.ext(m));
            par::rows1(
                &mut pair.q[..c * el * em],
                el * em,
                rows_per_task(el * em),
                |first, q| {
                    for (r, row) in q.chunks_exact_mut(el * em).enumerate() {
                        let n = first + r;
                        for a in 0..el {
                            let za = z_ext(l, n, a);
                            for b in 0..em {
                                row[a * em + b] = za * z_ext(m, n, b);
                            }
                        }
                    }
                },
            );
            let cc = s.c_cols(l, m);
            if cc == 0 {
                continue;
            }
            let (inl, om) = (s.inp[l], s.out[m]);
            let dh = &base.dh[l - 1];
            let j = &pair.j;
            par::rows1(
                &mut pair.qc[..c * cc],
                cc,
                rows_per_task(cc),
                |first, qc| {
                    for (r, row) in qc.chunks_exact_mut(cc).enumerate() {
                        let n = first + r;
                        for a in 0..inl {
                            let h = dh[n * inl + a];
                            if m + 1 == l {
                                // C = D_{l−1}: (a, b).
                                for b in 0..em {
                                    row[a * em + b] = h * z_ext(m, n, b);
                                }
                            } else {
                                // C[a, j] = h′_a J_{l−1,m}[a, j]: (a, j, b).
                                let jn = &j[(n * inl + a) * om..(n * inl + a + 1) * om];
                                for (jj, jv) in jn.iter().enumerate() {
                                    let hj = h * *jv;
                                    for b in 0..em {
                                        row[(a * om + jj) * em + b] = hj * z_ext(m, n, b);
                                    }
                                }
                            }
                        }
                    }
                },
            );
        }
    }

    /// Every Σ_n: acc (+)= leftᵀ right over the chunk, one GEMM per row tile of
    /// each result, the tiles run in parallel.
    fn sums(&mut self, c: usize, first: bool) {
        let s = &self.shapes;
        let mut tasks: Vec<SumTask<T>> = Vec::new();
        let layers = self.acc.iter_mut().zip(&self.pm).zip(self.pz.iter_mut());
        for (l, ((acc, pm), pz)) in layers.enumerate() {
            let (po, pe) = (packed_len(s.out[l]), packed_len(s.ext(l)));
            if s.gram(l) {
                gram_sums(acc, pm, po, pz, s.ext(l), c, first);
            } else {
                add_tiles(&mut tasks, acc, pm, po, pz, pe, c);
            }
        }
        let delta = &self.base.delta;
        for pair in self.pairs.iter_mut() {
            let (l, m) = (pair.l, pair.m);
            let (o2, e2) = (s.out[l] * s.out[m], s.ext(l) * s.ext(m));
            add_tiles(&mut tasks, &mut pair.acc, &pair.a, o2, &pair.q, e2, c);
            let cc = s.c_cols(l, m);
            if cc > 0 {
                add_tiles(
                    &mut tasks,
                    &mut pair.acc_c,
                    &delta[l],
                    s.out[l],
                    &pair.qc,
                    cc,
                    c,
                );
            }
        }
        tasks.into_par_iter().for_each(|(acc, left, right)| {
            par::sequential(|| gemm(acc, left, right, T::one(), !first));
        });
    }

    /// Writes the matrix (W, W) of the data term from the sums.
    pub fn finish(&self, net: &Net<T>, out: &mut Array2<f64>) -> crate::error::Result<()> {
        let s = &self.shapes;
        let w = net.mlp.num_params();
        let layers = net.layers;
        // θ index of (l, i, a).
        let param = |l: usize, i: usize, a: usize| -> usize {
            if a < s.inp[l] {
                layers[l].weights.start + i * s.inp[l] + a
            } else {
                layers[l].bias.start + i
            }
        };
        // (l, i, a) of θ index r.
        let decode = |r: usize| -> (usize, usize, usize) {
            for (l, layer) in layers.iter().enumerate() {
                if layer.weights.contains(&r) {
                    let q = r - layer.weights.start;
                    return (l, q / s.inp[l], q % s.inp[l]);
                }
                if layer.bias.contains(&r) {
                    return (l, r - layer.bias.start, s.inp[l]);
                }
            }
            (0, 0, 0)
        };
        // Entry ((l, i, a), (m, j, b)) for m < l.
        let cross = |l: usize, i: usize, a: usize, m: usize, j: usize, b: usize| -> f64 {
            let pair = &self.pairs[Shapes::pair(l, m)];
            let (el, em, om) = (s.ext(l), s.ext(m), s.out[m]);
            let mut v = pair.acc[(i * om + j) * el * em + a * em + b].to_f64();
            let cc = s.c_cols(l, m);
            if cc > 0 && a < s.inp[l] {
                if m + 1 == l {
                    if a == j {
                        v += pair.acc_c[i * cc + a * em + b].to_f64();
                    }
                } else {
                    v += pair.acc_c[i * cc + (a * om + j) * em + b].to_f64();
                }
            }
            v
        };
        let slice = out.as_slice_mut().ok_or_else(|| {
            crate::error::Error::Internal("the full matrix is not contiguous".into())
        })?;
        slice.par_chunks_mut(w).enumerate().for_each(|(r, row)| {
            let (l, i, a) = decode(r);
            for m in 0..s.depth() {
                let (om, em) = (s.out[m], s.ext(m));
                if m == l {
                    let (o, pe) = (s.out[l], s.acc_row(l));
                    let index = &self.packed_index[l][a * em..(a + 1) * em];
                    for j in 0..om {
                        let p = packed_at(i.min(j), i.max(j), o);
                        let acc = &self.acc[l][p * pe..(p + 1) * pe];
                        for (b, &q) in index.iter().enumerate() {
                            row[param(m, j, b)] = acc[q].to_f64();
                        }
                    }
                } else {
                    for j in 0..om {
                        for b in 0..em {
                            row[param(m, j, b)] = if m < l {
                                cross(l, i, a, m, j, b)
                            } else {
                                cross(m, j, b, l, i, a)
                            };
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

/// A Gram layer's diagonal-block sums: for every entry p of packed M (pm (c,
/// po)), acc[p] (e, e) (+)= Z̃ᵀ diag(pm[:, p]) Z̃, upper triangle. `pz` holds
/// z̃ (c, e) and then the scratch of GRAM_GROUPS groups of entries, each
/// group on one thread.
fn gram_sums<T: Real>(
    acc: &mut [T],
    pm: &[T],
    po: usize,
    pz: &mut [T],
    e: usize,
    c: usize,
    first: bool,
) {
    let (z, scratch) = pz.split_at_mut(c * e);
    let z = &z[..c * e];
    let per_group = po.div_ceil(GRAM_GROUPS);
    acc[..po * e * e]
        .par_chunks_mut(per_group * e * e)
        .zip(scratch.par_chunks_mut(scratch.len() / GRAM_GROUPS))
        .enumerate()
        .for_each(|(g, (acc, weighted))| {
            par::sequential(|| {
                for (q, acc_p) in acc.chunks_exact_mut(e * e).enumerate() {
                    let p = g * per_group + q;
                    for n in 0..c {
                        let w = pm[n * po + p];
                        let (dst, src) =
                            (&mut weighted[n * e..(n + 1) * e], &z[n * e..(n + 1) * e]);
                        for (d, v) in dst.iter_mut().zip(src) {
                            *d = w * *v;
                        }
                    }
                    let left = mat(&weighted[..c * e], c, e).t();
                    gemm_upper(acc_p, left, mat(z, c, e), T::one(), !first);
                }
            })
        });
}

/// One GEMM of a sum: a row tile of the result, and its left and right factors.
type SumTask<'a, T> = (&'a mut [T], Operand<'a, T>, Operand<'a, T>);

/// Splits acc (lc, rc) (+)= leftᵀ·right, for left (c, lc) and right (c, rc),
/// into tasks of [`SUM_TILE_ROWS`] rows of acc.
fn add_tiles<'a, T: Real>(
    tasks: &mut Vec<SumTask<'a, T>>,
    acc: &'a mut [T],
    left: &'a [T],
    lc: usize,
    right: &'a [T],
    rc: usize,
    c: usize,
) {
    if lc == 0 || rc == 0 {
        return;
    }
    for (t, tile) in acc[..lc * rc].chunks_mut(SUM_TILE_ROWS * rc).enumerate() {
        let (r0, rows) = (t * SUM_TILE_ROWS, tile.len() / rc);
        let left = mat_strided(&left[r0..], c, rows, lc).t();
        tasks.push((tile, left, mat(right, c, rc)));
    }
}

/// dst (rows, n) ← src (rows, k)·b (k, n) for a stack of per-sample rows,
/// split into fixed tiles of rows run in parallel (one thread each).
fn stacked_product<T: Real>(
    dst: &mut [T],
    src: &[T],
    rows: usize,
    k: usize,
    b: Operand<T>,
    n: usize,
) {
    dst[..rows * n]
        .par_chunks_mut(STACK_TILE_ROWS * n.max(1))
        .enumerate()
        .for_each(|(t, d)| {
            let (r0, r) = (t * STACK_TILE_ROWS, d.len() / n.max(1));
            let a = mat(&src[r0 * k..(r0 + r) * k], r, k);
            par::sequential(|| gemm(d, a, b, T::one(), false));
        });
}

/// Scales column q of every sample's (rows, cols) block by that sample's h′_q
/// (`dh` (c, cols)): X D per sample.
fn scale_columns<T: Real>(x: &mut [T], c: usize, rows: usize, cols: usize, dh: &[T]) {
    let per = rows * cols;
    if per == 0 {
        return;
    }
    par::rows1(&mut x[..c * per], per, rows_per_task(per), |first, x| {
        for (r, xn) in x.chunks_exact_mut(per).enumerate() {
            let d = &dh[(first + r) * cols..(first + r + 1) * cols];
            for row in xn.chunks_exact_mut(cols) {
                for (v, dv) in row.iter_mut().zip(d) {
                    *v *= *dv;
                }
            }
        }
    });
}
