//! Parity of the forward and first-order operations — outputs y, loss E, gradient ∇E —
//! GPU (f32) against the CPU reference (f64), over every activation and loss, widths
//! among 1, 3, 7, 33, 65, 257 and batches 1, 2, 31, 1797; plus row ranges, chunking,
//! and numerically extreme inputs.

use crate::gpu_support;
use curvature::cpu;
use curvature::{Activation, Curvature, Loss};
use gpu_support::{assert_close, flat, gpu, scaled_to, Case, TOL_FORWARD, TOL_GRADIENT};
use ndarray::s;

/// Checks outputs, loss and gradient of `case` on rows `rows`.
fn check_case(label: &str, case: &Case, rows: std::ops::Range<usize>) {
    let Some(ctx) = gpu() else { return };
    let mut eng = case.engine(&ctx);
    let x = case.x.slice(s![rows.clone(), ..]);
    let t = case.t.slice(s![rows.clone(), ..]);
    let y = eng.outputs(&case.theta, rows.clone()).unwrap();
    let y_cpu = cpu::outputs(&case.mlp, &case.theta, x);
    assert_close(
        &format!("{label} outputs"),
        &flat(&y),
        &flat(&y_cpu),
        TOL_FORWARD,
    );
    let e = eng.loss(&case.theta, rows.clone()).unwrap();
    let (e_cpu, g_cpu) = cpu::gradient(&case.mlp, &case.theta, x, t);
    assert_close(&format!("{label} loss"), &[e], &[e_cpu], TOL_FORWARD);
    let (e2, g) = eng.loss_grad(&case.theta, rows).unwrap();
    assert_close(
        &format!("{label} loss (with gradient)"),
        &[e2],
        &[e_cpu],
        TOL_FORWARD,
    );
    assert_close(
        &format!("{label} gradient"),
        &g,
        &g_cpu,
        scaled_to(TOL_GRADIENT, &g_cpu),
    );
}

// `every_activation_and_loss_small_shapes`: its cases run in `conformance.rs` (outputs, loss and gradient, with every other quantity).
// `sse_and_mse_with_every_output_activation`: its cases run in `conformance.rs` (outputs, loss and gradient, with every other quantity).
#[test]
fn wide_layers_and_single_sample() {
    let case = Case::new(&[65, 257, 7], Activation::Sigmoid, Loss::Ce, 1e-3, 1, 7);
    check_case("65-257-7 N=1", &case, 0..1);
    let case = Case::new(&[257, 65, 1], Activation::Relu, Loss::Bce, 0.0, 2, 8);
    check_case("257-65-1 N=2", &case, 0..2);
}

#[test]
fn digits_sized_network_full_batch_and_row_ranges() {
    let case = Case::new(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3, 1797, 42);
    check_case("64-50-10 N=1797", &case, 0..1797);
    check_case("64-50-10 rows 500..531", &case, 500..531);
}

#[test]
fn extreme_logits_stay_finite() {
    // Large weights push pre-activations to ±hundreds: softmax / log-sum-exp, softplus,
    // sigmoid and tanh must use their overflow-safe forms.
    for (hidden, loss) in [
        (Activation::Tanh, Loss::Ce),
        (Activation::Softplus, Loss::Bce),
        (Activation::Elu, Loss::Sse),
        (Activation::Sigmoid, Loss::Mse),
    ] {
        let mut case = Case::new(&[7, 7, 3], hidden, loss, 0.0, 31, 9);
        for v in &mut case.theta {
            *v *= 60.0;
        }
        check_case(&format!("extreme {loss}/{hidden}"), &case, 0..31);
    }
}

#[test]
fn chunked_rows_accumulate_like_one_chunk() {
    let Some(ctx) = gpu() else { return };
    let case = Case::new(&[7, 33, 3], Activation::Tanh, Loss::Ce, 0.01, 31, 11);
    let mut whole = case.engine(&ctx);
    let mut chunked = case.engine(&ctx).with_max_chunk_rows(4).unwrap();
    assert_eq!(chunked.chunk_rows(), 4);
    let (e1, g1) = whole.loss_grad(&case.theta, 3..30).unwrap();
    let (e2, g2) = chunked.loss_grad(&case.theta, 3..30).unwrap();
    // Only the summation order differs (per-chunk partial sums): f32 roundoff only.
    assert_close("chunked loss", &[e2], &[e1], TOL_FORWARD);
    assert_close("chunked gradient", &g2, &g1, scaled_to(TOL_GRADIENT, &g1));
    let y1 = whole.outputs(&case.theta, 3..30).unwrap();
    let y2 = chunked.outputs(&case.theta, 3..30).unwrap();
    assert_eq!(
        y1, y2,
        "outputs are per row: chunking must not change a bit"
    );
}

#[test]
fn shape_errors_are_reported() {
    let Some(ctx) = gpu() else { return };
    let case = Case::new(&[3, 2], Activation::Identity, Loss::Sse, 0.0, 5, 1);
    let mut eng = case.engine(&ctx);
    assert!(eng.loss(&case.theta[1..], 0..5).is_err());
    assert!(eng.loss(&case.theta, 0..6).is_err());
    assert!(eng.loss(&case.theta, 2..2).is_err());
}
