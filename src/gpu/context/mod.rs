//! The wgpu context: adapter, device, queue and every compute pipeline, built once and
//! shared (`Arc<GpuContext>`).
//!
//! **Only this folder calls wgpu** (pinned to one exact version in Cargo.toml): every
//! version-specific call is in one of the files below, so an upgrade is one diff here.
//! The rest of `gpu` describes kernels (`kernels.rs`, `params.rs`), records work as an
//! [`Op`] and runs it with a [`Runner`].
//!
//! | file | its one concern |
//! |------|-----------------|
//! | `adapter.rs` | adapter discovery and choice, [`AdapterSummary`] and its limits |
//! | `device.rs` | the device and queue, [`GpuBuffer`] and writes, allocation limits, faults, [`TestFaults`] |
//! | `pipelines.rs` | every kernel compiled once, its bind-group layouts |
//! | `tuning.rs` | timing the two matmul variants, keeping the faster |
//! | `op.rs` | [`Op`]: the recorded dispatches and clears of one operation |
//! | `runner.rs` | [`Runner`]: one encoder, one submit, readback (of one range or several together) |
//!
//! Building a context is four plain steps, each on what the one before made: pick the
//! adapter, open the device, compile the pipelines, tune the matmul (which runs kernels
//! on that device and those pipelines before the context exists).

mod adapter;
mod device;
mod op;
mod pipelines;
mod runner;
mod tuning;

pub use adapter::{list_adapters, AdapterChoice, AdapterOptions, AdapterSummary};
pub use device::{GpuBuffer, TestFaults};
pub use op::Op;
pub use pipelines::PARAM_BYTES;
pub use runner::{Readback, Runner};

use crate::gpu::error::GpuError;
use crate::gpu::kernels::Kernel;
use device::GpuDevice;
use pipelines::Pipelines;
use std::sync::Arc;
use tuning::MatmulChoice;

/// The device, its queue and every pipeline, built once and shared (`Arc`).
pub struct GpuContext {
    device: GpuDevice,
    pipelines: Pipelines,
    matmul: MatmulChoice,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.device.summary.name)
            .field("matmul", &self.matmul.note)
            .finish()
    }
}

impl GpuContext {
    /// Picks an adapter, opens a device with the adapter's own limits, compiles every
    /// kernel, and times both matmul variants to choose one.
    pub fn new(opts: &AdapterOptions) -> Result<Arc<GpuContext>, GpuError> {
        Self::open(opts, TestFaults::default())
    }

    /// Test hook: a context with `faults` injected. The engine sizes its chunks from
    /// lowered limits as from real ones, and every allocation is checked against them.
    #[doc(hidden)]
    pub fn new_with_faults_for_testing(
        opts: &AdapterOptions,
        faults: TestFaults,
    ) -> Result<Arc<GpuContext>, GpuError> {
        Self::open(opts, faults)
    }

    fn open(opts: &AdapterOptions, faults: TestFaults) -> Result<Arc<GpuContext>, GpuError> {
        let adapter = adapter::pick_adapter(opts)?;
        let device = GpuDevice::open(&adapter, faults)?;
        let pipelines = Pipelines::compile(&device)?;
        let matmul = tuning::choose_matmul(&device, &pipelines)?;
        Ok(Arc::new(GpuContext {
            device,
            pipelines,
            matmul,
        }))
    }

    /// The adapter and its limits (as lowered by a test's [`TestFaults`]).
    pub fn summary(&self) -> &AdapterSummary {
        &self.device.summary
    }

    /// Which matmul variant was chosen and why (the measured times).
    pub fn matmul_variant(&self) -> &str {
        &self.matmul.note
    }

    /// The matmul kernel in use.
    pub fn matmul_kernel(&self) -> Kernel {
        self.matmul.kernel
    }

    /// A zeroed storage buffer of `len` f32, checked against the adapter's limits.
    pub fn buffer(&self, what: &str, len: usize) -> Result<GpuBuffer, GpuError> {
        self.device.buffer(what, len)
    }

    /// Queues a write of `data` at element `offset` of `buf`; it lands before the next submit.
    pub fn write(&self, buf: &GpuBuffer, offset: usize, data: &[f32]) {
        self.device.write(buf, offset, data)
    }

    /// Command buffers submitted to this context's queue so far (every operation is
    /// one submit, plus one per further piece of a long readback; the matmul tuning's
    /// are counted too): tests and measurements count submits per update with it.
    pub fn submits(&self) -> u64 {
        self.device.submits()
    }

    /// Test hook: from now on every result this context reads back is wrong (its largest
    /// entry 1% too large): a device that computes wrong values from some point of a run
    /// on, which only verification against the reference can see.
    #[doc(hidden)]
    pub fn corrupt_results_for_testing(&self) {
        self.device.corrupt_for_testing()
    }

    /// Test hook: destroys the device, as a driver reset would lose it. Every later
    /// operation on this context (and on engines that share it) returns `GpuError::Lost`.
    #[doc(hidden)]
    pub fn lose_device_for_testing(&self) {
        self.device.lose_for_testing()
    }
}
