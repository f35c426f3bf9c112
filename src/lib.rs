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

pub mod activation;
pub mod bench;
pub mod compare;
pub mod cpu;
pub mod cpu_engine;
pub mod cpu_fast;

pub mod curvature;
pub mod data;
pub mod device;
pub mod error;
pub mod files;
pub mod gpu;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plot;
pub mod train;
pub mod verify;

pub use activation::Activation;
pub use curvature::Curvature;
pub use error::{Error, Result};
pub use loss::Loss;
pub use model::{LayerLayout, Mlp, ModelError};
