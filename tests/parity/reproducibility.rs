//! Reproducibility: the same seed on the same device gives bit-identical results.
//!
//! - CPU: the f64 reference engine and the fast engine in f64 and f32
//!   (`curvature::engine::device::Device`) give the same bits for every operation from two
//!   fresh engines, and short training runs (momentum and Hessian-free, mini-batches,
//!   a digits subset) end on the same θ bits twice; a different seed ends elsewhere,
//!   so the comparison can fail.
//! - GPU (skips without an adapter, unless CURVATURE_REQUIRE_GPU=1): every operation
//!   gives the same bits repeated on one engine, on a fresh engine, and on a second
//!   context; a short training run twice ends on the same θ bits; the two matmul
//!   variants (one is chosen per context by timing) agree bit for bit, so the timed
//!   choice cannot change a result from one run to the next. The shaders have no
//!   atomics: every reduction (the column-sum tree, split-K partial sums added in
//!   split order, per-thread loops) runs in a fixed order.
//!
//! Comparisons are of bits (`f64::to_bits`), so -0.0 ≠ 0.0 and NaN = NaN of the same
//! payload: no tolerance.

use crate::gpu_support;
use curvature::data::load_named;
use curvature::engine::device::Device;
use curvature::engine::ReferenceEngine;
use curvature::optim::OptimizerSpec;
use curvature::train::{train, DataView, TrainConfig};
use curvature::{Activation, Curvature, Loss, Mlp};
use gpu_support::gpu;
use ndarray::{s, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows of the digits subset for training runs and operations (full digits is 1797;
/// a subset keeps the GPU runs on a software adapter short).
const SUBSET_ROWS: usize = 300;

/// The first `rows` of the bundled digits: x (rows, 64), one-hot t (rows, 10).
fn digits(rows: usize) -> (Array2<f32>, Array2<f32>) {
    let data = load_named("digits").expect("bundled digits");
    (
        data.x.slice(s![..rows, ..]).to_owned(),
        data.t.slice(s![..rows, ..]).to_owned(),
    )
}

fn digits_net(hidden: usize) -> Mlp {
    Mlp::with_hidden(&[64, hidden, 10], Activation::Sigmoid, Loss::Ce, 1e-3).unwrap()
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Seeded vectors V (k, W) in (−1, 1).
fn vectors(k: usize, w: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((k, w), |_| rng.random_range(-1.0..1.0))
}

/// Every operation of `Curvature` at θ = init(seed), as (name, bits) in a fixed order;
/// `full` adds the full H and G (small networks only).
fn fingerprint(eng: &mut dyn Curvature, seed: u64, full: bool) -> Vec<(&'static str, Vec<u64>)> {
    let mlp = eng.mlp().clone();
    let theta = mlp.init_params(seed);
    let n = eng.num_rows();
    let rows = 0..n;
    let v = vectors(3, mlp.num_params(), seed + 1);
    let (e, g) = eng.loss_grad(&theta, rows.clone()).unwrap();
    let mut out = vec![
        ("loss", bits(&[eng.loss(&theta, rows.clone()).unwrap()])),
        ("loss of loss_grad", bits(&[e])),
        ("gradient", bits(&g)),
        (
            "gradient of a sub-range",
            bits(&eng.loss_grad(&theta, 7..n - 5).unwrap().1),
        ),
        (
            "outputs",
            bits(
                &eng.outputs(&theta, rows.clone())
                    .unwrap()
                    .into_raw_vec_and_offset()
                    .0,
            ),
        ),
        (
            "Hv",
            bits(
                &eng.hvp_block(&theta, rows.clone(), v.view())
                    .unwrap()
                    .into_raw_vec_and_offset()
                    .0,
            ),
        ),
        (
            "Gv",
            bits(
                &eng.gvp_block(&theta, rows.clone(), v.view())
                    .unwrap()
                    .into_raw_vec_and_offset()
                    .0,
            ),
        ),
        ("diag G", bits(&eng.diag_ggn(&theta, rows.clone()).unwrap())),
        (
            "diag Becker-LeCun",
            bits(&eng.diag_becker_lecun(&theta, rows.clone()).unwrap()),
        ),
    ];
    if full {
        out.push((
            "diag H",
            bits(&eng.diag_hessian(&theta, rows.clone()).unwrap()),
        ));
        for (name, m) in [
            ("H", eng.hessian(&theta, rows.clone()).unwrap()),
            ("G", eng.ggn(&theta, rows.clone()).unwrap()),
        ] {
            out.push((name, bits(&m.into_raw_vec_and_offset().0)));
        }
    }
    out
}

/// Asserts two fingerprints equal bit for bit, naming the first operation that differs.
fn assert_same_bits(what: &str, a: &[(&str, Vec<u64>)], b: &[(&str, Vec<u64>)]) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let first = x.iter().zip(y).position(|(p, q)| p != q);
        assert!(
            x.len() == y.len() && first.is_none(),
            "{what}: {name} differs between runs (first at index {first:?})"
        );
    }
    println!("{what}: {} operations bit-identical", a.len());
}

/// A fingerprint at another seed must differ somewhere (the comparison can fail).
fn assert_differs(what: &str, a: &[(&str, Vec<u64>)], b: &[(&str, Vec<u64>)]) {
    assert!(
        a.iter().zip(b).any(|((_, x), (_, y))| x != y),
        "{what}: a different θ gave the same bits — the comparison cannot fail"
    );
}

type MakeEngine<'a> = dyn Fn(ArrayView2<f32>, ArrayView2<f32>) -> Box<dyn Curvature> + 'a;

/// Fingerprints from two fresh engines equal; another seed's differs.
fn check_operations(
    what: &str,
    make: &MakeEngine,
    x: ArrayView2<f32>,
    t: ArrayView2<f32>,
    full: bool,
) {
    let first = fingerprint(make(x, t).as_mut(), 11, full);
    let second = fingerprint(make(x, t).as_mut(), 11, full);
    assert_same_bits(what, &first, &second);
    let other = fingerprint(make(x, t).as_mut(), 12, full);
    assert_differs(what, &first, &other);
}

#[test]
fn cpu_reference_operations_are_bit_reproducible() {
    let (x, t) = digits(SUBSET_ROWS);
    let mlp = digits_net(16);
    check_operations(
        "cpu reference, 64-16-10, 300 rows",
        &|x, t| Box::new(ReferenceEngine::new(&mlp, x, t).unwrap()),
        x.view(),
        t.view(),
        false,
    );
    // The full H and G on a small network.
    let small = digits_net(3);
    check_operations(
        "cpu reference, 64-3-10 with H and G",
        &|x, t| Box::new(ReferenceEngine::new(&small, x, t).unwrap()),
        x.view(),
        t.view(),
        true,
    );
}

#[test]
fn cpu_fast_operations_are_bit_reproducible_in_f64_and_f32() {
    // All of digits and 50 hidden units: the products are above the fast engine's
    // threshold for multi-threaded GEMM, so its parallel paths are covered too.
    let (x, t) = digits(1797);
    let mlp = digits_net(50);
    for device in [Device::FastCpuF64, Device::FastCpuF32] {
        let what = format!("{}, 64-50-10, 1797 rows", device.describe());
        check_operations(
            &what,
            &|x, t| Box::new(device.engine(&mlp, x, t).unwrap()),
            x.view(),
            t.view(),
            false,
        );
    }
    let small = digits_net(3);
    for device in [Device::FastCpuF64, Device::FastCpuF32] {
        let what = format!("{}, 64-3-10 with H and G", device.describe());
        check_operations(
            &what,
            &|x, t| Box::new(device.engine(&small, x, t).unwrap()),
            x.view(),
            t.view(),
            true,
        );
    }
}

/// Runs `ops` on a fresh engine of each CPU device (f64, f32) for `data` in
/// rayon pools of 1, 2 and 3 threads (faer's products use the current pool)
/// and asserts the same bits from each.
fn assert_thread_count_independent(
    label: &str,
    mlp: &Mlp,
    data: &curvature::data::Dataset,
    ops: impl Fn(&mut dyn Curvature) -> Vec<(&'static str, Vec<u64>)> + Sync,
) {
    for device in [Device::FastCpuF64, Device::FastCpuF32] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut eng = device.engine(mlp, data.x.view(), data.t.view()).unwrap();
                ops(&mut eng)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            let what = format!("{}, {label}, 1 and {threads} threads", device.describe());
            assert_same_bits(&what, &one, &run(threads));
        }
    }
}

/// The fast engine splits an operation's rows into parts by their count alone and
/// runs single-threaded products inside each part, so the result must not depend on
/// the thread count — also on a data set as large as M's (10000 rows), where
/// multi-threaded products used to split their sums by the thread count.
#[test]
fn cpu_fast_results_do_not_depend_on_the_thread_count() {
    let data = load_named("mnist10k").expect("bundled mnist10k");
    let mlp = Mlp::with_hidden(&[784, 32, 10], Activation::Sigmoid, Loss::Ce, 1e-3).unwrap();
    let theta = mlp.init_params(4);
    let v = vectors(2, mlp.num_params(), 5);
    assert_thread_count_independent("784-32-10 on 10000 rows", &mlp, &data, |eng| {
        let rows = 0..eng.num_rows();
        let (e, g) = eng.loss_grad(&theta, rows.clone()).unwrap();
        let hv = eng.hvp_block(&theta, rows.clone(), v.view()).unwrap();
        let d = eng.diag_hessian(&theta, rows).unwrap();
        vec![
            ("loss of loss_grad", bits(&[e])),
            ("gradient", bits(&g)),
            ("Hv", bits(&hv.into_raw_vec_and_offset().0)),
            ("diag H", bits(&d)),
        ]
    });
}

/// The full H and G of the fast engine (`cpu_fast::full`: every sum split
/// into fixed tiles) are the same bits on 1, 2 and 3 threads: a 64-40-10
/// network (W = 3010) on all 1797 digits rows: three chunks (G: two), many tiles.
#[test]
fn cpu_fast_full_matrices_do_not_depend_on_the_thread_count() {
    let data = load_named("digits").expect("bundled digits");
    let mlp = Mlp::with_hidden(&[64, 40, 10], Activation::Tanh, Loss::Ce, 1e-3).unwrap();
    let theta = mlp.init_params(6);
    assert_thread_count_independent("64-40-10 full matrices", &mlp, &data, |eng| {
        let rows = 0..eng.num_rows();
        let h = eng.hessian(&theta, rows.clone()).unwrap();
        let g = eng.ggn(&theta, rows).unwrap();
        vec![
            ("full H", bits(&h.into_raw_vec_and_offset().0)),
            ("full G", bits(&g.into_raw_vec_and_offset().0)),
        ]
    });
}

/// A short training run on the digits subset: θ = init(seed), shuffle seeded by `seed`,
/// mini-batches of 100, 3 epochs. Returns θ's bits.
fn train_bits(optimizer: &str, make: &MakeEngine, seed: u64) -> Vec<u64> {
    let (x, t) = digits(SUBSET_ROWS);
    let (vx, vt) = (x.slice(s![..50, ..]), t.slice(s![..50, ..]));
    let mlp = digits_net(16);
    let mut theta = mlp.init_params(seed);
    let mut spec: OptimizerSpec = optimizer.parse().unwrap();
    if optimizer == "momentum" {
        spec.set("lr", "0.5").unwrap();
    }
    let config = TrainConfig {
        epochs: 3,
        batch_size: Some(100),
        shuffle_seed: seed,
        ..TrainConfig::default()
    };
    let mut factory = |x: ArrayView2<f32>, t: ArrayView2<f32>| Ok(make(x, t));
    let history = train(
        &config,
        spec.build().as_mut(),
        &mut factory,
        &mut theta,
        DataView {
            x: x.view(),
            t: t.view(),
        },
        Some(DataView { x: vx, t: vt }),
        &mut [],
    )
    .unwrap();
    assert!(history.updates > 0, "{optimizer}: no update was accepted");
    assert!(theta.iter().all(|v| v.is_finite()));
    bits(&theta)
}

/// Two runs at one seed end on the same θ bits; a run at another seed does not.
fn check_training(what: &str, make: &MakeEngine) {
    for optimizer in ["momentum", "hessian-free"] {
        let first = train_bits(optimizer, make, 5);
        let second = train_bits(optimizer, make, 5);
        assert!(
            first == second,
            "{what}, {optimizer}: θ differs between two runs with the same seed"
        );
        let other = train_bits(optimizer, make, 6);
        assert!(
            first != other,
            "{what}, {optimizer}: another seed gave the same θ — the comparison cannot fail"
        );
        println!("{what}, {optimizer}: θ bit-identical over two runs");
    }
}

#[test]
fn cpu_training_runs_are_bit_reproducible() {
    let mlp = digits_net(16);
    check_training("cpu reference", &|x, t| {
        Box::new(ReferenceEngine::new(&mlp, x, t).unwrap())
    });
    for device in [Device::FastCpuF64, Device::FastCpuF32] {
        check_training(&device.describe(), &|x, t| {
            Box::new(device.engine(&mlp, x, t).unwrap())
        });
    }
}

#[test]
fn gpu_operations_are_bit_reproducible() {
    let Some(ctx) = gpu() else { return };
    let (x, t) = digits(SUBSET_ROWS);
    let mlp = digits_net(16);
    let device = Device::Gpu(ctx.clone());
    let make = |x: ArrayView2<f32>, t: ArrayView2<f32>| -> Box<dyn Curvature> {
        Box::new(device.engine(&mlp, x, t).unwrap())
    };
    check_operations("gpu, 64-16-10, 300 rows", &make, x.view(), t.view(), false);
    // Repeated on one engine (its buffers reused, caches warm) as well as fresh ones.
    let mut eng = make(x.view(), t.view());
    let once = fingerprint(eng.as_mut(), 11, false);
    let again = fingerprint(eng.as_mut(), 11, false);
    assert_same_bits("gpu, one engine twice", &once, &again);
    let small = digits_net(3);
    check_operations(
        "gpu, 64-3-10 with H and G",
        &|x, t| Box::new(device.engine(&small, x, t).unwrap()),
        x.view(),
        t.view(),
        true,
    );
}

#[test]
fn gpu_results_do_not_depend_on_the_context() {
    let Some(ctx) = gpu() else { return };
    // A second context on the same adapter (as a second run of the program opens),
    // running the same matmul variant: the same bits.
    let opts = curvature::gpu::AdapterOptions {
        choice: curvature::gpu::AdapterChoice::Gpu,
        name: Some(ctx.summary().name.clone()),
    };
    let other = curvature::gpu::GpuContext::new(&opts).unwrap();
    let (x, t) = digits(SUBSET_ROWS);
    let mlp = digits_net(16);
    let kernel = ctx.matmul_kernel();
    let run = |c: &std::sync::Arc<curvature::gpu::GpuContext>| {
        let mut eng = curvature::gpu::GpuEngine::new(c.clone(), &mlp, x.view(), t.view())
            .unwrap()
            .with_matmul_kernel(kernel);
        fingerprint(&mut eng, 11, false)
    };
    assert_same_bits("gpu, two contexts", &run(&ctx), &run(&other));
}

#[test]
fn gpu_training_runs_are_bit_reproducible() {
    let Some(ctx) = gpu() else { return };
    let mlp = digits_net(16);
    let device = Device::Gpu(ctx);
    check_training(&device.describe(), &|x, t| {
        Box::new(device.engine(&mlp, x, t).unwrap())
    });
}

/// Each context times the two matmul variants and keeps the faster, which can change
/// from run to run; both sum k in the same order, so the choice must not change the bits.
#[test]
fn gpu_matmul_variants_agree_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    // All rows: the gradient's products sum over K = 1797 rows, long enough for split-K.
    let (x, t) = digits(1797);
    let mlp = digits_net(16);
    let run = |kernel| {
        let mut eng = curvature::gpu::GpuEngine::new(ctx.clone(), &mlp, x.view(), t.view())
            .unwrap()
            .with_matmul_kernel(kernel);
        fingerprint(&mut eng, 11, false)
    };
    use curvature::gpu::kernels::Kernel;
    assert_same_bits(
        "tiled vs reg",
        &run(Kernel::MatmulTiled),
        &run(Kernel::MatmulReg),
    );
    // An MNIST-shaped gradient: its first product (128, 784) over K = 1024 rows has few
    // output tiles, so it is split along K — into as many splits for either variant.
    let case = gpu_support::Case::new(
        &[784, 128, 10],
        Activation::Sigmoid,
        Loss::Ce,
        1e-3,
        1024,
        9,
    );
    let grad = |kernel| {
        let mut eng = case.engine(&ctx).with_matmul_kernel(kernel);
        bits(&eng.loss_grad(&case.theta, 0..1024).unwrap().1)
    };
    let (tiled, reg) = (grad(Kernel::MatmulTiled), grad(Kernel::MatmulReg));
    let first = tiled.iter().zip(&reg).position(|(a, b)| a != b);
    assert!(
        first.is_none(),
        "784-128-10 gradient: tiled and reg differ first at {first:?}"
    );
    println!("tiled vs reg: 784-128-10 gradient bit-identical");
}

/// `curvature train` (a fresh process: a fresh context and matmul timing on the GPU) on
/// `device` with `seed`: the saved θ's bits, metadata and file bytes.
fn cli_train(device: &str, seed: u64) -> Option<Saved> {
    cli_train_with(
        device,
        seed,
        &["--hidden", "20", "--batch-size", "200"],
        &[],
    )
}

/// What a `curvature train` run saved: θ's bits, the metadata, the file's bytes.
type Saved = (Vec<u64>, std::collections::HashMap<String, String>, Vec<u8>);

/// `cli_train` with more arguments and environment variables.
fn cli_train_with(device: &str, seed: u64, args: &[&str], env: &[(&str, &str)]) -> Option<Saved> {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_curvature"))
        .args(["train", "--device", device, "--quiet", "--seed", &seed])
        .args(["--epochs", "2", "--out", "model.safetensors"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("the curvature binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    if gpu_support::child_found_no_gpu(&out) {
        return None;
    }
    assert!(out.status.success(), "{err}");
    let path = dir.path().join("model.safetensors");
    let model = curvature::files::load_model(&path).unwrap();
    Some((
        bits(&model.theta),
        model.metadata,
        std::fs::read(&path).unwrap(),
    ))
}

/// Two runs of the binary with one seed save the same model; another seed does not.
fn check_cli(device: &str) {
    let Some(first) = cli_train(device, 3) else {
        return;
    };
    let second = cli_train(device, 3).unwrap();
    assert!(
        first.0 == second.0,
        "{device}: θ differs between two `train` runs"
    );
    assert_eq!(first.1, second.1, "{device}: metadata differs");
    assert!(
        first.2 == second.2,
        "{device}: the two model files differ byte for byte"
    );
    let other = cli_train(device, 4).unwrap();
    assert!(
        first.0 != other.0,
        "{device}: another seed saved the same θ"
    );
    println!("curvature train --device {device}: the same model file from two processes");
}

#[test]
fn cli_train_twice_saves_the_same_model_on_the_cpu() {
    check_cli("cpu");
}

#[test]
fn cli_train_twice_saves_the_same_model_on_the_gpu() {
    check_cli("gpu");
}

/// The fast CPU engine runs on every core (its parts on rayon); the result must not
/// depend on how many there are: `curvature train` on 1, 2 and 5 threads, 64-50-10 on
/// the digits training split.
#[test]
fn cli_cpu_results_do_not_depend_on_the_thread_count() {
    let run = |threads: &str| {
        cli_train_with(
            "cpu",
            3,
            &["--hidden", "50"],
            &[("RAYON_NUM_THREADS", threads)],
        )
        .unwrap()
        .0
    };
    let one = run("1");
    for threads in ["2", "5"] {
        assert!(
            run(threads) == one,
            "θ on {threads} threads differs from θ on 1 thread"
        );
    }
    println!("curvature train --device cpu: the same θ bits on 1, 2 and 5 threads");
}
