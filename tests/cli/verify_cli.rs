//! `train --verify` through the binary on the GPU (llvmpipe in CI): a device that
//! computes wrong values after update 7 (`CURVATURE_TEST_CORRUPT_AFTER_UPDATES=8`) is
//! stopped at update 8 with `--verify every`, with one line and the last verified
//! weights kept, and goes unseen with `--verify off`; the summary and `history.json`
//! count the checks by kind. And `parity` keeps the rows it measured when later ones
//! fail (a device lost part-way).

use crate::gpu_support;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("the curvature binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// K-FAC on digits (batches of 128: 11 updates per epoch), 2 epochs, on the GPU.
const TRAIN: [&str; 8] = [
    "train",
    "--device",
    "gpu",
    "--quiet",
    "--epochs",
    "2",
    "--run-dir",
    "run",
];
const FAULT: (&str, &str) = ("CURVATURE_TEST_CORRUPT_AFTER_UPDATES", "8");

#[test]
fn verify_every_stops_a_fault_after_update_7_at_update_8_and_off_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[&TRAIN[..], &["--verify", "every"]].concat(),
        &[FAULT],
        dir.path(),
    );
    if gpu_support::child_found_no_gpu(&out) {
        return;
    }
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "the fault went unseen: {}",
        text(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("error") && !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    let line = lines[0];
    println!("{line}");
    for what in [
        "update 8: gpu: ",
        "disagrees with the CPU reference on the ",
        "worst at index",
        ", reference ",
        "the last update verified was 7",
        "last-verified.safetensors",
        "--device cpu",
    ] {
        assert!(line.contains(what), "no `{what}` in: {line}");
    }
    assert!(dir.path().join("run/last-verified.safetensors").exists());
    assert!(!dir.path().join("run/model.safetensors").exists());

    let out = run(
        &[&TRAIN[..], &["--verify", "off", "--force"]].concat(),
        &[FAULT],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("verification off"), "{stdout}");
    assert!(dir.path().join("run/model.safetensors").exists());
}

/// `--verify every` without a fault: every update's loss and gradient, K-FAC factors
/// and Gv are checked in full, and the summary and `history.json` say so.
#[test]
fn verify_every_counts_every_result_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[&TRAIN[..], &["--verify", "every"]].concat(),
        &[],
        dir.path(),
    );
    if gpu_support::child_found_no_gpu(&out) {
        return;
    }
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let history: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/history.json")).unwrap(),
    )
    .unwrap();
    let steps = history["updates"].as_u64().unwrap() + history["rejected"].as_u64().unwrap();
    assert_eq!(steps, 22, "1294 rows in batches of 128, 2 epochs");
    let v = &history["verification"];
    assert_eq!(v["mode"], "every result", "{v}");
    assert!(v["share"].as_f64().unwrap() > 0.0, "{v}");
    let kinds = v["kinds"].as_array().unwrap();
    let kind = |q: &str| {
        kinds
            .iter()
            .find(|k| k["quantity"] == q)
            .unwrap_or_else(|| panic!("{q} not in {v}"))
    };
    for q in ["gradient", "K-FAC factors", "Gv"] {
        assert_eq!(kind(q)["full"].as_u64(), Some(steps), "{q}: {v}");
        assert_eq!(kind(q)["sliced"].as_u64(), Some(0), "{q}: {v}");
    }
    // Each update's loss (with its gradient) and its trial point's, and the evaluations'.
    assert!(kind("loss")["full"].as_u64().unwrap() >= 2 * steps, "{v}");
    let total: u64 = kinds
        .iter()
        .map(|k| k["full"].as_u64().unwrap() + k["sliced"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(total), v["checks"].as_u64(), "{v}");
    // The printed summary has a line per kind.
    for q in ["gradient", "K-FAC factors", "Gv", "loss"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(q) && l.contains(" full ")),
            "{q}: {stdout}"
        );
    }
}

/// A device lost after its first operations: `parity` prints the rows measured before,
/// then a FAIL row for every operation after, and exits 1.
#[test]
fn parity_keeps_the_rows_measured_before_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["parity"],
        &[("CURVATURE_TEST_LOSE_DEVICE_AFTER_OPS", "2")],
        dir.path(),
    );
    if gpu_support::child_found_no_gpu(&out) {
        return;
    }
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let row = |op: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(op))
            .unwrap_or_else(|| panic!("no row {op}: {stdout}"))
    };
    assert!(row("loss").ends_with("pass"), "{stdout}");
    assert!(row("gradient").ends_with("pass"), "{stdout}");
    assert!(row("Hv").contains("FAIL"), "{stdout}");
    assert!(row("per-sample gradients").contains("FAIL"), "{stdout}");
    assert!(stdout.contains("was lost"), "{stdout}");
    assert!(stdout.contains("SOME OPERATIONS DISAGREE"), "{stdout}");
}
