//! Laplace evidence maximisation returns an α at a stationary point (and a
//! maximum) of the log evidence; the output Jacobian used by the predictive
//! agrees with central differences; fast retraining reaches a stationary point.

use crate::common;
use common::random_problem;
use curvature::analysis::laplace::{output_jacobians, LaplaceFit};
use curvature::analysis::retrain::{retrain, RetrainMethod};
use curvature::cpu;
use curvature::engine::Curvature;
use curvature::engine::ReferenceEngine;
use curvature::{Activation, Loss};

/// MacKay's update stops at a relative change of 1e-12; the derivative there
/// is ~1e-12 of its terms W/(2α); 1e-9 leaves room for summation rounding.
const STATIONARY_REL: f64 = 1e-9;
/// Central differences with h = 1e-5 on outputs of size ~1: truncation
/// O(h²‖a'''‖) ≈ 1e-10, rounding ε/h ≈ 1e-11.
const JACOBIAN_ABS: f64 = 1e-7;

#[test]
fn evidence_maximisation_returns_a_stationary_point() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 6, 3],
        &[Activation::Tanh, Activation::Softmax],
        Loss::Ce,
        0.01,
        50,
        1,
    );
    let mut engine = ReferenceEngine::new(
        &mlp,
        x.mapv(|v| v as f32).view(),
        t.mapv(|v| v as f32).view(),
    )
    .unwrap();
    for full in [true, false] {
        let fit = LaplaceFit::fit(&mut engine, &theta, 0..50, full).unwrap();
        let (alpha, _) = fit.optimise_alpha(1.0).unwrap();
        let w = theta.len() as f64;
        let d = fit.d_log_evidence(alpha);
        assert!(
            d.abs() <= STATIONARY_REL * w / (2.0 * alpha),
            "full = {full}: d/dα = {d:e} at α = {alpha}"
        );
        // A maximum: the evidence is lower on both sides.
        let here = fit.log_evidence(alpha);
        assert!(fit.log_evidence(alpha * 1.1) < here && fit.log_evidence(alpha / 1.1) < here);
        // The analytic derivative agrees with a central difference of ln p(D|α).
        let h = 1e-4 * alpha;
        let fd = (fit.log_evidence(alpha + h) - fit.log_evidence(alpha - h)) / (2.0 * h);
        let d_off = fit.d_log_evidence(1.3 * alpha);
        let fd_off =
            (fit.log_evidence(1.3 * alpha + h) - fit.log_evidence(1.3 * alpha - h)) / (2.0 * h);
        assert!(
            (d_off - fd_off).abs() <= 1e-5 * d_off.abs(),
            "derivative {d_off} vs differences {fd_off}"
        );
        assert!(
            fd.abs() <= 1e-5 * w / (2.0 * alpha),
            "differences at α*: {fd}"
        );
    }
}

#[test]
fn output_jacobian_matches_central_differences() {
    let (mlp, theta, x, _) = random_problem(
        &[3, 4, 2],
        &[Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        0.0,
        5,
        2,
    );
    let j = output_jacobians(&mlp, &theta, x.view()); // (5·2, W)
    let h = 1e-5;
    for p in 0..theta.len() {
        let mut plus = theta.clone();
        let mut minus = theta.clone();
        plus[p] += h;
        minus[p] -= h;
        let a_plus = cpu::forward(&mlp, &plus, x.view()).a.pop().unwrap();
        let a_minus = cpu::forward(&mlp, &minus, x.view()).a.pop().unwrap();
        for n in 0..5 {
            for k in 0..2 {
                let fd = (a_plus[[n, k]] - a_minus[[n, k]]) / (2.0 * h);
                assert!(
                    (j[[n * 2 + k, p]] - fd).abs() <= JACOBIAN_ABS,
                    "J[{n},{k}][{p}]"
                );
            }
        }
    }
}

#[test]
fn retraining_after_dropping_rows_reaches_a_stationary_point_in_few_steps() {
    let (mlp, theta0, x, t) = random_problem(
        &[4, 5, 3],
        &[Activation::Tanh, Activation::Softmax],
        Loss::Ce,
        0.01,
        60,
        3,
    );
    let mut engine = ReferenceEngine::new(
        &mlp,
        x.mapv(|v| v as f32).view(),
        t.mapv(|v| v as f32).view(),
    )
    .unwrap();
    let mut theta = theta0.clone();
    // Train to a stationary point on all 60 rows, then drop the last 6.
    retrain(
        &mut engine,
        &mut theta,
        0..60,
        RetrainMethod::LevenbergMarquardt,
        200,
        1e-9,
    )
    .unwrap();
    let mut changed = theta.clone();
    let report = retrain(
        &mut engine,
        &mut changed,
        0..54,
        RetrainMethod::Newton,
        50,
        1e-9,
    )
    .unwrap();
    assert!(
        report.grad_norm <= 1e-9,
        "‖∇E‖ = {} after {} steps",
        report.grad_norm,
        report.steps
    );
    assert!(report.loss_after <= report.loss_before);
    let (_, g) = engine.loss_grad(&changed, 0..54).unwrap();
    assert!(g.iter().map(|v| v * v).sum::<f64>().sqrt() <= 1e-8);
}

/// Two f64 evaluations of J A⁻¹ Jᵀ (eigenbasis vs Cholesky inverse) of a
/// matrix with κ ≲ 10⁶ agree to ~κ·ε; 1e-8 relative leaves two decades.
const VARIANCE_REL: f64 = 1e-8;

#[test]
fn output_variances_equal_j_a_inverse_jt() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 5, 3],
        &[Activation::Tanh, Activation::Softmax],
        Loss::Ce,
        0.01,
        40,
        4,
    );
    let x32 = x.mapv(|v| v as f32);
    let mut engine = ReferenceEngine::new(&mlp, x32.view(), t.mapv(|v| v as f32).view()).unwrap();
    let x64 = x32.mapv(f64::from);
    let alpha = 0.7;
    let n = 40.0;
    let mut a = engine.ggn(&theta, 0..40).unwrap();
    for (i, m) in mlp.weight_mask().iter().enumerate() {
        a[[i, i]] -= mlp.l2() * m;
    }
    a *= n;
    let j = output_jacobians(&mlp, &theta, x64.view()); // (40·3, W)
    for full in [true, false] {
        let fit = LaplaceFit::fit(&mut engine, &theta, 0..40, full).unwrap();
        let proj = fit.project(x64.view());
        let v = fit.output_variances(&proj, alpha);
        // The diagonal posterior keeps only diag(A).
        let a_used = if full {
            a.clone()
        } else {
            ndarray::Array2::from_diag(&a.diag().to_owned())
        };
        let a_inv = curvature::analysis::dense::cholesky_inverse(&a_used, alpha).unwrap();
        let cov = j.dot(&a_inv).dot(&j.t());
        for r in 0..40 {
            for k in 0..3 {
                let want = cov[[r * 3 + k, r * 3 + k]];
                assert!(
                    (v[[r, k]] - want).abs() <= VARIANCE_REL * want.abs(),
                    "full = {full}: v[{r},{k}] = {} vs {want}",
                    v[[r, k]]
                );
            }
        }
    }
}
