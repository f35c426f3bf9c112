//! Data sets: the bundled digits CSV and MNIST IDX files, generic CSV, the small teaching problems; splits, scaling, one-hot targets.
//!
//! Every loader returns a [`Dataset`]: inputs X (N, D) row-major, already scaled, and
//! targets T (N, K) — one-hot for classification, real values for regression — with the
//! class labels and the scaling used. Bad input is a [`DataError`] naming the file, the
//! position and the problem; no input makes a loader panic.
//!
//! | source | function | scaling |
//! |--------|----------|---------|
//! | `digits` (bundled `digits.csv.gz`, 1797×64) | [`load_digits_csv`] | ×1/16 |
//! | `mnist10k` (bundled IDX, 10000×784), full MNIST | [`load_idx`] | ×1/255 |
//! | user CSV | [`load_csv`], [`load_inputs_csv`] for prediction | fitted: standardise / min-max / none |
//! | `xor`, `gaussians`, `study-hours` | [`load_named`] | none / none / ×1/column max |

mod csv;
mod dataset;
mod digits;
mod error;
mod idx;
mod named;
mod scaling;
mod source;
mod split;

pub use csv::{
    load_csv, load_csv_from_bytes, load_csv_with_scaling, load_inputs_csv,
    load_inputs_csv_from_bytes, CsvOptions, CsvTask, TargetColumn, MAX_INTEGER_CLASSES,
    MAX_ONE_HOT_ENTRIES,
};
pub use dataset::{one_hot, Dataset, Task};
pub use digits::{
    load_digits_csv, load_digits_csv_from_bytes, DIGITS_CLASSES, DIGITS_MAX_PIXEL, DIGITS_PIXELS,
};
pub use error::{DataError, DataErrorKind, Position};
pub use idx::{load_idx, load_idx_from_bytes, IDX_CLASSES};
pub use named::{
    data_dir, load_named, load_path, load_path_scaled, load_path_with, DATASET_NAMES, DIGITS_FILE,
    GAUSSIANS_MEANS, GAUSSIANS_PER_CLASS, GAUSSIANS_SEED, MNIST10K_IMAGES_FILE,
    MNIST10K_LABELS_FILE,
};
pub use scaling::{Scaling, ScalingKind};
pub use split::{
    permutation, run_parts, split, split_spec_for, RunParts, Split, SplitSpec,
    DEFAULT_TEST_FRACTION, MNIST10K_LEN, MNIST10K_NATURAL_TRAIN,
};
