//! Errors of the GPU path, each one line saying what failed, why, and what to try.

/// What to try when the device cannot hold or run the work.
const TRY_SMALLER: &str =
    "try fewer rows per batch (`--batch-size`), a smaller network, or `--device cpu`";

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
    /// A buffer larger than the adapter allows (`limit` names the limit), or one the
    /// device refused (`limit` is its reason).
    #[error("cannot allocate {what} ({}): {limit}; {TRY_SMALLER}", human_bytes(*.bytes))]
    Allocation {
        what: String,
        bytes: u64,
        limit: String,
    },
    /// The device ran out of memory; `what` is what was being allocated or run
    /// ("allocating `R{a}` (…)", "running `Hv block`").
    #[error("the GPU ran out of memory {what}: {reason}; {TRY_SMALLER}, or free GPU memory held by other programs")]
    OutOfMemory { what: String, reason: String },
    /// The device reported an error (validation, internal) during an operation.
    #[error("GPU operation `{op}` failed: {reason}; this is a bug in curvature or the driver (please report it) — `--device cpu` avoids it")]
    Operation { op: String, reason: String },
    /// The device was lost (driver reset or crash, GPU removed, or a kernel ran too long).
    #[error("the GPU device was lost while {op} ({reason}): the driver may have reset or the GPU been removed; run the command again (a new device is opened), or use `--device cpu`")]
    Lost { op: String, reason: String },
    /// Reading a result back from the device failed.
    #[error("reading `{0}` back from the GPU failed (the buffer could not be mapped); run the command again, or use `--device cpu`")]
    Readback(String),
}

/// `bytes` with a binary unit, e.g. `134217728 bytes = 128.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{bytes} bytes = {value:.1} {}", UNITS[unit])
}

/// A driver's or wgpu's multi-line message as one line: lines trimmed, joined by "; ".
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_bytes(1 << 27), "134217728 bytes = 128.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3221225472 bytes = 3.0 GiB");
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        assert_eq!(
            one_line("Validation Error\n\nCaused by:\n  Buffer size 10 > 4\n"),
            "Validation Error; Caused by:; Buffer size 10 > 4"
        );
    }

    #[test]
    fn every_fault_message_is_one_line_and_says_what_to_try() {
        let faults = [
            GpuError::Allocation {
                what: "`θ`".into(),
                bytes: 1 << 20,
                limit: "the adapter binds at most 65536 bytes per storage buffer".into(),
            },
            GpuError::OutOfMemory {
                what: "allocating `R{a}` (1048576 bytes = 1.0 MiB)".into(),
                reason: "Out of Memory".into(),
            },
            GpuError::Lost {
                op: "running `Hv block`".into(),
                reason: "Destroyed".into(),
            },
        ];
        for fault in faults {
            let msg = fault.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains("--device cpu"), "{msg}");
        }
    }
}
