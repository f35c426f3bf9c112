//! The two bundled real data sets load with the documented counts, shapes, class balance and
//! scaling ranges, and their contents agree with the files read independently here.

use curvature::data::{
    data_dir, load_named, split, Dataset, SplitSpec, Task, DIGITS_FILE, MNIST10K_IMAGES_FILE,
    MNIST10K_LABELS_FILE,
};
use flate2::read::GzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

/// data/README.md: "10,000 real MNIST digits (classes 0..9, 863 to 1,127 per class)".
const MNIST10K_CLASS_RANGE: std::ops::RangeInclusive<usize> = 863..=1127;
/// data/README.md: "every class has 178..227 test samples" (the last 2,000).
const MNIST10K_TEST_CLASS_RANGE: std::ops::RangeInclusive<usize> = 178..=227;
/// data/README.md: digits has 1,797 rows of 64 pixels and a label; mnist10k 10,000 of 28×28.
const DIGITS_ROWS: usize = 1797;
const MNIST10K_ROWS: usize = 10_000;

fn class_counts(ds: &Dataset, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &c in ds.labels.as_ref().unwrap() {
        counts[c] += 1;
    }
    counts
}

/// Shapes, one-hot targets that agree with the labels, and inputs in [0, 1].
fn check_classification_set(ds: &Dataset, rows: usize, inputs: usize, classes: usize) {
    assert_eq!(ds.x.dim(), (rows, inputs));
    assert_eq!(ds.t.dim(), (rows, classes));
    assert_eq!(ds.task, Task::Classification { classes });
    let labels = ds.labels.as_ref().unwrap();
    assert_eq!(labels.len(), rows);
    for (n, row) in ds.t.rows().into_iter().enumerate() {
        for (k, &v) in row.iter().enumerate() {
            assert_eq!(v, if k == labels[n] { 1.0 } else { 0.0 }, "T[{n}][{k}]");
        }
    }
    let lo = ds.x.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = ds.x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert!(lo >= 0.0 && hi <= 1.0, "inputs span [{lo}, {hi}]");
    // Both ends are reached: a scaling by the wrong constant would miss 1 (or exceed it).
    assert_eq!((lo, hi), (0.0, 1.0));
}

#[test]
fn digits_loads_with_its_documented_shape_and_matches_the_file() {
    let ds = load_named("digits").unwrap();
    assert_eq!(ds.name, "digits");
    check_classification_set(&ds, DIGITS_ROWS, 64, 10);

    // The file read independently: every row's 64 pixel counts / 16 and its label.
    let file = std::fs::File::open(data_dir().join(DIGITS_FILE)).unwrap();
    let lines: Vec<String> = BufReader::new(GzDecoder::new(file))
        .lines()
        .map(|l| l.unwrap())
        .collect();
    assert_eq!(lines.len(), DIGITS_ROWS);
    let mut counts = vec![0; 10];
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<u32> = line.split(',').map(|c| c.parse().unwrap()).collect();
        assert_eq!(cells.len(), 65);
        for (i, &p) in cells[..64].iter().enumerate() {
            assert_eq!(ds.x[[n, i]], p as f32 / 16.0, "row {n} pixel {i}");
        }
        assert_eq!(
            ds.labels.as_ref().unwrap()[n],
            cells[64] as usize,
            "row {n}"
        );
        counts[cells[64] as usize] += 1;
        if n == 0 {
            eprintln!("digits row 0: label {} pixels {:?}", cells[64], &cells[..8]);
        }
    }
    assert_eq!(class_counts(&ds, 10), counts);
    // Class balance: the UCI test set is close to uniform; every class within 10% of N/10.
    let expected = DIGITS_ROWS as f64 / 10.0;
    for (c, &k) in counts.iter().enumerate() {
        assert!(
            (k as f64 - expected).abs() <= 0.1 * expected,
            "class {c}: {k}"
        );
    }
    eprintln!("digits class counts {counts:?}");
    let scaling = ds.scaling.as_ref().unwrap();
    assert_eq!(scaling.scale, vec![1.0 / 16.0; 64]);
}

#[test]
fn mnist10k_loads_with_its_documented_shape_balance_and_natural_split() {
    let ds = load_named("mnist10k").unwrap();
    assert_eq!(ds.name, "mnist10k");
    check_classification_set(&ds, MNIST10K_ROWS, 784, 10);
    let counts = class_counts(&ds, 10);
    eprintln!("mnist10k class counts {counts:?}");
    assert!(counts.iter().all(|c| MNIST10K_CLASS_RANGE.contains(c)));

    // The files read independently: first and last image bytes / 255, every label.
    let read_gz = |name: &str| {
        let mut bytes = Vec::new();
        GzDecoder::new(std::fs::File::open(data_dir().join(name)).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    let images = read_gz(MNIST10K_IMAGES_FILE);
    let labels = read_gz(MNIST10K_LABELS_FILE);
    assert_eq!(
        &images[..16],
        &[0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28]
    );
    assert_eq!(images.len(), 16 + MNIST10K_ROWS * 784);
    for n in [0, MNIST10K_ROWS - 1] {
        for i in 0..784 {
            let byte = images[16 + n * 784 + i];
            assert_eq!(ds.x[[n, i]], byte as f32 / 255.0, "image {n} pixel {i}");
        }
    }
    let file_labels: Vec<usize> = labels[8..].iter().map(|&l| l as usize).collect();
    assert_eq!(ds.labels.as_ref().unwrap(), &file_labels);

    let parts = split(&ds, &SplitSpec::Natural).unwrap();
    assert_eq!(parts.train.len(), 8000);
    assert_eq!(parts.test.len(), 2000);
    assert_eq!(parts.train.x.row(0), ds.x.row(0));
    assert_eq!(parts.test.x.row(0), ds.x.row(8000));
    let test_counts = class_counts(&parts.test, 10);
    eprintln!("mnist10k test class counts {test_counts:?}");
    assert!(test_counts
        .iter()
        .all(|c| MNIST10K_TEST_CLASS_RANGE.contains(c)));
}

/// Not an assertion (no timed asserts): prints the release-mode load times for the report.
#[test]
fn load_times() {
    for name in ["digits", "mnist10k"] {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let start = Instant::now();
            let ds = load_named(name).unwrap();
            best = best.min(start.elapsed().as_secs_f64());
            assert!(!ds.is_empty());
        }
        eprintln!("load {name}: best of 3 {:.1} ms", best * 1e3);
    }
}
