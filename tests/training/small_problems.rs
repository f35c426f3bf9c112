//! The notes' small problems: `xor` with every optimizer, and `study-hours`
//! with BFGS.
//!
//! xor: 2-3-1, sigmoid hidden, sigmoid output + `bce`, λ = 0, θ₀ = init seed 0
//! (seed 0 works for every optimizer; a scan of seeds 0–9 found 0, 3, 5 and 7
//! good for all, the others leave one of cg-*/bfgs/lbfgs/hessian-diag in the
//! local minimum that gets 3 of 4 points right). Pass: E < `XOR_LOSS` and
//! 100 % accuracy within the budget in `xor_optimizers()`. First-order
//! methods get the larger learning rates this tiny, flat problem needs.
//!
//! study-hours (Welch Labs' "Neural networks demystified"): 2-3-1 sigmoid /
//! sigmoid output + `sse`, λ = 0, θ₀ = init seed 0; BFGS must bring E below
//! `STUDY_HOURS_LOSS` in fewer than 100 iterations.

use crate::optim_support;
use curvature::data::load_named;
use curvature::optim::OptimizerSpec;
use curvature::train::accuracy;
use curvature::{Activation, Loss, Mlp};
use optim_support::{run, CPU};

/// E = mean bce < 0.01 means Σ_n −log p(correct)_n < 0.04, so every point's
/// correct-class probability exceeds e^−0.04 ≈ 0.96: solved, with margin.
const XOR_LOSS: f64 = 0.01;
/// "A cost near zero": the targets are 0.75–0.93, so E < 1e-3 means every
/// output within √(2·3·1e-3) ≈ 0.08 of its target (the brief's threshold;
/// the run is reported to reach far lower).
const STUDY_HOURS_LOSS: f64 = 1e-3;
/// 13 parameters can fit 3 points exactly, so within the 100 iterations BFGS
/// should go on to a fit exact to far beyond any display precision.
const STUDY_HOURS_EXACT_FIT: f64 = 1e-12;
/// Fewer than this many BFGS iterations (the bound).
const STUDY_HOURS_ITERATIONS: usize = 100;

/// (name, parameters, budget) for xor.
fn xor_optimizers() -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("gd", "lr=2", 5000),
        ("momentum", "lr=0.5", 5000),
        ("nesterov", "lr=0.5", 5000),
        ("adam", "lr=0.05", 5000),
        ("adamw", "lr=0.05,weight-decay=0", 5000),
        ("rmsprop", "lr=0.01", 5000),
        ("rmsprop", "lr=0.01,centered=true,momentum=0.5", 5000),
        ("adagrad", "lr=0.5", 5000),
        ("newton", "", 200),
        ("hessian-diag", "lr=0.5", 5000),
        ("lm", "", 200),
        ("cg-fr", "", 500),
        ("cg-pr", "", 500),
        ("cg-hs", "", 500),
        ("cg-dy", "", 500),
        ("cg-pr", "line-search=hessian", 500),
        ("bfgs", "", 500),
        ("lbfgs", "", 500),
        ("hf", "", 200),
        ("kfac", "", 500),
        ("kfac", "fisher=exact", 500),
    ]
}

#[test]
fn xor_is_solved_by_every_optimizer() {
    let ds = load_named("xor").unwrap();
    let mlp = Mlp::new(
        &[2, 3, 1],
        &[Activation::Sigmoid, Activation::Sigmoid],
        Loss::Bce,
        0.0,
    )
    .unwrap();
    let mut failures = Vec::new();
    for (name, params, budget) in xor_optimizers() {
        let mut spec: OptimizerSpec = name.parse().unwrap();
        spec.set_all(params).unwrap();
        let mut engine = (CPU.make)(&mlp, ds.x.view(), ds.t.view());
        let mut theta = mlp.init_params(0);
        let reports = run(&spec, engine.as_mut(), &mut theta, budget, 1e-12);
        let e = engine.loss(&theta, 0..4).unwrap();
        let acc = accuracy(&engine.outputs(&theta, 0..4).unwrap(), ds.t.view()).unwrap();
        println!(
            "xor {name} {params}: {} steps, E = {e:.2e}, accuracy {acc}",
            reports.len()
        );
        if !(e < XOR_LOSS && acc == 1.0) {
            failures.push(format!("{name} {params}: E = {e:e}, accuracy {acc}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn study_hours_bfgs_reaches_a_cost_near_zero_in_under_100_iterations() {
    let ds = load_named("study-hours").unwrap();
    let mlp = Mlp::new(
        &[2, 3, 1],
        &[Activation::Sigmoid, Activation::Sigmoid],
        Loss::Sse,
        0.0,
    )
    .unwrap();
    let mut engine = (CPU.make)(&mlp, ds.x.view(), ds.t.view());
    let mut theta = mlp.init_params(0);
    let mut opt = "bfgs".parse::<OptimizerSpec>().unwrap().build();
    let mut iterations = 0;
    let mut e = engine.loss(&theta, 0..3).unwrap();
    while e >= STUDY_HOURS_LOSS && iterations < STUDY_HOURS_ITERATIONS {
        let r = opt.step(engine.as_mut(), &mut theta, 0..3).unwrap();
        e = r.loss_after.unwrap();
        iterations += 1;
    }
    println!("study-hours bfgs: E = {e:.3e} after {iterations} iterations");
    assert!(
        e < STUDY_HOURS_LOSS,
        "E = {e:e} after {iterations} iterations"
    );
    // How far it goes with 100 iterations in all, for the report.
    for _ in iterations..STUDY_HOURS_ITERATIONS {
        e = opt
            .step(engine.as_mut(), &mut theta, 0..3)
            .unwrap()
            .loss_after
            .unwrap();
    }
    println!("study-hours bfgs: E = {e:.3e} after {STUDY_HOURS_ITERATIONS} iterations");
    assert!(
        e < STUDY_HOURS_EXACT_FIT,
        "E = {e:e} after {STUDY_HOURS_ITERATIONS} iterations"
    );
}
