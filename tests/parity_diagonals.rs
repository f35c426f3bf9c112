//! Parity of the diagonals (exact diag H from column blocks, Gauss-Newton diagonal by the
//! factored method, Becker-LeCun) and of the outer-product matrix, GPU (f32) against the
//! CPU reference (f64), over every activation and loss, with chunking.

mod gpu_support;

use curvature::cpu;
use curvature::{Activation, Curvature, Loss};
use gpu_support::{assert_close, flat, gpu, scaled_to, Case, TOL_CURVATURE};
use ndarray::s;

fn check_diagonals(
    label: &str,
    case: &Case,
    rows: std::ops::Range<usize>,
    with_exact: bool,
    max_chunk: Option<usize>,
) {
    let Some(ctx) = gpu() else { return };
    let mut eng = case.engine(&ctx);
    if let Some(rows) = max_chunk {
        eng = eng.with_max_chunk_rows(rows).unwrap();
    }
    let x = case.x.slice(s![rows.clone(), ..]);
    let t = case.t.slice(s![rows.clone(), ..]);
    let tol = |c: &[f64]| scaled_to(TOL_CURVATURE, c);
    let d = eng.diag_ggn(&case.theta, rows.clone()).unwrap();
    let d_cpu = cpu::diag_ggn(&case.mlp, &case.theta, x, t);
    assert_close(&format!("{label} diag G"), &d, &d_cpu, tol(&d_cpu));
    let d = eng.diag_becker_lecun(&case.theta, rows.clone()).unwrap();
    let d_cpu = cpu::diag_becker_lecun(&case.mlp, &case.theta, x, t);
    assert_close(&format!("{label} Becker-LeCun"), &d, &d_cpu, tol(&d_cpu));
    if with_exact {
        let d = eng.diag_hessian(&case.theta, rows.clone()).unwrap();
        let d_cpu = cpu::diag_hessian(&case.mlp, &case.theta, x, t);
        assert_close(&format!("{label} diag H"), &d, &d_cpu, tol(&d_cpu));
        let g = eng.outer_product(&case.theta, rows).unwrap();
        let g_cpu = flat(&cpu::outer_product(&case.mlp, &case.theta, x, t));
        assert_close(
            &format!("{label} outer product"),
            &flat(&g),
            &g_cpu,
            tol(&g_cpu),
        );
    }
}

#[test]
fn every_activation_and_loss() {
    let mut seed = 1;
    for loss in Loss::ALL {
        for hidden in Activation::ELEMENTWISE {
            let case = Case::new(&[7, 3, 3], hidden, loss, 0.01, 31, seed);
            check_diagonals(
                &format!("{loss}/{hidden} 7-3-3 N=31"),
                &case,
                0..31,
                true,
                None,
            );
            let case = Case::new(&[3, 7, 1, 3], hidden, loss, 0.0, 2, seed + 1000);
            check_diagonals(
                &format!("{loss}/{hidden} 3-7-1-3 N=2"),
                &case,
                0..2,
                true,
                None,
            );
            seed += 1;
        }
    }
}

#[test]
fn more_outputs_than_a_vector_group() {
    // K = 17 > VECTOR_GROUP: the factor columns come in two groups.
    let case = Case::new(&[3, 7, 17], Activation::Tanh, Loss::Ce, 0.01, 31, 3);
    check_diagonals("ce K=17", &case, 0..31, true, None);
    let case = Case::new(&[3, 7, 17], Activation::Sigmoid, Loss::Bce, 0.0, 2, 4);
    check_diagonals("bce K=17", &case, 0..2, true, None);
}

#[test]
fn digits_sized_network_fast_diagonals() {
    let case = Case::new(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3, 1797, 42);
    check_diagonals("64-50-10 N=1797", &case, 0..1797, false, None);
}

#[test]
fn chunked_diagonals_and_outer_product() {
    let case = Case::new(&[7, 8, 3], Activation::Softplus, Loss::Ce, 0.01, 31, 21);
    check_diagonals("chunks of 4, rows 1..30", &case, 1..30, true, Some(4));
}
