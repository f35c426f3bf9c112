//! The reference for per-sample gradients, the Fisher family, K-FAC and EKFAC
//! (src/cpu/fisher.rs, src/cpu/kfac.rs), each checked against an independent
//! construction or a theorem that fails if the code is wrong: finite
//! differences, cpu::ggn, dense matrices assembled here, Kronecker exactness
//! where it holds (and its failure where it does not), Monte-Carlo convergence
//! at the rate 1/√S, and EKFAC's definition as the diagonal in the eigenbasis.

use crate::common;
use common::{assert_close, random_block, random_problem, random_vector};
use curvature::analysis::dense::eigenvalues;
use curvature::cpu::{
    diag_fisher, diag_ggn, ekfac, fisher_matrix, fisher_products, gather, ggn, gradient,
    gradient_variance, kfac_factors, loss, per_sample_gradients, scatter, Damping, Fisher,
    KroneckerFactors,
};
use curvature::{Activation, LayerLayout, Loss, Mlp};
use ndarray::{s, Array2};
use Activation::*;

type Problem = (Mlp, Vec<f64>, Array2<f64>, Array2<f64>);

/// Small nets, widths multiples of nothing, every loss, mixed activations.
fn nets() -> Vec<(Vec<usize>, Vec<Activation>, Loss)> {
    vec![
        (vec![3, 5, 4], vec![Tanh, Softmax], Loss::Ce),
        (vec![4, 7, 3, 2], vec![Sigmoid, Elu, Identity], Loss::Sse),
        (vec![4, 7, 3, 2], vec![Softplus, Tanh, Sigmoid], Loss::Bce),
        (vec![3, 5, 4], vec![LeakyRelu, Tanh], Loss::Mse),
        (vec![5, 3, 3], vec![Elu, Softplus], Loss::Sse),
    ]
}

fn problem(i: usize, n: usize, l2: f64) -> Problem {
    let all = nets();
    let (sizes, acts, loss) = &all[i];
    random_problem(sizes, acts, *loss, l2, n, 100 + i as u64)
}

const MC: Fisher = Fisher::Mc {
    samples: 7,
    seed: 42,
};
const FLAVOURS: [Fisher; 3] = [Fisher::Exact, MC, Fisher::Empirical];

/// Two f64 results of different summation orders over O(1) terms.
const EXACT_TOL: f64 = 1e-10;

/// Layer l's diagonal block of a (W, W) matrix, in θ's order.
fn block(m: &Array2<f64>, layer: &LayerLayout) -> Array2<f64> {
    let r = layer.weights.start..layer.bias.end;
    m.slice(s![r.clone(), r]).to_owned()
}

fn flat(m: &Array2<f64>) -> Vec<f64> {
    m.iter().copied().collect()
}

/// ‖a − b‖₂ / ‖b‖₂ of two vectors.
fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|v| v * v).sum();
    (diff / norm).sqrt()
}

/// ‖a − b‖_F / ‖b‖_F.
fn rel_frobenius(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    rel_l2(&flat(a), &flat(b))
}

/// The dense K (W, W) assembled here, independently of kfac.rs: per layer the
/// Kronecker product kron(B, A) on the row-major vec of V = [V_W | v_b], then
/// each row-major index (j, i) moved to its place in θ.
fn kron_in_theta(
    layers: &[LayerLayout],
    w: usize,
    pair: impl Fn(usize) -> (Array2<f64>, Array2<f64>),
) -> Array2<f64> {
    let mut m = Array2::zeros((w, w));
    for (l, layer) in layers.iter().enumerate() {
        let (a, b) = pair(l);
        let cols = layer.fan_in + 1;
        let place = |p: usize| {
            let (j, i) = (p / cols, p % cols);
            if i < layer.fan_in {
                layer.weights.start + j * layer.fan_in + i
            } else {
                layer.bias.start + j
            }
        };
        let size = layer.fan_out * cols;
        for p in 0..size {
            for q in 0..size {
                let kron = b[[p / cols, q / cols]] * a[[p % cols, q % cols]];
                m[[place(p), place(q)]] = kron;
            }
        }
    }
    m
}

fn kfac_dense(f: &KroneckerFactors, w: usize) -> Array2<f64> {
    kron_in_theta(&f.layers, w, |l| (f.a[l].clone(), f.b[l].clone()))
}

fn identity_plus(m: &Array2<f64>, gamma: f64) -> Array2<f64> {
    m + &(Array2::<f64>::eye(m.nrows()) * gamma)
}

fn rows(x: &Array2<f64>, n: usize) -> Array2<f64> {
    x.slice(s![n..n + 1, ..]).to_owned()
}

/// Σ_n g_n = N ∇E_data, and each g_n equals central differences of E_n alone;
/// λ of the model is ignored (the data term only).
#[test]
fn per_sample_gradients_sum_to_the_gradient_and_match_finite_differences() {
    let n = 5;
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, n, 0.05);
        let mlp0 = mlp.with_l2(0.0).unwrap();
        let g = per_sample_gradients(&mlp, &theta, x.view(), t.view()); // (N, W)
        assert_eq!(g.dim(), (n, mlp.num_params()));
        let (_, grad) = gradient(&mlp0, &theta, x.view(), t.view());
        let sum: Vec<f64> = g.sum_axis(ndarray::Axis(0)).to_vec();
        let want: Vec<f64> = grad.iter().map(|v| v * n as f64).collect();
        assert_close(
            &sum,
            &want,
            1e-12,
            1e-12,
            &format!("{} Σ g_n", mlp.describe()),
        );
        let eps = 1e-5;
        for row in 0..n {
            let (x_n, t_n) = (rows(&x, row), rows(&t, row));
            let fd: Vec<f64> = (0..theta.len())
                .map(|p| {
                    let (mut tp, mut tm) = (theta.clone(), theta.clone());
                    tp[p] += eps;
                    tm[p] -= eps;
                    (loss(&mlp0, &tp, x_n.view(), t_n.view())
                        - loss(&mlp0, &tm, x_n.view(), t_n.view()))
                        / (2.0 * eps)
                })
                .collect();
            let what = format!("{} g_{row} vs central differences", mlp.describe());
            assert_close(&g.row(row).to_vec(), &fd, 1e-8, 1e-6, &what);
        }
    }
}

/// F = (1/N) Σ g gᵀ from the per-sample gradients; its diagonal and products
/// agree with it; every flavour is symmetric PSD; `exact` equals cpu::ggn (λ = 0).
#[test]
fn fisher_matrices_products_and_diagonals_agree() {
    let n = 6;
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, n, 0.05);
        let (xv, tv) = (x.view(), t.view());
        let name = mlp.describe();
        let g = per_sample_gradients(&mlp, &theta, xv, tv);
        let by_hand = g.t().dot(&g) / n as f64;
        let f_emp = fisher_matrix(&mlp, &theta, xv, tv, Fisher::Empirical).unwrap();
        assert_close(&flat(&f_emp), &flat(&by_hand), 1e-13, 1e-12, &name);
        let mean_sq = g.mapv(|v| v * v).sum_axis(ndarray::Axis(0)) / n as f64;
        let d_emp = diag_fisher(&mlp, &theta, xv, tv, Fisher::Empirical).unwrap();
        assert_close(&d_emp, &mean_sq.to_vec(), 1e-13, 1e-12, &name);

        let g0 = ggn(&mlp.with_l2(0.0).unwrap(), &theta, xv, tv);
        let f_exact = fisher_matrix(&mlp, &theta, xv, tv, Fisher::Exact).unwrap();
        assert_close(&flat(&f_exact), &flat(&g0), EXACT_TOL, EXACT_TOL, &name);

        let v = random_block(3, mlp.num_params(), i as u64);
        for fisher in FLAVOURS {
            let what = format!("{name} {}", fisher.name());
            let f = fisher_matrix(&mlp, &theta, xv, tv, fisher).unwrap();
            let fv = fisher_products(&mlp, &theta, xv, tv, fisher, v.view()).unwrap();
            let dense = v.dot(&f.t()); // row i = F vᵢ
            assert_close(&flat(&fv), &flat(&dense), 1e-12, 1e-10, &what);
            let d = diag_fisher(&mlp, &theta, xv, tv, fisher).unwrap();
            assert_close(&d, &f.diag().to_vec(), 1e-13, 1e-12, &what);
            assert_close(&flat(&f), &flat(&f.t().to_owned()), 1e-14, 0.0, &what);
            let ev = eigenvalues(&f).unwrap();
            let top = ev.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                ev[0] >= -1e-12 * top,
                "{what}: λ_min {:e} (top {top:e})",
                ev[0]
            );
        }
    }
}

/// One layer of weights whose output Hessian is the same for every sample
/// (sse/mse with an identity output): G = A ⊗ B exactly, for one output or
/// several. Where B varies with n (a hidden layer, bce's σ(1 − σ), ce's
/// diag(p) − ppᵀ) the Kronecker factorisation is an approximation and differs.
#[test]
fn exact_kfac_is_the_gauss_newton_block_where_the_factorisation_is_exact() {
    let exact: [(&[usize], Activation, Loss); 3] = [
        (&[5, 1], Identity, Loss::Sse),
        (&[4, 3], Identity, Loss::Sse),
        (&[6, 2], Identity, Loss::Mse),
    ];
    for (k, (sizes, act, loss)) in exact.into_iter().enumerate() {
        let (mlp, theta, x, t) = random_problem(sizes, &[act], loss, 0.0, 9, 300 + k as u64);
        let f = kfac_factors(&mlp, &theta, x.view(), t.view(), Fisher::Exact).unwrap();
        let g = ggn(&mlp, &theta, x.view(), t.view());
        let what = format!("{} exact K-FAC vs G", mlp.describe());
        assert_close(&flat(&f.matrix()), &flat(&g), EXACT_TOL, EXACT_TOL, &what);
    }
    let inexact: [(&[usize], &[Activation], Loss); 4] = [
        (&[4, 3, 1], &[Tanh, Identity], Loss::Sse),
        (&[5, 1], &[Sigmoid], Loss::Bce),
        (&[4, 3], &[Softmax], Loss::Ce),
        (&[3, 2], &[Tanh], Loss::Sse),
    ];
    for (k, (sizes, acts, loss)) in inexact.into_iter().enumerate() {
        let (mlp, theta, x, t) = random_problem(sizes, acts, loss, 0.0, 9, 310 + k as u64);
        let f = kfac_factors(&mlp, &theta, x.view(), t.view(), Fisher::Exact).unwrap();
        let g = ggn(&mlp, &theta, x.view(), t.view());
        // The worst layer: a 2-layer sse net with an identity output has an exact
        // last layer (B = I) but not an exact first one.
        let err = mlp
            .layout()
            .iter()
            .enumerate()
            .map(|(l, layer)| rel_frobenius(&f.layer_matrix(l), &block(&g, layer)))
            .fold(0.0, f64::max);
        assert!(
            err > 1e-3,
            "{}: K-FAC unexpectedly exact ({err:e})",
            mlp.describe()
        );
    }
}

/// With N = 1 every flavour's A ⊗ B is its Fisher's block for every layer
/// (Σ_r s_r s_rᵀ ⊗ z̃ z̃ᵀ with one z̃): exact ↔ G, empirical ↔ the empirical
/// Fisher, mc ↔ the mc Fisher with the same seed (so the two share the samples).
#[test]
fn one_sample_makes_every_kronecker_factorisation_exact() {
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, 1, 0.0);
        let (xv, tv) = (x.view(), t.view());
        for fisher in FLAVOURS {
            let f = kfac_factors(&mlp, &theta, xv, tv, fisher).unwrap();
            let full = fisher_matrix(&mlp, &theta, xv, tv, fisher).unwrap();
            let full = if fisher == Fisher::Exact {
                ggn(&mlp, &theta, xv, tv) // independent of fisher.rs
            } else {
                full
            };
            for (l, layer) in mlp.layout().iter().enumerate() {
                let what = format!("{} {} layer {l}", mlp.describe(), fisher.name());
                let want = block(&full, layer);
                assert_close(&flat(&f.layer_matrix(l)), &flat(&want), 1e-12, 1e-10, &what);
            }
        }
    }
}

/// Relative Frobenius error of the mc B factors (all layers) against `exact`.
fn mc_error(p: &Problem, samples: usize, seed: u64) -> f64 {
    let (mlp, theta, x, t) = p;
    let exact = kfac_factors(mlp, theta, x.view(), t.view(), Fisher::Exact).unwrap();
    let mc = kfac_factors(mlp, theta, x.view(), t.view(), Fisher::Mc { samples, seed }).unwrap();
    let all = |f: &KroneckerFactors| f.b.iter().flat_map(flat).collect::<Vec<f64>>();
    rel_l2(&all(&mc), &all(&exact))
}

/// mc's B is an average of N·S independent terms with mean B_exact, so its
/// error shrinks like 1/√S: E‖B_S − B‖²_F = c/S. Averaged over 5 seeds, the
/// error at S = 10 must exceed the one at S = 4000 by about √400 = 20 (we
/// accept 8–50, a band a wrong rate, e.g. a bias or a 1/S, falls out of), and
/// at S = 4000 it is below 5 % (measured 0.8–1.3 %; the mc diagonal
/// Fisher against diag(G) likewise). Same seed, same bits.
#[test]
fn monte_carlo_factors_converge_to_the_exact_ones_at_the_rate_one_over_root_s() {
    for i in 0..nets().len() {
        let p = problem(i, 8, 0.0);
        let mean =
            |samples: usize| (0..5).map(|seed| mc_error(&p, samples, seed)).sum::<f64>() / 5.0;
        let (few, many) = (mean(10), mean(4000));
        let name = p.0.describe();
        eprintln!(
            "{name}: mc error S=10 {few:.4}, S=4000 {many:.4}, ratio {:.1}",
            few / many
        );
        assert!(many < 0.05, "{name}: error at S = 4000 is {many}");
        let ratio = few / many;
        assert!(
            (8.0..50.0).contains(&ratio),
            "{name}: ratio {ratio} (≈ 20 expected)"
        );

        let (mlp, theta, x, t) = &p;
        let mc = Fisher::Mc {
            samples: 4000,
            seed: 1,
        };
        let d = diag_fisher(mlp, theta, x.view(), t.view(), mc).unwrap();
        let d0 = diag_ggn(&mlp.with_l2(0.0).unwrap(), theta, x.view(), t.view());
        let d_err = rel_l2(&d, &d0);
        assert!(d_err < 0.05, "{name}: mc diag Fisher vs diag G {d_err}");
    }
    let p = problem(0, 8, 0.0);
    let (mlp, theta, x, t) = &p;
    let at = |seed| {
        kfac_factors(
            mlp,
            theta,
            x.view(),
            t.view(),
            Fisher::Mc { samples: 5, seed },
        )
        .unwrap()
    };
    assert_eq!(at(3).b, at(3).b, "same seed, same factors");
    assert_ne!(at(3).b, at(4).b, "another seed, other samples");
    let zero = Fisher::Mc {
        samples: 0,
        seed: 0,
    };
    let err = kfac_factors(mlp, theta, x.view(), t.view(), zero).unwrap_err();
    assert!(err.to_string().contains("samples"), "{err}");
}

/// (K v)_l = B V A equals the dense Kronecker matrix assembled here times v, and
/// KroneckerFactors::matrix is that matrix; gather/scatter are inverse.
#[test]
fn kfac_product_equals_the_dense_kronecker_matrix() {
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, 6, 0.0);
        let w = mlp.num_params();
        let v = random_vector(w, 7 + i as u64);
        let mut back = vec![0.0; w];
        for layer in mlp.layout() {
            scatter(&layer, &gather(&layer, &v), &mut back);
        }
        assert_eq!(back, v, "gather then scatter is the identity");
        for fisher in FLAVOURS {
            let what = format!("{} {}", mlp.describe(), fisher.name());
            let f = kfac_factors(&mlp, &theta, x.view(), t.view(), fisher).unwrap();
            let dense = kfac_dense(&f, w);
            assert_close(&flat(&f.matrix()), &flat(&dense), 0.0, 0.0, &what);
            let want = dense.dot(&ndarray::Array1::from(v.clone())).to_vec();
            assert_close(&f.product(&v), &want, 1e-13, 1e-12, &what);
        }
    }
}

/// The returned x solves (K + γI) x = v (plain damping), and the π-corrected x
/// solves (A + π√γ I) ⊗ (B + √γ/π I) x = v per layer, both to 1e-10; π is
/// sqrt((tr A/(in+1)) / (tr B/out)); γ ≤ 0 is refused.
#[test]
fn inverse_products_solve_their_damped_systems() {
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, 6, 0.0);
        let w = mlp.num_params();
        let v = random_vector(w, 11 + i as u64);
        for fisher in FLAVOURS {
            let f = kfac_factors(&mlp, &theta, x.view(), t.view(), fisher).unwrap();
            let k = kfac_dense(&f, w);
            for gamma in [1e-3, 0.1, 2.0] {
                let what = format!("{} {} γ={gamma}", mlp.describe(), fisher.name());
                let x_plain = f.inverse_product(&v, Damping::Plain { gamma }).unwrap();
                let r = identity_plus(&k, gamma).dot(&ndarray::Array1::from(x_plain));
                assert_close(&r.to_vec(), &v, 1e-10, 0.0, &format!("{what} plain"));

                let damped = kron_in_theta(&f.layers, w, |l| {
                    let (a, b) = (&f.a[l], &f.b[l]);
                    let pi = ((a.diag().sum() / a.nrows() as f64)
                        / (b.diag().sum() / b.nrows() as f64))
                        .sqrt();
                    assert!((pi - f.pi(l)).abs() <= 1e-12 * pi, "{what}: π_{l}");
                    let root = gamma.sqrt();
                    (identity_plus(a, pi * root), identity_plus(b, root / pi))
                });
                let x_pi = f
                    .inverse_product(&v, Damping::PiCorrected { gamma })
                    .unwrap();
                let r = damped.dot(&ndarray::Array1::from(x_pi));
                assert_close(&r.to_vec(), &v, 1e-10, 0.0, &format!("{what} π"));
            }
            for gamma in [0.0, -1.0, f64::NAN] {
                assert!(f.inverse_product(&v, Damping::Plain { gamma }).is_err());
                assert!(f
                    .inverse_product(&v, Damping::PiCorrected { gamma })
                    .is_err());
            }
        }
    }
}

/// The flavour's own matrix, whose blocks K-FAC approximates: G (cpu::ggn with
/// λ = 0, independent of fisher.rs) for `exact`, the Fisher matrix otherwise.
fn flavour_matrix(p: &Problem, fisher: Fisher) -> Array2<f64> {
    let (mlp, theta, x, t) = p;
    match fisher {
        Fisher::Exact => ggn(&mlp.with_l2(0.0).unwrap(), theta, x.view(), t.view()),
        _ => fisher_matrix(mlp, theta, x.view(), t.view(), fisher).unwrap(),
    }
}

/// u_{i,a} = q_{B,i} q_{A,a}ᵀ of layer `layer` scattered into θ's layout (W).
fn basis_vector(
    layer: &LayerLayout,
    qb: &Array2<f64>,
    qa: &Array2<f64>,
    i: usize,
    a: usize,
    w: usize,
) -> Vec<f64> {
    let u = Array2::from_shape_fn((layer.fan_out, layer.fan_in + 1), |(j, c)| {
        qb[[j, i]] * qa[[c, a]]
    });
    let mut out = vec![0.0; w];
    scatter(layer, &u, &mut out);
    out
}

/// EKFAC's s_l\[i, a\] is u_{i,a}ᵀ C u_{i,a} for the flavour's own matrix C, so
/// s ≥ 0, Σ s_l = tr(C_l) (for empirical: Σ of the empirical Fisher's diagonal
/// over the layer), and — the point of EKFAC — no diagonal in that basis is
/// closer to C_l in Frobenius norm, K-FAC's λ_B λ_Aᵀ included.
#[test]
fn ekfac_is_the_diagonal_of_the_flavours_block_in_the_kronecker_eigenbasis() {
    for i in 0..nets().len() {
        let p = problem(i, 6, 0.0);
        let (mlp, theta, x, t) = &p;
        let w = mlp.num_params();
        for fisher in FLAVOURS {
            let name = format!("{} {}", mlp.describe(), fisher.name());
            let e = ekfac(mlp, theta, x.view(), t.view(), fisher).unwrap();
            let f = kfac_factors(mlp, theta, x.view(), t.view(), fisher).unwrap();
            let c = flavour_matrix(&p, fisher);
            let diag = diag_fisher(mlp, theta, x.view(), t.view(), fisher).unwrap();
            for (l, layer) in mlp.layout().iter().enumerate() {
                let (s_l, basis) = (&e.scalings[l], &e.basis[l]);
                assert_eq!(s_l.dim(), (layer.fan_out, layer.fan_in + 1));
                assert!(s_l.iter().all(|&v| v >= 0.0), "{name}: s < 0");
                let mut ekfac_block = Array2::zeros((w, w));
                let mut kfac_block = Array2::zeros((w, w));
                let kron = basis.kronecker_values();
                for bi in 0..layer.fan_out {
                    for a in 0..=layer.fan_in {
                        let u = basis_vector(layer, &basis.b_vectors, &basis.a_vectors, bi, a, w);
                        let u = ndarray::Array1::from(u);
                        let want = u.dot(&c.dot(&u));
                        let what = format!("{name} layer {l} s[{bi},{a}]");
                        assert_close(&[s_l[[bi, a]]], &[want], 1e-12, 1e-10, &what);
                        let uu = u
                            .view()
                            .insert_axis(ndarray::Axis(1))
                            .dot(&u.view().insert_axis(ndarray::Axis(0)));
                        ekfac_block = ekfac_block + &uu * s_l[[bi, a]];
                        kfac_block = kfac_block + &uu * kron[[bi, a]];
                    }
                }
                let c_l = block(&c, layer);
                let trace = c_l.diag().sum();
                assert_close(
                    &[s_l.sum()],
                    &[trace],
                    1e-12,
                    1e-10,
                    &format!("{name} layer {l} Σ s"),
                );
                if fisher == Fisher::Empirical {
                    let d: f64 = diag[layer.weights.start..layer.bias.end].iter().sum();
                    assert_close(
                        &[s_l.sum()],
                        &[d],
                        1e-12,
                        1e-10,
                        &format!("{name} Σ s vs diag F"),
                    );
                }
                // K-FAC's layer block in the same basis is Σ λ_B λ_A u uᵀ: the basis is right.
                let kfac_l = f.layer_matrix(l);
                assert_close(
                    &flat(&block(&kfac_block, layer)),
                    &flat(&kfac_l),
                    1e-12,
                    1e-10,
                    &name,
                );
                let (err_ekfac, err_kfac) = (
                    rel_frobenius(&block(&ekfac_block, layer), &c_l),
                    rel_frobenius(&kfac_l, &c_l),
                );
                assert!(
                    err_ekfac <= err_kfac + 1e-12,
                    "{name} layer {l}: EKFAC {err_ekfac} > K-FAC {err_kfac}"
                );
                // And EKFAC's product is that dense block.
                let v = random_vector(w, 5 + l as u64);
                let mut v_l = vec![0.0; w];
                v_l[layer.weights.start..layer.bias.end]
                    .copy_from_slice(&v[layer.weights.start..layer.bias.end]);
                let got = e.product(&v_l);
                let want = ekfac_block.dot(&ndarray::Array1::from(v_l)).to_vec();
                assert_close(&got, &want, 1e-12, 1e-10, &format!("{name} EKFAC product"));
            }
        }
    }
}

/// Where A ⊗ B is the exact block (N = 1 for every flavour; one layer of sse with
/// identity output for any N) the rotated block is diagonal: EKFAC's s equals
/// K-FAC's λ_B λ_Aᵀ and, sorted, the block's eigenvalues.
#[test]
fn ekfac_reproduces_the_spectrum_where_kronecker_is_exact() {
    let mut cases: Vec<(Problem, Fisher)> = Vec::new();
    for i in 0..nets().len() {
        for fisher in FLAVOURS {
            cases.push((problem(i, 1, 0.0), fisher));
        }
    }
    cases.push((
        random_problem(&[4, 3], &[Identity], Loss::Sse, 0.0, 9, 77),
        Fisher::Exact,
    ));
    cases.push((
        random_problem(&[5, 1], &[Identity], Loss::Mse, 0.0, 9, 78),
        Fisher::Exact,
    ));
    for (p, fisher) in cases {
        let (mlp, theta, x, t) = &p;
        let name = format!("{} N={} {}", mlp.describe(), x.nrows(), fisher.name());
        let e = ekfac(mlp, theta, x.view(), t.view(), fisher).unwrap();
        let c = flavour_matrix(&p, fisher);
        for (l, layer) in mlp.layout().iter().enumerate() {
            let s_l = &e.scalings[l];
            let kron = e.basis[l].kronecker_values();
            let scale = kron.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
            assert_close(
                &flat(s_l),
                &flat(&kron),
                1e-12 * scale,
                1e-9,
                &format!("{name} layer {l} s vs λ_B λ_A"),
            );
            let mut got = flat(s_l);
            got.sort_by(f64::total_cmp);
            let want = eigenvalues(&block(&c, layer)).unwrap();
            assert_close(
                &got,
                &want,
                1e-11 * scale,
                0.0,
                &format!("{name} layer {l} spectrum"),
            );
        }
    }
}

/// (C + γI) x = v for EKFAC's inverse product, and γ ≤ 0 is refused.
#[test]
fn ekfac_inverse_product_inverts_its_damped_product() {
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, 6, 0.0);
        let v = random_vector(mlp.num_params(), 21);
        for fisher in FLAVOURS {
            let e = ekfac(&mlp, &theta, x.view(), t.view(), fisher).unwrap();
            for gamma in [1e-3, 0.5] {
                let xs = e.inverse_product(&v, gamma).unwrap();
                let back: Vec<f64> = e
                    .product(&xs)
                    .iter()
                    .zip(&xs)
                    .map(|(c, x)| c + gamma * x)
                    .collect();
                assert_close(
                    &back,
                    &v,
                    1e-10,
                    0.0,
                    &format!("{} {} γ={gamma}", mlp.describe(), fisher.name()),
                );
            }
            assert!(e.inverse_product(&v, 0.0).is_err());
        }
    }
}

/// The gradient variance is ≥ 0 and equals (1/N) Σ g_n² − ((1/N) Σ g_n)² of the
/// per-sample gradients, computed here in that (textbook) form; it is zero for
/// one row and does not depend on λ.
#[test]
fn gradient_variance_is_the_population_variance_of_the_per_sample_gradients() {
    for i in 0..nets().len() {
        let (mlp, theta, x, t) = problem(i, 7, 0.05);
        let var = gradient_variance(&mlp, &theta, x.view(), t.view());
        assert!(
            var.iter().all(|&v| v >= 0.0),
            "{}: variance < 0",
            mlp.describe()
        );
        let g = per_sample_gradients(&mlp, &theta, x.view(), t.view());
        let n = g.nrows() as f64;
        let want: Vec<f64> = g
            .columns()
            .into_iter()
            .map(|c| c.mapv(|v| v * v).sum() / n - (c.sum() / n).powi(2))
            .collect();
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v * v));
        assert_close(&var, &want, 1e-13 * scale, 1e-10, &mlp.describe());
        assert!(
            var.iter().any(|&v| v > 1e-6),
            "{}: variance vacuous",
            mlp.describe()
        );
        let mlp0 = mlp.with_l2(0.0).unwrap();
        assert_eq!(var, gradient_variance(&mlp0, &theta, x.view(), t.view()));
        let one = gradient_variance(&mlp, &theta, rows(&x, 0).view(), rows(&t, 0).view());
        assert!(one.iter().all(|&v| v == 0.0), "one row has no variance");
    }
}
