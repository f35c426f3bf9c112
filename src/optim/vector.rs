//! O(W) vector algebra on the host, the glue between engine operations.

/// xᵀy.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// ‖x‖₂.
pub fn norm(x: &[f64]) -> f64 {
    dot(x, x).sqrt()
}

/// Σ x², in eight interleaved partial sums so that the loop vectorizes (a
/// single running sum is one dependent add per entry: at W = 10⁵, a tenth of a
/// millisecond per pass, as long as a mini-batch gradient of 32 rows). Used by
/// the first-order steps and the L2 term; the summation order differs from
/// [`dot`]'s, so it is not a drop-in for the second-order methods' algebra.
pub fn sum_of_squares(x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Σ (x − y)², as [`sum_of_squares`] (eight partial sums).
pub fn sum_of_squared_differences(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (cx, cy) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f64 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    for (a8, b8) in cx.zip(cy) {
        for ((s, a), b) in acc.iter_mut().zip(a8).zip(b8) {
            *s += (a - b) * (a - b);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// ‖x‖₂ by [`sum_of_squares`].
pub fn fast_norm(x: &[f64]) -> f64 {
    sum_of_squares(x).sqrt()
}

/// y ← y + a·x.
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// θ + a·d as a new vector.
pub fn added(theta: &[f64], a: f64, d: &[f64]) -> Vec<f64> {
    theta.iter().zip(d).map(|(t, di)| t + a * di).collect()
}

/// −x as a new vector.
pub fn negated(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| -v).collect()
}

/// x − y as a new vector.
pub fn sub(x: &[f64], y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(a, b)| a - b).collect()
}

/// Whether every entry is finite.
pub fn all_finite(x: &[f64]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// v < 0, false for NaN: a slope gᵀd that makes d a descent direction.
pub fn is_negative(v: f64) -> bool {
    v < 0.0
}

/// v > 0, false for NaN: a curvature dᵀAd that CG may divide by.
pub fn is_positive(v: f64) -> bool {
    v > 0.0
}
