//! Errors of the GPU path, each saying what to do about it.

/// What can go wrong on the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter at all on this machine (or none for the backends in `WGPU_BACKEND`).
    #[error("no GPU adapter found ({0}): install a GPU driver with Vulkan, Metal or DX12 support, or Mesa's software Vulkan driver (`apt-get install mesa-vulkan-drivers`); or use `--device cpu`")]
    NoAdapter(String),
    /// `auto` found only software adapters, which are slower than the CPU path on the same cores.
    #[error("no hardware GPU adapter (only software ones: {0}); the CPU path is faster on this machine — use `--device gpu` to force the software adapter")]
    NoHardware(String),
    /// No adapter's name contains the requested substring.
    #[error("no GPU adapter name contains `{name}`; available: {available}")]
    NoMatch { name: String, available: String },
    /// The adapter refused to open a device.
    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    RequestDevice { adapter: String, reason: String },
    /// A buffer larger than the adapter allows, or the allocation failed.
    #[error(
        "cannot allocate {what} ({bytes} bytes): {limit}; use a smaller model, batch or block"
    )]
    Allocation {
        what: String,
        bytes: u64,
        limit: String,
    },
    /// The device reported an error (validation, out of memory, lost) during an operation.
    #[error("GPU operation `{op}` failed: {reason}")]
    Operation { op: String, reason: String },
    /// Reading a result back from the device failed.
    #[error("reading `{0}` back from the GPU failed (device lost or out of memory?)")]
    Readback(String),
}
