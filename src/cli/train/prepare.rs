//! Everything a run is built from, before any output is planned: the data and
//! its splits, the arguments with the data's defaults filled in
//! ([`defaults::resolve`]), the network, the optimizer spec and the training
//! config (its defaults from the spec, [`OptimizerSpec::training_defaults`]).

use super::args::TrainArgs;
use super::defaults;
use curvature::data::{self, Dataset, Task};
use curvature::optim::{OptimizerSpec, ScheduleKind};
use curvature::train::TrainConfig;
use curvature::{Activation, Error, Loss, Mlp, Result};

/// The parts of a run.
pub(super) struct Prepared {
    /// The arguments as given with every data-dependent default filled in: what
    /// the run uses and its checkpoint stores.
    pub args: TrainArgs,
    pub spec: OptimizerSpec,
    /// The whole data set (its name, scaling and class names go into the model file).
    pub full: Dataset,
    pub train_set: Dataset,
    pub val_set: Option<Dataset>,
    pub test_set: Option<Dataset>,
    pub mlp: Mlp,
    pub config: TrainConfig,
}

/// Loads the data, splits it, builds the network, the optimizer spec and the config.
pub(super) fn prepare(given: &TrainArgs) -> Result<Prepared> {
    // Cheap checks of what was given before the data is read.
    if given.optimizer.is_some() {
        optimizer_spec(given)?;
    } else {
        // The default optimizer is the same for every data set (kfac; only its
        // settings depend on the rows): `--set` is checked against it now.
        let mut defaults = given.clone();
        defaults.optimizer = Some(defaults::DEFAULT_OPTIMIZER.to_string());
        optimizer_spec(&defaults)?;
    }
    if let Some(hidden) = &given.hidden {
        if hidden.trim().is_empty() {
            return Err(Error::Input(
                "--hidden is empty: give widths such as `50` or `128,64`, or `none` for a \
                 network without hidden layers"
                    .into(),
            ));
        }
        hidden_widths(hidden)?;
    }
    for (name, value) in [
        ("--test-fraction", given.test_fraction),
        ("--validation-fraction", given.validation_fraction),
    ] {
        if !(value.is_finite() && (0.0..1.0).contains(&value)) {
            return Err(Error::Input(format!(
                "{name} {value}: give a fraction in [0, 1) (0: no such part)"
            )));
        }
    }
    if given.evidence_every == 0 {
        return Err(Error::Input(
            "--evidence-every 0: give the epochs between re-estimations of λ, at least 1".into(),
        ));
    }
    if given.patience == Some(0) {
        return Err(Error::Input(
            "--patience 0: give at least 1 epoch without improvement, or leave it out for no early stopping"
                .into(),
        ));
    }
    if given.batch_size == Some(0) {
        return Err(Error::Input(
            "--batch-size 0: give a positive batch size, or leave it out for the default".into(),
        ));
    }

    // Data: test split, then a validation part of the training rows.
    let full = data::load_path(given.data_spec())?;
    let loss = choose_loss(given.loss.as_deref(), &full)?;
    let full = if loss == Loss::Ce && full.num_outputs() == 1 {
        full.with_one_hot_targets()
    } else {
        full
    };
    let parts = data::run_parts(
        &full,
        given.test_fraction,
        given.validation_fraction,
        given.seed,
    )?;
    let (train_set, val_set, test_set) = (parts.train, parts.validation, parts.test);
    let args = defaults::resolve(given, train_set.len());
    let args = &args;
    let spec = optimizer_spec(args)?;
    let mlp = build_mlp(args, &full, loss)?;
    check_network_memory(&mlp, train_set.len())?;
    let defaults = spec.training_defaults();
    let config = TrainConfig {
        epochs: args.epochs.unwrap_or(defaults.epochs),
        batch_size: args.batch_size.or(defaults.batch_size),
        shuffle_seed: args.seed,
        patience: args.patience,
        evidence_every: args
            .l2
            .filter(|l| l.is_evidence())
            .map(|_| args.evidence_every),
        ..TrainConfig::default()
    };
    Ok(Prepared {
        args: args.clone(),
        spec,
        full,
        train_set,
        val_set,
        test_set,
        mlp,
        config,
    })
}

/// The optimizer with `--schedule` and then `--set` applied; a schedule for a
/// method without one, or `--schedule` and `--set schedule=` that disagree,
/// are errors.
fn optimizer_spec(args: &TrainArgs) -> Result<OptimizerSpec> {
    let name = args.optimizer.as_deref().unwrap_or_default();
    let mut spec: OptimizerSpec = name.parse()?;
    if let Some(schedule) = &args.schedule {
        if spec.schedule().is_none() {
            return Err(Error::Input(format!(
                "--schedule {schedule}: {} has no learning rate to schedule; schedules are for the \
                 first-order optimizers gd, momentum, nesterov, adam, adamw, rmsprop and adagrad",
                spec.name()
            )));
        }
        spec.set("schedule", schedule)?;
    }
    spec.set_all(&args.params)?;
    if let (Some(given), Some(set)) = (&args.schedule, spec.get("schedule")) {
        if ScheduleKind::parse(given).map(ScheduleKind::name) != Some(set.as_str()) {
            return Err(Error::Input(format!(
                "--schedule {given} and --set schedule={set} disagree: give the schedule once"
            )));
        }
    }
    Ok(spec)
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

/// The network: the data's widths around `--hidden`, `--activation` in the
/// hidden layers and the output activation that goes with the loss.
fn build_mlp(args: &TrainArgs, ds: &Dataset, loss: Loss) -> Result<Mlp> {
    let hidden = hidden_widths(args.hidden.as_deref().unwrap_or_default())?;
    let acts: Vec<Activation> = args
        .activation
        .as_deref()
        .unwrap_or_default()
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
    let output = loss.output_activation();
    let mut all_acts = hidden_acts;
    all_acts.push(output);
    let l2 = args.l2.map_or(0.0, |l| l.initial());
    Ok(Mlp::new(&sizes, &all_acts, loss, l2)?)
}

/// `--hidden`: comma-separated widths, or `none` (or nothing) for no hidden layer.
fn hidden_widths(text: &str) -> Result<Vec<usize>> {
    if text.trim().eq_ignore_ascii_case("none") || text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|s| {
            s.trim().parse::<usize>().map_err(|_| {
                Error::Input(format!(
                    "--hidden `{text}`: widths must be whole numbers, e.g. `50` or `128,64`"
                ))
            })
        })
        .collect()
}

/// Bytes per parameter a run holds at least: θ, the best θ, the gradient, a
/// trial θ and the optimizer's state (about 3 vectors for Adam or CG) in f64,
/// and the engines' f32 copies (the GPU engine's and the verifier's).
const BYTES_PER_PARAMETER: u64 = 8 * 8;
/// Bytes per row and unit: pre-activations, activations and their derivatives
/// (f32, about 4 arrays of N × width each in the forward and backward passes).
const BYTES_PER_ACTIVATION: u64 = 4 * 4;

/// Refuses a network too large for this machine before its parameters are
/// allocated: `--hidden 100000000` would otherwise abort the process when θ is
/// (W = 7.5·10⁹ parameters, 60 GB for θ alone).
fn check_network_memory(mlp: &Mlp, rows: usize) -> Result<()> {
    let w = mlp.num_params() as u64;
    let units: u64 = mlp.sizes()[1..].iter().map(|&s| s as u64).sum();
    let need = w.saturating_mul(BYTES_PER_PARAMETER).saturating_add(
        (rows as u64)
            .saturating_mul(units)
            .saturating_mul(BYTES_PER_ACTIVATION),
    );
    let available = curvature::engine::memory::available_memory();
    if need > available {
        return Err(Error::Input(format!(
            "the network {} (W = {w} parameters) on {rows} training rows needs about {need} bytes \
             ({}) for its parameters, optimizer state and activations, more than the {} of memory \
             available — use smaller --hidden widths",
            mlp.describe(),
            curvature::files::human_bytes(need),
            curvature::files::human_bytes(available)
        )));
    }
    Ok(())
}
