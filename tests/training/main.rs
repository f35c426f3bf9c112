//! The optimizers and the training scheduler: convergence on small problems, guards against NaN/∞ and divergence, resume, checkpoints.
//!
//! One test binary for the group (each binary links the whole crate with wgpu and
//! faer, which dominates the build on 2 cores); one module per former test file.

#[path = "../gpu_support/mod.rs"]
mod gpu_support;
#[path = "../optim_support/mod.rs"]
mod optim_support;
#[path = "../robust_support/mod.rs"]
mod robust_support;

mod convex;
mod line_search;
mod monotone;
mod resume_library;
mod robust_divergence;
mod robust_injected;
mod robust_singular;
mod small_problems;
mod spec;
mod train_scheduler;
