//! Shared helpers for the integration tests: seeded random networks, data and
//! directions, and one comparator. Every stream is ChaCha8, so a seed means
//! the same problem on every platform.
#![allow(dead_code)] // each test binary uses a different subset

use curvature::{Activation, Loss, Mlp};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded problem: the network (sizes, one activation per layer of weights,
/// output last), θ (Glorot weights from `Mlp::init_params`, biases U(−0.5, 0.5)
/// so that bias paths are exercised), X (N, D) ~ U(−1, 1), and targets T (N, K):
/// one-hot for ce, U(0.05, 0.95) for bce, U(−1, 1) for sse/mse.
pub fn random_problem(
    sizes: &[usize],
    acts: &[Activation],
    loss: Loss,
    l2: f64,
    n: usize,
    seed: u64,
) -> (Mlp, Vec<f64>, Array2<f64>, Array2<f64>) {
    let mlp = Mlp::new(sizes, acts, loss, l2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut theta = mlp.init_params(seed);
    for layer in mlp.layout() {
        for b in &mut theta[layer.bias] {
            *b = rng.random_range(-0.5..0.5);
        }
    }
    let x = Array2::from_shape_fn((n, mlp.num_inputs()), |_| rng.random_range(-1.0..1.0));
    let t = random_targets(loss, n, mlp.num_outputs(), &mut rng);
    (mlp, theta, x, t)
}

/// Targets (N, K) suited to `loss` (see [`random_problem`]).
pub fn random_targets(loss: Loss, n: usize, k: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
    match loss {
        Loss::Ce => {
            let mut t = Array2::zeros((n, k));
            for i in 0..n {
                t[[i, rng.random_range(0..k)]] = 1.0;
            }
            t
        }
        Loss::Bce => Array2::from_shape_fn((n, k), |_| rng.random_range(0.05..0.95)),
        Loss::Sse | Loss::Mse => Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0..1.0)),
    }
}

/// A seeded direction (W) with entries U(−1, 1).
pub fn random_vector(w: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_cafe);
    (0..w).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A seeded block of directions (k, W).
pub fn random_block(k: usize, w: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb10c);
    Array2::from_shape_fn((k, w), |_| rng.random_range(-1.0..1.0))
}

/// The output activation each loss is tested with: the one it requires
/// (softmax for ce, sigmoid for bce); for sse/mse the caller's choice.
pub fn output_activation(loss: Loss, regression_output: Activation) -> Activation {
    match loss {
        Loss::Ce => Activation::Softmax,
        Loss::Bce => Activation::Sigmoid,
        Loss::Sse | Loss::Mse => regression_output,
    }
}

/// One network configuration of the sweep.
#[derive(Clone, Debug)]
pub struct Case {
    pub sizes: Vec<usize>,
    pub acts: Vec<Activation>,
    pub loss: Loss,
}

impl Case {
    pub fn describe(&self) -> String {
        let acts: Vec<&str> = self.acts.iter().map(|a| a.name()).collect();
        format!("{:?} {} {}", self.sizes, acts.join("/"), self.loss)
    }
}

/// The sweep: every loss × every elementwise activation as the first hidden
/// one, with 1, 2 or 3 hidden layers of odd widths (deeper layers take the next
/// activations in `Activation::ELEMENTWISE`, so nets mix them), and for sse/mse
/// an output activation that varies too. 28 small networks.
pub fn sweep() -> Vec<Case> {
    let shapes: [&[usize]; 3] = [&[5, 7, 3], &[4, 5, 3, 3], &[3, 5, 7, 3, 2]];
    let all = Activation::ELEMENTWISE;
    let mut cases = Vec::new();
    for (li, loss) in Loss::ALL.into_iter().enumerate() {
        for (ai, _) in all.iter().enumerate() {
            let sizes = shapes[(ai + li) % shapes.len()].to_vec();
            let hidden = sizes.len() - 2;
            let mut acts: Vec<Activation> =
                (0..hidden).map(|h| all[(ai + h) % all.len()]).collect();
            acts.push(output_activation(loss, all[(ai + 3) % all.len()]));
            cases.push(Case { sizes, acts, loss });
        }
    }
    cases
}

/// ‖a − b‖∞ / max(‖b‖∞, floor): the relative error of `a` against the reference `b`,
/// with a floor so that an all-zero reference compares absolutely.
pub fn rel_error(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    max_abs_diff(a, b) / b.iter().fold(floor, |m, v| m.max(v.abs()))
}

/// max_i |a_i − b_i|.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Asserts |a_i − b_i| ≤ abs + rel·|b_i| for every i, printing the worst index.
pub fn assert_close(a: &[f64], b: &[f64], abs: f64, rel: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let mut worst = (0usize, f64::NEG_INFINITY);
    for i in 0..a.len() {
        let excess = (a[i] - b[i]).abs() - (abs + rel * b[i].abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{what}: index {i}: got {} want {} (|diff| {:e} > {abs:e} + {rel:e}·|want|)",
        a[i],
        b[i],
        (a[i] - b[i]).abs()
    );
}
