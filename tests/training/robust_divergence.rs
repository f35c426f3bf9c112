//! Divergence: NaN in the data, a loss made to overflow, and a run that
//! cannot be recovered — through `train()` on the CPU reference engine.

use crate::robust_support;
use curvature::optim::{Divergence, OptimError, Quantity};
use curvature::train::{train, History, TrainConfig};
use robust_support::{
    cpu_factory, full_loss, small_classifier, spec, unit_hessian_regression, view, Fault,
    FaultyEngine, Op,
};
use std::cell::Cell;
use std::rc::Rc;

fn full_batch(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        ..TrainConfig::default()
    }
}

fn diverged(err: OptimError) -> Divergence {
    match err {
        OptimError::Diverged(d) => *d,
        other => panic!("expected a Diverged error, got: {other}"),
    }
}

#[test]
fn nan_in_the_data_is_refused_with_row_and_column() {
    let (mlp, x, t, theta0) = small_classifier();
    let cases: [(&str, usize, usize); 2] =
        [("training inputs x", 5, 2), ("training targets t", 7, 1)];
    for (what, row, col) in cases {
        let (mut x, mut t) = (x.clone(), t.clone());
        if what.contains("inputs") {
            x[[row, col]] = f32::NAN;
        } else {
            t[[row, col]] = f32::INFINITY;
        }
        let mut theta = theta0.clone();
        let mut opt = spec("gd", "").build();
        let err = train(
            &full_batch(3),
            opt.as_mut(),
            &mut cpu_factory(&mlp),
            &mut theta,
            view(&x, &t),
            None,
            &mut [],
        )
        .unwrap_err();
        let msg = err.to_string();
        eprintln!("{msg}");
        match err {
            OptimError::NonFiniteData {
                what: w,
                row: r,
                col: c,
                ..
            } => assert_eq!((w, r, c), (what, row, col)),
            other => panic!("expected NonFiniteData, got {other}"),
        }
        assert!(msg.contains(&format!("row {row}, column {col}")), "{msg}");
        assert_eq!(theta, theta0, "θ must be untouched");
    }
    // The validation set is checked too.
    let mut xv = x.clone();
    xv[[0, 0]] = f32::NEG_INFINITY;
    let mut theta = theta0.clone();
    let err = train(
        &full_batch(3),
        spec("gd", "").build().as_mut(),
        &mut cpu_factory(&mlp),
        &mut theta,
        view(&x, &t),
        Some(view(&xv, &t)),
        &mut [],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::NonFiniteData {
                what: "validation inputs x",
                row: 0,
                col: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn csv_with_nan_gives_the_loaders_error() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "a,b,y\n0.5,1,0\n2,nan,1\n1,1,1\n").unwrap();
    let err = curvature::data::load_path(path.to_str().unwrap()).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(err.kind, curvature::data::DataErrorKind::NonFinite { .. }),
        "{msg}"
    );
    assert_eq!(
        err.position,
        Some(curvature::data::Position::Line {
            line: 3,
            column: Some(2)
        })
    );
}

/// Runs `name` with `params` full-batch for `epochs` on the unit-Hessian
/// regression; returns (history, θ, E(θ₀), E(θ)).
fn run_regression(name: &str, params: &str, epochs: usize) -> (History, Vec<f64>, f64, f64) {
    let (mlp, x, t, theta0) = unit_hessian_regression();
    let mut theta = theta0.clone();
    let history = train(
        &full_batch(epochs),
        spec(name, params).build().as_mut(),
        &mut cpu_factory(&mlp),
        &mut theta,
        view(&x, &t),
        None,
        &mut [],
    )
    .unwrap_or_else(|e| panic!("{name} {params}: {e}"));
    let start = full_loss(&mlp, &x, &t, &theta0);
    let end = full_loss(&mlp, &x, &t, &theta);
    (history, theta, start, end)
}

/// With H = I, gradient descent multiplies the error by (1 − η) per step: η = 6
/// grows it ×5 until E overflows to ∞ (|θ| ≈ 1e154, after ~220 steps). Each
/// failure halves η: 3 (still ×2, fails again within steps), then 1.5 (×0.5):
/// from then on the error shrinks ×2 per step, ~520 steps back from 1e154 to
/// below the start — 1500 updates leave ample room.
#[test]
fn overflowing_gradient_descent_recovers_by_halving_the_learning_rate() {
    for (name, params) in [
        ("gd", "lr=6"),
        ("momentum", "lr=5,momentum=0.5"),
        ("nesterov", "lr=5,momentum=0.5"),
        ("hessian-diag", "lr=6,min-eigval=0.01"),
    ] {
        let (history, theta, start, end) = run_regression(name, params, 1500);
        eprintln!(
            "{name} {params}: {} accepted, {} rejected, E {start:.4} -> {end:.3e}",
            history.updates, history.rejected
        );
        assert!(history.rejected >= 1, "{name}: the overflow was never met");
        assert!(theta.iter().all(|v| v.is_finite()), "{name}: θ not finite");
        assert!(
            end < start,
            "{name}: E did not end below the start ({end} vs {start})"
        );
    }
}

#[test]
fn an_overflowing_start_is_an_immediate_clear_error() {
    let (mlp, x, t, _) = unit_hessian_regression();
    // y = 1e200·x overflows ½(y − t)² at the very first evaluation.
    let start = vec![1e200, 1e200, 0.0];
    let mut theta = start.clone();
    let err = train(
        &full_batch(10),
        spec("lm", "").build().as_mut(),
        &mut cpu_factory(&mlp),
        &mut theta,
        view(&x, &t),
        None,
        &mut [],
    )
    .unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    let d = diverged(err);
    assert_eq!(d.failures, 0, "no recovery may be tried at the start");
    assert_eq!(d.update, 1);
    assert_eq!(d.failure.quantity, Quantity::Loss);
    assert!(msg.contains("cannot start at update 1"), "{msg}");
    assert!(msg.contains("loss E(θ) is inf"), "{msg}");
    assert!(msg.contains("weights are overflowing"), "{msg}");
    assert_eq!(theta, start, "θ must be the last finite one, the start");
}

/// A device that returns a NaN gradient on every call from the 6th on cannot
/// be recovered from: the run stops after `max_failures` failures in a row,
/// naming the update, the epoch, the quantity and a cause, with θ finite.
#[test]
fn persistent_nan_stops_after_the_bounded_number_of_failures() {
    let (mlp, x, t, theta0) = small_classifier();
    let max_failures = 4;
    for name in ["gd", "newton", "cg-pr", "lbfgs", "hessian-free"] {
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let mlp_ref = &mlp;
        let mut factory = move |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>| {
            let e = FaultyEngine::new(
                mlp_ref,
                x,
                t,
                vec![Fault::from(Op::LossGradGrad, 6, f64::NAN)],
                h.clone(),
            );
            Ok(Box::new(e) as Box<dyn curvature::Curvature>)
        };
        let mut theta = theta0.clone();
        let config = TrainConfig {
            epochs: 50,
            max_failures,
            ..TrainConfig::default()
        };
        let err = train(
            &config,
            spec(name, "").build().as_mut(),
            &mut factory,
            &mut theta,
            view(&x, &t),
            None,
            &mut [],
        )
        .unwrap_err();
        let msg = err.to_string();
        eprintln!("{name}: {msg}");
        let d = diverged(err);
        assert_eq!(d.failures, max_failures, "{name}");
        assert_eq!(d.failure.quantity, Quantity::Gradient, "{name}");
        assert!(d.failure.value.is_nan(), "{name}");
        // Full batch: one update per epoch, so the epoch is the update.
        assert_eq!(d.epoch, Some(d.update), "{name}");
        assert!(!msg.contains('\n'), "{name}: not one line: {msg}");
        for part in [
            format!("update {} (epoch {})", d.update, d.update),
            format!("{max_failures} failed updates in a row"),
            "gradient ∇E is NaN".to_string(),
            "likely cause:".to_string(),
            "try:".to_string(),
        ] {
            assert!(msg.contains(&part), "{name}: `{part}` missing from: {msg}");
        }
        assert!(hits.get() >= max_failures, "{name}: the fault was not hit");
        assert!(theta.iter().all(|v| v.is_finite()), "{name}: θ not finite");
        assert!(full_loss(&mlp, &x, &t, &theta).is_finite(), "{name}");
    }
}

/// `Guarded` used directly (a library user's own loop, or a resumed run that
/// already made 7 updates at 3 per epoch): updates and epochs are numbered
/// on from `updates_before`, and θ is never moved by failed steps.
#[test]
fn guarded_numbers_updates_after_those_already_made() {
    use curvature::optim::{GuardConfig, Guarded, Optimizer};
    let (mlp, x, t, theta0) = small_classifier();
    let hits = Rc::new(Cell::new(0));
    let faults = vec![Fault::from(Op::LossGradGrad, 1, f64::NAN)];
    let mut engine = FaultyEngine::new(&mlp, x.view(), t.view(), faults, hits);
    let mut inner = spec("momentum", "").build();
    let mut guarded = Guarded::new(
        inner.as_mut(),
        GuardConfig {
            max_failures: 2,
            updates_per_epoch: Some(3),
            updates_before: 7,
            ..GuardConfig::default()
        },
    );
    let mut theta = theta0.clone();
    let n = x.nrows();
    let first = guarded.step(&mut engine, &mut theta, 0..n).unwrap();
    assert!(!first.accepted, "a failed step is reported as rejected");
    assert_eq!(guarded.failures(), 1);
    let d = diverged(guarded.step(&mut engine, &mut theta, 0..n).unwrap_err());
    // The 2nd guarded update is update 9 overall; at 3 per epoch, epoch 3.
    assert_eq!((d.update, d.epoch, d.failures), (9, Some(3), 2));
    assert_eq!(theta, theta0);
}
