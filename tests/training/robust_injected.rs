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

/// A regression net whose loss overflows f32 as soon as its output weights are
/// huge: 3-4-1 tanh/identity sse on 40 rows (t = Σ x), with its starting θ.
fn overflowing_regression() -> (
    curvature::Mlp,
    ndarray::Array2<f32>,
    ndarray::Array2<f32>,
    Vec<f64>,
) {
    use curvature::{Activation, Loss, Mlp};
    let mlp = Mlp::with_hidden(&[3, 4, 1], Activation::Tanh, Loss::Sse, 0.0).unwrap();
    let (_, x24, _, _) = small_classifier();
    let x = ndarray::concatenate![
        ndarray::Axis(0),
        x24.view(),
        x24.slice(ndarray::s![..16, ..])
    ];
    let t = x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
    let theta = mlp.init_params(5);
    (mlp, x, t, theta)
}

/// A NaN/∞ on the device path of `train` (gd with η = 1e30 on the GPU: the outputs
/// overflow f32 after the first update) is recovered from as on the host path —
/// η halved by `recover` at each failure, θ never non-finite —
/// with the device's granularity: each failure is a whole epoch's run of U updates,
/// undone to the epoch's start and counted as U rejected updates and one failure of
/// the guard's streak. So the device ends with η₀·2⁻ᵏ for k = rejected / U, the
/// host with η₀·2⁻ʳ for r = rejected; and `max_failures` failures in a row stop
/// both with `Diverged`, θ left at its last finite value (here the start).
#[test]
fn a_nan_on_the_device_path_is_recovered_like_on_the_host_on_gpu() {
    let Some(ctx) = crate::gpu_support::gpu() else {
        return;
    };
    let (mlp, x, t, theta0) = overflowing_regression();
    let (eta, batch, epochs) = (1e30, 4, 30);
    let per_epoch = x.nrows() / batch;
    for host in [false, true] {
        let path = if host { "host" } else { "device" };
        let run = |max_failures: usize| {
            let mut factory = |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>| {
                crate::gpu_support::training_engine(&ctx, &mlp, x, t, host)
            };
            let config = TrainConfig {
                epochs,
                batch_size: Some(batch),
                max_failures,
                ..TrainConfig::default()
            };
            let mut opt = spec("gd", &format!("lr={eta}")).build();
            let mut theta = theta0.clone();
            let result = train(
                &config,
                opt.as_mut(),
                &mut factory,
                &mut theta,
                view(&x, &t),
                None,
                &mut [],
            );
            let base = opt.export_state().scalars["learning_rate"];
            (result, theta, base)
        };
        let (result, theta, base) = run(200);
        let history = result.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(theta.iter().all(|v| v.is_finite()), "{path}: θ not finite");
        // (E on all rows may still overflow where each batch's did not — the first
        // η that gives a finite trial point leaves it just below f32's range — which
        // ends the host's run with `StopReason::Diverged` at that epoch's record.)
        let last = history.last().unwrap().train_loss;
        assert!(history.rejected > 0, "{path}: no update failed");
        let halvings = if host {
            history.rejected
        } else {
            assert_eq!(
                history.rejected % per_epoch,
                0,
                "{path}: a failure undoes a whole epoch's run"
            );
            history.rejected / per_epoch
        };
        assert_eq!(
            base,
            eta * 0.5f64.powi(halvings as i32),
            "{path}: η after {halvings} recoveries"
        );
        println!(
            "{path}: {} rejected updates, {halvings} halvings of η (now {base:.3e}), final loss {last:.4e} (start {:.4e})",
            history.rejected,
            history.records[0].train_loss
        );
        // The guard's bound: 5 failures in a row stop training at the start.
        let (result, theta, _) = run(5);
        match result {
            Err(OptimError::Diverged(d)) => {
                assert_eq!(d.failures, 5, "{path}: {d}");
                println!("{path}: {d}");
            }
            other => panic!(
                "{path}: expected Diverged, got {:?}",
                other.map(|h| h.updates)
            ),
        }
        assert_eq!(theta, theta0, "{path}: θ is not the last finite one");
    }
}

/// A GPU engine whose device updates start from a θ with one NaN in the `poisoned`
/// run of updates (counted from 0): an injected fault on the device path.
struct PoisonedRun {
    inner: Box<dyn Curvature>,
    runs: usize,
    poisoned: usize,
}

impl curvature::engine::DeviceTraining for PoisonedRun {
    fn begin_updates(
        &mut self,
        rule: &curvature::engine::DeviceRule,
        theta: &[f64],
        state: &[Vec<f64>; 3],
        step: usize,
        l2: f64,
    ) -> curvature::Result<()> {
        let mut theta = theta.to_vec();
        if self.runs == self.poisoned {
            theta[1] = f64::NAN;
        }
        self.runs += 1;
        self.device()?.begin_updates(rule, &theta, state, step, l2)
    }
    fn device_update(&mut self, rows: std::ops::Range<usize>) -> curvature::Result<()> {
        self.device()?.device_update(rows)
    }
    fn finish_updates(&mut self) -> curvature::Result<curvature::engine::DeviceUpdates> {
        self.device()?.finish_updates()
    }
}

impl PoisonedRun {
    fn device(&mut self) -> curvature::Result<&mut dyn curvature::engine::DeviceTraining> {
        self.inner
            .device_training()
            .ok_or_else(|| curvature::Error::Internal("no device updates".into()))
    }
}

impl curvature::Backend for PoisonedRun {
    fn architecture(&self) -> &curvature::Mlp {
        self.inner.architecture()
    }
    fn data_rows(&self) -> usize {
        self.inner.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: std::ops::Range<usize>) -> curvature::Result<f64> {
        self.inner.data_loss(theta, rows)
    }
    fn data_loss_grad(
        &mut self,
        theta: &[f64],
        rows: std::ops::Range<usize>,
    ) -> curvature::Result<(f64, Vec<f64>)> {
        self.inner.data_loss_grad(theta, rows)
    }
    fn network_outputs(
        &mut self,
        theta: &[f64],
        rows: std::ops::Range<usize>,
    ) -> curvature::Result<ndarray::Array2<f64>> {
        self.inner.network_outputs(theta, rows)
    }
    fn data_products(
        &mut self,
        kind: curvature::Kind,
        theta: &[f64],
        rows: std::ops::Range<usize>,
        v: ndarray::ArrayView2<f64>,
    ) -> curvature::Result<ndarray::Array2<f64>> {
        self.inner.data_products(kind, theta, rows, v)
    }
    fn data_diagonal(
        &mut self,
        which: curvature::Diagonal,
        theta: &[f64],
        rows: std::ops::Range<usize>,
    ) -> curvature::Result<Vec<f64>> {
        self.inner.data_diagonal(which, theta, rows)
    }
    fn bind_data(
        &mut self,
        x: ndarray::ArrayView2<f32>,
        t: ndarray::ArrayView2<f32>,
    ) -> curvature::Result<()> {
        self.inner.bind_data(x, t)
    }
    fn device_training(&mut self) -> Option<&mut dyn curvature::engine::DeviceTraining> {
        Some(self)
    }
}

/// One NaN injected into the device's θ at the start of epoch 2's run: the run is
/// undone (θ and momentum's velocity as at the epoch's start), counted as its U
/// updates rejected and one failure, η halved and v zeroed by `recover`, and the
/// epoch rerun — so the end equals a clean device run that starts epoch 2 from the
/// same θ with η/2 and v = 0 (checked by continuing a clean run from its epoch-1
/// checkpoint with that recovered state), and E still falls.
#[test]
fn a_nan_injected_into_a_device_run_undoes_and_reruns_it_on_gpu() {
    use curvature::train::{train_resumable, Engines, Resume, TrainOutcome};
    let Some(ctx) = crate::gpu_support::gpu() else {
        return;
    };
    let (mlp, x, t, theta0) = small_classifier();
    let (batch, epochs, eta) = (4, 6, 0.2);
    let per_epoch = x.nrows() / batch;
    let config = TrainConfig {
        epochs,
        batch_size: Some(batch),
        shuffle_seed: 9,
        ..TrainConfig::default()
    };
    let engine = |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>, poisoned| {
        let inner = crate::gpu_support::training_engine(&ctx, &mlp, x, t, false)?;
        Ok(Box::new(PoisonedRun {
            inner,
            runs: 0,
            poisoned,
        }) as Box<dyn Curvature>)
    };
    let spec = spec("momentum", &format!("lr={eta}"));
    // The run with the NaN in epoch 2's first run (run 1; run 0 is epoch 1).
    let mut opt = spec.build();
    let mut theta = theta0.clone();
    let history = train(
        &config,
        opt.as_mut(),
        &mut |x, t| engine(x, t, 1),
        &mut theta,
        view(&x, &t),
        None,
        &mut [],
    )
    .unwrap();
    assert_eq!(history.rejected, per_epoch, "one run of U updates undone");
    assert_eq!(history.updates, epochs * per_epoch);
    assert_eq!(opt.export_state().scalars["learning_rate"], eta / 2.0);
    let first = history.records[0].train_loss;
    let last = history.last().unwrap().train_loss;
    assert!(last.is_finite() && last < first, "E from {first} to {last}");
    // The same from a clean run paused after epoch 1, recovered by hand.
    let flag = std::sync::atomic::AtomicBool::new(false);
    struct PauseAfterEpoch<'a>(&'a std::sync::atomic::AtomicBool);
    impl curvature::train::Callback for PauseAfterEpoch<'_> {
        fn on_epoch_end(&mut self, _: &curvature::train::History) -> curvature::train::Control {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            curvature::train::Control::Continue
        }
    }
    let mut clean = spec.build();
    let mut theta_ref = theta0.clone();
    let mut engines = Engines::new(|x, t| engine(x, t, usize::MAX));
    let paused = train_resumable(
        &config,
        clean.as_mut(),
        &mut engines,
        &mut theta_ref,
        view(&x, &t),
        None,
        &mut [&mut PauseAfterEpoch(&flag)],
        Resume {
            from: None,
            interrupt: Some(&flag),
        },
    )
    .unwrap();
    let TrainOutcome::Interrupted(state) = paused else {
        panic!("not paused after epoch 1");
    };
    let nan = curvature::optim::NonFinite {
        quantity: Quantity::Parameters,
        point: Point::Trial,
        index: Some(1),
        value: f64::NAN,
    };
    clean.recover(&nan);
    flag.store(false, std::sync::atomic::Ordering::SeqCst);
    let resumed = train_resumable(
        &config,
        clean.as_mut(),
        &mut engines,
        &mut theta_ref,
        view(&x, &t),
        None,
        &mut [],
        Resume {
            from: Some(*state),
            interrupt: None,
        },
    )
    .unwrap();
    assert!(matches!(resumed, TrainOutcome::Finished(_)));
    assert_eq!(
        theta, theta_ref,
        "the rerun epoch is a clean run with the recovered state"
    );
}
