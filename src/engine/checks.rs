//! The argument checks every operation shares, written once: the face
//! ([`super::Curvature`]) runs [`check_args`] before each call into a backend, and
//! every engine's constructor and [`super::Curvature::rebind`] run
//! [`check_data_shape`]. Each message names the mismatch.

use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::ArrayView2;
use std::ops::Range;

/// θ of length W, a non-empty row range inside the `num_rows` rows of the data,
/// and (when given) a block with W columns.
pub fn check_args(
    mlp: &Mlp,
    num_rows: usize,
    theta: &[f64],
    rows: &Range<usize>,
    block_cols: Option<usize>,
) -> Result<()> {
    let w = mlp.num_params();
    if theta.len() != w {
        return Err(Error::Shape(format!(
            "θ has {} entries but the {} network has W = {w} parameters",
            theta.len(),
            mlp.describe()
        )));
    }
    if rows.start >= rows.end || rows.end > num_rows {
        return Err(Error::Shape(format!(
            "row range {}..{} is empty or outside the {num_rows} rows of the data",
            rows.start, rows.end
        )));
    }
    if let Some(cols) = block_cols {
        if cols != w {
            return Err(Error::Shape(format!(
                "vectors have {cols} entries but the network has W = {w} parameters"
            )));
        }
    }
    Ok(())
}

/// X (N, D) and T (N, K) fit the network and each other, with N ≥ 1.
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
