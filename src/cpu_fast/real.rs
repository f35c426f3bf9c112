//! `Real`: the scalar the fast CPU engine is generic over (f32 or f64).
//!
//! Matrix products go through faer, so a `Real` is a faer field; the loss and
//! the output layer are evaluated by the crate's f64 formulas in `loss.rs` and
//! rounded back. Hidden activations and the softmax outputs too, except in
//! f32: sigmoid, tanh and softmax there use the vectorized f32 kernels of
//! `fast_math.rs` (their error bounds are stated and tested there) — the one
//! place the precisions differ in more than the products' accumulation. The
//! loss itself is always the f64 formula.

use super::fast_math::{smooth_values, softmax_rows, Smooth};
use super::passes::{spec_hidden_values, spec_softmax_rows};
use crate::activation::Activation;
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
    /// The same, as the engine contract names precisions.
    const PRECISION: crate::engine::Precision;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
    /// z = h(a) of a hidden layer, and h′(a) (`keep` ≥ 1), h″(a) (`keep` ≥ 2).
    fn hidden_values(
        act: Activation,
        a: &[Self],
        z: &mut [Self],
        dh: &mut [Self],
        d2h: &mut [Self],
        keep: u8,
    ) {
        spec_hidden_values(act, a, z, dh, d2h, keep)
    }
    /// p = softmax of every row (k entries) of `a`.
    fn softmax_rows(a: &[Self], p: &mut [Self], k: usize) {
        spec_softmax_rows(a, p, k)
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    const PRECISION: crate::engine::Precision = crate::engine::Precision::F64;
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
    const PRECISION: crate::engine::Precision = crate::engine::Precision::F32;
    fn hidden_values(
        act: Activation,
        a: &[f32],
        z: &mut [f32],
        dh: &mut [f32],
        d2h: &mut [f32],
        keep: u8,
    ) {
        match act {
            Activation::Sigmoid => smooth_values(Smooth::Sigmoid, a, z, dh, d2h, keep),
            Activation::Tanh => smooth_values(Smooth::Tanh, a, z, dh, d2h, keep),
            _ => spec_hidden_values(act, a, z, dh, d2h, keep),
        }
    }
    fn softmax_rows(a: &[f32], p: &mut [f32], k: usize) {
        softmax_rows(a, p, k)
    }
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}
