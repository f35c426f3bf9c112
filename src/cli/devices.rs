//! `curvature devices`: every adapter wgpu finds, the limits that matter, and
//! which device `--device auto` picks.

use crate::cli::out::outln;
use curvature::engine::device::{Device, DeviceChoice};
use curvature::gpu::list_adapters;
use curvature::Result;

pub fn run() -> Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        outln!("no GPU adapter found (install a GPU driver, or Mesa's software one: `apt-get install mesa-vulkan-drivers`)");
    }
    for (i, a) in adapters.iter().enumerate() {
        outln!("[{i}] {}", a.name);
        outln!(
            "    backend {}, type {}{}",
            a.backend,
            a.device_type,
            if a.is_software { " (software)" } else { "" }
        );
        outln!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup ≤ {} invocations (x ≤ {}), {} KiB shared",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_size_x,
            a.max_compute_workgroup_storage_size >> 10
        );
        outln!(
            "    shader f64: {}, subgroups: {}",
            yes(a.shader_f64),
            yes(a.subgroups)
        );
    }
    match Device::open(DeviceChoice::Auto, None) {
        Ok((device, note)) => {
            outln!("--device auto picks: {}", device.describe());
            if let Some(note) = note {
                outln!("    ({note})");
            }
        }
        Err(e) => outln!("--device auto fails: {e}"),
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
