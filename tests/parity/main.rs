//! Step 2 of the testing ladder: every engine (fast CPU f64/f32, GPU) against the f64 reference, kernels included; faults and reproducibility of the fast engines.
//!
//! One test binary for the group (each binary links the whole crate with wgpu and
//! faer, which dominates the build on 2 cores); one module per former test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../gpu_support/mod.rs"]
mod gpu_support;

mod conformance;
mod cpu_fast;
mod diagonals;
mod digits;
mod forward;
mod gpu_faults;
mod kernels;
mod products;
mod reproducibility;
mod verify_faults;
