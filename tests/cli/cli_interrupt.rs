//! `curvature train` interrupted by a real SIGINT or SIGTERM (sent with
//! `kill` to the child process after it printed its first epoch line) writes
//! its checkpoint, prints the resume command and exits 130 or 143 without a
//! model; running that command finishes the run with exactly the model (f32
//! tensors compared bit for bit) and history (all but seconds) of the same run
//! left alone. A `--resume` file that is not a checkpoint is a one-line error
//! that changes nothing.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

/// The run: digits, 64-50-10, momentum in batches of 32 on the CPU device.
/// 200 epochs (about a second and a half on 2 cores) so that the signal, sent
/// after the first epoch line, arrives long before the end.
const RUN: [&str; 10] = [
    "train",
    "--device",
    "cpu",
    "--optimizer",
    "momentum",
    "--epochs",
    "200",
    "--quiet",
    "--checkpoint-every",
    "25",
];

fn curvature(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The model file's tensors as raw f32 bits, by name.
fn model_bits(path: &Path) -> HashMap<String, Vec<u32>> {
    let (tensors, _) = curvature::files::read_tensors(path).unwrap();
    tensors
        .into_iter()
        .map(|t| {
            let bits = t.data.iter().map(|&v| (v as f32).to_bits()).collect();
            (t.name, bits)
        })
        .collect()
}

/// history.json with every record's wall-clock seconds and the verification summary removed.
fn history_without_seconds(path: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for r in v["epochs"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("seconds");
    }
    // On a GPU: what this process verified, by the budget's clock (each process of a
    // resumed run checks its own first update), timed like `seconds`.
    v.as_object_mut().unwrap().remove("verification");
    v
}

/// The uninterrupted run (periodic checkpoints off, so that pausing for them
/// is also shown not to change the result) into `dir/reference`.
fn reference(dir: &Path) -> std::path::PathBuf {
    let run_dir = dir.join("reference");
    let mut args = RUN.to_vec();
    args[9] = "0";
    let run_dir_text = run_dir.display().to_string();
    args.extend(["--run-dir", &run_dir_text]);
    let out = curvature(&args, dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !run_dir.join("checkpoint.safetensors").exists(),
        "a finished run leaves no checkpoint"
    );
    run_dir
}

/// Starts the run in `dir/name`, sends `signal` after the first epoch line,
/// and returns (exit code, stderr).
fn interrupted(dir: &Path, name: &str, signal: &str) -> (Option<i32>, String) {
    let run_dir = dir.join(name).display().to_string();
    let mut child = Command::new(BIN)
        .args(RUN)
        .args(["--run-dir", &run_dir])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first_epoch = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("epoch"));
    assert!(first_epoch.is_some(), "the child printed no epoch line");
    let kill = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(
        !rest.iter().any(|l| l.starts_with("model ")),
        "the run finished before the signal arrived (make it longer): {rest:?}"
    );
    (out.status.code(), stderr)
}

/// Checks the interrupted run's state and message, runs the printed resume
/// command, and compares the outputs with the reference run's.
fn resume_and_compare(
    dir: &Path,
    name: &str,
    code: Option<i32>,
    stderr: &str,
    expected: i32,
    reference: &Path,
) {
    assert_eq!(code, Some(expected), "exit code; stderr: {stderr}");
    let run_dir = dir.join(name);
    let checkpoint = run_dir.join("checkpoint.safetensors");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("interrupted "))
        .unwrap_or_else(|| panic!("no interruption line in: {stderr}"));
    assert!(
        line.contains(&format!("checkpoint written to {}", checkpoint.display())),
        "{line}"
    );
    let command = line
        .split("resume with: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in: {line}"));
    assert!(
        checkpoint.exists(),
        "no checkpoint at {}",
        checkpoint.display()
    );
    assert!(
        !run_dir.join("model.safetensors").exists(),
        "a model of partial training was written"
    );
    assert!(!run_dir.join("history.json").exists());
    println!("{name}: {line}");

    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(&words[..3], ["curvature", "train", "--resume"], "{command}");
    let out = curvature(&words[1..], dir);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("resuming from"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        model_bits(&run_dir.join("model.safetensors")),
        model_bits(&reference.join("model.safetensors")),
        "{name}: the resumed model differs from the uninterrupted one"
    );
    assert_eq!(
        history_without_seconds(&run_dir.join("history.json")),
        history_without_seconds(&reference.join("history.json")),
        "{name}: histories differ"
    );
    assert!(run_dir.join("curves.png").exists());
    assert!(
        !checkpoint.exists(),
        "the finished run's checkpoint was left behind"
    );
}

#[test]
fn sigint_and_sigterm_checkpoint_and_resume_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference(dir.path());
    let (code, stderr) = interrupted(dir.path(), "int", "-INT");
    resume_and_compare(dir.path(), "int", code, &stderr, 130, &reference);
    let (code, stderr) = interrupted(dir.path(), "term", "-TERM");
    resume_and_compare(dir.path(), "term", code, &stderr, 143, &reference);
}

#[test]
fn the_test_hook_interrupts_at_a_fixed_update() {
    // Interrupt after 5 updates of a full-batch run (Hessian-free: after epoch 5), resume twice.
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "train",
        "--optimizer",
        "hessian-free",
        "--device",
        "cpu",
        "--epochs",
        "12",
        "--quiet",
    ];
    let run = |name: &str, extra: &[&str], hook: Option<&str>| {
        let run_dir = dir.path().join(name).display().to_string();
        let mut cmd = Command::new(BIN);
        cmd.args(base)
            .args(["--run-dir", &run_dir])
            .args(extra)
            .current_dir(dir.path());
        if let Some(k) = hook {
            cmd.env("CURVATURE_TEST_INTERRUPT_AFTER", k);
        }
        cmd.output().unwrap()
    };
    let reference = run("reference", &[], None);
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    let out = run("hooked", &[], Some("5"));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted after epoch 5"),
        "{}",
        text(&out.stderr)
    );
    let checkpoint = dir.path().join("hooked/checkpoint.safetensors");
    // Resume, interrupted again after 3 more updates.
    let ck = checkpoint.display().to_string();
    let mut again = Command::new(BIN);
    again
        .args(["train", "--resume", &ck, "--quiet"])
        .env("CURVATURE_TEST_INTERRUPT_AFTER", "3")
        .current_dir(dir.path());
    let out = again.output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted after epoch 8"),
        "{}",
        text(&out.stderr)
    );
    let out = curvature(&["train", "--resume", &ck], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        model_bits(&dir.path().join("hooked/model.safetensors")),
        model_bits(&dir.path().join("reference/model.safetensors"))
    );
    assert_eq!(
        history_without_seconds(&dir.path().join("hooked/history.json")),
        history_without_seconds(&dir.path().join("reference/history.json"))
    );
}

#[test]
fn resume_refuses_files_that_are_not_checkpoints_and_run_changing_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let garbage = d.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let g = garbage.display().to_string();
    let out = curvature(&["train", "--resume", &g], d);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("garbage.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    assert_eq!(std::fs::read(&garbage).unwrap(), b"not a checkpoint at all");

    // A model file: train a tiny one first.
    let model = d.join("m.safetensors");
    let m = model.display().to_string();
    let out = curvature(
        &[
            "train",
            "--data",
            "xor",
            "--hidden",
            "2",
            "--epochs",
            "2",
            "--device",
            "cpu",
            "--quiet",
            "--test-fraction",
            "0",
            "--validation-fraction",
            "0",
            "--out",
            &m,
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = std::fs::read(&model).unwrap();
    let out = curvature(&["train", "--resume", &m], d);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("model file, not a checkpoint"), "{err}");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        before,
        "the model file was changed"
    );

    // Arguments that would change the run are refused by name.
    let out = curvature(&["train", "--resume", &g, "--optimizer", "bfgs"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--optimizer"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_run_that_fails_keeps_its_last_checkpoint_and_names_it() {
    // Interrupted inside epoch 1 (momentum, batches of 32), then resumed with
    // too few epochs: the scheduler refuses, and the error names the kept
    // checkpoint and the command that resumes it.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let rd = run_dir.display().to_string();
    let out = Command::new(BIN)
        .args([
            "train",
            "--device",
            "cpu",
            "--optimizer",
            "momentum",
            "--epochs",
            "3",
            "--quiet",
        ])
        .args(["--run-dir", &rd])
        .env("CURVATURE_TEST_INTERRUPT_AFTER", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted at epoch 1, update 3"),
        "{}",
        text(&out.stderr)
    );
    let checkpoint = run_dir.join("checkpoint.safetensors");
    let ck = checkpoint.display().to_string();
    let before = std::fs::read(&checkpoint).unwrap();
    let out = curvature(&["train", "--resume", &ck, "--epochs", "0"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("inside epoch 1"), "{err}");
    assert!(err.contains(&format!("is kept at {ck}")), "{err}");
    assert!(
        err.contains(&format!("resume with: curvature train --resume {ck}")),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        before,
        "the checkpoint changed"
    );
    assert!(!run_dir.join("model.safetensors").exists());
}

/// The device path through the binary (momentum on the GPU: θ and the velocity on
/// the device, update 0 verified against the CPU reference): interrupted by the
/// test hook inside epoch 2, then inside epoch 3 of the resumed run, and resumed
/// again, it ends with the model (bit for bit) and history of the run left alone;
/// each process checks its own first update and says so.
#[test]
fn the_device_path_resumes_to_the_same_model_on_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "train",
        "--device",
        "gpu",
        "--optimizer",
        "momentum",
        "--epochs",
        "4",
        "--quiet",
    ];
    let run = |name: &str, hook: Option<&str>| {
        let run_dir = dir.path().join(name).display().to_string();
        let mut cmd = Command::new(BIN);
        cmd.args(base)
            .args(["--run-dir", &run_dir])
            .current_dir(dir.path());
        if let Some(k) = hook {
            cmd.env("CURVATURE_TEST_INTERRUPT_AFTER", k);
        }
        cmd.output().unwrap()
    };
    let reference = run("reference", None);
    if crate::gpu_support::child_found_no_gpu(&reference) {
        return;
    }
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    let verified = |out: &Output| text(&out.stdout).contains("verified against the CPU reference");
    assert!(verified(&reference), "{}", text(&reference.stdout));
    // 1294 training rows in batches of 32: 41 updates per epoch.
    let out = run("hooked", Some("50"));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("at epoch 2, update 9"),
        "{}",
        text(&out.stderr)
    );
    let ck = dir.path().join("hooked/checkpoint.safetensors");
    let ck = ck.display().to_string();
    let out = Command::new(BIN)
        .args(["train", "--resume", &ck, "--quiet"])
        .env("CURVATURE_TEST_INTERRUPT_AFTER", "40")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("at epoch 3, update 8"),
        "{}",
        text(&out.stderr)
    );
    let out = curvature(&["train", "--resume", &ck, "--quiet"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(verified(&out), "{}", text(&out.stdout));
    assert_eq!(
        model_bits(&dir.path().join("hooked/model.safetensors")),
        model_bits(&dir.path().join("reference/model.safetensors"))
    );
    assert_eq!(
        history_without_seconds(&dir.path().join("hooked/history.json")),
        history_without_seconds(&dir.path().join("reference/history.json"))
    );
}
