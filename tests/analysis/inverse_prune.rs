//! The Sherman-Morrison inverse equals the Cholesky inverse of G + αI; OBS on
//! a quadratic (a least-squares linear model: sse, identity output, so H is
//! constant) removes weights with exactly the predicted increase in E.

use crate::common;
use common::random_problem;
use curvature::analysis::dense;
use curvature::analysis::inverse::{cholesky_inverse, sherman_morrison_inverse};
use curvature::analysis::pruning::{magnitude, obd, obs, weight_indices};
use curvature::engine::Curvature;
use curvature::engine::ReferenceEngine;
use curvature::Kind;
use curvature::{Activation, Loss};

/// Two f64 inverses of a matrix with condition number ≲ 10⁴ agree to
/// ~κ·ε ≈ 10⁻¹²; 1e-9 of the largest entry leaves three decades for the
/// N·K sequential rank-one updates' accumulated rounding.
const INVERSE_REL: f64 = 1e-9;
/// On an exact quadratic the OBS prediction is exact up to rounding in E
/// (E ~ 1, differences ~ 10⁻³): 1e-9 relative to the increase.
const OBS_REL: f64 = 1e-9;

fn engine_of(
    mlp: &curvature::Mlp,
    x: &ndarray::Array2<f64>,
    t: &ndarray::Array2<f64>,
) -> (ReferenceEngine, ndarray::Array2<f64>, ndarray::Array2<f64>) {
    let x32 = x.mapv(|v| v as f32);
    let t32 = t.mapv(|v| v as f32);
    let engine = ReferenceEngine::new(mlp, x32.view(), t32.view()).unwrap();
    (engine, x32.mapv(f64::from), t32.mapv(f64::from))
}

#[test]
fn sherman_morrison_equals_cholesky_inverse_of_g_plus_alpha() {
    for (acts, loss, seed) in [
        ([Activation::Tanh, Activation::Softmax], Loss::Ce, 1u64),
        ([Activation::Sigmoid, Activation::Identity], Loss::Sse, 2),
        ([Activation::Tanh, Activation::Sigmoid], Loss::Bce, 3),
    ] {
        let (mlp, theta, x, t) = random_problem(&[4, 5, 3], &acts, loss, 0.01, 30, seed);
        let (mut engine, x64, t64) = engine_of(&mlp, &x, &t);
        let alpha = 0.1;
        let sm = sherman_morrison_inverse(&mlp, &theta, x64.view(), t64.view(), alpha).unwrap();
        let ch = cholesky_inverse(&mut engine, &theta, 0..30, Kind::GaussNewton, alpha).unwrap();
        let scale = ch.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = (&sm - &ch).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            worst <= INVERSE_REL * scale,
            "{loss:?}: worst {worst:e}, scale {scale:e}"
        );
    }
}

#[test]
fn obs_on_a_quadratic_removes_weights_with_exactly_the_predicted_increase() {
    let (mlp, theta0, x, t) =
        random_problem(&[5, 3], &[Activation::Identity], Loss::Sse, 0.01, 40, 5);
    let (mut engine, _, _) = engine_of(&mlp, &x, &t);
    let rows = 0..40;
    // E is quadratic: one exact Newton step from anywhere reaches the minimum.
    let h = engine.hessian(&theta0, rows.clone()).unwrap();
    let (_, g) = engine.loss_grad(&theta0, rows.clone()).unwrap();
    let h_inv = dense::cholesky_inverse(&h, 0.0).unwrap();
    let step = h_inv.dot(&ndarray::ArrayView1::from(&g));
    let theta: Vec<f64> = theta0.iter().zip(step.iter()).map(|(a, b)| a - b).collect();
    let e0 = engine.loss(&theta, rows.clone()).unwrap();
    let candidates = weight_indices(&mlp);
    for (count, batch) in [(1usize, 1usize), (4, 1), (4, 4), (9, 2)] {
        let pruned = obs(&theta, h_inv.clone(), &candidates, count, batch).unwrap();
        assert_eq!(pruned.removed.len(), count);
        for &q in &pruned.removed {
            assert_eq!(pruned.theta[q], 0.0, "removed weight {q} is not zero");
        }
        let e1 = engine.loss(&pruned.theta, rows.clone()).unwrap();
        let actual = e1 - e0;
        assert!(
            (actual - pruned.predicted_increase).abs() <= OBS_REL * actual.abs(),
            "{count} in batches of {batch}: actual ΔE {actual:e}, predicted {:e}",
            pruned.predicted_increase
        );
    }
    // A single removal takes the weight of least saliency w_q²/(2[H⁻¹]_qq)
    // and predicts exactly that saliency.
    let one = obs(&theta, h_inv.clone(), &candidates, 1, 1).unwrap();
    let q = one.removed[0];
    let best = candidates
        .iter()
        .map(|&c| theta[c] * theta[c] / (2.0 * h_inv[[c, c]]))
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        one.predicted_increase.to_bits(),
        (theta[q] * theta[q] / (2.0 * h_inv[[q, q]])).to_bits()
    );
    assert!(one.predicted_increase <= best);

    // OBD removes without compensating: for one weight at the minimum of a
    // quadratic, ΔE = ½ (w_q e_q)ᵀ H (w_q e_q) = ½ H_qq w_q² exactly, and OBS
    // (which compensates) never costs more for the weight it picks.
    let diag: Vec<f64> = h.diag().to_vec();
    for pruned in [
        obd(&theta, &diag, &candidates, 1),
        magnitude(&theta, &diag, &candidates, 1),
    ] {
        let actual = engine.loss(&pruned.theta, rows.clone()).unwrap() - e0;
        assert!((actual - pruned.predicted_increase).abs() <= OBS_REL * actual.abs());
        assert!(one.predicted_increase <= pruned.predicted_increase * (1.0 + OBS_REL));
    }
}
