//! Parity of the second-order products — H·V and G·V blocks (R-propagation, one pass
//! per group of vectors), and the full H and G by column blocks — GPU (f32) against the
//! CPU reference (f64), over every activation and loss, with chunking and both matmul
//! variants.

use crate::gpu_support;
use curvature::cpu;
use curvature::gpu::kernels::Kernel;
use curvature::{Activation, Curvature, Loss};
use gpu_support::{assert_close, flat, gpu, scaled_to, Case, TOL_CURVATURE};
use ndarray::s;

fn check_products(
    label: &str,
    case: &Case,
    rows: std::ops::Range<usize>,
    k: usize,
    matmul: Option<Kernel>,
) {
    let Some(ctx) = gpu() else { return };
    let mut eng = case.engine(&ctx);
    if let Some(kernel) = matmul {
        eng = eng.with_matmul_kernel(kernel);
    }
    let x = case.x.slice(s![rows.clone(), ..]);
    let t = case.t.slice(s![rows.clone(), ..]);
    let v = case.vectors(k, 77);
    let hv = eng.hvp_block(&case.theta, rows.clone(), v.view()).unwrap();
    let hv_cpu = cpu::hvp_block(&case.mlp, &case.theta, x, t, v.view());
    let hv_cpu = flat(&hv_cpu);
    assert_close(
        &format!("{label} Hv k={k}"),
        &flat(&hv),
        &hv_cpu,
        scaled_to(TOL_CURVATURE, &hv_cpu),
    );
    let gv = eng.gvp_block(&case.theta, rows.clone(), v.view()).unwrap();
    let gv_cpu = flat(&cpu::gvp_block(&case.mlp, &case.theta, x, t, v.view()));
    assert_close(
        &format!("{label} Gv k={k}"),
        &flat(&gv),
        &gv_cpu,
        scaled_to(TOL_CURVATURE, &gv_cpu),
    );
    let one = eng
        .hvp(&case.theta, rows, v.row(0).as_slice().unwrap())
        .unwrap();
    assert_close(
        &format!("{label} Hv single"),
        &one,
        &hv_cpu[..one.len()],
        scaled_to(TOL_CURVATURE, &hv_cpu),
    );
}

// `hv_and_gv_every_activation_and_loss`: its cases run in `conformance.rs` (H·V and G·V of 3 vectors, with every other quantity).
#[test]
fn sse_with_curved_outputs_keeps_the_residual_term() {
    use curvature::Mlp;
    // Exact H includes (y − t)·h″(a_out); G drops it: both must match their CPU forms.
    for (i, out) in [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softplus,
        Activation::Elu,
    ]
    .into_iter()
    .enumerate()
    {
        let mlp = Mlp::new(&[3, 7, 3], &[Activation::Sigmoid, out], Loss::Mse, 0.0).unwrap();
        let case = Case::with_mlp(mlp, 31, 200 + i as u64);
        check_products(&format!("mse output {out}"), &case, 0..31, 2, None);
    }
}

#[test]
fn blocks_larger_than_a_vector_group_and_both_matmul_variants() {
    // k = 17 > VECTOR_GROUP (16): two groups in one submit.
    let case = Case::new(&[7, 33, 3], Activation::Tanh, Loss::Ce, 0.001, 31, 5);
    for kernel in [Kernel::MatmulTiled, Kernel::MatmulReg] {
        check_products(
            &format!("{kernel:?} 7-33-3"),
            &case,
            0..31,
            17,
            Some(kernel),
        );
    }
}

#[test]
fn digits_sized_network() {
    let case = Case::new(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3, 1797, 42);
    check_products("64-50-10 N=1797", &case, 0..1797, 4, None);
    let case = Case::new(&[65, 257, 7], Activation::Relu, Loss::Sse, 0.0, 31, 43);
    check_products("65-257-7 N=31", &case, 0..31, 2, None);
}

#[test]
fn full_hessian_and_gauss_newton() {
    let Some(ctx) = gpu() else { return };
    // W = 7·8 + 3·8 + 3·4 = 92 > HESSIAN_BLOCK_COLUMNS: several blocks, a tail block.
    for (i, (hidden, loss)) in [
        (Activation::Tanh, Loss::Ce),
        (Activation::Softplus, Loss::Sse),
        (Activation::Elu, Loss::Bce),
    ]
    .into_iter()
    .enumerate()
    {
        let case = Case::new(&[7, 8, 3, 3], hidden, loss, 0.01, 31, 300 + i as u64);
        let mut eng = case.engine(&ctx);
        let h = eng.hessian(&case.theta, 0..31).unwrap();
        let h_cpu = flat(&cpu::hessian(
            &case.mlp,
            &case.theta,
            case.x.view(),
            case.t.view(),
        ));
        assert_close(
            &format!("{loss}/{hidden} H"),
            &flat(&h),
            &h_cpu,
            scaled_to(TOL_CURVATURE, &h_cpu),
        );
        let g = eng.ggn(&case.theta, 0..31).unwrap();
        let g_cpu = flat(&cpu::ggn(
            &case.mlp,
            &case.theta,
            case.x.view(),
            case.t.view(),
        ));
        assert_close(
            &format!("{loss}/{hidden} G"),
            &flat(&g),
            &g_cpu,
            scaled_to(TOL_CURVATURE, &g_cpu),
        );
    }
}

#[test]
fn chunked_products_equal_one_chunk() {
    let Some(ctx) = gpu() else { return };
    let case = Case::new(&[7, 33, 3], Activation::Sigmoid, Loss::Bce, 0.01, 31, 12);
    let v = case.vectors(3, 5);
    let mut whole = case.engine(&ctx);
    let mut chunked = case.engine(&ctx).with_max_chunk_rows(5).unwrap();
    for exact in [true, false] {
        let (a, b) = if exact {
            (
                whole.hvp_block(&case.theta, 2..29, v.view()).unwrap(),
                chunked.hvp_block(&case.theta, 2..29, v.view()).unwrap(),
            )
        } else {
            (
                whole.gvp_block(&case.theta, 2..29, v.view()).unwrap(),
                chunked.gvp_block(&case.theta, 2..29, v.view()).unwrap(),
            )
        };
        let a = flat(&a);
        // Only the summation order over chunks differs.
        assert_close(
            &format!("chunked exact={exact}"),
            &flat(&b),
            &a,
            scaled_to(TOL_CURVATURE, &a),
        );
    }
}

#[test]
fn repeated_calls_are_bitwise_identical() {
    // Reductions are fixed-order trees (no float atomics): the same call gives the same bits.
    let Some(ctx) = gpu() else { return };
    let case = Case::new(&[33, 65, 7], Activation::Tanh, Loss::Ce, 0.01, 31, 13);
    let mut eng = case.engine(&ctx);
    let v = case.vectors(3, 1);
    let first = (
        eng.loss_grad(&case.theta, 0..31).unwrap(),
        eng.hvp_block(&case.theta, 0..31, v.view()).unwrap(),
        eng.diag_ggn(&case.theta, 0..31).unwrap(),
    );
    for _ in 0..3 {
        let again = (
            eng.loss_grad(&case.theta, 0..31).unwrap(),
            eng.hvp_block(&case.theta, 0..31, v.view()).unwrap(),
            eng.diag_ggn(&case.theta, 0..31).unwrap(),
        );
        assert_eq!(first, again);
    }
}

#[test]
fn full_hessian_and_gauss_newton_every_activation_and_loss() {
    let Some(ctx) = gpu() else { return };
    let mut seed = 400;
    for loss in Loss::ALL {
        for hidden in Activation::ELEMENTWISE {
            // W = 3·4 + 4 + 4·2 + 2 = 26: one block of columns.
            let case = Case::new(&[3, 4, 2], hidden, loss, 0.01, 7, seed);
            seed += 1;
            let mut eng = case.engine(&ctx);
            let (x, t) = (case.x.view(), case.t.view());
            let h = flat(&eng.hessian(&case.theta, 0..7).unwrap());
            let h_cpu = flat(&cpu::hessian(&case.mlp, &case.theta, x, t));
            assert_close(
                &format!("{loss}/{hidden} 3-4-2 H"),
                &h,
                &h_cpu,
                scaled_to(TOL_CURVATURE, &h_cpu),
            );
            let g = flat(&eng.ggn(&case.theta, 0..7).unwrap());
            let g_cpu = flat(&cpu::ggn(&case.mlp, &case.theta, x, t));
            assert_close(
                &format!("{loss}/{hidden} 3-4-2 G"),
                &g,
                &g_cpu,
                scaled_to(TOL_CURVATURE, &g_cpu),
            );
        }
    }
}

/// One step of `products_reuse_passes_only_when_they_match`.
#[derive(Clone)]
enum Step {
    /// H·V (true) or G·V (false) at θ index, over rows.
    Products(usize, std::ops::Range<usize>, bool),
    /// The full H at θ index over rows (blocks of columns: the first computes the passes).
    Hessian(usize, std::ops::Range<usize>),
    /// Operations that run their own forward pass, at θ index.
    Loss(usize),
    DiagHessian(usize),
}

#[test]
fn products_reuse_passes_only_when_they_match() {
    // A product at the θ, rows and kind of the previous one reuses its forward and
    // backward buffers; anything else recomputes them. Each step's bits must equal a
    // fresh engine's, whatever ran before it on the kept one.
    let Some(ctx) = gpu() else { return };
    let case = Case::new(&[7, 9, 3], Activation::Tanh, Loss::Ce, 0.01, 31, 23);
    let thetas = [case.theta.clone(), case.mlp.init_params(99)];
    let v = case.vectors(3, 5);
    let all = 0..31;
    let steps = [
        Step::Products(0, all.clone(), true),
        Step::Products(0, all.clone(), true),
        // G computes no δ (the buffers keep θ1's from the step before it): H at the
        // same θ must not reuse G's passes.
        Step::Products(1, all.clone(), true),
        Step::Products(0, all.clone(), false),
        Step::Products(0, all.clone(), true),
        // Other operations overwrite the buffers (and θ) under the same key.
        Step::Loss(1),
        Step::Products(0, all.clone(), true),
        Step::DiagHessian(1),
        Step::Products(0, all.clone(), true),
        Step::Products(0, 2..29, true),
        Step::Products(0, all.clone(), true),
        Step::Products(1, all.clone(), true),
        Step::Hessian(1, all.clone()),
        Step::Products(1, all.clone(), true),
        Step::Hessian(0, all.clone()),
    ];
    let bits = |e: &mut curvature::gpu::GpuEngine, step: &Step| -> Vec<u64> {
        let f = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
        match step {
            Step::Products(i, rows, exact) => {
                let r = if *exact {
                    e.hvp_block(&thetas[*i], rows.clone(), v.view())
                } else {
                    e.gvp_block(&thetas[*i], rows.clone(), v.view())
                };
                f(&flat(&r.unwrap()))
            }
            Step::Hessian(i, rows) => f(&flat(&e.hessian(&thetas[*i], rows.clone()).unwrap())),
            Step::Loss(i) => f(&[e.loss(&thetas[*i], all.clone()).unwrap()]),
            Step::DiagHessian(i) => f(&e.diag_hessian(&thetas[*i], all.clone()).unwrap()),
        }
    };
    // Whole rows in one slice (reuse possible), then slices of 8 rows (never reused).
    for max_chunk in [None, Some(8)] {
        let engine = || {
            let e = case.engine(&ctx);
            match max_chunk {
                Some(rows) => e.with_max_chunk_rows(rows).unwrap(),
                None => e,
            }
        };
        let mut kept = engine();
        for (i, step) in steps.iter().enumerate() {
            let mut fresh = engine();
            assert!(
                bits(&mut kept, step) == bits(&mut fresh, step),
                "step {i} (chunks {max_chunk:?}): differs from a fresh engine"
            );
        }
    }
}
