//! `Mlp`: the architecture of a multilayer perceptron and its flat parameter layout.
//!
//! The parameters are one flat vector θ (DESIGN.md): layer l = 0..L−1 contributes
//! its weight matrix W_l, shape (out_l, in_l) row-major — W_l\[j\]\[i\] connects
//! input i to unit j, Bishop's w_ji and PyTorch's `Linear.weight` — followed by
//! its bias b_l (out_l). `Mlp` holds no parameters itself: every operation takes
//! θ explicitly, because curvature is a property of E at a point θ.

use crate::activation::Activation;
use crate::loss::Loss;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// An invalid model specification; the message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("a network needs at least two layer sizes (inputs and outputs), got {0:?}: give e.g. `64,50,10`")]
    TooFewSizes(Vec<usize>),
    #[error("layer size {index} is zero in {sizes:?}: every layer needs at least one unit")]
    ZeroWidth { index: usize, sizes: Vec<usize> },
    #[error("{sizes} layer sizes make {layers} layers of weights, but {given} activations were given: give one per layer of weights, output last")]
    ActivationCount {
        sizes: usize,
        layers: usize,
        given: usize,
    },
    #[error("`softmax` can only be the output activation (with loss `ce`), but layer {layer} of {layers} uses it: use e.g. `sigmoid` for hidden layers")]
    HiddenSoftmax { layer: usize, layers: usize },
    #[error("{0}")]
    OutputMismatch(String),
    #[error("the L2 coefficient must be finite and non-negative, got {0}: use 0 for no penalty")]
    BadL2(f64),
}

/// The architecture and objective of an MLP: sizes, activations, loss, L2.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    sizes: Vec<usize>,
    activations: Vec<Activation>,
    loss: Loss,
    l2: f64,
}

/// Where one layer's parameters sit in θ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerLayout {
    /// in_l: inputs to this layer.
    pub fan_in: usize,
    /// out_l: units of this layer.
    pub fan_out: usize,
    /// W_l, (out_l, in_l) row-major.
    pub weights: Range<usize>,
    /// b_l, (out_l).
    pub bias: Range<usize>,
}

impl Mlp {
    /// Builds an MLP with `sizes` = [in, hidden…, out] and one activation per
    /// layer of weights (`sizes.len() − 1` of them, output last).
    pub fn new(
        sizes: &[usize],
        activations: &[Activation],
        loss: Loss,
        l2: f64,
    ) -> Result<Mlp, ModelError> {
        if sizes.len() < 2 {
            return Err(ModelError::TooFewSizes(sizes.to_vec()));
        }
        if let Some(index) = sizes.iter().position(|&s| s == 0) {
            return Err(ModelError::ZeroWidth {
                index,
                sizes: sizes.to_vec(),
            });
        }
        let layers = sizes.len() - 1;
        if activations.len() != layers {
            return Err(ModelError::ActivationCount {
                sizes: sizes.len(),
                layers,
                given: activations.len(),
            });
        }
        if let Some(layer) = activations[..layers - 1]
            .iter()
            .position(|&a| a == Activation::Softmax)
        {
            return Err(ModelError::HiddenSoftmax { layer, layers });
        }
        loss.check_output_activation(activations[layers - 1])
            .map_err(ModelError::OutputMismatch)?;
        if !(l2.is_finite() && l2 >= 0.0) {
            return Err(ModelError::BadL2(l2));
        }
        Ok(Mlp {
            sizes: sizes.to_vec(),
            activations: activations.to_vec(),
            loss,
            l2,
        })
    }

    /// A classifier: `hidden` activation on every hidden layer and the output
    /// activation that `loss` requires (softmax for ce, sigmoid for bce,
    /// identity for sse/mse).
    pub fn with_hidden(
        sizes: &[usize],
        hidden: Activation,
        loss: Loss,
        l2: f64,
    ) -> Result<Mlp, ModelError> {
        let output = loss.output_activation();
        let layers = sizes.len().saturating_sub(1);
        let mut acts = vec![hidden; layers.saturating_sub(1)];
        acts.push(output);
        Mlp::new(sizes, &acts, loss, l2)
    }

    /// [in, hidden…, out].
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
    /// One per layer of weights, output last.
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }
    pub fn loss(&self) -> Loss {
        self.loss
    }
    /// λ of the penalty (λ/2) Σ_l ‖W_l‖² (weights only, not biases).
    pub fn l2(&self) -> f64 {
        self.l2
    }
    /// The same network with another λ.
    pub fn with_l2(&self, l2: f64) -> Result<Mlp, ModelError> {
        Mlp::new(&self.sizes, &self.activations, self.loss, l2)
    }
    /// L, the number of layers of weights.
    pub fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }
    /// D, the input width.
    pub fn num_inputs(&self) -> usize {
        self.sizes[0]
    }
    /// K, the output width.
    pub fn num_outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
    pub fn output_activation(&self) -> Activation {
        self.activations[self.activations.len() - 1]
    }

    /// W = len(θ) = Σ_l out_l·(in_l + 1).
    pub fn num_params(&self) -> usize {
        self.sizes.windows(2).map(|w| w[1] * (w[0] + 1)).sum()
    }

    /// Where each layer's W_l and b_l sit in θ, in order.
    pub fn layout(&self) -> Vec<LayerLayout> {
        let mut offset = 0;
        self.sizes
            .windows(2)
            .map(|w| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let weights = offset..offset + fan_in * fan_out;
                let bias = weights.end..weights.end + fan_out;
                offset = bias.end;
                LayerLayout {
                    fan_in,
                    fan_out,
                    weights,
                    bias,
                }
            })
            .collect()
    }

    /// 1.0 for weight entries of θ, 0.0 for biases: the diagonal of I_w, the
    /// identity on weights that the L2 term contributes λ·I_w to every Hessian.
    pub fn weight_mask(&self) -> Vec<f64> {
        let mut mask = vec![0.0; self.num_params()];
        for layer in self.layout() {
            mask[layer.weights].fill(1.0);
        }
        mask
    }

    /// Seeded initial parameters: Glorot (Xavier) uniform weights,
    /// W_l ~ U(−r, r) with r = √(6 / (in_l + out_l)), and zero biases.
    /// Glorot suits the sigmoid/tanh networks this field mostly studies; the
    /// stream is ChaCha8 so a seed means the same θ on every platform.
    pub fn init_params(&self, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut theta = vec![0.0; self.num_params()];
        for layer in self.layout() {
            let r = (6.0 / (layer.fan_in + layer.fan_out) as f64).sqrt();
            for w in &mut theta[layer.weights] {
                *w = rng.random_range(-r..r);
            }
        }
        theta
    }

    /// A human-readable description, e.g. `64-50-10 sigmoid/softmax ce λ=0.001`.
    pub fn describe(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(|s| s.to_string()).collect();
        let acts: Vec<&str> = self.activations.iter().map(|a| a.name()).collect();
        format!(
            "{} {} {} λ={}",
            sizes.join("-"),
            acts.join("/"),
            self.loss,
            self.l2
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Activation::*;

    #[test]
    fn layout_is_weights_then_bias_per_layer() {
        let mlp = Mlp::new(&[3, 2, 1], &[Tanh, Identity], Loss::Sse, 0.0).unwrap();
        assert_eq!(mlp.num_params(), 2 * 4 + 3);
        let layout = mlp.layout();
        assert_eq!(layout[0].weights, 0..6);
        assert_eq!(layout[0].bias, 6..8);
        assert_eq!(layout[1].weights, 8..10);
        assert_eq!(layout[1].bias, 10..11);
        assert_eq!(
            mlp.weight_mask(),
            vec![1., 1., 1., 1., 1., 1., 0., 0., 1., 1., 0.]
        );
    }

    #[test]
    fn digits_network_has_3760_params() {
        let mlp = Mlp::with_hidden(&[64, 50, 10], Sigmoid, Loss::Ce, 0.0).unwrap();
        assert_eq!(mlp.num_params(), 50 * 65 + 10 * 51);
    }

    #[test]
    fn invalid_specifications_are_errors() {
        use ModelError as E;
        let bad =
            |s: &[usize], a: &[Activation], l: Loss, l2: f64| Mlp::new(s, a, l, l2).unwrap_err();
        assert!(matches!(bad(&[3], &[], Loss::Sse, 0.0), E::TooFewSizes(_)));
        assert!(matches!(
            bad(&[3, 0, 1], &[Tanh, Identity], Loss::Sse, 0.0),
            E::ZeroWidth { index: 1, .. }
        ));
        assert!(matches!(
            bad(&[3, 1], &[Tanh, Tanh], Loss::Sse, 0.0),
            E::ActivationCount { .. }
        ));
        assert!(matches!(
            bad(&[3, 2, 2], &[Softmax, Softmax], Loss::Ce, 0.0),
            E::HiddenSoftmax { .. }
        ));
        assert!(matches!(
            bad(&[3, 2], &[Sigmoid], Loss::Ce, 0.0),
            E::OutputMismatch(_)
        ));
        assert!(matches!(
            bad(&[3, 2], &[Softmax], Loss::Mse, 0.0),
            E::OutputMismatch(_)
        ));
        assert!(matches!(
            bad(&[3, 2], &[Identity], Loss::Sse, -1.0),
            E::BadL2(_)
        ));
        assert!(matches!(
            bad(&[3, 2], &[Identity], Loss::Sse, f64::NAN),
            E::BadL2(_)
        ));
        let msg = bad(&[3, 2], &[Sigmoid], Loss::Ce, 0.0).to_string();
        assert!(msg.contains("softmax"), "{msg}");
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let mlp = Mlp::with_hidden(&[64, 50, 10], Sigmoid, Loss::Ce, 0.0).unwrap();
        let a = mlp.init_params(7);
        assert_eq!(a, mlp.init_params(7));
        assert_ne!(a, mlp.init_params(8));
        let r = (6.0f64 / 114.0).sqrt();
        let l0 = &mlp.layout()[0];
        assert!(a[l0.weights.clone()].iter().all(|w| w.abs() < r));
        assert!(a[l0.bias.clone()].iter().all(|&b| b == 0.0));
    }
}
