//! The generic CSV reader and the prediction-inputs reader on arbitrary bytes, with the
//! options fuzzed too.
//!
//! Input layout: byte 0 picks the options (bits 0–1 header auto/yes/no, bit 2 the task,
//! bits 3–4 the scaling, bits 5–6 the target: last, an index, a name); byte 1 is the target
//! index, or for a name its length L, the name being the next L bytes; the rest is the file.
//! Any result is fine except a panic, an allocation over libFuzzer's limit or a hang; an Ok
//! data set must be consistent and finite, and reading its own file back as prediction
//! inputs with its own scaling must work or fail cleanly.
#![no_main]

use curvature::data::{
    load_csv_from_bytes, load_inputs_csv_from_bytes, CsvOptions, CsvTask, ScalingKind,
    TargetColumn, Task,
};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// The options encoded in the first bytes, and the file that follows them.
fn options(input: &[u8]) -> Option<(CsvOptions, &[u8])> {
    let (&flags, rest) = input.split_first()?;
    let (&arg, mut rest) = rest.split_first()?;
    let has_header = [None, Some(true), Some(false), None][usize::from(flags & 0b11)];
    let task = if flags & 0b100 == 0 {
        CsvTask::Classification
    } else {
        CsvTask::Regression
    };
    let scaling = [
        ScalingKind::Standardize,
        ScalingKind::MinMax,
        ScalingKind::None,
        ScalingKind::Fixed,
    ][usize::from((flags >> 3) & 0b11)];
    let target = match (flags >> 5) & 0b11 {
        0 | 3 => TargetColumn::Last,
        1 => TargetColumn::Index(usize::from(arg)),
        _ => {
            let len = usize::from(arg).min(rest.len());
            let (name, file) = rest.split_at(len);
            rest = file;
            TargetColumn::Name(String::from_utf8_lossy(name).into_owned())
        }
    };
    let opts = CsvOptions {
        has_header,
        target,
        task,
        scaling,
    };
    Some((opts, rest))
}

fuzz_target!(|input: &[u8]| {
    let Some((opts, file)) = options(input) else {
        return;
    };
    let path = Path::new("data.csv");
    let ds = match load_csv_from_bytes(file, path, &opts) {
        Ok(ds) => ds,
        Err(_) => {
            // The prediction reader on the same bytes, without scaling, width from the options.
            let width = usize::from(input[1] % 8) + 1;
            let _ = load_inputs_csv_from_bytes(file, path, opts.has_header, None, width);
            return;
        }
    };
    let (n, d) = ds.x.dim();
    assert!(n > 0 && d > 0);
    assert_eq!(ds.t.nrows(), n);
    assert!(
        ds.x.iter().all(|v| v.is_finite()),
        "non-finite scaled input"
    );
    assert!(ds.t.iter().all(|v| v.is_finite()), "non-finite target");
    match ds.task {
        Task::Classification { classes } => {
            assert!(classes >= 2);
            assert_eq!(ds.t.ncols(), classes);
        }
        Task::Regression => assert_eq!(ds.t.ncols(), 1),
    }
    let scaling = ds
        .scaling
        .as_ref()
        .expect("a CSV data set keeps its scaling");
    assert_eq!(scaling.width(), d);
    // The file again, as prediction inputs: its width includes the target column, so this
    // must be a clean WidthMismatch (or a cell error), never a panic.
    let _ = load_inputs_csv_from_bytes(file, path, opts.has_header, Some(scaling), d);
});
