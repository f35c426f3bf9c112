//! The command-line tool's commands, one file each.

pub mod bench;
pub mod common;
pub mod compute;
pub mod devices;
pub mod eval;
pub mod hessian;
pub mod laplace;
pub mod out;
pub mod parity;
pub mod predict;
pub mod prune;
pub mod runtime_dir;
pub mod train;
