//! The CPU reference's passes against finite differences: gradient, Hv, Gv
//! blocks, the loss and the L2 term, on the sweep of small random networks
//! (every loss, every activation, 1–3 hidden layers) and on 64-50-10
//! sigmoid/softmax-ce.

use crate::common;
use common::{random_block, random_problem, random_vector, rel_error, sweep};
use curvature::cpu::{
    accuracy, fd_gradient, fd_hvp, forward, gradient, gvp, gvp_block, hvp, hvp_block, loss, outputs,
};
use curvature::{Activation, Loss};
use ndarray::{array, Array2};

/// Samples per problem: enough that every sample term matters, small enough for speed.
const N: usize = 6;
/// The bound on the gradient's relative error against central differences.
const GRAD_REL_TOL: f64 = 1e-6;
/// Step of the central differences: truncation O(ε²·|E‴|) ≈ 1e-10 and rounding
/// O(1e-16·|E|/ε) ≈ 1e-11 are both far below the tolerances.
const FD_EPS: f64 = 1e-5;
/// Hv against (g(θ+εv) − g(θ−εv))/2ε: the same O(ε²) + O(u/ε) error as the gradient check.
const HVP_REL_TOL: f64 = 1e-6;
/// Floor of the relative-error denominator: a reference whose largest entry is
/// below this is compared absolutely (e.g. a dead relu net with zero gradient).
const REL_FLOOR: f64 = 1e-8;
/// Block products and single products do the same arithmetic in the same
/// order, so they agree to the last bits; 1e-13 allows a few roundings.
const SAME_ARITHMETIC_TOL: f64 = 1e-13;

#[test]
fn gradient_matches_central_differences() {
    let mut worst = 0.0f64;
    for (seed, case) in sweep().iter().enumerate() {
        for l2 in [0.0, 0.03] {
            let (mlp, theta, x, t) =
                random_problem(&case.sizes, &case.acts, case.loss, l2, N, seed as u64);
            let (_, g) = gradient(&mlp, &theta, x.view(), t.view());
            let fd = fd_gradient(&mlp, &theta, x.view(), t.view(), FD_EPS);
            let err = rel_error(&g, &fd, REL_FLOOR);
            assert!(
                err < GRAD_REL_TOL,
                "{} λ={l2}: rel error {err:e}",
                case.describe()
            );
            worst = worst.max(err);
        }
    }
    eprintln!("gradient vs central differences: worst rel error {worst:e}");
}

#[test]
fn hvp_matches_gradient_differences() {
    let mut worst = 0.0f64;
    for (seed, case) in sweep().iter().enumerate() {
        for l2 in [0.0, 0.03] {
            let (mlp, theta, x, t) =
                random_problem(&case.sizes, &case.acts, case.loss, l2, N, seed as u64);
            let v = random_vector(theta.len(), seed as u64);
            let hv = hvp(&mlp, &theta, x.view(), t.view(), &v);
            let fd = fd_hvp(&mlp, &theta, x.view(), t.view(), &v, FD_EPS);
            let err = rel_error(&hv, &fd, REL_FLOOR);
            assert!(
                err < HVP_REL_TOL,
                "{} λ={l2}: rel error {err:e}",
                case.describe()
            );
            worst = worst.max(err);
        }
    }
    eprintln!("Hv vs gradient differences: worst rel error {worst:e}");
}

#[test]
fn blocks_equal_single_products() {
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.02, N, seed as u64);
        let v = random_block(3, theta.len(), seed as u64);
        let hb = hvp_block(&mlp, &theta, x.view(), t.view(), v.view());
        let gb = gvp_block(&mlp, &theta, x.view(), t.view(), v.view());
        assert_eq!(hb.dim(), v.dim());
        assert_eq!(gb.dim(), v.dim());
        for i in 0..v.nrows() {
            let vi = v.row(i).to_vec();
            let h = hvp(&mlp, &theta, x.view(), t.view(), &vi);
            let g = gvp(&mlp, &theta, x.view(), t.view(), &vi);
            assert!(
                rel_error(&hb.row(i).to_vec(), &h, REL_FLOOR) < SAME_ARITHMETIC_TOL,
                "{} Hv row {i}",
                case.describe()
            );
            assert!(
                rel_error(&gb.row(i).to_vec(), &g, REL_FLOOR) < SAME_ARITHMETIC_TOL,
                "{} Gv row {i}",
                case.describe()
            );
        }
    }
}

/// The 64-50-10 sigmoid / softmax-ce digits shape (W = 3260).
#[test]
fn digits_shape_gradient_and_hvp() {
    let (mlp, theta, x, t) = random_problem(
        &[64, 50, 10],
        &[Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        1e-3,
        8,
        64,
    );
    assert_eq!(theta.len(), 50 * 65 + 10 * 51);
    let (_, g) = gradient(&mlp, &theta, x.view(), t.view());
    let fd = fd_gradient(&mlp, &theta, x.view(), t.view(), FD_EPS);
    let err = rel_error(&g, &fd, REL_FLOOR);
    assert!(err < GRAD_REL_TOL, "gradient rel error {err:e}");
    eprintln!("64-50-10: gradient rel error {err:e}");
    let v = random_vector(theta.len(), 1);
    let hv = hvp(&mlp, &theta, x.view(), t.view(), &v);
    let fd = fd_hvp(&mlp, &theta, x.view(), t.view(), &v, FD_EPS);
    let err = rel_error(&hv, &fd, REL_FLOOR);
    assert!(err < HVP_REL_TOL, "Hv rel error {err:e}");
    eprintln!("64-50-10: Hv rel error {err:e}");
}

/// E and ∇E with λ minus E and ∇E without: exactly (λ/2)‖W‖² and λW on weights, 0 on biases.
#[test]
fn l2_term_in_loss_and_gradient() {
    /// E differs only by the penalty added to the same mean: a few roundings of |E| ≈ 1.
    const TOL: f64 = 1e-12;
    let lambda = 0.07;
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, lambda, N, seed as u64);
        let plain = mlp.with_l2(0.0).unwrap();
        let (e1, g1) = gradient(&mlp, &theta, x.view(), t.view());
        let (e0, g0) = gradient(&plain, &theta, x.view(), t.view());
        let sq: f64 = mlp
            .layout()
            .iter()
            .map(|l| theta[l.weights.clone()].iter().map(|w| w * w).sum::<f64>())
            .sum();
        assert!(
            (e1 - e0 - 0.5 * lambda * sq).abs() < TOL,
            "{}",
            case.describe()
        );
        assert!((loss(&mlp, &theta, x.view(), t.view()) - e1).abs() < TOL);
        let mask = mlp.weight_mask();
        for i in 0..theta.len() {
            let want = lambda * theta[i] * mask[i];
            assert!(
                (g1[i] - g0[i] - want).abs() < TOL,
                "{} entry {i}",
                case.describe()
            );
        }
    }
}

/// The loss equals the mean of E_n written out directly from the outputs.
#[test]
fn loss_is_the_batch_mean_of_the_written_out_losses() {
    /// Different but equivalent formulas (log of a probability vs log-sum-exp): a few ulps of |E|.
    const TOL: f64 = 1e-12;
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.0, N, seed as u64);
        let y = outputs(&mlp, &theta, x.view());
        let k = mlp.num_outputs() as f64;
        let per_sample = |n: usize| -> f64 {
            let (y, t) = (y.row(n), t.row(n));
            match case.loss {
                Loss::Sse => 0.5 * y.iter().zip(t).map(|(y, t)| (y - t).powi(2)).sum::<f64>(),
                Loss::Mse => y.iter().zip(t).map(|(y, t)| (y - t).powi(2)).sum::<f64>() / k,
                Loss::Bce => -y
                    .iter()
                    .zip(t)
                    .map(|(y, t)| t * y.ln() + (1.0 - t) * (1.0 - y).ln())
                    .sum::<f64>(),
                Loss::Ce => -y.iter().zip(t).map(|(y, t)| t * y.ln()).sum::<f64>(),
            }
        };
        let want = (0..N).map(per_sample).sum::<f64>() / N as f64;
        let got = loss(&mlp, &theta, x.view(), t.view());
        assert!(
            (got - want).abs() < TOL * want.abs().max(1.0),
            "{}: {got} vs {want}",
            case.describe()
        );
        // The forward pass keeps one a per layer and one z more, z[0] = X.
        let fw = forward(&mlp, &theta, x.view());
        assert_eq!(fw.a.len(), mlp.num_layers());
        assert_eq!(fw.z.len(), mlp.num_layers() + 1);
        assert_eq!(fw.z[0], x);
    }
}

#[test]
fn accuracy_counts_argmax_and_threshold_matches() {
    let y = array![[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]];
    let t = array![[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    assert_eq!(accuracy(y.view(), t.view()), 2.0 / 3.0);
    let y1 = array![[0.9], [0.2], [0.6], [0.4]];
    let t1 = array![[1.0], [0.0], [0.0], [0.0]];
    assert_eq!(accuracy(y1.view(), t1.view()), 3.0 / 4.0);
    assert_eq!(
        accuracy(
            Array2::<f64>::zeros((0, 3)).view(),
            Array2::<f64>::zeros((0, 3)).view()
        ),
        0.0
    );
}
