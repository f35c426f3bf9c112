//! What the user sees while a run trains: a progress bar on a terminal, plain
//! lines otherwise; and where a paused state stands, for messages.

use crate::cli::out::outln;
use curvature::engine::verify::VerifyState;
use curvature::engine::Device;
use curvature::gpu::GpuContext;
use curvature::optim::StepReport;
use curvature::train::{Callback, Control, EpochRecord, History, TrainState};
use curvature::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::Arc;

/// Test hook: `CURVATURE_TEST_CORRUPT_AFTER_UPDATES=N` makes every result the GPU reads
/// back wrong after the N-th update of this process (`GpuContext::corrupt_results_for_testing`),
/// so that tests see what verification catches. Unset in use.
pub(super) fn corrupt_hook(device: &Device) -> Result<Option<(usize, Arc<GpuContext>)>> {
    const NAME: &str = "CURVATURE_TEST_CORRUPT_AFTER_UPDATES";
    let Ok(v) = std::env::var(NAME) else {
        return Ok(None);
    };
    let n = v
        .trim()
        .parse()
        .map_err(|_| Error::Input(format!("{NAME}={v}: give a whole number, or unset it")))?;
    Ok(match device {
        Device::Gpu(ctx) => Some((n, ctx.clone())),
        _ => None,
    })
}

/// Per-epoch progress: a bar on a terminal, plain lines otherwise or with --quiet.
/// It also advances the verifier's update counter.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    verify: Rc<VerifyState>,
    /// The test hook's update count and device ([`corrupt_hook`]).
    corrupt: Option<(usize, Arc<GpuContext>)>,
}

impl Progress {
    pub fn new(
        epochs: usize,
        quiet: bool,
        verify: Rc<VerifyState>,
        corrupt: Option<(usize, Arc<GpuContext>)>,
    ) -> Progress {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(epochs as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {elapsed_precise} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            verify,
            corrupt,
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

fn describe(r: &EpochRecord) -> String {
    let mut s = format!("train loss {:.5}", r.train_loss);
    if let Some(a) = r.train_accuracy {
        s += &format!(" acc {a:.4}");
    }
    if let Some(l) = r.val_loss {
        s += &format!(" | validation loss {l:.5}");
    }
    if let Some(a) = r.val_accuracy {
        s += &format!(" acc {a:.4}");
    }
    s
}

impl Callback for Progress {
    fn on_epoch_end(&mut self, history: &History) -> Control {
        if let Some(r) = history.last() {
            match &self.bar {
                Some(bar) => {
                    bar.set_position(r.epoch as u64);
                    bar.set_message(describe(r));
                }
                None => outln!(
                    "epoch {:>4}  {}  ({:.2} s)",
                    r.epoch,
                    describe(r),
                    r.seconds
                ),
            }
        }
        Control::Continue
    }
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        let done = self.verify.updates.get() + 1;
        self.verify.updates.set(done);
        if let Some((after, ctx)) = &self.corrupt {
            if done == *after {
                ctx.corrupt_results_for_testing();
            }
        }
        Control::Continue
    }
}

/// Where a state stands, for messages: "at epoch 7, update 3" or "after epoch 6".
pub(super) fn position(state: &TrainState) -> String {
    if state.next_row == 0 {
        format!("after epoch {}", state.epoch - 1)
    } else {
        format!(
            "at epoch {}, update {}",
            state.epoch,
            state.epoch_updates + state.epoch_rejected
        )
    }
}

/// The command that continues the run saved in `checkpoint`.
pub(super) fn resume_hint(checkpoint: &std::path::Path) -> String {
    format!(
        "resume with: curvature train --resume {}",
        checkpoint.display()
    )
}
