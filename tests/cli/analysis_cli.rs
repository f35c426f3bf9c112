//! The analysis commands end to end on a small digits network (64-4-10,
//! W = 310, seeded initial weights): they run on the CPU, print their tables
//! and pictures, and refuse bad arguments with a one-line error.

use curvature::files::{save_model, Overwrite};
use curvature::{Activation, Loss, Mlp};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn curvature(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_curvature"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the curvature binary runs")
}

fn stdout_of(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn small_model(dir: &Path) {
    let mlp = Mlp::new(
        &[64, 4, 10],
        &[Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        1e-3,
    )
    .unwrap();
    let theta = mlp.init_params(3);
    save_model(
        &dir.join("m.safetensors"),
        &mlp,
        &theta,
        &HashMap::new(),
        Overwrite::Refuse,
    )
    .unwrap();
}

#[test]
fn hessian_prune_and_laplace_run_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    small_model(dir.path());
    let common = [
        "--model",
        "m.safetensors",
        "--data",
        "digits",
        "--device",
        "cpu",
    ];
    let mut args: Vec<&str> = vec!["hessian"];
    args.extend(common);
    args.extend([
        "--top",
        "2",
        "--bottom",
        "2",
        "--steps",
        "40",
        "--trace-samples",
        "12",
        "--probes",
        "2",
        "--density-steps",
        "10",
        "--plot",
        "d.png",
    ]);
    let out = stdout_of(&curvature(&args, dir.path()));
    for needle in [
        "largest",
        "smallest",
        "Hutch++",
        "condition",
        "block of layer 1",
        "trace     exact",
    ] {
        assert!(out.contains(needle), "no `{needle}` in\n{out}");
    }
    assert!(dir.path().join("d.png").is_file());

    let mut args: Vec<&str> = vec!["prune"];
    args.extend(common);
    args.extend([
        "--method",
        "obs",
        "--fraction",
        "0.5",
        "--out",
        "p.safetensors",
    ]);
    let out = stdout_of(&curvature(&args, dir.path()));
    assert!(out.contains("OBS") && out.contains("magnitude"), "{out}");
    let pruned = curvature::files::load_model(&dir.path().join("p.safetensors")).unwrap();
    // ⌊50%⌋ of the 64·4 + 4·10 = 296 weights are exactly 0.
    let weights = curvature::analysis::pruning::weight_indices(&pruned.mlp);
    let zeros = weights.iter().filter(|&&q| pruned.theta[q] == 0.0).count();
    assert_eq!(weights.len(), 296);
    assert!(zeros >= 148, "{zeros} zero weights");

    let mut args: Vec<&str> = vec!["laplace"];
    args.extend(common);
    args.extend(["--samples", "5"]);
    let out = stdout_of(&curvature(&args, dir.path()));
    for needle in ["MacKay", "MAP", "probit", "ECE"] {
        assert!(out.contains(needle), "no `{needle}` in\n{out}");
    }
}

#[test]
fn prune_refuses_a_fraction_outside_zero_one() {
    let dir = tempfile::tempdir().unwrap();
    small_model(dir.path());
    let o = curvature(
        &[
            "prune",
            "--model",
            "m.safetensors",
            "--data",
            "digits",
            "--device",
            "cpu",
            "--method",
            "obd",
            "--fraction",
            "1.5",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error:") && err.contains("fraction") && err.lines().count() == 1,
        "{err}"
    );
}
