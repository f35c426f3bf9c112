//! `CURVATURE_DATA_DIR` redirects the named sets. Alone in its own test binary because it
//! sets a process-wide environment variable.

use curvature::data::{data_dir, load_named, DataErrorKind, DIGITS_FILE};
use tempfile::TempDir;

#[test]
fn curvature_data_dir_redirects_the_bundled_files() {
    let default_dir = data_dir();
    assert!(default_dir.join(DIGITS_FILE).is_file(), "{default_dir:?}");

    let dir = TempDir::new().unwrap();
    std::env::set_var("CURVATURE_DATA_DIR", dir.path());
    assert_eq!(data_dir(), dir.path());
    // Nothing there yet: the error names the file it looked for.
    let err = load_named("digits").unwrap_err();
    assert_eq!(err.kind, DataErrorKind::NotFound);
    assert_eq!(err.file, dir.path().join(DIGITS_FILE));
    assert!(err.to_string().contains("CURVATURE_DATA_DIR"), "{err}");
    // A two-row digits file there is what `digits` now loads.
    let row = |label: u32| {
        let pixels: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
        format!("{},{label}\n", pixels.join(","))
    };
    std::fs::write(dir.path().join(DIGITS_FILE), row(4) + &row(9)).unwrap();
    let ds = load_named("digits").unwrap();
    assert_eq!(ds.labels, Some(vec![4, 9]));
    assert_eq!(ds.x[[0, 16]], 16.0 / 16.0);

    std::env::remove_var("CURVATURE_DATA_DIR");
    assert_eq!(data_dir(), default_dir);
}
