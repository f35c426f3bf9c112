//! `curvature laplace`: the Laplace approximation of a saved classifier (PRML
//! §5.7.3) fitted on the training part of its split — posterior precision
//! N·G_data + αI (full for small W, diagonal otherwise), α by maximising the
//! evidence (MacKay's update) — and the test accuracy, NLL and expected
//! calibration error of the point prediction against the Laplace predictives.

use super::common::{load_model_train_test, DeviceArgs};
use clap::Args;
use curvature::analysis::dense::DEFAULT_MAX_DENSE_EIGEN;
use curvature::analysis::laplace::LaplaceFit;
use curvature::analysis::metrics::{calibration, Calibration, ECE_BINS};
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
    /// Use the diagonal posterior even when W is small enough for the full one.
    #[arg(long)]
    pub diagonal: bool,
    /// The largest W for the full posterior (a W×W eigendecomposition).
    #[arg(long, default_value_t = DEFAULT_MAX_DENSE_EIGEN)]
    pub dense_max: usize,
    /// Monte Carlo draws of θ for the sampled predictive.
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

fn row(name: &str, alpha: Option<f64>, c: &Calibration) {
    let a = alpha.map_or("—".to_string(), |a| format!("{a:.4e}"));
    println!(
        "{name:<40} {a:>11} {:>9.4} {:>10.4} {:>9.4} {:>9.4}",
        c.accuracy, c.confidence, c.nll, c.ece
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
    let full = !args.diagonal && w <= args.dense_max;
    println!(
        "model     {} ({}, W = {w})",
        args.model.display(),
        model.mlp.describe()
    );
    println!(
        "data      {}: posterior from the train part ({} rows), evaluated on the test part ({} rows), on {}",
        train.name,
        train.len(),
        test.len(),
        device.describe()
    );
    let start = Instant::now();
    let fit = LaplaceFit::fit(&mut train_engine, &model.theta, 0..train.len(), full)?;
    println!(
        "posterior A = N·G_data + αI, {} ({:.1} s)",
        if full {
            "full (eigendecomposition of G)"
        } else {
            "diagonal"
        },
        start.elapsed().as_secs_f64()
    );
    let alpha0 = fit.training_alpha().max(f64::MIN_POSITIVE);
    let (alpha, iterations) = fit.optimise_alpha(alpha0.max(1e-6))?;
    println!(
        "evidence  α from training (λ·N) = {alpha0:.4e}: ln p(D|α) = {:.4}",
        fit.log_evidence(alpha0)
    );
    println!(
        "evidence  α* by MacKay's update = {alpha:.4e} ({iterations} iterations): ln p(D|α*) = {:.4}, γ = {:.1} of W = {w}, d ln p/dα = {:.2e}",
        fit.log_evidence(alpha),
        fit.effective_parameters(alpha),
        fit.d_log_evidence(alpha)
    );
    let x_test = test.x.mapv(f64::from);
    let proj = fit.project(x_test.view());
    let map = test_engine.outputs(&model.theta, 0..test.len())?;
    println!();
    println!(
        "test part, {} rows; ECE with {ECE_BINS} equal-width bins",
        test.len()
    );
    println!(
        "{:<40} {:>11} {:>9} {:>10} {:>9} {:>9}",
        "predictive", "α", "accuracy", "confidence", "NLL", "ECE"
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
    let lin = fit.linearised_predictive(&proj, alpha, args.samples, args.seed);
    row(
        &format!("Laplace linearised MC ({} draws), α*", args.samples),
        Some(alpha),
        &calibration(lin.view(), &labels),
    );
    let mc = fit.monte_carlo_predictive(
        &mut test_engine,
        0..test.len(),
        alpha,
        args.samples,
        args.seed,
    )?;
    row(
        &format!("Laplace network MC ({} draws), α*", args.samples),
        Some(alpha),
        &calibration(mc.view(), &labels),
    );
    Ok(())
}
