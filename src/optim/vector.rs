//! O(W) vector algebra on the host, the glue between engine operations.

/// xᵀy.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// ‖x‖₂.
pub fn norm(x: &[f64]) -> f64 {
    dot(x, x).sqrt()
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
