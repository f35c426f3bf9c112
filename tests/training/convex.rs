//! Every optimizer reaches the known optimum of two convex problems:
//! (a) least squares — one layer, identity output, `sse`, λ = 0.01 — whose
//!     optimum solves the normal equations (X̃ᵀX̃/N + λI_w) w̃_k = X̃ᵀt_k/N;
//! (b) L2-regularised logistic regression — one layer, sigmoid + `bce`,
//!     λ = 0.1 — whose optimum (∇E = 0) is found here by Newton's method in
//!     plain f64 to ‖∇E‖ < 1e-14.
//! Both references are computed in this file from the data alone, not by the
//! engine. Each optimizer runs full-batch from θ = 0 with the iteration budget
//! in `optimizers()` and must end within the device's `theta_tolerance`.
//! Written over `Device` so the GPU variant is one more test with its device.

use crate::gpu_support;
use crate::optim_support;
use curvature::optim::OptimizerSpec;
use curvature::{Activation, Loss, Mlp};
use ndarray::{Array2, ArrayView2};
use optim_support::{max_abs_diff, min_eigenvalue, run, spd_solve, uniform_inputs, Device, CPU};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 64;
const D: usize = 3;

/// A convex problem: the network, its data and the optimum θ* (W).
struct Problem {
    name: &'static str,
    mlp: Mlp,
    x: Array2<f32>,
    t: Array2<f32>,
    optimum: Vec<f64>,
    /// An upper bound on the largest Hessian eigenvalue: GD's step is 1/this.
    curvature_bound: f64,
}

/// X̃ = [X, 1] (N, D+1) in f64.
fn augmented(x: ArrayView2<f32>) -> Array2<f64> {
    let (n, d) = x.dim();
    Array2::from_shape_fn(
        (n, d + 1),
        |(i, j)| if j < d { x[[i, j]] as f64 } else { 1.0 },
    )
}

/// X̃ᵀ diag(s) X̃ / N + λ diag(1,…,1,0) ((D+1), (D+1)): the per-output Hessian.
fn weighted_gram(xa: &Array2<f64>, s: &[f64], l2: f64) -> Array2<f64> {
    let (n, m) = xa.dim();
    let mut a = Array2::<f64>::zeros((m, m));
    for r in 0..n {
        for i in 0..m {
            for j in 0..m {
                a[[i, j]] += s[r] * xa[[r, i]] * xa[[r, j]] / n as f64;
            }
        }
    }
    for i in 0..m - 1 {
        a[[i, i]] += l2;
    }
    a
}

/// Per-output augmented weights w̃_k (D+1) into θ: W (K, D) row-major, then b (K).
fn to_theta(w: &[Vec<f64>]) -> Vec<f64> {
    let k = w.len();
    let d = w[0].len() - 1;
    let mut theta = vec![0.0; k * (d + 1)];
    for (o, wk) in w.iter().enumerate() {
        theta[o * d..(o + 1) * d].copy_from_slice(&wk[..d]);
        theta[k * d + o] = wk[d];
    }
    theta
}

fn least_squares() -> Problem {
    const K: usize = 2;
    const L2: f64 = 0.01;
    let x = uniform_inputs(N, D, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let t = Array2::from_shape_fn((N, K), |(n, k)| {
        let signal: f32 = (0..D)
            .map(|i| x[[n, i]] * (i as f32 + 1.0 - k as f32))
            .sum();
        signal + 0.5 + rng.random_range(-0.3f32..0.3)
    });
    let xa = augmented(x.view());
    let gram = weighted_gram(&xa, &[1.0; N], L2);
    let w: Vec<Vec<f64>> = (0..K)
        .map(|k| {
            let rhs: Vec<f64> = (0..D + 1)
                .map(|i| (0..N).map(|n| xa[[n, i]] * t[[n, k]] as f64).sum::<f64>() / N as f64)
                .collect();
            spd_solve(&gram, &rhs)
        })
        .collect();
    let lambda_min = min_eigenvalue(&gram);
    assert!(lambda_min >= 0.05, "least squares: λ_min = {lambda_min}");
    Problem {
        name: "least squares",
        mlp: Mlp::new(&[D, K], &[Activation::Identity], Loss::Sse, L2).unwrap(),
        optimum: to_theta(&w),
        curvature_bound: gram.diag().sum(), // λ_max ≤ trace for a PSD matrix
        x,
        t,
    }
}

fn logistic() -> Problem {
    const L2: f64 = 0.1;
    let x = uniform_inputs(N, D, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // A noisy linear rule: the classes overlap, so the data are not separable.
    let t = Array2::from_shape_fn((N, 1), |(n, _)| {
        let s =
            2.0 * x[[n, 0]] - x[[n, 1]] + 0.5 * x[[n, 2]] + 0.3 + rng.random_range(-1.0f32..1.0);
        f32::from(s > 0.0)
    });
    let xa = augmented(x.view());
    let tv: Vec<f64> = t.iter().map(|&v| v as f64).collect();
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    // Newton's method on the regularised logistic loss, in plain f64.
    let mut w = vec![0.0; D + 1];
    let mut hessian = weighted_gram(&xa, &[0.25; N], L2);
    for _ in 0..100 {
        let p: Vec<f64> = (0..N)
            .map(|n| sigmoid((0..D + 1).map(|i| xa[[n, i]] * w[i]).sum()))
            .collect();
        let mut g: Vec<f64> = (0..D + 1)
            .map(|i| (0..N).map(|n| xa[[n, i]] * (p[n] - tv[n])).sum::<f64>() / N as f64)
            .collect();
        for i in 0..D {
            g[i] += L2 * w[i];
        }
        let s: Vec<f64> = p.iter().map(|p| p * (1.0 - p)).collect();
        hessian = weighted_gram(&xa, &s, L2);
        if g.iter().map(|v| v * v).sum::<f64>().sqrt() < 1e-14 {
            break;
        }
        let step = spd_solve(&hessian, &g);
        for i in 0..D + 1 {
            w[i] -= step[i];
        }
    }
    let lambda_min = min_eigenvalue(&hessian);
    assert!(lambda_min >= 0.05, "logistic: λ_min = {lambda_min}");
    Problem {
        name: "logistic regression",
        mlp: Mlp::new(&[D, 1], &[Activation::Sigmoid], Loss::Bce, L2).unwrap(),
        optimum: to_theta(&[w]),
        // σ(1 − σ) ≤ ¼, so the Hessian is below the Gram matrix with weights ¼.
        curvature_bound: weighted_gram(&xa, &[0.25; N], L2).diag().sum(),
        x,
        t,
    }
}

/// Every optimizer with the parameters and iteration budget of these tests.
/// First-order steps use η = 1/L with L ≥ λ_max (`curvature_bound`), the
/// classical safe step; Hessian-diagonal uses η = ¼ because each output's
/// block of D⁻¹H is 4×4 with unit diagonal, so its eigenvalues are ≤ 4 and
/// η·λ_max(D⁻¹H) ≤ 1 < 2. Budgets are generous multiples of what each needs.
fn optimizers(p: &Problem) -> Vec<(String, OptimizerSpec, usize)> {
    let lr = (1.0 / p.curvature_bound).to_string();
    let spec = |name: &str, params: &str, budget: usize| {
        let mut s: OptimizerSpec = name.parse().unwrap();
        s.set_all(params).unwrap();
        (format!("{name} {params}"), s, budget)
    };
    vec![
        spec("gd", &format!("lr={lr}"), 5000),
        spec("momentum", &format!("lr={lr}"), 5000),
        spec("nesterov", &format!("lr={lr}"), 5000),
        spec("newton", "", 100),
        spec("hessian-diag", "lr=0.25", 5000),
        spec("lm", "", 100),
        spec("cg-fr", "", 500),
        spec("cg-pr", "", 500),
        spec("cg-hs", "", 500),
        spec("cg-dy", "", 500),
        spec("cg-pr", "line-search=hessian", 500),
        spec("cg-fr", "line-search=hessian", 500),
        spec("bfgs", "", 200),
        spec("lbfgs", "", 200),
        spec("hf", "", 100),
        spec("hf", "preconditioner=true", 100),
    ]
}

/// Whether the method accepts or sizes steps by comparing values of E (line
/// searches, reduction ratios); gradient descent and the Hessian-diagonal
/// method use gradients (and curvature) alone.
fn compares_losses(spec: &OptimizerSpec) -> bool {
    !matches!(
        spec,
        OptimizerSpec::GradientDescent(_) | OptimizerSpec::HessianDiagonal(_)
    )
}

fn check_all(device: &Device, problem: &Problem) {
    let mut failures = Vec::new();
    for (label, spec, budget) in optimizers(problem) {
        let mut engine = (device.make)(&problem.mlp, problem.x.view(), problem.t.view());
        let mut theta = vec![0.0; problem.mlp.num_params()];
        let reports = run(&spec, engine.as_mut(), &mut theta, budget, device.grad_stop);
        let err = max_abs_diff(&theta, &problem.optimum);
        let tolerance = if compares_losses(&spec) {
            device.loss_limited_tolerance
        } else {
            device.theta_tolerance
        };
        let last = reports.last().unwrap();
        println!(
            "{} {} {:<28} steps {:>5} ‖g‖ {:.2e} max|θ−θ*| {:.2e}",
            device.name,
            problem.name,
            label,
            reports.len(),
            last.grad_norm,
            err
        );
        if err > tolerance || err.is_nan() {
            failures.push(format!(
                "{label} ({} steps): max|θ−θ*| = {err:e}",
                reports.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}: {failures:#?}", problem.name);
}

#[test]
fn every_optimizer_reaches_the_least_squares_optimum_on_cpu() {
    check_all(&CPU, &least_squares());
}

#[test]
fn every_optimizer_reaches_the_logistic_regression_optimum_on_cpu() {
    check_all(&CPU, &logistic());
}

/// The GPU (f32) engine on the shared test context.
fn gpu_engine(
    mlp: &Mlp,
    x: ndarray::ArrayView2<f32>,
    t: ndarray::ArrayView2<f32>,
) -> Box<dyn curvature::Curvature> {
    let ctx = gpu_support::gpu().expect("checked by the caller");
    Box::new(curvature::gpu::GpuEngine::new(ctx, mlp, x, t).unwrap())
}

/// f32 gradients of these problems carry an absolute error of at most ~1e-6
/// (sums of N = 64 products of magnitude ≤ 4, each rounded at u = 6e-8: 64·4·6e-8
/// ≈ 1.5e-5 in the worst case, ~√64 times less in practice); runs stop once
/// ‖g‖ ≤ 1e-6, above that noise floor. With λ_min ≥ 0.05 (asserted above) a
/// converged run is within (1e-6 + 1e-6) / 0.05 = 4e-5 of θ*; the tolerance
/// is that bound rounded up to 5e-5.
///
/// Methods that compare values of E are limited by the f32 resolution of E
/// instead: near θ*, E(θ* + δ) − E(θ*) ≈ ½λ_min‖δ‖², which they cannot see
/// below the rounding of E (u·E* with u = 6e-8 and E* ≤ 0.7 here), so they can
/// stall at ‖δ‖ ≈ √(2·u·E*/λ_min) = √(2·6e-8·0.7/0.05) ≈ 1.3e-3; the tolerance
/// is that bound rounded up to 1.5e-3.
const GPU: Device = Device {
    name: "gpu",
    make: gpu_engine,
    theta_tolerance: 5e-5,
    loss_limited_tolerance: 1.5e-3,
    grad_stop: 1e-6,
};

/// E* ≤ 0.7, which GPU's loss-limited tolerance assumes.
fn assert_optimal_loss_bound(problem: &Problem) {
    let mut engine = (CPU.make)(&problem.mlp, problem.x.view(), problem.t.view());
    let e = engine.loss(&problem.optimum, 0..N).unwrap();
    assert!(
        e <= 0.7,
        "{}: E* = {e} exceeds the 0.7 the GPU tolerance assumes",
        problem.name
    );
}

#[test]
fn every_optimizer_reaches_the_least_squares_optimum_on_gpu() {
    if gpu_support::gpu().is_some() {
        let problem = least_squares();
        assert_optimal_loss_bound(&problem);
        check_all(&GPU, &problem);
    }
}

#[test]
fn every_optimizer_reaches_the_logistic_regression_optimum_on_gpu() {
    if gpu_support::gpu().is_some() {
        let problem = logistic();
        assert_optimal_loss_bound(&problem);
        check_all(&GPU, &problem);
    }
}
