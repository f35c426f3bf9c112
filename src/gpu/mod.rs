//! The GPU path: a wgpu context built once (`context`, the only file that calls wgpu),
//! the kernel table (`kernels`, one WGSL file per family under `shaders/`), and the
//! engine that runs the curvature operations on it (`engine`), all in f32.
//!
//! | op (`Curvature`) | kernels used (shaders/) |
//! |------------------|-------------------------|
//! | loss, outputs | matmul, activation `bias_act`, loss `loss_delta`, reduce `colsum` |
//! | loss_grad | + rop `mul_deriv`, update `axpy_mask` |
//! | hvp_block / gvp_block | + rop `rop_forward`/`rop_backward`, loss `loss_hess` |
//! | hessian / ggn / diag_hessian | + update `fill_identity`, `gather_diag` (blocks of columns) |
//! | diag_ggn | loss `loss_factor`, diag_hessian `sumsq_batch`, update `square` |
//! | diag_becker_lecun | loss `loss_diag`, diag_hessian `bl_backward` |
//! | outer_product | loss `loss_factor`, outer_product `outer_rows`, matmul Bᵀ·B, update `add_diag` |
//!
//! Parity tests: `tests/parity_*.rs` (kernels, forward, products, diagonals, digits).

pub mod context;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod probe;

pub use context::{
    list_adapters, AdapterChoice, AdapterOptions, AdapterSummary, GpuContext, TestFaults,
};
pub use engine::GpuEngine;
pub use error::GpuError;
