//! Dense W×W results estimated before they are allocated: a Hessian of a
//! 784-200-10 network (W = 159 010) is 202 GB of f64, and asking the allocator
//! for it aborts the process ("memory allocation failed", exit 134) instead of
//! returning an error. Every dense matrix the face builds, on every device,
//! and the CLI's own dense paths ask [`check_dense_memory`] first, which
//! refuses above the memory available with a line naming the quantity, W, the
//! bytes and what to use instead.

use crate::error::{Error, Result};
use crate::files::human_bytes;

/// The memory assumed where the system does not say (no `/proc/meminfo`):
/// the smaller laptops and CI runners this tool is for.
pub const FALLBACK_AVAILABLE_BYTES: u64 = 8 << 30;

/// The memory a new allocation may take: `MemAvailable` of `/proc/meminfo`
/// (Linux: free memory plus what the page cache can give back), else
/// [`FALLBACK_AVAILABLE_BYTES`].
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(FALLBACK_AVAILABLE_BYTES, |kb| kb.saturating_mul(1024))
}

/// Bytes of `copies` dense W×W f64 matrices (saturating: W² overflows no check).
pub fn dense_bytes(w: usize, copies: u64) -> u64 {
    (w as u64)
        .saturating_mul(w as u64)
        .saturating_mul(8)
        .saturating_mul(copies)
}

/// Refuses `quantity` (a dense W×W matrix held `copies` times at its peak)
/// when it needs more than the memory available; `instead` says what to use.
pub fn check_dense_memory(quantity: &str, w: usize, copies: u64, instead: &str) -> Result<()> {
    let need = dense_bytes(w, copies);
    let available = available_memory();
    if need > available {
        return Err(Error::Input(format!(
            "{quantity} is a dense W×W matrix with W = {w}: it needs about {need} bytes ({}), \
             more than the {} of memory available — use {instead}",
            human_bytes(need),
            human_bytes(available)
        )));
    }
    Ok(())
}

/// What to use instead of a dense matrix, for messages.
pub const DENSE_ALTERNATIVES: &str = "products (hvp, gvp), a diagonal (diag-hessian, diag-ggn), \
     Lanczos (`curvature hessian` without --inverse-check), or a smaller network";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_matrices_are_refused_small_ones_pass() {
        assert!(check_dense_memory("H", 10, 2, DENSE_ALTERNATIVES).is_ok());
        let err = check_dense_memory("H", 159_010, 1, DENSE_ALTERNATIVES).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("W = 159010"), "{msg}");
        assert!(msg.contains("202273440800 bytes"), "{msg}");
        assert_eq!(dense_bytes(usize::MAX, 3), u64::MAX);
    }
}
