//! Fast retraining after a small change in the training data (PRML §5.4): the
//! trained θ* is already near the new minimum, so a few Newton or
//! Levenberg-Marquardt steps Δ = −(H or G + cI)⁻¹ ∇E from θ* on the changed
//! data reach it, where training from scratch needs many epochs.

use crate::engine::Curvature;
use crate::error::Result;
use crate::optim::levenberg_marquardt::levenberg_marquardt;
use crate::optim::newton::{DampedNewton, NewtonConfig};
use crate::optim::Optimizer;
use std::ops::Range;
use std::time::Instant;

/// Which second-order method retrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrainMethod {
    /// Newton with an adaptive penalty: Δ = −(H + cI)⁻¹ g.
    Newton,
    /// Levenberg-Marquardt: Δ = −(G + μI)⁻¹ g.
    LevenbergMarquardt,
}

/// What retraining did.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrainReport {
    /// Steps attempted (accepted and rejected).
    pub steps: usize,
    pub accepted: usize,
    pub loss_before: f64,
    pub loss_after: f64,
    /// ‖∇E‖ at the last step's start.
    pub grad_norm: f64,
    pub seconds: f64,
}

/// Runs up to `max_steps` steps of `method` on `rows` of the engine's (changed)
/// data from θ (W, updated in place), stopping once ‖∇E‖ ≤ `grad_tol`.
pub fn retrain(
    engine: &mut dyn Curvature,
    theta: &mut [f64],
    rows: Range<usize>,
    method: RetrainMethod,
    max_steps: usize,
    grad_tol: f64,
) -> Result<RetrainReport> {
    let start = Instant::now();
    let mut optimizer: DampedNewton = match method {
        RetrainMethod::Newton => DampedNewton::newton(NewtonConfig::default()),
        RetrainMethod::LevenbergMarquardt => levenberg_marquardt(NewtonConfig::default()),
    };
    let loss_before = engine.loss(theta, rows.clone())?;
    let mut report = RetrainReport {
        steps: 0,
        accepted: 0,
        loss_before,
        loss_after: loss_before,
        grad_norm: f64::INFINITY,
        seconds: 0.0,
    };
    for _ in 0..max_steps {
        let step = optimizer.step(engine, theta, rows.clone())?;
        report.steps += 1;
        report.accepted += usize::from(step.accepted);
        report.grad_norm = step.grad_norm;
        report.loss_after = step.loss_after.unwrap_or(step.loss_before);
        if step.grad_norm <= grad_tol {
            break;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
