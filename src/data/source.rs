//! Reading a whole file into memory, gunzipping it when its first bytes are the gzip magic
//! (1f 8b) — by content, not by file name, so `x.csv` that is really gzip and `x.gz` that is
//! really plain both load.

use super::error::{DataError, DataErrorKind, Position};
use flate2::bufread::MultiGzDecoder;
use std::borrow::Cow;
use std::io::{self, Read};
use std::path::Path;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Deflate cannot expand data by more than about 1032×, so a gzip trailer claiming more
/// than this multiple of the compressed size is corrupt and must not drive an allocation.
const MAX_DEFLATE_RATIO: usize = 1032;

/// The file's bytes as stored (not decompressed; [`decode`] does that). Errors name the
/// file: NotFound, Io.
pub fn read_raw(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| {
        let kind = if e.kind() == io::ErrorKind::NotFound {
            DataErrorKind::NotFound
        } else {
            DataErrorKind::Io(e.to_string())
        };
        DataError::new(kind, path, None)
    })
}

/// `raw` decompressed if it starts with the gzip magic, else `raw` itself (borrowed).
/// `path` only names the source in errors: TruncatedGzip, CorruptGzip (with the compressed
/// byte offset where decoding stopped).
pub fn decode<'a>(raw: &'a [u8], path: &Path) -> Result<Cow<'a, [u8]>, DataError> {
    if raw.starts_with(&GZIP_MAGIC) {
        gunzip(raw, path).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// Decodes every gzip member of `compressed` (concatenated members are one stream).
fn gunzip(compressed: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(size_hint(compressed));
    let mut decoder = MultiGzDecoder::new(compressed);
    match decoder.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => {
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

/// The decompressed size from the gzip trailer (ISIZE, size mod 2³², of the last member),
/// capped so that a corrupt trailer cannot ask for a huge buffer. Only a capacity hint.
fn size_hint(compressed: &[u8]) -> usize {
    let Some(tail) = compressed.len().checked_sub(4).map(|i| &compressed[i..]) else {
        return 0;
    };
    let isize = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
    isize.min(compressed.len().saturating_mul(MAX_DEFLATE_RATIO))
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
