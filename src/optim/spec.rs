//! `OptimizerSpec`: an optimizer's name and parameters, parsed from the CLI
//! (`"cg-pr".parse()`, then `set("line-search", "hessian")`) and built into a
//! boxed [`Optimizer`].
//!
//! Defaults (each optimizer's doc comment gives its equations):
//!
//! | name | parameters (`set` keys) and defaults |
//! |------|------------------------------------------|
//! | `gd` | `lr` 0.1 |
//! | `momentum`, `nesterov` | `lr` 0.1, `momentum` 0.9 |
//! | `newton` | `damping` (c) 1, `max-dense` 8192 |
//! | `hessian-diag` | `lr` 0.1, `min-eigval` 0.01, `diagonal` exact \| becker-lecun |
//! | `levenberg-marquardt`, `lm` | `damping` (μ) 0.01, `max-dense` 8192 |
//! | `cg-fr`, `cg-pr`, `cg-hs`, `cg-dy` | `line-search` wolfe \| hessian, `restart` W |
//! | `bfgs` | `max-dense` 8192 |
//! | `lbfgs` | `history` 10 |
//! | `hessian-free`, `hf` | `damping` (λ) 1, `max-cg` 250, `preconditioner` false, `curvature-fraction` 1 |

use super::bfgs::{Bfgs, BfgsConfig};
use super::cg::{BetaFormula, CgConfig, ConjugateGradient, StepLength};
use super::damping::Damping;
use super::gd::{GdConfig, GradientDescent, Momentum};
use super::hessian_diag::{HessianDiagConfig, HessianDiagonal};
use super::hessian_free::{HessianFree, HessianFreeConfig};
use super::lbfgs::{Lbfgs, LbfgsConfig};
use super::levenberg_marquardt;
use super::line_search::WolfeConfig;
use super::newton::{DampedNewton, NewtonConfig};
use super::{OptimError, Optimizer, Result};
use crate::engine::Diagonal;
use std::fmt;
use std::str::FromStr;

/// Every name [`OptimizerSpec::from_str`] accepts (aliases included).
pub const OPTIMIZER_NAMES: [&str; 15] = [
    "gd",
    "momentum",
    "nesterov",
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
];

/// An optimizer with its parameters, before it is built.
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerSpec {
    GradientDescent(GdConfig),
    Newton(NewtonConfig),
    HessianDiagonal(HessianDiagConfig),
    LevenbergMarquardt(NewtonConfig),
    ConjugateGradient(CgConfig),
    Bfgs(BfgsConfig),
    Lbfgs(LbfgsConfig),
    HessianFree(HessianFreeConfig),
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

fn parse<T>(optimizer: &str, key: &str, value: &str, positive: bool) -> Result<T>
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
    if positive && v.partial_cmp(&T::default()) != Some(std::cmp::Ordering::Greater) {
        return Err(bad("must be positive"));
    }
    Ok(v)
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
            OptimizerSpec::Newton(_) => "newton",
            OptimizerSpec::HessianDiagonal(_) => "hessian-diag",
            OptimizerSpec::LevenbergMarquardt(_) => "levenberg-marquardt",
            OptimizerSpec::ConjugateGradient(c) => c.beta.name(),
            OptimizerSpec::Bfgs(_) => "bfgs",
            OptimizerSpec::Lbfgs(_) => "lbfgs",
            OptimizerSpec::HessianFree(_) => "hessian-free",
        }
    }

    /// The keys [`set`](Self::set) accepts for this optimizer.
    pub fn keys(&self) -> Vec<&'static str> {
        match self {
            OptimizerSpec::GradientDescent(c) if c.kind == Momentum::None => vec!["lr"],
            OptimizerSpec::GradientDescent(_) => vec!["lr", "momentum"],
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
        match (self, key) {
            (OptimizerSpec::GradientDescent(c), "lr") => {
                c.learning_rate = parse(name, key, value, true)?
            }
            (OptimizerSpec::GradientDescent(c), "momentum") => {
                c.momentum = parse(name, key, value, false)?
            }
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
                    _ => return Err(bad("expected exact or becker-lecun")),
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
            (spec, _) => return Err(unknown(spec)),
        }
        Ok(())
    }

    /// `set` for each `key=value` of a comma-separated list (empty: nothing).
    pub fn set_all(&mut self, assignments: &str) -> Result<()> {
        for part in assignments.split(',').filter(|p| !p.trim().is_empty()) {
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

    /// Builds the optimizer.
    pub fn build(&self) -> Box<dyn Optimizer> {
        match self {
            OptimizerSpec::GradientDescent(c) => Box::new(GradientDescent::new(c.clone())),
            OptimizerSpec::Newton(c) => Box::new(DampedNewton::newton(c.clone())),
            OptimizerSpec::HessianDiagonal(c) => Box::new(HessianDiagonal::new(c.clone())),
            OptimizerSpec::LevenbergMarquardt(c) => {
                Box::new(levenberg_marquardt::levenberg_marquardt(c.clone()))
            }
            OptimizerSpec::ConjugateGradient(c) => Box::new(ConjugateGradient::new(c.clone())),
            OptimizerSpec::Bfgs(c) => Box::new(Bfgs::new(c.clone())),
            OptimizerSpec::Lbfgs(c) => Box::new(Lbfgs::new(c.clone())),
            OptimizerSpec::HessianFree(c) => Box::new(HessianFree::new(c.clone())),
        }
    }
}
