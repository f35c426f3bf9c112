//! Lanczos eigenvalues against a dense eigendecomposition of the full H (and G,
//! and one layer's block); Hutchinson's estimate converging to tr(H); Hutch++
//! exact once its sketch spans the space; SLQ weights a probability measure.

use crate::common;
use common::random_problem;
use curvature::analysis::dense;
use curvature::analysis::density::stochastic_lanczos_quadrature;
use curvature::analysis::lanczos::extreme_eigenpairs;
use curvature::analysis::trace::{hutch_plus_plus, hutchinson};
use curvature::analysis::Operator;
use curvature::engine::Curvature;
use curvature::engine::ReferenceEngine;
use curvature::Kind;
use curvature::{Activation, Loss, Mlp};
use ndarray::{s, Array2};

/// Lanczos with full reorthogonalisation run to dim steps reproduces the
/// spectrum to rounding: 1e-8 of the largest |λ| leaves room for the error
/// growth of ~dim reorthogonalised steps (each O(ε‖A‖)) with three decades spare.
const LANCZOS_REL: f64 = 1e-8;
/// Hutchinson's error is within 4 standard deviations σ/√m (σ² the exact
/// Rademacher variance 2(‖A‖_F² − Σ A_ii²)): a 6·10⁻⁵ chance of failing per
/// check for a Gaussian mean, and the seed is fixed.
const HUTCHINSON_SIGMAS: f64 = 4.0;
/// Once the Hutch++ sketch spans the whole space only rounding remains.
const HUTCHPP_REL: f64 = 1e-9;

/// A small ce network (W = 51), its engine over f32 data, and θ.
fn problem(acts: &[Activation], loss: Loss, seed: u64) -> (Mlp, Vec<f64>, ReferenceEngine) {
    let (mlp, theta, x, t) = random_problem(&[4, 6, 3], acts, loss, 0.01, 40, seed);
    let engine = ReferenceEngine::new(
        &mlp,
        x.mapv(|v| v as f32).view(),
        t.mapv(|v| v as f32).view(),
    )
    .unwrap();
    (mlp, theta, engine)
}

fn check_lanczos(
    engine: &mut ReferenceEngine,
    theta: &[f64],
    kind: Kind,
    block: std::ops::Range<usize>,
) {
    let rows = 0..engine.num_rows();
    let full = match kind {
        Kind::Hessian => engine.hessian(theta, rows.clone()).unwrap(),
        Kind::GaussNewton => engine.ggn(theta, rows.clone()).unwrap(),
    };
    let a: Array2<f64> = full.slice(s![block.clone(), block.clone()]).to_owned();
    let all = dense::eigenvalues(&a).unwrap(); // ascending
    let dim = block.len();
    let scale = all.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // A single-vector Krylov space holds each distinct eigenvalue once
    // (multiplicities, e.g. λ on the softmax's invariant directions, are not
    // resolved), so compare with the distinct eigenvalues.
    let mut exact: Vec<f64> = Vec::new();
    for v in all {
        if exact
            .last()
            .is_none_or(|&last| v - last > LANCZOS_REL * scale)
        {
            exact.push(v);
        }
    }
    let distinct = exact.len();
    let mut op = Operator::new(engine, theta, rows, kind)
        .restricted(block)
        .unwrap();
    let (top, bottom) = extreme_eigenpairs(&mut op, 5, 5, dim, 7).unwrap();
    for (i, p) in top.iter().enumerate() {
        let want = exact[distinct - 1 - i];
        assert!(
            (p.value - want).abs() <= LANCZOS_REL * scale,
            "{kind:?} top {i}: Lanczos {} vs dense {want}",
            p.value
        );
        assert!(
            p.residual <= LANCZOS_REL * scale,
            "{kind:?} top {i}: residual {}",
            p.residual
        );
    }
    for (i, p) in bottom.iter().enumerate() {
        assert!(
            (p.value - exact[i]).abs() <= LANCZOS_REL * scale,
            "{kind:?} bottom {i}: Lanczos {} vs dense {}",
            p.value,
            exact[i]
        );
        assert!(p.residual <= LANCZOS_REL * scale);
    }
}

#[test]
fn lanczos_matches_dense_eigendecomposition_of_h_and_g() {
    let (mlp, theta, mut engine) = problem(&[Activation::Tanh, Activation::Softmax], Loss::Ce, 1);
    let w = mlp.num_params();
    check_lanczos(&mut engine, &theta, Kind::Hessian, 0..w);
    check_lanczos(&mut engine, &theta, Kind::GaussNewton, 0..w);
    // The block of layer 1 (W_1 and b_1) is the principal submatrix.
    let layer = &mlp.layout()[1];
    check_lanczos(
        &mut engine,
        &theta,
        Kind::Hessian,
        layer.weights.start..layer.bias.end,
    );
    let (_, theta2, mut engine2) =
        problem(&[Activation::Sigmoid, Activation::Identity], Loss::Sse, 2);
    check_lanczos(&mut engine2, &theta2, Kind::Hessian, 0..w);
}

#[test]
fn hutchinson_converges_to_the_trace() {
    let (_, theta, mut engine) = problem(&[Activation::Tanh, Activation::Softmax], Loss::Ce, 3);
    let rows = 0..engine.num_rows();
    let h = engine.hessian(&theta, rows.clone()).unwrap();
    let trace = h.diag().sum();
    let frob: f64 = h.iter().map(|v| v * v).sum();
    let diag_sq: f64 = h.diag().iter().map(|v| v * v).sum();
    let sigma = (2.0 * (frob - diag_sq)).sqrt();
    let mut op = Operator::new(&mut engine, &theta, rows, Kind::Hessian);
    let mut previous_bound = f64::INFINITY;
    for m in [4usize, 64, 1024] {
        let est = hutchinson(&mut op, m, 11).unwrap();
        let bound = HUTCHINSON_SIGMAS * sigma / (m as f64).sqrt();
        assert!(
            (est.value - trace).abs() <= bound,
            "m = {m}: Hutchinson {} vs trace {trace}, bound {bound}",
            est.value
        );
        assert!(bound < previous_bound);
        previous_bound = bound;
        if m == 1024 {
            // The reported standard error estimates σ/√m: a 1024-sample
            // standard deviation is within a factor 2 of the truth.
            let ratio = est.std_error / (sigma / (m as f64).sqrt());
            assert!((0.5..2.0).contains(&ratio), "standard error ratio {ratio}");
        }
    }
}

#[test]
fn hutch_plus_plus_is_exact_when_the_sketch_spans_the_space() {
    let (mlp, theta, mut engine) =
        problem(&[Activation::Sigmoid, Activation::Softmax], Loss::Ce, 4);
    let rows = 0..engine.num_rows();
    let trace = engine.hessian(&theta, rows.clone()).unwrap().diag().sum();
    let mut op = Operator::new(&mut engine, &theta, rows, Kind::Hessian);
    let est = hutch_plus_plus(&mut op, 3 * mlp.num_params(), 5).unwrap();
    assert!(
        (est.value - trace).abs() <= HUTCHPP_REL * trace.abs().max(1.0),
        "{} vs {trace}",
        est.value
    );
}

#[test]
fn slq_weights_form_a_probability_measure_with_the_right_mean() {
    let (mlp, theta, mut engine) = problem(&[Activation::Tanh, Activation::Softmax], Loss::Ce, 6);
    let rows = 0..engine.num_rows();
    let g = engine.ggn(&theta, rows.clone()).unwrap();
    let w = mlp.num_params();
    let mut op = Operator::new(&mut engine, &theta, rows, Kind::GaussNewton);
    let probes = 256;
    let d = stochastic_lanczos_quadrature(&mut op, probes, 12, 9).unwrap();
    let total: f64 = d.weights.iter().sum();
    assert!((total - 1.0).abs() < 1e-12, "weights sum to {total}");
    // Σ τ θ estimates tr(G)/W: each probe's first moment is vᵀGv exactly (v
    // unit Rademacher), so this is Hutchinson's estimate / W, within 4σ/√probes.
    let mean: f64 = d.nodes.iter().zip(&d.weights).map(|(x, t)| x * t).sum();
    let frob: f64 = g.iter().map(|v| v * v).sum();
    let diag_sq: f64 = g.diag().iter().map(|v| v * v).sum();
    let sigma = (2.0 * (frob - diag_sq)).sqrt() / w as f64;
    let want = g.diag().sum() / w as f64;
    assert!(
        (mean - want).abs() <= HUTCHINSON_SIGMAS * sigma / (probes as f64).sqrt(),
        "SLQ mean {mean} vs tr(G)/W {want}"
    );
}
