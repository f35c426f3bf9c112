//! Single kernels run on host data, for the kernel-level parity tests: upload the
//! operands, run one dispatch, read the result back. Not for production paths (they
//! allocate per call).

use super::context::{GpuContext, Op, Runner};
use super::error::GpuError;
use super::kernels::{matmul_groups, matmul_params, Kernel, Strided};
use std::sync::Arc;

/// C = β·C₀ + α·op(A)·op(B) with `kernel` (a matmul variant), operands laid out as the
/// `Strided` descriptions say; returns the whole C buffer.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ctx: &Arc<GpuContext>,
    kernel: Kernel,
    (m, n, k, batch): (usize, usize, usize, usize),
    a: (&[f32], Strided),
    b: (&[f32], Strided),
    c: (&[f32], Strided),
    alpha: f32,
    beta: f32,
) -> Result<Vec<f32>, GpuError> {
    let abuf = ctx.buffer("probe A", a.0.len())?;
    let bbuf = ctx.buffer("probe B", b.0.len())?;
    let cbuf = ctx.buffer("probe C", c.0.len())?;
    ctx.write(&abuf, 0, a.0);
    ctx.write(&bbuf, 0, b.0);
    ctx.write(&cbuf, 0, c.0);
    let mut op = Op::new("matmul probe");
    op.dispatch(
        kernel,
        &[&abuf, &bbuf, &cbuf],
        matmul_params(m, n, k, batch, a.1, b.1, c.1, alpha, beta),
        matmul_groups(kernel, m, n, batch),
    );
    Runner::new(ctx.clone()).run(op, Some((&cbuf, 0, c.0.len())))
}
