//! End to end: every command of the `curvature` binary on small data, and each
//! bad input gets a one-line error, a non-zero exit, and nothing overwritten.

use crate::gpu_support;
use curvature::engine::device::Device;
use curvature::engine::Curvature;
use curvature::files::{
    load_model, read_tensors, save_model, write_tensors, NamedTensor, Overwrite,
};
use curvature::{data, Activation, Loss, Mlp};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn curvature(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_curvature"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the curvature binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a failure with a one-line `error:` message containing each of `needles`.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let (out, err) = text(o);
    assert!(
        !o.status.success(),
        "expected failure; stdout: {out}\nstderr: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "one error line expected, stderr: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "error line lacks `{n}`: {}", lines[0]);
    }
}

/// Writes tensor `v` (W) for `compute hvp|gvp --vectors`.
fn write_vector(path: &Path, v: Vec<f64>) {
    let tensor = NamedTensor {
        name: "v".into(),
        shape: vec![v.len()],
        data: v,
    };
    write_tensors(path, &[tensor], HashMap::new(), false, Overwrite::Refuse).unwrap();
}

/// A 64-7-10 digits model with seeded weights, saved in `dir` as `model.safetensors`
/// (the CLI tests' common fixture).
pub(crate) fn digits_model(dir: &Path) -> (PathBuf, Mlp, Vec<f64>) {
    let mlp = Mlp::with_hidden(&[64, 7, 10], Activation::Tanh, Loss::Ce, 1e-3).unwrap();
    let theta = mlp.init_params(5);
    let path = dir.join("model.safetensors");
    save_model(&path, &mlp, &theta, &HashMap::new(), Overwrite::Refuse).unwrap();
    // θ as the file holds it (f32).
    let theta = load_model(&path).unwrap().theta;
    (path, mlp, theta)
}

#[test]
fn train_eval_predict_round_trip_on_xor_and_gaussians() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = curvature(
        &[
            "train",
            "--data",
            "gaussians",
            "--hidden",
            "3",
            "--optimizer",
            "bfgs",
            "--epochs",
            "15",
            "--device",
            "cpu",
            "--out",
            "g.safetensors",
            "--quiet",
        ],
        d,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "train failed: {out}\n{err}");
    assert!(out.contains("test accuracy"), "{out}");
    for f in ["g.safetensors", "g.history.json", "g.curves.png"] {
        assert!(d.join(f).exists(), "{f} missing; {out}");
    }
    let history = std::fs::read_to_string(d.join("g.history.json")).unwrap();
    assert!(
        history.starts_with('{') && history.contains("\"epochs\":["),
        "{history}"
    );

    // eval on the same split the model was trained with.
    let o = curvature(
        &[
            "eval",
            "--model",
            "g.safetensors",
            "--data",
            "gaussians",
            "--device",
            "cpu",
        ],
        d,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "eval failed: {out}\n{err}");
    assert!(
        out.contains("accuracy") && out.contains("confusion matrix"),
        "{out}"
    );

    // predict two rows.
    std::fs::write(d.join("rows.csv"), "x1,x2\n-1.5,-1.2\n1.4,1.1\n").unwrap();
    let o = curvature(
        &["predict", "--model", "g.safetensors", "--input", "rows.csv"],
        d,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "predict failed: {out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("0,0,") && lines[2].starts_with("1,1,"),
        "{out}"
    );

    // Training again onto the same file without --force is refused, the model kept.
    let before = std::fs::read(d.join("g.safetensors")).unwrap();
    let o = curvature(
        &[
            "train",
            "--data",
            "xor",
            "--hidden",
            "2",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            "g.safetensors",
        ],
        d,
    );
    assert_one_line_error(&o, &["g.safetensors", "--force"]);
    assert_eq!(std::fs::read(d.join("g.safetensors")).unwrap(), before);
}

#[test]
fn train_default_run_directory_holds_model_history_and_picture() {
    let dir = tempfile::tempdir().unwrap();
    let o = curvature(
        &[
            "train",
            "--data",
            "xor",
            "--hidden",
            "3",
            "--optimizer",
            "lm",
            "--epochs",
            "3",
            "--test-fraction",
            "0",
            "--validation-fraction",
            "0",
            "--device",
            "cpu",
            "--plot",
            "xor.svg",
        ],
        dir.path(),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    assert!(run.join("model.safetensors").exists() && run.join("history.json").exists());
    assert!(std::fs::read_to_string(dir.path().join("xor.svg"))
        .unwrap()
        .contains("<svg"));
}

#[test]
fn compute_grad_and_hvp_equal_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, mlp, theta) = digits_model(d);
    let ds = data::load_named("digits").unwrap();
    // The engine the CLI's `--device cpu` uses (the fast f64 engine).
    let mut engine = Device::FastCpuF64
        .engine(&mlp, ds.x.view(), ds.t.view())
        .unwrap();
    let rows = 0..ds.len();

    let o = curvature(
        &[
            "compute",
            "grad",
            "--model",
            "model.safetensors",
            "--data",
            "digits",
            "--device",
            "cpu",
            "--out",
            "g.safetensors",
        ],
        d,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let (t, _) = read_tensors(&d.join("g.safetensors")).unwrap();
    assert_eq!(t[0].name, "grad");
    let want = engine.loss_grad(&theta, rows.clone()).unwrap().1;
    // Same inputs, same f64 code path: equal to the last bit.
    assert_eq!(t[0].data, want);

    let w = mlp.num_params();
    let v: Vec<f64> = (0..w)
        .map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.5)
        .collect();
    write_vector(&d.join("v.safetensors"), v.clone());
    let o = curvature(
        &[
            "compute",
            "hvp",
            "--model",
            "model.safetensors",
            "--data",
            "digits",
            "--vectors",
            "v.safetensors",
            "--device",
            "cpu",
            "--out",
            "hv.safetensors",
        ],
        d,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let (t, meta) = read_tensors(&d.join("hv.safetensors")).unwrap();
    assert_eq!(t[0].name, "hvp");
    assert_eq!(t[0].shape, vec![w]);
    assert_eq!(t[0].data, engine.hvp(&theta, rows, &v).unwrap());
    assert_eq!(meta["quantity"], "hvp");
    let _ = model;
}

#[test]
fn compute_writes_every_cheap_quantity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mlp = Mlp::with_hidden(&[2, 3, 1], Activation::Tanh, Loss::Bce, 0.01).unwrap();
    let theta = mlp.init_params(1);
    save_model(
        &d.join("m.safetensors"),
        &mlp,
        &theta,
        &HashMap::new(),
        Overwrite::Refuse,
    )
    .unwrap();
    let w = mlp.num_params();
    for (q, shape) in [
        ("loss", vec![]),
        ("hessian", vec![w, w]),
        ("ggn", vec![w, w]),
        ("diag-hessian", vec![w]),
        ("diag-ggn", vec![w]),
        ("diag-becker-lecun", vec![w]),
        ("outer-product", vec![w, w]),
        ("inverse-outer-product", vec![w, w]),
        ("fd-hessian", vec![w, w]),
    ] {
        let out = format!("{q}.safetensors");
        let o = curvature(
            &[
                "compute",
                q,
                "--model",
                "m.safetensors",
                "--data",
                "gaussians",
                "--device",
                "cpu",
                "--out",
                &out,
            ],
            d,
        );
        let (so, se) = text(&o);
        assert!(o.status.success(), "{q}: {so}\n{se}");
        let (t, _) = read_tensors(&d.join(&out)).unwrap();
        assert_eq!(t[0].shape, shape, "{q}");
    }
    // fd-hessian against hessian: PRML 5.91 to finite-difference accuracy.
    let (h, _) = read_tensors(&d.join("hessian.safetensors")).unwrap();
    let (f, _) = read_tensors(&d.join("fd-hessian.safetensors")).unwrap();
    let worst = h[0]
        .data
        .iter()
        .zip(&f[0].data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-6, "fd-hessian differs by {worst}");
}

/// Every K-FAC and Fisher quantity of `compute`, on the digits model with `--device cpu`,
/// equals the library's result through the same engine to the last bit, under the
/// documented tensor names and shapes; bad flavour arguments are one-line errors.
#[test]
fn compute_kfac_and_fisher_quantities_equal_the_library() {
    use curvature::cpu::Fisher;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, mlp, theta) = digits_model(d);
    let ds = data::load_named("digits").unwrap();
    let mut e = Device::FastCpuF64
        .engine(&mlp, ds.x.view(), ds.t.view())
        .unwrap();
    let (rows, w) = (0..ds.len(), mlp.num_params());
    let v: Vec<f64> = (0..w).map(|i| (i % 17) as f64 / 17.0 - 0.5).collect();
    write_vector(&d.join("v.safetensors"), v.clone());
    let vm = ndarray::Array2::from_shape_vec((1, w), v).unwrap();
    const BASE: [&str; 7] = [
        "--model",
        "model.safetensors",
        "--data",
        "digits",
        "--device",
        "cpu",
        "--out",
    ];
    let args = |q: &'static str, out: &'static str, extra: &[&'static str]| {
        [&["compute", q][..], &BASE, &[out], extra].concat()
    };
    let run = |q: &'static str, extra: &[&'static str]| {
        std::fs::remove_file(d.join("out.safetensors")).ok();
        let o = curvature(&args(q, "out.safetensors", extra), d);
        assert!(o.status.success(), "{q}: {:?}", text(&o));
        read_tensors(&d.join("out.safetensors")).unwrap()
    };
    let flat = |m: ndarray::Array2<f64>| m.iter().copied().collect::<Vec<f64>>();
    let mc = Fisher::Mc {
        samples: 2,
        seed: 3,
    };
    let mc_args = ["--samples", "2", "--seed", "3"];
    for (fisher, extra) in [
        (Fisher::Exact, vec![]),
        (mc, [&["--fisher", "mc"][..], &mc_args].concat()),
        (Fisher::Empirical, vec!["--fisher", "empirical"]),
    ] {
        let (t, meta) = run("kfac", &extra);
        assert_eq!(meta["fisher"], fisher.name());
        let f = e.kfac_factors(fisher, &theta, rows.clone()).unwrap();
        let ekfac = e.ekfac(fisher, &theta, rows.clone()).unwrap();
        let (t_e, _) = run("ekfac-diag", &extra);
        for (tensors, suffix, want) in [
            (&t, "kfac_a", &f.a),
            (&t, "kfac_b", &f.b),
            (&t_e, "ekfac_diag", &ekfac.scalings),
        ] {
            assert_eq!(
                tensors.len(),
                want.len() * if suffix == "ekfac_diag" { 1 } else { 2 }
            );
            for (l, m) in want.iter().enumerate() {
                let x = tensors
                    .iter()
                    .find(|x| x.name == format!("layers.{l}.{suffix}"))
                    .unwrap();
                assert_eq!((&x.shape, &x.data), (&m.shape().to_vec(), &flat(m.clone())));
            }
        }
        let (t, _) = run(
            "kfac-vp",
            &[&extra[..], &["--vectors", "v.safetensors"]].concat(),
        );
        let want = e
            .kfac_products(fisher, &theta, rows.clone(), vm.view())
            .unwrap();
        assert_eq!((t[0].name.as_str(), &t[0].data), ("kfac_vp", &flat(want)));
    }
    let ef = Fisher::Empirical;
    // (quantity, its arguments, the tensor's shape, the library's result)
    type Single = (&'static str, Vec<&'static str>, Vec<usize>, Vec<f64>);
    let single: Vec<Single> = vec![
        (
            "per-sample-grad",
            vec![],
            vec![ds.len(), w],
            flat(e.per_sample_gradients(&theta, rows.clone()).unwrap()),
        ),
        (
            "empirical-fisher",
            vec![],
            vec![w, w],
            flat(e.fisher_matrix(ef, &theta, rows.clone()).unwrap()),
        ),
        (
            "diag-empirical-fisher",
            vec![],
            vec![w],
            e.fisher_diagonal(ef, &theta, rows.clone()).unwrap(),
        ),
        (
            "efvp",
            vec!["--vectors", "v.safetensors"],
            vec![w],
            flat(
                e.fisher_products(ef, &theta, rows.clone(), vm.view())
                    .unwrap(),
            ),
        ),
        (
            "diag-mc-fisher",
            mc_args.to_vec(),
            vec![w],
            e.fisher_diagonal(mc, &theta, rows.clone()).unwrap(),
        ),
        (
            "grad-variance",
            vec![],
            vec![w],
            e.gradient_variance(&theta, rows.clone()).unwrap(),
        ),
    ];
    for (q, extra, shape, want) in single {
        let (t, _) = run(q, &extra);
        assert_eq!(
            (t[0].name.clone(), &t[0].shape),
            (q.replace('-', "_"), &shape)
        );
        assert_eq!(t[0].data, want, "{q}");
    }
    // Bad flavour arguments: one line each, nothing written.
    for (q, extra, needles) in [
        (
            "diag-mc-fisher",
            &["--samples", "0"][..],
            &["--samples", "at least 1"][..],
        ),
        (
            "kfac",
            &["--fisher", "mc", "--samples", "0"],
            &["--samples"],
        ),
        (
            "per-sample-grad",
            &["--fisher", "mc"],
            &["--fisher", "kfac"],
        ),
        ("kfac", &["--samples", "3"], &["--samples", "--fisher mc"]),
        ("efvp", &[], &["--vectors"]),
    ] {
        assert_one_line_error(&curvature(&args(q, "bad.safetensors", extra), d), needles);
        assert!(!d.join("bad.safetensors").exists());
    }
}

#[test]
fn bad_inputs_get_one_line_errors_and_overwrite_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, mlp, _) = digits_model(d);

    // A missing model.
    let o = curvature(
        &["eval", "--model", "nope.safetensors", "--data", "digits"],
        d,
    );
    assert_one_line_error(&o, &["nope.safetensors"]);
    // A corrupt model.
    std::fs::write(
        d.join("corrupt.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    let o = curvature(
        &["eval", "--model", "corrupt.safetensors", "--data", "digits"],
        d,
    );
    assert_one_line_error(&o, &["corrupt.safetensors"]);
    // A model whose shapes disagree with the data.
    let wide = Mlp::with_hidden(&[784, 5, 10], Activation::Sigmoid, Loss::Ce, 0.0).unwrap();
    save_model(
        &d.join("wide.safetensors"),
        &wide,
        &wide.init_params(0),
        &HashMap::new(),
        Overwrite::Refuse,
    )
    .unwrap();
    let o = curvature(
        &[
            "eval",
            "--model",
            "wide.safetensors",
            "--data",
            "digits",
            "--device",
            "cpu",
        ],
        d,
    );
    assert_one_line_error(&o, &["784 inputs", "64"]);
    // A corrupt data file (a truncated gzip).
    let gz = std::fs::read(data::data_dir().join("digits.csv.gz")).unwrap();
    std::fs::write(d.join("cut.csv.gz"), &gz[..gz.len() / 2]).unwrap();
    let o = curvature(
        &[
            "eval",
            "--model",
            "model.safetensors",
            "--data",
            "cut.csv.gz",
            "--device",
            "cpu",
        ],
        d,
    );
    assert_one_line_error(&o, &["cut.csv.gz"]);
    // An unknown optimizer.
    let o = curvature(
        &[
            "train",
            "--optimizer",
            "lion",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
        d,
    );
    assert_one_line_error(&o, &["lion", "newton", "adamw"]);
    // An unknown quantity (clap's usage error).
    let o = curvature(
        &[
            "compute",
            "jacobian",
            "--model",
            "model.safetensors",
            "--data",
            "digits",
            "--out",
            "x.safetensors",
        ],
        d,
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("jacobian"));
    // Vectors of the wrong length.
    write_vector(&d.join("short.safetensors"), vec![1.0, 2.0, 3.0]);
    let o = curvature(
        &[
            "compute",
            "hvp",
            "--model",
            "model.safetensors",
            "--data",
            "digits",
            "--vectors",
            "short.safetensors",
            "--device",
            "cpu",
            "--out",
            "hv.safetensors",
        ],
        d,
    );
    assert_one_line_error(
        &o,
        &["short.safetensors", &format!("W = {}", mlp.num_params())],
    );
    assert!(!d.join("hv.safetensors").exists());
    // An existing --out is refused before any work and kept as it was.
    std::fs::write(d.join("keep.safetensors"), b"precious").unwrap();
    let o = curvature(
        &[
            "compute",
            "loss",
            "--model",
            "model.safetensors",
            "--data",
            "digits",
            "--device",
            "cpu",
            "--out",
            "keep.safetensors",
        ],
        d,
    );
    assert_one_line_error(&o, &["keep.safetensors", "--force"]);
    assert_eq!(
        std::fs::read(d.join("keep.safetensors")).unwrap(),
        b"precious"
    );
    // ... and replaced with --force.
    let o = curvature(
        &[
            "compute",
            "loss",
            "--model",
            "model.safetensors",
            "--data",
            "digits",
            "--device",
            "cpu",
            "--out",
            "keep.safetensors",
            "--force",
        ],
        d,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        read_tensors(&d.join("keep.safetensors")).unwrap().0[0].name,
        "loss"
    );
}

#[test]
fn devices_and_help_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let o = curvature(&["devices"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("--device auto"), "{out}");
    for cmd in ["train", "eval", "predict", "compute", "devices", "parity"] {
        let o = curvature(&[cmd, "--help"], dir.path());
        assert!(o.status.success());
        assert!(!text(&o).0.is_empty());
    }
    let o = curvature(&["--help"], dir.path());
    assert!(text(&o).0.contains("Examples"));
}

/// The test accuracy `train` printed ("test accuracy 0.9721 (359 rows)").
fn printed_test_accuracy(out: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.contains("test accuracy"))
        .expect("a test accuracy line");
    let after = line.split("test accuracy ").nth(1).expect("a figure");
    after
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("a number")
}

/// The main job (`curvature train` with its defaults: digits, 64-100-10 relu/softmax,
/// K-FAC on batches of 128, f32, seed 0) reaches the 97% test accuracy on the CPU
/// device.
#[test]
fn main_job_reaches_97_percent_on_digits_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let o = curvature(&["train", "--device", "cpu", "--quiet"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let acc = printed_test_accuracy(&out);
    assert!(acc >= 0.97, "test accuracy {acc}: {out}");
}

/// The main job in f32 (its default) and in f64 reach the same test accuracy within
/// half a point (issue 18), as medians over the five split seeds of the defaults'
/// sweep: one seed's runs drift apart by up to three digits (0.84%) with λ = 1e-6,
/// since the two precisions take different paths to different minima, while the
/// medians stay one digit apart.
#[test]
fn main_job_f32_matches_f64_accuracy_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    let mut median = Vec::new();
    for precision in ["f32", "f64"] {
        let mut accuracy = Vec::new();
        for seed in 0..5 {
            let run_dir = format!("{precision}-{seed}");
            let seed = seed.to_string();
            let o = curvature(
                &[
                    "train",
                    "--device",
                    "cpu",
                    "--quiet",
                    "--precision",
                    precision,
                    "--seed",
                    &seed,
                    "--checkpoint-every",
                    "0",
                    "--run-dir",
                    &run_dir,
                ],
                dir.path(),
            );
            let (out, err) = text(&o);
            assert!(o.status.success(), "{out}\n{err}");
            assert!(out.contains(&format!("({precision}")), "{out}");
            accuracy.push(printed_test_accuracy(&out));
        }
        accuracy.sort_by(f64::total_cmp);
        median.push(accuracy[2]);
    }
    let gap = (median[0] - median[1]).abs();
    assert!(
        gap <= 0.005,
        "medians: f32 {} against f64 {}",
        median[0],
        median[1]
    );
}

/// The same on the GPU (llvmpipe in CI), verified by default (`--verify auto`): every
/// kind of result K-FAC uses is checked against the CPU, the first update in full.
#[test]
fn main_job_reaches_97_percent_on_digits_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let o = curvature(&["train", "--device", "gpu", "--quiet"], dir.path());
    let (out, err) = text(&o);
    if gpu_support::child_found_no_gpu(&o) {
        return;
    }
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("verified against the CPU reference"), "{out}");
    assert!(
        out.contains("verification (auto (budget 10% of the wall time))"),
        "{out}"
    );
    for kind in ["loss", "gradient", "K-FAC factors", "Gv", "outputs"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(kind) && l.contains(" full ")),
            "{kind} not checked: {out}"
        );
    }
    let acc = printed_test_accuracy(&out);
    assert!(acc >= 0.97, "test accuracy {acc}: {out}");
}

/// `parity` checks this machine's adapter against the CPU reference and prints its table.
#[test]
fn parity_command_passes_on_this_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let o = curvature(&["parity"], dir.path());
    let (out, err) = text(&o);
    if gpu_support::child_found_no_gpu(&o) {
        return;
    }
    assert!(o.status.success(), "{out}\n{err}");
    for op in [
        "gradient",
        "Hv",
        "Gv",
        "diag Hessian",
        "Hessian",
        "outer product",
        "K-FAC factors exact",
        "K-FAC factors mc",
        "K-FAC factors empirical",
        "per-sample gradients",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(op) && l.ends_with("pass")),
            "{op}: {out}"
        );
    }
    assert!(out.contains("all operations agree"), "{out}");
}
