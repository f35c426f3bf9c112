//! Files in and out: models and vectors as safetensors (DESIGN.md "Files"),
//! written atomically and never over an existing file unless asked.

mod atomic;
mod bounded;
mod error;
mod model_file;
mod tensors;

pub use atomic::{check_writable, write_atomic, Overwrite};
pub use bounded::{
    count_bounded, human_bytes, max_input_bytes, read_all_bounded, read_bounded, too_large_reason,
    BoundedError, DEFAULT_MAX_INPUT_BYTES,
};
pub use error::FileError;
pub use model_file::{load_model, load_model_from_bytes, save_model, SavedModel, MODEL_FORMAT};
pub use tensors::{
    read_input_file, read_tensors, read_tensors_from_bytes, write_tensors, NamedTensor,
};
