//! The crate's error type: one enum whose variants carry each module's own error.

use crate::model::ModelError;

/// Everything that can go wrong in `curvature`, with the context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// An argument or input that cannot be used, with what to do instead.
    #[error("{0}")]
    Input(String),
    /// A vector, block or row range whose shape does not fit the model or data.
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
