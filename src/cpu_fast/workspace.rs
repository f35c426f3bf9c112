//! Where the fast engine's operations run: the bound data ([`Data`]), the model
//! in precision T ([`Model`]), and per kind of operation a [`Workspace`] of
//! [`Part`]s — one per thread that works on it — whose buffers are allocated on
//! first use and reused by every later call.
//!
//! [`Workspace::run`] is the one driver: it splits the rows of an operation into
//! a few contiguous parts ([`parts_for`], a function of the row count only),
//! runs each part's chunks on one thread with its own buffers, and returns the
//! sum of what the body returned, added in part order. Since the split never
//! depends on the thread count, neither do the bits of any result.
//!
//! A workspace is typed by what its parts hold beside the forward/backward
//! buffers ([`Base`]): nothing for the loss and gradient, a `Block` for
//! products, a [`DiagBuffers`] for diagonals, an [`OuterBuffers`] for the
//! outer product — so an operation cannot meet a part of the wrong kind.

use super::diagonal::DiagBuffers;
use super::gemm::{mat_strided, Operand};
use super::net::Net;
use super::par;
use super::passes::Base;
use super::real::Real;
use crate::engine::PassesKey;
use crate::model::{LayerLayout, Mlp};
use ndarray::ArrayView2;
use rayon::prelude::*;
use std::ops::Range;

/// The fewest rows worth a part of their own.
pub const MIN_PART_ROWS: usize = 128;
/// The most parts: a fixed number (not the thread count) so that the sums,
/// added part by part, are the same bits on any number of threads; 8 divides
/// evenly among 1, 2, 4 or 8 threads.
pub const MAX_PARTS: usize = 8;

/// How many parts an operation on `rows` rows is split into (a function of
/// `rows` only).
pub fn parts_for(rows: usize) -> usize {
    (rows / MIN_PART_ROWS).clamp(1, MAX_PARTS)
}

/// The bound rows: X (N, D) in T twice (row-major and column-major) and T (N, K).
pub struct Data<T> {
    /// (N, D) row-major.
    pub x: Vec<T>,
    /// X again, column-major: (D, N) row-major. The sums over samples
    /// δ[0]ᵀ X and R{δ[0]}ᵀ X read X from here unless they are small (see
    /// `gemm::sum_plan`: e.g. one thread, (512, 1250)·(1250, 784) runs at 188
    /// GFLOP/s this way against 121 from the row-major X), for twice the
    /// data's memory.
    pub x_cols: Vec<T>,
    /// (N, K) row-major, f64 (the loss is always evaluated in f64).
    pub t: Vec<f64>,
    /// N.
    pub rows: usize,
}

impl<T: Real> Data<T> {
    /// No rows yet.
    pub fn empty() -> Data<T> {
        Data {
            x: Vec::new(),
            x_cols: Vec::new(),
            t: Vec::new(),
            rows: 0,
        }
    }

    /// Copies X (N, D) and T (N, K) in, reusing the allocations.
    pub fn bind(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) {
        self.x.clear();
        self.x.extend(x.iter().map(|&v| T::from_f64(f64::from(v))));
        transposed_into(x, &mut self.x_cols);
        self.t.clear();
        self.t.extend(t.iter().map(|&v| f64::from(v)));
        self.rows = x.nrows();
    }
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

/// The architecture and θ in precision T (converted once per operation).
pub struct Model<T> {
    pub mlp: Mlp,
    pub layers: Vec<LayerLayout>,
    /// θ (W).
    pub theta: Vec<T>,
}

impl<T: Real> Model<T> {
    pub fn new(mlp: &Mlp) -> Model<T> {
        Model {
            mlp: mlp.clone(),
            layers: mlp.layout(),
            theta: vec![T::zero(); mlp.num_params()],
        }
    }

    /// θ (W, f64) into precision T.
    pub fn load_theta(&mut self, theta: &[f64]) {
        for (d, v) in self.theta.iter_mut().zip(theta) {
            *d = T::from_f64(*v);
        }
    }

    /// The view every pass takes.
    pub fn net(&self) -> Net<'_, T> {
        Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        }
    }
}

/// One chunk of rows as an operation's body sees it.
pub struct Chunk<'a, T> {
    /// Inputs (c, D) and targets (c, K) of the chunk.
    pub x: &'a [T],
    /// The same inputs read from the column-major copy of X.
    pub x_cols: Operand<'a, T>,
    pub t: &'a [f64],
    pub c: usize,
    /// The chunk's first row in the bound data.
    pub start: usize,
    /// The first chunk of its part: accumulators are written, not added to.
    pub first: bool,
    /// 1/|rows| of the whole operation.
    pub inv_n: f64,
}

/// The outer product's buffers beside its factor rows: B (cap·K, W) and the
/// (W, W) accumulator.
pub struct OuterBuffers<T> {
    pub diag: DiagBuffers<T>,
    pub b: Vec<T>,
    pub acc: Vec<T>,
}

/// The buffers of one thread's rows: the passes, and what the operation adds (`W`).
pub struct Part<T, W> {
    pub base: Base<T>,
    pub work: W,
}

/// The parts of one kind of operation, with the chunk size they were allocated for.
pub struct Workspace<T, W> {
    /// Samples per chunk.
    pub cap: usize,
    pub parts: Vec<Part<T, W>>,
    /// What the parts' forward and backward passes hold, when each part's rows
    /// were one chunk: the next block product at the same θ, rows and kind
    /// (Lanczos, CG, Hutchinson: many products at one θ) skips them.
    pub passes_of: Option<PassesKey>,
}

impl<T: Real, W: Send> Workspace<T, W> {
    pub fn new(cap: usize) -> Workspace<T, W> {
        Workspace {
            cap,
            parts: Vec::new(),
            passes_of: None,
        }
    }

    /// At least `parts` parts, new ones made by `make(cap)`.
    pub fn ensure_parts(&mut self, parts: usize, make: impl Fn(usize) -> Part<T, W>) {
        while self.parts.len() < parts {
            self.parts.push(make(self.cap));
        }
    }

    /// Runs `body` on every chunk of `rows` of `data` over the first `parts` parts
    /// (which must exist) and returns the sum of what it returned, added in part
    /// order. With more than one part they run in parallel, each on one thread
    /// (sequential GEMMs inside), and the caller adds their accumulators.
    pub fn run(
        &mut self,
        data: &Data<T>,
        net: &Net<T>,
        rows: &Range<usize>,
        parts: usize,
        part_sums: &mut Vec<f64>,
        body: impl Fn(&Net<T>, &Chunk<T>, &mut Part<T, W>) -> f64 + Sync,
    ) -> f64 {
        let (d, kk) = (net.mlp.num_inputs(), net.mlp.num_outputs());
        let inv_n = 1.0 / rows.len() as f64;
        let cap = self.cap;
        // Rows of part i: an even split of `rows`, the first parts one longer.
        let (len, base_len) = (rows.len(), rows.len() / parts);
        let part_rows = |i: usize| {
            let extra = len % parts;
            let start = rows.start + i * base_len + i.min(extra);
            start..start + base_len + usize::from(i < extra)
        };
        let run = |part: &mut Part<T, W>, range: Range<usize>| -> f64 {
            let mut sum = 0.0;
            let mut start = range.start;
            while start < range.end {
                let c = cap.min(range.end - start);
                let chunk = Chunk {
                    x: &data.x[start * d..(start + c) * d],
                    // Columns start..start + c of X's (D, N) copy, read as (c, D).
                    x_cols: mat_strided(&data.x_cols[start..], d, c, data.rows).t(),
                    t: &data.t[start * kk..(start + c) * kk],
                    c,
                    start,
                    first: start == range.start,
                    inv_n,
                };
                sum += body(net, &chunk, part);
                start += c;
            }
            sum
        };
        if parts == 1 {
            return run(&mut self.parts[0], rows.clone());
        }
        self.parts[..parts]
            .par_iter_mut()
            .enumerate()
            .map(|(i, part)| par::sequential(|| run(part, part_rows(i))))
            .collect_into_vec(part_sums);
        part_sums.iter().sum()
    }

    /// The first part and the next `used − 1`, to add the others' accumulators
    /// into the first.
    pub fn first_and_others(&mut self, used: usize) -> (&mut Part<T, W>, &[Part<T, W>]) {
        let (head, tail) = self.parts.split_at_mut(1);
        (&mut head[0], &tail[..used.saturating_sub(1)])
    }
}
