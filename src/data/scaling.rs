//! Per-column input scaling x' = (x − shift) ⊙ scale, fitted on a data set and stored with a
//! model (as a metadata string) so that evaluation and prediction scale inputs the same way.

use super::error::{shown as truncate, DataError, DataErrorKind};
use ndarray::{Array2, ArrayView2};
use std::path::Path;
use std::str::FromStr;

/// How a [`Scaling`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingKind {
    /// shift = column mean, scale = 1 / column standard deviation (population, 1/N).
    Standardize,
    /// shift = column minimum, scale = 1 / (max − min): columns map onto [0, 1].
    MinMax,
    /// shift = 0, scale = 1.
    None,
    /// Not fitted: a constant scaling that is part of a named set's definition
    /// (digits ×1/16, IDX ×1/255, study-hours ×1/column max). `fit` with it gives the identity.
    Fixed,
}

impl ScalingKind {
    pub fn name(self) -> &'static str {
        match self {
            ScalingKind::Standardize => "standardize",
            ScalingKind::MinMax => "minmax",
            ScalingKind::None => "none",
            ScalingKind::Fixed => "fixed",
        }
    }
}

impl FromStr for ScalingKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ScalingKind, String> {
        match s {
            "standardize" => Ok(ScalingKind::Standardize),
            "minmax" => Ok(ScalingKind::MinMax),
            "none" => Ok(ScalingKind::None),
            "fixed" => Ok(ScalingKind::Fixed),
            other => Err(format!(
                "unknown scaling `{other}`: use standardize, minmax or none"
            )),
        }
    }
}

/// x' = (x − shift) ⊙ scale per column; `shift` and `scale` have length D.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub kind: ScalingKind,
    pub shift: Vec<f32>,
    pub scale: Vec<f32>,
}

/// Where a `from_metadata` error points: there is no file, only the string.
const METADATA_SOURCE: &str = "<scaling metadata>";

impl Scaling {
    /// The identity scaling of width `d` with the given kind.
    fn identity(kind: ScalingKind, d: usize) -> Scaling {
        Scaling {
            kind,
            shift: vec![0.0; d],
            scale: vec![1.0; d],
        }
    }

    /// A fixed (not fitted) scaling x' = x ⊙ scale.
    pub fn fixed(scale: Vec<f32>) -> Scaling {
        Scaling {
            kind: ScalingKind::Fixed,
            shift: vec![0.0; scale.len()],
            scale,
        }
    }

    /// Fits the scaling of `kind` to the columns of x (N, D), accumulating in f64.
    /// A constant column (zero spread) gets scale 1 rather than a division by zero, so it
    /// maps onto 0. With N = 0 the result is the identity.
    pub fn fit(kind: ScalingKind, x: ArrayView2<f32>) -> Scaling {
        let (n, d) = x.dim();
        if n == 0 || matches!(kind, ScalingKind::None | ScalingKind::Fixed) {
            return Scaling::identity(kind, d);
        }
        let mut shift = Vec::with_capacity(d);
        let mut scale = Vec::with_capacity(d);
        for column in x.columns() {
            let (center, spread) = match kind {
                ScalingKind::Standardize => {
                    let mean = column.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
                    let var = column
                        .iter()
                        .map(|&v| (f64::from(v) - mean).powi(2))
                        .sum::<f64>()
                        / n as f64;
                    (mean, var.sqrt())
                }
                _ => {
                    let lo = column.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                    let hi = column.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                    (f64::from(lo), f64::from(hi) - f64::from(lo))
                }
            };
            shift.push(center as f32);
            let inverse = 1.0 / spread;
            // A zero (or denormal-tiny) spread would give an infinite scale.
            scale.push(if (inverse as f32).is_finite() && spread > 0.0 {
                inverse as f32
            } else {
                1.0
            });
        }
        Scaling { kind, shift, scale }
    }

    /// D, the width this scaling applies to.
    pub fn width(&self) -> usize {
        self.shift.len()
    }

    /// x ← (x − shift) ⊙ scale, row by row; x is (N, D) with D = `width()`.
    ///
    /// Computed in f64 and rounded once: in f32, x − shift overflows to ±∞ for finite
    /// inputs near ±3.4e38 (a column holding −3e38 and 3e38), although the scaled value is
    /// of order one.
    ///
    /// # Panics
    /// If x has a different number of columns (loaders check widths first).
    pub fn apply(&self, x: &mut Array2<f32>) {
        assert_eq!(x.ncols(), self.width(), "scaling width must match x");
        for mut row in x.rows_mut() {
            for ((v, &s), &k) in row.iter_mut().zip(&self.shift).zip(&self.scale) {
                *v = ((f64::from(*v) - f64::from(s)) * f64::from(k)) as f32;
            }
        }
    }

    /// `kind=standardize;shift=a,b,…;scale=c,d,…` — f32 values written in Rust's shortest
    /// round-trip form, so `from_metadata(to_metadata())` gives back exactly the same scaling.
    pub fn to_metadata(&self) -> String {
        let join = |v: &[f32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "kind={};shift={};scale={}",
            self.kind.name(),
            join(&self.shift),
            join(&self.scale)
        )
    }

    /// Parses `to_metadata`'s format; BadMetadata on a missing key, unknown kind, a
    /// non-finite or unparsable number, or shift and scale of different lengths.
    pub fn from_metadata(s: &str) -> Result<Scaling, DataError> {
        let bad = |why: String| {
            DataError::new(
                DataErrorKind::BadMetadata(format!(
                    "{why} in `{}` — the model file's scaling entry is damaged; re-save the model",
                    truncate(s)
                )),
                Path::new(METADATA_SOURCE),
                None,
            )
        };
        let (mut kind, mut shift, mut scale) = (None, None, None);
        for part in s.split(';') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("entry `{}` has no `=`", truncate(part))))?;
            match key.trim() {
                "kind" => kind = Some(value.trim().parse::<ScalingKind>().map_err(&bad)?),
                "shift" => shift = Some(parse_floats(value).map_err(&bad)?),
                "scale" => scale = Some(parse_floats(value).map_err(&bad)?),
                other => return Err(bad(format!("unknown key `{}`", truncate(other)))),
            }
        }
        let kind = kind.ok_or_else(|| bad("no `kind`".into()))?;
        let shift = shift.ok_or_else(|| bad("no `shift`".into()))?;
        let scale = scale.ok_or_else(|| bad("no `scale`".into()))?;
        if shift.len() != scale.len() {
            return Err(bad(format!(
                "{} shifts but {} scales",
                shift.len(),
                scale.len()
            )));
        }
        Ok(Scaling { kind, shift, scale })
    }
}

fn parse_floats(list: &str) -> Result<Vec<f32>, String> {
    let list = list.trim();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|v| match v.trim().parse::<f32>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(format!("`{}` is not a finite number", truncate(v))),
        })
        .collect()
}
