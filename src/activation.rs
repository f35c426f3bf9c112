//! Activation functions h, with h′ and h″ written side by side.
//!
//! Every path (the CPU reference, the WGSL kernels in `shaders/activation.wgsl`)
//! must agree with the formulas here. `Softmax` is not elementwise: it is only
//! allowed as the output activation together with the `ce` loss, where the loss
//! is computed from the pre-activations by log-sum-exp (see `loss.rs`), so it
//! never needs h′ or h″ of its own.

use std::fmt;
use std::str::FromStr;

/// Slope of `leaky_relu` for negative inputs.
pub const LEAKY_RELU_SLOPE: f64 = 0.01;
/// α of `elu`: h(a) = α(eᵃ − 1) for a < 0.
pub const ELU_ALPHA: f64 = 1.0;

/// An activation function of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu,
    Elu,
    Softplus,
    /// Output layer only, with the `ce` loss.
    Softmax,
}

impl Activation {
    /// Every activation, in the order of their WGSL codes.
    pub const ALL: [Activation; 8] = [
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Elu,
        Activation::Softplus,
        Activation::Softmax,
    ];

    /// The elementwise activations (all but softmax).
    pub const ELEMENTWISE: [Activation; 7] = [
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Elu,
        Activation::Softplus,
    ];

    /// The name used on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Elu => "elu",
            Activation::Softplus => "softplus",
            Activation::Softmax => "softmax",
        }
    }

    /// The integer the WGSL kernels switch on (`shaders/activation.wgsl`).
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Sigmoid => 1,
            Activation::Tanh => 2,
            Activation::Relu => 3,
            Activation::LeakyRelu => 4,
            Activation::Elu => 5,
            Activation::Softplus => 6,
            Activation::Softmax => 7,
        }
    }

    pub fn is_elementwise(self) -> bool {
        self != Activation::Softmax
    }

    /// h(a). For `Softmax` this is undefined elementwise; it returns `a`
    /// (callers handle softmax on whole rows, see `loss.rs`).
    pub fn h(self, a: f64) -> f64 {
        match self {
            Activation::Identity | Activation::Softmax => a,
            Activation::Sigmoid => sigmoid(a),
            Activation::Tanh => a.tanh(),
            Activation::Relu => a.max(0.0),
            Activation::LeakyRelu => {
                if a > 0.0 {
                    a
                } else {
                    LEAKY_RELU_SLOPE * a
                }
            }
            Activation::Elu => {
                if a > 0.0 {
                    a
                } else {
                    ELU_ALPHA * a.exp_m1()
                }
            }
            Activation::Softplus => softplus(a),
        }
    }

    /// h′(a). ReLU-like kinks take the right-hand derivative at 0 only for a > 0
    /// (h′(0) = 0 for relu, the slope for leaky_relu), as PyTorch does.
    pub fn dh(self, a: f64) -> f64 {
        match self {
            Activation::Identity | Activation::Softmax => 1.0,
            Activation::Sigmoid => {
                let s = sigmoid(a);
                s * (1.0 - s)
            }
            Activation::Tanh => {
                let t = a.tanh();
                1.0 - t * t
            }
            Activation::Relu => {
                if a > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu => {
                if a > 0.0 {
                    1.0
                } else {
                    LEAKY_RELU_SLOPE
                }
            }
            Activation::Elu => {
                if a > 0.0 {
                    1.0
                } else {
                    ELU_ALPHA * a.exp()
                }
            }
            Activation::Softplus => sigmoid(a),
        }
    }

    /// Whether h″ is zero everywhere [`Activation::d2h`] is evaluated (identity and the
    /// piecewise-linear ones); softmax's curvature lives in the `ce` loss instead.
    pub fn is_piecewise_linear(self) -> bool {
        matches!(
            self,
            Activation::Identity | Activation::Relu | Activation::LeakyRelu
        )
    }

    /// h″(a). Zero almost everywhere for the piecewise-linear ones.
    pub fn d2h(self, a: f64) -> f64 {
        match self {
            Activation::Identity | Activation::Softmax => 0.0,
            Activation::Sigmoid => {
                let s = sigmoid(a);
                s * (1.0 - s) * (1.0 - 2.0 * s)
            }
            Activation::Tanh => {
                let t = a.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            Activation::Relu | Activation::LeakyRelu => 0.0,
            Activation::Elu => {
                if a > 0.0 {
                    0.0
                } else {
                    ELU_ALPHA * a.exp()
                }
            }
            Activation::Softplus => {
                let s = sigmoid(a);
                s * (1.0 - s)
            }
        }
    }
}

/// σ(a) = 1 / (1 + e⁻ᵃ), evaluated without overflow for large |a|.
pub fn sigmoid(a: f64) -> f64 {
    if a >= 0.0 {
        1.0 / (1.0 + (-a).exp())
    } else {
        let e = a.exp();
        e / (1.0 + e)
    }
}

/// softplus(a) = log(1 + eᵃ), evaluated without overflow for large |a|.
pub fn softplus(a: f64) -> f64 {
    a.max(0.0) + (-a.abs()).exp().ln_1p()
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for an activation name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activation `{0}`: expected one of identity, sigmoid, tanh, relu, leaky_relu, elu, softplus, softmax")]
pub struct UnknownActivation(pub String);

impl FromStr for Activation {
    type Err = UnknownActivation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| UnknownActivation(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h′ and h″ against central differences of h and h′, away from kinks.
    #[test]
    fn derivatives_match_finite_differences() {
        let eps = 1e-6;
        for act in Activation::ELEMENTWISE {
            for &a in &[-2.3, -0.7, -0.05, 0.05, 0.4, 1.9] {
                let fd1 = (act.h(a + eps) - act.h(a - eps)) / (2.0 * eps);
                let fd2 = (act.dh(a + eps) - act.dh(a - eps)) / (2.0 * eps);
                assert!((fd1 - act.dh(a)).abs() < 1e-8, "{act} h′({a})");
                assert!((fd2 - act.d2h(a)).abs() < 1e-8, "{act} h″({a})");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(act.name().parse::<Activation>(), Ok(act));
        }
        assert!("swish".parse::<Activation>().is_err());
    }

    #[test]
    fn stable_at_extremes() {
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
        assert_eq!(softplus(800.0), 800.0);
        assert!(softplus(-800.0) >= 0.0);
    }
}
