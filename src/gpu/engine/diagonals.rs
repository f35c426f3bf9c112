//! The diagonal backpropagations (Becker-LeCun, PRML 5.79–5.81; the Gauss-Newton and
//! the exact diagonal by the factor recursion of `cpu_fast/diagonal.rs`: square-root
//! factor columns of the output Hessian carried down the layers, plus the exact one's
//! diagonal residuals and, in deep nets, residuals turned into factor columns) and the
//! factor rows of the outer product (PRML 5.84–5.85).

use super::{GpuEngine, OutputHessian, Slice, VECTOR_GROUP};
use crate::error::Result;
use crate::gpu::context::{GpuBuffer, Op};
use crate::gpu::error::{human_bytes, GpuError};
use crate::gpu::kernels::{elementwise_groups, Kernel, Strided};
use crate::gpu::params::{flag, u, DiagParams, RopParams, UpdateParams};

impl GpuEngine {
    pub(super) fn finish_diag(&mut self, op: Op) -> Result<Vec<f64>> {
        let diag = self.bufs.diag.clone();
        let r = self.runner.run(op, Some((&diag, 0, self.num_params)))?;
        Ok(r.into_iter().map(f64::from).collect())
    }

    /// Records θ∘θ into `theta_sq` (the W_l∘W_l of the diagonal recursions).
    pub(super) fn square_theta(&self, op: &mut Op) {
        self.update(
            op,
            Kernel::Square,
            &[&self.bufs.theta, &self.bufs.theta_sq],
            UpdateParams {
                count: u(self.num_params),
                ..UpdateParams::default()
            },
        );
    }

    /// Squares z_l of slice `s` into `prod` (n, in_l) and records
    /// diag(W_l) += qᵀ·z², diag(b_l) += colsum q for q = (n, out_l) at `q_off` of `q`.
    pub(super) fn record_diag_layer(
        &self,
        op: &mut Op,
        s: &Slice,
        l: usize,
        q: (&GpuBuffer, usize),
    ) {
        let g = &self.layers[l];
        let n = s.n;
        let (inb, in_off, _) = self.input(s, l);
        self.update(
            op,
            Kernel::Square,
            &[inb, &self.bufs.prod],
            UpdateParams {
                count: u(n * g.fan_in),
                s_off: u(in_off),
                ..UpdateParams::default()
            },
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
    pub(super) fn record_factor_down(&self, op: &mut Op, s: &Slice, l: usize, batch: usize) {
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
            RopParams {
                count: u(batch * nw),
                nw: u(nw),
                w: u(g.fan_in),
                d_off: u(self.region(l - 1)),
                rd_off: u(self.batched_region(l - 1)),
                ..RopParams::default()
            },
        );
    }

    /// Records the factor columns k0..k0+batch of slice `s`'s output Hessian into R{δ_out}:
    /// of its Gauss-Newton part, or of the exact one's positive or negative part.
    pub(super) fn record_factor(
        &self,
        op: &mut Op,
        s: &Slice,
        (k0, batch): (usize, usize),
        scale: f32,
        hessian: OutputHessian,
    ) {
        let last = self.last();
        self.loss_kernel(
            op,
            Kernel::LossFactor,
            &[&self.bufs.pre, &self.chunks[s.chunk].1, &self.bufs.rd],
            s,
            (0, 0, self.batched_region(last), 0),
            (batch, k0, hessian),
            scale,
            batch * s.n,
        );
    }

    /// Carries `batch` factor columns S_top (in R{δ} at layer `top`) down to layer 0 and
    /// adds `sign`·Σ_n (Σ_b S_l[b]²)ᵀ z_l² into every layer's diagonal on the way (PRML
    /// 5.79 with M_l = Σ ±S_l S_lᵀ). With `residual`, each layer below the output also
    /// adds its exact residual (`record_residual`): once per slice, with the first group.
    pub(super) fn record_factor_diag(
        &self,
        op: &mut Op,
        s: &Slice,
        (top, batch): (usize, usize),
        sign: f32,
        residual: bool,
    ) {
        for l in (0..=top).rev() {
            let with_residual = residual && l < self.last();
            if with_residual {
                self.record_residual(op, s, l);
            }
            let count = s.n * self.layers[l].fan_out;
            op.dispatch(
                Kernel::SumSqBatch,
                &[&self.bufs.rd, &self.bufs.sq],
                DiagParams {
                    count: u(count),
                    batch: u(batch),
                    src_off: u(self.batched_region(l)),
                    sign,
                    acc: flag(with_residual),
                    ..DiagParams::default()
                },
                elementwise_groups(count),
            );
            self.record_diag_layer(op, s, l, (&self.bufs.sq, 0));
            if l > 0 {
                self.record_factor_down(op, s, l, batch);
            }
        }
    }

    /// The part of diag(M_l) (n, out_l) into `sq` that no factor column carries, for a
    /// layer below the output (after `record_backward`, δ of the mean): its residual
    /// r_l = h″ ⊙ (δ_{l+1}·W_{l+1}); for l = 0 under two or more layers also the diagonal
    /// of diag(h′) W_1ᵀ diag(r_1) W_1 diag(h′), h′² ⊙ (r_1·(W_1∘W_1)) (θ² in `theta_sq`),
    /// which layers 1 and up carry as factor columns instead (`record_expanded_residual`).
    fn record_residual(&self, op: &mut Op, s: &Slice, l: usize) {
        if l > 0 || self.last() == 1 {
            self.record_residual_of(op, s, l);
            return;
        }
        self.record_residual_of(op, s, 1);
        self.record_diagonal_down(op, s, 1, (&self.bufs.sq, 0), (&self.bufs.sq, 0));
    }

    /// The Becker-LeCun step from layer l to l − 1 (PRML 5.81): q_{l−1} = h′² ⊙
    /// (q_l·(W_l∘W_l)) + h″ ⊙ (δ_l·W_l), from q_l (n, out_l) at `q` into `dst` (n, in_l)
    /// (`prod` holds the product in between, so `dst` may be `q`).
    pub(super) fn record_diagonal_down(
        &self,
        op: &mut Op,
        s: &Slice,
        l: usize,
        q: (&GpuBuffer, usize),
        dst: (&GpuBuffer, usize),
    ) {
        let g = &self.layers[l];
        let n = s.n;
        self.matmul(
            op,
            (n, g.fan_in, g.fan_out, 1),
            (q.0, Strided::rows(q.1, g.fan_out)),
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
                dst.0,
            ],
            DiagParams {
                count: u(count),
                batch: 1,
                d_off: u(below),
                ew_off: u(below),
                dst_off: u(dst.1),
                ..DiagParams::default()
            },
            elementwise_groups(count),
        );
    }

    /// r_l = h″(a_l) ⊙ (δ_{l+1}·W_{l+1}) (n, out_l) into `sq`.
    fn record_residual_of(&self, op: &mut Op, s: &Slice, l: usize) {
        let count = s.n * self.layers[l].fan_out;
        let region = self.region(l);
        op.dispatch(
            Kernel::HessResidual,
            &[&self.bufs.d2, &self.bufs.ew, &self.bufs.sq],
            DiagParams {
                count: u(count),
                d_off: u(region),
                ew_off: u(region),
                ..DiagParams::default()
            },
            elementwise_groups(count),
        );
    }

    /// Columns j0..j0+batch of layer l's residual (1 < l < L−1) as factor columns of
    /// layer l − 1 in R{δ}: √max(sign·r_lj, 0)·(W_l[j, :] ⊙ h′(a_{l−1})), the `sign` part
    /// of diag(h′) W_lᵀ diag(r_l) W_l diag(h′), which layer l − 1 needs whole.
    pub(super) fn record_expanded_residual(
        &self,
        op: &mut Op,
        s: &Slice,
        l: usize,
        (j0, batch): (usize, usize),
        sign: f32,
    ) {
        self.record_residual_of(op, s, l);
        let g = &self.layers[l];
        let n = s.n;
        let count = batch * n * g.fan_in;
        op.dispatch(
            Kernel::ExpandResidual,
            &[
                &self.bufs.d1,
                &self.bufs.sq,
                &self.bufs.theta,
                &self.bufs.rd,
            ],
            DiagParams {
                count: u(count),
                batch: u(batch),
                d_off: u(self.region(l - 1)),
                src_off: u(g.w_off),
                dst_off: u(self.batched_region(l - 1)),
                sign,
                n: u(n),
                w: u(g.fan_in),
                fan_out: u(g.fan_out),
                j0: u(j0),
                ..DiagParams::default()
            },
            elementwise_groups(count),
        );
    }

    /// (slice rows, factor rows buffer, W×W result) for the outer product.
    pub(super) fn outer_buffers(&mut self) -> Result<(usize, GpuBuffer, GpuBuffer), GpuError> {
        let w = self.num_params;
        let max_f = (self.ctx.summary().max_binding_bytes() / 4) as usize;
        let rows = (max_f / (VECTOR_GROUP * w)).min(self.chunk_rows);
        if rows == 0 || w.checked_mul(w).is_none_or(|ww| ww > max_f) {
            return Err(GpuError::Allocation {
                what: format!("the {w}×{w} outer-product matrix"),
                bytes: (w as u64) * (w as u64) * 4,
                limit: format!(
                    "the adapter allows at most {} per storage buffer",
                    human_bytes(max_f as u64 * 4)
                ),
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
