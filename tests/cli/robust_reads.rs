//! Bounded reads through the binary (issue 21, problem 3): `/dev/zero` as the
//! data, the model or `predict --input`, and a gzip bomb as the data, each a
//! one-line error within seconds, not a process growing until memory runs out.
//! Under `/usr/bin/time -v` (where it exists) the bomb's refusal is also held
//! to a peak resident size far below the 1.25 GiB it would inflate to.

use curvature::files::{save_model, Overwrite, DEFAULT_MAX_INPUT_BYTES};
use curvature::{Activation, Loss, Mlp};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

/// Runs the binary in `dir`; (output, seconds taken).
fn curvature(args: &[&str], dir: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// A one-line error naming `needle`, exit code 1, in under 30 s.
fn refused(what: &str, (out, took): (Output, Duration), needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{what}: {took:?}: {err}");
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{what}: one error line: {err}");
    assert!(
        lines[0].contains(needle),
        "{what}: `{needle}` missing: {err}"
    );
    assert!(took < Duration::from_secs(30), "{what}: took {took:?}");
}

/// A gzip of a CSV header and then zeros, `total` bytes inflated, streamed
/// through the encoder a MiB at a time.
fn zero_bomb(path: &Path, total: u64) {
    let file = std::fs::File::create(path).unwrap();
    let mut e = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    e.write_all(b"a,b,label\n").unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = total - 10;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        e.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    e.finish().unwrap().flush().unwrap();
}

#[test]
fn devices_and_gzip_bombs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mlp = Mlp::with_hidden(&[2, 3, 2], Activation::Tanh, Loss::Ce, 0.0).unwrap();
    let model = d.join("m.safetensors");
    save_model(
        &model,
        &mlp,
        &mlp.init_params(1),
        &HashMap::new(),
        Overwrite::Refuse,
    )
    .unwrap();
    let m = model.display().to_string();
    let cap = "CURVATURE_MAX_INPUT_BYTES";
    refused(
        "train --data /dev/zero",
        curvature(&["train", "--data", "/dev/zero", "--device", "cpu"], d),
        cap,
    );
    refused(
        "eval --model /dev/zero",
        curvature(
            &[
                "eval",
                "--model",
                "/dev/zero",
                "--data",
                "xor",
                "--device",
                "cpu",
            ],
            d,
        ),
        cap,
    );
    refused(
        "predict --input /dev/zero",
        curvature(&["predict", "--model", &m, "--input", "/dev/zero"], d),
        cap,
    );
    let bomb = d.join("bomb.csv.gz");
    zero_bomb(&bomb, DEFAULT_MAX_INPUT_BYTES + DEFAULT_MAX_INPUT_BYTES / 4);
    refused(
        "train --data bomb.csv.gz",
        curvature(&["train", "--data", "bomb.csv.gz", "--device", "cpu"], d),
        "bomb.csv.gz",
    );
    // Peak memory of the refusal: the compressed file and the decoder's window, not the
    // inflated gigabyte.
    if Path::new("/usr/bin/time").exists() {
        let out = Command::new("/usr/bin/time")
            .args([
                "-v",
                BIN,
                "train",
                "--data",
                "bomb.csv.gz",
                "--device",
                "cpu",
            ])
            .current_dir(d)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let peak_kb: u64 = err
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak in: {err}"));
        eprintln!("peak resident size refusing the bomb: {peak_kb} kB");
        assert!(peak_kb < 200 * 1024, "peak {peak_kb} kB: {err}");
    } else {
        eprintln!("no /usr/bin/time: the bomb's peak memory is not measured here");
    }
}
