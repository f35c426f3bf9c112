//! What the adaptive first-order methods (`adam.rs`, `rmsprop.rs`,
//! `adagrad.rs`) share: a trial θ committed only where the step and θ are
//! finite, and state vectors made at the first step.
//!
//! A first-order step costs one gradient, as in PyTorch: E is not evaluated
//! again at the new θ. An overflow there shows in the next update's E and ∇E at
//! that θ (`Point::Current`), where the guard undoes the update that led to it
//! and recovers (`guard.rs`), or in the epoch's evaluation.

use super::finite::{check_slice, Point, Quantity};
use super::vector::{sub, sum_of_squared_differences};
use super::{Result, StepReport};

/// Checks the update `trial − θ` and `trial` (W) and only when both are finite
/// copies `trial` into θ and reports the accepted step; otherwise θ is
/// untouched and the error names the first NaN or ∞ (the caller then leaves its
/// state as it was too).
pub(super) fn commit_trial(
    theta: &mut [f64],
    trial: &[f64],
    loss_before: f64,
    grad_norm: f64,
) -> Result<StepReport> {
    // Vectorized passes for the common case; the checks that name the entry
    // only on failure.
    let finite = trial.iter().all(|t| t.is_finite());
    let step_sq = sum_of_squared_differences(trial, theta);
    if !(finite && step_sq.is_finite()) {
        check_slice(Quantity::Step, Point::Trial, &sub(trial, theta))?;
        check_slice(Quantity::Parameters, Point::Trial, trial)?;
    }
    theta.copy_from_slice(trial);
    Ok(StepReport {
        loss_before,
        loss_after: None,
        grad_norm,
        step_norm: step_sq.sqrt(),
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
