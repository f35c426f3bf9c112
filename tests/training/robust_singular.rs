//! Singular and indefinite systems: Levenberg-Marquardt on a truly singular
//! G, Newton on an indefinite H — the Cholesky retries are exercised and
//! bounded, nothing panics, and the final failure is a clear error; BFGS
//! skips an update with yᵀs ≤ 0 or an overflowing yᵀy instead of poisoning B.

use crate::robust_support;
use curvature::engine::ReferenceEngine;
use curvature::optim::bfgs::{Bfgs, BfgsConfig};
use curvature::optim::damping::Damping;
use curvature::optim::levenberg_marquardt::{default_config, levenberg_marquardt};
use curvature::optim::line_search::WolfeConfig;
use curvature::optim::newton::{DampedNewton, NewtonConfig};
use curvature::optim::{OptimError, Optimizer, StepReport};
use curvature::train::{train, TrainConfig};
use curvature::{Activation, Curvature, Loss, Mlp};
use ndarray::{arr2, Array2};
use robust_support::{cpu_factory, small_classifier, view, Fault, FaultyEngine, Op};
use std::cell::Cell;
use std::rc::Rc;

/// The smallest eigenvalue of a symmetric matrix (faer).
fn min_eigenvalue(a: &Array2<f64>) -> f64 {
    let n = a.nrows();
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[[i, j]]);
    let ev = m.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
    ev.into_iter().fold(f64::INFINITY, f64::min)
}

/// A 3-2-2 sigmoid/softmax-ce network with λ = 0 and two identical hidden
/// units, one sample whose middle input is 0. Its G has rank ≤ K − 1 = 1 of
/// W = 14, with exact zero rows (weights from the zero input, λ = 0).
fn singular_problem() -> (Mlp, Array2<f32>, Array2<f32>, Vec<f64>) {
    let mlp = Mlp::with_hidden(&[3, 2, 2], Activation::Sigmoid, Loss::Ce, 0.0).unwrap();
    let x = arr2(&[[0.5f32, 0.0, -0.3]]);
    let t = arr2(&[[1.0f32, 0.0]]);
    // W1 (2, 3) with equal rows, b1 equal, W2 (2, 2) with equal columns, b2.
    let theta = vec![
        0.2, -0.1, 0.4, 0.2, -0.1, 0.4, // W1
        0.05, 0.05, // b1
        0.3, 0.3, -0.2, -0.2, // W2
        0.0, 0.1, // b2
    ];
    assert_eq!(theta.len(), mlp.num_params());
    (mlp, x, t, theta)
}

/// Damping that starts at exactly 0, so the first factorisation sees the bare matrix.
fn zero_damping() -> Damping {
    Damping {
        min: 0.0,
        ..Damping::new(0.0)
    }
}

fn steps(
    opt: &mut dyn Optimizer,
    engine: &mut dyn Curvature,
    theta: &mut [f64],
    k: usize,
) -> Vec<StepReport> {
    let n = engine.num_rows();
    (0..k)
        .map(|_| {
            opt.step(engine, theta, 0..n)
                .unwrap_or_else(|e| panic!("{}: {e}", opt.name()))
        })
        .collect()
}

/// Accepted steps never raise E, and E ends below its start.
fn assert_descends(name: &str, reports: &[StepReport]) {
    for r in reports {
        assert!(r.loss_after.unwrap().is_finite(), "{name}: {r:?}");
        assert!(r.loss_after.unwrap() <= r.loss_before, "{name}: {r:?}");
    }
    let (first, last) = (&reports[0], &reports[reports.len() - 1]);
    assert!(
        last.loss_after.unwrap() < first.loss_before,
        "{name}: E did not fall"
    );
}

#[test]
fn levenberg_marquardt_on_a_singular_gauss_newton_matrix() {
    let (mlp, x, t, theta0) = singular_problem();
    let mut engine = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
    let g = engine.ggn(&theta0, 0..1).unwrap();
    let zero_rows = (0..g.nrows())
        .filter(|&i| g.row(i).iter().all(|v| *v == 0.0))
        .count();
    eprintln!(
        "G: {zero_rows} zero rows of {}, λ_min = {:e}",
        g.nrows(),
        min_eigenvalue(&g)
    );
    assert!(zero_rows >= 2, "G is not exactly singular");

    let config = NewtonConfig {
        damping: zero_damping(),
        ..default_config()
    };
    let mut lm = levenberg_marquardt(config);
    let mut theta = theta0.clone();
    let reports = steps(&mut lm, &mut engine, &mut theta, 10);
    eprintln!(
        "lm: Cholesky tries per step {:?}",
        reports
            .iter()
            .map(|r| r.inner_iterations)
            .collect::<Vec<_>>()
    );
    assert!(
        reports[0].inner_iterations > 1,
        "μ = 0 on a singular G must fail and retry"
    );
    assert!(theta.iter().all(|v| v.is_finite()));
    assert_descends("lm", &reports);

    // Through train() with the default μ and the guard, too.
    let mut theta = theta0.clone();
    let history = train(
        &TrainConfig {
            epochs: 10,
            ..TrainConfig::default()
        },
        &mut levenberg_marquardt(default_config()),
        &mut cpu_factory(&mlp),
        &mut theta,
        view(&x, &t),
        None,
        &mut [],
    )
    .unwrap();
    let last = history.last().unwrap().train_loss;
    assert!(last.is_finite() && last < history.records[0].train_loss);
}

/// A tanh network at small weights sits near a saddle: H is indefinite.
fn indefinite_problem() -> (Mlp, ReferenceEngine, Vec<f64>, f64) {
    let (mlp, x, t, theta) = small_classifier();
    let theta: Vec<f64> = theta.iter().map(|v| 0.01 * v).collect();
    let mut engine = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
    let n = x.nrows();
    let h = engine.hessian(&theta, 0..n).unwrap();
    let lambda_min = min_eigenvalue(&h);
    (mlp, engine, theta, lambda_min)
}

#[test]
fn newton_on_an_indefinite_hessian_raises_the_damping_and_descends() {
    let (_, mut engine, theta0, lambda_min) = indefinite_problem();
    eprintln!("H: λ_min = {lambda_min:e}");
    assert!(lambda_min < 0.0, "H is not indefinite");
    let mut newton = DampedNewton::newton(NewtonConfig {
        damping: zero_damping(),
        ..NewtonConfig::default()
    });
    let mut theta = theta0.clone();
    let reports = steps(&mut newton, &mut engine, &mut theta, 10);
    eprintln!(
        "newton: Cholesky tries per step {:?}, c = {:e}",
        reports
            .iter()
            .map(|r| r.inner_iterations)
            .collect::<Vec<_>>(),
        newton.damping()
    );
    assert!(
        reports[0].inner_iterations > 1,
        "c = 0 on an indefinite H must fail and retry"
    );
    // The c that made H + cI positive definite exceeds −λ_min; the report
    // gives c after the accepted step's adaptation, at least ×⅓ of it.
    assert!(reports[0].damping.unwrap() > -lambda_min / 3.0);
    assert_descends("newton", &reports);
}

#[test]
fn a_damping_ceiling_below_the_negative_curvature_is_a_clear_bounded_error() {
    let (_, mut engine, theta0, lambda_min) = indefinite_problem();
    assert!(lambda_min < 0.0);
    // The ceiling is half of |λ_min|: H + cI can never be positive definite.
    let ceiling = -0.5 * lambda_min;
    let mut newton = DampedNewton::newton(NewtonConfig {
        damping: Damping {
            max: ceiling,
            ..zero_damping()
        },
        ..NewtonConfig::default()
    });
    let mut theta = theta0.clone();
    let n = engine.num_rows();
    let err = newton.step(&mut engine, &mut theta, 0..n).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(
            err,
            OptimError::Numerical {
                method: "newton",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("not positive definite"), "{msg}");
    assert!(msg.contains("Cholesky tries"), "{msg}");
    assert_eq!(theta, theta0, "a failed step moved θ");
}

/// The first BFGS step's trial gradient is tampered with (entry 0 set to
/// `value`) and the line search may make one evaluation, so its fallback
/// takes that trial: with `value` of the gradient's sign, yᵀs < 0; with a
/// huge value of the other sign, yᵀy overflows. Both updates must be
/// skipped, leaving B usable: the following steps descend with finite θ.
#[test]
fn bfgs_skips_updates_with_negative_or_overflowing_curvature() {
    let (mlp, x, t, theta0) = small_classifier();
    let n = x.nrows();
    let g0 = ReferenceEngine::new(&mlp, x.view(), t.view())
        .unwrap()
        .loss_grad(&theta0, 0..n)
        .unwrap()
        .1[0];
    for (label, value) in [
        ("yᵀs < 0", 1e6 * g0.signum()),
        ("yᵀy = ∞", -1e200 * g0.signum()),
    ] {
        let hits = Rc::new(Cell::new(0));
        let faults = vec![Fault::once(Op::LossGradGrad, 2, value)];
        let mut engine = FaultyEngine::new(&mlp, x.view(), t.view(), faults, hits.clone());
        let mut bfgs = Bfgs::new(BfgsConfig {
            wolfe: WolfeConfig {
                max_evaluations: 1,
                ..WolfeConfig::quasi_newton()
            },
            ..BfgsConfig::default()
        });
        let mut theta = theta0.clone();
        let first = bfgs.step(&mut engine, &mut theta, 0..n).unwrap();
        assert_eq!(hits.get(), 1, "{label}: the fault was not hit");
        assert!(first.accepted, "{label}: {first:?}");
        assert_eq!(
            bfgs.skipped_updates, 1,
            "{label}: the update was not skipped"
        );
        let reports = steps(&mut bfgs, &mut engine, &mut theta, 10);
        eprintln!(
            "bfgs {label}: E {:.4} -> {:.4}",
            first.loss_before,
            reports[9].loss_after.unwrap()
        );
        assert!(theta.iter().all(|v| v.is_finite()), "{label}");
        assert!(
            reports[9].loss_after.unwrap() < first.loss_before,
            "{label}"
        );
    }
}
