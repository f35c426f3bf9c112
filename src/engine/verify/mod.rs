//! Runtime verification against the CPU reference (`train --verify …`): a [`Backend`]
//! wrapper that passes every call to the device's engine and checks the results its
//! planner picks ([`policy`]) against the f64 reference with the shared comparator,
//! stopping with a one-line error when they disagree.
//!
//! A result is checked in full (the reference recomputes it on the same rows) or
//! sliced (the same operation on both engines over a seeded random slice of the
//! batch's rows: the contract takes row ranges, so a slice is an ordinary call). The
//! checks compare the data term (no λ): the face adds λ in f64 above both engines, so
//! it is the same on both sides and checking it would only hide a device's error
//! behind an exact addend.
//!
//! | file | what |
//! |---|---|
//! | `policy.rs` | [`VerifyMode`], the [`Planner`](policy::Planner) (budget, slices), the bound on unchecked updates |
//! | `state.rs` | [`VerifyState`]: the counter, the budget's ledger, the checks and their summary |
//! | `device.rs` | the checks of first-order updates that run on the device |

mod device;
pub mod policy;
mod state;

pub use policy::{
    unchecked_bound, warm_up_updates, Plan, VerifyMode, DEFAULT_BUDGET, MIN_SLICE_ROWS,
};
pub use state::{Check, Clock, KindSummary, VerifyState};

use super::compare::{compare_with_table, Checked};
use super::{Backend, DeviceTraining, Diagonal, Kind, Limits, ReferenceEngine};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::engine::device::Precision;
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::ops::Range;
use std::rc::Rc;

/// The wrapper: an engine plus the CPU reference bound to the same rows.
pub struct Verifying {
    inner: Box<dyn Backend>,
    reference: ReferenceEngine,
    state: Rc<VerifyState>,
    /// The device run in progress, split where an update inside it is checked.
    run: Option<device::DeviceRun>,
}

/// The parts of one operation's result: (quantity, its row of the tolerance table).
type Parts = &'static [(&'static str, Checked)];

/// Recomputes an operation on either engine over some rows: its parts, flattened.
type Redo<'a> = dyn FnMut(&mut dyn Backend, Range<usize>) -> Result<Vec<Vec<f64>>> + 'a;

impl Verifying {
    /// Wraps `inner` (bound to x (N, D), t (N, K)); checks what `state`'s mode asks.
    pub fn new(
        inner: Box<dyn Backend>,
        mlp: &Mlp,
        x: ArrayView2<f32>,
        t: ArrayView2<f32>,
        state: Rc<VerifyState>,
    ) -> Result<Verifying> {
        Ok(Verifying {
            reference: ReferenceEngine::new(mlp, x, t)?,
            inner,
            state,
            run: None,
        })
    }

    /// Checks the result of `op` on `rows` at θ as planned: `got` gives the device's
    /// parts (computed already) for a full check, `redo` recomputes the operation on
    /// either engine over a slice and on the reference. `began`: when the check's work
    /// began, if earlier than now (a device run split for it).
    fn check(
        &mut self,
        op: &'static str,
        parts: Parts,
        theta: &[f64],
        rows: Range<usize>,
        got: impl FnOnce() -> Vec<Vec<f64>>,
        redo: &mut Redo<'_>,
    ) -> Result<()> {
        let plan = self.state.plan(op, rows.clone());
        self.checked(plan, None, op, parts, theta, rows, got, redo)
    }

    /// [`Verifying::check`] with the plan made.
    #[allow(clippy::too_many_arguments)]
    fn checked(
        &mut self,
        plan: Plan,
        began: Option<f64>,
        op: &'static str,
        parts: Parts,
        theta: &[f64],
        rows: Range<usize>,
        got: impl FnOnce() -> Vec<Vec<f64>>,
        redo: &mut Redo<'_>,
    ) -> Result<()> {
        let began = began.unwrap_or_else(|| self.state.now());
        let (compared, got) = match plan {
            Plan::Skip => return Ok(()),
            Plan::Full => (rows.clone(), got()),
            Plan::Sliced(slice) => (slice.clone(), redo(&mut *self.inner, slice)?),
        };
        let want = redo(&mut self.reference, compared.clone())?;
        self.state.book(op, compared.len(), began);
        let update = self.state.updates.get();
        for (&(quantity, what), (g, w)) in parts.iter().zip(got.iter().zip(&want)) {
            self.record(update, quantity, what, (&compared, rows.len()), g, w)?;
        }
        self.state.verified_at(update, theta);
        Ok(())
    }

    /// Compares one part and keeps the check; a disagreement is the error that stops
    /// training: the device, the operation, its rows, the worst index and both values.
    fn record(
        &self,
        update: usize,
        quantity: &'static str,
        what: Checked,
        (compared, of_rows): (&Range<usize>, usize),
        got: &[f64],
        want: &[f64],
    ) -> Result<()> {
        let comparison = compare_with_table(got, want, self.inner.precision(), what);
        let passed = comparison.passed();
        let message = if passed {
            String::new()
        } else {
            disagreement(
                &self.state,
                update,
                quantity,
                (compared, of_rows),
                got,
                want,
                &comparison,
            )
        };
        self.state.push(Check {
            update,
            quantity,
            rows: compared.len(),
            of_rows,
            comparison,
        });
        if passed {
            Ok(())
        } else {
            Err(Error::Verification(message))
        }
    }
}

/// The one line of a disagreement.
fn disagreement(
    state: &VerifyState,
    update: usize,
    quantity: &str,
    (compared, of_rows): (&Range<usize>, usize),
    got: &[f64],
    want: &[f64],
    c: &crate::engine::compare::Comparison,
) -> String {
    let rows = if compared.len() < of_rows {
        format!(
            "rows {}..{} of a batch of {of_rows} (a sliced check)",
            compared.start, compared.end
        )
    } else {
        format!("its batch of {of_rows} rows")
    };
    let i = c.worst_index;
    let values = match (got.get(i), want.get(i)) {
        (Some(g), Some(w)) => format!(
            "worst at index {i}: device {g:.9e}, reference {w:.9e} (diff {:.3e})",
            g - w
        ),
        _ => format!(
            "{} values against {} of the reference",
            got.len(),
            want.len()
        ),
    };
    let last = match state.last_verified() {
        Some((u, _)) => format!("the last update verified was {u}"),
        None => "no update was verified before".into(),
    };
    format!(
        "update {update}: {} disagrees with the CPU reference on the {quantity} over {rows}: {values}; \
         {} of {} entries outside |g − c| ≤ {:.1e} + {:.1e}·|c|; {last}. \
         Run `curvature parity` to check this adapter, or train with `--device cpu`",
        state.device(),
        c.failures,
        c.len,
        c.tolerance.abs,
        c.tolerance.rel
    )
}

fn flat(m: &Array2<f64>) -> Vec<f64> {
    m.iter().copied().collect()
}

const LOSS: Parts = &[("loss", Checked::Loss)];
const LOSS_GRAD: Parts = &[("loss", Checked::Loss), ("gradient", Checked::Gradient)];
const OUTPUTS: Parts = &[("outputs", Checked::Values)];
const FISHER_VECTORS: Parts = &[("Fisher vectors", Checked::Curvature)];

const OUTER_PRODUCT: Parts = &[("outer product", Checked::Curvature)];
const KFAC_FACTORS: Parts = &[("K-FAC factors", Checked::Curvature)];

/// The one-part `Parts` of a block of products of `kind`.
fn product_parts(kind: Kind) -> Parts {
    match kind {
        Kind::Hessian => &[("Hv", Checked::Curvature)],
        Kind::GaussNewton => &[("Gv", Checked::Curvature)],
    }
}

/// The one-part `Parts` of the full matrix of `kind`.
fn matrix_parts(kind: Kind) -> Parts {
    match kind {
        Kind::Hessian => &[("Hessian", Checked::Curvature)],
        Kind::GaussNewton => &[("GGN", Checked::Curvature)],
    }
}

/// The one-part `Parts` of a diagonal, named as [`Diagonal::name`].
fn diagonal_parts(which: Diagonal) -> Parts {
    match which {
        Diagonal::Hessian => &[("diag Hessian", Checked::Curvature)],
        Diagonal::GaussNewton => &[("diag GGN", Checked::Curvature)],
        Diagonal::BeckerLeCun => &[("diag Becker-LeCun", Checked::Curvature)],
    }
}

/// The operation a one-part `Parts` checks: its part's name.
fn op_of(parts: Parts) -> &'static str {
    parts[0].0
}

/// The factors A_l then B_l, flattened.
fn flat_factors(f: &KroneckerFactors) -> Vec<f64> {
    f.a.iter()
        .chain(&f.b)
        .flat_map(|m| m.iter().copied())
        .collect()
}

impl Backend for Verifying {
    fn architecture(&self) -> &Mlp {
        self.inner.architecture()
    }
    fn data_rows(&self) -> usize {
        self.inner.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        let loss = self.inner.data_loss(theta, rows.clone())?;
        self.check(
            "loss",
            LOSS,
            theta,
            rows,
            || vec![vec![loss]],
            &mut |e, r| Ok(vec![vec![e.data_loss(theta, r)?]]),
        )?;
        Ok(loss)
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        let (loss, grad) = self.inner.data_loss_grad(theta, rows.clone())?;
        let got = || vec![vec![loss], grad.clone()];
        self.check(
            "loss and gradient",
            LOSS_GRAD,
            theta,
            rows,
            got,
            &mut |e, r| {
                let (l, g) = e.data_loss_grad(theta, r)?;
                Ok(vec![vec![l], g])
            },
        )?;
        Ok((loss, grad))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let y = self.inner.network_outputs(theta, rows.clone())?;
        self.check(
            "outputs",
            OUTPUTS,
            theta,
            rows,
            || vec![flat(&y)],
            &mut |e, r| Ok(vec![flat(&e.network_outputs(theta, r)?)]),
        )?;
        Ok(y)
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        let got = self.inner.data_products(kind, theta, rows.clone(), v)?;
        let parts = product_parts(kind);
        self.check(
            op_of(parts),
            parts,
            theta,
            rows,
            || vec![flat(&got)],
            &mut |e, r| Ok(vec![flat(&e.data_products(kind, theta, r, v)?)]),
        )?;
        Ok(got)
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        let got = self.inner.data_matrix(kind, theta, rows.clone())?;
        let parts = matrix_parts(kind);
        self.check(
            op_of(parts),
            parts,
            theta,
            rows,
            || vec![flat(&got)],
            &mut |e, r| Ok(vec![flat(&e.data_matrix(kind, theta, r)?)]),
        )?;
        Ok(got)
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        let got = self.inner.data_diagonal(which, theta, rows.clone())?;
        let parts = diagonal_parts(which);
        self.check(
            op_of(parts),
            parts,
            theta,
            rows,
            || vec![got.clone()],
            &mut |e, r| Ok(vec![e.data_diagonal(which, theta, r)?]),
        )?;
        Ok(got)
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let got = self.inner.data_outer_product(theta, rows.clone())?;
        self.check(
            op_of(OUTER_PRODUCT),
            OUTER_PRODUCT,
            theta,
            rows,
            || vec![flat(&got)],
            &mut |e, r| Ok(vec![flat(&e.data_outer_product(theta, r)?)]),
        )?;
        Ok(got)
    }
    /// A slice of rows takes the draws of the same rows of the whole request (`skip`).
    fn data_fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        let got = self
            .inner
            .data_fisher_vectors(fisher, theta, rows.clone(), skip)?;
        let first = rows.start;
        let got_flat = || vec![flat(&got)];
        self.check(
            "Fisher vectors",
            FISHER_VECTORS,
            theta,
            rows,
            got_flat,
            &mut |e, r| {
                let skip = skip + (r.start - first);
                Ok(vec![flat(&e.data_fisher_vectors(fisher, theta, r, skip)?)])
            },
        )?;
        Ok(got)
    }
    fn data_kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        let got = self.inner.data_kfac_factors(fisher, theta, rows.clone())?;
        let got_flat = || vec![flat_factors(&got)];
        let op = op_of(KFAC_FACTORS);
        self.check(op, KFAC_FACTORS, theta, rows, got_flat, &mut |e, r| {
            Ok(vec![flat_factors(&e.data_kfac_factors(fisher, theta, r)?)])
        })?;
        Ok(got)
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        self.inner.bind_data(x, t)?;
        self.reference.bind_data(x, t)
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn precision(&self) -> Precision {
        self.inner.precision()
    }
    /// The inner engine's device updates, checked by `device.rs`, unless the mode needs
    /// every update's results on the host (`every`, `--verify-every K > 0`).
    fn device_training(&mut self) -> Option<&mut dyn DeviceTraining> {
        if !self.state.mode().keeps_device_updates() {
            return None;
        }
        self.inner.device_training()?;
        Some(self)
    }
}
