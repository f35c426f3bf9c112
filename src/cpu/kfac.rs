//! K-FAC (Martens & Grosse 2015) and EKFAC (George et al. 2018): Kronecker
//! factors of each layer's block of the curvature, their products and damped
//! inverse products, and the eigenvalue-corrected diagonal. The f64 reference,
//! of the DATA TERM (no λ: the caller adds λ·I_w).
//!
//! ## Factors (indexing as in `passes.rs`, layer l = 0..L−1)
//! Layer l's input with the bias's 1 LAST is z̃ = [z\[l\]; 1] (in_l + 1). Each
//! flavour of [`Fisher`] gives per sample n the R columns s_{n,r} (out_l) of
//! the output curvature backpropagated to layer l's pre-activations
//! (fisher.rs: S ← diag(h′) W_{l+1}ᵀ S from the output columns), and
//! ```text
//!   A_l = (1/N) Σ_n z̃_n z̃_nᵀ                        (in_l+1, in_l+1)
//!   B_l = (1/N) Σ_n S_n S_nᵀ,  S_n = [s_{n,1} … s_{n,R}]   (out_l, out_l)
//!     exact      (KFLR, "type-2") R = K: the columns of a square root of the
//!                Gauss-Newton output Hessian, so A_l ⊗ B_l approximates layer
//!                l's block of G = (1/N) Σ_n Σ_k (s_{n,k} s_{n,k}ᵀ) ⊗ (z̃_n z̃_nᵀ);
//!     mc         R = S: the log-likelihood gradients of sampled targets / √S
//!                (fisher.rs: likelihoods and the stream); E[B] = B_exact;
//!     empirical  R = 1: δ_n, the per-sample (not 1/N-scaled) gradient in
//!                layer l's pre-activations: B_l = (1/N) Σ_n δ_n δ_nᵀ.
//! ```
//! All of the data term: no λ anywhere.
//!
//! ## Products on θ
//! V_l = [V_W | v_b] (out_l, in_l+1) is gathered from θ's layout (W_l row-major,
//! then b_l) by [`gather`] and written back by [`scatter`]. Then
//! ```text
//!   (K v)_l = B_l V_l A_l
//! ```
//! i.e. K's block is B_l ⊗ A_l on the row-major vec of V_l (A_l is symmetric),
//! the matrix written A_l ⊗ B_l in the K-FAC papers' column-major vec.
//!
//! ## Damped inverse products, by the eigendecompositions A = Q_A Λ_A Q_Aᵀ, B = Q_B Λ_B Q_Bᵀ
//! ```text
//!   Plain γ:        (A ⊗ B + γI) x = v:
//!                   X = Q_B [ (Q_Bᵀ V Q_A) ⊘ (λ_B λ_Aᵀ + γ) ] Q_Aᵀ
//!   PiCorrected γ:  the factored Tikhonov damping of Martens & Grosse §6.3,
//!                   (A + π√γ I) ⊗ (B + (1/π)√γ I) x = v, with
//!                   π = sqrt( (tr A / (in_l+1)) / (tr B / out_l) )
//!                   (π = 1 when tr B = 0; tr A ≥ 1 from the bias's 1):
//!                   X = Q_B [ (Q_Bᵀ V Q_A) ⊘ ((λ_B + √γ/π)(λ_A + π√γ)ᵀ) ] Q_Aᵀ
//! ```
//! (⊘ is entrywise division; λ_B λ_Aᵀ is the (out_l, in_l+1) outer product.)
//!
//! ## EKFAC: the diagonal re-fitted in the Kronecker eigenbasis
//! With Q_A, Q_B of the chosen flavour's factors and G_{n,r} = s_{n,r} z̃_nᵀ
//! (out_l, in_l+1) — for `empirical` the per-sample gradient of the layer
//! reshaped, for `exact` the K factor columns, for `mc` the S sampled ones:
//! ```text
//!   s_l[i, a] = (1/N) Σ_n Σ_r ((Q_Bᵀ G_{n,r} Q_A)[i, a])²
//!             = (1/N) Σ_n (Σ_r (q_{B,i}ᵀ s_{n,r})²) (q_{A,a}ᵀ z̃_n)²       (out_l, in_l+1)
//! ```
//! It is the diagonal of the flavour's exact layer block in the basis
//! u_{i,a} = q_{B,i} q_{A,a}ᵀ, and Σ s_l is that block's trace. EKFAC's products
//! are (C v)_l = Q_B [ s_l ⊙ (Q_Bᵀ V Q_A) ] Q_Aᵀ, its inverse ⊘ (s_l + γ).

use super::fisher::{columns, Columns, Fisher};
use crate::analysis::dense::eigen;
use crate::error::{Error, Result};
use crate::model::{LayerLayout, Mlp};
use ndarray::{Array1, Array2, ArrayView2};

/// V_l = [V_W | v_b] (out_l, in_l+1) gathered from a θ-shaped vector `v` (W):
/// V_l\[j\]\[i\] = v\[W_l\[j\]\[i\]\] for i < in_l, V_l\[j\]\[in_l\] = v\[b_l\[j\]\].
pub fn gather(layer: &LayerLayout, v: &[f64]) -> Array2<f64> {
    let (out, inp) = (layer.fan_out, layer.fan_in);
    Array2::from_shape_fn((out, inp + 1), |(j, i)| {
        if i < inp {
            v[layer.weights.start + j * inp + i]
        } else {
            v[layer.bias.start + j]
        }
    })
}

/// Writes M (out_l, in_l+1) into `out` (W) at layer l's positions of θ (the
/// inverse of [`gather`]); other layers' entries are left as they are.
pub fn scatter(layer: &LayerLayout, m: &Array2<f64>, out: &mut [f64]) {
    let inp = layer.fan_in;
    for j in 0..layer.fan_out {
        for i in 0..inp {
            out[layer.weights.start + j * inp + i] = m[[j, i]];
        }
        out[layer.bias.start + j] = m[[j, inp]];
    }
}

/// z̃ = [z; 1] for every row of z (N, in_l): (N, in_l+1), the bias's 1 last.
fn with_ones(z: &Array2<f64>) -> Array2<f64> {
    let (n, inp) = z.dim();
    Array2::from_shape_fn((n, inp + 1), |(s, i)| if i < inp { z[[s, i]] } else { 1.0 })
}

/// A_l and B_l of every layer (module header) from the shared columns.
fn factors_of(mlp: &Mlp, cols: &Columns, fisher: Fisher) -> KroneckerFactors {
    let n = cols.fw.z[0].nrows() as f64;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for l in 0..mlp.num_layers() {
        let zt = with_ones(&cols.fw.z[l]); // (N, in_l+1)
        a.push(zt.t().dot(&zt) / n); // (in_l+1, in_l+1)
        b.push(cols.c[l].t().dot(&cols.c[l]) / n); // (out_l, out_l)
    }
    KroneckerFactors {
        fisher,
        layers: mlp.layout(),
        a,
        b,
    }
}

/// The Kronecker factors of every layer for θ, X (N, D), T (N, K) and a
/// flavour; errors only for `mc` (no samples, or a loss with no likelihood).
pub fn kfac_factors(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<KroneckerFactors> {
    let cols = columns(mlp, theta, x, t, fisher)?;
    Ok(factors_of(mlp, &cols, fisher))
}

/// The K-FAC factors of one network at one θ and batch (module header).
#[derive(Clone, Debug)]
pub struct KroneckerFactors {
    /// The flavour of B.
    pub fisher: Fisher,
    /// Where each layer sits in θ.
    pub layers: Vec<LayerLayout>,
    /// A_l (in_l+1, in_l+1), the bias's 1 last.
    pub a: Vec<Array2<f64>>,
    /// B_l (out_l, out_l).
    pub b: Vec<Array2<f64>>,
}

/// Checks a damping γ: finite and > 0.
fn check_gamma(gamma: f64) -> Result<()> {
    if gamma.is_finite() && gamma > 0.0 {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "the damping γ must be finite and > 0, not {gamma}"
        )))
    }
}

/// How to damp a K-FAC inverse product (module header).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Damping {
    /// (A ⊗ B + γI)⁻¹, exactly.
    Plain { gamma: f64 },
    /// ((A + π√γ I) ⊗ (B + (1/π)√γ I))⁻¹, Martens & Grosse 2015 §6.3.
    PiCorrected { gamma: f64 },
}

impl KroneckerFactors {
    /// W = len(θ).
    fn num_params(&self) -> usize {
        self.layers.last().map_or(0, |l| l.bias.end)
    }

    /// (K v) (W): per layer B_l V_l A_l scattered back to θ's layout. Data term.
    pub fn product(&self, v: &[f64]) -> Vec<f64> {
        debug_assert_eq!(v.len(), self.num_params());
        let mut out = vec![0.0; v.len()];
        for (l, layer) in self.layers.iter().enumerate() {
            let kv = self.b[l].dot(&gather(layer, v)).dot(&self.a[l]); // (out_l, in_l+1)
            scatter(layer, &kv, &mut out);
        }
        out
    }

    /// Layer l's block of K (P, P), P = out_l·(in_l+1), in θ's order (W_l row-major,
    /// then b_l): entry (p, q) = B_l\[j, j′\]·A_l\[i, i′\] for p ↔ (j, i), q ↔ (j′, i′).
    pub fn layer_matrix(&self, l: usize) -> Array2<f64> {
        let layer = &self.layers[l];
        let size = layer.bias.end - layer.weights.start;
        // (j, i) of every position p of the block (i = in_l for a bias).
        let index = |p: usize| -> (usize, usize) {
            let w = layer.weights.len();
            if p < w {
                (p / layer.fan_in, p % layer.fan_in)
            } else {
                (p - w, layer.fan_in)
            }
        };
        Array2::from_shape_fn((size, size), |(p, q)| {
            let ((j, i), (jj, ii)) = (index(p), index(q));
            self.b[l][[j, jj]] * self.a[l][[i, ii]]
        })
    }

    /// K (W, W): block-diagonal, layer l's block [`Self::layer_matrix`]. Data term.
    pub fn matrix(&self) -> Array2<f64> {
        let w = self.num_params();
        let mut m = Array2::zeros((w, w));
        for (l, layer) in self.layers.iter().enumerate() {
            let r = layer.weights.start..layer.bias.end;
            m.slice_mut(ndarray::s![r.clone(), r])
                .assign(&self.layer_matrix(l));
        }
        m
    }

    /// π_l = sqrt( (tr A_l/(in_l+1)) / (tr B_l/out_l) ), or 1 when tr B_l = 0.
    pub fn pi(&self, l: usize) -> f64 {
        let mean_a = self.a[l].diag().sum() / self.a[l].nrows() as f64;
        let mean_b = self.b[l].diag().sum() / self.b[l].nrows() as f64;
        if mean_b > 0.0 && mean_a > 0.0 {
            (mean_a / mean_b).sqrt()
        } else {
            1.0
        }
    }

    /// The eigendecompositions of every layer's A_l and B_l.
    pub fn eigen(&self) -> Result<Vec<LayerEigen>> {
        self.a
            .iter()
            .zip(&self.b)
            .map(|(a, b)| LayerEigen::of(a, b))
            .collect()
    }

    /// x (W) solving the damped system of `damping`, per layer, by the
    /// eigendecompositions (module header). γ must be finite and > 0.
    pub fn inverse_product(&self, v: &[f64], damping: Damping) -> Result<Vec<f64>> {
        debug_assert_eq!(v.len(), self.num_params());
        let gamma = match damping {
            Damping::Plain { gamma } | Damping::PiCorrected { gamma } => gamma,
        };
        check_gamma(gamma)?;
        let mut out = vec![0.0; v.len()];
        for (l, (layer, e)) in self.layers.iter().zip(self.eigen()?).enumerate() {
            let m = e.rotate(&gather(layer, v)); // Q_Bᵀ V Q_A  (out_l, in_l+1)
            let denominator = match damping {
                Damping::Plain { .. } => e.kronecker_values().mapv(|k| k + gamma),
                Damping::PiCorrected { .. } => {
                    let (pi, root) = (self.pi(l), gamma.sqrt());
                    Array2::from_shape_fn(m.dim(), |(i, a)| {
                        (e.b_values[i] + root / pi) * (e.a_values[a] + pi * root)
                    })
                }
            };
            scatter(layer, &e.unrotate(&(m / denominator)), &mut out);
        }
        Ok(out)
    }
}

/// The eigendecompositions of one layer's factors: A_l = Q_A diag(λ_A) Q_Aᵀ,
/// B_l = Q_B diag(λ_B) Q_Bᵀ, eigenvalues ascending, eigenvectors as columns.
#[derive(Clone, Debug)]
pub struct LayerEigen {
    /// λ_A (in_l+1).
    pub a_values: Array1<f64>,
    /// Q_A (in_l+1, in_l+1), column a is q_{A,a}.
    pub a_vectors: Array2<f64>,
    /// λ_B (out_l).
    pub b_values: Array1<f64>,
    /// Q_B (out_l, out_l), column i is q_{B,i}.
    pub b_vectors: Array2<f64>,
}

impl LayerEigen {
    fn of(a: &Array2<f64>, b: &Array2<f64>) -> Result<LayerEigen> {
        let (a_values, a_vectors) = eigen(a)?;
        let (b_values, b_vectors) = eigen(b)?;
        Ok(LayerEigen {
            a_values: Array1::from(a_values),
            a_vectors,
            b_values: Array1::from(b_values),
            b_vectors,
        })
    }

    /// Q_Bᵀ V Q_A (out_l, in_l+1): V in the Kronecker eigenbasis.
    pub fn rotate(&self, v: &Array2<f64>) -> Array2<f64> {
        self.b_vectors.t().dot(v).dot(&self.a_vectors)
    }

    /// Q_B M Q_Aᵀ (out_l, in_l+1): back from the eigenbasis.
    pub fn unrotate(&self, m: &Array2<f64>) -> Array2<f64> {
        self.b_vectors.dot(m).dot(&self.a_vectors.t())
    }

    /// λ_B λ_Aᵀ (out_l, in_l+1): the eigenvalues of A ⊗ B, entry (i, a).
    pub fn kronecker_values(&self) -> Array2<f64> {
        Array2::from_shape_fn((self.b_values.len(), self.a_values.len()), |(i, a)| {
            self.b_values[i] * self.a_values[a]
        })
    }
}

/// EKFAC of one network at one θ and batch: the flavour's Kronecker eigenbasis
/// and the re-fitted diagonal in it (module header).
#[derive(Clone, Debug)]
pub struct Ekfac {
    /// The flavour of B (and of the second moments).
    pub fisher: Fisher,
    /// Where each layer sits in θ.
    pub layers: Vec<LayerLayout>,
    /// Q_A, Q_B (and K-FAC's λ_A, λ_B) of every layer.
    pub basis: Vec<LayerEigen>,
    /// s_l (out_l, in_l+1): entry (i, a) belongs to u_{i,a} = q_{B,i} q_{A,a}ᵀ.
    pub scalings: Vec<Array2<f64>>,
}

/// EKFAC for θ, X (N, D), T (N, K) and a flavour: one pass gives the columns,
/// from which both the factors' eigenbasis and the second moments s_l are taken
/// (for `mc`: the same samples).
pub fn ekfac(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    fisher: Fisher,
) -> Result<Ekfac> {
    let cols = columns(mlp, theta, x, t, fisher)?;
    let factors = factors_of(mlp, &cols, fisher);
    let basis = factors.eigen()?;
    let n = x.nrows() as f64;
    let mut scalings = Vec::with_capacity(basis.len());
    for (l, e) in basis.iter().enumerate() {
        let zt = with_ones(&cols.fw.z[l]); // (N, in_l+1)
        let along_a = zt.dot(&e.a_vectors).mapv(|v| v * v); // (q_{A,a}ᵀ z̃_n)²  (N, in_l+1)
        let along_b = cols.c[l].dot(&e.b_vectors).mapv(|v| v * v); // (q_{B,i}ᵀ s_{n,r})²  (N·R, out_l)
        let mut per_sample = Array2::zeros((zt.nrows(), e.b_values.len())); // Σ_r (…)²  (N, out_l)
        for (r, row) in along_b.rows().into_iter().enumerate() {
            let mut dst = per_sample.row_mut(r / cols.per_sample);
            dst += &row;
        }
        scalings.push(per_sample.t().dot(&along_a) / n); // (out_l, in_l+1)
    }
    Ok(Ekfac {
        fisher,
        layers: factors.layers,
        basis,
        scalings,
    })
}

impl Ekfac {
    /// (C v) (W): per layer Q_B [ s_l ⊙ (Q_Bᵀ V_l Q_A) ] Q_Aᵀ. Data term.
    pub fn product(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        for ((layer, e), s) in self.layers.iter().zip(&self.basis).zip(&self.scalings) {
            let m = e.rotate(&gather(layer, v)) * s;
            scatter(layer, &e.unrotate(&m), &mut out);
        }
        out
    }

    /// x (W) with (C + γI) x = v: per layer Q_B [ (Q_Bᵀ V_l Q_A) ⊘ (s_l + γ) ] Q_Aᵀ.
    /// γ must be finite and > 0.
    pub fn inverse_product(&self, v: &[f64], gamma: f64) -> Result<Vec<f64>> {
        check_gamma(gamma)?;
        let mut out = vec![0.0; v.len()];
        for ((layer, e), s) in self.layers.iter().zip(&self.basis).zip(&self.scalings) {
            let m = e.rotate(&gather(layer, v)) / s.mapv(|s| s + gamma);
            scatter(layer, &e.unrotate(&m), &mut out);
        }
        Ok(out)
    }
}
