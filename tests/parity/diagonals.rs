//! Parity of the diagonals (the exact diag H and the Gauss-Newton diagonal by the factor
//! recursion, Becker-LeCun) and of the outer-product matrix, GPU (f32) against the CPU
//! reference (f64), over every activation and loss, depths that take each branch of the
//! exact recursion, and chunking.

use crate::gpu_support;
use curvature::cpu;
use curvature::{Activation, Curvature, Loss, Mlp};
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

// `every_activation_and_loss`: its cases run in `conformance.rs` (the three diagonals and the outer product, with every other quantity).
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
    let Some(ctx) = gpu() else { return };
    let d = case
        .engine(&ctx)
        .diag_hessian(&case.theta, 0..1797)
        .unwrap();
    let d_cpu = cpu::diag_hessian(&case.mlp, &case.theta, case.x.view(), case.t.view());
    assert_close(
        "64-50-10 N=1797 diag H",
        &d,
        &d_cpu,
        scaled_to(TOL_CURVATURE, &d_cpu),
    );
}

#[test]
fn no_hidden_layer() {
    // One layer of weights: the output factor alone, no residual.
    for (seed, loss) in (90..).zip(Loss::ALL) {
        let case = Case::new(&[6, 4], Activation::Tanh, loss, 0.01, 19, seed);
        check_diagonals(&format!("{loss} 6-4"), &case, 0..19, true, None);
    }
}

#[test]
fn deep_networks_carry_residuals_as_factor_columns() {
    // Four and five layers of weights: the residuals of layers 2..L−2 become factor
    // columns of both signs; 17 units make two column groups of layer 2's residual.
    let mut seed = 50;
    for hidden in [Activation::Tanh, Activation::Softplus, Activation::Elu] {
        for loss in [Loss::Ce, Loss::Sse] {
            let case = Case::new(&[5, 6, 17, 4, 3], hidden, loss, 0.01, 23, seed);
            check_diagonals(
                &format!("{loss}/{hidden} 5-6-17-4-3"),
                &case,
                0..23,
                true,
                None,
            );
            let case = Case::new(&[4, 3, 5, 2, 4, 3], hidden, loss, 0.0, 9, seed + 1);
            check_diagonals(
                &format!("{loss}/{hidden} 4-3-5-2-4-3"),
                &case,
                0..9,
                true,
                None,
            );
            seed += 2;
        }
    }
}

#[test]
fn squared_error_after_a_curved_output_has_negative_output_curvature() {
    // sse/mse after a sigmoid or tanh output: h_kk = c·(h′² + (y − t)·h″) takes both
    // signs here, so the GPU needs the negative part of the output factor too.
    let mut seed = 70;
    for loss in [Loss::Sse, Loss::Mse] {
        for output in [Activation::Sigmoid, Activation::Tanh] {
            for sizes in [&[4, 3][..], &[4, 5, 3][..], &[4, 5, 6, 3][..]] {
                let mut acts = vec![Activation::Tanh; sizes.len() - 2];
                acts.push(output);
                let mlp = Mlp::new(sizes, &acts, loss, 0.01).unwrap();
                let case = Case::with_mlp(mlp, 29, seed);
                let fw = cpu::forward(&case.mlp, &case.theta, case.x.view());
                let a_out = fw.a.last().unwrap();
                let negative = (0..29).any(|n| {
                    let (a, t) = (a_out.row(n).to_vec(), case.t.row(n).to_vec());
                    let h = loss.hessian(output, &a, &t);
                    (0..3).any(|k| h[k * 3 + k] < 0.0)
                });
                assert!(negative, "{loss}/{output}: no negative h_kk to test");
                let label = format!("{loss} after {output} {sizes:?}");
                check_diagonals(&label, &case, 0..29, true, Some(8));
                seed += 1;
            }
        }
    }
}

#[test]
fn chunked_diagonals_and_outer_product() {
    let case = Case::new(&[7, 8, 3], Activation::Softplus, Loss::Ce, 0.01, 31, 21);
    check_diagonals("chunks of 4, rows 1..30", &case, 1..30, true, Some(4));
}

/// The K-FAC factors (exact, mc, empirical), the Fisher vectors of each flavour (the
/// empirical ones are the per-sample gradients) and what the face derives from them
/// (K-FAC and empirical-Fisher products, the mc diagonal, the gradient variance), GPU
/// (f32) against the reference with the shared tolerance table; records the worst
/// error as a fraction of its tolerance per quantity. `all`: the exact and mc vectors
/// and the derived quantities too (else the factors and the per-sample gradients).
fn check_kfac(
    label: &str,
    all: bool,
    case: &Case,
    rows: std::ops::Range<usize>,
    max_chunk: Option<usize>,
    worst: &mut std::collections::BTreeMap<String, f64>,
) {
    use curvature::cpu::Fisher;
    use curvature::engine::compare::{compare_with_table, Checked};
    use curvature::engine::Precision;
    let Some(ctx) = gpu() else { return };
    let mut eng = case.engine(&ctx);
    if let Some(rows) = max_chunk {
        eng = eng.with_max_chunk_rows(rows).unwrap();
    }
    let (mlp, theta) = (&case.mlp, &case.theta);
    let x = case.x.slice(s![rows.clone(), ..]);
    let t = case.t.slice(s![rows.clone(), ..]);
    let mut record = |what: &str, got: &[f64], want: &[f64], checked: Checked| {
        let c = compare_with_table(got, want, Precision::F32, checked);
        assert!(c.passed(), "{label} {what}: {c}");
        let ratio = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / (c.tolerance.abs + c.tolerance.rel * w.abs()))
            .fold(0.0f64, f64::max);
        let e = worst.entry(what.to_string()).or_insert(0.0);
        *e = e.max(ratio);
    };
    let flat_factors = |f: &cpu::KroneckerFactors| -> Vec<f64> {
        f.a.iter()
            .chain(&f.b)
            .flat_map(|m| m.iter().copied())
            .collect()
    };
    // 17 draws: two groups of VECTOR_GROUP columns.
    let mc = Fisher::Mc {
        samples: 17,
        seed: 5,
    };
    let v = case.vectors(2, 77);
    for fisher in [Fisher::Exact, mc, Fisher::Empirical] {
        let name = fisher.name();
        let f = eng.kfac_factors(fisher, theta, rows.clone()).unwrap();
        let f_ref = cpu::kfac_factors(mlp, theta, x, t, fisher).unwrap();
        let what = format!("K-FAC factors {name}");
        record(
            &what,
            &flat_factors(&f),
            &flat_factors(&f_ref),
            Checked::Curvature,
        );
        if !all && fisher != Fisher::Empirical {
            continue;
        }
        let g = eng.fisher_vectors(fisher, theta, rows.clone()).unwrap();
        let g_ref = cpu::fisher_vectors(mlp, theta, x, t, fisher).unwrap();
        let checked = if fisher == Fisher::Empirical {
            Checked::Gradient
        } else {
            Checked::Curvature
        };
        record(
            &format!("vectors {name}"),
            &flat(&g),
            &flat(&g_ref),
            checked,
        );
        let kv = eng
            .kfac_products(fisher, theta, rows.clone(), v.view())
            .unwrap();
        let mut kv_ref = curvature::engine::fisher::kfac_products(&f_ref, v.view());
        let l2 = curvature::engine::penalty::L2::of(mlp);
        l2.add_to_products(v.view(), &mut kv_ref);
        record(
            &format!("K-FAC products {name}"),
            &flat(&kv),
            &flat(&kv_ref),
            Checked::Curvature,
        );
    }
    if !all {
        return;
    }
    let l2 = curvature::engine::penalty::L2::of(mlp);
    let ef = Fisher::Empirical;
    let fv = eng
        .fisher_products(ef, theta, rows.clone(), v.view())
        .unwrap();
    let mut fv_ref = cpu::fisher_products(mlp, theta, x, t, ef, v.view()).unwrap();
    l2.add_to_products(v.view(), &mut fv_ref);
    record("efvp", &flat(&fv), &flat(&fv_ref), Checked::Curvature);
    for fisher in [mc, ef] {
        let d = eng.fisher_diagonal(fisher, theta, rows.clone()).unwrap();
        let mut d_ref = cpu::diag_fisher(mlp, theta, x, t, fisher).unwrap();
        l2.add_to_diagonal(&mut d_ref);
        record(
            &format!("diag Fisher {}", fisher.name()),
            &d,
            &d_ref,
            Checked::Curvature,
        );
    }
    let m = eng.fisher_matrix(ef, theta, rows.clone()).unwrap();
    let mut m_ref = cpu::fisher_matrix(mlp, theta, x, t, ef).unwrap();
    l2.add_to_matrix(&mut m_ref);
    record(
        "empirical Fisher",
        &flat(&m),
        &flat(&m_ref),
        Checked::Curvature,
    );
    // EKFAC's diagonal against its definition in the engine's own eigenbasis (an f32
    // basis may rotate within close eigenvalues): (1/N) Σ (Q_Bᵀ G Q_A)² over the
    // reference's vectors.
    for fisher in [Fisher::Exact, mc, ef] {
        let e = eng.ekfac(fisher, theta, rows.clone()).unwrap();
        let g_ref = cpu::fisher_vectors(mlp, theta, x, t, fisher).unwrap();
        let mut want = Vec::new();
        for (layer, basis) in e.layers.iter().zip(&e.basis) {
            let mut s_l = ndarray::Array2::<f64>::zeros((layer.fan_out, layer.fan_in + 1));
            for g_r in g_ref.rows() {
                let gm = cpu::gather(layer, &g_r.to_vec());
                s_l += &basis.rotate(&gm).mapv(|v| v * v);
            }
            want.extend((s_l / rows.len() as f64).iter().copied());
        }
        let got: Vec<f64> = e.scalings.iter().flat_map(|m| m.iter().copied()).collect();
        record(
            &format!("EKFAC {}", fisher.name()),
            &got,
            &want,
            Checked::Curvature,
        );
    }
    let var = eng.gradient_variance(theta, rows.clone()).unwrap();
    let var_ref = cpu::gradient_variance(mlp, theta, x, t);
    record("gradient variance", &var, &var_ref, Checked::Curvature);
}

#[test]
fn kfac_factors_and_fisher_vectors() {
    let mut worst = std::collections::BTreeMap::new();
    let mut seed = 500;
    for loss in Loss::ALL {
        for hidden in Activation::ELEMENTWISE {
            let case = Case::new(&[7, 33, 3], hidden, loss, 0.01, 29, seed);
            check_kfac(
                &format!("{loss}/{hidden} 7-33-3"),
                true,
                &case,
                0..29,
                None,
                &mut worst,
            );
            seed += 1;
        }
        // Width 1 in and out, a deep net in chunks of 4 rows (rows 1..22), K = 17 outputs
        // (two groups of factor columns).
        let case = Case::new(&[1, 7, 1], Activation::Tanh, loss, 0.0, 13, seed);
        check_kfac(
            &format!("{loss} 1-7-1"),
            true,
            &case,
            0..13,
            None,
            &mut worst,
        );
        let case = Case::new(
            &[5, 7, 4, 3],
            Activation::Softplus,
            loss,
            0.01,
            23,
            seed + 1,
        );
        check_kfac(
            &format!("{loss} 5-7-4-3 chunks of 4"),
            true,
            &case,
            1..22,
            Some(4),
            &mut worst,
        );
        let case = Case::new(&[3, 6, 17], Activation::Sigmoid, loss, 0.0, 9, seed + 2);
        check_kfac(
            &format!("{loss} 3-6-17"),
            true,
            &case,
            0..9,
            None,
            &mut worst,
        );
        seed += 3;
    }
    // The digits-sized network on 1797 rows.
    let case = Case::new(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3, 1797, 42);
    check_kfac("64-50-10 N=1797", false, &case, 0..1797, None, &mut worst);
    for (what, ratio) in &worst {
        println!("GPU {what}: worst {ratio:.2e} of the tolerance");
    }
}
