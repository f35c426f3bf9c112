//! The GPU path: a wgpu context built once (`context/`, the only folder that calls
//! wgpu), the kernel table (`kernels`, one WGSL file per family under `shaders/`) and
//! each family's uniform parameters (`params`), and the engine that runs the curvature
//! operations on it (`engine`), all in f32.
//!
//! | op (`Curvature`) | kernels used (shaders/) |
//! |------------------|-------------------------|
//! | loss, outputs | matmul, activation `bias_act`, loss `loss_delta`, reduce `colsum` |
//! | loss_grad | + rop `mul_deriv`, update `axpy_mask` |
//! | hvp_block / gvp_block | + rop `rop_forward`/`rop_backward`, loss `loss_hess` |
//! | hessian / ggn | + update `fill_identity`, `unit_product` (blocks of columns) |
//! | diag_ggn | loss `loss_factor`, diag_hessian `sumsq_batch` |
//! | diag_hessian | + diag_hessian `hess_residual`, `expand_residual`, `bl_backward`, update `square` |
//! | diag_becker_lecun | loss `loss_diag`, diag_hessian `bl_backward` |
//! | outer_product | loss `loss_factor`, outer_product `outer_rows`, matmul Bᵀ·B, update `add_diag` |
//! | kfac_factors | matmul Z̃ᵀZ̃ and SᵀS, reduce `colsum`; columns: loss `loss_factor` (exact), kfac `mc_columns` (mc, host-drawn), the backward δ (empirical) |
//! | fisher_vectors, per_sample_gradients | the same columns, kfac `gradient_rows` |
//! | device updates (`DeviceTraining`: `train`'s first-order path, one submit each) | the loss_grad passes, reduce `colsum` (the batch loss), update `lookahead` (nesterov) and one of `sgd_step`, `nesterov_step`, `adam_step`, `rmsprop_step`, `adagrad_step` |
//!
//! Parity tests: `tests/parity_*.rs` (kernels, forward, products, diagonals, digits).
//!
//! ## Device faults
//! Every fault is a [`GpuError`] value, one line naming what was being allocated or run
//! (buffer name and bytes, or operation), the limit or reason, and what to try:
//! - over a limit: every buffer is checked before it is created against
//!   max_storage_buffer_binding_size and max_buffer_size (storage), max_buffer_size
//!   (the uniform kernel parameters, the readback staging) → `Allocation`. The engine
//!   sizes its work to fit first: rows in chunks, blocks of vectors (Hv, H) and
//!   output rows in parts, results read back in pieces of at most 64 MiB; what cannot
//!   be split (θ, one row's buffers, the W×W outer product) is refused by name.
//! - out of memory or refused by the driver: allocations and submits run inside wgpu
//!   error scopes (OutOfMemory, Validation, Internal) → `OutOfMemory` / `Allocation` /
//!   `Operation`; errors outside any scope go to the uncaptured-error handler (installed
//!   before anything else, so wgpu never panics on them) and are reported by the next
//!   check.
//! - a lost device: the loss callback is polled before every allocation and operation
//!   and after a failed readback → `Lost`, at once, without waiting on the dead device.
//!
//! Test hooks (doc-hidden): [`TestFaults`] (lowered limits, a device lost after N
//! operations; also from `CURVATURE_TEST_*` variables in `Device::open`) and
//! `GpuContext::lose_device_for_testing`, `GpuContext::corrupt_results_for_testing`
//! (every result read back wrong from then on, which only verification sees). Tests:
//! `tests/parity/gpu_faults.rs`, `tests/parity/verify_faults.rs`.
//!
//! ## Reproducibility
//! No shader uses atomics: every reduction runs in a fixed order (the column-sum tree of
//! `reduce.wgsl`, split-K partial sums added in split order, per-thread loops), and the
//! two matmul variants sum k in the same order, so the variant a context picks by
//! timing does not change the bits. Same θ, data and adapter: the same bits, run to run
//! (`tests/parity/reproducibility.rs`).

pub mod context;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod params;
pub mod probe;

pub use context::{
    list_adapters, AdapterChoice, AdapterOptions, AdapterSummary, GpuContext, TestFaults,
};
pub use engine::GpuEngine;
pub use error::GpuError;
