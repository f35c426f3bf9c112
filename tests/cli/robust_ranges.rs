//! Option ranges checked before any work (issue 21, problem 6): each bad value
//! is a one-line refusal naming the option, given with `--data missing.csv`
//! (or `--model missing.safetensors`) so that a check made after the data is
//! read would say "not found" instead — and `--set momentum=2`, which trained
//! to E ≈ 1e307 and exited 0, is refused at parse time.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

#[test]
fn out_of_range_options_are_refused_before_the_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let train = |extra: &[&str]| {
        let mut v = vec!["train", "--data", "missing.csv", "--device", "cpu"];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let analysis = |cmd: &str, extra: &[&str]| {
        let mut v = vec![cmd, "--model", "missing.safetensors", "--data", "digits"];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            train(&["--optimizer", "momentum", "--set", "momentum=2"]),
            "momentum",
        ),
        (train(&["--set", "momentum=2"]), "momentum"),
        (
            train(&["--optimizer", "momentum", "--set", "momentum=-1"]),
            "[0, 1)",
        ),
        (
            train(&["--optimizer", "rmsprop", "--set", "momentum=1"]),
            "[0, 1)",
        ),
        (train(&["--optimizer", "gd", "--set", "lr=inf"]), "finite"),
        (train(&["--optimizer", "gd", "--set", "lr=NaN"]), "finite"),
        (train(&["--optimizer", "gd", "--set", "lr=0"]), "positive"),
        (
            train(&["--optimizer", "gd", "--set", "lr=0.1,lr=0.2"]),
            "given twice",
        ),
        (
            train(&["--validation-fraction=-1"]),
            "--validation-fraction",
        ),
        (train(&["--test-fraction", "1.5"]), "--test-fraction"),
        (train(&["--test-fraction", "NaN"]), "--test-fraction"),
        (train(&["--hidden", ""]), "--hidden"),
        (train(&["--patience", "0"]), "--patience"),
        (train(&["--evidence-every", "0"]), "--evidence-every"),
        (analysis("hessian", &["--steps", "0"]), "--steps"),
        (analysis("hessian", &["--probes", "0"]), "--probes"),
        (
            analysis("hessian", &["--inverse-check", "0"]),
            "--inverse-check",
        ),
        (analysis("laplace", &["--samples", "0"]), "--samples"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{args:?}: must be refused: {err}"
        );
        let line = err
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_else(|| panic!("{args:?}: no error line: {err}"));
        assert!(line.contains(needle), "{args:?}: `{needle}` missing: {err}");
        assert!(
            !err.contains("not found"),
            "{args:?}: checked after the data: {err}"
        );
    }
}

/// `--epochs 0` is "evaluate only" (benches/peers/ writes θ₀ for PyTorch with it):
/// accepted, said so, and the model written is the initial θ₀ of its seed.
#[test]
fn zero_epochs_evaluates_only_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "train",
            "--device",
            "cpu",
            "--epochs",
            "0",
            "--seed",
            "3",
            "--quiet",
            "--out",
            "m.safetensors",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("--epochs 0 evaluates only") && text.contains("init seed 3"),
        "{text}"
    );
    assert!(text.contains("0 updates"), "{text}");
    assert!(dir.path().join("m.safetensors").exists());
}
