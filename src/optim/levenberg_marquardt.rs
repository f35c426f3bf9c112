//! Levenberg-Marquardt through the generalised Gauss-Newton matrix:
//!
//!   Δ = −(G + μ·I)⁻¹ g,   G = (1/N) Σ_n J_nᵀ H_out,n J_n + λ I_w  (W, W).
//!
//! With `sse`/`mse` H_out,n is the residual-free output Hessian (PRML 5.84),
//! so this is the classical LM; with `ce`/`bce` it is the exact output Hessian
//! of the canonical link (diag(p) − ppᵀ, σ(1 − σ)), the generalised
//! Gauss-Newton matrix (Schraudolph 2002) — unlike neupy, which squares the
//! errors into residuals and handles mse only. G is positive semidefinite, so
//! G + μI is positive definite for μ > 0 and the predicted reduction
//! −gᵀΔ − ½ΔᵀGΔ is positive.
//!
//! μ (default 0.01, neupy's) adapts by the reduction ratio ρ ([`Damping`]:
//! ×⅓ on ρ > ¾, ×2 on ρ < ¼); a step that does not lower E is rejected, θ
//! stays and μ grows ×4 for the retry, so no accepted step increases E. The
//! machinery is shared with Newton ([`DampedNewton`]).

use super::damping::Damping;
use super::newton::{DampedNewton, NewtonConfig};
use crate::engine::Kind;

/// The default initial μ (neupy's `mu`).
pub const DEFAULT_MU: f64 = 0.01;

/// Parameters of Levenberg-Marquardt (same fields as Newton's; μ in `damping`).
pub fn default_config() -> NewtonConfig {
    NewtonConfig {
        damping: Damping::new(DEFAULT_MU),
        ..NewtonConfig::default()
    }
}

/// Levenberg-Marquardt with the generalised Gauss-Newton matrix.
pub fn levenberg_marquardt(config: NewtonConfig) -> DampedNewton {
    DampedNewton::with_matrix("levenberg-marquardt", Kind::GaussNewton, config)
}
