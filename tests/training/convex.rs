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
//! Then adam, adamw, rmsprop and adagrad against PyTorch's update rules written
//! out by hand, and the per-epoch schedule through `train`.

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
/// Gradient descent uses η = 1/L with L ≥ λ_max (`curvature_bound`), the
/// classical safe step; the adaptive methods (whose steps are about η per
/// entry) a rate well below the distances to θ*; Hessian-diagonal uses η = ¼ because each output's
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
        spec("adam", "lr=0.01", 5000),
        spec("adamw", "lr=0.01,weight-decay=0", 5000),
        spec("adam", "lr=0.01,amsgrad=true", 5000),
        // Plain RMSprop at a constant rate does not converge: near θ* it
        // divides a vanishing g by a vanishing √v and ends oscillating about
        // η/2 from θ* (5.0e-3 for η = 1e-2 on both problems); with momentum
        // and a smaller η it converges.
        spec("rmsprop", "lr=0.001,momentum=0.9", 5000),
        spec("rmsprop", "lr=0.001,momentum=0.9,centered=true", 5000),
        spec("adagrad", "lr=0.1", 5000),
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
        // K-FAC on the full batch: the default mc factors (one sampled target per
        // row, a new draw each update) and the exact ones.
        spec("kfac", "", 200),
        spec("kfac", "fisher=exact", 200),
        spec("kfac", "fisher=empirical,tikhonov=plain", 200),
    ]
}

/// Whether the method accepts or sizes steps by comparing values of E (line
/// searches, reduction ratios); the first-order and the Hessian-diagonal
/// methods use gradients (and curvature) alone.
fn compares_losses(spec: &OptimizerSpec) -> bool {
    !matches!(
        spec,
        OptimizerSpec::GradientDescent(_)
            | OptimizerSpec::Adam(_)
            | OptimizerSpec::RmsProp(_)
            | OptimizerSpec::Adagrad(_)
            | OptimizerSpec::HessianDiagonal(_)
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

/// Where K-FAC is exact — one layer of weights, identity output, `sse`, λ = 0 — its
/// Kronecker product is the Gauss-Newton matrix itself: B = I_K (the square root of
/// sse's output Hessian is I), A = X̃ᵀX̃/N, and G = I_K ⊗ A on the layer's [W | b]
/// (per output k, the (D+1)² block A on w̃_k). The first K-FAC step has no previous
/// step (1-D), and its α is exactly 1 when the preconditioner is the damped matrix of
/// the quadratic model: α = −gᵀΔ / Δᵀ(G + λI)Δ = 1 for Δ = −(G + λI)⁻¹g. So with the
/// exact factors (`fisher=exact`) the first step is
/// (a) with `tikhonov=plain` and damping λ = 0.3: the damped Gauss-Newton
///     (Levenberg-Marquardt) step −(G + λI)⁻¹g, per output −(A + λI)⁻¹g̃_k, to
///     rounding (1e-12 relative);
/// (b) with the paper's factored damping (A + π√λ I) ⊗ (I + (√λ/π) I) at λ = 1e-8 (the
///     floor): the Gauss-Newton step −G⁻¹g. The factor (1 + √λ/π) only scales Δ, which
///     α undoes; what is left is (A + π√λ I)⁻¹ for A⁻¹, a relative difference of at
///     most about π√λ/λ_min(A) (π = √(tr A/(D+1)), B's mean eigenvalue being 1): twice
///     that is the tolerance, computed from the data (≈ 5e-4 here).
/// The references are solved here from the data (the Gram matrix, the gradient in
/// plain loops), not by the engine: factors of another layout, a transposed
/// eigenbasis, a bias in the wrong place or a wrong damping show as O(1) differences.
#[test]
fn kfac_first_step_is_the_damped_gauss_newton_step_where_kfac_is_exact() {
    let mut p = least_squares();
    p.mlp = Mlp::new(&[D, 2], &[Activation::Identity], Loss::Sse, 0.0).unwrap();
    let k = p.t.ncols();
    let gram = weighted_gram(&augmented(p.x.view()), &[1.0; N], 0.0); // A (D+1, D+1)
    let theta0 = reference_start(p.mlp.num_params());
    let g = least_squares_gradient(&p, &theta0);
    let pi = (gram.diag().sum() / (D + 1) as f64).sqrt();
    let factored_tolerance = 2.0 * pi * 1e-8f64.sqrt() / min_eigenvalue(&gram);
    for (params, lambda, tolerance) in [
        ("fisher=exact,tikhonov=plain,damping=0.3", 0.3, 1e-12),
        ("fisher=exact,damping=1e-8", 0.0, factored_tolerance),
    ] {
        let mut shifted = gram.clone();
        for i in 0..=D {
            shifted[[i, i]] += lambda;
        }
        let per_output: Vec<Vec<f64>> = (0..k)
            .map(|o| {
                let mut g_k: Vec<f64> = g[o * D..(o + 1) * D].to_vec();
                g_k.push(g[k * D + o]);
                spd_solve(&shifted, &g_k).iter().map(|v| -v).collect()
            })
            .collect();
        let want = to_theta(&per_output);
        let mut engine = (CPU.make)(&p.mlp, p.x.view(), p.t.view());
        let mut theta = theta0.clone();
        let report = parsed("kfac", params)
            .build()
            .step(engine.as_mut(), &mut theta, 0..N)
            .unwrap();
        assert!(report.accepted, "{params}: the first step was rejected");
        let got: Vec<f64> = theta.iter().zip(&theta0).map(|(t, t0)| t - t0).collect();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&got, &want) / scale;
        println!("kfac {params}: first step vs the damped Gauss-Newton step: relative {err:.2e} (tolerance {tolerance:.1e}, step scale {scale:.2})");
        assert!(err <= tolerance, "{params}: relative difference {err:e}");
    }
}

// ---- The adaptive first-order methods against hand-written references ----
//
// Each reference below is PyTorch's algorithm box (torch.optim.Adam, AdamW,
// RMSprop, Adagrad) written out in plain f64 loops over the least-squares
// problem's gradient, itself computed here from the data (not by the engine),
// so a difference is the optimizer's. Ten full-batch steps from a θ₀ with
// non-zero weights and biases; θ must agree after every step to 1e-12 (the
// two sides differ only in rounding: a few ulps of O(1) values per step).

/// Largest allowed |θ_i − θ_ref,i| after each of the ten steps.
const REFERENCE_TOLERANCE: f64 = 1e-12;
const REFERENCE_STEPS: usize = 10;

/// ∇E of the least-squares problem (sse, λ on weights) at θ, in plain loops:
/// ∂E/∂W_ki = (1/N) Σ_n r_nk x_ni + λ W_ki, ∂E/∂b_k = (1/N) Σ_n r_nk with
/// r_nk = Σ_i W_ki x_ni + b_k − t_nk.
fn least_squares_gradient(p: &Problem, theta: &[f64]) -> Vec<f64> {
    let (n, d) = p.x.dim();
    let k = p.t.ncols();
    let mut g = vec![0.0; theta.len()];
    for r in 0..n {
        for o in 0..k {
            let mut y = theta[k * d + o];
            for i in 0..d {
                y += theta[o * d + i] * f64::from(p.x[[r, i]]);
            }
            let res = (y - f64::from(p.t[[r, o]])) / n as f64;
            for i in 0..d {
                g[o * d + i] += res * f64::from(p.x[[r, i]]);
            }
            g[k * d + o] += res;
        }
    }
    for j in 0..k * d {
        g[j] += p.mlp.l2() * theta[j];
    }
    g
}

/// θ₀ with every weight and bias non-zero (so decoupled decay shows).
fn reference_start(w: usize) -> Vec<f64> {
    (0..w)
        .map(|i| 0.3 * (i as f64 + 1.0) * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

/// Runs `spec` for REFERENCE_STEPS full-batch steps (telling it epoch t of
/// REFERENCE_STEPS before step t) beside `reference` (called with t = 1, 2, …,
/// θ and the reference gradient), and checks θ after every step.
fn check_against_reference(
    label: &str,
    spec: &OptimizerSpec,
    mut reference: impl FnMut(usize, &mut [f64], &[f64]),
) {
    let p = least_squares();
    let mut engine = (CPU.make)(&p.mlp, p.x.view(), p.t.view());
    let w = p.mlp.num_params();
    let mut theta = reference_start(w);
    let mut theta_ref = theta.clone();
    // The reference gradient is the engine's (so both sides see one problem).
    let g0 = engine.loss_grad(&theta, 0..N).unwrap().1;
    let g0_ref = least_squares_gradient(&p, &theta);
    assert!(
        max_abs_diff(&g0, &g0_ref) < 1e-14,
        "{label}: gradients differ"
    );
    let mut opt = spec.build();
    let mut moved = 0.0f64;
    for t in 1..=REFERENCE_STEPS {
        opt.start_epoch(t, REFERENCE_STEPS);
        let before = theta.clone();
        opt.step(engine.as_mut(), &mut theta, 0..N).unwrap();
        let g = least_squares_gradient(&p, &theta_ref);
        reference(t, &mut theta_ref, &g);
        let err = max_abs_diff(&theta, &theta_ref);
        assert!(
            err <= REFERENCE_TOLERANCE,
            "{label}: step {t}: max|θ − θ_ref| = {err:e}"
        );
        moved = moved.max(max_abs_diff(&theta, &before));
    }
    assert!(moved > 1e-3, "{label}: θ hardly moved ({moved:e})");
    println!("{label}: {REFERENCE_STEPS} steps within {REFERENCE_TOLERANCE:e} of the reference");
}

fn parsed(name: &str, params: &str) -> OptimizerSpec {
    let mut s: OptimizerSpec = name.parse().unwrap();
    s.set_all(params).unwrap();
    s
}

/// PyTorch's Adam / AdamW / AMSGrad box: with γ the rate of step t,
/// (AdamW) θ ← θ − γ·wd·θ; m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
/// m̂ = m/(1 − β₁ᵗ); v_max ← max(v_max, v) (AMSGrad); v̂ = v(or v_max)/(1 − β₂ᵗ);
/// θ ← θ − γ m̂/(√v̂ + ε). AdamW's decay here on weights only (the project's
/// convention; the first K·D entries of θ).
fn adam_reference(
    w: usize,
    weights: usize,
    lr: impl Fn(usize) -> f64,
    (b1, b2, eps): (f64, f64, f64),
    amsgrad: bool,
    wd: Option<f64>,
) -> impl FnMut(usize, &mut [f64], &[f64]) {
    let (mut m, mut v, mut v_max) = (vec![0.0f64; w], vec![0.0f64; w], vec![0.0f64; w]);
    move |t, theta, g| {
        let gamma = lr(t);
        if let Some(wd) = wd {
            for x in &mut theta[..weights] {
                *x -= gamma * wd * *x;
            }
        }
        for i in 0..w {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let m_hat = m[i] / (1.0 - b1.powi(t as i32));
            let second = if amsgrad {
                v_max[i] = v_max[i].max(v[i]);
                v_max[i]
            } else {
                v[i]
            };
            let v_hat = second / (1.0 - b2.powi(t as i32));
            theta[i] -= gamma * m_hat / (v_hat.sqrt() + eps);
        }
    }
}

#[test]
fn adam_and_adamw_match_pytorchs_update() {
    let w = 8; // 2 outputs × (3 weights + 1 bias)
    let weights = 6;
    let constant = |lr: f64| move |_t: usize| lr;
    check_against_reference(
        "adam lr=0.05",
        &parsed("adam", "lr=0.05"),
        adam_reference(w, weights, constant(0.05), (0.9, 0.999, 1e-8), false, None),
    );
    // β₂ = 0.9 forgets fast, so v falls below its maximum and AMSGrad differs.
    check_against_reference(
        "adam amsgrad",
        &parsed("adam", "lr=0.05,beta1=0.8,beta2=0.9,eps=1e-6,amsgrad=true"),
        adam_reference(w, weights, constant(0.05), (0.8, 0.9, 1e-6), true, None),
    );
    check_against_reference(
        "adamw wd=0.5",
        &parsed("adamw", "lr=0.05,weight-decay=0.5"),
        adam_reference(
            w,
            weights,
            constant(0.05),
            (0.9, 0.999, 1e-8),
            false,
            Some(0.5),
        ),
    );
    // A schedule scales both the step and the decoupled decay: cosine from
    // 0.05 to 0.005 over the ten "epochs" (one step each).
    let cosine = |t: usize| {
        let c = (std::f64::consts::PI * (t - 1) as f64 / REFERENCE_STEPS as f64).cos();
        0.005 + (0.05 - 0.005) * (1.0 + c) / 2.0
    };
    check_against_reference(
        "adamw cosine amsgrad",
        &parsed(
            "adamw",
            "lr=0.05,weight-decay=0.5,amsgrad=true,schedule=cosine,min-lr=0.005",
        ),
        adam_reference(w, weights, cosine, (0.9, 0.999, 1e-8), true, Some(0.5)),
    );
}

/// PyTorch's RMSprop box: v ← αv + (1 − α)g²; centered: ḡ ← αḡ + (1 − α)g,
/// ṽ = v − ḡ²; μ > 0: b ← μb + g/(√ṽ + ε), θ ← θ − γb; else θ ← θ − γg/(√ṽ + ε).
fn rmsprop_reference(
    w: usize,
    lr: f64,
    (alpha, eps): (f64, f64),
    momentum: f64,
    centered: bool,
) -> impl FnMut(usize, &mut [f64], &[f64]) {
    let (mut v, mut g_ave, mut b) = (vec![0.0; w], vec![0.0; w], vec![0.0; w]);
    move |_t, theta, g| {
        for i in 0..w {
            v[i] = alpha * v[i] + (1.0 - alpha) * g[i] * g[i];
            let mut v_tilde = v[i];
            if centered {
                g_ave[i] = g_ave[i] * alpha + (1.0 - alpha) * g[i];
                v_tilde -= g_ave[i] * g_ave[i];
            }
            if momentum > 0.0 {
                b[i] = momentum * b[i] + g[i] / (v_tilde.sqrt() + eps);
                theta[i] -= lr * b[i];
            } else {
                theta[i] -= lr * g[i] / (v_tilde.sqrt() + eps);
            }
        }
    }
}

#[test]
fn rmsprop_plain_centered_and_with_momentum_match_pytorchs_update() {
    let w = 8;
    for (params, lr, alpha, eps, momentum, centered) in [
        ("", 1e-2, 0.99, 1e-8, 0.0, false),
        (
            "lr=0.02,alpha=0.9,centered=true",
            0.02,
            0.9,
            1e-8,
            0.0,
            true,
        ),
        ("lr=0.005,momentum=0.9", 0.005, 0.99, 1e-8, 0.9, false),
        (
            "lr=0.005,alpha=0.95,eps=1e-6,momentum=0.5,centered=true",
            0.005,
            0.95,
            1e-6,
            0.5,
            true,
        ),
    ] {
        check_against_reference(
            &format!("rmsprop {params}"),
            &parsed("rmsprop", params),
            rmsprop_reference(w, lr, (alpha, eps), momentum, centered),
        );
    }
}

/// PyTorch's Adagrad box: γ̃ = γ/(1 + (t − 1)η); s ← s + g² (s₀ = τ);
/// θ ← θ − γ̃ g/(√s + ε).
fn adagrad_reference(
    w: usize,
    lr: f64,
    lr_decay: f64,
    tau: f64,
    eps: f64,
) -> impl FnMut(usize, &mut [f64], &[f64]) {
    let mut s = vec![tau; w];
    move |t, theta, g| {
        let clr = lr / (1.0 + (t - 1) as f64 * lr_decay);
        for i in 0..w {
            s[i] += g[i] * g[i];
            theta[i] -= clr * g[i] / (s[i].sqrt() + eps);
        }
    }
}

#[test]
fn adagrad_matches_pytorchs_update() {
    let w = 8;
    check_against_reference(
        "adagrad",
        &parsed("adagrad", ""),
        adagrad_reference(w, 1e-2, 0.0, 0.0, 1e-10),
    );
    check_against_reference(
        "adagrad lr-decay, τ",
        &parsed(
            "adagrad",
            "lr=0.1,lr-decay=0.05,initial-accumulator-value=0.1,eps=1e-8",
        ),
        adagrad_reference(w, 0.1, 0.05, 0.1, 1e-8),
    );
}

/// The training scheduler tells the optimizer each epoch: full-batch gd (one
/// update per epoch) with 2 warm-up epochs from ⅓ and then a step schedule
/// halving every epoch runs with η·[⅓, ⅔, 1, ½, ¼] — checked against plain
/// gradient steps with those rates — and momentum's velocity takes the rate
/// of the epoch of each update.
#[test]
fn train_applies_the_schedule_per_epoch() {
    use curvature::train::{train, DataView, TrainConfig};
    let p = least_squares();
    let eta = 0.2;
    let factors = [1.0 / 3.0, 1.0 / 3.0 + 2.0 / 3.0 * 0.5, 1.0, 0.5, 0.25];
    let config = TrainConfig {
        epochs: factors.len(),
        ..TrainConfig::default()
    };
    let view = DataView {
        x: p.x.view(),
        t: p.t.view(),
    };
    for (name, mu) in [("gd", 0.0), ("momentum", 0.9)] {
        let spec = parsed(
            name,
            &format!("lr={eta},schedule=step,gamma=0.5,step-size=1,warmup=2"),
        );
        let mut theta = reference_start(p.mlp.num_params());
        let mut theta_ref = theta.clone();
        let mut factory = |x: ArrayView2<f32>, t: ArrayView2<f32>| Ok((CPU.make)(&p.mlp, x, t));
        train(
            &config,
            spec.build().as_mut(),
            &mut factory,
            &mut theta,
            view,
            None,
            &mut [],
        )
        .unwrap();
        let mut velocity = vec![0.0; theta.len()];
        for f in factors {
            let g = least_squares_gradient(&p, &theta_ref);
            for i in 0..theta_ref.len() {
                velocity[i] = mu * velocity[i] - eta * f * g[i];
                theta_ref[i] += velocity[i];
            }
        }
        let err = max_abs_diff(&theta, &theta_ref);
        assert!(
            err <= REFERENCE_TOLERANCE,
            "{name}: max|θ − θ_ref| = {err:e}"
        );
    }
}

// ---- The device path of `train`: θ and the optimizer's state on the GPU ----
//
// On a GPU engine `train` runs every first-order update on the device (one submit,
// nothing read back; src/train/device.rs). Each rule below, stepped N = 10 times
// that way, is compared with the same run stepped on the host (the optimizer in f64
// over the same GPU engine behind `HostPath`): same batches, same ∇E kernels.

/// Every first-order rule and option the device runs: (optimizer, `--set` text).
const DEVICE_RULES: [(&str, &str); 11] = [
    ("gd", "lr=0.3"),
    ("momentum", "lr=0.1,momentum=0.9"),
    ("nesterov", "lr=0.1,momentum=0.9"),
    ("adam", "lr=0.02"),
    ("adam", "lr=0.02,beta2=0.9,amsgrad=true"),
    ("adamw", "lr=0.02,weight-decay=0.5"),
    ("rmsprop", "lr=0.01"),
    ("rmsprop", "lr=0.01,centered=true"),
    ("rmsprop", "lr=0.005,momentum=0.9,centered=true"),
    ("rmsprop", "lr=0.005,momentum=0.5"),
    (
        "adagrad",
        "lr=0.1,lr-decay=0.1,initial-accumulator-value=0.1",
    ),
];

/// Rows of the device problem; batches of 4 give N = 10 updates in one epoch.
const DEVICE_ROWS: usize = 40;
const DEVICE_UPDATES: usize = 10;

/// A small non-convex problem: 5-7-3 tanh/softmax ce (W = 66, sizes off every
/// tile) on uniform inputs, the class of each row the argmax of its first three.
fn device_problem(l2: f64) -> (Mlp, Array2<f32>, Array2<f32>) {
    let mlp = Mlp::with_hidden(&[5, 7, 3], Activation::Tanh, Loss::Ce, l2).unwrap();
    let x = uniform_inputs(DEVICE_ROWS, 5, 21);
    let t = Array2::from_shape_fn((DEVICE_ROWS, 3), |(n, k)| {
        let best = (0..3)
            .max_by(|&a, &b| x[[n, a]].total_cmp(&x[[n, b]]))
            .unwrap_or(0);
        f32::from(k == best)
    });
    (mlp, x, t)
}

/// θ after `train` with `spec` on the device problem (seeded start and shuffle),
/// on the device path or (`host`) the host path, with the submits it made.
fn train_device_problem(
    ctx: &std::sync::Arc<curvature::gpu::GpuContext>,
    spec: &OptimizerSpec,
    (l2, epochs, batch): (f64, usize, usize),
    host: bool,
) -> (Vec<f64>, curvature::train::History, u64) {
    use curvature::train::{train, DataView, TrainConfig};
    let (mlp, x, t) = device_problem(l2);
    let config = TrainConfig {
        epochs,
        batch_size: Some(batch),
        shuffle_seed: 5,
        ..TrainConfig::default()
    };
    let mut theta = mlp.init_params(7);
    let mut factory = |x: ArrayView2<f32>, t: ArrayView2<f32>| {
        gpu_support::training_engine(ctx, &mlp, x, t, host)
    };
    let view = DataView {
        x: x.view(),
        t: t.view(),
    };
    let before = ctx.submits();
    let history = train(
        &config,
        spec.build().as_mut(),
        &mut factory,
        &mut theta,
        view,
        None,
        &mut [],
    )
    .unwrap();
    (theta, history, ctx.submits() - before)
}

/// Largest allowed max_i |θ_dev,i − θ_host,i| after the N = 10 updates, per unit of
/// max(1, max|θ|). Both sides take ∇E_data from the same GPU kernels; per update
/// they differ by the rounding of θ to f32 (the host rounds its f64 θ when it
/// uploads it, the device keeps f32: ≤ u each, 2u), the update's arithmetic in f32
/// (≤ 10 roundings of a step |Δθ| ≤ |θ|: ≤ 10u) and the f32 rounding of ∇E at two
/// θ that differ by those few ulps (the kernels round the same sums of ≤ 8·7 terms
/// of θ-sized weights, seen through η ≤ 0.3 or normalised by the adaptive methods:
/// ≤ 4u), so 16u per update, N·16u = 9.5e-6 for N = 10 (u = 2⁻²⁴ = 6e-8). Measured
/// on llvmpipe: ≤ 6.1e-7 (rmsprop with momentum and centering), ~1e-7 elsewhere.
/// A rule that is wrong by any of its terms is far outside: the L2 term alone
/// moves θ by ≥ 1e-3 here (asserted below), Adam's bias correction by ~η.
const DEVICE_TOLERANCE: f64 = DEVICE_UPDATES as f64 * 16.0 * 5.96e-8;

/// Device vs host, every rule: N updates in one epoch (λ = 0), then N updates over
/// two epochs with a step schedule halving η and λ = 0.01.
#[test]
fn device_updates_equal_the_host_optimizers_on_gpu() {
    let Some(ctx) = gpu_support::gpu() else {
        return;
    };
    for (name, params) in DEVICE_RULES {
        for (label, l2, epochs, batch, extra) in [
            ("constant, λ = 0", 0.0, 1, 4, ""),
            (
                "step schedule, λ = 0.01",
                0.01,
                2,
                8,
                ",schedule=step,gamma=0.5,step-size=1",
            ),
        ] {
            let spec = parsed(name, &format!("{params}{extra}"));
            let run = |l2, host| train_device_problem(&ctx, &spec, (l2, epochs, batch), host);
            let (device, dh, _) = run(l2, false);
            let (host, hh, _) = run(l2, true);
            assert_eq!(dh.updates, DEVICE_UPDATES, "{name} {params}: updates");
            assert_eq!(hh.updates, DEVICE_UPDATES, "{name} {params}: updates");
            assert_eq!((dh.rejected, hh.rejected), (0, 0), "{name} {params}");
            let scale = host.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let tol = DEVICE_TOLERANCE * scale;
            let err = max_abs_diff(&device, &host);
            let moved = max_abs_diff(&host, &device_problem(l2).0.init_params(7));
            println!(
                "{name} {params} ({label}): max|θ_dev − θ_host| = {err:.3e} (tolerance {tol:.1e}), θ moved {moved:.3e}"
            );
            assert!(
                err <= tol,
                "{name} {params} ({label}): max|θ_dev − θ_host| = {err:e} > {tol:e}"
            );
            assert!(moved > 0.1, "{name} {params}: θ hardly moved ({moved:e})");
            if l2 > 0.0 {
                // The comparison sees the L2 term the device adds: without it the
                // host lands far outside the tolerance.
                let (without, _, _) = run(0.0, true);
                let apart = max_abs_diff(&device, &without);
                assert!(apart > 1e-3, "{name} {params}: λ moved θ by only {apart:e}");
            }
        }
    }
}

/// One submit per update: through `DeviceTraining` directly (ten updates are ten
/// submits, the readback one more, and the batch losses summed on the device and
/// the last batch's E at the final θ are the host's, also with batches that span
/// two data chunks), then through `train`, where an epoch of U updates is U + 1 submits
/// plus the evaluation's 2 (E and the outputs) against 2U + 2 (3U + 2 for
/// Nesterov) on the host path. On a context of its own, so that no other test's
/// submits are counted.
#[test]
fn one_submit_per_update_on_gpu() {
    use curvature::engine::Backend;
    use curvature::gpu::{AdapterChoice, AdapterOptions, GpuContext, GpuEngine};
    use curvature::Curvature;
    if gpu_support::gpu().is_none() {
        return;
    }
    let opts = AdapterOptions {
        choice: AdapterChoice::Gpu,
        name: std::env::var("CURVATURE_ADAPTER").ok(),
    };
    let ctx = GpuContext::new(&opts).unwrap();
    let (mlp, x, t) = device_problem(0.0);
    let w = mlp.num_params();
    let theta = mlp.init_params(7);
    let spec = parsed("momentum", "lr=0.1,momentum=0.9");
    let rule = spec.build().device_rule().unwrap();
    // Data chunks of all rows, and of 3 rows (every batch of 4 then spans two
    // chunks: two slices, whose loss sums the device adds).
    for chunk_rows in [DEVICE_ROWS, 3] {
        let mut engine = GpuEngine::new(ctx.clone(), &mlp, x.view(), t.view())
            .unwrap()
            .with_max_chunk_rows(chunk_rows)
            .unwrap();
        let device = engine.device_training().unwrap();
        device
            .begin_updates(&rule, &theta, &[vec![0.0; w], vec![], vec![]], 0, 0.0)
            .unwrap();
        let start = ctx.submits();
        for u in 0..DEVICE_UPDATES {
            device.device_update(4 * u..4 * u + 4).unwrap();
            assert_eq!(ctx.submits() - start, u as u64 + 1, "update {u}");
        }
        let out = device.finish_updates().unwrap();
        assert_eq!(ctx.submits() - start, DEVICE_UPDATES as u64 + 1);
        assert_eq!(out.updates, DEVICE_UPDATES);
        // The same updates on the host: the batch losses before each, and E on the
        // last batch after it (λ = 0: E is the data term the device evaluates).
        let mut host_theta = theta.clone();
        let mut opt = spec.build();
        let mut sum = 0.0;
        for u in 0..DEVICE_UPDATES {
            let report = opt
                .step(&mut engine, &mut host_theta, 4 * u..4 * u + 4)
                .unwrap();
            sum += report.loss_before;
        }
        let last_rows = 4 * (DEVICE_UPDATES - 1)..4 * DEVICE_UPDATES;
        let last = engine.loss(&host_theta, last_rows).unwrap();
        let label = format!("chunks of {chunk_rows} rows");
        let sum_err = (out.loss_sum - sum).abs() / sum;
        assert!(
            sum_err < 1e-5,
            "{label}: Σ batch losses {} vs {sum}",
            out.loss_sum
        );
        let last_err = (out.final_loss - last).abs() / last;
        assert!(
            last_err < 1e-5,
            "{label}: last E {} vs {last}",
            out.final_loss
        );
        let err = max_abs_diff(&out.theta, &host_theta);
        assert!(err <= DEVICE_TOLERANCE * 2.0, "{label}: max|Δθ| = {err:e}");
    }

    let (epochs, per_epoch) = (2, DEVICE_UPDATES as u64);
    for (name, host_per_update) in [("momentum", 1), ("nesterov", 2), ("adam", 1)] {
        let spec = parsed(name, "lr=0.01");
        let setup = (0.01, epochs, 4);
        let (_, _, device) = train_device_problem(&ctx, &spec, setup, false);
        let (_, _, host) = train_device_problem(&ctx, &spec, setup, true);
        let e = epochs as u64;
        println!(
            "{name}: {device} submits on the device path, {host} on the host path, for {} updates",
            e * per_epoch
        );
        assert_eq!(device, 2 + e * (per_epoch + 1 + 2), "{name}: device path");
        // The host path: ∇E per update (Nesterov: and ∇E at the look-ahead),
        // each a submit and a readback (first-order steps do not evaluate E at
        // the trial point).
        assert_eq!(
            host,
            2 + e * (host_per_update * per_epoch + 2),
            "{name}: host path"
        );
    }
}
