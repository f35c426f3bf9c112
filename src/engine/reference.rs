//! `ReferenceEngine`: the f64 reference path (`cpu/`, the specification) as a
//! backend. The data are converted to f64 once, when they are bound. The
//! reference functions compute the whole E of the model they are given; this
//! backend gives them the model with λ = 0, so that what it returns is the data
//! term the contract asks for, and the face adds λ as for every engine.

use super::checks::check_data_shape;
use super::{Backend, Diagonal, Kind};
use crate::cpu::{self, Fisher, KroneckerFactors};
use crate::error::Result;
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};
use std::ops::Range;

/// The reference bound to one model architecture and one data set.
pub struct ReferenceEngine {
    /// The model as bound, λ included (what [`Backend::mlp`] reports).
    mlp: Mlp,
    /// The same model with λ = 0: the reference functions then give the data term.
    data_mlp: Mlp,
    x: Array2<f64>, // (N, D)
    t: Array2<f64>, // (N, K)
}

impl ReferenceEngine {
    /// Binds `mlp` to inputs `x` (N, D) and targets `t` (N, K).
    pub fn new(mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<ReferenceEngine> {
        check_data_shape(mlp, x, t)?;
        Ok(ReferenceEngine {
            mlp: mlp.clone(),
            data_mlp: mlp.with_l2(0.0)?,
            x: x.mapv(f64::from),
            t: t.mapv(f64::from),
        })
    }

    /// (x, t) restricted to `rows`.
    fn batch(&self, rows: &Range<usize>) -> (ArrayView2<'_, f64>, ArrayView2<'_, f64>) {
        let r = rows.clone();
        (self.x.slice(s![r.clone(), ..]), self.t.slice(s![r, ..]))
    }
}

impl Backend for ReferenceEngine {
    fn architecture(&self) -> &Mlp {
        &self.mlp
    }
    fn data_rows(&self) -> usize {
        self.x.nrows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        let (x, t) = self.batch(&rows);
        Ok(cpu::loss(&self.data_mlp, theta, x, t))
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        let (x, t) = self.batch(&rows);
        Ok(cpu::gradient(&self.data_mlp, theta, x, t))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let (x, _) = self.batch(&rows);
        Ok(cpu::outputs(&self.data_mlp, theta, x))
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        let (x, t) = self.batch(&rows);
        Ok(match kind {
            Kind::Hessian => cpu::hvp_block(&self.data_mlp, theta, x, t, v),
            Kind::GaussNewton => cpu::gvp_block(&self.data_mlp, theta, x, t, v),
        })
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        let (x, t) = self.batch(&rows);
        let m = &self.data_mlp;
        Ok(match which {
            Diagonal::Hessian => cpu::diag_hessian(m, theta, x, t),
            Diagonal::GaussNewton => cpu::diag_ggn(m, theta, x, t),
            Diagonal::BeckerLeCun => cpu::diag_becker_lecun(m, theta, x, t),
        })
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        let (x, t) = self.batch(&rows);
        Ok(match kind {
            Kind::Hessian => cpu::hessian(&self.data_mlp, theta, x, t),
            Kind::GaussNewton => cpu::ggn(&self.data_mlp, theta, x, t),
        })
    }
    /// Sample by sample (PRML 5.84/5.85): the independent check of G.
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let (x, t) = self.batch(&rows);
        Ok(cpu::outer_product(&self.data_mlp, theta, x, t))
    }
    /// `cpu::fisher_vectors` (`cpu::per_sample_gradients` for `Empirical`). An `Mc` request
    /// split by the face (skip > 0) is answered from the reference's own stream: the
    /// vectors of the `skip` rows before `rows` as well, which are then dropped.
    fn data_fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        let m = &self.data_mlp;
        if fisher == Fisher::Empirical {
            let (x, t) = self.batch(&rows);
            return Ok(cpu::per_sample_gradients(m, theta, x, t));
        }
        let skip = if matches!(fisher, Fisher::Mc { .. }) {
            skip.min(rows.start)
        } else {
            0
        };
        let (x, t) = self.batch(&(rows.start - skip..rows.end));
        let g = cpu::fisher_vectors(m, theta, x, t, fisher)?;
        let r = fisher.columns_per_sample(m.num_outputs());
        Ok(g.slice(s![skip * r.., ..]).to_owned())
    }
    fn data_kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        let (x, t) = self.batch(&rows);
        cpu::kfac_factors(&self.data_mlp, theta, x, t, fisher)
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        self.x = x.mapv(f64::from);
        self.t = t.mapv(f64::from);
        Ok(())
    }
}
