//! Verification during training (`engine::verify`) against a GPU that starts computing
//! wrong values after update 7 (`GpuContext::corrupt_results_for_testing`: every result
//! read back from then on has its largest entry 1% off). `auto` must catch it within
//! the budget's bound on unchecked updates (`verify::unchecked_bound`), `off` must not,
//! and the summary must count what was checked.
//!
//! The budget's clock is the test's (`VerifyState::with_clock`), so every decision is
//! deterministic: each update takes `UPDATE_SECONDS` and each check
//! `CHECK_SECONDS_PER_ROW` per row compared, whatever the machine.

use crate::gpu_support::Case;
use curvature::engine::verify::{
    unchecked_bound, warm_up_updates, VerifyMode, VerifyState, Verifying, MIN_SLICE_ROWS,
};
use curvature::engine::Device;
use curvature::gpu::{AdapterChoice, AdapterOptions, GpuContext, TestFaults};
use curvature::optim::{OptimizerSpec, StepReport};
use curvature::train::{train, Callback, Control, DataView, TrainConfig};
use curvature::{Activation, Curvature, Error, Loss};
use ndarray::Array2;
use std::rc::Rc;
use std::sync::Arc;

const UPDATE_SECONDS: f64 = 1.0;
const CHECK_SECONDS_PER_ROW: f64 = 0.004;
const BUDGET: f64 = 0.1;
/// The fault appears after this update (0-based): updates 0..=7 are computed right.
const LAST_GOOD_UPDATE: usize = 7;
/// 64 rows in batches of 12: 6 updates per epoch (the last of 4 rows), so that the
/// evaluation after an epoch does not follow update 7; 5 epochs.
const ROWS: usize = 64;
const BATCH: usize = 12;
const EPOCHS: usize = 5;
/// K-FAC's kinds of result in every update: loss and gradient, K-FAC factors, Gv, the
/// trial point's loss.
const KINDS: usize = 4;

/// A fresh context (the fault must not reach the context other tests share).
fn context() -> Option<Arc<GpuContext>> {
    let opts = AdapterOptions {
        choice: AdapterChoice::Gpu,
        name: std::env::var("CURVATURE_ADAPTER").ok(),
    };
    match GpuContext::new_with_faults_for_testing(&opts, TestFaults::default()) {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("CURVATURE_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("CURVATURE_REQUIRE_GPU=1 but no GPU context: {e}");
            }
            println!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// Advances the verifier's update counter, and turns the fault on after `LAST_GOOD_UPDATE`.
struct Updates {
    state: Rc<VerifyState>,
    fault: Option<Arc<GpuContext>>,
}

impl Callback for Updates {
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        let done = self.state.updates.get() + 1;
        self.state.updates.set(done);
        if done == LAST_GOOD_UPDATE + 1 {
            if let Some(ctx) = &self.fault {
                ctx.corrupt_results_for_testing();
            }
        }
        Control::Continue
    }
}

/// A verifier in `mode` on the test's clock: T = updates · UPDATE_SECONDS + rows compared
/// · CHECK_SECONDS_PER_ROW.
fn state(mode: VerifyMode) -> Rc<VerifyState> {
    Rc::new_cyclic(|me: &std::rc::Weak<VerifyState>| {
        let me = me.clone();
        VerifyState::new(mode, 3)
            .with_device("the test GPU")
            .with_clock(move || {
                me.upgrade().map_or(0.0, |s| {
                    s.updates.get() as f64 * UPDATE_SECONDS
                        + s.rows_checked() as f64 * CHECK_SECONDS_PER_ROW
                })
            })
    })
}

/// `optimizer` on `ctx` through the verifier in `mode`, the fault on after update 7
/// when `fault`; the run's result and the verifier.
fn run(
    ctx: &Arc<GpuContext>,
    optimizer: &str,
    mode: VerifyMode,
    fault: bool,
) -> (
    curvature::optim::Result<curvature::train::History>,
    Rc<VerifyState>,
) {
    let case = Case::new(&[6, 9, 4], Activation::Tanh, Loss::Ce, 1e-3, ROWS, 21);
    let x: Array2<f32> = case.x.mapv(|v| v as f32);
    let t: Array2<f32> = case.t.mapv(|v| v as f32);
    let verify = state(mode);
    let device = Device::Gpu(ctx.clone());
    let mlp = case.mlp.clone();
    let shared = verify.clone();
    let mut factory = move |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>| {
        let engine: Box<dyn Curvature> = Box::new(device.engine(&mlp, x, t)?);
        let verified = Verifying::new(engine, &mlp, x, t, shared.clone())?;
        Ok(Box::new(verified) as Box<dyn Curvature>)
    };
    let config = TrainConfig {
        epochs: EPOCHS,
        batch_size: Some(BATCH),
        ..TrainConfig::default()
    };
    let mut optimizer = optimizer.parse::<OptimizerSpec>().unwrap().build();
    let mut theta = case.theta.clone();
    let mut updates = Updates {
        state: verify.clone(),
        fault: fault.then(|| ctx.clone()),
    };
    let data = DataView {
        x: x.view(),
        t: t.view(),
    };
    let result = train(
        &config,
        optimizer.as_mut(),
        &mut factory,
        &mut theta,
        data,
        None,
        &mut [&mut updates],
    );
    (result, verify)
}

/// The update a disagreement names ("update 9: …").
fn failed_update(message: &str) -> usize {
    let rest = message
        .split("update ")
        .nth(1)
        .unwrap_or_else(|| panic!("no update in: {message}"));
    rest.split(':').next().unwrap().parse().unwrap()
}

/// The bound for this test's costs: every kind's smallest slice costs
/// MIN_SLICE_ROWS · CHECK_SECONDS_PER_ROW.
fn bound() -> usize {
    let slice = MIN_SLICE_ROWS as f64 * CHECK_SECONDS_PER_ROW;
    unchecked_bound(KINDS, slice, BUDGET, UPDATE_SECONDS)
}

#[test]
fn auto_catches_a_fault_after_update_7_within_its_bound_and_off_does_not() {
    let Some(ctx) = context() else {
        return;
    };
    let auto = VerifyMode::Auto { budget: BUDGET };
    let (result, verify) = run(&ctx, "kfac", auto, true);
    let err = match result {
        Err(e) => Error::from(e),
        Ok(h) => panic!("the fault went unseen through {} updates", h.updates),
    };
    let message = err.to_string();
    println!("{message}");
    assert!(matches!(err, Error::Verification(_)), "{err:?}");
    assert!(!message.contains('\n'), "not one line: {message}");
    for what in [
        "the test GPU",
        "disagrees with the CPU reference",
        "worst at index",
        "device ",
        "reference ",
    ] {
        assert!(message.contains(what), "no `{what}` in: {message}");
    }
    let caught = failed_update(&message);
    // The first update's full checks leave a debt that the budget pays first.
    let first: f64 = verify
        .checks
        .borrow()
        .iter()
        .filter(|c| c.update == 0)
        .map(|c| c.rows as f64 * CHECK_SECONDS_PER_ROW)
        .sum();
    let warm = warm_up_updates(first, BUDGET, UPDATE_SECONDS);
    let bound = bound();
    println!("caught at update {caught}; warm-up {warm} updates, bound {bound} unchecked updates");
    assert!(
        caught > LAST_GOOD_UPDATE,
        "a disagreement before the fault: {message}"
    );
    assert!(
        caught <= LAST_GOOD_UPDATE.max(warm) + bound,
        "caught at update {caught}, past the bound {bound} after update {LAST_GOOD_UPDATE} (warm-up {warm})"
    );
    // What it kept: the last update whose checks passed, before the fault.
    let (kept, theta) = verify
        .last_verified()
        .expect("updates were verified before the fault");
    assert!(kept <= LAST_GOOD_UPDATE && kept < caught, "{kept}");
    assert!(theta.iter().all(|v| v.is_finite()));

    let (result, verify) = run(&ctx, "kfac", VerifyMode::Off, true);
    let history = result.expect("with verification off the wrong values go unseen");
    assert_eq!(
        history.updates + history.rejected,
        EPOCHS * ROWS.div_ceil(BATCH)
    );
    assert!(verify.checks.borrow().is_empty());
}

#[test]
fn auto_checks_every_kind_within_its_budget_and_counts_them() {
    let Some(ctx) = context() else {
        return;
    };
    let (result, verify) = run(&ctx, "kfac", VerifyMode::Auto { budget: BUDGET }, false);
    let history = result.expect("no fault, no disagreement");
    let steps = history.updates + history.rejected;
    assert_eq!(steps, EPOCHS * ROWS.div_ceil(BATCH));
    let checks = verify.checks.borrow();
    let summary = verify.summary();
    for line in verify.summary_lines() {
        println!("{line}");
    }
    // The counts are those of the checks made, by kind.
    for k in &summary {
        let of_kind: Vec<_> = checks.iter().filter(|c| c.quantity == k.quantity).collect();
        assert_eq!(
            k.full,
            of_kind.iter().filter(|c| !c.sliced()).count(),
            "{}",
            k.quantity
        );
        assert_eq!(
            k.sliced,
            of_kind.iter().filter(|c| c.sliced()).count(),
            "{}",
            k.quantity
        );
        assert!(k.worst_fraction <= 1.0, "{k:?}");
    }
    let names: Vec<&str> = summary.iter().map(|k| k.quantity).collect();
    for kind in ["loss", "gradient", "K-FAC factors", "Gv"] {
        assert!(names.contains(&kind), "{kind} never checked: {names:?}");
        // Checked after the first update too, within the bound of unchecked updates.
        let updates: Vec<usize> = checks
            .iter()
            .filter(|c| c.quantity == kind)
            .map(|c| c.update)
            .collect();
        assert!(
            updates.iter().any(|&u| u > 0),
            "{kind} checked in update 0 only"
        );
        let first: f64 = checks
            .iter()
            .filter(|c| c.update == 0)
            .map(|c| c.rows as f64 * CHECK_SECONDS_PER_ROW)
            .sum();
        let warm = warm_up_updates(first, BUDGET, UPDATE_SECONDS);
        let mut last = warm;
        for &u in updates.iter().filter(|&&u| u > warm) {
            assert!(
                u - last <= bound() + 1,
                "{kind}: {} updates unchecked before {u}",
                u - last - 1
            );
            last = u;
        }
    }
    assert!(
        summary.iter().any(|k| k.sliced > 0),
        "no sliced check: at these costs a full check of every kind does not fit"
    );
    // Every check after the warm-up fits the credit, so V ≤ b·T at the end.
    assert!(verify.share() <= BUDGET + 1e-12, "share {}", verify.share());

    // `every` checks every result in full: one loss and gradient per update at least.
    let (result, verify) = run(&ctx, "kfac", VerifyMode::Every, false);
    let history = result.expect("no fault, no disagreement");
    let steps = history.updates + history.rejected;
    let summary = verify.summary();
    let count = |q: &str| {
        summary
            .iter()
            .find(|k| k.quantity == q)
            .map_or(0, |k| k.full)
    };
    assert_eq!(count("gradient"), steps);
    assert_eq!(count("K-FAC factors"), steps);
    assert_eq!(count("Gv"), steps);
    assert!(summary.iter().all(|k| k.sliced == 0));
}

/// Momentum trains on the device (θ and the velocity stay there): `auto` checks an
/// update by splitting the device's run before it. The pieces add up to the run (every
/// update counted once), and the fault after update 7 is caught within the bound (one
/// kind in every update, the evaluation's two between epochs).
#[test]
fn auto_checks_device_updates_by_splitting_their_runs() {
    let Some(ctx) = context() else {
        return;
    };
    let auto = VerifyMode::Auto { budget: BUDGET };
    let (result, verify) = run(&ctx, "momentum", auto, false);
    let history = result.expect("no fault, no disagreement");
    assert_eq!(
        history.updates + history.rejected,
        EPOCHS * ROWS.div_ceil(BATCH)
    );
    let inside: Vec<usize> = verify
        .checks
        .borrow()
        .iter()
        .filter(|c| {
            c.quantity == "gradient"
                && c.update > 0
                && !c.update.is_multiple_of(ROWS.div_ceil(BATCH))
        })
        .map(|c| c.update)
        .collect();
    assert!(!inside.is_empty(), "no update checked inside a device run");

    let (result, verify) = run(&ctx, "momentum", auto, true);
    let message = match result {
        Err(e) => Error::from(e).to_string(),
        Ok(h) => panic!("the fault went unseen through {} updates", h.updates),
    };
    println!("{message}");
    let caught = failed_update(&message);
    let first: f64 = verify
        .checks
        .borrow()
        .iter()
        .filter(|c| c.update == 0)
        .map(|c| c.rows as f64 * CHECK_SECONDS_PER_ROW)
        .sum();
    let warm = warm_up_updates(first, BUDGET, UPDATE_SECONDS);
    let slice = MIN_SLICE_ROWS as f64 * CHECK_SECONDS_PER_ROW;
    let bound = unchecked_bound(3, slice, BUDGET, UPDATE_SECONDS);
    println!("caught at update {caught}; warm-up {warm} updates, bound {bound}");
    assert!(caught > LAST_GOOD_UPDATE, "{message}");
    assert!(caught <= LAST_GOOD_UPDATE.max(warm) + bound, "{message}");
}
