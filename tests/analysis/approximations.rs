//! The comparison of the curvature approximations with the exact G and H
//! (`analysis::approximations`): zero error and unit cosines where C is the matrix it
//! is compared with (G against itself; K-FAC and EKFAC exact, block-diagonal G on one
//! identity-output sse layer, where K-FAC is exact), positive errors elsewhere; the
//! structured Frobenius distances and damped solves against dense ones.

use crate::common;
use common::{random_block, random_problem, random_vector};
use curvature::analysis::approximations::{
    check_dense, compare, cosine, Approximation, CompareOptions, Structured,
};
use curvature::analysis::dense;
use curvature::cpu::Fisher;
use curvature::engine::ReferenceEngine;
use curvature::{Activation, Loss};
use ndarray::{s, Array2};

/// A relative error of f64 matrices that agree exactly (the same matrix, or K-FAC
/// where it is exact: sums of N products in another order): a few ε·√(W²).
const EXACT_ERROR: f64 = 1e-12;
/// Cosines of two f64 solves of one system, each through its own eigendecomposition:
/// 1 − cos ≈ ½‖Δx‖²/‖x‖², with ‖Δx‖/‖x‖ ≲ κ(C + γI)·ε ≤ 10⁸·ε at the smallest γ.
const UNIT_COSINE: f64 = 1e-9;
/// An approximation that is not exact is off by far more than rounding.
const POSITIVE_ERROR: f64 = 1e-6;

fn engine_of(mlp: &curvature::Mlp, x: &Array2<f64>, t: &Array2<f64>) -> ReferenceEngine {
    ReferenceEngine::new(
        mlp,
        x.mapv(|v| v as f32).view(),
        t.mapv(|v| v as f32).view(),
    )
    .unwrap()
}

fn options() -> CompareOptions {
    let mc = Fisher::Mc {
        samples: 2,
        seed: 5,
    };
    CompareOptions {
        mc,
        approximations: Approximation::all(mc),
        top: 3,
        ..CompareOptions::default()
    }
}

fn assert_unit(cosines: &[f64], what: &str) {
    for (i, c) in cosines.iter().enumerate() {
        assert!(
            (1.0 - c).abs() <= UNIT_COSINE,
            "{what}: cosine {c} at γ #{i}"
        );
    }
}

#[test]
fn the_exact_matrices_are_exact_and_the_approximations_are_not() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 6, 3],
        &[Activation::Tanh, Activation::Softmax],
        Loss::Ce,
        0.01,
        30,
        11,
    );
    let mut engine = engine_of(&mlp, &x, &t);
    let c = compare(&mut engine, &theta, 0..30, &options()).unwrap();
    assert_eq!(c.rows.len(), 10);
    assert_eq!(c.gammas.len(), c.gamma_factors.len());
    let ggn = c.row(Approximation::Ggn).unwrap();
    assert!(ggn.error_vs_ggn <= EXACT_ERROR, "{}", ggn.error_vs_ggn);
    assert_unit(&ggn.cosine_vs_ggn, "G vs G");
    let h = c.row(Approximation::Hessian).unwrap();
    assert!(h.error_vs_hessian <= EXACT_ERROR);
    assert_unit(&h.cosine_vs_hessian, "H vs H");
    // G and H are each other's error: ‖H − G‖ appears in both rows.
    let ratio = ggn.error_vs_hessian / h.error_vs_ggn;
    assert!(ratio > 0.0 && ratio.is_finite());
    for r in &c.rows {
        if r.approximation == Approximation::Ggn {
            continue;
        }
        assert!(
            r.error_vs_ggn > POSITIVE_ERROR,
            "{}: {}",
            r.approximation.label(),
            r.error_vs_ggn
        );
        assert_eq!(r.cosine_vs_ggn.len(), c.gammas.len());
        assert_eq!(r.top.len(), 3);
        assert!(r.top.windows(2).all(|w| w[0] >= w[1]));
    }
    // Heavy damping makes every step −g/γ: the cosines tend to 1.
    let heavy = CompareOptions {
        gamma_factors: vec![1e8],
        ..options()
    };
    for r in compare(&mut engine, &theta, 0..30, &heavy).unwrap().rows {
        assert!(r.cosine_vs_ggn[0] > 0.9999, "{}", r.approximation.label());
        assert!(
            r.cosine_vs_hessian[0] > 0.9999,
            "{}",
            r.approximation.label()
        );
    }
    // The exact G's largest eigenvalues are those of the dense matrix.
    let g = curvature::engine::Curvature::ggn(&mut engine, &theta, 0..30).unwrap();
    let mut values = dense::eigenvalues(&g).unwrap();
    values.reverse();
    for (a, b) in ggn.top.iter().zip(&values) {
        assert!((a - b).abs() <= 1e-12 * values[0]);
    }
    let json = c.to_json();
    assert_eq!(json["approximations"].as_array().unwrap().len(), 10);
    assert_eq!(json["approximations"][5]["key"], "kfac-mc");
    assert!(json["approximations"][0]["cosine_vs_ggn"][0].is_f64());
}

#[test]
fn kfac_ekfac_and_the_block_are_exact_on_one_identity_sse_layer() {
    let (mlp, theta, x, t) =
        random_problem(&[3, 4], &[Activation::Identity], Loss::Sse, 0.1, 25, 12);
    let mut engine = engine_of(&mlp, &x, &t);
    let c = compare(&mut engine, &theta, 0..25, &options()).unwrap();
    for a in [
        Approximation::Ggn,
        Approximation::BlockDiagonalGgn,
        Approximation::Kfac(Fisher::Exact),
        Approximation::Ekfac(Fisher::Exact),
    ] {
        let r = c.row(a).unwrap();
        assert!(
            r.error_vs_ggn <= EXACT_ERROR,
            "{}: {}",
            a.label(),
            r.error_vs_ggn
        );
        assert_unit(&r.cosine_vs_ggn, &a.label());
    }
    for a in [
        Approximation::DiagonalGgn,
        Approximation::Kfac(options().mc),
        Approximation::Kfac(Fisher::Empirical),
        Approximation::Fisher(Fisher::Empirical),
        Approximation::Fisher(options().mc),
    ] {
        let r = c.row(a).unwrap();
        assert!(
            r.error_vs_ggn > POSITIVE_ERROR,
            "{}: {}",
            a.label(),
            r.error_vs_ggn
        );
    }
}

#[test]
fn structured_distances_and_damped_solves_agree_with_dense_ones() {
    let w = 7;
    let m = random_block(w, w, 3);
    let sym = &m.t().dot(&m) + &Array2::<f64>::eye(w); // SPD
    let t = random_block(w, w, 4);
    let t = &t + &t.t();
    let ranges = [0..3, 3..7];
    let blocks = Structured::Blocks(
        ranges
            .iter()
            .map(|r| (r.clone(), sym.slice(s![r.clone(), r.clone()]).to_owned()))
            .collect(),
    );
    let mut block_dense = Array2::<f64>::zeros((w, w));
    for r in &ranges {
        block_dense
            .slice_mut(s![r.clone(), r.clone()])
            .assign(&sym.slice(s![r.clone(), r.clone()]));
    }
    let diag: Vec<f64> = (0..w).map(|i| sym[[i, i]]).collect();
    let diag_dense = Array2::from_diag(&ndarray::Array1::from(diag.clone()));
    let frob = |a: &Array2<f64>| (a - &t).iter().map(|v| v * v).sum::<f64>().sqrt();
    for (structured, dense_form) in [
        (blocks, block_dense),
        (Structured::Diagonal(diag), diag_dense),
        (Structured::Dense(sym.clone()), sym.clone()),
    ] {
        let want = frob(&dense_form);
        let got = structured.frobenius_distance(&t);
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
        let g = random_vector(w, 9);
        let gamma = 0.3;
        let x = structured.spectral().unwrap().damped_solve(&g, gamma);
        let inv = dense::cholesky_inverse(&dense_form, gamma).unwrap();
        let want = inv.dot(&ndarray::Array1::from(g));
        for (a, b) in x.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert!((cosine(&x, want.as_slice().unwrap()) - 1.0).abs() < 1e-14);
    }
}

#[test]
fn above_the_dense_limit_the_comparison_is_refused_in_one_line() {
    let err = check_dense(5000, 4096).unwrap_err().to_string();
    assert!(
        err.contains("5000") && err.contains("4096") && !err.contains('\n'),
        "{err}"
    );
    let (mlp, theta, x, t) = random_problem(&[3, 4], &[Activation::Identity], Loss::Sse, 0.0, 5, 1);
    let mut engine = engine_of(&mlp, &x, &t);
    let options = CompareOptions {
        dense_max: 10,
        ..CompareOptions::default()
    };
    let err = compare(&mut engine, &theta, 0..5, &options).unwrap_err();
    assert!(err.to_string().contains("dense limit"), "{err}");
}
