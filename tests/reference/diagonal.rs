//! The diagonals of the CPU reference: exact diag(H) and diag(G) without
//! building H, and the Becker-LeCun approximation (PRML 5.79–5.81), tested for
//! what it guarantees and shown to be an approximation elsewhere.

use crate::common;
use common::{max_abs_diff, random_problem, sweep};
use curvature::cpu::{
    diag_becker_lecun, diag_ggn, diag_hessian, forward, ggn, gvp_block, hessian, hvp_block,
};
use curvature::{Activation, Loss, Mlp};
use ndarray::Array2;

const N: usize = 6;
/// The bound for diag(H) against the full H; both exact, so only
/// roundings of O(1) entries separate them.
const DIAG_TOL: f64 = 1e-10;
/// (x + λ) − x rounds once at |x| ≤ ~10: a few ulps.
const ROUNDING_TOL: f64 = 1e-14;

fn diagonal_of(m: &Array2<f64>) -> Vec<f64> {
    m.diag().to_vec()
}

#[test]
fn exact_diagonals_equal_the_full_matrices() {
    let (mut worst_h, mut worst_g) = (0.0f64, 0.0f64);
    for (seed, case) in sweep().iter().enumerate() {
        for l2 in [0.0, 0.05] {
            let (mlp, theta, x, t) =
                random_problem(&case.sizes, &case.acts, case.loss, l2, N, seed as u64);
            let eh = max_abs_diff(
                &diag_hessian(&mlp, &theta, x.view(), t.view()),
                &diagonal_of(&hessian(&mlp, &theta, x.view(), t.view())),
            );
            let eg = max_abs_diff(
                &diag_ggn(&mlp, &theta, x.view(), t.view()),
                &diagonal_of(&ggn(&mlp, &theta, x.view(), t.view())),
            );
            assert!(
                eh < DIAG_TOL,
                "{} λ={l2}: diag(H) error {eh:e}",
                case.describe()
            );
            assert!(
                eg < DIAG_TOL,
                "{} λ={l2}: diag(G) error {eg:e}",
                case.describe()
            );
            worst_h = worst_h.max(eh);
            worst_g = worst_g.max(eg);
        }
    }
    eprintln!("diag_hessian vs diag(H): worst {worst_h:e}; diag_ggn vs diag(G): worst {worst_g:e}");
}

/// With one layer of weights Becker-LeCun uses only the exact diagonal of the
/// output Hessian, so it is exact.
#[test]
fn becker_lecun_is_exact_for_one_layer_of_weights() {
    use Activation::*;
    let nets: [(&[usize], Activation, Loss); 6] = [
        (&[4, 3], Softmax, Loss::Ce),
        (&[5, 1], Sigmoid, Loss::Bce),
        (&[3, 4], Sigmoid, Loss::Bce),
        (&[4, 2], Identity, Loss::Sse),
        (&[3, 3], Tanh, Loss::Sse),
        (&[4, 3], Softplus, Loss::Mse),
    ];
    let mut worst = 0.0f64;
    for (seed, (sizes, act, loss)) in nets.into_iter().enumerate() {
        for l2 in [0.0, 0.05] {
            let (mlp, theta, x, t) = random_problem(sizes, &[act], loss, l2, N, 400 + seed as u64);
            let bl = diag_becker_lecun(&mlp, &theta, x.view(), t.view());
            let exact = diagonal_of(&hessian(&mlp, &theta, x.view(), t.view()));
            let err = max_abs_diff(&bl, &exact);
            assert!(err < DIAG_TOL, "{}: BL vs diag(H) {err:e}", mlp.describe());
            worst = worst.max(err);
        }
    }
    eprintln!("Becker-LeCun, one layer: worst error vs diag(H) {worst:e}");
}

/// PRML 5.81 written out with scalar loops, per sample, independently of the
/// library's ndarray version: m_k = [∂²E_n/∂a²]_kk at the output, then
/// m_i = h′(a_i)² Σ_j w_ji² m_j + h″(a_i) Σ_j w_ji δ_j, δ_i = h′(a_i) Σ_j w_ji δ_j;
/// each weight gets z_i² m_j, each bias m_j; then the mean over N and + λ on weights.
fn becker_lecun_by_loops(mlp: &Mlp, theta: &[f64], x: &Array2<f64>, t: &Array2<f64>) -> Vec<f64> {
    let layout = mlp.layout();
    let last = layout.len() - 1;
    let fw = forward(mlp, theta, x.view());
    let mut out = vec![0.0; theta.len()];
    for n in 0..x.nrows() {
        let a_out = fw.a[last].row(n).to_vec();
        let t_n = t.row(n).to_vec();
        let k = a_out.len();
        let h_out = mlp.loss().hessian(mlp.output_activation(), &a_out, &t_n);
        let mut m: Vec<f64> = (0..k).map(|i| h_out[i * k + i]).collect();
        let mut delta = vec![0.0; k];
        mlp.loss()
            .delta(mlp.output_activation(), &a_out, &t_n, &mut delta);
        for l in (0..=last).rev() {
            let ly = &layout[l];
            let w = |j: usize, i: usize| theta[ly.weights.start + j * ly.fan_in + i];
            for j in 0..ly.fan_out {
                for i in 0..ly.fan_in {
                    out[ly.weights.start + j * ly.fan_in + i] += fw.z[l][[n, i]].powi(2) * m[j];
                }
                out[ly.bias.start + j] += m[j];
            }
            if l == 0 {
                break;
            }
            let act = mlp.activations()[l - 1];
            let mut m_prev = vec![0.0; ly.fan_in];
            let mut delta_prev = vec![0.0; ly.fan_in];
            for i in 0..ly.fan_in {
                let a = fw.a[l - 1][[n, i]];
                let (mut sq, mut back) = (0.0, 0.0);
                for j in 0..ly.fan_out {
                    sq += w(j, i) * w(j, i) * m[j];
                    back += w(j, i) * delta[j];
                }
                m_prev[i] = act.dh(a).powi(2) * sq + act.d2h(a) * back;
                delta_prev[i] = act.dh(a) * back;
            }
            m = m_prev;
            delta = delta_prev;
        }
    }
    let mask = mlp.weight_mask();
    out.iter()
        .zip(mask)
        .map(|(v, w)| v / x.nrows() as f64 + mlp.l2() * w)
        .collect()
}

/// Deeper nets: Becker-LeCun is exact on the last layer's weights and biases,
/// equals the diagonal-only recursion written out independently, and — the
/// approximation it is — differs from diag(H) on earlier layers.
#[test]
fn becker_lecun_on_deeper_nets() {
    /// Same recursion, different summation order: roundings only.
    const SAME_RECURSION_TOL: f64 = 1e-12;
    let mut differs_somewhere = 0;
    let mut worst_last = 0.0f64;
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.05, N, seed as u64);
        let bl = diag_becker_lecun(&mlp, &theta, x.view(), t.view());
        let exact = diag_hessian(&mlp, &theta, x.view(), t.view());
        let last = mlp.layout().pop().unwrap();
        let last_range = last.weights.start..last.bias.end;
        let err = max_abs_diff(&bl[last_range.clone()], &exact[last_range.clone()]);
        assert!(
            err < DIAG_TOL,
            "{}: last layer BL vs diag(H) {err:e}",
            case.describe()
        );
        worst_last = worst_last.max(err);
        let loops = becker_lecun_by_loops(&mlp, &theta, &x, &t);
        let err = max_abs_diff(&bl, &loops);
        assert!(
            err < SAME_RECURSION_TOL,
            "{}: BL vs written-out 5.81 {err:e}",
            case.describe()
        );
        let earlier = 0..last_range.start;
        if max_abs_diff(&bl[earlier.clone()], &exact[earlier]) > 1e-6 {
            differs_somewhere += 1;
        }
    }
    eprintln!(
        "Becker-LeCun, deeper nets: last layer worst {worst_last:e}; differs from diag(H) on earlier layers in {differs_somewhere}/{} nets",
        sweep().len()
    );
    // The dropped off-diagonal terms matter in general (e.g. −ppᵀ of softmax-ce).
    assert!(
        differs_somewhere > sweep().len() / 2,
        "BL equals diag(H) too often to be an approximation"
    );
}

#[test]
fn l2_adds_lambda_to_weight_entries_of_every_diagonal() {
    let lambda = 0.37;
    type DiagFn = fn(&Mlp, &[f64], ndarray::ArrayView2<f64>, ndarray::ArrayView2<f64>) -> Vec<f64>;
    let fns: [(&str, DiagFn); 3] = [
        ("diag_hessian", diag_hessian),
        ("diag_ggn", diag_ggn),
        ("diag_becker_lecun", diag_becker_lecun),
    ];
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, lambda, N, seed as u64);
        let plain = mlp.with_l2(0.0).unwrap();
        let mask = mlp.weight_mask();
        for (name, f) in fns {
            let with = f(&mlp, &theta, x.view(), t.view());
            let without = f(&plain, &theta, x.view(), t.view());
            for p in 0..theta.len() {
                let d = with[p] - without[p];
                if mask[p] == 1.0 {
                    assert!(
                        (d - lambda).abs() < ROUNDING_TOL,
                        "{} {name}[{p}]: {d}",
                        case.describe()
                    );
                } else {
                    assert_eq!(d, 0.0, "{} {name}[{p}] is a bias", case.describe());
                }
            }
        }
    }
}

/// The 64-50-10 sigmoid / softmax-ce shape: diag(H) and diag(G) against H e_i
/// and G e_i for a spread of parameters in both layers (the full 3760 × 3760
/// matrices are not needed to check the diagonal).
#[test]
fn digits_shape_diagonals_match_unit_products() {
    let (mlp, theta, x, t) = random_problem(
        &[64, 50, 10],
        &[Activation::Sigmoid, Activation::Softmax],
        Loss::Ce,
        1e-3,
        8,
        64,
    );
    let w = theta.len();
    let picked: Vec<usize> = (0..w).step_by(97).chain(w - 12..w).collect();
    let mut units = Array2::zeros((picked.len(), w));
    for (r, &p) in picked.iter().enumerate() {
        units[[r, p]] = 1.0;
    }
    let he = hvp_block(&mlp, &theta, x.view(), t.view(), units.view());
    let ge = gvp_block(&mlp, &theta, x.view(), t.view(), units.view());
    let dh = diag_hessian(&mlp, &theta, x.view(), t.view());
    let dg = diag_ggn(&mlp, &theta, x.view(), t.view());
    let bl = diag_becker_lecun(&mlp, &theta, x.view(), t.view());
    let last = mlp.layout().pop().unwrap();
    for (r, &p) in picked.iter().enumerate() {
        assert!(
            (dh[p] - he[[r, p]]).abs() < DIAG_TOL,
            "diag(H)[{p}]: {} vs {}",
            dh[p],
            he[[r, p]]
        );
        assert!(
            (dg[p] - ge[[r, p]]).abs() < DIAG_TOL,
            "diag(G)[{p}]: {} vs {}",
            dg[p],
            ge[[r, p]]
        );
        if p >= last.weights.start {
            assert!((bl[p] - he[[r, p]]).abs() < DIAG_TOL, "BL last layer [{p}]");
        }
    }
}
