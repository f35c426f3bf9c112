//! The full Hessian H and Gauss-Newton matrix G of the CPU reference: against
//! Hv, against finite differences (PRML 5.90, 5.91), against Bishop's closed
//! forms for two layers of weights (PRML 5.93–5.95), symmetry, G ⪰ 0, G = H
//! where residuals vanish, and the L2 term.

use crate::common;
use common::{max_abs_diff, random_problem, random_vector, sweep};
use curvature::cpu::{
    fd_hessian_from_grad, fd_hessian_from_loss, ggn, gvp, hessian, hvp, outer_product, outputs,
};
use curvature::{Activation, Loss, Mlp};
use ndarray::{Array1, Array2, ArrayView2};

const N: usize = 6;
/// H·v (a sum of W products) against the R-pass for v: both exact, they differ by
/// roundings of O(W·u·max|H||v|); entries are O(1), W ≤ ~120.
const PRODUCT_TOL: f64 = 1e-11;
/// The bound on the asymmetry of H (and G).
const SYMMETRY_TOL: f64 = 1e-10;
/// Two exact formulas for the same H (closed forms vs R-propagation) evaluated
/// in different orders: roundings of O(1) entries only.
const EXACT_TOL: f64 = 1e-12;
/// Step of PRML 5.90: truncation O(ε²) ≈ 1e-8 and rounding O(u·|E|/ε²) ≈ 1e-8.
const FD_LOSS_EPS: f64 = 1e-4;
/// 5.90's error is ~1e-8 per entry (see FD_LOSS_EPS); 1e-6 leaves two orders of margin.
const FD_LOSS_TOL: f64 = 1e-6;
/// Step of PRML 5.91: truncation O(ε²) ≈ 1e-10, rounding O(u·|g|/ε) ≈ 1e-11.
const FD_GRAD_EPS: f64 = 1e-5;
/// 5.91's error ~1e-10 per entry; 1e-8 leaves two orders of margin.
const FD_GRAD_TOL: f64 = 1e-8;

fn max_abs(m: &Array2<f64>) -> f64 {
    m.iter().fold(0.0, |a, v| a.max(v.abs()))
}

fn matrix_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    // Iteration is in logical (row-major) order for both, whatever their memory layout.
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn hessian_columns_are_hvp_and_symmetric() {
    let (mut worst_prod, mut worst_sym) = (0.0f64, 0.0f64);
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.02, N, seed as u64);
        for (name, m, product) in [
            (
                "H",
                hessian(&mlp, &theta, x.view(), t.view()),
                hvp as fn(&Mlp, &[f64], ArrayView2<f64>, ArrayView2<f64>, &[f64]) -> Vec<f64>,
            ),
            ("G", ggn(&mlp, &theta, x.view(), t.view()), gvp),
        ] {
            let v = random_vector(theta.len(), seed as u64);
            let mv = m.dot(&Array1::from(v.clone())).to_vec();
            let direct = product(&mlp, &theta, x.view(), t.view(), &v);
            let err = max_abs_diff(&mv, &direct);
            assert!(
                err < PRODUCT_TOL,
                "{} {name}·v vs product: {err:e}",
                case.describe()
            );
            let asym = matrix_diff(&m, &m.t().to_owned());
            assert!(
                asym < SYMMETRY_TOL,
                "{} {name} asymmetry {asym:e}",
                case.describe()
            );
            worst_prod = worst_prod.max(err);
            worst_sym = worst_sym.max(asym);
        }
    }
    eprintln!("H·v, G·v vs R-pass: worst {worst_prod:e}; worst asymmetry {worst_sym:e}");
}

#[test]
fn hessian_matches_finite_differences_on_tiny_nets() {
    use Activation::*;
    let nets: [(&[usize], &[Activation], Loss); 4] = [
        (&[3, 4, 2], &[Tanh, Identity], Loss::Sse),
        (&[2, 3, 3], &[Sigmoid, Softmax], Loss::Ce),
        (&[2, 3, 2, 2], &[Softplus, Elu, Sigmoid], Loss::Bce),
        (&[3, 3, 2], &[Sigmoid, Tanh], Loss::Mse),
    ];
    let (mut worst_loss, mut worst_grad) = (0.0f64, 0.0f64);
    for (seed, (sizes, acts, loss)) in nets.into_iter().enumerate() {
        let (mlp, theta, x, t) = random_problem(sizes, acts, loss, 0.05, N, 100 + seed as u64);
        let h = hessian(&mlp, &theta, x.view(), t.view());
        let fd_loss = fd_hessian_from_loss(&mlp, &theta, x.view(), t.view(), FD_LOSS_EPS);
        let fd_grad = fd_hessian_from_grad(&mlp, &theta, x.view(), t.view(), FD_GRAD_EPS);
        let (e1, e2) = (matrix_diff(&h, &fd_loss), matrix_diff(&h, &fd_grad));
        assert!(
            e1 < FD_LOSS_TOL * max_abs(&h).max(1.0),
            "{}: 5.90 error {e1:e}",
            mlp.describe()
        );
        assert!(
            e2 < FD_GRAD_TOL * max_abs(&h).max(1.0),
            "{}: 5.91 error {e2:e}",
            mlp.describe()
        );
        worst_loss = worst_loss.max(e1);
        worst_grad = worst_grad.max(e2);
    }
    eprintln!("H vs 5.90: worst abs error {worst_loss:e}; vs 5.91: {worst_grad:e}");
}

/// Where θ_p sits: layer (0 first, 1 second), unit j, input i (i = fan_in for the bias).
fn locate(mlp: &Mlp) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (l, layer) in mlp.layout().iter().enumerate() {
        for j in 0..layer.fan_out {
            for i in 0..layer.fan_in {
                out.push((l, j, i));
            }
        }
        for j in 0..layer.fan_out {
            out.push((l, j, layer.fan_in));
        }
    }
    out
}

/// Bishop's exact Hessian for two layers of weights (PRML 5.93–5.95), written
/// out entry by entry, per sample, with biases as weights on a constant input 1
/// (x̃ = (x, 1), z̃ = (z, 1)), then the batch mean and + λ on weight entries.
/// Output quantities are written directly: sse with identity output has
/// δ_k = y_k − t_k and M = I; ce with softmax has δ = p − t and M = diag(p) − p pᵀ.
fn bishop_hessian(mlp: &Mlp, theta: &[f64], x: &Array2<f64>, t: &Array2<f64>) -> Array2<f64> {
    let layout = mlp.layout();
    let (d, m, k) = (layout[0].fan_in, layout[0].fan_out, layout[1].fan_out);
    let hidden = mlp.activations()[0];
    let w1 = |j: usize, i: usize| {
        if i == d {
            theta[layout[0].bias.start + j]
        } else {
            theta[layout[0].weights.start + j * d + i]
        }
    };
    let w2 = |kk: usize, j: usize| {
        if j == m {
            theta[layout[1].bias.start + kk]
        } else {
            theta[layout[1].weights.start + kk * m + j]
        }
    };
    let where_ = locate(mlp);
    let w_count = theta.len();
    let mut h = Array2::zeros((w_count, w_count));
    for n in 0..x.nrows() {
        let xt: Vec<f64> = x.row(n).iter().cloned().chain([1.0]).collect(); // x̃ (D+1)
        let a1: Vec<f64> = (0..m)
            .map(|j| (0..=d).map(|i| w1(j, i) * xt[i]).sum())
            .collect();
        let zt: Vec<f64> = a1.iter().map(|&a| hidden.h(a)).chain([1.0]).collect(); // z̃ (M+1)
        let a2: Vec<f64> = (0..k)
            .map(|kk| (0..=m).map(|j| w2(kk, j) * zt[j]).sum())
            .collect();
        let (delta, mm): (Vec<f64>, Vec<Vec<f64>>) = match mlp.loss() {
            Loss::Sse => (
                (0..k).map(|kk| a2[kk] - t[[n, kk]]).collect(),
                (0..k)
                    .map(|r| (0..k).map(|c| if r == c { 1.0 } else { 0.0 }).collect())
                    .collect(),
            ),
            Loss::Ce => {
                let mx = a2.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = a2.iter().map(|a| (a - mx).exp()).collect();
                let s: f64 = e.iter().sum();
                let p: Vec<f64> = e.iter().map(|v| v / s).collect();
                (
                    (0..k).map(|kk| p[kk] - t[[n, kk]]).collect(),
                    (0..k)
                        .map(|r| {
                            (0..k)
                                .map(|c| if r == c { p[r] } else { 0.0 } - p[r] * p[c])
                                .collect()
                        })
                        .collect(),
                )
            }
            _ => unreachable!("the closed forms are written for sse/identity and ce/softmax"),
        };
        // h′(a_j), h″(a_j) for real hidden units; the bias "unit" j = M has no inputs.
        let dh = |j: usize| hidden.dh(a1[j]);
        let d2h = |j: usize| hidden.d2h(a1[j]);
        for p in 0..w_count {
            for q in 0..w_count {
                let (lp, jp, ip) = where_[p];
                let (lq, jq, iq) = where_[q];
                let value = match (lp, lq) {
                    // 5.93: both in the second layer, w_kj and w_k'j'.
                    (1, 1) => zt[ip] * zt[iq] * mm[jp][jq],
                    // 5.94: both in the first layer, w_ji and w_j'i'.
                    (0, 0) => {
                        let (j, jj) = (jp, jq);
                        let same = if j == jj {
                            d2h(j) * (0..k).map(|kk| w2(kk, j) * delta[kk]).sum::<f64>()
                        } else {
                            0.0
                        };
                        let outer: f64 = (0..k)
                            .flat_map(|kk| (0..k).map(move |kk2| (kk, kk2)))
                            .map(|(kk, kk2)| w2(kk2, jj) * w2(kk, j) * mm[kk][kk2])
                            .sum();
                        xt[ip] * xt[iq] * (same + dh(j) * dh(jj) * outer)
                    }
                    // 5.95: one in each, w_ji (first) and w_kj' (second), either order.
                    _ => {
                        let ((j, i), (kk, jj)) = if lp == 0 {
                            ((jp, ip), (jq, iq))
                        } else {
                            ((jq, iq), (jp, ip))
                        };
                        let same = if j == jj { delta[kk] } else { 0.0 };
                        let through: f64 = (0..k).map(|kk2| w2(kk2, j) * mm[kk][kk2]).sum();
                        xt[i] * dh(j) * (same + zt[jj] * through)
                    }
                };
                h[[p, q]] += value;
            }
        }
    }
    h /= x.nrows() as f64;
    for (p, w) in mlp.weight_mask().into_iter().enumerate() {
        h[[p, p]] += mlp.l2() * w;
    }
    h
}

#[test]
fn two_layer_hessian_equals_bishop_closed_forms() {
    use Activation::*;
    let nets: [(&[usize], &[Activation], Loss); 4] = [
        (&[3, 5, 2], &[Sigmoid, Identity], Loss::Sse),
        (&[4, 3, 3], &[Tanh, Identity], Loss::Sse),
        (&[3, 5, 3], &[Sigmoid, Softmax], Loss::Ce),
        (&[2, 3, 4], &[Tanh, Softmax], Loss::Ce),
    ];
    let mut worst = 0.0f64;
    for (seed, (sizes, acts, loss)) in nets.into_iter().enumerate() {
        for l2 in [0.0, 0.1] {
            let (mlp, theta, x, t) = random_problem(sizes, acts, loss, l2, N, 200 + seed as u64);
            let h = hessian(&mlp, &theta, x.view(), t.view());
            let closed = bishop_hessian(&mlp, &theta, &x, &t);
            let err = matrix_diff(&h, &closed);
            assert!(
                err < EXACT_TOL,
                "{} : max |H − closed form| = {err:e}",
                mlp.describe()
            );
            worst = worst.max(err);
        }
    }
    eprintln!("H vs PRML 5.93–5.95: worst abs error {worst:e}");
}

#[test]
fn gauss_newton_is_positive_semidefinite() {
    /// vᵀGv is a sum of squares (≥ 0 exactly) evaluated with roundings O(u·‖G‖·‖v‖²)
    /// ≈ 1e-13 for these sizes; a real negative curvature would be O(1).
    const PSD_TOL: f64 = 1e-10;
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.0, N, seed as u64);
        let g = ggn(&mlp, &theta, x.view(), t.view());
        for i in 0..5 {
            let v = Array1::from(random_vector(theta.len(), 1000 * seed as u64 + i));
            let q = v.dot(&g.dot(&v));
            assert!(q >= -PSD_TOL, "{}: vᵀGv = {q:e}", case.describe());
        }
    }
}

/// With an identity output, sse/mse, and targets equal to the outputs, every
/// residual is 0, so δ = 0 everywhere and H has only its Gauss-Newton part.
#[test]
fn gauss_newton_equals_hessian_where_residuals_vanish() {
    use Activation::*;
    let nets: [(&[usize], &[Activation], Loss); 3] = [
        (&[4, 5, 3], &[Tanh, Identity], Loss::Sse),
        (&[3, 5, 3, 2], &[Sigmoid, Softplus, Identity], Loss::Sse),
        (&[3, 7, 2], &[Elu, Identity], Loss::Mse),
    ];
    for (seed, (sizes, acts, loss)) in nets.into_iter().enumerate() {
        for l2 in [0.0, 0.1] {
            let (mlp, theta, x, _) = random_problem(sizes, acts, loss, l2, N, 300 + seed as u64);
            let t = outputs(&mlp, &theta, x.view());
            let h = hessian(&mlp, &theta, x.view(), t.view());
            let g = ggn(&mlp, &theta, x.view(), t.view());
            let err = matrix_diff(&h, &g);
            assert!(
                err < EXACT_TOL,
                "{} : max |H − G| = {err:e}",
                mlp.describe()
            );
            // and the test has teeth: with other targets they differ.
            let (_, _, _, t_other) = random_problem(sizes, acts, loss, l2, N, 300 + seed as u64);
            let h_other = hessian(&mlp, &theta, x.view(), t_other.view());
            let g_other = ggn(&mlp, &theta, x.view(), t_other.view());
            assert!(
                matrix_diff(&h_other, &g_other) > 1e-6,
                "{}: H = G even with residuals",
                mlp.describe()
            );
        }
    }
}

#[test]
fn gauss_newton_equals_outer_product() {
    let mut worst = 0.0f64;
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.03, N, seed as u64);
        let g = ggn(&mlp, &theta, x.view(), t.view());
        let op = outer_product(&mlp, &theta, x.view(), t.view());
        let err = matrix_diff(&g, &op);
        assert!(
            err < EXACT_TOL,
            "{}: max |G − outer product| = {err:e}",
            case.describe()
        );
        worst = worst.max(err);
    }
    eprintln!("G vs outer product: worst abs error {worst:e}");
}

/// H and G with λ minus H and G with λ = 0: λ on weight entries of the diagonal,
/// exactly 0 on biases and off the diagonal.
#[test]
fn l2_adds_lambda_on_weight_diagonal_only() {
    /// (x + λ) − x rounds once at |x| ≤ ~10: a few ulps.
    const ROUNDING_TOL: f64 = 1e-14;
    let lambda = 0.37;
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, lambda, N, seed as u64);
        let plain = mlp.with_l2(0.0).unwrap();
        let mask = mlp.weight_mask();
        for (name, f) in [
            (
                "H",
                hessian as fn(&Mlp, &[f64], ArrayView2<f64>, ArrayView2<f64>) -> Array2<f64>,
            ),
            ("G", ggn),
            ("outer product", outer_product),
        ] {
            let diff = f(&mlp, &theta, x.view(), t.view()) - f(&plain, &theta, x.view(), t.view());
            for ((p, q), &d) in diff.indexed_iter() {
                if p == q && mask[p] == 1.0 {
                    assert!(
                        (d - lambda).abs() < ROUNDING_TOL,
                        "{} {name}[{p},{p}]: {d}",
                        case.describe()
                    );
                } else {
                    assert_eq!(
                        d,
                        0.0,
                        "{} {name}[{p},{q}] (bias or off-diagonal)",
                        case.describe()
                    );
                }
            }
        }
    }
}
