//! NaN injected into a curvature product, a diagonal, a dense matrix or a
//! gradient (a wrapper engine over the CPU reference), and NaN trial points:
//! detected where they arise, named, never accepted, and recovered from.

use crate::robust_support;
use curvature::engine::ReferenceEngine;
use curvature::optim::{OptimError, Point, Quantity};
use curvature::train::{train, TrainConfig};
use curvature::Curvature;
use robust_support::{
    full_loss, small_classifier, spec, view, Beyond, Fault, FaultyEngine, NanBeyond, Op,
};
use std::cell::Cell;
use std::rc::Rc;

/// (optimizer, its parameters, the fault, the quantity the step must name).
const CASES: [(&str, &str, Op, usize, Quantity); 9] = [
    ("newton", "", Op::Hessian, 2, Quantity::Hessian),
    ("lm", "", Op::Ggn, 2, Quantity::GaussNewton),
    ("hessian-free", "", Op::Gvp, 5, Quantity::GaussNewtonProduct),
    (
        "hessian-free",
        "preconditioner=true",
        Op::DiagGgn,
        2,
        Quantity::GaussNewtonDiagonal,
    ),
    (
        "cg-pr",
        "line-search=hessian",
        Op::Hvp,
        2,
        Quantity::HessianProduct,
    ),
    (
        "hessian-diag",
        "",
        Op::DiagHessian,
        2,
        Quantity::HessianDiagonal,
    ),
    (
        "hessian-diag",
        "diagonal=becker-lecun",
        Op::DiagBeckerLecun,
        2,
        Quantity::HessianDiagonal,
    ),
    ("gd", "", Op::LossGradGrad, 3, Quantity::Gradient),
    ("lbfgs", "", Op::LossGradGrad, 1, Quantity::Gradient),
];

/// A single NaN in the named operation, through `train()`: the update is
/// rejected and recovered from, θ stays finite and E ends below the start.
#[test]
fn one_nan_in_a_curvature_product_is_recovered_from() {
    let (mlp, x, t, theta0) = small_classifier();
    let start = full_loss(&mlp, &x, &t, &theta0);
    for (name, params, op, call, _) in CASES {
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let m = &mlp;
        let mut factory = move |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>| {
            let faults = vec![Fault::once(op, call, f64::NAN)];
            Ok(Box::new(FaultyEngine::new(m, x, t, faults, h.clone())) as Box<dyn Curvature>)
        };
        let mut theta = theta0.clone();
        let config = TrainConfig {
            epochs: 15,
            ..TrainConfig::default()
        };
        let history = train(
            &config,
            spec(name, params).build().as_mut(),
            &mut factory,
            &mut theta,
            view(&x, &t),
            None,
            &mut [],
        )
        .unwrap_or_else(|e| panic!("{name} {params}: {e}"));
        let end = full_loss(&mlp, &x, &t, &theta);
        eprintln!(
            "{name} {params}: NaN in {op:?} call {call}: {} accepted, {} rejected, E {start:.4} -> {end:.4}",
            history.updates, history.rejected
        );
        assert_eq!(hits.get(), 1, "{name}: the fault was not injected");
        assert!(
            history.rejected >= 1,
            "{name}: the failed update was not counted as rejected"
        );
        assert!(theta.iter().all(|v| v.is_finite()), "{name}: θ not finite");
        assert!(
            end < start,
            "{name} {params}: E did not fall ({start} -> {end})"
        );
    }
}

/// Without the guard, the step itself returns the typed error naming the
/// quantity, and leaves θ as it was.
#[test]
fn the_step_names_the_quantity_and_leaves_theta_unchanged() {
    let (mlp, x, t, theta0) = small_classifier();
    let n = x.nrows();
    for (name, params, op, call, quantity) in CASES {
        let hits = Rc::new(Cell::new(0));
        let faults = vec![Fault::once(op, call, f64::INFINITY)];
        let mut engine = FaultyEngine::new(&mlp, x.view(), t.view(), faults, hits.clone());
        let mut opt = spec(name, params).build();
        let mut theta = theta0.clone();
        let mut error = None;
        for _ in 0..10 {
            let before = theta.clone();
            match opt.step(&mut engine, &mut theta, 0..n) {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(theta, before, "{name}: a failed step moved θ");
                    error = Some(e);
                    break;
                }
            }
        }
        let err = error.unwrap_or_else(|| panic!("{name} {params}: the ∞ was not detected"));
        let msg = err.to_string();
        match err {
            OptimError::NonFinite(nf) => {
                assert_eq!(nf.quantity, quantity, "{name}: {msg}");
                assert_eq!(nf.value, f64::INFINITY, "{name}: {msg}");
                assert_eq!(nf.point, Point::Current, "{name}: {msg}");
            }
            other => panic!("{name}: expected NonFinite, got {other}"),
        }
        assert!(msg.contains(quantity.describe()), "{name}: {msg}");
        eprintln!("{name} {params}: {msg}");
    }
}

/// E (and ∇E) are NaN outside a box of half-width `RADIUS` around θ₀, smaller
/// than the first step each method would take: every trial outside is a
/// failure, so line searches must shrink α and damped methods must raise
/// their damping — no accepted step may leave the box, and E must fall.
const RADIUS: f64 = 0.05;

#[test]
fn nan_trial_points_are_never_accepted() {
    let (mlp, x, t, theta0) = small_classifier();
    let n = x.nrows();
    let cases = [
        ("bfgs", Beyond::GradOnly),
        ("lbfgs", Beyond::GradOnly),
        ("cg-fr", Beyond::GradOnly),
        ("cg-pr", Beyond::LossAndGrad),
        ("cg-hs", Beyond::GradOnly),
        ("cg-dy", Beyond::LossAndGrad),
        ("bfgs", Beyond::LossAndGrad),
        ("newton", Beyond::LossAndGrad),
        ("lm", Beyond::LossAndGrad),
        ("hessian-free", Beyond::LossAndGrad),
    ];
    for (name, mode) in cases {
        let mut engine = NanBeyond {
            inner: ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap(),
            center: theta0.clone(),
            radius: RADIUS,
            mode,
        };
        let start = engine.loss(&theta0, 0..n).unwrap();
        let mut opt = spec(name, "").build();
        let mut theta = theta0.clone();
        let mut left_box = false;
        for _ in 0..20 {
            let r = opt
                .step(&mut engine, &mut theta, 0..n)
                .unwrap_or_else(|e| panic!("{name} {mode:?}: {e}"));
            assert!(r.loss_after.unwrap().is_finite(), "{name} {mode:?}: {r:?}");
            left_box |= engine.outside(&theta);
        }
        let end = full_loss(&mlp, &x, &t, &theta);
        eprintln!("{name} {mode:?}: E {start:.4} -> {end:.4}");
        assert!(
            !left_box,
            "{name} {mode:?}: a step into the NaN region was accepted"
        );
        assert!(end < start, "{name} {mode:?}: E did not fall");
    }
}

/// Newton accepts a trial by its loss alone; when only ∇E is NaN there, the
/// next step meets it at its current point. The guard in `train()` undoes the
/// update that led there and raises the damping until steps stay finite.
/// Without the undo every later step fails at that same θ, so with
/// `MAX_FAILURES` the run ends in the bounded-failure error; with it, each
/// accept-then-fail cycle raises c ×4 and steps soon stay inside the box. (The
/// last update of the run may still land outside: its ∇E is never asked for,
/// and E there is finite.)
/// The default bound (20), well below the 60 epochs, so that a run stuck at
/// one θ must hit it.
const MAX_FAILURES: usize = curvature::optim::DEFAULT_MAX_FAILURES;

#[test]
fn a_nan_gradient_after_an_accepted_step_is_undone_by_the_guard() {
    let (mlp, x, t, theta0) = small_classifier();
    let center = theta0.clone();
    let m = &mlp;
    let mut factory = move |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>| {
        Ok(Box::new(NanBeyond {
            inner: ReferenceEngine::new(m, x, t)?,
            center: center.clone(),
            radius: RADIUS,
            mode: Beyond::GradOnly,
        }) as Box<dyn Curvature>)
    };
    let mut theta = theta0.clone();
    let history = train(
        &TrainConfig {
            epochs: 60,
            max_failures: MAX_FAILURES,
            ..TrainConfig::default()
        },
        spec("newton", "").build().as_mut(),
        &mut factory,
        &mut theta,
        view(&x, &t),
        None,
        &mut [],
    )
    .unwrap();
    let start = full_loss(&mlp, &x, &t, &theta0);
    let end = full_loss(&mlp, &x, &t, &theta);
    eprintln!(
        "newton GradOnly: {} accepted, {} rejected, E {start:.4} -> {end:.4}",
        history.updates, history.rejected
    );
    assert!(history.rejected >= 1);
    assert!(theta.iter().all(|v| v.is_finite()));
    assert!(end < start);
}
