//! The spectral density φ(t) = (1/dim) Σᵢ δ(t − λᵢ) by stochastic Lanczos
//! quadrature (Ghorbani, Krishnan & Xiao 2019; Lin, Saad & Yang 2016): for each
//! unit Rademacher probe v, m Lanczos steps give T_m = Y Θ Yᵀ, and
//! vᵀ f(A) v ≈ Σ_i τ_i f(θ_i) with nodes θ_i and weights τ_i = (Y_{0i})²
//! (Gauss quadrature). Averaging over probes estimates (1/dim) tr f(A); with
//! f a Gaussian of width σ centred at t this is φ broadened by σ.

use super::lanczos::{lanczos_many, rademacher};
use super::operator::Operator;
use crate::error::Result;

/// Quadrature nodes and weights, all probes pooled; weights sum to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectralDensity {
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
}

/// Runs `probes` Lanczos recurrences of `steps` steps together.
pub fn stochastic_lanczos_quadrature(
    op: &mut Operator,
    probes: usize,
    steps: usize,
    seed: u64,
) -> Result<SpectralDensity> {
    let probes = probes.max(1);
    let starts = rademacher(probes, op.dim(), seed);
    let runs = lanczos_many(op, starts, steps)?;
    let mut nodes = Vec::new();
    let mut weights = Vec::new();
    for run in &runs {
        let (values, y) = run.ritz()?;
        for (i, v) in values.iter().enumerate() {
            nodes.push(*v);
            weights.push(y[[0, i]].powi(2) / probes as f64);
        }
    }
    Ok(SpectralDensity { nodes, weights })
}

impl SpectralDensity {
    /// φ_σ(t) = Σ_i τ_i N(t; θ_i, σ²) on `points` evenly spaced t covering the
    /// nodes with a margin of 5σ; returns (t, φ_σ(t)).
    pub fn broadened(&self, sigma: f64, points: usize) -> Vec<(f64, f64)> {
        let lo = self.nodes.iter().copied().fold(f64::INFINITY, f64::min) - 5.0 * sigma;
        let hi = self.nodes.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 5.0 * sigma;
        let points = points.max(2);
        let norm = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        (0..points)
            .map(|p| {
                let t = lo + (hi - lo) * p as f64 / (points - 1) as f64;
                let phi = self
                    .nodes
                    .iter()
                    .zip(&self.weights)
                    .map(|(x, w)| w * norm * (-0.5 * ((t - x) / sigma).powi(2)).exp())
                    .sum();
                (t, phi)
            })
            .collect()
    }

    /// The default broadening: 1% of the span of the nodes (so that the
    /// picture resolves a hundred features across the spectrum).
    pub fn default_sigma(&self) -> f64 {
        let lo = self.nodes.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.nodes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        ((hi - lo) * 0.01).max(1e-12)
    }
}
