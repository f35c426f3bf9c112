//! The named data sets: the two bundled digit sets and three small teaching problems
//! generated in code; and `load_path`, which takes a name or a path.

use super::csv::{load_csv, load_csv_with_scaling, CsvOptions};
use super::dataset::{Dataset, Task};
use super::digits::load_digits_csv;
use super::error::{DataError, DataErrorKind};
use super::idx::load_idx;
use super::scaling::Scaling;
use ndarray::{array, Array2};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

pub const DATASET_NAMES: &[&str] = &["digits", "mnist10k", "xor", "gaussians", "study-hours"];

pub const DIGITS_FILE: &str = "digits.csv.gz";
pub const MNIST10K_IMAGES_FILE: &str = "mnist10k-images-idx3-ubyte.gz";
pub const MNIST10K_LABELS_FILE: &str = "mnist10k-labels-idx1-ubyte.gz";

/// The seed of the `gaussians` set (5.4, for PRML §5.4).
pub const GAUSSIANS_SEED: u64 = 54;
/// Points per class in `gaussians`.
pub const GAUSSIANS_PER_CLASS: usize = 50;
/// Class means of `gaussians` (class 0, class 1); both classes have covariance I, so they
/// overlap and the optimum keeps a non-zero loss.
pub const GAUSSIANS_MEANS: [[f32; 2]; 2] = [[-1.0, -1.0], [1.0, 1.0]];

/// Where the bundled files are: `$CURVATURE_DATA_DIR` if set and non-empty, else `./data`
/// if it holds the bundled files, else the crate's own `data/` (`CARGO_MANIFEST_DIR/data`).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CURVATURE_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("data");
    let bundled = [DIGITS_FILE, MNIST10K_IMAGES_FILE, MNIST10K_LABELS_FILE];
    if bundled.iter().all(|f| local.join(f).is_file()) {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// One of [`DATASET_NAMES`]; its `name` is that name.
///
/// - `digits`: 1797×64, pixels/16, 10 classes, one-hot T (N, 10).
/// - `mnist10k`: 10000×784, pixels/255, 10 classes, one-hot T (N, 10); natural split 8000/2000.
/// - `xor`: the 4 points of {0,1}², label = x₁ XOR x₂; two classes with T (4, 1) of 0/1 for a
///   single sigmoid output and `bce` (`with_one_hot_targets` gives (4, 2) for softmax/`ce`).
/// - `gaussians`: 100 points, 50 per class (class 0 first), class c ~ N(`GAUSSIANS_MEANS[c]`, I)
///   drawn from ChaCha8(GAUSSIANS_SEED) by Box–Muller; T (100, 1) of 0/1 like `xor`.
/// - `study-hours`: X = [[3, 5], [5, 1], [10, 2]] (hours slept, hours studied) divided by the
///   column maxima [10, 5]; T = [75, 82, 93] / 100 as (3, 1); regression.
pub fn load_named(name: &str) -> Result<Dataset, DataError> {
    let mut ds = match name {
        "digits" => load_digits_csv(&data_dir().join(DIGITS_FILE))?,
        "mnist10k" => {
            let dir = data_dir();
            load_idx(
                &dir.join(MNIST10K_IMAGES_FILE),
                &dir.join(MNIST10K_LABELS_FILE),
            )?
        }
        "xor" => binary(
            array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
            vec![0, 1, 1, 0],
        ),
        "gaussians" => gaussians(),
        "study-hours" => study_hours(),
        _ => {
            return Err(DataError::new(
                DataErrorKind::UnknownName(DATASET_NAMES.join(", ")),
                Path::new(name),
                None,
            ))
        }
    };
    ds.name = name.to_string();
    Ok(ds)
}

/// A name from [`DATASET_NAMES`], or a path loaded with [`load_path_with`]'s rules and
/// `CsvOptions::default()` (header auto-detected, target last, classification, standardised).
pub fn load_path(spec: &str) -> Result<Dataset, DataError> {
    load_path_with(spec, &CsvOptions::default())
}

/// Loads by name or path, without guessing formats from the data:
/// - a name from [`DATASET_NAMES`] → [`load_named`];
/// - `IMAGES,LABELS` (two paths joined by a comma) → [`load_idx`];
/// - a path whose file name contains `-images-idx3-` (MNIST naming, e.g.
///   `train-images-idx3-ubyte.gz`) → [`load_idx`] with the labels file named
///   `-labels-idx1-` beside it;
/// - any other path → [`load_csv`] with `csv` (a digits-format file loads fine this way too,
///   standardised instead of /16; call [`load_digits_csv`] for the exact digits scaling).
pub fn load_path_with(spec: &str, csv: &CsvOptions) -> Result<Dataset, DataError> {
    load_by_spec(spec, csv, None)
}

/// The dispatch of [`load_path_with`]; a CSV is scaled by `stored` when given.
fn load_by_spec(
    spec: &str,
    csv: &CsvOptions,
    stored: Option<&Scaling>,
) -> Result<Dataset, DataError> {
    if DATASET_NAMES.contains(&spec) {
        return load_named(spec);
    }
    if let Some((images, labels)) = spec.split_once(',') {
        return load_idx(Path::new(images.trim()), Path::new(labels.trim()));
    }
    let path = Path::new(spec);
    let file_name = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    if file_name.contains("-images-idx3-") {
        let labels = path.with_file_name(file_name.replace("-images-idx3-", "-labels-idx1-"));
        return load_idx(path, &labels);
    }
    match stored {
        Some(stored) => load_csv_with_scaling(path, csv, stored),
        None => load_csv(path, csv),
    }
}

/// [`load_path`] for rows a model is evaluated on: a CSV file is scaled by the model's
/// `stored` scaling instead of its own statistics (named sets and IDX files have fixed
/// scalings, the same for every file, and load as [`load_path`] loads them).
pub fn load_path_scaled(spec: &str, stored: Option<&Scaling>) -> Result<Dataset, DataError> {
    load_by_spec(spec, &CsvOptions::default(), stored)
}

/// A two-class set with T (N, 1) holding the label as 0/1.
fn binary(x: Array2<f32>, labels: Vec<usize>) -> Dataset {
    let t = Array2::from_shape_fn((labels.len(), 1), |(n, _)| labels[n] as f32);
    Dataset {
        name: String::new(),
        x,
        t,
        labels: Some(labels),
        task: Task::Classification { classes: 2 },
        scaling: None,
        class_names: None,
    }
}

fn gaussians() -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(GAUSSIANS_SEED);
    let n = 2 * GAUSSIANS_PER_CLASS;
    let mut x = Array2::<f32>::zeros((n, 2));
    let labels: Vec<usize> = (0..n).map(|i| i / GAUSSIANS_PER_CLASS).collect();
    for (i, &c) in labels.iter().enumerate() {
        let (z0, z1) = standard_normal_pair(&mut rng);
        x[[i, 0]] = GAUSSIANS_MEANS[c][0] + z0 as f32;
        x[[i, 1]] = GAUSSIANS_MEANS[c][1] + z1 as f32;
    }
    binary(x, labels)
}

/// Two independent N(0, 1) draws by Box–Muller, from two uniforms with 53 random bits each
/// (written out so the set never changes with a rand or rand_distr release).
fn standard_normal_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
    const TWO_POW_53: f64 = (1u64 << 53) as f64;
    // u1 in (0, 1] so that ln(u1) is finite; u2 in [0, 1).
    let u1 = ((rng.next_u64() >> 11) + 1) as f64 / TWO_POW_53;
    let u2 = (rng.next_u64() >> 11) as f64 / TWO_POW_53;
    let r = (-2.0 * u1.ln()).sqrt();
    let angle = 2.0 * std::f64::consts::PI * u2;
    (r * angle.cos(), r * angle.sin())
}

fn study_hours() -> Dataset {
    // Hours slept, hours studied → test score (Welch Labs' "Neural Networks Demystified").
    let raw: Array2<f32> = array![[3.0, 5.0], [5.0, 1.0], [10.0, 2.0]];
    let maxima: Vec<f32> = raw
        .columns()
        .into_iter()
        .map(|c| c.fold(0.0f32, |a, &v| a.max(v)))
        .collect();
    let scaling = Scaling::fixed(maxima.iter().map(|m| 1.0 / m).collect());
    let mut x = raw;
    scaling.apply(&mut x);
    let t = array![[75.0f32], [82.0], [93.0]] / 100.0;
    Dataset {
        name: String::new(),
        x,
        t,
        labels: None,
        task: Task::Regression,
        scaling: Some(scaling),
        class_names: None,
    }
}
