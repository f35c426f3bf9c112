//! Outputs checked before the work (issue 21, problem 8): `train` whose output
//! folder takes no new file fails before its first epoch; `prune --out`,
//! `hessian --plot` and `compute --out` fail before they print or compute
//! anything. The unwritable folder is a read-only directory, or `/proc` where
//! the tests run as root (which a directory's mode does not stop).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

/// A folder that exists but takes no new file.
fn unwritable_folder(base: &Path) -> PathBuf {
    let ro = base.join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if tempfile::NamedTempFile::new_in(&ro).is_err() {
        return ro;
    }
    let proc = PathBuf::from("/proc");
    assert!(
        tempfile::NamedTempFile::new_in(&proc).is_err(),
        "no unwritable folder to test with"
    );
    proc
}

fn curvature(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Exit 1, one error line naming `path`.
fn refused(what: &str, out: &Output, path: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{what}: {err}");
    assert!(lines[0].contains(path), "{what}: `{path}` missing: {err}");
}

#[test]
fn unwritable_outputs_are_refused_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ro = unwritable_folder(d);
    let in_ro = |name: &str| ro.join(name).display().to_string();

    let model = in_ro("model.safetensors");
    let out = curvature(
        &[
            "train",
            "--data",
            "digits",
            "--optimizer",
            "momentum",
            "--epochs",
            "50",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            &model,
        ],
        d,
    );
    // The first output probed names the folder (the checkpoint's, beside the model).
    refused("train", &out, &ro.display().to_string());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.lines().any(|l| l.starts_with("epoch")),
        "train ran epochs before failing: {stdout}"
    );

    crate::cli::digits_model(d);
    let base = [
        "--model",
        "model.safetensors",
        "--data",
        "digits",
        "--device",
        "cpu",
    ];
    let pruned = in_ro("pruned.safetensors");
    let mut args = vec![
        "prune",
        "--method",
        "obd",
        "--fraction",
        "0.5",
        "--out",
        &pruned,
    ];
    args.extend(base);
    let out = curvature(&args, d);
    refused("prune", &out, &pruned);
    assert!(out.stdout.is_empty(), "prune worked before failing");

    let picture = in_ro("density.png");
    let mut args = vec!["hessian", "--plot", &picture, "--no-layers"];
    args.extend(base);
    let out = curvature(&args, d);
    refused("hessian", &out, &picture);
    assert!(out.stdout.is_empty(), "hessian worked before failing");

    let g = in_ro("g.safetensors");
    let mut args = vec!["compute", "grad", "--out", &g];
    args.extend(base);
    let out = curvature(&args, d);
    refused("compute", &out, &g);
    assert!(out.stdout.is_empty(), "compute worked before failing");
}
