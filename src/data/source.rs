//! Reading a whole file into memory, gunzipping it when its first bytes are the gzip magic
//! (1f 8b) — by content, not by file name, so `x.csv` that is really gzip and `x.gz` that is
//! really plain both load.
//!
//! Every read is bounded ([`crate::files::max_input_bytes`], 1 GiB unless set): a file over
//! it is refused from its size, a device or pipe once that much was read, and a gzip stream
//! is first inflated into nothing to count its bytes, so a decompression bomb is refused
//! before its buffer is allocated (a format with a header, IDX, gives a tighter bound:
//! [`decode_limited`]).

use super::error::{DataError, DataErrorKind, Position};
use crate::files::{count_bounded, max_input_bytes, read_bounded, BoundedError};
use flate2::bufread::MultiGzDecoder;
use std::borrow::Cow;
use std::io::{self, Read};
use std::path::Path;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The file's bytes as stored (not decompressed; [`decode`] does that), at most
/// [`max_input_bytes`]. Errors name the file: NotFound, Io, TooLarge.
pub fn read_raw(path: &Path) -> Result<Vec<u8>, DataError> {
    read_bounded(path, max_input_bytes()).map_err(|e| {
        let kind = match e {
            BoundedError::Io(e) if e.kind() == io::ErrorKind::NotFound => DataErrorKind::NotFound,
            BoundedError::Io(e) => DataErrorKind::Io(e.to_string()),
            BoundedError::TooLarge { limit } => DataErrorKind::TooLarge { limit },
        };
        DataError::new(kind, path, None)
    })
}

/// `raw` decompressed if it starts with the gzip magic, else `raw` itself (borrowed), at
/// most [`max_input_bytes`] either way. `path` only names the source in errors:
/// TruncatedGzip, CorruptGzip (with the compressed byte offset where decoding stopped),
/// TooLarge.
pub fn decode<'a>(raw: &'a [u8], path: &Path) -> Result<Cow<'a, [u8]>, DataError> {
    decode_limited(raw, path, max_input_bytes())
}

/// [`decode`] with the bound `limit` (bytes of the decoded contents): a gzip stream is
/// inflated once into nothing to count it (refused with TooLarge as soon as it passes
/// `limit`), then once into a buffer of exactly its size.
pub fn decode_limited<'a>(
    raw: &'a [u8],
    path: &Path,
    limit: u64,
) -> Result<Cow<'a, [u8]>, DataError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        if raw.len() as u64 > limit {
            return Err(DataError::new(
                DataErrorKind::TooLarge { limit },
                path,
                None,
            ));
        }
        return Ok(Cow::Borrowed(raw));
    }
    let size = gunzip(raw, path, |d| count_bounded(d, limit))?;
    let size = usize::try_from(size)
        .map_err(|_| DataError::new(DataErrorKind::TooLarge { limit }, path, None))?;
    gunzip(raw, path, |d| {
        let mut out = Vec::with_capacity(size);
        d.take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(BoundedError::Io)?;
        Ok(out)
    })
    .map(Cow::Owned)
}

/// The first `n` decoded bytes of `raw` (fewer if it is shorter): a header read without
/// inflating the rest. Errors as [`decode`]; a stream that ends within them is not one.
pub fn decode_prefix(raw: &[u8], path: &Path, n: usize) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw[..raw.len().min(n)].to_vec());
    }
    gunzip(raw, path, |d| {
        let mut out = Vec::with_capacity(n);
        d.take(n as u64)
            .read_to_end(&mut out)
            .map_err(BoundedError::Io)?;
        Ok(out)
    })
}

/// Runs `read` on a decoder of every gzip member of `compressed` (concatenated members are
/// one stream), mapping its errors to the file's.
fn gunzip<T>(
    compressed: &[u8],
    path: &Path,
    read: impl FnOnce(&mut MultiGzDecoder<&[u8]>) -> Result<T, BoundedError>,
) -> Result<T, DataError> {
    let mut decoder = MultiGzDecoder::new(compressed);
    match read(&mut decoder) {
        Ok(v) => Ok(v),
        Err(BoundedError::TooLarge { limit }) => Err(DataError::new(
            DataErrorKind::TooLarge { limit },
            path,
            None,
        )),
        Err(BoundedError::Io(e)) => {
            // The bufread decoder consumes its slice exactly, so what is left says where it stopped.
            let consumed = compressed.len() - decoder.get_ref().len();
            let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
                DataErrorKind::TruncatedGzip
            } else {
                DataErrorKind::CorruptGzip(e.to_string())
            };
            Err(DataError::new(
                kind,
                path,
                Some(Position::Byte(consumed as u64)),
            ))
        }
    }
}

/// The bytes as UTF-8 text without a leading byte-order mark; NotText at the first bad byte.
pub fn as_text<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DataError::new(
            DataErrorKind::NotText,
            path,
            Some(Position::Byte(e.valid_up_to() as u64)),
        )
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}
