//! The wgpu context: instance, adapter, device, queue and every compute pipeline, built
//! once. This is the ONLY file that calls wgpu (pinned to one exact version in
//! Cargo.toml); the rest of `gpu` records work as an [`Op`] and runs it with a [`Runner`].

use super::error::{human_bytes, one_line, GpuError};
use super::kernels::{self, matmul_params, Family, Kernel, Strided};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which adapter `GpuContext::new` may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    /// A hardware GPU, else `Err(NoHardware)` so that the caller falls back to the CPU
    /// path (a software adapter is slower than the CPU path on the same cores).
    Auto,
    /// Any adapter, software ones included (hardware preferred).
    Gpu,
}

/// How to pick the adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterOptions {
    pub choice: AdapterChoice,
    /// Only adapters whose name contains this (case-insensitive).
    pub name: Option<String>,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            choice: AdapterChoice::Auto,
            name: None,
        }
    }
}

/// What an adapter is and the limits that size our buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub is_software: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub shader_f64: bool,
    pub subgroups: bool,
}

impl AdapterSummary {
    /// The largest buffer one storage binding can cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_storage_buffer_binding_size
            .min(self.max_buffer_size)
    }
}

/// Bytes of one kernel's uniform parameters (the largest struct, MatmulParams, is 72).
const PARAM_BYTES: u64 = 128;
/// Largest staging buffer for reading results back; longer results are read in pieces
/// (a staging buffer is host-visible memory, which drivers keep scarcer than device memory).
const MAX_STAGING_BYTES: u64 = 64 << 20;

/// The buffer limits every allocation is checked against: the device's own, or lower
/// ones set by a test (`GpuContext::new_with_lowered_limits_for_testing`).
#[derive(Clone, Copy, Debug)]
struct BufferLimits {
    /// Any buffer (storage, uniform, staging).
    buffer: u64,
    /// The range one storage binding may cover.
    storage_binding: u64,
    /// The range one uniform binding may cover.
    uniform_binding: u64,
    /// The largest staging buffer for reading back (longer results are read in pieces).
    staging: u64,
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
/// Product timed to choose the matmul variant: (M, N, K) of about the size of the
/// forward and gradient products of the digits network on one batch.
const MATMUL_PROBE: (usize, usize, usize) = (1024, 128, 256);
/// Timed runs per variant (after one warm-up run); the minimum is kept.
const MATMUL_PROBE_RUNS: usize = 3;

/// The backends searched unless WGPU_BACKEND says otherwise: Vulkan, Metal and
/// DX12. OpenGL is left out by default: its compute support is the weakest, and
/// probing EGL on a headless machine prints errors on stderr.
const DEFAULT_BACKENDS: wgpu::Backends = wgpu::Backends::PRIMARY;

fn instance() -> wgpu::Instance {
    // From the environment, so that WGPU_BACKEND (and WGPU_VALIDATION …) work.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = DEFAULT_BACKENDS;
    wgpu::Instance::new(desc.with_env())
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(DEFAULT_BACKENDS);
    pollster::block_on(instance.enumerate_adapters(backends))
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        is_software: info.device_type == wgpu::DeviceType::Cpu,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        shader_f64: features.contains(wgpu::Features::SHADER_F64),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
    }
}

/// Every adapter wgpu can reach (on the backends in `WGPU_BACKEND`, else all).
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters(&instance()).iter().map(summarize).collect()
}

/// Preference among adapters: discrete, integrated, other hardware, then software.
fn rank(adapter: &wgpu::Adapter) -> u32 {
    match adapter.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
        wgpu::DeviceType::Cpu => 3,
    }
}

fn pick_adapter(
    instance: &wgpu::Instance,
    opts: &AdapterOptions,
) -> Result<wgpu::Adapter, GpuError> {
    let mut all = adapters(instance);
    if all.is_empty() {
        let backends = std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "all backends".into());
        return Err(GpuError::NoAdapter(format!("searched {backends}")));
    }
    let names = |list: &[wgpu::Adapter]| {
        list.iter()
            .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().device_type))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(wanted) = &opts.name {
        let available = names(&all);
        let lower = wanted.to_lowercase();
        all.retain(|a| a.get_info().name.to_lowercase().contains(&lower));
        if all.is_empty() {
            return Err(GpuError::NoMatch {
                name: wanted.clone(),
                available,
            });
        }
    }
    all.sort_by_key(rank);
    let best = all.remove(0);
    if opts.choice == AdapterChoice::Auto && best.get_info().device_type == wgpu::DeviceType::Cpu {
        return Err(GpuError::NoHardware(best.get_info().name));
    }
    Ok(best)
}

/// A storage buffer of f32 (our only element type on the device), with an id that keys
/// the bind-group cache. Cloning shares the same device buffer.
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    id: u64,
    raw: wgpu::Buffer,
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

struct KernelPipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The device, its queue and every pipeline, built once and shared (`Arc`).
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    summary: AdapterSummary,
    pipelines: Vec<KernelPipeline>,
    params_layout: wgpu::BindGroupLayout,
    param_slot: u64,
    matmul: Kernel,
    matmul_note: String,
    limits: BufferLimits,
    /// Test hook: lose the device once this many operations have run.
    lose_after_ops: Option<u64>,
    /// Operations run through `Runner::run` (counted for `lose_after_ops`).
    ops_run: AtomicU64,
    /// The first error the device reported outside any error scope (validation, OOM).
    device_error: Arc<Mutex<Option<String>>>,
    /// Why the device was lost, once it has been.
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.summary.name)
            .field("matmul", &self.matmul_note)
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
        let instance = instance();
        let adapter = pick_adapter(&instance, opts)?;
        let mut summary = summarize(&adapter);
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
            // A multiple of 4 (whole f32), at least one.
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
        let align = device.limits().min_uniform_buffer_offset_alignment as u64;
        let param_slot = PARAM_BYTES.div_ceil(align) * align;
        let params_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("params"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: NonZeroU64::new(PARAM_BYTES),
                },
                count: None,
            }],
        });
        let modules: HashMap<Family, wgpu::ShaderModule> = Family::ALL
            .iter()
            .map(|&family| {
                let source = family.source();
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(family.name()),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                (family, module)
            })
            .collect();
        let pipelines = Kernel::ALL
            .iter()
            .map(|&kernel| build_pipeline(&device, &modules, &params_layout, kernel))
            .collect();
        let mut ctx = GpuContext {
            device,
            queue,
            summary,
            pipelines,
            params_layout,
            param_slot,
            limits,
            lose_after_ops: faults.lose_device_after_ops,
            ops_run: AtomicU64::new(0),
            matmul: Kernel::MatmulTiled,
            matmul_note: String::new(),
            device_error,
            lost,
        };
        ctx.check("compiling the kernels")?;
        ctx.choose_matmul()?;
        Ok(Arc::new(ctx))
    }

    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Which matmul variant was chosen and why (the measured times).
    pub fn matmul_variant(&self) -> &str {
        &self.matmul_note
    }

    /// The matmul kernel in use.
    pub fn matmul_kernel(&self) -> Kernel {
        self.matmul
    }

    /// Why the device was lost, if it has been. Polls once (without waiting) first: wgpu
    /// reports a loss through its callback only when the device is maintained.
    fn lost_reason(&self) -> Option<String> {
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// `Err(Lost)` once the device has been lost: checked before any work, so that a lost
    /// device fails the next operation at once instead of queueing work that never runs.
    fn check_lost(&self, op: &str) -> Result<(), GpuError> {
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
    fn check(&self, op: &str) -> Result<(), GpuError> {
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
    fn scoped<T>(&self, f: impl FnOnce() -> T) -> (T, Option<wgpu::Error>) {
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
    fn fault(
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
    fn raw_buffer(
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

    /// The largest staging buffer: the buffer limit or `MAX_STAGING_BYTES`, a multiple of 4.
    fn staging_limit(&self) -> u64 {
        self.limits.staging
    }

    /// Test hook: destroys the device, as a driver reset would lose it. Every later
    /// operation on this context (and on engines that share it) returns `GpuError::Lost`.
    #[doc(hidden)]
    pub fn lose_device_for_testing(&self) {
        self.device.destroy();
        // The loss callback runs when the device is next maintained.
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Queues a write of `data` at element `offset` of `buf`; it lands before the next submit.
    pub fn write(&self, buf: &GpuBuffer, offset: usize, data: &[f32]) {
        if !data.is_empty() {
            self.queue
                .write_buffer(&buf.raw, (offset * 4) as u64, bytemuck::cast_slice(data));
        }
    }

    /// Times both matmul variants on the probe product and keeps the faster.
    fn choose_matmul(&mut self) -> Result<(), GpuError> {
        let (m, n, k) = MATMUL_PROBE;
        if (m * k * 4) as u64 > self.limits.storage_binding.min(self.limits.buffer) {
            self.matmul_note =
                "shared-memory tiled (not timed: the probe is over the buffer limit)".into();
            return Ok(());
        }
        let a = self.buffer("matmul probe A", m * k)?;
        let b = self.buffer("matmul probe B", k * n)?;
        let c = self.buffer("matmul probe C", m * n)?;
        let fill: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32) * 0.1).collect();
        self.write(&a, 0, &fill);
        self.write(&b, 0, &fill[..k * n]);
        let mut runner = Runner::with_context(self);
        let mut times = Vec::new();
        for kernel in [Kernel::MatmulTiled, Kernel::MatmulReg] {
            let mut best = f64::INFINITY;
            for run in 0..=MATMUL_PROBE_RUNS {
                let mut op = Op::new("matmul probe");
                op.dispatch(
                    kernel,
                    &[&a, &b, &c],
                    matmul_params(
                        (m, n, k, 1),
                        Strided::rows(0, k),
                        Strided::rows(0, n),
                        Strided::rows(0, n),
                        1.0,
                        0.0,
                        1,
                    ),
                    kernels::matmul_groups(kernel, m, n, 1),
                );
                let start = Instant::now();
                runner.run_on(self, op, Some((&c, 0, 1)))?;
                if run > 0 {
                    best = best.min(start.elapsed().as_secs_f64());
                }
            }
            times.push((kernel, best));
        }
        let (tiled, reg) = (times[0].1, times[1].1);
        self.matmul = if reg < tiled {
            Kernel::MatmulReg
        } else {
            Kernel::MatmulTiled
        };
        self.matmul_note = format!(
            "{} (timed on {m}x{k}·{k}x{n}: tiled {:.2} ms, register-blocked {:.2} ms)",
            if self.matmul == Kernel::MatmulReg {
                "register-blocked"
            } else {
                "shared-memory tiled"
            },
            tiled * 1e3,
            reg * 1e3
        );
        Ok(())
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

fn build_pipeline(
    device: &wgpu::Device,
    modules: &HashMap<Family, wgpu::ShaderModule>,
    params_layout: &wgpu::BindGroupLayout,
    kernel: Kernel,
) -> KernelPipeline {
    let (family, entry, bindings) = kernel.spec();
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.index,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: !b.writable,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(entry),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout), Some(params_layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module: &modules[&family],
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    });
    KernelPipeline { pipeline, layout }
}

enum Cmd {
    Dispatch {
        kernel: Kernel,
        buffers: Vec<GpuBuffer>,
        params: Vec<u32>,
        groups: [u32; 3],
    },
    Clear(GpuBuffer),
}

/// The recorded work of one operation: dispatches and clears, run as one command
/// encoder and one submit by [`Runner::run`].
pub struct Op {
    label: String,
    cmds: Vec<Cmd>,
}

impl Op {
    pub fn new(label: &str) -> Op {
        Op {
            label: label.to_string(),
            cmds: Vec::new(),
        }
    }

    /// Records one dispatch; `buffers` follow the order of `kernel.spec()`'s bindings and
    /// `params` are the words of its uniform struct.
    pub fn dispatch(
        &mut self,
        kernel: Kernel,
        buffers: &[&GpuBuffer],
        params: Vec<u32>,
        groups: [u32; 3],
    ) {
        debug_assert_eq!(buffers.len(), kernel.spec().2.len(), "{kernel:?}");
        debug_assert!(params.len() * 4 <= PARAM_BYTES as usize);
        self.cmds.push(Cmd::Dispatch {
            kernel,
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
            params,
            groups,
        });
    }

    /// Records zeroing a whole buffer.
    pub fn clear(&mut self, buf: &GpuBuffer) {
        self.cmds.push(Cmd::Clear(buf.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }
}

/// Runs [`Op`]s: owns the uniform-parameter buffer, the staging buffer for results and
/// a cache of bind groups, all reused from one operation to the next.
pub struct Runner {
    ctx: Option<Arc<GpuContext>>,
    params: Option<(wgpu::Buffer, wgpu::BindGroup, usize)>,
    staging: Option<(wgpu::Buffer, u64)>,
    groups: HashMap<(Kernel, Vec<u64>), wgpu::BindGroup>,
}

/// (buffer, first element, element count) to read back after an operation.
pub type Readback<'a> = (&'a GpuBuffer, usize, usize);

impl Runner {
    pub fn new(ctx: Arc<GpuContext>) -> Runner {
        Runner {
            ctx: Some(ctx),
            params: None,
            staging: None,
            groups: HashMap::new(),
        }
    }

    fn with_context(_ctx: &GpuContext) -> Runner {
        Runner {
            ctx: None,
            params: None,
            staging: None,
            groups: HashMap::new(),
        }
    }

    pub fn context(&self) -> Option<&Arc<GpuContext>> {
        self.ctx.as_ref()
    }

    /// Drops the cached bind groups that use `buf`, which is about to be replaced (so the
    /// cache does not keep replaced buffers alive).
    pub fn forget(&mut self, buf: &GpuBuffer) {
        self.groups.retain(|(_, ids), _| !ids.contains(&buf.id));
    }

    /// Runs `op` (one encoder, one submit) and returns the `readback` range (empty if none).
    pub fn run(&mut self, op: Op, readback: Option<Readback>) -> Result<Vec<f32>, GpuError> {
        let ctx = self.ctx.clone().ok_or_else(|| GpuError::Operation {
            op: op.label.clone(),
            reason: "runner has no context".into(),
        })?;
        let done = ctx.ops_run.fetch_add(1, Ordering::Relaxed);
        if ctx.lose_after_ops == Some(done) {
            ctx.lose_device_for_testing();
        }
        self.run_on(&ctx, op, readback)
    }

    fn run_on(
        &mut self,
        ctx: &GpuContext,
        op: Op,
        readback: Option<Readback>,
    ) -> Result<Vec<f32>, GpuError> {
        let running = format!("running `{}`", op.label);
        ctx.check_lost(&running)?;
        let dispatches = op
            .cmds
            .iter()
            .filter(|c| matches!(c, Cmd::Dispatch { .. }))
            .count();
        self.ensure_params(ctx, dispatches)?;
        let slot = ctx.param_slot as usize;
        let mut words = vec![0u8; dispatches.max(1) * slot];
        let mut i = 0;
        for cmd in &op.cmds {
            if let Cmd::Dispatch { params, .. } = cmd {
                let bytes: &[u8] = bytemuck::cast_slice(params);
                words[i * slot..i * slot + bytes.len()].copy_from_slice(bytes);
                i += 1;
            }
        }
        let Some((param_buf, param_group, _)) = &self.params else {
            return Err(GpuError::Operation {
                op: op.label,
                reason: "no parameter buffer".into(),
            });
        };
        ctx.queue.write_buffer(param_buf, 0, &words);
        for cmd in &op.cmds {
            if let Cmd::Dispatch {
                kernel, buffers, ..
            } = cmd
            {
                let key = (*kernel, buffers.iter().map(|b| b.id).collect::<Vec<_>>());
                self.groups.entry(key).or_insert_with(|| {
                    let pipe = &ctx.pipelines[kernel.index()];
                    let entries: Vec<wgpu::BindGroupEntry> = kernel
                        .spec()
                        .2
                        .iter()
                        .zip(buffers)
                        .map(|(b, buf)| wgpu::BindGroupEntry {
                            binding: b.index,
                            resource: buf.raw.as_entire_binding(),
                        })
                        .collect();
                    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(kernel.spec().1),
                        layout: &pipe.layout,
                        entries: &entries,
                    })
                });
            }
        }
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(&op.label),
            });
        let mut slot_index = 0u64;
        let mut cmds = op.cmds.iter().peekable();
        while let Some(cmd) = cmds.next() {
            match cmd {
                Cmd::Clear(buf) => encoder.clear_buffer(&buf.raw, 0, None),
                Cmd::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&op.label),
                        timestamp_writes: None,
                    });
                    let mut next = Some(cmd);
                    while let Some(Cmd::Dispatch {
                        kernel,
                        buffers,
                        groups,
                        ..
                    }) = next
                    {
                        let key = (*kernel, buffers.iter().map(|b| b.id).collect::<Vec<_>>());
                        pass.set_pipeline(&ctx.pipelines[kernel.index()].pipeline);
                        pass.set_bind_group(0, &self.groups[&key], &[]);
                        pass.set_bind_group(
                            1,
                            param_group,
                            &[(slot_index * ctx.param_slot) as u32],
                        );
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        slot_index += 1;
                        next = match cmds.peek() {
                            Some(Cmd::Dispatch { .. }) => cmds.next(),
                            _ => None,
                        };
                    }
                }
            }
        }
        let Some((buf, offset, len)) = readback.filter(|r| r.2 > 0) else {
            self.submit(ctx, &running, encoder)?;
            ctx.check(&running)?;
            return Ok(Vec::new());
        };
        // Read back in pieces of at most one staging buffer; the first piece's copy
        // rides in the operation's own submit.
        let piece_len = (ctx.staging_limit() / 4).max(1) as usize;
        let mut result = Vec::with_capacity(len);
        let mut encoder = Some(encoder);
        let mut done = 0;
        while done < len {
            let n = piece_len.min(len - done);
            let bytes = (n * 4) as u64;
            self.ensure_staging(ctx, bytes)?;
            let mut enc = match encoder.take() {
                Some(e) => e,
                None => ctx
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some(&op.label),
                    }),
            };
            if let Some((staging, _)) = &self.staging {
                enc.copy_buffer_to_buffer(
                    &buf.raw,
                    ((offset + done) * 4) as u64,
                    staging,
                    0,
                    bytes,
                );
            }
            self.submit(ctx, &running, enc)?;
            result.extend(self.read_staging(ctx, &op.label, n)?);
            done += n;
        }
        ctx.check(&running)?;
        Ok(result)
    }

    /// Submits `encoder` inside error scopes: an out-of-memory or validation error of the
    /// submission comes back as an error of `running`.
    fn submit(
        &self,
        ctx: &GpuContext,
        running: &str,
        encoder: wgpu::CommandEncoder,
    ) -> Result<(), GpuError> {
        let ((), err) = ctx.scoped(|| {
            ctx.queue.submit([encoder.finish()]);
        });
        match err {
            None => Ok(()),
            Some(err) => Err(ctx.fault(running, err, |reason| GpuError::Operation {
                op: running.to_string(),
                reason,
            })),
        }
    }

    fn ensure_params(&mut self, ctx: &GpuContext, dispatches: usize) -> Result<(), GpuError> {
        let have = self.params.as_ref().map_or(0, |p| p.2);
        if have >= dispatches.max(1) {
            return Ok(());
        }
        if PARAM_BYTES > ctx.limits.uniform_binding {
            return Err(GpuError::Allocation {
                what: "one kernel's parameters".into(),
                bytes: PARAM_BYTES,
                limit: format!(
                    "the adapter binds at most {} per uniform buffer",
                    human_bytes(ctx.limits.uniform_binding)
                ),
            });
        }
        let slots = dispatches.max(64).next_power_of_two();
        let bytes = slots as u64 * ctx.param_slot;
        let what = format!("kernel parameters ({dispatches} dispatches)");
        let buffer = ctx.raw_buffer(
            &what,
            bytes,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ctx.limits.buffer,
            "per buffer",
        )?;
        let (group, err) = ctx.scoped(|| {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("kernel parameters"),
                layout: &ctx.params_layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &buffer,
                        offset: 0,
                        size: NonZeroU64::new(PARAM_BYTES),
                    }),
                }],
            })
        });
        if let Some(err) = err {
            let doing = format!("binding `{what}`");
            return Err(ctx.fault(&doing, err, |reason| GpuError::Operation {
                op: doing.clone(),
                reason,
            }));
        }
        self.params = Some((buffer, group, slots));
        Ok(())
    }

    /// A staging buffer of at least `bytes` (≤ the staging limit): reused while big enough.
    fn ensure_staging(&mut self, ctx: &GpuContext, bytes: u64) -> Result<(), GpuError> {
        if self.staging.as_ref().is_some_and(|s| s.1 >= bytes) {
            return Ok(());
        }
        let size = bytes
            .next_power_of_two()
            .max(256)
            .min(ctx.staging_limit())
            .max(bytes);
        // Dropped first, so that the old and the new buffer are never held together.
        self.staging = None;
        let buffer = ctx.raw_buffer(
            "readback staging",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ctx.limits.buffer,
            "per buffer",
        )?;
        self.staging = Some((buffer, size));
        Ok(())
    }

    fn read_staging(
        &self,
        ctx: &GpuContext,
        label: &str,
        len: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let Some((staging, _)) = &self.staging else {
            return Err(GpuError::Readback(label.to_string()));
        };
        let reading = format!("reading back `{label}`");
        let bytes = (len * 4) as u64;
        let slice = staging.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r.is_ok());
        });
        if let Err(e) = ctx.device.poll(wgpu::PollType::wait_indefinitely()) {
            ctx.check_lost(&reading)?;
            return Err(GpuError::Operation {
                op: reading,
                reason: one_line(&e.to_string()),
            });
        }
        if rx.recv() != Ok(true) {
            // A map fails when the device was lost under it; say so if that is why.
            ctx.check_lost(&reading)?;
            return Err(GpuError::Readback(label.to_string()));
        }
        let data = {
            let view = slice
                .get_mapped_range()
                .map_err(|_| GpuError::Readback(label.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(data)
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

    /// A device lost between the check before an operation and its readback (the window
    /// the check cannot close): the readback reports the loss, without a hang or a panic.
    #[test]
    fn a_device_lost_under_a_readback_is_reported_as_lost() {
        let opts = AdapterOptions {
            choice: AdapterChoice::Gpu,
            name: None,
        };
        let ctx = match GpuContext::new(&opts) {
            Ok(ctx) => ctx,
            Err(e) if std::env::var("CURVATURE_REQUIRE_GPU").as_deref() != Ok("1") => {
                println!("SKIPPED (no GPU adapter): {e}");
                return;
            }
            Err(e) => panic!("CURVATURE_REQUIRE_GPU=1 but no GPU context: {e}"),
        };
        let buf = ctx.buffer("source", 16).unwrap();
        let mut runner = Runner::new(ctx.clone());
        runner.ensure_staging(&ctx, 64).unwrap();
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        if let Some((staging, _)) = &runner.staging {
            encoder.copy_buffer_to_buffer(&buf.raw, 0, staging, 0, 64);
        }
        ctx.device.destroy();
        let result = runner
            .submit(&ctx, "running `probe`", encoder)
            .and_then(|()| runner.read_staging(&ctx, "probe", 16));
        match result {
            Err(e @ GpuError::Lost { .. }) => println!("{e}"),
            other => panic!("expected Lost, got {other:?}"),
        }
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
