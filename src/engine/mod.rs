//! The engine contract: one narrow trait that every engine implements for the
//! data term of E, and one public face written once above it.
//!
//! ```text
//!   optim/, analysis/, cli/           call  Curvature (face.rs): the familiar names,
//!                                           checks, λ, splitting — written once
//!        │  blanket impl for every B: Backend
//!   Backend (this file): the data term (1/N) Σ_n E_n only, unchecked, no λ
//!        ├── ReferenceEngine  (reference.rs → cpu/, f64, the specification)
//!        ├── FastCpuEngine<T> (cpu_fast/, f32/f64 on faer's GEMM)
//!        ├── GpuEngine        (gpu/, f32 WGSL kernels)
//!        └── Engine           (device.rs: whichever of the last two a Device opened),
//!            Verifying        (verify/: any backend, checked against the reference)
//! ```
//!
//! Like candle's and Burn's backends, a [`Backend`] is narrow: a handful of
//! primitives with everything that is the same for every engine left out —
//! argument checks ([`checks`]), the L2 term ([`penalty`]), splitting large
//! requests, and the names optimizers use (`hvp`, `ggn`, `diag_hessian`, …) live
//! in [`Curvature`] (`face.rs`), implemented once for every backend. A new
//! curvature quantity is one method here, its kernels in each engine, one method
//! of the face, one CLI quantity and one conformance case (DESIGN.md's table).
//!
//! The Fisher family and K-FAC share two primitives: [`Backend::data_fisher_vectors`]
//! (the per-sample gradients are its empirical flavour) and
//! [`Backend::data_kfac_factors`]; the face derives Fisher products, diagonals and
//! matrices, the gradient variance, K-FAC products and EKFAC from them
//! ([`fisher`]), and the Monte-Carlo draws every fast engine uses are the
//! reference's stream, written once ([`sampling`]).
//!
//! One comparator and one table of f32-vs-f64 tolerances ([`compare`]) serve
//! `verify`, `curvature parity` and the tests.

pub mod checks;
pub mod compare;
pub mod device;
pub mod face;
pub mod fisher;
pub mod memory;
pub mod penalty;
pub mod reference;
pub mod sampling;
pub mod training;
pub mod verify;

pub use checks::{check_args, check_data_shape};
pub use device::{Device, DeviceChoice, Engine, Precision};
pub use face::{Curvature, DataTerm, WithL2};
pub use reference::ReferenceEngine;
pub use training::{DeviceRule, DeviceTraining, DeviceUpdates, StateSlot, UpdateRule};

use crate::cpu::{Fisher, KroneckerFactors};
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{s, Array2, ArrayView2};
use std::fmt;
use std::ops::Range;

/// Which curvature matrix: the exact Hessian H or the (generalised) Gauss-Newton
/// matrix G = (1/N) Σ_n J_nᵀ H_out,n J_n (DESIGN.md). Every product, matrix,
/// optimizer and analysis that can use either takes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Hessian,
    GaussNewton,
}

impl Kind {
    /// "H" or "G".
    pub fn symbol(self) -> &'static str {
        match self {
            Kind::Hessian => "H",
            Kind::GaussNewton => "G",
        }
    }

    /// "Hessian" or "Gauss-Newton matrix".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hessian => "Hessian",
            Kind::GaussNewton => "Gauss-Newton matrix",
        }
    }

    /// Whether the second-order terms of the network (h″, δ·V) are kept: true for H.
    pub fn is_exact(self) -> bool {
        self == Kind::Hessian
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which diagonal: of H (exact), of G (exact), or the Becker-LeCun approximation
/// of diag(H) (PRML 5.79–5.81: the M_l recursion keeping only its diagonal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diagonal {
    Hessian,
    GaussNewton,
    BeckerLeCun,
}

impl Diagonal {
    /// The exact diagonal of the matrix of `kind`.
    pub fn of(kind: Kind) -> Diagonal {
        match kind {
            Kind::Hessian => Diagonal::Hessian,
            Kind::GaussNewton => Diagonal::GaussNewton,
        }
    }

    /// "diag Hessian", "diag GGN", "diag Becker-LeCun".
    pub fn name(self) -> &'static str {
        match self {
            Diagonal::Hessian => "diag Hessian",
            Diagonal::GaussNewton => "diag GGN",
            Diagonal::BeckerLeCun => "diag Becker-LeCun",
        }
    }
}

/// What one call of a backend can take at most; the face splits larger requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Vectors in one [`Backend::data_products`] call.
    pub max_vectors: usize,
    /// Rows in one [`Backend::network_outputs`] call.
    pub max_output_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vectors: usize::MAX,
            max_output_rows: usize::MAX,
        }
    }
}

/// Columns of H or G per block of products in the default [`Backend::data_matrix`]:
/// enough to share each forward and backward pass among many R-passes, small
/// enough that the block of unit vectors (k, W) stays modest for large networks.
pub const MATRIX_BLOCK_COLUMNS: usize = 32;

/// The narrow contract of an engine: the DATA TERM of E only,
/// E_data(θ) = (1/|rows|) Σ_{n ∈ rows} E_n(θ) — no λ, no argument checks.
///
/// An engine is bound to one architecture ([`Backend::mlp`]) and one data set
/// (X (N, D), T (N, K)) that it keeps resident (on the GPU: uploaded once);
/// [`Backend::bind_data`] replaces the rows without rebuilding anything else.
/// Every operation takes θ (W) and a contiguous range of rows, the batch.
///
/// Implementations may assume what [`Curvature`] checks before every call: θ has
/// W entries, `rows` is a non-empty range inside the bound data, blocks have W
/// columns and at most [`Limits::max_vectors`] rows. Results are f64.
pub trait Backend {
    /// The architecture this engine is bound to (its λ is the face's to apply);
    /// callers use [`Curvature::mlp`].
    fn architecture(&self) -> &Mlp;
    /// N, the rows of the bound data; callers use [`Curvature::num_rows`].
    fn data_rows(&self) -> usize;
    /// (1/|rows|) Σ E_n(θ).
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64>;
    /// The data term and its gradient (W), by backpropagation.
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)>;
    /// The network outputs y (|rows|, K): softmax probabilities for ce, σ for bce,
    /// h(a) otherwise.
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>>;
    /// C·vᵢ for every row vᵢ of V (k, W), C the data term's H or G (`kind`), in one
    /// pass (R-propagation); returns (k, W).
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>>;
    /// A diagonal (W) of the data term's curvature.
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>>;
    /// The data term's H or G (W, W). By default from blocks of
    /// [`MATRIX_BLOCK_COLUMNS`] unit vectors through [`Backend::data_products`]
    /// (column j is C e_j); engines with a cheaper construction override it.
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        let w = self.architecture().num_params();
        let block = MATRIX_BLOCK_COLUMNS
            .min(self.limits().max_vectors)
            .clamp(1, w.max(1));
        let mut m = Array2::zeros((w, w)); // (W, W)
        let mut start = 0;
        while start < w {
            let k = block.min(w - start);
            let mut units = Array2::zeros((k, w)); // (k, W): row i = e_{start+i}
            for i in 0..k {
                units[[i, start + i]] = 1.0;
            }
            let columns = self.data_products(kind, theta, rows.clone(), units.view())?;
            m.slice_mut(s![.., start..start + k]).assign(&columns.t());
            start += k;
        }
        Ok(m)
    }
    /// The outer-product matrix (1/N) Σ_n J_nᵀ H_out,n J_n (W, W) (PRML 5.84/5.85),
    /// mathematically G: by default [`Backend::data_matrix`] of G. The reference
    /// accumulates it sample by sample, as an independent check of G.
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.data_matrix(Kind::GaussNewton, theta, rows)
    }
    /// The vectors g_{n,r} (|rows|·R, W) of a Fisher flavour, row (n − rows.start)·R + r
    /// with R = `fisher.columns_per_sample(K)`, whose (1/|rows|) Σ g gᵀ is the flavour's
    /// Fisher (`cpu/fisher.rs`): `Empirical` the per-sample gradients ∂E_n/∂θ (R = 1, not
    /// divided by N), `Exact` J_nᵀ c_{n,k} (the GGN's factor columns), `Mc` J_nᵀ c̃_{n,s}/√S
    /// at sampled targets. For `Mc`, row n takes the draws the reference's stream gives
    /// the (n − rows.start + skip)-th row ([`sampling`]): a request the face splits
    /// passes the rows before each part in `skip` (0 otherwise), so the parts together
    /// are the reference's whole range. By default `Empirical` is one
    /// [`Backend::data_loss_grad`] per row (the gradient of a one-row mean is g_n); the
    /// other flavours need an engine's kernel.
    fn data_fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        let _ = skip;
        if fisher != Fisher::Empirical {
            return Err(no_kernel(&format!("{} Fisher vectors", fisher.name())));
        }
        let w = self.architecture().num_params();
        let mut g = Array2::zeros((rows.len(), w)); // (|rows|, W)
        for (i, n) in rows.enumerate() {
            let (_, grad) = self.data_loss_grad(theta, n..n + 1)?;
            g.row_mut(i).assign(&ndarray::ArrayView1::from(&grad));
        }
        Ok(g)
    }
    /// The K-FAC factors A_l = (1/|rows|) Σ z̃ z̃ᵀ (bias's 1 last) and B_l of the flavour
    /// (`cpu/kfac.rs`) for every layer: of the data term (λ is not a factor's; the face
    /// adds it to products). `Mc` draws from the first row of `rows` (the face never
    /// splits this request). No default: the layer inputs z̃ are not reachable through
    /// the other primitives, so an engine without a kernel says so.
    fn data_kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        let _ = (fisher, theta, rows);
        Err(no_kernel("K-FAC factors"))
    }
    /// Binds new rows of data X (N′, D), T (N′, K) for the same architecture,
    /// keeping every buffer that fits (on the GPU: the pipelines, θ, the working
    /// buffers; only the data are uploaded). Shapes are checked by the face.
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()>;
    /// The largest request one call takes (default: no limit).
    fn limits(&self) -> Limits {
        Limits::default()
    }
    /// The precision the engine computes in (default f64), which picks its row of
    /// the tolerance table when it is checked against the reference.
    fn precision(&self) -> Precision {
        Precision::F64
    }
    /// First-order training with θ and the optimizer's state kept on the device
    /// ([`DeviceTraining`], `training.rs`), for engines that can (the GPU); `None` by
    /// default, and the training scheduler then steps the optimizer on the host.
    fn device_training(&mut self) -> Option<&mut dyn DeviceTraining> {
        None
    }
}

/// The `Backend` methods after `architecture` that a wrapper hands on unchanged to
/// the backend it wraps: `$r` reaches it from `&self`, `$m` from `&mut self`.
/// Written once, so that a new primitive of the contract is one entry here for
/// every wrapper that uses it (`Box`, `&mut`, `WithL2`, `Engine`).
macro_rules! forward_backend {
    ($s:ident => ref $r:expr, mut $m:expr) => {
        fn data_rows(&$s) -> usize {
            $r.data_rows()
        }
        fn data_loss(&mut $s, theta: &[f64], rows: std::ops::Range<usize>) -> $crate::error::Result<f64> {
            $m.data_loss(theta, rows)
        }
        fn data_loss_grad(
            &mut $s,
            theta: &[f64],
            rows: std::ops::Range<usize>,
        ) -> $crate::error::Result<(f64, Vec<f64>)> {
            $m.data_loss_grad(theta, rows)
        }
        fn network_outputs(
            &mut $s,
            theta: &[f64],
            rows: std::ops::Range<usize>,
        ) -> $crate::error::Result<ndarray::Array2<f64>> {
            $m.network_outputs(theta, rows)
        }
        fn data_products(
            &mut $s,
            kind: $crate::engine::Kind,
            theta: &[f64],
            rows: std::ops::Range<usize>,
            v: ndarray::ArrayView2<f64>,
        ) -> $crate::error::Result<ndarray::Array2<f64>> {
            $m.data_products(kind, theta, rows, v)
        }
        fn data_diagonal(
            &mut $s,
            which: $crate::engine::Diagonal,
            theta: &[f64],
            rows: std::ops::Range<usize>,
        ) -> $crate::error::Result<Vec<f64>> {
            $m.data_diagonal(which, theta, rows)
        }
        fn data_matrix(
            &mut $s,
            kind: $crate::engine::Kind,
            theta: &[f64],
            rows: std::ops::Range<usize>,
        ) -> $crate::error::Result<ndarray::Array2<f64>> {
            $m.data_matrix(kind, theta, rows)
        }
        fn data_outer_product(
            &mut $s,
            theta: &[f64],
            rows: std::ops::Range<usize>,
        ) -> $crate::error::Result<ndarray::Array2<f64>> {
            $m.data_outer_product(theta, rows)
        }
        fn data_fisher_vectors(
            &mut $s,
            fisher: $crate::cpu::Fisher,
            theta: &[f64],
            rows: std::ops::Range<usize>,
            skip: usize,
        ) -> $crate::error::Result<ndarray::Array2<f64>> {
            $m.data_fisher_vectors(fisher, theta, rows, skip)
        }
        fn data_kfac_factors(
            &mut $s,
            fisher: $crate::cpu::Fisher,
            theta: &[f64],
            rows: std::ops::Range<usize>,
        ) -> $crate::error::Result<$crate::cpu::KroneckerFactors> {
            $m.data_kfac_factors(fisher, theta, rows)
        }
        fn bind_data(
            &mut $s,
            x: ndarray::ArrayView2<f32>,
            t: ndarray::ArrayView2<f32>,
        ) -> $crate::error::Result<()> {
            $m.bind_data(x, t)
        }
        fn limits(&$s) -> $crate::engine::Limits {
            $r.limits()
        }
        fn precision(&$s) -> $crate::engine::Precision {
            $r.precision()
        }
        fn device_training(&mut $s) -> Option<&mut dyn $crate::engine::DeviceTraining> {
            $m.device_training()
        }
    };
}
pub(crate) use forward_backend;

/// A boxed backend is a backend (so `Box<dyn Curvature>` and `Box<dyn Backend>`
/// get the face too).
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn architecture(&self) -> &Mlp {
        (**self).architecture()
    }
    forward_backend!(self => ref (**self), mut (**self));
}

/// The error of a primitive an engine has no kernel for (and no default can build).
fn no_kernel(what: &str) -> Error {
    Error::Input(format!(
        "this engine computes no {what}: use the reference, the fast CPU engine or the GPU engine"
    ))
}

/// What an engine's forward and backward buffers hold after a product: the passes at
/// this θ over these rows, of this kind (the Gauss-Newton needs no backward pass). The
/// next product at the same θ, rows and kind reuses them (Lanczos, CG, Hutchinson and
/// Hessian-free make many products at one θ).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PassesKey {
    theta: Vec<f64>,
    rows: Range<usize>,
    kind: Kind,
}

impl PassesKey {
    /// Whether `kept` describes passes at this θ, over these rows, of this kind.
    pub(crate) fn matches(
        kept: &Option<PassesKey>,
        theta: &[f64],
        rows: &Range<usize>,
        kind: Kind,
    ) -> bool {
        kept.as_ref()
            .is_some_and(|k| k.kind == kind && k.rows == *rows && k.theta == theta)
    }

    /// Records in `kept` that the buffers now hold these passes (reusing its allocation).
    pub(crate) fn record(
        kept: &mut Option<PassesKey>,
        theta: &[f64],
        rows: &Range<usize>,
        kind: Kind,
    ) {
        let key = kept.get_or_insert_with(|| PassesKey {
            theta: Vec::new(),
            rows: rows.clone(),
            kind,
        });
        key.theta.clear();
        key.theta.extend_from_slice(theta);
        key.rows = rows.clone();
        key.kind = kind;
    }
}
