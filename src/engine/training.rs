//! First-order training on the device: an optional capability of a [`Backend`]
//! ([`Backend::device_training`], `None` by default; the GPU engine has it) and the
//! description of an update rule that it runs ([`DeviceRule`], given by the
//! first-order optimizers' `Optimizer::device_rule`).
//!
//! The capability keeps θ, the rule's state vectors and the data on the device:
//! [`DeviceTraining::begin_updates`] uploads θ and the state once,
//! [`DeviceTraining::device_update`] records the forward pass, the backward pass (the
//! gradient into its device buffer), the L2 term and the update kernel into one
//! command buffer and submits it — nothing is read back — and
//! [`DeviceTraining::finish_updates`] reads back θ, the state, the sum of the batch
//! losses and E on the last batch at the final θ in one readback. The training scheduler (`train/scheduler.rs`) drives
//! it and puts the state back into the optimizer through its `export_state` /
//! `import_state`, so that checkpoints hold the same entries as on the host path.
//!
//! Unlike every other operation of an engine, an update needs λ: the gradient never
//! leaves the device, so the L2 term λ·θ (weights only) is added there, with the λ of
//! the face the scheduler trains through (`Curvature::mlp().l2()`, which a
//! [`WithL2`](super::WithL2) view changes), passed to `begin_updates`.

use crate::error::Result;
use std::ops::Range;

/// A first-order update rule, with the constants of its optimizer (each optimizer's
/// module doc in `optim/` gives the formula; the device computes it in f32). g is the
/// gradient of E on the batch, the L2 term λ·θ on weights included.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateRule {
    /// `gd` (μ = 0), `momentum`, `nesterov` (`optim/gd.rs`): v ← μv − ηg, θ ← θ + v,
    /// with g at θ, or for Nesterov at the look-ahead θ + μv. State: [v].
    GradientDescent { momentum: f64, nesterov: bool },
    /// `adam`, `adamw` (`optim/adam.rs`): PyTorch's Adam with bias correction,
    /// optionally AMSGrad; AdamW's decoupled decay θ ← θ − η·wd·θ on weights.
    /// State: [m, v, v̂ (AMSGrad)]; it counts steps.
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        amsgrad: bool,
        weight_decay: Option<f64>,
    },
    /// `rmsprop` (`optim/rmsprop.rs`): plain, centered, with momentum.
    /// State: [v, ḡ (centered), b (momentum > 0)].
    RmsProp {
        alpha: f64,
        eps: f64,
        momentum: f64,
        centered: bool,
    },
    /// `adagrad` (`optim/adagrad.rs`): η̃ = η / (1 + (t − 1)·lr_decay). State: [s]
    /// (its initial value τ is the slot's); it counts steps.
    Adagrad { lr_decay: f64, eps: f64 },
}

/// One state vector (W) of a rule: the key under which its optimizer's
/// `export_state` holds it, and every entry's value before the first step (moments
/// 0, Adagrad's sum τ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateSlot {
    pub key: &'static str,
    pub initial: f64,
}

/// What the device needs to run an optimizer's updates: its rule, the learning rate
/// of the updates to come (scheduled for the epoch, halved by each recovery), and
/// where its state lives in its exported state.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRule {
    pub update: UpdateRule,
    /// η of the coming updates (`LearningRate::now`).
    pub learning_rate: f64,
    /// The state vectors in the rule's order ([`UpdateRule`] names them); `None` for a
    /// slot the rule does not use in this configuration.
    pub slots: [Option<StateSlot>; 3],
    /// The scalar of `export_state` that counts steps t, for the rules that count
    /// them (Adam's bias correction, Adagrad's lr_decay).
    pub step_key: Option<&'static str>,
}

/// What [`DeviceTraining::finish_updates`] reads back.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceUpdates {
    /// θ (W) after the updates.
    pub theta: Vec<f64>,
    /// The rule's state vectors (W each) in its slot order; empty for unused slots.
    pub state: [Vec<f64>; 3],
    /// The updates made since `begin_updates`.
    pub updates: usize,
    /// Σ over those updates of the data term of E on the update's batch, at the
    /// point its gradient was taken (θ; Nesterov: θ + μv). The losses are ≥ 0, so
    /// the sum is finite exactly when every one of them is.
    pub loss_sum: f64,
    /// The data term of E on the last update's batch at the θ it reached (the host
    /// path's E at the trial point of its last update); NaN without updates.
    pub final_loss: f64,
}

/// Runs first-order updates on the device (see the module doc). A sequence is
/// `begin_updates`, any number of `device_update`, `finish_updates`; the engine's
/// other operations may not run in between (they overwrite θ's buffer).
pub trait DeviceTraining {
    /// Uploads θ (W) and the state vectors (W each, in `rule.slots` order; empty for
    /// unused slots), with t = `step` steps taken and λ = `l2` for the L2 term.
    fn begin_updates(
        &mut self,
        rule: &DeviceRule,
        theta: &[f64],
        state: &[Vec<f64>; 3],
        step: usize,
        l2: f64,
    ) -> Result<()>;
    /// One update on `rows` of the bound data: forward, backward, L2 term and update
    /// kernel in one submit; nothing is read back.
    fn device_update(&mut self, rows: Range<usize>) -> Result<()>;
    /// θ, the state and the batch losses of the updates since `begin_updates`, and E
    /// on the last batch at the final θ, in one submit and one readback.
    fn finish_updates(&mut self) -> Result<DeviceUpdates>;
}
