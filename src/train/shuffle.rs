//! The per-epoch shuffle of mini-batch training: epoch e's permutation is a
//! pure function of (seed, e), so a run is reproducible, independent of the
//! device, and resumable from its position alone.

use super::config::DataView;
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The seeded permutation of 0..n for one epoch.
pub(super) fn epoch_permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    // Mix the epoch into the seed with a large odd constant (golden ratio).
    let mixed = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = ChaCha8Rng::seed_from_u64(mixed);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    perm
}

/// The rows of (x (N, D), t (N, K)) in the order `perm`.
pub(super) fn permuted(data: DataView, perm: &[usize]) -> (Array2<f32>, Array2<f32>) {
    (data.x.select(Axis(0), perm), data.t.select(Axis(0), perm))
}
