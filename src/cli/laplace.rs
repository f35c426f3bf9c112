//! `curvature laplace`: the Laplace approximation of a saved classifier (PRML
//! §5.7.3) fitted on the training part of its split — posterior precision
//! N·G_data + prior over all parameters or the last layer's (`--subset`), with
//! G_data full, diagonal or Kronecker-factored per layer (`--structure`), α by
//! maximising the evidence (MacKay's update; one α, and one per layer) — and the
//! test accuracy, NLL and expected calibration error of the point prediction
//! against the Laplace predictives.

use super::common::{load_model_train_test, DeviceArgs};
use super::compute::FisherArg;
use crate::cli::out::outln;
use clap::{Args, ValueEnum};
use curvature::analysis::dense::DEFAULT_MAX_DENSE_EIGEN;
use curvature::analysis::laplace::{LaplaceFit, Structure, Subset};
use curvature::analysis::metrics::{calibration, Calibration, ECE_BINS};
use curvature::cpu::Fisher;
use curvature::engine::Curvature;
use curvature::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct LaplaceArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: String,
    /// The posterior precision's structure: full (the dense G, |S| ≤ --dense-max), diag,
    /// or kron (per layer N·A_l ⊗ B_l, Ritter et al. 2018). Default: full when it fits,
    /// else diag.
    #[arg(long, value_enum, conflicts_with = "diagonal")]
    pub structure: Option<StructureArg>,
    /// Same as --structure diag.
    #[arg(long)]
    pub diagonal: bool,
    /// The parameters the posterior is over: all, or the last layer's (the others fixed at θ*).
    #[arg(long, value_enum, default_value = "all")]
    pub subset: SubsetArg,
    /// Which K-FAC factors --structure kron uses (mc: one label sampled per row, --seed).
    #[arg(long, value_enum, default_value = "exact")]
    pub kfac: FisherArg,
    /// The prior precision of the Monte Carlo predictives: one α for all parameters, or
    /// one per layer (both are optimised and printed either way).
    #[arg(long, value_enum, default_value = "scalar")]
    pub prior: PriorArg,
    /// The largest |S| for the full posterior (an |S|×|S| eigendecomposition).
    #[arg(long, default_value_t = DEFAULT_MAX_DENSE_EIGEN)]
    pub dense_max: usize,
    /// Monte Carlo draws of θ for the sampled predictive.
    #[arg(long, default_value_t = 100, value_parser = super::common::at_least_one)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `--structure`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureArg {
    Full,
    Diag,
    Kron,
}

/// `--subset`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsetArg {
    All,
    LastLayer,
}

/// `--prior`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriorArg {
    /// One α for every parameter of the subset.
    Scalar,
    /// One α_l per layer (W_l and b_l together), laplace-torch's prior_structure='layerwise'.
    Layerwise,
}

fn alphas_text(alphas: &[f64]) -> String {
    alphas
        .iter()
        .map(|a| format!("{a:.4e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(name: &str, alpha: Option<f64>, c: &Calibration) {
    let a = alpha.map_or("—".to_string(), |a| format!("{a:.4e}"));
    outln!(
        "{name:<44} {a:>11} {:>9.4} {:>10.4} {:>9.4} {:>9.4}",
        c.accuracy,
        c.confidence,
        c.nll,
        c.ece
    );
}

pub fn run(args: &LaplaceArgs) -> Result<()> {
    let (model, train, test) = load_model_train_test(&args.model, &args.data)?;
    let labels = test.labels.clone().ok_or_else(|| {
        Error::Input(format!(
            "`{}` has no class labels: the Laplace predictive here is for classification",
            test.name
        ))
    })?;
    let device = args.device.open()?;
    let mut train_engine = device.engine(&model.mlp, train.x.view(), train.t.view())?;
    let mut test_engine = device.engine(&model.mlp, test.x.view(), test.t.view())?;
    let w = model.theta.len();
    let subset = match args.subset {
        SubsetArg::All => Subset::All,
        SubsetArg::LastLayer => Subset::LastLayer,
    };
    let size = match subset {
        Subset::All => w,
        Subset::LastLayer => model
            .mlp
            .layout()
            .last()
            .map_or(0, |l| l.bias.end - l.weights.start),
    };
    let structure = match (args.structure, args.diagonal) {
        (Some(StructureArg::Full), _) => {
            if size > args.dense_max {
                return Err(Error::Input(format!(
                    "--structure full forms an |S|×|S| matrix: |S| = {size} is above the dense limit {} (--dense-max)",
                    args.dense_max
                )));
            }
            Structure::Full
        }
        (Some(StructureArg::Diag), _) | (None, true) => Structure::Diagonal,
        (Some(StructureArg::Kron), _) => Structure::Kron(match args.kfac {
            FisherArg::Exact => Fisher::Exact,
            FisherArg::Mc => Fisher::Mc {
                samples: 1,
                seed: args.seed,
            },
            FisherArg::Empirical => Fisher::Empirical,
        }),
        (None, false) if size <= args.dense_max => Structure::Full,
        (None, false) => Structure::Diagonal,
    };
    outln!(
        "model     {} ({}, W = {w})",
        args.model.display(),
        model.mlp.describe()
    );
    outln!(
        "data      {}: posterior from the train part ({} rows), evaluated on the test part ({} rows), on {}",
        train.name,
        train.len(),
        test.len(),
        device.describe()
    );
    let start = Instant::now();
    let fit = LaplaceFit::fit_with(
        &mut train_engine,
        &model.theta,
        0..train.len(),
        structure,
        subset,
    )?;
    let what = match structure {
        Structure::Full => "full (eigendecomposition of G_data)".to_string(),
        Structure::Diagonal => "diagonal".to_string(),
        Structure::Kron(f) => format!(
            "kron (per layer N·A_l ⊗ B_l, {} K-FAC factors, in their eigenbasis)",
            f.name()
        ),
    };
    outln!(
        "posterior A = N·G_data + prior, {what}, over {} ({} of {w} parameters) ({:.1} s)",
        match subset {
            Subset::All => "all parameters",
            Subset::LastLayer => "the last layer (the others fixed at θ*)",
        },
        fit.num_subset(),
        start.elapsed().as_secs_f64()
    );
    let alpha0 = fit.training_alpha().max(f64::MIN_POSITIVE);
    let (alpha, iterations) = fit.optimise_alpha(alpha0.max(1e-6))?;
    outln!(
        "evidence  α from training (λ·N) = {alpha0:.4e}: ln p(D|α) = {:.4}",
        fit.log_evidence(alpha0)
    );
    outln!(
        "evidence  α* by MacKay's update = {alpha:.4e} ({iterations} iterations): ln p(D|α*) = {:.4}, γ = {:.1} of {}, d ln p/dα = {:.2e}",
        fit.log_evidence(alpha),
        fit.effective_parameters(alpha),
        fit.num_subset(),
        fit.d_log_evidence(alpha)
    );
    let start = Instant::now();
    let (layerwise, iterations) = fit.optimise_layerwise(&fit.uniform(alpha))?;
    let gammas = fit.group_effective_parameters(&layerwise)?;
    let gradient = fit.gradient_log_evidence(&layerwise)?;
    outln!(
        "evidence  α_l* per layer by MacKay's update = [{}] ({iterations} iterations from α*, {:.1} s): ln p(D|α_l*) = {:.4}, γ_l = [{}], max |∂ ln p/∂α_l| = {:.2e}",
        alphas_text(&layerwise),
        start.elapsed().as_secs_f64(),
        fit.log_evidence_layerwise(&layerwise)?,
        gammas
            .iter()
            .map(|g| format!("{g:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        gradient.iter().fold(0.0f64, |m, d| m.max(d.abs()))
    );
    let chosen = match args.prior {
        PriorArg::Scalar => fit.uniform(alpha),
        PriorArg::Layerwise => layerwise.clone(),
    };
    let x_test = test.x.mapv(f64::from);
    let proj = fit.project(x_test.view());
    let map = test_engine.outputs(&model.theta, 0..test.len())?;
    outln!();
    outln!(
        "test part, {} rows; ECE with {ECE_BINS} equal-width bins",
        test.len()
    );
    outln!(
        "{:<44} {:>11} {:>9} {:>10} {:>9} {:>9}",
        "predictive",
        "α",
        "accuracy",
        "confidence",
        "NLL",
        "ECE"
    );
    row("MAP (θ*, before)", None, &calibration(map.view(), &labels));
    let probit = if model.mlp.num_outputs() == 1 {
        "probit"
    } else {
        "mean-field probit"
    };
    row(
        &format!("Laplace {probit}, α = λ·N"),
        Some(alpha0),
        &calibration(fit.probit_predictive(&proj, alpha0).view(), &labels),
    );
    row(
        &format!("Laplace {probit}, α*"),
        Some(alpha),
        &calibration(fit.probit_predictive(&proj, alpha).view(), &labels),
    );
    let per_layer = fit.posterior(&layerwise)?;
    // A's basis changes with a layerwise prior only for `full`; project again there.
    let per_layer_proj = match structure {
        Structure::Full if layerwise.len() > 1 => per_layer.project(x_test.view()),
        _ => fit.project(x_test.view()),
    };
    row(
        &format!("Laplace {probit}, α_l* per layer"),
        None,
        &calibration(per_layer.probit_predictive(&per_layer_proj).view(), &labels),
    );
    let (posterior, posterior_proj, prior_name) = match args.prior {
        PriorArg::Scalar => (fit.posterior(&chosen)?, proj, "α*"),
        PriorArg::Layerwise => (per_layer, per_layer_proj, "α_l*"),
    };
    let lin = posterior.linearised_predictive(&posterior_proj, args.samples, args.seed);
    row(
        &format!(
            "Laplace linearised MC ({} draws), {prior_name}",
            args.samples
        ),
        (args.prior == PriorArg::Scalar).then_some(alpha),
        &calibration(lin.view(), &labels),
    );
    let mc = posterior.monte_carlo_predictive(
        &mut test_engine,
        0..test.len(),
        args.samples,
        args.seed,
    )?;
    row(
        &format!("Laplace network MC ({} draws), {prior_name}", args.samples),
        (args.prior == PriorArg::Scalar).then_some(alpha),
        &calibration(mc.view(), &labels),
    );
    Ok(())
}
