//! Evaluation after every epoch: E(θ) on a whole data set and the accuracy of
//! the network's outputs against its targets.

use crate::engine::Curvature;
use crate::optim::Result;
use ndarray::{Array2, ArrayView2};

/// The fraction of rows whose predicted class matches the target's, or None
/// when the targets are not classes (one-hot rows, or 0/1 for one output).
/// y (N, K) network outputs, t (N, K) targets.
pub fn accuracy(y: &Array2<f64>, t: ArrayView2<f32>) -> Option<f64> {
    let (n, k) = t.dim();
    if n == 0 || y.dim() != (n, k) {
        return None;
    }
    let binary = |v: f32| v == 0.0 || v == 1.0;
    let mut correct = 0usize;
    for (yr, tr) in y.outer_iter().zip(t.outer_iter()) {
        if !tr.iter().all(|&v| binary(v)) {
            return None;
        }
        let hit = if k == 1 {
            (yr[0] >= 0.5) == (tr[0] == 1.0)
        } else {
            if tr.iter().filter(|&&v| v == 1.0).count() != 1 {
                return None;
            }
            argmax(yr.iter().copied()) == argmax(tr.iter().map(|&v| v as f64))
        };
        correct += usize::from(hit);
    }
    Some(correct as f64 / n as f64)
}

/// The index of the first largest value (0 for none).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// (E on all rows, accuracy) of θ on an engine's data; `t` (N, K) is the
/// targets in the order the engine holds its rows.
pub(super) fn evaluate(
    engine: &mut dyn Curvature,
    theta: &[f64],
    t: ArrayView2<f32>,
) -> Result<(f64, Option<f64>)> {
    let rows = 0..engine.num_rows();
    let loss = engine.loss(theta, rows.clone())?;
    let y = engine.outputs(theta, rows)?;
    Ok((loss, accuracy(&y, t)))
}
