//! `curvature parity`: the GPU-against-CPU checks on this machine's adapter,
//! with the digits network, as a table; exit status 1 on any failure. A user
//! with any GPU can check their driver with it.

use super::common::DeviceArgs;
use crate::cli::out::outln;
use clap::Args;
use curvature::cpu::{Fisher, KroneckerFactors};
use curvature::engine::compare::{compare_with_table, Checked, Comparison};
use curvature::engine::Curvature;
use curvature::engine::ReferenceEngine;
use curvature::{data, Activation, Error, Loss, Mlp, Result};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use std::time::Instant;

/// Rows used for the W×W quantities, so that the CPU reference finishes in seconds.
const MATRIX_ROWS: usize = 128;

#[derive(Args, Debug)]
pub struct ParityArgs {
    /// The device to check (default `gpu`: any adapter, software ones included).
    #[arg(long, default_value = "gpu")]
    pub device: curvature::engine::device::DeviceChoice,
    /// Pick the GPU adapter whose name contains this text.
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Seed of the random parameters and vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    let mut cpu = ReferenceEngine::new(&mlp, ds.x.view(), ds.t.view())?;
    outln!(
        "parity: {} against the CPU reference (f64)",
        device.describe()
    );
    outln!(
        "network {} on digits (N = {}), W = {w}",
        mlp.describe(),
        ds.len()
    );
    let all = 0..ds.len();
    let few = 0..MATRIX_ROWS.min(ds.len());
    let flat = |m: Array2<f64>| m.into_raw_vec_and_offset().0;
    // The tolerance table's rows (engine/compare.rs), by the device's precision.
    let precision = device.precision();
    outln!(
        "{:<23} {:>5} {:>11} {:>11} {:>20}  {:>9} {:>9}  result",
        "operation",
        "rows",
        "worst abs",
        "worst rel",
        "tolerance abs+rel",
        "GPU s",
        "CPU s"
    );
    // Each row is printed as soon as it is measured (on a software adapter the whole
    // table takes minutes); an operation that fails is a FAIL row, and the rest still run.
    let mut failed: Vec<(&str, String)> = Vec::new();
    macro_rules! check {
        ($name:expr, $r:expr, $tol:expr, |$e:ident| $op:expr) => {{
            let r: Range<usize> = $r;
            let t0 = Instant::now();
            let g: Result<Vec<f64>> = (|| Ok({ let $e = &mut gpu; $op }))();
            let t1 = Instant::now();
            // After a device error the reference's work would only delay the next row.
            let c: Result<Vec<f64>> = match &g {
                Ok(_) => (|| Ok({ let $e = &mut cpu; $op }))(),
                Err(_) => Ok(Vec::new()),
            };
            let t2 = Instant::now();
            let (gpu_s, cpu_s) = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
            match (g, c) {
                (Ok(g), Ok(c)) => {
                    let c = compare_with_table(&g, &c, precision, $tol);
                    print_row($name, r.len(), &c, gpu_s, cpu_s);
                    if !c.passed() {
                        failed.push(($name, c.to_string()));
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    outln!("{:<23} {:>5} {:>55}  FAIL (error)", $name, r.len(), "");
                    failed.push(($name, e.to_string()));
                }
            }
        }};
    }
    check!("loss", all.clone(), Checked::Loss, |e| vec![
        e.loss(&theta, all.clone())?
    ]);
    check!("gradient", all.clone(), Checked::Gradient, |e| e
        .loss_grad(&theta, all.clone())?
        .1);
    check!("Hv", all.clone(), Checked::Curvature, |e| e.hvp(
        &theta,
        all.clone(),
        &v
    )?);
    check!("Gv", all.clone(), Checked::Curvature, |e| e.gvp(
        &theta,
        all.clone(),
        &v
    )?);
    check!("H·V (8 vectors)", all.clone(), Checked::Curvature, |e| {
        flat(e.hvp_block(&theta, all.clone(), block.view())?)
    });
    check!("G·V (8 vectors)", all.clone(), Checked::Curvature, |e| {
        flat(e.gvp_block(&theta, all.clone(), block.view())?)
    });
    check!("diag GGN", all.clone(), Checked::Curvature, |e| e
        .diag_ggn(&theta, all.clone())?);
    check!("diag Becker-LeCun", all.clone(), Checked::Curvature, |e| e
        .diag_becker_lecun(&theta, all.clone())?);
    check!("diag Hessian", few.clone(), Checked::Curvature, |e| e
        .diag_hessian(&theta, few.clone())?);
    check!("Hessian", few.clone(), Checked::Curvature, |e| flat(
        e.hessian(&theta, few.clone())?
    ));
    check!("GGN", few.clone(), Checked::Curvature, |e| flat(
        e.ggn(&theta, few.clone())?
    ));
    check!("outer product", few.clone(), Checked::Curvature, |e| flat(
        e.outer_product(&theta, few.clone())?
    ));
    // K-FAC factors of each flavour (A's then B's) and the per-sample gradients.
    let factors = |f: KroneckerFactors| -> Vec<f64> {
        f.a.iter()
            .chain(&f.b)
            .flat_map(|m| m.iter().copied())
            .collect()
    };
    let mc = Fisher::Mc {
        samples: 1,
        seed: args.seed,
    };
    for (name, fisher) in [
        ("K-FAC factors exact", Fisher::Exact),
        ("K-FAC factors mc", mc),
        ("K-FAC factors empirical", Fisher::Empirical),
    ] {
        check!(name, all.clone(), Checked::Curvature, |e| factors(
            e.kfac_factors(fisher, &theta, all.clone())?
        ));
    }
    check!(
        "per-sample gradients",
        all.clone(),
        Checked::Gradient,
        |e| flat(e.per_sample_gradients(&theta, all.clone())?)
    );

    for (name, why) in &failed {
        outln!("{name}: {why}");
    }
    let all_passed = failed.is_empty();
    outln!(
        "{}",
        if all_passed {
            "all operations agree"
        } else {
            "SOME OPERATIONS DISAGREE"
        }
    );
    Ok(all_passed)
}

/// One row of the table.
fn print_row(name: &str, n: usize, c: &Comparison, gpu_s: f64, cpu_s: f64) {
    outln!(
        "{:<23} {:>5} {:>11.3e} {:>11.3e} {:>9.0e} + {:<8.0e}  {:>9.4} {:>9.4}  {}",
        name,
        n,
        c.worst_abs,
        c.worst_rel,
        c.tolerance.abs,
        c.tolerance.rel,
        gpu_s,
        cpu_s,
        if c.passed() { "pass" } else { "FAIL" }
    );
}
