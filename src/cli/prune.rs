//! `curvature prune`: remove a fraction of the weights (not biases) of a saved
//! model by Optimal Brain Damage, Optimal Brain Surgeon or magnitude, with
//! curvature from the training part of its split; report loss and accuracy
//! before and after on the training and test parts, beside magnitude pruning.

use super::common::{load_model_train_test, DeviceArgs, KindArg};
use super::eval::predicted_classes;
use crate::cli::out::outln;
use clap::{Args, ValueEnum};
use curvature::analysis::dense;
use curvature::analysis::pruning::{self, count_for, weight_indices, PruneMethod, Pruned};
use curvature::data::Dataset;
use curvature::engine::Curvature;
use curvature::files::{save_model, Overwrite, SavedModel};
use curvature::Kind;
use curvature::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodArg {
    Obd,
    Obs,
    Magnitude,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: String,
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// The fraction of weights to remove (biases are kept).
    #[arg(long)]
    pub fraction: f64,
    /// OBS: α in (A + αI)⁻¹, so the inverse exists.
    #[arg(long, default_value_t = 1e-4)]
    pub alpha: f64,
    /// OBS: which matrix A is: ggn, (G + αI)⁻¹ (positive definite), or hessian,
    /// (H + αI)⁻¹, where H + αI must be positive definite.
    #[arg(long, value_enum, default_value = "ggn")]
    pub obs_matrix: KindArg,
    /// OBS: weights removed per batch (0: 1% of the weights to remove, at least 1).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Write the pruned model here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// (loss, accuracy) of θ on a whole data set.
fn evaluate(engine: &mut dyn Curvature, theta: &[f64], ds: &Dataset) -> Result<(f64, Option<f64>)> {
    let rows = 0..ds.len();
    let loss = engine.loss(theta, rows.clone())?;
    let acc = match &ds.labels {
        Some(labels) => {
            let y = engine.outputs(theta, rows)?;
            let p = predicted_classes(y.view());
            Some(p.iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64)
        }
        None => None,
    };
    Ok((loss, acc))
}

fn prune_with(
    method: PruneMethod,
    args: &PruneArgs,
    engine: &mut dyn Curvature,
    model: &SavedModel,
    n_train: usize,
    diag: &[f64],
) -> Result<Pruned> {
    let theta = &model.theta;
    let candidates = weight_indices(&model.mlp);
    let count = count_for(args.fraction, candidates.len())?;
    Ok(match method {
        PruneMethod::Magnitude => pruning::magnitude(theta, diag, &candidates, count),
        PruneMethod::Obd => pruning::obd(theta, diag, &candidates, count),
        PruneMethod::Obs => {
            let w = theta.len();
            let max = curvature::optim::dense::max_dense_params();
            if w > max {
                return Err(Error::Input(format!(
                    "OBS needs a dense W×W inverse, W = {w} > {max}: use --method obd"
                )));
            }
            let a = engine.matrix(args.obs_matrix.into(), theta, 0..n_train)?;
            let inverse = dense::cholesky_inverse(&a, args.alpha)?;
            let batch = if args.batch == 0 {
                count.div_ceil(100).max(1)
            } else {
                args.batch
            };
            pruning::obs(theta, inverse, &candidates, count, batch)?
        }
    })
}

pub fn run(args: &PruneArgs) -> Result<()> {
    // Refuse before the work, not after it (OBS takes minutes).
    if let Some(out) = &args.out {
        let overwrite = if args.force {
            Overwrite::Allow
        } else {
            Overwrite::Refuse
        };
        curvature::files::check_writable(out, overwrite)?;
    }
    let (model, train, test) = load_model_train_test(&args.model, &args.data)?;
    let device = args.device.open()?;
    let mut train_engine = device.engine(&model.mlp, train.x.view(), train.t.view())?;
    let mut test_engine = device.engine(&model.mlp, test.x.view(), test.t.view())?;
    let method = match args.method {
        MethodArg::Obd => PruneMethod::Obd,
        MethodArg::Obs => PruneMethod::Obs,
        MethodArg::Magnitude => PruneMethod::Magnitude,
    };
    outln!(
        "model     {} ({}, W = {}, {} weights)",
        args.model.display(),
        model.mlp.describe(),
        model.theta.len(),
        weight_indices(&model.mlp).len()
    );
    outln!(
        "data      {}: curvature on the train part ({} rows), evaluation on train and test ({} rows), on {}",
        train.name,
        train.len(),
        test.len(),
        device.describe()
    );
    if method == PruneMethod::Obs {
        let kind = Kind::from(args.obs_matrix);
        outln!(
            "OBS       H⁻¹ = ({} + {:e}·I)⁻¹ by Cholesky; removal in batches ({}), inverse downdated after each",
            kind.symbol(),
            args.alpha,
            if args.batch == 0 { "1% of the weights removed per batch".to_string() } else { format!("{} per batch", args.batch) }
        );
    }
    let diag = train_engine.diag_hessian(&model.theta, 0..train.len())?;
    let (train_loss0, train_acc0) = evaluate(&mut train_engine, &model.theta, &train)?;
    let (test_loss0, test_acc0) = evaluate(&mut test_engine, &model.theta, &test)?;
    let fmt_acc = |a: Option<f64>| a.map_or("—".to_string(), |a| format!("{a:.4}"));
    outln!();
    outln!(
        "{:<10} {:>8} {:>11} {:>10} {:>11} {:>10} {:>12} {:>12} {:>8}",
        "method",
        "removed",
        "train loss",
        "train acc",
        "test loss",
        "test acc",
        "predicted ΔE",
        "actual ΔE",
        "time s"
    );
    outln!(
        "{:<10} {:>8} {:>11.5} {:>10} {:>11.5} {:>10} {:>12} {:>12} {:>8}",
        "none",
        0,
        train_loss0,
        fmt_acc(train_acc0),
        test_loss0,
        fmt_acc(test_acc0),
        "—",
        "—",
        "—"
    );
    let mut methods = vec![method];
    if method != PruneMethod::Magnitude {
        methods.push(PruneMethod::Magnitude);
    }
    let mut first: Option<Pruned> = None;
    for m in methods {
        let start = Instant::now();
        let pruned = prune_with(m, args, &mut train_engine, &model, train.len(), &diag)?;
        let seconds = start.elapsed().as_secs_f64();
        let (train_loss, train_acc) = evaluate(&mut train_engine, &pruned.theta, &train)?;
        let (test_loss, test_acc) = evaluate(&mut test_engine, &pruned.theta, &test)?;
        outln!(
            "{:<10} {:>8} {:>11.5} {:>10} {:>11.5} {:>10} {:>12.4e} {:>12.4e} {:>8.2}",
            m.name(),
            pruned.removed.len(),
            train_loss,
            fmt_acc(train_acc),
            test_loss,
            fmt_acc(test_acc),
            pruned.predicted_increase,
            train_loss - train_loss0,
            seconds
        );
        if first.is_none() {
            first = Some(pruned);
        }
    }
    if let (Some(out), Some(pruned)) = (&args.out, first) {
        let overwrite = if args.force {
            Overwrite::Allow
        } else {
            Overwrite::Refuse
        };
        let mut meta = model.metadata.clone();
        for key in ["format", "sizes", "activations", "loss", "l2"] {
            meta.remove(key);
        }
        meta.insert(
            "pruned".into(),
            format!("{} {}", method.name(), args.fraction),
        );
        save_model(out, &model.mlp, &pruned.theta, &meta, overwrite)?;
        outln!("pruned model written to {}", out.display());
    }
    Ok(())
}
