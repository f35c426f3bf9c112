//! The damping rule shared by Newton and Levenberg-Marquardt: a trust-region
//! style adaptation of the penalty added to the curvature matrix.
//!
//! ρ = (E(θ) − E(θ + Δ)) / (−gᵀΔ − ½ΔᵀCΔ) compares the actual reduction with
//! the one the undamped quadratic model (C = H or G) predicts. A step whose
//! loss is not below the old one is rejected and the damping multiplied by
//! `reject_factor`; an accepted step with ρ < ¼ multiplies it by
//! `increase_factor`, one with ρ > ¾ by `decrease_factor` (Nocedal & Wright
//! §4.1, with the classic LM constants).
//!
//! NaN never passes a test here: a NaN or ∞ trial loss is a rejection (the
//! callers accept only `is_finite() && E_new ≤ E_old`), and a ρ that is NaN
//! counts as a poor model (×`increase_factor`), not as "leave it be".

/// Where a rejected damping of 0 restarts: the default floor, far below any
/// curvature that matters, reached again within a few ×4 rises.
const FIRST_NONZERO: f64 = 1e-12;

/// The damping value and its adaptation constants.
#[derive(Clone, Debug, PartialEq)]
pub struct Damping {
    /// The current damping (c for Newton, μ for LM).
    pub value: f64,
    /// Factor on ρ > ¾ (a good model: trust it more).
    pub decrease_factor: f64,
    /// Factor on ρ < ¼ (a poor model).
    pub increase_factor: f64,
    /// Factor on a rejected step (E did not decrease) or a failed Cholesky.
    pub reject_factor: f64,
    /// Floor: keeps (C + value·I) from becoming exactly singular.
    pub min: f64,
    /// Ceiling: beyond it the step is numerically zero and we give up.
    pub max: f64,
}

impl Damping {
    /// Defaults: ×⅓ on ρ > ¾, ×2 on ρ < ¼, ×4 on rejection, within [1e-12, 1e16].
    pub fn new(initial: f64) -> Damping {
        Damping {
            value: initial,
            decrease_factor: 1.0 / 3.0,
            increase_factor: 2.0,
            reject_factor: 4.0,
            min: 1e-12,
            max: 1e16,
        }
    }

    /// After an accepted step with reduction ratio ρ.
    pub fn accepted(&mut self, rho: f64) {
        if rho.is_nan() {
            self.value *= self.increase_factor;
        } else if rho > 0.75 {
            self.value *= self.decrease_factor;
        } else if rho < 0.25 {
            self.value *= self.increase_factor;
        }
        self.value = self.value.clamp(self.min, self.max);
    }

    /// After a rejected step or a failed factorisation.
    pub fn rejected(&mut self) {
        // A damping of 0 (with `min` 0) would stay 0 under any factor: it
        // restarts from FIRST_NONZERO. A NaN value (never set by this type,
        // but the field is public) goes to the ceiling.
        let raised = self.value * self.reject_factor;
        self.value = if raised.is_nan() {
            self.max
        } else if raised <= 0.0 {
            self.min.max(FIRST_NONZERO).min(self.max)
        } else {
            raised.clamp(self.min, self.max)
        };
    }

    /// Whether the damping hit its ceiling (nothing further can be tried).
    pub fn exhausted(&self) -> bool {
        self.value >= self.max
    }
}
