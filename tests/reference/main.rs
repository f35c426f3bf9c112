//! Step 1 of the testing ladder: the f64 reference (src/cpu/) against finite differences and closed forms.
//!
//! One test binary for the group (each binary links the whole crate with wgpu and
//! faer, which dominates the build on 2 cores); one module per former test file.

#[path = "../common/mod.rs"]
mod common;

mod diagonal;
mod hessian;
mod kfac;
mod outer_product;
mod passes;
