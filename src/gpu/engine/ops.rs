//! `Curvature for GpuEngine`: each operation uploads θ (and V) with one queue write,
//! records its passes into one [`Op`] (per block of columns for H and G), runs it with
//! one submit and reads back only its result.

use super::{GpuEngine, OutputHessian, HESSIAN_BLOCK_COLUMNS, VECTOR_GROUP};
use crate::curvature::{check_args, Curvature};
use crate::error::{Error, Result};
use crate::gpu::context::{GpuBuffer, Op};
use crate::gpu::error::GpuError;
use crate::gpu::kernels::{elementwise_groups, Kernel, Strided};
use crate::loss::Loss;
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};
use std::ops::Range;

impl GpuEngine {
    /// The (vecs, out) buffers with room for `count` vectors.
    pub(super) fn vector_buffers(
        &mut self,
        count: usize,
    ) -> Result<(GpuBuffer, GpuBuffer), GpuError> {
        let need = count * self.num_params;
        if self.bufs.vecs.as_ref().is_none_or(|b| b.len() < need) {
            for old in [self.bufs.vecs.take(), self.bufs.hv.take()]
                .into_iter()
                .flatten()
            {
                self.runner.forget(&old);
            }
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

    pub(super) fn products(
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
        // More vectors than one storage binding holds: in blocks that fit, one submit each.
        let per_block = self.vectors_per_block();
        if count > per_block {
            let mut result = Array2::zeros((count, w)); // (count, W)
            for c0 in (0..count).step_by(per_block) {
                let c1 = (c0 + per_block).min(count);
                let part = self.products(theta, rows.clone(), v.slice(s![c0..c1, ..]), exact)?;
                result.slice_mut(s![c0..c1, ..]).assign(&part);
            }
            return Ok(result);
        }
        let (vecs, out) = self.vector_buffers(count)?;
        let reuse = self.prepare_products(theta, &rows, exact);
        let vh: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        self.ctx.write(&vecs, 0, &vh);
        let mut op = Op::new(if exact { "Hv block" } else { "Gv block" });
        self.record_products(&mut op, &rows, &vecs, &out, count, exact, None, reuse);
        let r = self.runner.run(op, Some((&out, 0, count * w)))?;
        self.keep_passes(theta, &rows, exact);
        to_array(r, count, w)
    }

    /// The full H or G (W, W), HESSIAN_BLOCK_COLUMNS columns per submit.
    pub(super) fn full_matrix(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        exact: bool,
    ) -> Result<Array2<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        let w = self.num_params;
        let block = HESSIAN_BLOCK_COLUMNS.min(w).min(self.vectors_per_block());
        let (vecs, out) = self.vector_buffers(block)?;
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
            let reuse = self.prepare_products(theta, &rows, exact);
            self.record_products(&mut op, &rows, &vecs, &out, bs, exact, Some(j0), reuse);
            let r = self.runner.run(op, Some((&out, 0, bs * w)))?;
            self.keep_passes(theta, &rows, exact);
            for b in 0..bs {
                for i in 0..w {
                    h[[j0 + b, i]] = r[b * w + i] as f64;
                }
            }
        }
        Ok(h)
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
        // More outputs than one storage binding holds: in row ranges that fit.
        let per_part = (self.max_floats() / kk).max(1);
        if rows.len() > per_part {
            let mut y = Array2::zeros((rows.len(), kk)); // (rows, K)
            for r0 in (rows.start..rows.end).step_by(per_part) {
                let r1 = (r0 + per_part).min(rows.end);
                let part = self.outputs(theta, r0..r1)?;
                y.slice_mut(s![r0 - rows.start..r1 - rows.start, ..])
                    .assign(&part);
            }
            return Ok(y);
        }
        let need = rows.len() * kk;
        if self.bufs.outputs.as_ref().is_none_or(|b| b.len() < need) {
            if let Some(old) = self.bufs.outputs.take() {
                self.runner.forget(&old);
            }
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

    /// The exact diagonal without H, by the factor recursion of `cpu_fast/diagonal.rs`:
    /// diag(M_l) of the per-sample Hessian in each layer's pre-activations is the signed
    /// sum of squares of factor columns plus a diagonal residual, and diag(H) =
    /// Σ_n diag(M_l)ᵀ z_l² (PRML 5.79). The columns: the output Hessian's (K; twice K for
    /// sse/mse after a curved output activation, whose h_kk can be negative), and with
    /// four or more layers of weights, each layer 2..L−2's residual as out_l columns of
    /// each sign. Per slice: one forward, one backward, then the factor groups.
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        check_args(&self.mlp, self.num_rows, theta, &rows, None)?;
        self.upload_theta(theta);
        let kk = self.mlp.num_outputs();
        let last = self.last();
        let scale = 1.0 / rows.len() as f32;
        let root_scale = (1.0 / rows.len() as f64).sqrt() as f32;
        let curved_output = matches!(self.mlp.loss(), Loss::Sse | Loss::Mse)
            && !self.mlp.output_activation().is_piecewise_linear();
        let output_parts: &[(OutputHessian, f32)] = if curved_output {
            &[
                (OutputHessian::Exact, 1.0),
                (OutputHessian::ExactNegativePart, -1.0),
            ]
        } else {
            &[(OutputHessian::Exact, 1.0)]
        };
        let mut op = Op::new("exact Hessian diagonal");
        op.clear(&self.bufs.diag);
        if last >= 2 {
            self.square_theta(&mut op);
        }
        for s in self.slices(&rows, self.chunk_rows) {
            self.record_forward(&mut op, &s, scale, None);
            self.record_backward(&mut op, &s, None);
            let mut residual = true;
            for &(part, sign) in output_parts {
                for k0 in (0..kk).step_by(VECTOR_GROUP) {
                    let batch = VECTOR_GROUP.min(kk - k0);
                    self.record_factor(&mut op, &s, (k0, batch), root_scale, part);
                    self.record_factor_diag(&mut op, &s, (last, batch), sign, residual);
                    residual = false;
                }
            }
            for l in 2..last {
                let width = self.layers[l].fan_out;
                for sign in [1.0, -1.0] {
                    for j0 in (0..width).step_by(VECTOR_GROUP) {
                        let batch = VECTOR_GROUP.min(width - j0);
                        self.record_expanded_residual(&mut op, &s, l, (j0, batch), sign);
                        self.record_factor_diag(&mut op, &s, (l - 1, batch), sign, false);
                    }
                }
            }
        }
        self.finish_diag(op)
    }

    /// The Gauss-Newton diagonal from its output factor (PRML 5.84 restricted to the
    /// diagonal): the same recursion as the exact one without residuals or signs.
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
                self.record_factor(
                    &mut op,
                    &s,
                    (k0, batch),
                    root_scale,
                    OutputHessian::GaussNewton,
                );
                self.record_factor_diag(&mut op, &s, (self.last(), batch), 1.0, false);
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
        self.square_theta(&mut op);
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
                (1, 0, OutputHessian::Exact),
                scale,
                s.n,
            );
            for l in (0..self.layers.len()).rev() {
                let q = (&self.bufs.rd, self.batched_region(l));
                self.record_diag_layer(&mut op, &s, l, q);
                if l > 0 {
                    let below = (&self.bufs.rd, self.batched_region(l - 1));
                    self.record_diagonal_down(&mut op, &s, l, q, below);
                }
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
                self.record_factor(
                    &mut op,
                    &s,
                    (k0, batch),
                    root_scale,
                    OutputHessian::GaussNewton,
                );
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
