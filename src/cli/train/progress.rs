//! What the user sees while a run trains: a progress bar on a terminal, plain
//! lines otherwise; and where a paused state stands, for messages.

use crate::cli::out::outln;
use curvature::engine::verify::VerifyState;
use curvature::optim::StepReport;
use curvature::train::{Callback, Control, EpochRecord, History, TrainState};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::rc::Rc;

/// Per-epoch progress: a bar on a terminal, plain lines otherwise or with --quiet.
/// It also advances the verifier's update counter.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    verify: Rc<VerifyState>,
}

impl Progress {
    pub fn new(epochs: usize, quiet: bool, verify: Rc<VerifyState>) -> Progress {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(epochs as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {elapsed_precise} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, verify }
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
        self.verify.updates.set(self.verify.updates.get() + 1);
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
