//! The Laplace approximation's structures and subsets (`analysis::laplace`): kron
//! equals full where K-FAC is exact, and is the dense Kronecker posterior elsewhere;
//! the layerwise prior's MacKay fixed point is a stationary point of the log evidence;
//! the last-layer posterior is the full one restricted to the last layer's parameters.

use crate::common;
use common::{random_problem, random_vector};
use curvature::analysis::dense;
use curvature::analysis::laplace::{output_jacobians, LaplaceFit, Structure, Subset};
use curvature::cpu::Fisher;
use curvature::engine::{Curvature, DataTerm, ReferenceEngine};
use curvature::{Activation, Loss, Mlp};
use ndarray::{s, Array1, Array2};

/// Two f64 evaluations of one log-determinant, variance or evidence through different
/// factorisations (eigen vs Cholesky, Kronecker vs dense) of a matrix with κ ≲ 10⁷:
/// ~κ·ε relative; 1e-8 leaves a decade.
const SAME_REL: f64 = 1e-8;
/// MacKay's layerwise update stops at a relative change of 1e-11; the gradient there
/// is ~1e-11 of its terms P_l/(2α_l); 1e-8 leaves room for the Cholesky traces.
const STATIONARY_REL: f64 = 1e-8;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

fn engine_of(mlp: &Mlp, x: &Array2<f64>, t: &Array2<f64>) -> (ReferenceEngine, Array2<f64>) {
    let x32 = x.mapv(|v| v as f32);
    let engine = ReferenceEngine::new(mlp, x32.view(), t.mapv(|v| v as f32).view()).unwrap();
    (engine, x32.mapv(f64::from))
}

/// A (|S|, |S|) dense: N·C + D(α) over the fit's groups.
fn with_prior(fit: &LaplaceFit, curvature: &Array2<f64>, alphas: &[f64]) -> Array2<f64> {
    let mut a = curvature * fit.n as f64;
    for (g, r) in fit.groups.iter().enumerate() {
        for p in r.clone() {
            let q = p - fit.range.start;
            a[[q, q]] += alphas[g];
        }
    }
    a
}

/// J (M·K, |S|) A⁻¹ Jᵀ's diagonal as (M, K).
fn variances(j: &Array2<f64>, a: &Array2<f64>, m: usize, k: usize) -> Array2<f64> {
    let inv = dense::cholesky_inverse(a, 0.0).unwrap();
    let cov = j.dot(&inv).dot(&j.t());
    Array2::from_shape_fn((m, k), |(n, c)| cov[[n * k + c, n * k + c]])
}

fn the_data_ggn(engine: &mut ReferenceEngine, theta: &[f64], n: usize) -> Array2<f64> {
    DataTerm::of(engine).unwrap().ggn(theta, 0..n).unwrap()
}

#[test]
fn kron_equals_full_where_kfac_is_exact() {
    // One softmax layer and one input row repeated with different labels:
    // G = (1/N) Σ_n B_n ⊗ z̃z̃ᵀ = B ⊗ A exactly.
    let (mlp, theta, x, _) =
        random_problem(&[3, 4], &[Activation::Softmax], Loss::Ce, 0.01, 12, 21);
    let x = Array2::from_shape_fn(x.dim(), |(_, j)| x[[0, j]]);
    let t = Array2::from_shape_fn((12, 4), |(n, k)| f64::from(u8::from(n % 4 == k)));
    let (mut engine, _) = engine_of(&mlp, &x, &t);
    let g = the_data_ggn(&mut engine, &theta, 12);
    let k = engine
        .kfac_factors(Fisher::Exact, &theta, 0..12)
        .unwrap()
        .matrix();
    let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(g
        .iter()
        .zip(&k)
        .all(|(a, b)| (a - b).abs() <= 1e-13 * scale));
    let full =
        LaplaceFit::fit_with(&mut engine, &theta, 0..12, Structure::Full, Subset::All).unwrap();
    let kron = LaplaceFit::fit_with(
        &mut engine,
        &theta,
        0..12,
        Structure::Kron(Fisher::Exact),
        Subset::All,
    )
    .unwrap();
    for alpha in [0.05, 0.7, 3.0] {
        assert!(close(
            full.log_evidence(alpha),
            kron.log_evidence(alpha),
            SAME_REL
        ));
        assert!(close(
            full.effective_parameters(alpha),
            kron.effective_parameters(alpha),
            SAME_REL
        ));
    }
    let (a_full, _) = full.optimise_alpha(1.0).unwrap();
    let (a_kron, _) = kron.optimise_alpha(1.0).unwrap();
    assert!(close(a_full, a_kron, 1e-7), "{a_full} vs {a_kron}");
    let x_new = Array2::from_shape_fn((6, 3), |(i, j)| (i as f64 - 2.5) * 0.3 + j as f64 * 0.1);
    let (pf, pk) = (full.project(x_new.view()), kron.project(x_new.view()));
    let (vf, vk) = (
        full.output_variances(&pf, a_full),
        kron.output_variances(&pk, a_full),
    );
    for (a, b) in vf.iter().zip(&vk) {
        assert!(close(*a, *b, SAME_REL), "variance {a} vs {b}");
    }
    let (p1, p2) = (
        full.probit_predictive(&pf, a_full),
        kron.probit_predictive(&pk, a_full),
    );
    assert!(p1.iter().zip(&p2).all(|(a, b)| (a - b).abs() <= 1e-10));
}

#[test]
fn kron_is_the_dense_kronecker_posterior_with_a_prior_per_layer() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 5, 3],
        &[Activation::Tanh, Activation::Softmax],
        Loss::Ce,
        0.01,
        40,
        22,
    );
    let (mut engine, x64) = engine_of(&mlp, &x, &t);
    for fisher in [
        Fisher::Exact,
        Fisher::Empirical,
        Fisher::Mc {
            samples: 1,
            seed: 3,
        },
    ] {
        let fit = LaplaceFit::fit_with(
            &mut engine,
            &theta,
            0..40,
            Structure::Kron(fisher),
            Subset::All,
        )
        .unwrap();
        let k = engine.kfac_factors(fisher, &theta, 0..40).unwrap().matrix();
        let alphas = [0.4, 2.5];
        let a = with_prior(&fit, &k, &alphas);
        let want = dense::log_det(&a, 0.0).unwrap();
        let got = fit.log_det_precision(&alphas).unwrap();
        assert!(
            close(got, want, SAME_REL),
            "{fisher:?}: ln|A| {got} vs {want}"
        );
        let inv = dense::cholesky_inverse(&a, 0.0).unwrap();
        let traces = fit.group_traces(&alphas).unwrap();
        for (g, r) in fit.groups.iter().enumerate() {
            let want: f64 = r.clone().map(|p| inv[[p, p]]).sum();
            assert!(close(traces[g], want, SAME_REL));
        }
        let posterior = fit.posterior(&alphas).unwrap();
        let proj = posterior.project(x64.view());
        let v = posterior.output_variances(&proj);
        let j = output_jacobians(&mlp, &theta, x64.view());
        let want = variances(&j, &a, 40, 3);
        for (g, w) in v.iter().zip(&want) {
            assert!(close(*g, *w, SAME_REL), "{fisher:?}: variance {g} vs {w}");
        }
    }
}

#[test]
fn the_layerwise_prior_fixed_point_is_stationary_for_the_log_evidence() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 6, 5, 3],
        &[Activation::Tanh, Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        0.01,
        50,
        23,
    );
    let (mut engine, _) = engine_of(&mlp, &x, &t);
    for structure in [
        Structure::Full,
        Structure::Diagonal,
        Structure::Kron(Fisher::Exact),
    ] {
        let fit = LaplaceFit::fit_with(&mut engine, &theta, 0..50, structure, Subset::All).unwrap();
        assert_eq!(fit.groups.len(), 3);
        // One α in every group is the scalar prior.
        let uniform = fit.uniform(0.8);
        assert!(close(
            fit.log_evidence_layerwise(&uniform).unwrap(),
            fit.log_evidence(0.8),
            1e-12
        ));
        let sum: f64 = fit.gradient_log_evidence(&uniform).unwrap().iter().sum();
        assert!(close(sum, fit.d_log_evidence(0.8), 1e-10));
        let (scalar, _) = fit.optimise_alpha(1.0).unwrap();
        let (alphas, _) = fit.optimise_layerwise(&fit.uniform(1.0)).unwrap();
        let grad = fit.gradient_log_evidence(&alphas).unwrap();
        let here = fit.log_evidence_layerwise(&alphas).unwrap();
        for (l, (&a, &d)) in alphas.iter().zip(&grad).enumerate() {
            let scale = fit.group_sizes()[l] as f64 / (2.0 * a);
            assert!(
                d.abs() <= STATIONARY_REL * scale,
                "{structure}: ∂/∂α_{l} = {d:e} at α_l = {a}"
            );
            // Central differences of the evidence agree (zero there) …
            let h = 1e-4 * a;
            let at = |delta: f64| {
                let mut b = alphas.clone();
                b[l] += delta;
                fit.log_evidence_layerwise(&b).unwrap()
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!(fd.abs() <= 1e-5 * scale, "{structure}: differences {fd:e}");
            // … and it is a maximum along each α_l.
            assert!(at(0.1 * a) < here && at(-0.1 * a) < here);
        }
        // The analytic gradient away from the optimum matches central differences.
        let off: Vec<f64> = alphas.iter().map(|a| 1.3 * a).collect();
        let d_off = fit.gradient_log_evidence(&off).unwrap();
        for l in 0..3 {
            let h = 1e-4 * off[l];
            let mut plus = off.clone();
            let mut minus = off.clone();
            plus[l] += h;
            minus[l] -= h;
            let fd = (fit.log_evidence_layerwise(&plus).unwrap()
                - fit.log_evidence_layerwise(&minus).unwrap())
                / (2.0 * h);
            assert!(
                (d_off[l] - fd).abs() <= 1e-5 * d_off[l].abs().max(1e-3),
                "{structure}: ∂/∂α_{l} {} vs differences {fd}",
                d_off[l]
            );
        }
        // More freedom, no less evidence.
        assert!(here >= fit.log_evidence(scalar) - 1e-9 * here.abs());
    }
}

#[test]
fn a_full_posterior_with_a_prior_per_layer_is_the_dense_one() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 5, 3],
        &[Activation::Tanh, Activation::Softmax],
        Loss::Ce,
        0.01,
        30,
        24,
    );
    let (mut engine, x64) = engine_of(&mlp, &x, &t);
    let g = the_data_ggn(&mut engine, &theta, 30);
    let fit =
        LaplaceFit::fit_with(&mut engine, &theta, 0..30, Structure::Full, Subset::All).unwrap();
    let alphas = [0.3, 4.0];
    let a = with_prior(&fit, &g, &alphas);
    assert!(close(
        fit.log_det_precision(&alphas).unwrap(),
        dense::log_det(&a, 0.0).unwrap(),
        SAME_REL
    ));
    let posterior = fit.posterior(&alphas).unwrap();
    let proj = posterior.project(x64.view());
    let want = variances(&output_jacobians(&mlp, &theta, x64.view()), &a, 30, 3);
    for (g, w) in posterior.output_variances(&proj).iter().zip(&want) {
        assert!(close(*g, *w, SAME_REL), "variance {g} vs {w}");
    }
    // A draw is θ* + A^(−½) z: (θ − θ*)ᵀ A (θ − θ*) = ‖z‖².
    let z = random_vector(theta.len(), 7);
    let d = Array1::from_iter(posterior.sample(&z).iter().zip(&theta).map(|(a, b)| a - b));
    let quad = d.dot(&a.dot(&d));
    let zz: f64 = z.iter().map(|v| v * v).sum();
    assert!(close(quad, zz, SAME_REL), "{quad} vs {zz}");
}

#[test]
fn the_last_layer_posterior_is_the_full_one_restricted_to_the_last_layer() {
    let (mlp, theta, x, t) = random_problem(
        &[4, 6, 3],
        &[Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        0.01,
        40,
        25,
    );
    let (mut engine, x64) = engine_of(&mlp, &x, &t);
    let last = mlp.layout().last().cloned().unwrap();
    let ll = last.weights.start..last.bias.end;
    let g = the_data_ggn(&mut engine, &theta, 40);
    let g_ll = g.slice(s![ll.clone(), ll.clone()]).to_owned();
    let fit = LaplaceFit::fit_with(
        &mut engine,
        &theta,
        0..40,
        Structure::Full,
        Subset::LastLayer,
    )
    .unwrap();
    assert_eq!(fit.range, ll);
    assert_eq!(fit.num_subset(), 6 * 3 + 3);
    let alpha = 0.9;
    let a = with_prior(&fit, &g_ll, &[alpha]);
    let theta_ll = &theta[ll.clone()];
    let sq: f64 = theta_ll.iter().map(|v| v * v).sum();
    let nll = 40.0 * engine.loss(&theta, 0..40).unwrap()
        - 40.0
            * 0.5
            * mlp.l2()
            * mlp
                .weight_mask()
                .iter()
                .zip(&theta)
                .map(|(m, v)| m * v * v)
                .sum::<f64>();
    let want = -nll - 0.5 * alpha * sq - 0.5 * dense::log_det(&a, 0.0).unwrap()
        + 0.5 * ll.len() as f64 * alpha.ln();
    assert!(
        close(fit.log_evidence(alpha), want, 1e-10),
        "{} vs {want}",
        fit.log_evidence(alpha)
    );
    let j = output_jacobians(&mlp, &theta, x64.view());
    let j_ll = j.slice(s![.., ll.clone()]).to_owned();
    let want = variances(&j_ll, &a, 40, 3);
    let proj = fit.project(x64.view());
    for (g, w) in fit.output_variances(&proj, alpha).iter().zip(&want) {
        assert!(close(*g, *w, SAME_REL), "variance {g} vs {w}");
    }
    // A draw moves only the last layer's parameters.
    let z = random_vector(ll.len(), 8);
    let drawn = fit.sample(alpha, &z);
    assert_eq!(&drawn[..ll.start], &theta[..ll.start]);
    assert!(drawn[ll.clone()] != theta[ll.clone()]);
    // The diagonal and kron last-layer posteriors are the all-layer ones' last blocks.
    let diag_all =
        LaplaceFit::fit_with(&mut engine, &theta, 0..40, Structure::Diagonal, Subset::All).unwrap();
    let diag_ll = LaplaceFit::fit_with(
        &mut engine,
        &theta,
        0..40,
        Structure::Diagonal,
        Subset::LastLayer,
    )
    .unwrap();
    let kron = Structure::Kron(Fisher::Exact);
    let kron_all = LaplaceFit::fit_with(&mut engine, &theta, 0..40, kron, Subset::All).unwrap();
    let kron_ll =
        LaplaceFit::fit_with(&mut engine, &theta, 0..40, kron, Subset::LastLayer).unwrap();
    // Both are block-diagonal by layer: the last block's terms do not see the first.
    for (all, one) in [(&diag_all, &diag_ll), (&kron_all, &kron_ll)] {
        let first = 0.5;
        let trace_all = all.group_traces(&[first, alpha]).unwrap()[1];
        let trace_one = one.group_traces(&[alpha]).unwrap()[0];
        assert!(close(trace_all, trace_one, 1e-12));
        let det_all = all.log_det_precision(&[first, alpha]).unwrap()
            - all.log_det_precision(&[first, 1.0]).unwrap();
        let det_one =
            one.log_det_precision(&[alpha]).unwrap() - one.log_det_precision(&[1.0]).unwrap();
        assert!(close(det_all, det_one, 1e-10), "{det_all} vs {det_one}");
        // So the layerwise optimum's last α is the last-layer posterior's α*.
        let (alphas, _) = all.optimise_layerwise(&[1.0, 1.0]).unwrap();
        let (alpha_one, _) = one.optimise_alpha(1.0).unwrap();
        assert!(
            close(alphas[1], alpha_one, 1e-9),
            "{alphas:?} vs {alpha_one}"
        );
    }
}
