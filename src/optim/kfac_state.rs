//! K-FAC's checkpointed state (`kfac.rs`): everything a resumed run needs to go on
//! bit-identically, stored as it is (the eigendecompositions too: recomputing them
//! from the factors would be a different computation from the one the run made).
//!
//! | entry | shape | what |
//! |---|---|---|
//! | `damping` | scalar | λ in force |
//! | `updates` | scalar | k, the updates made (the mc seeds, ε, T₁ and T₃ count on it) |
//! | `previous` | (W) | δ₀, the last step taken (absent before it and after a recovery) |
//! | `a.{l}`, `b.{l}` | (in_l+1)², out_l² | the running Ā_l, B̄_l (absent before update 1) |
//! | `a-values.{l}`, `a-vectors.{l}` | (in_l+1), (in_l+1)² | Λ_A, Q_A (columns) of the inverse in use |
//! | `b-values.{l}`, `b-vectors.{l}` | (out_l), out_l² | Λ_B, Q_B |
//! | `pi` | (L) | π_l of the inverse in use |
//!
//! The layers are read back from the shapes of `a.{l}` and `b.{l}` (l = 0, 1, … while
//! present), which must add up to W = Σ_l out_l·(in_l+1).

use super::kfac::{Inverse, Kfac};
use super::{OptimizerState, StateError};
use crate::cpu::kfac::LayerEigen;
use crate::cpu::KroneckerFactors;
use crate::model::LayerLayout;
use ndarray::{Array1, Array2};

/// A matrix as (shape, row-major data).
fn matrix(m: &Array2<f64>) -> (Vec<usize>, Vec<f64>) {
    (vec![m.nrows(), m.ncols()], m.iter().copied().collect())
}

/// The learned state of `kfac` (module header).
pub(super) fn export(kfac: &Kfac) -> OptimizerState {
    let mut state = OptimizerState::new("kfac")
        .with_scalar("damping", kfac.damping.value)
        .with_scalar("updates", kfac.updates as f64)
        .with_vector_if_made("previous", &kfac.previous);
    if let Some(running) = &kfac.running {
        for (l, (a, b)) in running.a.iter().zip(&running.b).enumerate() {
            let (shape, data) = matrix(a);
            state = state.with_tensor(&format!("a.{l}"), shape, data);
            let (shape, data) = matrix(b);
            state = state.with_tensor(&format!("b.{l}"), shape, data);
        }
    }
    if let Some(inverse) = &kfac.inverse {
        for (l, e) in inverse.eigen.iter().enumerate() {
            let vector = |v: &Array1<f64>| (vec![v.len()], v.to_vec());
            let (shape, data) = vector(&e.a_values);
            state = state.with_tensor(&format!("a-values.{l}"), shape, data);
            let (shape, data) = matrix(&e.a_vectors);
            state = state.with_tensor(&format!("a-vectors.{l}"), shape, data);
            let (shape, data) = vector(&e.b_values);
            state = state.with_tensor(&format!("b-values.{l}"), shape, data);
            let (shape, data) = matrix(&e.b_vectors);
            state = state.with_tensor(&format!("b-vectors.{l}"), shape, data);
        }
        state = state.with_tensor("pi", vec![inverse.pi.len()], inverse.pi.clone());
    }
    state
}

/// (in_l + 1, out_l) of every layer from the shapes of `a.{l}`, `b.{l}`, checked
/// square and adding up to `num_params`.
fn layer_sizes(
    state: &OptimizerState,
    num_params: usize,
) -> Result<Vec<(usize, usize)>, StateError> {
    let r = state.reader("kfac")?;
    let mut sizes = Vec::new();
    while let Some(a) = r.shape_of(&format!("a.{}", sizes.len())) {
        let l = sizes.len();
        let b = r
            .shape_of(&format!("b.{l}"))
            .ok_or_else(|| StateError::Missing {
                optimizer: "kfac".into(),
                key: format!("b.{l}"),
            })?;
        let square = |key: String, s: &[usize]| match s {
            [n, m] if n == m && *n > 0 => Ok(*n),
            _ => Err(StateError::WrongShape {
                optimizer: "kfac".into(),
                key,
                shape: s.to_vec(),
                expected: "a square matrix".into(),
            }),
        };
        sizes.push((square(format!("a.{l}"), &a)?, square(format!("b.{l}"), &b)?));
    }
    let total: usize = sizes.iter().map(|(n, m)| n * m).sum();
    if !sizes.is_empty() && total != num_params {
        return Err(StateError::WrongShape {
            optimizer: "kfac".into(),
            key: "a.*, b.*".into(),
            shape: sizes.iter().flat_map(|&(n, m)| [n, m]).collect(),
            expected: format!("layers whose out·(in+1) add up to W = {num_params}"),
        });
    }
    Ok(sizes)
}

/// Replaces `kfac`'s learned state by `state` (module header); nothing changes on error.
pub(super) fn import(
    kfac: &mut Kfac,
    state: &OptimizerState,
    num_params: usize,
) -> Result<(), StateError> {
    let sizes = layer_sizes(state, num_params)?;
    let mut r = state.reader("kfac")?;
    let damping = r.positive("damping")?;
    let updates = r.count("updates")?;
    let previous = r.optional_tensor("previous", &[num_params])?;
    let square = |data: Vec<f64>, n: usize| {
        Array2::from_shape_vec((n, n), data).map_err(|e| StateError::BadValue {
            optimizer: "kfac".into(),
            key: "factor".into(),
            value: n as f64,
            reason: e.to_string(),
        })
    };
    let mut layers = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for (l, &(n, m)) in sizes.iter().enumerate() {
        a.push(square(r.tensor(&format!("a.{l}"), &[n, n])?, n)?);
        b.push(square(r.tensor(&format!("b.{l}"), &[m, m])?, m)?);
        let weights = offset..offset + m * (n - 1);
        let bias = weights.end..weights.end + m;
        offset = bias.end;
        layers.push(LayerLayout {
            fan_in: n - 1,
            fan_out: m,
            weights,
            bias,
        });
    }
    let inverse = match r.optional_tensor("pi", &[sizes.len()])? {
        None => None,
        Some(pi) => {
            let mut eigen = Vec::new();
            for (l, &(n, m)) in sizes.iter().enumerate() {
                eigen.push(LayerEigen {
                    a_values: Array1::from(r.tensor(&format!("a-values.{l}"), &[n])?),
                    a_vectors: square(r.tensor(&format!("a-vectors.{l}"), &[n, n])?, n)?,
                    b_values: Array1::from(r.tensor(&format!("b-values.{l}"), &[m])?),
                    b_vectors: square(r.tensor(&format!("b-vectors.{l}"), &[m, m])?, m)?,
                });
            }
            Some(Inverse { eigen, pi })
        }
    };
    r.finish()?;
    let running = (!sizes.is_empty()).then(|| KroneckerFactors {
        fisher: kfac.config.fisher_of(updates),
        layers,
        a,
        b,
    });
    kfac.damping.value = damping;
    kfac.updates = updates;
    kfac.previous = previous.unwrap_or_default();
    kfac.running = running;
    kfac.inverse = inverse;
    Ok(())
}
