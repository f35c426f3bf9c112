//! `OptimizerSpec`: an optimizer's name and parameters, parsed from the CLI
//! (`"cg-pr".parse()`, then `set("line-search", "hessian")`) and built into a
//! boxed [`Optimizer`]; its stored form for checkpoints
//! (`optimizer=cg-pr,line-search=hessian`: [`OptimizerSpec::to_stored`],
//! [`OptimizerSpec::from_stored`]); and the training defaults that go with
//! each optimizer ([`TrainingDefaults`]).
//! (About 650 lines, over the ~600 guideline: every optimizer's keys, ranges,
//! defaults and stored form are one table, so a new optimizer is one entry here.)
//!
//! Defaults (each optimizer's doc comment gives its equations):
//!
//! | name | parameters (`set` keys) and defaults |
//! |------|------------------------------------------|
//! | `gd` | `lr` 0.1 |
//! | `momentum`, `nesterov` | `lr` 0.1, `momentum` 0.9 |
//! | `adam` | `lr` 1e-3, `beta1` 0.9, `beta2` 0.999, `eps` 1e-8, `amsgrad` false |
//! | `adamw` | as `adam`, and `weight-decay` 1e-2 |
//! | `rmsprop` | `lr` 1e-2, `alpha` 0.99, `eps` 1e-8, `momentum` 0, `centered` false |
//! | `adagrad` | `lr` 1e-2, `lr-decay` 0, `initial-accumulator-value` 0, `eps` 1e-10 |
//! | `newton` | `damping` (c) 1, `max-dense` 8192 |
//! | `hessian-diag` | `lr` 0.1, `min-eigval` 0.01, `diagonal` exact \| becker-lecun |
//! | `levenberg-marquardt`, `lm` | `damping` (μ) 0.01, `max-dense` 8192 |
//! | `cg-fr`, `cg-pr`, `cg-hs`, `cg-dy` | `line-search` wolfe \| hessian, `restart` W |
//! | `bfgs` | `max-dense` 8192 |
//! | `lbfgs` | `history` 10 |
//! | `hessian-free`, `hf` | `damping` (λ) 1, `max-cg` 250, `preconditioner` false, `curvature-fraction` 1 |
//! | `kfac` | `damping` (λ₀) 1, `fisher` mc \| exact \| empirical, `samples` 1, `seed` 0, `decay` 0.95, `inverse-every` 20, `damping-every` 5, `momentum` true, `tikhonov` factored \| plain |
//!
//! Every first-order method (the first seven rows) also takes the schedule
//! keys ([`SCHEDULE_KEYS`]): `schedule` constant \| step \| exponential \|
//! cosine, `gamma`, `step-size` 30, `min-lr` 0, `warmup` 0, `warmup-factor`
//! 1/3 ([`schedule`](super::schedule) gives their meaning).

use super::adagrad::{Adagrad, AdagradConfig};
use super::adam::{Adam, AdamConfig};
use super::bfgs::{Bfgs, BfgsConfig};
use super::cg::{BetaFormula, CgConfig, ConjugateGradient, StepLength};
use super::damping::Damping;
use super::gd::{GdConfig, GradientDescent, Momentum};
use super::hessian_diag::{HessianDiagConfig, HessianDiagonal};
use super::hessian_free::{HessianFree, HessianFreeConfig};
use super::kfac::{Kfac, KfacConfig, KfacFisher, Tikhonov};
use super::lbfgs::{Lbfgs, LbfgsConfig};
use super::levenberg_marquardt;
use super::line_search::WolfeConfig;
use super::newton::{DampedNewton, NewtonConfig};
use super::rmsprop::{RmsProp, RmsPropConfig};
use super::schedule::{Schedule, SCHEDULE_KEYS};
use super::{OptimError, Optimizer, Result};
use crate::engine::Diagonal;
use std::fmt;
use std::str::FromStr;

/// Every name [`OptimizerSpec::from_str`] accepts (aliases included).
pub const OPTIMIZER_NAMES: [&str; 20] = [
    "gd",
    "momentum",
    "nesterov",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    "newton",
    "hessian-diag",
    "levenberg-marquardt",
    "lm",
    "cg-fr",
    "cg-pr",
    "cg-hs",
    "cg-dy",
    "bfgs",
    "lbfgs",
    "hessian-free",
    "hf",
    "kfac",
];

/// What training uses for an optimizer when the caller does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainingDefaults {
    /// Passes over the training data.
    pub epochs: usize,
    /// Rows per update; None = the full batch (second-order and line-search
    /// methods need the same rows at every trial point of a step).
    pub batch_size: Option<usize>,
    /// Epochs between checkpoints. A checkpoint bounds what a hard kill
    /// (SIGKILL, power loss, a device fault) loses, at the cost of writing θ
    /// and the optimizer's state (with a sync): O(W) states are written every
    /// 10 epochs (a few ms for 60 KB at W = 3760, beside seconds of training).
    pub checkpoint_every: usize,
}

/// An optimizer with its parameters, before it is built.
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerSpec {
    GradientDescent(GdConfig),
    /// `adam` and `adamw` (`weight_decay` set).
    Adam(AdamConfig),
    RmsProp(RmsPropConfig),
    Adagrad(AdagradConfig),
    Newton(NewtonConfig),
    HessianDiagonal(HessianDiagConfig),
    LevenbergMarquardt(NewtonConfig),
    ConjugateGradient(CgConfig),
    Bfgs(BfgsConfig),
    Lbfgs(LbfgsConfig),
    HessianFree(HessianFreeConfig),
    Kfac(KfacConfig),
}

impl FromStr for OptimizerSpec {
    type Err = OptimError;

    /// The named optimizer with its defaults.
    fn from_str(name: &str) -> Result<OptimizerSpec> {
        use OptimizerSpec as S;
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "gd" => S::GradientDescent(GdConfig::new(Momentum::None)),
            "momentum" => S::GradientDescent(GdConfig::new(Momentum::Classical)),
            "nesterov" => S::GradientDescent(GdConfig::new(Momentum::Nesterov)),
            "adam" => S::Adam(AdamConfig::adam()),
            "adamw" => S::Adam(AdamConfig::adamw()),
            "rmsprop" => S::RmsProp(RmsPropConfig::default()),
            "adagrad" => S::Adagrad(AdagradConfig::default()),
            "newton" => S::Newton(NewtonConfig::default()),
            "hessian-diag" => S::HessianDiagonal(HessianDiagConfig::default()),
            "levenberg-marquardt" | "lm" => {
                S::LevenbergMarquardt(levenberg_marquardt::default_config())
            }
            "cg-fr" => S::ConjugateGradient(CgConfig::new(BetaFormula::FletcherReeves)),
            "cg-pr" => S::ConjugateGradient(CgConfig::new(BetaFormula::PolakRibierePlus)),
            "cg-hs" => S::ConjugateGradient(CgConfig::new(BetaFormula::HestenesStiefel)),
            "cg-dy" => S::ConjugateGradient(CgConfig::new(BetaFormula::DaiYuan)),
            "bfgs" => S::Bfgs(BfgsConfig::default()),
            "lbfgs" => S::Lbfgs(LbfgsConfig::default()),
            "hessian-free" | "hf" => S::HessianFree(HessianFreeConfig::default()),
            "kfac" => S::Kfac(KfacConfig::default()),
            _ => {
                return Err(OptimError::UnknownOptimizer {
                    name: name.to_string(),
                })
            }
        })
    }
}

impl fmt::Display for OptimizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `value` as a number; with `positive`, one > 0.
pub(super) fn parse<T>(optimizer: &str, key: &str, value: &str, positive: bool) -> Result<T>
where
    T: FromStr + PartialOrd + Default,
{
    let bad = |reason: &str| OptimError::BadParameter {
        optimizer: optimizer.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v: T = value.trim().parse().map_err(|_| bad("not a number"))?;
    // `inf` and `NaN` parse as f64 but are no setting (an infinite step, a NaN damping).
    if value.trim().parse::<f64>().is_ok_and(|f| !f.is_finite()) {
        return Err(bad("must be a finite number"));
    }
    if positive && v.partial_cmp(&T::default()) != Some(std::cmp::Ordering::Greater) {
        return Err(bad("must be positive"));
    }
    Ok(v)
}

/// `value` as a finite number in `range` (`reason` says which, for the message).
fn parse_in(
    optimizer: &str,
    key: &str,
    value: &str,
    range: impl std::ops::RangeBounds<f64>,
    reason: &str,
) -> Result<f64> {
    let v: f64 = parse(optimizer, key, value, false)?;
    if v.is_finite() && range.contains(&v) {
        Ok(v)
    } else {
        Err(OptimError::BadParameter {
            optimizer: optimizer.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        })
    }
}

/// `value` as a finite number ≥ 0.
pub(super) fn parse_non_negative(optimizer: &str, key: &str, value: &str) -> Result<f64> {
    parse_in(optimizer, key, value, 0.0.., "must be ≥ 0")
}

/// `value` as a decay or smoothing constant in [0, 1).
fn parse_decay(optimizer: &str, key: &str, value: &str) -> Result<f64> {
    parse_in(optimizer, key, value, 0.0..1.0, "must be in [0, 1)")
}

fn parse_bool(optimizer: &str, key: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(OptimError::BadParameter {
            optimizer: optimizer.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected true or false".to_string(),
        }),
    }
}

impl OptimizerSpec {
    /// The canonical CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerSpec::GradientDescent(c) => match c.kind {
                Momentum::None => "gd",
                Momentum::Classical => "momentum",
                Momentum::Nesterov => "nesterov",
            },
            OptimizerSpec::Adam(c) => c.name(),
            OptimizerSpec::RmsProp(_) => "rmsprop",
            OptimizerSpec::Adagrad(_) => "adagrad",
            OptimizerSpec::Newton(_) => "newton",
            OptimizerSpec::HessianDiagonal(_) => "hessian-diag",
            OptimizerSpec::LevenbergMarquardt(_) => "levenberg-marquardt",
            OptimizerSpec::ConjugateGradient(c) => c.beta.name(),
            OptimizerSpec::Bfgs(_) => "bfgs",
            OptimizerSpec::Lbfgs(_) => "lbfgs",
            OptimizerSpec::HessianFree(_) => "hessian-free",
            OptimizerSpec::Kfac(_) => "kfac",
        }
    }

    /// The learning-rate schedule of a first-order method; None for the others.
    pub fn schedule(&self) -> Option<&Schedule> {
        match self {
            OptimizerSpec::GradientDescent(c) => Some(&c.schedule),
            OptimizerSpec::Adam(c) => Some(&c.schedule),
            OptimizerSpec::RmsProp(c) => Some(&c.schedule),
            OptimizerSpec::Adagrad(c) => Some(&c.schedule),
            _ => None,
        }
    }

    fn schedule_mut(&mut self) -> Option<&mut Schedule> {
        match self {
            OptimizerSpec::GradientDescent(c) => Some(&mut c.schedule),
            OptimizerSpec::Adam(c) => Some(&mut c.schedule),
            OptimizerSpec::RmsProp(c) => Some(&mut c.schedule),
            OptimizerSpec::Adagrad(c) => Some(&mut c.schedule),
            _ => None,
        }
    }

    /// The keys [`set`](Self::set) accepts for this optimizer: its own, then
    /// for a first-order method the schedule keys ([`SCHEDULE_KEYS`]).
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = self.own_keys();
        if self.schedule().is_some() {
            keys.extend(SCHEDULE_KEYS);
        }
        keys
    }

    /// The keys of the optimizer's own parameters (no schedule keys).
    fn own_keys(&self) -> Vec<&'static str> {
        match self {
            OptimizerSpec::GradientDescent(c) if c.kind == Momentum::None => vec!["lr"],
            OptimizerSpec::GradientDescent(_) => vec!["lr", "momentum"],
            OptimizerSpec::Adam(c) if c.weight_decay.is_some() => {
                vec!["lr", "beta1", "beta2", "eps", "amsgrad", "weight-decay"]
            }
            OptimizerSpec::Adam(_) => vec!["lr", "beta1", "beta2", "eps", "amsgrad"],
            OptimizerSpec::RmsProp(_) => vec!["lr", "alpha", "eps", "momentum", "centered"],
            OptimizerSpec::Adagrad(_) => {
                vec!["lr", "lr-decay", "initial-accumulator-value", "eps"]
            }
            OptimizerSpec::Newton(_) | OptimizerSpec::LevenbergMarquardt(_) => {
                vec!["damping", "max-dense"]
            }
            OptimizerSpec::HessianDiagonal(_) => vec!["lr", "min-eigval", "diagonal"],
            OptimizerSpec::ConjugateGradient(_) => vec!["line-search", "restart"],
            OptimizerSpec::Bfgs(_) => vec!["max-dense"],
            OptimizerSpec::Lbfgs(_) => vec!["history"],
            OptimizerSpec::HessianFree(_) => {
                vec!["damping", "max-cg", "preconditioner", "curvature-fraction"]
            }
            OptimizerSpec::Kfac(_) => vec![
                "damping",
                "fisher",
                "samples",
                "seed",
                "decay",
                "inverse-every",
                "damping-every",
                "momentum",
                "tikhonov",
            ],
        }
    }

    /// One parameter as text, e.g. `get("lr")` = `Some("0.1")`: what
    /// [`set`](Self::set) with that text would give. None for a key this
    /// optimizer does not have, and for `restart` of CG when it is unset
    /// (every W iterations), and for a schedule's `gamma` when it is unset
    /// (the schedule's default). Floats in Rust's shortest round-trip form.
    pub fn get(&self, key: &str) -> Option<String> {
        if !self.keys().contains(&key) {
            return None;
        }
        if SCHEDULE_KEYS.contains(&key) {
            return self.schedule().and_then(|s| s.get(key));
        }
        let float = |v: f64| format!("{v:?}");
        let words = |v: &str| Some(v.to_string());
        match (self, key) {
            (OptimizerSpec::GradientDescent(c), "lr") => Some(float(c.learning_rate)),
            (OptimizerSpec::GradientDescent(c), "momentum") => Some(float(c.momentum)),
            (OptimizerSpec::Adam(c), "lr") => Some(float(c.learning_rate)),
            (OptimizerSpec::Adam(c), "beta1") => Some(float(c.beta1)),
            (OptimizerSpec::Adam(c), "beta2") => Some(float(c.beta2)),
            (OptimizerSpec::Adam(c), "eps") => Some(float(c.eps)),
            (OptimizerSpec::Adam(c), "amsgrad") => Some(c.amsgrad.to_string()),
            (OptimizerSpec::Adam(c), "weight-decay") => c.weight_decay.map(float),
            (OptimizerSpec::RmsProp(c), "lr") => Some(float(c.learning_rate)),
            (OptimizerSpec::RmsProp(c), "alpha") => Some(float(c.alpha)),
            (OptimizerSpec::RmsProp(c), "eps") => Some(float(c.eps)),
            (OptimizerSpec::RmsProp(c), "momentum") => Some(float(c.momentum)),
            (OptimizerSpec::RmsProp(c), "centered") => Some(c.centered.to_string()),
            (OptimizerSpec::Adagrad(c), "lr") => Some(float(c.learning_rate)),
            (OptimizerSpec::Adagrad(c), "lr-decay") => Some(float(c.lr_decay)),
            (OptimizerSpec::Adagrad(c), "initial-accumulator-value") => {
                Some(float(c.initial_accumulator_value))
            }
            (OptimizerSpec::Adagrad(c), "eps") => Some(float(c.eps)),
            (OptimizerSpec::Newton(c) | OptimizerSpec::LevenbergMarquardt(c), "damping") => {
                Some(float(c.damping.value))
            }
            (OptimizerSpec::Newton(c) | OptimizerSpec::LevenbergMarquardt(c), "max-dense") => {
                Some(c.max_dense_params.to_string())
            }
            (OptimizerSpec::HessianDiagonal(c), "lr") => Some(float(c.learning_rate)),
            (OptimizerSpec::HessianDiagonal(c), "min-eigval") => Some(float(c.min_eigval)),
            (OptimizerSpec::HessianDiagonal(c), "diagonal") => match c.diagonal {
                Diagonal::Hessian => words("exact"),
                Diagonal::BeckerLeCun => words("becker-lecun"),
                Diagonal::GaussNewton => words("ggn"),
            },
            (OptimizerSpec::ConjugateGradient(c), "line-search") => match c.step_length {
                StepLength::Wolfe(_) => words("wolfe"),
                StepLength::Hessian(_) => words("hessian"),
            },
            (OptimizerSpec::ConjugateGradient(c), "restart") => {
                c.restart_every.map(|k| k.to_string())
            }
            (OptimizerSpec::Bfgs(c), "max-dense") => Some(c.max_dense_params.to_string()),
            (OptimizerSpec::Lbfgs(c), "history") => Some(c.history.to_string()),
            (OptimizerSpec::HessianFree(c), "damping") => Some(float(c.initial_damping)),
            (OptimizerSpec::HessianFree(c), "max-cg") => Some(c.max_cg_iterations.to_string()),
            (OptimizerSpec::HessianFree(c), "preconditioner") => Some(c.preconditioner.to_string()),
            (OptimizerSpec::HessianFree(c), "curvature-fraction") => {
                Some(float(c.curvature_fraction))
            }
            (OptimizerSpec::Kfac(c), "damping") => Some(float(c.initial_damping)),
            (OptimizerSpec::Kfac(c), "fisher") => words(c.fisher.name()),
            (OptimizerSpec::Kfac(c), "samples") => Some(c.samples.to_string()),
            (OptimizerSpec::Kfac(c), "seed") => Some(c.seed.to_string()),
            (OptimizerSpec::Kfac(c), "decay") => Some(float(c.decay)),
            (OptimizerSpec::Kfac(c), "inverse-every") => Some(c.inverse_every.to_string()),
            (OptimizerSpec::Kfac(c), "damping-every") => Some(c.damping_every.to_string()),
            (OptimizerSpec::Kfac(c), "momentum") => Some(c.momentum.to_string()),
            (OptimizerSpec::Kfac(c), "tikhonov") => words(c.tikhonov.name()),
            _ => None,
        }
    }

    /// Sets one parameter from text, e.g. `set("lr", "0.5")`; an unknown key
    /// is an error listing this optimizer's keys.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let name = self.name();
        let unknown = |s: &OptimizerSpec| OptimError::UnknownParameter {
            optimizer: name.to_string(),
            key: key.to_string(),
            known: s.keys(),
        };
        let bad = |reason: &str| OptimError::BadParameter {
            optimizer: name.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let keys = self.keys();
        if !keys.contains(&key) {
            return Err(unknown(self));
        }
        if SCHEDULE_KEYS.contains(&key) {
            return match self.schedule_mut() {
                Some(schedule) => schedule.set(name, key, value),
                None => Err(unknown(self)),
            };
        }
        match (self, key) {
            (OptimizerSpec::GradientDescent(c), "lr") => {
                c.learning_rate = parse(name, key, value, true)?
            }
            // μ ≥ 1 makes the velocity grow without bound (E ≈ 1e307 at μ = 2).
            (OptimizerSpec::GradientDescent(c), "momentum") => {
                c.momentum = parse_decay(name, key, value)?
            }
            (OptimizerSpec::Adam(c), "lr") => c.learning_rate = parse(name, key, value, true)?,
            (OptimizerSpec::Adam(c), "beta1") => c.beta1 = parse_decay(name, key, value)?,
            (OptimizerSpec::Adam(c), "beta2") => c.beta2 = parse_decay(name, key, value)?,
            (OptimizerSpec::Adam(c), "eps") => c.eps = parse(name, key, value, true)?,
            (OptimizerSpec::Adam(c), "amsgrad") => c.amsgrad = parse_bool(name, key, value)?,
            (OptimizerSpec::Adam(c), "weight-decay") => {
                c.weight_decay = Some(parse_non_negative(name, key, value)?)
            }
            (OptimizerSpec::RmsProp(c), "lr") => c.learning_rate = parse(name, key, value, true)?,
            (OptimizerSpec::RmsProp(c), "alpha") => c.alpha = parse_decay(name, key, value)?,
            (OptimizerSpec::RmsProp(c), "eps") => c.eps = parse(name, key, value, true)?,
            (OptimizerSpec::RmsProp(c), "momentum") => c.momentum = parse_decay(name, key, value)?,
            (OptimizerSpec::RmsProp(c), "centered") => c.centered = parse_bool(name, key, value)?,
            (OptimizerSpec::Adagrad(c), "lr") => c.learning_rate = parse(name, key, value, true)?,
            (OptimizerSpec::Adagrad(c), "lr-decay") => {
                c.lr_decay = parse_non_negative(name, key, value)?
            }
            (OptimizerSpec::Adagrad(c), "initial-accumulator-value") => {
                c.initial_accumulator_value = parse_non_negative(name, key, value)?
            }
            (OptimizerSpec::Adagrad(c), "eps") => c.eps = parse(name, key, value, true)?,
            (OptimizerSpec::Newton(c) | OptimizerSpec::LevenbergMarquardt(c), "damping") => {
                c.damping = Damping::new(parse(name, key, value, true)?)
            }
            (OptimizerSpec::Newton(c) | OptimizerSpec::LevenbergMarquardt(c), "max-dense") => {
                c.max_dense_params = parse(name, key, value, true)?
            }
            (OptimizerSpec::HessianDiagonal(c), "lr") => {
                c.learning_rate = parse(name, key, value, true)?
            }
            (OptimizerSpec::HessianDiagonal(c), "min-eigval") => {
                c.min_eigval = parse(name, key, value, true)?
            }
            (OptimizerSpec::HessianDiagonal(c), "diagonal") => {
                c.diagonal = match value.trim() {
                    "exact" => Diagonal::Hessian,
                    "becker-lecun" | "bl" => Diagonal::BeckerLeCun,
                    "ggn" | "gauss-newton" => Diagonal::GaussNewton,
                    _ => return Err(bad("expected exact, becker-lecun or ggn")),
                }
            }
            (OptimizerSpec::ConjugateGradient(c), "line-search") => {
                c.step_length = match value.trim() {
                    "wolfe" => StepLength::Wolfe(WolfeConfig::conjugate_gradient()),
                    "hessian" => StepLength::Hessian(WolfeConfig::conjugate_gradient()),
                    _ => return Err(bad("expected wolfe or hessian")),
                }
            }
            (OptimizerSpec::ConjugateGradient(c), "restart") => {
                c.restart_every = Some(parse(name, key, value, true)?)
            }
            (OptimizerSpec::Bfgs(c), "max-dense") => {
                c.max_dense_params = parse(name, key, value, true)?
            }
            (OptimizerSpec::Lbfgs(c), "history") => c.history = parse(name, key, value, true)?,
            (OptimizerSpec::HessianFree(c), "damping") => {
                c.initial_damping = parse(name, key, value, true)?
            }
            (OptimizerSpec::HessianFree(c), "max-cg") => {
                c.max_cg_iterations = parse(name, key, value, true)?
            }
            (OptimizerSpec::HessianFree(c), "preconditioner") => {
                c.preconditioner = parse_bool(name, key, value)?
            }
            (OptimizerSpec::HessianFree(c), "curvature-fraction") => {
                let f: f64 = parse(name, key, value, true)?;
                if f > 1.0 {
                    return Err(bad("must be in (0, 1]"));
                }
                c.curvature_fraction = f
            }
            (OptimizerSpec::Kfac(c), "damping") => {
                c.initial_damping = parse(name, key, value, true)?
            }
            (OptimizerSpec::Kfac(c), "fisher") => {
                c.fisher = KfacFisher::parse(value)
                    .ok_or_else(|| bad("expected mc, exact or empirical"))?
            }
            (OptimizerSpec::Kfac(c), "samples") => c.samples = parse(name, key, value, true)?,
            (OptimizerSpec::Kfac(c), "seed") => c.seed = parse(name, key, value, false)?,
            (OptimizerSpec::Kfac(c), "decay") => c.decay = parse_decay(name, key, value)?,
            (OptimizerSpec::Kfac(c), "inverse-every") => {
                c.inverse_every = parse(name, key, value, true)?
            }
            (OptimizerSpec::Kfac(c), "damping-every") => {
                c.damping_every = parse(name, key, value, true)?
            }
            (OptimizerSpec::Kfac(c), "momentum") => c.momentum = parse_bool(name, key, value)?,
            (OptimizerSpec::Kfac(c), "tikhonov") => {
                c.tikhonov =
                    Tikhonov::parse(value).ok_or_else(|| bad("expected factored or plain"))?
            }
            (spec, _) => return Err(unknown(spec)),
        }
        Ok(())
    }

    /// `set` for each `key=value` of a comma-separated list (empty: nothing).
    pub fn set_all(&mut self, assignments: &str) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        for part in assignments.split(',').filter(|p| !p.trim().is_empty()) {
            // A key given twice is a typo or a conflict, not "the last one wins".
            let key = part.split_once('=').map_or(part, |(k, _)| k).trim();
            if seen.contains(&key) {
                return Err(OptimError::BadParameter {
                    optimizer: self.name().to_string(),
                    key: key.to_string(),
                    value: part.trim().to_string(),
                    reason: "given twice: give each key once".to_string(),
                });
            }
            seen.push(key);
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| OptimError::BadParameter {
                    optimizer: self.name().to_string(),
                    key: part.trim().to_string(),
                    value: String::new(),
                    reason: "expected key=value".to_string(),
                })?;
            self.set(key.trim(), value)?;
        }
        Ok(())
    }

    /// The stored form, for a checkpoint: `optimizer=NAME` and then
    /// `key=value` for each of [`keys`](Self::keys) that has a value (see
    /// [`get`](Self::get)), comma-separated, e.g.
    /// `optimizer=hessian-free,damping=1.0,max-cg=250,preconditioner=false,curvature-fraction=1.0`.
    /// [`from_stored`](Self::from_stored) parses it back to this spec. A spec
    /// changed outside its keys (a field set in code, such as a line search's
    /// c₂) has no stored form: an error, rather than a checkpoint that would
    /// resume with other settings.
    pub fn to_stored(&self) -> Result<String> {
        let mut pairs = vec![format!("optimizer={}", self.name())];
        for key in self.keys() {
            if let Some(value) = self.get(key) {
                pairs.push(format!("{key}={value}"));
            }
        }
        let text = pairs.join(",");
        if OptimizerSpec::from_stored(&text).ok().as_ref() != Some(self) {
            return Err(OptimError::StoredSpec {
                text,
                reason: format!(
                    "the spec has settings outside its parameters ({}), which a checkpoint cannot \
                     store: leave the others at their defaults",
                    self.keys().join(", ")
                ),
            });
        }
        Ok(text)
    }

    /// The spec whose [`to_stored`](Self::to_stored) form `text` is: the
    /// named optimizer's defaults, then each `key=value` [`set`](Self::set).
    pub fn from_stored(text: &str) -> Result<OptimizerSpec> {
        let (first, assignments) = text.split_once(',').unwrap_or((text, ""));
        let name =
            first
                .trim()
                .strip_prefix("optimizer=")
                .ok_or_else(|| OptimError::StoredSpec {
                    text: text.to_string(),
                    reason: "expected `optimizer=NAME` first".to_string(),
                })?;
        let mut spec: OptimizerSpec = name.parse()?;
        spec.set_all(assignments)?;
        Ok(spec)
    }

    /// The training defaults that go with this optimizer (the CLI's
    /// `--epochs`, `--batch-size` and `--checkpoint-every` when not given).
    pub fn training_defaults(&self) -> TrainingDefaults {
        use OptimizerSpec as S;
        match self {
            // Slow epochs (one dense solve each: 20 epochs of lm take 318 s at
            // W = 3760), and a state of one number: a checkpoint every epoch.
            S::Newton(_) | S::LevenbergMarquardt(_) => TrainingDefaults {
                epochs: 20,
                batch_size: None,
                checkpoint_every: 1,
            },
            S::HessianFree(_) => TrainingDefaults {
                epochs: 30,
                batch_size: None,
                checkpoint_every: 10,
            },
            // Mini-batches (the method is built for them, §8); a state of the running
            // factors and their eigendecompositions, 2·Σ(in_l+1)² + … f64 (10 MB at
            // 784-128-10): a checkpoint every 10 epochs.
            S::Kfac(_) => TrainingDefaults {
                epochs: 20,
                batch_size: Some(256),
                checkpoint_every: 10,
            },
            // First-order steps: many cheap epochs over mini-batches (the
            // adaptive methods' states are 1-3 vectors of W: ms to write).
            S::GradientDescent(_)
            | S::Adam(_)
            | S::RmsProp(_)
            | S::Adagrad(_)
            | S::HessianDiagonal(_) => TrainingDefaults {
                epochs: 100,
                batch_size: Some(32),
                checkpoint_every: 10,
            },
            // Its state is the dense W×W inverse, 113 MB at W = 3760, about
            // 0.75 s to write on the reference machine (20 epochs with a
            // checkpoint after each: 17.4 s, without: 3.0 s) against
            // 0.08-0.15 s per epoch: every 100 epochs costs ≈ 5-10 % of the run.
            S::Bfgs(_) => TrainingDefaults {
                epochs: 200,
                batch_size: None,
                checkpoint_every: 100,
            },
            // Line searches on the full batch; an O(W) state (ms to write).
            S::ConjugateGradient(_) | S::Lbfgs(_) => TrainingDefaults {
                epochs: 200,
                batch_size: None,
                checkpoint_every: 10,
            },
        }
    }

    /// Builds the optimizer.
    pub fn build(&self) -> Box<dyn Optimizer> {
        match self {
            OptimizerSpec::GradientDescent(c) => Box::new(GradientDescent::new(c.clone())),
            OptimizerSpec::Adam(c) => Box::new(Adam::new(c.clone())),
            OptimizerSpec::RmsProp(c) => Box::new(RmsProp::new(c.clone())),
            OptimizerSpec::Adagrad(c) => Box::new(Adagrad::new(c.clone())),
            OptimizerSpec::Newton(c) => Box::new(DampedNewton::newton(c.clone())),
            OptimizerSpec::HessianDiagonal(c) => Box::new(HessianDiagonal::new(c.clone())),
            OptimizerSpec::LevenbergMarquardt(c) => {
                Box::new(levenberg_marquardt::levenberg_marquardt(c.clone()))
            }
            OptimizerSpec::ConjugateGradient(c) => Box::new(ConjugateGradient::new(c.clone())),
            OptimizerSpec::Bfgs(c) => Box::new(Bfgs::new(c.clone())),
            OptimizerSpec::Lbfgs(c) => Box::new(Lbfgs::new(c.clone())),
            OptimizerSpec::HessianFree(c) => Box::new(HessianFree::new(c.clone())),
            OptimizerSpec::Kfac(c) => Box::new(Kfac::new(c.clone())),
        }
    }
}
