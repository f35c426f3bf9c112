//! RMSprop (Hinton's lecture 6e; centered: Graves 2013), with PyTorch's
//! parameterisation, update rule and defaults (`torch.optim.RMSprop`).
//!
//! Each step, with g = ∇E(θ) on the batch, η the scheduled rate
//! ([`schedule`](super::schedule)) and v₀ = ḡ₀ = b₀ = 0:
//!
//! ```text
//!                v ← α v + (1 − α) g²
//! centered:      ḡ ← α ḡ + (1 − α) g,   ṽ = v − ḡ²      (else ṽ = v)
//!                d = √ṽ + ε
//! momentum μ>0:  b ← μ b + g / d,       θ ← θ − η b
//! else:                                 θ ← θ − η g / d
//! ```
//!
//! ṽ ≥ 0 in exact arithmetic (an average of squares is at least the square
//! of the average); a rounding below 0 is taken as 0, where PyTorch's √
//! would give NaN.
//!
//! Defaults: `lr` 1e-2, `alpha` 0.99, `eps` 1e-8, `momentum` 0, `centered`
//! false. PyTorch's `weight_decay` (λθ added to g) is E's own `--l2` penalty
//! here, on weights only, already in ∇E.
//!
//! Divergence: a NaN or ∞ in ∇E, the update or E at the new θ returns
//! [`OptimError::NonFinite`](super::OptimError::NonFinite) with θ and the
//! state unchanged; [`Optimizer::recover`] then halves η and zeroes the
//! momentum buffer b (as gradient descent zeroes its velocity), keeping the
//! averages v and ḡ.

use super::finite::{start_loss_grad, NonFinite};
use super::first_order::{commit_trial, made_or};
use super::schedule::{LearningRate, Schedule};
use super::vector::fast_norm;
use super::{Optimizer, OptimizerState, Result, StateError, StepReport};
use crate::engine::Curvature;
use crate::engine::{DeviceRule, StateSlot, UpdateRule};
use std::ops::Range;

/// Parameters of [`RmsProp`] (the module doc gives the update).
#[derive(Clone, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// η (default 1e-2).
    pub learning_rate: f64,
    /// α, the smoothing constant of the averages (default 0.99).
    pub alpha: f64,
    /// ε, added to the denominator (default 1e-8).
    pub eps: f64,
    /// μ, the momentum of the buffer b (default 0: no buffer).
    pub momentum: f64,
    /// Divide by the centred second moment v − ḡ² (default false).
    pub centered: bool,
    pub schedule: Schedule,
}

impl Default for RmsPropConfig {
    fn default() -> RmsPropConfig {
        RmsPropConfig {
            learning_rate: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            centered: false,
            schedule: Schedule::default(),
        }
    }
}

/// RMSprop; its state is v, ḡ (centered), b (μ > 0), each (W), and η.
#[derive(Clone, Debug)]
pub struct RmsProp {
    config: RmsPropConfig,
    lr: LearningRate,
    square_avg: Vec<f64>,
    grad_avg: Vec<f64>,
    momentum_buffer: Vec<f64>,
}

impl RmsProp {
    pub fn new(config: RmsPropConfig) -> RmsProp {
        RmsProp {
            lr: LearningRate::new(config.learning_rate, config.schedule.clone()),
            config,
            square_avg: Vec::new(),
            grad_avg: Vec::new(),
            momentum_buffer: Vec::new(),
        }
    }

    /// η of the next update (scheduled, halved by each recovery).
    pub fn learning_rate(&self) -> f64 {
        self.lr.now()
    }

    fn uses_buffer(&self) -> bool {
        self.config.momentum > 0.0
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &str {
        "rmsprop"
    }

    /// η ← η/2 and b ← 0; v and ḡ are kept.
    fn recover(&mut self, _what: &NonFinite) {
        self.lr.halve();
        self.momentum_buffer.iter_mut().for_each(|b| *b = 0.0);
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
        let buffered = self.uses_buffer();
        let mut v = made_or(&self.square_avg, w, 0.0);
        let mut g_avg = if c.centered {
            made_or(&self.grad_avg, w, 0.0)
        } else {
            Vec::new()
        };
        let mut b = if buffered {
            made_or(&self.momentum_buffer, w, 0.0)
        } else {
            Vec::new()
        };
        let mut trial = theta.to_vec();
        for i in 0..w {
            let g = grad[i];
            v[i] = c.alpha * v[i] + (1.0 - c.alpha) * g * g;
            let centred = if c.centered {
                g_avg[i] = c.alpha * g_avg[i] + (1.0 - c.alpha) * g;
                (v[i] - g_avg[i] * g_avg[i]).max(0.0)
            } else {
                v[i]
            };
            let d = centred.sqrt() + c.eps;
            if buffered {
                b[i] = c.momentum * b[i] + g / d;
                trial[i] -= lr * b[i];
            } else {
                trial[i] -= lr * g / d;
            }
        }
        let report = commit_trial(theta, &trial, loss_before, fast_norm(&grad))?;
        self.square_avg = v;
        self.grad_avg = g_avg;
        self.momentum_buffer = b;
        Ok(report)
    }

    fn reset(&mut self) {
        self.square_avg.clear();
        self.grad_avg.clear();
        self.momentum_buffer.clear();
        self.lr.reset();
    }

    fn export_state(&self) -> OptimizerState {
        // The averages are made at the first step: absent before it.
        OptimizerState::new(self.name())
            .with_scalar("learning_rate", self.lr.base())
            .with_vector_if_made("square_avg", &self.square_avg)
            .with_vector_if_made("grad_avg", &self.grad_avg)
            .with_vector_if_made("momentum_buffer", &self.momentum_buffer)
    }

    fn import_state(
        &mut self,
        state: &OptimizerState,
        num_params: usize,
    ) -> Result<(), StateError> {
        let mut r = state.reader(self.name())?;
        let learning_rate = r.positive("learning_rate")?;
        let shape = [num_params];
        let square_avg = r.optional_tensor("square_avg", &shape)?;
        // The other vectors exist exactly when v does and the config uses them.
        let made = square_avg.is_some();
        let mut read = |key: &str, used: bool| -> Result<Vec<f64>, StateError> {
            if made && used {
                r.tensor(key, &shape)
            } else {
                Ok(Vec::new())
            }
        };
        let grad_avg = read("grad_avg", self.config.centered)?;
        let momentum_buffer = read("momentum_buffer", self.uses_buffer())?;
        r.finish()?;
        self.lr.set_base(learning_rate);
        self.square_avg = square_avg.unwrap_or_default();
        self.grad_avg = grad_avg;
        self.momentum_buffer = momentum_buffer;
        Ok(())
    }

    /// The update above in f32 on the device; the state is the exported v, ḡ
    /// (centered) and b (momentum > 0).
    fn device_rule(&self) -> Option<DeviceRule> {
        let c = &self.config;
        let slot = |key, used: bool| used.then_some(StateSlot { key, initial: 0.0 });
        Some(DeviceRule {
            update: UpdateRule::RmsProp {
                alpha: c.alpha,
                eps: c.eps,
                momentum: c.momentum,
                centered: c.centered,
            },
            learning_rate: self.lr.now(),
            slots: [
                slot("square_avg", true),
                slot("grad_avg", c.centered),
                slot("momentum_buffer", self.uses_buffer()),
            ],
            step_key: None,
        })
    }
}
