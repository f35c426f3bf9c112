//! The training scheduler: history, mini-batch shuffling, early stopping,
//! callbacks, rejected-step accounting and the JSON form.

use crate::optim_support;
use curvature::optim::{OptimizerSpec, StepReport};
use curvature::train::{accuracy, train, Callback, Control, DataView, StopReason, TrainConfig};
use curvature::{Activation, Backend, Curvature, Diagonal, Kind, Loss, Mlp};
use ndarray::{array, Array2, ArrayView2};
use optim_support::{uniform_inputs, CPU};
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

const N: usize = 64;

/// Logistic-regression data: x (N, 3), t (N, 1) with a linear rule.
fn data(seed: u64) -> (Array2<f32>, Array2<f32>) {
    let x = uniform_inputs(N, 3, seed);
    let t = Array2::from_shape_fn((N, 1), |(n, _)| f32::from(x[[n, 0]] + x[[n, 1]] > 0.0));
    (x, t)
}

fn mlp() -> Mlp {
    Mlp::new(&[3, 1], &[Activation::Sigmoid], Loss::Bce, 0.0).unwrap()
}

fn factory(
    mlp: &Mlp,
) -> impl FnMut(ArrayView2<f32>, ArrayView2<f32>) -> curvature::Result<Box<dyn Curvature>> + '_ {
    move |x, t| Ok((CPU.make)(mlp, x, t))
}

/// What a [`Bound`] engine does when it is given new rows.
#[derive(Clone, Copy, PartialEq)]
enum OnBind {
    /// Rebinds the engine it wraps (what training does every epoch).
    Rebind,
    /// Builds a fresh engine for the rows instead (what training did before
    /// engines were rebound): the results must be the same bits.
    Rebuild,
}

/// A CPU engine that records the rows of x it is bound to: those it was built
/// with, then those of every rebind.
struct Bound {
    inner: Box<dyn Curvature>,
    mlp: Mlp,
    on_bind: OnBind,
    seen: Rc<RefCell<Vec<Array2<f32>>>>,
}

impl Bound {
    fn new(
        mlp: &Mlp,
        x: ArrayView2<f32>,
        t: ArrayView2<f32>,
        on_bind: OnBind,
        seen: Rc<RefCell<Vec<Array2<f32>>>>,
    ) -> Bound {
        seen.borrow_mut().push(x.to_owned());
        Bound {
            inner: (CPU.make)(mlp, x, t),
            mlp: mlp.clone(),
            on_bind,
            seen,
        }
    }
}

impl Backend for Bound {
    fn architecture(&self) -> &Mlp {
        self.inner.architecture()
    }
    fn data_rows(&self) -> usize {
        self.inner.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> curvature::Result<f64> {
        self.inner.data_loss(theta, rows)
    }
    fn data_loss_grad(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
    ) -> curvature::Result<(f64, Vec<f64>)> {
        self.inner.data_loss_grad(theta, rows)
    }
    fn network_outputs(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
    ) -> curvature::Result<Array2<f64>> {
        self.inner.network_outputs(theta, rows)
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> curvature::Result<Array2<f64>> {
        self.inner.data_products(kind, theta, rows, v)
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> curvature::Result<Vec<f64>> {
        self.inner.data_diagonal(which, theta, rows)
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> curvature::Result<Array2<f64>> {
        self.inner.data_matrix(kind, theta, rows)
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> curvature::Result<()> {
        self.seen.borrow_mut().push(x.to_owned());
        match self.on_bind {
            OnBind::Rebind => self.inner.bind_data(x, t),
            OnBind::Rebuild => {
                self.inner = (CPU.make)(&self.mlp, x, t);
                Ok(())
            }
        }
    }
}

fn gd(lr: &str) -> Box<dyn curvature::optim::Optimizer> {
    let mut spec: OptimizerSpec = "gd".parse().unwrap();
    spec.set("lr", lr).unwrap();
    spec.build()
}

#[test]
fn full_batch_history_has_one_update_per_epoch_and_falls() {
    let (x, t) = data(0);
    let (vx, vt) = data(1);
    let mlp = mlp();
    let mut theta = vec![0.0; mlp.num_params()];
    let config = TrainConfig {
        epochs: 20,
        ..TrainConfig::default()
    };
    let h = train(
        &config,
        gd("1.0").as_mut(),
        &mut factory(&mlp),
        &mut theta,
        DataView {
            x: x.view(),
            t: t.view(),
        },
        Some(DataView {
            x: vx.view(),
            t: vt.view(),
        }),
        &mut [],
    )
    .unwrap();
    assert_eq!(h.records.len(), 21);
    assert_eq!(h.last_epoch(), 20);
    assert_eq!(h.updates, 20);
    assert_eq!(h.stop, StopReason::Completed);
    // θ = 0 predicts ½ everywhere: E = ln 2 exactly, and GD on this convex loss lowers it.
    assert!((h.records[0].train_loss - std::f64::consts::LN_2).abs() < 1e-12);
    let last = h.last().unwrap();
    assert!(last.train_loss < h.records[0].train_loss);
    assert!(last.val_loss.unwrap() < h.records[0].val_loss.unwrap());
    assert!(last.train_accuracy.unwrap() > 0.9, "{last:?}");
    assert!(h.records.windows(2).all(|w| w[1].seconds >= w[0].seconds));
    let json = h.to_json();
    assert!(
        json.starts_with("{\"optimizer\":\"gd\",\"last_epoch\":20,\"updates\":20"),
        "{json}"
    );
    assert_eq!(json.matches("\"epoch\":").count(), 21);
}

#[test]
fn mini_batches_see_a_seeded_permutation_each_epoch() {
    let (x, t) = data(0);
    let mlp = mlp();
    let seen: Rc<RefCell<Vec<Array2<f32>>>> = Rc::default();
    let builds = Cell::new(0);
    let mut recording = |bx: ArrayView2<f32>, bt: ArrayView2<f32>| {
        builds.set(builds.get() + 1);
        let engine = Bound::new(&mlp, bx, bt, OnBind::Rebind, seen.clone());
        Ok(Box::new(engine) as Box<dyn Curvature>)
    };
    let config = TrainConfig {
        epochs: 3,
        batch_size: Some(16),
        shuffle_seed: 7,
        ..TrainConfig::default()
    };
    let mut theta = vec![0.0; mlp.num_params()];
    let h = train(
        &config,
        gd("0.5").as_mut(),
        &mut recording,
        &mut theta,
        DataView {
            x: x.view(),
            t: t.view(),
        },
        None,
        &mut [],
    )
    .unwrap();
    assert_eq!(
        h.updates,
        3 * 4,
        "64 rows in batches of 16: 4 updates per epoch"
    );
    assert_eq!(builds.get(), 1, "one engine, built once");
    let seen = seen.borrow().clone();
    assert_eq!(
        seen.len(),
        4,
        "bound to the unshuffled start, then rebound once per epoch"
    );
    let sorted = |a: &Array2<f32>| {
        let mut rows: Vec<Vec<u32>> = a
            .outer_iter()
            .map(|r| r.iter().map(|v| v.to_bits()).collect())
            .collect();
        rows.sort();
        rows
    };
    for (epoch, seen_x) in seen.iter().enumerate().skip(1) {
        assert_eq!(
            sorted(seen_x),
            sorted(&x),
            "epoch {epoch} is not a permutation"
        );
        assert_ne!(seen_x, x, "epoch {epoch} was not shuffled");
    }
    assert_ne!(seen[1], seen[2]);
    // The same seed gives the same run; another seed another.
    let rerun = |seed: u64| {
        let mut th = vec![0.0; mlp.num_params()];
        let cfg = TrainConfig {
            shuffle_seed: seed,
            ..config.clone()
        };
        train(
            &cfg,
            gd("0.5").as_mut(),
            &mut factory(&mlp),
            &mut th,
            DataView {
                x: x.view(),
                t: t.view(),
            },
            None,
            &mut [],
        )
        .unwrap();
        th
    };
    assert_eq!(rerun(7), theta);
    assert_ne!(rerun(8), theta);
}

/// Mini-batch training builds each engine once (training, validation) and
/// rebinds the training engine every epoch; the run is the same, bit for bit,
/// as one that builds a fresh engine for every epoch's rows.
#[test]
fn rebinding_each_epoch_gives_the_bits_of_rebuilding() {
    let (x, t) = data(0);
    let (vx, vt) = data(1);
    let mlp = mlp();
    let config = TrainConfig {
        epochs: 4,
        batch_size: Some(24),
        shuffle_seed: 3,
        ..TrainConfig::default()
    };
    let run = |on_bind: OnBind, optimizer: &str| {
        let seen: Rc<RefCell<Vec<Array2<f32>>>> = Rc::default();
        let builds = Cell::new(0);
        let mut factory = |bx: ArrayView2<f32>, bt: ArrayView2<f32>| {
            builds.set(builds.get() + 1);
            let engine = Bound::new(&mlp, bx, bt, on_bind, seen.clone());
            Ok(Box::new(engine) as Box<dyn Curvature>)
        };
        let mut spec: OptimizerSpec = optimizer.parse().unwrap();
        spec.set("lr", "0.5").unwrap();
        let mut theta = vec![0.1; mlp.num_params()];
        let mut history = train(
            &config,
            spec.build().as_mut(),
            &mut factory,
            &mut theta,
            DataView {
                x: x.view(),
                t: t.view(),
            },
            Some(DataView {
                x: vx.view(),
                t: vt.view(),
            }),
            &mut [],
        )
        .unwrap();
        for r in &mut history.records {
            r.seconds = 0.0;
        }
        let bindings = seen.borrow().len();
        (
            theta.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            history,
            builds.get(),
            bindings,
        )
    };
    for optimizer in ["momentum", "hessian-diag"] {
        let (theta, history, builds, bindings) = run(OnBind::Rebind, optimizer);
        assert_eq!(
            builds, 2,
            "{optimizer}: the training and the validation engine, once each"
        );
        assert_eq!(
            bindings,
            2 + 4,
            "{optimizer}: both built, then one rebind per epoch"
        );
        let (rebuilt_theta, rebuilt_history, _, _) = run(OnBind::Rebuild, optimizer);
        assert_eq!(theta, rebuilt_theta, "{optimizer}: θ differs");
        assert_eq!(history, rebuilt_history, "{optimizer}: histories differ");
        assert_eq!(history.updates + history.rejected, 4 * 3, "{optimizer}");
    }
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    // Validation targets are the training targets flipped: every improvement on
    // the training set worsens the validation loss, so epoch 0 stays the best.
    let (x, t) = data(0);
    let flipped = t.mapv(|v| 1.0 - v);
    let mlp = mlp();
    let start = vec![0.0; mlp.num_params()];
    let mut theta = start.clone();
    let config = TrainConfig {
        epochs: 50,
        patience: Some(3),
        ..TrainConfig::default()
    };
    let h = train(
        &config,
        gd("1.0").as_mut(),
        &mut factory(&mlp),
        &mut theta,
        DataView {
            x: x.view(),
            t: t.view(),
        },
        Some(DataView {
            x: x.view(),
            t: flipped.view(),
        }),
        &mut [],
    )
    .unwrap();
    assert_eq!(h.stop, StopReason::EarlyStopping { best_epoch: 0 });
    assert_eq!(h.last_epoch(), 3);
    assert_eq!(theta, start, "θ of epoch 0 restored");
}

#[derive(Default)]
struct Counter {
    starts: usize,
    ends: usize,
    epochs_started: usize,
    updates: usize,
    stop_after_updates: Option<usize>,
    stop_after_epoch: Option<usize>,
}

impl Callback for Counter {
    fn on_train_start(&mut self, _: &TrainConfig) {
        self.starts += 1;
    }
    fn on_train_end(&mut self, _: &curvature::train::History) {
        self.ends += 1;
    }
    fn on_epoch_start(&mut self, _: usize) -> Control {
        self.epochs_started += 1;
        Control::Continue
    }
    fn on_epoch_end(&mut self, h: &curvature::train::History) -> Control {
        if Some(h.last_epoch()) == self.stop_after_epoch {
            Control::Stop
        } else {
            Control::Continue
        }
    }
    fn on_update_end(&mut self, _: &StepReport) -> Control {
        self.updates += 1;
        if Some(self.updates) == self.stop_after_updates {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

#[test]
fn callbacks_see_every_event_and_can_stop_training() {
    let (x, t) = data(0);
    let mlp = mlp();
    let run = |cb: &mut Counter, batch: Option<usize>| {
        let mut theta = vec![0.0; mlp.num_params()];
        let config = TrainConfig {
            epochs: 10,
            batch_size: batch,
            ..TrainConfig::default()
        };
        train(
            &config,
            gd("0.5").as_mut(),
            &mut factory(&mlp),
            &mut theta,
            DataView {
                x: x.view(),
                t: t.view(),
            },
            None,
            &mut [cb],
        )
        .unwrap()
    };
    let mut mid_epoch = Counter {
        stop_after_updates: Some(6),
        ..Counter::default()
    };
    let h = run(&mut mid_epoch, Some(16));
    assert_eq!(h.stop, StopReason::Callback);
    assert_eq!(h.updates, 6);
    assert_eq!(
        h.last_epoch(),
        2,
        "the 6th update of 4 per epoch is in epoch 2"
    );
    assert_eq!(
        (mid_epoch.starts, mid_epoch.ends, mid_epoch.epochs_started),
        (1, 1, 2)
    );
    let mut at_epoch = Counter {
        stop_after_epoch: Some(4),
        ..Counter::default()
    };
    let h = run(&mut at_epoch, None);
    assert_eq!(h.stop, StopReason::Callback);
    assert_eq!((h.last_epoch(), h.updates, at_epoch.updates), (4, 4, 4));
}

#[test]
fn rejected_steps_are_counted() {
    // Newton nearly undamped from a saturated start (see optim_monotone.rs) rejects steps.
    let (x, t) = data(5);
    let mlp = mlp();
    let mut theta = vec![6.0, 6.0, 6.0, -6.0];
    let mut spec: OptimizerSpec = "newton".parse().unwrap();
    spec.set("damping", "1e-8").unwrap();
    let config = TrainConfig {
        epochs: 30,
        ..TrainConfig::default()
    };
    let h = train(
        &config,
        spec.build().as_mut(),
        &mut factory(&mlp),
        &mut theta,
        DataView {
            x: x.view(),
            t: t.view(),
        },
        None,
        &mut [],
    )
    .unwrap();
    assert!(
        h.rejected > 0 && h.updates > 0,
        "{} accepted, {} rejected",
        h.updates,
        h.rejected
    );
    assert_eq!(h.updates + h.rejected, 30);
    assert!(h
        .records
        .windows(2)
        .all(|w| w[1].train_loss <= w[0].train_loss));
}

#[test]
fn accuracy_reads_classes_from_one_hot_or_binary_targets() {
    let y = array![[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]];
    let t = array![[0.0f32, 1.0, 0.0], [0.0, 0.0, 1.0]];
    assert_eq!(accuracy(&y, t.view()), Some(0.5));
    let y = array![[0.9], [0.4], [0.6]];
    let t = array![[1.0f32], [0.0], [0.0]];
    assert_eq!(accuracy(&y, t.view()), Some(2.0 / 3.0));
    let t = array![[1.5f32], [0.0], [0.0]];
    assert_eq!(
        accuracy(&y, t.view()),
        None,
        "real-valued targets have no accuracy"
    );
}

/// `evidence_every`: after epoch 1 the scheduler re-estimates λ at θ₁ exactly as
/// `analysis::evidence::reestimate` does, and epoch 2 trains and is evaluated with
/// it; the history records the λ of each epoch.
#[test]
fn the_evidence_reestimates_lambda_between_epochs() {
    use curvature::analysis::evidence::{reestimate, DENSE_LIMIT};
    let (x, t) = data(3);
    let mlp = Mlp::new(&[3, 1], &[Activation::Sigmoid], Loss::Bce, 1e-2).unwrap();
    let spec = || "gd".parse::<OptimizerSpec>().unwrap();
    let run = |epochs: usize, every: Option<usize>| {
        let config = TrainConfig {
            epochs,
            evidence_every: every,
            ..TrainConfig::default()
        };
        let mut theta = vec![0.1, -0.2, 0.3, 0.0];
        let h = train(
            &config,
            spec().build().as_mut(),
            &mut factory(&mlp),
            &mut theta,
            DataView {
                x: x.view(),
                t: t.view(),
            },
            None,
            &mut [],
        )
        .unwrap();
        (h, theta)
    };
    let (one, theta1) = run(1, None);
    let mut engine = (CPU.make)(&mlp, x.view(), t.view());
    let step = reestimate(engine.as_mut(), &theta1, 0..N, 1.0, DENSE_LIMIT).unwrap();
    let (two, _) = run(2, Some(1));
    let lambdas: Vec<f64> = two.records.iter().map(|r| r.l2).collect();
    assert_eq!(
        lambdas[..2],
        [1e-2, 1e-2],
        "epochs 0 and 1 train with the model's λ"
    );
    assert_eq!(
        lambdas[2], step.lambda,
        "epoch 2 trains with the re-estimate at θ₁"
    );
    assert_ne!(step.lambda, 1e-2);
    // Epoch 1 is the same run either way.
    assert_eq!(one.records[1].train_loss, two.records[1].train_loss);
    assert!(two.to_json().contains("\"l2\":"));
}
