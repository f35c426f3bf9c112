//! K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015,
//! "Optimizing neural networks with Kronecker-factored approximate curvature",
//! ICML, arXiv:1503.05671), on mini-batches, through the [`Curvature`] face only
//! (factors, G·v products, E and ∇E), so it runs on every engine.
//!
//! ## One update k = 1, 2, … on the batch `rows`
//! ```text
//!   g = ∇E(θ)                                   E = batch mean + (η/2)‖W‖², η the L2 λ
//!   A_l, B_l = kfac_factors(flavour, θ, rows)   A_l = (1/N) Σ z̃z̃ᵀ (bias's 1 last), B_l
//!                                               (`exact`, `mc` with S samples seeded by
//!                                               (seed, k), or `empirical`)        (§5)
//!   Ā ← ε Ā + (1 − ε) A,  B̄ likewise,  ε = min(1 − 1/k, decay)       (§5; ε₁ = 0)
//!   every T₃ updates (k = 1, T₃+1, …): Ā_l = Q_A Λ_A Q_Aᵀ, B̄_l = Q_B Λ_B Q_Bᵀ,
//!       π_l = √((tr Ā_l/(in_l+1)) / (tr B̄_l/out_l))                           (§6.3)
//!   γ = √(λ + η)                                 λ the LM damping, adapted below
//!   Δ_l = −Q_B [ (Q_Bᵀ G_l Q_A) ⊘ ((Λ_B + γ/π_l)(Λ_A + π_l γ)ᵀ) ] Q_Aᵀ
//!       the factored Tikhonov damping (Ā + π γ I) ⊗ (B̄ + (γ/π) I) of §6.3, G_l = [∇W_l | ∇b_l];
//!       `tikhonov=plain`: ⊘ (Λ_B Λ_Aᵀ + γ²), the exact (Ā ⊗ B̄ + γ² I)⁻¹
//!   [CΔ; Cδ₀] = gvp_block(θ, rows, [Δ; δ₀])     C = G + η I_w, one block product (§7)
//!   M = [[ΔᵀCΔ, ΔᵀCδ₀], [δ₀ᵀCΔ, δ₀ᵀCδ₀]],  D = [[ΔᵀΔ, Δᵀδ₀], [δ₀ᵀΔ, δ₀ᵀδ₀]],  b = [gᵀΔ, gᵀδ₀]
//!   [α, μ] = −(M + λD)⁻¹ b                       the exact 2-D quadratic model of §7
//!       (1-D, μ = 0, α = −gᵀΔ/(ΔᵀCΔ + λ‖Δ‖²), at the first update, with `momentum=false`,
//!       after a recovery, or when δ₀ is (numerically) parallel to Δ)
//!   δ = αΔ + μδ₀;  q = ½ [α μ] M [α μ]ᵀ + [α μ] b   (the model's change without λ, < 0)
//!   ρ = (E(θ + δ) − E(θ)) / q
//! ```
//! The step is taken when E(θ + δ) is finite and ≤ E(θ) (ρ ≥ 0): θ ← θ + δ, δ₀ ← δ.
//! Every T₁ updates an accepted step adapts λ by the LM rule of §6.5: ρ > ¾ ⇒ λ ← ωλ,
//! ρ < ¼ ⇒ λ ← λ/ω, ω = (19/20)^T₁ (a NaN ρ counts as < ¼; a predicted change at
//! rounding level adapts nothing).
//!
//! ## Guard conventions (as `newton.rs`, `levenberg_marquardt.rs`)
//! The paper takes every step; here a step that increases E on its batch (ρ < 0) or
//! whose E is NaN/∞ is REJECTED: θ and δ₀ stay and λ grows ×4 at once
//! ([`Damping::rejected`], the newton/lm rejection factor), so the retry on the same
//! rows differs; no accepted step increases E, and `loss_after` is E at the new θ
//! (one forward pass per update). The running factors and the update count move on
//! with every update, accepted or not (they are statistics of the batches seen). A
//! NaN or ∞ in E, ∇E, a factor or a G·v product returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite) with θ and every piece of
//! state unchanged; [`Optimizer::recover`] raises λ ×4 and drops δ₀.
//!
//! ## Defaults and their source
//! | key | default | source |
//! |---|---|---|
//! | `damping` (λ₀) | 1 | measured here (see the report in `examples/optimizer_table.rs`; the paper's 150 is for its sum-of-outputs autoencoder losses) |
//! | `fisher` | mc | §5: one sampled target per case (`samples` 1) |
//! | `samples` | 1 | §5 |
//! | `seed` | 0 | the mc stream of update k is ChaCha8 seeded with splitmix64(seed + k·φ) |
//! | `decay` | 0.95 | §5: ε = min(1 − 1/k, 0.95) |
//! | `inverse-every` (T₃) | 20 | §8 |
//! | `damping-every` (T₁) | 5 | §6.5 / §8 |
//! | `momentum` | true | §7 (false: α only) |
//! | `tikhonov` | factored | §6.3 (plain: the exact damped Kronecker inverse) |
//!
//! Not implemented from the paper: the separate adaptation of γ every T₂ updates
//! (§6.6; here γ = √(λ + η) as the brief asks), the block-tridiagonal inverse (§4.3),
//! the growing mini-batch schedule and the curvature sub-batches τ (§8).
//!
//! ## State (checkpointed; `kfac_state.rs`)
//! λ, the update count k, δ₀, the running factors Ā_l, B̄_l and the eigendecompositions
//! with π_l in use (stored as they are, not recomputed, so a resumed run is
//! bit-identical on the CPU).

use super::damping::Damping;
use super::finite::{check_matrix, check_slice, start_loss_grad, NonFinite, Point, Quantity};
use super::vector::{added, axpy, dot, norm};
use super::{OptimError, Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::cpu::kfac::{gather, scatter, LayerEigen};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::cpu_fast::gemm::{gemm, mat};
use crate::engine::Curvature;
use crate::model::LayerLayout;
use ndarray::Array2;
use std::ops::Range;

/// λ₀ (`damping`).
pub const DEFAULT_DAMPING: f64 = 1.0;
/// The ceiling of ε (`decay`), §5.
pub const DEFAULT_DECAY: f64 = 0.95;
/// T₃ (`inverse-every`), §8.
pub const DEFAULT_INVERSE_EVERY: usize = 20;
/// T₁ (`damping-every`), §8.
pub const DEFAULT_DAMPING_EVERY: usize = 5;
/// ω = OMEGA_BASE^T₁ (§6.5).
const OMEGA_BASE: f64 = 19.0 / 20.0;
/// λ after a rejected step or a recovery: ×4, the newton/lm rejection factor.
const REJECT_FACTOR: f64 = 4.0;
/// λ stays within these bounds: a floor so that γ > 0 (Ā and B̄ may be singular), a
/// ceiling beyond which the step is numerically zero.
const DAMPING_BOUNDS: (f64, f64) = (1e-8, 1e10);
/// δ₀ counts as parallel to Δ when det(M + λD) ≤ this × its diagonal's product
/// (sin² of the angle between them in the damped metric).
const PARALLEL: f64 = 1e-10;

/// Which B factor (the flavour of [`Fisher`] without its per-update seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KfacFisher {
    /// The square-root columns of the Gauss-Newton output Hessian (K per sample).
    Exact,
    /// `samples` targets drawn from the model per row (the paper's).
    Mc,
    /// The observed gradient.
    Empirical,
}

impl KfacFisher {
    pub fn name(self) -> &'static str {
        match self {
            KfacFisher::Exact => "exact",
            KfacFisher::Mc => "mc",
            KfacFisher::Empirical => "empirical",
        }
    }

    /// The flavour named `text` (exact, mc, empirical).
    pub fn parse(text: &str) -> Option<KfacFisher> {
        match text.trim() {
            "exact" => Some(KfacFisher::Exact),
            "mc" => Some(KfacFisher::Mc),
            "empirical" => Some(KfacFisher::Empirical),
            _ => None,
        }
    }
}

/// How the damping γ enters the inverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tikhonov {
    /// (Ā + πγI) ⊗ (B̄ + (γ/π)I), §6.3.
    Factored,
    /// Ā ⊗ B̄ + γ²I, exactly (by the eigendecompositions).
    Plain,
}

impl Tikhonov {
    pub fn name(self) -> &'static str {
        match self {
            Tikhonov::Factored => "factored",
            Tikhonov::Plain => "plain",
        }
    }

    pub fn parse(text: &str) -> Option<Tikhonov> {
        match text.trim() {
            "factored" => Some(Tikhonov::Factored),
            "plain" => Some(Tikhonov::Plain),
            _ => None,
        }
    }
}

/// Parameters of [`Kfac`] (module header: keys and defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct KfacConfig {
    /// λ₀, the initial LM damping.
    pub initial_damping: f64,
    pub fisher: KfacFisher,
    /// Sampled targets per row for `mc`.
    pub samples: usize,
    /// The run seed of the mc streams.
    pub seed: u64,
    /// The ceiling of the running averages' ε, in [0, 1).
    pub decay: f64,
    /// T₃: the eigendecompositions are refreshed at updates 1, T₃ + 1, 2T₃ + 1, …
    pub inverse_every: usize,
    /// T₁: λ is adapted after updates T₁, 2T₁, …
    pub damping_every: usize,
    /// Whether the previous step enters the quadratic model (μ).
    pub momentum: bool,
    pub tikhonov: Tikhonov,
}

impl Default for KfacConfig {
    fn default() -> KfacConfig {
        KfacConfig {
            initial_damping: DEFAULT_DAMPING,
            fisher: KfacFisher::Mc,
            samples: 1,
            seed: 0,
            decay: DEFAULT_DECAY,
            inverse_every: DEFAULT_INVERSE_EVERY,
            damping_every: DEFAULT_DAMPING_EVERY,
            momentum: true,
            tikhonov: Tikhonov::Factored,
        }
    }
}

impl KfacConfig {
    /// The flavour of update k: for mc, its own stream seeded from (seed, k).
    pub fn fisher_of(&self, k: usize) -> Fisher {
        match self.fisher {
            KfacFisher::Exact => Fisher::Exact,
            KfacFisher::Empirical => Fisher::Empirical,
            KfacFisher::Mc => Fisher::Mc {
                samples: self.samples,
                seed: update_seed(self.seed, k),
            },
        }
    }

    /// λ's rule: ×ω on ρ > ¾, ×1/ω on ρ < ¼ (ω = (19/20)^T₁), ×4 on a rejection.
    fn damping_rule(&self) -> Damping {
        let omega = OMEGA_BASE.powi(self.damping_every.min(i32::MAX as usize) as i32);
        Damping {
            value: self
                .initial_damping
                .clamp(DAMPING_BOUNDS.0, DAMPING_BOUNDS.1),
            decrease_factor: omega,
            increase_factor: 1.0 / omega,
            reject_factor: REJECT_FACTOR,
            min: DAMPING_BOUNDS.0,
            max: DAMPING_BOUNDS.1,
        }
    }
}

/// The seed of update k's mc stream: splitmix64 of seed + k·φ (distinct, well-mixed
/// seeds for consecutive updates; a function of (seed, k) alone, so resuming at k
/// draws the same targets).
pub fn update_seed(seed: u64, k: usize) -> u64 {
    let mut z = seed.wrapping_add((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The eigendecompositions in use and each layer's π.
#[derive(Clone, Debug)]
pub(super) struct Inverse {
    pub(super) eigen: Vec<LayerEigen>,
    pub(super) pi: Vec<f64>,
}

impl Inverse {
    fn of(factors: &KroneckerFactors) -> Result<Inverse> {
        Ok(Inverse {
            eigen: factors.eigen()?,
            pi: (0..factors.a.len()).map(|l| factors.pi(l)).collect(),
        })
    }
}

/// K-FAC; its state is λ, k, δ₀, the running factors and the inverse in use.
pub struct Kfac {
    pub(super) config: KfacConfig,
    pub(super) damping: Damping,
    /// k, the updates made so far (accepted or rejected).
    pub(super) updates: usize,
    /// Ā_l, B̄_l (None before the first update).
    pub(super) running: Option<KroneckerFactors>,
    pub(super) inverse: Option<Inverse>,
    /// δ₀, the last step taken (empty before it and after a recovery).
    pub(super) previous: Vec<f64>,
}

/// The 2-D (or 1-D) quadratic model's solution.
struct ModelStep {
    alpha: f64,
    mu: f64,
    /// q = M(δ) − M(0) without λ (negative for a descent step).
    change: f64,
}

impl Kfac {
    pub fn new(config: KfacConfig) -> Kfac {
        Kfac {
            damping: config.damping_rule(),
            config,
            updates: 0,
            running: None,
            inverse: None,
            previous: Vec::new(),
        }
    }

    /// λ now in force.
    pub fn damping(&self) -> f64 {
        self.damping.value
    }

    /// Ā ← εĀ + (1 − ε)A, B̄ likewise, ε = min(1 − 1/k, decay) (the batch's at k = 1).
    fn averaged(&self, batch: KroneckerFactors, k: usize) -> KroneckerFactors {
        let eps = (1.0 - 1.0 / k as f64).min(self.config.decay);
        let Some(old) = self.running.as_ref().filter(|_| eps > 0.0) else {
            return batch;
        };
        let mix = |old: &[Array2<f64>], new: &[Array2<f64>]| -> Vec<Array2<f64>> {
            old.iter()
                .zip(new)
                .map(|(o, n)| o * eps + n * (1.0 - eps))
                .collect()
        };
        KroneckerFactors {
            a: mix(&old.a, &batch.a),
            b: mix(&old.b, &batch.b),
            ..batch
        }
    }

    /// Δ = −(damped K-FAC)⁻¹ g (W) with γ² = `gamma_sq` (module header): per layer four
    /// products through faer's GEMM (the fast CPU engine's, threaded when large), the
    /// eigenbasis matrices read in place (row-major).
    fn direction(
        &self,
        inverse: &Inverse,
        layers: &[LayerLayout],
        grad: &[f64],
        gamma_sq: f64,
    ) -> Result<Vec<f64>> {
        let gamma = gamma_sq.sqrt();
        let mut out = vec![0.0; grad.len()];
        for ((layer, e), &pi) in layers.iter().zip(&inverse.eigen).zip(&inverse.pi) {
            let (m, n) = (layer.fan_out, layer.fan_in + 1);
            let g = gather(layer, grad); // G_l (out_l, in_l+1)
            let (g, qa, qb) = (
                row_major(&g)?,
                row_major(&e.a_vectors)?,
                row_major(&e.b_vectors)?,
            );
            let mut t = vec![0.0; m * n];
            gemm(&mut t, mat(g, m, n), mat(qa, n, n), 1.0, false); // G Q_A
            let mut r = vec![0.0; m * n];
            gemm(&mut r, mat(qb, m, m).t(), mat(&t, m, n), 1.0, false); // Q_Bᵀ G Q_A
            for i in 0..m {
                // Rounding can leave a PSD factor's eigenvalue slightly below 0.
                let lb = e.b_values[i].max(0.0);
                for a in 0..n {
                    let la = e.a_values[a].max(0.0);
                    let denominator = match self.config.tikhonov {
                        Tikhonov::Factored => (lb + gamma / pi) * (la + pi * gamma),
                        Tikhonov::Plain => lb * la + gamma_sq,
                    };
                    r[i * n + a] /= -denominator;
                }
            }
            gemm(&mut t, mat(&r, m, n), mat(qa, n, n).t(), 1.0, false); // · Q_Aᵀ
            let mut x = vec![0.0; m * n];
            gemm(&mut x, mat(qb, m, m), mat(&t, m, n), 1.0, false); // Q_B ·
            let x = Array2::from_shape_vec((m, n), x)
                .map_err(|e| OptimError::Training(format!("kfac: a layer's direction: {e}")))?;
            scatter(layer, &x, &mut out);
        }
        Ok(out)
    }

    /// [α, μ] from the exact quadratic model along Δ and δ₀ (module header); `cv`
    /// holds CΔ and, with `previous`, Cδ₀.
    fn solve_model(
        &self,
        grad: &[f64],
        delta: &[f64],
        previous: Option<&[f64]>,
        cv: &Array2<f64>,
    ) -> Result<ModelStep> {
        let lambda = self.damping.value;
        let c_delta = cv.row(0);
        let c_delta = c_delta.as_slice().ok_or_else(not_contiguous)?;
        let (a11, b1) = (dot(delta, c_delta), dot(grad, delta));
        let m11 = a11 + lambda * dot(delta, delta);
        if !(m11.is_finite() && m11 > 0.0) {
            return Err(OptimError::Numerical {
                method: "kfac",
                detail: format!(
                    "the damped curvature along the K-FAC direction, ΔᵀCΔ + λ‖Δ‖² = {m11:e}, is not positive: \
                     scale the inputs or raise the damping (--set damping=...)"
                ),
            });
        }
        let one_d = ModelStep {
            alpha: -b1 / m11,
            mu: 0.0,
            change: 0.5 * (b1 / m11) * (b1 / m11) * a11 - b1 * b1 / m11,
        };
        let Some(prev) = previous else {
            return Ok(one_d);
        };
        let c_prev = cv.row(1);
        let c_prev = c_prev.as_slice().ok_or_else(not_contiguous)?;
        let a12 = 0.5 * (dot(delta, c_prev) + dot(prev, c_delta));
        let a22 = dot(prev, c_prev);
        let b2 = dot(grad, prev);
        let m12 = a12 + lambda * dot(delta, prev);
        let m22 = a22 + lambda * dot(prev, prev);
        let det = m11 * m22 - m12 * m12;
        if !(det.is_finite() && m22 > 0.0 && det > PARALLEL * m11 * m22) {
            return Ok(one_d);
        }
        let alpha = -(m22 * b1 - m12 * b2) / det;
        let mu = -(m11 * b2 - m12 * b1) / det;
        let change = 0.5 * (alpha * alpha * a11 + 2.0 * alpha * mu * a12 + mu * mu * a22)
            + alpha * b1
            + mu * b2;
        Ok(ModelStep { alpha, mu, change })
    }

    /// The running factors' layers must be the network's (a state imported for another).
    fn check_fits(&self, layers: &[LayerLayout]) -> Result<()> {
        match &self.running {
            Some(r) if r.layers != layers => Err(OptimError::Training(format!(
                "kfac: the optimizer's running factors are of layers {:?}, the network's are {:?}",
                shapes(&r.layers),
                shapes(layers)
            ))),
            _ => Ok(()),
        }
    }
}

/// (in_l, out_l) of every layer, for messages.
fn shapes(layers: &[LayerLayout]) -> Vec<(usize, usize)> {
    layers.iter().map(|l| (l.fan_in, l.fan_out)).collect()
}

/// The entries of a matrix in its row-major (standard) layout.
fn row_major(m: &Array2<f64>) -> Result<&[f64]> {
    m.as_slice().ok_or_else(not_contiguous)
}

fn not_contiguous() -> OptimError {
    OptimError::Training("kfac: a matrix is not in row-major layout".into())
}

impl Optimizer for Kfac {
    fn name(&self) -> &str {
        "kfac"
    }

    /// λ ×4 (the rejection factor) and no previous step (it may hold the overflow).
    fn recover(&mut self, _what: &NonFinite) {
        self.damping.rejected();
        self.previous.clear();
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let layers = engine.mlp().layout();
        let eta = engine.mlp().l2();
        self.check_fits(&layers)?;
        let (loss, grad) = start_loss_grad(engine, theta, rows.clone())?;
        let grad_norm = norm(&grad);
        if grad_norm == 0.0 {
            return Ok(StepReport::stationary(loss, Some(self.damping.value)));
        }
        let k = self.updates + 1;
        let batch = engine.kfac_factors(self.config.fisher_of(k), theta, rows.clone())?;
        for m in batch.a.iter().chain(&batch.b) {
            check_matrix(Quantity::GaussNewton, Point::Current, m)?;
        }
        let running = self.averaged(batch, k);
        let refresh =
            self.inverse.is_none() || (k - 1).is_multiple_of(self.config.inverse_every.max(1));
        let fresh = if refresh {
            Some(Inverse::of(&running)?)
        } else {
            None
        };
        let inverse = fresh
            .as_ref()
            .or(self.inverse.as_ref())
            .ok_or_else(|| OptimError::Training("kfac: no inverse to apply".into()))?;
        let delta = self.direction(inverse, &layers, &grad, self.damping.value + eta)?;
        check_slice(Quantity::Step, Point::Trial, &delta)?;
        let previous = (self.config.momentum && self.previous.len() == theta.len())
            .then_some(self.previous.as_slice());
        let vectors = 1 + usize::from(previous.is_some());
        let mut v = Array2::zeros((vectors, theta.len())); // [Δ; δ₀] (1 or 2, W)
        v.row_mut(0).assign(&ndarray::ArrayView1::from(&delta[..]));
        if let Some(p) = previous {
            v.row_mut(1).assign(&ndarray::ArrayView1::from(p));
        }
        let cv = engine.gvp_block(theta, rows.clone(), v.view())?;
        check_matrix(Quantity::GaussNewtonProduct, Point::Current, &cv)?;
        let model = self.solve_model(&grad, &delta, previous, &cv)?;
        let mut step: Vec<f64> = delta.iter().map(|d| model.alpha * d).collect();
        if let Some(p) = previous {
            axpy(model.mu, p, &mut step);
        }
        check_slice(Quantity::Step, Point::Trial, &step)?;
        let trial = added(theta, 1.0, &step);
        let trial_loss = engine.loss(&trial, rows)?;
        // Every engine call has succeeded: the statistics of this batch are kept.
        self.updates = k;
        self.running = Some(running);
        if let Some(fresh) = fresh {
            self.inverse = Some(fresh);
        }
        let inner = usize::from(refresh); // eigendecompositions made in this update
        if !(trial_loss.is_finite() && trial_loss <= loss) {
            self.damping.rejected();
            return Ok(StepReport::rejected(
                loss,
                grad_norm,
                Some(self.damping.value),
                inner,
            ));
        }
        let predicted = -model.change;
        if k.is_multiple_of(self.config.damping_every.max(1))
            && predicted > f64::EPSILON * loss.abs().max(1.0)
        {
            self.damping.accepted((loss - trial_loss) / predicted);
        }
        theta.copy_from_slice(&trial);
        let step_norm = norm(&step);
        self.previous = step;
        Ok(StepReport {
            loss_before: loss,
            loss_after: Some(trial_loss),
            grad_norm,
            step_norm,
            damping: Some(self.damping.value),
            inner_iterations: inner,
            accepted: true,
        })
    }

    fn reset(&mut self) {
        *self = Kfac::new(self.config.clone());
    }

    fn export_state(&self) -> OptimizerState {
        super::kfac_state::export(self)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        super::kfac_state::import(self, state, num_params)
    }
}
