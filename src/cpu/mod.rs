//! The CPU reference path: plain, f64, obviously correct. It is the specification every other path is checked against.
//!
//! - [`passes`]: forward, backward, R-forward, R-backward (loss, gradient, Hv, Gv, accuracy);
//! - [`hessian`](mod@hessian): the full H and G (W×W) from blocks of Hv / Gv columns;
//! - [`diagonal`]: the exact diag(H), the Becker-LeCun approximation, diag(G);
//! - [`outer_product`](mod@outer_product): the outer-product approximation and its Sherman-Morrison inverse;
//! - [`finite_diff`]: central differences of E and ∇E, the checks of all the above.

pub mod diagonal;
pub mod finite_diff;
pub mod fisher;
pub mod hessian;
pub mod kfac;
pub mod outer_product;
pub mod passes;

pub use diagonal::*;
pub use finite_diff::*;
pub use fisher::*;
pub use hessian::*;
pub use kfac::*;
pub use outer_product::*;
pub use passes::*;
