//! `FastCpuEngine<T>`: every curvature operation on the CPU in f32 or f64 with
//! faer's GEMM, the same algorithms as the f64 reference
//! (`cpu/`), which stays the specification this engine is parity-tested
//! against (`tests/parity_cpu_fast.rs`).
//!
//! Work is done in chunks of samples so that memory stays bounded; each
//! chunk's buffers live in a workspace allocated once per (engine, kind of
//! operation, block width) and reused by every later call: no allocation
//! inside an operation apart from its result.
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
//! (`tests/parity_cpu_fast.rs`).

use super::block::{Block, BlockVectors};
use super::diagonal::DiagBuffers;
use super::full::FullBuffers;
use super::gemm::{mat_strided, Operand};
use super::net::Net;
use super::outer;
use super::par;
use super::passes::{
    accumulate_gradient, backward, forward, loss_sum, prepare_output_curvature, Base, Deltas, Keep,
};
use super::real::Real;
use crate::engine::{check_data_shape, Backend, Diagonal, Kind, PassesKey};
use crate::error::Result;
use crate::model::{LayerLayout, Mlp};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Mutex;

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
/// The fewest rows worth a part of their own.
pub const MIN_PART_ROWS: usize = 128;
/// The most parts: a fixed number (not the thread count) so that the sums,
/// added part by part, are the same bits on any number of threads; 8 divides
/// evenly among 1, 2, 4 or 8 threads.
pub const MAX_PARTS: usize = 8;

/// What a curvature pass reads of c samples (inputs `x`, targets `t`): the
/// forward pass with h′ and the output curvature, and for the exact Hessian
/// (`exact`) h″, the backward pass (no δ[0]) and the output curvature's
/// residual terms; the Gauss-Newton needs neither.
fn curvature_base<T: Real>(
    net: &Net<T>,
    x: &[T],
    t: &[f64],
    c: usize,
    inv_n: f64,
    base: &mut Base<T>,
    exact: bool,
) {
    let keep = if exact {
        Keep::SecondDerivative
    } else {
        Keep::FirstDerivative
    };
    forward(net, x, c, base, keep);
    if exact {
        backward(net, t, c, base, inv_n, Deltas::AboveInput);
    }
    prepare_output_curvature(net, t, c, base, !exact);
}

/// X (N, D) as T, column-major: (D, N) row-major. Copied in square tiles so
/// that reads and writes both stay in cache (element by element in column
/// order, M's copy took about half of building its engine).
fn transposed_into<T: Real>(x: ArrayView2<f32>, out: &mut Vec<T>) {
    const TILE: usize = 64;
    let (n, d) = x.dim();
    out.clear();
    out.resize(n * d, T::zero());
    for s0 in (0..n).step_by(TILE) {
        for m0 in (0..d).step_by(TILE) {
            for s in s0..(s0 + TILE).min(n) {
                for m in m0..(m0 + TILE).min(d) {
                    out[m * n + s] = T::from_f64(f64::from(x[[s, m]]));
                }
            }
        }
    }
}

/// How many parts an operation on `rows` rows is split into (a function of
/// `rows` only).
pub fn parts_for(rows: usize) -> usize {
    (rows / MIN_PART_ROWS).clamp(1, MAX_PARTS)
}

/// Whether an operation may be split into parts (the outputs write rows of a
/// shared result, the outer product's W×W accumulator is too big to copy).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    Parts,
    Sequential,
}

/// What a workspace is for (its buffers differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Plain,
    Block(usize),
    Diag(Diagonal),
    Outer,
}

/// The buffers of one kind of operation: one [`Part`] per thread that works
/// on it (see [`parts_for`]), allocated as first needed.
struct Workspace<T> {
    key: Key,
    cap: usize,
    parts: Vec<Part<T>>,
    /// A block workspace's loaded vectors, read by all its parts.
    vectors: Option<BlockVectors<T>>,
    /// What the parts' forward and backward passes hold, when each part's
    /// rows were one chunk: the next block product at the same θ, rows and
    /// kind (Lanczos, CG, Hutchinson: many products at one θ) skips them.
    passes_of: Option<PassesKey>,
}

/// One chunk of rows as an operation's body sees it.
struct Chunk<'a, T> {
    /// Inputs (c, D) and targets (c, K) of the chunk.
    x: &'a [T],
    /// The same inputs read from the column-major copy of X.
    x_cols: Operand<'a, T>,
    t: &'a [f64],
    c: usize,
    /// The chunk's first row (of the engine's data).
    start: usize,
    /// The first chunk of its part: accumulators are written, not added to.
    first: bool,
    /// 1/|rows| of the whole operation.
    inv_n: f64,
}

/// The buffers of one thread's rows.
struct Part<T> {
    base: Base<T>,
    block: Option<Block<T>>,
    diag: Option<DiagBuffers<T>>,
    /// Outer product: B (cap·K, W) and the (W, W) accumulator.
    b: Vec<T>,
    acc: Vec<T>,
}

/// The fast CPU device bound to one model and data set, in precision T.
pub struct FastCpuEngine<T: Real> {
    mlp: Mlp,
    layers: Vec<LayerLayout>,
    x: Vec<T>, // (N, D) row-major
    /// X again, column-major: (D, N) row-major. The sums over samples
    /// δ[0]ᵀ X and R{δ[0]}ᵀ X read X from here unless they are small (see
    /// `gemm::sum_plan`: e.g. one thread, (512, 1250)·(1250, 784) runs at 188
    /// GFLOP/s this way against 121 from the row-major X), for twice the
    /// data's memory.
    x_cols: Vec<T>,
    t: Vec<f64>, // (N, K) row-major
    rows: usize,
    theta: Vec<T>, // θ (W) in precision T, converted per call
    spaces: Vec<Workspace<T>>,
    /// The full matrices' buffers, kept for the next call.
    full_buffers: Option<FullBuffers<T>>,
    /// An upper bound on samples per chunk (tests force several chunks with it).
    max_chunk: usize,
    /// Per-part loss sums of the last operation.
    part_sums: Vec<f64>,
}

impl<T: Real> FastCpuEngine<T> {
    /// Binds `mlp` to inputs `x` (N, D) and targets `t` (N, K).
    pub fn new(mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<FastCpuEngine<T>> {
        check_data_shape(mlp, x, t)?;
        let mut engine = FastCpuEngine {
            mlp: mlp.clone(),
            layers: mlp.layout(),
            x: Vec::new(),
            x_cols: Vec::new(),
            t: Vec::new(),
            rows: 0,
            theta: vec![T::zero(); mlp.num_params()],
            spaces: Vec::new(),
            full_buffers: None,
            max_chunk: usize::MAX,
            part_sums: Vec::new(),
        };
        engine.bind(x, t);
        Ok(engine)
    }

    /// Copies X (N, D) and T (N, K) in (reusing the allocations) and forgets the
    /// passes of the previous data; workspaces whose chunk size still fits the new
    /// row count are kept (mini-batch epochs bind the same N every epoch).
    fn bind(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) {
        self.x.clear();
        self.x.extend(x.iter().map(|&v| T::from_f64(f64::from(v))));
        transposed_into(x, &mut self.x_cols);
        self.t.clear();
        self.t.extend(t.iter().map(|&v| f64::from(v)));
        self.rows = x.nrows();
        let spaces = std::mem::take(&mut self.spaces);
        for mut space in spaces {
            if self.capacity(space.key) == space.cap {
                space.passes_of = None;
                self.spaces.push(space);
            }
        }
    }

    /// The same engine processing at most `samples` samples per chunk (≥ 1),
    /// e.g. to exercise the accumulation across chunks on a small data set.
    pub fn with_max_chunk(mut self, samples: usize) -> FastCpuEngine<T> {
        self.max_chunk = samples.max(1);
        self.spaces.clear();
        self
    }

    /// `f32` or `f64`.
    pub fn precision(&self) -> &'static str {
        T::NAME
    }

    /// Parts an operation of this key on `rows` rows is split into:
    /// [`parts_for`], fewer for blocks whose accumulators would not fit
    /// [`BLOCK_ACCUMULATOR_BUDGET`] (a power of two, so that the parts still
    /// divide evenly among 2, 4 or 8 threads). Never the thread count.
    fn parts(&self, rows: usize, key: Key) -> usize {
        let parts = parts_for(rows);
        match key {
            Key::Block(k) => {
                let per_part = 2 * k * self.mlp.num_params();
                let fit = (BLOCK_ACCUMULATOR_BUDGET / per_part.max(1)).max(1);
                parts.min(1 << fit.ilog2())
            }
            _ => parts,
        }
    }

    /// Samples per chunk for a workspace of this key.
    fn capacity(&self, key: Key) -> usize {
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let cap = match key {
            Key::Plain => PLAIN_ROWS,
            Key::Block(k) => {
                let widest = self.layers.iter().map(|l| l.fan_out).max().unwrap_or(1);
                (BLOCK_BUDGET / widest.max(1)).min(BLOCK_ROWS) / k.max(1)
            }
            Key::Diag(kind) => FACTOR_BUDGET / DiagBuffers::per_sample(&net, kind),
            Key::Outer => FACTOR_BUDGET / (self.mlp.num_outputs() * self.mlp.num_params()).max(1),
        };
        let rows_per_part = self.rows.div_ceil(self.parts(self.rows, key));
        cap.clamp(1, rows_per_part.min(self.max_chunk))
    }

    /// The index of the workspace for `key` with at least `parts` parts,
    /// allocating what is missing on first use.
    fn workspace(&mut self, key: Key, parts: usize) -> usize {
        let i = match self.spaces.iter().position(|w| w.key == key) {
            Some(i) => i,
            None => {
                let cap = self.capacity(key);
                self.spaces.push(Workspace {
                    key,
                    cap,
                    parts: Vec::new(),
                    vectors: None,
                    passes_of: None,
                });
                self.spaces.len() - 1
            }
        };
        while self.spaces[i].parts.len() < parts {
            let part = self.new_part(key, self.spaces[i].cap);
            self.spaces[i].parts.push(part);
        }
        i
    }

    fn new_part(&self, key: Key, cap: usize) -> Part<T> {
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let (w, kk) = (self.mlp.num_params(), self.mlp.num_outputs());
        Part {
            base: Base::new(&net, cap),
            block: match key {
                Key::Block(k) => Some(Block::new(&net, cap, k)),
                _ => None,
            },
            diag: match key {
                Key::Diag(kind) => Some(DiagBuffers::new(&net, cap, kind)),
                Key::Outer => Some(DiagBuffers::new(&net, cap, Diagonal::GaussNewton)),
                _ => None,
            },
            b: if key == Key::Outer {
                vec![T::zero(); cap * kk * w]
            } else {
                Vec::new()
            },
            acc: if key == Key::Outer {
                vec![T::zero(); w * w]
            } else {
                Vec::new()
            },
        }
    }

    /// Converts θ to T (the face checked its length).
    fn begin(&mut self, theta: &[f64]) {
        for (d, v) in self.theta.iter_mut().zip(theta) {
            *d = T::from_f64(*v);
        }
    }

    /// Runs `body` on every chunk of `rows` with the workspace of `key` and
    /// returns the sum of what it returned, added in row order.
    /// With `Split::Parts` the rows are split into [`Self::parts`] contiguous
    /// parts run in parallel, each on its own [`Part`] (whose accumulators the
    /// caller then adds up); returns (sum, parts used).
    fn chunks(
        &mut self,
        rows: &Range<usize>,
        key: Key,
        split: Split,
        body: impl Fn(&Net<T>, &Chunk<T>, &mut Part<T>) -> f64 + Sync,
    ) -> (f64, usize) {
        let parts = match split {
            Split::Parts => self.parts(rows.len(), key),
            Split::Sequential => 1,
        };
        let ws = self.workspace(key, parts);
        let (d, kk) = (self.mlp.num_inputs(), self.mlp.num_outputs());
        let inv_n = 1.0 / rows.len() as f64;
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let (x_all, t_all, x_cols, n_all) = (&self.x, &self.t, &self.x_cols, self.rows);
        let space = &mut self.spaces[ws];
        let cap = space.cap;
        // Rows of part i: an even split of `rows`, the first parts one longer.
        let (len, base_len) = (rows.len(), rows.len() / parts);
        let part_rows = |i: usize| {
            let extra = len % parts;
            let start = rows.start + i * base_len + i.min(extra);
            start..start + base_len + usize::from(i < extra)
        };
        let run = |part: &mut Part<T>, range: Range<usize>| -> f64 {
            let mut sum = 0.0;
            let mut start = range.start;
            while start < range.end {
                let c = cap.min(range.end - start);
                let chunk = Chunk {
                    x: &x_all[start * d..(start + c) * d],
                    // Columns start..start + c of X's (D, N) copy, read as (c, D).
                    x_cols: mat_strided(&x_cols[start..], d, c, n_all).t(),
                    t: &t_all[start * kk..(start + c) * kk],
                    c,
                    start,
                    first: start == range.start,
                    inv_n,
                };
                sum += body(&net, &chunk, part);
                start += c;
            }
            sum
        };
        if parts == 1 {
            let sum = run(&mut space.parts[0], rows.clone());
            return (sum, 1);
        }
        space.parts[..parts]
            .par_iter_mut()
            .enumerate()
            .map(|(i, part)| par::sequential(|| run(part, part_rows(i))))
            .collect_into_vec(&mut self.part_sums);
        (self.part_sums.iter().sum(), parts)
    }

    /// H V or G V for V (k, W) into `out` (k, W), with the block workspace of width `k_cap` ≥ k.
    fn block_into(
        &mut self,
        theta: &[f64],
        rows: &Range<usize>,
        v: ArrayView2<f64>,
        gauss_newton: bool,
        k_cap: usize,
        out: &mut [f64],
    ) {
        let k = v.nrows();
        let key = Key::Block(k_cap);
        let parts = self.parts(rows.len(), key);
        let ws = self.workspace(key, parts);
        // The parts' passes from the previous product serve this one if they
        // are of the same θ, rows and kind (recorded only when each part's
        // rows were one chunk, so that its buffers hold all of them).
        let one_chunk_each = rows.len().div_ceil(parts) <= self.spaces[ws].cap;
        let kind = if gauss_newton {
            Kind::GaussNewton
        } else {
            Kind::Hessian
        };
        let reuse = PassesKey::matches(&self.spaces[ws].passes_of, theta, rows, kind);
        // Loaded once, read by every part; out of the workspace while the
        // parts (borrowed mutably by `chunks`) run.
        let vectors = {
            let net = Net {
                mlp: &self.mlp,
                layers: &self.layers,
                theta: &self.theta,
            };
            let mut vectors = self.spaces[ws]
                .vectors
                .take()
                .unwrap_or_else(|| BlockVectors::new(&net, k_cap));
            vectors.load(&net, v);
            vectors
        };
        let (_, used) = self.chunks(rows, key, Split::Parts, |net, ch, part| {
            if !reuse {
                let exact = !gauss_newton;
                curvature_base(net, ch.x, ch.t, ch.c, ch.inv_n, &mut part.base, exact);
            }
            if let Some(block) = part.block.as_mut() {
                let (x, c, inv_n, first) = (ch.x, ch.c, ch.inv_n, ch.first);
                block.chunk(
                    net,
                    &vectors,
                    x,
                    ch.x_cols,
                    c,
                    k,
                    &part.base,
                    gauss_newton,
                    inv_n,
                    first,
                );
            }
            0.0
        });
        self.spaces[ws].vectors = Some(vectors);
        let passes = &mut self.spaces[ws].passes_of;
        if !one_chunk_each {
            *passes = None;
        } else if !reuse {
            PassesKey::record(passes, theta, rows, kind);
        }
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let (head, tail) = self.spaces[ws].parts.split_at_mut(1);
        if let Some(block) = head[0].block.as_mut() {
            for other in tail[..used - 1].iter().filter_map(|p| p.block.as_ref()) {
                block.add_accumulators(&net, other, k, gauss_newton);
            }
            block.finish(&net, k, gauss_newton, out);
        }
    }

    fn block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
        gauss_newton: bool,
    ) -> Result<Array2<f64>> {
        self.begin(theta);
        let mut out = Array2::zeros(v.dim());
        if v.nrows() == 0 {
            return Ok(out);
        }
        let slice = out.as_slice_mut().ok_or_else(|| {
            crate::error::Error::Internal("the block of products is not contiguous".into())
        })?;
        let k = v.nrows();
        self.block_into(theta, &rows, v, gauss_newton, k, slice);
        Ok(out)
    }

    /// The full H or G (W, W) by per-sample Kronecker sums (`full.rs`), chunk
    /// after chunk, each chunk's work parallel within it.
    fn full(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        gauss_newton: bool,
    ) -> Result<Array2<f64>> {
        self.begin(theta);
        let exact = !gauss_newton;
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let cap = FullBuffers::capacity(&net, exact)
            .min(self.max_chunk)
            .min(rows.len());
        let mut buffers = match self.full_buffers.take() {
            Some(b) if b.fits(exact, cap) => b,
            _ => FullBuffers::new(&net, cap, exact),
        };
        let (d, kk, w) = (
            self.mlp.num_inputs(),
            self.mlp.num_outputs(),
            self.mlp.num_params(),
        );
        let inv_n = 1.0 / rows.len() as f64;
        let mut start = rows.start;
        while start < rows.end {
            let c = cap.min(rows.end - start);
            let x = &self.x[start * d..(start + c) * d];
            let t = &self.t[start * kk..(start + c) * kk];
            // One thread: small next to the sums, and its bits then never
            // depend on the thread count.
            let base = &mut buffers.base;
            par::sequential(|| curvature_base(&net, x, t, c, inv_n, base, exact));
            buffers.chunk(&net, x, c, inv_n, start == rows.start);
            start += c;
        }
        let mut m = Array2::zeros((w, w));
        buffers.finish(&net, &mut m)?;
        self.full_buffers = Some(buffers);
        Ok(m)
    }

    fn diagonal(&mut self, theta: &[f64], rows: Range<usize>, kind: Diagonal) -> Result<Vec<f64>> {
        self.begin(theta);
        let key = Key::Diag(kind);
        let ws = self.workspace(key, self.parts(rows.len(), key));
        {
            let net = Net {
                mlp: &self.mlp,
                layers: &self.layers,
                theta: &self.theta,
            };
            for part in self.spaces[ws].parts.iter_mut() {
                if let Some(diag) = part.diag.as_mut() {
                    diag.load_weights(&net);
                }
            }
        }
        let (_, used) = self.chunks(&rows, key, Split::Parts, |net, ch, part| {
            let exact = kind != Diagonal::GaussNewton;
            curvature_base(net, ch.x, ch.t, ch.c, ch.inv_n, &mut part.base, exact);
            if let Some(diag) = part.diag.as_mut() {
                diag.chunk(net, ch.x, ch.c, &part.base, kind, ch.inv_n, ch.first);
            }
            0.0
        });
        let mut out = vec![0.0; self.mlp.num_params()];
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let (head, tail) = self.spaces[ws].parts.split_at_mut(1);
        if let Some(diag) = head[0].diag.as_mut() {
            for other in tail[..used - 1].iter().filter_map(|p| p.diag.as_ref()) {
                diag.add_accumulators(other);
            }
            diag.finish(&net, &mut out);
        }
        Ok(out)
    }
}

impl<T: Real> Backend for FastCpuEngine<T> {
    fn architecture(&self) -> &Mlp {
        &self.mlp
    }
    fn data_rows(&self) -> usize {
        self.rows
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        self.begin(theta);
        let (sum, _) = self.chunks(&rows, Key::Plain, Split::Parts, |net, ch, part| {
            forward(net, ch.x, ch.c, &mut part.base, Keep::Values);
            loss_sum(net, ch.t, ch.c, &mut part.base)
        });
        Ok(sum / rows.len() as f64)
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        self.begin(theta);
        let (sum, used) = self.chunks(&rows, Key::Plain, Split::Parts, |net, ch, part| {
            let base = &mut part.base;
            forward(net, ch.x, ch.c, base, Keep::FirstDerivative);
            let sum = loss_sum(net, ch.t, ch.c, base);
            backward(net, ch.t, ch.c, base, ch.inv_n, Deltas::All);
            accumulate_gradient(net, ch.x, ch.x_cols, ch.c, base, ch.first);
            sum
        });
        let ws = self.workspace(Key::Plain, used);
        let (head, tail) = self.spaces[ws].parts.split_at_mut(1);
        for other in &tail[..used - 1] {
            head[0].base.add_gradient(&other.base);
        }
        let mut grad = vec![0.0; theta.len()];
        let base = &self.spaces[ws].parts[0].base;
        for (l, layer) in self.layers.iter().enumerate() {
            // gw[l] (out, in) is stored in gw_layout[l].
            let (fin, fout, layout) = (layer.fan_in, layer.fan_out, base.gw_layout[l]);
            for (q, g) in grad[layer.weights.clone()].iter_mut().enumerate() {
                let (j, m) = (q / fin, q % fin);
                *g = base.gw[l][layout.at(j, m, fout, fin)].to_f64();
            }
            for (g, v) in grad[layer.bias.clone()].iter_mut().zip(&base.gb[l]) {
                *g = v.to_f64();
            }
        }
        Ok((sum / rows.len() as f64, grad))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.begin(theta);
        let kk = self.mlp.num_outputs();
        let last = self.layers.len() - 1;
        // One part: the chunks write disjoint rows of one result, in turn.
        let y = Mutex::new(Array2::zeros((rows.len(), kk)));
        let first_row = rows.start;
        self.chunks(&rows, Key::Plain, Split::Sequential, |net, ch, part| {
            forward(net, ch.x, ch.c, &mut part.base, Keep::Values);
            if let Ok(mut y) = y.lock() {
                let at = ch.start - first_row;
                for (i, v) in part.base.z[last][..ch.c * kk].iter().enumerate() {
                    y[[at + i / kk, i % kk]] = v.to_f64();
                }
            }
            0.0
        });
        y.into_inner().map_err(|_| {
            crate::error::Error::Internal(
                "outputs: a worker thread panicked while writing its chunk".into(),
            )
        })
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.block(theta, rows, v, kind == Kind::GaussNewton)
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        self.full(theta, rows, kind == Kind::GaussNewton)
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        self.diagonal(theta, rows, which)
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.begin(theta);
        // One part: its (W, W) accumulator is too large to keep per thread.
        let ws = self.workspace(Key::Outer, 1);
        {
            let net = Net {
                mlp: &self.mlp,
                layers: &self.layers,
                theta: &self.theta,
            };
            if let Some(diag) = self.spaces[ws].parts[0].diag.as_mut() {
                diag.load_weights(&net);
            }
        }
        self.chunks(&rows, Key::Outer, Split::Sequential, |net, ch, part| {
            curvature_base(net, ch.x, ch.t, ch.c, ch.inv_n, &mut part.base, false);
            if let Some(diag) = part.diag.as_mut() {
                diag.chunk(
                    net,
                    ch.x,
                    ch.c,
                    &part.base,
                    Diagonal::GaussNewton,
                    ch.inv_n,
                    ch.first,
                );
                let (b, acc) = (&mut part.b, &mut part.acc);
                outer::accumulate(net, ch.x, ch.c, &part.base, diag, b, acc, ch.first);
            }
            0.0
        });
        let w = self.mlp.num_params();
        let acc = &self.spaces[ws].parts[0].acc;
        Ok(Array2::from_shape_fn((w, w), |(i, j)| {
            acc[i * w + j].to_f64()
        }))
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        self.bind(x, t);
        Ok(())
    }
}
