//! The Laplace approximation of a classification network (PRML §5.7.3), fitted
//! after training ("post hoc"): a Gaussian posterior N(θ*, A⁻¹) around the
//! trained θ* with precision
//!
//!   A = N·G_data + α I      (PRML 5.161 with the Gauss-Newton / outer-product H),
//!
//! where G_data = G − λ I_w is the engine's Gauss-Newton matrix of the mean
//! data term (without the model's own L2 term) and the prior is N(0, α⁻¹ I) on
//! all W parameters. "Full" keeps G's eigen-decomposition N·G_data = V diag(μ) Vᵀ;
//! "diagonal" keeps μ = N·diag(G_data) only (for W too large for a W×W matrix).
//!
//! - Log evidence (PRML 5.183 with 5.175's terms):
//!   ln p(D|α) ≈ −Σ_n E_n(θ*) − (α/2)‖θ*‖² − ½ Σ_i ln(μ_i + α) + (W/2) ln α.
//!   (θ* is kept fixed as α changes: the usual post-hoc evidence.)
//! - α by MacKay's fixed point (PRML 5.178, 3.91–3.92): α ← γ / ‖θ*‖²,
//!   γ = Σ_i μ_i / (μ_i + α); a fixed point is exactly a stationary point of
//!   the log evidence above, d/dα = ½(W/α − Σ 1/(μ_i+α) − ‖θ*‖²) = (γ − α‖θ*‖²)/(2α).
//! - Predictive (linearised outputs a(θ) ≈ a(θ*) + J (θ − θ*), J = ∂a_L/∂θ):
//!   output variance v_k = [J A⁻¹ Jᵀ]_kk; for a sigmoid output the probit
//!   approximation (PRML 4.153) p = σ(κ(v) a), κ(v) = (1 + πv/8)^(−½); for
//!   softmax the mean-field multiclass probit approximation (Lu, Ie & Sha 2020,
//!   the diagonal form): p_k ∝ exp(κ(v_k) a_k) — covariances between classes
//!   are dropped. Monte Carlo of the linearised model: a_s = a(θ*) + J δθ_s,
//!   δθ_s ~ N(0, A⁻¹), the output activation applied to each a_s and averaged.
//!   And Monte Carlo of the network itself: θ_s = θ* + A^(−½) z_s, z_s ~ N(0, I), with
//!   the network's outputs at θ_s averaged (no linearisation).

use self::rand_distr_free::standard_normal;
use super::dense;
use crate::cpu;
use crate::engine::{Curvature, DataTerm};
use crate::error::{Error, Result};
use crate::loss::{softmax, Loss};
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// The curvature of the posterior precision (without α).
#[derive(Clone, Debug)]
pub enum PosteriorCurvature {
    /// N·G_data = V diag(μ) Vᵀ: μ (W) ascending, V (W, W) eigenvectors as columns.
    Full { mu: Vec<f64>, vectors: Array2<f64> },
    /// μ = N·diag(G_data) (W).
    Diagonal { mu: Vec<f64> },
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
}

/// Eigenvalues of N·G_data below zero are rounding (G is PSD): clamp at 0.
fn clamp_psd(mu: &mut [f64]) {
    for m in mu {
        *m = m.max(0.0);
    }
}

impl LaplaceFit {
    /// Fits at θ* on `rows` of the engine's (training) data; `full` builds and
    /// eigen-decomposes the W×W G (else only its diagonal).
    pub fn fit(
        engine: &mut dyn Curvature,
        theta: &[f64],
        rows: Range<usize>,
        full: bool,
    ) -> Result<LaplaceFit> {
        let mlp = engine.mlp().clone();
        if !matches!(mlp.loss(), Loss::Ce | Loss::Bce) {
            return Err(Error::Input(format!(
                "the Laplace predictive here is for classification (loss ce or bce), the model uses {}",
                mlp.loss()
            )));
        }
        let n = rows.len();
        let nf = n as f64;
        // The likelihood's curvature: the data term alone (the prior is α's).
        let mut data = DataTerm::of(engine)?;
        let data_nll = nf * data.loss(theta, rows.clone())?;
        let curvature = if full {
            let mut g = data.ggn(theta, rows)?;
            g *= nf;
            let (mut mu, vectors) = dense::eigen(&g)?;
            clamp_psd(&mut mu);
            PosteriorCurvature::Full { mu, vectors }
        } else {
            let d = data.diag_ggn(theta, rows)?;
            let mut mu: Vec<f64> = d.iter().map(|g| nf * g).collect();
            clamp_psd(&mut mu);
            PosteriorCurvature::Diagonal { mu }
        };
        Ok(LaplaceFit {
            mlp,
            theta: theta.to_vec(),
            n,
            data_nll,
            curvature,
        })
    }

    fn mu(&self) -> &[f64] {
        match &self.curvature {
            PosteriorCurvature::Full { mu, .. } | PosteriorCurvature::Diagonal { mu } => mu,
        }
    }

    fn theta_sq(&self) -> f64 {
        self.theta.iter().map(|t| t * t).sum()
    }

    /// The α the trained model's L2 term implies: λ·N (on weights; the
    /// Laplace prior here covers biases too).
    pub fn training_alpha(&self) -> f64 {
        self.mlp.l2() * self.n as f64
    }

    /// ln p(D|α) (see the module header).
    pub fn log_evidence(&self, alpha: f64) -> f64 {
        let w = self.theta.len() as f64;
        let log_det: f64 = self.mu().iter().map(|m| (m + alpha).ln()).sum();
        -self.data_nll - 0.5 * alpha * self.theta_sq() - 0.5 * log_det + 0.5 * w * alpha.ln()
    }

    /// d ln p(D|α) / dα.
    pub fn d_log_evidence(&self, alpha: f64) -> f64 {
        let w = self.theta.len() as f64;
        let s: f64 = self.mu().iter().map(|m| 1.0 / (m + alpha)).sum();
        0.5 * (w / alpha - s - self.theta_sq())
    }

    /// γ = Σ μ_i / (μ_i + α), the effective number of parameters (PRML 3.91).
    pub fn effective_parameters(&self, alpha: f64) -> f64 {
        self.mu().iter().map(|m| m / (m + alpha)).sum()
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

    /// θ* + A^(−½) z for z (W) standard normal: a draw from N(θ*, A⁻¹).
    pub fn sample(&self, alpha: f64, z: &[f64]) -> Vec<f64> {
        match &self.curvature {
            PosteriorCurvature::Full { mu, vectors } => {
                let scaled = ndarray::Array1::from_iter(
                    z.iter().zip(mu).map(|(zi, m)| zi / (m + alpha).sqrt()),
                );
                let d = vectors.dot(&scaled);
                self.theta
                    .iter()
                    .zip(d.iter())
                    .map(|(t, d)| t + d)
                    .collect()
            }
            PosteriorCurvature::Diagonal { mu } => self
                .theta
                .iter()
                .zip(z)
                .zip(mu)
                .map(|((t, zi), m)| t + zi / (m + alpha).sqrt())
                .collect(),
        }
    }

    /// The Jacobians of the inputs x (M, D), projected once so that the
    /// output variances for any α cost O(M·K·W).
    pub fn project(&self, x: ArrayView2<f64>) -> ProjectedJacobian {
        let j = output_jacobians(&self.mlp, &self.theta, x); // (M·K, W)
        let p = match &self.curvature {
            PosteriorCurvature::Full { vectors, .. } => j.dot(vectors), // J V
            PosteriorCurvature::Diagonal { .. } => j,
        };
        let fw = cpu::forward(&self.mlp, &self.theta, x);
        let a = fw.a.last().cloned().unwrap_or_default();
        ProjectedJacobian { p, a }
    }

    /// v (M, K): the variances [J A⁻¹ Jᵀ]_kk of the linearised output
    /// pre-activations under N(θ*, A⁻¹).
    pub fn output_variances(&self, proj: &ProjectedJacobian, alpha: f64) -> Array2<f64> {
        let (m, k) = proj.a.dim();
        let inv: Vec<f64> = self.mu().iter().map(|mu| 1.0 / (mu + alpha)).collect();
        Array2::from_shape_fn((m, k), |(n, c)| {
            proj.p
                .row(n * k + c)
                .iter()
                .zip(&inv)
                .map(|(p, i)| p * p * i)
                .sum()
        })
    }

    /// The probit (sigmoid) / mean-field (softmax) predictive (M, K).
    pub fn probit_predictive(&self, proj: &ProjectedJacobian, alpha: f64) -> Array2<f64> {
        let v = self.output_variances(proj, alpha);
        let kappa = |v: f64| 1.0 / (1.0 + std::f64::consts::PI * v / 8.0).sqrt();
        let (m, k) = proj.a.dim();
        let mut p = Array2::zeros((m, k));
        for n in 0..m {
            let scaled: Vec<f64> = (0..k).map(|c| kappa(v[[n, c]]) * proj.a[[n, c]]).collect();
            if self.mlp.loss() == Loss::Ce {
                let mut out = vec![0.0; k];
                softmax(&scaled, &mut out);
                for c in 0..k {
                    p[[n, c]] = out[c];
                }
            } else {
                for c in 0..k {
                    p[[n, c]] = 1.0 / (1.0 + (-scaled[c]).exp());
                }
            }
        }
        p
    }

    /// The Monte Carlo predictive of the linearised outputs (M, K):
    /// a_s = a(θ*) + J A^(−½) z_s, z_s ~ N(0, I) (seeded), through the output
    /// activation, averaged over `samples` draws.
    pub fn linearised_predictive(
        &self,
        proj: &ProjectedJacobian,
        alpha: f64,
        samples: usize,
        seed: u64,
    ) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (m, k) = proj.a.dim();
        let scale: Vec<f64> = self
            .mu()
            .iter()
            .map(|mu| 1.0 / (mu + alpha).sqrt())
            .collect();
        let samples = samples.max(1);
        let mut mean = Array2::zeros((m, k));
        let mut out = vec![0.0; k];
        for _ in 0..samples {
            // P (M·K, W) holds J V (full) or J (diagonal): J A^(−½) z = P (z ⊙ scale).
            let z = ndarray::Array1::from_iter(scale.iter().map(|s| s * standard_normal(&mut rng)));
            let da = proj.p.dot(&z); // (M·K)
            for n in 0..m {
                let a: Vec<f64> = (0..k).map(|c| proj.a[[n, c]] + da[n * k + c]).collect();
                if self.mlp.loss() == Loss::Ce {
                    softmax(&a, &mut out);
                } else {
                    for c in 0..k {
                        out[c] = 1.0 / (1.0 + (-a[c]).exp());
                    }
                }
                for c in 0..k {
                    mean[[n, c]] += out[c] / samples as f64;
                }
            }
        }
        mean
    }

    /// The Monte Carlo predictive (M, K): the mean of the network's outputs
    /// on `rows` of `engine` (bound to the inputs to predict) over `samples`
    /// draws θ_s ~ N(θ*, A⁻¹) (seeded).
    pub fn monte_carlo_predictive(
        &self,
        engine: &mut dyn Curvature,
        rows: Range<usize>,
        alpha: f64,
        samples: usize,
        seed: u64,
    ) -> Result<Array2<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = self.theta.len();
        let mut mean = Array2::zeros((rows.len(), self.mlp.num_outputs()));
        let samples = samples.max(1);
        for _ in 0..samples {
            let z: Vec<f64> = (0..w).map(|_| standard_normal(&mut rng)).collect();
            let theta_s = self.sample(alpha, &z);
            mean += &engine.outputs(&theta_s, rows.clone())?;
        }
        mean /= samples as f64;
        Ok(mean)
    }
}

/// J projected: P (M·K, W) = J V (full) or J (diagonal), and the output
/// pre-activations a (M, K) at θ*.
pub struct ProjectedJacobian {
    pub p: Array2<f64>,
    pub a: Array2<f64>,
}

/// J (M·K, W): row m·K + k = ∂a_{L,k}(x_m)/∂θ, by one linear backward pass per
/// sample of the identity at the output: δ[L−1] = I_K, δ[l−1] = (δ\[l\] W_l) ⊙
/// h′(a[l−1]); on W_l\[j\]\[i\] the entry is δ\[l\]_j z\[l\]_i, on b_l\[j\] it is δ\[l\]_j.
pub fn output_jacobians(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>) -> Array2<f64> {
    let layers = mlp.layout();
    let last = layers.len() - 1;
    let (m, k) = (x.nrows(), mlp.num_outputs());
    let fw = cpu::forward(mlp, theta, x);
    let mut j = Array2::zeros((m * k, theta.len()));
    for sample in 0..m {
        let mut delta = Array2::<f64>::eye(k); // (K, out_l)
        let mut rows = j.slice_mut(s![sample * k..(sample + 1) * k, ..]); // (K, W)
        for l in (0..=last).rev() {
            let layer = &layers[l];
            let z = fw.z[l].row(sample); // (in_l)
            for r in 0..k {
                for jj in 0..layer.fan_out {
                    let d = delta[[r, jj]];
                    for i in 0..layer.fan_in {
                        rows[[r, layer.weights.start + jj * layer.fan_in + i]] = d * z[i];
                    }
                    rows[[r, layer.bias.start + jj]] = d;
                }
            }
            if l > 0 {
                let act = mlp.activations()[l - 1];
                let dh = fw.a[l - 1].row(sample).mapv(|a| act.dh(a)); // (in_l)
                delta = delta.dot(&cpu::weights(layer, theta)) * &dh; // (K, in_l)
            }
        }
    }
    j
}

/// A standard normal draw by Box-Muller from the seeded stream (no extra crate).
mod rand_distr_free {
    use rand::Rng;
    pub fn standard_normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
