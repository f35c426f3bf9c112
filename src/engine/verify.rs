//! Runtime verification against the CPU reference (`train --verify-every K`):
//! a `Curvature` wrapper that passes every call to the device's engine and, on
//! the first update and every K-th, recomputes that update's loss, gradient
//! and first curvature product with the f64 CPU reference, compares them with
//! the shared comparator, and stops with a clear error if they disagree.

use super::compare::{compare_with_table, Checked, Comparison};
use super::device::Precision;
use super::{
    Backend, DeviceRule, DeviceTraining, DeviceUpdates, Diagonal, Kind, Limits, ReferenceEngine,
};
use crate::cpu::{Fisher, KroneckerFactors};
use crate::error::{Error, Result};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

/// One verified quantity.
#[derive(Clone, Debug)]
pub struct Check {
    /// The update (0-based) it belonged to.
    pub update: usize,
    pub quantity: &'static str,
    pub comparison: Comparison,
}

/// What the verifier shares with the training loop: the update counter (the
/// loop's callback advances it) and the checks made so far.
#[derive(Default)]
pub struct VerifyState {
    pub updates: Cell<usize>,
    pub checks: RefCell<Vec<Check>>,
    /// The update whose gradient / curvature product was already checked.
    grad_checked: Cell<Option<usize>>,
    curvature_checked: Cell<Option<usize>>,
}

impl VerifyState {
    /// The largest relative error seen so far, with its quantity.
    pub fn worst(&self) -> Option<(f64, &'static str, usize)> {
        self.checks
            .borrow()
            .iter()
            .map(|c| (c.comparison.worst_rel, c.quantity, c.update))
            .fold(None, |best, x| match best {
                Some(b) if b.0 >= x.0 => Some(b),
                _ => Some(x),
            })
    }
}

/// The wrapper: an engine plus the CPU reference bound to the same rows.
pub struct Verifying {
    inner: Box<dyn Backend>,
    reference: ReferenceEngine,
    every: usize,
    state: Rc<VerifyState>,
    /// A run of device updates begun and not yet handed to the inner engine:
    /// its first update is checked at the θ it starts from (see
    /// [`Backend::device_training`] below).
    pending: Option<PendingRun>,
}

/// What `begin_updates` was given, kept until the run's first update.
struct PendingRun {
    rule: DeviceRule,
    theta: Vec<f64>,
    state: [Vec<f64>; 3],
    step: usize,
    l2: f64,
}

impl Verifying {
    /// Wraps `inner` (bound to x (N, D), t (N, K)); verifies update 0 and every
    /// `every`-th (`every` = 0: update 0 only).
    pub fn new(
        inner: Box<dyn Backend>,
        mlp: &Mlp,
        x: ArrayView2<f32>,
        t: ArrayView2<f32>,
        every: usize,
        state: Rc<VerifyState>,
    ) -> Result<Verifying> {
        Ok(Verifying {
            reference: ReferenceEngine::new(mlp, x, t)?,
            inner,
            every,
            state,
            pending: None,
        })
    }

    fn due(&self, checked: &Cell<Option<usize>>) -> Option<usize> {
        let u = self.state.updates.get();
        let due = u == 0 || (self.every > 0 && u.is_multiple_of(self.every));
        (due && checked.get() != Some(u)).then_some(u)
    }

    fn record(
        &self,
        update: usize,
        quantity: &'static str,
        got: &[f64],
        want: &[f64],
        checked: Checked,
    ) -> Result<()> {
        let comparison = compare_with_table(got, want, self.inner.precision(), checked);
        let passed = comparison.passed();
        let message = format!("{comparison}");
        self.state.checks.borrow_mut().push(Check {
            update,
            quantity,
            comparison,
        });
        if passed {
            Ok(())
        } else {
            Err(Error::Verification(format!(
                "update {update}: the device's {quantity} disagrees with the CPU reference: {message}. \
                 Run `curvature parity` to check this adapter, or train with `--device cpu`"
            )))
        }
    }

    /// Checks the device's loss and gradient at (θ, rows) of a due update.
    fn check_gradient(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        loss: f64,
        grad: &[f64],
    ) -> Result<()> {
        if let Some(u) = self.due(&self.state.grad_checked) {
            self.state.grad_checked.set(Some(u));
            let (want_loss, want_grad) = self.reference.data_loss_grad(theta, rows)?;
            self.record(u, "loss", &[loss], &[want_loss], Checked::Loss)?;
            self.record(u, "gradient", grad, &want_grad, Checked::Gradient)?;
        }
        Ok(())
    }

    /// The inner engine's device updates (offered only when it has them).
    fn inner_device(&mut self) -> Result<&mut dyn DeviceTraining> {
        self.inner
            .device_training()
            .ok_or_else(|| Error::Internal("the verified engine has no device updates".into()))
    }

    /// Checks the first curvature product of a due update.
    fn check_curvature(
        &mut self,
        quantity: &'static str,
        got: &[f64],
        want: impl FnOnce(&mut ReferenceEngine) -> Result<Vec<f64>>,
    ) -> Result<()> {
        if let Some(u) = self.due(&self.state.curvature_checked) {
            self.state.curvature_checked.set(Some(u));
            let want = want(&mut self.reference)?;
            self.record(u, quantity, got, &want, Checked::Curvature)?;
        }
        Ok(())
    }
}

fn flat(m: &Array2<f64>) -> Vec<f64> {
    m.iter().copied().collect()
}

/// The checks compare the data term (no λ): the face adds λ in f64 above both the
/// device and the reference, so it is the same on both sides and checking it
/// would only hide a device's error behind an exact addend.
impl Backend for Verifying {
    fn architecture(&self) -> &Mlp {
        self.inner.architecture()
    }
    fn data_rows(&self) -> usize {
        self.inner.data_rows()
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        self.inner.data_loss(theta, rows)
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        let (loss, grad) = self.inner.data_loss_grad(theta, rows.clone())?;
        self.check_gradient(theta, rows, loss, &grad)?;
        Ok((loss, grad))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.inner.network_outputs(theta, rows)
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        let got = self.inner.data_products(kind, theta, rows.clone(), v)?;
        let quantity = match kind {
            Kind::Hessian => "Hv",
            Kind::GaussNewton => "Gv",
        };
        self.check_curvature(quantity, &flat(&got), |r| {
            Ok(flat(&r.data_products(kind, theta, rows, v)?))
        })?;
        Ok(got)
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        let got = self.inner.data_matrix(kind, theta, rows.clone())?;
        let quantity = match kind {
            Kind::Hessian => "Hessian",
            Kind::GaussNewton => "GGN",
        };
        self.check_curvature(quantity, &flat(&got), |r| {
            Ok(flat(&r.data_matrix(kind, theta, rows)?))
        })?;
        Ok(got)
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        let got = self.inner.data_diagonal(which, theta, rows.clone())?;
        self.check_curvature(which.name(), &got, |r| r.data_diagonal(which, theta, rows))?;
        Ok(got)
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        let got = self.inner.data_outer_product(theta, rows.clone())?;
        self.check_curvature("outer product", &flat(&got), |r| {
            Ok(flat(&r.data_outer_product(theta, rows)?))
        })?;
        Ok(got)
    }
    /// Passed through unchecked: training verifies the quantities its updates use.
    fn data_fisher_vectors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
        skip: usize,
    ) -> Result<Array2<f64>> {
        self.inner.data_fisher_vectors(fisher, theta, rows, skip)
    }
    /// Checked like a curvature product on a due update.
    fn data_kfac_factors(
        &mut self,
        fisher: Fisher,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<KroneckerFactors> {
        let got = self.inner.data_kfac_factors(fisher, theta, rows.clone())?;
        let flat_factors = |f: &KroneckerFactors| -> Vec<f64> {
            f.a.iter()
                .chain(&f.b)
                .flat_map(|m| m.iter().copied())
                .collect()
        };
        self.check_curvature("K-FAC factors", &flat_factors(&got), |r| {
            Ok(flat_factors(&r.data_kfac_factors(fisher, theta, rows)?))
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
    /// The inner engine's device updates, with the check of update 0: a device
    /// update's gradient never comes back to the host, so the first update of a
    /// run — whose θ is the one `begin_updates` was given — is checked before it
    /// runs, by the device's gradient at that (θ, rows) against the reference;
    /// that is update 0 of the process (also of a resumed one). With `every` > 0
    /// updates inside a run are due too: then none is offered, and every update
    /// runs on the host path.
    fn device_training(&mut self) -> Option<&mut dyn DeviceTraining> {
        if self.every > 0 {
            return None;
        }
        self.inner.device_training()?;
        Some(self)
    }
}

/// The inner engine's runs, begun at their first update (after its check), so that
/// the check's own gradient never runs inside one.
impl DeviceTraining for Verifying {
    fn begin_updates(
        &mut self,
        rule: &DeviceRule,
        theta: &[f64],
        state: &[Vec<f64>; 3],
        step: usize,
        l2: f64,
    ) -> Result<()> {
        self.pending = Some(PendingRun {
            rule: rule.clone(),
            theta: theta.to_vec(),
            state: state.clone(),
            step,
            l2,
        });
        Ok(())
    }

    fn device_update(&mut self, rows: Range<usize>) -> Result<()> {
        if let Some(run) = self.pending.take() {
            if self.due(&self.state.grad_checked).is_some() {
                let (loss, grad) = self.inner.data_loss_grad(&run.theta, rows.clone())?;
                self.check_gradient(&run.theta, rows.clone(), loss, &grad)?;
            }
            self.inner_device()?
                .begin_updates(&run.rule, &run.theta, &run.state, run.step, run.l2)?;
        }
        self.inner_device()?.device_update(rows)
    }

    fn finish_updates(&mut self) -> Result<DeviceUpdates> {
        if let Some(run) = self.pending.take() {
            self.inner_device()?
                .begin_updates(&run.rule, &run.theta, &run.state, run.step, run.l2)?;
        }
        self.inner_device()?.finish_updates()
    }
}
