//! Per-sample gradients, the Fisher family (exact, Monte-Carlo, empirical) and
//! the gradient variance: the f64 reference, all of the DATA TERM
//! E_data = (1/N) Σ_n E_n (no λ: the caller adds λ·I_w where it wants all of E).
//!
//! ## Per-sample gradients (indexing as in `passes.rs`, l = 0..L−1)
//! g_n = ∂E_n/∂θ (W), of one sample's loss, NOT divided by N, so that
//! (1/N) Σ_n g_n = ∇E_data. One sample's backward pass:
//! ```text
//!   δ_n[L−1] = ∂E_n/∂a[L−1]                           (K)      Loss::delta
//!   δ_n[l−1] = (δ_n[l] W_l) ⊙ h′_{l−1}(a_n[l−1])       (out_{l−1})
//!   g_n on W_l[j][i] = δ_n[l]_j z_n[l]_i,   on b_l[j] = δ_n[l]_j
//! ```
//!
//! ## The Fisher family: F = (1/N) Σ_n Σ_r g_{n,r} g_{n,r}ᵀ   (W, W)
//! Every flavour ([`Fisher`]) is a sum of outer products of R vectors per
//! sample, each the linear backward pass above started from an output column
//! c_{n,r} (K) instead of δ_n:
//! ```text
//!   exact      R = K: c_{n,k} = row k of the square-root factor C_n of the
//!              Gauss-Newton output Hessian (outer_product.rs, Σ_k c_k c_kᵀ =
//!              H_out,GN,n), so F = G − λI_w, the GGN's data term;
//!   mc         R = S: c_{n,s} = ∂(−log p(ỹ_{n,s} | x_n))/∂a / √S, ỹ_{n,s} ~ p(y | x_n),
//!              so E[F] = G − λI_w (the model's Fisher is its GGN, see below);
//!   empirical  R = 1: c_n = δ_n at the observed target, F = (1/N) Σ_n g_n g_nᵀ.
//! ```
//!
//! ## mc: the model's likelihood per loss
//! E_n is the negative log-likelihood of the target under a distribution p(y | a)
//! up to a constant, so c = ∂(−log p(ỹ | a))/∂a is `Loss::delta(act, a, ỹ)` at a
//! sampled target ỹ, and E_ỹ[c cᵀ] is the Gauss-Newton output Hessian:
//! ```text
//!   ce   categorical(softmax(a)):  ỹ = e_y, y ~ p;    E[(p − e_y)(p − e_y)ᵀ] = diag(p) − ppᵀ
//!   bce  independent Bernoulli(σ(a_k)): ỹ_k ∈ {0, 1};  E[(σ − ỹ)²] = σ(1 − σ)
//!   sse  Gaussian N(h(a), I):      ỹ = h(a) + ε;       E[c cᵀ] = diag(h′²)
//!   mse  Gaussian N(h(a), (K/2) I): ỹ = h(a) + √(K/2) ε; E[c cᵀ] = (2/K) diag(h′²)
//! ```
//! (ε ~ N(0, I); mse's variance K/2 makes −log p = (1/K)‖ỹ − y‖² + const.) For
//! ce with non-one-hot targets, s = Σ_k t_k scales the GGN's output Hessian, so c
//! is multiplied by √s (1 for one-hot). A loss with no such likelihood (none yet)
//! must be refused by [`Likelihood::of`] with an error naming it.
//!
//! ## The sampling stream (so that every engine can draw the same samples)
//! One ChaCha8 stream seeded with `seed` (`rand_chacha`), uniforms u ∈ [0, 1)
//! from `Rng::random::<f64>`, drawn for n = 0..N−1 (rows), then s = 0..S−1:
//! ce: one u, y = the first k with p_0 + … + p_k > u (K−1 if none); bce: K
//! uniforms, ỹ_k = 1 if u_k < σ(a_k); sse/mse: K normals, each from two uniforms
//! by Box-Muller, ε = √(−2 ln(1 − u₁)) cos(2π u₂). K-FAC's `mc` factors
//! (kfac.rs) use the same columns, hence the same samples.
//!
//! ## Gradient variance (BackPACK's `Variance`, rescaled)
//! ```text
//!   var_p = (1/N) Σ_n g_{n,p}² − ((1/N) Σ_n g_{n,p})²         (W)
//! ```
//! the population (1/N, not 1/(N−1)) variance of the per-sample gradients of
//! E_n, computed as (1/N) Σ_n (g_{n,p} − ḡ_p)² (the same number, never negative
//! in rounding). BackPACK computes `sum_grad_squared/N − (grad/N)²` from
//! individual gradients that are (1/N) g_n for a mean-reduced loss (its
//! `BatchGrad` and `Variance` docstrings say so), i.e. var/N² for a mean loss
//! and var for a sum. We return var, which does not depend on how the batch is
//! reduced (it is the variance of one sample's gradient; var/N estimates that
//! of the mean gradient over N rows drawn independently).

use super::outer_product::output_factor;
use super::passes::{forward, weights, Forward};
use crate::activation::sigmoid;
use crate::error::{Error, Result};
use crate::loss::{softmax, Loss};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;

/// Which Fisher (and which K-FAC B factor): see the module header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fisher {
    /// The square-root columns of the Gauss-Newton output Hessian (KFLR,
    /// "type-2"): the Fisher equals the GGN's data term.
    Exact,
    /// `samples` targets drawn per row from the model's likelihood, from a
    /// ChaCha8 stream seeded with `seed`; averaged over the samples.
    Mc { samples: usize, seed: u64 },
    /// The gradient of the observed loss ("empirical Fisher").
    Empirical,
}

impl Fisher {
    /// "exact", "mc" or "empirical".
    pub fn name(self) -> &'static str {
        match self {
            Fisher::Exact => "exact",
            Fisher::Mc { .. } => "mc",
            Fisher::Empirical => "empirical",
        }
    }

    /// R, the backpropagated columns per sample for K outputs: K, S or 1.
    pub fn columns_per_sample(self, k: usize) -> usize {
        match self {
            Fisher::Exact => k,
            Fisher::Mc { samples, .. } => samples,
            Fisher::Empirical => 1,
        }
    }
}

/// The model's distribution of targets given the output pre-activations, whose
/// negative log-likelihood is E_n up to a constant (module header).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Likelihood {
    /// y ~ categorical(softmax(a)) (ce).
    Categorical,
    /// y_k ~ Bernoulli(σ(a_k)) independently (bce).
    Bernoulli,
    /// y ~ N(h(a), std² I): std = 1 for sse, √(K/2) for mse.
    Gaussian { std: f64 },
}

impl Likelihood {
    /// The likelihood of `loss` with K outputs, or an error naming a loss that has none.
    pub fn of(loss: Loss, k: usize) -> Result<Likelihood> {
        // Every loss added to `Loss` must either get an arm here or be refused with
        // `Error::Input(format!("loss `{loss}` has no likelihood to sample (mc) …"))`.
        Ok(match loss {
            Loss::Ce => Likelihood::Categorical,
            Loss::Bce => Likelihood::Bernoulli,
            Loss::Sse => Likelihood::Gaussian { std: 1.0 },
            Loss::Mse => Likelihood::Gaussian {
                std: (k as f64 / 2.0).sqrt(),
            },
        })
    }

    /// One sampled target ỹ (K) for the output pre-activations `a` (K), from `rng`
    /// in the order of the module header.
    fn sample(self, mlp: &Mlp, a: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
        let k = a.len();
        match self {
            Likelihood::Categorical => {
                let mut p = vec![0.0; k];
                softmax(a, &mut p);
                let u: f64 = rng.random();
                let mut cumulative = 0.0;
                let mut y = k - 1;
                for (i, p_i) in p.iter().enumerate() {
                    cumulative += p_i;
                    if cumulative > u {
                        y = i;
                        break;
                    }
                }
                (0..k).map(|i| if i == y { 1.0 } else { 0.0 }).collect()
            }
            Likelihood::Bernoulli => a
                .iter()
                .map(|&a_k| {
                    let u: f64 = rng.random();
                    if u < sigmoid(a_k) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect(),
            Likelihood::Gaussian { std } => {
                let act = mlp.output_activation();
                a.iter()
                    .map(|&a_k| {
                        let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                        let eps = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * PI * u2).cos();
                        act.h(a_k) + std * eps
                    })
                    .collect()
            }
        }
    }
}

/// δ_n = ∂E_n/∂a (K) of every sample at its observed target, (N, K), not divided by N.
fn output_deltas(mlp: &Mlp, a_out: &Array2<f64>, t: ArrayView2<f64>) -> Array2<f64> {
    let act = mlp.output_activation();
    let mut delta = Array2::zeros(a_out.dim()); // (N, K)
    for ((a_n, t_n), mut d_n) in a_out.rows().into_iter().zip(t.rows()).zip(delta.rows_mut()) {
        let mut out = vec![0.0; a_n.len()];
        mlp.loss()
            .delta(act, &a_n.to_vec(), &t_n.to_vec(), &mut out);
        d_n.assign(&ArrayView1::from(&out));
    }
    delta
}

/// The output columns c_{n,r} of `fisher` (module header), (N·R, K), row n·R + r.
fn output_columns(
    mlp: &Mlp,
    a_out: &Array2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<Array2<f64>> {
    let (n, k) = a_out.dim();
    let (loss, act) = (mlp.loss(), mlp.output_activation());
    match fisher {
        Fisher::Empirical => Ok(output_deltas(mlp, a_out, t)),
        Fisher::Exact => {
            let mut cols = Array2::zeros((n * k, k)); // (N·K, K)
            for s in 0..n {
                let c = output_factor(loss, act, &a_out.row(s).to_vec(), &t.row(s).to_vec()); // (K, K)
                cols.slice_mut(ndarray::s![s * k..(s + 1) * k, ..])
                    .assign(&c);
            }
            Ok(cols)
        }
        Fisher::Mc { samples, seed } => {
            if samples == 0 {
                return Err(Error::Input(
                    "the Monte-Carlo Fisher needs at least one sample per row (samples ≥ 1)"
                        .to_string(),
                ));
            }
            let likelihood = Likelihood::of(loss, k)?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut cols = Array2::zeros((n * samples, k)); // (N·S, K)
            for s in 0..n {
                let a_s = a_out.row(s).to_vec();
                // √s for ce with targets summing to s (1 for one-hot), 1 otherwise; / √S.
                let mass = if loss == Loss::Ce {
                    t.row(s).sum().max(0.0).sqrt()
                } else {
                    1.0
                };
                let scale = mass / (samples as f64).sqrt();
                for r in 0..samples {
                    let y = likelihood.sample(mlp, &a_s, &mut rng);
                    let mut c = vec![0.0; k];
                    loss.delta(act, &a_s, &y, &mut c); // ∂(−log p(ỹ))/∂a
                    for (dst, c_j) in cols.row_mut(s * samples + r).iter_mut().zip(&c) {
                        *dst = scale * c_j;
                    }
                }
            }
            Ok(cols)
        }
    }
}

/// The linear backward pass of R columns per sample: from the output columns
/// (N·R, K), C[L−1] = cols, C[l−1] = (C[l] W_l) ⊙ h′_{l−1}(a[l−1]) with row n·R + r
/// taking sample n's h′. Returns C[l] (N·R, out_l) for every layer.
fn backpropagate(
    mlp: &Mlp,
    theta: &[f64],
    fw: &Forward,
    cols: Array2<f64>,
    per_sample: usize,
) -> Vec<Array2<f64>> {
    let layers = mlp.layout();
    let last = layers.len() - 1;
    let mut c = vec![Array2::zeros((0, 0)); layers.len()];
    c[last] = cols;
    for l in (1..=last).rev() {
        let act = mlp.activations()[l - 1];
        let back = c[l].dot(&weights(&layers[l], theta)); // C[l] W_l  (N·R, out_{l−1})
        let dh = fw.a[l - 1].mapv(|a| act.dh(a)); // (N, out_{l−1})
        let mut prev = back;
        for (r, mut row) in prev.rows_mut().into_iter().enumerate() {
            row *= &dh.row(r / per_sample);
        }
        c[l - 1] = prev;
    }
    c
}

/// What the Fisher flavours and K-FAC share: one forward pass, R, and the
/// backpropagated columns C[l] (N·R, out_l) of every layer (row n·R + r).
#[derive(Clone, Debug)]
pub(crate) struct Columns {
    pub(crate) fw: Forward,
    pub(crate) per_sample: usize,
    pub(crate) c: Vec<Array2<f64>>,
}

/// The backpropagated columns of `fisher` for θ, X (N, D), T (N, K).
pub(crate) fn columns(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<Columns> {
    debug_assert_eq!(t.dim(), (x.nrows(), mlp.num_outputs()));
    let fw = forward(mlp, theta, x);
    let last = mlp.num_layers() - 1;
    let out = output_columns(mlp, &fw.a[last], t, fisher)?;
    let per_sample = fisher.columns_per_sample(mlp.num_outputs());
    let c = backpropagate(mlp, theta, &fw, out, per_sample);
    Ok(Columns { fw, per_sample, c })
}

/// The columns carried to θ's layout: row n·R + r (N·R, W) holds
/// C[l]\[nR+r, j\]·z\[l\]\[n, i\] on W_l\[j\]\[i\] and C[l]\[nR+r, j\] on b_l\[j\].
fn theta_rows(mlp: &Mlp, cols: &Columns) -> Array2<f64> {
    let rows = cols.c[0].nrows();
    let mut g = Array2::zeros((rows, mlp.num_params())); // (N·R, W)
    for (l, layer) in mlp.layout().iter().enumerate() {
        for (r, mut g_r) in g.rows_mut().into_iter().enumerate() {
            let c = cols.c[l].row(r); // (out_l)
            let z = cols.fw.z[l].row(r / cols.per_sample); // (in_l)
            for j in 0..layer.fan_out {
                for i in 0..layer.fan_in {
                    g_r[layer.weights.start + j * layer.fan_in + i] = c[j] * z[i];
                }
                g_r[layer.bias.start + j] = c[j];
            }
        }
    }
    g
}

/// The per-sample gradients g_n = ∂E_n/∂θ (N, W) for X (N, D), T (N, K): no λ,
/// not divided by N, so their mean is the data term's gradient (module header).
pub fn per_sample_gradients(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
) -> Array2<f64> {
    let fw = forward(mlp, theta, x);
    let delta = output_deltas(mlp, &fw.a[mlp.num_layers() - 1], t); // (N, K)
    let c = backpropagate(mlp, theta, &fw, delta, 1);
    theta_rows(
        mlp,
        &Columns {
            fw,
            per_sample: 1,
            c,
        },
    )
}

/// The vectors g_{n,r} (N·R, W) of `fisher`, row n·R + r, with
/// F = (1/N) Σ_{n,r} g_{n,r} g_{n,r}ᵀ (module header; mc's carry the 1/√S).
pub fn fisher_vectors(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<Array2<f64>> {
    Ok(theta_rows(mlp, &columns(mlp, theta, x, t, fisher)?))
}

/// The Fisher matrix F = (1/N) Σ_{n,r} g_{n,r} g_{n,r}ᵀ (W, W) of `fisher`, data term only.
pub fn fisher_matrix(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<Array2<f64>> {
    let g = fisher_vectors(mlp, theta, x, t, fisher)?; // (N·R, W)
    Ok(g.t().dot(&g) / x.nrows() as f64)
}

/// F·vᵢ for every row vᵢ of V (k, W), without forming F:
/// F V ᵀ = (1/N) Gᵀ (G Vᵀ), returned as (k, W).
pub fn fisher_products(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
    v: ArrayView2<f64>,
) -> Result<Array2<f64>> {
    debug_assert_eq!(v.ncols(), mlp.num_params());
    let g = fisher_vectors(mlp, theta, x, t, fisher)?; // (N·R, W)
    let projections = v.dot(&g.t()); // (k, N·R): vᵢ · g_{n,r}
    Ok(projections.dot(&g) / x.nrows() as f64)
}

/// The diagonal of F (W): (1/N) Σ_{n,r} g_{n,r}², data term only.
pub fn diag_fisher(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<Vec<f64>> {
    let g = fisher_vectors(mlp, theta, x, t, fisher)?;
    Ok((g.mapv(|v| v * v).sum_axis(Axis(0)) / x.nrows() as f64).to_vec())
}

/// The variance of the per-sample gradients (W), (1/N) Σ_n g_n² − ḡ² entrywise,
/// computed as (1/N) Σ_n (g_n − ḡ)²; BackPACK's `Variance` of a mean-reduced
/// loss is this divided by N² (module header). 0 for an empty batch.
pub fn gradient_variance(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
) -> Vec<f64> {
    let g = per_sample_gradients(mlp, theta, x, t); // (N, W)
    match g.mean_axis(Axis(0)) {
        Some(mean) => {
            let centred = &g - &mean; // g_n − ḡ
            (centred.mapv(|v| v * v).sum_axis(Axis(0)) / g.nrows() as f64).to_vec()
        }
        None => vec![0.0; mlp.num_params()],
    }
}
