//! Data sets: bundled data, CSV and IDX readers, splits, bad input and fuzz regressions.
//!
//! One test binary for the group (each binary links the whole crate with wgpu and
//! faer, which dominates the build on 2 cores); one module per former test file.

mod bounded;
mod bundled;
mod csv;
mod dir;
mod errors;
mod fuzz_regressions;
mod split;
