//! Learning-rate schedules of the first-order optimizers (gd, momentum,
//! nesterov, adam, adamw, rmsprop, adagrad), and [`LearningRate`], the rate in
//! force that each of them holds.
//!
//! A schedule is a pure function of the epoch: [`Schedule::multiplier`] gives
//! the factor on the configured rate η₀ in epoch `epoch` (1-based) of a run of
//! `epochs`. The rate changes **once per epoch**, before the epoch's first
//! update (like PyTorch's `scheduler.step()` called after every epoch), and is
//! constant within it. The training scheduler tells the optimizer which epoch
//! is starting ([`Optimizer::start_epoch`](super::Optimizer::start_epoch)); an
//! optimizer stepped by hand without that call is in epoch 1 of 1.
//!
//! With e = epoch − 1 (0-based), T = epochs, W = `warmup` epochs, s =
//! `warmup-factor`, e′ = e − W and T′ = T − W (the main schedule starts after
//! the warm-up, at its own e′ = 0):
//!
//! | schedule | factor for e < W (warm-up) | factor for e ≥ W | PyTorch equivalent (stepped per epoch) |
//! |---|---|---|---|
//! | `constant` (default) | s + (1 − s)·e/W | 1 | `LinearLR(start_factor=s, total_iters=W)` |
//! | `step` | 〃 | γ^⌊e′/`step-size`⌋ | `StepLR(step_size, gamma)` |
//! | `exponential` | 〃 | γ^e′ | `ExponentialLR(gamma)` |
//! | `cosine` | 〃 | m + (1 − m)·(1 + cos(π·min(e′, T′)/T′))/2, m = `min-lr`/η₀ | `CosineAnnealingLR(T_max=T′, eta_min=min-lr)` |
//!
//! With a warm-up the whole is PyTorch's
//! `SequentialLR([LinearLR(s, total_iters=W), main], milestones=[W])`: the
//! warm-up rises linearly from s·η₀ in the first epoch towards η₀, which the
//! main schedule starts from in epoch W + 1. The warm-up starts at
//! s = 1/3 of the rate by default (PyTorch's `LinearLR` default
//! `start_factor`), not at 0, so that no epoch is spent without moving.
//! Cosine reaches `min-lr` at the end of the run (after its last epoch, as
//! PyTorch's with T_max = T′), and stays there for epochs beyond T.
//!
//! Defaults: `gamma` 0.1 for `step` (PyTorch's `StepLR` default) and 0.95 for
//! `exponential` (PyTorch has no default; 0.95 halves the rate in ~13.5
//! epochs), `step-size` 30, `min-lr` 0, `warmup` 0, `warmup-factor` 1/3.
//!
//! A run resumed with more `--epochs` than it started with changes T, so a
//! cosine schedule stretches from that epoch on; every other schedule does not
//! depend on T.

use super::spec::{parse, parse_non_negative};
use super::{OptimError, Result};
use std::f64::consts::PI;
use std::fmt;

/// The `set` keys of every schedule (see the module doc).
pub const SCHEDULE_KEYS: [&str; 6] = [
    "schedule",
    "gamma",
    "step-size",
    "min-lr",
    "warmup",
    "warmup-factor",
];

/// The shape of a schedule after its warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// η₀ throughout.
    Constant,
    /// ×γ every `step-size` epochs.
    Step,
    /// ×γ every epoch.
    Exponential,
    /// Half a cosine from η₀ down to `min-lr` over the run's epochs.
    Cosine,
}

impl ScheduleKind {
    /// The name used by `--schedule` and the `schedule` key.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Step => "step",
            ScheduleKind::Exponential => "exponential",
            ScheduleKind::Cosine => "cosine",
        }
    }

    /// The schedule named `text` (`constant`, `step`, `exponential`, `cosine`).
    pub fn parse(text: &str) -> Option<ScheduleKind> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "constant" => ScheduleKind::Constant,
            "step" => ScheduleKind::Step,
            "exponential" => ScheduleKind::Exponential,
            "cosine" => ScheduleKind::Cosine,
            _ => return None,
        })
    }
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A learning-rate schedule with its parameters (the module doc gives the
/// factors and the defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    /// γ of `step` and `exponential`; None = their default (0.1, 0.95).
    pub gamma: Option<f64>,
    /// Epochs between two `step` decays (default 30).
    pub step_size: usize,
    /// The rate `cosine` ends at (absolute, like PyTorch's `eta_min`; default 0).
    pub min_lr: f64,
    /// Epochs of linear warm-up before the schedule (default 0: none).
    pub warmup: usize,
    /// The warm-up's first factor s ∈ (0, 1] (default 1/3).
    pub warmup_factor: f64,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            kind: ScheduleKind::Constant,
            gamma: None,
            step_size: 30,
            min_lr: 0.0,
            warmup: 0,
            warmup_factor: 1.0 / 3.0,
        }
    }
}

impl Schedule {
    /// γ in force: the set value, else the kind's default (0.1 for `step`,
    /// 0.95 for `exponential`; unused by the others).
    pub fn gamma(&self) -> f64 {
        self.gamma.unwrap_or(match self.kind {
            ScheduleKind::Exponential => 0.95,
            _ => 0.1,
        })
    }

    /// The factor on the configured rate `lr` (η₀) in epoch `epoch` (1-based;
    /// 0 is taken as 1) of a run of `epochs`. Only `cosine` uses `lr` (its
    /// floor `min-lr` is absolute) and `epochs`.
    pub fn multiplier(&self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        let e = epoch.saturating_sub(1);
        if e < self.warmup {
            let s = self.warmup_factor;
            return s + (1.0 - s) * e as f64 / self.warmup as f64;
        }
        let e = e - self.warmup;
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Step => powi(self.gamma(), e / self.step_size.max(1)),
            ScheduleKind::Exponential => powi(self.gamma(), e),
            ScheduleKind::Cosine => {
                let floor = self.min_lr / lr;
                let span = epochs.saturating_sub(self.warmup);
                if e >= span {
                    return floor;
                }
                let c = (PI * e as f64 / span as f64).cos();
                floor + (1.0 - floor) * (1.0 + c) / 2.0
            }
        }
    }

    /// One parameter as text (see [`OptimizerSpec::get`](super::OptimizerSpec::get));
    /// None for a key that is not a schedule key, and for `gamma` when unset.
    pub fn get(&self, key: &str) -> Option<String> {
        let float = |v: f64| format!("{v:?}");
        match key {
            "schedule" => Some(self.kind.name().to_string()),
            "gamma" => self.gamma.map(float),
            "step-size" => Some(self.step_size.to_string()),
            "min-lr" => Some(float(self.min_lr)),
            "warmup" => Some(self.warmup.to_string()),
            "warmup-factor" => Some(float(self.warmup_factor)),
            _ => None,
        }
    }

    /// Sets one schedule key from text, for the optimizer `optimizer` (for
    /// messages). The caller has checked that `key` is one of [`SCHEDULE_KEYS`].
    pub fn set(&mut self, optimizer: &str, key: &str, value: &str) -> Result<()> {
        let bad = |reason: &str| OptimError::BadParameter {
            optimizer: optimizer.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        match key {
            "schedule" => {
                self.kind = ScheduleKind::parse(value)
                    .ok_or_else(|| bad("expected constant, step, exponential or cosine"))?
            }
            "gamma" => self.gamma = Some(parse(optimizer, key, value, true)?),
            "step-size" => self.step_size = parse(optimizer, key, value, true)?,
            "min-lr" => self.min_lr = parse_non_negative(optimizer, key, value)?,
            "warmup" => self.warmup = parse(optimizer, key, value, false)?,
            "warmup-factor" => {
                let s: f64 = parse(optimizer, key, value, true)?;
                if s > 1.0 {
                    return Err(bad("must be in (0, 1]"));
                }
                self.warmup_factor = s
            }
            _ => return Err(bad("not a schedule parameter")),
        }
        Ok(())
    }
}

/// x^k for a whole k ≥ 0 (exact for k = 0, 1 and for powers of two such as 0.5^k).
fn powi(x: f64, k: usize) -> f64 {
    x.powi(i32::try_from(k).unwrap_or(i32::MAX))
}

/// The learning rate a first-order optimizer holds: the configured η₀, the
/// base η (η₀, halved by each recovery from a NaN; part of the checkpointed
/// state), the schedule, and the epoch in force (told by the training
/// scheduler). The rate of an update is η · [`Schedule::multiplier`].
#[derive(Clone, Debug)]
pub struct LearningRate {
    initial: f64,
    base: f64,
    schedule: Schedule,
    epoch: usize,
    epochs: usize,
}

impl LearningRate {
    /// η₀ = `lr` with `schedule`, in epoch 1 of 1.
    pub fn new(lr: f64, schedule: Schedule) -> LearningRate {
        LearningRate {
            initial: lr,
            base: lr,
            schedule,
            epoch: 1,
            epochs: 1,
        }
    }

    /// The rate of an update now: η · multiplier(epoch, epochs).
    pub fn now(&self) -> f64 {
        self.base
            * self
                .schedule
                .multiplier(self.initial, self.epoch, self.epochs)
    }

    /// η, the base rate (η₀ halved by each recovery).
    pub fn base(&self) -> f64 {
        self.base
    }

    /// Replaces η (from a checkpoint's state).
    pub fn set_base(&mut self, base: f64) {
        self.base = base;
    }

    /// η ← η/2 (a recovery from a NaN or ∞).
    pub fn halve(&mut self) {
        self.base *= 0.5;
    }

    /// η ← η₀ (a reset).
    pub fn reset(&mut self) {
        self.base = self.initial;
    }

    /// Epoch `epoch` (1-based) of `epochs` is starting.
    pub fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        self.epoch = epoch;
        self.epochs = epochs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            ..Schedule::default()
        }
    }

    /// The factor of every epoch 1..=epochs.
    fn factors(s: &Schedule, lr: f64, epochs: usize) -> Vec<f64> {
        (1..=epochs).map(|e| s.multiplier(lr, e, epochs)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 * b.abs().max(1.0)
    }

    #[test]
    fn constant_is_one_and_epoch_zero_is_epoch_one() {
        let s = Schedule::default();
        assert!(factors(&s, 0.1, 50).iter().all(|&f| f == 1.0));
        let step = Schedule {
            gamma: Some(0.5),
            step_size: 1,
            ..schedule(ScheduleKind::Step)
        };
        assert_eq!(step.multiplier(0.1, 0, 10), step.multiplier(0.1, 1, 10));
    }

    #[test]
    fn step_decays_by_gamma_every_step_size_epochs() {
        let s = Schedule {
            gamma: Some(0.5),
            step_size: 10,
            ..schedule(ScheduleKind::Step)
        };
        let f = factors(&s, 0.1, 35);
        // Epochs 1–10 (e = 0..9) at 1, 11–20 at ½, 21–30 at ¼, 31– at ⅛.
        assert_eq!(&f[0..10], &[1.0; 10]);
        assert_eq!(&f[10..20], &[0.5; 10]);
        assert_eq!(&f[20..30], &[0.25; 10]);
        assert_eq!(&f[30..35], &[0.125; 5]);
        // Defaults: γ = 0.1 every 30 epochs.
        let d = schedule(ScheduleKind::Step);
        assert_eq!(d.multiplier(1.0, 30, 100), 1.0);
        assert!(close(d.multiplier(1.0, 31, 100), 0.1));
        assert!(close(d.multiplier(1.0, 61, 100), 0.01));
    }

    #[test]
    fn exponential_multiplies_by_gamma_every_epoch() {
        let s = Schedule {
            gamma: Some(0.5),
            ..schedule(ScheduleKind::Exponential)
        };
        assert_eq!(factors(&s, 0.1, 5), vec![1.0, 0.5, 0.25, 0.125, 0.0625]);
        let d = schedule(ScheduleKind::Exponential);
        assert_eq!(d.gamma(), 0.95);
        assert!(close(d.multiplier(1.0, 3, 10), 0.95 * 0.95));
    }

    #[test]
    fn cosine_goes_from_lr_to_min_lr_over_the_run() {
        let s = Schedule {
            min_lr: 0.01,
            ..schedule(ScheduleKind::Cosine)
        };
        let (lr, epochs) = (0.1, 10);
        let rate = |epoch: usize| lr * s.multiplier(lr, epoch, epochs);
        assert!(close(rate(1), 0.1));
        // Halfway (e = T/2): the mean of lr and min-lr.
        assert!(close(rate(6), 0.055));
        // The last epoch (e = T − 1) is just above min-lr, which comes after it.
        let last = 0.01 + 0.09 * (1.0 + (PI * 9.0 / 10.0).cos()) / 2.0;
        assert!(close(rate(10), last));
        assert!(rate(10) > 0.01);
        // Beyond the run: min-lr.
        assert!(close(rate(11), 0.01));
        assert!(close(rate(50), 0.01));
        // Decreasing throughout.
        let f = factors(&s, lr, epochs);
        assert!(f.windows(2).all(|w| w[1] < w[0]), "{f:?}");
    }

    #[test]
    fn warm_up_rises_linearly_then_hands_over_at_its_end() {
        // 4 epochs of warm-up from ⅓, then a step schedule counted from epoch 5.
        let s = Schedule {
            gamma: Some(0.5),
            step_size: 2,
            warmup: 4,
            ..schedule(ScheduleKind::Step)
        };
        let f = factors(&s, 0.1, 10);
        let third = 1.0 / 3.0;
        let want = [
            third,
            third + (1.0 - third) * 0.25,
            third + (1.0 - third) * 0.5,
            third + (1.0 - third) * 0.75,
            1.0, // epoch 5: the step schedule's own first epoch
            1.0,
            0.5,
            0.5,
            0.25,
            0.25,
        ];
        for (i, (&got, &w)) in f.iter().zip(&want).enumerate() {
            assert!(close(got, w), "epoch {}: {got} vs {w}", i + 1);
        }
        // Warm-up before cosine: the cosine spans the epochs after the warm-up.
        let c = Schedule {
            warmup: 2,
            warmup_factor: 0.5,
            ..schedule(ScheduleKind::Cosine)
        };
        assert_eq!(c.multiplier(1.0, 1, 6), 0.5);
        assert_eq!(c.multiplier(1.0, 2, 6), 0.75);
        assert_eq!(c.multiplier(1.0, 3, 6), 1.0);
        // Epoch 5 is e′ = 2 of T′ = 4: halfway, (1 + cos π/2)/2 = ½.
        assert!(close(c.multiplier(1.0, 5, 6), 0.5));
        // A warm-up longer than the run stays a warm-up.
        let long = Schedule {
            warmup: 20,
            ..schedule(ScheduleKind::Cosine)
        };
        assert!(close(
            long.multiplier(1.0, 10, 10),
            third + (1.0 - third) * 9.0 / 20.0
        ));
    }

    #[test]
    fn the_learning_rate_combines_recovery_and_schedule() {
        let s = Schedule {
            gamma: Some(0.5),
            ..schedule(ScheduleKind::Exponential)
        };
        let mut lr = LearningRate::new(0.2, s);
        assert_eq!(lr.now(), 0.2);
        lr.start_epoch(3, 10);
        assert_eq!(lr.now(), 0.05);
        lr.halve();
        assert_eq!((lr.base(), lr.now()), (0.1, 0.025));
        lr.reset();
        assert_eq!(lr.now(), 0.05);
    }
}
