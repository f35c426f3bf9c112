//! Using the Hessian (PRML §5.4, §5.7): its spectrum, trace and density,
//! its inverse, the Laplace approximation, pruning and fast retraining.
//!
//! Everything here works through `&mut dyn Curvature` (Hv or Gv products and
//! the full matrices an engine builds), so it runs on the CPU reference or on
//! the GPU alike; the dense W×W algebra (eigen-decompositions, Cholesky) runs
//! on the host with faer.
//!
//! | file          | what |
//! |---------------|------|
//! | `operator.rs` | v ↦ Hv or Gv, optionally restricted to one layer's block |
//! | `dense.rs`    | symmetric eigen-decomposition and Cholesky (faer) |
//! | `lanczos.rs`  | Lanczos with full reorthogonalisation, extreme eigenpairs |
//! | `trace.rs`    | Hutchinson and Hutch++ trace estimates with a standard error |
//! | `density.rs`  | spectral density by stochastic Lanczos quadrature |
//! | `inverse.rs`  | (G + αI)⁻¹ by Sherman-Morrison (PRML 5.89) and by Cholesky |
//! | `laplace.rs`  | Laplace posterior (full, diag, kron; all or last-layer), predictive, evidence, α (scalar or per layer) by MacKay's update |
//! | `approximations.rs` | diag, block, K-FAC, EKFAC, Fisher against the exact G and H: errors, step cosines, spectra |
//! | `pruning.rs`  | OBD, OBS, magnitude pruning |
//! | `retrain.rs`  | Newton / LM steps from trained weights on changed data |
//! | `metrics.rs`  | accuracy, NLL, expected calibration error |

pub mod approximations;
pub mod dense;
pub mod density;
pub mod evidence;
pub mod inverse;
pub mod lanczos;
pub mod laplace;
pub mod metrics;
pub mod operator;
pub mod posterior;
pub mod pruning;
pub mod retrain;
pub mod trace;

pub use operator::Operator;
