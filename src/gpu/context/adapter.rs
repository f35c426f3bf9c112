//! Adapter discovery and choice: which adapters wgpu reaches, what each is (its
//! [`AdapterSummary`]: name, kind and the limits that size our buffers), and which one
//! a context opens ([`AdapterOptions`]).

use crate::gpu::error::GpuError;

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

/// The summary of `adapter`, with its own (not yet lowered) limits.
pub(super) fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
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

/// The best adapter that `opts` allows: the highest-ranked of those whose name matches;
/// with [`AdapterChoice::Auto`] never a software one.
pub(super) fn pick_adapter(opts: &AdapterOptions) -> Result<wgpu::Adapter, GpuError> {
    let mut all = adapters(&instance());
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
