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
    /// An optimizer or the training loop failed (boxed: it can itself carry an `Error`).
    #[error(transparent)]
    Optim(Box<crate::optim::OptimError>),
    /// The device disagreed with the CPU reference (`train --verify-every`).
    #[error("verification failed: {0}")]
    Verification(String),
    /// A vector, block or row range whose shape does not fit the model or data.
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A fault of the GPU device rather than of the input: lost, out of memory, over
    /// its limits, or failing an operation. Training stops on one with its last
    /// checkpoint kept, and the same command can be run again (or with `--device cpu`).
    pub fn is_device_fault(&self) -> bool {
        use crate::gpu::GpuError as G;
        matches!(
            self,
            Error::Gpu(
                G::Lost { .. }
                    | G::OutOfMemory { .. }
                    | G::Allocation { .. }
                    | G::Operation { .. }
                    | G::Readback(_)
            )
        )
    }
}

impl From<crate::optim::OptimError> for Error {
    fn from(e: crate::optim::OptimError) -> Error {
        match e {
            // Unwrap an engine error so its message is not wrapped twice.
            crate::optim::OptimError::Engine(inner) => inner,
            other => Error::Optim(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::GpuError;

    #[test]
    fn device_faults_are_told_apart_from_input_errors() {
        let lost = Error::Gpu(GpuError::Lost {
            op: "running `loss`".into(),
            reason: "Destroyed".into(),
        });
        assert!(lost.is_device_fault());
        assert!(!Error::Gpu(GpuError::NoAdapter("vulkan".into())).is_device_fault());
        assert!(!Error::Input("bad".into()).is_device_fault());
    }
}
