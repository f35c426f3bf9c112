use std::path::PathBuf;

/// A file that could not be read or written, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists: choose another name, or pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("{path} is not a valid safetensors file ({reason}): was it written by curvature, numpy or PyTorch's safetensors?")]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// An input over the read cap ([`max_input_bytes`](super::max_input_bytes)).
    #[error("{path}: {}", super::bounded::too_large_reason(*limit))]
    TooLarge { path: PathBuf, limit: u64 },
}
