//! MacKay's re-estimation (`analysis::evidence`) against the closed form of the
//! linear-Gaussian model (PRML 3.86–3.95), whose fixed point is computed here
//! independently from the eigenvalues of βΦᵀΦ.

use curvature::analysis::evidence::{reestimate, Method};
use curvature::engine::ReferenceEngine;
use curvature::{Activation, Loss, Mlp};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// N rows of D centred inputs and centred targets t = Φw + noise: with centred
/// data the (unpenalised) bias decouples from the weights, so the weights' block
/// of the posterior is exactly PRML's (αI + βΦᵀΦ).
fn linear_problem(n: usize, d: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0));
    let w: Vec<f32> = (0..d).map(|i| 0.8 * (i as f32 + 1.0).recip()).collect();
    let mut t = Array2::from_shape_fn((n, 1), |(r, _)| {
        (0..d).map(|j| x[[r, j]] * w[j]).sum::<f32>() + 0.3 * rng.random_range(-1.0f32..1.0)
    });
    for j in 0..d {
        let mean = x.column(j).mean().unwrap_or(0.0);
        x.column_mut(j).mapv_inplace(|v| v - mean);
    }
    let mean = t.column(0).mean().unwrap_or(0.0);
    t.column_mut(0).mapv_inplace(|v| v - mean);
    (x, t)
}

/// Solves (a) x = b for a small symmetric positive definite a by Gaussian elimination.
fn solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Array1<f64> {
    let n = b.len();
    for c in 0..n {
        for r in c + 1..n {
            let f = a[[r, c]] / a[[c, c]];
            for k in c..n {
                a[[r, k]] -= f * a[[c, k]];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = Array1::zeros(n);
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[[r, k]] * x[k]).sum();
        x[r] = (b[r] - s) / a[[r, r]];
    }
    x
}

/// PRML 3.91–3.95 iterated to their fixed point: (α, β).
fn closed_form_fixed_point(phi: &Array2<f64>, t: &Array1<f64>) -> (f64, f64) {
    let (n, d) = phi.dim();
    let ptp = phi.t().dot(phi); // ΦᵀΦ (D, D)
    let eig = curvature::analysis::dense::eigenvalues(&ptp).unwrap();
    let (mut alpha, mut beta) = (1.0, 1.0);
    for _ in 0..10_000 {
        let a = &ptp * beta + Array2::<f64>::eye(d) * alpha;
        let m = solve(a, phi.t().dot(t) * beta); // m_N = β A⁻¹ Φᵀ t
        let gamma: f64 = eig.iter().map(|l| beta * l / (alpha + beta * l)).sum();
        let resid: f64 = (t - &phi.dot(&m)).mapv(|r| r * r).sum();
        let (a_new, b_new) = (gamma / m.dot(&m), (n as f64 - gamma) / resid);
        let done = (a_new - alpha).abs() < 1e-14 * alpha && (b_new - beta).abs() < 1e-14 * beta;
        alpha = a_new;
        beta = b_new;
        if done {
            break;
        }
    }
    (alpha, beta)
}

#[test]
fn mackay_reestimation_reaches_the_linear_gaussian_fixed_point() {
    let (n, d) = (60, 5);
    let (x, t) = linear_problem(n, d, 7);
    let phi = x.mapv(f64::from);
    let tv = t.column(0).mapv(f64::from);
    let (alpha_star, beta_star) = closed_form_fixed_point(&phi, &tv);

    // The crate's loop: θ* minimises E at λ (closed form for this linear model),
    // then one re-estimation gives the next λ and β.
    let mut lambda = 1e-2;
    let mut beta_ratio = 1.0; // β/β₀, β₀ = 1 for sse
    let mut last = None;
    for _ in 0..2000 {
        let mlp = Mlp::new(&[d, 1], &[Activation::Identity], Loss::Sse, lambda).unwrap();
        // ∇E = 0: (ΦᵀΦ/N + λI) w = Φᵀt/N; the bias is 0 for centred data.
        let a = phi.t().dot(&phi) / n as f64 + Array2::<f64>::eye(d) * lambda;
        let w = solve(a, phi.t().dot(&tv) / n as f64);
        let mut theta: Vec<f64> = w.to_vec();
        theta.push(0.0);
        let mut engine = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
        let step = reestimate(&mut engine, &theta, 0..n, beta_ratio, 4096).unwrap();
        assert_eq!(step.method, Method::Dense);
        beta_ratio = step.beta.unwrap();
        let converged = last.is_some_and(|l: f64| (l - step.lambda).abs() < 1e-15 * l);
        lambda = step.lambda;
        last = Some(lambda);
        if converged {
            let rel = |a: f64, b: f64| (a - b).abs() / b;
            assert!(
                rel(step.alpha, alpha_star) < 1e-8,
                "α {} vs {alpha_star}",
                step.alpha
            );
            assert!(
                rel(beta_ratio, beta_star) < 1e-8,
                "β {beta_ratio} vs {beta_star}"
            );
            // E's λ is α/(βN) at the fixed point.
            assert!(rel(lambda, alpha_star / (beta_star * n as f64)) < 1e-8);
            return;
        }
    }
    panic!("the re-estimation did not converge");
}

#[test]
fn the_diagonal_form_is_used_above_the_dense_limit_and_overcounts_gamma() {
    let (n, d) = (40, 4);
    let (x, t) = linear_problem(n, d, 3);
    // Correlated inputs make the diagonal form differ from the exact one.
    let x = ndarray::Array2::from_shape_fn((n, d), |(r, j)| x[[r, j]] + 0.5 * x[[r, 0]]);
    let mlp = Mlp::new(&[d, 1], &[Activation::Identity], Loss::Sse, 1e-2).unwrap();
    let theta = vec![0.3, -0.2, 0.1, 0.05, 0.0];
    let mut engine = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
    let dense = reestimate(&mut engine, &theta, 0..n, 1.0, 4096).unwrap();
    let diag = reestimate(&mut engine, &theta, 0..n, 1.0, 1).unwrap();
    assert_eq!(diag.method, Method::Diagonal);
    assert!(
        diag.gamma > dense.gamma,
        "{} vs {}",
        diag.gamma,
        dense.gamma
    );
    assert!(dense.gamma > 0.0 && dense.gamma < d as f64);
}

#[test]
fn classification_has_no_beta_and_alpha_is_n_lambda() {
    let mlp = Mlp::with_hidden(&[3, 4, 2], Activation::Tanh, Loss::Ce, 1e-3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 30;
    let x = Array2::from_shape_fn((n, 3), |_| rng.random_range(-1.0f32..1.0));
    let t = Array2::from_shape_fn((n, 2), |(r, c)| {
        f32::from(u8::from((x[[r, 0]] > 0.0) == (c == 0)))
    });
    let theta = mlp.init_params(1);
    let mut engine = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
    let step = reestimate(&mut engine, &theta, 0..n, 1.0, 4096).unwrap();
    assert!(step.beta.is_none());
    assert!((step.alpha_before - 1e-3 * n as f64).abs() < 1e-15);
    assert!((step.lambda - step.alpha / n as f64).abs() < 1e-18);
    assert!(step.gamma > 0.0 && step.gamma < 20.0);
}
