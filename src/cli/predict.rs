//! `curvature predict`: one prediction and its class probabilities per input row.

use super::common::stored_scaling;
use super::eval::predicted_classes;
use crate::cli::out::outln;
use clap::Args;
use curvature::data::load_inputs_csv;
use curvature::{cpu, Error, Result};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The model file (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A CSV (or .csv.gz) of input rows only, one sample per line, as many columns as the
    /// model has inputs, unscaled: the model's stored input scaling is applied.
    #[arg(long)]
    pub input: PathBuf,
    /// Whether the first line is a header (default: detected — a header has no numeric cell).
    #[arg(long)]
    pub header: Option<bool>,
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let model = curvature::files::load_model(&args.model)?;
    let scaling = stored_scaling(&model, &args.model)?;
    let x = load_inputs_csv(
        &args.input,
        args.header,
        scaling.as_ref(),
        model.mlp.num_inputs(),
    )?;
    // Prediction is a forward pass; the f64 reference does it exactly and fast enough for files of rows.
    let y = cpu::outputs(&model.mlp, &model.theta, x.mapv(f64::from).view());
    if y.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "{} gives non-finite outputs for {}: check the input scaling",
            args.model.display(),
            args.input.display()
        )));
    }
    let classes: Option<Vec<String>> = model
        .metadata
        .get("class_names")
        .map(|s| s.split(',').map(str::to_string).collect());
    let is_classifier = matches!(model.mlp.loss(), curvature::Loss::Ce | curvature::Loss::Bce);
    let k = y.ncols();
    if is_classifier {
        let predicted = predicted_classes(y.view());
        let header: Vec<String> = if k == 1 {
            vec!["p(1)".into()]
        } else {
            (0..k)
                .map(|c| {
                    format!(
                        "p({})",
                        classes
                            .as_ref()
                            .and_then(|n| n.get(c).cloned())
                            .unwrap_or(c.to_string())
                    )
                })
                .collect()
        };
        outln!("row,prediction,{}", header.join(","));
        for (n, (row, p)) in y.rows().into_iter().zip(&predicted).enumerate() {
            let label = classes
                .as_ref()
                .and_then(|c| c.get(*p).cloned())
                .unwrap_or(p.to_string());
            let probs: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
            outln!("{n},{label},{}", probs.join(","));
        }
    } else {
        let header: Vec<String> = (0..k).map(|c| format!("y{c}")).collect();
        outln!("row,{}", header.join(","));
        for (n, row) in y.rows().into_iter().enumerate() {
            let vals: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
            outln!("{n},{}", vals.join(","));
        }
    }
    Ok(())
}
