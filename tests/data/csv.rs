//! The generic CSV loader on small files written here: header detection, target column by
//! name / index / last, integer and named labels, regression, scaling fitted and kept, and
//! prediction inputs scaled exactly like the training inputs.

use curvature::data::{
    load_csv, load_inputs_csv, load_path, load_path_with, CsvOptions, CsvTask, Scaling,
    ScalingKind, TargetColumn, Task,
};
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{array, Array2, Axis};
use std::io::Write;
use std::path::PathBuf;
use tempfile::TempDir;

/// Standardised columns are computed in f64 and stored in f32: their mean and standard
/// deviation are 0 and 1 to within a few f32 roundings of values of order 1.
const STANDARDIZED_TOLERANCE: f32 = 1e-5;

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn options(target: TargetColumn, task: CsvTask, scaling: ScalingKind) -> CsvOptions {
    CsvOptions {
        has_header: None,
        target,
        task,
        scaling,
    }
}

#[test]
fn header_detected_target_by_name_and_named_labels_sorted() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "iris.csv",
        "sepal,species,petal\r\n5.1,setosa,1.4\r\n7.0,versicolor,4.7\r\n6.3,virginica,6.0\r\n4.9,setosa,1.4\r\n",
    );
    let opts = options(
        TargetColumn::Name("species".into()),
        CsvTask::Classification,
        ScalingKind::None,
    );
    let ds = load_csv(&path, &opts).unwrap();
    assert_eq!(
        ds.x,
        array![[5.1f32, 1.4], [7.0, 4.7], [6.3, 6.0], [4.9, 1.4]]
    );
    assert_eq!(ds.labels, Some(vec![0, 1, 2, 0]));
    assert_eq!(
        ds.class_names,
        Some(vec![
            "setosa".into(),
            "versicolor".into(),
            "virginica".into()
        ])
    );
    assert_eq!(ds.task, Task::Classification { classes: 3 });
    assert_eq!(ds.t.row(1).to_vec(), vec![0.0, 1.0, 0.0]);
    assert_eq!(ds.name, path.display().to_string());
}

#[test]
fn no_header_integer_labels_target_by_index() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "plain.csv", "2,0.5,1\n0,0.25,3\n\n1,1e-1,2\n");
    let opts = options(
        TargetColumn::Index(0),
        CsvTask::Classification,
        ScalingKind::None,
    );
    let ds = load_csv(&path, &opts).unwrap();
    assert_eq!(ds.x, array![[0.5f32, 1.0], [0.25, 3.0], [0.1, 2.0]]);
    assert_eq!(ds.labels, Some(vec![2, 0, 1]));
    assert_eq!(ds.class_names, None);
    assert_eq!(ds.num_outputs(), 3);
}

#[test]
fn negative_integer_labels_become_sorted_class_names() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "svm.csv", "x,y\n0.5,1\n0.1,-1\n0.2,+1\n");
    let ds = load_csv(&path, &CsvOptions::default()).unwrap();
    assert_eq!(ds.class_names, Some(vec!["-1".into(), "1".into()]));
    assert_eq!(ds.labels, Some(vec![1, 0, 1]));
}

#[test]
fn regression_targets_are_read_unscaled() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "r.csv",
        "\u{feff}a,b,y\n1,10,0.75\n2,20,-3.5\n3,60,1e2\n",
    );
    let opts = options(TargetColumn::Last, CsvTask::Regression, ScalingKind::MinMax);
    let ds = load_csv(&path, &opts).unwrap();
    assert_eq!(ds.task, Task::Regression);
    assert_eq!(ds.t, array![[0.75f32], [-3.5], [100.0]]);
    assert_eq!(ds.labels, None);
    // Min-max: column a is 1..3, column b is 10..60; both map onto [0, 1].
    let scaling = ds.scaling.as_ref().unwrap();
    assert_eq!(scaling.kind, ScalingKind::MinMax);
    assert_eq!(scaling.shift, vec![1.0, 10.0]);
    assert_eq!(ds.x.column(0).to_vec(), vec![0.0, 0.5, 1.0]);
    let b: Vec<f32> = ds.x.column(1).to_vec();
    assert_eq!((b[0], b[2]), (0.0, 1.0));
    assert!((b[1] - 0.2).abs() <= f32::EPSILON, "b = {b:?}");
}

#[test]
fn standardised_columns_have_zero_mean_unit_deviation_and_constant_columns_stay_finite() {
    let dir = TempDir::new().unwrap();
    let mut text = String::from("u,v,w,label\n");
    for i in 0..50 {
        text += &format!("{},{},7,{}\n", i as f32 * 0.3 - 2.0, (i * i) % 13, i % 2);
    }
    let path = write(&dir, "s.csv", &text);
    let ds = load_csv(&path, &CsvOptions::default()).unwrap();
    let n = ds.len() as f32;
    for (j, column) in ds.x.axis_iter(Axis(1)).enumerate().take(2) {
        let mean = column.sum() / n;
        let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        assert!(
            mean.abs() < STANDARDIZED_TOLERANCE,
            "column {j} mean {mean}"
        );
        assert!(
            (var.sqrt() - 1.0).abs() < STANDARDIZED_TOLERANCE,
            "column {j} sd {}",
            var.sqrt()
        );
    }
    // The constant column w gets scale 1 and maps onto 0 instead of dividing by zero.
    assert!(ds.x.column(2).iter().all(|&v| v == 0.0));
    assert_eq!(ds.scaling.as_ref().unwrap().scale[2], 1.0);
}

#[test]
fn quoted_cells_and_gzip_csv() {
    let dir = TempDir::new().unwrap();
    let text = "\"x, first\",\"y \"\"2\"\"\",class\n1,\"2\",\"a, b\"\n3,4,c\n";
    let path = dir.path().join("q.csv.gz");
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    std::fs::write(&path, e.finish().unwrap()).unwrap();
    let opts = options(
        TargetColumn::Name("class".into()),
        CsvTask::Classification,
        ScalingKind::None,
    );
    let ds = load_csv(&path, &opts).unwrap();
    assert_eq!(ds.x, array![[1.0f32, 2.0], [3.0, 4.0]]);
    assert_eq!(ds.class_names, Some(vec!["a, b".into(), "c".into()]));
    // A header name with an escaped quote selects its column.
    let path = write(
        &dir,
        "r.csv",
        "\"x, first\",\"y \"\"2\"\"\"\n1,\"2\"\n3,4\n",
    );
    let by_quoted_name = options(
        TargetColumn::Name("y \"2\"".into()),
        CsvTask::Regression,
        ScalingKind::None,
    );
    let ds = load_csv(&path, &by_quoted_name).unwrap();
    assert_eq!(ds.t, array![[2.0f32], [4.0]]);
    assert_eq!(ds.x, array![[1.0f32], [3.0]]);
}

#[test]
fn prediction_inputs_are_scaled_exactly_like_training_inputs() {
    let dir = TempDir::new().unwrap();
    let train = write(&dir, "train.csv", "a,b,y\n1,5,0\n2,7,1\n4,6,1\n8,1,0\n");
    let ds = load_csv(&train, &CsvOptions::default()).unwrap();
    let scaling = ds.scaling.clone().unwrap();
    // The scaling survives the model file's metadata string bit for bit.
    let restored = Scaling::from_metadata(&scaling.to_metadata()).unwrap();
    assert_eq!(restored, scaling);
    // The same inputs without the target column, with and without a header.
    for (name, text) in [
        ("in1.csv", "a,b\n1,5\n2,7\n4,6\n8,1\n"),
        ("in2.csv", "1,5\n2,7\n4,6\n8,1\n"),
    ] {
        let path = write(&dir, name, text);
        let x = load_inputs_csv(&path, None, Some(&restored), 2).unwrap();
        assert_eq!(x, ds.x, "{name}");
    }
    let raw = load_inputs_csv(&write(&dir, "in3.csv", "1,5\n"), Some(false), None, 2).unwrap();
    assert_eq!(raw, array![[1.0f32, 5.0]]);
}

#[test]
fn scaling_fit_apply_and_metadata_by_hand() {
    let x: Array2<f32> = array![[1.0, -2.0], [3.0, 2.0]];
    let s = Scaling::fit(ScalingKind::Standardize, x.view());
    // Column means 2 and 0, population deviations 1 and 2.
    assert_eq!(s.shift, vec![2.0, 0.0]);
    assert_eq!(s.scale, vec![1.0, 0.5]);
    let mut y = x.clone();
    s.apply(&mut y);
    assert_eq!(y, array![[-1.0f32, -1.0], [1.0, 1.0]]);
    assert_eq!(s.to_metadata(), "kind=standardize;shift=2,0;scale=1,0.5");
    let odd = Scaling {
        kind: ScalingKind::MinMax,
        shift: vec![0.1, -3.4028235e38],
        scale: vec![1.0 / 3.0, 1e-45],
    };
    assert_eq!(Scaling::from_metadata(&odd.to_metadata()).unwrap(), odd);
    let none = Scaling::fit(ScalingKind::None, x.view());
    assert_eq!((none.shift, none.scale), (vec![0.0; 2], vec![1.0; 2]));
}

#[test]
fn load_path_by_name_csv_and_idx_pair() {
    let ds = load_path("xor").unwrap();
    assert_eq!(ds.name, "xor");
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "d.csv", "1,2,0\n3,4,1\n");
    let ds = load_path(path.to_str().unwrap()).unwrap();
    assert_eq!(ds.scaling.unwrap().kind, ScalingKind::Standardize);
    let regression = CsvOptions {
        task: CsvTask::Regression,
        ..CsvOptions::default()
    };
    let ds = load_path_with(path.to_str().unwrap(), &regression).unwrap();
    assert_eq!(ds.task, Task::Regression);
    // `IMAGES,LABELS` and an MNIST-style images name both reach the IDX loader.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
    images.extend_from_slice(&[0, 255, 51, 102]);
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 2, 7, 3];
    let i = dir.path().join("t10k-images-idx3-ubyte");
    let l = dir.path().join("t10k-labels-idx1-ubyte");
    std::fs::write(&i, &images).unwrap();
    std::fs::write(&l, &labels).unwrap();
    let pair = format!("{},{}", i.display(), l.display());
    for spec in [pair.as_str(), i.to_str().unwrap()] {
        let ds = load_path(spec).unwrap();
        assert_eq!(ds.x, array![[0.0f32, 1.0], [0.2, 0.4]]);
        assert_eq!(ds.labels, Some(vec![7, 3]));
    }
}
