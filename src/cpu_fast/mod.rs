//! The fast CPU path: every curvature operation in f32 or f64 with faer's
//! GEMM, data-parallel over samples, the same algorithms as the f64 reference (`cpu/`,
//! the specification), parity-tested against it in `tests/parity/cpu_fast.rs`.
//!
//! - [`real`]: the scalar trait (f32, f64);
//! - [`fast_math`]: vectorized f32 sigmoid and tanh (with h′, h″);
//! - [`par`]: row-parallel elementwise work, split by shape only (reproducible);
//! - [`gemm`]: the one matrix product (row-major slices, transposes as strides);
//! - [`net`]: θ in precision T and the output curvature per sample;
//! - [`passes`]: forward, backward, gradient over a chunk of samples;
//! - [`block`]: R-propagation for k vectors at once, one GEMM per product;
//! - [`diagonal`]: exact diag(H), diag(G), Becker-LeCun by factored recursions;
//! - [`full`]: the full H and G by per-sample Kronecker sums, a few GEMMs per chunk;
//! - [`outer`]: the outer-product matrix by stacked factor rows and BᵀB;
//! - [`kfac`]: K-FAC factors (Z̃ᵀZ̃, SᵀS per chunk) and the Fisher vectors (per-sample gradients);
//! - [`workspace`]: the bound data, θ in T, per-operation buffers and the parallel driver;
//! - [`engine`]: [`FastCpuEngine`], the `Backend` implementation.

pub mod block;
pub mod diagonal;
pub mod engine;
pub mod fast_math;
pub mod full;
pub mod gemm;
pub mod kfac;
pub mod net;
pub mod outer;
pub mod par;
pub mod passes;
pub mod real;
mod shapes;
pub(crate) mod workspace;

pub use engine::FastCpuEngine;
pub use real::Real;
