//! Optimizers: each a small state machine that works only through the
//! [`Curvature`] trait, so it runs on the CPU reference or the GPU alike.
//!
//! θ (W) lives on the host as `Vec<f64>`; O(W) vector algebra and the dense
//! W×W solves (Newton, Levenberg-Marquardt, BFGS) run on the host; every
//! O(N·W) operation — loss, gradient, Hv, Gv, diagonals, full H or G — goes
//! through the engine. One [`Optimizer::step`] is one attempted update on the
//! batch `rows`; it reports what it did in a [`StepReport`].
//!
//! The first-order methods (gd, momentum, nesterov, adam, adamw, rmsprop,
//! adagrad) follow a learning-rate [`schedule`] that changes once per epoch:
//! the training scheduler calls [`Optimizer::start_epoch`] before each epoch's
//! updates.
//!
//! | name (CLI)                  | file                       | update | recovery from a NaN/∞ ([`Optimizer::recover`]) |
//! |-----------------------------|----------------------------|--------|------------------|
//! | `gd`, `momentum`, `nesterov`| `gd.rs`                    | θ ← θ + v, v ← μv − η∇E | η ← η/2, v ← 0 |
//! | `adam`, `adamw`             | `adam.rs`                  | Δ = −η m̂ / (√v̂ + ε) (AdamW: θ ← θ − η·wd·θ on weights first) | η ← η/2 |
//! | `rmsprop`                   | `rmsprop.rs`               | Δ = −η g / (√v + ε), optionally centred and with momentum | η ← η/2, b ← 0 |
//! | `adagrad`                   | `adagrad.rs`               | Δ = −η g / (√Σg² + ε) | η ← η/2 |
//! | `newton`                    | `newton.rs`                | Δ = −(H + cI)⁻¹g | c ← 4c |
//! | `hessian-diag`              | `hessian_diag.rs`          | Δ = −η g / max(\|d\|, m) | η ← η/2, m ← 2m |
//! | `levenberg-marquardt`, `lm` | `levenberg_marquardt.rs`   | Δ = −(G + μI)⁻¹g | μ ← 4μ |
//! | `cg-fr`, `cg-pr`, `cg-hs`, `cg-dy` | `cg.rs`             | d = −g + βd, α by line search | restart d = −g, first α ×0.1 |
//! | `bfgs`                      | `bfgs.rs`                  | d = −H⁻¹g (dense inverse) | B ← I, first α ×0.1 |
//! | `lbfgs`                     | `lbfgs.rs`                 | two-loop recursion, m = 10 | pairs cleared, first α ×0.1 |
//! | `hessian-free`, `hf`        | `hessian_free.rs`          | CG on (G + λI)d = −g | λ ← 3λ/2, warm start dropped |
//! | `kfac`                      | `kfac.rs`, `kfac_state.rs` | δ = αΔ + μδ₀, Δ = −(damped Ā ⊗ B̄)⁻¹g, α, μ from the exact quadratic model | λ ← 4λ, previous step dropped |
//!
//! ## Divergence
//! Inside a step every E, ∇E and curvature product is checked where it is
//! computed ([`finite`]); a NaN or ∞ trial point counts as a failed trial
//! (the line search shrinks α, the damped methods raise their damping). A
//! step that still meets a NaN or ∞ returns [`OptimError::NonFinite`] with θ
//! unchanged. [`Guarded`] (used by `train`) wraps any optimizer: it keeps the
//! last finite θ, puts it back after a failed step, calls `recover`, counts
//! the step as rejected, and stops with [`OptimError::Diverged`] — naming the
//! update, the quantity, its value and the likely cause — after
//! [`DEFAULT_MAX_FAILURES`] failures in a row.

pub mod adagrad;
pub mod adam;
pub mod bfgs;
pub mod cg;
pub mod damping;
pub mod dense;
pub mod finite;
mod first_order;
pub mod gd;
pub mod guard;
pub mod hessian_diag;
pub mod hessian_free;
pub mod kfac;
mod kfac_state;
pub mod lbfgs;
pub mod levenberg_marquardt;
pub mod line_search;
pub mod newton;
pub mod rmsprop;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod vector;

pub use finite::{NonFinite, Point, Quantity};
pub use guard::{Divergence, GuardConfig, Guarded, DEFAULT_MAX_FAILURES};
pub use schedule::{Schedule, ScheduleKind, SCHEDULE_KEYS};
pub use spec::{OptimizerSpec, TrainingDefaults, OPTIMIZER_NAMES};
pub use state::{OptimizerState, StateError};

use crate::engine::{Curvature, DeviceRule};
use std::ops::Range;

/// What can go wrong while optimizing, with the context to fix it.
///
/// It holds an engine's [`crate::Error`] (`Engine`), never the reverse: an
/// `OptimError` becomes a crate `Error` by the `From` impl below, which hands
/// an engine failure back as itself (so a device fault stays `Error::Gpu` up
/// to `main`) and keeps every other failure in `Error::Optim`.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// An engine operation failed (shapes, device).
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error("unknown optimizer `{name}`: choose one of {}", OPTIMIZER_NAMES.join(", "))]
    UnknownOptimizer { name: String },
    #[error("optimizer `{optimizer}` has no parameter `{key}`: its parameters are {}", known.join(", "))]
    UnknownParameter {
        optimizer: String,
        key: String,
        known: Vec<&'static str>,
    },
    #[error("bad value `{value}` for `{key}` of `{optimizer}`: {reason}")]
    BadParameter {
        optimizer: String,
        key: String,
        value: String,
        reason: String,
    },
    /// A dense W×W matrix that is too large for the host solve.
    #[error("{method} needs a dense {what} of W×W = {w}×{w} entries, but the largest W allowed for a dense matrix is {max} ({max_mib} MiB of f64): use `hessian-free`, `lbfgs` or a `cg-*` method for this network")]
    TooLargeForDense {
        method: &'static str,
        what: &'static str,
        w: usize,
        max: usize,
        max_mib: usize,
    },
    /// A solve or a loss that produced NaN or ∞ where no retry can help.
    #[error("{method}: {detail}")]
    Numerical {
        method: &'static str,
        detail: String,
    },
    #[error("training: {0}")]
    Training(String),
    /// A NaN or ∞ computed inside a step (the step left θ unchanged).
    #[error("{0}")]
    NonFinite(NonFinite),
    /// Training stopped: the loss is not finite at the starting θ, or too many
    /// updates in a row failed. θ holds the last finite parameters.
    #[error("{0}")]
    Diverged(Box<Divergence>),
    /// A stored optimizer spec (a checkpoint's) that does not parse, or a spec
    /// with settings its stored form cannot hold.
    #[error("optimizer spec `{text}`: {reason}")]
    StoredSpec { text: String, reason: String },
    /// The data given to `train` hold a NaN or ∞.
    #[error("the {what} hold {value} at row {row}, column {col}: remove or impute that cell before training")]
    NonFiniteData {
        what: &'static str,
        row: usize,
        col: usize,
        value: f32,
    },
}

pub type Result<T, E = OptimError> = std::result::Result<T, E>;

impl From<OptimError> for crate::Error {
    fn from(e: OptimError) -> crate::Error {
        match e {
            // The engine's own error, not wrapped (its message once, its type kept).
            OptimError::Engine(inner) => inner,
            other => crate::Error::Optim(Box::new(other)),
        }
    }
}

/// What one [`Optimizer::step`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// E(θ) on the step's rows before the step.
    pub loss_before: f64,
    /// E(θ) on the same rows after the step (equal to `loss_before` when
    /// rejected), where the method evaluates it. The first-order methods (gd,
    /// momentum, nesterov, adam, adamw, rmsprop, adagrad) do not: like PyTorch's
    /// they cost one gradient per update, and the next update's E at the new θ
    /// is the guard's check (`None`).
    pub loss_after: Option<f64>,
    /// ‖∇E(θ)‖₂ before the step.
    pub grad_norm: f64,
    /// ‖Δθ‖₂ of the step taken (0 when rejected).
    pub step_norm: f64,
    /// The damping in force after the step (c, μ, λ) for damped methods.
    pub damping: Option<f64>,
    /// Inner iterations: line-search evaluations, CG iterations, Cholesky retries.
    pub inner_iterations: usize,
    /// False when the step was rejected and θ left unchanged.
    pub accepted: bool,
}

impl StepReport {
    /// A report for a point where the gradient vanishes: nothing to do.
    pub(crate) fn stationary(loss: f64, damping: Option<f64>) -> StepReport {
        StepReport {
            loss_before: loss,
            loss_after: Some(loss),
            grad_norm: 0.0,
            step_norm: 0.0,
            damping,
            inner_iterations: 0,
            accepted: true,
        }
    }

    /// A report for an update run on the device (`train`'s device path, one submit
    /// per update, nothing read back): E, ‖∇E‖ and ‖Δθ‖ are not known on the host,
    /// so they are NaN ("unknown", as in a rejected report before any success).
    /// `accepted` is true when the update was made; the batch losses come back once
    /// per epoch and a non-finite one undoes the epoch's updates (`train`'s
    /// scheduler counts them as rejected then).
    pub fn on_device() -> StepReport {
        StepReport {
            loss_before: f64::NAN,
            loss_after: None,
            grad_norm: f64::NAN,
            step_norm: f64::NAN,
            damping: None,
            inner_iterations: 0,
            accepted: true,
        }
    }

    /// A report for a step that was tried and not taken: θ is unchanged, so
    /// E after equals E before.
    pub(crate) fn rejected(
        loss: f64,
        grad_norm: f64,
        damping: Option<f64>,
        inner_iterations: usize,
    ) -> StepReport {
        StepReport {
            loss_before: loss,
            loss_after: Some(loss),
            grad_norm,
            step_norm: 0.0,
            damping,
            inner_iterations,
            accepted: false,
        }
    }
}

/// An optimizer: a state machine advanced one update at a time.
pub trait Optimizer {
    /// The CLI name, e.g. `cg-pr`.
    fn name(&self) -> &str;
    /// Recovers from a step that failed with `what` (a NaN or ∞), after the
    /// caller put θ back: each optimizer's own rule — a smaller learning rate,
    /// more damping, or a restart of its history with a shorter first step
    /// (see each implementation). The default forgets all state ([`reset`](Optimizer::reset)).
    fn recover(&mut self, what: &NonFinite) {
        let _ = what;
        self.reset();
    }
    /// Attempts one update of θ (W) using the batch `rows` of the engine's data.
    /// A rejected step leaves θ unchanged and reports `accepted: false`.
    fn step(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &mut [f64],
        rows: Range<usize>,
    ) -> Result<StepReport>;
    /// Epoch `epoch` (1-based) of a run of `epochs` is about to start, or to
    /// continue after a resume: the first-order methods set the learning rate
    /// of its updates from their [`schedule`]. Others ignore it (the default).
    /// An optimizer never told is in epoch 1 of 1.
    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        let _ = (epoch, epochs);
    }
    /// Forgets all state (velocities, inverse-Hessian estimates, damping) and
    /// starts afresh, as a newly built optimizer.
    fn reset(&mut self) {}
    /// The engine's data changed (a new epoch's permutation): drop losses,
    /// gradients or matrices cached for (θ, rows), keep the learned state.
    fn forget_cached(&mut self) {}
    /// The complete learned state (velocity, damping, inverse-Hessian
    /// estimate, stored pairs, previous direction, counters), for a
    /// checkpoint. Caches of (E, ∇E) or matrices at one (θ, rows) are left
    /// out: see [`state`] for why that keeps a resumed CPU run bit-identical.
    fn export_state(&self) -> OptimizerState;
    /// Replaces the learned state by one that [`export_state`](Self::export_state)
    /// gave for θ of `num_params` entries, on an optimizer of the same spec,
    /// and drops every cache. A state of another optimizer, of other sizes, or
    /// with entries this one does not know is an error and changes nothing.
    fn import_state(&mut self, state: &OptimizerState, num_params: usize)
        -> Result<(), StateError>;
    /// The update rule for the device path of `train` (θ and the state kept on the
    /// device, one submit per update; `engine::training`), with the learning rate of
    /// the coming updates: given by the first-order methods (gd, momentum,
    /// nesterov, adam, adamw, rmsprop, adagrad), `None` (the default) for the
    /// others, which the scheduler steps on the host.
    fn device_rule(&self) -> Option<DeviceRule> {
        None
    }
}

/// (E, ∇E) at one (θ, rows), kept so a step can reuse what the previous
/// step's line search already computed at the point it moved to.
#[derive(Clone, Debug, Default)]
pub(crate) struct GradCache {
    entry: Option<CachedPoint>,
}

/// θ (W), the rows, E and ∇E (W) there.
#[derive(Clone, Debug)]
struct CachedPoint {
    theta: Vec<f64>,
    rows: Range<usize>,
    loss: f64,
    grad: Vec<f64>,
}

impl GradCache {
    pub fn store(&mut self, theta: &[f64], rows: Range<usize>, loss: f64, grad: Vec<f64>) {
        self.entry = Some(CachedPoint {
            theta: theta.to_vec(),
            rows,
            loss,
            grad,
        });
    }
    pub fn clear(&mut self) {
        self.entry = None;
    }
    /// (E, ∇E) at (θ, rows), the point a step starts from: from the cache when
    /// it holds this exact point, else from the engine; both checked finite.
    pub fn loss_grad(
        &mut self,
        engine: &mut dyn Curvature,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<(f64, Vec<f64>)> {
        if let Some(p) = self.entry.take() {
            if p.rows == rows && p.theta == theta {
                finite::check_loss_grad(p.loss, &p.grad)?;
                return Ok((p.loss, p.grad));
            }
        }
        finite::start_loss_grad(engine, theta, rows)
    }
}
