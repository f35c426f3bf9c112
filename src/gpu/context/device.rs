//! The device and its buffers: the wgpu device and queue opened on the chosen adapter,
//! the buffer limits every allocation is checked against, [`GpuBuffer`] and host
//! writes, the fault channels (uncaptured errors, device loss, error scopes) and the
//! injected faults of [`TestFaults`].

use super::adapter::{summarize, AdapterSummary};
use crate::gpu::error::{human_bytes, one_line, GpuError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Largest staging buffer for reading results back; longer results are read in pieces
/// (a staging buffer is host-visible memory, which drivers keep scarcer than device memory).
const MAX_STAGING_BYTES: u64 = 64 << 20;

/// The buffer limits every allocation is checked against: the device's own, or lower
/// ones set by a test ([`TestFaults`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct BufferLimits {
    /// Any buffer (storage, uniform, staging).
    pub buffer: u64,
    /// The range one storage binding may cover.
    pub storage_binding: u64,
    /// The range one uniform binding may cover.
    pub uniform_binding: u64,
    /// The largest staging buffer for reading back (longer results are read in pieces),
    /// a multiple of 4 (whole f32).
    pub staging: u64,
}

/// Test hook: faults to inject into a context. Limits lower than the adapter's (never
/// higher) reach the over-the-limit paths, the row and column chunking and the
/// piecewise readback with small networks; a device lost after a number of operations
/// reaches the lost-device path in the middle of a run.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestFaults {
    /// Caps max_storage_buffer_binding_size: the engine's chunking follows it.
    pub storage_binding_bytes: Option<u64>,
    /// Caps max_buffer_size: every buffer, the uniform kernel parameters included.
    pub buffer_bytes: Option<u64>,
    /// Caps the staging buffer that results are read back through.
    pub staging_bytes: Option<u64>,
    /// Destroys the device (as `lose_device_for_testing`) before the operation that
    /// follows this many operations run through `Runner::run`.
    pub lose_device_after_ops: Option<u64>,
}

/// A storage buffer of f32 (our only element type on the device), with an id that keys
/// the bind-group cache. Cloning shares the same device buffer.
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub(super) id: u64,
    pub(super) raw: wgpu::Buffer,
    len: usize,
}

impl GpuBuffer {
    /// Length in f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

static NEXT_BUFFER_ID: AtomicU64 = AtomicU64::new(1);

/// The open device: wgpu's device and queue, what the adapter is, the limits allocations
/// are checked against, and where faults are collected.
pub(super) struct GpuDevice {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter, with the limits a test lowered.
    pub summary: AdapterSummary,
    pub limits: BufferLimits,
    /// Test hook: lose the device once this many operations have run.
    lose_after_ops: Option<u64>,
    /// Operations run through `Runner::run` (counted for `lose_after_ops`).
    ops_run: AtomicU64,
    /// Test hook: every result read back from now on is wrong ([`GpuDevice::corrupt`]).
    corrupting: AtomicBool,
    /// Command buffers submitted to the queue (an operation is one, plus one per
    /// further piece of a long readback).
    submits: AtomicU64,
    /// The first error the device reported outside any error scope (validation, OOM).
    device_error: Arc<Mutex<Option<String>>>,
    /// Why the device was lost, once it has been.
    lost: Arc<Mutex<Option<String>>>,
}

impl GpuDevice {
    /// Opens a device on `adapter` with the adapter's own limits (lowered as `faults`
    /// says), with the error and loss handlers installed before anything else runs.
    pub fn open(adapter: &wgpu::Adapter, faults: TestFaults) -> Result<GpuDevice, GpuError> {
        let mut summary = summarize(adapter);
        let uniform_binding = adapter.limits().max_uniform_buffer_binding_size;
        let lowered = |limit: u64, cap: Option<u64>| cap.map_or(limit, |c| limit.min(c));
        summary.max_buffer_size = lowered(summary.max_buffer_size, faults.buffer_bytes);
        summary.max_storage_buffer_binding_size = lowered(
            summary.max_storage_buffer_binding_size,
            faults.storage_binding_bytes,
        );
        let staging = lowered(MAX_STAGING_BYTES, faults.staging_bytes);
        let limits = BufferLimits {
            buffer: summary.max_buffer_size,
            storage_binding: summary.max_storage_buffer_binding_size,
            uniform_binding: uniform_binding.min(summary.max_buffer_size),
            staging: (staging.min(summary.max_buffer_size) / 4 * 4).max(4),
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("curvature"),
            required_features: wgpu::Features::empty(),
            // Everything the adapter offers: the storage-binding and buffer sizes size our chunks.
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice {
            adapter: summary.name.clone(),
            reason: e.to_string(),
        })?;
        // Installed first, before anything else touches the device: without a handler
        // wgpu turns an error outside an error scope into a panic.
        let device_error = Arc::new(Mutex::new(None::<String>));
        let sink = device_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| one_line(&e.to_string()));
            }
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost_sink.lock() {
                let reason = match message.trim() {
                    "" => format!("{reason:?}"),
                    message => format!("{reason:?}: {message}"),
                };
                slot.get_or_insert_with(|| one_line(&reason));
            }
        });
        Ok(GpuDevice {
            device,
            queue,
            summary,
            limits,
            lose_after_ops: faults.lose_device_after_ops,
            ops_run: AtomicU64::new(0),
            corrupting: AtomicBool::new(false),
            submits: AtomicU64::new(0),
            device_error,
            lost,
        })
    }

    /// Counts one operation run through `Runner::run`, first losing the device if a test
    /// asked for that at this count.
    pub fn count_operation(&self) {
        let done = self.ops_run.fetch_add(1, Ordering::Relaxed);
        if self.lose_after_ops == Some(done) {
            self.lose_for_testing();
        }
    }

    /// Test hook: from now on every result read back is wrong (a device that starts
    /// computing wrong values in the middle of a run, which only verification sees).
    pub fn corrupt_for_testing(&self) {
        self.corrupting.store(true, Ordering::Relaxed);
    }

    /// Makes a result read back wrong when the test hook asks: its largest |entry| 1%
    /// too large (far outside every f32 tolerance, and finite, so no NaN guard sees it).
    pub fn corrupt(&self, values: &mut [f32]) {
        if !self.corrupting.load(Ordering::Relaxed) {
            return;
        }
        let largest =
            (0..values.len()).max_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()));
        if let Some(i) = largest {
            values[i] = if values[i] == 0.0 {
                1e-2
            } else {
                values[i] * 1.01
            };
        }
    }

    /// Counts one submit to the queue.
    pub fn count_submit(&self) {
        self.submits.fetch_add(1, Ordering::Relaxed);
    }

    /// Command buffers submitted so far.
    pub fn submits(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }

    /// Destroys the device, as a driver reset would lose it.
    pub fn lose_for_testing(&self) {
        self.device.destroy();
        // The loss callback runs when the device is next maintained.
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Why the device was lost, if it has been. Polls once (without waiting) first: wgpu
    /// reports a loss through its callback only when the device is maintained.
    fn lost_reason(&self) -> Option<String> {
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// `Err(Lost)` once the device has been lost: checked before any work, so that a lost
    /// device fails the next operation at once instead of queueing work that never runs.
    pub fn check_lost(&self, op: &str) -> Result<(), GpuError> {
        match self.lost_reason() {
            Some(reason) => Err(GpuError::Lost {
                op: op.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// A loss, or an error the device reported outside any error scope since the last
    /// check, as an error of `op`.
    pub fn check(&self, op: &str) -> Result<(), GpuError> {
        self.check_lost(op)?;
        let taken = self.device_error.lock().ok().and_then(|mut e| e.take());
        match taken {
            Some(reason) => Err(GpuError::Operation {
                op: op.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside out-of-memory, validation and internal error scopes, so that an
    /// error it causes comes back as a value tied to this call (not to whatever runs next).
    pub fn scoped<T>(&self, f: impl FnOnce() -> T) -> (T, Option<wgpu::Error>) {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        // Popped in reverse order of pushing; an out-of-memory error explains the others.
        let internal = pollster::block_on(internal.pop());
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        (value, oom.or(validation).or(internal))
    }

    /// The error to report for `err`, raised while `doing` (`allocating `X` (…)` or
    /// `running `Hv block``): a loss first (it explains everything after it), then out
    /// of memory, then `other` for a validation or internal error.
    pub fn fault(
        &self,
        doing: &str,
        err: wgpu::Error,
        other: impl FnOnce(String) -> GpuError,
    ) -> GpuError {
        classify(doing, self.lost_reason(), err, other)
    }

    /// Creates a raw buffer of `bytes` after checking them against `max` (`max_name` says
    /// which limit), inside error scopes: over the limit, refused or out of memory, the
    /// error names `what` and its size.
    pub fn raw_buffer(
        &self,
        what: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
        max: u64,
        max_name: &str,
    ) -> Result<wgpu::Buffer, GpuError> {
        let label = format!("`{what}`");
        self.check_lost(&format!("allocating {label}"))?;
        if bytes > max {
            return Err(GpuError::Allocation {
                what: label,
                bytes,
                limit: format!("the adapter allows at most {} {max_name}", human_bytes(max)),
            });
        }
        let (raw, err) = self.scoped(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        });
        match err {
            None => Ok(raw),
            Some(err) => {
                let doing = format!("allocating {label} ({})", human_bytes(bytes));
                Err(self.fault(&doing, err, |reason| GpuError::Allocation {
                    what: label.clone(),
                    bytes,
                    limit: reason,
                }))
            }
        }
    }

    /// A zeroed storage buffer of `len` f32, checked against the adapter's limits.
    pub fn buffer(&self, what: &str, len: usize) -> Result<GpuBuffer, GpuError> {
        let bytes = (len.max(1) as u64).saturating_mul(4);
        let max = self.limits.storage_binding.min(self.limits.buffer);
        let raw = self.raw_buffer(
            what,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            max,
            "per storage buffer",
        )?;
        Ok(GpuBuffer {
            id: NEXT_BUFFER_ID.fetch_add(1, Ordering::Relaxed),
            raw,
            len,
        })
    }

    /// Queues a write of `data` at element `offset` of `buf`; it lands before the next submit.
    pub fn write(&self, buf: &GpuBuffer, offset: usize, data: &[f32]) {
        if !data.is_empty() {
            self.queue
                .write_buffer(&buf.raw, (offset * 4) as u64, bytemuck::cast_slice(data));
        }
    }
}

/// The error to report for `err`, raised while `doing`: the device's loss if it was lost
/// (it explains everything after it), out of memory as such, and `other` (given the
/// one-line description) for a validation or internal error.
fn classify(
    doing: &str,
    lost: Option<String>,
    err: wgpu::Error,
    other: impl FnOnce(String) -> GpuError,
) -> GpuError {
    if let Some(reason) = lost {
        return GpuError::Lost {
            op: doing.to_string(),
            reason,
        };
    }
    match err {
        wgpu::Error::OutOfMemory { source } => GpuError::OutOfMemory {
            what: doing.to_string(),
            reason: one_line(&source.to_string()),
        },
        wgpu::Error::Validation { description, .. } | wgpu::Error::Internal { description, .. } => {
            other(one_line(&description))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver's out-of-memory error cannot be provoked on every adapter (llvmpipe
    /// allocates lazily from host memory), so its classification is tested on the value.
    #[test]
    fn out_of_memory_errors_become_out_of_memory_faults() {
        let err = wgpu::Error::OutOfMemory {
            source: "Not enough memory left.\nCaused by: vkAllocateMemory".into(),
        };
        let fault = classify("allocating `R{a}` (1024 bytes = 1.0 KiB)", None, err, |r| {
            GpuError::Operation {
                op: "unused".into(),
                reason: r,
            }
        });
        let msg = fault.to_string();
        assert!(matches!(fault, GpuError::OutOfMemory { .. }), "{msg}");
        assert!(msg.contains("allocating `R{a}` (1024 bytes"), "{msg}");
        assert!(msg.contains("--device cpu") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn a_lost_device_explains_any_error_after_it() {
        let err = wgpu::Error::Validation {
            source: "invalid device".into(),
            description: "Device is invalid".into(),
        };
        let fault = classify("running `loss`", Some("Destroyed".into()), err, |r| {
            GpuError::Operation {
                op: "unused".into(),
                reason: r,
            }
        });
        assert!(matches!(fault, GpuError::Lost { .. }), "{fault}");
    }

    #[test]
    fn validation_errors_go_to_the_callers_variant() {
        let err = wgpu::Error::Validation {
            source: "too big".into(),
            description: "Buffer size\n  exceeds the limit".into(),
        };
        let fault = classify("allocating `θ`", None, err, |reason| {
            GpuError::Allocation {
                what: "`θ`".into(),
                bytes: 8,
                limit: reason,
            }
        });
        match fault {
            GpuError::Allocation { limit, .. } => {
                assert_eq!(limit, "Buffer size; exceeds the limit")
            }
            other => panic!("{other}"),
        }
    }
}
