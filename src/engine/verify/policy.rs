//! What to check, and how much of it: the verifier's modes and the planner that
//! decides, for each result a wrapped engine returns, whether it is checked against
//! the reference over its whole batch, over a seeded random slice of its rows, or
//! not at all.
//!
//! ## `--verify auto`: the budget
//! Verification may take at most the fraction `b` (`--verify-budget`, 0.1) of the
//! wall time so far: with T the seconds since the verifier started and V the seconds
//! spent verifying, the *credit* is b·T − V. The first update checks every kind of
//! result it makes, in full, whatever that costs. After it, each operation kind
//! (loss, gradient, Gv, K-FAC factors, …) is checked at most once per update, when its
//! check fits the credit by the cost per row measured at its last check: in full when
//! the whole batch fits, else over a contiguous slice of as many rows as fit (at least
//! [`MIN_SLICE_ROWS`], at a seeded random start), else not. A kind not measured yet is
//! checked over the smallest slice. So that one kind cannot take the whole budget, a
//! kind is checked only if the credit left after it still pays the smallest slices of
//! the kinds that have waited longer, among those used in this or the previous update.
//!
//! ## The bound on unchecked updates
//! Without checks the credit grows by b·t for every t seconds of training and a check
//! never leaves it below zero, so once the first update's debt is paid
//! ([`warm_up_updates`]), the kind that has waited longest is checked within
//! ⌈s·c/(b·t_u)⌉ + 1 updates (s·c: the cost of its smallest slice; t_u: the shortest
//! update, verification not counted), and each of K kinds used in every update waits
//! for at most the K − 1 others: at most [`unchecked_bound`] = K·(⌈s·c/(b·t_u)⌉ + 1)
//! consecutive updates of a kind go unchecked. `tests` below drive the planner with
//! simulated costs and check that bound; `tests/parity/gpu_faults.rs` checks it on the
//! GPU with an injected fault.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// The fewest rows a sliced check covers (all of them for a smaller batch): enough
/// that a slice exercises the sums over rows of every kernel.
pub const MIN_SLICE_ROWS: usize = 8;

/// The default `--verify-budget`: verification may take a tenth of the run.
pub const DEFAULT_BUDGET: f64 = 0.1;

/// What the verifier checks (`train --verify …`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VerifyMode {
    /// Nothing.
    Off,
    /// `--verify-every K`: the loss, gradient and first curvature product of update 0
    /// and of every K-th (K = 0: update 0 only), in full.
    EveryKth(usize),
    /// Every result, in full, whatever it costs.
    Every,
    /// Within a budget: the fraction of the wall time verification may take.
    Auto { budget: f64 },
}

impl VerifyMode {
    /// Whether first-order updates may stay on the device: every mode but those whose
    /// checks need every update's own results on the host (`every`, `--verify-every K > 0`).
    pub fn keeps_device_updates(self) -> bool {
        !matches!(self, VerifyMode::Every | VerifyMode::EveryKth(1..))
    }

    /// E.g. `auto (budget 10% of the wall time)`.
    pub fn describe(self) -> String {
        match self {
            VerifyMode::Off => "off".into(),
            VerifyMode::EveryKth(0) => "the first update".into(),
            VerifyMode::EveryKth(k) => format!("the first update and every {k}-th"),
            VerifyMode::Every => "every result".into(),
            VerifyMode::Auto { budget } => {
                format!("auto (budget {}% of the wall time)", budget * 100.0)
            }
        }
    }
}

/// How one result is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Over the rows it was computed on.
    Full,
    /// The same operation on these rows (a part of the batch), on both engines.
    Sliced(Range<usize>),
    /// Not checked.
    Skip,
}

/// What the planner knows of one operation kind.
#[derive(Clone, Debug)]
struct OpRecord {
    name: &'static str,
    /// The last update that used it.
    last_used: usize,
    /// The last update whose result of this kind was checked.
    last_checked: Option<usize>,
    /// Seconds per row of its last check (both engines, comparison included).
    seconds_per_row: Option<f64>,
    /// Rows of its smallest slice (≤ [`MIN_SLICE_ROWS`] for small batches).
    min_rows: usize,
}

impl OpRecord {
    /// The cost of its smallest slice by its last measurement (0 when not measured).
    fn min_cost(&self) -> f64 {
        self.seconds_per_row.unwrap_or(0.0) * self.min_rows as f64
    }
}

/// The planner: one per run, shared by every verified engine of it.
pub struct Planner {
    mode: VerifyMode,
    ops: Vec<OpRecord>,
    rng: ChaCha8Rng,
}

/// Which group of `--verify-every K` an operation counts in: its loss and gradient,
/// or its first curvature result (the checks of one due update, as before `auto`).
fn kth_group(op: &'static str) -> Option<&'static str> {
    match op {
        "loss and gradient" => Some(op),
        "loss" | "outputs" | "Fisher vectors" => None,
        _ => Some("curvature"),
    }
}

impl Planner {
    /// Slices drawn from ChaCha8 seeded with `seed`.
    pub fn new(mode: VerifyMode, seed: u64) -> Planner {
        Planner {
            mode,
            ops: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn mode(&self) -> VerifyMode {
        self.mode
    }

    fn record(&mut self, op: &'static str, update: usize, rows: usize) -> usize {
        let min_rows = MIN_SLICE_ROWS.min(rows).max(1);
        match self.ops.iter().position(|r| r.name == op) {
            Some(i) => {
                self.ops[i].last_used = update;
                self.ops[i].min_rows = min_rows;
                i
            }
            None => {
                self.ops.push(OpRecord {
                    name: op,
                    last_used: update,
                    last_checked: None,
                    seconds_per_row: None,
                    min_rows,
                });
                self.ops.len() - 1
            }
        }
    }

    /// How to check the result of `op` on `rows` made in `update`, with `credit`
    /// seconds of budget left (b·T − V; only `auto` reads it). A plan other than
    /// `Skip` counts as that kind's check of this update.
    pub fn plan(
        &mut self,
        op: &'static str,
        update: usize,
        rows: Range<usize>,
        credit: f64,
    ) -> Plan {
        match self.mode {
            VerifyMode::Off => Plan::Skip,
            VerifyMode::Every => Plan::Full,
            VerifyMode::EveryKth(k) => {
                let due = update == 0 || (k > 0 && update.is_multiple_of(k));
                match kth_group(op) {
                    Some(group) if due => {
                        let i = self.record(group, update, rows.len());
                        if self.ops[i].last_checked == Some(update) {
                            Plan::Skip
                        } else {
                            self.ops[i].last_checked = Some(update);
                            Plan::Full
                        }
                    }
                    _ => Plan::Skip,
                }
            }
            VerifyMode::Auto { .. } => self.plan_auto(op, update, rows, credit),
        }
    }

    fn plan_auto(
        &mut self,
        op: &'static str,
        update: usize,
        rows: Range<usize>,
        credit: f64,
    ) -> Plan {
        let n = rows.len();
        let i = self.record(op, update, n);
        let rec = self.ops[i].clone();
        if rec.last_checked == Some(update) {
            return Plan::Skip;
        }
        let plan = if update == 0 {
            Plan::Full
        } else if let Some(per_row) = rec.seconds_per_row {
            // The smallest slices of the kinds that have waited longer than this one.
            let reserve: f64 = self
                .ops
                .iter()
                .filter(|r| r.name != op && r.last_used + 1 >= update)
                .filter(|r| r.last_checked < rec.last_checked)
                .map(OpRecord::min_cost)
                .sum();
            let available = credit - reserve;
            if per_row * n as f64 <= available {
                Plan::Full
            } else {
                let fit = (available / per_row).floor();
                let m = if fit >= 1.0 { fit as usize } else { 0 };
                if m >= rec.min_rows {
                    self.slice(&rows, m.min(n))
                } else {
                    Plan::Skip
                }
            }
        } else {
            // Not measured yet: the smallest slice measures it.
            self.slice(&rows, rec.min_rows)
        };
        if plan != Plan::Skip {
            self.ops[i].last_checked = Some(update);
        }
        plan
    }

    /// `m` contiguous rows of `rows` at a seeded random start (the whole range when m covers it).
    fn slice(&mut self, rows: &Range<usize>, m: usize) -> Plan {
        let n = rows.len();
        if m >= n {
            return Plan::Full;
        }
        let start = rows.start + self.rng.random_range(0..=n - m);
        Plan::Sliced(start..start + m)
    }

    /// The measured cost of a check of `op` over `rows` rows: `seconds`.
    pub fn measured(&mut self, op: &'static str, rows: usize, seconds: f64) {
        let key = match self.mode {
            VerifyMode::EveryKth(_) => kth_group(op).unwrap_or(op),
            _ => op,
        };
        if let Some(r) = self.ops.iter_mut().find(|r| r.name == key) {
            r.seconds_per_row = Some(seconds.max(0.0) / rows.max(1) as f64);
        }
    }
}

/// The most consecutive updates a kind of result used in every update goes unchecked
/// under `auto` once the first update's debt is paid (module doc): `kinds` kinds used
/// in every update, `slice_seconds` the cost of the dearest kind's smallest slice,
/// `budget` b, `update_seconds` the shortest update without verification.
pub fn unchecked_bound(
    kinds: usize,
    slice_seconds: f64,
    budget: f64,
    update_seconds: f64,
) -> usize {
    let wait = (slice_seconds / (budget * update_seconds)).ceil();
    kinds * (wait.max(0.0) as usize + 1)
}

/// The updates it takes to pay a debt of `debt` seconds (−credit after the first
/// update's full checks) at b·t_u per update.
pub fn warm_up_updates(debt: f64, budget: f64, update_seconds: f64) -> usize {
    (debt.max(0.0) / (budget * update_seconds)).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated run: `kinds` operation kinds in every update of `t_u` seconds, each
    /// check costing `per_row[k]` seconds per row, batches of `batch` rows. Returns the
    /// longest run of updates any kind went unchecked after the warm-up, the warm-up,
    /// and V / T at the end.
    fn simulate(
        per_row: &[f64],
        batch: usize,
        budget: f64,
        t_u: f64,
        updates: usize,
    ) -> (usize, usize, f64) {
        let names: [&'static str; 4] = ["loss and gradient", "K-FAC factors", "Gv", "loss"];
        let mut p = Planner::new(VerifyMode::Auto { budget }, 7);
        let (mut t, mut v) = (0.0f64, 0.0f64);
        let mut last = vec![0usize; per_row.len()];
        let mut longest = 0;
        let mut warm = None;
        for u in 0..updates {
            t += t_u;
            for (k, &c) in per_row.iter().enumerate() {
                let rows = match p.plan(names[k], u, 0..batch, budget * t - v) {
                    Plan::Full => batch,
                    Plan::Sliced(r) => {
                        assert!(r.len() >= MIN_SLICE_ROWS && r.end <= batch, "{r:?}");
                        r.len()
                    }
                    Plan::Skip => continue,
                };
                let cost = rows as f64 * c;
                t += cost;
                v += cost;
                p.measured(names[k], rows, cost);
                last[k] = u;
            }
            // The bound holds once the first update's debt is paid: count from there.
            if warm.is_none() && u > 0 && budget * t - v >= 0.0 {
                warm = Some(u);
                last.iter_mut().for_each(|l| *l = (*l).max(u));
            }
            if warm.is_some() {
                longest = last.iter().fold(longest, |m, &l| m.max(u - l));
            }
        }
        (longest, warm.unwrap_or(updates), v / t)
    }

    #[test]
    fn auto_keeps_to_its_bound_on_unchecked_updates_and_its_budget() {
        let budget = 0.1;
        // (per-row costs of the kinds, batch): from "every update fits in full" to
        // "a few slices per many updates".
        for (per_row, batch) in [
            (vec![1e-5, 2e-5, 1e-5, 1e-6], 128),
            (vec![1e-3, 2e-3, 1e-3, 1e-4], 128),
            (vec![0.01, 0.02, 0.01, 0.001], 128),
            (vec![0.05], 32),
        ] {
            let (longest, warm, share) = simulate(&per_row, batch, budget, 1.0, 400);
            let dearest = per_row.iter().fold(0.0f64, |m, &c| m.max(c));
            let bound =
                unchecked_bound(per_row.len(), dearest * MIN_SLICE_ROWS as f64, budget, 1.0);
            assert!(
                longest <= bound,
                "{per_row:?}: {longest} unchecked updates > bound {bound}"
            );
            assert!(
                warm < 400,
                "{per_row:?}: never out of the first update's debt"
            );
            // After 400 updates the first update's full checks are a small part of V.
            assert!(
                share <= budget * 1.05,
                "{per_row:?}: verification took {share} of the time"
            );
        }
    }

    #[test]
    fn a_cheap_check_is_made_in_full_every_update_and_a_dear_one_sliced() {
        let mut p = Planner::new(VerifyMode::Auto { budget: 0.1 }, 1);
        assert_eq!(
            p.plan("Gv", 0, 0..128, -1.0),
            Plan::Full,
            "the first update always"
        );
        assert_eq!(p.plan("Gv", 0, 0..128, 1.0), Plan::Skip, "once per update");
        p.measured("Gv", 128, 0.128); // 1 ms per row
        assert_eq!(p.plan("Gv", 1, 0..128, 0.2), Plan::Full);
        match p.plan("Gv", 2, 0..128, 0.05) {
            Plan::Sliced(r) => assert_eq!(r.len(), 50),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.plan("Gv", 3, 0..128, 0.005),
            Plan::Skip,
            "under the smallest slice"
        );
        // A kind never measured is measured on the smallest slice, whatever the credit.
        match p.plan("Hv", 3, 0..128, -5.0) {
            Plan::Sliced(r) => assert_eq!(r.len(), MIN_SLICE_ROWS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_other_modes() {
        let mut off = Planner::new(VerifyMode::Off, 0);
        assert_eq!(off.plan("loss and gradient", 0, 0..8, 1e9), Plan::Skip);
        let mut every = Planner::new(VerifyMode::Every, 0);
        assert_eq!(every.plan("Gv", 3, 0..8, -1e9), Plan::Full);
        assert_eq!(every.plan("Gv", 3, 0..8, -1e9), Plan::Full);
        let mut kth = Planner::new(VerifyMode::EveryKth(5), 0);
        assert_eq!(kth.plan("loss and gradient", 0, 0..8, 0.0), Plan::Full);
        assert_eq!(kth.plan("Gv", 0, 0..8, 0.0), Plan::Full);
        assert_eq!(
            kth.plan("Hv", 0, 0..8, 0.0),
            Plan::Skip,
            "the first curvature product only"
        );
        assert_eq!(kth.plan("loss and gradient", 3, 0..8, 0.0), Plan::Skip);
        assert_eq!(kth.plan("loss and gradient", 5, 0..8, 0.0), Plan::Full);
        assert!(!VerifyMode::EveryKth(5).keeps_device_updates());
        assert!(VerifyMode::EveryKth(0).keeps_device_updates());
        assert!(VerifyMode::Auto { budget: 0.1 }.keeps_device_updates());
    }
}
