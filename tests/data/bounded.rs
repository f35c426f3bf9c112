//! Bounded reads (issue 21, problem 3): a gzip that would inflate past the read
//! cap (1 GiB) is refused while it is being counted, before its buffer is
//! allocated; an IDX file inflates no further than its header declares; a
//! device such as `/dev/zero` is refused once the cap is read, not read until
//! memory runs out.

use curvature::data::{load_idx, load_path, DataErrorKind as K};
use curvature::files::{load_model, read_tensors, FileError, DEFAULT_MAX_INPUT_BYTES};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// A gzip of `prefix` followed by zeros, `total` bytes in all, streamed
/// through the encoder a MiB at a time (the zeros are never in memory at
/// once): about 1 MB of gzip per GB of zeros.
pub fn zero_bomb(path: &Path, prefix: &[u8], total: u64) {
    let file = std::fs::File::create(path).unwrap();
    let mut e = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    e.write_all(prefix).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = total - prefix.len() as u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        e.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    e.finish().unwrap().flush().unwrap();
}

/// Past the default cap by a quarter: what the bomb inflates to.
const BOMB_BYTES: u64 = DEFAULT_MAX_INPUT_BYTES + DEFAULT_MAX_INPUT_BYTES / 4;

#[test]
fn a_gzip_bomb_is_refused_before_it_is_inflated_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.csv.gz");
    zero_bomb(&bomb, b"a,b,label\n", BOMB_BYTES);
    let size = std::fs::metadata(&bomb).unwrap().len();
    assert!(size < 8 << 20, "the bomb is small: {size} bytes");
    let started = Instant::now();
    let err = load_path(&bomb.display().to_string()).expect_err("a bomb must be refused");
    let took = started.elapsed();
    eprintln!("{err} ({took:?})");
    assert!(
        matches!(err.kind, K::TooLarge { limit } if limit == DEFAULT_MAX_INPUT_BYTES),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("bomb.csv.gz"), "{msg}");
    assert!(msg.contains("CURVATURE_MAX_INPUT_BYTES"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    // Counting 1.25 GiB of inflated zeros takes about a second on one core.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn an_idx_bomb_inflates_no_further_than_its_header_says() {
    let dir = tempfile::tempdir().unwrap();
    // A header for 10 images of 28×28 (7840 bytes), then ~1 GB of zeros.
    let mut header = 0x0000_0803u32.to_be_bytes().to_vec();
    for s in [10u32, 28, 28] {
        header.extend_from_slice(&s.to_be_bytes());
    }
    let images = dir.path().join("bomb-images-idx3-ubyte.gz");
    zero_bomb(&images, &header, 1 << 30);
    let mut labels = 0x0000_0801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&10u32.to_be_bytes());
    labels.extend_from_slice(&[1; 10]);
    let labels_path = dir.path().join("labels-idx1-ubyte");
    std::fs::write(&labels_path, labels).unwrap();
    let started = Instant::now();
    let err = load_idx(&images, &labels_path).expect_err("the bomb must be refused");
    eprintln!("{err} ({:?})", started.elapsed());
    assert!(matches!(err.kind, K::IdxSize(_)), "{err}");
    assert!(err.to_string().contains("inflates to more"), "{err}");
    // Only the header's 7856 bytes (and one more) were inflated, not the gigabyte.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn devices_are_refused_as_data_and_as_models() {
    let zero = Path::new("/dev/zero");
    assert!(zero.exists(), "this test needs /dev/zero");
    let started = Instant::now();
    let err = load_path("/dev/zero").expect_err("/dev/zero is no data set");
    assert!(matches!(err.kind, K::TooLarge { .. }), "{err}");
    let err = load_model(zero).expect_err("/dev/zero is no model");
    assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("/dev/zero"), "{err}");
    let err = read_tensors(zero).expect_err("/dev/zero holds no vectors");
    assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
    // Three reads of the 1 GiB cap from /dev/zero.
    assert!(started.elapsed() < Duration::from_secs(30));
}
