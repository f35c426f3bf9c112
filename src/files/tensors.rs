//! Named tensors in safetensors files: the vectors the `compute` command reads
//! (`v` (W) or `V` (k, W)) and the results it writes, and the model's layers.

use super::{write_atomic, FileError, Overwrite};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// One tensor, held as f64 on the host whatever its dtype in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// Row-major, `shape.iter().product()` entries.
    pub data: Vec<f64>,
}

/// Every tensor in `path` (f32 or f64; other dtypes are refused) and the
/// header metadata.
pub fn read_tensors(path: &Path) -> Result<(Vec<NamedTensor>, HashMap<String, String>), FileError> {
    read_tensors_from_bytes(&read_input_file(path)?, path)
}

/// All of an input file (a model, vectors, a checkpoint), at most
/// [`max_input_bytes`](super::max_input_bytes): `/dev/zero` or a huge file is
/// refused, not read until memory runs out.
pub fn read_input_file(path: &Path) -> Result<Vec<u8>, FileError> {
    super::read_bounded(path, super::max_input_bytes()).map_err(|e| match e {
        super::BoundedError::Io(source) => FileError::Read {
            path: path.into(),
            source,
        },
        super::BoundedError::TooLarge { limit } => FileError::TooLarge {
            path: path.into(),
            limit,
        },
    })
}

/// [`read_tensors`] on file contents already in memory; `path` only names the source in
/// errors. The same checks and errors except Read.
pub fn read_tensors_from_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<NamedTensor>, HashMap<String, String>), FileError> {
    let not_st = |e: safetensors::SafeTensorError| FileError::NotSafetensors {
        path: path.into(),
        reason: e.to_string(),
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(not_st)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(not_st)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f64> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            other => {
                return Err(FileError::Invalid {
                    path: path.into(),
                    reason: format!(
                        "tensor `{name}` has dtype {other:?}; only F32 and F64 are read: convert it with numpy (`.astype(np.float32)`)"
                    ),
                })
            }
        };
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(FileError::Invalid {
                path: path.into(),
                reason: format!(
                    "tensor `{name}` has a non-finite value ({}) at index {i}",
                    data[i]
                ),
            });
        }
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, metadata))
}

/// Writes `tensors` to `path` atomically, as f32 (`as_f32`) or f64, with `metadata` in the header.
pub fn write_tensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
    as_f32: bool,
    overwrite: Overwrite,
) -> Result<(), FileError> {
    let buffers: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| {
            if as_f32 {
                t.data
                    .iter()
                    .flat_map(|&x| (x as f32).to_le_bytes())
                    .collect()
            } else {
                t.data.iter().flat_map(|&x| x.to_le_bytes()).collect()
            }
        })
        .collect();
    let dtype = if as_f32 { Dtype::F32 } else { Dtype::F64 };
    let invalid = |reason: String| FileError::Invalid {
        path: path.into(),
        reason,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (t, buf) in tensors.iter().zip(&buffers) {
        let view = safetensors::tensor::TensorView::new(dtype, t.shape.clone(), buf)
            .map_err(|e| invalid(format!("tensor `{}`: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata)
    };
    let bytes = safetensors::serialize(views, meta).map_err(|e| invalid(e.to_string()))?;
    let bytes = with_sorted_header(bytes).map_err(invalid)?;
    write_atomic(path, &bytes, overwrite)
}

/// The file with every key of its JSON header in sorted order. safetensors
/// writes the metadata in hash-map order, which changes from run to run; sorted,
/// the same tensors and metadata always give the same bytes (two identical
/// training runs write identical files). Data offsets are relative to the end
/// of the header, so only the header and its length change.
fn with_sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    entries.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            other => other,
        }
    }
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("the serialized file has no header length")?;
    let end = usize::try_from(u64::from_le_bytes(len_bytes))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or("the serialized header length is out of range")?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| format!("header: {e}"))?;
    let mut text = serde_json::to_string(&sorted(header)).map_err(|e| format!("header: {e}"))?;
    // safetensors pads the header with spaces so that the data start 8-aligned.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let t = NamedTensor {
            name: "V".into(),
            shape: vec![2],
            data: vec![1.5, -2.0],
        };
        let keys: Vec<String> = (0..24).map(|i| format!("key{i}")).collect();
        // Two maps filled in opposite orders (each with its own random hasher).
        let forward: HashMap<String, String> = keys
            .iter()
            .map(|k| (k.clone(), format!("value of {k}")))
            .collect();
        let backward: HashMap<String, String> = keys
            .iter()
            .rev()
            .map(|k| (k.clone(), format!("value of {k}")))
            .collect();
        let (a, b) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        );
        write_tensors(
            &a,
            std::slice::from_ref(&t),
            forward.clone(),
            false,
            Overwrite::Refuse,
        )
        .unwrap();
        write_tensors(
            &b,
            std::slice::from_ref(&t),
            backward,
            false,
            Overwrite::Refuse,
        )
        .unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let (back, meta) = read_tensors(&a).unwrap();
        assert_eq!((back[0].data.clone(), meta), (t.data, forward));
    }

    #[test]
    fn round_trip_f64_and_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.safetensors");
        let t = NamedTensor {
            name: "V".into(),
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 3.25, 0.1, 0.2, 0.3],
        };
        write_tensors(
            &p,
            std::slice::from_ref(&t),
            HashMap::new(),
            false,
            Overwrite::Refuse,
        )
        .unwrap();
        let (read, _) = read_tensors(&p).unwrap();
        assert_eq!(read, vec![t.clone()]);
        let p32 = dir.path().join("v32.safetensors");
        write_tensors(
            &p32,
            std::slice::from_ref(&t),
            HashMap::new(),
            true,
            Overwrite::Refuse,
        )
        .unwrap();
        let (read, _) = read_tensors(&p32).unwrap();
        for (a, b) in read[0].data.iter().zip(&t.data) {
            assert_eq!(*a, *b as f32 as f64);
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, b"this is not a safetensors file").unwrap();
        let err = read_tensors(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("not a valid safetensors"),
            "{err}"
        );
    }
}
