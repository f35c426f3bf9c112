//! Interrupt, checkpoint and resume at the library level: for each optimizer,
//! a run interrupted (twice) after a number of updates, saved to a checkpoint
//! FILE, loaded into a freshly built optimizer and resumed ends with exactly
//! the θ (compared bit for bit) and the History (all but wall-clock seconds)
//! of the same run left alone. On the f64 CPU reference engine, which is
//! deterministic, so any difference is state the checkpoint lost.

use curvature::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
use curvature::engine::ReferenceEngine;
use curvature::optim::{OptimizerSpec, StateError};
use curvature::train::{
    train, train_resumable, Callback, Control, DataView, Engines, History, Resume, TrainConfig,
    TrainOutcome, TrainState,
};
use curvature::{data, Activation, Curvature, Loss, Mlp};
use ndarray::{s, Array2, ArrayView2};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Rows of digits used for training, then for validation (small: seconds per case).
const TRAIN_ROWS: usize = 150;
const VAL_ROWS: usize = 50;

struct Problem {
    mlp: Mlp,
    x: Array2<f32>,
    t: Array2<f32>,
    vx: Array2<f32>,
    vt: Array2<f32>,
}

/// 64-4-10 sigmoid/softmax ce with λ = 1e-3 (W = 310) on the first digits.
fn problem() -> Problem {
    let ds = data::load_named("digits").unwrap();
    let mlp = Mlp::with_hidden(&[64, 4, 10], Activation::Sigmoid, Loss::Ce, 1e-3).unwrap();
    let rows = |a: usize, b: usize| {
        (
            ds.x.slice(s![a..b, ..]).to_owned(),
            ds.t.slice(s![a..b, ..]).to_owned(),
        )
    };
    let (x, t) = rows(0, TRAIN_ROWS);
    let (vx, vt) = rows(TRAIN_ROWS, TRAIN_ROWS + VAL_ROWS);
    Problem { mlp, x, t, vx, vt }
}

fn factory(
    mlp: &Mlp,
) -> impl FnMut(ArrayView2<f32>, ArrayView2<f32>) -> curvature::Result<Box<dyn Curvature>> + '_ {
    move |x, t| Ok(Box::new(ReferenceEngine::new(mlp, x, t)?))
}

/// Raises the interrupt flag after `after` updates (what the CLI's signal handler does).
struct InterruptAfter<'a> {
    after: usize,
    seen: usize,
    flag: &'a AtomicBool,
}

impl Callback for InterruptAfter<'_> {
    fn on_update_end(&mut self, _report: &curvature::optim::StepReport) -> Control {
        self.seen += 1;
        if self.seen == self.after {
            self.flag.store(true, Ordering::SeqCst);
        }
        Control::Continue
    }
}

fn spec(name: &str, params: &str) -> OptimizerSpec {
    let mut spec: OptimizerSpec = name.parse().unwrap();
    spec.set_all(params).unwrap();
    spec
}

/// Records with the wall-clock seconds zeroed (the only field that may differ).
fn without_seconds(h: &History) -> History {
    let mut h = h.clone();
    for r in &mut h.records {
        r.seconds = 0.0;
    }
    h
}

fn bits(theta: &[f64]) -> Vec<u64> {
    theta.iter().map(|v| v.to_bits()).collect()
}

/// Saves the interrupted run through a file, loads it back (checking the
/// round trip is exact), and returns (θ, optimizer, state) rebuilt from the file.
fn through_file(
    path: &Path,
    p: &Problem,
    spec: &OptimizerSpec,
    config: &TrainConfig,
    theta: &[f64],
    optimizer: &dyn curvature::optim::Optimizer,
    state: TrainState,
) -> (Vec<f64>, Box<dyn curvature::optim::Optimizer>, TrainState) {
    let checkpoint = Checkpoint {
        mlp: p.mlp.clone(),
        theta: theta.to_vec(),
        config: config.clone(),
        optimizer_spec: spec.clone(),
        optimizer: optimizer.export_state(),
        state,
        run: BTreeMap::from([("note".to_string(), "library test".to_string())]),
    };
    save_checkpoint(path, &checkpoint).unwrap();
    let loaded = load_checkpoint(path).unwrap();
    assert_eq!(loaded, checkpoint, "the checkpoint file changed something");
    let mut fresh = spec.build();
    fresh
        .import_state(&loaded.optimizer, p.mlp.num_params())
        .unwrap();
    (loaded.theta, fresh, loaded.state)
}

/// Builds the engine of a run bound to (x, t) for a network.
type MakeEngine<'a> =
    dyn Fn(&Mlp, ArrayView2<f32>, ArrayView2<f32>) -> curvature::Result<Box<dyn Curvature>> + 'a;

/// Runs `name` uninterrupted and interrupted after `first` and then `second`
/// more updates; asserts the same θ bits and History. Returns the first
/// interruption's state (for checks on where it stopped) and the History.
fn check_resume(
    name: &str,
    params: &str,
    batch: Option<usize>,
    epochs: usize,
    first: usize,
    second: usize,
) -> (TrainState, History) {
    let cpu = |mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>| {
        Ok(Box::new(ReferenceEngine::new(mlp, x, t)?) as Box<dyn Curvature>)
    };
    check_resume_on(&cpu, name, params, batch, epochs, first, second)
}

/// [`check_resume`] on the engines `make` builds (every run gets fresh ones, as a
/// resumed process would).
fn check_resume_on(
    make: &MakeEngine,
    name: &str,
    params: &str,
    batch: Option<usize>,
    epochs: usize,
    first: usize,
    second: usize,
) -> (TrainState, History) {
    let p = problem();
    let spec = spec(name, params);
    let config = TrainConfig {
        epochs,
        batch_size: batch,
        shuffle_seed: 7,
        patience: Some(epochs), // exercises the best-θ bookkeeping without stopping
        ..TrainConfig::default()
    };
    let train_view = DataView {
        x: p.x.view(),
        t: p.t.view(),
    };
    let val_view = Some(DataView {
        x: p.vx.view(),
        t: p.vt.view(),
    });
    let theta0 = p.mlp.init_params(3);

    let mut theta_a = theta0.clone();
    let mut opt_a = spec.build();
    let history_a = train(
        &config,
        opt_a.as_mut(),
        &mut |x: ArrayView2<f32>, t: ArrayView2<f32>| make(&p.mlp, x, t),
        &mut theta_a,
        train_view,
        val_view,
        &mut [],
    )
    .unwrap();
    assert!(
        history_a.updates + history_a.rejected > first + second,
        "{name}: the run must be longer than the interruptions"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut theta = theta0;
    let mut optimizer = spec.build();
    let mut from: Option<TrainState> = None;
    let mut first_state = None;
    for after in [first, second, usize::MAX] {
        let flag = AtomicBool::new(false);
        let mut interrupter = InterruptAfter {
            after,
            seen: 0,
            flag: &flag,
        };
        let outcome = train_resumable(
            &config,
            optimizer.as_mut(),
            &mut Engines::new(|x: ArrayView2<f32>, t: ArrayView2<f32>| make(&p.mlp, x, t)),
            &mut theta,
            train_view,
            val_view,
            &mut [&mut interrupter],
            Resume {
                from: from.take(),
                interrupt: Some(&flag),
            },
        )
        .unwrap();
        match outcome {
            TrainOutcome::Interrupted(state) => {
                assert_ne!(after, usize::MAX, "{name}: interrupted with no flag raised");
                first_state.get_or_insert_with(|| (*state).clone());
                let (t, o, s) = through_file(
                    &path,
                    &p,
                    &spec,
                    &config,
                    &theta,
                    optimizer.as_ref(),
                    *state,
                );
                theta = t;
                optimizer = o;
                from = Some(s);
            }
            TrainOutcome::Finished(history_b) => {
                assert_eq!(
                    after,
                    usize::MAX,
                    "{name}: finished before the interruption after {after} updates"
                );
                assert_eq!(
                    without_seconds(&history_b),
                    without_seconds(&history_a),
                    "{name}: histories differ"
                );
                assert_eq!(bits(&theta), bits(&theta_a), "{name}: final θ differs");
                println!("{name}: {} updates, {} rejected, θ bit-identical after 2 interruptions; final train loss {:.6}",
                    history_a.updates, history_a.rejected, history_a.last().unwrap().train_loss);
            }
        }
    }
    (first_state.unwrap(), history_a)
}

#[test]
fn momentum_mini_batches_resume_mid_epoch() {
    // 150 rows in batches of 32: 5 updates per epoch; 7 updates stop inside epoch 2.
    let (state, _) = check_resume("momentum", "lr=0.2", Some(32), 4, 7, 6);
    assert_eq!(
        (state.epoch, state.next_row),
        (2, 64),
        "the interruption was not mid-epoch"
    );
    assert_eq!(state.epoch_updates, 2);
}

#[test]
fn nesterov_and_gd_resume() {
    check_resume("nesterov", "lr=0.1", Some(40), 3, 5, 3);
    check_resume("gd", "lr=0.5", Some(64), 3, 4, 1);
}

/// The adaptive methods with schedules: their moments, step counts and η go
/// through the file, and a run resumed inside an epoch continues on that
/// epoch's scheduled rate (the scheduler tells the optimizer the epoch again).
/// Each run also lowers the training loss.
#[test]
fn adaptive_methods_with_schedules_resume_mid_epoch() {
    for (name, params, batch, epochs, first, second) in [
        // 150 rows in batches of 32: 5 updates per epoch; 7 stop inside epoch 2,
        // which is still in the warm-up.
        (
            "adam",
            "lr=0.01,schedule=cosine,warmup=2",
            Some(32),
            4,
            7,
            6,
        ),
        (
            "adam",
            "lr=0.01,amsgrad=true,schedule=exponential",
            Some(40),
            3,
            6,
            3,
        ),
        (
            "adamw",
            "lr=0.01,weight-decay=0.1,schedule=step,gamma=0.5,step-size=1",
            Some(50),
            3,
            4,
            2,
        ),
        (
            "rmsprop",
            "lr=0.005,centered=true,momentum=0.5,schedule=cosine",
            Some(32),
            3,
            7,
            4,
        ),
        ("rmsprop", "", Some(64), 3, 4, 1),
        (
            "adagrad",
            "lr=0.05,lr-decay=0.01,initial-accumulator-value=0.1,warmup=1",
            Some(32),
            3,
            8,
            3,
        ),
    ] {
        let (state, history) = check_resume(name, params, batch, epochs, first, second);
        assert!(
            state.next_row > 0,
            "{name} {params}: the interruption was not mid-epoch"
        );
        let (start, end) = (&history.records[0], history.last().unwrap());
        assert!(
            end.train_loss < start.train_loss,
            "{name} {params}: train loss {} → {}",
            start.train_loss,
            end.train_loss
        );
    }
}

#[test]
fn hessian_diag_mini_batches_resume() {
    check_resume("hessian-diag", "lr=0.05", Some(50), 3, 4, 2);
}

#[test]
fn hessian_free_resumes_with_damping_and_warm_start() {
    let (state, _) = check_resume("hessian-free", "", None, 6, 2, 2);
    // Full batch: one update per epoch, so the flag is seen at the next epoch's start.
    assert_eq!((state.epoch, state.next_row), (3, 0));
}

#[test]
fn levenberg_marquardt_and_newton_resume() {
    check_resume("lm", "", None, 4, 1, 1);
    check_resume("newton", "", None, 4, 2, 1);
    // A tiny initial damping makes the first steps overshoot: rejected steps,
    // after which Newton retries from its cached H and g (dropped by the
    // checkpoint and recomputed) with c ×4.
    // Interrupted right after that rejected step, so the resumed Newton must
    // recompute the linearisation the original one reused.
    let k = first_rejected_step("newton", "damping=1e-6", 12);
    println!("newton damping=1e-6: first rejected step {k} of 12");
    let (_, history) = check_resume("newton", "damping=1e-6", None, 12, k, 1);
    assert!(history.rejected > 0);
}

/// Records whether each step was accepted.
struct Accepted(Vec<bool>);

impl Callback for Accepted {
    fn on_update_end(&mut self, report: &curvature::optim::StepReport) -> Control {
        self.0.push(report.accepted);
        Control::Continue
    }
}

/// The number of steps up to and including the first rejected one of a
/// full-batch run (the test needs one: it fails if there is none).
fn first_rejected_step(name: &str, params: &str, epochs: usize) -> usize {
    let p = problem();
    let config = TrainConfig {
        epochs,
        shuffle_seed: 7,
        ..TrainConfig::default()
    };
    let mut theta = p.mlp.init_params(3);
    let mut record = Accepted(Vec::new());
    let view = DataView {
        x: p.x.view(),
        t: p.t.view(),
    };
    train(
        &config,
        spec(name, params).build().as_mut(),
        &mut factory(&p.mlp),
        &mut theta,
        view,
        None,
        &mut [&mut record],
    )
    .unwrap();
    let index = record.0.iter().position(|a| !a);
    index.expect("no rejected step: the case would test nothing more") + 1
}

/// K-FAC: the running factors, the eigendecompositions in use (refreshed every
/// `inverse-every` updates, so the interruptions fall between refreshes), λ, the
/// update count and the previous step go through the file; the default mc factors
/// draw each update's targets from a stream seeded by (seed, k), the same after a
/// resume. Mini-batches interrupted mid-epoch, the full batch, and a tiny initial
/// damping whose first steps are rejected (λ ×4 each time).
#[test]
fn kfac_resumes_with_its_factors_inverses_damping_and_previous_step() {
    // 150 rows in batches of 32: 5 updates per epoch; 7 stop inside epoch 2.
    let (state, history) = check_resume(
        "kfac",
        "inverse-every=3,damping-every=2,damping=0.1",
        Some(32),
        4,
        7,
        6,
    );
    assert_eq!((state.epoch, state.next_row), (2, 64));
    let (start, end) = (&history.records[0], history.last().unwrap());
    assert!(
        end.train_loss < start.train_loss,
        "kfac: train loss {} → {}",
        start.train_loss,
        end.train_loss
    );
    check_resume("kfac", "fisher=exact,momentum=false", None, 6, 2, 2);
    let (_, history) = check_resume("kfac", "damping=1e-8,inverse-every=2", Some(50), 4, 4, 3);
    assert!(history.rejected > 0, "kfac damping=1e-8: no rejected step");
}

#[test]
fn lbfgs_resumes_with_its_pairs() {
    check_resume("lbfgs", "history=3", None, 10, 4, 3);
}

#[test]
fn bfgs_resumes_with_its_inverse() {
    check_resume("bfgs", "", None, 8, 3, 2);
}

#[test]
fn conjugate_gradients_resume() {
    check_resume("cg-pr", "", None, 8, 3, 2);
    // Mini-batch CG: the (E, ∇E) cache is dropped at the interruption and recomputed.
    check_resume("cg-fr", "line-search=hessian", Some(50), 3, 4, 2);
}

/// The CLI's pattern: one [`Engines`] kept across every pause of a run (a
/// pause per periodic checkpoint), the optimizer going on in memory. The
/// engines are built once (training and validation) and the end is the
/// uninterrupted run's, bit for bit, for mini-batches (a rebind per epoch and
/// after each pause) and the full batch.
#[test]
fn engines_kept_across_pauses_are_built_once_and_change_nothing() {
    for (name, params, batch, epochs, pause_every) in [
        ("momentum", "lr=0.2", Some(32), 4, 3),
        ("hessian-free", "", None, 5, 2),
    ] {
        let p = problem();
        let spec = spec(name, params);
        let config = TrainConfig {
            epochs,
            batch_size: batch,
            shuffle_seed: 7,
            ..TrainConfig::default()
        };
        let train_view = DataView {
            x: p.x.view(),
            t: p.t.view(),
        };
        let val_view = Some(DataView {
            x: p.vx.view(),
            t: p.vt.view(),
        });
        let mut theta_a = p.mlp.init_params(3);
        let history_a = train(
            &config,
            spec.build().as_mut(),
            &mut factory(&p.mlp),
            &mut theta_a,
            train_view,
            val_view,
            &mut [],
        )
        .unwrap();

        let builds = std::cell::Cell::new(0);
        let mut engines = Engines::new(|x, t| {
            builds.set(builds.get() + 1);
            Ok(Box::new(ReferenceEngine::new(&p.mlp, x, t)?) as Box<dyn Curvature>)
        });
        let mut theta = p.mlp.init_params(3);
        let mut optimizer = spec.build();
        let mut from = None;
        let mut pauses = 0;
        let history_b = loop {
            let flag = AtomicBool::new(false);
            let mut pauser = InterruptAfter {
                after: pause_every,
                seen: 0,
                flag: &flag,
            };
            let outcome = train_resumable(
                &config,
                optimizer.as_mut(),
                &mut engines,
                &mut theta,
                train_view,
                val_view,
                &mut [&mut pauser],
                Resume {
                    from: from.take(),
                    interrupt: Some(&flag),
                },
            )
            .unwrap();
            match outcome {
                TrainOutcome::Interrupted(state) => {
                    pauses += 1;
                    from = Some(*state);
                }
                TrainOutcome::Finished(history) => break history,
            }
        };
        assert!(pauses >= 2, "{name}: only {pauses} pauses");
        assert_eq!(builds.get(), 2, "{name}: engines rebuilt across pauses");
        assert_eq!(
            without_seconds(&history_b),
            without_seconds(&history_a),
            "{name}: histories differ"
        );
        assert_eq!(bits(&theta), bits(&theta_a), "{name}: final θ differs");
    }
}

#[test]
fn state_of_another_optimizer_or_size_is_refused() {
    let p = problem();
    let w = p.mlp.num_params();
    let mut lbfgs = spec("lbfgs", "").build();
    let mut engine = ReferenceEngine::new(&p.mlp, p.x.view(), p.t.view()).unwrap();
    let mut theta = p.mlp.init_params(0);
    for _ in 0..3 {
        lbfgs.step(&mut engine, &mut theta, 0..TRAIN_ROWS).unwrap();
    }
    let state = lbfgs.export_state();
    let mut bfgs = spec("bfgs", "").build();
    let err = bfgs.import_state(&state, w).unwrap_err();
    assert!(matches!(err, StateError::WrongOptimizer { .. }), "{err}");
    assert!(
        err.to_string().contains("`lbfgs`") && err.to_string().contains("`bfgs`"),
        "{err}"
    );
    let mut other = spec("lbfgs", "").build();
    let err = other.import_state(&state, w + 1).unwrap_err();
    assert!(matches!(err, StateError::WrongShape { .. }), "{err}");
    // Fewer pairs allowed than stored.
    let mut short = spec("lbfgs", "history=1").build();
    assert!(short.import_state(&state, w).is_err());
    // An entry no optimizer of this kind has.
    let mut extra = state.clone();
    extra.scalars.insert("surprise".into(), 1.0);
    let err = other.import_state(&extra, w).unwrap_err();
    assert!(matches!(err, StateError::Unknown { .. }), "{err}");
    other.import_state(&state, w).unwrap();
    assert_eq!(other.export_state(), state);

    // K-FAC's factors give the layers: another W, a missing factor or a factor
    // that is not square is refused, and a state that fits round-trips.
    let mut kfac = spec("kfac", "").build();
    for _ in 0..3 {
        kfac.step(&mut engine, &mut theta, 0..TRAIN_ROWS).unwrap();
    }
    let state = kfac.export_state();
    assert!(state.tensors.contains_key("a.1") && state.tensors.contains_key("b-vectors.1"));
    let mut fresh = spec("kfac", "").build();
    let err = fresh.import_state(&state, w + 1).unwrap_err();
    assert!(matches!(err, StateError::WrongShape { .. }), "{err}");
    let mut missing = state.clone();
    missing.tensors.remove("b.1");
    let err = fresh.import_state(&missing, w).unwrap_err();
    assert!(matches!(err, StateError::Missing { .. }), "{err}");
    let mut skewed = state.clone();
    if let Some(t) = skewed.tensors.get_mut("a.0") {
        t.shape = vec![t.shape[0] / 5, t.shape[1] * 5];
    }
    let err = fresh.import_state(&skewed, w).unwrap_err();
    assert!(matches!(err, StateError::WrongShape { .. }), "{err}");
    fresh.import_state(&state, w).unwrap();
    assert_eq!(fresh.export_state(), state);
}

#[test]
fn resume_refuses_another_seed_or_batch() {
    let p = problem();
    let spec = spec("momentum", "");
    let config = TrainConfig {
        epochs: 2,
        batch_size: Some(32),
        ..TrainConfig::default()
    };
    let view = DataView {
        x: p.x.view(),
        t: p.t.view(),
    };
    let flag = AtomicBool::new(false);
    let mut stop = InterruptAfter {
        after: 2,
        seen: 0,
        flag: &flag,
    };
    let mut theta = p.mlp.init_params(0);
    let mut opt = spec.build();
    let outcome = train_resumable(
        &config,
        opt.as_mut(),
        &mut Engines::new(factory(&p.mlp)),
        &mut theta,
        view,
        None,
        &mut [&mut stop],
        Resume {
            from: None,
            interrupt: Some(&flag),
        },
    )
    .unwrap();
    let TrainOutcome::Interrupted(state) = outcome else {
        panic!("not interrupted")
    };
    for (changed, what) in [
        (
            TrainConfig {
                shuffle_seed: 1,
                ..config.clone()
            },
            "shuffle seed",
        ),
        (
            TrainConfig {
                batch_size: Some(16),
                ..config.clone()
            },
            "batches of",
        ),
    ] {
        let err = train_resumable(
            &changed,
            opt.as_mut(),
            &mut Engines::new(factory(&p.mlp)),
            &mut theta,
            view,
            None,
            &mut [],
            Resume {
                from: Some((*state).clone()),
                interrupt: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
}

#[test]
fn files_that_are_not_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x08\x00\x00\x00\x00\x00\x00\x00not json").unwrap();
    let err = load_checkpoint(&garbage).unwrap_err().to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );

    let p = problem();
    let model = dir.path().join("model.safetensors");
    curvature::files::save_model(
        &model,
        &p.mlp,
        &p.mlp.init_params(0),
        &Default::default(),
        curvature::files::Overwrite::Refuse,
    )
    .unwrap();
    let err = load_checkpoint(&model).unwrap_err().to_string();
    assert!(err.contains("model file, not a checkpoint"), "{err}");

    // A checkpoint from a newer build.
    let (mut tensors, mut meta) = (Vec::new(), std::collections::HashMap::new());
    tensors.push(curvature::files::NamedTensor {
        name: "theta".into(),
        shape: vec![1],
        data: vec![0.0],
    });
    meta.insert("format".to_string(), "curvature-checkpoint".to_string());
    meta.insert("version".to_string(), "99".to_string());
    let newer = dir.path().join("newer.safetensors");
    curvature::files::write_tensors(
        &newer,
        &tensors,
        meta,
        false,
        curvature::files::Overwrite::Refuse,
    )
    .unwrap();
    let err = load_checkpoint(&newer).unwrap_err().to_string();
    assert!(err.contains("version 99") && err.contains("newer"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");

    // A checkpoint of the previous version (its optimizer spec in `Debug` text).
    let (mut tensors, mut meta) = (Vec::new(), std::collections::HashMap::new());
    tensors.push(curvature::files::NamedTensor {
        name: "theta".into(),
        shape: vec![1],
        data: vec![0.0],
    });
    meta.insert("format".to_string(), "curvature-checkpoint".to_string());
    meta.insert("version".to_string(), "1".to_string());
    let older = dir.path().join("older.safetensors");
    curvature::files::write_tensors(
        &older,
        &tensors,
        meta,
        false,
        curvature::files::Overwrite::Refuse,
    )
    .unwrap();
    let err = load_checkpoint(&older).unwrap_err().to_string();
    assert!(
        err.contains("older.safetensors") && err.contains("version 1") && err.contains("older"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

/// The checkpoint stores the optimizer spec in its `key=value` form and
/// compares specs: one a checkpoint cannot store faithfully is refused when
/// writing, and a stored spec that does not parse is a clear error on loading.
#[test]
fn the_optimizer_spec_goes_through_the_file_as_a_spec() {
    let p = problem();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let spec = spec("cg-pr", "line-search=hessian,restart=7");
    let config = TrainConfig::default();
    let flag = AtomicBool::new(false);
    let mut stop = InterruptAfter {
        after: 1,
        seen: 0,
        flag: &flag,
    };
    let mut theta = p.mlp.init_params(0);
    let mut opt = spec.build();
    let outcome = train_resumable(
        &config,
        opt.as_mut(),
        &mut Engines::new(factory(&p.mlp)),
        &mut theta,
        DataView {
            x: p.x.view(),
            t: p.t.view(),
        },
        None,
        &mut [&mut stop],
        Resume {
            from: None,
            interrupt: Some(&flag),
        },
    )
    .unwrap();
    let TrainOutcome::Interrupted(state) = outcome else {
        panic!("not interrupted")
    };
    let mut checkpoint = Checkpoint {
        mlp: p.mlp.clone(),
        theta: theta.clone(),
        config,
        optimizer_spec: spec.clone(),
        optimizer: opt.export_state(),
        state: *state,
        run: BTreeMap::new(),
    };
    save_checkpoint(&path, &checkpoint).unwrap();
    assert_eq!(load_checkpoint(&path).unwrap().optimizer_spec, spec);
    // A stored spec that does not parse.
    let (tensors, mut meta) = curvature::files::read_tensors(&path).unwrap();
    assert_eq!(
        meta["optimizer_spec"],
        "optimizer=cg-pr,line-search=hessian,restart=7"
    );
    meta.insert("optimizer_spec".into(), "optimizer=lion,lr=0.1".into());
    let garbled = dir.path().join("garbled.safetensors");
    curvature::files::write_tensors(
        &garbled,
        &tensors,
        meta,
        false,
        curvature::files::Overwrite::Refuse,
    )
    .unwrap();
    let err = load_checkpoint(&garbled).unwrap_err().to_string();
    assert!(
        err.contains("optimizer_spec") && err.contains("unknown optimizer `lion`"),
        "{err}"
    );
    // A setting outside the spec's keys would be lost: refused, naming the spec.
    let curvature::optim::OptimizerSpec::ConjugateGradient(cg) = &mut checkpoint.optimizer_spec
    else {
        panic!("not CG")
    };
    cg.beta = curvature::optim::cg::BetaFormula::PolakRibierePlus;
    cg.step_length = curvature::optim::cg::StepLength::Hessian(
        curvature::optim::line_search::WolfeConfig::quasi_newton(),
    );
    let err = save_checkpoint(&dir.path().join("lossy.safetensors"), &checkpoint)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("optimizer=cg-pr,line-search=hessian,restart=7") && err.contains("cannot"),
        "{err}"
    );
    assert!(!dir.path().join("lossy.safetensors").exists());
}

/// A recovery from NaN changes an optimizer's own parameters (gd's η,
/// hessian-diag's η and floor, the first-step scale of cg, bfgs and lbfgs):
/// they are part of the exported state, so a run resumed after a recovery goes
/// on with the recovered values, not the configured ones.
#[test]
fn recovered_parameters_survive_a_checkpoint() {
    use curvature::optim::finite::{NonFinite, Point, Quantity};
    let nan = NonFinite {
        quantity: Quantity::Loss,
        point: Point::Trial,
        index: None,
        value: f64::NAN,
    };
    for (name, params) in [
        ("gd", "lr=0.5"),
        ("momentum", "lr=0.1"),
        ("adam", "schedule=cosine"),
        ("adamw", ""),
        ("rmsprop", "momentum=0.9"),
        ("adagrad", ""),
        ("hessian-diag", "lr=0.05"),
        ("cg-pr", ""),
        ("bfgs", ""),
        ("lbfgs", ""),
        ("kfac", ""),
    ] {
        let mut recovered = spec(name, params).build();
        recovered.recover(&nan);
        let state = recovered.export_state();
        let untouched = spec(name, params).build().export_state();
        assert_ne!(
            state, untouched,
            "{name}: recover() left no trace in the state"
        );
        let mut fresh = spec(name, params).build();
        fresh.import_state(&state, 310).unwrap();
        assert_eq!(
            fresh.export_state(),
            state,
            "{name}: the recovered state did not survive"
        );
    }
}

/// The device path (a GPU engine: θ and the optimizer's state on the device, one
/// submit per update): a run interrupted twice — inside epochs, so that each device
/// run is cut where the interruption falls — saved to a file, loaded into a fresh
/// optimizer and resumed on fresh engines ends with θ bit for bit and the History
/// of the uninterrupted device run (the device's updates depend only on θ, the
/// state and t, which the checkpoint holds exactly: f32 values in f64).
#[test]
fn device_path_runs_resume_bit_identically_on_gpu() {
    let Some(ctx) = crate::gpu_support::gpu() else {
        return;
    };
    let gpu = |mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>| {
        crate::gpu_support::training_engine(&ctx, mlp, x, t, false)
    };
    for (name, params, batch, epochs, first, second) in [
        // 150 rows in batches of 32: 5 updates per epoch; 7 stop inside epoch 2.
        ("momentum", "lr=0.2", 32, 4, 7, 6),
        ("nesterov", "lr=0.1", 40, 3, 5, 3),
        (
            "adam",
            "lr=0.01,amsgrad=true,schedule=cosine,warmup=1",
            32,
            4,
            7,
            6,
        ),
        ("adamw", "lr=0.01,weight-decay=0.1", 50, 3, 4, 2),
        (
            "rmsprop",
            "lr=0.005,centered=true,momentum=0.5",
            32,
            3,
            7,
            4,
        ),
        (
            "adagrad",
            "lr=0.05,lr-decay=0.01,initial-accumulator-value=0.1",
            32,
            3,
            8,
            3,
        ),
    ] {
        let (state, history) =
            check_resume_on(&gpu, name, params, Some(batch), epochs, first, second);
        assert!(
            state.next_row > 0,
            "{name}: the interruption was not mid-epoch"
        );
        assert_eq!(history.rejected, 0, "{name}");
    }
}
