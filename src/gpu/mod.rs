//! The GPU path: a wgpu context built once, buffers, pipelines, and one launcher per shader family.
