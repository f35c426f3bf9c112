//! Pausing a run: the SIGINT/SIGTERM flags, and the [`Pauser`] callback that
//! raises the pause flag for a periodic checkpoint (and, for tests, a SIGINT
//! after a number of updates).

use curvature::optim::StepReport;
use curvature::train::{Callback, Control, History};
use curvature::{Error, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The flags the signal handlers raise: `pause` asks the scheduler to stop at
/// the next update boundary (also raised for a periodic checkpoint);
/// `signalled` is set by the first SIGINT/SIGTERM (a second one then exits at
/// once); `exit_code` is 130 (SIGINT) or 143 (SIGTERM), 0 for none.
pub(super) struct Signals {
    pub pause: Arc<AtomicBool>,
    signalled: Arc<AtomicBool>,
    exit_code: Arc<AtomicUsize>,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let s = Signals {
            pause: Arc::new(AtomicBool::new(false)),
            signalled: Arc::new(AtomicBool::new(false)),
            exit_code: Arc::new(AtomicUsize::new(0)),
        };
        let failed =
            |e: std::io::Error| Error::Input(format!("cannot install the signal handlers: {e}"));
        for (signal, code) in [(SIGINT, 130usize), (SIGTERM, 143usize)] {
            // Registration order is run order: the exit check sees the flag of an earlier signal.
            flag::register_conditional_shutdown(signal, code as i32, s.signalled.clone())
                .map_err(failed)?;
            flag::register_usize(signal, s.exit_code.clone(), code).map_err(failed)?;
            flag::register(signal, s.signalled.clone()).map_err(failed)?;
            flag::register(signal, s.pause.clone()).map_err(failed)?;
        }
        Ok(s)
    }

    /// What the handler of `code`'s signal does (for the test hook).
    fn raise(&self, code: usize) {
        self.exit_code.store(code, Ordering::SeqCst);
        self.signalled.store(true, Ordering::SeqCst);
        self.pause.store(true, Ordering::SeqCst);
    }

    /// 130 or 143 once a signal came; None before.
    pub fn exit_code(&self) -> Option<u8> {
        u8::try_from(self.exit_code.load(Ordering::SeqCst))
            .ok()
            .filter(|&c| c != 0)
    }

    /// After a periodic checkpoint: lowers the pause flag so training goes on.
    /// A signal that came after the caller's exit-code check raises the flag
    /// again, so it is not lost.
    pub fn resume_after_checkpoint(&self) {
        self.pause.store(false, Ordering::SeqCst);
        if self.exit_code().is_some() {
            self.pause.store(true, Ordering::SeqCst);
        }
    }
}

/// Raises `pause` after every `every`-th epoch (a periodic checkpoint) and,
/// for tests, the SIGINT flags after `CURVATURE_TEST_INTERRUPT_AFTER` updates.
pub(super) struct Pauser<'s> {
    signals: &'s Signals,
    every: usize,
    epochs: usize,
    interrupt_after: Option<usize>,
    updates: usize,
}

impl<'s> Pauser<'s> {
    /// Pauses every `every` epochs (0: never) of a run of `epochs`.
    pub fn new(signals: &'s Signals, every: usize, epochs: usize) -> Pauser<'s> {
        let interrupt_after = std::env::var("CURVATURE_TEST_INTERRUPT_AFTER")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        Pauser {
            signals,
            every,
            epochs,
            interrupt_after,
            updates: 0,
        }
    }
}

impl Callback for Pauser<'_> {
    fn on_epoch_end(&mut self, history: &History) -> Control {
        let epoch = history.last_epoch();
        if self.every > 0 && epoch.is_multiple_of(self.every) && epoch < self.epochs {
            self.signals.pause.store(true, Ordering::SeqCst);
        }
        Control::Continue
    }
    fn on_update_end(&mut self, _report: &StepReport) -> Control {
        self.updates += 1;
        if self.interrupt_after == Some(self.updates) {
            self.signals.raise(130);
        }
        Control::Continue
    }
}
