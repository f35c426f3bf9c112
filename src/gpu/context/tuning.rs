//! Matmul tuning: a step of building the context that times both matmul variants on
//! one probe product, on the freshly opened device and its pipelines, and keeps the
//! faster (the variants sum K in the same order, so the choice never changes a bit).

use super::device::GpuDevice;
use super::op::Op;
use super::pipelines::Pipelines;
use super::runner::Executor;
use crate::gpu::error::GpuError;
use crate::gpu::kernels::{matmul_groups, matmul_params, Kernel, Strided};
use std::time::Instant;

/// Product timed to choose the matmul variant: (M, N, K) of about the size of the
/// forward and gradient products of the digits network on one batch.
const MATMUL_PROBE: (usize, usize, usize) = (1024, 128, 256);
/// Timed runs per variant (after one warm-up run); the minimum is kept.
const MATMUL_PROBE_RUNS: usize = 3;

/// The matmul variant a context runs and why (the measured times).
#[derive(Clone, Debug)]
pub(super) struct MatmulChoice {
    pub kernel: Kernel,
    pub note: String,
}

/// Times both matmul variants on the probe product and keeps the faster; the
/// shared-memory tiled one, untimed, when the probe does not fit the buffer limits.
pub(super) fn choose_matmul(
    device: &GpuDevice,
    pipelines: &Pipelines,
) -> Result<MatmulChoice, GpuError> {
    let (m, n, k) = MATMUL_PROBE;
    if (m * k * 4) as u64 > device.limits.storage_binding.min(device.limits.buffer) {
        return Ok(MatmulChoice {
            kernel: Kernel::MatmulTiled,
            note: "shared-memory tiled (not timed: the probe is over the buffer limit)".into(),
        });
    }
    let a = device.buffer("matmul probe A", m * k)?;
    let b = device.buffer("matmul probe B", k * n)?;
    let c = device.buffer("matmul probe C", m * n)?;
    let fill: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32) * 0.1).collect();
    device.write(&a, 0, &fill);
    device.write(&b, 0, &fill[..k * n]);
    let mut executor = Executor::new();
    let mut times = Vec::new();
    for kernel in [Kernel::MatmulTiled, Kernel::MatmulReg] {
        let mut best = f64::INFINITY;
        for run in 0..=MATMUL_PROBE_RUNS {
            let mut op = Op::new("matmul probe");
            op.dispatch(
                kernel,
                &[&a, &b, &c],
                matmul_params(
                    (m, n, k, 1),
                    Strided::rows(0, k),
                    Strided::rows(0, n),
                    Strided::rows(0, n),
                    1.0,
                    0.0,
                    1,
                ),
                matmul_groups(kernel, m, n, 1),
            );
            let start = Instant::now();
            executor.run(device, pipelines, op, Some((&c, 0, 1)))?;
            if run > 0 {
                best = best.min(start.elapsed().as_secs_f64());
            }
        }
        times.push((kernel, best));
    }
    let (tiled, reg) = (times[0].1, times[1].1);
    let kernel = if reg < tiled {
        Kernel::MatmulReg
    } else {
        Kernel::MatmulTiled
    };
    let note = format!(
        "{} (timed on {m}x{k}·{k}x{n}: tiled {:.2} ms, register-blocked {:.2} ms)",
        if kernel == Kernel::MatmulReg {
            "register-blocked"
        } else {
            "shared-memory tiled"
        },
        tiled * 1e3,
        reg * 1e3
    );
    Ok(MatmulChoice { kernel, note })
}
