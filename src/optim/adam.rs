//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), with
//! PyTorch's parameterisation, update rule and defaults (`torch.optim.Adam`,
//! `torch.optim.AdamW`), optionally AMSGrad (Reddi et al. 2018).
//!
//! Step t = 1, 2, … with g = ∇E(θ) on the batch and η the scheduled rate
//! ([`schedule`](super::schedule)), m₀ = v₀ = v̂₀ = 0:
//!
//! ```text
//! AdamW only:  θ ← θ − η·wd·θ            on weight entries (not biases)
//!              m ← β₁ m + (1 − β₁) g
//!              v ← β₂ v + (1 − β₂) g²
//! AMSGrad:     v̂ ← max(v̂, v)             (else v̂ = v)
//!              θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v̂ / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! (as PyTorch computes it: AMSGrad keeps the maximum of the raw v, and ε is
//! added after the bias correction of √v̂).
//!
//! Defaults: `lr` 1e-3, `beta1` 0.9, `beta2` 0.999, `eps` 1e-8, `amsgrad`
//! false; AdamW's `weight-decay` 1e-2.
//!
//! Weight decay. PyTorch's `Adam(weight_decay=λ)` adds λθ to the gradient
//! (coupled L2). Here that is E's own penalty (λ/2)‖W‖² (`--l2`), already in
//! ∇E, so Adam has no `weight-decay` of its own. AdamW's decoupled decay
//! shrinks the **weight entries only**, following this project's convention
//! that biases are not penalised; PyTorch's AdamW, given all parameters,
//! shrinks the biases too. AdamW's ∇E still holds the `--l2` term: for
//! PyTorch's AdamW exactly, train with `--l2 0`.
//!
//! Divergence: a NaN or ∞ in ∇E, the update or E at the new θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite) with θ, the moments
//! and t unchanged; [`Optimizer::recover`] then halves η and keeps the
//! moments (the step of every entry is bounded by about η, so η is what
//! sets its length).

use super::finite::{start_loss_grad, NonFinite};
use super::first_order::{commit_trial, made_or};
use super::schedule::{LearningRate, Schedule};
use super::vector::fast_norm;
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use crate::engine::{DeviceRule, StateSlot, UpdateRule};
use std::ops::Range;

/// Parameters of [`Adam`] (the module doc gives the update).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamConfig {
    /// η (default 1e-3).
    pub learning_rate: f64,
    /// β₁, the first moment's decay (default 0.9).
    pub beta1: f64,
    /// β₂, the second moment's decay (default 0.999).
    pub beta2: f64,
    /// ε, added to the denominator (default 1e-8).
    pub eps: f64,
    /// The AMSGrad variant: the running maximum of v (default false).
    pub amsgrad: bool,
    /// AdamW's decoupled weight decay wd (default 1e-2); None for Adam.
    pub weight_decay: Option<f64>,
    pub schedule: Schedule,
}

impl AdamConfig {
    /// Adam with PyTorch's defaults.
    pub fn adam() -> AdamConfig {
        AdamConfig {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            amsgrad: false,
            weight_decay: None,
            schedule: Schedule::default(),
        }
    }

    /// AdamW with PyTorch's defaults (wd = 1e-2).
    pub fn adamw() -> AdamConfig {
        AdamConfig {
            weight_decay: Some(1e-2),
            ..AdamConfig::adam()
        }
    }

    /// `adam` or `adamw`.
    pub fn name(&self) -> &'static str {
        if self.weight_decay.is_some() {
            "adamw"
        } else {
            "adam"
        }
    }
}

/// Adam or AdamW; its state is t, m, v (and v̂ for AMSGrad), each (W), and η.
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    lr: LearningRate,
    /// t, the steps taken.
    step: usize,
    exp_avg: Vec<f64>,
    exp_avg_sq: Vec<f64>,
    max_exp_avg_sq: Vec<f64>,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Adam {
        Adam {
            lr: LearningRate::new(config.learning_rate, config.schedule.clone()),
            config,
            step: 0,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
            max_exp_avg_sq: Vec::new(),
        }
    }

    /// η of the next update (scheduled, halved by each recovery).
    pub fn learning_rate(&self) -> f64 {
        self.lr.now()
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &str {
        self.config.name()
    }

    /// η ← η/2; the moments and t are kept.
    fn recover(&mut self, _what: &NonFinite) {
        self.lr.halve();
    }

    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        self.lr.start_epoch(epoch, epochs);
    }

    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport> {
        let c = &self.config;
        let w = theta.len();
        let (loss_before, grad) = start_loss_grad(engine, theta, rows)?;
        let lr = self.lr.now();
        let t = self.step + 1;
        let mut trial = theta.to_vec();
        if let Some(wd) = c.weight_decay {
            let shrink = 1.0 - lr * wd;
            for layer in engine.mlp().layout() {
                trial[layer.weights].iter_mut().for_each(|x| *x *= shrink);
            }
        }
        let mut m = made_or(&self.exp_avg, w, 0.0);
        let mut v = made_or(&self.exp_avg_sq, w, 0.0);
        let mut v_max = if c.amsgrad {
            made_or(&self.max_exp_avg_sq, w, 0.0)
        } else {
            Vec::new()
        };
        let bias1 = 1.0 - c.beta1.powi(exponent(t));
        let bias2_sqrt = (1.0 - c.beta2.powi(exponent(t))).sqrt();
        let step_size = lr / bias1;
        for i in 0..w {
            let g = grad[i];
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
            let second = if c.amsgrad {
                v_max[i] = v_max[i].max(v[i]);
                v_max[i]
            } else {
                v[i]
            };
            let denom = second.sqrt() / bias2_sqrt + c.eps;
            trial[i] -= step_size * m[i] / denom;
        }
        let report = commit_trial(theta, &trial, loss_before, fast_norm(&grad))?;
        self.step = t;
        self.exp_avg = m;
        self.exp_avg_sq = v;
        self.max_exp_avg_sq = v_max;
        Ok(report)
    }

    fn reset(&mut self) {
        self.step = 0;
        self.exp_avg.clear();
        self.exp_avg_sq.clear();
        self.max_exp_avg_sq.clear();
        self.lr.reset();
    }

    fn export_state(&self) -> OptimizerState {
        // The moments are made at the first step: absent before it (t = 0).
        OptimizerState::new(self.name())
            .with_scalar("learning_rate", self.lr.base())
            .with_scalar("step", self.step as f64)
            .with_vector_if_made("exp_avg", &self.exp_avg)
            .with_vector_if_made("exp_avg_sq", &self.exp_avg_sq)
            .with_vector_if_made("max_exp_avg_sq", &self.max_exp_avg_sq)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let learning_rate = r.positive("learning_rate")?;
        let step = r.count("step")?;
        let shape = [num_params];
        let (m, v, v_max) = if step == 0 {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            let m = r.tensor("exp_avg", &shape)?;
            let v = r.tensor("exp_avg_sq", &shape)?;
            let v_max = if self.config.amsgrad {
                r.tensor("max_exp_avg_sq", &shape)?
            } else {
                Vec::new()
            };
            (m, v, v_max)
        };
        r.finish()?;
        self.lr.set_base(learning_rate);
        self.step = step;
        self.exp_avg = m;
        self.exp_avg_sq = v;
        self.max_exp_avg_sq = v_max;
        Ok(())
    }

    /// The update above in f32 on the device; the state is the exported moments
    /// and t (`step`).
    fn device_rule(&self) -> Option<DeviceRule> {
        let c = &self.config;
        let slot = |key| Some(StateSlot { key, initial: 0.0 });
        Some(DeviceRule {
            update: UpdateRule::Adam {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                amsgrad: c.amsgrad,
                weight_decay: c.weight_decay,
            },
            learning_rate: self.lr.now(),
            slots: [
                slot("exp_avg"),
                slot("exp_avg_sq"),
                if c.amsgrad {
                    slot("max_exp_avg_sq")
                } else {
                    None
                },
            ],
            step_key: Some("step"),
        })
    }
}

/// t as the exponent of βᵗ (saturating: βᵗ is 0 long before 2³¹ steps).
pub(super) fn exponent(t: usize) -> i32 {
    i32::try_from(t).unwrap_or(i32::MAX)
}
