//! The one comparator every check of an engine against the reference uses
//! (`verify`, `curvature parity`, the tests): an entry passes when
//! |g − c| ≤ abs + rel·|c|, g the checked value, c the reference. On failure it
//! reports the worst index and the first mismatches.
//!
//! And the one table of tolerances ([`tolerance`]), by the engine's precision and
//! what the result is. In f32 every tolerance's `abs` is relative to the largest
//! |entry| of the reference ([`Tolerance::scaled_to`]): results are sums over many
//! samples and units whose f32 error scales with the size of the summed terms, not
//! with an entry that cancels to near zero.
//!
//! | precision | result                       | abs (× max\|c\|) | rel   | why |
//! |-----------|------------------------------|------------------|-------|-----|
//! | f64       | anything                     | 1e-10            | 1e-10 | the same f64 arithmetic in another summation order: a few ulps, four orders of margin |
//! | f32       | a matrix product (257 terms) | 2e-5             | 2e-5  | K·u·Σ\|a\|\|b\| = 257·6e-8 ≈ 1.5e-5 worst case |
//! | f32       | loss, outputs                | 1e-5             | 1e-4  | forward products of ≤ 257 terms (≤ 1.5e-5 each) through exp/log (relative error kept), summed over ≤ 1797 rows by a tree (≈ 20·u more); the loss's max\|c\| counts as at least [`LOSS_SCALE_FLOOR`] |
//! | f32       | gradient, per-sample gradients | 2e-5           | 2e-4  | one more pass (δ·W, δᵀz over ≤ 1797 samples: ≈ √1797·u ≈ 2.5e-6 of the summed magnitudes); worst seen on llvmpipe 0.2 of it; max\|c\| counts as at least [`GRADIENT_SCALE_FLOOR`] |
//! | f32       | Hv, Gv, diagonals, matrices, K-FAC factors and Fisher quantities | 2e-5 | 2e-4 | forward, backward, R-forward, R-backward each ≈ 2.5e-6 as above, ×2 margin; h″ terms carry the first pass's error into the second (K-FAC's Z̃ᵀZ̃, SᵀS: one pass and one sum, well inside it) |

use super::device::Precision;
use std::fmt;

/// The least scale of the loss's `abs` ([`Checked::Loss`]): 0.1, so its absolute
/// tolerance in f32 never drops below 1e-6. The loss is a mean of per-row terms
/// such as lse(z) − z_t, whose f32 cancellation error is about u·|z_t|
/// (6e-8 · 16 ≈ 1e-6 for logits up to 16) however small the mean becomes: near a
/// perfect fit (E ≈ 6e-4 on digits after 20 K-FAC epochs) llvmpipe's loss was off
/// by 7.4e-8, 1.2e-4 of E, which a tolerance relative to E alone refused.
pub const LOSS_SCALE_FLOOR: f64 = 0.1;
/// The least scale of the gradient's `abs`: 0.01, an absolute floor of 2e-7 in
/// f32. Near a perfect fit the gradient is a mean of residuals p − t that are
/// differences of probabilities of size 1, each off by about u = 6e-8 however
/// small the residual, times activations of size 1: the same run's gradient
/// (max |g| 3.1e-4) was off by 1.95e-8 at worst, ten times inside the floor.
pub const GRADIENT_SCALE_FLOOR: f64 = 0.01;

/// The least scale of `abs` for a result (0: none).
fn scale_floor(what: Checked) -> f64 {
    match what {
        Checked::Loss => LOSS_SCALE_FLOOR,
        Checked::Gradient => GRADIENT_SCALE_FLOOR,
        Checked::MatrixProduct | Checked::Values | Checked::Curvature => 0.0,
    }
}

/// A tolerance: |g − c| ≤ abs + rel·|c|. Every use names its reason.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

impl Tolerance {
    /// This tolerance with `abs` multiplied by the largest |c| of `reference`.
    pub fn scaled_to(self, reference: &[f64]) -> Tolerance {
        let scale = reference
            .iter()
            .fold(0.0f64, |m, &c| m.max(c.abs()))
            .max(1e-30);
        Tolerance {
            abs: self.abs * scale,
            rel: self.rel,
        }
    }
}

/// What a checked result is, for its row of the tolerance table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// One matrix product of a kernel (dot products of up to 257 terms).
    MatrixProduct,
    /// The network outputs.
    Values,
    /// The loss: as `Values`, its scale at least [`LOSS_SCALE_FLOOR`].
    Loss,
    /// The gradient (its scale at least [`GRADIENT_SCALE_FLOOR`]).
    Gradient,
    /// Any second-order result: products, diagonals, full matrices, outer product.
    Curvature,
}

/// f64 against the f64 reference: see the module's table.
pub const F64: Tolerance = Tolerance {
    abs: 1e-10,
    rel: 1e-10,
};
/// f32 matrix products: see the module's table.
pub const F32_MATRIX_PRODUCT: Tolerance = Tolerance {
    abs: 2e-5,
    rel: 2e-5,
};
/// f32 loss and outputs: see the module's table.
pub const F32_VALUES: Tolerance = Tolerance {
    abs: 1e-5,
    rel: 1e-4,
};
/// f32 gradient: see the module's table.
pub const F32_GRADIENT: Tolerance = Tolerance {
    abs: 2e-5,
    rel: 2e-4,
};
/// f32 second-order results: see the module's table.
pub const F32_CURVATURE: Tolerance = Tolerance {
    abs: 2e-5,
    rel: 2e-4,
};

/// The tolerance of a result computed in `precision` against the f64 reference
/// (its `abs` still to be scaled to the reference: [`Tolerance::scaled_to`]).
pub fn tolerance(precision: Precision, checked: Checked) -> Tolerance {
    match (precision, checked) {
        (Precision::F64, _) => F64,
        (Precision::F32, Checked::MatrixProduct) => F32_MATRIX_PRODUCT,
        (Precision::F32, Checked::Values | Checked::Loss) => F32_VALUES,
        (Precision::F32, Checked::Gradient) => F32_GRADIENT,
        (Precision::F32, Checked::Curvature) => F32_CURVATURE,
    }
}

/// Compares `checked` against `reference` with the table's tolerance for this
/// precision and result, scaled to the reference.
pub fn compare_with_table(
    checked: &[f64],
    reference: &[f64],
    precision: Precision,
    what: Checked,
) -> Comparison {
    let unscaled = tolerance(precision, what);
    let mut tol = unscaled.scaled_to(reference);
    tol.abs = tol.abs.max(unscaled.abs * scale_floor(what));
    compare(checked, reference, tol)
}

/// The outcome of comparing two equally long slices.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub len: usize,
    /// max |g − c|.
    pub worst_abs: f64,
    /// max |g − c| / |c| over entries with |c| > abs (relative error where it means something).
    pub worst_rel: f64,
    /// The index whose excess over the tolerance is largest (or of the largest error when all pass).
    pub worst_index: usize,
    /// (index, checked, reference) of the first few entries that fail.
    pub mismatches: Vec<(usize, f64, f64)>,
    pub failures: usize,
    pub tolerance: Tolerance,
    /// max |g − c| / (abs + rel·|c|): the share of its tolerance the worst entry used
    /// (≤ 1 passes; what `train`'s verification summary reports).
    pub worst_fraction: f64,
}

/// How many failing entries a report lists.
const REPORTED_MISMATCHES: usize = 5;

impl Comparison {
    pub fn passed(&self) -> bool {
        self.failures == 0
    }
}

/// Compares `checked` against `reference` entry by entry. A length mismatch or a
/// non-finite checked value is a failure, never a pass.
pub fn compare(checked: &[f64], reference: &[f64], tol: Tolerance) -> Comparison {
    let mut out = Comparison {
        len: reference.len(),
        worst_abs: 0.0,
        worst_rel: 0.0,
        worst_index: 0,
        mismatches: Vec::new(),
        failures: 0,
        tolerance: tol,
        worst_fraction: 0.0,
    };
    if checked.len() != reference.len() {
        out.failures = checked.len().abs_diff(reference.len()).max(1);
        out.worst_abs = f64::INFINITY;
        out.worst_fraction = f64::INFINITY;
        return out;
    }
    let mut worst_excess = f64::NEG_INFINITY;
    for (i, (&g, &c)) in checked.iter().zip(reference).enumerate() {
        let err = (g - c).abs();
        let bound = tol.abs + tol.rel * c.abs();
        // NaN compares false: treat a NaN error as infinitely bad.
        let err = if err.is_nan() { f64::INFINITY } else { err };
        out.worst_abs = out.worst_abs.max(err);
        if c.abs() > tol.abs {
            out.worst_rel = out.worst_rel.max(err / c.abs());
        }
        out.worst_fraction = out.worst_fraction.max(if bound > 0.0 {
            err / bound
        } else if err > 0.0 {
            f64::INFINITY
        } else {
            0.0
        });
        let excess = err - bound;
        if excess > worst_excess {
            worst_excess = excess;
            out.worst_index = i;
        }
        if err > bound {
            out.failures += 1;
            if out.mismatches.len() < REPORTED_MISMATCHES {
                out.mismatches.push((i, g, c));
            }
        }
    }
    out
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} entries outside |g − c| ≤ {:e} + {:e}·|c|; worst abs {:.3e}, worst rel {:.3e} at index {}",
            self.failures, self.len, self.tolerance.abs, self.tolerance.rel, self.worst_abs, self.worst_rel, self.worst_index
        )?;
        for (i, g, c) in &self.mismatches {
            write!(
                f,
                "\n  [{i}] checked {g:.9e} reference {c:.9e} (diff {:.3e})",
                g - c
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        abs: 1e-6,
        rel: 1e-4,
    };

    #[test]
    fn equal_passes_and_perturbed_fails() {
        let c: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
        assert!(compare(&c, &c, TOL).passed());
        let mut g = c.clone();
        g[42] += 1e-3;
        let r = compare(&g, &c, TOL);
        assert!(!r.passed());
        assert_eq!(r.worst_index, 42);
        assert_eq!(r.mismatches[0].0, 42);
        assert!(r.to_string().contains("[42]"));
    }

    #[test]
    fn nan_and_length_mismatch_fail() {
        assert!(!compare(&[f64::NAN], &[1.0], TOL).passed());
        assert!(!compare(&[1.0], &[1.0, 2.0], TOL).passed());
    }

    /// The llvmpipe case that `LOSS_SCALE_FLOOR` is for: a loss near a perfect fit
    /// off by 7.4e-8 passes as a loss and fails as an output; an error of 2e-6
    /// (above the 1e-6 floor) still fails.
    #[test]
    fn a_small_loss_keeps_an_absolute_floor() {
        let (c, g) = (6.110071223e-4, 6.109327078e-4);
        let f32_check = |what, got: f64| compare_with_table(&[got], &[c], Precision::F32, what);
        assert!(f32_check(Checked::Loss, g).passed());
        assert!(!f32_check(Checked::Values, g).passed());
        assert!(!f32_check(Checked::Loss, c + 2e-6).passed());
        // The same run's gradient: its worst entry passes, twenty times that fails.
        let (gc, gg) = (1.214932009e-5, 1.216882902e-5);
        let grad = |got: f64| {
            compare_with_table(
                &[got, 3.1e-4],
                &[gc, 3.1e-4],
                Precision::F32,
                Checked::Gradient,
            )
        };
        assert!(grad(gg).passed());
        assert!(!grad(gc + 20.0 * (gg - gc)).passed());
        // A loss above the floor's scale is checked exactly as before.
        let big = compare_with_table(&[2.0 + 1e-4], &[2.0], Precision::F32, Checked::Loss);
        assert!(big.passed() && big.tolerance.abs == 2e-5);
    }
}
