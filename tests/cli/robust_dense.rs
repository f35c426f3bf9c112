//! Dense W×W work estimated before it is allocated (issue 21, problem 5): at
//! W = 159 010 (784-200-10 on mnist10k) `compute hessian`, `compute
//! outer-product`, `hessian --inverse-check` and a dense cross-check asked for
//! with a large --dense-max each fail at once with one line naming the
//! quantity, W, the bytes and what to use instead — exit 1, not an abort (134)
//! after minutes of Lanczos; and `train --hidden 100000000` is refused before
//! its parameters are allocated.

use curvature::files::{save_model, Overwrite};
use curvature::{Activation, Loss, Mlp};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

/// Runs the binary in `dir` and checks a quick one-line refusal holding every needle.
fn refused(dir: &Path, args: &[&str], needles: &[&str]) {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{args:?}: {took:?}: {err}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one error line: {err}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "{args:?}: `{n}` missing: {}",
            lines[0]
        );
    }
    assert!(took < Duration::from_secs(60), "{args:?}: took {took:?}");
}

#[test]
fn dense_matrices_too_large_for_memory_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mlp = Mlp::with_hidden(&[784, 200, 10], Activation::Relu, Loss::Ce, 1e-4).unwrap();
    assert_eq!(mlp.num_params(), 159_010);
    save_model(
        &d.join("m.safetensors"),
        &mlp,
        &mlp.init_params(0),
        &HashMap::new(),
        Overwrite::Refuse,
    )
    .unwrap();
    let common = [
        "--model",
        "m.safetensors",
        "--data",
        "mnist10k",
        "--device",
        "cpu",
    ];
    // 159010² f64 = 202 273 440 800 bytes.
    for q in ["hessian", "outer-product"] {
        let mut args = vec!["compute", q, "--out", "out.safetensors"];
        args.extend(common);
        refused(d, &args, &[q, "W = 159010", "202273440800 bytes", "hvp"]);
    }
    let mut args = vec!["hessian", "--inverse-check", "10"];
    args.extend(common);
    refused(
        d,
        &args,
        &["--inverse-check", "W = 159010", "bytes", "— use "],
    );
    let mut args = vec!["hessian", "--dense-max", "1000000"];
    args.extend(common);
    refused(d, &args, &["dense", "W = 159010", "bytes", "--dense-max"]);
    assert!(!d.join("out.safetensors").exists());
    refused(
        d,
        &["train", "--hidden", "100000000", "--device", "cpu"],
        &["W = 7500000010", "bytes", "--hidden"],
    );
}
