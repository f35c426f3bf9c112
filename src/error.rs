//! The crate's error type: one enum whose variants carry each module's own error.
//!
//! The dependency between this `Error` and the optimizers' `OptimError` runs
//! one way: an optimizer calls engines, so `OptimError::Engine` holds an
//! engine's `Error`; this module names no optimizer type. An optimizer's own
//! failure becomes an `Error` through `From<OptimError>` (in `optim/mod.rs`):
//! an engine failure comes back out as the engine's `Error` (a device fault
//! stays `Error::Gpu`), anything else is kept in [`Error::Optim`].

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
    /// An optimizer or the training loop failed for a reason of its own (an
    /// `optim::OptimError` that is not an engine failure; `downcast_ref`
    /// recovers it). Held as a plain error so that this module does not
    /// depend on the optimizers, which depend on it.
    #[error(transparent)]
    Optim(Box<dyn std::error::Error + Send + Sync>),
    /// The device disagreed with the CPU reference (`train --verify`).
    #[error("verification failed: {0}")]
    Verification(String),
    /// A vector, block or row range whose shape does not fit the model or data.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Something curvature itself got wrong (a broken invariant, a worker
    /// thread that panicked): not the input's fault, and not the device's.
    #[error("internal error: {0} (a bug in curvature: please report it)")]
    Internal(String),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// An error with a note on what it leaves behind (e.g. training stopped,
    /// and which checkpoint is kept). The error keeps its type:
    /// [`Error::is_device_fault`] looks inside.
    #[error("{error}; {note}")]
    Noted { error: Box<Error>, note: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A fault of the GPU device rather than of the input: lost, out of memory, over
    /// its limits, or failing an operation. Training stops on one with its last
    /// checkpoint kept, and the same command can be run again (or with `--device cpu`).
    pub fn is_device_fault(&self) -> bool {
        use crate::gpu::GpuError as G;
        match self {
            Error::Noted { error, .. } => error.is_device_fault(),
            Error::Gpu(
                G::Lost { .. }
                | G::OutOfMemory { .. }
                | G::Allocation { .. }
                | G::Operation { .. }
                | G::Readback(_),
            ) => true,
            _ => false,
        }
    }

    /// This error with `note` after it (one line: "error; note").
    pub fn noted(self, note: impl Into<String>) -> Error {
        Error::Noted {
            error: Box::new(self),
            note: note.into(),
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
        // A note on what was kept does not hide the fault.
        let noted = lost.noted("the last checkpoint is kept");
        assert!(noted.is_device_fault());
        assert!(noted.to_string().ends_with("; the last checkpoint is kept"));
        assert!(!Error::Input("bad".into()).noted("n").is_device_fault());
    }

    #[test]
    fn an_engine_failure_inside_an_optimizer_error_comes_back_as_itself() {
        use crate::optim::OptimError;
        let lost = Error::Gpu(GpuError::Lost {
            op: "running `loss`".into(),
            reason: "Destroyed".into(),
        });
        let back = Error::from(OptimError::Engine(lost));
        assert!(
            matches!(back, Error::Gpu(GpuError::Lost { .. })),
            "{back:?}"
        );
        assert!(back.is_device_fault());
        // An optimizer's own failure is kept, with its message and its type.
        let own = Error::from(OptimError::Training("no rows".into()));
        assert_eq!(own.to_string(), "training: no rows");
        let Error::Optim(inner) = &own else {
            panic!("{own:?}")
        };
        assert!(matches!(
            inner.downcast_ref::<OptimError>(),
            Some(OptimError::Training(_))
        ));
        assert!(!own.is_device_fault());
    }
}
