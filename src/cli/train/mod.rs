//! `curvature train`: train an MLP on a data set with any optimizer, on any
//! device, showing progress; write the model, the history (JSON) and the loss
//! and accuracy curves (a picture) into a fresh run directory.
//!
//! | file | step |
//! |------|------|
//! | `args.rs` | the arguments, and their stored form in a checkpoint |
//! | `defaults.rs` | the defaults that depend on the data (chosen on validation) |
//! | `prepare.rs` | data, splits, network, optimizer spec, config |
//! | `outputs.rs` | where the files go, refused up front if they exist |
//! | `resume.rs` | `--resume`: the stored run rebuilt and checked |
//! | `execute.rs` | device, start, training with checkpoints |
//! | `signals.rs` | SIGINT/SIGTERM and periodic pauses |
//! | `progress.rs` | the progress bar or lines |
//! | `finish.rs` | test figures, files written, the summary |

mod args;
mod defaults;
mod execute;
mod finish;
mod outputs;
mod prepare;
mod progress;
mod resume;
mod signals;

pub use args::TrainArgs;

use curvature::Result;

/// Trains; `Ok(Some(code))` when interrupted by a signal (130 SIGINT, 143
/// SIGTERM) after writing the checkpoint, `Ok(None)` when the run finished.
pub fn run(args: &TrainArgs) -> Result<Option<u8>> {
    match &args.resume {
        None => {
            // `--epochs 0` is "evaluate only": the initial θ₀ is evaluated and written
            // (benches/peers/ hands it to PyTorch as the common starting point), and
            // the run says so, so that it is not mistaken for a trained model.
            // (On --resume, 0 is for the scheduler's check, which names the epoch.)
            if args.epochs == Some(0) {
                crate::cli::out::outln!(
                    "note: --epochs 0 evaluates only: nothing is trained, and the model written holds \
                     the initial weights θ₀ (init seed {})",
                    args.seed
                );
            }
            let prepared = prepare::prepare(args)?;
            let args = prepared.args.clone();
            let outputs = outputs::plan_outputs(&args, args.overwrite())?;
            execute::execute(&args, prepared, outputs, None)
        }
        Some(file) => resume::resume(args, file),
    }
}
