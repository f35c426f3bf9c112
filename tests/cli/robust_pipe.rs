//! A closed standard output (issue 21, problem 4): `eval … | head -1` exits 0
//! quietly, and `train` whose stdout reader went away still trains and saves
//! its model, instead of panicking with "failed printing to stdout" (exit 101).

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

/// Runs the binary in `dir` with its stdout a pipe whose reading end is closed
/// at once: every line it prints meets BrokenPipe.
fn with_closed_stdout(args: &[&str], dir: &Path) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

fn quiet_success(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains("Broken pipe"), "{what}: {err}");
}

#[test]
fn a_closed_stdout_ends_printing_not_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::cli::digits_model(d);
    let eval = [
        "eval",
        "--model",
        "model.safetensors",
        "--data",
        "digits",
        "--device",
        "cpu",
    ];
    quiet_success("eval, stdout closed", &with_closed_stdout(&eval, d));
    // The shell's way: head reads one line and exits; with pipefail the
    // pipeline's status is eval's.
    let line = format!("set -o pipefail; '{BIN}' {} | head -1", eval.join(" "));
    let out = Command::new("bash")
        .args(["-c", &line])
        .current_dir(d)
        .output()
        .unwrap();
    quiet_success("eval | head -1", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // Training goes on and writes its files.
    let out = with_closed_stdout(
        &[
            "train",
            "--data",
            "xor",
            "--hidden",
            "3",
            "--optimizer",
            "bfgs",
            "--epochs",
            "5",
            "--device",
            "cpu",
            "--run-dir",
            "run",
        ],
        d,
    );
    quiet_success("train, stdout closed", &out);
    for f in ["model.safetensors", "history.json", "curves.png"] {
        assert!(d.join("run").join(f).is_file(), "{f} was not written");
    }
}
