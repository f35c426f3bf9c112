//! `curvature train`'s arguments, and their stored form: the `--key=value`
//! words a checkpoint keeps ([`to_argv`]) and parses back on `--resume`
//! ([`reparse`]).

use super::super::common::DeviceArgs;
use clap::Args;
use curvature::data;
use curvature::engine::verify::{VerifyMode, DEFAULT_BUDGET};
use curvature::engine::Precision;
use curvature::files::Overwrite;
use std::path::PathBuf;

/// The arguments that define a run: `--resume` takes them from the checkpoint
/// and refuses them on its command line (clap ids: the field names).
const RUN_DEFINING_ARGS: [&str; 23] = [
    "hidden",
    "activation",
    "loss",
    "optimizer",
    "schedule",
    "params",
    "batch_size",
    "l2",
    "evidence_every",
    "precision",
    "seed",
    "test_fraction",
    "validation_fraction",
    "patience",
    "verify",
    "verify_every",
    "verify_budget",
    "run_dir",
    "out",
    "plot",
    "force",
    "device",
    "adapter",
];

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// The data: digits, mnist10k, xor, gaussians, study-hours, a CSV file (target last,
    /// classification), `IMAGES,LABELS` IDX files, or a `*-images-idx3-*` file. Default: digits.
    /// With --resume: the data file the run was trained on, to confirm it (a checkpoint never
    /// names a file to read by itself).
    #[arg(long)]
    pub data: Option<String>,
    /// Hidden layer widths, comma-separated (`none` for a network without hidden layers).
    /// Default: by the training rows, as the README's "How the defaults were chosen" measured
    /// (100 below 4000 rows, 256 from 4000).
    #[arg(long)]
    pub hidden: Option<String>,
    /// Hidden activation: one for every hidden layer, or one per hidden layer (comma-separated):
    /// identity, sigmoid, tanh, relu, leaky_relu, elu, softplus. Default: relu.
    #[arg(long)]
    pub activation: Option<String>,
    /// Loss: ce (softmax output), bce (sigmoid output), sse or mse (identity output).
    /// Default: ce for several classes, bce for two classes with one 0/1 target, sse for regression.
    #[arg(long)]
    pub loss: Option<String>,
    /// Optimizer: first-order gd, momentum, nesterov, adam, adamw, rmsprop, adagrad
    /// (PyTorch's defaults: adam/adamw lr=1e-3, rmsprop/adagrad lr=1e-2); second-order newton,
    /// hessian-diag, levenberg-marquardt (lm), cg-fr, cg-pr, cg-hs, cg-dy, bfgs, lbfgs,
    /// hessian-free (hf), kfac. Default: kfac, chosen on validation data (below 4000 training
    /// rows: batches of 128, 30 epochs; from 4000: batches of 256, 5 epochs, inverse-every=50).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning-rate schedule of a first-order optimizer, changed once per epoch: constant
    /// (default), step (× gamma every step-size epochs; gamma 0.1, step-size 30), exponential
    /// (× gamma per epoch; gamma 0.95), cosine (from lr down to min-lr over the run's epochs;
    /// min-lr 0). Its parameters go with --set, e.g. `--set gamma=0.5,step-size=10`; `warmup=N`
    /// adds N epochs of linear warm-up from warmup-factor·lr (default 1/3) before it.
    #[arg(long, value_name = "SCHEDULE")]
    pub schedule: Option<String>,
    /// Optimizer parameters, `key=value,...` (e.g. `lr=0.1,momentum=0.9`, `damping=1`,
    /// `line-search=hessian`, `beta2=0.99,amsgrad=true`, `warmup=5`); an unknown key lists the
    /// known ones.
    #[arg(long = "set", value_name = "KEY=VALUE,...", default_value = "")]
    pub params: String,
    /// Passes over the training data (default: 20 for newton and lm, 30 for hessian-free,
    /// 200 for CG and quasi-Newton, 100 for first-order methods). 0 evaluates only: the
    /// model written holds the initial weights.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per update (default: the full batch for second-order and line-search methods,
    /// 32 for first-order ones).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// λ of the L2 penalty (λ/2)‖W‖² on weights, or `evidence`: re-estimated by
    /// MacKay's fixed point every --evidence-every epochs from `evidence:START`
    /// (default start 1e-4; PRML 5.7.1–5.7.3: α ← γ/‖w‖², with β for regression).
    /// Default (chosen on validation data): 1e-6 below 4000 training rows, 1e-5 from 4000.
    #[arg(long, value_name = "λ|evidence[:START]")]
    pub l2: Option<L2Arg>,
    /// With `--l2 evidence`: epochs between re-estimations of λ.
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub evidence_every: usize,
    /// The CPU engine's precision (a GPU computes in f32 whatever is asked). Default: f32
    /// (as accurate as f64 on the measured data, and about twice as fast).
    #[arg(long, value_name = "f32|f64")]
    pub precision: Option<Precision>,
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
    /// On a GPU, what is checked against the CPU reference (stopping if they disagree): `auto`
    /// (default) every kind of result the optimizer uses — the first update in full, then as
    /// many updates as fit --verify-budget, over a random slice of the rows where the whole
    /// batch does not fit; `every` every result in full, whatever it costs; `off` nothing.
    #[arg(long, value_name = "auto|every|off", conflicts_with = "verify_every")]
    pub verify: Option<VerifyArg>,
    /// With `--verify auto`: the largest fraction of the wall time so far that verification
    /// may take (0 < F ≤ 1).
    #[arg(long, value_name = "F", default_value_t = DEFAULT_BUDGET, value_parser = parse_budget)]
    pub verify_budget: f64,
    /// Instead of --verify: recompute the loss, gradient and first curvature product of the
    /// first update and of every K-th with the CPU reference (0: the first update only).
    #[arg(long, value_name = "K")]
    pub verify_every: Option<usize>,
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
    /// and output file names (beside the checkpoint). Only --data (to confirm a data file),
    /// --epochs (to extend the run), --quiet and --checkpoint-every may be given beside it.
    #[arg(long, value_name = "FILE", conflicts_with_all = RUN_DEFINING_ARGS)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `--verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyArg {
    Auto,
    Every,
    Off,
}

impl VerifyArg {
    fn name(self) -> &'static str {
        match self {
            VerifyArg::Auto => "auto",
            VerifyArg::Every => "every",
            VerifyArg::Off => "off",
        }
    }
}

/// A budget: a fraction in (0, 1].
fn parse_budget(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(b) if b > 0.0 && b <= 1.0 => Ok(b),
        _ => Err(format!(
            "`{s}` is not a budget: give the fraction of the wall time verification may take, 0 < F ≤ 1 (e.g. 0.1)"
        )),
    }
}

impl TrainArgs {
    /// The data as given, or the default (`digits`).
    pub(super) fn data_spec(&self) -> &str {
        self.data.as_deref().unwrap_or(DEFAULT_DATA)
    }

    /// What the verifier checks: `--verify`, else `--verify-every K`, else `auto`.
    pub(super) fn verify_mode(&self) -> VerifyMode {
        match (self.verify, self.verify_every) {
            (Some(VerifyArg::Every), _) => VerifyMode::Every,
            (Some(VerifyArg::Off), _) => VerifyMode::Off,
            (None, Some(k)) => VerifyMode::EveryKth(k),
            (Some(VerifyArg::Auto), _) | (None, None) => VerifyMode::Auto {
                budget: self.verify_budget,
            },
        }
    }

    /// Whether files that exist may be replaced (`--force`).
    pub(super) fn overwrite(&self) -> Overwrite {
        if self.force {
            Overwrite::Allow
        } else {
            Overwrite::Refuse
        }
    }
}

/// The data set when `--data` is not given.
const DEFAULT_DATA: &str = "digits";

/// The only keys a checkpoint's stored arguments may hold: the training
/// hyperparameters, and the data (a bundled name, or a path the user must
/// confirm with `--data` on resume). Never `--force`, `--out`, `--run-dir`,
/// `--plot` or `--resume`: a checkpoint from elsewhere must not choose what is
/// written or replaced.
pub(super) const STORED_KEYS: [&str; 21] = [
    "data",
    "set",
    "evidence-every",
    "seed",
    "test-fraction",
    "validation-fraction",
    "verify",
    "verify-every",
    "verify-budget",
    "device",
    "hidden",
    "activation",
    "optimizer",
    "l2",
    "precision",
    "loss",
    "schedule",
    "epochs",
    "batch-size",
    "patience",
    "adapter",
];

/// The data as a checkpoint records it: a bundled name as it is, a path (or
/// each of `IMAGES,LABELS`) made absolute, so that a resume from another
/// directory can compare it with the `--data` it is given.
pub(super) fn recorded_data(spec: &str) -> String {
    if data::DATASET_NAMES.contains(&spec) {
        return spec.to_string();
    }
    spec.split(',')
        .map(|part| std::path::absolute(part).map_or(part.to_string(), |p| p.display().to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments that define a run, as `--key=value` strings for [`reparse`]:
/// the keys of [`STORED_KEYS`] only (not the output paths, which are stored
/// relative to the checkpoint, nor --force, --quiet, --checkpoint-every and
/// --resume). The data is [`recorded_data`].
pub(super) fn to_argv(a: &TrainArgs) -> Vec<String> {
    let data = recorded_data(a.data_spec());
    let mut v = vec![
        format!("--data={data}"),
        format!("--set={}", a.params),
        format!("--evidence-every={}", a.evidence_every),
        format!("--seed={}", a.seed),
        format!("--test-fraction={}", a.test_fraction),
        format!("--validation-fraction={}", a.validation_fraction),
        format!("--verify-budget={}", a.verify_budget),
        format!(
            "--device={}",
            format!("{:?}", a.device.device).to_ascii_lowercase()
        ),
    ];
    // The data-dependent defaults are resolved before a run is stored
    // (`defaults::resolve`), so these are all given there.
    let optional = [
        ("hidden", a.hidden.clone()),
        ("activation", a.activation.clone()),
        ("optimizer", a.optimizer.clone()),
        // Display of f64 is the shortest text that parses back to the same bits.
        ("l2", a.l2.map(|l| l.to_string())),
        ("precision", a.precision.map(|p| p.name().to_string())),
        ("loss", a.loss.clone()),
        ("schedule", a.schedule.clone()),
        ("epochs", a.epochs.map(|e| e.to_string())),
        ("batch-size", a.batch_size.map(|b| b.to_string())),
        ("patience", a.patience.map(|p| p.to_string())),
        ("adapter", a.device.adapter.clone()),
        ("verify", a.verify.map(|v| v.name().to_string())),
        ("verify-every", a.verify_every.map(|k| k.to_string())),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            v.push(format!("--{key}={value}"));
        }
    }
    v
}

/// Parses stored train arguments (`--key=value` strings, [`to_argv`]) as the
/// command line would.
pub(super) fn reparse(argv: &[String]) -> std::result::Result<TrainArgs, clap::Error> {
    #[derive(clap::Parser)]
    #[command(name = "curvature train")]
    struct Reparse {
        #[command(flatten)]
        args: TrainArgs,
    }
    let words = std::iter::once("curvature-train".to_string()).chain(argv.iter().cloned());
    Ok(<Reparse as clap::Parser>::try_parse_from(words)?.args)
}

/// `--l2`: a fixed λ, or λ by the evidence from a starting value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum L2Arg {
    Fixed(f64),
    Evidence { start: f64 },
}

/// The starting λ of `--l2 evidence` without `:START`.
pub const EVIDENCE_START: f64 = 1e-4;

impl L2Arg {
    /// Whether λ is re-estimated by the evidence.
    pub fn is_evidence(self) -> bool {
        matches!(self, L2Arg::Evidence { .. })
    }

    /// λ at the start of the run.
    pub fn initial(self) -> f64 {
        match self {
            L2Arg::Fixed(l) | L2Arg::Evidence { start: l } => l,
        }
    }
}

impl std::str::FromStr for L2Arg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<L2Arg, String> {
        let s = s.trim();
        let number = |v: &str| -> std::result::Result<f64, String> {
            match v.parse::<f64>() {
                Ok(l) if l.is_finite() && l >= 0.0 => Ok(l),
                _ => Err(format!(
                    "`{v}` is not a λ: give a finite number ≥ 0, or `evidence` (optionally `evidence:START`)"
                )),
            }
        };
        match s.split_once(':') {
            Some(("evidence", start)) => Ok(L2Arg::Evidence {
                start: number(start)?,
            }),
            None if s == "evidence" => Ok(L2Arg::Evidence {
                start: EVIDENCE_START,
            }),
            _ => number(s).map(L2Arg::Fixed),
        }
    }
}

impl std::fmt::Display for L2Arg {
    /// The text that parses back to the same value (Display of f64 is the
    /// shortest round-trip form).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L2Arg::Fixed(l) => write!(f, "{l}"),
            L2Arg::Evidence { start } => write!(f, "evidence:{start}"),
        }
    }
}
