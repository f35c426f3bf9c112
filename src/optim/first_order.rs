//! What the adaptive first-order methods (`adam.rs`, `rmsprop.rs`,
//! `adagrad.rs`) share: a trial θ committed only where E is finite, and state
//! vectors made at the first step.

use super::finite::{check_scalar, check_slice, Point, Quantity};
use super::vector::{norm, sub};
use super::{Result, StepReport};
use crate::engine::Curvature;
use std::ops::Range;

/// Checks the update `trial − θ` and `trial` (W), evaluates E at `trial` on
/// `rows`, and only when all of them are finite copies `trial` into θ and
/// reports the accepted step; otherwise θ is untouched and the error names
/// the first NaN or ∞ (the caller then leaves its state as it was too).
pub(super) fn commit_trial(
    engine: &mut dyn Curvature,
    theta: &mut [f64],
    trial: &[f64],
    rows: Range<usize>,
    loss_before: f64,
    grad_norm: f64,
) -> Result<StepReport> {
    let step = sub(trial, theta);
    check_slice(Quantity::Step, Point::Trial, &step)?;
    check_slice(Quantity::Parameters, Point::Trial, trial)?;
    let loss_after = check_scalar(Quantity::Loss, Point::Trial, engine.loss(trial, rows)?)?;
    theta.copy_from_slice(trial);
    Ok(StepReport {
        loss_before,
        loss_after,
        grad_norm,
        step_norm: norm(&step),
        damping: None,
        inner_iterations: 0,
        accepted: true,
    })
}

/// A state vector (W) as the step starts: `v` if it was made, else W copies
/// of `initial` (moments start at 0, Adagrad's sum at its initial value).
pub(super) fn made_or(v: &[f64], w: usize, initial: f64) -> Vec<f64> {
    if v.len() == w {
        v.to_vec()
    } else {
        vec![initial; w]
    }
}
