//! The operations both paths provide — loss, gradient, Hv, Gv, full H and G,
//! diagonals, the outer product — behind one trait, so that optimizers and the
//! command-line tool never care where they run.
//!
//! An engine is bound to one model architecture and one data set (X (N, D),
//! T (N, K)) that it keeps resident (on the GPU: uploaded once). Every operation
//! takes θ (W) and a contiguous range of rows, the batch; its result is of
//! E(θ) = (1/|rows|) Σ_{n ∈ rows} E_n(θ) + (λ/2) Σ_l ‖W_l‖² (DESIGN.md).

use crate::error::Result;
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::ops::Range;

/// The curvature operations. Implementations may assume their arguments were
/// checked by [`check_args`]: θ has W entries, blocks have W columns, `rows`
/// is a non-empty range inside the bound data.
pub trait Curvature {
    /// The architecture this engine is bound to.
    fn mlp(&self) -> &Mlp;
    /// N, the rows of the bound data.
    fn num_rows(&self) -> usize;
    /// E(θ) on `rows`.
    fn loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64>;
    /// (E(θ), ∇E(θ) (W)) on `rows`, by backpropagation.
    fn loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)>;
    /// The network outputs y (|rows|, K): softmax probabilities for ce, σ for bce, h(a) otherwise.
    fn outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>>;
    /// H·vᵢ for each row vᵢ of V (k, W), in one pass (R-propagation); returns (k, W).
    fn hvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>>;
    /// G·vᵢ (Gauss-Newton) for each row vᵢ of V (k, W), in one pass; returns (k, W).
    fn gvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>>;
    /// The full Hessian H (W, W): the reference and the GPU from blocks of Hv columns,
    /// the fast CPU engine from per-sample Kronecker sums (`cpu_fast::full`).
    fn hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>>;
    /// The full Gauss-Newton matrix G (W, W), built as [`Curvature::hessian`] builds H.
    fn ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>>;
    /// The exact diagonal of H (W).
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>>;
    /// The exact diagonal of G (W).
    fn diag_ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>>;
    /// The Becker-LeCun approximation of diag(H) (PRML 5.79–5.81) (W).
    fn diag_becker_lecun(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>>;
    /// The outer-product matrix Σ_n J_nᵀ H_out,n J_n / N + λ I_w (W, W), accumulated
    /// sample by sample (PRML 5.84/5.85). Mathematically equal to G.
    fn outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>>;

    /// H·v for one vector v (W).
    fn hvp(&mut self, theta: &[f64], rows: Range<usize>, v: &[f64]) -> Result<Vec<f64>> {
        let v = ArrayView2::from_shape((1, v.len()), v)
            .map_err(|e| crate::error::Error::Shape(e.to_string()))?;
        Ok(self.hvp_block(theta, rows, v)?.into_raw_vec_and_offset().0)
    }
    /// G·v for one vector v (W).
    fn gvp(&mut self, theta: &[f64], rows: Range<usize>, v: &[f64]) -> Result<Vec<f64>> {
        let v = ArrayView2::from_shape((1, v.len()), v)
            .map_err(|e| crate::error::Error::Shape(e.to_string()))?;
        Ok(self.gvp_block(theta, rows, v)?.into_raw_vec_and_offset().0)
    }
}

/// Checks the arguments every operation shares, with a message that names the
/// mismatch: θ of length W, a non-empty row range inside the data, and (when
/// given) a block with W columns.
pub fn check_args(
    mlp: &Mlp,
    num_rows: usize,
    theta: &[f64],
    rows: &Range<usize>,
    block_cols: Option<usize>,
) -> Result<()> {
    use crate::error::Error::Shape;
    let w = mlp.num_params();
    if theta.len() != w {
        return Err(Shape(format!(
            "θ has {} entries but the {} network has W = {w} parameters",
            theta.len(),
            mlp.describe()
        )));
    }
    if rows.start >= rows.end || rows.end > num_rows {
        return Err(Shape(format!(
            "row range {}..{} is empty or outside the {num_rows} rows of the data",
            rows.start, rows.end
        )));
    }
    if let Some(cols) = block_cols {
        if cols != w {
            return Err(Shape(format!(
                "vectors have {cols} entries but the network has W = {w} parameters"
            )));
        }
    }
    Ok(())
}

/// What an engine's forward and backward buffers hold after a product: the passes at
/// this θ over these rows, with the backward pass when `exact` (the Gauss-Newton needs
/// none). The next product at the same θ, rows and kind reuses them (Lanczos, CG,
/// Hutchinson and Hessian-free make many products at one θ).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PassesKey {
    theta: Vec<f64>,
    rows: Range<usize>,
    exact: bool,
}

impl PassesKey {
    /// Whether `kept` describes passes at this θ, over these rows, of this kind.
    pub(crate) fn matches(
        kept: &Option<PassesKey>,
        theta: &[f64],
        rows: &Range<usize>,
        exact: bool,
    ) -> bool {
        kept.as_ref()
            .is_some_and(|k| k.exact == exact && k.rows == *rows && k.theta == theta)
    }

    /// Records in `kept` that the buffers now hold these passes (reusing its allocation).
    pub(crate) fn record(
        kept: &mut Option<PassesKey>,
        theta: &[f64],
        rows: &Range<usize>,
        exact: bool,
    ) {
        let key = kept.get_or_insert_with(|| PassesKey {
            theta: Vec::new(),
            rows: rows.clone(),
            exact,
        });
        key.theta.clear();
        key.theta.extend_from_slice(theta);
        key.rows = rows.clone();
        key.exact = exact;
    }
}
