//! Pipelines: every kernel of `kernels::Kernel::ALL` compiled once, when the context is
//! built, from its family's WGSL source, with the bind-group layouts its bindings need
//! (group 0: its storage buffers; group 1: its uniform parameters at a dynamic offset).

use super::device::GpuDevice;
use crate::gpu::error::GpuError;
use crate::gpu::kernels::{Family, Kernel};
use std::collections::HashMap;
use std::num::NonZeroU64;

/// Bytes of one kernel's uniform parameters: the binding size of group 1, room for the
/// largest params struct (`params.rs` checks every struct against it at compile time).
pub const PARAM_BYTES: u64 = 128;

/// One compiled kernel and the layout of its storage bindings (group 0).
pub(super) struct KernelPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel's pipeline, in the order of [`Kernel::ALL`], and the uniform-parameter
/// layout they share.
pub(super) struct Pipelines {
    kernels: Vec<KernelPipeline>,
    /// Group 1 of every kernel: one uniform buffer of [`PARAM_BYTES`] at a dynamic offset.
    pub params_layout: wgpu::BindGroupLayout,
    /// Bytes between two dispatches' parameters: [`PARAM_BYTES`] rounded up to the
    /// device's uniform offset alignment.
    pub param_slot: u64,
}

impl Pipelines {
    /// Compiles every family's WGSL and every kernel's pipeline on `device`.
    pub fn compile(device: &GpuDevice) -> Result<Pipelines, GpuError> {
        let dev = &device.device;
        let align = dev.limits().min_uniform_buffer_offset_alignment as u64;
        let param_slot = PARAM_BYTES.div_ceil(align) * align;
        let params_layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
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
                let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(family.name()),
                    source: wgpu::ShaderSource::Wgsl(family.source().into()),
                });
                (family, module)
            })
            .collect();
        let kernels = Kernel::ALL
            .iter()
            .map(|&kernel| build_pipeline(dev, &modules, &params_layout, kernel))
            .collect();
        // A shader that does not compile is reported through the uncaptured-error handler.
        device.check("compiling the kernels")?;
        Ok(Pipelines {
            kernels,
            params_layout,
            param_slot,
        })
    }

    /// The pipeline of `kernel`.
    pub fn of(&self, kernel: Kernel) -> &KernelPipeline {
        &self.kernels[kernel.index()]
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
