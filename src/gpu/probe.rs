//! Single kernels run on host data, for the kernel-level parity tests: upload the
//! operands, run one dispatch, read the result back. Not for production paths (they
//! allocate per call).

use super::context::{GpuContext, Op, Runner};
use super::error::GpuError;
use super::kernels::{record_matmul, Kernel, Strided};
use std::sync::Arc;

/// C = β·C₀ + α·op(A)·op(B) with `kernel` (a matmul variant) and `splits` K splits,
/// operands laid out as the `Strided` descriptions say; returns the whole C buffer.
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
    splits: usize,
) -> Result<Vec<f32>, GpuError> {
    let abuf = ctx.buffer("probe A", a.0.len())?;
    let bbuf = ctx.buffer("probe B", b.0.len())?;
    let cbuf = ctx.buffer("probe C", c.0.len())?;
    ctx.write(&abuf, 0, a.0);
    ctx.write(&bbuf, 0, b.0);
    ctx.write(&cbuf, 0, c.0);
    let scratch = ctx.buffer("probe split-K partial sums", splits.max(1) * batch * m * n)?;
    let mut op = Op::new("matmul probe");
    record_matmul(
        &mut op,
        kernel,
        (m, n, k, batch),
        (&abuf, a.1),
        (&bbuf, b.1),
        (&cbuf, c.1),
        (alpha, beta),
        splits,
        &scratch,
    );
    Runner::new(ctx.clone()).run(op, Some((&cbuf, 0, c.0.len())))
}
