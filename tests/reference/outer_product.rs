//! The outer-product approximation (PRML 5.84/5.85) and its sequential
//! Sherman-Morrison inverse (PRML 5.87–5.89).

use crate::common;
use common::{random_problem, sweep};
use curvature::cpu::{inverse_outer_product, outer_product, outer_product_vectors};
use ndarray::{Array1, Array2};

const N: usize = 6;
/// The bound on inverse · (outer product + αI) − I. α ≥ 0.1 bounds the
/// smallest eigenvalue of A away from 0, so each sequential update loses only
/// O(u·cond(A)) and the result is far inside this bound.
const INVERSE_TOL: f64 = 1e-8;
/// Σ b bᵀ formed two ways (per sample vs all rows at once): roundings of O(1) sums.
const SAME_SUM_TOL: f64 = 1e-12;

fn max_abs(m: &Array2<f64>) -> f64 {
    m.iter().fold(0.0, |a, v| a.max(v.abs()))
}

#[test]
fn vectors_rebuild_the_outer_product() {
    for (seed, case) in sweep().iter().enumerate() {
        let (mlp, theta, x, t) =
            random_problem(&case.sizes, &case.acts, case.loss, 0.02, N, seed as u64);
        let b = outer_product_vectors(&mlp, &theta, x.view(), t.view());
        assert_eq!(
            b.dim(),
            (N * mlp.num_outputs(), theta.len()),
            "{}: R = N·K rows",
            case.describe()
        );
        let lambda_i = Array2::from_diag(&Array1::from(mlp.weight_mask()).mapv(|w| w * mlp.l2()));
        let all_at_once = b.t().dot(&b) + lambda_i;
        let op = outer_product(&mlp, &theta, x.view(), t.view());
        let err = max_abs(&(&op - &all_at_once));
        assert!(err < SAME_SUM_TOL, "{}: {err:e}", case.describe());
    }
}

#[test]
fn sherman_morrison_inverse_is_the_inverse() {
    let mut worst = 0.0f64;
    for (seed, case) in sweep().iter().enumerate() {
        for (l2, alpha) in [(0.0, 0.1), (0.05, 1.0)] {
            let (mlp, theta, x, t) =
                random_problem(&case.sizes, &case.acts, case.loss, l2, N, seed as u64);
            let w = theta.len();
            let a = outer_product(&mlp, &theta, x.view(), t.view()) + Array2::<f64>::eye(w) * alpha;
            let inv = inverse_outer_product(&mlp, &theta, x.view(), t.view(), alpha);
            let err = max_abs(&(inv.dot(&a) - Array2::<f64>::eye(w)));
            assert!(
                err < INVERSE_TOL,
                "{} α={alpha}: ‖A⁻¹A − I‖max = {err:e}",
                case.describe()
            );
            worst = worst.max(err);
        }
    }
    eprintln!("Sherman-Morrison inverse: worst ‖A⁻¹A − I‖max {worst:e}");
}
