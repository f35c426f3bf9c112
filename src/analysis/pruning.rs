//! Pruning weights (PRML §5.4, and the papers it cites):
//!
//! - magnitude: remove the weights of smallest |w_q|;
//! - Optimal Brain Damage (LeCun, Denker & Solla 1990): saliency
//!   s_q = ½ H_qq w_q² from the diagonal of H, remove the smallest, others unchanged;
//! - Optimal Brain Surgeon (Hassibi & Stork 1993): saliency
//!   s_q = w_q² / (2 [H⁻¹]_qq), and the other weights move by
//!   δw = −(w_q / [H⁻¹]_qq) H⁻¹ e_q, the minimiser of the quadratic model
//!   subject to w_q = 0. Removal is in batches of `batch` weights (1 = one at a
//!   time): for a batch S, δw = −H⁻¹ E_S ([H⁻¹]_SS)⁻¹ w_S (exact joint removal),
//!   the predicted increase is ½ w_Sᵀ ([H⁻¹]_SS)⁻¹ w_S, and the inverse is
//!   downdated, H⁻¹ ← H⁻¹ − H⁻¹ E_S ([H⁻¹]_SS)⁻¹ E_Sᵀ H⁻¹, which is the inverse
//!   of H restricted to the weights that remain (removed ones stay at 0).
//!
//! Only weights are pruned, never biases. OBS uses H⁻¹ = (G + αI)⁻¹ by
//! default (as Hassibi & Stork did: the outer-product approximation, which is
//! positive definite), or (H + αI)⁻¹ where that is positive definite.

use super::dense;
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;

/// The pruning criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneMethod {
    Magnitude,
    Obd,
    Obs,
}

impl PruneMethod {
    pub fn name(self) -> &'static str {
        match self {
            PruneMethod::Magnitude => "magnitude",
            PruneMethod::Obd => "OBD",
            PruneMethod::Obs => "OBS",
        }
    }
}

/// What a pruning did.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    /// θ after pruning (W): removed weights are exactly 0.
    pub theta: Vec<f64>,
    /// The removed indices of θ, in removal order.
    pub removed: Vec<usize>,
    /// The increase of E the quadratic model predicts (Σ saliencies for
    /// OBD/magnitude with the diagonal; the exact OBS sum for OBS).
    pub predicted_increase: f64,
}

/// The indices of θ that hold weights (not biases): the candidates.
pub fn weight_indices(mlp: &Mlp) -> Vec<usize> {
    mlp.layout().into_iter().flat_map(|l| l.weights).collect()
}

/// How many of `candidates` weights a fraction removes (rounded down).
pub fn count_for(fraction: f64, candidates: usize) -> Result<usize> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::Input(format!(
            "fraction {fraction}: give a fraction of weights between 0 and 1"
        )));
    }
    Ok((fraction * candidates as f64).floor() as usize)
}

/// Removes the `count` candidates of smallest `score`, leaving the others;
/// `saliency` gives each removed weight's predicted cost.
fn remove_smallest(
    theta: &[f64],
    candidates: &[usize],
    count: usize,
    score: impl Fn(usize) -> f64,
    saliency: impl Fn(usize) -> f64,
) -> Pruned {
    let mut order: Vec<usize> = candidates.to_vec();
    order.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
    order.truncate(count);
    let mut out = theta.to_vec();
    for &q in &order {
        out[q] = 0.0;
    }
    Pruned {
        predicted_increase: order.iter().map(|&q| saliency(q)).sum(),
        theta: out,
        removed: order,
    }
}

/// Magnitude pruning of `count` weights; the prediction uses the diagonal
/// `diag` of H (½ H_qq w_q², as OBD would).
pub fn magnitude(theta: &[f64], diag: &[f64], candidates: &[usize], count: usize) -> Pruned {
    remove_smallest(
        theta,
        candidates,
        count,
        |q| theta[q].abs(),
        |q| 0.5 * diag[q] * theta[q] * theta[q],
    )
}

/// Optimal Brain Damage with the diagonal `diag` (W) of H: saliency ½ H_qq w_q².
pub fn obd(theta: &[f64], diag: &[f64], candidates: &[usize], count: usize) -> Pruned {
    let s = |q: usize| 0.5 * diag[q] * theta[q] * theta[q];
    remove_smallest(theta, candidates, count, s, s)
}

/// Optimal Brain Surgeon from the inverse `inverse` = H⁻¹ (W, W) (consumed:
/// it is downdated in place), removing `count` candidates in batches of
/// `batch` (see the module header).
pub fn obs(
    theta: &[f64],
    mut inverse: Array2<f64>,
    candidates: &[usize],
    count: usize,
    batch: usize,
) -> Result<Pruned> {
    let w = theta.len();
    if inverse.dim() != (w, w) {
        return Err(Error::Shape(format!(
            "H⁻¹ is {:?}, θ has W = {w}",
            inverse.dim()
        )));
    }
    let batch = batch.max(1);
    let mut theta = theta.to_vec();
    let mut alive: Vec<usize> = candidates.to_vec();
    let mut removed = Vec::with_capacity(count);
    let mut predicted = 0.0;
    while removed.len() < count {
        let take = batch.min(count - removed.len());
        let saliency = |q: usize| theta[q] * theta[q] / (2.0 * inverse[[q, q]]);
        alive.sort_by(|&a, &b| saliency(a).total_cmp(&saliency(b)));
        let set: Vec<usize> = alive.drain(..take).collect();
        // M = [H⁻¹]_SS (s, s), c = M⁻¹ w_S.
        let s = set.len();
        let m = Array2::from_shape_fn((s, s), |(i, j)| inverse[[set[i], set[j]]]);
        let m_inv = dense::cholesky_inverse(&m, 0.0).map_err(|_| {
            Error::Input(
                "OBS: [H⁻¹]_SS lost positive definiteness (rounding): use a larger α or a smaller batch"
                    .into(),
            )
        })?;
        let w_s = ndarray::Array1::from_iter(set.iter().map(|&q| theta[q]));
        let c = m_inv.dot(&w_s); // (s)
        predicted += 0.5 * w_s.dot(&c);
        let cols = Array2::from_shape_fn((w, s), |(i, j)| inverse[[i, set[j]]]); // H⁻¹ E_S (W, s)
        let delta = cols.dot(&c); // (W)
        for (t, d) in theta.iter_mut().zip(delta.iter()) {
            *t -= d;
        }
        // Downdate: H⁻¹ ← H⁻¹ − (H⁻¹E_S) M⁻¹ (H⁻¹E_S)ᵀ.
        let left = cols.dot(&m_inv); // (W, s)
        general_mat_mul(-1.0, &left, &cols.t(), 1.0, &mut inverse);
        for &q in &set {
            theta[q] = 0.0; // exactly: w_q − M M⁻¹ w_q = 0 up to rounding
            removed.push(q);
        }
        // Removed weights are pinned: rounding must not let them move again.
        for &q in &removed {
            inverse.row_mut(q).fill(0.0);
            inverse.column_mut(q).fill(0.0);
        }
    }
    Ok(Pruned {
        theta,
        removed,
        predicted_increase: predicted,
    })
}
