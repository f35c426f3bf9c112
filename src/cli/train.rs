//! `curvature train`: train an MLP on a data set with any optimizer, on any
//! device, showing progress; write the model, the history (JSON) and the loss
//! and accuracy curves (a picture) into a fresh run directory.

use super::common::{split_spec, DeviceArgs};
use clap::Args;
use curvature::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
use curvature::data::{self, Dataset, SplitSpec, Task};
use curvature::engine::verify::{VerifyState, Verifying};
use curvature::engine::Curvature;
use curvature::files::{save_model, write_atomic, FileError, Overwrite};
use curvature::optim::{OptimizerSpec, StepReport};
use curvature::plot::{self, Panel, Series};
use curvature::train::{
    train_resumable, Callback, Control, DataView, EpochRecord, History, Resume, TrainConfig,
    TrainOutcome, TrainState,
};
use curvature::{Activation, Error, Loss, Mlp, Result};
use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The optimizer of the main job: Hessian-free (Gauss-Newton products and CG,
/// Martens 2010), the second-order method that reaches ≥ 97% test accuracy on
/// digits in seconds without forming a W×W matrix (see the README's table).
const DEFAULT_OPTIMIZER: &str = "hessian-free";

/// The arguments that define a run: `--resume` takes them from the checkpoint
/// and refuses them on its command line (clap ids: the field names).
const RUN_DEFINING_ARGS: [&str; 19] = [
    "data",
    "hidden",
    "activation",
    "loss",
    "optimizer",
    "params",
    "batch_size",
    "l2",
    "seed",
    "test_fraction",
    "validation_fraction",
    "patience",
    "verify_every",
    "run_dir",
    "out",
    "plot",
    "force",
    "device",
    "adapter",
];

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The data: digits, mnist10k, xor, gaussians, study-hours, a CSV file (target last,
    /// classification), `IMAGES,LABELS` IDX files, or a `*-images-idx3-*` file.
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Hidden layer widths, comma-separated (`none` for a network without hidden layers).
    #[arg(long, default_value = "50")]
    pub hidden: String,
    /// Hidden activation: one for every hidden layer, or one per hidden layer (comma-separated):
    /// identity, sigmoid, tanh, relu, leaky_relu, elu, softplus.
    #[arg(long, default_value = "sigmoid")]
    pub activation: String,
    /// Loss: ce (softmax output), bce (sigmoid output), sse or mse (identity output).
    /// Default: ce for several classes, bce for two classes with one 0/1 target, sse for regression.
    #[arg(long)]
    pub loss: Option<String>,
    /// Optimizer: gd, momentum, nesterov, newton, hessian-diag, levenberg-marquardt (lm),
    /// cg-fr, cg-pr, cg-hs, cg-dy, bfgs, lbfgs, hessian-free (hf).
    #[arg(long, default_value = DEFAULT_OPTIMIZER)]
    pub optimizer: String,
    /// Optimizer parameters, `key=value,...` (e.g. `lr=0.1,momentum=0.9`, `damping=1`,
    /// `line-search=hessian`); an unknown key lists the known ones.
    #[arg(long = "set", value_name = "KEY=VALUE,...", default_value = "")]
    pub params: String,
    /// Passes over the training data (default: 20 for newton and lm, 30 for hessian-free,
    /// 200 for CG and quasi-Newton, 100 for first-order methods).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per update (default: the full batch for second-order and line-search methods,
    /// 32 for first-order ones).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// λ of the L2 penalty (λ/2)‖W‖² on weights.
    #[arg(long, default_value_t = 1e-3)]
    pub l2: f64,
    /// Seed of the initial weights, the split and the mini-batch shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the data held out for the final test (mnist10k: its natural 8000/2000 split
    /// at the default).
    #[arg(long, default_value_t = data::DEFAULT_TEST_FRACTION)]
    pub test_fraction: f64,
    /// Fraction of the training part held out to validate every epoch (0: none).
    #[arg(long, default_value_t = 0.1)]
    pub validation_fraction: f64,
    /// Stop after this many epochs without a better validation loss, keeping the best weights.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Recompute the loss, gradient and curvature product of the first update and of every K-th
    /// with the CPU reference and stop if they disagree (0: the first update only).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub verify_every: usize,
    /// The run directory for the model, history and picture (default: runs/<date-time>/).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Write the model to this file instead (history and picture go beside it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The picture of the loss and accuracy curves (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Replace files that exist.
    #[arg(long)]
    pub force: bool,
    /// Plain lines instead of a progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write the run's checkpoint (`checkpoint.safetensors` in the run directory, or
    /// `<out>.checkpoint.safetensors` beside --out) every N epochs; 0: only on SIGINT/SIGTERM,
    /// which always write one. Default: 1 for newton and lm (slow epochs, a one-number state),
    /// 100 for bfgs (its W×W state: 113 MB at W = 3760), 10 for the others.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Continue the run saved in this checkpoint: same data, split, network, optimizer, device
    /// and output files. Only --epochs (to extend the run), --quiet and --checkpoint-every may
    /// be given beside it.
    #[arg(long, value_name = "FILE", conflicts_with_all = RUN_DEFINING_ARGS)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Where the outputs go.
struct Outputs {
    model: PathBuf,
    history: PathBuf,
    plot: PathBuf,
    /// The run's checkpoint (periodic, and on SIGINT/SIGTERM).
    checkpoint: PathBuf,
}

/// Everything a run is built from, before any output is planned.
struct Prepared {
    spec: OptimizerSpec,
    full: Dataset,
    train_set: Dataset,
    val_set: Option<Dataset>,
    test_set: Option<Dataset>,
    mlp: Mlp,
    config: TrainConfig,
}

/// Trains; `Ok(Some(code))` when interrupted by a signal (130 SIGINT, 143
/// SIGTERM) after writing the checkpoint, `Ok(None)` when the run finished.
pub fn run(args: &TrainArgs) -> Result<Option<u8>> {
    match &args.resume {
        None => {
            let prepared = prepare(args)?;
            let outputs = plan_outputs(args, overwrite_of(args))?;
            execute(args, prepared, outputs, None)
        }
        Some(file) => resume(args, file),
    }
}

fn overwrite_of(args: &TrainArgs) -> Overwrite {
    if args.force {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    }
}

/// Loads the data, splits it, builds the network, the optimizer spec and the config.
fn prepare(args: &TrainArgs) -> Result<Prepared> {
    let mut spec: OptimizerSpec = args.optimizer.parse()?;
    spec.set_all(&args.params)?;
    if args.batch_size == Some(0) {
        return Err(Error::Input(
            "--batch-size 0: give a positive batch size, or leave it out for the default".into(),
        ));
    }

    // Data: test split, then a validation part of the training rows.
    let full = data::load_path(&args.data)?;
    let loss = choose_loss(args.loss.as_deref(), &full)?;
    let full = if loss == Loss::Ce && full.num_outputs() == 1 {
        full.with_one_hot_targets()
    } else {
        full
    };
    let parts = data::split(
        &full,
        &split_spec(&full.name, args.test_fraction, args.seed),
    )?;
    let (train_set, val_set) = if args.validation_fraction > 0.0 {
        let inner = data::split(
            &parts.train,
            &SplitSpec::Shuffled {
                test_fraction: args.validation_fraction,
                seed: args.seed.wrapping_add(1),
            },
        )?;
        (inner.train, Some(inner.test).filter(|v| !v.is_empty()))
    } else {
        (parts.train, None)
    };
    let test_set = Some(parts.test).filter(|t| !t.is_empty());
    let mlp = build_mlp(args, &full, loss)?;
    let epochs = args.epochs.unwrap_or_else(|| default_epochs(spec.name()));
    let batch_size = args.batch_size.or_else(|| default_batch(spec.name()));
    let config = TrainConfig {
        epochs,
        batch_size,
        shuffle_seed: args.seed,
        patience: args.patience,
        ..TrainConfig::default()
    };
    Ok(Prepared {
        spec,
        full,
        train_set,
        val_set,
        test_set,
        mlp,
        config,
    })
}

/// `curvature train --resume FILE`: the run rebuilt from the arguments stored
/// in the checkpoint (only --epochs, --quiet and --checkpoint-every may be
/// given beside it; clap refuses the others), checked against the saved
/// network, optimizer and config, then continued.
fn resume(args: &TrainArgs, file: &Path) -> Result<Option<u8>> {
    let checkpoint = load_checkpoint(file)?;
    let bad = |reason: String| -> Error {
        FileError::Invalid {
            path: file.into(),
            reason,
        }
        .into()
    };
    let stored = checkpoint
        .run
        .get("args")
        .ok_or_else(|| bad("the checkpoint lacks the train arguments (`run.args`)".into()))?;
    let argv: Vec<String> = serde_json::from_str(stored).map_err(|e| {
        bad(format!(
            "the stored train arguments are not a JSON list: {e}"
        ))
    })?;
    let mut original = reparse(&argv).map_err(|e| {
        bad(format!(
            "the stored train arguments do not parse: {}",
            e.to_string().trim()
        ))
    })?;
    if let Some(epochs) = args.epochs {
        original.epochs = Some(epochs);
    }
    original.quiet = args.quiet;
    original.checkpoint_every = args.checkpoint_every;
    let prepared = prepare(&original)?;
    if prepared.mlp != checkpoint.mlp {
        return Err(bad(format!(
            "the stored arguments give the network {}, the checkpoint holds {}",
            prepared.mlp.describe(),
            checkpoint.mlp.describe()
        )));
    }
    if format!("{:?}", prepared.spec) != checkpoint.optimizer_spec {
        return Err(bad(format!(
            "the stored arguments give the optimizer {:?}, the checkpoint was made with {}",
            prepared.spec, checkpoint.optimizer_spec
        )));
    }
    let same_but_epochs = TrainConfig {
        epochs: checkpoint.config.epochs,
        ..prepared.config.clone()
    };
    if same_but_epochs != checkpoint.config {
        return Err(bad(format!(
            "the stored arguments give the training config {:?}, the checkpoint holds {:?}",
            prepared.config, checkpoint.config
        )));
    }
    let path_of = |key: &str| {
        checkpoint
            .run
            .get(key)
            .map(PathBuf::from)
            .ok_or_else(|| bad(format!("the checkpoint lacks its output path `run.{key}`")))
    };
    let outputs = Outputs {
        model: path_of("model")?,
        history: path_of("history")?,
        plot: path_of("plot")?,
        checkpoint: path_of("checkpoint")?,
    };
    if !original.force {
        for p in [&outputs.model, &outputs.history, &outputs.plot] {
            if p.exists() {
                return Err(bad(format!(
                    "{} exists already: the run seems to have finished; nothing was changed",
                    p.display()
                )));
            }
        }
    }
    execute(
        &original,
        prepared,
        outputs,
        Some((file.to_path_buf(), checkpoint)),
    )
}

/// Parses stored train arguments (`--key=value` strings) as the command line would.
fn reparse(argv: &[String]) -> std::result::Result<TrainArgs, clap::Error> {
    #[derive(clap::Parser)]
    #[command(name = "curvature train")]
    struct Reparse {
        #[command(flatten)]
        args: TrainArgs,
    }
    let words = std::iter::once("curvature-train".to_string()).chain(argv.iter().cloned());
    Ok(<Reparse as clap::Parser>::try_parse_from(words)?.args)
}

/// The arguments that define a run, as `--key=value` strings for [`reparse`]:
/// all but the output paths (stored resolved beside them), --quiet,
/// --checkpoint-every and --resume. A data file's path is made absolute so a
/// resume from another directory still finds it.
fn to_argv(a: &TrainArgs) -> Vec<String> {
    let data = if a.data.contains(['/', '.', '\\']) && Path::new(&a.data).exists() {
        std::path::absolute(&a.data).map_or(a.data.clone(), |p| p.display().to_string())
    } else {
        a.data.clone()
    };
    let mut v = vec![
        format!("--data={data}"),
        format!("--hidden={}", a.hidden),
        format!("--activation={}", a.activation),
        format!("--optimizer={}", a.optimizer),
        format!("--set={}", a.params),
        // Display of f64 is the shortest text that parses back to the same bits.
        format!("--l2={}", a.l2),
        format!("--seed={}", a.seed),
        format!("--test-fraction={}", a.test_fraction),
        format!("--validation-fraction={}", a.validation_fraction),
        format!("--verify-every={}", a.verify_every),
        format!(
            "--device={}",
            format!("{:?}", a.device.device).to_ascii_lowercase()
        ),
    ];
    let optional = [
        ("loss", a.loss.clone()),
        ("epochs", a.epochs.map(|e| e.to_string())),
        ("batch-size", a.batch_size.map(|b| b.to_string())),
        ("patience", a.patience.map(|p| p.to_string())),
        ("adapter", a.device.adapter.clone()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            v.push(format!("--{key}={value}"));
        }
    }
    if a.force {
        v.push("--force".into());
    }
    v
}

/// A path as stored in a checkpoint: absolute, so a resume from elsewhere writes the same files.
fn stored_path(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// The flags the signal handlers raise: `pause` asks the scheduler to stop at
/// the next update boundary (also raised for a periodic checkpoint);
/// `signalled` is set by the first SIGINT/SIGTERM (a second one then exits at
/// once); `exit_code` is 130 (SIGINT) or 143 (SIGTERM), 0 for none.
struct Signals {
    pause: Arc<AtomicBool>,
    signalled: Arc<AtomicBool>,
    exit_code: Arc<AtomicUsize>,
}

impl Signals {
    fn install() -> Result<Signals> {
        let s = Signals {
            pause: Arc::new(AtomicBool::new(false)),
            signalled: Arc::new(AtomicBool::new(false)),
            exit_code: Arc::new(AtomicUsize::new(0)),
        };
        let failed =
            |e: std::io::Error| Error::Input(format!("cannot install the signal handlers: {e}"));
        for (signal, code) in [(SIGINT, 130usize), (SIGTERM, 143usize)] {
            // Registration order is run order: the exit check sees the flag of an earlier signal.
            flag::register_conditional_shutdown(signal, code as i32, s.signalled.clone())
                .map_err(failed)?;
            flag::register_usize(signal, s.exit_code.clone(), code).map_err(failed)?;
            flag::register(signal, s.signalled.clone()).map_err(failed)?;
            flag::register(signal, s.pause.clone()).map_err(failed)?;
        }
        Ok(s)
    }

    /// What the handler of `code`'s signal does (for the test hook).
    fn raise(&self, code: usize) {
        self.exit_code.store(code, Ordering::SeqCst);
        self.signalled.store(true, Ordering::SeqCst);
        self.pause.store(true, Ordering::SeqCst);
    }

    fn exit_code(&self) -> Option<u8> {
        u8::try_from(self.exit_code.load(Ordering::SeqCst))
            .ok()
            .filter(|&c| c != 0)
    }
}

/// Raises `pause` after every `every`-th epoch (a periodic checkpoint) and,
/// for tests, the SIGINT flags after `CURVATURE_TEST_INTERRUPT_AFTER` updates.
struct Pauser<'s> {
    signals: &'s Signals,
    every: usize,
    epochs: usize,
    interrupt_after: Option<usize>,
    updates: usize,
}

impl Callback for Pauser<'_> {
    fn on_epoch_end(&mut self, history: &History) -> Control {
        let epoch = history.last_epoch();
        if self.every > 0 && epoch.is_multiple_of(self.every) && epoch < self.epochs {
            self.signals.pause.store(true, Ordering::SeqCst);
        }
        Control::Continue
    }
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        self.updates += 1;
        if self.interrupt_after == Some(self.updates) {
            self.signals.raise(130);
        }
        Control::Continue
    }
}

/// Where a state stands, for messages: "at epoch 7, update 3" or "after epoch 6".
fn position(state: &TrainState) -> String {
    if state.next_row == 0 {
        format!("after epoch {}", state.epoch - 1)
    } else {
        format!(
            "at epoch {}, update {}",
            state.epoch,
            state.epoch_updates + state.epoch_rejected
        )
    }
}

fn execute(
    args: &TrainArgs,
    prepared: Prepared,
    outputs: Outputs,
    resumed: Option<(PathBuf, Checkpoint)>,
) -> Result<Option<u8>> {
    let overwrite = overwrite_of(args);
    let Prepared {
        spec,
        full,
        train_set,
        val_set,
        test_set,
        mlp,
        config,
    } = prepared;
    let epochs = config.epochs;
    let batch_size = config.batch_size;
    let device = args.device.open()?;

    println!(
        "training {} (W = {}) on {}: {} train / {} validation / {} test rows",
        mlp.describe(),
        mlp.num_params(),
        full.name,
        train_set.len(),
        val_set.as_ref().map_or(0, Dataset::len),
        test_set.as_ref().map_or(0, Dataset::len)
    );
    println!(
        "optimizer {} ({}), {} epochs, {}, device {}",
        spec.name(),
        if args.params.is_empty() {
            "defaults"
        } else {
            &args.params
        },
        epochs,
        batch_size.map_or("full batch".to_string(), |b| format!("batches of {b}")),
        device.describe()
    );

    let verify = Rc::new(VerifyState::default());
    let mut optimizer = spec.build();
    let (mut theta, mut from, mut last_checkpoint) = match resumed {
        None => (mlp.init_params(args.seed), None, None),
        Some((file, checkpoint)) => {
            optimizer
                .import_state(&checkpoint.optimizer, mlp.num_params())
                .map_err(|e| FileError::Invalid {
                    path: file.clone(),
                    reason: e.to_string(),
                })?;
            println!(
                "resuming from {} {}",
                file.display(),
                position(&checkpoint.state)
            );
            let at = position(&checkpoint.state);
            (checkpoint.theta, Some(checkpoint.state), Some((file, at)))
        }
    };
    // What the checkpoint stores besides the network, θ, config and states.
    let run_entries: BTreeMap<String, String> = [
        ("args", serde_json::Value::from(to_argv(args)).to_string()),
        ("model", stored_path(&outputs.model)),
        ("history", stored_path(&outputs.history)),
        ("plot", stored_path(&outputs.plot)),
        ("checkpoint", stored_path(&outputs.checkpoint)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let resume_hint =
        |path: &Path| format!("resume with: curvature train --resume {}", path.display());

    // The checkpoint may be written before the model: its folder must exist from the start.
    for path in [&outputs.checkpoint, &outputs.model] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| FileError::Write {
                path: parent.into(),
                source,
            })?;
        }
    }
    let signals = Signals::install()?;
    let interrupt_after = std::env::var("CURVATURE_TEST_INTERRUPT_AFTER")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let started = Instant::now();
    // A resumed run's wall time counts the time before its interruption too.
    let earlier = from
        .as_ref()
        .map_or(0.0, |s: &TrainState| s.elapsed_seconds);
    let history = {
        let verifying = device.is_gpu();
        let mut factory = |x: ndarray::ArrayView2<f32>,
                           t: ndarray::ArrayView2<f32>|
         -> Result<Box<dyn Curvature>> {
            let engine: Box<dyn Curvature> = Box::new(device.engine(&mlp, x, t)?);
            if verifying {
                Ok(Box::new(Verifying::new(
                    engine,
                    &mlp,
                    x,
                    t,
                    args.verify_every,
                    verify.clone(),
                )?))
            } else {
                Ok(engine)
            }
        };
        let mut progress = Progress::new(epochs, args.quiet, verify.clone());
        let mut pauser = Pauser {
            signals: &signals,
            every: args
                .checkpoint_every
                .unwrap_or_else(|| default_checkpoint_every(spec.name())),
            epochs,
            interrupt_after,
            updates: 0,
        };
        let train_view = DataView {
            x: train_set.x.view(),
            t: train_set.t.view(),
        };
        let val_view = val_set.as_ref().map(|v| DataView {
            x: v.x.view(),
            t: v.t.view(),
        });
        let history = loop {
            let result = train_resumable(
                &config,
                optimizer.as_mut(),
                &mut factory,
                &mut theta,
                train_view,
                val_view,
                &mut [&mut progress, &mut pauser],
                Resume {
                    from: from.take(),
                    interrupt: Some(&signals.pause),
                },
            );
            let state = match result {
                Ok(TrainOutcome::Finished(history)) => break history,
                Ok(TrainOutcome::Interrupted(state)) => *state,
                Err(e) => {
                    progress.finish();
                    let note = match &last_checkpoint {
                        Some((path, at)) => format!(
                            "the last checkpoint ({at}) is kept at {}: {}",
                            path.display(),
                            resume_hint(path)
                        ),
                        None => "no checkpoint had been written yet".to_string(),
                    };
                    return Err(Error::Input(format!("{}; {note}", Error::from(e))));
                }
            };
            let checkpoint = Checkpoint {
                mlp: mlp.clone(),
                theta: theta.clone(),
                config: config.clone(),
                optimizer_spec: format!("{spec:?}"),
                optimizer: optimizer.export_state(),
                state,
                run: run_entries.clone(),
            };
            save_checkpoint(&outputs.checkpoint, &checkpoint)?;
            let at = position(&checkpoint.state);
            if let Some(code) = signals.exit_code() {
                progress.finish();
                eprintln!(
                    "interrupted {at}: checkpoint written to {}; {}",
                    outputs.checkpoint.display(),
                    resume_hint(&outputs.checkpoint)
                );
                return Ok(Some(code));
            }
            last_checkpoint = Some((outputs.checkpoint.clone(), at));
            // A periodic checkpoint: go on. A signal that came after the
            // exit-code check raises the flag again, so it is not lost.
            signals.pause.store(false, Ordering::SeqCst);
            if signals.exit_code().is_some() {
                signals.pause.store(true, Ordering::SeqCst);
            }
            from = Some(checkpoint.state);
        };
        progress.finish();
        history
    };
    let wall = earlier + started.elapsed().as_secs_f64();

    match verify.worst() {
        Some((rel, quantity, update)) => println!(
            "verified against the CPU reference: {} checks, worst relative error {rel:.2e} ({quantity}, update {update})",
            verify.checks.borrow().len()
        ),
        None if device.is_gpu() => println!("verification: no update was made, nothing to compare"),
        None => {}
    }
    if !theta.iter().all(|x| x.is_finite()) {
        let note = match &last_checkpoint {
            Some((path, at)) => format!(
                "; the last checkpoint ({at}) is kept: {}",
                resume_hint(path)
            ),
            None => String::new(),
        };
        return Err(Error::Input(format!(
            "training diverged (a parameter is not finite) after {} updates: try more damping, a smaller \
             learning rate or another optimizer; no model was written{note}",
            history.updates
        )));
    }
    // Final test figures on the device.
    let test_summary = match &test_set {
        Some(test) => {
            let mut engine = device.engine(&mlp, test.x.view(), test.t.view())?;
            let rows = 0..test.len();
            let loss = engine.loss(&theta, rows.clone())?;
            let y = engine.outputs(&theta, rows)?;
            let acc = curvature::train::accuracy(&y, test.t.view());
            Some((loss, acc, test.len()))
        }
        None => None,
    };

    // Write the model, the history and the picture.
    let mut meta = HashMap::new();
    meta.insert("data".to_string(), full.name.clone());
    meta.insert("split_seed".to_string(), args.seed.to_string());
    meta.insert("test_fraction".to_string(), args.test_fraction.to_string());
    meta.insert("optimizer".to_string(), spec.name().to_string());
    meta.insert("epochs".to_string(), history.last_epoch().to_string());
    if let Some(scaling) = &full.scaling {
        meta.insert("scaling".to_string(), scaling.to_metadata());
    }
    if let Some(names) = &full.class_names {
        meta.insert("class_names".to_string(), names.join(","));
    }
    save_model(&outputs.model, &mlp, &theta, &meta, overwrite)?;
    write_atomic(&outputs.history, history.to_json().as_bytes(), overwrite)?;
    plot::draw(&outputs.plot, &curves(&history), overwrite)
        .map_err(|e| Error::Input(e.to_string()))?;

    if let Some(last) = history.last() {
        println!(
            "final train loss {:.5}{}",
            last.train_loss,
            last.train_accuracy
                .map_or(String::new(), |a| format!(", train accuracy {:.4}", a))
        );
    }
    match test_summary {
        Some((loss, Some(acc), n)) => {
            println!("test loss {loss:.5}, test accuracy {acc:.4} ({n} rows)")
        }
        Some((loss, None, n)) => println!("test loss {loss:.5} ({n} rows)"),
        None => println!("no test rows (test fraction 0)"),
    }
    println!(
        "{} epochs, {} updates ({} rejected), stopped: {:?}, wall time {wall:.2} s",
        history.last_epoch(),
        history.updates,
        history.rejected,
        history.stop
    );
    println!("model   {}", outputs.model.display());
    println!("history {}", outputs.history.display());
    println!("curves  {}", outputs.plot.display());
    // The run finished and its outputs are written: its checkpoint is superseded.
    if outputs.checkpoint.exists() {
        std::fs::remove_file(&outputs.checkpoint).map_err(|source| FileError::Write {
            path: outputs.checkpoint.clone(),
            source,
        })?;
    }
    Ok(None)
}

/// The loss by name, or the default for the data's task.
fn choose_loss(name: Option<&str>, ds: &Dataset) -> Result<Loss> {
    if let Some(name) = name {
        let loss: Loss = name
            .parse()
            .map_err(|e: curvature::loss::UnknownLoss| Error::Input(e.to_string()))?;
        if loss == Loss::Ce && ds.task == Task::Regression {
            return Err(Error::Input(format!(
                "loss ce needs class targets but `{}` is a regression data set: use sse or mse",
                ds.name
            )));
        }
        return Ok(loss);
    }
    Ok(match ds.task {
        Task::Classification { .. } if ds.num_outputs() == 1 => Loss::Bce,
        Task::Classification { .. } => Loss::Ce,
        Task::Regression => Loss::Sse,
    })
}

fn build_mlp(args: &TrainArgs, ds: &Dataset, loss: Loss) -> Result<Mlp> {
    let hidden: Vec<usize> =
        if args.hidden.trim().eq_ignore_ascii_case("none") || args.hidden.trim().is_empty() {
            Vec::new()
        } else {
            args.hidden
                .split(',')
                .map(|s| {
                    s.trim().parse::<usize>().map_err(|_| {
                        Error::Input(format!(
                            "--hidden `{}`: widths must be whole numbers, e.g. `50` or `128,64`",
                            args.hidden
                        ))
                    })
                })
                .collect::<Result<_>>()?
        };
    let acts: Vec<Activation> = args
        .activation
        .split(',')
        .map(|s| {
            s.parse::<Activation>()
                .map_err(|e| Error::Input(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let hidden_acts = match acts.len() {
        1 => vec![acts[0]; hidden.len()],
        n if n == hidden.len() => acts,
        n => {
            return Err(Error::Input(format!(
                "--activation gives {n} activations for {} hidden layers: give one, or one per hidden layer",
                hidden.len()
            )))
        }
    };
    let mut sizes = vec![ds.num_inputs()];
    sizes.extend(&hidden);
    sizes.push(ds.num_outputs());
    let output = match loss {
        Loss::Ce => Activation::Softmax,
        Loss::Bce => Activation::Sigmoid,
        Loss::Sse | Loss::Mse => Activation::Identity,
    };
    let mut all_acts = hidden_acts;
    all_acts.push(output);
    Ok(Mlp::new(&sizes, &all_acts, loss, args.l2)?)
}

fn default_epochs(optimizer: &str) -> usize {
    match optimizer {
        "newton" | "levenberg-marquardt" => 20,
        "hessian-free" => 30,
        "gd" | "momentum" | "nesterov" | "hessian-diag" => 100,
        _ => 200,
    }
}

/// `--checkpoint-every` default, in epochs. A checkpoint bounds what a hard
/// kill (SIGKILL, power loss, a device fault) loses to N epochs, at the cost of
/// writing θ and the optimizer's state (with a sync) every N epochs:
/// - newton, lm: 1. An epoch (one update) takes tens of seconds at W = 3760
///   (20 epochs of lm: 318 s), the state is one number (the damping);
/// - bfgs: 100. Its state is the dense W×W inverse, 113 MB at W = 3760, about
///   0.75 s to write on the reference machine (20 epochs with a checkpoint
///   after each: 17.4 s, without: 3.0 s) against 0.08-0.15 s per epoch: every
///   100 epochs costs ≈ 5-10 % of the run;
/// - the others: 10. Their state is O(W) (60 KB for Hessian-free at W = 3760),
///   a few milliseconds to write, and 10 epochs of them take seconds.
fn default_checkpoint_every(optimizer: &str) -> usize {
    match optimizer {
        "newton" | "levenberg-marquardt" => 1,
        "bfgs" => 100,
        _ => 10,
    }
}

fn default_batch(optimizer: &str) -> Option<usize> {
    match optimizer {
        "gd" | "momentum" | "nesterov" | "hessian-diag" => Some(32),
        _ => None,
    }
}

/// Decides every output path before training, refusing existing files up front.
fn plan_outputs(args: &TrainArgs, overwrite: Overwrite) -> Result<Outputs> {
    let (model, history, default_plot, checkpoint) = match &args.out {
        Some(model) => {
            let stem = model.with_extension("");
            (
                model.clone(),
                PathBuf::from(format!("{}.history.json", stem.display())),
                PathBuf::from(format!("{}.curves.png", stem.display())),
                PathBuf::from(format!("{}.checkpoint.safetensors", stem.display())),
            )
        }
        None => {
            let dir = match &args.run_dir {
                Some(d) => d.clone(),
                None => fresh_run_dir(Path::new("runs")),
            };
            (
                dir.join("model.safetensors"),
                dir.join("history.json"),
                dir.join("curves.png"),
                dir.join("checkpoint.safetensors"),
            )
        }
    };
    let plot = args.plot.clone().unwrap_or(default_plot);
    match plot
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "png" || e == "svg" => {}
        _ => {
            return Err(Error::Input(format!(
                "--plot {}: the picture must be a .png or .svg file",
                plot.display()
            )))
        }
    }
    if overwrite == Overwrite::Refuse {
        for p in [&model, &history, &plot, &checkpoint] {
            if p.exists() {
                return Err(FileError::Exists { path: p.clone() }.into());
            }
        }
    }
    Ok(Outputs {
        model,
        history,
        plot,
        checkpoint,
    })
}

/// runs/<UTC date-time>/, with a suffix if that exists already.
fn fresh_run_dir(base: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = utc_stamp(secs);
    let mut dir = base.join(&stamp);
    let mut k = 2;
    while dir.exists() {
        dir = base.join(format!("{stamp}-{k}"));
        k += 1;
    }
    dir
}

/// `YYYYmmdd-HHMMSS` in UTC from Unix seconds (civil-from-days, proleptic Gregorian).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The loss and accuracy panels of the picture.
fn curves(history: &History) -> Vec<Panel> {
    let series = |label: &str, f: &dyn Fn(&EpochRecord) -> Option<f64>| Series {
        label: label.to_string(),
        points: history
            .records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect(),
    };
    let mut loss = vec![series("train", &|r| Some(r.train_loss))];
    let val = series("validation", &|r| r.val_loss);
    if !val.points.is_empty() {
        loss.push(val);
    }
    let mut panels = vec![Panel {
        title: format!("loss ({})", history.optimizer),
        x_label: "epoch".into(),
        y_label: "E(θ)".into(),
        series: loss,
        log_y: history.records.iter().all(|r| r.train_loss > 0.0),
    }];
    let acc: Vec<Series> = [
        series("train", &|r| r.train_accuracy),
        series("validation", &|r| r.val_accuracy),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    if !acc.is_empty() {
        panels.push(Panel {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "fraction correct".into(),
            series: acc,
            log_y: false,
        });
    }
    panels
}

/// Per-epoch progress: a bar on a terminal, plain lines otherwise or with --quiet.
/// It also advances the verifier's update counter.
struct Progress {
    bar: Option<ProgressBar>,
    verify: Rc<VerifyState>,
}

impl Progress {
    fn new(epochs: usize, quiet: bool, verify: Rc<VerifyState>) -> Progress {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(epochs as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {elapsed_precise} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, verify }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

fn describe(r: &EpochRecord) -> String {
    let mut s = format!("train loss {:.5}", r.train_loss);
    if let Some(a) = r.train_accuracy {
        s += &format!(" acc {a:.4}");
    }
    if let Some(l) = r.val_loss {
        s += &format!(" | validation loss {l:.5}");
    }
    if let Some(a) = r.val_accuracy {
        s += &format!(" acc {a:.4}");
    }
    s
}

impl Callback for Progress {
    fn on_epoch_end(&mut self, history: &History) -> Control {
        if let Some(r) = history.last() {
            match &self.bar {
                Some(bar) => {
                    bar.set_position(r.epoch as u64);
                    bar.set_message(describe(r));
                }
                None => println!(
                    "epoch {:>4}  {}  ({:.2} s)",
                    r.epoch,
                    describe(r),
                    r.seconds
                ),
            }
        }
        Control::Continue
    }
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        self.verify.updates.set(self.verify.updates.get() + 1);
        Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::utc_stamp;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2026-11-22 02:17:06 UTC, as `date -u +%s` gives it.
        assert_eq!(utc_stamp(1_795_313_826), "20261122-021706");
    }
}
