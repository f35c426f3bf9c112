//! `GpuEngine`: the curvature operations of one model on one data set, in f32 on a
//! wgpu device. Layers are 0-based: layer l maps z_l (n, in_l) to a_l = z_l·W_lᵀ + b_l
//! (n, out_l) and z_{l+1} = h_l(a_l); z_0 = X; the output is a_{L−1}.
//!
//! Every operation is one [`Op`] (one encoder, one submit; the full H and G: one per
//! block of columns; a device update of `train`'s first-order path, `training.rs`:
//! one, with nothing read back) that walks the requested rows in slices: a
//! slice lies inside one data chunk (the data are uploaded once, in chunks sized from
//! the adapter's binding limits) and holds at most `chunk_rows` rows. Results
//! accumulate over the slices on the device; only the result is read back.
//!
//! The derivative outputs of the loss kernels carry the 1/N of the mean (1/√N for the
//! Gauss-Newton factor), and every backward recursion is linear in them, so no pass
//! rescales afterwards.

use super::context::{GpuBuffer, GpuContext, Op, Runner};
use super::error::GpuError;
use super::kernels::{self as k, elementwise_groups, Kernel, Strided};
use super::params::{flag, u, LossParams, ReduceParams, RopParams, UpdateParams};
use crate::engine::{check_data_shape, Kind, PassesKey};
use crate::error::Result;
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::ops::Range;
use std::sync::Arc;

/// Vectors R-propagated together in one pass (rows of V in one batched product);
/// larger blocks are processed in groups of this many inside the same submit.
pub const VECTOR_GROUP: usize = 16;
/// Columns of H or G computed per submit by `hessian` and `ggn`.
pub const HESSIAN_BLOCK_COLUMNS: usize = 32;
/// Room for split-K partial sums (16 MiB): products whose partial sums would not fit
/// get fewer splits.
pub const SPLIT_K_SCRATCH_FLOATS: usize = 1 << 22;
/// Device memory the per-chunk activation buffers may take together; with the binding
/// limit it sizes `chunk_rows`.
pub const ACTIVATION_BUDGET_BYTES: u64 = 1 << 30;

/// Which output Hessian a loss kernel's products and factors use (`gn` in loss.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputHessian {
    Exact = 0,
    GaussNewton = 1,
    /// The negative part of an exact diagonal output Hessian (factors only): sse/mse's
    /// h_kk = c·(h′² + (y − t)·h″) can be negative.
    ExactNegativePart = 2,
}

impl OutputHessian {
    /// The output Hessian of H·v or G·v.
    fn of_product(kind: Kind) -> OutputHessian {
        match kind {
            Kind::Hessian => OutputHessian::Exact,
            Kind::GaussNewton => OutputHessian::GaussNewton,
        }
    }
}

/// Where one layer sits in θ and in the per-layer activation buffers.
#[derive(Clone, Debug)]
struct LayerGeom {
    fan_in: usize,
    fan_out: usize,
    w_off: usize,
    b_off: usize,
    act: u32,
    /// Σ_{m<l} out_m: the layer's region starts at rows·out_cum in per-layer buffers.
    out_cum: usize,
}

/// A run of rows inside one data chunk.
#[derive(Clone, Copy, Debug)]
struct Slice {
    chunk: usize,
    /// First row inside the chunk.
    local: usize,
    /// Rows in the slice.
    n: usize,
    /// First row relative to the start of the requested range.
    rel: usize,
}

/// Buffers sized by the model and `chunk_rows`, allocated once and reused by every call.
struct Buffers {
    theta: GpuBuffer,
    theta_sq: GpuBuffer,
    /// Gradient (W) followed by one loss sum per slice.
    grad: GpuBuffer,
    diag: GpuBuffer,
    pre: GpuBuffer,
    z: GpuBuffer,
    d1: GpuBuffer,
    d2: GpuBuffer,
    delta: GpuBuffer,
    /// δ_l·W_l, stored in layer l−1's region (it is (n, in_l) = (n, out_{l−1})).
    ew: GpuBuffer,
    row_loss: GpuBuffer,
    ra: GpuBuffer,
    rz: GpuBuffer,
    rd: GpuBuffer,
    /// Batched matmul results of the backward passes, (VECTOR_GROUP, rows, max width).
    prod: GpuBuffer,
    /// (rows, max width) scratch: Σ_k S², squares of inputs.
    sq: GpuBuffer,
    /// Partial sums of split-K products.
    split_scratch: GpuBuffer,
    vecs: Option<GpuBuffer>,
    hv: Option<GpuBuffer>,
    outputs: Option<GpuBuffer>,
    /// Outer product: (G rows, W) factor rows and the (W, W) result.
    outer: Option<(GpuBuffer, GpuBuffer)>,
    /// K-FAC (`kfac.rs`): the factors' sums, mc's draws, the Fisher vectors.
    kfac: Option<GpuBuffer>,
    draws: Option<GpuBuffer>,
    fisher_rows: Option<GpuBuffer>,
}

/// The curvature engine on a GPU (f32 on the device, f64 at the interface).
pub struct GpuEngine {
    ctx: Arc<GpuContext>,
    runner: Runner,
    mlp: Mlp,
    matmul: Kernel,
    layers: Vec<LayerGeom>,
    num_rows: usize,
    num_params: usize,
    chunk_rows: usize,
    /// The cap on `chunk_rows` a test set with [`GpuEngine::with_max_chunk_rows`].
    max_chunk_rows: Option<usize>,
    /// (X_c (rows_c, D), T_c (rows_c, K)) per chunk of `chunk_rows` rows.
    chunks: Vec<(GpuBuffer, GpuBuffer)>,
    host_x: Array2<f32>,
    host_t: Array2<f32>,
    bufs: Buffers,
    /// Set by a product over one slice, cleared by anything that uploads θ.
    passes: Option<PassesKey>,
    /// The device path of first-order training (`training.rs`): its buffers, made on
    /// first use and kept, and the run of updates in progress.
    training: Option<training::TrainingBuffers>,
    updates: Option<training::Updates>,
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("mlp", &self.mlp.describe())
            .field("rows", &self.num_rows)
            .field("chunk_rows", &self.chunk_rows)
            .finish()
    }
}

impl GpuEngine {
    /// Binds `mlp` and the data X (N, D), T (N, K) to the device: uploads the data once,
    /// in chunks sized from the adapter's limits, and allocates the working buffers.
    pub fn new(
        ctx: Arc<GpuContext>,
        mlp: &Mlp,
        x: ArrayView2<f32>,
        t: ArrayView2<f32>,
    ) -> Result<GpuEngine> {
        check_data_shape(mlp, x, t)?;
        let n = x.nrows();
        let mut out_cum = 0;
        let layers = mlp
            .layout()
            .into_iter()
            .zip(mlp.activations())
            .map(|(l, act)| {
                let g = LayerGeom {
                    fan_in: l.fan_in,
                    fan_out: l.fan_out,
                    w_off: l.weights.start,
                    b_off: l.bias.start,
                    act: act.code(),
                    out_cum,
                };
                out_cum += l.fan_out;
                g
            })
            .collect();
        let matmul = ctx.matmul_kernel();
        let host_x = x.as_standard_layout().to_owned();
        let host_t = t.as_standard_layout().to_owned();
        let chunk_rows = Self::rows_per_chunk(&ctx, mlp, n, None);
        let (chunks, bufs) = Self::allocate(&ctx, mlp, chunk_rows, &host_x, &host_t)?;
        Ok(GpuEngine {
            runner: Runner::new(ctx.clone()),
            ctx,
            mlp: mlp.clone(),
            matmul,
            layers,
            num_rows: n,
            num_params: mlp.num_params(),
            chunk_rows,
            max_chunk_rows: None,
            chunks,
            host_x,
            host_t,
            bufs,
            passes: None,
            training: None,
            updates: None,
        })
    }

    /// The same engine with data chunks (and slices) of at most `rows` rows: every
    /// operation then accumulates over several chunks, which tests of chunking compare
    /// with the one-chunk result. Re-uploads the data.
    pub fn with_max_chunk_rows(self, rows: usize) -> Result<Self> {
        let chunk_rows = Self::rows_per_chunk(&self.ctx, &self.mlp, self.num_rows, Some(rows));
        let (chunks, bufs) =
            Self::allocate(&self.ctx, &self.mlp, chunk_rows, &self.host_x, &self.host_t)?;
        Ok(GpuEngine {
            runner: Runner::new(self.ctx.clone()),
            chunk_rows,
            max_chunk_rows: Some(rows),
            chunks,
            bufs,
            passes: None,
            ..self
        })
    }

    /// New rows of data (shapes checked by the face). With the same row count (every
    /// epoch of mini-batch training binds the training part again) only the data are
    /// written, into the chunk buffers they had; otherwise the per-row buffers are
    /// allocated for the new count. The context, its pipelines and θ's buffers stay.
    pub(crate) fn bind(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        self.passes = None;
        self.host_x = x.as_standard_layout().to_owned();
        self.host_t = t.as_standard_layout().to_owned();
        let n = x.nrows();
        if n == self.num_rows {
            for (c, (xb, tb)) in self.chunks.iter().enumerate() {
                let (start, end) = (c * self.chunk_rows, ((c + 1) * self.chunk_rows).min(n));
                write_rows(
                    &self.ctx,
                    xb,
                    self.host_x.slice(ndarray::s![start..end, ..]),
                );
                write_rows(
                    &self.ctx,
                    tb,
                    self.host_t.slice(ndarray::s![start..end, ..]),
                );
            }
            return Ok(());
        }
        let chunk_rows = Self::rows_per_chunk(&self.ctx, &self.mlp, n, self.max_chunk_rows);
        let (chunks, bufs) =
            Self::allocate(&self.ctx, &self.mlp, chunk_rows, &self.host_x, &self.host_t)?;
        self.runner = Runner::new(self.ctx.clone());
        self.chunk_rows = chunk_rows;
        self.chunks = chunks;
        self.bufs = bufs;
        self.num_rows = n;
        Ok(())
    }

    /// The same engine running its products with another matmul variant
    /// (`Kernel::MatmulTiled` or `Kernel::MatmulReg`); every variant must pass the same tests.
    pub fn with_matmul_kernel(mut self, kernel: Kernel) -> Self {
        self.matmul = kernel;
        self.passes = None;
        self
    }

    /// Rows per data chunk and slice.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// f32 elements one storage buffer may hold on this adapter.
    fn max_floats(&self) -> usize {
        (self.ctx.summary().max_binding_bytes() / 4) as usize
    }

    /// Vectors of W entries that one storage buffer holds (at least 1: a model whose θ
    /// alone is over the limit is refused by `new`).
    pub fn vectors_per_block(&self) -> usize {
        (self.max_floats() / self.num_params.max(1)).max(1)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    fn rows_per_chunk(ctx: &GpuContext, mlp: &Mlp, n: usize, cap: Option<usize>) -> usize {
        let sizes = mlp.sizes();
        let sum_out: usize = sizes[1..].iter().sum();
        let max_width = sizes.iter().copied().max().unwrap_or(1);
        let g = VECTOR_GROUP;
        // The widest single buffer per row (the batched R-buffers, or the data).
        let widest = (g * sum_out).max(g * max_width).max(sizes[0]).max(1);
        let by_binding = (ctx.summary().max_binding_bytes() / 4) as usize / widest;
        // All per-row buffers together: 5 forward/backward, 3 batched, scratch, data.
        let per_row = 6 * sum_out
            + 3 * g * sum_out
            + (g + 1) * max_width
            + sizes[0]
            + 2 * sizes[sizes.len() - 1];
        let by_budget = (ACTIVATION_BUDGET_BYTES / 4) as usize / per_row.max(1);
        n.min(by_binding)
            .min(by_budget)
            .min(cap.unwrap_or(usize::MAX))
            .max(1)
    }

    fn allocate(
        ctx: &GpuContext,
        mlp: &Mlp,
        rows: usize,
        x: &Array2<f32>,
        t: &Array2<f32>,
    ) -> Result<(Vec<(GpuBuffer, GpuBuffer)>, Buffers), GpuError> {
        let sizes = mlp.sizes();
        let (d, kk) = (mlp.num_inputs(), mlp.num_outputs());
        let n = x.nrows();
        let w = mlp.num_params();
        // θ first: a network too large for the device is refused by its parameters' name.
        let theta = ctx.buffer(&format!("θ ({w} parameters of {})", mlp.describe()), w)?;
        // Per-row buffers name the rows they hold (one row over the limit cannot be chunked).
        let rows_buffer = |name: &str, len: usize| {
            let plural = if rows == 1 { "" } else { "s" };
            ctx.buffer(&format!("{name} ({rows} row{plural})"), len)
        };
        let mut chunks = Vec::new();
        for start in (0..n).step_by(rows) {
            let end = (start + rows).min(n);
            let xb = rows_buffer("X chunk", (end - start) * d)?;
            let tb = rows_buffer("T chunk", (end - start) * kk)?;
            write_rows(ctx, &xb, x.slice(ndarray::s![start..end, ..]));
            write_rows(ctx, &tb, t.slice(ndarray::s![start..end, ..]));
            chunks.push((xb, tb));
        }
        let sum_out: usize = sizes[1..].iter().sum();
        let max_width = sizes.iter().copied().max().unwrap_or(1);
        let g = VECTOR_GROUP;
        let bufs = Buffers {
            theta,
            theta_sq: ctx.buffer("θ²", w)?,
            grad: ctx.buffer("gradient and loss sums", w + n)?,
            diag: ctx.buffer("diagonal", w)?,
            pre: rows_buffer("pre-activations a", rows * sum_out)?,
            z: rows_buffer("activations z", rows * sum_out)?,
            d1: rows_buffer("h′(a)", rows * sum_out)?,
            d2: rows_buffer("h″(a)", rows * sum_out)?,
            delta: rows_buffer("δ", rows * sum_out)?,
            ew: rows_buffer("δ·W", rows * sum_out)?,
            row_loss: rows_buffer("E_n", rows)?,
            ra: rows_buffer("R{a}", g * rows * sum_out)?,
            rz: rows_buffer("R{z}", g * rows * sum_out)?,
            rd: rows_buffer("R{δ}", g * rows * sum_out)?,
            prod: rows_buffer("backward products", g * rows * max_width)?,
            sq: rows_buffer("squares", rows * max_width)?,
            split_scratch: ctx.buffer(
                "split-K partial sums",
                SPLIT_K_SCRATCH_FLOATS.min((ctx.summary().max_binding_bytes() / 4) as usize),
            )?,
            vecs: None,
            hv: None,
            outputs: None,
            outer: None,
            kfac: None,
            draws: None,
            fisher_rows: None,
        };
        Ok((chunks, bufs))
    }

    /// The slices covering `rows`, each inside one chunk and at most `max_rows` long.
    fn slices(&self, rows: &Range<usize>, max_rows: usize) -> Vec<Slice> {
        let mut out = Vec::new();
        let mut row = rows.start;
        while row < rows.end {
            let chunk = row / self.chunk_rows;
            let chunk_end = ((chunk + 1) * self.chunk_rows).min(rows.end);
            let n = (chunk_end - row).min(max_rows.max(1));
            out.push(Slice {
                chunk,
                local: row - chunk * self.chunk_rows,
                n,
                rel: row - rows.start,
            });
            row += n;
        }
        out
    }

    fn last(&self) -> usize {
        self.layers.len() - 1
    }

    /// Offset of layer l's region in the per-layer buffers (pre, z, d1, d2, δ, δW).
    fn region(&self, l: usize) -> usize {
        self.chunk_rows * self.layers[l].out_cum
    }

    /// Offset of layer l's region in the batched buffers (R{a}, R{z}, R{δ}).
    fn batched_region(&self, l: usize) -> usize {
        VECTOR_GROUP * self.chunk_rows * self.layers[l].out_cum
    }

    /// z_l of a slice: (buffer, offset, row stride).
    fn input(&self, s: &Slice, l: usize) -> (&GpuBuffer, usize, usize) {
        if l == 0 {
            let d = self.mlp.num_inputs();
            (&self.chunks[s.chunk].0, s.local * d, d)
        } else {
            (&self.bufs.z, self.region(l - 1), self.layers[l].fan_in)
        }
    }

    /// Writes θ to the device; every operation that records a forward pass calls this
    /// (or reuses the passes of the same θ), so it also forgets the kept passes.
    fn upload_theta(&mut self, theta: &[f64]) {
        self.passes = None;
        let th: Vec<f32> = theta.iter().map(|&v| v as f32).collect();
        self.ctx.write(&self.bufs.theta, 0, &th);
    }

    /// Whether a product at this θ, over these rows, of this kind can reuse the forward
    /// and backward buffers; uploads θ (forgetting them) when it cannot.
    fn prepare_products(&mut self, theta: &[f64], rows: &Range<usize>, kind: Kind) -> bool {
        if PassesKey::matches(&self.passes, theta, rows, kind) {
            return true;
        }
        self.upload_theta(theta);
        false
    }

    /// After a product's submit: its passes are kept when it ran over one slice.
    fn keep_passes(&mut self, theta: &[f64], rows: &Range<usize>, kind: Kind) {
        if self.slices(rows, self.chunk_rows).len() == 1 {
            PassesKey::record(&mut self.passes, theta, rows, kind);
        }
    }

    /// Records C (m, n) = β·C + A (m, kk)·B (kk, n), `batch` times (split-K when the
    /// product has few output tiles and a long K: `kernels::split_k`).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        op: &mut Op,
        dims: (usize, usize, usize, usize),
        a: (&GpuBuffer, Strided),
        b: (&GpuBuffer, Strided),
        c: (&GpuBuffer, Strided),
        beta: f32,
    ) {
        let scratch = &self.bufs.split_scratch;
        let splits = k::split_k(self.matmul, dims, scratch.len());
        k::record_matmul(op, self.matmul, dims, a, b, c, (1.0, beta), splits, scratch);
    }

    /// Records column sums dst[b][c] (+)= Σ_r src[b][r][c] of (batch, rows, cols) blocks.
    #[allow(clippy::too_many_arguments)]
    fn colsum(
        &self,
        op: &mut Op,
        (rows, cols, batch): (usize, usize, usize),
        src: (&GpuBuffer, usize, usize, usize),
        dst: (&GpuBuffer, usize, usize),
        accumulate: bool,
    ) {
        op.dispatch(
            Kernel::Colsum,
            &[src.0, dst.0],
            ReduceParams {
                rows: u(rows),
                cols: u(cols),
                src_off: u(src.1),
                src_rs: u(src.2),
                src_bs: u(src.3),
                dst_off: u(dst.1),
                dst_bs: u(dst.2),
                accumulate: flag(accumulate),
                scale: 1.0,
                ..ReduceParams::default()
            },
            [cols as u32, batch as u32, 1],
        );
    }

    /// Records an `update.wgsl` kernel on θ-shaped rows (`w` is always W here) over
    /// `params.count` entries.
    fn update(&self, op: &mut Op, kernel: Kernel, buffers: &[&GpuBuffer], params: UpdateParams) {
        let params = UpdateParams {
            w: u(self.num_params),
            ..params
        };
        op.dispatch(
            kernel,
            buffers,
            params,
            elementwise_groups(params.count as usize),
        );
    }

    /// Records a `rop.wgsl` kernel over `params.count` = batch·n·w entries of a layer of
    /// width w.
    fn rop(&self, op: &mut Op, kernel: Kernel, buffers: &[&GpuBuffer], params: RopParams) {
        op.dispatch(
            kernel,
            buffers,
            params,
            elementwise_groups(params.count as usize),
        );
    }

    /// Records a `loss.wgsl` kernel on the output layer of slice `s`.
    #[allow(clippy::too_many_arguments)]
    fn loss_kernel(
        &self,
        op: &mut Op,
        kernel: Kernel,
        buffers: &[&GpuBuffer],
        s: &Slice,
        (r_off, rl_off, d_off, y_off): (usize, usize, usize, usize),
        (batch, k0, hessian): (usize, usize, OutputHessian),
        scale: f32,
        threads: usize,
    ) {
        let kk = self.mlp.num_outputs();
        op.dispatch(
            kernel,
            buffers,
            LossParams {
                n: u(s.n),
                k: u(kk),
                loss: self.mlp.loss().code(),
                act: self.mlp.output_activation().code(),
                a_off: u(self.region(self.last())),
                t_off: u(s.local * kk),
                r_off: u(r_off),
                rl_off: u(rl_off),
                d_off: u(d_off),
                y_off: u(y_off),
                batch: u(batch),
                k0: u(k0),
                gn: hessian as u32,
                scale,
                ..LossParams::default()
            },
            elementwise_groups(threads),
        );
    }
}

/// Writes rows of a standard-layout array to the start of `buffer`.
fn write_rows(ctx: &GpuContext, buffer: &GpuBuffer, rows: ArrayView2<f32>) {
    match rows.as_slice() {
        Some(data) => ctx.write(buffer, 0, data),
        None => ctx.write(buffer, 0, &rows.to_owned().into_raw_vec_and_offset().0),
    }
}

mod diagonals;
mod kfac;
mod ops;
mod passes;
mod training;
