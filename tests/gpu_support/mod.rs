//! Shared helpers of the GPU parity tests: one context per test binary, the one
//! comparator, the named tolerances, and seeded random networks and data.
#![allow(dead_code)]

use curvature::gpu::kernels::Kernel;
use curvature::gpu::{AdapterChoice, AdapterOptions, GpuContext, GpuEngine};
use curvature::{Activation, Loss, Mlp};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, OnceLock};

/// Whether a `curvature` child process failed for want of a GPU adapter: the
/// caller's test then skips (this prints `SKIPPED (no GPU adapter)`) — unless
/// CURVATURE_REQUIRE_GPU=1, where a missing adapter is a failure (a panic here).
pub fn child_found_no_gpu(out: &std::process::Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains("no GPU adapter") {
        return false;
    }
    if std::env::var("CURVATURE_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("CURVATURE_REQUIRE_GPU=1 but no GPU adapter: {err}");
    }
    println!("SKIPPED (no GPU adapter)");
    true
}

/// The context shared by every test in this binary, or `None` (after printing
/// `SKIPPED (no GPU adapter)`) when there is no adapter — unless CURVATURE_REQUIRE_GPU=1,
/// where a missing adapter is a failure. Software adapters are allowed (CI uses llvmpipe).
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        let opts = AdapterOptions {
            choice: AdapterChoice::Gpu,
            name: std::env::var("CURVATURE_ADAPTER").ok(),
        };
        let ctx = GpuContext::new(&opts).map_err(|e| e.to_string());
        if let Ok(c) = &ctx {
            eprintln!(
                "GPU adapter: {} ({}, {}); matmul: {}",
                c.summary().name,
                c.summary().backend,
                c.summary().device_type,
                c.matmul_variant()
            );
        }
        ctx
    });
    match ctx {
        Ok(c) => Some(c.clone()),
        Err(reason) => {
            if std::env::var("CURVATURE_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("CURVATURE_REQUIRE_GPU=1 but no GPU context: {reason}");
            }
            println!("SKIPPED (no GPU adapter): {reason}");
            None
        }
    }
}

/// The crate's one comparator's tolerance, |g − c| ≤ abs + rel·|c| (`curvature::compare`).
pub use curvature::engine::compare::Tolerance as Tol;

/// `tol` with `abs` multiplied by the largest |c| (`Tolerance::scaled_to`).
pub fn scaled_to(tol: Tol, reference: &[f64]) -> Tol {
    tol.scaled_to(reference)
}

/// f32 unit roundoff, 2⁻²⁴.
pub const F32_U: f64 = 5.96e-8;

// The rows of the crate's one tolerance table (`curvature::engine::compare`, whose
// header gives each one's reason).
pub const TOL_MATMUL: Tol = curvature::engine::compare::F32_MATRIX_PRODUCT;
pub const TOL_FORWARD: Tol = curvature::engine::compare::F32_VALUES;
pub const TOL_GRADIENT: Tol = curvature::engine::compare::F32_GRADIENT;
pub const TOL_CURVATURE: Tol = curvature::engine::compare::F32_CURVATURE;

/// The crate's one comparator (`curvature::engine::compare::compare`): Ok(the worst error as a
/// fraction of its allowance) or Err(its report: worst index, first mismatches).
pub fn compare(what: &str, gpu: &[f64], cpu: &[f64], tol: Tol) -> Result<f64, String> {
    let result = curvature::engine::compare::compare(gpu, cpu, tol);
    if !result.passed() {
        return Err(format!("{what}: {result}"));
    }
    Ok(gpu
        .iter()
        .zip(cpu)
        .map(|(g, c)| (g - c).abs() / (tol.abs + tol.rel * c.abs()))
        .fold(0.0f64, f64::max))
}

/// `compare`, panicking with its report; prints the worst error for the record.
pub fn assert_close(what: &str, gpu: &[f64], cpu: &[f64], tol: Tol) {
    match compare(what, gpu, cpu, tol) {
        Ok(ratio) => {
            let worst = gpu
                .iter()
                .zip(cpu)
                .map(|(g, c)| (g - c).abs())
                .fold(0.0f64, f64::max);
            println!("{what}: max |Δ| {worst:.3e}, {ratio:.3} of allowed");
        }
        Err(report) => panic!("{report}"),
    }
}

/// A seeded random case: a network, θ (Glorot, biases perturbed off zero so they matter)
/// and data X (n, D) uniform in (−1, 1), T fitting the loss (one-hot for ce, 0/1 for bce,
/// uniform for sse/mse).
pub struct Case {
    pub mlp: Mlp,
    pub theta: Vec<f64>,
    pub x: Array2<f64>,
    pub t: Array2<f64>,
}

impl Case {
    pub fn new(
        sizes: &[usize],
        hidden: Activation,
        loss: Loss,
        l2: f64,
        n: usize,
        seed: u64,
    ) -> Case {
        let mlp = Mlp::with_hidden(sizes, hidden, loss, l2).expect("valid test network");
        Case::with_mlp(mlp, n, seed)
    }

    pub fn with_mlp(mlp: Mlp, n: usize, seed: u64) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut theta = mlp.init_params(seed);
        for layer in mlp.layout() {
            for b in &mut theta[layer.bias] {
                *b = rng.random_range(-0.3..0.3);
            }
        }
        let (d, k) = (mlp.num_inputs(), mlp.num_outputs());
        let x = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0..1.0));
        let t = match mlp.loss() {
            Loss::Ce => {
                let mut t = Array2::zeros((n, k));
                for r in 0..n {
                    t[[r, rng.random_range(0..k)]] = 1.0;
                }
                t
            }
            Loss::Bce => {
                Array2::from_shape_fn((n, k), |_| if rng.random_bool(0.5) { 1.0 } else { 0.0 })
            }
            Loss::Sse | Loss::Mse => Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0..1.0)),
        };
        Case { mlp, theta, x, t }
    }

    /// A GPU engine bound to this case's data (as f32). CURVATURE_MATMUL=tiled|reg forces
    /// a matmul variant, so the whole suite can be run with each.
    pub fn engine(&self, ctx: &Arc<GpuContext>) -> GpuEngine {
        let eng = GpuEngine::new(
            ctx.clone(),
            &self.mlp,
            self.x.mapv(|v| v as f32).view(),
            self.t.mapv(|v| v as f32).view(),
        )
        .expect("engine");
        match std::env::var("CURVATURE_MATMUL").as_deref() {
            Ok("tiled") => eng.with_matmul_kernel(Kernel::MatmulTiled),
            Ok("reg") => eng.with_matmul_kernel(Kernel::MatmulReg),
            _ => eng,
        }
    }

    /// Seeded random vectors V (k, W) in (−1, 1).
    pub fn vectors(&self, k: usize, seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((k, self.mlp.num_params()), |_| rng.random_range(-1.0..1.0))
    }
}

/// The output activation that goes with each loss, for the sweep over losses.
pub fn losses() -> [Loss; 4] {
    Loss::ALL
}

/// The entries of a matrix in row-major order, whatever its memory layout.
pub fn flat(a: &Array2<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

/// An engine seen without its device updates (`Backend::device_training` is None):
/// `train` then steps the optimizer on the host through it — the path every update
/// took before the device path, which the device path is compared with.
pub struct HostPath(pub Box<dyn curvature::Curvature>);

impl curvature::Backend for HostPath {
    fn architecture(&self) -> &Mlp {
        self.0.architecture()
    }
    fn data_rows(&self) -> usize {
        self.0.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: std::ops::Range<usize>) -> curvature::Result<f64> {
        self.0.data_loss(theta, rows)
    }
    fn data_loss_grad(
        &mut self,
        theta: &[f64],
        rows: std::ops::Range<usize>,
    ) -> curvature::Result<(f64, Vec<f64>)> {
        self.0.data_loss_grad(theta, rows)
    }
    fn network_outputs(
        &mut self,
        theta: &[f64],
        rows: std::ops::Range<usize>,
    ) -> curvature::Result<Array2<f64>> {
        self.0.network_outputs(theta, rows)
    }
    fn data_products(
        &mut self,
        kind: curvature::Kind,
        theta: &[f64],
        rows: std::ops::Range<usize>,
        v: ndarray::ArrayView2<f64>,
    ) -> curvature::Result<Array2<f64>> {
        self.0.data_products(kind, theta, rows, v)
    }
    fn data_diagonal(
        &mut self,
        which: curvature::Diagonal,
        theta: &[f64],
        rows: std::ops::Range<usize>,
    ) -> curvature::Result<Vec<f64>> {
        self.0.data_diagonal(which, theta, rows)
    }
    fn bind_data(
        &mut self,
        x: ndarray::ArrayView2<f32>,
        t: ndarray::ArrayView2<f32>,
    ) -> curvature::Result<()> {
        self.0.bind_data(x, t)
    }
    fn limits(&self) -> curvature::engine::Limits {
        self.0.limits()
    }
    fn precision(&self) -> curvature::engine::Precision {
        self.0.precision()
    }
}

/// A GPU engine on `ctx` bound to (x, t) for `train`: with its device updates, or
/// (`host`) behind [`HostPath`].
pub fn training_engine(
    ctx: &Arc<GpuContext>,
    mlp: &Mlp,
    x: ndarray::ArrayView2<f32>,
    t: ndarray::ArrayView2<f32>,
    host: bool,
) -> curvature::Result<Box<dyn curvature::Curvature>> {
    let engine: Box<dyn curvature::Curvature> = Box::new(GpuEngine::new(ctx.clone(), mlp, x, t)?);
    Ok(if host {
        Box::new(HostPath(engine))
    } else {
        engine
    })
}
