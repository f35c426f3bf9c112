//! Train/test splits: everything in file order, a seeded shuffle, or mnist10k's natural split.

use super::dataset::Dataset;
use super::error::{DataError, DataErrorKind};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The usual test fraction.
pub const DEFAULT_TEST_FRACTION: f64 = 0.2;
/// mnist10k's note: the first 8000 samples train, the last 2000 test.
pub const MNIST10K_NATURAL_TRAIN: usize = 8000;
/// mnist10k's size.
pub const MNIST10K_LEN: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// train = every row in file order, test empty (reproducible curvature computations).
    All,
    /// A permutation from ChaCha8(seed); the first round(N · test_fraction) permuted rows
    /// are the test set, the rest (in permuted order) the training set.
    Shuffled { test_fraction: f64, seed: u64 },
    /// mnist10k only: first 8000 / last 2000 rows.
    Natural,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// Splits `ds`; the parts keep its name, task and scaling. BadSplit when the fraction is not
/// in [0, 1), leaves no training row, or `Natural` is asked of a set that has none.
pub fn split(ds: &Dataset, spec: &SplitSpec) -> Result<Split, DataError> {
    let n = ds.len();
    let bad = |msg: String| DataError::new(DataErrorKind::BadSplit(msg), Path::new(&ds.name), None);
    let (train, test): (Vec<usize>, Vec<usize>) = match *spec {
        SplitSpec::All => ((0..n).collect(), Vec::new()),
        SplitSpec::Natural => {
            if ds.name != "mnist10k" || n != MNIST10K_LEN {
                return Err(bad(format!(
                    "no natural split for this data set ({n} rows; only mnist10k has one) — use a shuffled split"
                )));
            }
            (
                (0..MNIST10K_NATURAL_TRAIN).collect(),
                (MNIST10K_NATURAL_TRAIN..n).collect(),
            )
        }
        SplitSpec::Shuffled {
            test_fraction,
            seed,
        } => {
            if !(0.0..1.0).contains(&test_fraction) {
                return Err(bad(format!(
                    "test fraction {test_fraction} is not in [0, 1) — give e.g. 0.2"
                )));
            }
            let n_test = (n as f64 * test_fraction).round() as usize;
            if n_test >= n {
                return Err(bad(format!(
                    "test fraction {test_fraction} of {n} rows leaves no training row — use a smaller fraction"
                )));
            }
            let order = permutation(n, seed);
            (order[n_test..].to_vec(), order[..n_test].to_vec())
        }
    };
    Ok(Split {
        train: ds.subset(&train),
        test: ds.subset(&test),
    })
}

/// The split `curvature train` (and `eval`, from a model's metadata) takes of a data set:
/// mnist10k's natural 8000/2000 split at the default test fraction, else a seeded shuffle
/// with `test_fraction` and `seed`.
pub fn split_spec_for(data_name: &str, test_fraction: f64, seed: u64) -> SplitSpec {
    if data_name == "mnist10k" && test_fraction == DEFAULT_TEST_FRACTION {
        SplitSpec::Natural
    } else {
        SplitSpec::Shuffled {
            test_fraction,
            seed,
        }
    }
}

/// The three parts of a training run, as `curvature train` takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParts {
    /// The rows the optimizer updates on: the training part less the validation part.
    pub train: Dataset,
    /// Evaluated after every epoch (None when `validation_fraction` is 0 or leaves no row).
    pub validation: Option<Dataset>,
    /// Held out for the final test (None when the test part is empty).
    pub test: Option<Dataset>,
}

/// Splits `full` as `curvature train --seed S --test-fraction F --validation-fraction V`
/// does: the test part by [`split_spec_for`]`(name, F, S)`, then a seeded shuffle of the
/// training part with fraction V and seed S + 1 (wrapping) for the validation part.
pub fn run_parts(
    full: &Dataset,
    test_fraction: f64,
    validation_fraction: f64,
    seed: u64,
) -> Result<RunParts, DataError> {
    let parts = split(full, &split_spec_for(&full.name, test_fraction, seed))?;
    let (train, validation) = if validation_fraction > 0.0 {
        let inner = split(
            &parts.train,
            &SplitSpec::Shuffled {
                test_fraction: validation_fraction,
                seed: seed.wrapping_add(1),
            },
        )?;
        (inner.train, Some(inner.test).filter(|v| !v.is_empty()))
    } else {
        (parts.train, None)
    };
    Ok(RunParts {
        train,
        validation,
        test: Some(parts.test).filter(|t| !t.is_empty()),
    })
}

/// A uniformly random permutation of 0..n (Fisher–Yates) from ChaCha8(seed). Written out
/// rather than `SliceRandom::shuffle` so that the split never changes with a rand release.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Uniform in 0..bound (bound ≥ 1) by rejection, without modulo bias.
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // The largest multiple of `bound` that fits in u64's range: accept draws below it.
    let zone = u64::MAX - (u64::MAX % bound + 1) % bound;
    loop {
        let v = rng.next_u64();
        if v <= zone {
            return v % bound;
        }
    }
}
