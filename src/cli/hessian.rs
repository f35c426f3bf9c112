//! `curvature hessian`: the spectrum of H or G of a saved model on a data set —
//! extreme eigenvalues by Lanczos (with residuals) beside a dense
//! eigendecomposition when W is small enough, the trace by Hutchinson and
//! Hutch++, the condition number, the spectral density picture (stochastic
//! Lanczos quadrature), and the same per layer block.

use super::common::{load_model_and_part, DeviceArgs, KindArg, SplitPart};
use clap::Args;
use curvature::analysis::dense::{self, DEFAULT_MAX_DENSE_EIGEN};
use curvature::analysis::density::stochastic_lanczos_quadrature;
use curvature::analysis::inverse::{cholesky_inverse, sherman_morrison_inverse};
use curvature::analysis::lanczos::{extreme_eigenpairs, Eigenpair};
use curvature::analysis::trace::{hutch_plus_plus, hutchinson};
use curvature::analysis::Operator;
use curvature::engine::Curvature;
use curvature::files::Overwrite;
use curvature::plot::{self, Panel, Series};
use curvature::Kind;
use curvature::{data, Error, Result};
use std::ops::Range;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct HessianArgs {
    /// The model file (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// The data: a named set (digits, mnist10k, ...) or a file.
    #[arg(long)]
    pub data: String,
    /// Which rows: all (default), or the train / test part of the model's split.
    #[arg(long, value_enum, default_value = "all")]
    pub split: SplitPart,
    /// Which matrix.
    #[arg(long, value_enum, default_value = "hessian")]
    pub matrix: KindArg,
    /// How many of the largest eigenvalues.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// How many of the smallest (algebraically) eigenvalues.
    #[arg(long, default_value_t = 5)]
    pub bottom: usize,
    /// Lanczos steps for the extreme eigenvalues (at most W).
    #[arg(long, default_value_t = 120)]
    pub steps: usize,
    /// Rademacher samples for Hutchinson (and products for Hutch++).
    #[arg(long, default_value_t = 99)]
    pub trace_samples: usize,
    /// Probes of stochastic Lanczos quadrature.
    #[arg(long, default_value_t = 8)]
    pub probes: usize,
    /// Lanczos steps per probe of stochastic Lanczos quadrature.
    #[arg(long, default_value_t = 80)]
    pub density_steps: usize,
    /// The largest W for the dense eigendecomposition cross-check.
    #[arg(long, default_value_t = DEFAULT_MAX_DENSE_EIGEN)]
    pub dense_max: usize,
    /// Skip the per-layer blocks.
    #[arg(long)]
    pub no_layers: bool,
    /// Draw the spectral density into this picture (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Replace an existing picture.
    #[arg(long)]
    pub force: bool,
    /// Also invert G + αI on the first ROWS rows both ways — sequential
    /// Sherman-Morrison on the outer product (PRML 5.89, CPU) and Cholesky of
    /// the engine's G — and print how far apart they are.
    #[arg(long, value_name = "ROWS")]
    pub inverse_check: Option<usize>,
    /// α of the inverse check.
    #[arg(long, default_value_t = 1e-2)]
    pub alpha: f64,
    /// Seed of the random starts and probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// A Ritz pair counts as converged when its residual is below this fraction
/// of the largest |λ| found (so the figure is trusted to ~6 digits).
const CONVERGED: f64 = 1e-6;

/// Eigenvalues with |λ| ≤ dim·ε·max|λ| count as zero for the condition number
/// (the numerical-rank tolerance of LAPACK/numpy's matrix_rank).
fn zero_tolerance(dim: usize, max_abs: f64) -> f64 {
    dim as f64 * f64::EPSILON * max_abs
}

/// κ = max|λ| / min{|λ| : |λ| > tolerance}, or None when all are zero.
fn condition_number(values: &[f64]) -> Option<f64> {
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = zero_tolerance(values.len(), max);
    let min = values
        .iter()
        .map(|v| v.abs())
        .filter(|v| *v > tol)
        .fold(f64::INFINITY, f64::min);
    (max > 0.0 && min.is_finite()).then(|| max / min)
}

pub fn run(args: &HessianArgs) -> Result<()> {
    let (model, ds) = load_model_and_part(&args.model, &args.data, args.split)?;
    let device = args.device.open()?;
    let mut engine = device.engine(&model.mlp, ds.x.view(), ds.t.view())?;
    let kind = Kind::from(args.matrix);
    let theta = &model.theta;
    let rows = 0..ds.len();
    let w = theta.len();
    println!(
        "model     {} ({}, W = {w})",
        args.model.display(),
        model.mlp.describe()
    );
    println!(
        "data      {} ({:?} part, {} rows) on {}",
        ds.name,
        args.split,
        ds.len(),
        device.describe()
    );
    let full_dense = if w <= args.dense_max {
        let mut op = Operator::new(&mut engine, theta, rows.clone(), kind);
        Some(op.dense()?)
    } else {
        println!(
            "dense     skipped: W = {w} > --dense-max {} (only matrix-free estimates below)",
            args.dense_max
        );
        None
    };
    println!();
    println!("== {} (all parameters) ==", kind.symbol());
    let report = analyse_block(
        args,
        &mut engine,
        theta,
        rows.clone(),
        kind,
        0..w,
        full_dense.as_ref(),
    )?;
    if let Some(path) = &args.plot {
        let panel = Panel {
            title: format!(
                "Spectral density of {} (SLQ, {} probes × {} steps, σ = {:.2e})",
                kind.symbol(),
                args.probes,
                args.density_steps,
                report.sigma
            ),
            x_label: "eigenvalue".into(),
            y_label: "density (log)".into(),
            series: vec![Series {
                label: format!("{} on {}", kind.symbol(), ds.name),
                points: report.density.clone(),
            }],
            log_y: true,
        };
        let overwrite = if args.force {
            Overwrite::Allow
        } else {
            Overwrite::Refuse
        };
        plot::draw(path, &[panel], overwrite).map_err(|e| Error::Input(e.to_string()))?;
        println!("density   drawn to {}", path.display());
    }
    if let Some(r) = args.inverse_check {
        inverse_check(&mut engine, &model.mlp, theta, &ds, r, args.alpha)?;
    }
    if !args.no_layers {
        for (l, layer) in model.mlp.layout().iter().enumerate() {
            let block = layer.weights.start..layer.bias.end;
            println!();
            println!(
                "== {} block of layer {l} (W_{l} {}×{} and b_{l}: θ[{}..{}], {} parameters) ==",
                kind.symbol(),
                layer.fan_out,
                layer.fan_in,
                block.start,
                block.end,
                block.len()
            );
            let sub = full_dense.as_ref().map(|a| {
                a.slice(ndarray::s![block.clone(), block.clone()])
                    .to_owned()
            });
            analyse_block(
                args,
                &mut engine,
                theta,
                rows.clone(),
                kind,
                block,
                sub.as_ref(),
            )?;
        }
    }
    Ok(())
}

/// (G + αI)⁻¹ on the first `r` rows by Sherman-Morrison and by Cholesky.
fn inverse_check(
    engine: &mut dyn Curvature,
    mlp: &curvature::Mlp,
    theta: &[f64],
    ds: &data::Dataset,
    r: usize,
    alpha: f64,
) -> Result<()> {
    let r = r.clamp(1, ds.len());
    let x = ds.x.slice(ndarray::s![0..r, ..]).mapv(f64::from);
    let t = ds.t.slice(ndarray::s![0..r, ..]).mapv(f64::from);
    let start = std::time::Instant::now();
    let sm = sherman_morrison_inverse(mlp, theta, x.view(), t.view(), alpha)?;
    let sm_s = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let ch = cholesky_inverse(engine, theta, 0..r, Kind::GaussNewton, alpha)?;
    let ch_s = start.elapsed().as_secs_f64();
    let scale = ch.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = sm
        .iter()
        .zip(ch.iter())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    println!();
    println!(
        "inverse   (G + {alpha:e}·I)⁻¹ on the first {r} rows: Sherman-Morrison ({} rank-one updates, {sm_s:.1} s) vs Cholesky ({ch_s:.1} s): max|Δ| / max|entry| = {:.2e}",
        r * mlp.num_outputs(),
        worst / scale
    );
    Ok(())
}

/// What one block's analysis leaves for the picture.
struct BlockReport {
    density: Vec<(f64, f64)>,
    sigma: f64,
}

fn print_pairs(title: &str, pairs: &[Eigenpair], dense: Option<&[f64]>) {
    println!("{title}");
    println!(
        "  {:>3} {:>14} {:>14} {:>11} {:>11}",
        "i", "Lanczos λ", "nearest dense", "|Δ|", "‖Av−λv‖"
    );
    for (i, p) in pairs.iter().enumerate() {
        // The nearest dense eigenvalue: Lanczos sees a repeated eigenvalue
        // once, so the i-th Ritz value need not be the i-th eigenvalue.
        let d = dense.and_then(|d| {
            d.iter()
                .copied()
                .min_by(|a, b| (a - p.value).abs().total_cmp(&(b - p.value).abs()))
        });
        match d {
            Some(d) => println!(
                "  {:>3} {:>14.6e} {:>14.6e} {:>11.2e} {:>11.2e}",
                i + 1,
                p.value,
                d,
                (p.value - d).abs(),
                p.residual
            ),
            None => println!(
                "  {:>3} {:>14.6e} {:>14} {:>11} {:>11.2e}",
                i + 1,
                p.value,
                "—",
                "—",
                p.residual
            ),
        }
    }
}

fn analyse_block(
    args: &HessianArgs,
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    kind: Kind,
    block: Range<usize>,
    dense_matrix: Option<&ndarray::Array2<f64>>,
) -> Result<BlockReport> {
    let dim = block.len();
    let mut op = Operator::new(engine, theta, rows, kind).restricted(block)?;
    let dense_values = dense_matrix.map(dense::eigenvalues).transpose()?;
    let (tops, bottoms) =
        extreme_eigenpairs(&mut op, args.top, args.bottom, args.steps, args.seed)?;
    println!(
        "Lanczos   {} steps, full reorthogonalisation (dim {dim}){}",
        args.steps.min(dim),
        if dense_values.is_some() {
            ", beside a dense eigendecomposition"
        } else {
            ""
        }
    );
    print_pairs("largest (distinct)", &tops, dense_values.as_deref());
    print_pairs("smallest (distinct)", &bottoms, dense_values.as_deref());
    let hutch = hutchinson(&mut op, args.trace_samples, args.seed ^ 0x7472)?;
    let hpp = hutch_plus_plus(&mut op, args.trace_samples.max(6), args.seed ^ 0x2b2b)?;
    if let Some(a) = dense_matrix {
        println!("trace     exact {:.6e}", a.diag().sum());
    }
    println!(
        "trace     Hutchinson {:.6e} ± {:.2e} ({} samples); Hutch++ {:.6e} ± {:.2e} ({} products)",
        hutch.value, hutch.std_error, hutch.products, hpp.value, hpp.std_error, hpp.products
    );
    // Condition number: max|λ| over min nonzero |λ| (zero: |λ| ≤ dim·ε·max|λ|).
    if let Some(values) = &dense_values {
        match condition_number(values) {
            Some(k) => println!(
                "condition |λ|max/|λ|min(nonzero) = {k:.4e} (dense; zero means |λ| ≤ dim·ε·|λ|max)"
            ),
            None => println!("condition undefined: every eigenvalue is zero"),
        }
    } else {
        let ritz: Vec<&Eigenpair> = tops.iter().chain(&bottoms).collect();
        let max = ritz.iter().fold(0.0f64, |m, p| m.max(p.value.abs()));
        let converged: Vec<f64> = ritz
            .iter()
            .filter(|p| p.residual <= CONVERGED * max)
            .map(|p| p.value)
            .collect();
        match condition_number(&converged).filter(|_| converged.len() >= 2) {
            Some(k) => println!(
                "condition ≥ {k:.4e} (from converged Ritz values only: a lower bound, the smallest |λ| lies inside the spectrum)"
            ),
            None => println!("condition unknown: fewer than two converged Ritz values"),
        }
    }
    let density =
        stochastic_lanczos_quadrature(&mut op, args.probes, args.density_steps, args.seed ^ 0x51)?;
    let sigma = density.default_sigma();
    // Clamp the curve for the log axis: below 1e-8 of the peak is invisible anyway.
    let curve = density.broadened(sigma, 400);
    let peak = curve.iter().fold(0.0f64, |m, p| m.max(p.1));
    let floor = peak * 1e-8;
    let curve = curve.into_iter().map(|(t, p)| (t, p.max(floor))).collect();
    println!(
        "products  {} {}v products for this block",
        op.products,
        kind.symbol()
    );
    Ok(BlockReport {
        density: curve,
        sigma,
    })
}
