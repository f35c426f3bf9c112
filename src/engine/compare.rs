//! The one comparator every parity check uses (tests and `curvature parity`):
//! an entry passes when |g − c| ≤ abs + rel·|c|, g the checked value, c the
//! reference. On failure it reports the worst index and the first mismatches.

use std::fmt;

/// A tolerance: |g − c| ≤ abs + rel·|c|. Every use names its reason.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
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
    };
    if checked.len() != reference.len() {
        out.failures = checked.len().abs_diff(reference.len()).max(1);
        out.worst_abs = f64::INFINITY;
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
}
