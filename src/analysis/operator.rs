//! The linear operator the spectral methods see: v ↦ A v with A = H (exact
//! Hessian-vector products, R-propagation) or A = G (Gauss-Newton products),
//! optionally restricted to one block of parameters (one layer's W_l and b_l):
//! v is embedded with zeros outside the block, multiplied, and the product
//! projected back onto the block — the principal submatrix A_BB.

use crate::engine::{Curvature, Kind};
use crate::error::{Error, Result};
use ndarray::{s, Array2, ArrayView2};
use std::ops::Range;

/// v ↦ A v on an engine at fixed (θ, rows), counting the products made.
pub struct Operator<'a> {
    engine: &'a mut dyn Curvature,
    theta: &'a [f64],
    rows: Range<usize>,
    kind: Kind,
    block: Range<usize>,
    /// Matrix-vector products made so far (a block of k counts k).
    pub products: usize,
}

impl<'a> Operator<'a> {
    /// The full operator (W × W).
    pub fn new(
        engine: &'a mut dyn Curvature,
        theta: &'a [f64],
        rows: Range<usize>,
        kind: Kind,
    ) -> Operator<'a> {
        let w = theta.len();
        Operator {
            engine,
            theta,
            rows,
            kind,
            block: 0..w,
            products: 0,
        }
    }

    /// The principal block A_BB for the parameter range `block` of θ.
    pub fn restricted(mut self, block: Range<usize>) -> Result<Operator<'a>> {
        if block.start >= block.end || block.end > self.theta.len() {
            return Err(Error::Shape(format!(
                "parameter block {}..{} is empty or outside θ (W = {})",
                block.start,
                block.end,
                self.theta.len()
            )));
        }
        self.block = block;
        Ok(self)
    }

    /// The side of the (square) operator: the block's length.
    pub fn dim(&self) -> usize {
        self.block.len()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A vᵢ for each row vᵢ of V (k, dim), in one engine pass; returns (k, dim).
    pub fn apply_block(&mut self, v: ArrayView2<f64>) -> Result<Array2<f64>> {
        let (k, dim) = v.dim();
        if dim != self.dim() {
            return Err(Error::Shape(format!(
                "vectors have {dim} entries, the operator {}",
                self.dim()
            )));
        }
        let w = self.theta.len();
        let full_block = self.block.len() == w;
        let embedded;
        let v_full = if full_block {
            v
        } else {
            let mut e = Array2::zeros((k, w)); // (k, W), zero outside the block
            e.slice_mut(s![.., self.block.clone()]).assign(&v);
            embedded = e;
            embedded.view()
        };
        let av = self
            .engine
            .products(self.kind, self.theta, self.rows.clone(), v_full)?;
        self.products += k;
        Ok(if full_block {
            av
        } else {
            av.slice(s![.., self.block.clone()]).to_owned()
        })
    }

    /// A v for one vector (dim).
    pub fn apply(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        let view =
            ArrayView2::from_shape((1, v.len()), v).map_err(|e| Error::Shape(e.to_string()))?;
        Ok(self.apply_block(view)?.into_raw_vec_and_offset().0)
    }

    /// The dense matrix A (dim, dim): the engine's full H or G, cut to the block.
    pub fn dense(&mut self) -> Result<Array2<f64>> {
        let a = self
            .engine
            .matrix(self.kind, self.theta, self.rows.clone())?;
        Ok(a.slice(s![self.block.clone(), self.block.clone()])
            .to_owned())
    }
}
