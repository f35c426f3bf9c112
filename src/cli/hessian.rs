//! `curvature hessian`: the spectrum of H or G of a saved model on a data set —
//! extreme eigenvalues by Lanczos (with residuals) beside a dense
//! eigendecomposition when W is small enough, the trace by Hutchinson and
//! Hutch++, the condition number, the spectral density picture (stochastic
//! Lanczos quadrature), and the same per layer block. With
//! `--compare-approximations`, instead: how far diag(G), block-diagonal G, K-FAC,
//! EKFAC and the empirical / MC Fisher are from the exact G and H
//! (`analysis::approximations`), as a table, JSON and a picture.

use super::common::{load_model_and_part, DeviceArgs, KindArg, SplitPart};
use crate::cli::out::{out, outln};
use clap::Args;
use curvature::analysis::approximations::{self, Approximation, CompareOptions, Comparison};
use curvature::analysis::dense::{self, DEFAULT_MAX_DENSE_EIGEN};
use curvature::analysis::density::stochastic_lanczos_quadrature;
use curvature::analysis::inverse::{cholesky_inverse, sherman_morrison_inverse};
use curvature::analysis::lanczos::{extreme_eigenpairs, Eigenpair};
use curvature::analysis::trace::{hutch_plus_plus, hutchinson};
use curvature::analysis::Operator;
use curvature::cpu::Fisher;
use curvature::engine::Curvature;
use curvature::files::{write_atomic, Overwrite};
use curvature::plot::{self, Legend, Panel, PlotLayout, Series};
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
    #[arg(long, default_value_t = 120, value_parser = super::common::at_least_one)]
    pub steps: usize,
    /// Rademacher samples for Hutchinson (and products for Hutch++).
    #[arg(long, default_value_t = 99, value_parser = super::common::at_least_one)]
    pub trace_samples: usize,
    /// Probes of stochastic Lanczos quadrature.
    #[arg(long, default_value_t = 8, value_parser = super::common::at_least_one)]
    pub probes: usize,
    /// Lanczos steps per probe of stochastic Lanczos quadrature.
    #[arg(long, default_value_t = 80, value_parser = super::common::at_least_one)]
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
    #[arg(long, value_name = "ROWS", value_parser = super::common::at_least_one)]
    pub inverse_check: Option<usize>,
    /// α of the inverse check.
    #[arg(long, default_value_t = 1e-2)]
    pub alpha: f64,
    /// Seed of the random starts and probes (and of the mc samples).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Instead of the spectrum: compare diag(G), block-diagonal G, K-FAC (exact, mc,
    /// empirical), EKFAC and the empirical and MC Fisher with the exact G and H (W ≤
    /// --dense-max): relative Frobenius errors, cosines of the damped Newton steps over
    /// a γ grid (--plot draws them), the top --top eigenvalues.
    #[arg(long)]
    pub compare_approximations: bool,
    /// With --compare-approximations: write the comparison as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "compare_approximations")]
    pub json: Option<PathBuf>,
    /// With --compare-approximations: labels sampled per row for the mc rows.
    #[arg(long, default_value_t = 1, requires = "compare_approximations")]
    pub mc_samples: usize,
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
    // The picture and the JSON are checked before the spectrum is computed, not after it.
    for path in [&args.plot, &args.json].into_iter().flatten() {
        curvature::files::check_writable(path, overwrite(args))?;
    }
    let (model, ds) = load_model_and_part(&args.model, &args.data, args.split)?;
    check_dense_paths(args, model.theta.len())?;
    let device = args.device.open()?;
    let mut engine = device.engine(&model.mlp, ds.x.view(), ds.t.view())?;
    let kind = Kind::from(args.matrix);
    let theta = &model.theta;
    let rows = 0..ds.len();
    let w = theta.len();
    if args.compare_approximations {
        // Refused before the engine builds anything W×W.
        approximations::check_dense(w, args.dense_max)?;
    }
    outln!(
        "model     {} ({}, W = {w})",
        args.model.display(),
        model.mlp.describe()
    );
    outln!(
        "data      {} ({:?} part, {} rows) on {}",
        ds.name,
        args.split,
        ds.len(),
        device.describe()
    );
    if args.compare_approximations {
        return compare(args, &mut engine, theta, rows, &ds.name);
    }
    let full_dense = if w <= args.dense_max {
        let mut op = Operator::new(&mut engine, theta, rows.clone(), kind);
        Some(op.dense()?)
    } else {
        outln!(
            "dense     skipped: W = {w} > --dense-max {} (only matrix-free estimates below)",
            args.dense_max
        );
        None
    };
    outln!();
    outln!("== {} (all parameters) ==", kind.symbol());
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
        plot::draw(path, &[panel], overwrite(args)).map_err(|e| Error::Input(e.to_string()))?;
        outln!("density   drawn to {}", path.display());
    }
    if let Some(r) = args.inverse_check {
        inverse_check(&mut engine, &model.mlp, theta, &ds, r, args.alpha)?;
    }
    if !args.no_layers {
        for (l, layer) in model.mlp.layout().iter().enumerate() {
            let block = layer.weights.start..layer.bias.end;
            outln!();
            outln!(
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
/// Refuses, before the device opens and any eigenvalue is computed, the dense
/// W×W work this command was asked for that would not fit in memory: the dense
/// cross-check (W ≤ --dense-max: the matrix and the engine's copy) and
/// --inverse-check (the Sherman-Morrison inverse, G and its Cholesky inverse).
fn check_dense_paths(args: &HessianArgs, w: usize) -> Result<()> {
    use curvature::engine::memory::check_dense_memory;
    if w <= args.dense_max && !args.compare_approximations {
        check_dense_memory(
            "the dense cross-check (--dense-max)",
            w,
            2,
            "a smaller --dense-max, which keeps the matrix-free Lanczos estimates",
        )?;
    }
    if w <= args.dense_max && args.compare_approximations {
        // G, H and one matrix per approximation held together, with the engine's copy.
        check_dense_memory(
            "comparing the approximations",
            w,
            6,
            "a smaller network (the comparison needs the exact G and H)",
        )?;
    }
    if args.inverse_check.is_some() {
        check_dense_memory(
            "--inverse-check",
            w,
            3,
            "the spectrum without --inverse-check, or a smaller network",
        )?;
    }
    Ok(())
}

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
    outln!();
    outln!(
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
    outln!("{title}");
    outln!(
        "  {:>3} {:>14} {:>14} {:>11} {:>11}",
        "i",
        "Lanczos λ",
        "nearest dense",
        "|Δ|",
        "‖Av−λv‖"
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
            Some(d) => outln!(
                "  {:>3} {:>14.6e} {:>14.6e} {:>11.2e} {:>11.2e}",
                i + 1,
                p.value,
                d,
                (p.value - d).abs(),
                p.residual
            ),
            None => outln!(
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
    outln!(
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
        outln!("trace     exact {:.6e}", a.diag().sum());
    }
    outln!(
        "trace     Hutchinson {:.6e} ± {:.2e} ({} samples); Hutch++ {:.6e} ± {:.2e} ({} products)",
        hutch.value,
        hutch.std_error,
        hutch.products,
        hpp.value,
        hpp.std_error,
        hpp.products
    );
    // Condition number: max|λ| over min nonzero |λ| (zero: |λ| ≤ dim·ε·max|λ|).
    if let Some(values) = &dense_values {
        match condition_number(values) {
            Some(k) => outln!(
                "condition |λ|max/|λ|min(nonzero) = {k:.4e} (dense; zero means |λ| ≤ dim·ε·|λ|max)"
            ),
            None => outln!("condition undefined: every eigenvalue is zero"),
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
            Some(k) => outln!(
                "condition ≥ {k:.4e} (from converged Ritz values only: a lower bound, the smallest |λ| lies inside the spectrum)"
            ),
            None => outln!("condition unknown: fewer than two converged Ritz values"),
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
    outln!(
        "products  {} {}v products for this block",
        op.products,
        kind.symbol()
    );
    Ok(BlockReport {
        density: curve,
        sigma,
    })
}

fn overwrite(args: &HessianArgs) -> Overwrite {
    if args.force {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    }
}

/// `--compare-approximations`: the comparison, printed, and as JSON and a picture.
fn compare(
    args: &HessianArgs,
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: Range<usize>,
    data_name: &str,
) -> Result<()> {
    if args.mc_samples == 0 {
        return Err(Error::Input(
            "--mc-samples must be at least 1 (labels sampled per row)".into(),
        ));
    }
    let mc = Fisher::Mc {
        samples: args.mc_samples,
        seed: args.seed,
    };
    let options = CompareOptions {
        top: args.top,
        mc,
        dense_max: args.dense_max,
        approximations: Approximation::all(mc),
        ..CompareOptions::default()
    };
    let start = std::time::Instant::now();
    let c = approximations::compare(engine, theta, rows, &options)?;
    outln!(
        "matrices  of E = (1/N) Σ E_n + (λ/2)‖W‖², λ = {:e}: every C is its data term + λ·I_w (weights only), G and H exact ({:.1} s)",
        c.l2,
        start.elapsed().as_secs_f64()
    );
    outln!(
        "steps     −(C + γI)⁻¹∇E against −(G + γI)⁻¹∇E and −(H + γI)⁻¹∇E, γ = f·ḡ, ḡ = tr(G)/W = {:.4e}, ‖∇E‖ = {:.3e}",
        c.mean_diag_ggn, c.gradient_norm
    );
    print_comparison(&c);
    if let Some(path) = &args.json {
        let mut json = c.to_json();
        json["model"] = args.model.display().to_string().into();
        json["data"] = data_name.into();
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| Error::Internal(format!("JSON of the comparison: {e}")))?;
        write_atomic(path, text.as_bytes(), overwrite(args))?;
        outln!("json      written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        // Every row in both panels, so that a colour is one approximation in both.
        let panel = |title: &str, pick: fn(&approximations::Row) -> &[f64]| Panel {
            title: title.into(),
            x_label: "γ / mean diag(G)".into(),
            y_label: "cosine".into(),
            series: c
                .rows
                .iter()
                .map(|r| Series {
                    label: r.approximation.label(),
                    points: c
                        .gamma_factors
                        .iter()
                        .copied()
                        .zip(pick(r).iter().copied())
                        .collect(),
                })
                .collect(),
            log_y: false,
        };
        let panels = [
            panel(
                "cos∠ with G's damped Newton step",
                |r: &approximations::Row| &r.cosine_vs_ggn,
            ),
            panel(
                "cos∠ with H's damped Newton step",
                |r: &approximations::Row| &r.cosine_vs_hessian,
            ),
        ];
        let layout = PlotLayout {
            log_x: true,
            legend: Legend::Below,
        };
        plot::draw_with(path, &panels, layout, overwrite(args))
            .map_err(|e| Error::Input(e.to_string()))?;
        outln!("cosines   drawn to {}", path.display());
    }
    Ok(())
}

fn print_comparison(c: &Comparison) {
    let top = c.rows.first().map_or(0, |r| r.top.len());
    outln!();
    out!(
        "{:<22} {:>11} {:>11}",
        "approximation C",
        "‖C−G‖/‖G‖",
        "‖C−H‖/‖H‖"
    );
    for i in 0..top {
        out!(" {:>10}", format!("λ{}", i + 1));
    }
    outln!(" {:>7}", "s");
    for r in &c.rows {
        out!(
            "{:<22} {:>11.3e} {:>11.3e}",
            r.approximation.label(),
            r.error_vs_ggn,
            r.error_vs_hessian
        );
        for v in &r.top {
            out!(" {v:>10.4e}");
        }
        outln!(" {:>7.1}", r.seconds);
    }
    for (title, pick) in [
        (
            "cos∠(C step, G step)",
            (|r: &approximations::Row| &r.cosine_vs_ggn) as fn(&approximations::Row) -> &Vec<f64>,
        ),
        ("cos∠(C step, H step)", |r: &approximations::Row| {
            &r.cosine_vs_hessian
        }),
    ] {
        outln!();
        out!("{title:<22}");
        for f in &c.gamma_factors {
            out!(" {:>6}", format!("{f:.0e}"));
        }
        outln!("   (γ/ḡ)");
        for r in &c.rows {
            out!("{:<22}", r.approximation.label());
            for v in pick(r) {
                out!(" {v:>6.3}");
            }
            outln!();
        }
    }
}
