//! `curvature parity`: the GPU-against-CPU checks on this machine's adapter,
//! with the digits network, as a table; exit status 1 on any failure. A user
//! with any GPU can check their driver with it.

use super::common::DeviceArgs;
use clap::Args;
use curvature::compare::{compare, Comparison, Tolerance};
use curvature::cpu_engine::CpuEngine;
use curvature::curvature::Curvature;
use curvature::{data, Activation, Error, Loss, Mlp, Result};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// Tolerances of the GPU (f32) against the CPU reference (f64), on the digits
/// network. The f32 results accumulate over N = 1797 samples and up to 65 inputs
/// per unit, so a relative error of a few 1e-5 of the largest entry is expected;
/// `abs` covers entries that cancel to near zero.
const TOL_LOSS: Tolerance = Tolerance {
    abs: 1e-5,
    rel: 1e-5,
};
const TOL_VECTOR: Tolerance = Tolerance {
    abs: 1e-5,
    rel: 1e-3,
};
/// Matrices and diagonals sum more terms (blocks of columns, per-sample outer products).
const TOL_MATRIX: Tolerance = Tolerance {
    abs: 2e-5,
    rel: 2e-3,
};
/// Rows used for the W×W quantities, so that the CPU reference finishes in seconds.
const MATRIX_ROWS: usize = 128;

#[derive(Args, Debug)]
pub struct ParityArgs {
    /// The device to check (default `gpu`: any adapter, software ones included).
    #[arg(long, default_value = "gpu", value_parser = parse_device)]
    pub device: curvature::device::DeviceChoice,
    /// Pick the GPU adapter whose name contains this text.
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Seed of the random parameters and vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_device(s: &str) -> std::result::Result<curvature::device::DeviceChoice, String> {
    s.parse()
}

pub fn run(args: &ParityArgs) -> Result<bool> {
    let device = DeviceArgs {
        device: args.device,
        adapter: args.adapter.clone(),
    }
    .open()?;
    if !device.is_gpu() {
        return Err(Error::Input(
            "parity compares a GPU with the CPU reference, but no GPU adapter was chosen: use `--device gpu`".into(),
        ));
    }
    let ds = data::load_named("digits")?;
    let mlp = Mlp::with_hidden(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let theta = mlp.init_params(args.seed);
    let w = mlp.num_params();
    let v: Vec<f64> = (0..w).map(|_| rng.random_range(-1.0..1.0)).collect();
    let block = Array2::from_shape_fn((8, w), |_| rng.random_range(-1.0..1.0));
    let mut gpu = device.engine(&mlp, ds.x.view(), ds.t.view())?;
    let mut cpu = CpuEngine::new(&mlp, ds.x.view(), ds.t.view())?;
    println!(
        "parity: {} against the CPU reference (f64)",
        device.describe()
    );
    println!(
        "network {} on digits (N = {}), W = {w}",
        mlp.describe(),
        ds.len()
    );
    let all = 0..ds.len();
    let few = 0..MATRIX_ROWS.min(ds.len());
    let mut rows: Vec<(String, usize, Comparison)> = Vec::new();
    let mut check = |name: &str, r: &Range<usize>, g: Vec<f64>, c: Vec<f64>, tol: Tolerance| {
        rows.push((name.to_string(), r.len(), compare(&g, &c, tol)));
    };
    check(
        "loss",
        &all,
        vec![gpu.loss(&theta, all.clone())?],
        vec![cpu.loss(&theta, all.clone())?],
        TOL_LOSS,
    );
    check(
        "gradient",
        &all,
        gpu.loss_grad(&theta, all.clone())?.1,
        cpu.loss_grad(&theta, all.clone())?.1,
        TOL_VECTOR,
    );
    check(
        "Hv",
        &all,
        gpu.hvp(&theta, all.clone(), &v)?,
        cpu.hvp(&theta, all.clone(), &v)?,
        TOL_VECTOR,
    );
    check(
        "Gv",
        &all,
        gpu.gvp(&theta, all.clone(), &v)?,
        cpu.gvp(&theta, all.clone(), &v)?,
        TOL_VECTOR,
    );
    let flat = |m: Array2<f64>| m.into_raw_vec_and_offset().0;
    check(
        "H·V (8 vectors)",
        &all,
        flat(gpu.hvp_block(&theta, all.clone(), block.view())?),
        flat(cpu.hvp_block(&theta, all.clone(), block.view())?),
        TOL_VECTOR,
    );
    check(
        "G·V (8 vectors)",
        &all,
        flat(gpu.gvp_block(&theta, all.clone(), block.view())?),
        flat(cpu.gvp_block(&theta, all.clone(), block.view())?),
        TOL_VECTOR,
    );
    check(
        "diag GGN",
        &all,
        gpu.diag_ggn(&theta, all.clone())?,
        cpu.diag_ggn(&theta, all.clone())?,
        TOL_MATRIX,
    );
    check(
        "diag Becker-LeCun",
        &all,
        gpu.diag_becker_lecun(&theta, all.clone())?,
        cpu.diag_becker_lecun(&theta, all.clone())?,
        TOL_MATRIX,
    );
    check(
        "diag Hessian",
        &few,
        gpu.diag_hessian(&theta, few.clone())?,
        cpu.diag_hessian(&theta, few.clone())?,
        TOL_MATRIX,
    );
    check(
        "Hessian",
        &few,
        flat(gpu.hessian(&theta, few.clone())?),
        flat(cpu.hessian(&theta, few.clone())?),
        TOL_MATRIX,
    );
    check(
        "GGN",
        &few,
        flat(gpu.ggn(&theta, few.clone())?),
        flat(cpu.ggn(&theta, few.clone())?),
        TOL_MATRIX,
    );
    check(
        "outer product",
        &few,
        flat(gpu.outer_product(&theta, few.clone())?),
        flat(cpu.outer_product(&theta, few.clone())?),
        TOL_MATRIX,
    );

    println!(
        "{:<20} {:>5} {:>11} {:>11} {:>20}  result",
        "operation", "rows", "worst abs", "worst rel", "tolerance abs+rel"
    );
    let mut all_passed = true;
    for (name, n, c) in &rows {
        all_passed &= c.passed();
        println!(
            "{:<20} {:>5} {:>11.3e} {:>11.3e} {:>9.0e} + {:<8.0e}  {}",
            name,
            n,
            c.worst_abs,
            c.worst_rel,
            c.tolerance.abs,
            c.tolerance.rel,
            if c.passed() { "pass" } else { "FAIL" }
        );
    }
    for (name, _, c) in rows.iter().filter(|r| !r.2.passed()) {
        println!("{name}: {c}");
    }
    println!(
        "{}",
        if all_passed {
            "all operations agree"
        } else {
            "SOME OPERATIONS DISAGREE"
        }
    );
    Ok(all_passed)
}
