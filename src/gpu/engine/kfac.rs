//! K-FAC factors and the Fisher vectors (per-sample gradients) on the device, the
//! equations of `cpu/kfac.rs` and `cpu/fisher.rs`, one submit per operation:
//!
//! ```text
//!   per slice: forward (δ unscaled), then
//!     A:  Σ z zᵀ = Zᵀ Z (in_l, in_l) by the matmul kernel on z_l, Σ z by colsum
//!     columns at the output, R per sample in groups of VECTOR_GROUP:
//!         exact      loss_factor (Gauss-Newton), the factor columns of H_out
//!         mc         kfac.wgsl mc_columns from draws sampled on the HOST with the
//!                    reference's stream (engine/sampling.rs) and uploaded with θ: the
//!                    device compares them with its own probabilities
//!         empirical  the backward pass's δ_l (one column, every layer)
//!     carried down by record_factor_down, S_l = (C W) ⊙ h′ (as the exact diagonal does)
//!     B:  Σ S Sᵀ = Sᵀ S (out_l, out_l) by the matmul kernel, the group's (batch·n) rows at once
//!     vectors: kfac.wgsl gradient_rows writes row n·R + r of the result at every layer
//! ```
//! Only the sums (Σ_l in_l² + in_l + out_l² floats) or the vectors (|rows|·R, W) are
//! read back; A_l = (1/N)[[Σ z zᵀ, Σ z], [Σ zᵀ, N]] and B_l = (1/N) Σ S Sᵀ are
//! assembled on the host in f64.

use super::{GpuEngine, OutputHessian, Slice, VECTOR_GROUP};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::engine::sampling::Draws;
use crate::error::{Error, Result};
use crate::gpu::context::{GpuBuffer, GpuContext, Op, Runner};
use crate::gpu::error::GpuError;
use crate::gpu::kernels::{elementwise_groups, Kernel, Strided};
use crate::gpu::params::{u, KfacParams};
use ndarray::Array2;
use std::ops::Range;

/// The most threads one dispatch of `gradient_rows` takes (its count is a u32).
const MAX_THREADS: usize = 1 << 31;

/// Where one layer's sums sit in the factors buffer: Σ z zᵀ (in_l, in_l), Σ z (in_l),
/// Σ S Sᵀ (out_l, out_l).
struct Sums {
    zz: usize,
    zsum: usize,
    ss: usize,
}

/// The buffer in `slot`, replaced by one of `len` floats when it is smaller.
fn sized(
    ctx: &GpuContext,
    runner: &mut Runner,
    slot: &mut Option<GpuBuffer>,
    what: &str,
    len: usize,
) -> Result<GpuBuffer, GpuError> {
    if slot.as_ref().is_none_or(|b| b.len() < len) {
        if let Some(old) = slot.take() {
            runner.forget(&old);
        }
        *slot = Some(ctx.buffer(what, len.max(1))?);
    }
    slot.clone()
        .ok_or_else(|| GpuError::Readback(format!("{what} not allocated")))
}

impl GpuEngine {
    /// Each layer's place in the factors buffer, and its length.
    fn sums_layout(&self) -> (Vec<Sums>, usize) {
        let mut at = 0;
        let sums = self
            .layers
            .iter()
            .map(|g| {
                let s = Sums {
                    zz: at,
                    zsum: at + g.fan_in * g.fan_in,
                    ss: at + g.fan_in * g.fan_in + g.fan_in,
                };
                at = s.ss + g.fan_out * g.fan_out;
                s
            })
            .collect();
        (sums, at)
    }

    /// For `mc`: the draws of `rows` rows after `skip` rows of the stream, uploaded.
    fn upload_draws(
        &mut self,
        fisher: Fisher,
        rows: usize,
        skip: usize,
    ) -> Result<Option<GpuBuffer>> {
        let Some(draws) = Draws::of(&self.mlp, fisher, skip, rows)? else {
            return Ok(None);
        };
        let values: Vec<f32> = draws.values.iter().map(|&v| v as f32).collect();
        let buf = sized(
            &self.ctx,
            &mut self.runner,
            &mut self.bufs.draws,
            "Monte-Carlo draws",
            values.len(),
        )?;
        self.ctx.write(&buf, 0, &values);
        Ok(Some(buf))
    }

    /// Records the output columns g0..g0+batch of slice `s` into R{δ} at the output layer.
    fn record_columns(
        &self,
        op: &mut Op,
        s: &Slice,
        fisher: Fisher,
        draws: Option<&GpuBuffer>,
        (g0, batch): (usize, usize),
    ) {
        let (Fisher::Mc { samples, .. }, Some(draws)) = (fisher, draws) else {
            self.record_factor(op, s, (g0, batch), 1.0, OutputHessian::GaussNewton);
            return;
        };
        let kk = self.mlp.num_outputs();
        let count = batch * s.n;
        op.dispatch(
            Kernel::McColumns,
            &[
                &self.bufs.pre,
                &self.chunks[s.chunk].1,
                draws,
                &self.bufs.rd,
            ],
            KfacParams {
                count: u(count),
                n: u(s.n),
                k: u(kk),
                loss: self.mlp.loss().code(),
                act: self.mlp.output_activation().code(),
                a_off: u(self.region(self.last())),
                t_off: u(s.local * kk),
                samples: u(samples),
                g0: u(g0),
                d_off: u(self.batched_region(self.last())),
                scale: (1.0 / (samples as f64).sqrt()) as f32,
                row0: u(s.rel),
                ..KfacParams::default()
            },
            elementwise_groups(count),
        );
    }

    /// After `record_forward` of slice `s`: the flavour's columns at every layer, from
    /// the output down, each handed to `each(engine, op, l, (buffer, offset), batch, g0)`
    /// as (batch·n, out_l) rows b·n + row.
    fn record_column_layers(
        &self,
        op: &mut Op,
        s: &Slice,
        fisher: Fisher,
        draws: Option<&GpuBuffer>,
        mut each: impl FnMut(&GpuEngine, &mut Op, usize, (&GpuBuffer, usize), usize, usize),
    ) {
        let last = self.last();
        if fisher == Fisher::Empirical {
            self.record_backward(op, s, None);
            for l in (0..=last).rev() {
                each(self, op, l, (&self.bufs.delta, self.region(l)), 1, 0);
            }
            return;
        }
        let r = fisher.columns_per_sample(self.mlp.num_outputs());
        for g0 in (0..r).step_by(VECTOR_GROUP) {
            let batch = VECTOR_GROUP.min(r - g0);
            self.record_columns(op, s, fisher, draws, (g0, batch));
            for l in (0..=last).rev() {
                each(
                    self,
                    op,
                    l,
                    (&self.bufs.rd, self.batched_region(l)),
                    batch,
                    g0,
                );
                if l > 0 {
                    self.record_factor_down(op, s, l, batch);
                }
            }
        }
    }

    /// The K-FAC factors of `fisher` over `rows` (module header).
    pub(super) fn kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        let (sums, len) = self.sums_layout();
        let kfac = sized(
            &self.ctx,
            &mut self.runner,
            &mut self.bufs.kfac,
            "K-FAC factor sums",
            len,
        )?;
        let draws = self.upload_draws(fisher, rows.len(), 0)?;
        self.upload_theta(theta);
        let mut op = Op::new("K-FAC factors");
        op.clear(&kfac);
        for s in self.slices(&rows, self.chunk_rows) {
            self.record_forward(&mut op, &s, 1.0, None);
            for (l, g) in self.layers.iter().enumerate() {
                let (inb, in_off, in_rs) = self.input(&s, l);
                self.matmul(
                    &mut op,
                    (g.fan_in, g.fan_in, s.n, 1),
                    (inb, Strided::transposed(in_off, in_rs)),
                    (inb, Strided::rows(in_off, in_rs)),
                    (&kfac, Strided::rows(sums[l].zz, g.fan_in)),
                    1.0,
                );
                self.colsum(
                    &mut op,
                    (s.n, g.fan_in, 1),
                    (inb, in_off, in_rs, 0),
                    (&kfac, sums[l].zsum, 0),
                    true,
                );
            }
            let record =
                |eng: &GpuEngine, op: &mut Op, l: usize, src: (&GpuBuffer, usize), batch, _| {
                    let out = eng.layers[l].fan_out;
                    eng.matmul(
                        op,
                        (out, out, batch * s.n, 1),
                        (src.0, Strided::transposed(src.1, out)),
                        (src.0, Strided::rows(src.1, out)),
                        (&kfac, Strided::rows(sums[l].ss, out)),
                        1.0,
                    );
                };
            self.record_column_layers(&mut op, &s, fisher, draws.as_ref(), record);
        }
        let r = self.runner.run(op, Some((&kfac, 0, len)))?;
        let inv_n = 1.0 / rows.len() as f64;
        let at = |i: usize| f64::from(r[i]) * inv_n;
        let mut a = Vec::with_capacity(sums.len());
        let mut b = Vec::with_capacity(sums.len());
        for (g, sum) in self.layers.iter().zip(&sums) {
            let fin = g.fan_in;
            a.push(Array2::from_shape_fn((fin + 1, fin + 1), |(i, j)| {
                match (i < fin, j < fin) {
                    (true, true) => at(sum.zz + i * fin + j),
                    (true, false) => at(sum.zsum + i),
                    (false, true) => at(sum.zsum + j),
                    (false, false) => 1.0,
                }
            }));
            b.push(Array2::from_shape_fn((g.fan_out, g.fan_out), |(i, j)| {
                at(sum.ss + i * g.fan_out + j)
            }));
        }
        Ok(KroneckerFactors {
            fisher,
            layers: self.mlp.layout(),
            a,
            b,
        })
    }

    /// The vectors of `fisher` (|rows|·R, W) over `rows`, mc's draws after `skip` rows
    /// of the stream (module header; `Backend::data_fisher_vectors`).
    pub(super) fn fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        let w = self.num_params;
        let r = fisher.columns_per_sample(self.mlp.num_outputs());
        let len = rows.len() * r * w;
        let out = sized(
            &self.ctx,
            &mut self.runner,
            &mut self.bufs.fisher_rows,
            "Fisher vectors",
            len,
        )?;
        let draws = self.upload_draws(fisher, rows.len(), skip)?;
        self.upload_theta(theta);
        let widest = self
            .layers
            .iter()
            .map(|g| g.fan_out * (g.fan_in + 1))
            .max()
            .unwrap_or(1);
        let max_rows = (MAX_THREADS / (VECTOR_GROUP * widest)).clamp(1, self.chunk_rows);
        let mut op = Op::new("Fisher vectors");
        for s in self.slices(&rows, max_rows) {
            self.record_forward(&mut op, &s, 1.0, None);
            let record =
                |eng: &GpuEngine, op: &mut Op, l: usize, src: (&GpuBuffer, usize), batch, g0| {
                    let g = &eng.layers[l];
                    let (inb, in_off, in_rs) = eng.input(&s, l);
                    let count = batch * s.n * g.fan_out * (g.fan_in + 1);
                    op.dispatch(
                        Kernel::GradientRows,
                        &[src.0, inb, &out],
                        KfacParams {
                            count: u(count),
                            n: u(s.n),
                            fan_out: u(g.fan_out),
                            fan_in: u(g.fan_in),
                            s_off: u(src.1),
                            z_off: u(in_off),
                            z_rs: u(in_rs),
                            w_total: u(w),
                            w_off: u(g.w_off),
                            b_off: u(g.b_off),
                            per: u(r),
                            g0: u(g0),
                            row0: u(s.rel),
                            ..KfacParams::default()
                        },
                        elementwise_groups(count),
                    );
                };
            self.record_column_layers(&mut op, &s, fisher, draws.as_ref(), record);
        }
        let data = self.runner.run(op, Some((&out, 0, len)))?;
        Array2::from_shape_vec(
            (rows.len() * r, w),
            data.into_iter().map(f64::from).collect(),
        )
        .map_err(|e| Error::Shape(e.to_string()))
    }
}
