//! Inputs that made a reader panic, exhaust memory or let a non-finite value through, found
//! by the cargo-fuzz targets in fuzz/ or while writing them; each now gives the clean error
//! (or the finite result) asserted here. Runs on stable with the normal suite.
//!
//! Also replays the committed seed corpus (fuzz/seeds/) through the in-memory readers the
//! fuzz targets call and checks that each agrees with the path reader on the same file.

use curvature::data::{
    load_csv, load_csv_from_bytes, load_digits_csv, load_digits_csv_from_bytes, load_idx,
    load_idx_from_bytes, load_inputs_csv_from_bytes, CsvOptions, CsvTask, DataErrorKind, Scaling,
    ScalingKind, TargetColumn, MAX_ONE_HOT_ENTRIES,
};
use curvature::files::{
    load_model, load_model_from_bytes, read_tensors, write_tensors, FileError, NamedTensor,
    Overwrite,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

/// The bytes of a safetensors file written by `write_tensors` with `metadata`.
fn safetensors_bytes(tensors: &[NamedTensor], metadata: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    write_tensors(&path, tensors, meta, true, Overwrite::Refuse).unwrap();
    std::fs::read(&path).unwrap()
}

fn tensor(name: &str, shape: &[usize]) -> NamedTensor {
    NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data: vec![0.5; shape.iter().product()],
    }
}

/// Metadata whose `sizes` claim a 10⁵×10⁵ first layer over a file holding a 2×3 one: θ was
/// allocated from `sizes` (10¹⁰ f64, 80 GB) before the tensors were compared with it.
#[test]
fn model_sizes_far_beyond_the_tensors_are_refused_before_allocating() {
    let bytes = safetensors_bytes(
        &[
            tensor("layers.0.weight", &[2, 3]),
            tensor("layers.0.bias", &[2]),
            tensor("layers.1.weight", &[10, 2]),
            tensor("layers.1.bias", &[10]),
        ],
        &[
            ("sizes", "100000,100000,10"),
            ("activations", "sigmoid,softmax"),
            ("loss", "ce"),
        ],
    );
    let err = load_model_from_bytes(&bytes, Path::new("huge.safetensors")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FileError::Invalid { .. }), "{msg}");
    assert!(
        msg.contains("huge.safetensors")
            && msg.contains("layers.0.weight")
            && msg.contains("[100000, 100000]"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

/// `sizes` whose θ length overflows usize (2³² × (2³² + 1)) get the same shape error.
#[test]
fn model_sizes_overflowing_the_parameter_count_are_refused() {
    let bytes = safetensors_bytes(
        &[
            tensor("layers.0.weight", &[2, 3]),
            tensor("layers.0.bias", &[2]),
        ],
        &[
            ("sizes", "4294967296,4294967296"),
            ("activations", "identity"),
            ("loss", "sse"),
        ],
    );
    let msg = load_model_from_bytes(&bytes, Path::new("m.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("layers.0.weight") && msg.contains("shape"),
        "{msg}"
    );
}

/// A real-valued target read as class names gives as many classes as rows and a one-hot T
/// of N² entries: 20 000 rows asked for 4·10⁸ f32 (1.6 GB) and, at 10⁵ rows, 40 GB.
#[test]
fn a_target_with_as_many_classes_as_rows_is_refused() {
    const ROWS: usize = 20_000;
    // The test must exceed the limit (checked at compile time).
    const _: () = assert!(ROWS * ROWS > MAX_ONE_HOT_ENTRIES);
    let mut text = String::from("x,y\n");
    for n in 0..ROWS {
        text.push_str(&format!("{n},{}.5\n", n));
    }
    let err = load_csv_from_bytes(
        text.as_bytes(),
        Path::new("real.csv"),
        &CsvOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.kind,
        DataErrorKind::TooManyClasses {
            classes: ROWS,
            rows: ROWS,
            limit: MAX_ONE_HOT_ENTRIES
        }
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("real.csv: ") && !msg.contains('\n'),
        "{msg}"
    );
    // The same file as a regression set loads.
    let opts = CsvOptions {
        task: CsvTask::Regression,
        ..CsvOptions::default()
    };
    let ds = load_csv_from_bytes(text.as_bytes(), Path::new("real.csv"), &opts).unwrap();
    assert_eq!(ds.t.dim(), (ROWS, 1));
}

/// A column holding ±3e38 (finite f32): x − shift overflowed to ±∞ in f32 under min-max and
/// standardize scaling although every scaled value is of order one.
#[test]
fn scaling_values_near_the_f32_limit_stays_finite() {
    let text = b"a,y\n-3e38,0\n3e38,1\n3e38,1\n";
    for scaling in [ScalingKind::MinMax, ScalingKind::Standardize] {
        let opts = CsvOptions {
            scaling,
            ..CsvOptions::default()
        };
        let ds = load_csv_from_bytes(text, Path::new("big.csv"), &opts).unwrap();
        let column: Vec<f32> = ds.x.column(0).to_vec();
        assert!(
            column.iter().all(|v| v.is_finite()),
            "{scaling:?}: {column:?}"
        );
        if scaling == ScalingKind::MinMax {
            // (x − min)/(max − min) is 0 and 1 here, up to the rounding of the f32 scale.
            const MINMAX_TOL: f32 = 1e-6;
            assert!(column[0].abs() <= MINMAX_TOL, "{column:?}");
            assert!((column[1] - 1.0).abs() <= MINMAX_TOL, "{column:?}");
        }
    }
}

/// The seed corpus loads through the in-memory readers, and each path reader (which calls
/// them) gives the same data set on the same file.
#[test]
fn seeds_load_and_the_path_readers_agree() {
    let dir = tempfile::tempdir().unwrap();
    for seed in seeds("idx") {
        let bytes = std::fs::read(&seed).unwrap();
        let split = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        let (images, labels) = bytes[2..].split_at(split);
        let (ip, lp) = (dir.path().join("i.idx"), dir.path().join("l.idx"));
        std::fs::write(&ip, images).unwrap();
        std::fs::write(&lp, labels).unwrap();
        let from_bytes = load_idx_from_bytes(images, &ip, labels, &lp).unwrap();
        assert_eq!(
            from_bytes,
            load_idx(&ip, &lp).unwrap(),
            "{}",
            seed.display()
        );
    }
    for seed in seeds("digits_csv") {
        let ds = load_digits_csv(&seed).unwrap();
        let bytes = std::fs::read(&seed).unwrap();
        assert_eq!(ds, load_digits_csv_from_bytes(&bytes, &seed).unwrap());
    }
    for seed in seeds("csv") {
        // The first two bytes are options for the fuzz target; the defaults suffice here.
        let bytes = std::fs::read(&seed).unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, &bytes[2..]).unwrap();
        let opts = CsvOptions {
            has_header: None,
            target: TargetColumn::Last,
            task: CsvTask::Regression,
            scaling: ScalingKind::None,
        };
        let by_path = load_csv(&path, &opts);
        assert_eq!(by_path, load_csv_from_bytes(&bytes[2..], &path, &opts));
    }
    for seed in seeds("model") {
        let bytes = std::fs::read(&seed).unwrap();
        let m = load_model_from_bytes(&bytes, &seed).unwrap();
        let tensors = read_tensors(&seed).unwrap().0;
        assert_eq!(tensors.len(), 2 * m.mlp.num_layers());
        let by_path = load_model(&seed).unwrap();
        assert_eq!((m.mlp, m.theta), (by_path.mlp, by_path.theta));
    }
}

/// A model's stored scaling with a huge scale (a tampered file, or one from
/// elsewhere) would turn finite input cells into ∞; the inputs reader refuses
/// them, naming the cell, instead of handing ∞ to the network.
#[test]
fn a_stored_scaling_that_overflows_the_inputs_is_refused() {
    let scaling = Scaling::from_metadata("kind=standardize;shift=0,0;scale=1,1e38").unwrap();
    let text = b"1,2\n3,40\n";
    let err = load_inputs_csv_from_bytes(text, Path::new("in.csv"), Some(false), Some(&scaling), 2)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("row 2, column 2"), "{msg}");
    assert!(msg.contains("after the model's stored scaling"), "{msg}");
    // The same inputs under a sane scaling load.
    let sane = Scaling::from_metadata("kind=standardize;shift=0,0;scale=1,1e-3").unwrap();
    let x =
        load_inputs_csv_from_bytes(text, Path::new("in.csv"), Some(false), Some(&sane), 2).unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
}
