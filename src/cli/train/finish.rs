//! After training: the verification summary, refusing a diverged θ, the test
//! figures, the model, history and picture written, the summary lines, and the
//! superseded checkpoint removed.

use super::args::TrainArgs;
use super::outputs::Outputs;
use super::prepare::Prepared;
use super::progress::resume_hint;
use crate::cli::out::outln;
use curvature::engine::verify::{VerifyMode, VerifyState};
use curvature::engine::{Curvature, Device};
use curvature::files::{save_model, write_atomic, FileError};
use curvature::plot::{self, Legend, Panel, PlotError, PlotLayout, Series};
use curvature::train::{accuracy, EpochRecord, History};
use curvature::{Error, Mlp, Result};
use std::collections::HashMap;
use std::path::PathBuf;

/// What training produced.
pub(super) struct Trained {
    pub theta: Vec<f64>,
    pub history: History,
    /// Wall time of the whole run, time before an interruption included (s).
    pub wall_seconds: f64,
    /// The last checkpoint written or resumed from, and where it stands.
    pub last_checkpoint: Option<(PathBuf, String)>,
}

/// (E, accuracy, rows) of the final θ on the test rows.
type TestFigures = (f64, Option<f64>, usize);

/// Ends a finished run: `Ok(None)` once its outputs are written.
pub(super) fn finish(
    args: &TrainArgs,
    prepared: &Prepared,
    outputs: &Outputs,
    device: &Device,
    verify: &VerifyState,
    trained: Trained,
) -> Result<Option<u8>> {
    report_verification(verify, device);
    refuse_diverged(&trained)?;
    let verification = device.is_gpu().then(|| verify.to_json());
    // The model as trained: with `--l2 evidence`, the λ of the last epoch.
    let mlp = match trained.history.last() {
        Some(last) => prepared.mlp.with_l2(last.l2)?,
        None => prepared.mlp.clone(),
    };
    let test = test_figures(device, &mlp, prepared, &trained.theta)?;
    write_outputs(args, &mlp, prepared, outputs, &trained, verification)?;
    if prepared.config.evidence_every.is_some() {
        report_evidence(&trained.history);
    }
    print_summary(&trained, test, outputs);
    // The run finished and its outputs are written: its checkpoint is
    // superseded. Only the file this run wrote or resumed from is removed,
    // never whatever else is at that path.
    let ours = trained
        .last_checkpoint
        .as_ref()
        .is_some_and(|(path, _)| *path == outputs.checkpoint);
    if ours && outputs.checkpoint.exists() {
        std::fs::remove_file(&outputs.checkpoint).map_err(|source| FileError::Write {
            path: outputs.checkpoint.clone(),
            source,
        })?;
    }
    Ok(None)
}

/// On a GPU: how the device compared with the CPU reference, by kind of result.
fn report_verification(verify: &VerifyState, device: &Device) {
    if !device.is_gpu() {
        return;
    }
    match verify.worst() {
        Some((rel, quantity, update)) => outln!(
            "verified against the CPU reference: {} checks, worst relative error {rel:.2e} ({quantity}, update {update})",
            verify.checks.borrow().len()
        ),
        None if verify.mode() == VerifyMode::Off => {
            outln!("verification off: nothing was checked against the CPU reference")
        }
        None => outln!("verification: no update was made, nothing to compare"),
    }
    if verify.mode() != VerifyMode::Off {
        for line in verify.summary_lines() {
            outln!("{line}");
        }
    }
}

/// `--l2 evidence`: where λ started, where it settled, and how often it moved
/// (every epoch's λ is in `history.json`).
fn report_evidence(history: &History) {
    let (Some(first), Some(last)) = (history.records.first(), history.records.last()) else {
        return;
    };
    let moves = history
        .records
        .windows(2)
        .filter(|w| w[1].l2 != w[0].l2)
        .count();
    outln!(
        "λ by the evidence: {:.3e} in epoch {} → {:.3e} in epoch {} ({moves} changes; every epoch's λ is in the history)",
        first.l2, first.epoch, last.l2, last.epoch
    );
}

/// A θ that is not finite is no model: an error naming the last checkpoint.
fn refuse_diverged(trained: &Trained) -> Result<()> {
    if trained.theta.iter().all(|x| x.is_finite()) {
        return Ok(());
    }
    let note = match &trained.last_checkpoint {
        Some((path, at)) => format!(
            "; the last checkpoint ({at}) is kept: {}",
            resume_hint(path)
        ),
        None => String::new(),
    };
    Err(Error::Input(format!(
        "training diverged (a parameter is not finite) after {} updates: try more damping, a smaller \
         learning rate or another optimizer; no model was written{note}",
        trained.history.updates
    )))
}

/// The final test figures, on the device (None without test rows).
fn test_figures(
    device: &Device,
    mlp: &Mlp,
    prepared: &Prepared,
    theta: &[f64],
) -> Result<Option<TestFigures>> {
    let Some(test) = &prepared.test_set else {
        return Ok(None);
    };
    let mut engine = device.engine(mlp, test.x.view(), test.t.view())?;
    let rows = 0..test.len();
    let loss = engine.loss(theta, rows.clone())?;
    let y = engine.outputs(theta, rows)?;
    Ok(Some((loss, accuracy(&y, test.t.view()), test.len())))
}

/// The model (with the split and the data's scaling in its metadata), the
/// history and the picture.
fn write_outputs(
    args: &TrainArgs,
    mlp: &Mlp,
    prepared: &Prepared,
    outputs: &Outputs,
    trained: &Trained,
    verification: Option<String>,
) -> Result<()> {
    let overwrite = args.overwrite();
    let full = &prepared.full;
    let history = &trained.history;
    let mut meta = HashMap::new();
    meta.insert("data".to_string(), full.name.clone());
    meta.insert("split_seed".to_string(), args.seed.to_string());
    meta.insert("test_fraction".to_string(), args.test_fraction.to_string());
    meta.insert("optimizer".to_string(), prepared.spec.name().to_string());
    meta.insert("epochs".to_string(), history.last_epoch().to_string());
    if let Some(scaling) = &full.scaling {
        meta.insert("scaling".to_string(), scaling.to_metadata());
    }
    if let Some(names) = &full.class_names {
        meta.insert("class_names".to_string(), names.join(","));
    }
    save_model(&outputs.model, mlp, &trained.theta, &meta, overwrite)?;
    // On a GPU the verification summary goes with it.
    let extra: Vec<(&str, String)> = verification
        .into_iter()
        .map(|v| ("verification", v))
        .collect();
    write_atomic(
        &outputs.history,
        history.to_json_with(&extra).as_bytes(),
        overwrite,
    )?;
    // The panels share their series (train, validation) colour for colour: one
    // legend below them, where it covers no curve (accuracy sits in the corner).
    let layout = PlotLayout {
        legend: Legend::Below,
        ..PlotLayout::default()
    };
    plot::draw_with(&outputs.plot, &curves(history), layout, overwrite).map_err(|e| match e {
        // A file that cannot be written stays a file error.
        PlotError::File(file) => Error::File(file),
        other => Error::Input(other.to_string()),
    })?;
    Ok(())
}

/// The closing lines: final figures and where the files are.
fn print_summary(trained: &Trained, test: Option<TestFigures>, outputs: &Outputs) {
    let history = &trained.history;
    if let Some(last) = history.last() {
        outln!(
            "final train loss {:.5}{}",
            last.train_loss,
            last.train_accuracy
                .map_or(String::new(), |a| format!(", train accuracy {:.4}", a))
        );
    }
    match test {
        Some((loss, Some(acc), n)) => {
            outln!("test loss {loss:.5}, test accuracy {acc:.4} ({n} rows)")
        }
        Some((loss, None, n)) => outln!("test loss {loss:.5} ({n} rows)"),
        None => outln!("no test rows (test fraction 0)"),
    }
    outln!(
        "{} epochs, {} updates ({} rejected), stopped: {:?}, wall time {:.2} s",
        history.last_epoch(),
        history.updates,
        history.rejected,
        history.stop,
        trained.wall_seconds
    );
    outln!("model   {}", outputs.model.display());
    outln!("history {}", outputs.history.display());
    outln!("curves  {}", outputs.plot.display());
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
