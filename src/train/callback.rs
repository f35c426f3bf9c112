//! [`Callback`]s: hooks that watch training and may stop it.

use super::config::TrainConfig;
use super::history::History;
use crate::optim::StepReport;

/// What a callback tells the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Hooks into training; every method has a do-nothing default.
pub trait Callback {
    fn on_train_start(&mut self, _config: &TrainConfig) {}
    fn on_train_end(&mut self, _history: &History) {}
    /// Before epoch `epoch` (1-based).
    fn on_epoch_start(&mut self, _epoch: usize) -> Control {
        Control::Continue
    }
    /// After an epoch's record was added to `history`.
    fn on_epoch_end(&mut self, _history: &History) -> Control {
        Control::Continue
    }
    /// After every update (accepted or rejected).
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        Control::Continue
    }
}

/// Asks every callback (none is skipped, so all see the event) and says
/// whether any of them asked to stop.
pub(super) fn any_stop(
    callbacks: &mut [&mut dyn Callback],
    mut ask: impl FnMut(&mut dyn Callback) -> Control,
) -> bool {
    let mut stop = false;
    for cb in callbacks.iter_mut() {
        stop |= ask(&mut **cb) == Control::Stop;
    }
    stop
}
