//! How far is each curvature approximation from the exact curvature of THIS network?
//! The comparison only a library that forms the exact G and H can make: every peer
//! (BackPACK, curvlinops, KFAC-JAX, laplace-torch) offers the approximations, none the
//! distance to the matrix they approximate.
//!
//! Every matrix is of E(θ) = (1/N) Σ_n E_n(θ) + (λ/2) Σ_l ‖W_l‖², as the face
//! ([`Curvature`]) defines it: the data term of each approximation plus the model's
//! λ·I_w (λ on weight entries, zero on biases), so that the exact ones are the face's
//! `ggn` and `hessian`:
//!
//! | row | C |
//! |---|---|
//! | `ggn` | G, the exact Gauss-Newton matrix (the reference: zero error, cosine 1) |
//! | `hessian` | H, the exact Hessian |
//! | `diag-ggn` | diag(G) (the engine's exact diagonal) |
//! | `block-ggn` | G's blocks of each layer (W_l and b_l), zero between layers |
//! | `kfac-exact`, `kfac-mc`, `kfac-empirical` | per layer A_l ⊗ B_l of the flavour (`cpu/kfac.rs`) + λI_w |
//! | `ekfac-exact` | per layer Q diag(s_l) Qᵀ in the exact K-FAC eigenbasis + λI_w |
//! | `empirical-fisher` | (1/N) Σ_n g_n g_nᵀ + λI_w |
//! | `mc-fisher` | (1/(N·S)) Σ_n Σ_s g_{n,s} g_{n,s}ᵀ + λI_w, S sampled labels per row |
//!
//! For each C, against the exact T = G and T = H:
//! ```text
//!   error     ‖C − T‖_F / ‖T‖_F
//!   cosine    cos∠( −(C + γI)⁻¹ g, −(T + γI)⁻¹ g ),  g = ∇E(θ),
//!             γ = f · ḡ on a log grid of f (default 10⁻⁴ … 10¹, half decades),
//!             ḡ = tr(G)/W the mean diagonal of G
//!   top       the largest eigenvalues of C
//! ```
//! The damped steps are solved in each C's eigenbasis (C = Σ_b V_b diag(μ_b) V_bᵀ per
//! block b, one block for a dense C, W for a diagonal one): (C + γI)⁻¹g =
//! Σ_b V_b ((V_bᵀ g_b) ⊘ (μ_b + γ)). H may be indefinite, so H + γI may be too for small
//! γ; its step is still defined wherever μ + γ ≠ 0 (a Cholesky solve would refuse it),
//! and a cosine below zero says the two steps point apart.
//! λI_w (zero on biases) is not diagonal in a Kronecker eigenbasis, so K-FAC's and
//! EKFAC's layer blocks are decomposed densely like the others (≤ W per block).

use super::dense;
use crate::cpu::Fisher;
use crate::engine::Curvature;
use crate::error::{Error, Result};
use ndarray::{s, Array2};
use serde_json::{json, Value};
use std::ops::Range;
use std::time::Instant;

/// The γ grid's factors of ḡ: 10⁻⁴ … 10¹ in half decades (11 values).
pub fn default_gamma_factors() -> Vec<f64> {
    (0..=10)
        .map(|i| 10f64.powf(-4.0 + 0.5 * i as f64))
        .collect()
}

/// One matrix compared with the exact curvature (module header).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Approximation {
    /// G itself.
    Ggn,
    /// H itself.
    Hessian,
    /// diag(G).
    DiagonalGgn,
    /// G's layer blocks.
    BlockDiagonalGgn,
    /// K-FAC of the flavour.
    Kfac(Fisher),
    /// EKFAC of the flavour.
    Ekfac(Fisher),
    /// The full Fisher of the flavour (empirical or mc).
    Fisher(Fisher),
}

impl Approximation {
    /// Every row of the comparison, in order; `mc` is the flavour of the mc rows.
    pub fn all(mc: Fisher) -> Vec<Approximation> {
        vec![
            Approximation::Ggn,
            Approximation::Hessian,
            Approximation::DiagonalGgn,
            Approximation::BlockDiagonalGgn,
            Approximation::Kfac(Fisher::Exact),
            Approximation::Kfac(mc),
            Approximation::Kfac(Fisher::Empirical),
            Approximation::Ekfac(Fisher::Exact),
            Approximation::Fisher(Fisher::Empirical),
            Approximation::Fisher(mc),
        ]
    }

    /// The row's key in the JSON (`kfac-mc`, `empirical-fisher`, …).
    pub fn key(self) -> String {
        match self {
            Approximation::Ggn => "ggn".into(),
            Approximation::Hessian => "hessian".into(),
            Approximation::DiagonalGgn => "diag-ggn".into(),
            Approximation::BlockDiagonalGgn => "block-ggn".into(),
            Approximation::Kfac(f) => format!("kfac-{}", f.name()),
            Approximation::Ekfac(f) => format!("ekfac-{}", f.name()),
            Approximation::Fisher(f) => format!("{}-fisher", f.name()),
        }
    }

    /// The row's name in the table and the picture.
    pub fn label(self) -> String {
        let flavour = |f: Fisher| match f {
            Fisher::Mc { samples, .. } => format!("mc, S={samples}"),
            other => other.name().to_string(),
        };
        match self {
            Approximation::Ggn => "G (exact)".into(),
            Approximation::Hessian => "H (exact)".into(),
            Approximation::DiagonalGgn => "diag(G)".into(),
            Approximation::BlockDiagonalGgn => "block-diag G".into(),
            Approximation::Kfac(f) => format!("K-FAC {}", flavour(f)),
            Approximation::Ekfac(f) => format!("EKFAC {}", flavour(f)),
            Approximation::Fisher(Fisher::Empirical) => "empirical Fisher".into(),
            Approximation::Fisher(f) => format!("Fisher {}", flavour(f)),
        }
    }
}

/// A matrix (W, W) in the structure it has.
#[derive(Clone, Debug)]
pub enum Structured {
    /// A dense (W, W).
    Dense(Array2<f64>),
    /// Blocks on the diagonal over consecutive ranges of θ covering 0..W; zero elsewhere.
    Blocks(Vec<(Range<usize>, Array2<f64>)>),
    /// A diagonal (W).
    Diagonal(Vec<f64>),
}

impl Structured {
    /// W.
    pub fn dim(&self) -> usize {
        match self {
            Structured::Dense(m) => m.nrows(),
            Structured::Blocks(b) => b.last().map_or(0, |(r, _)| r.end),
            Structured::Diagonal(d) => d.len(),
        }
    }

    /// The blocks (range, matrix) of a dense or block matrix; None for a diagonal.
    fn blocks(&self) -> Option<Vec<(Range<usize>, &Array2<f64>)>> {
        match self {
            Structured::Dense(m) => Some(vec![(0..m.nrows(), m)]),
            Structured::Blocks(b) => Some(b.iter().map(|(r, m)| (r.clone(), m)).collect()),
            Structured::Diagonal(_) => None,
        }
    }

    /// ‖C − T‖_F for a dense T (W, W), without forming C densely.
    pub fn frobenius_distance(&self, t: &Array2<f64>) -> f64 {
        let total: f64 = t.iter().map(|v| v * v).sum();
        let sq = match self {
            Structured::Diagonal(d) => d
                .iter()
                .enumerate()
                .map(|(i, di)| (di - t[[i, i]]).powi(2) - t[[i, i]].powi(2))
                .sum::<f64>(),
            _ => {
                let mut delta = 0.0;
                for (r, c) in self.blocks().unwrap_or_default() {
                    let tb = t.slice(s![r.clone(), r]);
                    delta += c
                        .iter()
                        .zip(tb.iter())
                        .map(|(c, t)| (c - t).powi(2) - t * t)
                        .sum::<f64>();
                }
                delta
            }
        };
        // ‖C − T‖² = ‖T‖² + Σ_{inside C's structure} ((c − t)² − t²): outside it C = 0.
        (total + sq).max(0.0).sqrt()
    }

    /// The eigendecomposition of each block (symmetrised).
    pub fn spectral(&self) -> Result<Spectral> {
        match self {
            Structured::Diagonal(d) => Ok(Spectral::Diagonal(d.clone())),
            _ => {
                let mut out = Vec::new();
                for (r, m) in self.blocks().unwrap_or_default() {
                    let (values, vectors) = dense::eigen(m)?;
                    out.push((r, values, vectors));
                }
                Ok(Spectral::Blocks(out))
            }
        }
    }
}

/// A [`Structured`] matrix's eigendecomposition: per block (range, eigenvalues
/// ascending, eigenvectors as columns), or a diagonal.
#[derive(Clone, Debug)]
pub enum Spectral {
    Blocks(Vec<(Range<usize>, Vec<f64>, Array2<f64>)>),
    Diagonal(Vec<f64>),
}

impl Spectral {
    /// (C + γI)⁻¹ g (W), in the eigenbasis (module header).
    pub fn damped_solve(&self, g: &[f64], gamma: f64) -> Vec<f64> {
        match self {
            Spectral::Diagonal(d) => g.iter().zip(d).map(|(g, d)| g / (d + gamma)).collect(),
            Spectral::Blocks(blocks) => {
                let mut x = vec![0.0; g.len()];
                for (r, mu, v) in blocks {
                    let gb = ndarray::ArrayView1::from(&g[r.clone()]);
                    let coef = v.t().dot(&gb); // Vᵀ g_b
                    let scaled = ndarray::Array1::from_iter(
                        coef.iter().zip(mu).map(|(c, m)| c / (m + gamma)),
                    );
                    for (dst, value) in x[r.clone()].iter_mut().zip(v.dot(&scaled)) {
                        *dst = value;
                    }
                }
                x
            }
        }
    }

    /// The `k` largest eigenvalues, descending.
    pub fn top(&self, k: usize) -> Vec<f64> {
        let mut all: Vec<f64> = match self {
            Spectral::Diagonal(d) => d.clone(),
            Spectral::Blocks(b) => b.iter().flat_map(|(_, mu, _)| mu.iter().copied()).collect(),
        };
        all.sort_by(|a, b| b.total_cmp(a));
        all.truncate(k);
        all
    }
}

/// cos∠(x, y), NaN when either is zero or not finite.
pub fn cosine(x: &[f64], y: &[f64]) -> f64 {
    let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let nx: f64 = x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let ny: f64 = y.iter().map(|a| a * a).sum::<f64>().sqrt();
    let c = dot / (nx * ny);
    if c.is_finite() {
        c.clamp(-1.0, 1.0)
    } else {
        f64::NAN
    }
}

/// What to compare and how.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// γ / ḡ (module header).
    pub gamma_factors: Vec<f64>,
    /// How many of the largest eigenvalues of each C.
    pub top: usize,
    /// The mc flavour of the `kfac-mc` and `mc-fisher` rows.
    pub mc: Fisher,
    /// The largest W for which the W×W matrices are formed.
    pub dense_max: usize,
    /// The rows, in order.
    pub approximations: Vec<Approximation>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        let mc = Fisher::Mc {
            samples: 1,
            seed: 0,
        };
        CompareOptions {
            gamma_factors: default_gamma_factors(),
            top: 5,
            mc,
            dense_max: dense::DEFAULT_MAX_DENSE_EIGEN,
            approximations: Approximation::all(mc),
        }
    }
}

/// One approximation against G and H.
#[derive(Clone, Debug)]
pub struct Row {
    pub approximation: Approximation,
    /// ‖C − G‖_F / ‖G‖_F.
    pub error_vs_ggn: f64,
    /// ‖C − H‖_F / ‖H‖_F.
    pub error_vs_hessian: f64,
    /// cos∠ of the damped steps of C and G, one per γ.
    pub cosine_vs_ggn: Vec<f64>,
    /// cos∠ of the damped steps of C and H, one per γ.
    pub cosine_vs_hessian: Vec<f64>,
    /// The largest eigenvalues of C, descending.
    pub top: Vec<f64>,
    /// Seconds to form C and decompose it.
    pub seconds: f64,
}

/// The whole comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// W.
    pub num_params: usize,
    /// N, the rows the curvature is of.
    pub num_rows: usize,
    /// The model's λ (in every matrix, on weights).
    pub l2: f64,
    /// ḡ = tr(G) / W.
    pub mean_diag_ggn: f64,
    /// ‖∇E(θ)‖.
    pub gradient_norm: f64,
    /// The γ grid: f (γ / ḡ) and γ.
    pub gamma_factors: Vec<f64>,
    pub gammas: Vec<f64>,
    pub rows: Vec<Row>,
}

/// The refusal above the dense limit, one line.
pub fn check_dense(w: usize, dense_max: usize) -> Result<()> {
    if w > dense_max {
        return Err(Error::Input(format!(
            "comparing the approximations forms W×W matrices: W = {w} is above the dense limit {dense_max} (--dense-max)"
        )));
    }
    Ok(())
}

/// An approximation's matrix of E (data term + λI_w) at θ on `rows`, from the engine.
pub fn approximation_matrix(
    engine: &mut dyn Curvature,
    approximation: Approximation,
    theta: &[f64],
    rows: Range<usize>,
    ggn: &Array2<f64>,
) -> Result<Structured> {
    let mlp = engine.mlp().clone();
    let layers = mlp.layout();
    let block = |l: &crate::LayerLayout| l.weights.start..l.bias.end;
    let with_l2 = |mut m: Array2<f64>, layer: &crate::LayerLayout| {
        // λ on the layer's weight entries (the block starts at its weights).
        for i in 0..layer.weights.len() {
            m[[i, i]] += mlp.l2();
        }
        m
    };
    Ok(match approximation {
        Approximation::Ggn => Structured::Dense(ggn.clone()),
        Approximation::Hessian => Structured::Dense(engine.hessian(theta, rows)?),
        Approximation::DiagonalGgn => Structured::Diagonal(engine.diag_ggn(theta, rows)?),
        Approximation::BlockDiagonalGgn => Structured::Blocks(
            layers
                .iter()
                .map(|l| {
                    let r = block(l);
                    (r.clone(), ggn.slice(s![r.clone(), r]).to_owned())
                })
                .collect(),
        ),
        Approximation::Kfac(f) => {
            let factors = engine.kfac_factors(f, theta, rows)?;
            Structured::Blocks(
                layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (block(l), with_l2(factors.layer_matrix(i), l)))
                    .collect(),
            )
        }
        Approximation::Ekfac(f) => {
            let ekfac = engine.ekfac(f, theta, rows)?;
            let w = mlp.num_params();
            let mut blocks = Vec::new();
            for l in &layers {
                let r = block(l);
                let mut m = Array2::zeros((r.len(), r.len()));
                let mut e = vec![0.0; w];
                for (col, p) in r.clone().enumerate() {
                    e[p] = 1.0;
                    let c = ekfac.product(&e);
                    e[p] = 0.0;
                    for (row, q) in r.clone().enumerate() {
                        m[[row, col]] = c[q];
                    }
                }
                blocks.push((r, with_l2(m, l)));
            }
            Structured::Blocks(blocks)
        }
        Approximation::Fisher(f) => Structured::Dense(engine.fisher_matrix(f, theta, rows)?),
    })
}

/// The comparison of `options.approximations` with the exact G and H at θ on `rows`
/// (module header). Refuses W above `options.dense_max`.
pub fn compare(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    options: &CompareOptions,
) -> Result<Comparison> {
    let w = theta.len();
    check_dense(w, options.dense_max)?;
    let (_, grad) = engine.loss_grad(theta, rows.clone())?;
    let ggn = engine.ggn(theta, rows.clone())?;
    let hessian = engine.hessian(theta, rows.clone())?;
    let mean_diag = ggn.diag().sum() / w.max(1) as f64;
    let gammas: Vec<f64> = options
        .gamma_factors
        .iter()
        .map(|f| f * mean_diag)
        .collect();
    if let Some(bad) = gammas.iter().find(|g| !(g.is_finite() && **g > 0.0)) {
        return Err(Error::Input(format!(
            "every damping γ must be finite and > 0, not {bad} (is G zero?)"
        )));
    }
    let ggn_spectral = Structured::Dense(ggn.clone()).spectral()?;
    let hessian_spectral = Structured::Dense(hessian.clone()).spectral()?;
    let steps = |s: &Spectral| -> Vec<Vec<f64>> {
        gammas.iter().map(|&g| s.damped_solve(&grad, g)).collect()
    };
    let ggn_steps = steps(&ggn_spectral);
    let hessian_steps = steps(&hessian_spectral);
    let norm = |m: &Array2<f64>| m.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (ggn_norm, hessian_norm) = (norm(&ggn), norm(&hessian));
    let mut out = Vec::new();
    for &a in &options.approximations {
        let start = Instant::now();
        let (c, spectral) = match a {
            // The exact ones are decomposed already.
            Approximation::Ggn => (Structured::Dense(ggn.clone()), ggn_spectral.clone()),
            Approximation::Hessian => {
                (Structured::Dense(hessian.clone()), hessian_spectral.clone())
            }
            _ => {
                let c = approximation_matrix(engine, a, theta, rows.clone(), &ggn)?;
                let spectral = c.spectral()?;
                (c, spectral)
            }
        };
        let own = steps(&spectral);
        let cosines = |exact: &[Vec<f64>]| -> Vec<f64> {
            own.iter().zip(exact).map(|(x, y)| cosine(x, y)).collect()
        };
        out.push(Row {
            approximation: a,
            error_vs_ggn: c.frobenius_distance(&ggn) / ggn_norm,
            error_vs_hessian: c.frobenius_distance(&hessian) / hessian_norm,
            cosine_vs_ggn: cosines(&ggn_steps),
            cosine_vs_hessian: cosines(&hessian_steps),
            top: spectral.top(options.top),
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(Comparison {
        num_params: w,
        num_rows: rows.len(),
        l2: engine.mlp().l2(),
        mean_diag_ggn: mean_diag,
        gradient_norm: grad.iter().map(|v| v * v).sum::<f64>().sqrt(),
        gamma_factors: options.gamma_factors.clone(),
        gammas,
        rows: out,
    })
}

/// A finite number, or JSON null (NaN, ∞).
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn numbers(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|&x| number(x)).collect())
}

impl Comparison {
    /// The row of one approximation.
    pub fn row(&self, a: Approximation) -> Option<&Row> {
        self.rows.iter().find(|r| r.approximation == a)
    }

    /// The comparison as JSON (non-finite numbers as null).
    pub fn to_json(&self) -> Value {
        json!({
            "matrices": "of E = (1/N) Σ_n E_n + (λ/2)‖W‖²: each approximation's data term plus λ·I_w (weights only), G and H the exact ones",
            "num_params": self.num_params,
            "num_rows": self.num_rows,
            "l2": number(self.l2),
            "mean_diag_ggn": number(self.mean_diag_ggn),
            "gradient_norm": number(self.gradient_norm),
            "gamma_factors": numbers(&self.gamma_factors),
            "gammas": numbers(&self.gammas),
            "approximations": self.rows.iter().map(|r| json!({
                "key": r.approximation.key(),
                "name": r.approximation.label(),
                "error_vs_ggn": number(r.error_vs_ggn),
                "error_vs_hessian": number(r.error_vs_hessian),
                "cosine_vs_ggn": numbers(&r.cosine_vs_ggn),
                "cosine_vs_hessian": numbers(&r.cosine_vs_hessian),
                "top_eigenvalues": numbers(&r.top),
                "seconds": number(r.seconds),
            })).collect::<Vec<_>>(),
        })
    }
}
