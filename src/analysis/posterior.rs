//! The Laplace posterior N(θ*, A⁻¹) of a [`LaplaceFit`] in its kept basis, and
//! what is drawn from it: samples, the linearised output variances, and the
//! probit, linearised Monte Carlo and network Monte Carlo predictives (the
//! equations are in `laplace.rs`'s header). Split from `laplace.rs`, which fits
//! A and α, so that each file keeps one purpose.

use self::rand_distr_free::standard_normal;
use super::laplace::{KronLayer, LaplaceFit};
use crate::cpu::{self, gather, scatter};
use crate::engine::Curvature;
use crate::error::Result;
use crate::loss::{softmax, Loss};
use crate::model::Mlp;
use ndarray::{s, Array1, Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::ops::Range;

/// An orthogonal basis B of the subset's vectors.
#[derive(Clone, Debug)]
pub(super) enum Basis<'a> {
    /// B = I.
    Identity,
    /// Per layer u_{i,a} = q_{B,i} q_{A,a}ᵀ, coefficient (i, a) at the layer's
    /// position (i, a) of θ's layout (W_l row-major, then b_l).
    Kron(&'a [KronLayer]),
    /// B's columns.
    Dense(Cow<'a, Array2<f64>>),
}

impl Basis<'_> {
    /// B c (|S|) for coefficients c (|S|).
    fn expand(&self, c: &[f64]) -> Vec<f64> {
        match self {
            Basis::Identity => c.to_vec(),
            Basis::Dense(v) => v.dot(&ndarray::ArrayView1::from(c)).to_vec(),
            Basis::Kron(layers) => {
                let mut out = vec![0.0; c.len()];
                for l in *layers {
                    let m = l.eigen.unrotate(&gather(&l.layout, c));
                    scatter(&l.layout, &m, &mut out);
                }
                out
            }
        }
    }

    /// J B (rows, |S|) for J (rows, |S|).
    fn project(&self, j: Array2<f64>) -> Array2<f64> {
        match self {
            Basis::Identity => j,
            Basis::Dense(v) => j.dot(&**v),
            Basis::Kron(layers) => {
                let mut out = Array2::zeros(j.dim());
                for (row, mut dst) in j.rows().into_iter().zip(out.rows_mut()) {
                    let row = row.to_vec();
                    let mut coef = vec![0.0; row.len()];
                    for l in *layers {
                        let m = l.eigen.rotate(&gather(&l.layout, &row));
                        scatter(&l.layout, &m, &mut coef);
                    }
                    dst.assign(&Array1::from(coef));
                }
                out
            }
        }
    }
}

/// N(θ*, A⁻¹) on S with A = B diag(ν) Bᵀ (see [`LaplaceFit::posterior`]).
#[derive(Clone, Debug)]
pub struct Posterior<'a> {
    pub(super) fit: &'a LaplaceFit,
    pub(super) basis: Basis<'a>,
    /// ν (|S|), A's eigenvalues in the basis.
    pub(super) values: Vec<f64>,
}

impl Posterior<'_> {
    /// ln|A|.
    pub fn log_det(&self) -> f64 {
        self.values.iter().map(|v| v.ln()).sum()
    }

    /// θ* + B (z ⊘ √ν) on S for z (|S|) standard normal: a draw from N(θ*, A⁻¹).
    pub fn sample(&self, z: &[f64]) -> Vec<f64> {
        let scaled: Vec<f64> = z
            .iter()
            .zip(&self.values)
            .map(|(zi, v)| zi / v.sqrt())
            .collect();
        let d = self.basis.expand(&scaled);
        let mut theta = self.fit.theta.clone();
        for (t, d) in theta[self.fit.range.clone()].iter_mut().zip(d) {
            *t += d;
        }
        theta
    }

    /// The Jacobians J (M·K, |S|) of the inputs x (M, D) in the basis, J B.
    pub fn project(&self, x: ArrayView2<f64>) -> ProjectedJacobian {
        let fit = self.fit;
        let j = output_jacobians(&fit.mlp, &fit.theta, x); // (M·K, W)
        let j = if fit.range == (0..fit.theta.len()) {
            j
        } else {
            j.slice(s![.., fit.range.clone()]).to_owned()
        };
        let p = self.basis.project(j);
        let fw = cpu::forward(&fit.mlp, &fit.theta, x);
        let a = fw.a.last().cloned().unwrap_or_default();
        ProjectedJacobian { p, a }
    }

    /// v (M, K): [J A⁻¹ Jᵀ]_kk = Σ_c P_c² / ν_c.
    pub fn output_variances(&self, proj: &ProjectedJacobian) -> Array2<f64> {
        let (m, k) = proj.a.dim();
        let inv: Vec<f64> = self.values.iter().map(|v| 1.0 / v).collect();
        Array2::from_shape_fn((m, k), |(n, c)| {
            proj.p
                .row(n * k + c)
                .iter()
                .zip(&inv)
                .map(|(p, i)| p * p * i)
                .sum()
        })
    }

    /// The output activation of the model applied to a row of pre-activations.
    fn activate(&self, a: &[f64], out: &mut [f64]) {
        if self.fit.mlp.loss() == Loss::Ce {
            softmax(a, out);
        } else {
            for (o, a) in out.iter_mut().zip(a) {
                *o = 1.0 / (1.0 + (-a).exp());
            }
        }
    }

    /// The probit (sigmoid) / mean-field (softmax) predictive (M, K).
    pub fn probit_predictive(&self, proj: &ProjectedJacobian) -> Array2<f64> {
        let v = self.output_variances(proj);
        let kappa = |v: f64| 1.0 / (1.0 + std::f64::consts::PI * v / 8.0).sqrt();
        let (m, k) = proj.a.dim();
        let mut p = Array2::zeros((m, k));
        let mut out = vec![0.0; k];
        for n in 0..m {
            let scaled: Vec<f64> = (0..k).map(|c| kappa(v[[n, c]]) * proj.a[[n, c]]).collect();
            self.activate(&scaled, &mut out);
            for c in 0..k {
                p[[n, c]] = out[c];
            }
        }
        p
    }

    /// The Monte Carlo predictive of the linearised outputs (M, K):
    /// a_s = a(θ*) + J B (z_s ⊘ √ν), z_s ~ N(0, I) (seeded), through the output
    /// activation, averaged over `samples` draws.
    pub fn linearised_predictive(
        &self,
        proj: &ProjectedJacobian,
        samples: usize,
        seed: u64,
    ) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (m, k) = proj.a.dim();
        let scale: Vec<f64> = self.values.iter().map(|v| 1.0 / v.sqrt()).collect();
        let samples = samples.max(1);
        let mut mean = Array2::zeros((m, k));
        let mut out = vec![0.0; k];
        for _ in 0..samples {
            let z = Array1::from_iter(scale.iter().map(|s| s * standard_normal(&mut rng)));
            let da = proj.p.dot(&z); // (M·K)
            for n in 0..m {
                let a: Vec<f64> = (0..k).map(|c| proj.a[[n, c]] + da[n * k + c]).collect();
                self.activate(&a, &mut out);
                for c in 0..k {
                    mean[[n, c]] += out[c] / samples as f64;
                }
            }
        }
        mean
    }

    /// The Monte Carlo predictive (M, K): the mean of the network's outputs
    /// on `rows` of `engine` (bound to the inputs to predict) over `samples`
    /// draws θ_s ~ N(θ*, A⁻¹) on S (seeded).
    pub fn monte_carlo_predictive(
        &self,
        engine: &mut dyn Curvature,
        rows: Range<usize>,
        samples: usize,
        seed: u64,
    ) -> Result<Array2<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let size = self.values.len();
        let mut mean = Array2::zeros((rows.len(), self.fit.mlp.num_outputs()));
        let samples = samples.max(1);
        for _ in 0..samples {
            let z: Vec<f64> = (0..size).map(|_| standard_normal(&mut rng)).collect();
            let theta_s = self.sample(&z);
            mean += &engine.outputs(&theta_s, rows.clone())?;
        }
        mean /= samples as f64;
        Ok(mean)
    }
}

/// J projected: P (M·K, |S|) = J B in the posterior's basis, and the output
/// pre-activations a (M, K) at θ*.
pub struct ProjectedJacobian {
    pub p: Array2<f64>,
    pub a: Array2<f64>,
}

/// J (M·K, W): row m·K + k = ∂a_{L,k}(x_m)/∂θ, by one linear backward pass per
/// sample of the identity at the output: δ[L−1] = I_K, δ[l−1] = (δ\[l\] W_l) ⊙
/// h′(a[l−1]); on W_l\[j\]\[i\] the entry is δ\[l\]_j z\[l\]_i, on b_l\[j\] it is δ\[l\]_j.
pub fn output_jacobians(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>) -> Array2<f64> {
    let layers = mlp.layout();
    let last = layers.len() - 1;
    let (m, k) = (x.nrows(), mlp.num_outputs());
    let fw = cpu::forward(mlp, theta, x);
    let mut j = Array2::zeros((m * k, theta.len()));
    for sample in 0..m {
        let mut delta = Array2::<f64>::eye(k); // (K, out_l)
        let mut rows = j.slice_mut(s![sample * k..(sample + 1) * k, ..]); // (K, W)
        for l in (0..=last).rev() {
            let layer = &layers[l];
            let z = fw.z[l].row(sample); // (in_l)
            for r in 0..k {
                for jj in 0..layer.fan_out {
                    let d = delta[[r, jj]];
                    for i in 0..layer.fan_in {
                        rows[[r, layer.weights.start + jj * layer.fan_in + i]] = d * z[i];
                    }
                    rows[[r, layer.bias.start + jj]] = d;
                }
            }
            if l > 0 {
                let act = mlp.activations()[l - 1];
                let dh = fw.a[l - 1].row(sample).mapv(|a| act.dh(a)); // (in_l)
                delta = delta.dot(&cpu::weights(layer, theta)) * &dh; // (K, in_l)
            }
        }
    }
    j
}

/// A standard normal draw by Box-Muller from the seeded stream (no extra crate).
mod rand_distr_free {
    use rand::Rng;
    pub fn standard_normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
