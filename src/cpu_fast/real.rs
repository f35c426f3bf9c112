//! `Real`: the scalar the fast CPU engine is generic over (f32 or f64).
//!
//! Matrix products go through faer, so a `Real` is a faer field; elementwise
//! functions (h, h′, h″, the loss) are evaluated by the crate's f64 formulas in
//! `activation.rs` / `loss.rs` and rounded back, so both precisions share the
//! specification's formulas and only the products' accumulation differs.

use faer::traits::ComplexField;
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

/// f32 or f64.
pub trait Real:
    ComplexField
    + Copy
    + Default
    + Debug
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    /// The name printed by the tools (`f32`, `f64`).
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}
