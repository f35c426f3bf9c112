//! Detection of NaN and ∞ where they arise inside an optimizer step.
//!
//! Every quantity a step computes — E, ∇E (W), a curvature product H·v or G·v
//! (W), a diagonal (W), a dense H or G (W, W) — passes through one of the
//! checks below as soon as it is computed, so a non-finite value becomes an
//! [`OptimError::NonFinite`] that names the quantity, where it was computed
//! and its first offending entry, instead of silently poisoning θ. Comparisons
//! on losses elsewhere are written so that NaN fails them (`is_finite() &&
//! f_new <= f_old`), because `NaN > f_old` is false and would let a NaN trial
//! be accepted.

use super::{OptimError, Result};
use crate::engine::Curvature;
use ndarray::Array2;
use std::fmt;
use std::ops::Range;

/// The quantity that was found not finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// E(θ).
    Loss,
    /// ∇E(θ) (W).
    Gradient,
    /// The dense Hessian H (W, W).
    Hessian,
    /// The dense Gauss-Newton matrix G (W, W).
    GaussNewton,
    /// A Hessian-vector product H·v (W).
    HessianProduct,
    /// A Gauss-Newton product G·v (W).
    GaussNewtonProduct,
    /// diag(H) (W), exact or Becker-LeCun.
    HessianDiagonal,
    /// diag(G) (W).
    GaussNewtonDiagonal,
    /// θ itself after an update (W).
    Parameters,
    /// The update Δθ (W) or its length.
    Step,
}

impl Quantity {
    /// A name for messages, e.g. "Gauss-Newton product G·v".
    pub fn describe(self) -> &'static str {
        match self {
            Quantity::Loss => "loss E(θ)",
            Quantity::Gradient => "gradient ∇E",
            Quantity::Hessian => "Hessian H",
            Quantity::GaussNewton => "Gauss-Newton matrix G",
            Quantity::HessianProduct => "Hessian-vector product H·v",
            Quantity::GaussNewtonProduct => "Gauss-Newton product G·v",
            Quantity::HessianDiagonal => "Hessian diagonal diag(H)",
            Quantity::GaussNewtonDiagonal => "Gauss-Newton diagonal diag(G)",
            Quantity::Parameters => "parameters θ",
            Quantity::Step => "update Δθ",
        }
    }

    /// Whether it is a curvature quantity (H, G, their products or diagonals).
    pub fn is_curvature(self) -> bool {
        matches!(
            self,
            Quantity::Hessian
                | Quantity::GaussNewton
                | Quantity::HessianProduct
                | Quantity::GaussNewtonProduct
                | Quantity::HessianDiagonal
                | Quantity::GaussNewtonDiagonal
        )
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Where in a step the quantity was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// At the θ the step started from (going back further may help).
    Current,
    /// At a trial point θ + Δ, or in the update itself (rejecting the step helps).
    Trial,
}

/// A NaN or ∞ found inside a step: what, where, which entry and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    pub quantity: Quantity,
    pub point: Point,
    /// The first offending entry (row-major for a matrix); None for a scalar.
    pub index: Option<usize>,
    /// Its value: NaN, +∞ or −∞.
    pub value: f64,
}

impl NonFinite {
    /// "the Q is V at entry i", without saying where.
    pub fn what(&self) -> String {
        match self.index {
            Some(i) => format!("the {} is {} at entry {i}", self.quantity, self.value),
            None => format!("the {} is {}", self.quantity, self.value),
        }
    }
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what())?;
        f.write_str(match self.point {
            Point::Current => " at the current θ",
            Point::Trial => " at a trial point",
        })
    }
}

/// The first entry that is NaN or ±∞, with its index.
pub fn first_non_finite<'a>(values: impl IntoIterator<Item = &'a f64>) -> Option<(usize, f64)> {
    values
        .into_iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .map(|(i, v)| (i, *v))
}

/// `v` if it is finite, else the error naming `quantity`.
pub fn check_scalar(quantity: Quantity, point: Point, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(OptimError::NonFinite(NonFinite {
            quantity,
            point,
            index: None,
            value: v,
        }))
    }
}

/// Ok when every entry of `values` (W) is finite, else the error naming
/// `quantity` and the first offending entry.
pub fn check_slice(quantity: Quantity, point: Point, values: &[f64]) -> Result<()> {
    check_entries(quantity, point, values)
}

/// Ok when every entry is finite, else the error naming the first offender.
fn check_entries<'a>(
    quantity: Quantity,
    point: Point,
    values: impl IntoIterator<Item = &'a f64>,
) -> Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some((index, value)) => Err(OptimError::NonFinite(NonFinite {
            quantity,
            point,
            index: Some(index),
            value,
        })),
    }
}

/// Ok when every entry of a dense matrix (W, W) is finite (the index is
/// row-major).
pub fn check_matrix(quantity: Quantity, point: Point, a: &Array2<f64>) -> Result<()> {
    check_entries(quantity, point, a.iter())
}

/// E and ∇E (W) at the point a step starts from, both checked.
pub fn check_loss_grad(loss: f64, grad: &[f64]) -> Result<()> {
    check_scalar(Quantity::Loss, Point::Current, loss)?;
    check_slice(Quantity::Gradient, Point::Current, grad)
}

/// (E, ∇E) at the point a step starts from, from the engine, both checked:
/// how every step begins.
pub fn start_loss_grad(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
) -> Result<(f64, Vec<f64>)> {
    let (loss, grad) = engine.loss_grad(theta, rows)?;
    check_loss_grad(loss, &grad)?;
    Ok((loss, grad))
}
