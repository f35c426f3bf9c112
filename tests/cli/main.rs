//! Step 3 of the testing ladder: the `curvature` binary end to end (train, eval, compute, interrupts, bench, bad input).
//!
//! One test binary for the group (each binary links the whole crate with wgpu and
//! faer, which dominates the build on 2 cores); one module per former test file.

#[path = "../gpu_support/mod.rs"]
mod gpu_support;

mod analysis_cli;
mod bench_cli;
mod cli;
mod cli_interrupt;
mod robust_cli;
mod robust_dense;
mod robust_outputs;
mod robust_pipe;
mod robust_ranges;
mod robust_reads;
mod robust_resume;
mod robust_scaling;
mod verify_cli;
