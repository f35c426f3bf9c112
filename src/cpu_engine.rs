//! `CpuEngine`: the curvature operations on the CPU, through the f64 reference
//! path (`cpu`). The data are converted to f64 once, when the engine is bound.

use crate::cpu;
use crate::curvature::{check_args, Curvature};
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};
use std::ops::Range;

/// The CPU device bound to one model architecture and one data set.
pub struct CpuEngine {
    mlp: Mlp,
    x: Array2<f64>, // (N, D)
    t: Array2<f64>, // (N, K)
}

impl CpuEngine {
    /// Binds `mlp` to inputs `x` (N, D) and targets `t` (N, K).
    pub fn new(mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<CpuEngine> {
        check_data_shape(mlp, x, t)?;
        Ok(CpuEngine {
            mlp: mlp.clone(),
            x: x.mapv(f64::from),
            t: t.mapv(f64::from),
        })
    }

    /// (x, t) restricted to `rows`, after checking the arguments.
    fn batch(
        &self,
        theta: &[f64],
        rows: &Range<usize>,
        block_cols: Option<usize>,
    ) -> Result<(ArrayView2<'_, f64>, ArrayView2<'_, f64>)> {
        check_args(&self.mlp, self.x.nrows(), theta, rows, block_cols)?;
        let r = rows.clone();
        Ok((self.x.slice(s![r.clone(), ..]), self.t.slice(s![r, ..])))
    }
}

/// Checks that X (N, D) and T (N, K) fit the network and each other.
pub fn check_data_shape(mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
    if x.nrows() != t.nrows() {
        return Err(Error::Shape(format!(
            "inputs have {} rows but targets have {}",
            x.nrows(),
            t.nrows()
        )));
    }
    if x.nrows() == 0 {
        return Err(Error::Shape("the data set has no rows".into()));
    }
    if x.ncols() != mlp.num_inputs() {
        return Err(Error::Shape(format!(
            "the data have {} input columns but the {} network takes {}",
            x.ncols(),
            mlp.describe(),
            mlp.num_inputs()
        )));
    }
    if t.ncols() != mlp.num_outputs() {
        return Err(Error::Shape(format!(
            "the data have {} target columns but the {} network has {} outputs",
            t.ncols(),
            mlp.describe(),
            mlp.num_outputs()
        )));
    }
    Ok(())
}

impl Curvature for CpuEngine {
    fn mlp(&self) -> &Mlp {
        &self.mlp
    }
    fn num_rows(&self) -> usize {
        self.x.nrows()
    }
    fn loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::loss(&self.mlp, theta, x, t))
    }
    fn loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::gradient(&self.mlp, theta, x, t))
    }
    fn outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let (x, _) = self.batch(theta, &rows, None)?;
        Ok(cpu::outputs(&self.mlp, theta, x))
    }
    fn hvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        let (x, t) = self.batch(theta, &rows, Some(v.ncols()))?;
        Ok(cpu::hvp_block(&self.mlp, theta, x, t, v))
    }
    fn gvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        let (x, t) = self.batch(theta, &rows, Some(v.ncols()))?;
        Ok(cpu::gvp_block(&self.mlp, theta, x, t, v))
    }
    fn hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::hessian(&self.mlp, theta, x, t))
    }
    fn ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::ggn(&self.mlp, theta, x, t))
    }
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::diag_hessian(&self.mlp, theta, x, t))
    }
    fn diag_ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::diag_ggn(&self.mlp, theta, x, t))
    }
    fn diag_becker_lecun(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::diag_becker_lecun(&self.mlp, theta, x, t))
    }
    fn outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let (x, t) = self.batch(theta, &rows, None)?;
        Ok(cpu::outer_product(&self.mlp, theta, x, t))
    }
}
