//! The Laplace approximation of a classification network (PRML §5.7.3), fitted
//! after training ("post hoc"): a Gaussian posterior N(θ*, A⁻¹) around the
//! trained θ* over a subset S of the parameters (all of them, or the last layer's
//! W_L and b_L with the others fixed at θ*), with precision
//!
//!   A = N·G_data,S + D(α),   D(α) = Σ_l α_l I_l      (PRML 5.161 with the Gauss-Newton H),
//!
//! where G_data = G − λ I_w is the engine's Gauss-Newton matrix of the mean
//! data term (without the model's own L2 term), G_data,S its S×S block, and the
//! prior is N(0, α_l⁻¹ I) on each layer l's parameters in S (weights and bias
//! together, I_l the indicator of layer l's entries): one α for all of them
//! (`scalar`) or one per layer (`layerwise`, laplace-torch's `prior_structure`,
//! there one per parameter tensor). The structure of N·G_data,S kept:
//!
//! - `full`: its eigendecomposition V diag(μ) Vᵀ (|S| within the dense limit);
//! - `diag`: μ = N·diag(G_data,S) only;
//! - `kron` (Ritter, Botev & Barber 2018): per layer N·(A_l ⊗ B_l) of the K-FAC
//!   factors (`cpu/kfac.rs`, exact flavour by default), zero between layers, with
//!   the eigenbasis u_{i,a} = q_{B,i} q_{A,a}ᵀ and eigenvalues μ_{l,ia} = N λ_{B,i} λ_{A,a}.
//!   The prior is added exactly in that basis (laplace-torch's `KronDecomposed`,
//!   not Ritter's factored damping): α_l I_l is isotropic on the block.
//!
//! For `diag` and `kron`, and for `full` with one α, A is diagonal in the kept basis
//! with eigenvalues ν_c = μ_c + α_{l(c)}; for `full` with several α it is not, and
//! A is factorised densely (Cholesky for the evidence, an eigendecomposition for
//! the predictive).
//!
//! - Log evidence (PRML 5.183 with 5.175's terms; P_l = layer l's entries in S):
//!   ln p(D|α) ≈ −Σ_n E_n(θ*) − ½ Σ_l α_l ‖θ*_l‖² − ½ ln|A| + ½ Σ_l P_l ln α_l.
//!   (θ* is kept fixed as α changes: the usual post-hoc evidence.)
//! - α by MacKay's fixed point (PRML 5.178, 3.91–3.92), per prior group:
//!   α_l ← γ_l / ‖θ*_l‖², γ_l = P_l − α_l tr_l(A⁻¹) (tr_l: the trace over layer
//!   l's entries); with one α, γ = Σ_c μ_c / (μ_c + α). A fixed point is exactly a
//!   stationary point of the log evidence above:
//!   ∂/∂α_l = ½(P_l/α_l − tr_l(A⁻¹) − ‖θ*_l‖²) = (γ_l − α_l‖θ*_l‖²)/(2α_l).
//! - Predictive (linearised outputs a(θ) ≈ a(θ*) + J (θ − θ*), J = ∂a_L/∂θ_S):
//!   output variance v_k = [J A⁻¹ Jᵀ]_kk; for a sigmoid output the probit
//!   approximation (PRML 4.153) p = σ(κ(v) a), κ(v) = (1 + πv/8)^(−½); for
//!   softmax the mean-field multiclass probit approximation (Lu, Ie & Sha 2020,
//!   the diagonal form): p_k ∝ exp(κ(v_k) a_k) — covariances between classes
//!   are dropped. Monte Carlo of the linearised model: a_s = a(θ*) + J δθ_s,
//!   δθ_s ~ N(0, A⁻¹), the output activation applied to each a_s and averaged.
//!   And Monte Carlo of the network itself: θ_s = θ* + A^(−½) z_s on S, z_s ~ N(0, I),
//!   with the network's outputs at θ_s averaged (no linearisation).
//!   In the kept basis B (orthogonal; the identity for `diag`) with A = B diag(ν) Bᵀ:
//!   P = J B once per input set, v = Σ_c P_c²/ν_c, δθ = B (z ⊘ √ν).
//!
//! (About 670 lines, over the ~600 guideline: the fit of the three structures
//! and both priors shares one state; the posterior and predictives are in
//! `posterior.rs`.)

use super::dense;
use super::posterior::Basis;
pub use super::posterior::{output_jacobians, Posterior, ProjectedJacobian};
use crate::cpu::{scatter, Fisher, LayerEigen};
use crate::engine::{Curvature, DataTerm};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::{LayerLayout, Mlp};
use ndarray::{s, Array1, Array2, ArrayView2};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

/// Which approximation of N·G_data,S the posterior keeps (module header).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Structure {
    /// The dense matrix, by its eigendecomposition.
    Full,
    /// Its diagonal.
    Diagonal,
    /// Per layer N·(A_l ⊗ B_l), K-FAC of the flavour.
    Kron(Fisher),
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Structure::Full => f.write_str("full"),
            Structure::Diagonal => f.write_str("diag"),
            Structure::Kron(Fisher::Exact) => f.write_str("kron"),
            Structure::Kron(fisher) => write!(f, "kron ({} K-FAC)", fisher.name()),
        }
    }
}

/// Which parameters the posterior is over (module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    /// All W.
    All,
    /// The last layer's W_L and b_L; the others stay at θ*.
    LastLayer,
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subset::All => "all",
            Subset::LastLayer => "last-layer",
        })
    }
}

/// One layer of a `kron` posterior.
#[derive(Clone, Debug)]
pub struct KronLayer {
    /// The layer's place in the subset's vectors (θ's layout shifted by the
    /// subset's start).
    pub layout: LayerLayout,
    /// Q_A, Q_B (and λ_A, λ_B) of the layer's factors.
    pub eigen: LayerEigen,
    /// μ (out_l, in_l+1): N λ_{B,i} λ_{A,a}, the factors' eigenvalues clamped at 0.
    pub mu: Array2<f64>,
}

/// The curvature of the posterior precision (without the prior).
#[derive(Clone, Debug)]
pub enum PosteriorCurvature {
    /// N·G_data,S = V diag(μ) Vᵀ: μ (|S|) ascending, V (|S|, |S|) eigenvectors as columns.
    Full { mu: Vec<f64>, vectors: Array2<f64> },
    /// μ = N·diag(G_data,S) (|S|).
    Diagonal { mu: Vec<f64> },
    /// Per layer N·(A_l ⊗ B_l) in its eigenbasis.
    Kron { layers: Vec<KronLayer> },
}

/// A fitted Laplace approximation at θ*.
#[derive(Clone, Debug)]
pub struct LaplaceFit {
    pub mlp: Mlp,
    pub theta: Vec<f64>,
    /// Rows of the training data used (N).
    pub n: usize,
    /// Σ_n E_n(θ*), the negative log-likelihood of the training data.
    pub data_nll: f64,
    pub curvature: PosteriorCurvature,
    /// Which parameters.
    pub subset: Subset,
    /// S as a range of θ (the subset's layers are consecutive).
    pub range: Range<usize>,
    /// The prior's groups: each layer of S as a range of θ.
    pub groups: Vec<Range<usize>>,
    /// μ in the kept basis's order (|S|): the eigenvalues, the diagonal, or each
    /// kron layer's μ scattered to its positions.
    mu: Vec<f64>,
    /// The group of each basis coefficient (`diag`, `kron`); empty for `full`,
    /// whose eigenvectors span layers.
    group_of: Vec<usize>,
    /// `full`: per group l and eigenvector c, Σ_{p ∈ l} V_pc² (groups, |S|).
    layer_weights: Option<Array2<f64>>,
    /// `full`: V diag(μ) Vᵀ, formed the first time a layerwise prior needs it.
    precision: OnceLock<Array2<f64>>,
}

/// Eigenvalues of a PSD matrix below zero are rounding: clamp at 0.
fn clamp_psd(mu: &mut [f64]) {
    for m in mu {
        *m = m.max(0.0);
    }
}

/// `layer` with its ranges moved `by` entries down.
fn shifted(layer: &LayerLayout, by: usize) -> LayerLayout {
    LayerLayout {
        fan_in: layer.fan_in,
        fan_out: layer.fan_out,
        weights: layer.weights.start - by..layer.weights.end - by,
        bias: layer.bias.start - by..layer.bias.end - by,
    }
}

/// Unit-vector rows per call of the S×S block of G: 2²⁴ entries (128 MiB).
const BLOCK_BUDGET: usize = 1 << 24;

/// G_data's block on `range` (|S|, |S|), from G·e_p products in chunks.
fn ggn_block(
    data: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    range: Range<usize>,
) -> Result<Array2<f64>> {
    let w = theta.len();
    if range == (0..w) {
        return data.ggn(theta, rows);
    }
    let size = range.len();
    let per = (BLOCK_BUDGET / w.max(1)).max(1);
    let mut block = Array2::zeros((size, size));
    for c0 in (0..size).step_by(per) {
        let c1 = (c0 + per).min(size);
        let mut units = Array2::zeros((c1 - c0, w));
        for (i, c) in (c0..c1).enumerate() {
            units[[i, range.start + c]] = 1.0;
        }
        let g = data.gvp_block(theta, rows.clone(), units.view())?; // (k, W)
        block
            .slice_mut(s![c0..c1, ..])
            .assign(&g.slice(s![.., range.clone()]));
    }
    Ok(block)
}

impl LaplaceFit {
    /// Fits at θ* on `rows` of the engine's (training) data over all parameters;
    /// `full` builds and eigen-decomposes the W×W G (else only its diagonal).
    pub fn fit(
        engine: &mut dyn Curvature,
        theta: &[f64],
        rows: Range<usize>,
        full: bool,
    ) -> Result<LaplaceFit> {
        let structure = if full {
            Structure::Full
        } else {
            Structure::Diagonal
        };
        LaplaceFit::fit_with(engine, theta, rows, structure, Subset::All)
    }

    /// Fits at θ* on `rows` of the engine's (training) data with a structure and a
    /// subset (module header). `full` forms the |S|×|S| block: the caller checks
    /// the dense limit.
    pub fn fit_with(
        engine: &mut dyn Curvature,
        theta: &[f64],
        rows: Range<usize>,
        structure: Structure,
        subset: Subset,
    ) -> Result<LaplaceFit> {
        let mlp = engine.mlp().clone();
        if !matches!(mlp.loss(), Loss::Ce | Loss::Bce) {
            return Err(Error::Input(format!(
                "the Laplace predictive here is for classification (loss ce or bce), the model uses {}",
                mlp.loss()
            )));
        }
        let all = mlp.layout();
        let chosen: Vec<(usize, LayerLayout)> = match subset {
            Subset::All => all.iter().cloned().enumerate().collect(),
            Subset::LastLayer => vec![(all.len() - 1, all[all.len() - 1].clone())],
        };
        let range = chosen[0].1.weights.start..chosen[chosen.len() - 1].1.bias.end;
        let groups: Vec<Range<usize>> = chosen
            .iter()
            .map(|(_, l)| l.weights.start..l.bias.end)
            .collect();
        let start = range.start;
        let n = rows.len();
        let nf = n as f64;
        // K-FAC's factors are of the data term already (asked of the engine itself: a
        // borrowed view does not pass the Fisher primitives on).
        let factors = match structure {
            Structure::Kron(fisher) => Some(engine.kfac_factors(fisher, theta, rows.clone())?),
            _ => None,
        };
        // The likelihood's curvature: the data term alone (the prior is α's).
        let mut data = DataTerm::of(engine)?;
        let data_nll = nf * data.loss(theta, rows.clone())?;
        let group_by_position = || -> Vec<usize> {
            let mut g = vec![0; range.len()];
            for (i, r) in groups.iter().enumerate() {
                g[r.start - start..r.end - start].fill(i);
            }
            g
        };
        let (curvature, mu, group_of, layer_weights) = match structure {
            Structure::Full => {
                let mut g = ggn_block(&mut data, theta, rows, range.clone())?;
                g *= nf;
                let (mut mu, vectors) = dense::eigen(&g)?;
                clamp_psd(&mut mu);
                let mut weights = Array2::zeros((groups.len(), range.len()));
                for (i, r) in groups.iter().enumerate() {
                    let v = vectors.slice(s![r.start - start..r.end - start, ..]);
                    weights
                        .row_mut(i)
                        .assign(&v.mapv(|x| x * x).sum_axis(ndarray::Axis(0)));
                }
                let curvature = PosteriorCurvature::Full {
                    mu: mu.clone(),
                    vectors,
                };
                (curvature, mu, Vec::new(), Some(weights))
            }
            Structure::Diagonal => {
                let d = data.diag_ggn(theta, rows)?;
                let mut mu: Vec<f64> = d[range.clone()].iter().map(|g| nf * g).collect();
                clamp_psd(&mut mu);
                let curvature = PosteriorCurvature::Diagonal { mu: mu.clone() };
                (curvature, mu, group_by_position(), None)
            }
            Structure::Kron(_) => {
                let eigen = factors
                    .ok_or_else(|| Error::Internal("kron without K-FAC factors".into()))?
                    .eigen()?;
                let mut layers = Vec::new();
                let mut flat = vec![0.0; range.len()];
                for (l, layer) in &chosen {
                    let e = eigen[*l].clone();
                    let mu = Array2::from_shape_fn((layer.fan_out, layer.fan_in + 1), |(i, a)| {
                        nf * e.b_values[i].max(0.0) * e.a_values[a].max(0.0)
                    });
                    let layout = shifted(layer, start);
                    scatter(&layout, &mu, &mut flat);
                    layers.push(KronLayer {
                        layout,
                        eigen: e,
                        mu,
                    });
                }
                let curvature = PosteriorCurvature::Kron { layers };
                (curvature, flat, group_by_position(), None)
            }
        };
        Ok(LaplaceFit {
            mlp,
            theta: theta.to_vec(),
            n,
            data_nll,
            curvature,
            subset,
            range,
            groups,
            mu,
            group_of,
            layer_weights,
            precision: OnceLock::new(),
        })
    }

    /// |S|.
    pub fn num_subset(&self) -> usize {
        self.range.len()
    }

    /// The prior's groups' sizes P_l.
    pub fn group_sizes(&self) -> Vec<usize> {
        self.groups.iter().map(|r| r.len()).collect()
    }

    /// ‖θ*_l‖² of each group.
    pub fn group_norms(&self) -> Vec<f64> {
        self.groups
            .iter()
            .map(|r| self.theta[r.clone()].iter().map(|t| t * t).sum())
            .collect()
    }

    /// ‖θ*_S‖².
    fn theta_sq(&self) -> f64 {
        self.group_norms().iter().sum()
    }

    /// One α for every group.
    pub fn uniform(&self, alpha: f64) -> Vec<f64> {
        vec![alpha; self.groups.len()]
    }

    /// The α the trained model's L2 term implies: λ·N (on weights; the
    /// Laplace prior here covers biases too).
    pub fn training_alpha(&self) -> f64 {
        self.mlp.l2() * self.n as f64
    }

    /// ln p(D|α) for one α (see the module header).
    pub fn log_evidence(&self, alpha: f64) -> f64 {
        let w = self.num_subset() as f64;
        let log_det: f64 = self.mu.iter().map(|m| (m + alpha).ln()).sum();
        -self.data_nll - 0.5 * alpha * self.theta_sq() - 0.5 * log_det + 0.5 * w * alpha.ln()
    }

    /// d ln p(D|α) / dα for one α.
    pub fn d_log_evidence(&self, alpha: f64) -> f64 {
        let w = self.num_subset() as f64;
        let s: f64 = self.mu.iter().map(|m| 1.0 / (m + alpha)).sum();
        0.5 * (w / alpha - s - self.theta_sq())
    }

    /// γ = Σ μ_c / (μ_c + α), the effective number of parameters (PRML 3.91).
    pub fn effective_parameters(&self, alpha: f64) -> f64 {
        self.mu.iter().map(|m| m / (m + alpha)).sum()
    }

    /// α maximising the evidence by MacKay's update from `start`; returns
    /// (α, iterations). Errs when it does not settle.
    pub fn optimise_alpha(&self, start: f64) -> Result<(f64, usize)> {
        const MAX_ITERATIONS: usize = 10_000;
        // Relative change of α at which the update has settled (near f64 rounding).
        const SETTLED: f64 = 1e-12;
        let sq = self.theta_sq();
        if sq == 0.0 || !(start > 0.0 && start.is_finite()) {
            return Err(Error::Input(format!(
                "MacKay's update needs θ* ≠ 0 and a start α > 0 (got ‖θ*‖² = {sq}, α = {start})"
            )));
        }
        let mut alpha = start;
        for it in 1..=MAX_ITERATIONS {
            let next = self.effective_parameters(alpha) / sq;
            if !(next > 0.0 && next.is_finite()) {
                return Err(Error::Input(format!(
                    "MacKay's update left the positive reals (α = {next}): the curvature is all zero"
                )));
            }
            let change = (next - alpha).abs() / alpha;
            alpha = next;
            if change < SETTLED {
                return Ok((alpha, it));
            }
        }
        Err(Error::Input(format!(
            "MacKay's update did not settle in {MAX_ITERATIONS} iterations (α = {alpha})"
        )))
    }

    /// Checks one α per group, each finite and > 0.
    fn check_alphas(&self, alphas: &[f64]) -> Result<()> {
        if alphas.len() != self.groups.len() {
            return Err(Error::Shape(format!(
                "{} prior precisions for {} prior groups",
                alphas.len(),
                self.groups.len()
            )));
        }
        if let Some(a) = alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return Err(Error::Input(format!(
                "a prior precision must be finite and > 0, not {a}"
            )));
        }
        Ok(())
    }

    /// ν_c = μ_c + α_{l(c)}, A's eigenvalues in the kept basis; None for `full` with
    /// several α (A is not diagonal there).
    fn basis_values(&self, alphas: &[f64]) -> Option<Vec<f64>> {
        if self.group_of.is_empty() {
            let a0 = alphas[0];
            alphas
                .iter()
                .all(|a| *a == a0)
                .then(|| self.mu.iter().map(|m| m + a0).collect())
        } else {
            Some(
                self.mu
                    .iter()
                    .zip(&self.group_of)
                    .map(|(m, &g)| m + alphas[g])
                    .collect(),
            )
        }
    }

    /// `full`: A = V diag(μ) Vᵀ + D(α) (|S|, |S|).
    fn dense_precision(&self, alphas: &[f64]) -> Result<Array2<f64>> {
        let PosteriorCurvature::Full { vectors, .. } = &self.curvature else {
            return Err(Error::Internal(
                "a dense precision of a structured posterior".into(),
            ));
        };
        let m = self.precision.get_or_init(|| {
            let scaled = vectors * &Array1::from(self.mu.clone());
            scaled.dot(&vectors.t())
        });
        let mut a = m.clone();
        for (g, r) in self.groups.iter().enumerate() {
            for p in r.start - self.range.start..r.end - self.range.start {
                a[[p, p]] += alphas[g];
            }
        }
        Ok(a)
    }

    /// ln|A| for one α per group.
    pub fn log_det_precision(&self, alphas: &[f64]) -> Result<f64> {
        self.check_alphas(alphas)?;
        match self.basis_values(alphas) {
            Some(nu) => Ok(nu.iter().map(|v| v.ln()).sum()),
            None => dense::log_det(&self.dense_precision(alphas)?, 0.0),
        }
    }

    /// tr_l(A⁻¹), the trace of A⁻¹ over each group's entries.
    pub fn group_traces(&self, alphas: &[f64]) -> Result<Vec<f64>> {
        self.check_alphas(alphas)?;
        let mut out = vec![0.0; self.groups.len()];
        match (self.basis_values(alphas), &self.layer_weights) {
            (Some(nu), Some(weights)) => {
                for (g, row) in weights.rows().into_iter().enumerate() {
                    out[g] = row.iter().zip(&nu).map(|(w, v)| w / v).sum();
                }
            }
            (Some(nu), None) => {
                for (v, &g) in nu.iter().zip(&self.group_of) {
                    out[g] += 1.0 / v;
                }
            }
            (None, _) => {
                let inv = dense::cholesky_inverse(&self.dense_precision(alphas)?, 0.0)?;
                for (g, r) in self.groups.iter().enumerate() {
                    out[g] = (r.start..r.end)
                        .map(|p| inv[[p - self.range.start, p - self.range.start]])
                        .sum();
                }
            }
        }
        Ok(out)
    }

    /// ln p(D|α) for one α per group (module header).
    pub fn log_evidence_layerwise(&self, alphas: &[f64]) -> Result<f64> {
        let log_det = self.log_det_precision(alphas)?;
        let prior: f64 = alphas
            .iter()
            .zip(self.group_norms())
            .zip(self.group_sizes())
            .map(|((a, sq), p)| -0.5 * a * sq + 0.5 * p as f64 * a.ln())
            .sum();
        Ok(-self.data_nll - 0.5 * log_det + prior)
    }

    /// ∂ ln p(D|α) / ∂α_l of each group (module header).
    pub fn gradient_log_evidence(&self, alphas: &[f64]) -> Result<Vec<f64>> {
        let traces = self.group_traces(alphas)?;
        Ok(alphas
            .iter()
            .zip(traces)
            .zip(self.group_norms().into_iter().zip(self.group_sizes()))
            .map(|((a, t), (sq, p))| 0.5 * (p as f64 / a - t - sq))
            .collect())
    }

    /// γ_l = P_l − α_l tr_l(A⁻¹), the effective parameters of each group.
    pub fn group_effective_parameters(&self, alphas: &[f64]) -> Result<Vec<f64>> {
        let traces = self.group_traces(alphas)?;
        Ok(alphas
            .iter()
            .zip(traces)
            .zip(self.group_sizes())
            .map(|((a, t), p)| p as f64 - a * t)
            .collect())
    }

    /// One α per group maximising the evidence by MacKay's fixed point from `start`
    /// (module header); returns (α, iterations). Errs when it does not settle. For
    /// `full` each iteration is one |S|×|S| Cholesky inverse.
    pub fn optimise_layerwise(&self, start: &[f64]) -> Result<(Vec<f64>, usize)> {
        const MAX_ITERATIONS: usize = 10_000;
        // The largest relative change of any α_l at which the update has settled.
        const SETTLED: f64 = 1e-11;
        self.check_alphas(start)?;
        let norms = self.group_norms();
        if let Some(l) = norms.iter().position(|sq| *sq == 0.0) {
            return Err(Error::Input(format!(
                "MacKay's update needs θ* ≠ 0 on every prior group (group {l} is all zero)"
            )));
        }
        let mut alphas = start.to_vec();
        for it in 1..=MAX_ITERATIONS {
            let gammas = self.group_effective_parameters(&alphas)?;
            let mut change: f64 = 0.0;
            for ((a, g), sq) in alphas.iter_mut().zip(gammas).zip(&norms) {
                let next = g / sq;
                if !(next > 0.0 && next.is_finite()) {
                    return Err(Error::Input(format!(
                        "MacKay's layerwise update left the positive reals (α = {next}): a layer's curvature is all zero"
                    )));
                }
                change = change.max((next - *a).abs() / *a);
                *a = next;
            }
            if change < SETTLED {
                return Ok((alphas, it));
            }
        }
        Err(Error::Input(format!(
            "MacKay's layerwise update did not settle in {MAX_ITERATIONS} iterations (α = {alphas:?})"
        )))
    }

    /// The posterior N(θ*, A⁻¹) for one α per group, in a basis where A is
    /// diagonal: the kept one, or (`full` with several α) A's own eigenbasis.
    pub fn posterior(&self, alphas: &[f64]) -> Result<Posterior<'_>> {
        self.check_alphas(alphas)?;
        let (basis, values) = match (self.basis_values(alphas), &self.curvature) {
            (Some(nu), PosteriorCurvature::Full { vectors, .. }) => {
                (Basis::Dense(Cow::Borrowed(vectors)), nu)
            }
            (Some(nu), PosteriorCurvature::Diagonal { .. }) => (Basis::Identity, nu),
            (Some(nu), PosteriorCurvature::Kron { layers }) => (Basis::Kron(layers), nu),
            (None, _) => {
                let (nu, u) = dense::eigen(&self.dense_precision(alphas)?)?;
                if let Some(bad) = nu.iter().find(|v| v.is_nan() || **v <= 0.0) {
                    return Err(Error::Input(format!(
                        "the posterior precision is not positive definite (eigenvalue {bad:e})"
                    )));
                }
                (Basis::Dense(Cow::Owned(u)), nu)
            }
        };
        Ok(Posterior {
            fit: self,
            basis,
            values,
        })
    }

    /// The posterior for one α (never fails: A is diagonal in the kept basis).
    fn scalar(&self, alpha: f64) -> Posterior<'_> {
        let basis = match &self.curvature {
            PosteriorCurvature::Full { vectors, .. } => Basis::Dense(Cow::Borrowed(vectors)),
            PosteriorCurvature::Diagonal { .. } => Basis::Identity,
            PosteriorCurvature::Kron { layers } => Basis::Kron(layers),
        };
        Posterior {
            fit: self,
            basis,
            values: self.mu.iter().map(|m| m + alpha).collect(),
        }
    }

    /// θ* + A^(−½) z on S for z (|S|) standard normal: a draw from N(θ*, A⁻¹), one α.
    pub fn sample(&self, alpha: f64, z: &[f64]) -> Vec<f64> {
        self.scalar(alpha).sample(z)
    }

    /// The Jacobians of the inputs x (M, D) in the kept basis, projected once so
    /// that the output variances for any one α cost O(M·K·|S|).
    pub fn project(&self, x: ArrayView2<f64>) -> ProjectedJacobian {
        self.scalar(1.0).project(x)
    }

    /// v (M, K): the variances [J A⁻¹ Jᵀ]_kk of the linearised output
    /// pre-activations under N(θ*, A⁻¹), one α.
    pub fn output_variances(&self, proj: &ProjectedJacobian, alpha: f64) -> Array2<f64> {
        self.scalar(alpha).output_variances(proj)
    }

    /// The probit (sigmoid) / mean-field (softmax) predictive (M, K), one α.
    pub fn probit_predictive(&self, proj: &ProjectedJacobian, alpha: f64) -> Array2<f64> {
        self.scalar(alpha).probit_predictive(proj)
    }

    /// The Monte Carlo predictive of the linearised outputs (M, K), one α.
    pub fn linearised_predictive(
        &self,
        proj: &ProjectedJacobian,
        alpha: f64,
        samples: usize,
        seed: u64,
    ) -> Array2<f64> {
        self.scalar(alpha)
            .linearised_predictive(proj, samples, seed)
    }

    /// The Monte Carlo predictive of the network (M, K), one α.
    pub fn monte_carlo_predictive(
        &self,
        engine: &mut dyn Curvature,
        rows: Range<usize>,
        alpha: f64,
        samples: usize,
        seed: u64,
    ) -> Result<Array2<f64>> {
        self.scalar(alpha)
            .monte_carlo_predictive(engine, rows, samples, seed)
    }
}
