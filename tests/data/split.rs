//! The teaching sets generated in code, and splits: sizes, partitions, determinism.

use curvature::data::{
    load_named, permutation, run_parts, split, split_spec_for, SplitSpec, Task, DATASET_NAMES,
    DEFAULT_TEST_FRACTION, GAUSSIANS_MEANS, GAUSSIANS_PER_CLASS,
};
use ndarray::array;

/// The mean of 50 draws of N(μ, 1) lies within 4 standard errors (4/√50 ≈ 0.57) of μ
/// except with probability ~6e-5: a wrong mean or spread in the generator fails this.
const SAMPLE_MEAN_TOLERANCE: f32 = 4.0 / 7.071;
/// The sample variance of 50 N(0, 1) draws has standard error √(2/49) ≈ 0.2; 4 of those.
const SAMPLE_VARIANCE_TOLERANCE: f32 = 0.8;

#[test]
fn every_name_loads_and_carries_its_name() {
    for &name in DATASET_NAMES {
        let ds = load_named(name).unwrap();
        assert_eq!(ds.name, name);
        assert!(!ds.is_empty());
        assert_eq!(ds.t.nrows(), ds.len());
    }
}

#[test]
fn xor_is_the_exclusive_or_of_its_inputs_with_one_sigmoid_target() {
    let ds = load_named("xor").unwrap();
    assert_eq!(
        ds.x,
        array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    );
    assert_eq!(ds.task, Task::Classification { classes: 2 });
    assert_eq!(ds.num_outputs(), 1);
    let labels = ds.labels.as_ref().unwrap();
    for (n, &label) in labels.iter().enumerate() {
        let xor = (ds.x[[n, 0]] != ds.x[[n, 1]]) as usize;
        assert_eq!(label, xor);
        assert_eq!(ds.t[[n, 0]], xor as f32);
    }
    // The softmax/ce form: one-hot (4, 2) agreeing with the labels.
    let one_hot = ds.with_one_hot_targets();
    assert_eq!(
        one_hot.t,
        array![[1.0f32, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]
    );
}

#[test]
fn gaussians_are_seeded_balanced_and_centred_on_their_means() {
    let ds = load_named("gaussians").unwrap();
    assert_eq!(ds, load_named("gaussians").unwrap(), "same seed, same set");
    assert_eq!(ds.x.dim(), (2 * GAUSSIANS_PER_CLASS, 2));
    assert_eq!(ds.t.dim(), (2 * GAUSSIANS_PER_CLASS, 1));
    let labels = ds.labels.as_ref().unwrap();
    for (c, mean) in GAUSSIANS_MEANS.iter().enumerate() {
        let rows: Vec<usize> = (0..ds.len()).filter(|&n| labels[n] == c).collect();
        assert_eq!(rows.len(), GAUSSIANS_PER_CLASS);
        let class = ds.subset(&rows);
        assert!(class.t.iter().all(|&t| t == c as f32));
        for (j, &mean_j) in mean.iter().enumerate() {
            let column = class.x.column(j);
            let m = column.sum() / rows.len() as f32;
            let var = column.iter().map(|v| (v - m).powi(2)).sum::<f32>() / (rows.len() - 1) as f32;
            assert!(
                (m - mean_j).abs() < SAMPLE_MEAN_TOLERANCE,
                "class {c} coord {j} mean {m}"
            );
            assert!(
                (var - 1.0).abs() < SAMPLE_VARIANCE_TOLERANCE,
                "class {c} coord {j} var {var}"
            );
        }
    }
}

#[test]
fn study_hours_inputs_are_divided_by_their_column_maxima() {
    let ds = load_named("study-hours").unwrap();
    let raw = array![[3.0f32, 5.0], [5.0, 1.0], [10.0, 2.0]];
    let maxima = [10.0f32, 5.0];
    for n in 0..3 {
        for j in 0..2 {
            assert_eq!(ds.x[[n, j]], raw[[n, j]] * (1.0 / maxima[j]));
        }
    }
    assert_eq!(ds.t, array![[0.75f32], [0.82], [0.93]]);
    assert_eq!(ds.task, Task::Regression);
    assert_eq!(ds.labels, None);
    // The kept scaling turns the raw inputs into the loaded ones.
    let mut scaled = raw.clone();
    ds.scaling.as_ref().unwrap().apply(&mut scaled);
    assert_eq!(scaled, ds.x);
}

#[test]
fn shuffled_split_sizes_partition_and_determinism() {
    let ds = load_named("digits").unwrap();
    // Tag each row with its index so the parts can be traced back to the rows.
    let mut tagged = ds.clone();
    tagged.x = ndarray::Array2::from_shape_fn((ds.len(), 1), |(n, _)| n as f32);
    let spec = SplitSpec::Shuffled {
        test_fraction: DEFAULT_TEST_FRACTION,
        seed: 7,
    };
    let parts = split(&tagged, &spec).unwrap();
    let n_test = (ds.len() as f64 * DEFAULT_TEST_FRACTION).round() as usize;
    assert_eq!(parts.test.len(), n_test);
    assert_eq!(parts.train.len(), ds.len() - n_test);
    let mut seen: Vec<usize> = parts
        .train
        .x
        .iter()
        .chain(parts.test.x.iter())
        .map(|&v| v as usize)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..ds.len()).collect::<Vec<_>>());
    // Targets and labels travel with their rows.
    for (part, rows) in [(&parts.train, &parts.train.x), (&parts.test, &parts.test.x)] {
        for (i, &r) in rows.iter().enumerate() {
            let r = r as usize;
            assert_eq!(
                part.labels.as_ref().unwrap()[i],
                ds.labels.as_ref().unwrap()[r]
            );
            assert_eq!(part.t.row(i), ds.t.row(r));
        }
    }
    // Same seed, same split; another seed, another split.
    assert_eq!(split(&tagged, &spec).unwrap(), parts);
    let other = split(
        &tagged,
        &SplitSpec::Shuffled {
            test_fraction: DEFAULT_TEST_FRACTION,
            seed: 8,
        },
    )
    .unwrap();
    assert_ne!(other.test.x, parts.test.x);
}

#[test]
fn all_keeps_file_order_and_an_empty_test_set() {
    let ds = load_named("gaussians").unwrap();
    let parts = split(&ds, &SplitSpec::All).unwrap();
    assert_eq!(parts.train, ds);
    assert!(parts.test.is_empty());
    assert_eq!(parts.test.num_inputs(), 2);
    let none = split(
        &ds,
        &SplitSpec::Shuffled {
            test_fraction: 0.0,
            seed: 1,
        },
    )
    .unwrap();
    assert!(none.test.is_empty());
    assert_eq!(none.train.len(), ds.len());
}

#[test]
fn permutation_is_a_permutation_and_fixed_by_its_seed() {
    for n in [0, 1, 2, 17, 1000] {
        let p = permutation(n, 3);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_eq!(p, permutation(n, 3));
    }
    assert_ne!(permutation(1000, 3), permutation(1000, 4));
    assert_ne!(permutation(1000, 3), (0..1000).collect::<Vec<_>>());
}

/// `run_parts` (what `curvature train` and `examples/export_split` both call): the test part
/// by `split_spec_for` (mnist10k natural at the default fraction), then a shuffle of the
/// training part with seed + 1 for the validation part.
#[test]
fn run_parts_are_the_test_split_then_a_validation_split_with_seed_plus_one() {
    let digits = load_named("digits").unwrap();
    let parts = run_parts(&digits, DEFAULT_TEST_FRACTION, 0.1, 3).unwrap();
    let outer = split(
        &digits,
        &SplitSpec::Shuffled {
            test_fraction: DEFAULT_TEST_FRACTION,
            seed: 3,
        },
    )
    .unwrap();
    let inner = split(
        &outer.train,
        &SplitSpec::Shuffled {
            test_fraction: 0.1,
            seed: 4,
        },
    )
    .unwrap();
    assert_eq!(
        (parts.train.len(), parts.validation.as_ref().unwrap().len()),
        (1294, 144)
    );
    assert_eq!(parts.train, inner.train);
    assert_eq!(parts.validation, Some(inner.test));
    assert_eq!(parts.test, Some(outer.test));

    let none = run_parts(&digits, DEFAULT_TEST_FRACTION, 0.0, 3).unwrap();
    assert_eq!((none.train.len(), none.validation), (1438, None));

    assert_eq!(
        split_spec_for("mnist10k", DEFAULT_TEST_FRACTION, 9),
        SplitSpec::Natural
    );
    assert_eq!(
        split_spec_for("mnist10k", 0.3, 9),
        SplitSpec::Shuffled {
            test_fraction: 0.3,
            seed: 9
        }
    );
    let mnist = load_named("mnist10k").unwrap();
    let m = run_parts(&mnist, DEFAULT_TEST_FRACTION, 0.1, 0).unwrap();
    assert_eq!(
        m.test.as_ref().unwrap().x,
        mnist.x.slice(ndarray::s![8000.., ..])
    );
    assert_eq!((m.train.len(), m.validation.unwrap().len()), (7200, 800));
}
