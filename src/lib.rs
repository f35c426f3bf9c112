//! # curvature
//!
//! Train MNIST-sized multilayer perceptrons on any GPU that wgpu reaches and
//! compute the second-order structure of their loss — gradients, exact
//! Hessian-vector products (Pearlmutter's R-propagation), Gauss-Newton products,
//! diagonals, the full Hessian and its inverse — with every GPU result checked
//! against a plain f64 CPU reference (`cpu`), which is the specification.
//!
//! ## Conventions (DESIGN.md)
//! - θ is one flat vector: per layer, W_l (out_l, in_l) row-major, then b_l.
//! - E(θ) = (1/N) Σ_n E_n(θ) + (λ/2) Σ_l ‖W_l‖²: every gradient, Hv, Gv,
//!   diagonal and Hessian is of this E.
//!
//! ## Dimension legend
//! | symbol | meaning |
//! |--------|---------|
//! | N      | samples in a batch |
//! | D      | input width, `sizes[0]` |
//! | K      | output width, `sizes[L]` |
//! | L      | layers of weights, `sizes.len() − 1` |
//! | W      | parameters, `len(θ)` |
//! | k      | vectors in a block (H·V with V of shape (k, W)) |
//!
//! ## Example
//! The exact Hessian-vector product of the digits network along its own
//! gradient, on the CPU device, checked against central differences of the
//! gradient (PRML 5.91):
//! ```
//! use curvature::engine::device::{Device, DeviceChoice};
//! use curvature::{data, Activation, Curvature, Loss, Mlp};
//!
//! let ds = data::load_named("digits")?;
//! let mlp = Mlp::with_hidden(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3)?;
//! let theta = mlp.init_params(0);
//! let (device, _) = Device::open(DeviceChoice::Cpu, None)?;
//! let mut engine = device.engine(&mlp, ds.x.view(), ds.t.view())?;
//! let rows = 0..ds.len();
//! let (_loss, g) = engine.loss_grad(&theta, rows.clone())?;
//! let hg = engine.hvp(&theta, rows.clone(), &g)?;
//!
//! let eps = 1e-5;
//! let shifted = |s: f64| -> Vec<f64> { theta.iter().zip(&g).map(|(t, v)| t + s * eps * v).collect() };
//! let (_, gp) = engine.loss_grad(&shifted(1.0), rows.clone())?;
//! let (_, gm) = engine.loss_grad(&shifted(-1.0), rows)?;
//! for i in 0..theta.len() {
//!     let fd = (gp[i] - gm[i]) / (2.0 * eps);
//!     assert!((fd - hg[i]).abs() <= 1e-6 * (1.0 + hg[i].abs()));
//! }
//! # Ok::<(), curvature::Error>(())
//! ```

pub mod activation;
pub mod analysis;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod cpu_fast;
pub mod data;
pub mod engine;
pub mod error;
pub mod files;
pub mod gpu;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plot;
pub mod train;

pub use activation::Activation;
pub use engine::{Backend, Curvature, Diagonal, Kind};
pub use error::{Error, Result};
pub use loss::Loss;
pub use model::{LayerLayout, Mlp, ModelError};
