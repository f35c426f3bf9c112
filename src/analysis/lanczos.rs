//! The Lanczos iteration with full reorthogonalisation (Golub & Van Loan
//! §10.1): from a unit q₀, q_{j+1} β_j = A q_j − α_j q_j − β_{j−1} q_{j−1},
//! α_j = q_jᵀ A q_j, with every new vector orthogonalised twice against all
//! previous ones (classical Gram-Schmidt, twice is enough), so that Q stays
//! orthonormal in floating point and no ghost copies of eigenvalues appear.
//! The tridiagonal T_m = Qᵀ A Q (m, m) is diagonalised densely; its
//! eigenvalues (Ritz values) approximate the extreme eigenvalues of A first.
//!
//! A single starting vector's Krylov space holds each *distinct* eigenvalue
//! once: multiplicities (such as the eigenvalue λ of the directions a softmax
//! output is invariant to) are not resolved, and the run stops early at an
//! invariant subspace when A has fewer distinct eigenvalues than steps.
//!
//! Several independent runs advance together, one engine pass per step for
//! all of them (`apply_block`), which is what the GPU is good at.

use super::dense;
use super::operator::Operator;
use crate::error::Result;
use ndarray::{Array1, Array2, ArrayView1};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One Lanczos run: T_m's diagonal α (m) and off-diagonal β (m − 1), and the
/// orthonormal basis Q (m, dim), row j = q_j.
#[derive(Clone, Debug)]
pub struct LanczosRun {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub basis: Array2<f64>,
}

/// β below this fraction of ‖T‖ means an invariant subspace was found: the
/// Ritz values are then exact eigenvalues of A and the run stops.
const BREAKDOWN: f64 = 1e-10;

impl LanczosRun {
    /// The Ritz values (ascending) and the eigenvectors of T_m (columns (m, m)).
    pub fn ritz(&self) -> Result<(Vec<f64>, Array2<f64>)> {
        let m = self.alpha.len();
        let t = Array2::from_shape_fn((m, m), |(i, j)| {
            if i == j {
                self.alpha[i]
            } else if i + 1 == j {
                self.beta[i]
            } else if j + 1 == i {
                self.beta[j]
            } else {
                0.0
            }
        });
        dense::eigen(&t)
    }
}

/// Runs one Lanczos recurrence from each row of `starts` (k, dim) (normalised
/// here) for at most `steps` steps (fewer when a run finds an invariant
/// subspace, and never more than dim).
pub fn lanczos_many(
    op: &mut Operator,
    starts: Array2<f64>,
    steps: usize,
) -> Result<Vec<LanczosRun>> {
    let (k, dim) = starts.dim();
    let steps = steps.min(dim).max(1);
    // Per run: basis vectors so far, α, β, and whether it still runs.
    let mut bases: Vec<Vec<Array1<f64>>> = starts
        .rows()
        .into_iter()
        .map(|r| {
            let n = r.dot(&r).sqrt();
            vec![r.mapv(|x| x / n)]
        })
        .collect();
    let mut alphas = vec![Vec::new(); k];
    let mut betas: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut active: Vec<bool> = vec![true; k];
    for _ in 0..steps {
        let live: Vec<usize> = (0..k).filter(|&r| active[r]).collect();
        if live.is_empty() {
            break;
        }
        let block = Array2::from_shape_fn((live.len(), dim), |(i, c)| {
            bases[live[i]].last().map_or(0.0, |q| q[c])
        });
        let aq = op.apply_block(block.view())?; // (live, dim)
        for (i, &r) in live.iter().enumerate() {
            let basis = &mut bases[r];
            let j = basis.len() - 1;
            let mut w = aq.row(i).to_owned();
            let alpha = basis[j].dot(&w);
            alphas[r].push(alpha);
            // Full reorthogonalisation against every q (twice) subsumes the
            // three-term recurrence's subtraction of α q_j and β q_{j−1}.
            for _ in 0..2 {
                for q in basis.iter() {
                    let c = q.dot(&w);
                    w.scaled_add(-c, q);
                }
            }
            let beta = w.dot(&w).sqrt();
            let scale = alphas[r]
                .iter()
                .chain(betas[r].iter())
                .fold(0.0f64, |m, v| m.max(v.abs()));
            if basis.len() >= dim || beta <= BREAKDOWN * scale.max(f64::MIN_POSITIVE) {
                active[r] = false;
                continue;
            }
            if alphas[r].len() == steps {
                active[r] = false;
                continue;
            }
            betas[r].push(beta);
            basis.push(w.mapv(|x| x / beta));
        }
    }
    Ok(bases
        .into_iter()
        .zip(alphas)
        .zip(betas)
        .map(|((basis, alpha), beta)| {
            let m = alpha.len();
            let q = Array2::from_shape_fn((m, dim), |(j, c)| basis[j][c]);
            LanczosRun {
                alpha,
                beta,
                basis: q,
            }
        })
        .collect())
}

/// Rademacher vectors (k, dim): entries ±1 with equal probability, seeded (ChaCha8).
pub fn rademacher(k: usize, dim: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((k, dim), |_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
}

/// An approximate eigenpair and its residual ‖A u − λ u‖₂ (u of unit norm),
/// measured by one more product (not the Lanczos estimate |β_m y_m|).
#[derive(Clone, Debug, PartialEq)]
pub struct Eigenpair {
    pub value: f64,
    pub residual: f64,
    /// The unit Ritz vector u (dim).
    pub vector: Vec<f64>,
}

/// The `top` largest and `bottom` smallest eigenpairs (algebraically) of the
/// operator by one Lanczos run of `steps` steps from a seeded random start.
/// Returns (largest first, smallest first); a pair may appear in both lists
/// when top + bottom exceeds the steps taken.
pub fn extreme_eigenpairs(
    op: &mut Operator,
    top: usize,
    bottom: usize,
    steps: usize,
    seed: u64,
) -> Result<(Vec<Eigenpair>, Vec<Eigenpair>)> {
    let dim = op.dim();
    let start = rademacher(1, dim, seed);
    let run = lanczos_many(op, start, steps)?.remove(0);
    let (values, y) = run.ritz()?; // ascending
    let m = values.len();
    let top_idx: Vec<usize> = (0..m).rev().take(top).collect();
    let bottom_idx: Vec<usize> = (0..m).take(bottom).collect();
    let wanted: Vec<usize> = top_idx.iter().chain(&bottom_idx).copied().collect();
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // Ritz vectors u_i = Qᵀ y_i, one row each (wanted, dim).
    let mut u = Array2::zeros((wanted.len(), dim));
    for (row, &i) in wanted.iter().enumerate() {
        let ui = run.basis.t().dot(&y.column(i));
        let n = ui.dot(&ui).sqrt();
        u.row_mut(row).assign(&ui.mapv(|x| x / n));
    }
    let au = op.apply_block(u.view())?;
    let pairs: Vec<Eigenpair> = wanted
        .iter()
        .enumerate()
        .map(|(row, &i)| {
            let r = &au.row(row) - &u.row(row).mapv(|x| x * values[i]);
            Eigenpair {
                value: values[i],
                residual: norm(r.view()),
                vector: u.row(row).to_vec(),
            }
        })
        .collect();
    let (tops, bottoms) = pairs.split_at(top_idx.len());
    Ok((tops.to_vec(), bottoms.to_vec()))
}

fn norm(v: ArrayView1<f64>) -> f64 {
    v.dot(&v).sqrt()
}
