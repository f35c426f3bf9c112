//! `curvature compute QUANTITY`: one curvature quantity of a saved model on a
//! data set, written to a safetensors file so that it can be checked against
//! PyTorch or JAX. Vectors come in tensor `v` (W) or `V` (k, W); the result goes
//! out in a tensor named after the quantity (f64), or, for the per-layer K-FAC
//! quantities, in one tensor per layer: `layers.{l}.kfac_a` (in_l+1, in_l+1, the bias's
//! 1 last), `layers.{l}.kfac_b` (out_l, out_l), `layers.{l}.ekfac_diag` (out_l, in_l+1).
//! Every result is of E (λ included) except where its help says "data term".

use super::common::{load_model_and_part, DeviceArgs, SplitPart};
use crate::cli::out::outln;
use clap::{Args, ValueEnum};
use curvature::cpu::Fisher;
use curvature::engine::memory::{check_dense_memory, dense_bytes};
use curvature::engine::Curvature;
use curvature::files::{human_bytes, read_tensors, write_tensors, NamedTensor, Overwrite};
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
    /// K-FAC's Kronecker factors of every layer, of the data term (λ enters products, not
    /// factors): A_l = (1/N) Σ z̃z̃ᵀ (in_l+1, in_l+1, z̃ = [z; 1]) and B_l (out_l, out_l) of
    /// --fisher (exact, mc with --samples/--seed, empirical), tensors layers.{l}.kfac_a/_b.
    Kfac,
    /// (K + λI_w)·v with K the K-FAC matrix of --fisher, (K v)_l = B_l V_l A_l; --vectors like hvp.
    KfacVp,
    /// EKFAC's diagonal s_l (out_l, in_l+1) of each layer's --fisher block in the K-FAC
    /// eigenbasis (data term), tensors layers.{l}.ekfac_diag.
    EkfacDiag,
    /// The per-sample gradients ∂E_n/∂θ (N, W), not divided by N (data term: their mean is ∇E − λθ).
    PerSampleGrad,
    /// The empirical Fisher (1/N) Σ_n g_n g_nᵀ + λI_w (W, W) from the per-sample gradients.
    EmpiricalFisher,
    /// The diagonal of the empirical Fisher (W), + λ on weights.
    DiagEmpiricalFisher,
    /// The empirical-Fisher vector product (F + λI_w)·v; --vectors like hvp.
    Efvp,
    /// The diagonal of the Monte-Carlo Fisher (W), --samples targets per row drawn from the
    /// model's likelihood with --seed, + λ on weights.
    DiagMcFisher,
    /// The variance of the per-sample gradients (W), (1/N) Σ_n (g_n − ḡ)² (λ does not change it).
    GradVariance,
}

/// `--fisher`: which Fisher (and which K-FAC B factor).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FisherArg {
    /// The Gauss-Newton output Hessian's square-root columns (KFLR): the Fisher is the GGN.
    Exact,
    /// --samples targets per row sampled from the model's likelihood (seeded by --seed).
    Mc,
    /// The gradient of the observed loss (the empirical Fisher).
    Empirical,
}

/// The largest result of per-sample-grad, N·W entries (2²⁸ f64 = 2 GiB).
const MAX_PER_SAMPLE_ENTRIES: usize = 1 << 28;

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
            Quantity::Kfac => "kfac",
            Quantity::KfacVp => "kfac_vp",
            Quantity::EkfacDiag => "ekfac_diag",
            Quantity::PerSampleGrad => "per_sample_grad",
            Quantity::EmpiricalFisher => "empirical_fisher",
            Quantity::DiagEmpiricalFisher => "diag_empirical_fisher",
            Quantity::Efvp => "efvp",
            Quantity::DiagMcFisher => "diag_mc_fisher",
            Quantity::GradVariance => "grad_variance",
        }
    }

    /// Whether the quantity takes --vectors.
    fn takes_vectors(self) -> bool {
        matches!(
            self,
            Quantity::Hvp | Quantity::Gvp | Quantity::KfacVp | Quantity::Efvp
        )
    }

    /// Whether the quantity is a dense W×W matrix.
    fn is_dense(self) -> bool {
        matches!(
            self,
            Quantity::Hessian
                | Quantity::Ggn
                | Quantity::OuterProduct
                | Quantity::InverseOuterProduct
                | Quantity::FdHessian
                | Quantity::EmpiricalFisher
        )
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
    /// A safetensors file with tensor `v` (W) or `V` (k, W), for hvp, gvp, kfac-vp and efvp.
    #[arg(long)]
    pub vectors: Option<PathBuf>,
    /// α of inverse-outer-product: the inverse is of (outer product + αI).
    #[arg(long, default_value_t = 1e-3)]
    pub alpha: f64,
    /// ε of fd-hessian.
    #[arg(long, default_value_t = 1e-4)]
    pub eps: f64,
    /// Which Fisher K-FAC's B factors are of, for kfac, kfac-vp and ekfac-diag [default: exact].
    #[arg(long, value_enum)]
    pub fisher: Option<FisherArg>,
    /// Targets sampled per row for the Monte-Carlo Fisher (--fisher mc, diag-mc-fisher) [default: 1].
    #[arg(long, value_parser = super::common::at_least_one)]
    pub samples: Option<usize>,
    /// Seed of the Monte-Carlo Fisher's samples (the reference's ChaCha8 stream) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
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
    curvature::files::check_writable(&args.out, overwrite)?;
    let fisher = fisher_of(args)?;
    let (model, ds) = load_model_and_part(&args.model, &args.data, args.split)?;
    let w = model.mlp.num_params();
    let q = args.quantity;
    let vectors = match (&args.vectors, q.takes_vectors()) {
        (Some(path), true) => Some(read_vectors(path, w)?),
        (None, true) => {
            return Err(Error::Input(format!(
                "{} needs --vectors FILE.safetensors with tensor `v` (W = {w}) or `V` (k, {w})",
                q.tensor_name()
            )))
        }
        (Some(_), false) => {
            return Err(Error::Input(format!(
                "--vectors is only used by hvp, gvp, kfac-vp and efvp, not {}",
                q.tensor_name()
            )))
        }
        (None, false) => None,
    };
    check_size(q, w, ds.len())?;
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
    let products = |out: Array2<f64>, single: bool| {
        if single {
            tensor(vec![w], out.into_raw_vec_and_offset().0)
        } else {
            matrix(out)
        }
    };
    let per_layer = |suffix: &str, ms: Vec<Array2<f64>>| -> Vec<NamedTensor> {
        ms.into_iter()
            .enumerate()
            .map(|(l, m)| NamedTensor {
                name: format!("layers.{l}.{suffix}"),
                shape: m.shape().to_vec(),
                data: m.into_raw_vec_and_offset().0,
            })
            .collect()
    };
    let result = match args.quantity {
        Quantity::Kfac => {
            let f = engine.kfac_factors(fisher, theta, rows)?;
            let mut out = per_layer("kfac_a", f.a);
            out.extend(per_layer("kfac_b", f.b));
            out
        }
        Quantity::EkfacDiag => per_layer("ekfac_diag", engine.ekfac(fisher, theta, rows)?.scalings),
        Quantity::KfacVp => {
            let (v, single) = vectors.ok_or_else(|| Error::Input("missing vectors".into()))?;
            vec![products(
                engine.kfac_products(fisher, theta, rows, v.view())?,
                single,
            )]
        }
        Quantity::Efvp => {
            let (v, single) = vectors.ok_or_else(|| Error::Input("missing vectors".into()))?;
            let out = engine.fisher_products(Fisher::Empirical, theta, rows, v.view())?;
            vec![products(out, single)]
        }
        Quantity::PerSampleGrad => vec![matrix(engine.per_sample_gradients(theta, rows)?)],
        Quantity::EmpiricalFisher => {
            vec![matrix(engine.fisher_matrix(
                Fisher::Empirical,
                theta,
                rows,
            )?)]
        }
        Quantity::DiagEmpiricalFisher => {
            let d = engine.fisher_diagonal(Fisher::Empirical, theta, rows)?;
            vec![tensor(vec![w], d)]
        }
        Quantity::DiagMcFisher => vec![tensor(
            vec![w],
            engine.fisher_diagonal(fisher, theta, rows)?,
        )],
        Quantity::GradVariance => vec![tensor(vec![w], engine.gradient_variance(theta, rows)?)],
        other => vec![classical(
            other,
            args,
            &mut engine,
            &device,
            &model,
            &ds,
            vectors,
        )?],
    };
    let mut meta = HashMap::new();
    meta.insert("quantity".to_string(), name.to_string());
    meta.insert("model".to_string(), args.model.display().to_string());
    meta.insert("data".to_string(), ds.name.clone());
    meta.insert("rows".to_string(), ds.len().to_string());
    meta.insert("device".to_string(), device.describe());
    if uses_fisher(q) {
        meta.insert("fisher".to_string(), fisher.name().to_string());
        if let Fisher::Mc { samples, seed } = fisher {
            meta.insert("samples".to_string(), samples.to_string());
            meta.insert("seed".to_string(), seed.to_string());
        }
    }
    let shapes: Vec<Vec<usize>> = result.iter().map(|t| t.shape.clone()).collect();
    let shown = match shapes.as_slice() {
        [one] => format!("{one:?}"),
        many => format!("{} tensors", many.len()),
    };
    write_tensors(&args.out, &result, meta, false, overwrite)?;
    outln!(
        "{name} {shown} of {} on {} rows of {} ({}) in {:.3} s -> {}",
        model.mlp.describe(),
        ds.len(),
        ds.name,
        device.describe(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// The quantities that existed before K-FAC: one tensor each.
#[allow(clippy::too_many_arguments)]
fn classical(
    q: Quantity,
    args: &ComputeArgs,
    engine: &mut dyn Curvature,
    device: &curvature::engine::Device,
    model: &curvature::files::SavedModel,
    ds: &curvature::data::Dataset,
    vectors: Option<(Array2<f64>, bool)>,
) -> Result<NamedTensor> {
    let theta = &model.theta;
    let rows = 0..ds.len();
    let w = theta.len();
    let name = q.tensor_name();
    let tensor = |shape: Vec<usize>, data: Vec<f64>| NamedTensor {
        name: name.to_string(),
        shape,
        data,
    };
    let matrix = |m: Array2<f64>| {
        let shape = m.shape().to_vec();
        tensor(shape, m.into_raw_vec_and_offset().0)
    };
    Ok(match q {
        Quantity::Loss => tensor(vec![], vec![engine.loss(theta, rows)?]),
        Quantity::Grad => tensor(vec![w], engine.loss_grad(theta, rows)?.1),
        Quantity::Hvp | Quantity::Gvp => {
            let (v, single) = vectors.ok_or_else(|| Error::Input("missing vectors".into()))?;
            let out = if q == Quantity::Hvp {
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
        Quantity::FdHessian => matrix(fd_hessian(engine, theta, rows, args.eps)?),
        other => {
            return Err(Error::Internal(format!(
                "{} is not a classical quantity",
                other.tensor_name()
            )))
        }
    })
}

/// Whether the quantity reads --fisher, --samples or --seed.
fn uses_fisher(q: Quantity) -> bool {
    matches!(
        q,
        Quantity::Kfac | Quantity::KfacVp | Quantity::EkfacDiag | Quantity::DiagMcFisher
    )
}

/// The Fisher flavour of --fisher, --samples and --seed, each refused where the
/// quantity does not use it (diag-mc-fisher is mc whatever --fisher says: it takes none).
fn fisher_of(args: &ComputeArgs) -> Result<Fisher> {
    let q = args.quantity;
    let name = q.tensor_name().replace('_', "-");
    if args.fisher.is_some()
        && !matches!(q, Quantity::Kfac | Quantity::KfacVp | Quantity::EkfacDiag)
    {
        return Err(Error::Input(format!(
            "--fisher is only used by kfac, kfac-vp and ekfac-diag, not {name}"
        )));
    }
    let mc = q == Quantity::DiagMcFisher || args.fisher == Some(FisherArg::Mc);
    if !mc && (args.samples.is_some() || args.seed.is_some()) {
        return Err(Error::Input(format!(
            "--samples and --seed are only used by diag-mc-fisher and --fisher mc, not {name}"
        )));
    }
    let samples = args.samples.unwrap_or(1);
    if samples == 0 {
        return Err(Error::Input(
            "--samples must be at least 1 (targets sampled per row)".to_string(),
        ));
    }
    Ok(match (mc, args.fisher) {
        (true, _) => Fisher::Mc {
            samples,
            seed: args.seed.unwrap_or(0),
        },
        (false, Some(FisherArg::Empirical)) => Fisher::Empirical,
        (false, _) => Fisher::Exact,
    })
}

/// Refuses, with the reason, a result too large to build: a dense W×W matrix above the
/// dense limit (`optim::dense::max_dense_params`), per-sample gradients above
/// MAX_PER_SAMPLE_ENTRIES.
fn check_size(q: Quantity, w: usize, n: usize) -> Result<()> {
    let max = curvature::optim::dense::max_dense_params();
    let name = q.tensor_name().replace('_', "-");
    if q.is_dense() && w > max {
        return Err(Error::Input(format!(
            "{name} is a dense W×W matrix, but W = {w} is above the dense limit {max} ({} MiB of \
             f64; this one would be {} bytes, {}): use a diagonal or a product (diag-*, hvp, gvp, \
             efvp, kfac-vp) for this network",
            max * max * 8 / (1 << 20),
            dense_bytes(w, 1),
            human_bytes(dense_bytes(w, 1))
        )));
    }
    // Under the limit it may still not fit this machine: the matrix, the
    // engine's working copy and the file's bytes.
    if q.is_dense() {
        check_dense_memory(
            &name,
            w,
            3,
            "a diagonal or a product (diag-*, hvp, gvp, efvp, kfac-vp)",
        )?;
    }
    if q == Quantity::PerSampleGrad && n.saturating_mul(w) > MAX_PER_SAMPLE_ENTRIES {
        return Err(Error::Input(format!(
            "per-sample-grad would be N×W = {n}×{w} entries, above {MAX_PER_SAMPLE_ENTRIES} \
             (2 GiB of f64): use fewer rows (--split, a smaller data file) or \
             diag-empirical-fisher / grad-variance, which need no N×W result"
        )));
    }
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
