//! Parity on the real digits data (the bundled 1797×64 set): the 64-50-10
//! sigmoid/softmax-ce network, GPU (f32) against the CPU reference (f64) on the same
//! (f32-representable) data, for every operation that is affordable at W = 3260 in CI
//! (the full H, G, exact diagonal and outer product are checked on small nets elsewhere).

use crate::gpu_support;
use curvature::cpu;
use curvature::data::load_named;
use curvature::{Activation, Curvature, Loss, Mlp};
use gpu_support::{
    assert_close, flat, gpu, scaled_to, Case, TOL_CURVATURE, TOL_FORWARD, TOL_GRADIENT,
};

#[test]
fn digits_64_50_10() {
    let Some(ctx) = gpu() else { return };
    let data = load_named("digits").expect("bundled digits");
    let mlp = Mlp::with_hidden(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3).unwrap();
    let case = Case {
        theta: mlp.init_params(3),
        mlp,
        x: data.x.mapv(f64::from),
        t: data.t.mapv(f64::from),
    };
    let n = case.x.nrows();
    assert_eq!(n, 1797);
    let (x, t) = (case.x.view(), case.t.view());
    let mut eng = case.engine(&ctx);

    let y = eng.outputs(&case.theta, 0..n).unwrap();
    assert_close(
        "digits outputs",
        &flat(&y),
        &flat(&cpu::outputs(&case.mlp, &case.theta, x)),
        TOL_FORWARD,
    );
    let (e, g) = eng.loss_grad(&case.theta, 0..n).unwrap();
    let (e_cpu, g_cpu) = cpu::gradient(&case.mlp, &case.theta, x, t);
    assert_close("digits loss", &[e], &[e_cpu], TOL_FORWARD);
    assert_close(
        "digits gradient",
        &g,
        &g_cpu,
        scaled_to(TOL_GRADIENT, &g_cpu),
    );

    let v = case.vectors(4, 9);
    let hv = eng.hvp_block(&case.theta, 0..n, v.view()).unwrap();
    let hv_cpu = flat(&cpu::hvp_block(&case.mlp, &case.theta, x, t, v.view()));
    assert_close(
        "digits Hv k=4",
        &flat(&hv),
        &hv_cpu,
        scaled_to(TOL_CURVATURE, &hv_cpu),
    );
    let gv = eng.gvp_block(&case.theta, 0..n, v.view()).unwrap();
    let gv_cpu = flat(&cpu::gvp_block(&case.mlp, &case.theta, x, t, v.view()));
    assert_close(
        "digits Gv k=4",
        &flat(&gv),
        &gv_cpu,
        scaled_to(TOL_CURVATURE, &gv_cpu),
    );

    let d = eng.diag_ggn(&case.theta, 0..n).unwrap();
    let d_cpu = cpu::diag_ggn(&case.mlp, &case.theta, x, t);
    assert_close(
        "digits diag G",
        &d,
        &d_cpu,
        scaled_to(TOL_CURVATURE, &d_cpu),
    );
    let d = eng.diag_becker_lecun(&case.theta, 0..n).unwrap();
    let d_cpu = cpu::diag_becker_lecun(&case.mlp, &case.theta, x, t);
    assert_close(
        "digits Becker-LeCun",
        &d,
        &d_cpu,
        scaled_to(TOL_CURVATURE, &d_cpu),
    );
}
