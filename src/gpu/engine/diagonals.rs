//! The diagonal backpropagations (Becker-LeCun, PRML 5.79–5.81; the Gauss-Newton
//! diagonal from a square-root factor of the output Gauss-Newton Hessian) and the factor
//! rows of the outer product (PRML 5.84–5.85).

use super::{GpuEngine, Slice, VECTOR_GROUP};
use crate::error::Result;
use crate::gpu::context::{GpuBuffer, Op};
use crate::gpu::error::{human_bytes, GpuError};
use crate::gpu::kernels::{Kernel, Strided};

impl GpuEngine {
    pub(super) fn finish_diag(&mut self, mut op: Op) -> Result<Vec<f64>> {
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
    pub(super) fn record_factor(
        &self,
        op: &mut Op,
        s: &Slice,
        k0: usize,
        batch: usize,
        scale: f32,
    ) {
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
