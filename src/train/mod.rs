//! The training scheduler: runs any [`Optimizer`] for epochs over mini-batches
//! or the full batch, evaluates on held-out data after every epoch, keeps a
//! [`History`], stops early on a stalled validation loss, and lets
//! [`Callback`]s watch and stop training.
//!
//! | file | what it holds |
//! |------|---------------|
//! | `config.rs` | [`TrainConfig`], [`DataView`] |
//! | `engines.rs` | [`Engines`]: the training and validation engines, built once, rebound |
//! | `scheduler.rs` | the loop: epochs, batches, evaluation, early stopping, pauses |
//! | `device.rs` | the loop's device path: first-order updates with θ and state on the device |
//! | `shuffle.rs` | the per-epoch permutation |
//! | `evaluate.rs` | E and [`accuracy`] on a whole data set |
//! | `history.rs` | [`EpochRecord`], [`StopReason`], [`History`] and its JSON |
//! | `callback.rs` | [`Callback`], [`Control`] |
//! | `resume.rs` | [`TrainState`], [`TrainOutcome`], [`Resume`] and their checks |
//! | `checks.rs` | what is refused before the first update |
//!
//! ## Mini-batches and the shuffle
//! An engine is bound to one data set and every operation takes a contiguous
//! `rows` range. So the scheduler holds the training set on the host and, at
//! the start of every epoch, permutes its rows with a seeded shuffle and
//! rebinds the training engine to the permuted copy
//! ([`Curvature::rebind`](crate::engine::Curvature::rebind):
//! the engine keeps its buffers, and on the GPU its pipelines; only the rows
//! are uploaded), after which the batches are the contiguous ranges 0..B,
//! B..2B, … (the last one possibly shorter). The engines are built once, by
//! the caller's factory (`(x (N, D), t (N, K)) → Box<dyn Curvature>`), held
//! in [`Engines`]. The permutation of epoch e comes from ChaCha8 seeded with
//! (seed, e), so a run is reproducible and independent of the device.
//! Full-batch training (`batch_size: None`, or B ≥ N) binds the data once,
//! unshuffled, and makes one update per epoch. After a rebind the optimizer is
//! told to [`forget_cached`](Optimizer::forget_cached) what it computed on the
//! old rows; its learned state (velocity, B, damping) carries over.
//!
//! ## Learning-rate schedules
//! Before the updates of every epoch — also when a resumed run continues
//! inside one — the scheduler calls
//! [`Optimizer::start_epoch`](crate::optim::Optimizer::start_epoch) with the
//! epoch and `config.epochs`; the first-order methods take that epoch's rate
//! from their [`schedule`](crate::optim::schedule), the others ignore it. The
//! rate is a function of (epoch, epochs) alone, so it needs no saving.
//!
//! ## The device path
//! With a first-order optimizer ([`Optimizer::device_rule`] is `Some`) on an
//! engine that offers device updates
//! ([`Backend::device_training`](crate::engine::Backend::device_training): the
//! GPU engine), the epoch's updates run on the device: θ and the optimizer's
//! state are uploaded once, each update is one submit (forward, backward, the
//! L2 term, the update kernel) with nothing read back, and θ, the state and the
//! batch losses come back once at the epoch's end (`device.rs`, which also says
//! how its NaN/∞ guard differs from the host's: per run instead of per update).
//! Otherwise — CPU engines, second-order methods, `--verify every`, `--verify-every K > 0` — every
//! update is an optimizer step on the host. The state goes back into the
//! optimizer through its `import_state`, so checkpoints are the same, and a run
//! resumed on the same device continues bit for bit.
//!
//! ## Evaluation
//! Epoch 0 records the starting point. After every epoch, E(θ) on the whole
//! training set and on the validation set (its own engine, bound once), and
//! the accuracy from `outputs` (argmax against one-hot targets; y ≥ ½ against
//! 0/1 targets for one output; none for real-valued targets).
//!
//! ## Interruption and resumption
//! [`train_resumable`] polls an interrupt flag (`&AtomicBool`, raised by a
//! signal handler or for a periodic checkpoint) after every update and before
//! every epoch, and hands back a [`TrainState`]: the epoch and the next batch's
//! first row, the epoch's counters, the History so far, the best (value, epoch,
//! θ) for early stopping, the shuffle seed. The permutation of an epoch is a
//! function of (seed, epoch) alone, so that position is the whole RNG state.
//! Called again with that state, θ and the optimizer's state
//! ([`Optimizer::export_state`]), it rebinds the same permuted data and
//! continues with the same batches; on the CPU the end is bit-identical to an
//! uninterrupted run (`tests/training/resume_library.rs`). `src/checkpoint.rs` puts all
//! of it in one file.

mod callback;
mod checks;
mod config;
mod device;
mod engines;
mod evaluate;
mod history;
mod resume;
mod scheduler;
mod shuffle;

pub use callback::{Callback, Control};
pub use config::{DataView, TrainConfig};
pub use engines::{EngineFactory, Engines};
pub use evaluate::accuracy;
pub use history::{EpochRecord, History, StopReason};
pub use resume::{Resume, TrainOutcome, TrainState};

use crate::optim::{Guarded, OptimError, Optimizer, Result};
use scheduler::{guard_config, Clock, Scheduler};

/// Trains θ (W) in place with `optimizer` on `train`, evaluating on
/// `validation` after every epoch; the engines are built by `factory`, once
/// each. Runs to the end (no interruption): [`train_resumable`] is the same
/// with an interrupt flag and a state to continue from.
///
/// Refuses data or a starting θ holding NaN or ∞ (naming row and column).
/// The optimizer runs inside a [`Guarded`]: an update that meets NaN or ∞ is
/// undone, recovered from and counted as rejected; `max_failures` of them in
/// a row end training with [`OptimError::Diverged`], θ left at the last
/// finite parameters.
pub fn train(
    config: &TrainConfig,
    optimizer: &mut dyn Optimizer,
    factory: &mut EngineFactory,
    theta: &mut [f64],
    train: DataView,
    validation: Option<DataView>,
    callbacks: &mut [&mut dyn Callback],
) -> Result<History> {
    let mut engines = Engines::new(factory);
    let run = Resume::default();
    match train_resumable(
        config,
        optimizer,
        &mut engines,
        theta,
        train,
        validation,
        callbacks,
        run,
    )? {
        TrainOutcome::Finished(history) => Ok(history),
        // Without an interrupt flag nothing can interrupt the run.
        TrainOutcome::Interrupted(state) => Err(OptimError::Training(format!(
            "interrupted at epoch {} without an interrupt flag",
            state.epoch
        ))),
    }
}

/// [`train`] that can be interrupted between updates and continued: with
/// `run.from` = None it starts afresh; with the state an interrupted call
/// returned (and θ and the optimizer's state as they were then, the same data,
/// config and kind of engine) it continues with the same batches, the same
/// permutation and the same evaluation records (all but `seconds`), so on the
/// CPU the final θ is bit-identical to an uninterrupted run's.
/// `on_train_end` is not called for an interrupted call (the run has not ended).
///
/// `engines` are built on the first call that needs them and rebound on later
/// ones: pass the same [`Engines`] to every call that continues a run in this
/// process, so that pausing (e.g. for a checkpoint) does not rebuild them.
#[allow(clippy::too_many_arguments)] // train()'s seven plus the resume part
pub fn train_resumable(
    config: &TrainConfig,
    optimizer: &mut dyn Optimizer,
    engines: &mut Engines,
    theta: &mut [f64],
    train: DataView,
    validation: Option<DataView>,
    callbacks: &mut [&mut dyn Callback],
    run: Resume,
) -> Result<TrainOutcome> {
    let batch = checks::batch_size(config, train)?;
    if let Some(state) = &run.from {
        resume::check_resume(state, config, train.x.nrows(), batch, theta.len())?;
    }
    checks::check_finite_inputs(theta, train, validation)?;
    // Every update goes through the guard: NaN/∞ steps are undone and recovered from.
    let guard = guard_config(config, train, batch, run.from.as_ref());
    let optimizer = Guarded::new(optimizer, guard);
    let clock = Clock::start(run.from.as_ref());
    for cb in callbacks.iter_mut() {
        cb.on_train_start(config);
    }
    let engines = engines.bind(train, validation)?;
    let scheduler = Scheduler {
        config,
        train: train.reborrow(),
        validation: validation.map(DataView::reborrow),
        batch,
        interrupt: run.interrupt,
        clock,
        optimizer,
        engines,
        theta,
        callbacks,
    };
    scheduler.run(run.from)
}
