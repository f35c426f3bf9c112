//! Benchmarks of the curvature operations (issue 7): the standard workloads,
//! the FLOP count of every operation, timing by medians after warm-up, the
//! device's own peak measured in the same run, and the rows (`--json`).
//! (About 630 lines, over the ~600 guideline: most of it is the FLOP count of
//! every operation, kept beside the table below that derives each one.)
//!
//! ## FLOP counts (what the algorithm must do)
//! Only the matrix products are counted (2 flops per multiply-add); elementwise
//! work (h, h′, h″, the loss) is O(N·Σ out_l) and left out. With
//! P = Σ_l in_l·out_l (the weights), P₁ = P − in_0·out_0 (the weights of layers
//! l ≥ 1), N samples and k vectors:
//! ```text
//!   forward            a = z Wᵀ every layer                         2NP
//!   backward           δ W for layers l ≥ 1 (no input-side product)  2NP₁
//!   gradient           δᵀ z every layer                             2NP
//!   loss               forward                                      2NP
//!   loss + gradient    forward + backward + gradient                4NP + 2NP₁
//!   Hv, block of k     forward + backward (shared), then per vector:
//!                      R-forward z Vᵀ (2NP) + R{z} Wᵀ (2NP₁), R-backward
//!                      R{δ} W (2NP₁) + δ V (2NP₁), R{∇} R{δ}ᵀ z (2NP) + δᵀ R{z} (2NP₁)
//!                                                       2NP + 2NP₁ + k(4NP + 8NP₁)
//!   Gv, block of k     forward, then per vector 2NP + 2NP₁ + 2NP₁ + 2NP
//!                                                       2NP + k(4NP + 4NP₁)
//!   full H (G), CPU    per-sample Kronecker sums (`cpu_fast::full`, its `flops`):
//!                      forward (+ backward), the per-sample factors M_l W_l, Bᵀ W_l, …,
//!                      and 2N per entry of every block's sum (packed triangles on the
//!                      diagonal blocks); S: ~16 GFLOP, ~330 Hv
//!   full H (G), GPU    blocks of HESSIAN_BLOCK_COLUMNS identity columns, each the
//!                      block's Hv (Gv) formula above less the products with the unit
//!                      vectors, which are gathers: z Vᵀ (2NP) and δ V (2NP₁) per column
//!                                       2NP + 2NP₁ + k(2NP + 6NP₁)  (G: 2NP + k(2NP + 4NP₁))
//!   diag G             forward + factor rows f W_l for l ≥ 1 (R_l = K rows per sample)
//!                      + Σ_n diag(M_l)ᵀ (z∘z) every layer          4NP + 2N Σ_{l≥1} R_l in_l out_l
//!   diag H             diag G's products with the exact factor rows R_l, + backward (2NP₁)
//!                      + the residual mat-vec d (W∘W) where it is not expanded (2N in_l out_l)
//!   K-FAC factors      exact flavour: forward, the K output columns carried down through
//!                      layers l ≥ 1 (2NKP₁), and per layer Z̃ᵀZ̃ and SᵀS (S: N·K rows), with
//!                      sym(r, m) = 2r·m² for the GPU's full products, r·m(m+1) for the CPU's
//!                      upper triangles:   2NP + 2NKP₁ + Σ_l [sym(N, in_l) + 2N in_l + sym(NK, out_l)]
//!   K-FAC inverse      the eigendecompositions of every A_l (in_l+1) and B_l (out_l) on the
//!                      host (faer, whatever the device), 9n³ each (Golub & Van Loan's count
//!                      for the symmetric QR algorithm with eigenvectors), factors made once
//!                      before the timing:                    9 Σ_l [(in_l+1)³ + out_l³]
//!   per-sample grads   on the first N_b = min(N, 2²⁵ / W) rows (the (N_b, W) result is
//!                      what is written: M would need 8 GB for all rows): forward + backward,
//!                      then one multiply per weight entry of each row's δ zᵀ
//!                                                            2N_bP + 2N_bP₁ + N_bP
//! ```
//! Runs alternate between two θ, so that no run reuses the previous run's
//! forward pass (the CPU engine does that for products at one θ).
//! The peak is the crate's own best matrix product on a large square (n, n)
//! (the CPU: faer's GEMM at the precision benchmarked; a GPU: the engine's
//! matmul kernel), 2n³ flops, timed in the same run.

use crate::cpu::Fisher;
use crate::cpu_fast::diagonal::factor_rows;
use crate::data::load_named;
use crate::engine::device::Device;
use crate::engine::Curvature;
use crate::engine::Diagonal;
use crate::error::{Error, Result};
use crate::gpu::engine::HESSIAN_BLOCK_COLUMNS;
use crate::model::Mlp;
use crate::{Activation, Loss};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::str::FromStr;
use std::time::Instant;

/// A standard workload: a network on a named data set, all rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 64-50-10 sigmoid/softmax ce on digits (N = 1797).
    S,
    /// 784-128-10 sigmoid/softmax ce on mnist10k (N = 10000).
    M,
    /// 784-512-512-10 tanh/softmax ce on mnist10k (N = 10000).
    L,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::S, Workload::M, Workload::L];

    pub fn name(self) -> &'static str {
        match self {
            Workload::S => "S",
            Workload::M => "M",
            Workload::L => "L",
        }
    }

    /// The network (λ = 1e-3, as in the tests) and the data set's name.
    pub fn spec(self) -> (Vec<usize>, Activation, &'static str) {
        match self {
            Workload::S => (vec![64, 50, 10], Activation::Sigmoid, "digits"),
            Workload::M => (vec![784, 128, 10], Activation::Sigmoid, "mnist10k"),
            Workload::L => (vec![784, 512, 512, 10], Activation::Tanh, "mnist10k"),
        }
    }

    pub fn mlp(self) -> Result<Mlp> {
        let (sizes, hidden, _) = self.spec();
        Ok(Mlp::with_hidden(&sizes, hidden, Loss::Ce, 1e-3)?)
    }

    /// Whether the full H and G are part of this workload (S only: W = 3760).
    pub fn has_full_matrices(self) -> bool {
        self == Workload::S
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "S" => Ok(Workload::S),
            "M" => Ok(Workload::M),
            "L" => Ok(Workload::L),
            other => Err(format!("unknown workload `{other}`: use S, M, L or all")),
        }
    }
}

/// A benchmarked operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Loss,
    LossGrad,
    Hv,
    Gv,
    HvBlock16,
    DiagGgn,
    DiagHessian,
    Hessian,
    Ggn,
    KfacFactors,
    KfacInverse,
    PerSampleGrads,
}

/// Vectors in the benchmarked block of Hv.
pub const BLOCK: usize = 16;

/// Entries of the per-sample gradients' result at most (2²⁵ f64 = 256 MiB): N_b rows.
pub const PER_SAMPLE_ENTRIES: usize = 1 << 25;

/// N_b, the rows the per-sample gradients are benchmarked on (module header).
pub fn per_sample_rows(mlp: &Mlp, n: usize) -> usize {
    (PER_SAMPLE_ENTRIES / mlp.num_params().max(1)).clamp(1, n.max(1))
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Loss => "loss",
            Op::LossGrad => "loss+grad",
            Op::Hv => "Hv",
            Op::Gv => "Gv",
            Op::HvBlock16 => "Hv block16",
            Op::DiagGgn => "diag GGN",
            Op::DiagHessian => "diag H",
            Op::Hessian => "full H",
            Op::Ggn => "full GGN",
            Op::KfacFactors => "K-FAC factors",
            Op::KfacInverse => "K-FAC inverse",
            Op::PerSampleGrads => "per-sample grads",
        }
    }

    /// The operations of a workload, in the order they are printed.
    pub fn of(w: Workload) -> Vec<Op> {
        let mut ops = vec![
            Op::Loss,
            Op::LossGrad,
            Op::Hv,
            Op::Gv,
            Op::HvBlock16,
            Op::DiagGgn,
            Op::DiagHessian,
        ];
        if w.has_full_matrices() {
            ops.extend([Op::Hessian, Op::Ggn]);
        }
        ops.extend([Op::KfacFactors, Op::KfacInverse, Op::PerSampleGrads]);
        ops
    }

    /// Whether this op is long (the full matrices, L's inverse refresh of seconds): it
    /// gets fewer runs.
    pub fn is_long(self) -> bool {
        matches!(self, Op::Hessian | Op::Ggn | Op::KfacInverse)
    }

    /// The rows an op of a workload with `n` rows runs on: N_b for the per-sample
    /// gradients, all of them otherwise.
    pub fn rows(self, mlp: &Mlp, n: usize) -> usize {
        match self {
            Op::PerSampleGrads => per_sample_rows(mlp, n),
            _ => n,
        }
    }
}

/// The FLOPs of `op` on `mlp` with `n` samples, as the module header states:
/// the full matrices by the algorithm of the device (`on_gpu`), everything
/// else the same on both.
pub fn flops(mlp: &Mlp, n: usize, op: Op, on_gpu: bool) -> f64 {
    let layers = mlp.layout();
    let n = n as f64;
    let p: f64 = layers.iter().map(|l| (l.fan_in * l.fan_out) as f64).sum();
    let p1 = p - (layers[0].fan_in * layers[0].fan_out) as f64;
    let hv = |k: f64| 2.0 * n * p + 2.0 * n * p1 + k * (4.0 * n * p + 8.0 * n * p1);
    let gv = |k: f64| 2.0 * n * p + k * (4.0 * n * p + 4.0 * n * p1);
    // The GPU's columns of H and G: unit vectors, whose z·V_lᵀ (2np) and δ·V_l (2np1)
    // are gathers, not products.
    let hv_units = |k: f64| 2.0 * n * p + 2.0 * n * p1 + k * (2.0 * n * p + 6.0 * n * p1);
    let gv_units = |k: f64| 2.0 * n * p + k * (2.0 * n * p + 4.0 * n * p1);
    let blocks = |f: &dyn Fn(f64) -> f64| {
        let w = mlp.num_params();
        let (full, rest) = (w / HESSIAN_BLOCK_COLUMNS, w % HESSIAN_BLOCK_COLUMNS);
        full as f64 * f(HESSIAN_BLOCK_COLUMNS as f64) + if rest > 0 { f(rest as f64) } else { 0.0 }
    };
    let factors = |kind: Diagonal| {
        let rows = factor_rows(&layers, mlp.num_outputs(), kind);
        (1..layers.len())
            .map(|l| 2.0 * n * rows[l] as f64 * (layers[l].fan_in * layers[l].fan_out) as f64)
            .sum::<f64>()
    };
    match op {
        Op::Loss => 2.0 * n * p,
        Op::LossGrad => 4.0 * n * p + 2.0 * n * p1,
        Op::Hv => hv(1.0),
        Op::Gv => gv(1.0),
        Op::HvBlock16 => hv(BLOCK as f64),
        Op::Hessian if on_gpu => blocks(&hv_units),
        Op::Ggn if on_gpu => blocks(&gv_units),
        Op::Hessian => {
            crate::cpu_fast::full::flops(&layers, n as usize, crate::engine::Kind::Hessian)
        }
        Op::Ggn => {
            crate::cpu_fast::full::flops(&layers, n as usize, crate::engine::Kind::GaussNewton)
        }
        Op::KfacFactors => {
            let k = mlp.num_outputs() as f64;
            // The symmetric sums over r rows of width m: full on the GPU, one triangle on the CPU.
            let sym = |r: f64, m: f64| {
                if on_gpu {
                    2.0 * r * m * m
                } else {
                    r * m * (m + 1.0)
                }
            };
            let sums: f64 = layers
                .iter()
                .map(|l| {
                    let (fin, fout) = (l.fan_in as f64, l.fan_out as f64);
                    sym(n, fin) + 2.0 * n * fin + sym(n * k, fout)
                })
                .sum();
            2.0 * n * p + 2.0 * n * k * p1 + sums
        }
        Op::KfacInverse => layers
            .iter()
            .map(|l| 9.0 * (((l.fan_in + 1) as f64).powi(3) + (l.fan_out as f64).powi(3)))
            .sum(),
        Op::PerSampleGrads => 2.0 * n * p + 2.0 * n * p1 + n * p,
        Op::DiagGgn => 4.0 * n * p + factors(Diagonal::GaussNewton),
        Op::DiagHessian => {
            let depth = layers.len();
            // The residual d_1 (W_1∘W_1) mat-vec when there are ≥ 3 layers of weights.
            let residual = if depth >= 3 {
                2.0 * n * (layers[1].fan_in * layers[1].fan_out) as f64
            } else {
                0.0
            };
            4.0 * n * p + 2.0 * n * p1 + factors(Diagonal::Hessian) + residual
        }
    }
}

/// One measured row.
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub network: String,
    pub n: usize,
    pub device: String,
    pub precision: String,
    pub op: String,
    pub runs: usize,
    /// Median seconds per operation.
    pub seconds: f64,
    pub flops: f64,
    pub gflops: f64,
    /// GFLOP/s as a fraction of the measured peak.
    pub fraction_of_peak: f64,
    pub peak_gflops: f64,
}

impl Row {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "workload": self.workload,
            "network": self.network,
            "n": self.n,
            "device": self.device,
            "precision": self.precision,
            "op": self.op,
            "runs": self.runs,
            "seconds": self.seconds,
            "ops_per_second": 1.0 / self.seconds,
            "flops": self.flops,
            "gflops": self.gflops,
            "fraction_of_peak": self.fraction_of_peak,
            "peak_gflops": self.peak_gflops,
        })
    }
}

/// The median of `runs` timings of `f` after `warmup` untimed calls.
pub fn median_seconds(
    runs: usize,
    warmup: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let m = times.len();
    Ok(if m % 2 == 1 {
        times[m / 2]
    } else {
        0.5 * (times[m / 2 - 1] + times[m / 2])
    })
}

/// Side of the square product that measures the CPU's peak (the fastest of 512–3072 on
/// the machine the README's tables come from).
pub const PEAK_SIZE_CPU: usize = 1536;
/// Sides of the GPU's peak product: from the smallest, doubled (see [`gpu_peak_size`]).
pub const PEAK_SIZE_GPU_MIN: usize = 1024;
pub const PEAK_SIZE_GPU_MAX: usize = 8192;
/// The shortest a GPU's peak product may take: 1024² is 2 GFLOP, a fraction of a
/// millisecond on a large GPU, where submit and read-back latency would dominate it and
/// understate the peak (and overstate every fraction of it).
pub const PEAK_GPU_MIN_SECONDS: f64 = 0.02;

/// The CPU's GEMM peak in GFLOP/s at precision T: faer on (n, n)·(n, n), median of `runs`.
pub fn cpu_peak<T: crate::cpu_fast::Real>(n: usize, runs: usize) -> Result<f64> {
    use crate::cpu_fast::gemm::{gemm, mat};
    let a: Vec<T> = (0..n * n)
        .map(|i| T::from_f64(((i % 97) as f64) / 97.0 - 0.5))
        .collect();
    let b: Vec<T> = (0..n * n)
        .map(|i| T::from_f64(((i % 89) as f64) / 89.0 - 0.5))
        .collect();
    let mut c = vec![T::zero(); n * n];
    let s = median_seconds(runs, 1, || {
        gemm(&mut c, mat(&a, n, n), mat(&b, n, n), T::one(), false);
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / s / 1e9)
}

/// The side of the GPU's peak product: PEAK_SIZE_GPU_MIN, doubled while one product
/// takes less than PEAK_GPU_MIN_SECONDS and the doubled operands fit the adapter's
/// binding limit, up to PEAK_SIZE_GPU_MAX.
pub fn gpu_peak_size(ctx: &std::sync::Arc<crate::gpu::GpuContext>) -> Result<usize> {
    let max_bytes = ctx.summary().max_binding_bytes();
    let mut n = PEAK_SIZE_GPU_MIN;
    loop {
        if larger_peak_size(n, None, max_bytes).is_none() {
            return Ok(n);
        }
        let seconds = 2.0 * (n as f64).powi(3) / (gpu_peak(ctx, n, 1)? * 1e9);
        match larger_peak_size(n, Some(seconds), max_bytes) {
            Some(next) => n = next,
            None => return Ok(n),
        }
    }
}

/// The next side to try after a peak product of side `n` took `seconds` (None: not yet
/// timed), or None to keep `n`: it was slow enough, or 2n is over PEAK_SIZE_GPU_MAX or
/// its f32 operands over `max_bytes` per binding.
pub fn larger_peak_size(n: usize, seconds: Option<f64>, max_bytes: u64) -> Option<usize> {
    let next = 2 * n;
    let fits = next <= PEAK_SIZE_GPU_MAX && (next * next * 4) as u64 <= max_bytes;
    let fast = seconds.is_none_or(|s| s < PEAK_GPU_MIN_SECONDS);
    (fits && fast).then_some(next)
}

/// A GPU's matmul peak in GFLOP/s: the engine's chosen kernel on (n, n)·(n, n),
/// one submit per product, timed to the read-back of one element.
pub fn gpu_peak(
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    n: usize,
    runs: usize,
) -> Result<f64> {
    use crate::gpu::context::{Op as GpuOp, Runner};
    use crate::gpu::kernels::{record_matmul, Strided};
    let a = ctx.buffer("peak A", n * n)?;
    let b = ctx.buffer("peak B", n * n)?;
    let c = ctx.buffer("peak C", n * n)?;
    let data: Vec<f32> = (0..n * n).map(|i| ((i % 97) as f32) / 97.0 - 0.5).collect();
    ctx.write(&a, 0, &data);
    ctx.write(&b, 0, &data);
    let mut runner = Runner::new(ctx.clone());
    let kernel = ctx.matmul_kernel();
    let s = median_seconds(runs, 1, || {
        let mut op = GpuOp::new("peak matmul");
        record_matmul(
            &mut op,
            kernel,
            (n, n, n, 1),
            (&a, Strided::rows(0, n)),
            (&b, Strided::rows(0, n)),
            (&c, Strided::rows(0, n)),
            (1.0, 0.0),
            1,
            &c,
        );
        runner.run(op, Some((&c, 0, 1)))?;
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / s / 1e9)
}

/// Options of one benchmark run.
#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    /// Runs of the long operations (full H, G).
    pub long_runs: usize,
    pub warmup: usize,
}

/// Runs every operation of `workload` on `device` and returns the rows;
/// `peak_gflops` is the device's measured peak.
pub fn run_workload(
    workload: Workload,
    device: &Device,
    peak_gflops: f64,
    opts: &Options,
    mut progress: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    let mlp = workload.mlp()?;
    let (_, _, data_name) = workload.spec();
    let data = load_named(data_name).map_err(|e| Error::Shape(e.to_string()))?;
    let n = data.x.nrows();
    let mut engine = device.engine(&mlp, data.x.view(), data.t.view())?;
    // Two parameter vectors, alternated run by run: the CPU engine reuses the
    // forward and backward passes of a product at the previous product's θ
    // (as Lanczos and CG see it), and one Hv here means the whole operation.
    let thetas = [mlp.init_params(1), mlp.init_params(2)];
    let mut calls = 0usize;
    let w = mlp.num_params();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let block = Array2::from_shape_fn((BLOCK, w), |_| rng.random_range(-1.0..1.0));
    let v: Vec<f64> = block.row(0).to_vec();
    let rows = 0..n;
    let precision = device.precision();
    let mut out = Vec::new();
    for op in Op::of(workload) {
        let runs = if op.is_long() {
            opts.long_runs
        } else {
            opts.runs
        };
        let warmup = if op.is_long() { 1 } else { opts.warmup };
        let op_rows = op.rows(&mlp, n);
        let r = 0..op_rows;
        // The inverse refresh decomposes factors made once, before its timing.
        let factors = match op {
            Op::KfacInverse => {
                Some(engine.kfac_factors(Fisher::Exact, &thetas[0], rows.clone())?)
            }
            _ => None,
        };
        let seconds = median_seconds(runs, warmup, || {
            calls += 1;
            let theta = &thetas[calls % 2];
            match op {
                Op::Loss => drop(engine.loss(theta, r.clone())?),
                Op::LossGrad => drop(engine.loss_grad(theta, r.clone())?),
                Op::Hv => drop(engine.hvp(theta, r.clone(), &v)?),
                Op::Gv => drop(engine.gvp(theta, r.clone(), &v)?),
                Op::HvBlock16 => drop(engine.hvp_block(theta, r.clone(), block.view())?),
                Op::DiagGgn => drop(engine.diag_ggn(theta, r.clone())?),
                Op::DiagHessian => drop(engine.diag_hessian(theta, r.clone())?),
                Op::Hessian => drop(engine.hessian(theta, r.clone())?),
                Op::Ggn => drop(engine.ggn(theta, r.clone())?),
                Op::KfacFactors => drop(engine.kfac_factors(Fisher::Exact, theta, r.clone())?),
                Op::KfacInverse => {
                    if let Some(f) = &factors {
                        drop(f.eigen()?);
                    }
                }
                Op::PerSampleGrads => drop(engine.per_sample_gradients(theta, r.clone())?),
            }
            Ok(())
        })?;
        let f = flops(&mlp, op_rows, op, device.is_gpu());
        let gflops = f / seconds / 1e9;
        let row = Row {
            workload: workload.name().to_string(),
            network: mlp.describe(),
            n: op_rows,
            device: device.describe(),
            precision: precision.name().to_string(),
            op: op.name().to_string(),
            runs,
            seconds,
            flops: f,
            gflops,
            fraction_of_peak: gflops / peak_gflops,
            peak_gflops,
        };
        progress(&row);
        out.push(row);
    }
    Ok(out)
}

/// One ratio of two operations' times, with the bound the issue's targets set on it
/// where they set one.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    pub name: String,
    /// Measured time of the first over the second.
    pub value: f64,
    /// The target, value ≤ bound: Hv / loss+grad and block16 / Hv on every workload
    /// and device; full H, diag GGN and diag H against Hv for S on the CPU only.
    pub bound: Option<f64>,
    /// The ratio of their FLOP counts: what `value` is when both run at the
    /// same GFLOP/s. A bound below it can only be met by the first operation
    /// running faster per FLOP than the second (e.g. a block of 16 Hv, 16×
    /// the R-passes but one shared forward pass, is 11–12× one Hv's FLOPs).
    pub flop_ratio: f64,
}

/// The ratios of one workload's rows, run `on` a device, that the issue names.
pub fn ratios(rows: &[Row], on: Bench) -> Vec<Ratio> {
    let find = |op: Op| rows.iter().find(|r| r.op == op.name());
    let s_on_cpu = on == Bench::Cpu && rows.first().is_some_and(|r| r.workload == "S");
    let mut out = Vec::new();
    let mut push = |name: &str, a: Op, b: Op, bound: Option<f64>| {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            out.push(Ratio {
                name: name.to_string(),
                value: a.seconds / b.seconds,
                bound,
                flop_ratio: a.flops / b.flops,
            });
        }
    };
    push("Hv / loss+grad", Op::Hv, Op::LossGrad, Some(2.0));
    push("block16 / Hv", Op::HvBlock16, Op::Hv, Some(8.0));
    let w = Workload::S.mlp().map_or(0.0, |m| m.num_params() as f64);
    let on_s = |bound: f64| s_on_cpu.then_some(bound);
    push("full H / Hv", Op::Hessian, Op::Hv, on_s(w / 4.0));
    push("diag GGN / Hv", Op::DiagGgn, Op::Hv, on_s(4.0));
    push("diag H / Hv", Op::DiagHessian, Op::Hv, on_s(25.0));
    out
}

/// One Hv against one of the issue's absolute targets.
#[derive(Clone, Debug, PartialEq)]
pub struct HvTarget {
    pub what: String,
    pub measured: String,
    pub target: String,
    /// None where the target is not judged: the GPU targets are for a real GPU, and a
    /// software adapter is only measured against them.
    pub met: Option<bool>,
}

/// Where a benchmark ran, for the targets that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    Cpu,
    Gpu { software: bool },
}

impl Bench {
    pub fn of(device: &Device) -> Bench {
        match device {
            Device::Gpu(ctx) => Bench::Gpu {
                software: ctx.summary().is_software,
            },
            _ => Bench::Cpu,
        }
    }
}

/// One Hv against the issue's absolute targets, where they apply: on the CPU in f32 at
/// ≥ 35% (S) or ≥ 70% (M, L) of the measured peak; on a real GPU, L at ≥ 30% of its
/// peak and S submit to result under 1 ms.
pub fn hv_targets(rows: &[Row], on: Bench) -> Vec<HvTarget> {
    let Some(hv) = rows.iter().find(|r| r.op == Op::Hv.name()) else {
        return Vec::new();
    };
    let judged = |met: bool| match on {
        Bench::Gpu { software: true } => None,
        _ => Some(met),
    };
    let share = |min: f64| HvTarget {
        what: "Hv share of peak".to_string(),
        measured: format!("{:.1}%", 100.0 * hv.fraction_of_peak),
        target: format!("≥ {:.0}%", 100.0 * min),
        met: judged(hv.fraction_of_peak >= min),
    };
    match (on, hv.workload.as_str(), hv.precision.as_str()) {
        (Bench::Cpu, "S", "f32") => vec![share(0.35)],
        (Bench::Cpu, "M" | "L", "f32") => vec![share(0.70)],
        (Bench::Gpu { .. }, "L", _) => vec![share(0.30)],
        (Bench::Gpu { .. }, "S", _) => vec![HvTarget {
            what: "Hv submit to result".to_string(),
            measured: format!("{:.3} ms", hv.seconds * 1e3),
            target: "< 1 ms".to_string(),
            met: judged(hv.seconds < 1e-3),
        }],
        _ => Vec::new(),
    }
}
