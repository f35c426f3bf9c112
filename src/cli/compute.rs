//! `curvature compute QUANTITY`: one curvature quantity of a saved model on a
//! data set, written to a safetensors file so that it can be checked against
//! PyTorch or JAX. Vectors come in tensor `v` (W) or `V` (k, W); the result goes
//! out in a tensor named after the quantity (f64).

use super::common::{load_model_and_part, DeviceArgs, SplitPart};
use clap::{Args, ValueEnum};
use curvature::engine::Curvature;
use curvature::files::{read_tensors, write_tensors, NamedTensor, Overwrite};
use curvature::{cpu, Error, Result};
use ndarray::Array2;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// E(θ), a scalar.
    Loss,
    /// ∇E (W).
    Grad,
    /// H·v (W) or H·Vᵀ as rows (k, W), exact, by R-propagation. Needs --vectors.
    Hvp,
    /// G·v (Gauss-Newton), like hvp. Needs --vectors.
    Gvp,
    /// The full Hessian H (W, W).
    Hessian,
    /// The full Gauss-Newton matrix G (W, W).
    Ggn,
    /// The exact diagonal of H (W).
    DiagHessian,
    /// The exact diagonal of G (W).
    DiagGgn,
    /// The Becker-LeCun approximation of diag(H) (W), PRML 5.79–5.81.
    DiagBeckerLecun,
    /// The outer-product matrix (PRML 5.84/5.85), accumulated sample by sample (W, W).
    OuterProduct,
    /// (outer product + αI)⁻¹ by sequential Sherman-Morrison (PRML 5.89), on the CPU reference (W, W).
    InverseOuterProduct,
    /// The Hessian by central differences of the gradient (PRML 5.91), symmetrised (W, W).
    FdHessian,
}

impl Quantity {
    /// The tensor name in the output file.
    fn tensor_name(self) -> &'static str {
        match self {
            Quantity::Loss => "loss",
            Quantity::Grad => "grad",
            Quantity::Hvp => "hvp",
            Quantity::Gvp => "gvp",
            Quantity::Hessian => "hessian",
            Quantity::Ggn => "ggn",
            Quantity::DiagHessian => "diag_hessian",
            Quantity::DiagGgn => "diag_ggn",
            Quantity::DiagBeckerLecun => "diag_becker_lecun",
            Quantity::OuterProduct => "outer_product",
            Quantity::InverseOuterProduct => "inverse_outer_product",
            Quantity::FdHessian => "fd_hessian",
        }
    }
}

#[derive(Args, Debug)]
pub struct ComputeArgs {
    /// What to compute.
    #[arg(value_enum)]
    pub quantity: Quantity,
    /// The model file (safetensors, from `curvature train` or numpy/PyTorch with the same names).
    #[arg(long)]
    pub model: PathBuf,
    /// The data: a named set (digits, mnist10k, xor, gaussians, study-hours) or a file.
    #[arg(long)]
    pub data: String,
    /// Which rows: all of them in file order (default), or the model's train / test part.
    #[arg(long, value_enum, default_value = "all")]
    pub split: SplitPart,
    /// A safetensors file with tensor `v` (W) or `V` (k, W), for hvp and gvp.
    #[arg(long)]
    pub vectors: Option<PathBuf>,
    /// α of inverse-outer-product: the inverse is of (outer product + αI).
    #[arg(long, default_value_t = 1e-3)]
    pub alpha: f64,
    /// ε of fd-hessian.
    #[arg(long, default_value_t = 1e-4)]
    pub eps: f64,
    /// The output file (safetensors); the tensor is named after the quantity.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: &ComputeArgs) -> Result<()> {
    let overwrite = if args.force {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    };
    // Refuse before the work, not after it.
    if overwrite == Overwrite::Refuse && args.out.exists() {
        return Err(curvature::files::FileError::Exists {
            path: args.out.clone(),
        }
        .into());
    }
    let (model, ds) = load_model_and_part(&args.model, &args.data, args.split)?;
    let w = model.mlp.num_params();
    let vectors = match (&args.vectors, args.quantity) {
        (Some(path), Quantity::Hvp | Quantity::Gvp) => Some(read_vectors(path, w)?),
        (None, Quantity::Hvp | Quantity::Gvp) => {
            return Err(Error::Input(format!(
                "{} needs --vectors FILE.safetensors with tensor `v` (W = {w}) or `V` (k, {w})",
                args.quantity.tensor_name()
            )))
        }
        (Some(_), _) => {
            return Err(Error::Input(format!(
                "--vectors is only used by hvp and gvp, not {}",
                args.quantity.tensor_name()
            )))
        }
        (None, _) => None,
    };
    let device = args.device.open()?;
    let mut engine = device.engine(&model.mlp, ds.x.view(), ds.t.view())?;
    let theta = &model.theta;
    let rows = 0..ds.len();
    let started = Instant::now();
    let name = args.quantity.tensor_name();
    let tensor = |shape: Vec<usize>, data: Vec<f64>| NamedTensor {
        name: name.to_string(),
        shape,
        data,
    };
    let matrix = |m: Array2<f64>| {
        let shape = m.shape().to_vec();
        tensor(shape, m.into_raw_vec_and_offset().0)
    };
    let result = match args.quantity {
        Quantity::Loss => tensor(vec![], vec![engine.loss(theta, rows)?]),
        Quantity::Grad => tensor(vec![w], engine.loss_grad(theta, rows)?.1),
        Quantity::Hvp | Quantity::Gvp => {
            let (v, single) = vectors.ok_or_else(|| Error::Input("missing vectors".into()))?;
            let out = if args.quantity == Quantity::Hvp {
                engine.hvp_block(theta, rows, v.view())?
            } else {
                engine.gvp_block(theta, rows, v.view())?
            };
            if single {
                tensor(vec![w], out.into_raw_vec_and_offset().0)
            } else {
                matrix(out)
            }
        }
        Quantity::Hessian => matrix(engine.hessian(theta, rows)?),
        Quantity::Ggn => matrix(engine.ggn(theta, rows)?),
        Quantity::DiagHessian => tensor(vec![w], engine.diag_hessian(theta, rows)?),
        Quantity::DiagGgn => tensor(vec![w], engine.diag_ggn(theta, rows)?),
        Quantity::DiagBeckerLecun => tensor(vec![w], engine.diag_becker_lecun(theta, rows)?),
        Quantity::OuterProduct => matrix(engine.outer_product(theta, rows)?),
        Quantity::InverseOuterProduct => {
            if !(args.alpha > 0.0 && args.alpha.is_finite()) {
                return Err(Error::Input(format!(
                    "--alpha must be positive, got {}",
                    args.alpha
                )));
            }
            if device.is_gpu() {
                eprintln!("note: inverse-outer-product runs on the CPU reference (sequential Sherman-Morrison)");
            }
            let x = ds.x.mapv(f64::from);
            let t = ds.t.mapv(f64::from);
            matrix(cpu::inverse_outer_product(
                &model.mlp,
                theta,
                x.view(),
                t.view(),
                args.alpha,
            ))
        }
        Quantity::FdHessian => matrix(fd_hessian(&mut engine, theta, rows, args.eps)?),
    };
    let mut meta = HashMap::new();
    meta.insert("quantity".to_string(), name.to_string());
    meta.insert("model".to_string(), args.model.display().to_string());
    meta.insert("data".to_string(), ds.name.clone());
    meta.insert("rows".to_string(), ds.len().to_string());
    meta.insert("device".to_string(), device.describe());
    let shape = result.shape.clone();
    write_tensors(&args.out, &[result], meta, false, overwrite)?;
    println!(
        "{name} {:?} of {} on {} rows of {} ({}) in {:.3} s -> {}",
        shape,
        model.mlp.describe(),
        ds.len(),
        ds.name,
        device.describe(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// Reads tensor `v` (W) or `V` (k, W): (V as (k, W), whether it was a single `v`).
fn read_vectors(path: &std::path::Path, w: usize) -> Result<(Array2<f64>, bool)> {
    let (tensors, _) = read_tensors(path)?;
    let find = |n: &str| tensors.iter().find(|t| t.name == n);
    let bad = |msg: String| Error::Input(format!("{}: {msg}", path.display()));
    if let Some(v) = find("v") {
        if v.shape != [w] {
            return Err(bad(format!(
                "tensor `v` has shape {:?} but the model has W = {w} parameters",
                v.shape
            )));
        }
        let m = Array2::from_shape_vec((1, w), v.data.clone()).map_err(|e| bad(e.to_string()))?;
        return Ok((m, true));
    }
    if let Some(v) = find("V") {
        if v.shape.len() != 2 || v.shape[1] != w || v.shape[0] == 0 {
            return Err(bad(format!(
                "tensor `V` has shape {:?} but must be (k, W = {w})",
                v.shape
            )));
        }
        let m = Array2::from_shape_vec((v.shape[0], w), v.data.clone())
            .map_err(|e| bad(e.to_string()))?;
        return Ok((m, false));
    }
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    Err(bad(format!(
        "no tensor `v` (W) or `V` (k, W) in it; it has {names:?}"
    )))
}

/// PRML 5.91 through the device: column i = (∇E(θ + εeᵢ) − ∇E(θ − εeᵢ)) / 2ε,
/// then symmetrised, ½(H + Hᵀ). Prints progress, as W gradient pairs take a while.
fn fd_hessian(
    engine: &mut dyn Curvature,
    theta: &[f64],
    rows: std::ops::Range<usize>,
    eps: f64,
) -> Result<Array2<f64>> {
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::Input(format!("--eps must be positive, got {eps}")));
    }
    let w = theta.len();
    let mut h = Array2::<f64>::zeros((w, w));
    let mut probe = theta.to_vec();
    let bar = indicatif::ProgressBar::new(w as u64);
    for i in 0..w {
        probe[i] = theta[i] + eps;
        let (_, gp) = engine.loss_grad(&probe, rows.clone())?;
        probe[i] = theta[i] - eps;
        let (_, gm) = engine.loss_grad(&probe, rows.clone())?;
        probe[i] = theta[i];
        for j in 0..w {
            h[[j, i]] = (gp[j] - gm[j]) / (2.0 * eps);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ht = h.t().to_owned();
    h += &ht;
    h.mapv_inplace(|x| 0.5 * x);
    Ok(h)
}
