//! The passes every operation is built from, recorded into an [`Op`] for one slice of
//! rows: forward (with the loss kernel), backpropagation of δ, R-forward and R-backward
//! (Pearlmutter, PRML 5.96–5.111), and their loops over slices and groups of vectors.

use super::{GpuEngine, OutputHessian, Slice, VECTOR_GROUP};
use crate::engine::Kind;
use crate::gpu::context::{GpuBuffer, Op};
use crate::gpu::kernels::{elementwise_groups, Kernel, Strided};
use crate::gpu::params::{flag, u, ActParams, RopParams, UpdateParams};
use std::ops::Range;

/// A layer's product with the unit vectors e_{col0 + b}, b < batch: z_l·V_lᵀ into R{a_l}
/// (forward) or δ_l·V_l into the backward products (backward), written or added.
#[derive(Clone, Copy, Debug)]
struct UnitProduct {
    l: usize,
    col0: usize,
    batch: usize,
    backward: bool,
    add: bool,
}

impl GpuEngine {
    /// Forward pass of slice `s` (PRML 5.48–5.49: a_l = z_l·W_lᵀ + b_l (n, out_l),
    /// z_{l+1} = h(a_l), keeping h′(a_l), h″(a_l)), then the loss kernel: E_n (n),
    /// δ_out·scale (n, K), and y (n, K) into `y` at `y_off` (else the output layer's z region).
    pub(super) fn record_forward(
        &self,
        op: &mut Op,
        s: &Slice,
        scale: f32,
        y: Option<(&GpuBuffer, usize)>,
    ) {
        let n = s.n;
        for (l, g) in self.layers.iter().enumerate() {
            let (inb, in_off, in_rs) = self.input(s, l);
            let region = self.region(l);
            self.matmul(
                op,
                (n, g.fan_out, g.fan_in, 1),
                (inb, Strided::rows(in_off, in_rs)),
                (&self.bufs.theta, Strided::transposed(g.w_off, g.fan_in)),
                (&self.bufs.pre, Strided::rows(region, g.fan_out)),
                0.0,
            );
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
                ActParams {
                    count: u(count),
                    out: u(g.fan_out),
                    code: g.act,
                    store: flag(l < self.last()),
                    bias_off: u(g.b_off),
                    a_off: u(region),
                    z_off: u(region),
                    d_off: u(region),
                    ..ActParams::default()
                },
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
            (1, 0, OutputHessian::Exact),
            scale,
            s.n,
        );
    }

    /// Backpropagation of δ through slice `s` (after `record_forward`; PRML 5.56:
    /// δ_{l−1} = h′(a_{l−1}) ⊙ (δ_l·W_l), (n, in_l)): δ_l and δ_l·W_l for every layer, and,
    /// with `grad`, ∇E += (δ_lᵀ z_l (out_l, in_l), colsum δ_l (out_l)) per layer (PRML 5.53).
    pub(super) fn record_backward(&self, op: &mut Op, s: &Slice, grad: Option<&GpuBuffer>) {
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
                    (inb, Strided::rows(in_off, in_rs)),
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
                    RopParams {
                        count: u(count),
                        nw: u(count),
                        w: u(g.fan_in),
                        d_off: u(below),
                        prod_off: u(below),
                        rd_off: u(below),
                        ..RopParams::default()
                    },
                );
            }
        }
    }

    /// R-forward of `batch` vectors (rows v0.. of `vecs`, (batch, W)) through slice `s`
    /// (PRML 5.101–5.102): R{a_l} = R{z_l}·W_lᵀ + z_l·V_lᵀ + v_b,l and R{z_{l+1}} = h′ ⊙ R{a_l},
    /// each (batch, n, out_l).
    pub(super) fn record_r_forward(
        &self,
        op: &mut Op,
        s: &Slice,
        vecs: &GpuBuffer,
        v0: usize,
        batch: usize,
        units: Option<usize>,
    ) {
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
            if let Some(col0) = units {
                let product = UnitProduct {
                    l,
                    col0: col0 + v0,
                    batch,
                    backward: false,
                    add: l > 0,
                };
                let ra = (&self.bufs.ra, self.batched_region(l));
                self.record_unit_product(op, s, product, (inb, in_off, in_rs), ra);
            } else {
                self.matmul(
                    op,
                    (n, g.fan_out, g.fan_in, batch),
                    (inb, Strided::rows(in_off, in_rs)),
                    (
                        vecs,
                        Strided::transposed(v0 * w + g.w_off, g.fan_in).batch(w),
                    ),
                    (&self.bufs.ra, ra),
                    if l > 0 { 1.0 } else { 0.0 },
                );
            }
            let nw = n * g.fan_out;
            self.rop(
                op,
                Kernel::RopForward,
                &[vecs, &self.bufs.d1, &self.bufs.ra, &self.bufs.rz],
                RopParams {
                    count: u(batch * nw),
                    nw: u(nw),
                    w: u(g.fan_out),
                    store: flag(l < self.last()),
                    d_off: u(self.region(l)),
                    ra_off: u(self.batched_region(l)),
                    rz_off: u(self.batched_region(l)),
                    v_off: u(v0 * w + g.b_off),
                    v_bs: u(w),
                    ..RopParams::default()
                },
            );
        }
    }

    /// H·v (exact) or G·v (Gauss-Newton) for rows v0..v0+batch of `vecs`, accumulated into
    /// the same rows of `out` (batch, W), over slice `s` (after `record_forward`, and for the
    /// exact product `record_backward`). R-backward, PRML 5.106–5.111: R{δ_out} = H_out·R{a_out};
    /// R{δ_{l−1}} = h″ ⊙ R{a_{l−1}} ⊙ (δ_l W_l) + h′ ⊙ (R{δ_l} W_l + δ_l V_l);
    /// R{∇W_l} = R{δ_l}ᵀ z_l + δ_lᵀ R{z_l}, R{∇b_l} = colsum R{δ_l}. Gauss-Newton: H_out
    /// replaced by its Gauss-Newton part and the second-order terms (h″, δ·V, δᵀR{z}) dropped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_r_backward(
        &self,
        op: &mut Op,
        s: &Slice,
        vecs: &GpuBuffer,
        out: &GpuBuffer,
        v0: usize,
        batch: usize,
        kind: Kind,
        scale: f32,
        units: Option<usize>,
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
            (batch, 0, OutputHessian::of_product(kind)),
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
                (inb, Strided::rows(in_off, in_rs)),
                (out, out_w),
                1.0,
            );
            if kind == Kind::Hessian && l > 0 {
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
            if kind == Kind::Hessian {
                // + δ_l·V_l
                if let Some(col0) = units {
                    let product = UnitProduct {
                        l,
                        col0: col0 + v0,
                        batch,
                        backward: true,
                        add: true,
                    };
                    let delta = (&self.bufs.delta, self.region(l), g.fan_out);
                    self.record_unit_product(op, s, product, delta, (&self.bufs.prod, 0));
                } else {
                    self.matmul(
                        op,
                        (n, g.fan_in, g.fan_out, batch),
                        (&self.bufs.delta, Strided::rows(self.region(l), g.fan_out)),
                        (vecs, Strided::rows(v0 * w + g.w_off, g.fan_in).batch(w)),
                        (&self.bufs.prod, prod),
                        1.0,
                    );
                }
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
                    RopParams {
                        count: u(batch * nw),
                        nw: u(nw),
                        w: u(g.fan_in),
                        d_off: u(below),
                        ew_off: u(below),
                        ra_off: u(below_b),
                        rd_off: u(below_b),
                        ..RopParams::default()
                    },
                );
            } else {
                self.rop(
                    op,
                    Kernel::MulDeriv,
                    &[&self.bufs.d1, &self.bufs.prod, &self.bufs.rd],
                    RopParams {
                        count: u(batch * nw),
                        nw: u(nw),
                        w: u(g.fan_in),
                        d_off: u(below),
                        rd_off: u(below_b),
                        ..RopParams::default()
                    },
                );
            }
        }
    }

    /// Records H·V or G·V for the `count` rows of `vecs` (already on the device) into `out`
    /// (cleared first), + λ·I_w·V. `units`: the rows are the unit vectors e_{col0 + b}
    /// (columns of H or G), whose products with z_l and δ_l are gathers. `reuse`: the
    /// forward (and backward) buffers already hold this θ's passes over `rows` (one slice).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_products(
        &self,
        op: &mut Op,
        rows: &Range<usize>,
        vecs: &GpuBuffer,
        out: &GpuBuffer,
        count: usize,
        kind: Kind,
        units: Option<usize>,
        reuse: bool,
    ) {
        let scale = 1.0 / rows.len() as f32;
        op.clear(out);
        for s in self.slices(rows, self.chunk_rows) {
            if !reuse {
                self.record_forward(op, &s, scale, None);
                if kind == Kind::Hessian {
                    self.record_backward(op, &s, None);
                }
            }
            for v0 in (0..count).step_by(VECTOR_GROUP) {
                let batch = VECTOR_GROUP.min(count - v0);
                self.record_r_forward(op, &s, vecs, v0, batch, units);
                self.record_r_backward(op, &s, vecs, out, v0, batch, kind, scale, units);
            }
        }
    }

    /// z_l·V_lᵀ (forward) or δ_l·V_l (backward) for unit vectors V (see [`UnitProduct`]),
    /// from `src` (buffer, offset, row stride) of slice `s` into `dst` (batch, n, w) at
    /// its offset; w is out_l forward, in_l backward.
    fn record_unit_product(
        &self,
        op: &mut Op,
        s: &Slice,
        product: UnitProduct,
        (src, s_off, s_rs): (&GpuBuffer, usize, usize),
        (dst, d_off): (&GpuBuffer, usize),
    ) {
        let g = &self.layers[product.l];
        let w = if product.backward {
            g.fan_in
        } else {
            g.fan_out
        };
        let nw = s.n * w;
        let count = product.batch * nw;
        // mode bit 0: backward; bit 1: add to dst (update.wgsl).
        let mode = flag(product.backward) | (flag(product.add) << 1);
        op.dispatch(
            Kernel::UnitProduct,
            &[src, dst],
            UpdateParams {
                count: u(count),
                w: u(w),
                d_off: u(d_off),
                s_off: u(s_off),
                s_bs: u(s_rs),
                col0: u(product.col0),
                alpha: 0.0,
                nw: u(nw),
                w_off: u(g.w_off),
                fan_in: u(g.fan_in),
                fan_out: u(g.fan_out),
                mode,
                ..UpdateParams::default()
            },
            elementwise_groups(count),
        );
    }

    /// Forward over all slices with E_n summed per slice into grad[W + slice]; returns the
    /// number of slices.
    pub(super) fn record_loss_sums(
        &self,
        op: &mut Op,
        rows: &Range<usize>,
        with_grad: bool,
    ) -> usize {
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
}
