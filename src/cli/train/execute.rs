//! Running a prepared run: open the device, announce the run, start from
//! scratch or from a checkpoint, train with periodic and signalled
//! checkpoints, then [`finish`](super::finish) it.

use super::args::{to_argv, TrainArgs};
use super::finish::{finish, Trained};
use super::outputs::{stored_name, Outputs};
use super::prepare::Prepared;
use super::progress::{corrupt_hook, position, resume_hint, Progress};
use super::signals::{Pauser, Signals};
use crate::cli::out::outln;
use curvature::analysis::evidence::DENSE_LIMIT;
use curvature::checkpoint::{save_checkpoint, Checkpoint};
use curvature::data::Dataset;
use curvature::engine::verify::{VerifyMode, VerifyState, Verifying};
use curvature::engine::{Curvature, Device};
use curvature::files::{save_model, FileError, Overwrite};
use curvature::optim::{Optimizer, ScheduleKind};
use curvature::train::{
    train_resumable, DataView, Engines, History, Resume, TrainOutcome, TrainState,
};
use curvature::{Error, Mlp, Result};
use ndarray::ArrayView2;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

/// Trains the prepared run into `outputs`, continuing `resumed` (the
/// checkpoint file and its contents) when given; `Ok(Some(code))` when a
/// signal interrupted it (its checkpoint written), `Ok(None)` when it finished.
pub(super) fn execute(
    args: &TrainArgs,
    prepared: Prepared,
    outputs: Outputs,
    resumed: Option<(PathBuf, Checkpoint)>,
) -> Result<Option<u8>> {
    // `precision` is resolved by `prepare` (the data's default when not given).
    let precision = args.precision.unwrap_or(curvature::engine::Precision::F32);
    let device = args.device.open()?.with_precision(precision);
    announce(args, &prepared, &device);
    let verify =
        Rc::new(VerifyState::new(args.verify_mode(), args.seed).with_device(device.describe()));
    let mut optimizer = prepared.spec.build();
    let start = Start::of(resumed, optimizer.as_mut(), &prepared.mlp, args.seed)?;
    outputs.create_folders()?;
    outputs.check_writable()?;
    let mut session = Session {
        args,
        prepared: &prepared,
        outputs: &outputs,
        stored_run: stored_run(args, &outputs),
        signals: Signals::install()?,
        last_checkpoint: start.checkpoint,
    };
    let started = Instant::now();
    // A resumed run's wall time counts the time before its interruption too.
    let earlier = start.from.as_ref().map_or(0.0, |s| s.elapsed_seconds);
    let mut theta = start.theta;
    let history =
        match session.train(&device, &verify, optimizer.as_mut(), &mut theta, start.from)? {
            Ending::Finished(history) => history,
            Ending::Signalled(code) => return Ok(Some(code)),
        };
    let trained = Trained {
        theta,
        history,
        wall_seconds: earlier + started.elapsed().as_secs_f64(),
        last_checkpoint: session.last_checkpoint,
    };
    finish(args, &prepared, &outputs, &device, &verify, trained)
}

/// The two lines that say what is about to run.
fn announce(args: &TrainArgs, prepared: &Prepared, device: &Device) {
    let mlp = &prepared.mlp;
    outln!(
        "training {} (W = {}) on {}: {} train / {} validation / {} test rows",
        mlp.describe(),
        mlp.num_params(),
        prepared.full.name,
        prepared.train_set.len(),
        prepared.val_set.as_ref().map_or(0, Dataset::len),
        prepared.test_set.as_ref().map_or(0, Dataset::len)
    );
    // A schedule other than a constant rate is named (`--schedule` alone
    // leaves `--set` empty).
    let schedule = match prepared.spec.schedule() {
        Some(s) if s.kind != ScheduleKind::Constant || s.warmup > 0 => {
            let warmup = match s.warmup {
                0 => String::new(),
                w => format!(" after {w} warm-up epochs"),
            };
            format!(", {} learning rate{warmup}", s.kind)
        }
        _ => String::new(),
    };
    outln!(
        "optimizer {} ({}){schedule}, {} epochs, {}, device {}",
        prepared.spec.name(),
        if args.params.is_empty() {
            "defaults"
        } else {
            &args.params
        },
        prepared.config.epochs,
        prepared
            .config
            .batch_size
            .map_or("full batch".to_string(), |b| format!("batches of {b}")),
        device.describe()
    );
    if let Some(every) = prepared.config.evidence_every {
        announce_evidence(every, prepared.config.epochs, mlp);
    }
}

/// `--l2 evidence`: when λ is re-estimated, and by which matrix (the issue asks
/// that the method be stated, since above the dense limit it is approximate).
fn announce_evidence(every: usize, epochs: usize, mlp: &Mlp) {
    let w = mlp.num_params();
    let method = if w <= DENSE_LIMIT {
        format!("the dense Gauss-Newton matrix (W = {w} ≤ {DENSE_LIMIT})")
    } else {
        // Measured on digits and mnist10k (README, "λ by the evidence"): the
        // diagonal over-counts the well-determined weights γ, so λ comes out
        // larger than the validation grid's best.
        format!(
            "the Gauss-Newton diagonal, an approximation (W = {w} is above the dense limit \
             {DENSE_LIMIT}); it tends to over-regularise"
        )
    };
    outln!(
        "λ by the evidence (MacKay): re-estimated every {every} epochs from λ = {:.3e} by {method}",
        mlp.l2()
    );
    if every > epochs {
        outln!(
            "note: --evidence-every {every} is more than the {epochs} epochs: λ stays {:.3e}; give a smaller \
             --evidence-every to re-estimate it",
            mlp.l2()
        );
    }
}

/// Where training starts: θ, the scheduler's state (None: afresh) and the
/// checkpoint it came from with where that stands (for messages).
struct Start {
    theta: Vec<f64>,
    from: Option<TrainState>,
    checkpoint: Option<(PathBuf, String)>,
}

impl Start {
    /// Afresh from the seed's initial weights, or from the checkpoint, whose
    /// optimizer state goes into `optimizer`.
    fn of(
        resumed: Option<(PathBuf, Checkpoint)>,
        optimizer: &mut dyn Optimizer,
        mlp: &Mlp,
        seed: u64,
    ) -> Result<Start> {
        let Some((file, checkpoint)) = resumed else {
            return Ok(Start {
                theta: mlp.init_params(seed),
                from: None,
                checkpoint: None,
            });
        };
        optimizer
            .import_state(&checkpoint.optimizer, mlp.num_params())
            .map_err(|e| FileError::Invalid {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        let at = position(&checkpoint.state);
        outln!("resuming from {} {at}", file.display());
        Ok(Start {
            theta: checkpoint.theta,
            from: Some(checkpoint.state),
            checkpoint: Some((file, at)),
        })
    }
}

/// What the checkpoint stores besides the network, θ, config and states: the
/// arguments (for `--resume`) and the output file names (relative to the
/// checkpoint's directory, where a resume writes them).
fn stored_run(args: &TrainArgs, outputs: &Outputs) -> BTreeMap<String, String> {
    [
        ("args", serde_json::Value::from(to_argv(args)).to_string()),
        ("model", stored_name(&outputs.model)),
        ("history", stored_name(&outputs.history)),
        ("plot", stored_name(&outputs.plot)),
        ("checkpoint", stored_name(&outputs.checkpoint)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// How training ended.
enum Ending {
    Finished(History),
    /// A signal came: its checkpoint is written; exit with this code.
    Signalled(u8),
}

/// A run training, pausing for checkpoints.
struct Session<'s> {
    args: &'s TrainArgs,
    prepared: &'s Prepared,
    outputs: &'s Outputs,
    stored_run: BTreeMap<String, String>,
    signals: Signals,
    /// The last checkpoint written or resumed from, and where it stands.
    last_checkpoint: Option<(PathBuf, String)>,
}

impl Session<'_> {
    /// Trains θ from `from` to the end, writing a checkpoint at every pause:
    /// periodic ones (then training goes on) and signalled ones (then it ends).
    /// The engines are built once and outlive the pauses.
    fn train(
        &mut self,
        device: &Device,
        verify: &Rc<VerifyState>,
        optimizer: &mut dyn Optimizer,
        theta: &mut [f64],
        mut from: Option<TrainState>,
    ) -> Result<Ending> {
        let (args, prepared) = (self.args, self.prepared);
        let mut engines = Engines::new(|x, t| engine(device, &prepared.mlp, args, verify, x, t));
        let epochs = prepared.config.epochs;
        let every = args
            .checkpoint_every
            .unwrap_or(prepared.spec.training_defaults().checkpoint_every);
        let mut progress = Progress::new(epochs, args.quiet, verify.clone(), corrupt_hook(device)?);
        let mut pauser = Pauser::new(&self.signals, every, epochs);
        let train = view(&prepared.train_set);
        let validation = prepared.val_set.as_ref().map(view);
        loop {
            let result = train_resumable(
                &prepared.config,
                optimizer,
                &mut engines,
                theta,
                train,
                validation,
                &mut [&mut progress, &mut pauser],
                Resume {
                    from: from.take(),
                    interrupt: Some(&self.signals.pause),
                },
            );
            let state = match result {
                Ok(TrainOutcome::Finished(history)) => {
                    progress.finish();
                    return Ok(Ending::Finished(history));
                }
                Ok(TrainOutcome::Interrupted(state)) => *state,
                Err(e) => {
                    progress.finish();
                    let e = Error::from(e);
                    let verified = match &e {
                        Error::Verification(_) => {
                            self.save_last_verified(verify).unwrap_or_else(|e| {
                                Some(format!(
                                    "the last verified weights could not be written: {e}"
                                ))
                            })
                        }
                        _ => None,
                    };
                    let kept = self.kept_checkpoint();
                    let note = verified.map_or(kept.clone(), |v| format!("{v}; {kept}"));
                    // The failure keeps its type (a device fault stays one) with what is kept.
                    return Err(e.noted(note));
                }
            };
            let at = position(&state);
            let checkpoint = self.save(theta, optimizer, state)?;
            if let Some(code) = self.signals.exit_code() {
                progress.finish();
                eprintln!(
                    "interrupted {at}: checkpoint written to {}; {}",
                    self.outputs.checkpoint.display(),
                    resume_hint(&self.outputs.checkpoint)
                );
                return Ok(Ending::Signalled(code));
            }
            self.last_checkpoint = Some((self.outputs.checkpoint.clone(), at));
            // A periodic checkpoint: go on.
            self.signals.resume_after_checkpoint();
            from = Some(checkpoint.state);
        }
    }

    /// Writes the checkpoint of the paused `state`.
    fn save(
        &self,
        theta: &[f64],
        optimizer: &dyn Optimizer,
        state: TrainState,
    ) -> Result<Checkpoint> {
        let checkpoint = Checkpoint {
            mlp: self.prepared.mlp.clone(),
            theta: theta.to_vec(),
            config: self.prepared.config.clone(),
            optimizer_spec: self.prepared.spec.clone(),
            optimizer: optimizer.export_state(),
            state,
            run: self.stored_run.clone(),
        };
        save_checkpoint(&self.outputs.checkpoint, &checkpoint)?;
        Ok(checkpoint)
    }

    /// After a disagreement: the θ of the last verified update, written as a model
    /// beside the run's (`last-verified.safetensors`); what the error line says of it.
    fn save_last_verified(&self, verify: &VerifyState) -> Result<Option<String>> {
        let Some((update, theta)) = verify.last_verified() else {
            return Ok(None);
        };
        let path = self
            .outputs
            .model
            .with_file_name("last-verified.safetensors");
        let meta = HashMap::from([("verified_update".to_string(), update.to_string())]);
        save_model(&path, &self.prepared.mlp, &theta, &meta, Overwrite::Allow)?;
        Ok(Some(format!(
            "the weights of update {update}, the last verified, are kept in {}",
            path.display()
        )))
    }

    /// What a failed run leaves to continue from, for its error line.
    fn kept_checkpoint(&self) -> String {
        match &self.last_checkpoint {
            Some((path, at)) => format!(
                "the last checkpoint ({at}) is kept at {}: {}",
                path.display(),
                resume_hint(path)
            ),
            None => "no checkpoint had been written yet".to_string(),
        }
    }
}

/// A data set as the scheduler takes it.
fn view(ds: &Dataset) -> DataView<'_> {
    DataView {
        x: ds.x.view(),
        t: ds.t.view(),
    }
}

/// An engine of `device` bound to (x, t); on a GPU wrapped in the verifier, which
/// checks its results against the CPU reference (`--verify`, `--verify-every`).
fn engine(
    device: &Device,
    mlp: &Mlp,
    args: &TrainArgs,
    verify: &Rc<VerifyState>,
    x: ArrayView2<f32>,
    t: ArrayView2<f32>,
) -> Result<Box<dyn Curvature>> {
    let engine: Box<dyn Curvature> = Box::new(device.engine(mlp, x, t)?);
    if !device.is_gpu() || args.verify_mode() == VerifyMode::Off {
        return Ok(engine);
    }
    let verifying = Verifying::new(engine, mlp, x, t, verify.clone())?;
    Ok(Box::new(verifying))
}
