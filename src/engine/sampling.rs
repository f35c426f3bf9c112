//! The Monte-Carlo Fisher's draws, written once for the fast engines: the reference's
//! stream (`cpu/fisher.rs`, "The sampling stream") cut into the numbers each row's
//! sampled targets are made from, so that the fast CPU engine and the GPU draw the
//! samples the reference draws and their `mc` results agree with it to the tolerance
//! table.
//!
//! ```text
//!   one ChaCha8 stream seeded with `seed`; for row n (from the first row of the range
//!   the reference is given), then draw s = 0..S−1, one row of K numbers:
//!     ce   (categorical)  [u, 0, …, 0]          y = the first k with p_0 + … + p_k > u (K−1 if none)
//!     bce  (Bernoulli)    [u_0, …, u_{K−1}]     ỹ_k = 1 if u_k < σ(a_k)
//!     sse/mse (Gaussian)  [ε_0, …, ε_{K−1}]     ε = √(−2 ln(1 − u₁)) cos(2π u₂), u₁ first
//! ```
//! The column of a draw is c = δ(a, ỹ)·scale with scale = √(Σ_k t_k)/√S for ce (the
//! target's mass, 1 for one-hot) and 1/√S otherwise ([`sampled_column`]); the reference
//! computes it the same way, so in f64 the two agree to the last few bits. An engine in
//! f32 compares u with its own f32 probabilities: a draw within rounding of a boundary
//! (about K·10⁻⁷ of the uniforms) may take the neighbouring class.

use crate::activation::{sigmoid, Activation};
use crate::cpu::{Fisher, Likelihood};
use crate::error::{Error, Result};
use crate::loss::{softmax, Loss};
use crate::model::Mlp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;

/// The draws of `samples` targets per row for `rows` rows (module header): row r·S + s
/// (K entries) belongs to row r of the range and draw s.
#[derive(Clone, Debug)]
pub struct Draws {
    /// S, draws per row.
    pub samples: usize,
    /// K, numbers per draw.
    pub k: usize,
    /// The likelihood the numbers are for.
    pub likelihood: Likelihood,
    /// (rows·S, K) row-major.
    pub values: Vec<f64>,
}

/// Refuses what the reference refuses for `mc`: no samples, or a loss with no likelihood.
pub fn check_mc(mlp: &Mlp, samples: usize) -> Result<Likelihood> {
    if samples == 0 {
        return Err(Error::Input(
            "the Monte-Carlo Fisher needs at least one sample per row (samples ≥ 1)".to_string(),
        ));
    }
    Likelihood::of(mlp.loss(), mlp.num_outputs())
}

impl Draws {
    /// The draws of `Fisher::Mc { samples, seed }` for `rows` rows that follow `skip`
    /// rows of the stream (the rows of a split request before these; 0 otherwise).
    pub fn new(mlp: &Mlp, samples: usize, seed: u64, skip: usize, rows: usize) -> Result<Draws> {
        let likelihood = check_mc(mlp, samples)?;
        let k = mlp.num_outputs();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values = vec![0.0; rows * samples * k];
        let mut row = vec![0.0; k];
        for r in 0..skip + rows {
            for s in 0..samples {
                draw(likelihood, &mut rng, &mut row);
                if r >= skip {
                    let at = ((r - skip) * samples + s) * k;
                    values[at..at + k].copy_from_slice(&row);
                }
            }
        }
        Ok(Draws {
            samples,
            k,
            likelihood,
            values,
        })
    }

    /// The draws of `fisher` when it is `mc`, else None.
    pub fn of(mlp: &Mlp, fisher: Fisher, skip: usize, rows: usize) -> Result<Option<Draws>> {
        match fisher {
            Fisher::Mc { samples, seed } => Ok(Some(Draws::new(mlp, samples, seed, skip, rows)?)),
            Fisher::Exact | Fisher::Empirical => Ok(None),
        }
    }

    /// The K numbers of draw `s` of row `r` (relative to the range).
    pub fn row(&self, r: usize, s: usize) -> &[f64] {
        let at = (r * self.samples + s) * self.k;
        &self.values[at..at + self.k]
    }
}

/// One draw's K numbers from `rng`, in the reference's order.
fn draw(likelihood: Likelihood, rng: &mut ChaCha8Rng, out: &mut [f64]) {
    match likelihood {
        Likelihood::Categorical => {
            out.iter_mut().for_each(|v| *v = 0.0);
            out[0] = rng.random();
        }
        Likelihood::Bernoulli => out.iter_mut().for_each(|v| *v = rng.random()),
        Likelihood::Gaussian { .. } => {
            for v in out.iter_mut() {
                let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                *v = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * PI * u2).cos();
            }
        }
    }
}

/// The column c (K) of one draw at output pre-activations `a` (K) and observed target
/// `t` (K): ∂(−log p(ỹ | a))/∂a at the sampled ỹ, times √(Σ_k t_k) for ce, divided by
/// √S — the reference's arithmetic (`cpu/fisher.rs`), in f64.
pub fn sampled_column(
    loss: Loss,
    act: Activation,
    draws: &Draws,
    a: &[f64],
    t: &[f64],
    draw: &[f64],
    out: &mut [f64],
) {
    let k = a.len();
    let mut y = vec![0.0; k];
    match draws.likelihood {
        Likelihood::Categorical => {
            let mut p = vec![0.0; k];
            softmax(a, &mut p);
            let mut cumulative = 0.0;
            let mut class = k - 1;
            for (i, p_i) in p.iter().enumerate() {
                cumulative += p_i;
                if cumulative > draw[0] {
                    class = i;
                    break;
                }
            }
            y[class] = 1.0;
        }
        Likelihood::Bernoulli => {
            for ((y_k, &a_k), &u) in y.iter_mut().zip(a).zip(draw) {
                *y_k = if u < sigmoid(a_k) { 1.0 } else { 0.0 };
            }
        }
        Likelihood::Gaussian { std } => {
            for ((y_k, &a_k), &eps) in y.iter_mut().zip(a).zip(draw) {
                *y_k = act.h(a_k) + std * eps;
            }
        }
    }
    let mass = if loss == Loss::Ce {
        t.iter().sum::<f64>().max(0.0).sqrt()
    } else {
        1.0
    };
    let scale = mass / (draws.samples as f64).sqrt();
    loss.delta(act, a, &y, out);
    for c in out.iter_mut() {
        *c *= scale;
    }
}
