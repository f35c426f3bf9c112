//! What the scheduler refuses before the first update: a training set without
//! rows, a batch size of 0, and NaN or ∞ in the data or the starting θ.

use super::config::{DataView, TrainConfig};
use crate::optim::finite::first_non_finite;
use crate::optim::{OptimError, Result};

/// The effective batch size B = min(batch size, N) of a training set of N
/// rows (N for the full batch), or an error for an empty set, targets that do
/// not match the inputs, or a batch size of 0.
pub(super) fn batch_size(config: &TrainConfig, train: DataView) -> Result<usize> {
    let n = train.x.nrows();
    if n == 0 || train.t.nrows() != n {
        return Err(OptimError::Training(format!(
            "the training set needs rows and as many targets as inputs (x has {n} rows, t has {})",
            train.t.nrows()
        )));
    }
    if config.batch_size == Some(0) {
        return Err(OptimError::Training(
            "batch size 0: give a positive batch size, or none for the full batch".to_string(),
        ));
    }
    Ok(config.batch_size.unwrap_or(n).min(n))
}

/// Errs, naming the row and column, when x or t of either set holds a NaN or
/// ∞, or naming the entry when θ (W) does: no recovery can start from those.
pub(super) fn check_finite_inputs(
    theta: &[f64],
    train: DataView,
    validation: Option<DataView>,
) -> Result<()> {
    if let Some((i, v)) = first_non_finite(theta) {
        return Err(OptimError::Training(format!(
            "the starting parameters hold {v} at entry {i}: start from finite weights"
        )));
    }
    let sets = [
        ("training inputs x", Some(train.x)),
        ("training targets t", Some(train.t)),
        ("validation inputs x", validation.map(|v| v.x)),
        ("validation targets t", validation.map(|v| v.t)),
    ];
    for (what, data) in sets {
        let Some(data) = data else { continue };
        if let Some(((row, col), &value)) = data.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(OptimError::NonFiniteData {
                what,
                row,
                col,
                value,
            });
        }
    }
    Ok(())
}
