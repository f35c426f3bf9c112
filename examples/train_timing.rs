//! `curvature train`'s run, built from the same library calls, with each epoch's update loop
//! timed on its own (the scheduler's history counts the per-epoch evaluation too), and the
//! fast CPU engine in f32 or f64 (`curvature train` has no `--precision`: its CPU is f64).
//! For the peer comparison in `benches/peers/` (PyTorch times only its update loop).
//!
//!   cargo run --release --example train_timing -- [--data=mnist10k] [--hidden=128]
//!       [--optimizer=momentum] [--set=lr=0.1,momentum=0.9] [--batch-size=128] [--epochs=5]
//!       [--seed=0] [--l2=0.001] [--test-fraction=0.2] [--validation-fraction=0.1]
//!       [--precision=f64|f32] [--json=FILE]
//!
//! The same as `curvature train --device cpu` with those flags: the split of
//! [`curvature::data::run_parts`], a sigmoid hidden / softmax + ce network
//! ([`Mlp::with_hidden`], what `train` builds for class data), θ₀ = `init_params(seed)`, the
//! optimizer spec with its training defaults, [`curvature::train::train`] with the same
//! [`TrainConfig`]. Not done here: the CLI's progress bar and periodic checkpoints.
//!
//! Per epoch: `update_seconds` — from the epoch's start (before its shuffle and rebind) to
//! the end of its last update, the part PyTorch's loop does; `epoch_seconds` — the
//! difference of the history's wall-clock stamps (update loop plus the evaluation of the
//! training and validation loss and accuracy), what `curvature train`'s history.json gives.

use curvature::data::{load_path, run_parts, Dataset, DEFAULT_TEST_FRACTION};
use curvature::engine::{Curvature, Device, Precision};
use curvature::optim::{OptimizerSpec, StepReport};
use curvature::train::{accuracy, train, Callback, Control, DataView, History, TrainConfig};
use curvature::{Activation, Loss, Mlp};
use std::error::Error;
use std::time::Instant;

/// Times every epoch's update loop.
#[derive(Default)]
struct Timer {
    epoch_start: Option<Instant>,
    last_update: Option<Instant>,
    update_seconds: Vec<f64>,
}

impl Callback for Timer {
    fn on_epoch_start(&mut self, _epoch: usize) -> Control {
        self.epoch_start = Some(Instant::now());
        self.last_update = None;
        Control::Continue
    }
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        self.last_update = Some(Instant::now());
        Control::Continue
    }
    fn on_epoch_end(&mut self, _history: &History) -> Control {
        if let (Some(start), Some(end)) = (self.epoch_start, self.last_update) {
            self.update_seconds
                .push(end.duration_since(start).as_secs_f64());
        }
        Control::Continue
    }
}

/// A data set as the scheduler takes it.
fn view(d: &Dataset) -> DataView<'_> {
    DataView {
        x: d.x.view(),
        t: d.t.view(),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut data = "mnist10k".to_string();
    let mut hidden = "128".to_string();
    let mut optimizer = "momentum".to_string();
    let mut params = String::new();
    let mut batch_size: Option<usize> = Some(128);
    let mut epochs: Option<usize> = Some(5);
    let mut seed = 0u64;
    let mut l2 = 1e-3;
    let mut test_fraction = DEFAULT_TEST_FRACTION;
    let mut validation_fraction = 0.1;
    let mut precision = Precision::F64;
    let mut json: Option<String> = None;
    for arg in std::env::args().skip(1) {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("`{arg}`: give options as --key=value"))?;
        match key {
            "--data" => data = value.to_string(),
            "--hidden" => hidden = value.to_string(),
            "--optimizer" => optimizer = value.to_string(),
            "--set" => params = value.to_string(),
            "--batch-size" => {
                batch_size = if value == "default" {
                    None
                } else {
                    Some(value.parse()?)
                }
            }
            "--epochs" => {
                epochs = if value == "default" {
                    None
                } else {
                    Some(value.parse()?)
                }
            }
            "--seed" => seed = value.parse()?,
            "--l2" => l2 = value.parse()?,
            "--test-fraction" => test_fraction = value.parse()?,
            "--validation-fraction" => validation_fraction = value.parse()?,
            "--precision" => precision = value.parse()?,
            "--json" => json = Some(value.to_string()),
            _ => return Err(format!("unknown option `{key}`").into()),
        }
    }

    let full = load_path(&data)?;
    let parts = run_parts(&full, test_fraction, validation_fraction, seed)?;
    let mut sizes = vec![full.num_inputs()];
    for w in hidden.split(',').filter(|w| !w.trim().is_empty()) {
        sizes.push(w.trim().parse()?);
    }
    sizes.push(full.num_outputs());
    let mlp = Mlp::with_hidden(&sizes, Activation::Sigmoid, Loss::Ce, l2)?;
    let mut spec: OptimizerSpec = optimizer.parse()?;
    spec.set_all(&params)?;
    let defaults = spec.training_defaults();
    let config = TrainConfig {
        epochs: epochs.unwrap_or(defaults.epochs),
        batch_size: batch_size.or(defaults.batch_size),
        shuffle_seed: seed,
        ..TrainConfig::default()
    };
    let device = Device::FastCpuF64.with_precision(precision);
    let mut theta = mlp.init_params(seed);
    let mut opt = spec.build();
    let mut factory = |x: ndarray::ArrayView2<f32>, t: ndarray::ArrayView2<f32>| {
        device
            .engine(&mlp, x, t)
            .map(|e| Box::new(e) as Box<dyn Curvature>)
    };
    let mut timer = Timer::default();
    let started = Instant::now();
    let history = train(
        &config,
        opt.as_mut(),
        &mut factory,
        &mut theta,
        view(&parts.train),
        parts.validation.as_ref().map(view),
        &mut [&mut timer],
    )?;
    let wall = started.elapsed().as_secs_f64();

    let test_accuracy = match &parts.test {
        Some(test) => {
            let mut engine = device.engine(&mlp, test.x.view(), test.t.view())?;
            let y = engine.outputs(&theta, 0..test.len())?;
            accuracy(&y, test.t.view())
        }
        None => None,
    };
    let epoch_seconds: Vec<f64> = history
        .records
        .windows(2)
        .map(|w| w[1].seconds - w[0].seconds)
        .collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let last = history.last().expect("epoch 0 is always recorded");
    let out = format!(
        "{{\"data\":\"{}\",\"sizes\":{:?},\"optimizer\":\"{}\",\"params\":\"{}\",\"batch_size\":{},\
         \"epochs\":{},\"seed\":{seed},\"l2\":{l2},\"precision\":\"{}\",\"train_rows\":{},\
         \"validation_rows\":{},\"update_seconds\":[{}],\"epoch_seconds\":[{}],\"wall_seconds\":{wall},\
         \"final_train_loss\":{},\"test_accuracy\":{}}}",
        full.name,
        sizes,
        spec.name(),
        params,
        config
            .batch_size
            .map_or("null".to_string(), |b| b.to_string()),
        history.last_epoch(),
        precision.name(),
        parts.train.len(),
        parts.validation.as_ref().map_or(0, |v| v.len()),
        list(&timer.update_seconds),
        list(&epoch_seconds),
        last.train_loss,
        test_accuracy.map_or("null".to_string(), |a| a.to_string()),
    );
    println!("{out}");
    if let Some(path) = json {
        std::fs::write(path, format!("{out}\n"))?;
    }
    Ok(())
}
