//! The IDX images + labels reader (raw or gzip) on arbitrary bytes.
//!
//! Input layout: the first two bytes (little-endian u16) say how many of the remaining bytes
//! are the images file; the rest is the labels file. Any result is fine except a panic, an
//! allocation over libFuzzer's limit or a hang; an Ok data set must be self-consistent.
#![no_main]

use curvature::data::{load_idx_from_bytes, Task, IDX_CLASSES};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|input: &[u8]| {
    let Some((head, rest)) = input.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (images, labels) = rest.split_at(split);
    let Ok(ds) = load_idx_from_bytes(
        images,
        Path::new("images.idx"),
        labels,
        Path::new("labels.idx"),
    ) else {
        return;
    };
    let n = ds.len();
    assert!(n > 0);
    assert_eq!(ds.t.dim(), (n, IDX_CLASSES));
    assert_eq!(
        ds.task,
        Task::Classification {
            classes: IDX_CLASSES
        }
    );
    assert!(ds.x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(ds.labels.as_ref().map(Vec::len), Some(n));
});
