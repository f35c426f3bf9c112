//! Analysis on top of the curvature: spectra, traces, inverses, pruning, the Laplace approximation.
//!
//! One test binary for the group (each binary links the whole crate with wgpu and
//! faer, which dominates the build on 2 cores); one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod approximations;
mod evidence;
mod inverse_prune;
mod laplace;
mod laplace_structures;
mod spectrum;
