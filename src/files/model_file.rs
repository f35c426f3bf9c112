//! Model files: safetensors with tensors `layers.{l}.weight` (out, in) and
//! `layers.{l}.bias` (out), l from 0, f32 (f64 accepted on load), and the
//! architecture in the header metadata, all values strings (DESIGN.md):
//! `format` = `curvature-mlp-v1`, `sizes` = `64,50,10`, `activations` =
//! `sigmoid,softmax`, `loss` = `ce`, `l2` = `0.001`. A file written by numpy
//! or PyTorch with these names loads as it is.

use super::{read_tensors_from_bytes, write_tensors, FileError, NamedTensor, Overwrite};
use crate::activation::Activation;
use crate::loss::Loss;
use crate::model::Mlp;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The value of the `format` metadata key.
pub const MODEL_FORMAT: &str = "curvature-mlp-v1";

/// A model read from a file: its architecture, θ, and every metadata entry
/// (including ones other tools or commands added, e.g. the input scaling).
#[derive(Clone, Debug)]
pub struct SavedModel {
    pub mlp: Mlp,
    pub theta: Vec<f64>,
    pub metadata: HashMap<String, String>,
}

/// Writes `mlp` with parameters θ to `path` (atomically), adding `extra`
/// metadata entries beside the architecture.
pub fn save_model(
    path: &Path,
    mlp: &Mlp,
    theta: &[f64],
    extra: &HashMap<String, String>,
    overwrite: Overwrite,
) -> Result<(), FileError> {
    if theta.len() != mlp.num_params() {
        return Err(FileError::Invalid {
            path: path.into(),
            reason: format!(
                "θ has {} entries, the network {}",
                theta.len(),
                mlp.num_params()
            ),
        });
    }
    if let Some(i) = theta.iter().position(|x| !x.is_finite()) {
        return Err(FileError::Invalid {
            path: path.into(),
            reason: format!(
                "refusing to save a model with a non-finite parameter (θ[{i}] = {})",
                theta[i]
            ),
        });
    }
    let mut tensors = Vec::new();
    for (l, layer) in mlp.layout().into_iter().enumerate() {
        tensors.push(NamedTensor {
            name: format!("layers.{l}.weight"),
            shape: vec![layer.fan_out, layer.fan_in],
            data: theta[layer.weights].to_vec(),
        });
        tensors.push(NamedTensor {
            name: format!("layers.{l}.bias"),
            shape: vec![layer.fan_out],
            data: theta[layer.bias].to_vec(),
        });
    }
    let mut meta = extra.clone();
    meta.insert("format".into(), MODEL_FORMAT.into());
    meta.insert("sizes".into(), join(mlp.sizes()));
    let acts: Vec<&str> = mlp.activations().iter().map(|a| a.name()).collect();
    meta.insert("activations".into(), acts.join(","));
    meta.insert("loss".into(), mlp.loss().name().into());
    meta.insert("l2".into(), mlp.l2().to_string());
    write_tensors(path, &tensors, meta, true, overwrite)
}

/// Reads a model, checking its metadata against its tensors.
pub fn load_model(path: &Path) -> Result<SavedModel, FileError> {
    load_model_from_bytes(&super::read_input_file(path)?, path)
}

/// [`load_model`] on file contents already in memory; `path` only names the source in
/// errors. The same checks and errors except Read.
pub fn load_model_from_bytes(bytes: &[u8], path: &Path) -> Result<SavedModel, FileError> {
    let (tensors, metadata) = read_tensors_from_bytes(bytes, path)?;
    let bad = |reason: String| FileError::Invalid {
        path: path.into(),
        reason,
    };
    if let Some(f) = metadata.get("format") {
        if f != MODEL_FORMAT {
            return Err(bad(format!(
                "metadata `format` is `{f}`, expected `{MODEL_FORMAT}`: this is not a curvature model file"
            )));
        }
    }
    let get = |key: &str| {
        metadata.get(key).ok_or_else(|| {
            bad(format!(
                "metadata `{key}` is missing: a model file needs `sizes`, `activations` and `loss` (see DESIGN.md / README)"
            ))
        })
    };
    let sizes: Vec<usize> = get("sizes")?
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("metadata `sizes` is not a list of integers: {e}")))?;
    let activations: Vec<Activation> = get("activations")?
        .split(',')
        .map(|s| s.parse::<Activation>())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("metadata `activations`: {e}")))?;
    let loss: Loss = get("loss")?
        .parse()
        .map_err(|e| bad(format!("metadata `loss`: {e}")))?;
    let l2: f64 = match metadata.get("l2") {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|e| bad(format!("metadata `l2` = `{s}` is not a number: {e}")))?,
        None => 0.0,
    };
    let mlp =
        Mlp::new(&sizes, &activations, loss, l2).map_err(|e| bad(format!("metadata: {e}")))?;

    // Each layer's tensors are compared with `sizes` before θ is built, and θ is built from
    // the tensors' own data: `sizes` is only header text and may claim layers far larger
    // than the file (or whose parameter count overflows), which must be an error, not an
    // allocation of that claim.
    let by_name: HashMap<&str, &NamedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut theta = Vec::new();
    let mut expected: HashSet<String> = HashSet::new();
    for (l, w) in sizes.windows(2).enumerate() {
        let (fan_in, fan_out) = (w[0], w[1]);
        for (suffix, shape) in [("weight", vec![fan_out, fan_in]), ("bias", vec![fan_out])] {
            let name = format!("layers.{l}.{suffix}");
            let t = by_name.get(name.as_str()).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` is missing: metadata `sizes` = {} says there are {} layers",
                    join(&sizes),
                    mlp.num_layers()
                ))
            })?;
            if t.shape != shape {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?} but metadata `sizes` = {} needs {shape:?}",
                    t.shape,
                    join(&sizes)
                )));
            }
            // Row-major (out, in) then (out): θ's layout (Mlp::layout), layer by layer.
            theta.extend_from_slice(&t.data);
            expected.insert(name);
        }
    }
    if let Some(extra) = tensors.iter().find(|t| !expected.contains(&t.name)) {
        return Err(bad(format!(
            "unexpected tensor `{}`: metadata `sizes` = {} describes only layers.0..{}",
            extra.name,
            join(&sizes),
            mlp.num_layers()
        )));
    }
    Ok(SavedModel {
        mlp,
        theta,
        metadata,
    })
}

fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::read_tensors;

    fn sample() -> (Mlp, Vec<f64>) {
        let mlp = Mlp::with_hidden(&[4, 3, 2], Activation::Tanh, Loss::Ce, 0.01).unwrap();
        let theta = mlp.init_params(3);
        (mlp, theta)
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let (mlp, theta) = sample();
        let mut extra = HashMap::new();
        extra.insert("data".to_string(), "digits".to_string());
        save_model(&p, &mlp, &theta, &extra, Overwrite::Refuse).unwrap();
        let m = load_model(&p).unwrap();
        assert_eq!(m.mlp, mlp);
        assert_eq!(m.metadata["data"], "digits");
        for (a, b) in m.theta.iter().zip(&theta) {
            assert_eq!(*a, *b as f32 as f64);
        }
    }

    #[test]
    fn metadata_disagreeing_with_tensors_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mlp, theta) = sample();
        let p = dir.path().join("m.safetensors");
        save_model(&p, &mlp, &theta, &HashMap::new(), Overwrite::Refuse).unwrap();
        let (mut tensors, mut meta) = read_tensors(&p).unwrap();
        meta.insert("sizes".into(), "4,5,2".into());
        let q = dir.path().join("q.safetensors");
        write_tensors(&q, &tensors, meta.clone(), true, Overwrite::Refuse).unwrap();
        let err = load_model(&q).unwrap_err().to_string();
        assert!(
            err.contains("shape") && err.contains("q.safetensors"),
            "{err}"
        );
        // A missing metadata key.
        meta.remove("loss");
        tensors.truncate(2);
        let r = dir.path().join("r.safetensors");
        write_tensors(&r, &tensors, meta, true, Overwrite::Refuse).unwrap();
        let err = load_model(&r).unwrap_err().to_string();
        assert!(err.contains("`loss` is missing"), "{err}");
    }

    #[test]
    fn non_finite_parameters_are_never_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (mlp, mut theta) = sample();
        theta[1] = f64::NAN;
        let p = dir.path().join("m.safetensors");
        assert!(save_model(&p, &mlp, &theta, &HashMap::new(), Overwrite::Refuse).is_err());
        assert!(!p.exists());
    }
}
