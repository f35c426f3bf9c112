//! The digits CSV reader (64 pixel counts 0..16 then a label 0..9 per line; gzip or plain)
//! on arbitrary bytes. Any result is fine except a panic, an allocation over libFuzzer's
//! limit or a hang; an Ok data set must hold what the format promises.
#![no_main]

use curvature::data::{load_digits_csv_from_bytes, DIGITS_CLASSES, DIGITS_PIXELS};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|input: &[u8]| {
    let Ok(ds) = load_digits_csv_from_bytes(input, Path::new("digits.csv")) else {
        return;
    };
    let n = ds.len();
    assert!(n > 0);
    assert_eq!(ds.x.ncols(), DIGITS_PIXELS);
    assert_eq!(ds.t.dim(), (n, DIGITS_CLASSES));
    assert!(ds.x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(ds
        .labels
        .as_ref()
        .is_some_and(|l| l.len() == n && l.iter().all(|&c| c < DIGITS_CLASSES)));
});
