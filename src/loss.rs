//! Per-sample losses E_n and their derivatives in the output PRE-activations a
//! (K of them), written side by side.
//!
//! Working in a rather than in y = h(a) lets `bce` and `ce` be computed from
//! the pre-activations by softplus / log-sum-exp (never the log of a rounded
//! probability), and gives one place where every path gets the output delta
//! δ = ∂E_n/∂a, the exact output Hessian ∂²E_n/∂a², and its Gauss-Newton part.
//!
//! | loss | E_n                                  | δ = ∂E_n/∂a            | exact ∂²E_n/∂a²                 | Gauss-Newton part |
//! |------|--------------------------------------|------------------------|---------------------------------|-------------------|
//! | sse  | ½ Σ_k (y_k − t_k)²                   | (y − t) ⊙ h′(a)        | diag(h′² + (y − t) ⊙ h″)        | diag(h′²)         |
//! | mse  | (1/K) Σ_k (y_k − t_k)²               | (2/K)(y − t) ⊙ h′(a)   | (2/K) diag(h′² + (y − t) ⊙ h″)  | (2/K) diag(h′²)   |
//! | bce  | Σ_k softplus(a_k) − t_k a_k          | σ(a) − t               | diag(σ(1 − σ))                  | the same          |
//! | ce   | s·lse(a) − Σ_k t_k a_k, s = Σ_k t_k  | s·p − t                | s·(diag(p) − p pᵀ)              | the same          |
//!
//! `bce` goes with a sigmoid output and `ce` with a softmax output (canonical
//! links, so their exact output Hessians are already positive semidefinite and
//! equal the Gauss-Newton part). For `sse`/`mse` the Gauss-Newton part drops the
//! residual term (y − t) ⊙ h″, which is what PRML 5.84 does; with an identity
//! output the two coincide. For one-hot targets s = 1.

use crate::activation::{sigmoid, softplus, Activation};
use crate::engine::Kind;
use std::fmt;
use std::str::FromStr;

/// The structure of a loss's output Hessian ∂²E_n/∂a² (K, K), which the fast
/// engines specialise on: applied to k vectors and factored without forming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputCurvature {
    /// A diagonal matrix (sse, mse, bce): `Loss::diagonal_hessian` gives it.
    Diagonal,
    /// s·(diag(p) − ppᵀ) with p = softmax(a), s = Σ_k t_k (ce): rank K − 1.
    Softmax,
}

/// A per-sample loss; the objective is its mean over the batch (see DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// ½‖y − t‖² (Bishop 5.82).
    Sse,
    /// mean over the K outputs of (y − t)² (PyTorch's MSELoss, neupy's mse).
    Mse,
    /// binary cross-entropy with sigmoid outputs.
    Bce,
    /// cross-entropy with a softmax output.
    Ce,
}

impl Loss {
    pub const ALL: [Loss; 4] = [Loss::Sse, Loss::Mse, Loss::Bce, Loss::Ce];

    pub fn name(self) -> &'static str {
        match self {
            Loss::Sse => "sse",
            Loss::Mse => "mse",
            Loss::Bce => "bce",
            Loss::Ce => "ce",
        }
    }

    /// The integer the WGSL kernels switch on (`shaders/loss.wgsl`).
    pub fn code(self) -> u32 {
        match self {
            Loss::Sse => 0,
            Loss::Mse => 1,
            Loss::Bce => 2,
            Loss::Ce => 3,
        }
    }

    /// The output activation this loss goes with unless the user names another:
    /// softmax for ce, sigmoid for bce (their canonical links), identity for sse/mse.
    pub fn output_activation(self) -> Activation {
        match self {
            Loss::Ce => Activation::Softmax,
            Loss::Bce => Activation::Sigmoid,
            Loss::Sse | Loss::Mse => Activation::Identity,
        }
    }

    /// Whether the model classifies: targets are one-hot (ce) or 0/1 labels (bce),
    /// outputs are probabilities, accuracy means something.
    pub fn classifies(self) -> bool {
        matches!(self, Loss::Ce | Loss::Bce)
    }

    /// The structure of the output Hessian (see [`OutputCurvature`]).
    pub fn output_curvature(self) -> OutputCurvature {
        match self {
            Loss::Ce => OutputCurvature::Softmax,
            Loss::Sse | Loss::Mse | Loss::Bce => OutputCurvature::Diagonal,
        }
    }

    /// Whether the EXACT output Hessian can have negative entries after the output
    /// activation `act`: sse/mse's c·(h′² + (y − t)·h″) when h is curved. (Canonical
    /// links and an identity output give a positive semidefinite one.)
    pub fn may_curve_negatively(self, act: Activation) -> bool {
        matches!(self, Loss::Sse | Loss::Mse) && !act.is_piecewise_linear()
    }

    /// Whether this loss may follow the output activation `act`; `Err` says what to use.
    pub fn check_output_activation(self, act: Activation) -> Result<(), String> {
        match (self, act) {
            (Loss::Ce, Activation::Softmax) | (Loss::Bce, Activation::Sigmoid) => Ok(()),
            (Loss::Ce, other) => Err(format!(
                "loss `ce` needs a `softmax` output activation, not `{other}`"
            )),
            (Loss::Bce, other) => Err(format!(
                "loss `bce` needs a `sigmoid` output activation, not `{other}`"
            )),
            (Loss::Sse | Loss::Mse, Activation::Softmax) => Err(format!(
                "a `softmax` output goes with loss `ce`, not `{}`",
                self.name()
            )),
            (Loss::Sse | Loss::Mse, _) => Ok(()),
        }
    }

    /// The scale c of the squared-error losses: E_n = (c/2)‖y − t‖² (1 for sse, 2/K for mse).
    fn squared_error_scale(self, k: usize) -> f64 {
        match self {
            Loss::Mse => 2.0 / k as f64,
            _ => 1.0,
        }
    }

    /// E_n for one sample from its output pre-activations `a` (K) and targets `t` (K).
    pub fn value(self, act: Activation, a: &[f64], t: &[f64]) -> f64 {
        debug_assert_eq!(a.len(), t.len());
        match self {
            Loss::Sse | Loss::Mse => {
                let c = self.squared_error_scale(a.len());
                0.5 * c
                    * a.iter()
                        .zip(t)
                        .map(|(&a, &t)| (act.h(a) - t).powi(2))
                        .sum::<f64>()
            }
            Loss::Bce => a.iter().zip(t).map(|(&a, &t)| softplus(a) - t * a).sum(),
            Loss::Ce => {
                let lse = log_sum_exp(a);
                a.iter().zip(t).map(|(&a, &t)| t * (lse - a)).sum()
            }
        }
    }

    /// δ = ∂E_n/∂a, written into `out` (K).
    pub fn delta(self, act: Activation, a: &[f64], t: &[f64], out: &mut [f64]) {
        match self {
            Loss::Sse | Loss::Mse => {
                let c = self.squared_error_scale(a.len());
                for k in 0..a.len() {
                    out[k] = c * (act.h(a[k]) - t[k]) * act.dh(a[k]);
                }
            }
            Loss::Bce => {
                for k in 0..a.len() {
                    out[k] = sigmoid(a[k]) - t[k];
                }
            }
            Loss::Ce => {
                let s: f64 = t.iter().sum();
                softmax(a, out);
                for k in 0..a.len() {
                    out[k] = s * out[k] - t[k];
                }
            }
        }
    }

    /// The exact output Hessian ∂²E_n/∂a², (K, K) row-major.
    pub fn hessian(self, act: Activation, a: &[f64], t: &[f64]) -> Vec<f64> {
        self.output_hessian(act, a, t, Kind::Hessian)
    }

    /// The Gauss-Newton output Hessian (positive semidefinite), (K, K) row-major.
    pub fn gauss_newton_hessian(self, act: Activation, a: &[f64], t: &[f64]) -> Vec<f64> {
        self.output_hessian(act, a, t, Kind::GaussNewton)
    }

    fn output_hessian(self, act: Activation, a: &[f64], t: &[f64], kind: Kind) -> Vec<f64> {
        let k = a.len();
        let mut h = vec![0.0; k * k];
        match self {
            Loss::Sse | Loss::Mse => {
                let c = self.squared_error_scale(k);
                for i in 0..k {
                    let d = act.dh(a[i]);
                    let residual = match kind {
                        Kind::GaussNewton => 0.0,
                        Kind::Hessian => (act.h(a[i]) - t[i]) * act.d2h(a[i]),
                    };
                    h[i * k + i] = c * (d * d + residual);
                }
            }
            Loss::Bce => {
                for i in 0..k {
                    let s = sigmoid(a[i]);
                    h[i * k + i] = s * (1.0 - s);
                }
            }
            Loss::Ce => {
                let s: f64 = t.iter().sum();
                let mut p = vec![0.0; k];
                softmax(a, &mut p);
                for i in 0..k {
                    for j in 0..k {
                        let diag = if i == j { p[i] } else { 0.0 };
                        h[i * k + j] = s * (diag - p[i] * p[j]);
                    }
                }
            }
        }
        h
    }

    /// The diagonal of a diagonal output Hessian (`OutputCurvature::Diagonal`: sse,
    /// mse, bce), exact or its Gauss-Newton part, into `out` (K): sse/mse
    /// c·(h′² + (y − t)·h″) (G: c·h′²), bce σ(1 − σ). For ce, whose output Hessian
    /// is not diagonal, its diagonal s·p(1 − p).
    pub fn diagonal_hessian(
        self,
        act: Activation,
        a: &[f64],
        t: &[f64],
        kind: Kind,
        out: &mut [f64],
    ) {
        let k = a.len();
        match self {
            Loss::Sse | Loss::Mse => {
                let c = self.squared_error_scale(k);
                for i in 0..k {
                    let d = act.dh(a[i]);
                    let residual = match kind {
                        Kind::GaussNewton => 0.0,
                        Kind::Hessian => (act.h(a[i]) - t[i]) * act.d2h(a[i]),
                    };
                    out[i] = c * (d * d + residual);
                }
            }
            Loss::Bce => {
                for i in 0..k {
                    let s = sigmoid(a[i]);
                    out[i] = s * (1.0 - s);
                }
            }
            Loss::Ce => {
                let s: f64 = t.iter().sum();
                softmax(a, out);
                for p in out.iter_mut() {
                    *p = s * (*p - *p * *p);
                }
            }
        }
    }

    /// A square root of the Gauss-Newton output Hessian, C (K, K) row-major with
    /// Σ_k c_k c_kᵀ = H_out,GN for its rows c_k: ce √(s·p_k)(e_k − p), the
    /// diagonal losses √(h_kk) e_k. The outer product, the Gauss-Newton diagonal
    /// and K-FAC's exact factor backpropagate these columns.
    pub fn gauss_newton_factor(self, act: Activation, a: &[f64], t: &[f64]) -> Vec<f64> {
        let k = a.len();
        let mut c = vec![0.0; k * k];
        match self.output_curvature() {
            OutputCurvature::Softmax => {
                let scale: f64 = t.iter().sum();
                let mut p = vec![0.0; k];
                softmax(a, &mut p);
                for r in 0..k {
                    for j in 0..k {
                        let unit = if r == j { 1.0 } else { 0.0 };
                        c[r * k + j] = (scale * p[r]).sqrt() * (unit - p[j]);
                    }
                }
            }
            OutputCurvature::Diagonal => {
                let mut h = vec![0.0; k];
                self.diagonal_hessian(act, a, t, Kind::GaussNewton, &mut h);
                for r in 0..k {
                    c[r * k + r] = h[r].max(0.0).sqrt();
                }
            }
        }
        c
    }

    /// `out` = (∂²E_n/∂a²) · `r` (exact, or the Gauss-Newton part), K each.
    /// This is the output step of R-backpropagation: R{δ} for R{a} = r.
    pub fn hessian_times(
        self,
        act: Activation,
        a: &[f64],
        t: &[f64],
        r: &[f64],
        kind: Kind,
        out: &mut [f64],
    ) {
        let k = a.len();
        match self {
            Loss::Ce => {
                // s·(diag(p) − ppᵀ)·r = s·p ⊙ (r − pᵀr), without forming the K×K matrix.
                let s: f64 = t.iter().sum();
                softmax(a, out);
                let pr: f64 = out.iter().zip(r).map(|(p, r)| p * r).sum();
                for i in 0..k {
                    out[i] = s * out[i] * (r[i] - pr);
                }
            }
            _ => {
                let h = self.output_hessian(act, a, t, kind);
                for i in 0..k {
                    out[i] = h[i * k + i] * r[i];
                }
            }
        }
    }
}

/// log Σ_k exp(a_k), shifted by the maximum so that it never overflows.
pub fn log_sum_exp(a: &[f64]) -> f64 {
    let m = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + a.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// p = softmax(a), shifted by the maximum.
pub fn softmax(a: &[f64], p: &mut [f64]) {
    let m = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (pk, &ak) in p.iter_mut().zip(a) {
        *pk = (ak - m).exp();
        sum += *pk;
    }
    for pk in p.iter_mut() {
        *pk /= sum;
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a loss name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown loss `{0}`: expected one of sse, mse, bce, ce")]
pub struct UnknownLoss(pub String);

impl FromStr for Loss {
    type Err = UnknownLoss;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Loss::ALL
            .into_iter()
            .find(|l| l.name() == wanted)
            .ok_or_else(|| UnknownLoss(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Vec<(Loss, Activation)> {
        let mut v = vec![
            (Loss::Ce, Activation::Softmax),
            (Loss::Bce, Activation::Sigmoid),
        ];
        for act in [
            Activation::Identity,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softplus,
        ] {
            v.push((Loss::Sse, act));
            v.push((Loss::Mse, act));
        }
        v
    }

    /// δ and the exact output Hessian against central differences of E_n.
    #[test]
    fn derivatives_match_finite_differences() {
        let a = [0.3, -1.2, 0.8];
        let t = [0.0, 1.0, 0.0];
        let eps = 1e-5;
        for (loss, act) in cases() {
            let mut delta = [0.0; 3];
            loss.delta(act, &a, &t, &mut delta);
            let h = loss.hessian(act, &a, &t);
            for i in 0..3 {
                let mut ap = a;
                let mut am = a;
                ap[i] += eps;
                am[i] -= eps;
                let fd = (loss.value(act, &ap, &t) - loss.value(act, &am, &t)) / (2.0 * eps);
                assert!((fd - delta[i]).abs() < 1e-8, "{loss}/{act} δ[{i}]");
                let (mut dp, mut dm) = ([0.0; 3], [0.0; 3]);
                loss.delta(act, &ap, &t, &mut dp);
                loss.delta(act, &am, &t, &mut dm);
                for j in 0..3 {
                    let fd2 = (dp[j] - dm[j]) / (2.0 * eps);
                    assert!(
                        (fd2 - h[j * 3 + i]).abs() < 1e-7,
                        "{loss}/{act} H[{j}][{i}]"
                    );
                }
            }
            // hessian_times agrees with the explicit matrix.
            let r = [0.5, -0.25, 2.0];
            for kind in [Kind::Hessian, Kind::GaussNewton] {
                let m = match kind {
                    Kind::GaussNewton => loss.gauss_newton_hessian(act, &a, &t),
                    Kind::Hessian => h.clone(),
                };
                let mut out = [0.0; 3];
                loss.hessian_times(act, &a, &t, &r, kind, &mut out);
                for i in 0..3 {
                    let want: f64 = (0..3).map(|j| m[i * 3 + j] * r[j]).sum();
                    assert!(
                        (want - out[i]).abs() < 1e-12,
                        "{loss}/{act} Hr[{i}] {kind:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn ce_is_stable_for_large_logits() {
        let a = [1000.0, 0.0, -1000.0];
        let t = [0.0, 1.0, 0.0];
        let e = Loss::Ce.value(Activation::Softmax, &a, &t);
        assert!((e - 1000.0).abs() < 1e-9);
        assert_eq!(Loss::Bce.value(Activation::Sigmoid, &[800.0], &[1.0]), 0.0);
    }

    #[test]
    fn output_activation_rules() {
        assert!(Loss::Ce
            .check_output_activation(Activation::Softmax)
            .is_ok());
        assert!(Loss::Ce
            .check_output_activation(Activation::Sigmoid)
            .is_err());
        assert!(Loss::Bce
            .check_output_activation(Activation::Sigmoid)
            .is_ok());
        assert!(Loss::Sse
            .check_output_activation(Activation::Softmax)
            .is_err());
        assert!(Loss::Mse.check_output_activation(Activation::Tanh).is_ok());
    }
}
