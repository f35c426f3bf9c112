//! The conformance suite: every engine (the fast CPU engine in f64 and f32, the
//! GPU engine) against the f64 reference, every quantity of the contract, on one
//! list of cases, with the crate's one tolerance table
//! (`curvature::engine::compare`, by the engine's precision and the kind of
//! result). The cases are the union of what each engine's own tests used to
//! sweep: every loss × every elementwise hidden activation at the shapes of the
//! GPU's forward, product and diagonal sweeps (widths 1, 3, 7, 33; N = 2 and
//! 31), squared errors after every output activation, and the fast engine's
//! odd shapes of 1–4 layers; each case also in chunks of 5 rows, so that the
//! accumulation across chunks is checked on every engine. On the GPU, whose W×W
//! matrices take W/32 submits each, the full matrices and the chunked runs are
//! checked on the odd shapes (its sweeps' own are in `products.rs`,
//! `diagonals.rs` and `forward.rs`), the outer product on every case.
//!
//! What is specific to one engine stays in its own module: kernels and split-K
//! (`kernels.rs`), both matmul variants, factor groups and residual columns
//! (`products.rs`, `diagonals.rs`), pass reuse, thread-count independence
//! (`reproducibility.rs`), faults (`gpu_faults.rs`), the digits-sized runs.

use crate::gpu_support;
use curvature::cpu;
use curvature::cpu_fast::FastCpuEngine;
use curvature::engine::compare::{compare_with_table, Checked};
use curvature::engine::Precision;
use curvature::gpu::GpuEngine;
use curvature::{Activation, Curvature, Loss, Mlp};
use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use Activation::*;

/// One network and its data: θ with random biases, X uniform in (−1, 1), T
/// fitting the loss.
struct Case {
    label: String,
    mlp: Mlp,
    theta: Vec<f64>,
    x: Array2<f32>,
    t: Array2<f32>,
    /// Whether the W×W matrices are checked too (small W only).
    full: bool,
    /// One of the fast engine's odd shapes (the GPU checks its full matrices and
    /// its chunked runs on these; on the sweeps, its own modules check those).
    odd: bool,
}

fn case(sizes: &[usize], acts: &[Activation], loss: Loss, l2: f64, n: usize, seed: u64) -> Case {
    let mlp = Mlp::new(sizes, acts, loss, l2).expect("a valid test network");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut theta = mlp.init_params(seed);
    for layer in mlp.layout() {
        for b in &mut theta[layer.bias] {
            *b = rng.random_range(-0.4..0.4);
        }
    }
    let (d, k) = (mlp.num_inputs(), mlp.num_outputs());
    let x = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0));
    let t = match loss {
        Loss::Ce => {
            let mut t = Array2::zeros((n, k));
            for r in 0..n {
                t[[r, rng.random_range(0..k)]] = 1.0;
            }
            t
        }
        Loss::Bce => Array2::from_shape_fn((n, k), |_| f32::from(u8::from(rng.random_bool(0.5)))),
        Loss::Sse | Loss::Mse => Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0)),
    };
    let full = mlp.num_params() <= 400;
    Case {
        label: format!("{} N={n}", mlp.describe()),
        mlp,
        theta,
        x,
        t,
        full,
        odd: false,
    }
}

/// The union of the engines' former sweeps (see the module header).
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 1;
    for loss in Loss::ALL {
        let output = loss.output_activation();
        for hidden in Activation::ELEMENTWISE {
            // The GPU's forward sweep (7-3-3, 3-7-1, 1-33-7-3), product sweep
            // (3-7-1-3 at N = 2) and diagonal sweep (λ = 0 at 3-7-1-3).
            for (sizes, n, l2) in [
                (&[7usize, 3, 3][..], 31, 0.01),
                (&[3, 7, 1][..], 2, 0.01),
                (&[1, 33, 7, 3][..], 31, 0.01),
                (&[3, 7, 1, 3][..], 2, 0.01),
                (&[3, 7, 1, 3][..], 2, 0.0),
            ] {
                if loss == Loss::Ce && sizes[sizes.len() - 1] == 1 {
                    continue; // softmax over one output is constant
                }
                let mut acts = vec![hidden; sizes.len() - 2];
                acts.push(output);
                out.push(case(sizes, &acts, loss, l2, n, seed));
                seed += 1;
            }
        }
    }
    // Squared errors after every output activation (the residual term of H).
    for loss in [Loss::Sse, Loss::Mse] {
        for out_act in Activation::ELEMENTWISE {
            out.push(case(&[7, 33, 3], &[Tanh, out_act], loss, 0.0, 31, seed));
            seed += 1;
        }
    }
    // The fast engine's odd shapes: every loss, 1–4 layers of weights, a wide
    // input before few units (the full matrices' Gram path).
    for (sizes, acts, loss) in [
        (vec![7, 5, 3], vec![Tanh, Softmax], Loss::Ce),
        (vec![6, 3], vec![Softmax], Loss::Ce),
        (vec![5, 6, 4, 3], vec![Softplus, Sigmoid, Tanh], Loss::Sse),
        (
            vec![4, 5, 6, 3, 2],
            vec![Elu, Sigmoid, Tanh, Sigmoid],
            Loss::Bce,
        ),
        (vec![3, 4, 2], vec![LeakyRelu, Sigmoid], Loss::Mse),
        (vec![9, 7, 1], vec![Relu, Identity], Loss::Sse),
        (vec![40, 4, 3], vec![Sigmoid, Softmax], Loss::Ce),
        (
            vec![5, 8, 7, 6, 4],
            vec![Tanh, Softplus, Sigmoid, Softmax],
            Loss::Ce,
        ),
    ] {
        let mut c = case(&sizes, &acts, loss, 1e-3, 23, seed);
        c.odd = true;
        out.push(c);
        seed += 1;
    }
    out
}

/// Every quantity of `engine` (computing in `precision`) against the reference,
/// on rows 1..N (0..N for N ≤ 2), with the table's tolerance for each.
fn conform(what: &str, engine: &mut dyn Curvature, precision: Precision, c: &Case, full: bool) {
    let n = c.x.nrows();
    let rows = if n > 2 { 1..n } else { 0..n };
    let x = c.x.mapv(f64::from);
    let t = c.t.mapv(f64::from);
    let (xr, tr) = (x.slice(s![rows.clone(), ..]), t.slice(s![rows.clone(), ..]));
    let (mlp, theta) = (&c.mlp, &c.theta[..]);
    let check = |quantity: &str, got: &[f64], want: &[f64], checked: Checked| {
        let r = compare_with_table(got, want, precision, checked);
        assert!(r.passed(), "{what} {} {quantity}: {r}", c.label);
    };
    let flat = |a: &Array2<f64>| a.iter().copied().collect::<Vec<_>>();

    let y = engine.outputs(theta, rows.clone()).unwrap();
    check(
        "outputs",
        &flat(&y),
        &flat(&cpu::outputs(mlp, theta, xr)),
        Checked::Values,
    );
    let e = engine.loss(theta, rows.clone()).unwrap();
    check(
        "loss",
        &[e],
        &[cpu::loss(mlp, theta, xr, tr)],
        Checked::Loss,
    );
    let (e, g) = engine.loss_grad(theta, rows.clone()).unwrap();
    let (e_ref, g_ref) = cpu::gradient(mlp, theta, xr, tr);
    check("loss of loss_grad", &[e], &[e_ref], Checked::Loss);
    check("gradient", &g, &g_ref, Checked::Gradient);

    let w = mlp.num_params();
    let mut rng = ChaCha8Rng::seed_from_u64(w as u64);
    let v = Array2::from_shape_fn((3, w), |_| rng.random_range(-1.0..1.0));
    // Unit vectors (a weight, a middle entry, the last bias): the engines'
    // gather paths instead of products with V.
    let picks = [0, w / 2, w - 1];
    let units = Array2::from_shape_fn((3, w), |(i, p)| f64::from(u8::from(p == picks[i])));
    for (block, name) in [(&v, "V"), (&units, "e_p")] {
        let hv = engine.hvp_block(theta, rows.clone(), block.view()).unwrap();
        let hv_ref = cpu::hvp_block(mlp, theta, xr, tr, block.view());
        check(
            &format!("H·{name}"),
            &flat(&hv),
            &flat(&hv_ref),
            Checked::Curvature,
        );
        let gv = engine.gvp_block(theta, rows.clone(), block.view()).unwrap();
        let gv_ref = cpu::gvp_block(mlp, theta, xr, tr, block.view());
        check(
            &format!("G·{name}"),
            &flat(&gv),
            &flat(&gv_ref),
            Checked::Curvature,
        );
    }
    let hv1 = engine
        .hvp(theta, rows.clone(), v.row(0).as_slice().unwrap())
        .unwrap();
    let hv1_ref = cpu::hvp_block(mlp, theta, xr, tr, v.slice(s![0..1, ..]));
    check("Hv k=1", &hv1, &flat(&hv1_ref), Checked::Curvature);

    let d = engine.diag_hessian(theta, rows.clone()).unwrap();
    check(
        "diag H",
        &d,
        &cpu::diag_hessian(mlp, theta, xr, tr),
        Checked::Curvature,
    );
    let d = engine.diag_ggn(theta, rows.clone()).unwrap();
    check(
        "diag G",
        &d,
        &cpu::diag_ggn(mlp, theta, xr, tr),
        Checked::Curvature,
    );
    let d = engine.diag_becker_lecun(theta, rows.clone()).unwrap();
    let d_ref = cpu::diag_becker_lecun(mlp, theta, xr, tr);
    check("Becker-LeCun", &d, &d_ref, Checked::Curvature);

    if full {
        let h = engine.hessian(theta, rows.clone()).unwrap();
        check(
            "H",
            &flat(&h),
            &flat(&cpu::hessian(mlp, theta, xr, tr)),
            Checked::Curvature,
        );
        let g = engine.ggn(theta, rows.clone()).unwrap();
        check(
            "G",
            &flat(&g),
            &flat(&cpu::ggn(mlp, theta, xr, tr)),
            Checked::Curvature,
        );
        let o = engine.outer_product(theta, rows.clone()).unwrap();
        let o_ref = cpu::outer_product(mlp, theta, xr, tr);
        check(
            "outer product",
            &flat(&o),
            &flat(&o_ref),
            Checked::Curvature,
        );
    }
}

#[test]
fn the_fast_cpu_engine_conforms_in_f64_and_f32() {
    for c in cases() {
        let (x, t) = (c.x.view(), c.t.view());
        for chunk in [usize::MAX, 5] {
            let mut e64 = FastCpuEngine::<f64>::new(&c.mlp, x, t)
                .unwrap()
                .with_max_chunk(chunk);
            conform(
                &format!("fast f64 chunk {chunk}"),
                &mut e64,
                Precision::F64,
                &c,
                c.full,
            );
            let mut e32 = FastCpuEngine::<f32>::new(&c.mlp, x, t)
                .unwrap()
                .with_max_chunk(chunk);
            conform(
                &format!("fast f32 chunk {chunk}"),
                &mut e32,
                Precision::F32,
                &c,
                c.full,
            );
        }
    }
}

#[test]
fn the_gpu_engine_conforms() {
    let Some(ctx) = gpu_support::gpu() else {
        return;
    };
    for c in cases() {
        let (x, t) = (c.x.view(), c.t.view());
        let mut one = GpuEngine::new(ctx.clone(), &c.mlp, x, t).unwrap();
        // The full matrices take W/32 submits each: on the odd shapes (the sweeps'
        // shapes have theirs in products.rs), and the outer product's factor
        // rows on every diagonal-sweep shape through the face's default below.
        conform("gpu one chunk", &mut one, Precision::F32, &c, c.odd);
        if c.odd {
            let mut chunked = GpuEngine::new(ctx.clone(), &c.mlp, x, t)
                .unwrap()
                .with_max_chunk_rows(5)
                .unwrap();
            conform("gpu chunks of 5", &mut chunked, Precision::F32, &c, true);
        } else {
            let o = one.outer_product(&c.theta, 0..c.x.nrows()).unwrap();
            let xs = c.x.mapv(f64::from);
            let ts = c.t.mapv(f64::from);
            let o_ref = cpu::outer_product(&c.mlp, &c.theta, xs.view(), ts.view());
            let flat = |a: &Array2<f64>| a.iter().copied().collect::<Vec<_>>();
            let r =
                compare_with_table(&flat(&o), &flat(&o_ref), Precision::F32, Checked::Curvature);
            assert!(r.passed(), "gpu {} outer product: {r}", c.label);
        }
    }
}
