//! Bounded reads: no input file, device or pipe (`/dev/zero`, a FIFO) and no
//! gzip stream is read into memory past a stated cap, and a regular file over
//! it is refused from its size before anything is allocated.
//!
//! The cap, [`DEFAULT_MAX_INPUT_BYTES`] = 1 GiB, is sized for the data this
//! tool is for and the machines it runs on: the largest MNIST-sized input
//! (70 000 × 784 pixels) is 55 MB as IDX and about 130 MB as CSV text, and
//! parsing a CSV holds about three times its text in memory, so 1 GiB leaves
//! 8× headroom while a refused input costs at most about 1 GiB of memory on a
//! laptop or CI runner of 4–16 GB. Set `CURVATURE_MAX_INPUT_BYTES` (bytes) for
//! a larger data set.

use std::io::{self, Read};
use std::path::Path;

/// The cap when `CURVATURE_MAX_INPUT_BYTES` is not set (see the module text).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;

/// The cap in force: `CURVATURE_MAX_INPUT_BYTES` when set to a positive whole
/// number, else [`DEFAULT_MAX_INPUT_BYTES`].
pub fn max_input_bytes() -> u64 {
    std::env::var("CURVATURE_MAX_INPUT_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v > 0)
        .unwrap_or(DEFAULT_MAX_INPUT_BYTES)
}

/// Why a bounded read failed.
#[derive(Debug)]
pub enum BoundedError {
    Io(io::Error),
    /// The input holds more than `limit` bytes (a regular file by its size;
    /// a device, pipe or stream once `limit` bytes were read).
    TooLarge {
        limit: u64,
    },
}

/// The one-line reason for an input over the cap, with what to do.
pub fn too_large_reason(limit: u64) -> String {
    format!(
        "the input holds more than {limit} bytes ({}), the cap on what curvature reads into \
         memory — is it the right file (not a device or a decompression bomb)? for a larger \
         data set set CURVATURE_MAX_INPUT_BYTES",
        human_bytes(limit)
    )
}

/// `n` bytes in GiB/MiB/KiB for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if n >= size {
            return format!("{:.1} {name}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// All of `path`, at most `limit` bytes: a regular file larger than that is
/// refused from its size; anything else (a device, a pipe) is read until
/// `limit + 1` bytes prove it too large.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, BoundedError> {
    let file = std::fs::File::open(path).map_err(BoundedError::Io)?;
    let meta = file.metadata().map_err(BoundedError::Io)?;
    let capacity = if meta.is_file() {
        if meta.len() > limit {
            return Err(BoundedError::TooLarge { limit });
        }
        meta.len() as usize
    } else {
        0
    };
    read_all_bounded(file, limit, capacity)
}

/// Everything `reader` yields, refused once it exceeds `limit` bytes.
pub fn read_all_bounded(
    reader: impl Read,
    limit: u64,
    capacity: usize,
) -> Result<Vec<u8>, BoundedError> {
    let mut out = Vec::with_capacity(capacity);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(BoundedError::Io)?;
    if out.len() as u64 > limit {
        return Err(BoundedError::TooLarge { limit });
    }
    Ok(out)
}

/// How many bytes `reader` yields, reading no further than `limit + 1` and
/// keeping none of them (a gzip stream measured before its buffer is allocated).
pub fn count_bounded(reader: impl Read, limit: u64) -> Result<u64, BoundedError> {
    let n = io::copy(&mut reader.take(limit.saturating_add(1)), &mut io::sink())
        .map_err(BoundedError::Io)?;
    if n > limit {
        return Err(BoundedError::TooLarge { limit });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        assert_eq!(read_bounded(&p, 100).unwrap().len(), 100);
        assert!(matches!(
            read_bounded(&p, 99),
            Err(BoundedError::TooLarge { limit: 99 })
        ));
        if Path::new("/dev/zero").exists() {
            assert!(matches!(
                read_bounded(Path::new("/dev/zero"), 1 << 20),
                Err(BoundedError::TooLarge { .. })
            ));
        }
        assert_eq!(count_bounded(&[0u8; 10][..], 10).unwrap(), 10);
        assert!(count_bounded(&[0u8; 11][..], 10).is_err());
    }
}
