//! `curvature eval`: loss, accuracy and confusion matrix of a saved model on a data set.

use super::common::{load_model_and_part, DeviceArgs, SplitPart};
use crate::cli::out::{out, outln};
use clap::Args;
use curvature::engine::Curvature;
use curvature::{data, Result};
use ndarray::ArrayView2;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model file (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// The data: a named set (digits, mnist10k, xor, gaussians, study-hours) or a file.
    #[arg(long)]
    pub data: String,
    /// Which rows: the test part of the split the model was trained with (default),
    /// its train part, or all rows.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitPart,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let (model, ds) = load_model_and_part(&args.model, &args.data, args.split)?;
    let device = args.device.open()?;
    let mut engine = device.engine(&model.mlp, ds.x.view(), ds.t.view())?;
    let rows = 0..ds.len();
    let loss = engine.loss(&model.theta, rows.clone())?;
    outln!(
        "model     {} ({})",
        args.model.display(),
        model.mlp.describe()
    );
    outln!(
        "data      {} ({:?} part, {} rows) on {}",
        ds.name,
        args.split,
        ds.len(),
        device.describe()
    );
    outln!("loss      {loss:.6}");
    if let Some(labels) = &ds.labels {
        let y = engine.outputs(&model.theta, rows)?;
        let predicted = predicted_classes(y.view());
        let classes = match ds.task {
            data::Task::Classification { classes } => classes,
            data::Task::Regression => 1,
        };
        let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        outln!(
            "accuracy  {:.4} ({correct} of {})",
            correct as f64 / labels.len() as f64,
            labels.len()
        );
        print_confusion(
            &confusion(&predicted, labels, classes),
            ds.class_names.as_deref(),
        );
    }
    Ok(())
}

/// The predicted class of each row of y (N, K): argmax, or y ≥ ½ for one sigmoid output.
pub fn predicted_classes(y: ArrayView2<f64>) -> Vec<usize> {
    y.rows()
        .into_iter()
        .map(|row| {
            if row.len() == 1 {
                usize::from(row[0] >= 0.5)
            } else {
                let mut best = 0;
                for (k, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = k;
                    }
                }
                best
            }
        })
        .collect()
}

/// counts[true][predicted].
fn confusion(predicted: &[usize], labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (&p, &l) in predicted.iter().zip(labels) {
        if p < classes && l < classes {
            m[l][p] += 1;
        }
    }
    m
}

fn print_confusion(m: &[Vec<usize>], names: Option<&[String]>) {
    let name = |c: usize| {
        names
            .and_then(|n| n.get(c).cloned())
            .unwrap_or_else(|| c.to_string())
    };
    let width = m
        .iter()
        .flatten()
        .map(|c| c.to_string().len())
        .chain((0..m.len()).map(|c| name(c).len()))
        .max()
        .unwrap_or(1)
        .max(3);
    outln!("confusion matrix (rows: true class, columns: predicted)");
    out!("{:>width$} ", "");
    for c in 0..m.len() {
        out!(" {:>width$}", name(c));
    }
    outln!();
    for (c, row) in m.iter().enumerate() {
        out!("{:>width$} ", name(c));
        for v in row {
            out!(" {v:>width$}");
        }
        outln!();
    }
}
