//! Shared helpers for the robustness tests: engines that inject NaN or ∞ into
//! chosen operations, small problems, and a CPU engine factory for `train`.
#![allow(dead_code)]

use curvature::engine::ReferenceEngine;
use curvature::optim::OptimizerSpec;
use curvature::train::DataView;
use curvature::{Activation, Backend, Curvature, Diagonal, Kind, Loss, Mlp};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

/// An engine operation that a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `loss` (the value).
    Loss,
    /// `loss_grad`, the loss.
    LossGradLoss,
    /// `loss_grad`, the gradient.
    LossGradGrad,
    Hvp,
    Gvp,
    Hessian,
    Ggn,
    DiagHessian,
    DiagGgn,
    DiagBeckerLecun,
}

/// Put `value` into entry 0 of `op`'s result on its calls `from..=to` (1-based).
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub op: Op,
    pub from: usize,
    pub to: usize,
    pub value: f64,
}

impl Fault {
    /// Only the `call`-th call.
    pub fn once(op: Op, call: usize, value: f64) -> Fault {
        Fault {
            op,
            from: call,
            to: call,
            value,
        }
    }
    /// Every call from `call` on.
    pub fn from(op: Op, call: usize, value: f64) -> Fault {
        Fault {
            op,
            from: call,
            to: usize::MAX,
            value,
        }
    }
}

/// Wraps the CPU engine; counts calls per operation and poisons chosen ones.
/// `hits` counts the poisoned results handed out (shared, so a test can read
/// it after `train` dropped the engine).
pub struct FaultyEngine {
    inner: ReferenceEngine,
    faults: Vec<Fault>,
    calls: Vec<(Op, usize)>,
    pub hits: Rc<Cell<usize>>,
}

impl FaultyEngine {
    pub fn new(
        mlp: &Mlp,
        x: ArrayView2<f32>,
        t: ArrayView2<f32>,
        faults: Vec<Fault>,
        hits: Rc<Cell<usize>>,
    ) -> FaultyEngine {
        FaultyEngine {
            inner: ReferenceEngine::new(mlp, x, t).unwrap(),
            faults,
            calls: Vec::new(),
            hits,
        }
    }

    /// The value to inject on this call of `op`, if any (counts the call).
    fn fault(&mut self, op: Op) -> Option<f64> {
        let n = match self.calls.iter_mut().find(|(o, _)| *o == op) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.calls.push((op, 1));
                1
            }
        };
        let hit = self
            .faults
            .iter()
            .find(|f| f.op == op && (f.from..=f.to).contains(&n))
            .map(|f| f.value);
        if hit.is_some() {
            self.hits.set(self.hits.get() + 1);
        }
        hit
    }

    fn poison_vec(&mut self, op: Op, mut v: Vec<f64>) -> Vec<f64> {
        if let Some(value) = self.fault(op) {
            v[0] = value;
        }
        v
    }

    fn poison_matrix(&mut self, op: Op, mut a: Array2<f64>) -> Array2<f64> {
        if let Some(value) = self.fault(op) {
            a[[0, 0]] = value;
        }
        a
    }
}

type R<T> = curvature::Result<T>;

/// The faults hit the data term, before the face adds λ (a NaN or ∞ stays one).
impl Backend for FaultyEngine {
    fn architecture(&self) -> &Mlp {
        self.inner.architecture()
    }
    fn data_rows(&self) -> usize {
        self.inner.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> R<f64> {
        let l = self.inner.data_loss(theta, rows)?;
        Ok(self.fault(Op::Loss).unwrap_or(l))
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> R<(f64, Vec<f64>)> {
        let (l, g) = self.inner.data_loss_grad(theta, rows)?;
        let l = self.fault(Op::LossGradLoss).unwrap_or(l);
        Ok((l, self.poison_vec(Op::LossGradGrad, g)))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> R<Array2<f64>> {
        self.inner.network_outputs(theta, rows)
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> R<Array2<f64>> {
        let p = self.inner.data_products(kind, theta, rows, v)?;
        let op = match kind {
            Kind::Hessian => Op::Hvp,
            Kind::GaussNewton => Op::Gvp,
        };
        Ok(self.poison_matrix(op, p))
    }
    fn data_matrix(&mut self, kind: Kind, theta: &[f64], rows: Range<usize>) -> R<Array2<f64>> {
        let m = self.inner.data_matrix(kind, theta, rows)?;
        let op = match kind {
            Kind::Hessian => Op::Hessian,
            Kind::GaussNewton => Op::Ggn,
        };
        Ok(self.poison_matrix(op, m))
    }
    fn data_diagonal(&mut self, which: Diagonal, theta: &[f64], rows: Range<usize>) -> R<Vec<f64>> {
        let d = self.inner.data_diagonal(which, theta, rows)?;
        let op = match which {
            Diagonal::Hessian => Op::DiagHessian,
            Diagonal::GaussNewton => Op::DiagGgn,
            Diagonal::BeckerLeCun => Op::DiagBeckerLecun,
        };
        Ok(self.poison_vec(op, d))
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> R<Array2<f64>> {
        self.inner.data_outer_product(theta, rows)
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> R<()> {
        self.inner.bind_data(x, t)
    }
}

/// What [`NanBeyond`] makes non-finite outside its box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beyond {
    /// E and ∇E are NaN.
    LossAndGrad,
    /// E stays finite, ∇E is NaN (an overflow in backpropagation only).
    GradOnly,
}

/// The CPU engine, except that E and/or ∇E are NaN wherever some
/// |θ_i − center_i| > radius: a loss that "overflows" outside a box, so a
/// step that leaves the box meets NaN at its trial point.
pub struct NanBeyond {
    pub inner: ReferenceEngine,
    pub center: Vec<f64>,
    pub radius: f64,
    pub mode: Beyond,
}

impl NanBeyond {
    pub fn outside(&self, theta: &[f64]) -> bool {
        theta
            .iter()
            .zip(&self.center)
            .any(|(t, c)| (t - c).abs() > self.radius)
    }
}

impl Backend for NanBeyond {
    fn architecture(&self) -> &Mlp {
        self.inner.architecture()
    }
    fn data_rows(&self) -> usize {
        self.inner.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> R<f64> {
        let l = self.inner.data_loss(theta, rows)?;
        Ok(if self.outside(theta) && self.mode == Beyond::LossAndGrad {
            f64::NAN
        } else {
            l
        })
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> R<(f64, Vec<f64>)> {
        let (mut l, mut g) = self.inner.data_loss_grad(theta, rows)?;
        if self.outside(theta) {
            g[0] = f64::NAN;
            if self.mode == Beyond::LossAndGrad {
                l = f64::NAN;
            }
        }
        Ok((l, g))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> R<Array2<f64>> {
        self.inner.network_outputs(theta, rows)
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> R<Array2<f64>> {
        self.inner.data_products(kind, theta, rows, v)
    }
    fn data_diagonal(&mut self, which: Diagonal, theta: &[f64], rows: Range<usize>) -> R<Vec<f64>> {
        self.inner.data_diagonal(which, theta, rows)
    }
    fn data_matrix(&mut self, kind: Kind, theta: &[f64], rows: Range<usize>) -> R<Array2<f64>> {
        self.inner.data_matrix(kind, theta, rows)
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> R<Array2<f64>> {
        self.inner.data_outer_product(theta, rows)
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> R<()> {
        self.inner.bind_data(x, t)
    }
}

/// A small classification problem: 3-6-3 tanh/softmax-ce, λ = 1e-3, 24 rows
/// of uniform(−1, 1) inputs labelled by the largest input. Returns (mlp, x, t, θ₀).
pub fn small_classifier() -> (Mlp, Array2<f32>, Array2<f32>, Vec<f64>) {
    let mlp = Mlp::with_hidden(&[3, 6, 3], Activation::Tanh, Loss::Ce, 1e-3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = 24;
    let x = Array2::from_shape_fn((n, 3), |_| rng.random_range(-1.0f32..1.0));
    let mut t = Array2::zeros((n, 3));
    for (r, row) in x.outer_iter().enumerate() {
        let k = (0..3)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        t[[r, k]] = 1.0;
    }
    let theta = mlp.init_params(3);
    (mlp, x, t, theta)
}

/// Linear least squares whose Hessian is exactly I (3×3): a 2-1 identity
/// network with sse, λ = 0, on the four inputs (±1, ±1) — so E[x xᵀ] = I,
/// E[x] = 0 and the bias adds the third unit eigenvalue. Gradient descent
/// with step η multiplies the error by (1 − η) per step: η > 2 diverges
/// geometrically until E overflows. Returns (mlp, x, t, θ₀).
pub fn unit_hessian_regression() -> (Mlp, Array2<f32>, Array2<f32>, Vec<f64>) {
    let mlp = Mlp::new(&[2, 1], &[Activation::Identity], Loss::Sse, 0.0).unwrap();
    let x = ndarray::arr2(&[[1.0f32, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]);
    // t = 0.5 x₀ − 0.25 x₁ + 0.1 + 0.1·x₀x₁ (the last term is orthogonal to x₀, x₁ and 1).
    let t = ndarray::arr2(&[[0.45f32], [0.75], [-0.75], [-0.05]]);
    (mlp, x, t, vec![0.0, 0.0, 0.0])
}

/// A `train` factory binding the CPU reference engine.
pub fn cpu_factory(
    mlp: &Mlp,
) -> impl FnMut(ArrayView2<f32>, ArrayView2<f32>) -> curvature::Result<Box<dyn Curvature>> + '_ {
    move |x, t| Ok(Box::new(ReferenceEngine::new(mlp, x, t)?) as Box<dyn Curvature>)
}

/// E(θ) on all rows with the CPU engine.
pub fn full_loss(mlp: &Mlp, x: &Array2<f32>, t: &Array2<f32>, theta: &[f64]) -> f64 {
    let mut e = ReferenceEngine::new(mlp, x.view(), t.view()).unwrap();
    let n = x.nrows();
    e.loss(theta, 0..n).unwrap()
}

/// An optimizer by name with `key=value,…` parameters ("" for the defaults).
pub fn spec(name: &str, params: &str) -> OptimizerSpec {
    let mut s: OptimizerSpec = name.parse().unwrap();
    s.set_all(params).unwrap();
    s
}

/// Inputs and targets as the view `train` takes.
pub fn view<'a>(x: &'a Array2<f32>, t: &'a Array2<f32>) -> DataView<'a> {
    DataView {
        x: x.view(),
        t: t.view(),
    }
}
