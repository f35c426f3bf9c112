//! K-FAC factors and the Fisher vectors (per-sample gradients) on the fast CPU engine:
//! the equations of `cpu/kfac.rs` and `cpu/fisher.rs` over chunks of c samples with R
//! columns each (R = K exact, S mc, 1 empirical), every sum one GEMM:
//!
//! ```text
//!   forward (h′ kept); the output columns C[L−1] (c·R, K), row s·R + r:
//!     exact      the rows of the Gauss-Newton factor (Loss::gauss_newton_factor)
//!     mc         δ(a, ỹ)·mass/√S at the targets sampled from the shared draws
//!                (engine/sampling.rs: the reference's stream)
//!     empirical  δ at the observed targets: the backward pass with 1/N = 1 (its δ[l])
//!   C[l−1] = (C[l] W_l) ⊙ h′(a[l−1])      one GEMM (c·R, out_l)·(out_l, in_l) per layer
//!   factors:  Σ z zᵀ = Zᵀ Z (in_l, in_l), Σ z = 1ᵀ Z, Σ S Sᵀ = Cᵀ C (out_l, out_l)
//!             one GEMM each per layer and chunk (the symmetric ones: upper triangles),
//!             A_l = (1/N) [[Σ z zᵀ, Σ z], [Σ zᵀ, N]],  B_l = (1/N) Σ S Sᵀ
//!   vectors:  row s·R + r of the part's block (c·R, W): C[l][row, j]·z[l][s, i] on
//!             W_l[j][i] and C[l][row, j] on b_l[j] — a rank-one product per row, one
//!             multiply per entry written (the result's size is the work)
//! ```
//! Parallel over parts like every operation (`workspace.rs`): each part accumulates its
//! own sums (added in part order) or writes its own rows of the vectors.

use super::engine::{FastCpuEngine, Key};
use super::gemm::{gemm, gemm_upper, mat};
use super::net::Net;
use super::passes::{backward, forward, input, Base, Deltas, Keep};
use super::real::Real;
use super::workspace::{Chunk, Part, Workspace};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::engine::sampling::{sampled_column, Draws};
use crate::error::{Error, Result};
use crate::model::LayerLayout;
use ndarray::Array2;
use std::ops::Range;

/// What an operation makes of the columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Make {
    Factors,
    Vectors,
}

/// A part's buffers beside its passes.
pub struct KfacBuffers<T> {
    /// R, columns per sample.
    r: usize,
    /// The columns of every layer (cap·R, out_l), row s·R + r (empirical: δ of the passes).
    cols: Vec<Vec<T>>,
    /// Σ z zᵀ (in_l, in_l) upper triangle, Σ z (in_l), Σ S Sᵀ (out_l, out_l) upper triangle.
    zz: Vec<Vec<T>>,
    zsum: Vec<Vec<T>>,
    ss: Vec<Vec<T>>,
    /// The part's vectors (|part|·R, W), in row order.
    out: Vec<T>,
}

impl<T: Real> KfacBuffers<T> {
    /// Entries of the columns per sample (to size the chunks).
    pub fn per_sample(layers: &[LayerLayout], r: usize) -> usize {
        (r * layers.iter().map(|l| l.fan_out).sum::<usize>()).max(1)
    }

    fn new(net: &Net<T>, cap: usize, r: usize) -> KfacBuffers<T> {
        let per = |f: &dyn Fn(&LayerLayout) -> usize| -> Vec<Vec<T>> {
            net.layers.iter().map(|l| vec![T::zero(); f(l)]).collect()
        };
        KfacBuffers {
            r,
            cols: per(&|l| cap * r * l.fan_out),
            zz: per(&|l| l.fan_in * l.fan_in),
            zsum: per(&|l| l.fan_in),
            ss: per(&|l| l.fan_out * l.fan_out),
            out: Vec::new(),
        }
    }

    /// The output columns C[L−1] of the chunk (exact or mc; empirical uses the δ of
    /// the backward pass). `row0`: the chunk's first row relative to the draws.
    fn output_columns(
        &mut self,
        net: &Net<T>,
        ch: &Chunk<T>,
        base: &Base<T>,
        draws: Option<&Draws>,
        row0: usize,
    ) {
        let (k, last, r) = (net.k_out(), net.depth() - 1, self.r);
        let (loss, act) = (net.mlp.loss(), net.mlp.output_activation());
        let cols = &mut self.cols[last];
        let mut a = vec![0.0; k];
        let mut col = vec![0.0; k];
        for s in 0..ch.c {
            for (d, v) in a.iter_mut().zip(&base.a[last][s * k..(s + 1) * k]) {
                *d = v.to_f64();
            }
            let t = &ch.t[s * k..(s + 1) * k];
            let rows = &mut cols[s * r * k..(s + 1) * r * k];
            match draws {
                None => {
                    let f = loss.gauss_newton_factor(act, &a, t); // (K, K), row r = c_r
                    for (o, v) in rows.iter_mut().zip(&f) {
                        *o = T::from_f64(*v);
                    }
                }
                Some(draws) => {
                    for (d, row) in rows.chunks_exact_mut(k).enumerate() {
                        sampled_column(loss, act, draws, &a, t, draws.row(row0 + s, d), &mut col);
                        for (o, v) in row.iter_mut().zip(&col) {
                            *o = T::from_f64(*v);
                        }
                    }
                }
            }
        }
    }

    /// C[l−1] = (C[l] W_l) ⊙ h′(a[l−1]) for every layer below the output.
    fn backpropagate(&mut self, net: &Net<T>, c: usize, base: &Base<T>) {
        let r = self.r;
        for l in (1..net.depth()).rev() {
            let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
            let (lo, hi) = self.cols.split_at_mut(l);
            let below = &mut lo[l - 1];
            let rows = c * r;
            gemm(
                below,
                mat(&hi[0], rows, fout),
                mat(net.w(l), fout, fin),
                T::one(),
                false,
            );
            let dh = &base.dh[l - 1];
            for (i, row) in below[..rows * fin].chunks_exact_mut(fin).enumerate() {
                let s = i / r;
                for (v, d) in row.iter_mut().zip(&dh[s * fin..(s + 1) * fin]) {
                    *v *= *d;
                }
            }
        }
    }

    /// The columns of layer l: the part's own, or (empirical) the δ of the passes.
    fn columns<'a>(&'a self, base: &'a Base<T>, l: usize, empirical: bool) -> &'a [T] {
        if empirical {
            &base.delta[l]
        } else {
            &self.cols[l]
        }
    }

    /// Adds (first chunk: writes) the chunk's Σ z zᵀ, Σ z and Σ S Sᵀ of every layer.
    fn accumulate(&mut self, net: &Net<T>, ch: &Chunk<T>, base: &Base<T>, empirical: bool) {
        let (c, rows) = (ch.c, ch.c * self.r);
        for l in 0..net.depth() {
            let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
            let z = mat(input(base, ch.x, l), c, fin);
            let add = !ch.first;
            gemm_upper(&mut self.zz[l], z.t(), z, T::one(), add);
            gemm(&mut self.zsum[l], mat(&base.ones, 1, c), z, T::one(), add);
            let mut ss = std::mem::take(&mut self.ss[l]);
            let s = mat(self.columns(base, l, empirical), rows, fout);
            gemm_upper(&mut ss, s.t(), s, T::one(), add);
            self.ss[l] = ss;
        }
    }

    /// Appends the chunk's vectors (c·R, W) to the part's (first chunk: replaces them),
    /// row after row in θ's order (W_l row-major, then b_l, layer after layer).
    fn write_vectors(&mut self, net: &Net<T>, ch: &Chunk<T>, base: &Base<T>, empirical: bool) {
        let r = self.r;
        if ch.first {
            self.out.clear();
        }
        let mut out = std::mem::take(&mut self.out);
        out.reserve(ch.c * r * net.theta.len());
        for row in 0..ch.c * r {
            let s = row / r;
            for (l, layer) in net.layers.iter().enumerate() {
                let (fin, fout) = (layer.fan_in, layer.fan_out);
                let z_s = &input(base, ch.x, l)[s * fin..(s + 1) * fin];
                let c_row = &self.columns(base, l, empirical)[row * fout..(row + 1) * fout];
                for &c_j in c_row {
                    out.extend(z_s.iter().map(|&z_i| c_j * z_i));
                }
                out.extend_from_slice(c_row);
            }
        }
        self.out = out;
    }

    /// One chunk: the passes, the columns, then the factors' sums or the vectors.
    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &mut self,
        net: &Net<T>,
        ch: &Chunk<T>,
        base: &mut Base<T>,
        fisher: Fisher,
        draws: Option<&Draws>,
        row0: usize,
        make: Make,
    ) {
        forward(net, ch.x, ch.c, base, Keep::FirstDerivative);
        let empirical = fisher == Fisher::Empirical;
        if empirical {
            backward(net, ch.t, ch.c, base, 1.0, Deltas::All);
        } else {
            self.output_columns(net, ch, base, draws, row0);
            self.backpropagate(net, ch.c, base);
        }
        match make {
            Make::Factors => self.accumulate(net, ch, base, empirical),
            Make::Vectors => self.write_vectors(net, ch, base, empirical),
        }
    }

    /// Adds another part's sums into these.
    fn add(&mut self, other: &KfacBuffers<T>) {
        super::passes::add_into(&mut self.zz, &other.zz);
        super::passes::add_into(&mut self.zsum, &other.zsum);
        super::passes::add_into(&mut self.ss, &other.ss);
    }
}

/// Entry (i, j) of a symmetric (n, n) matrix whose upper triangle is stored row-major.
fn upper<T: Real>(m: &[T], n: usize, i: usize, j: usize) -> f64 {
    m[i.min(j) * n + i.max(j)].to_f64()
}

impl<T: Real> FastCpuEngine<T> {
    /// Runs `make` over `rows` (θ loaded) and returns the parts used, whose buffers hold
    /// the result. `skip`: rows of mc's stream before `rows`.
    fn run_columns(
        &mut self,
        fisher: Fisher,
        rows: &Range<usize>,
        skip: usize,
        make: Make,
    ) -> Result<usize> {
        let draws = Draws::of(&self.model.mlp, fisher, skip, rows.len())?;
        let r = fisher.columns_per_sample(self.model.mlp.num_outputs());
        let key = Key::Kfac(r);
        let parts = self.parts(rows.len(), key);
        let cap = self.capacity(key);
        if !matches!(&self.spaces.kfac, Some((kr, w)) if *kr == r && w.cap == cap) {
            self.spaces.kfac = Some((r, Workspace::new(cap)));
        }
        let net = self.model.net();
        let Some((_, space)) = self.spaces.kfac.as_mut() else {
            return Err(Error::Internal("the K-FAC workspace is missing".into()));
        };
        space.ensure_parts(parts, |cap| Part {
            base: Base::new(&net, cap),
            work: KfacBuffers::new(&net, cap, r),
        });
        let (first_row, draws) = (rows.start, draws.as_ref());
        space.run(
            &self.data,
            &net,
            rows,
            parts,
            &mut self.part_sums,
            |net, ch, part| {
                let row0 = ch.start - first_row;
                part.work
                    .chunk(net, ch, &mut part.base, fisher, draws, row0, make);
                0.0
            },
        );
        Ok(parts)
    }

    /// The K-FAC factors of `fisher` over `rows` at the loaded θ (module header).
    pub(super) fn kfac_factors(
        &mut self,
        fisher: Fisher,
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        let parts = self.run_columns(fisher, &rows, 0, Make::Factors)?;
        let layers = self.model.layers.clone();
        let Some((_, space)) = self.spaces.kfac.as_mut() else {
            return Err(Error::Internal("the K-FAC workspace is missing".into()));
        };
        let (first, others) = space.first_and_others(parts);
        for other in others {
            first.work.add(&other.work);
        }
        let work = &first.work;
        let inv_n = 1.0 / rows.len() as f64;
        let mut a = Vec::with_capacity(layers.len());
        let mut b = Vec::with_capacity(layers.len());
        for (l, layer) in layers.iter().enumerate() {
            let (fin, fout) = (layer.fan_in, layer.fan_out);
            let (zz, zsum) = (&work.zz[l], &work.zsum[l]);
            a.push(Array2::from_shape_fn((fin + 1, fin + 1), |(i, j)| {
                match (i < fin, j < fin) {
                    (true, true) => upper(zz, fin, i, j) * inv_n,
                    (true, false) => zsum[i].to_f64() * inv_n,
                    (false, true) => zsum[j].to_f64() * inv_n,
                    (false, false) => 1.0,
                }
            }));
            let ss = &work.ss[l];
            b.push(Array2::from_shape_fn((fout, fout), |(i, j)| {
                upper(ss, fout, i, j) * inv_n
            }));
        }
        Ok(KroneckerFactors {
            fisher,
            layers,
            a,
            b,
        })
    }

    /// The vectors of `fisher` (|rows|·R, W) over `rows` at the loaded θ, row
    /// (n − rows.start)·R + r, the parts' rows one after the other.
    pub(super) fn fisher_vectors(
        &mut self,
        fisher: Fisher,
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        let parts = self.run_columns(fisher, &rows, skip, Make::Vectors)?;
        let w = self.model.mlp.num_params();
        let r = fisher.columns_per_sample(self.model.mlp.num_outputs());
        let Some((_, space)) = self.spaces.kfac.as_mut() else {
            return Err(Error::Internal("the K-FAC workspace is missing".into()));
        };
        let mut out = Vec::with_capacity(rows.len() * r * w);
        for part in &mut space.parts[..parts] {
            out.extend(part.work.out.iter().map(|v| v.to_f64()));
            part.work.out = Vec::new();
        }
        Array2::from_shape_vec((rows.len() * r, w), out).map_err(|e| Error::Internal(e.to_string()))
    }
}
