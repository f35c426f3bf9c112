//! The public face of every engine: the operations optimizers, analysis and the
//! command-line tool call, written once for every [`Backend`].
//!
//! Each method checks its arguments ([`check_args`]), splits requests larger than
//! the backend's [`Limits`], asks the backend for the data term and adds the L2
//! term ([`L2`]), so that its result is of
//! E(θ) = (1/|rows|) Σ_{n ∈ rows} E_n(θ) + (λ/2) Σ_l ‖W_l‖² (DESIGN.md).
//! [`DataTerm`] gives the same face without λ (the Laplace approximation's
//! likelihood term).

use super::checks::{check_args, check_data_shape};
use super::fisher::{self, check_fisher};
use super::memory::{check_dense_memory, DENSE_ALTERNATIVES};
use super::penalty::L2;
use super::{forward_backend, Backend, Diagonal, Kind};
use crate::cpu::{Ekfac, Fisher, KroneckerFactors};
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};
use std::ops::Range;

/// The curvature operations, each of E (data term + L2). Implemented for every
/// [`Backend`] by the blanket impl below (nothing else can implement it), so that
/// `&mut dyn Curvature` reaches any engine.
pub trait Curvature: Backend {
    /// The architecture this engine is bound to.
    fn mlp(&self) -> &Mlp {
        self.architecture()
    }

    /// N, the rows of the bound data.
    fn num_rows(&self) -> usize {
        self.data_rows()
    }

    /// E(θ) on `rows`.
    fn loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        let data = self.data_loss(theta, rows)?;
        Ok(data + L2::of(self.mlp()).value(theta))
    }

    /// (E(θ), ∇E(θ) (W)) on `rows`, by backpropagation.
    fn loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        let (data, mut grad) = self.data_loss_grad(theta, rows)?;
        let l2 = L2::of(self.mlp());
        l2.add_times(theta, &mut grad);
        Ok((data + l2.value(theta), grad))
    }

    /// The network outputs y (|rows|, K): softmax probabilities for ce, σ for bce,
    /// h(a) otherwise (no λ: outputs do not depend on it).
    fn outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        let per_call = self.limits().max_output_rows.max(1);
        if rows.len() <= per_call {
            return self.network_outputs(theta, rows);
        }
        let mut y = Array2::zeros((rows.len(), self.mlp().num_outputs())); // (|rows|, K)
        for r0 in rows.clone().step_by(per_call) {
            let r1 = (r0 + per_call).min(rows.end);
            let part = self.network_outputs(theta, r0..r1)?;
            y.slice_mut(s![r0 - rows.start..r1 - rows.start, ..])
                .assign(&part);
        }
        Ok(y)
    }

    /// C·vᵢ for every row vᵢ of V (k, W), C = H or G of E (`kind`), in as few passes
    /// as the backend's limits allow; returns (k, W).
    fn products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, Some(v.ncols()))?;
        let count = v.nrows();
        let mut out = if count == 0 {
            Array2::zeros(v.dim())
        } else {
            let per_call = self.limits().max_vectors.max(1);
            if count <= per_call {
                self.data_products(kind, theta, rows, v)?
            } else {
                let mut out = Array2::zeros(v.dim()); // (k, W)
                for c0 in (0..count).step_by(per_call) {
                    let c1 = (c0 + per_call).min(count);
                    let part =
                        self.data_products(kind, theta, rows.clone(), v.slice(s![c0..c1, ..]))?;
                    out.slice_mut(s![c0..c1, ..]).assign(&part);
                }
                out
            }
        };
        L2::of(self.mlp()).add_to_products(v, &mut out);
        Ok(out)
    }

    /// H·vᵢ for each row vᵢ of V (k, W) (R-propagation); returns (k, W).
    fn hvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.products(Kind::Hessian, theta, rows, v)
    }

    /// G·vᵢ (Gauss-Newton) for each row vᵢ of V (k, W); returns (k, W).
    fn gvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.products(Kind::GaussNewton, theta, rows, v)
    }

    /// C·v for one vector v (W), C = H or G.
    fn product(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: &[f64],
    ) -> Result<Vec<f64>> {
        let v = ArrayView2::from_shape((1, v.len()), v).map_err(|e| Error::Shape(e.to_string()))?;
        Ok(self
            .products(kind, theta, rows, v)?
            .into_raw_vec_and_offset()
            .0)
    }

    /// H·v for one vector v (W).
    fn hvp(&mut self, theta: &[f64], rows: Range<usize>, v: &[f64]) -> Result<Vec<f64>> {
        self.product(Kind::Hessian, theta, rows, v)
    }

    /// G·v for one vector v (W).
    fn gvp(&mut self, theta: &[f64], rows: Range<usize>, v: &[f64]) -> Result<Vec<f64>> {
        self.product(Kind::GaussNewton, theta, rows, v)
    }

    /// The full H or G (W, W) of E: the reference and the GPU build it from blocks
    /// of unit-vector products, the fast CPU engine from per-sample Kronecker sums
    /// (`cpu_fast::full`).
    fn matrix(&mut self, kind: Kind, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        // The matrix and the engine's working copy of it (its f32 readback on a
        // GPU, its accumulator on the fast CPU engine).
        let name = match kind {
            Kind::Hessian => "the Hessian H",
            Kind::GaussNewton => "the Gauss-Newton matrix G",
        };
        check_dense_memory(name, theta.len(), 2, DENSE_ALTERNATIVES)?;
        let mut m = self.data_matrix(kind, theta, rows)?;
        L2::of(self.mlp()).add_to_matrix(&mut m);
        Ok(m)
    }

    /// The full Hessian H (W, W).
    fn hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.matrix(Kind::Hessian, theta, rows)
    }

    /// The full Gauss-Newton matrix G (W, W).
    fn ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.matrix(Kind::GaussNewton, theta, rows)
    }

    /// A diagonal (W) of E's curvature.
    fn diagonal(&mut self, which: Diagonal, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        let mut d = self.data_diagonal(which, theta, rows)?;
        L2::of(self.mlp()).add_to_diagonal(&mut d);
        Ok(d)
    }

    /// The exact diagonal of H (W).
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.diagonal(Diagonal::Hessian, theta, rows)
    }

    /// The exact diagonal of G (W).
    fn diag_ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.diagonal(Diagonal::GaussNewton, theta, rows)
    }

    /// The Becker-LeCun approximation of diag(H) (PRML 5.79–5.81) (W).
    fn diag_becker_lecun(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.diagonal(Diagonal::BeckerLeCun, theta, rows)
    }

    /// The outer-product matrix Σ_n J_nᵀ H_out,n J_n / N + λ I_w (W, W)
    /// (PRML 5.84/5.85). Mathematically equal to G.
    fn outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        check_dense_memory(
            "the outer-product matrix",
            theta.len(),
            2,
            DENSE_ALTERNATIVES,
        )?;
        let mut m = self.data_outer_product(theta, rows)?;
        L2::of(self.mlp()).add_to_matrix(&mut m);
        Ok(m)
    }

    /// The per-sample gradients g_n = ∂E_n/∂θ (|rows|, W), not divided by N. Of the data
    /// term: λθ is the same for every sample, ∇E = mean_n g_n + λθ.
    fn per_sample_gradients(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.fisher_vectors(Fisher::Empirical, theta, rows)
    }

    /// The vectors g_{n,r} (|rows|·R, W) of a Fisher flavour, F = (1/N) Σ g gᵀ (see
    /// [`Backend::data_fisher_vectors`]); data term.
    fn fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        check_fisher(self.mlp(), fisher)?;
        fisher::vectors(self, fisher, theta, rows)
    }

    /// The K-FAC factors A_l, B_l of every layer (`cpu/kfac.rs`). λ is not in them: the
    /// factors are of the data term, and λ enters what is built from them (products).
    fn kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        check_fisher(self.mlp(), fisher)?;
        self.data_kfac_factors(fisher, theta, rows)
    }

    /// (K + λI_w) vᵢ for every row vᵢ of V (k, W), K = the K-FAC matrix of the flavour,
    /// (K v)_l = B_l V_l A_l; returns (k, W).
    fn kfac_products(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, Some(v.ncols()))?;
        let factors = self.kfac_factors(fisher, theta, rows)?;
        let mut out = fisher::kfac_products(&factors, v);
        L2::of(self.mlp()).add_to_products(v, &mut out);
        Ok(out)
    }

    /// EKFAC of the flavour: the K-FAC eigenbasis and the diagonal s_l (out_l, in_l+1)
    /// of the flavour's layer blocks in it. Of the data term (λ·I_w, zero on biases, is
    /// not diagonal in that basis).
    fn ekfac(&mut self, fisher: Fisher, theta: &[f64], rows: Range<usize>) -> Result<Ekfac> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        check_fisher(self.mlp(), fisher)?;
        fisher::ekfac(self, fisher, theta, rows)
    }

    /// (F + λI_w) vᵢ for every row vᵢ of V (k, W), F the flavour's Fisher (`Empirical`:
    /// the empirical-Fisher vector product); returns (k, W).
    fn fisher_products(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, Some(v.ncols()))?;
        check_fisher(self.mlp(), fisher)?;
        let mut out = fisher::products(self, fisher, theta, rows, v)?;
        L2::of(self.mlp()).add_to_products(v, &mut out);
        Ok(out)
    }

    /// diag(F) + λ on weight entries (W).
    fn fisher_diagonal(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        check_fisher(self.mlp(), fisher)?;
        let mut d = fisher::diagonal(self, fisher, theta, rows)?;
        L2::of(self.mlp()).add_to_diagonal(&mut d);
        Ok(d)
    }

    /// F + λI_w (W, W).
    fn fisher_matrix(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        check_fisher(self.mlp(), fisher)?;
        let mut m = fisher::matrix(self, fisher, theta, rows)?;
        L2::of(self.mlp()).add_to_matrix(&mut m);
        Ok(m)
    }

    /// The variance of the per-sample gradients (W), (1/N) Σ_n (g_n − ḡ)² (`cpu/fisher.rs`;
    /// BackPACK's `Variance` of a mean-reduced loss is this / N²). λ does not change it.
    fn gradient_variance(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        check_args(self.mlp(), self.num_rows(), theta, &rows, None)?;
        fisher::gradient_variance(self, theta, rows)
    }

    /// New rows X (N′, D), T (N′, K) for the same architecture: the engine keeps its
    /// buffers and pipelines (mini-batch epochs rebind instead of rebuilding).
    fn rebind(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        check_data_shape(self.mlp(), x, t)?;
        self.bind_data(x, t)
    }
}

impl<B: Backend> Curvature for B {}

/// A backend seen with another λ: every result of the face is of
/// E = (1/N) Σ_n E_n + (λ/2)‖W‖² for this view's λ instead of the model's.
/// `train --l2 evidence` trains through one whose λ it re-estimates; with λ = 0 it
/// is [`DataTerm`], the data term alone.
pub struct WithL2<B> {
    inner: B,
    /// The inner model with this view's λ.
    mlp: Mlp,
}

impl<B: Backend> WithL2<B> {
    /// `inner` with λ = `l2` (finite, ≥ 0).
    pub fn new(inner: B, l2: f64) -> Result<WithL2<B>> {
        let mlp = inner.architecture().with_l2(l2)?;
        Ok(WithL2 { inner, mlp })
    }

    /// Changes this view's λ.
    pub fn set_l2(&mut self, l2: f64) -> Result<()> {
        self.mlp = self.mlp.with_l2(l2)?;
        Ok(())
    }

    /// The engine behind the view.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

/// Any engine's face without the L2 term: every result is of the data term
/// (1/N) Σ_n E_n alone. The Laplace approximation and the evidence use it for the
/// likelihood's curvature, to which they add their own prior precision.
pub type DataTerm<'a> = WithL2<&'a mut dyn Backend>;

impl<'a> WithL2<&'a mut dyn Backend> {
    /// The data term of `engine` (borrowed for as long as the view lives).
    pub fn of(engine: &'a mut dyn Curvature) -> Result<DataTerm<'a>> {
        WithL2::new(engine as &mut dyn Backend, 0.0)
    }
}

/// A borrowed backend is a backend (so views can borrow the engine they show).
impl<B: Backend + ?Sized> Backend for &mut B {
    fn architecture(&self) -> &Mlp {
        (**self).architecture()
    }
    forward_backend!(self => ref (**self), mut (**self));
}

impl<B: Backend> Backend for WithL2<B> {
    fn architecture(&self) -> &Mlp {
        &self.mlp
    }
    forward_backend!(self => ref self.inner, mut self.inner);
}
