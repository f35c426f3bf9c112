//! The Fisher family and K-FAC above every backend: what the face ([`super::Curvature`])
//! derives from the two primitives [`Backend::data_fisher_vectors`] and
//! [`Backend::data_kfac_factors`], written once. All of the data term; the face adds λ
//! where its result is of E.
//!
//! ```text
//!   vectors G (|rows|·R, W)        in parts of at most VECTOR_BUDGET entries (and the
//!                                  backend's max_vectors rows), mc's stream continued
//!                                  across parts by `skip`
//!   F V ᵀ = (1/N) Gᵀ (G Vᵀ)        products, part by part
//!   diag F = (1/N) Σ g²            diagonal, part by part
//!   F = (1/N) Gᵀ G                 the W×W matrix, part by part
//!   var = (1/N) Σ_n (g_n − ḡ)²     per-sample gradients, parts combined by Chan's
//!                                  update (count, mean, Σ squared deviations)
//!   EKFAC s_l[i, a] = (1/N) Σ_n (Σ_r (q_{B,i}ᵀ s_{n,r})²) (q_{A,a}ᵀ z̃_n)²
//! ```
//! EKFAC's second moments (`cpu/kfac.rs`) come from the vectors: layer l's part of
//! g_{n,r} is G_{n,r} = s_{n,r} z̃_nᵀ (out_l, in_l+1), so s_{n,r} is its last (bias)
//! column and z̃_n = Σ_r G_{n,r}ᵀ s_{n,r} / Σ_r ‖s_{n,r}‖² (a sample whose columns are
//! all zero adds nothing); then per part U = S Q_B and Z = Z̃ Q_A are two products and
//! s_l += (Σ_r U∘U)ᵀ (Z∘Z), never a rotated (out_l, in_l+1) matrix per vector.

use super::sampling::check_mc;
use super::Backend;
use crate::cpu::{Ekfac, Fisher, KroneckerFactors};
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use std::ops::Range;

/// Entries of one part's vectors (|part|·R, W): 2²⁴ f64 = 128 MiB.
pub const VECTOR_BUDGET: usize = 1 << 24;

/// Refuses a flavour the reference refuses (mc without samples or likelihood).
pub fn check_fisher(mlp: &Mlp, fisher: Fisher) -> Result<()> {
    match fisher {
        Fisher::Mc { samples, .. } => check_mc(mlp, samples).map(|_| ()),
        Fisher::Exact | Fisher::Empirical => Ok(()),
    }
}

/// Rows per part of a vectors request: the memory budget, and the backend's limit on
/// vectors per call.
fn part_rows<B: Backend + ?Sized>(engine: &B, fisher: Fisher, budget: usize) -> usize {
    let mlp = engine.architecture();
    let r = fisher.columns_per_sample(mlp.num_outputs()).max(1);
    let w = mlp.num_params().max(1);
    let vectors = (budget / w).min(engine.limits().max_vectors).max(1);
    (vectors / r).max(1)
}

/// Calls `f(part, G)` for consecutive parts of `rows` with their vectors G
/// (|part|·R, W), in order.
pub fn for_each_part<B: Backend + ?Sized>(
    engine: &mut B,
    fisher: Fisher,
    theta: &[f64],
    rows: Range<usize>,
    budget: usize,
    mut f: impl FnMut(Range<usize>, Array2<f64>) -> Result<()>,
) -> Result<()> {
    let per = part_rows(engine, fisher, budget);
    let mut start = rows.start;
    while start < rows.end {
        let end = (start + per).min(rows.end);
        let g = engine.data_fisher_vectors(fisher, theta, start..end, start - rows.start)?;
        f(start..end, g)?;
        start = end;
    }
    Ok(())
}

/// The vectors of `rows` (|rows|·R, W), parts as the backend's limit allows.
pub fn vectors<B: Backend + ?Sized>(
    engine: &mut B,
    fisher: Fisher,
    theta: &[f64],
    rows: Range<usize>,
) -> Result<Array2<f64>> {
    let r = fisher.columns_per_sample(engine.architecture().num_outputs());
    let w = engine.architecture().num_params();
    if rows.len() <= part_rows(engine, fisher, usize::MAX) {
        return engine.data_fisher_vectors(fisher, theta, rows, 0);
    }
    let first = rows.start;
    let mut out = Array2::zeros((rows.len() * r, w));
    for_each_part(engine, fisher, theta, rows, usize::MAX, |part, g| {
        let at = (part.start - first) * r;
        out.slice_mut(s![at..at + g.nrows(), ..]).assign(&g);
        Ok(())
    })?;
    Ok(out)
}

/// F vᵢ (k, W) for every row of V (k, W), data term.
pub fn products<B: Backend + ?Sized>(
    engine: &mut B,
    fisher: Fisher,
    theta: &[f64],
    rows: Range<usize>,
    v: ArrayView2<f64>,
) -> Result<Array2<f64>> {
    let n = rows.len() as f64;
    let mut out = Array2::zeros(v.dim());
    for_each_part(engine, fisher, theta, rows, VECTOR_BUDGET, |_, g| {
        let projections = v.dot(&g.t()); // (k, |part|·R): vᵢ · g
        out += &projections.dot(&g);
        Ok(())
    })?;
    Ok(out / n)
}

/// diag F (W), data term.
pub fn diagonal<B: Backend + ?Sized>(
    engine: &mut B,
    fisher: Fisher,
    theta: &[f64],
    rows: Range<usize>,
) -> Result<Vec<f64>> {
    let n = rows.len() as f64;
    let mut d = Array1::<f64>::zeros(engine.architecture().num_params());
    for_each_part(engine, fisher, theta, rows, VECTOR_BUDGET, |_, g| {
        d += &g.mapv(|v| v * v).sum_axis(Axis(0));
        Ok(())
    })?;
    Ok((d / n).to_vec())
}

/// F (W, W), data term.
pub fn matrix<B: Backend + ?Sized>(
    engine: &mut B,
    fisher: Fisher,
    theta: &[f64],
    rows: Range<usize>,
) -> Result<Array2<f64>> {
    let n = rows.len() as f64;
    let w = engine.architecture().num_params();
    let mut m = Array2::zeros((w, w));
    for_each_part(engine, fisher, theta, rows, VECTOR_BUDGET, |_, g| {
        m += &g.t().dot(&g);
        Ok(())
    })?;
    Ok(m / n)
}

/// The population variance (W) of the per-sample gradients, (1/N) Σ_n (g_n − ḡ)²:
/// each part's mean and squared deviations, combined part by part (Chan et al.), so
/// that nothing is a difference of two large sums.
pub fn gradient_variance<B: Backend + ?Sized>(
    engine: &mut B,
    theta: &[f64],
    rows: Range<usize>,
) -> Result<Vec<f64>> {
    variance_in_parts(engine, theta, rows, VECTOR_BUDGET)
}

/// [`gradient_variance`] in parts of at most `budget` entries.
fn variance_in_parts<B: Backend + ?Sized>(
    engine: &mut B,
    theta: &[f64],
    rows: Range<usize>,
    budget: usize,
) -> Result<Vec<f64>> {
    let w = engine.architecture().num_params();
    let (mut count, mut mean, mut m2) = (0.0f64, Array1::<f64>::zeros(w), Array1::zeros(w));
    for_each_part(engine, Fisher::Empirical, theta, rows, budget, |_, g| {
        let nb = g.nrows() as f64;
        let mean_b = g
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::Internal("an empty part of per-sample gradients".into()))?;
        let m2_b = (&g - &mean_b).mapv(|v| v * v).sum_axis(Axis(0));
        let total = count + nb;
        let delta = &mean_b - &mean;
        m2 = &m2 + &m2_b + &(delta.mapv(|d| d * d) * (count * nb / total));
        mean = &mean + &(delta * (nb / total));
        count = total;
        Ok(())
    })?;
    Ok((m2 / count.max(1.0)).to_vec())
}

/// K v for every row of V (k, W) from the factors, data term.
pub fn kfac_products(factors: &KroneckerFactors, v: ArrayView2<f64>) -> Array2<f64> {
    let mut out = Array2::zeros(v.dim());
    for (v_i, mut out_i) in v.rows().into_iter().zip(out.rows_mut()) {
        let kv = factors.product(&v_i.to_vec());
        out_i.assign(&Array1::from(kv));
    }
    out
}

/// EKFAC of the flavour: the factors' eigenbasis and the second moments in it from the
/// vectors (module header), data term.
pub fn ekfac<B: Backend + ?Sized>(
    engine: &mut B,
    fisher: Fisher,
    theta: &[f64],
    rows: Range<usize>,
) -> Result<Ekfac> {
    let factors = engine.data_kfac_factors(fisher, theta, rows.clone())?;
    let basis = factors.eigen()?;
    let layers = factors.layers.clone();
    let r = fisher.columns_per_sample(engine.architecture().num_outputs());
    let n = rows.len() as f64;
    let mut scalings: Vec<Array2<f64>> = layers
        .iter()
        .map(|l| Array2::zeros((l.fan_out, l.fan_in + 1)))
        .collect();
    for_each_part(engine, fisher, theta, rows, VECTOR_BUDGET, |_, g| {
        let samples = g.nrows() / r;
        for ((layer, e), acc) in layers.iter().zip(&basis).zip(scalings.iter_mut()) {
            let (out, inp) = (layer.fan_out, layer.fan_in);
            let mut s_cols = Array2::zeros((g.nrows(), out)); // s_{n,r} (|part|·R, out_l)
            let mut z = Array2::zeros((samples, inp + 1)); // z̃_n (|part|, in_l+1)
            for n_i in 0..samples {
                let mut norm = 0.0;
                for row in n_i * r..(n_i + 1) * r {
                    let g_row = g.row(row);
                    for j in 0..out {
                        let s_j = g_row[layer.bias.start + j];
                        s_cols[[row, j]] = s_j;
                        norm += s_j * s_j;
                        let w_row = layer.weights.start + j * inp;
                        for i in 0..inp {
                            z[[n_i, i]] += g_row[w_row + i] * s_j;
                        }
                        z[[n_i, inp]] += s_j * s_j;
                    }
                }
                if norm > 0.0 {
                    z.row_mut(n_i).mapv_inplace(|v| v / norm);
                }
            }
            let along_b = s_cols.dot(&e.b_vectors).mapv(|v| v * v); // (q_{B,i}ᵀ s)²
            let mut per_sample = Array2::zeros((samples, out)); // Σ_r (…)²
            for (row, values) in along_b.rows().into_iter().enumerate() {
                let mut dst = per_sample.row_mut(row / r);
                dst += &values;
            }
            let along_a = z.dot(&e.a_vectors).mapv(|v| v * v); // (q_{A,a}ᵀ z̃)²
            *acc += &per_sample.t().dot(&along_a);
        }
        Ok(())
    })?;
    for s in &mut scalings {
        *s /= n;
    }
    Ok(Ekfac {
        fisher,
        layers,
        basis,
        scalings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_fast::FastCpuEngine;
    use crate::engine::{Curvature, Diagonal, Kind, ReferenceEngine};
    use crate::{Activation, Loss};
    use ndarray::ArrayView2;

    /// A backend with only the required primitives (the reference underneath): what the
    /// defaults make of them.
    struct Bare(ReferenceEngine);

    impl Backend for Bare {
        fn architecture(&self) -> &Mlp {
            self.0.architecture()
        }
        fn data_rows(&self) -> usize {
            self.0.data_rows()
        }
        fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
            self.0.data_loss(theta, rows)
        }
        fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
            self.0.data_loss_grad(theta, rows)
        }
        fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
            self.0.network_outputs(theta, rows)
        }
        fn data_products(
            &mut self,
            kind: Kind,
            theta: &[f64],
            rows: Range<usize>,
            v: ArrayView2<f64>,
        ) -> Result<Array2<f64>> {
            self.0.data_products(kind, theta, rows, v)
        }
        fn data_diagonal(
            &mut self,
            which: Diagonal,
            theta: &[f64],
            rows: Range<usize>,
        ) -> Result<Vec<f64>> {
            self.0.data_diagonal(which, theta, rows)
        }
        fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
            self.0.bind_data(x, t)
        }
    }

    fn problem() -> (Mlp, Vec<f64>, Array2<f32>, Array2<f32>) {
        let mlp = Mlp::with_hidden(&[3, 5, 4], Activation::Tanh, Loss::Ce, 0.1).unwrap();
        let theta = mlp.init_params(3);
        let x = Array2::from_shape_fn((11, 3), |(i, j)| ((i * 7 + j * 3) % 5) as f32 / 5.0 - 0.4);
        let t = Array2::from_shape_fn((11, 4), |(i, j)| f32::from(u8::from(i % 4 == j)));
        (mlp, theta, x, t)
    }

    fn max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        assert_eq!(a.dim(), b.dim());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// The default per-sample gradients (one one-row gradient each) are the reference's,
    /// and what the face derives from them follows; K-FAC without a kernel says so.
    #[test]
    fn a_backend_without_kernels_answers_from_the_defaults() {
        let (mlp, theta, x, t) = problem();
        let mut bare = Bare(ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap());
        let mut reference = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
        let g = bare.per_sample_gradients(&theta, 1..10).unwrap();
        let want = reference.per_sample_gradients(&theta, 1..10).unwrap();
        assert!(max_diff(&g, &want) < 1e-12);
        let var = bare.gradient_variance(&theta, 0..11).unwrap();
        let var_ref = reference.gradient_variance(&theta, 0..11).unwrap();
        assert!(var.iter().zip(&var_ref).all(|(a, b)| (a - b).abs() < 1e-12));
        let err = bare.kfac_factors(Fisher::Exact, &theta, 0..11).unwrap_err();
        assert!(err.to_string().contains("K-FAC factors"), "{err}");
        let err = bare
            .fisher_vectors(Fisher::Exact, &theta, 0..11)
            .unwrap_err();
        assert!(err.to_string().contains("exact Fisher vectors"), "{err}");
    }

    /// Parts of three rows continue mc's stream (`skip`): on the reference and on the
    /// fast engine, the parts together are the unsplit reference's vectors; and the
    /// part-by-part variance (Chan's update) is the one-pass one.
    #[test]
    fn split_requests_continue_the_monte_carlo_stream() {
        let (mlp, theta, x, t) = problem();
        let mc = Fisher::Mc {
            samples: 2,
            seed: 8,
        };
        let w = mlp.num_params();
        let budget = 3 * 2 * w; // three rows of two draws per part
        let (xf, tf) = (x.mapv(f64::from), t.mapv(f64::from));
        let rows = 1..11;
        let xs = xf.slice(s![rows.clone(), ..]);
        let ts = tf.slice(s![rows.clone(), ..]);
        let want =
            crate::cpu::fisher_vectors(&mlp.with_l2(0.0).unwrap(), &theta, xs, ts, mc).unwrap();
        let mut reference = ReferenceEngine::new(&mlp, x.view(), t.view()).unwrap();
        let mut fast = FastCpuEngine::<f64>::new(&mlp, x.view(), t.view()).unwrap();
        for engine in [&mut reference as &mut dyn Backend, &mut fast] {
            let mut got = Vec::new();
            for_each_part(engine, mc, &theta, rows.clone(), budget, |part, g| {
                assert!(part.len() <= 3);
                got.extend(g.iter().copied());
                Ok(())
            })
            .unwrap();
            let got = Array2::from_shape_vec(want.dim(), got).unwrap();
            assert!(max_diff(&got, &want) < 1e-12);
        }
        let one_pass = crate::cpu::gradient_variance(&mlp, &theta, xs, ts);
        let parts = variance_in_parts(&mut reference, &theta, rows, 3 * w).unwrap();
        assert!(parts
            .iter()
            .zip(&one_pass)
            .all(|(a, b)| (a - b).abs() < 1e-12));
    }
}
