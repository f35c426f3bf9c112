//! `Backend for GpuEngine`: each operation uploads θ (and V) with one queue write,
//! records its passes into one [`Op`] (per block of columns for H and G), runs it with
//! one submit and reads back only its result.

use super::{GpuEngine, OutputHessian, HESSIAN_BLOCK_COLUMNS, VECTOR_GROUP};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::engine::{Backend, DeviceTraining, Diagonal, Kind, Limits, Precision};
use crate::error::{Error, Result};
use crate::gpu::context::{GpuBuffer, Op};
use crate::gpu::error::GpuError;
use crate::gpu::kernels::{elementwise_groups, Kernel, Strided};
use crate::gpu::params::{u, OuterParams, UpdateParams};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
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
        kind: Kind,
    ) -> Result<Array2<f64>> {
        // The face splits blocks larger than `limits().max_vectors` (one storage binding).
        let count = v.nrows();
        let w = self.num_params;
        let (vecs, out) = self.vector_buffers(count)?;
        let reuse = self.prepare_products(theta, &rows, kind);
        let vh: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        self.ctx.write(&vecs, 0, &vh);
        let mut op = Op::new(match kind {
            Kind::Hessian => "Hv block",
            Kind::GaussNewton => "Gv block",
        });
        self.record_products(&mut op, &rows, &vecs, &out, count, kind, None, reuse);
        let r = self.runner.run(op, Some((&out, 0, count * w)))?;
        self.keep_passes(theta, &rows, kind);
        to_array(r, count, w)
    }

    /// The full H or G (W, W), HESSIAN_BLOCK_COLUMNS columns per submit.
    pub(super) fn full_matrix(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        kind: Kind,
    ) -> Result<Array2<f64>> {
        let w = self.num_params;
        let block = HESSIAN_BLOCK_COLUMNS.min(w).min(self.vectors_per_block());
        let (vecs, out) = self.vector_buffers(block)?;
        let mut h = Array2::zeros((w, w));
        for j0 in (0..w).step_by(block) {
            let bs = block.min(w - j0);
            let mut op = Op::new(match kind {
                Kind::Hessian => "Hessian block",
                Kind::GaussNewton => "Gauss-Newton block",
            });
            self.update(
                &mut op,
                Kernel::FillIdentity,
                &[&vecs],
                UpdateParams {
                    count: u(bs * w),
                    col0: u(j0),
                    ..UpdateParams::default()
                },
            );
            let reuse = self.prepare_products(theta, &rows, kind);
            self.record_products(&mut op, &rows, &vecs, &out, bs, kind, Some(j0), reuse);
            let r = self.runner.run(op, Some((&out, 0, bs * w)))?;
            self.keep_passes(theta, &rows, kind);
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

impl Backend for GpuEngine {
    fn architecture(&self) -> &Mlp {
        &self.mlp
    }

    fn data_rows(&self) -> usize {
        self.num_rows
    }

    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        self.upload_theta(theta);
        let mut op = Op::new("loss");
        let count = self.record_loss_sums(&mut op, &rows, false);
        let grad = self.bufs.grad.clone();
        let sums = self.runner.run(op, Some((&grad, self.num_params, count)))?;
        let total: f64 = sums.iter().map(|&x| x as f64).sum();
        Ok(total / rows.len() as f64)
    }

    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        self.upload_theta(theta);
        let w = self.num_params;
        let mut op = Op::new("gradient");
        op.clear(&self.bufs.grad);
        let count = self.record_loss_sums(&mut op, &rows, true);
        let grad = self.bufs.grad.clone();
        let r = self.runner.run(op, Some((&grad, 0, w + count)))?;
        let total: f64 = r[w..].iter().map(|&x| x as f64).sum();
        let loss = total / rows.len() as f64;
        Ok((loss, r[..w].iter().map(|&x| x as f64).collect()))
    }

    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        // The face splits row ranges whose outputs would not fit one storage binding.
        let kk = self.mlp.num_outputs();
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

    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.products(theta, rows, v, kind)
    }

    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        self.full_matrix(theta, rows, kind)
    }

    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        match which {
            Diagonal::Hessian => self.diag_hessian(theta, rows),
            Diagonal::GaussNewton => self.diag_ggn(theta, rows),
            Diagonal::BeckerLeCun => self.diag_becker_lecun(theta, rows),
        }
    }

    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.outer_product(theta, rows)
    }

    fn data_fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        self.fisher_vectors(fisher, theta, rows, skip)
    }

    fn data_kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        self.kfac_factors(fisher, theta, rows)
    }

    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        self.bind(x, t)
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn limits(&self) -> Limits {
        Limits {
            max_vectors: self.vectors_per_block(),
            max_output_rows: (self.max_floats() / self.mlp.num_outputs()).max(1),
        }
    }

    /// First-order updates with θ and the state on the device (`training.rs`).
    fn device_training(&mut self) -> Option<&mut dyn DeviceTraining> {
        Some(self)
    }
}

impl GpuEngine {
    /// The exact diagonal without H, by the factor recursion of `cpu_fast/diagonal.rs`:
    /// diag(M_l) of the per-sample Hessian in each layer's pre-activations is the signed
    /// sum of squares of factor columns plus a diagonal residual, and diag(H) =
    /// Σ_n diag(M_l)ᵀ z_l² (PRML 5.79). The columns: the output Hessian's (K; twice K for
    /// sse/mse after a curved output activation, whose h_kk can be negative), and with
    /// four or more layers of weights, each layer 2..L−2's residual as out_l columns of
    /// each sign. Per slice: one forward, one backward, then the factor groups.
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.upload_theta(theta);
        let kk = self.mlp.num_outputs();
        let last = self.last();
        let scale = 1.0 / rows.len() as f32;
        let root_scale = (1.0 / rows.len() as f64).sqrt() as f32;
        let curved_output = self
            .mlp
            .loss()
            .may_curve_negatively(self.mlp.output_activation());
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

    /// Σ_n J_nᵀ H_out,n J_n / N from factor rows B (J_nᵀ c_k / √N): G += Bᵀ·B.
    fn outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
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
                    op.dispatch(
                        Kernel::OuterRows,
                        &[&self.bufs.rd, inb, &bmat],
                        OuterParams {
                            count: u(count),
                            n: u(s.n),
                            out: u(g.fan_out),
                            fan_in: u(g.fan_in),
                            s_off: u(self.batched_region(l)),
                            z_off: u(in_off),
                            z_rs: u(in_rs),
                            w_total: u(w),
                            w_off: u(g.w_off),
                            b_off: u(g.b_off),
                            ..OuterParams::default()
                        },
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
        let r = self.runner.run(op, Some((&gmat, 0, w * w)))?;
        to_array(r, w, w)
    }
}
