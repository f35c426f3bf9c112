//! `GpuEngine`: the curvature operations of one model on one data set, in f32 on a
//! wgpu device. Layers are 0-based: layer l maps z_l (n, in_l) to a_l = z_l·W_lᵀ + b_l
//! (n, out_l) and z_{l+1} = h_l(a_l); z_0 = X; the output is a_{L−1}.
//!
//! Every operation is one [`Op`] (one encoder, one submit; the full H, G and the exact
//! diagonal: one per block of columns) that walks the requested rows in slices: a
//! slice lies inside one data chunk (the data are uploaded once, in chunks sized from
//! the adapter's binding limits) and holds at most `chunk_rows` rows. Results
//! accumulate over the slices on the device; only the result is read back.
//!
//! The derivative outputs of the loss kernels carry the 1/N of the mean (1/√N for the
//! Gauss-Newton factor), and every backward recursion is linear in them, so no pass
//! rescales afterwards.

use super::context::{GpuBuffer, GpuContext, Op, Runner};
use super::error::GpuError;
use super::kernels::{self as k, elementwise_groups, f, matmul_params, Kernel, Strided};
use crate::curvature::{check_args, Curvature};
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::ops::Range;
use std::sync::Arc;

/// Vectors R-propagated together in one pass (rows of V in one batched product);
/// larger blocks are processed in groups of this many inside the same submit.
pub const VECTOR_GROUP: usize = 16;
/// Columns of H or G computed per submit by `hessian`, `ggn` and `diag_hessian`.
pub const HESSIAN_BLOCK_COLUMNS: usize = 32;
/// Device memory the per-chunk activation buffers may take together; with the binding
/// limit it sizes `chunk_rows`.
pub const ACTIVATION_BUDGET_BYTES: u64 = 1 << 30;

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
    mask: GpuBuffer,
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
    vecs: Option<GpuBuffer>,
    hv: Option<GpuBuffer>,
    outputs: Option<GpuBuffer>,
    /// Outer product: (G rows, W) factor rows and the (W, W) result.
    outer: Option<(GpuBuffer, GpuBuffer)>,
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
    /// (X_c (rows_c, D), T_c (rows_c, K)) per chunk of `chunk_rows` rows.
    chunks: Vec<(GpuBuffer, GpuBuffer)>,
    host_x: Array2<f32>,
    host_t: Array2<f32>,
    bufs: Buffers,
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

fn shape_err(msg: String) -> Error {
    Error::Shape(msg)
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
        let (n, d) = x.dim();
        if d != mlp.num_inputs() || t.dim() != (n, mlp.num_outputs()) || n == 0 {
            return Err(shape_err(format!(
                "data X {:?}, T {:?} do not fit the {} network (need N ≥ 1 rows, {} inputs, {} outputs)",
                x.dim(),
                t.dim(),
                mlp.describe(),
                mlp.num_inputs(),
                mlp.num_outputs()
            )));
        }
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
            chunks,
            host_x,
            host_t,
            bufs,
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
            chunks,
            bufs,
            ..self
        })
    }

    /// The same engine running its products with another matmul variant
    /// (`Kernel::MatmulTiled` or `Kernel::MatmulReg`); every variant must pass the same tests.
    pub fn with_matmul_kernel(mut self, kernel: Kernel) -> Self {
        self.matmul = kernel;
        self
    }

    /// Rows per data chunk and slice.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
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
        let mut chunks = Vec::new();
        for start in (0..n).step_by(rows) {
            let end = (start + rows).min(n);
            let xb = ctx.buffer("X chunk", (end - start) * d)?;
            let tb = ctx.buffer("T chunk", (end - start) * kk)?;
            let xs = x.slice(ndarray::s![start..end, ..]);
            let ts = t.slice(ndarray::s![start..end, ..]);
            ctx.write(
                &xb,
                0,
                xs.as_slice()
                    .unwrap_or(&xs.to_owned().into_raw_vec_and_offset().0),
            );
            ctx.write(
                &tb,
                0,
                ts.as_slice()
                    .unwrap_or(&ts.to_owned().into_raw_vec_and_offset().0),
            );
            chunks.push((xb, tb));
        }
        let w = mlp.num_params();
        let sum_out: usize = sizes[1..].iter().sum();
        let max_width = sizes.iter().copied().max().unwrap_or(1);
        let g = VECTOR_GROUP;
        let mask = ctx.buffer("weight mask", w)?;
        let mask_host: Vec<f32> = mlp.weight_mask().iter().map(|&m| m as f32).collect();
        ctx.write(&mask, 0, &mask_host);
        let bufs = Buffers {
            theta: ctx.buffer("θ", w)?,
            mask,
            theta_sq: ctx.buffer("θ²", w)?,
            grad: ctx.buffer("gradient and loss sums", w + n)?,
            diag: ctx.buffer("diagonal", w)?,
            pre: ctx.buffer("pre-activations a", rows * sum_out)?,
            z: ctx.buffer("activations z", rows * sum_out)?,
            d1: ctx.buffer("h′(a)", rows * sum_out)?,
            d2: ctx.buffer("h″(a)", rows * sum_out)?,
            delta: ctx.buffer("δ", rows * sum_out)?,
            ew: ctx.buffer("δ·W", rows * sum_out)?,
            row_loss: ctx.buffer("E_n", rows)?,
            ra: ctx.buffer("R{a}", g * rows * sum_out)?,
            rz: ctx.buffer("R{z}", g * rows * sum_out)?,
            rd: ctx.buffer("R{δ}", g * rows * sum_out)?,
            prod: ctx.buffer("backward products", g * rows * max_width)?,
            sq: ctx.buffer("squares", rows * max_width)?,
            vecs: None,
            hv: None,
            outputs: None,
            outer: None,
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

    fn upload_theta(&self, theta: &[f64]) {
        let th: Vec<f32> = theta.iter().map(|&v| v as f32).collect();
        self.ctx.write(&self.bufs.theta, 0, &th);
    }

    /// Records C (m, n) = β·C + α·A (m, kk)·B (kk, n), `batch` times.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        op: &mut Op,
        (m, n, kk, batch): (usize, usize, usize, usize),
        a: (&GpuBuffer, Strided),
        b: (&GpuBuffer, Strided),
        c: (&GpuBuffer, Strided),
        beta: f32,
    ) {
        op.dispatch(
            self.matmul,
            &[a.0, b.0, c.0],
            matmul_params(m, n, kk, batch, a.1, b.1, c.1, 1.0, beta),
            k::matmul_groups(self.matmul, m, n, batch),
        );
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
        let u = |x: usize| x as u32;
        op.dispatch(
            Kernel::Colsum,
            &[src.0, dst.0],
            vec![
                u(rows),
                u(cols),
                u(src.1),
                u(src.2),
                u(src.3),
                u(dst.1),
                u(dst.2),
                u(accumulate as usize),
                f(1.0),
            ],
            [cols as u32, batch as u32, 1],
        );
    }

    /// Records an `update.wgsl` kernel.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        op: &mut Op,
        kernel: Kernel,
        buffers: &[&GpuBuffer],
        count: usize,
        d_off: usize,
        s_off: usize,
        s_bs: usize,
        col0: usize,
        alpha: f32,
    ) {
        let u = |x: usize| x as u32;
        op.dispatch(
            kernel,
            buffers,
            vec![
                u(count),
                u(self.num_params),
                u(d_off),
                u(s_off),
                u(s_bs),
                u(col0),
                f(alpha),
            ],
            elementwise_groups(count),
        );
    }

    /// Records a `rop.wgsl` kernel over `count` = batch·n·w entries of a layer of width w.
    #[allow(clippy::too_many_arguments)]
    fn rop(
        &self,
        op: &mut Op,
        kernel: Kernel,
        buffers: &[&GpuBuffer],
        (count, nw, w): (usize, usize, usize),
        store: bool,
        offs: [usize; 8],
    ) {
        let u = |x: usize| x as u32;
        let mut p = vec![u(count), u(nw), u(w), u(store as usize)];
        p.extend(offs.iter().map(|&o| u(o)));
        op.dispatch(kernel, buffers, p, elementwise_groups(count));
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
        (batch, k0, gn): (usize, usize, bool),
        scale: f32,
        threads: usize,
    ) {
        let u = |x: usize| x as u32;
        let kk = self.mlp.num_outputs();
        op.dispatch(
            kernel,
            buffers,
            vec![
                u(s.n),
                u(kk),
                self.mlp.loss().code(),
                self.mlp.output_activation().code(),
                u(self.region(self.last())),
                u(s.local * kk),
                u(r_off),
                u(rl_off),
                u(d_off),
                u(y_off),
                u(batch),
                u(k0),
                u(gn as usize),
                f(scale),
            ],
            elementwise_groups(threads),
        );
    }

    /// Forward pass of slice `s`, then the loss kernel: E_n, δ_out·scale, and y
    /// (into `y` at `y_off`, or the output layer's z region).
    fn record_forward(&self, op: &mut Op, s: &Slice, scale: f32, y: Option<(&GpuBuffer, usize)>) {
        let n = s.n;
        for (l, g) in self.layers.iter().enumerate() {
            let (inb, in_off, in_rs) = self.input(s, l);
            let region = self.region(l);
            self.matmul(
                op,
                (n, g.fan_out, g.fan_in, 1),
                (
                    inb,
                    Strided {
                        off: in_off,
                        rs: in_rs,
                        cs: 1,
                        bs: 0,
                    },
                ),
                (&self.bufs.theta, Strided::transposed(g.w_off, g.fan_in)),
                (&self.bufs.pre, Strided::rows(region, g.fan_out)),
                0.0,
            );
            let u = |x: usize| x as u32;
            let count = n * g.fan_out;
            op.dispatch(
                Kernel::BiasAct,
                &[
                    &self.bufs.theta,
                    &self.bufs.pre,
                    &self.bufs.z,
                    &self.bufs.d1,
                    &self.bufs.d2,
                ],
                vec![
                    u(count),
                    u(g.fan_out),
                    g.act,
                    u((l < self.last()) as usize),
                    u(g.b_off),
                    u(region),
                    u(region),
                    u(region),
                ],
                elementwise_groups(count),
            );
        }
        let region = self.region(self.last());
        let (ybuf, y_off) = y.unwrap_or((&self.bufs.z, region));
        self.loss_kernel(
            op,
            Kernel::LossDelta,
            &[
                &self.bufs.pre,
                &self.chunks[s.chunk].1,
                &self.bufs.row_loss,
                &self.bufs.delta,
                ybuf,
            ],
            s,
            (0, 0, region, y_off),
            (1, 0, false),
            scale,
            s.n,
        );
    }

    /// Backpropagation of δ through slice `s` (after `record_forward`): δ_l and δ_l·W_l
    /// for every layer, and, with `grad`, ∇E += (δ_lᵀ z_l, colsum δ_l) per layer.
    fn record_backward(&self, op: &mut Op, s: &Slice, grad: Option<&GpuBuffer>) {
        let n = s.n;
        for l in (0..self.layers.len()).rev() {
            let g = &self.layers[l];
            let region = self.region(l);
            if let Some(grad) = grad {
                let (inb, in_off, in_rs) = self.input(s, l);
                self.matmul(
                    op,
                    (g.fan_out, g.fan_in, n, 1),
                    (&self.bufs.delta, Strided::transposed(region, g.fan_out)),
                    (
                        inb,
                        Strided {
                            off: in_off,
                            rs: in_rs,
                            cs: 1,
                            bs: 0,
                        },
                    ),
                    (grad, Strided::rows(g.w_off, g.fan_in)),
                    1.0,
                );
                self.colsum(
                    op,
                    (n, g.fan_out, 1),
                    (&self.bufs.delta, region, g.fan_out, 0),
                    (grad, g.b_off, 0),
                    true,
                );
            }
            if l > 0 {
                let below = self.region(l - 1);
                self.matmul(
                    op,
                    (n, g.fan_in, g.fan_out, 1),
                    (&self.bufs.delta, Strided::rows(region, g.fan_out)),
                    (&self.bufs.theta, Strided::rows(g.w_off, g.fan_in)),
                    (&self.bufs.ew, Strided::rows(below, g.fan_in)),
                    0.0,
                );
                let count = n * g.fan_in;
                self.rop(
                    op,
                    Kernel::MulDeriv,
                    &[&self.bufs.d1, &self.bufs.ew, &self.bufs.delta],
                    (count, count, g.fan_in),
                    false,
                    [below, 0, below, 0, 0, below, 0, 0],
                );
            }
        }
    }

    /// R-forward of `batch` vectors (rows v0.. of `vecs`) through slice `s`: R{a_l}, R{z_l}.
    fn record_r_forward(&self, op: &mut Op, s: &Slice, vecs: &GpuBuffer, v0: usize, batch: usize) {
        let (n, w) = (s.n, self.num_params);
        for (l, g) in self.layers.iter().enumerate() {
            let ra = Strided::rows(self.batched_region(l), g.fan_out).batch(n * g.fan_out);
            if l > 0 {
                let rz = Strided::rows(self.batched_region(l - 1), g.fan_in).batch(n * g.fan_in);
                self.matmul(
                    op,
                    (n, g.fan_out, g.fan_in, batch),
                    (&self.bufs.rz, rz),
                    (&self.bufs.theta, Strided::transposed(g.w_off, g.fan_in)),
                    (&self.bufs.ra, ra),
                    0.0,
                );
            }
            let (inb, in_off, in_rs) = self.input(s, l);
            self.matmul(
                op,
                (n, g.fan_out, g.fan_in, batch),
                (
                    inb,
                    Strided {
                        off: in_off,
                        rs: in_rs,
                        cs: 1,
                        bs: 0,
                    },
                ),
                (
                    vecs,
                    Strided::transposed(v0 * w + g.w_off, g.fan_in).batch(w),
                ),
                (&self.bufs.ra, ra),
                if l > 0 { 1.0 } else { 0.0 },
            );
            let nw = n * g.fan_out;
            self.rop(
                op,
                Kernel::RopForward,
                &[vecs, &self.bufs.d1, &self.bufs.ra, &self.bufs.rz],
                (batch * nw, nw, g.fan_out),
                l < self.last(),
                [
                    self.region(l),
                    0,
                    0,
                    self.batched_region(l),
                    self.batched_region(l),
                    0,
                    v0 * w + g.b_off,
                    w,
                ],
            );
        }
    }

    /// H·v (exact) or G·v (Gauss-Newton) for rows v0..v0+batch of `vecs`, accumulated into
    /// the same rows of `out`, over slice `s` (after `record_forward`, and for the exact
    /// product `record_backward`).
    #[allow(clippy::too_many_arguments)]
    fn record_r_backward(
        &self,
        op: &mut Op,
        s: &Slice,
        vecs: &GpuBuffer,
        out: &GpuBuffer,
        v0: usize,
        batch: usize,
        exact: bool,
        scale: f32,
    ) {
        let (n, w) = (s.n, self.num_params);
        let last = self.last();
        self.loss_kernel(
            op,
            Kernel::LossHess,
            &[
                &self.bufs.pre,
                &self.chunks[s.chunk].1,
                &self.bufs.ra,
                &self.bufs.rd,
            ],
            s,
            (self.batched_region(last), 0, self.batched_region(last), 0),
            (batch, 0, !exact),
            scale,
            batch * n,
        );
        for l in (0..self.layers.len()).rev() {
            let g = &self.layers[l];
            let rd = Strided::rows(self.batched_region(l), g.fan_out).batch(n * g.fan_out);
            let (inb, in_off, in_rs) = self.input(s, l);
            let out_w = Strided::rows(v0 * w + g.w_off, g.fan_in).batch(w);
            // R{∇W_l} = R{δ_l}ᵀ z_l + δ_lᵀ R{z_l}
            self.matmul(
                op,
                (g.fan_out, g.fan_in, n, batch),
                (
                    &self.bufs.rd,
                    Strided::transposed(self.batched_region(l), g.fan_out).batch(n * g.fan_out),
                ),
                (
                    inb,
                    Strided {
                        off: in_off,
                        rs: in_rs,
                        cs: 1,
                        bs: 0,
                    },
                ),
                (out, out_w),
                1.0,
            );
            if exact && l > 0 {
                self.matmul(
                    op,
                    (g.fan_out, g.fan_in, n, batch),
                    (
                        &self.bufs.delta,
                        Strided::transposed(self.region(l), g.fan_out),
                    ),
                    (
                        &self.bufs.rz,
                        Strided::rows(self.batched_region(l - 1), g.fan_in).batch(n * g.fan_in),
                    ),
                    (out, out_w),
                    1.0,
                );
            }
            self.colsum(
                op,
                (n, g.fan_out, batch),
                (
                    &self.bufs.rd,
                    self.batched_region(l),
                    g.fan_out,
                    n * g.fan_out,
                ),
                (out, v0 * w + g.b_off, w),
                true,
            );
            if l == 0 {
                continue;
            }
            let prod = Strided::rows(0, g.fan_in).batch(n * g.fan_in);
            self.matmul(
                op,
                (n, g.fan_in, g.fan_out, batch),
                (&self.bufs.rd, rd),
                (&self.bufs.theta, Strided::rows(g.w_off, g.fan_in)),
                (&self.bufs.prod, prod),
                0.0,
            );
            let nw = n * g.fan_in;
            let below = self.region(l - 1);
            let below_b = self.batched_region(l - 1);
            if exact {
                // + δ_l·V_l
                self.matmul(
                    op,
                    (n, g.fan_in, g.fan_out, batch),
                    (&self.bufs.delta, Strided::rows(self.region(l), g.fan_out)),
                    (vecs, Strided::rows(v0 * w + g.w_off, g.fan_in).batch(w)),
                    (&self.bufs.prod, prod),
                    1.0,
                );
                self.rop(
                    op,
                    Kernel::RopBackward,
                    &[
                        &self.bufs.d1,
                        &self.bufs.d2,
                        &self.bufs.ew,
                        &self.bufs.prod,
                        &self.bufs.ra,
                        &self.bufs.rd,
                    ],
                    (batch * nw, nw, g.fan_in),
                    false,
                    [below, below, 0, below_b, 0, below_b, 0, 0],
                );
            } else {
                self.rop(
                    op,
                    Kernel::MulDeriv,
                    &[&self.bufs.d1, &self.bufs.prod, &self.bufs.rd],
                    (batch * nw, nw, g.fan_in),
                    false,
                    [below, 0, 0, 0, 0, below_b, 0, 0],
                );
            }
        }
    }

    /// Records H·V or G·V for the `count` rows of `vecs` (already on the device) into `out`
    /// (cleared first), + λ·I_w·V.
    fn record_products(
        &self,
        op: &mut Op,
        rows: &Range<usize>,
        vecs: &GpuBuffer,
        out: &GpuBuffer,
        count: usize,
        exact: bool,
    ) {
        let scale = 1.0 / rows.len() as f32;
        op.clear(out);
        for s in self.slices(rows, self.chunk_rows) {
            self.record_forward(op, &s, scale, None);
            if exact {
                self.record_backward(op, &s, None);
            }
            for v0 in (0..count).step_by(VECTOR_GROUP) {
                let batch = VECTOR_GROUP.min(count - v0);
                self.record_r_forward(op, &s, vecs, v0, batch);
                self.record_r_backward(op, &s, vecs, out, v0, batch, exact, scale);
            }
        }
        self.update(
            op,
            Kernel::AxpyMask,
            &[vecs, &self.bufs.mask, out],
            count * self.num_params,
            0,
            0,
            self.num_params,
            0,
            self.mlp.l2() as f32,
        );
    }

    /// The (vecs, out) buffers with room for `count` vectors.
    fn vector_buffers(&mut self, count: usize) -> Result<(GpuBuffer, GpuBuffer), GpuError> {
        let need = count * self.num_params;
        if self.bufs.vecs.as_ref().is_none_or(|b| b.len() < need) {
            self.bufs.vecs = Some(self.ctx.buffer("vectors V", need)?);
            self.bufs.hv = Some(self.ctx.buffer("products H·V", need)?);
        }
        match (&self.bufs.vecs, &self.bufs.hv) {
            (Some(v), Some(h)) => Ok((v.clone(), h.clone())),
            _ => Err(GpuError::Allocation {
                what: "vectors".into(),
                bytes: need as u64 * 4,
                limit: "not allocated".into(),
            }),
        }
    }

    fn products(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
        exact: bool,
    ) -> Result<Array2<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, Some(v.ncols()))?;
        let count = v.nrows();
        let w = self.num_params;
        if count == 0 {
            return Ok(Array2::zeros((0, w)));
        }
        let (vecs, out) = self.vector_buffers(count)?;
        self.upload_theta(theta);
        let vh: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        self.ctx.write(&vecs, 0, &vh);
        let mut op = Op::new(if exact { "Hv block" } else { "Gv block" });
        self.record_products(&mut op, &rows, &vecs, &out, count, exact);
        let r = self.runner.run(op, Some((&out, 0, count * w)))?;
        to_array(r, count, w)
    }

    /// The full H or G (W, W), HESSIAN_BLOCK_COLUMNS columns per submit.
    fn full_matrix(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        exact: bool,
    ) -> Result<Array2<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        let w = self.num_params;
        let block = HESSIAN_BLOCK_COLUMNS.min(w);
        let (vecs, out) = self.vector_buffers(block)?;
        self.upload_theta(theta);
        let mut h = Array2::zeros((w, w));
        for j0 in (0..w).step_by(block) {
            let bs = block.min(w - j0);
            let mut op = Op::new(if exact {
                "Hessian block"
            } else {
                "Gauss-Newton block"
            });
            self.update(
                &mut op,
                Kernel::FillIdentity,
                &[&vecs],
                bs * w,
                0,
                0,
                0,
                j0,
                0.0,
            );
            self.record_products(&mut op, &rows, &vecs, &out, bs, exact);
            let r = self.runner.run(op, Some((&out, 0, bs * w)))?;
            for b in 0..bs {
                for i in 0..w {
                    h[[j0 + b, i]] = r[b * w + i] as f64;
                }
            }
        }
        Ok(h)
    }

    /// Forward over all slices with E_n summed per slice into grad[W + slice]; returns the
    /// number of slices.
    fn record_loss_sums(&self, op: &mut Op, rows: &Range<usize>, with_grad: bool) -> usize {
        let scale = 1.0 / rows.len() as f32;
        let slices = self.slices(rows, self.chunk_rows);
        for (i, s) in slices.iter().enumerate() {
            self.record_forward(op, s, scale, None);
            self.colsum(
                op,
                (s.n, 1, 1),
                (&self.bufs.row_loss, 0, 1, 0),
                (&self.bufs.grad, self.num_params + i, 0),
                false,
            );
            if with_grad {
                self.record_backward(op, s, Some(&self.bufs.grad));
            }
        }
        slices.len()
    }

    fn finish_diag(&mut self, mut op: Op) -> Result<Vec<f64>> {
        // diag += λ·mask (the mask is its own square: 0/1).
        self.update(
            &mut op,
            Kernel::AxpyMask,
            &[&self.bufs.mask, &self.bufs.mask, &self.bufs.diag],
            self.num_params,
            0,
            0,
            0,
            0,
            self.mlp.l2() as f32,
        );
        let diag = self.bufs.diag.clone();
        let r = self.runner.run(op, Some((&diag, 0, self.num_params)))?;
        Ok(r.into_iter().map(f64::from).collect())
    }

    /// Squares z_l of slice `s` into `prod` (n, in_l) and records
    /// diag(W_l) += qᵀ·z², diag(b_l) += colsum q for q = (n, out_l) at `q_off` of `q`.
    fn record_diag_layer(&self, op: &mut Op, s: &Slice, l: usize, q: (&GpuBuffer, usize)) {
        let g = &self.layers[l];
        let n = s.n;
        let (inb, in_off, _) = self.input(s, l);
        self.update(
            op,
            Kernel::Square,
            &[inb, &self.bufs.prod],
            n * g.fan_in,
            0,
            in_off,
            0,
            0,
            0.0,
        );
        self.matmul(
            op,
            (g.fan_out, g.fan_in, n, 1),
            (q.0, Strided::transposed(q.1, g.fan_out)),
            (&self.bufs.prod, Strided::rows(0, g.fan_in)),
            (&self.bufs.diag, Strided::rows(g.w_off, g.fan_in)),
            1.0,
        );
        self.colsum(
            op,
            (n, g.fan_out, 1),
            (q.0, q.1, g.fan_out, 0),
            (&self.bufs.diag, g.b_off, 0),
            true,
        );
    }

    /// Backpropagates the factor columns S_l (batch, n, out_l) in `rd` from layer l to l−1.
    fn record_factor_down(&self, op: &mut Op, s: &Slice, l: usize, batch: usize) {
        let g = &self.layers[l];
        let n = s.n;
        self.matmul(
            op,
            (n, g.fan_in, g.fan_out, batch),
            (
                &self.bufs.rd,
                Strided::rows(self.batched_region(l), g.fan_out).batch(n * g.fan_out),
            ),
            (&self.bufs.theta, Strided::rows(g.w_off, g.fan_in)),
            (
                &self.bufs.prod,
                Strided::rows(0, g.fan_in).batch(n * g.fan_in),
            ),
            0.0,
        );
        let nw = n * g.fan_in;
        self.rop(
            op,
            Kernel::MulDeriv,
            &[&self.bufs.d1, &self.bufs.prod, &self.bufs.rd],
            (batch * nw, nw, g.fan_in),
            false,
            [
                self.region(l - 1),
                0,
                0,
                0,
                0,
                self.batched_region(l - 1),
                0,
                0,
            ],
        );
    }

    /// Records the Gauss-Newton factor columns k0..k0+batch of slice `s` into R{δ_out}.
    fn record_factor(&self, op: &mut Op, s: &Slice, k0: usize, batch: usize, scale: f32) {
        let last = self.last();
        self.loss_kernel(
            op,
            Kernel::LossFactor,
            &[&self.bufs.pre, &self.chunks[s.chunk].1, &self.bufs.rd],
            s,
            (0, 0, self.batched_region(last), 0),
            (batch, k0, true),
            scale,
            batch * s.n,
        );
    }

    /// (slice rows, factor rows buffer, W×W result) for the outer product.
    fn outer_buffers(&mut self) -> Result<(usize, GpuBuffer, GpuBuffer), GpuError> {
        let w = self.num_params;
        let max_f = (self.ctx.summary().max_binding_bytes() / 4) as usize;
        let rows = (max_f / (VECTOR_GROUP * w)).min(self.chunk_rows);
        if rows == 0 || w.checked_mul(w).is_none_or(|ww| ww > max_f) {
            return Err(GpuError::Allocation {
                what: format!("the {w}×{w} outer-product matrix"),
                bytes: (w as u64) * (w as u64) * 4,
                limit: format!("the adapter binds at most {} bytes", max_f * 4),
            });
        }
        if self.bufs.outer.is_none() {
            let b = self
                .ctx
                .buffer("outer-product rows B", VECTOR_GROUP * rows * w)?;
            let g = self.ctx.buffer("outer-product matrix", w * w)?;
            self.bufs.outer = Some((b, g));
        }
        match &self.bufs.outer {
            Some((b, g)) => Ok((rows, b.clone(), g.clone())),
            None => Err(GpuError::Readback("outer product".into())),
        }
    }
}

fn to_array(data: Vec<f32>, rows: usize, cols: usize) -> Result<Array2<f64>> {
    Array2::from_shape_vec((rows, cols), data.into_iter().map(f64::from).collect())
        .map_err(|e| Error::Shape(e.to_string()))
}

impl Curvature for GpuEngine {
    fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    fn num_rows(&self) -> usize {
        self.num_rows
    }

    fn loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        self.upload_theta(theta);
        let mut op = Op::new("loss");
        let count = self.record_loss_sums(&mut op, &rows, false);
        let grad = self.bufs.grad.clone();
        let sums = self.runner.run(op, Some((&grad, self.num_params, count)))?;
        let total: f64 = sums.iter().map(|&x| x as f64).sum();
        Ok(total / rows.len() as f64 + self.mlp.l2_penalty(theta))
    }

    fn loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        self.upload_theta(theta);
        let w = self.num_params;
        let mut op = Op::new("gradient");
        op.clear(&self.bufs.grad);
        let count = self.record_loss_sums(&mut op, &rows, true);
        self.update(
            &mut op,
            Kernel::AxpyMask,
            &[&self.bufs.theta, &self.bufs.mask, &self.bufs.grad],
            w,
            0,
            0,
            0,
            0,
            self.mlp.l2() as f32,
        );
        let grad = self.bufs.grad.clone();
        let r = self.runner.run(op, Some((&grad, 0, w + count)))?;
        let total: f64 = r[w..].iter().map(|&x| x as f64).sum();
        let loss = total / rows.len() as f64 + self.mlp.l2_penalty(theta);
        Ok((loss, r[..w].iter().map(|&x| x as f64).collect()))
    }

    fn outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        let kk = self.mlp.num_outputs();
        let need = rows.len() * kk;
        if self.bufs.outputs.as_ref().is_none_or(|b| b.len() < need) {
            self.bufs.outputs = Some(self.ctx.buffer("outputs y", need)?);
        }
        let Some(ybuf) = self.bufs.outputs.clone() else {
            return Err(GpuError::Readback("outputs".into()).into());
        };
        self.upload_theta(theta);
        let mut op = Op::new("outputs");
        for s in self.slices(&rows, self.chunk_rows) {
            self.record_forward(&mut op, &s, 1.0, Some((&ybuf, s.rel * kk)));
        }
        let r = self.runner.run(op, Some((&ybuf, 0, need)))?;
        to_array(r, rows.len(), kk)
    }

    fn hvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.products(theta, rows, v, true)
    }

    fn gvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.products(theta, rows, v, false)
    }

    fn hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.full_matrix(theta, rows, true)
    }

    fn ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.full_matrix(theta, rows, false)
    }

    /// The exact diagonal from blocks of Hessian columns (the cost of the full H, with only
    /// the diagonal kept on the device and read back).
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        let w = self.num_params;
        let block = HESSIAN_BLOCK_COLUMNS.min(w);
        let (vecs, out) = self.vector_buffers(block)?;
        self.upload_theta(theta);
        let diag = self.bufs.diag.clone();
        let mut result = Vec::new();
        for j0 in (0..w).step_by(block) {
            let bs = block.min(w - j0);
            let mut op = Op::new("Hessian diagonal block");
            self.update(
                &mut op,
                Kernel::FillIdentity,
                &[&vecs],
                bs * w,
                0,
                0,
                0,
                j0,
                0.0,
            );
            self.record_products(&mut op, &rows, &vecs, &out, bs, true);
            self.update(
                &mut op,
                Kernel::GatherDiag,
                &[&out, &diag],
                bs,
                0,
                0,
                0,
                j0,
                0.0,
            );
            let last = j0 + bs >= w;
            result = self
                .runner
                .run(op, if last { Some((&diag, 0, w)) } else { None })?;
        }
        Ok(result.into_iter().map(f64::from).collect())
    }

    /// diag(G) from the factored output Gauss-Newton Hessian: per unit, S_l = Σ_k (J-row
    /// factors)², diag(W_l) = S_lᵀ·(z_l ⊙ z_l), diag(b_l) = colsum S_l, + λ on weights.
    fn diag_ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        self.upload_theta(theta);
        let kk = self.mlp.num_outputs();
        let root_scale = (1.0 / rows.len() as f64).sqrt() as f32;
        let mut op = Op::new("Gauss-Newton diagonal");
        op.clear(&self.bufs.diag);
        for s in self.slices(&rows, self.chunk_rows) {
            self.record_forward(&mut op, &s, 1.0, None);
            for k0 in (0..kk).step_by(VECTOR_GROUP) {
                let batch = VECTOR_GROUP.min(kk - k0);
                self.record_factor(&mut op, &s, k0, batch, root_scale);
                for l in (0..self.layers.len()).rev() {
                    let count = s.n * self.layers[l].fan_out;
                    op.dispatch(
                        Kernel::SumSqBatch,
                        &[&self.bufs.rd, &self.bufs.sq],
                        vec![
                            count as u32,
                            batch as u32,
                            0,
                            0,
                            0,
                            self.batched_region(l) as u32,
                            0,
                        ],
                        elementwise_groups(count),
                    );
                    self.record_diag_layer(&mut op, &s, l, (&self.bufs.sq, 0));
                    if l > 0 {
                        self.record_factor_down(&mut op, &s, l, batch);
                    }
                }
            }
        }
        self.finish_diag(op)
    }

    /// Becker-LeCun (PRML 5.79–5.81): the diagonal backpropagated with off-diagonal terms dropped.
    fn diag_becker_lecun(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        self.upload_theta(theta);
        let scale = 1.0 / rows.len() as f32;
        let mut op = Op::new("Becker-LeCun diagonal");
        op.clear(&self.bufs.diag);
        self.update(
            &mut op,
            Kernel::Square,
            &[&self.bufs.theta, &self.bufs.theta_sq],
            self.num_params,
            0,
            0,
            0,
            0,
            0.0,
        );
        for s in self.slices(&rows, self.chunk_rows) {
            self.record_forward(&mut op, &s, scale, None);
            self.record_backward(&mut op, &s, None);
            let last = self.last();
            self.loss_kernel(
                &mut op,
                Kernel::LossDiag,
                &[&self.bufs.pre, &self.chunks[s.chunk].1, &self.bufs.rd],
                &s,
                (0, 0, self.batched_region(last), 0),
                (1, 0, false),
                scale,
                s.n,
            );
            for l in (0..self.layers.len()).rev() {
                let g = &self.layers[l];
                self.record_diag_layer(&mut op, &s, l, (&self.bufs.rd, self.batched_region(l)));
                if l == 0 {
                    continue;
                }
                let n = s.n;
                self.matmul(
                    &mut op,
                    (n, g.fan_in, g.fan_out, 1),
                    (
                        &self.bufs.rd,
                        Strided::rows(self.batched_region(l), g.fan_out),
                    ),
                    (&self.bufs.theta_sq, Strided::rows(g.w_off, g.fan_in)),
                    (&self.bufs.prod, Strided::rows(0, g.fan_in)),
                    0.0,
                );
                let count = n * g.fan_in;
                let below = self.region(l - 1);
                op.dispatch(
                    Kernel::BlBackward,
                    &[
                        &self.bufs.d1,
                        &self.bufs.d2,
                        &self.bufs.ew,
                        &self.bufs.prod,
                        &self.bufs.rd,
                    ],
                    vec![
                        count as u32,
                        1,
                        below as u32,
                        below as u32,
                        0,
                        0,
                        self.batched_region(l - 1) as u32,
                    ],
                    elementwise_groups(count),
                );
            }
        }
        self.finish_diag(op)
    }

    /// Σ_n J_nᵀ H_out,n J_n / N + λ I_w from factor rows B (J_nᵀ c_k / √N): G += Bᵀ·B.
    fn outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        let (slice_rows, bmat, gmat) = self.outer_buffers()?;
        self.upload_theta(theta);
        let w = self.num_params;
        let kk = self.mlp.num_outputs();
        let root_scale = (1.0 / rows.len() as f64).sqrt() as f32;
        let mut op = Op::new("outer product");
        op.clear(&gmat);
        for s in self.slices(&rows, slice_rows) {
            self.record_forward(&mut op, &s, 1.0, None);
            for k0 in (0..kk).step_by(VECTOR_GROUP) {
                let batch = VECTOR_GROUP.min(kk - k0);
                self.record_factor(&mut op, &s, k0, batch, root_scale);
                for l in (0..self.layers.len()).rev() {
                    let g = &self.layers[l];
                    let (inb, in_off, in_rs) = self.input(&s, l);
                    let count = batch * s.n * g.fan_out * (g.fan_in + 1);
                    let u = |x: usize| x as u32;
                    op.dispatch(
                        Kernel::OuterRows,
                        &[&self.bufs.rd, inb, &bmat],
                        vec![
                            u(count),
                            u(s.n),
                            u(g.fan_out),
                            u(g.fan_in),
                            u(self.batched_region(l)),
                            u(in_off),
                            u(in_rs),
                            u(w),
                            u(g.w_off),
                            u(g.b_off),
                        ],
                        elementwise_groups(count),
                    );
                    if l > 0 {
                        self.record_factor_down(&mut op, &s, l, batch);
                    }
                }
                let rows_b = batch * s.n;
                self.matmul(
                    &mut op,
                    (w, w, rows_b, 1),
                    (&bmat, Strided::transposed(0, w)),
                    (&bmat, Strided::rows(0, w)),
                    (&gmat, Strided::rows(0, w)),
                    1.0,
                );
            }
        }
        self.update(
            &mut op,
            Kernel::AddDiag,
            &[&self.bufs.mask, &gmat],
            w,
            0,
            0,
            0,
            0,
            self.mlp.l2() as f32,
        );
        let r = self.runner.run(op, Some((&gmat, 0, w * w)))?;
        to_array(r, w, w)
    }
}
