//! `FastCpuEngine<T>`: every curvature operation on the CPU in f32 or f64 with
//! faer's GEMM, the same algorithms as the f64 reference
//! (`cpu/`), which stays the specification this engine is parity-tested
//! against (`tests/parity/cpu_fast.rs`).
//! (About 610 lines: the fast engine's one `Backend` impl, every primitive of
//! the contract side by side; the kernels themselves live in sibling files.)
//!
//! Work is done in chunks of samples so that memory stays bounded; each
//! chunk's buffers live in a workspace (`workspace.rs`) allocated once per
//! (engine, kind of operation, block width) and reused by every later call: no
//! allocation inside an operation apart from its result.
//!
//! Parallelism is over samples: the rows of an operation are split into a
//! few contiguous parts ([`parts_for`], a function of the row count only),
//! each part runs its chunks on one thread with its own workspace (sequential
//! GEMMs, elementwise passes on data it just wrote), and the parts'
//! accumulators are added in part order at the end: one fork-join per
//! operation. Measured on this crate's workloads (2 cores, f32), this beats
//! running chunk after chunk with every product multi-threaded, for small data
//! (S: dozens of small products per operation, each a fork-join) and large
//! (L: Hv −4%, a block of 16 Hv −14%, the diagonals −30%; M likewise). Every
//! run on the same machine gives the same bits, and since the split does not
//! depend on the thread count, so does every run with any number of threads
//! (an operation uses at most [`MAX_PARTS`] cores).
//!
//! A block product (Hv, Gv, H V) at the same θ, rows and kind as the
//! previous one reuses its forward and backward passes, which the parts'
//! buffers still hold when each part's rows were one chunk: the iterative
//! methods (Lanczos, CG, Hutchinson, Hessian-free) make many products at one
//! θ. Measured (f32): one Hv on S 0.45 → 0.33 ms, M 24.9 → 20.4 ms, L 255 →
//! 212 ms. The results are the same bits either way
//! (`tests/parity/cpu_fast.rs`).

use super::block::{Block, BlockVectors};
use super::diagonal::DiagBuffers;
use super::full::FullBuffers;
use super::gemm::Layout;
use super::kfac::KfacBuffers;
use super::net::Net;
use super::par;
use super::passes::{
    accumulate_gradient, backward, forward, loss_sum, prepare_output_curvature, Base, Deltas, Keep,
};
use super::real::Real;
pub use super::workspace::{parts_for, MAX_PARTS, MIN_PART_ROWS};
use super::workspace::{Data, Model, OuterBuffers, Part, Workspace};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::engine::{check_data_shape, Backend, Diagonal, Kind, PassesKey, Precision};
use crate::error::Result;
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::ops::Range;

/// Stacked rows (samples × vectors) per chunk of a block pass, at most: big
/// enough for the GEMMs to run near peak; more made S's full H 20% slower
/// (its (rows, 50) buffers then leave the cache).
pub const BLOCK_ROWS: usize = 16384;
/// Entries of each per-layer buffer of a block pass, per part, at most: the
/// stacked rows of a chunk times the widest layer. 2²¹ is BLOCK_ROWS rows of
/// M's 128 and 4096 of L's 512, so that L's parts need ~50 MB each in f32.
pub const BLOCK_BUDGET: usize = 1 << 21;
/// Accumulator entries the parts of a block pass may hold together: each
/// part keeps its own R{∇E} for k vectors (2·k·W entries), so wide blocks of
/// big networks run in fewer parts (L's block of 16: 2 parts, 170 MB in f32,
/// instead of 8 and 690 MB). 2²⁶ entries: 256 MB in f32.
pub const BLOCK_ACCUMULATOR_BUDGET: usize = 1 << 26;
/// Samples per chunk of the loss and gradient passes.
pub const PLAIN_ROWS: usize = 4096;
/// Elements of factor buffers per chunk of the diagonals and the outer product.
pub const FACTOR_BUDGET: usize = 1 << 22;

/// What a curvature pass reads of c samples (inputs `x`, targets `t`): the
/// forward pass with h′ and the output curvature, and for the Hessian h″, the
/// backward pass (no δ[0]) and the output curvature's residual terms; the
/// Gauss-Newton matrix needs neither.
pub(super) fn curvature_base<T: Real>(
    net: &Net<T>,
    x: &[T],
    t: &[f64],
    c: usize,
    inv_n: f64,
    base: &mut Base<T>,
    kind: Kind,
) {
    let keep = match kind {
        Kind::Hessian => Keep::SecondDerivative,
        Kind::GaussNewton => Keep::FirstDerivative,
    };
    forward(net, x, c, base, keep);
    if kind == Kind::Hessian {
        backward(net, t, c, base, inv_n, Deltas::AboveInput);
    }
    prepare_output_curvature(net, t, c, base, kind);
}

/// What a workspace is for: its chunk size and part count depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Key {
    Plain,
    Block(usize),
    Diag(Diagonal),
    Outer,
    /// K-FAC factors and Fisher vectors with R columns per sample (`kfac.rs`).
    Kfac(usize),
}

/// A block workspace and the vectors its parts read.
struct BlockSpace<T> {
    k_cap: usize,
    space: Workspace<T, Block<T>>,
    vectors: BlockVectors<T>,
}

/// Every workspace, each typed by what its parts hold.
pub(super) struct Spaces<T> {
    plain: Option<Workspace<T, ()>>,
    blocks: Vec<BlockSpace<T>>,
    diagonals: Vec<(Diagonal, Workspace<T, DiagBuffers<T>>)>,
    pub(super) outer: Option<Workspace<T, OuterBuffers<T>>>,
    /// The full matrices' buffers, kept for the next call.
    full: Option<FullBuffers<T>>,
    /// K-FAC's and the Fisher vectors' workspace, for its R (dropped on rebinding).
    pub(super) kfac: Option<(usize, Workspace<T, KfacBuffers<T>>)>,
}

impl<T> Default for Spaces<T> {
    fn default() -> Self {
        Spaces {
            plain: None,
            blocks: Vec::new(),
            diagonals: Vec::new(),
            outer: None,
            full: None,
            kfac: None,
        }
    }
}

/// The fast CPU device bound to one model and data set, in precision T.
pub struct FastCpuEngine<T: Real> {
    pub(super) model: Model<T>,
    pub(super) data: Data<T>,
    pub(super) spaces: Spaces<T>,
    /// An upper bound on samples per chunk (tests force several chunks with it).
    max_chunk: usize,
    /// Per-part loss sums of the last operation.
    pub(super) part_sums: Vec<f64>,
}

impl<T: Real> FastCpuEngine<T> {
    /// Binds `mlp` to inputs `x` (N, D) and targets `t` (N, K).
    pub fn new(mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<FastCpuEngine<T>> {
        check_data_shape(mlp, x, t)?;
        let mut engine = FastCpuEngine {
            model: Model::new(mlp),
            data: Data::empty(),
            spaces: Spaces::default(),
            max_chunk: usize::MAX,
            part_sums: Vec::new(),
        };
        engine.data.bind(x, t);
        Ok(engine)
    }

    /// Copies new rows in (reusing the allocations) and forgets the passes of the
    /// previous data; workspaces whose chunk size still fits the new row count are
    /// kept (mini-batch epochs bind the same N every epoch).
    fn bind(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) {
        self.data.bind(x, t);
        let spaces = std::mem::take(&mut self.spaces);
        let fits = |key: Key, cap: usize| self.capacity(key) == cap;
        let mut kept = Spaces {
            full: spaces.full,
            ..Spaces::default()
        };
        kept.plain = spaces.plain.filter(|w| fits(Key::Plain, w.cap));
        kept.outer = spaces.outer.filter(|w| fits(Key::Outer, w.cap));
        kept.blocks = spaces
            .blocks
            .into_iter()
            .filter(|b| fits(Key::Block(b.k_cap), b.space.cap))
            .collect();
        kept.diagonals = spaces
            .diagonals
            .into_iter()
            .filter(|(d, w)| fits(Key::Diag(*d), w.cap))
            .collect();
        for b in &mut kept.blocks {
            b.space.passes_of = None;
        }
        self.spaces = kept;
    }

    /// The same engine processing at most `samples` samples per chunk (≥ 1),
    /// e.g. to exercise the accumulation across chunks on a small data set.
    pub fn with_max_chunk(mut self, samples: usize) -> FastCpuEngine<T> {
        self.max_chunk = samples.max(1);
        self.spaces = Spaces::default();
        self
    }

    /// Parts an operation of this key on `rows` rows is split into:
    /// [`parts_for`], fewer for blocks whose accumulators would not fit
    /// [`BLOCK_ACCUMULATOR_BUDGET`] (a power of two, so that the parts still
    /// divide evenly among 2, 4 or 8 threads). Never the thread count.
    pub(super) fn parts(&self, rows: usize, key: Key) -> usize {
        let parts = parts_for(rows);
        match key {
            Key::Block(k) => {
                let per_part = 2 * k * self.model.mlp.num_params();
                let fit = (BLOCK_ACCUMULATOR_BUDGET / per_part.max(1)).max(1);
                parts.min(1 << fit.ilog2())
            }
            _ => parts,
        }
    }

    /// Samples per chunk for a workspace of this key.
    pub(super) fn capacity(&self, key: Key) -> usize {
        let (mlp, layers) = (&self.model.mlp, &self.model.layers);
        let cap = match key {
            Key::Plain => PLAIN_ROWS,
            Key::Block(k) => {
                let widest = layers.iter().map(|l| l.fan_out).max().unwrap_or(1);
                (BLOCK_BUDGET / widest.max(1)).min(BLOCK_ROWS) / k.max(1)
            }
            Key::Diag(kind) => FACTOR_BUDGET / DiagBuffers::per_sample(&self.model.net(), kind),
            Key::Outer => FACTOR_BUDGET / (mlp.num_outputs() * mlp.num_params()).max(1),
            Key::Kfac(r) => FACTOR_BUDGET / KfacBuffers::<T>::per_sample(layers, r),
        };
        let rows_per_part = self.data.rows.div_ceil(self.parts(self.data.rows, key));
        cap.clamp(1, rows_per_part.min(self.max_chunk))
    }

    /// The loss and gradient workspace with at least `parts` parts.
    fn plain_space(&mut self, parts: usize) -> &mut Workspace<T, ()> {
        let cap = self.capacity(Key::Plain);
        let net = self.model.net();
        let space = self.spaces.plain.get_or_insert_with(|| Workspace::new(cap));
        space.ensure_parts(parts, |cap| Part {
            base: Base::new(&net, cap),
            work: (),
        });
        space
    }

    /// The index of the block workspace of width `k_cap` with at least `parts` parts.
    fn block_space(&mut self, k_cap: usize, parts: usize) -> usize {
        let i = match self.spaces.blocks.iter().position(|b| b.k_cap == k_cap) {
            Some(i) => i,
            None => {
                let cap = self.capacity(Key::Block(k_cap));
                let vectors = BlockVectors::new(&self.model.net(), k_cap);
                self.spaces.blocks.push(BlockSpace {
                    k_cap,
                    space: Workspace::new(cap),
                    vectors,
                });
                self.spaces.blocks.len() - 1
            }
        };
        let net = self.model.net();
        self.spaces.blocks[i].space.ensure_parts(parts, |cap| Part {
            base: Base::new(&net, cap),
            work: Block::new(&net, cap, k_cap),
        });
        i
    }

    /// The index of the workspace of diagonal `which` with at least `parts` parts.
    fn diagonal_space(&mut self, which: Diagonal, parts: usize) -> usize {
        let i = match self.spaces.diagonals.iter().position(|(d, _)| *d == which) {
            Some(i) => i,
            None => {
                let cap = self.capacity(Key::Diag(which));
                self.spaces.diagonals.push((which, Workspace::new(cap)));
                self.spaces.diagonals.len() - 1
            }
        };
        let net = self.model.net();
        self.spaces.diagonals[i].1.ensure_parts(parts, |cap| Part {
            base: Base::new(&net, cap),
            work: DiagBuffers::new(&net, cap, which),
        });
        i
    }

    /// The outer product's workspace (one part: its (W, W) accumulator is too
    /// large to keep per thread).
    pub(super) fn outer_space(&mut self) -> &mut Workspace<T, OuterBuffers<T>> {
        let cap = self.capacity(Key::Outer);
        let net = self.model.net();
        let (w, kk) = (net.mlp.num_params(), net.mlp.num_outputs());
        let space = self.spaces.outer.get_or_insert_with(|| Workspace::new(cap));
        space.ensure_parts(1, |cap| Part {
            base: Base::new(&net, cap),
            work: OuterBuffers {
                diag: DiagBuffers::new(&net, cap, Diagonal::GaussNewton),
                b: vec![T::zero(); cap * kk * w],
                acc: vec![T::zero(); w * w],
            },
        });
        space
    }

    /// H V or G V (`kind`) for V (k, W) into `out` (k, W), with the block
    /// workspace of width `k_cap` ≥ k.
    fn block_into(
        &mut self,
        theta: &[f64],
        rows: &Range<usize>,
        v: ArrayView2<f64>,
        kind: Kind,
        k_cap: usize,
        out: &mut [f64],
    ) {
        let k = v.nrows();
        let parts = self.parts(rows.len(), Key::Block(k_cap));
        let i = self.block_space(k_cap, parts);
        let net = self.model.net();
        let BlockSpace { space, vectors, .. } = &mut self.spaces.blocks[i];
        // The parts' passes from the previous product serve this one if they
        // are of the same θ, rows and kind (recorded only when each part's
        // rows were one chunk, so that its buffers hold all of them).
        let one_chunk_each = rows.len().div_ceil(parts) <= space.cap;
        let reuse = PassesKey::matches(&space.passes_of, theta, rows, kind);
        vectors.load(&net, v);
        let vectors = &*vectors;
        space.run(
            &self.data,
            &net,
            rows,
            parts,
            &mut self.part_sums,
            |net, ch, part| {
                if !reuse {
                    curvature_base(net, ch.x, ch.t, ch.c, ch.inv_n, &mut part.base, kind);
                }
                let (x, c, inv_n, first) = (ch.x, ch.c, ch.inv_n, ch.first);
                part.work.chunk(
                    net, vectors, x, ch.x_cols, c, k, &part.base, kind, inv_n, first,
                );
                0.0
            },
        );
        if !one_chunk_each {
            space.passes_of = None;
        } else if !reuse {
            PassesKey::record(&mut space.passes_of, theta, rows, kind);
        }
        let (first, others) = space.first_and_others(parts);
        for other in others {
            first.work.add_accumulators(&net, &other.work, k, kind);
        }
        first.work.finish(&net, k, kind, out);
    }

    /// The full H or G (W, W) by per-sample Kronecker sums (`full.rs`), chunk
    /// after chunk, each chunk's work parallel within it.
    fn full(&mut self, rows: Range<usize>, kind: Kind) -> Result<Array2<f64>> {
        let net = self.model.net();
        let cap = FullBuffers::capacity(&net, kind)
            .min(self.max_chunk)
            .min(rows.len());
        let mut buffers = match self.spaces.full.take() {
            Some(b) if b.fits(kind, cap) => b,
            _ => FullBuffers::new(&net, cap, kind),
        };
        let (d, kk, w) = (
            net.mlp.num_inputs(),
            net.mlp.num_outputs(),
            net.mlp.num_params(),
        );
        let inv_n = 1.0 / rows.len() as f64;
        let mut start = rows.start;
        while start < rows.end {
            let c = cap.min(rows.end - start);
            let x = &self.data.x[start * d..(start + c) * d];
            let t = &self.data.t[start * kk..(start + c) * kk];
            // One thread: small next to the sums, and its bits then never
            // depend on the thread count.
            let base = &mut buffers.base;
            par::sequential(|| curvature_base(&net, x, t, c, inv_n, base, kind));
            buffers.chunk(&net, x, c, inv_n, start == rows.start);
            start += c;
        }
        let mut m = Array2::zeros((w, w));
        buffers.finish(&net, &mut m)?;
        self.spaces.full = Some(buffers);
        Ok(m)
    }

    /// A diagonal (W) by the factor recursions of `diagonal.rs`.
    fn diagonal(&mut self, rows: Range<usize>, which: Diagonal) -> Vec<f64> {
        let parts = self.parts(rows.len(), Key::Diag(which));
        let i = self.diagonal_space(which, parts);
        let net = self.model.net();
        let space = &mut self.spaces.diagonals[i].1;
        for part in space.parts.iter_mut() {
            part.work.load_weights(&net);
        }
        // diag(H) and Becker-LeCun need the backward pass and h″; diag(G) neither.
        let base_kind = match which {
            Diagonal::GaussNewton => Kind::GaussNewton,
            Diagonal::Hessian | Diagonal::BeckerLeCun => Kind::Hessian,
        };
        space.run(
            &self.data,
            &net,
            &rows,
            parts,
            &mut self.part_sums,
            |net, ch, part| {
                curvature_base(net, ch.x, ch.t, ch.c, ch.inv_n, &mut part.base, base_kind);
                part.work
                    .chunk(net, ch.x, ch.c, &part.base, which, ch.inv_n, ch.first);
                0.0
            },
        );
        let mut out = vec![0.0; net.mlp.num_params()];
        let (first, others) = space.first_and_others(parts);
        for other in others {
            first.work.add_accumulators(&other.work);
        }
        first.work.finish(&net, &mut out);
        out
    }
}

impl<T: Real> Backend for FastCpuEngine<T> {
    fn architecture(&self) -> &Mlp {
        &self.model.mlp
    }
    fn data_rows(&self) -> usize {
        self.data.rows
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        self.model.load_theta(theta);
        let parts = self.parts(rows.len(), Key::Plain);
        self.plain_space(parts);
        let net = self.model.net();
        let Some(space) = self.spaces.plain.as_mut() else {
            return Ok(f64::NAN);
        };
        let sum = space.run(
            &self.data,
            &net,
            &rows,
            parts,
            &mut self.part_sums,
            |net, ch, part| {
                forward(net, ch.x, ch.c, &mut part.base, Keep::Values);
                loss_sum(net, ch.t, ch.c, &mut part.base)
            },
        );
        Ok(sum / rows.len() as f64)
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        self.model.load_theta(theta);
        let parts = self.parts(rows.len(), Key::Plain);
        self.plain_space(parts);
        let net = self.model.net();
        let Some(space) = self.spaces.plain.as_mut() else {
            return Ok((f64::NAN, Vec::new()));
        };
        let sum = space.run(
            &self.data,
            &net,
            &rows,
            parts,
            &mut self.part_sums,
            |net, ch, part| {
                let base = &mut part.base;
                forward(net, ch.x, ch.c, base, Keep::FirstDerivative);
                let sum = loss_sum(net, ch.t, ch.c, base);
                backward(net, ch.t, ch.c, base, ch.inv_n, Deltas::All);
                accumulate_gradient(net, ch.x, ch.x_cols, ch.c, base, ch.first);
                sum
            },
        );
        let (first, others) = space.first_and_others(parts);
        for other in others {
            first.base.add_gradient(&other.base);
        }
        let base = &first.base;
        let mut grad = vec![0.0; theta.len()];
        for (l, layer) in net.layers.iter().enumerate() {
            // gw[l] (out, in) is stored in gw_layout[l].
            let (fin, fout) = (layer.fan_in, layer.fan_out);
            let g_w = &mut grad[layer.weights.clone()];
            match base.gw_layout[l] {
                Layout::RowMajor => {
                    for (g, v) in g_w.iter_mut().zip(&base.gw[l]) {
                        *g = v.to_f64();
                    }
                }
                Layout::ColMajor => {
                    // (in, out) row-major: row m holds column m of ∂E/∂W_l.
                    for (m, col) in base.gw[l][..fin * fout].chunks_exact(fout).enumerate() {
                        for (j, v) in col.iter().enumerate() {
                            g_w[j * fin + m] = v.to_f64();
                        }
                    }
                }
            }
            for (g, v) in grad[layer.bias.clone()].iter_mut().zip(&base.gb[l]) {
                *g = v.to_f64();
            }
        }
        Ok((sum / rows.len() as f64, grad))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.model.load_theta(theta);
        let kk = self.model.mlp.num_outputs();
        let last = self.model.layers.len() - 1;
        let cap = self.plain_space(1).cap;
        let net = self.model.net();
        let mut y = Array2::zeros((rows.len(), kk)); // (|rows|, K)
        let Some(space) = self.spaces.plain.as_mut() else {
            return Ok(y);
        };
        // Chunk after chunk on one part, each writing its rows of y.
        let mut start = rows.start;
        while start < rows.end {
            let end = (start + cap).min(rows.end);
            space.run(
                &self.data,
                &net,
                &(start..end),
                1,
                &mut self.part_sums,
                |net, ch, part| {
                    forward(net, ch.x, ch.c, &mut part.base, Keep::Values);
                    0.0
                },
            );
            let z = &space.parts[0].base.z[last];
            for (i, v) in z[..(end - start) * kk].iter().enumerate() {
                y[[start - rows.start + i / kk, i % kk]] = v.to_f64();
            }
            start = end;
        }
        Ok(y)
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.model.load_theta(theta);
        let (k, w) = v.dim();
        let mut out = vec![0.0; k * w]; // (k, W) row-major
        if k > 0 {
            self.block_into(theta, &rows, v, kind, k, &mut out);
        }
        Array2::from_shape_vec((k, w), out)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        self.model.load_theta(theta);
        self.full(rows, kind)
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        self.model.load_theta(theta);
        Ok(self.diagonal(rows, which))
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.model.load_theta(theta);
        Ok(self.outer_product(rows))
    }
    fn data_fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        self.model.load_theta(theta);
        self.fisher_vectors(fisher, rows, skip)
    }
    fn data_kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        self.model.load_theta(theta);
        self.kfac_factors(fisher, rows)
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        self.bind(x, t);
        Ok(())
    }
    fn precision(&self) -> Precision {
        T::PRECISION
    }
}
