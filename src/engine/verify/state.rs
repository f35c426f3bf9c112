//! What the verifier shares with the training loop and reports at the end: the update
//! counter, the mode and planner, the budget's ledger (its clock and the seconds spent
//! verifying), every check made, the last verified θ, and the per-kind summary that
//! `train` prints and writes into `history.json`.

use super::policy::{Plan, Planner, VerifyMode};
use crate::engine::compare::Comparison;
use std::cell::{Cell, RefCell};
use std::fmt::Write;
use std::ops::Range;
use std::time::Instant;

/// One verified result.
#[derive(Clone, Debug)]
pub struct Check {
    /// The update (0-based, of this process) it belonged to.
    pub update: usize,
    /// What it was: `loss`, `gradient`, `Gv`, `K-FAC factors`, …
    pub quantity: &'static str,
    /// Rows compared, and rows of the batch the result was computed on (fewer compared:
    /// a sliced check, the same operation on both engines over those rows).
    pub rows: usize,
    pub of_rows: usize,
    pub comparison: Comparison,
}

impl Check {
    pub fn sliced(&self) -> bool {
        self.rows < self.of_rows
    }
}

/// The checks of one kind of result, summed up.
#[derive(Clone, Debug, PartialEq)]
pub struct KindSummary {
    pub quantity: &'static str,
    pub full: usize,
    pub sliced: usize,
    /// The largest relative error, and the tolerance's `rel`.
    pub worst_rel: f64,
    pub tolerance_rel: f64,
    /// The largest share of its tolerance an entry used (≤ 1: passed).
    pub worst_fraction: f64,
}

/// A clock in seconds (any origin): the wall clock, or a test's.
pub type Clock = Box<dyn Fn() -> f64>;

fn wall_clock() -> Clock {
    let start = Instant::now();
    Box::new(move || start.elapsed().as_secs_f64())
}

/// Shared (`Rc`) by the verified engines of a run and its training loop, whose
/// callback advances `updates` after every update.
pub struct VerifyState {
    pub updates: Cell<usize>,
    pub checks: RefCell<Vec<Check>>,
    planner: RefCell<Planner>,
    clock: Clock,
    /// The clock's reading when the verifier started (T counts from it).
    origin: f64,
    /// V: seconds spent verifying (both engines' work for a check, and its comparison).
    spent: Cell<f64>,
    /// Rows compared so far (a test's clock may charge them).
    rows_checked: Cell<usize>,
    /// The device, for the message of a disagreement.
    device: String,
    /// The last update whose checks all passed, and the θ they were made at.
    last_verified: RefCell<Option<(usize, Vec<f64>)>>,
}

impl Default for VerifyState {
    /// `--verify-every 0`: the first update only.
    fn default() -> Self {
        VerifyState::new(VerifyMode::EveryKth(0), 0)
    }
}

impl VerifyState {
    /// A verifier in `mode`, its slices drawn from `seed`, on the wall clock.
    pub fn new(mode: VerifyMode, seed: u64) -> VerifyState {
        VerifyState {
            updates: Cell::new(0),
            checks: RefCell::new(Vec::new()),
            planner: RefCell::new(Planner::new(mode, seed)),
            clock: wall_clock(),
            origin: 0.0,
            spent: Cell::new(0.0),
            rows_checked: Cell::new(0),
            device: "the device".into(),
            last_verified: RefCell::new(None),
        }
    }

    /// The same on another clock (a test's, to make the budget deterministic); T counts
    /// from its reading now.
    pub fn with_clock(mut self, clock: impl Fn() -> f64 + 'static) -> VerifyState {
        self.origin = clock();
        self.clock = Box::new(clock);
        self
    }

    /// Names the device in a disagreement's message (e.g. `gpu: llvmpipe (Vulkan, Cpu)`).
    pub fn with_device(mut self, device: impl Into<String>) -> VerifyState {
        self.device = device.into();
        self
    }

    pub fn mode(&self) -> VerifyMode {
        self.planner.borrow().mode()
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub(super) fn now(&self) -> f64 {
        (self.clock)()
    }

    /// T: seconds since the verifier started.
    pub fn elapsed_seconds(&self) -> f64 {
        self.now() - self.origin
    }

    /// V: seconds spent verifying.
    pub fn spent_seconds(&self) -> f64 {
        self.spent.get()
    }

    /// V / T (0 before any time has passed).
    pub fn share(&self) -> f64 {
        let t = self.elapsed_seconds();
        if t > 0.0 {
            self.spent_seconds() / t
        } else {
            0.0
        }
    }

    /// Rows compared so far, over all checks.
    pub fn rows_checked(&self) -> usize {
        self.rows_checked.get()
    }

    /// The last update whose checks all passed and the θ (W) they were made at.
    pub fn last_verified(&self) -> Option<(usize, Vec<f64>)> {
        self.last_verified.borrow().clone()
    }

    /// How to check `op`'s result on `rows` in the current update.
    pub(super) fn plan(&self, op: &'static str, rows: Range<usize>) -> Plan {
        let credit = match self.mode() {
            VerifyMode::Auto { budget } => budget * self.elapsed_seconds() - self.spent_seconds(),
            _ => 0.0,
        };
        self.planner
            .borrow_mut()
            .plan(op, self.updates.get(), rows, credit)
    }

    /// Books a check of `op` over `rows` rows that began at clock reading `began`.
    pub(super) fn book(&self, op: &'static str, rows: usize, began: f64) {
        self.rows_checked.set(self.rows_checked.get() + rows);
        let seconds = (self.now() - began).max(0.0);
        self.spent.set(self.spent.get() + seconds);
        self.planner.borrow_mut().measured(op, rows, seconds);
    }

    pub(super) fn push(&self, check: Check) {
        self.checks.borrow_mut().push(check);
    }

    /// θ passed the checks of `update`.
    pub(super) fn verified_at(&self, update: usize, theta: &[f64]) {
        let mut last = self.last_verified.borrow_mut();
        match last.as_mut() {
            Some((u, t)) if *u == update && t.as_slice() == theta => {}
            Some((u, t)) => {
                *u = update;
                t.clear();
                t.extend_from_slice(theta);
            }
            None => *last = Some((update, theta.to_vec())),
        }
    }

    /// The largest relative error seen so far, with its quantity and update.
    pub fn worst(&self) -> Option<(f64, &'static str, usize)> {
        self.checks
            .borrow()
            .iter()
            .map(|c| (c.comparison.worst_rel, c.quantity, c.update))
            .fold(None, |best, x| match best {
                Some(b) if b.0 >= x.0 => Some(b),
                _ => Some(x),
            })
    }

    /// The checks by kind of result, in the order each kind was first checked.
    pub fn summary(&self) -> Vec<KindSummary> {
        let mut out: Vec<KindSummary> = Vec::new();
        for c in self.checks.borrow().iter() {
            let i = match out.iter().position(|k| k.quantity == c.quantity) {
                Some(i) => i,
                None => {
                    out.push(KindSummary {
                        quantity: c.quantity,
                        full: 0,
                        sliced: 0,
                        worst_rel: 0.0,
                        tolerance_rel: c.comparison.tolerance.rel,
                        worst_fraction: 0.0,
                    });
                    out.len() - 1
                }
            };
            let k = &mut out[i];
            if c.sliced() {
                k.sliced += 1;
            } else {
                k.full += 1;
            }
            k.worst_rel = k.worst_rel.max(c.comparison.worst_rel);
            k.worst_fraction = k.worst_fraction.max(c.comparison.worst_fraction);
        }
        out
    }

    /// The summary as lines for the end of a run.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "verification ({}): {} checks against the CPU reference, {:.1}% of the wall time ({:.2} s of {:.2} s)",
            self.mode().describe(),
            self.checks.borrow().len(),
            100.0 * self.share(),
            self.spent_seconds(),
            self.elapsed_seconds()
        )];
        for k in self.summary() {
            lines.push(format!(
                "  {:<18} {:>5} full {:>5} sliced   worst rel {:.2e} (tolerance rel {:.0e}; {:.1}% of the tolerance used)",
                k.quantity,
                k.full,
                k.sliced,
                k.worst_rel,
                k.tolerance_rel,
                100.0 * k.worst_fraction
            ));
        }
        lines
    }

    /// The summary as a JSON object (for `history.json`).
    pub fn to_json(&self) -> String {
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v}")
            } else {
                "null".to_string()
            }
        };
        let mut kinds = String::new();
        for (i, k) in self.summary().iter().enumerate() {
            if i > 0 {
                kinds.push(',');
            }
            let _ = write!(
                kinds,
                "{{\"quantity\":\"{}\",\"full\":{},\"sliced\":{},\"worst_rel\":{},\"tolerance_rel\":{},\"worst_fraction_of_tolerance\":{}}}",
                k.quantity,
                k.full,
                k.sliced,
                num(k.worst_rel),
                num(k.tolerance_rel),
                num(k.worst_fraction)
            );
        }
        let budget = match self.mode() {
            VerifyMode::Auto { budget } => num(budget),
            _ => "null".into(),
        };
        format!(
            "{{\"mode\":\"{}\",\"budget\":{budget},\"checks\":{},\"seconds\":{},\"wall_seconds\":{},\"share\":{},\"kinds\":[{kinds}]}}",
            self.mode().describe(),
            self.checks.borrow().len(),
            num(self.spent_seconds()),
            num(self.elapsed_seconds()),
            num(self.share())
        )
    }
}
