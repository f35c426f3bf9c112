//! The fast CPU engine (`cpu_fast`, faer GEMM) against the f64 reference
//! (`cpu`, the specification), for every operation, on odd shapes (every
//! activation family, every loss, 1 to 4 layers of weights — 4 exercises the
//! expanded residual rows of the exact diagonal) and on the digits network,
//! in f64 (tight: only the order of summation differs) and f32 (like the GPU).
//! Each shape runs once in one chunk and once in chunks of 5 samples, so that
//! the accumulation across chunks is checked too.

use crate::common;
use common::{random_block, random_problem};
use curvature::cpu;
use curvature::cpu_fast::{FastCpuEngine, Real};
use curvature::data::load_named;
use curvature::engine::compare::{compare, Tolerance};
use curvature::{Activation, Curvature, Loss, Mlp};
use ndarray::{s, Array2, ArrayView2};
use Activation::*;

// The rows of the crate's one tolerance table (`curvature::engine::compare`, whose
// header gives each one's reason): f64 against the reference, f32 values, f32
// gradient and second-order quantities.
const TOL_F64: Tolerance = curvature::engine::compare::F64;
const TOL_F32_FORWARD: Tolerance = curvature::engine::compare::F32_VALUES;
const TOL_F32_CURVATURE: Tolerance = curvature::engine::compare::F32_CURVATURE;

/// `tol` with its abs part scaled to the largest |entry| of `reference`.
fn scaled(tol: Tolerance, reference: &[f64]) -> Tolerance {
    tol.scaled_to(reference)
}

fn check(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> f64 {
    let c = compare(got, want, scaled(tol, want));
    assert!(c.passed(), "{what}: {c}");
    // Shown with --nocapture: the margins behind the tolerances.
    eprintln!(
        "{what}: worst abs {:.2e}, worst rel {:.2e}",
        c.worst_abs, c.worst_rel
    );
    c.worst_abs
}

fn flat(a: &Array2<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

/// Every operation of an engine in precision T against the reference on rows 1..N.
fn all_ops<T: Real>(
    label: &str,
    mlp: &Mlp,
    theta: &[f64],
    x32: &Array2<f32>,
    t32: &Array2<f32>,
    max_chunk: usize,
    full: bool,
) where
    FastCpuEngine<T>: Curvature,
{
    let (forward_tol, tol) = if T::NAME == "f64" {
        (TOL_F64, TOL_F64)
    } else {
        (TOL_F32_FORWARD, TOL_F32_CURVATURE)
    };
    let n = x32.nrows();
    let rows = 1..n;
    let x = x32.mapv(f64::from);
    let t = t32.mapv(f64::from);
    let (xr, tr) = (x.slice(s![1..n, ..]), t.slice(s![1..n, ..]));
    let mut eng = FastCpuEngine::<T>::new(mlp, x32.view(), t32.view())
        .unwrap()
        .with_max_chunk(max_chunk);
    let chunks = if max_chunk == usize::MAX {
        "one chunk".to_string()
    } else {
        format!("chunks of {max_chunk}")
    };
    let what = |op: &str| format!("{label} {} {chunks} {op}", T::NAME);

    let y = eng.outputs(theta, rows.clone()).unwrap();
    check(
        &what("outputs"),
        &flat(&y),
        &flat(&cpu::outputs(mlp, theta, xr)),
        forward_tol,
    );
    let e = eng.loss(theta, rows.clone()).unwrap();
    check(
        &what("loss"),
        &[e],
        &[cpu::loss(mlp, theta, xr, tr)],
        forward_tol,
    );
    let (e, g) = eng.loss_grad(theta, rows.clone()).unwrap();
    let (e_ref, g_ref) = cpu::gradient(mlp, theta, xr, tr);
    check(&what("loss of loss_grad"), &[e], &[e_ref], forward_tol);
    check(&what("gradient"), &g, &g_ref, tol);

    // H·V and G·V of a block against the reference.
    let check_products = |eng: &mut FastCpuEngine<T>, v: ArrayView2<f64>, h: &str, g: &str| {
        let hv = eng.hvp_block(theta, rows.clone(), v).unwrap();
        let hv_ref = cpu::hvp_block(mlp, theta, xr, tr, v);
        check(&what(h), &flat(&hv), &flat(&hv_ref), tol);
        let gv = eng.gvp_block(theta, rows.clone(), v).unwrap();
        let gv_ref = cpu::gvp_block(mlp, theta, xr, tr, v);
        check(&what(g), &flat(&gv), &flat(&gv_ref), tol);
    };
    let v = random_block(3, mlp.num_params(), 11);
    check_products(&mut eng, v.view(), "Hv k=3", "Gv k=3");
    let hv1 = eng
        .hvp(theta, rows.clone(), v.row(0).as_slice().unwrap())
        .unwrap();
    check(
        &what("Hv k=1"),
        &hv1,
        &flat(&cpu::hvp_block(mlp, theta, xr, tr, v.slice(s![0..1, ..]))),
        tol,
    );

    // Unit vectors (a weight, a middle entry, the last bias) take the
    // engine's gather path instead of products with V.
    let w = mlp.num_params();
    let picks = [0, w / 2, w - 1];
    let units = Array2::from_shape_fn((3, w), |(i, p)| f64::from(u8::from(p == picks[i])));
    check_products(&mut eng, units.view(), "H e_p", "G e_p");

    let d = eng.diag_hessian(theta, rows.clone()).unwrap();
    check(
        &what("diag H"),
        &d,
        &cpu::diag_hessian(mlp, theta, xr, tr),
        tol,
    );
    let d = eng.diag_ggn(theta, rows.clone()).unwrap();
    check(&what("diag G"), &d, &cpu::diag_ggn(mlp, theta, xr, tr), tol);
    let d = eng.diag_becker_lecun(theta, rows.clone()).unwrap();
    check(
        &what("Becker-LeCun"),
        &d,
        &cpu::diag_becker_lecun(mlp, theta, xr, tr),
        tol,
    );

    if full {
        let h = eng.hessian(theta, rows.clone()).unwrap();
        check(
            &what("H"),
            &flat(&h),
            &flat(&cpu::hessian(mlp, theta, xr, tr)),
            tol,
        );
        let g = eng.ggn(theta, rows.clone()).unwrap();
        check(
            &what("G"),
            &flat(&g),
            &flat(&cpu::ggn(mlp, theta, xr, tr)),
            tol,
        );
        let o = eng.outer_product(theta, rows.clone()).unwrap();
        check(
            &what("outer product"),
            &flat(&o),
            &flat(&cpu::outer_product(mlp, theta, xr, tr)),
            tol,
        );
    }
}

// `odd_shapes_every_operation`: its cases run in `conformance.rs` (every operation, f64 and f32, one chunk and chunks of 5).
/// The digits network (64-50-10 sigmoid/softmax ce, λ = 1e-3) on the bundled
/// 1797 rows, every matrix-free operation (the full matrices are checked on the
/// small shapes above: the reference would take minutes at W = 3760).
#[test]
fn digits_network() {
    let data = load_named("digits").unwrap();
    let mlp = Mlp::with_hidden(&[64, 50, 10], Sigmoid, Loss::Ce, 1e-3).unwrap();
    let theta = mlp.init_params(3);
    all_ops::<f64>("digits", &mlp, &theta, &data.x, &data.t, usize::MAX, false);
    all_ops::<f32>("digits", &mlp, &theta, &data.x, &data.t, usize::MAX, false);
    // 1797 rows are split into parts run in parallel (data-parallel, see
    // `cpu_fast::engine::parts_for`); chunks of 333 make each part run several
    // chunks, so both accumulations (within a part, across parts) are checked.
    all_ops::<f64>("digits chunked", &mlp, &theta, &data.x, &data.t, 333, false);
}

/// The full H and G of the digits network at its real size (W = 3760, all
/// 1797 rows: several chunks, many parallel tiles of every sum), checked
/// against the engine's own block products (checked against the reference
/// above): M V for three random vectors. (Symmetry holds by construction:
/// both triangles are read from the same sums.) In f64 the two algorithms
/// differ only in summation order.
#[test]
fn digits_full_matrices_match_block_products() {
    let data = load_named("digits").unwrap();
    let mlp = Mlp::with_hidden(&[64, 50, 10], Sigmoid, Loss::Ce, 1e-3).unwrap();
    let theta = mlp.init_params(5);
    let rows = 0..data.x.nrows();
    let v = random_block(3, mlp.num_params(), 17);
    fn one<T: Real>(
        mlp: &Mlp,
        theta: &[f64],
        x: &Array2<f32>,
        t: &Array2<f32>,
        rows: std::ops::Range<usize>,
        v: &Array2<f64>,
        tol: Tolerance,
    ) where
        FastCpuEngine<T>: Curvature,
    {
        let mut eng = FastCpuEngine::<T>::new(mlp, x.view(), t.view()).unwrap();
        for exact in [true, false] {
            let (m, mv) = if exact {
                let h = eng.hessian(theta, rows.clone()).unwrap();
                (h, eng.hvp_block(theta, rows.clone(), v.view()).unwrap())
            } else {
                let g = eng.ggn(theta, rows.clone()).unwrap();
                (g, eng.gvp_block(theta, rows.clone(), v.view()).unwrap())
            };
            let name = format!("digits {} {}", T::NAME, if exact { "H" } else { "G" });
            let product = v.dot(&m.t());
            check(&format!("{name} V"), &flat(&product), &flat(&mv), tol);
        }
    }
    one::<f64>(&mlp, &theta, &data.x, &data.t, rows.clone(), &v, TOL_F64);
    one::<f32>(&mlp, &theta, &data.x, &data.t, rows, &v, TOL_F32_CURVATURE);
}

/// Block products at the θ, rows and kind of the previous one reuse its
/// forward and backward passes (`cpu_fast::engine`, Lanczos and CG call Hv
/// many times at one θ). Every result of a sequence that reuses, changes θ,
/// kind and rows, and comes back, is the same bits as a fresh engine's.
#[test]
fn block_products_reuse_passes_only_when_they_match() {
    let data = load_named("digits").unwrap();
    let mlp = Mlp::with_hidden(&[64, 50, 10], Sigmoid, Loss::Ce, 1e-3).unwrap();
    let (theta1, theta2) = (mlp.init_params(1), mlp.init_params(2));
    let v = random_block(2, mlp.num_params(), 19);
    fn run<T: Real>(
        mlp: &Mlp,
        x: &Array2<f32>,
        t: &Array2<f32>,
        max_chunk: usize,
        steps: &[(&[f64], std::ops::Range<usize>, bool)],
        v: &Array2<f64>,
    ) where
        FastCpuEngine<T>: Curvature,
    {
        let mut kept = FastCpuEngine::<T>::new(mlp, x.view(), t.view())
            .unwrap()
            .with_max_chunk(max_chunk);
        for (i, (theta, rows, exact)) in steps.iter().enumerate() {
            let mut fresh = FastCpuEngine::<T>::new(mlp, x.view(), t.view())
                .unwrap()
                .with_max_chunk(max_chunk);
            let product = |e: &mut FastCpuEngine<T>| {
                let r = if *exact {
                    e.hvp_block(theta, rows.clone(), v.view())
                } else {
                    e.gvp_block(theta, rows.clone(), v.view())
                };
                r.unwrap().iter().map(|x| x.to_bits()).collect::<Vec<u64>>()
            };
            assert!(
                product(&mut kept) == product(&mut fresh),
                "{} step {i} (chunks of at most {max_chunk}): differs from a fresh engine",
                T::NAME
            );
        }
    }
    let all = 0..data.x.nrows();
    let steps: Vec<(&[f64], std::ops::Range<usize>, bool)> = vec![
        (&theta1, all.clone(), true),
        (&theta1, all.clone(), true),
        // G at θ2 computes no h″ and no backward pass: H at θ2 must not
        // reuse θ1's.
        (&theta2, all.clone(), false),
        (&theta2, all.clone(), true),
        (&theta2, 0..1000, true),
        (&theta2, 0..1000, true),
        (&theta1, all.clone(), true),
    ];
    for max_chunk in [usize::MAX, 100] {
        run::<f64>(&mlp, &data.x, &data.t, max_chunk, &steps, &v);
        run::<f32>(&mlp, &data.x, &data.t, max_chunk, &steps, &v);
    }
}

/// Every K-FAC and Fisher quantity of the fast engine in precision T against the
/// reference, with the shared tolerance table (`compare_with_table`), in one chunk and
/// in chunks of 5 (`small`: also EKFAC and the W×W matrix, else chunks of 333);
/// records the worst error as a fraction of its tolerance per quantity.
#[allow(clippy::too_many_arguments)]
fn kfac_fisher_ops<T: Real>(
    label: &str,
    small: bool,
    mlp: &Mlp,
    theta: &[f64],
    x32: &Array2<f32>,
    t32: &Array2<f32>,
    worst: &mut std::collections::BTreeMap<String, f64>,
) where
    FastCpuEngine<T>: Curvature,
{
    use curvature::cpu::Fisher;
    use curvature::engine::compare::{compare_with_table, Checked};
    let n = x32.nrows();
    let rows = 1..n;
    let (x, t) = (x32.mapv(f64::from), t32.mapv(f64::from));
    let (xr, tr) = (x.slice(s![1..n, ..]), t.slice(s![1..n, ..]));
    let precision = T::PRECISION;
    let lambda = mlp.l2();
    let w = mlp.num_params();
    let v = random_block(2, w, 23);
    let mut record = |what: &str, got: &[f64], want: &[f64], checked: Checked| {
        let c = compare_with_table(got, want, precision, checked);
        assert!(c.passed(), "{label} {} {what}: {c}", T::NAME);
        let ratio = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / (c.tolerance.abs + c.tolerance.rel * w.abs()))
            .fold(0.0f64, f64::max);
        let key = format!("{} {what}", T::NAME);
        let e = worst.entry(key).or_insert(0.0);
        *e = e.max(ratio);
    };
    let factors_flat = |f: &cpu::KroneckerFactors| -> Vec<f64> {
        f.a.iter()
            .chain(&f.b)
            .flat_map(|m| m.iter().copied())
            .collect()
    };
    let mc = Fisher::Mc {
        samples: 3,
        seed: 9,
    };
    let chunked = if small { 5 } else { 333 };
    for max_chunk in [usize::MAX, chunked] {
        let mut eng = FastCpuEngine::<T>::new(mlp, x32.view(), t32.view())
            .unwrap()
            .with_max_chunk(max_chunk);
        for fisher in [Fisher::Exact, mc, Fisher::Empirical] {
            let name = fisher.name();
            let f = eng.kfac_factors(fisher, theta, rows.clone()).unwrap();
            let f_ref = cpu::kfac_factors(mlp, theta, xr, tr, fisher).unwrap();
            let what = format!("K-FAC factors {name}");
            record(
                &what,
                &factors_flat(&f),
                &factors_flat(&f_ref),
                Checked::Curvature,
            );
            let g = eng.fisher_vectors(fisher, theta, rows.clone()).unwrap();
            let g_ref = cpu::fisher_vectors(mlp, theta, xr, tr, fisher).unwrap();
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
            // (K + λI_w) V from the engine's factors against the reference's.
            let kv = eng
                .kfac_products(fisher, theta, rows.clone(), v.view())
                .unwrap();
            let kv_ref: Vec<f64> = v
                .rows()
                .into_iter()
                .flat_map(|v_i| {
                    let mut p = f_ref.product(&v_i.to_vec());
                    for l in mlp.layout() {
                        for q in l.weights {
                            p[q] += lambda * v_i[q];
                        }
                    }
                    p
                })
                .collect();
            record(
                &format!("K-FAC products {name}"),
                &flat(&kv),
                &kv_ref,
                Checked::Curvature,
            );
            if !small {
                continue;
            }
            let e = eng.ekfac(fisher, theta, rows.clone()).unwrap();
            // The definition in the engine's own eigenbasis (f32 bases may rotate within
            // close eigenvalues): (1/N) Σ (Q_Bᵀ G Q_A)² over the reference's vectors.
            let mut want = Vec::new();
            for (layer, basis) in e.layers.iter().zip(&e.basis) {
                let mut s_l = Array2::<f64>::zeros((layer.fan_out, layer.fan_in + 1));
                for g_r in g_ref.rows() {
                    let gm = cpu::gather(layer, g_r.as_slice().unwrap());
                    s_l += &basis.rotate(&gm).mapv(|v| v * v);
                }
                want.extend((s_l / (n - 1) as f64).iter().copied());
            }
            let got: Vec<f64> = e.scalings.iter().flat_map(|m| m.iter().copied()).collect();
            record(&format!("EKFAC {name}"), &got, &want, Checked::Curvature);
            if T::NAME == "f64" {
                let e_ref = cpu::ekfac(mlp, theta, xr, tr, fisher).unwrap();
                let want: Vec<f64> = e_ref
                    .scalings
                    .iter()
                    .flat_map(|m| m.iter().copied())
                    .collect();
                record(
                    &format!("EKFAC {name} (reference basis)"),
                    &got,
                    &want,
                    Checked::Curvature,
                );
            }
        }
        // What the face derives from the vectors, + λ where the quantity is of E.
        let ef = Fisher::Empirical;
        let fv = eng
            .fisher_products(ef, theta, rows.clone(), v.view())
            .unwrap();
        let mut want = cpu::fisher_products(mlp, theta, xr, tr, ef, v.view()).unwrap();
        for (mut row, v_i) in want.rows_mut().into_iter().zip(v.rows()) {
            for l in mlp.layout() {
                for q in l.weights {
                    row[q] += lambda * v_i[q];
                }
            }
        }
        record("efvp", &flat(&fv), &flat(&want), Checked::Curvature);
        let weight_lambda = |mut d: Vec<f64>| {
            for l in mlp.layout() {
                for q in l.weights {
                    d[q] += lambda;
                }
            }
            d
        };
        for fisher in [ef, mc] {
            let d = eng.fisher_diagonal(fisher, theta, rows.clone()).unwrap();
            let d_ref = weight_lambda(cpu::diag_fisher(mlp, theta, xr, tr, fisher).unwrap());
            record(
                &format!("diag Fisher {}", fisher.name()),
                &d,
                &d_ref,
                Checked::Curvature,
            );
        }
        if small {
            let m = eng.fisher_matrix(ef, theta, rows.clone()).unwrap();
            let mut m_ref = cpu::fisher_matrix(mlp, theta, xr, tr, ef).unwrap();
            for l in mlp.layout() {
                for q in l.weights {
                    m_ref[[q, q]] += lambda;
                }
            }
            record(
                "empirical Fisher",
                &flat(&m),
                &flat(&m_ref),
                Checked::Curvature,
            );
        }
        let var = eng.gradient_variance(theta, rows.clone()).unwrap();
        let var_ref = cpu::gradient_variance(mlp, theta, xr, tr);
        record("gradient variance", &var, &var_ref, Checked::Curvature);
        let psg = eng.per_sample_gradients(theta, rows.clone()).unwrap();
        let psg_ref = cpu::per_sample_gradients(mlp, theta, xr, tr);
        record(
            "per-sample gradients",
            &flat(&psg),
            &flat(&psg_ref),
            Checked::Gradient,
        );
    }
}

/// K-FAC factors (exact, mc, empirical), the Fisher vectors and every quantity the face
/// derives from them, fast f64 and f32 against the reference: every hidden activation
/// with every loss on odd widths (1, 7, 33), a curved output for the Gaussian samples,
/// deep nets, and the digits network (1797 rows: several parallel parts). Prints the
/// worst error as a fraction of its tolerance per quantity.
#[test]
fn kfac_and_fisher_quantities() {
    let mut worst = std::collections::BTreeMap::new();
    let mut seed = 300;
    let mut cases: Vec<(Vec<usize>, Vec<Activation>, Loss)> = Vec::new();
    for loss in Loss::ALL {
        for hidden in Activation::ELEMENTWISE {
            let out = common::output_activation(loss, Identity);
            cases.push((vec![7, 33, 3], vec![hidden, out], loss));
        }
    }
    cases.extend([
        (vec![1, 7, 1], vec![Tanh, Identity], Loss::Sse),
        (vec![33, 1, 2], vec![Sigmoid, Sigmoid], Loss::Mse),
        (vec![5, 7, 4, 3], vec![Elu, Softplus, Tanh], Loss::Sse),
        (
            vec![4, 6, 5, 7, 3],
            vec![Tanh, Relu, LeakyRelu, Softmax],
            Loss::Ce,
        ),
    ]);
    for (sizes, acts, loss) in cases {
        let (mlp, theta, x, t) = random_problem(&sizes, &acts, loss, 1e-2, 23, seed);
        seed += 1;
        let (x32, t32) = (x.mapv(|v| v as f32), t.mapv(|v| v as f32));
        let label = mlp.describe();
        kfac_fisher_ops::<f64>(&label, true, &mlp, &theta, &x32, &t32, &mut worst);
        kfac_fisher_ops::<f32>(&label, true, &mlp, &theta, &x32, &t32, &mut worst);
    }
    let data = load_named("digits").unwrap();
    let mlp = Mlp::with_hidden(&[64, 50, 10], Sigmoid, Loss::Ce, 1e-3).unwrap();
    let theta = mlp.init_params(7);
    kfac_fisher_ops::<f64>("digits", false, &mlp, &theta, &data.x, &data.t, &mut worst);
    kfac_fisher_ops::<f32>("digits", false, &mlp, &theta, &data.x, &data.t, &mut worst);
    for (what, ratio) in &worst {
        eprintln!("{what}: worst {ratio:.2e} of the tolerance");
    }
}
