//! Fast retraining after a small change in the training data (PRML §5.4,
//! issue 8): train a digits network from scratch with Levenberg-Marquardt,
//! drop a few training rows (every 20th, 5%), then
//! (a) retrain from the trained weights with Newton / LM steps until ‖∇E‖ is
//!     small, against (b) training from scratch on the changed data with the
//!     same budget as the original training. Reports steps, time, loss and
//!     test accuracy. The network is 64-16-10 (W = 1210) so that each dense
//!     step is quick on the CPU reference; `retrain` itself runs on any engine.
//!
//!   cargo run --release --example retrain

use curvature::analysis::retrain::{retrain, RetrainMethod, RetrainReport};
use curvature::data::{load_named, split, SplitSpec};
use curvature::engine::ReferenceEngine;
use curvature::train::accuracy;
use curvature::{Activation, Curvature, Loss, Mlp};
use std::error::Error;

/// LM steps for training from scratch (enough for the loss to level off).
const SCRATCH_STEPS: usize = 40;
/// Retraining stops at this gradient norm, or after this many steps.
const GRAD_TOL: f64 = 1e-6;
const RETRAIN_STEPS: usize = 15;

fn line(name: &str, r: &RetrainReport, test_acc: f64) {
    println!(
        "{name:<42} {:>5} {:>8.2} {:>11.6} {:>10.2e} {:>9.4}",
        r.steps, r.seconds, r.loss_after, r.grad_norm, test_acc
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let ds = load_named("digits")?;
    let parts = split(
        &ds,
        &SplitSpec::Shuffled {
            test_fraction: 0.2,
            seed: 0,
        },
    )?;
    let (train, test) = (parts.train, parts.test);
    let keep: Vec<usize> = (0..train.len()).filter(|i| i % 20 != 19).collect();
    let changed = train.subset(&keep);
    let mlp = Mlp::new(
        &[64, 16, 10],
        &[Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        1e-3,
    )?;
    let mut test_engine = ReferenceEngine::new(&mlp, test.x.view(), test.t.view())?;
    let mut test_acc = |theta: &[f64]| -> Result<f64, Box<dyn Error>> {
        let y = test_engine.outputs(theta, 0..test.len())?;
        Ok(accuracy(&y, test.t.view()).unwrap_or(f64::NAN))
    };
    println!(
        "digits, {} ({} train rows, {} after dropping every 20th, {} test rows), CPU f64 engine",
        mlp.describe(),
        train.len(),
        changed.len(),
        test.len()
    );
    println!(
        "{:<42} {:>5} {:>8} {:>11} {:>10} {:>9}",
        "run", "steps", "time s", "train loss", "‖∇E‖", "test acc"
    );
    let init = mlp.init_params(0);
    let mut engine = ReferenceEngine::new(&mlp, train.x.view(), train.t.view())?;
    let mut trained = init.clone();
    let r = retrain(
        &mut engine,
        &mut trained,
        0..train.len(),
        RetrainMethod::LevenbergMarquardt,
        SCRATCH_STEPS,
        0.0,
    )?;
    line(
        "original: LM from scratch, all rows",
        &r,
        test_acc(&trained)?,
    );
    let mut engine = ReferenceEngine::new(&mlp, changed.x.view(), changed.t.view())?;
    let rows = 0..changed.len();
    let before = engine.loss_grad(&trained, rows.clone())?;
    println!(
        "changed data at the trained θ: E = {:.6}, ‖∇E‖ = {:.2e}",
        before.0,
        before.1.iter().map(|g| g * g).sum::<f64>().sqrt()
    );
    for (name, method) in [
        ("retrain: Newton from trained θ", RetrainMethod::Newton),
        (
            "retrain: LM from trained θ",
            RetrainMethod::LevenbergMarquardt,
        ),
    ] {
        let mut theta = trained.clone();
        let r = retrain(
            &mut engine,
            &mut theta,
            rows.clone(),
            method,
            RETRAIN_STEPS,
            GRAD_TOL,
        )?;
        line(name, &r, test_acc(&theta)?);
    }
    let mut scratch = init;
    let r = retrain(
        &mut engine,
        &mut scratch,
        rows,
        RetrainMethod::LevenbergMarquardt,
        SCRATCH_STEPS,
        0.0,
    )?;
    line("changed: LM from scratch", &r, test_acc(&scratch)?);
    Ok(())
}
