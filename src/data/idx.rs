//! MNIST's IDX files: a big-endian magic 0x000008NN (unsigned bytes, NN dimensions), NN
//! big-endian u32 sizes, then the bytes. Images are 0x00000803 (count, rows, columns),
//! labels 0x00000801 (count). Reads the bundled 10k subset and the original 60k/10k files.

use super::dataset::Dataset;
use super::error::{DataError, DataErrorKind, Position};
use super::scaling::Scaling;
use super::source::{decode_limited, decode_prefix, read_raw};
use crate::files::max_input_bytes;
use ndarray::Array2;
use std::borrow::Cow;
use std::path::Path;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Pixels are bytes 0..255.
const MAX_PIXEL: f32 = 255.0;
/// MNIST's classes 0..9.
pub const IDX_CLASSES: usize = 10;

/// Loads an IDX image file and its label file (each gzip or raw, detected by content):
/// X (N, rows·columns) = pixels / 255 in [0, 1], one-hot T (N, 10), labels, and
/// `scaling` = the fixed ×1/255.
///
/// The headers are checked against the data length before anything is allocated. Errors:
/// BadIdxMagic, IdxSize (header sizes disagree with the data length, or overflow),
/// CountMismatch, LabelOutOfRange (label ≥ 10, at its record), Empty.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let image_raw = read_raw(images)?;
    let label_raw = read_raw(labels)?;
    load_idx_from_bytes(&image_raw, images, &label_raw, labels)
}

/// [`load_idx`] on file contents already in memory (each gzip or raw, detected by content);
/// `images` and `labels` only name the sources in errors and the data set. The same checks
/// and errors as [`load_idx`] except NotFound and Io.
pub fn load_idx_from_bytes(
    image_raw: &[u8],
    images: &Path,
    label_raw: &[u8],
    labels: &Path,
) -> Result<Dataset, DataError> {
    let image_bytes = decode_idx(image_raw, images, IMAGES_MAGIC)?;
    let image_dims = parse_header(&image_bytes, images, IMAGES_MAGIC)?;
    let label_bytes = decode_idx(label_raw, labels, LABELS_MAGIC)?;
    let label_dims = parse_header(&label_bytes, labels, LABELS_MAGIC)?;
    let (count, width) = (image_dims[0], image_dims[1] * image_dims[2]);
    if label_dims[0] != count {
        return Err(DataError::new(
            DataErrorKind::CountMismatch {
                images: count,
                labels: label_dims[0],
            },
            labels,
            Some(Position::Byte(4)),
        ));
    }
    if count == 0 {
        return Err(DataError::new(DataErrorKind::Empty, images, None));
    }
    let label_data = &label_bytes[header_len(1)..];
    let mut label_list = Vec::with_capacity(count);
    for (record, &label) in label_data.iter().enumerate() {
        if usize::from(label) >= IDX_CLASSES {
            return Err(DataError::new(
                DataErrorKind::LabelOutOfRange {
                    label: label.to_string(),
                    classes: IDX_CLASSES,
                },
                labels,
                Some(Position::Record(record)),
            ));
        }
        label_list.push(usize::from(label));
    }
    // (N, rows·columns) row-major, straight from the bytes; pixel / 255 correctly rounded
    // (`scaling` multiplies by the f32 nearest 1/255 instead: the same to within 1 ulp).
    let pixels: Vec<f32> = image_bytes[header_len(3)..]
        .iter()
        .map(|&b| f32::from(b) / MAX_PIXEL)
        .collect();
    let x = Array2::from_shape_vec((count, width), pixels)
        .map_err(|e| DataError::new(DataErrorKind::Io(e.to_string()), images, None))?;
    let mut ds = Dataset::from_labels(images.display().to_string(), x, label_list, IDX_CLASSES);
    ds.scaling = Some(Scaling::fixed(vec![1.0 / MAX_PIXEL; width]));
    Ok(ds)
}

/// Bytes before the data: the magic and one u32 per dimension.
fn header_len(dims: usize) -> usize {
    4 + 4 * dims
}

/// The file's contents decoded no further than its header allows: the header is inflated
/// first, and the rest only up to one byte past the length it declares (that byte lets
/// [`parse_header`] say the data is longer than claimed). A header that claims more than
/// [`max_input_bytes`] is refused before the data is inflated, and so is a stream that
/// inflates past its claim (a decompression bomb behind a small header).
fn decode_idx<'a>(raw: &'a [u8], path: &Path, magic: u32) -> Result<Cow<'a, [u8]>, DataError> {
    let dims = (magic & 0xff) as usize;
    let prefix = decode_prefix(raw, path, header_len(dims))?;
    let sizes = read_sizes(&prefix, path, magic)?;
    // 64-bit arithmetic: the product of three u32 sizes can overflow even u64.
    let claimed = sizes
        .iter()
        .try_fold(1u64, |acc, &s| acc.checked_mul(s as u64))
        .and_then(|data| data.checked_add(header_len(dims) as u64));
    let cap = max_input_bytes();
    let idx_error = |msg: String| DataError::new(DataErrorKind::IdxSize(msg), path, None);
    let total = match claimed {
        Some(total) if total <= cap => total,
        Some(total) => {
            return Err(idx_error(format!(
                "the header sizes {sizes:?} claim {total} bytes, more than the cap of {cap} bytes on                  what curvature reads — the header is damaged (copy the file again), or set                  CURVATURE_MAX_INPUT_BYTES for so large a file"
            )))
        }
        None => {
            return Err(idx_error(format!(
                "the header sizes {sizes:?} claim more data bytes than fit in 64 bits — the header                  is damaged; copy the file again"
            )))
        }
    };
    decode_limited(raw, path, total + 1).map_err(|e| match e.kind {
        DataErrorKind::TooLarge { .. } => idx_error(format!(
            "the header sizes {sizes:?} claim {total} bytes but the file inflates to more — the              file is damaged or not what its header says; copy it again"
        )),
        _ => e,
    })
}

/// Checks the magic and that the header's sizes multiply to exactly the data length;
/// returns the sizes.
fn parse_header(bytes: &[u8], path: &Path, magic: u32) -> Result<Vec<usize>, DataError> {
    let dims = (magic & 0xff) as usize;
    let sizes = read_sizes(bytes, path, magic)?;
    // 64-bit arithmetic: the product of three u32 sizes can overflow even u64.
    let claimed = sizes
        .iter()
        .try_fold(1u64, |acc, &s| acc.checked_mul(s as u64));
    let actual = (bytes.len() - header_len(dims)) as u64;
    if claimed != Some(actual) {
        let claim = match claimed {
            Some(c) => format!("{c} data bytes"),
            None => "more data bytes than fit in 64 bits".to_string(),
        };
        return Err(DataError::new(
            DataErrorKind::IdxSize(format!(
                "the header sizes {sizes:?} claim {claim} but the file holds {actual} — the file is truncated or its header is damaged; copy it again"
            )),
            path,
            Some(Position::Byte(bytes.len() as u64)),
        ));
    }
    Ok(sizes)
}

/// Checks the magic and reads the header's sizes (the data after them is not looked at).
fn read_sizes(bytes: &[u8], path: &Path, magic: u32) -> Result<Vec<usize>, DataError> {
    let dims = (magic & 0xff) as usize;
    let what = if magic == IMAGES_MAGIC {
        "images"
    } else {
        "labels"
    };
    let read_u32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let size_error = |msg: String| {
        DataError::new(
            DataErrorKind::IdxSize(msg),
            path,
            Some(Position::Byte(bytes.len() as u64)),
        )
    };
    let found = read_u32(0).ok_or_else(|| {
        size_error(format!(
            "the file has {} bytes, too short for an IDX header — is this a complete IDX {what} file?",
            bytes.len()
        ))
    })?;
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC => " (an IDX images file: pass it as the images, not the labels)",
            LABELS_MAGIC => " (an IDX labels file: pass it as the labels, not the images)",
            _ => "",
        };
        return Err(DataError::new(
            DataErrorKind::BadIdxMagic(format!(
                "IDX magic is 0x{found:08x}{hint} but IDX {what} files start with 0x{magic:08x} — pass MNIST-format {what} (gzip or raw)"
            )),
            path,
            Some(Position::Byte(0)),
        ));
    }
    let mut sizes = Vec::with_capacity(dims);
    for d in 0..dims {
        let size = read_u32(4 + 4 * d).ok_or_else(|| {
            size_error(format!(
                "the file has {} bytes, too short for its {dims}-dimensional IDX header — the file is truncated; copy it again",
                bytes.len()
            ))
        })?;
        sizes.push(size as usize);
    }
    Ok(sizes)
}
