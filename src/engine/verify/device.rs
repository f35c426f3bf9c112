//! The checks of first-order updates that run on the device ([`DeviceTraining`]): a
//! device update's gradient never comes back to the host, so an update the planner
//! picks is checked before it runs, by the device's loss and gradient at the θ and rows
//! it starts from against the reference's. Inside a run that needs θ on the host: the
//! inner engine's run is finished there (θ, the state and the losses read back), the
//! check made, and a new run begun from where it stood (t counted on); the scheduler
//! still sees one run, whose totals are the sum of its pieces. The first update of a
//! run is checked before the run is begun on the inner engine, at the θ that
//! `begin_updates` was given. The check is of the gradient kernels at that θ (for
//! Nesterov's look-ahead gradient: at θ, not θ + μv); the time of a split counts as
//! verification.

use super::policy::Plan;
use super::{Verifying, LOSS_GRAD};
use crate::engine::{DeviceRule, DeviceTraining, DeviceUpdates};
use crate::error::{Error, Result};
use std::ops::Range;

/// A run of device updates as the scheduler began it, in pieces.
pub(super) struct DeviceRun {
    rule: DeviceRule,
    l2: f64,
    /// θ, the state vectors and t where the current piece starts.
    theta: Vec<f64>,
    state: [Vec<f64>; 3],
    step: usize,
    /// Whether the inner engine's run of the current piece is begun.
    begun: bool,
    /// The finished pieces: their updates and Σ of their batch losses.
    updates: usize,
    loss_sum: f64,
}

impl Verifying {
    /// The inner engine's device updates (offered only when it has them).
    fn inner_device(&mut self) -> Result<&mut dyn DeviceTraining> {
        self.inner
            .device_training()
            .ok_or_else(|| Error::Internal("the verified engine has no device updates".into()))
    }

    fn current_run(&mut self) -> Result<&mut DeviceRun> {
        self.run
            .as_mut()
            .ok_or_else(|| Error::Internal("a device update outside a run".into()))
    }
}

impl DeviceTraining for Verifying {
    fn begin_updates(
        &mut self,
        rule: &DeviceRule,
        theta: &[f64],
        state: &[Vec<f64>; 3],
        step: usize,
        l2: f64,
    ) -> Result<()> {
        self.run = Some(DeviceRun {
            rule: rule.clone(),
            l2,
            theta: theta.to_vec(),
            state: state.clone(),
            step,
            begun: false,
            updates: 0,
            loss_sum: 0.0,
        });
        Ok(())
    }

    fn device_update(&mut self, rows: Range<usize>) -> Result<()> {
        let plan = self.state.plan("loss and gradient", rows.clone());
        if plan != Plan::Skip {
            let began = self.state.now();
            if self.current_run()?.begun {
                let out = self.inner_device()?.finish_updates()?;
                let run = self.current_run()?;
                run.updates += out.updates;
                run.loss_sum += out.loss_sum;
                run.step += out.updates;
                run.theta = out.theta;
                run.state = out.state;
                run.begun = false;
            }
            let theta = self.current_run()?.theta.clone();
            let full = match plan {
                Plan::Full => Some(self.inner.data_loss_grad(&theta, rows.clone())?),
                _ => None,
            };
            self.checked(
                plan,
                Some(began),
                "loss and gradient",
                LOSS_GRAD,
                &theta,
                rows.clone(),
                || full.map_or_else(Vec::new, |(l, g)| vec![vec![l], g]),
                &mut |e, r| {
                    let (l, g) = e.data_loss_grad(&theta, r)?;
                    Ok(vec![vec![l], g])
                },
            )?;
        }
        self.begin_piece()?;
        self.inner_device()?.device_update(rows)
    }

    fn finish_updates(&mut self) -> Result<DeviceUpdates> {
        self.begin_piece()?;
        let mut out = self.inner_device()?.finish_updates()?;
        let run = self
            .run
            .take()
            .ok_or_else(|| Error::Internal("device updates finished outside a run".into()))?;
        out.updates += run.updates;
        out.loss_sum += run.loss_sum;
        Ok(out)
    }
}

impl Verifying {
    /// Begins the current piece on the inner engine, if it is not begun.
    fn begin_piece(&mut self) -> Result<()> {
        let run = self.current_run()?;
        if run.begun {
            return Ok(());
        }
        run.begun = true;
        let (rule, theta, state, step, l2) = (
            run.rule.clone(),
            run.theta.clone(),
            run.state.clone(),
            run.step,
            run.l2,
        );
        self.inner_device()?
            .begin_updates(&rule, &theta, &state, step, l2)
    }
}
