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
    let bytes = std::fs::read(path).map_err(|source| FileError::Read {
        path: path.into(),
        source,
    })?;
    read_tensors_from_bytes(&bytes, path)
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
    write_atomic(path, &bytes, overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;

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
