//! The GPU path: a wgpu context built once (`context`, the only file that calls wgpu),
//! the kernel table (`kernels`, one WGSL file per family under `shaders/`), and the
//! engine that runs the curvature operations on it (`engine`), all in f32.

pub mod context;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod probe;

pub use context::{list_adapters, AdapterChoice, AdapterOptions, AdapterSummary, GpuContext};
pub use engine::GpuEngine;
pub use error::GpuError;
