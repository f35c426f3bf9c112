//! The engines a run trains and validates on: each built once by the caller's
//! factory, then given new rows with [`Curvature::rebind`], which keeps the
//! engine's buffers (and on the GPU its pipelines and θ buffer) and only
//! uploads the data. Mini-batch epochs rebind the training engine to their
//! permuted rows; a run continued after an interruption rebinds both engines
//! to the data it is given.

use super::config::DataView;
use crate::engine::Curvature;
use ndarray::ArrayView2;

/// Builds an engine bound to (x (N, D), t (N, K)).
pub type EngineFactory<'f> =
    dyn FnMut(ArrayView2<f32>, ArrayView2<f32>) -> crate::Result<Box<dyn Curvature>> + 'f;

/// The training and validation engines of a run, built on first use by the
/// factory and rebound after that. Keep one `Engines` across the calls of
/// [`train_resumable`](super::train_resumable) that continue one run (the CLI
/// pauses for every periodic checkpoint): the engines then outlive the pauses.
pub struct Engines<'f> {
    factory: Box<EngineFactory<'f>>,
    built: Option<BoundEngines>,
}

/// Both engines, bound to a run's data.
pub(super) struct BoundEngines {
    /// Bound to the training rows as given, or to an epoch's permutation of them.
    pub(super) training: Box<dyn Curvature>,
    /// Bound to the validation rows, when there are any.
    pub(super) validation: Option<Box<dyn Curvature>>,
}

impl<'f> Engines<'f> {
    /// Engines that `factory` will build when the run first needs them.
    pub fn new(
        factory: impl FnMut(ArrayView2<f32>, ArrayView2<f32>) -> crate::Result<Box<dyn Curvature>> + 'f,
    ) -> Engines<'f> {
        Engines {
            factory: Box::new(factory),
            built: None,
        }
    }

    /// The training engine bound to `train` (its rows as given) and the
    /// validation engine to `validation`: built by the factory (training
    /// first) on the first call, rebound on later ones.
    pub(super) fn bind(
        &mut self,
        train: DataView,
        validation: Option<DataView>,
    ) -> crate::Result<&mut BoundEngines> {
        let Engines { factory, built } = self;
        match built {
            None => {
                let training = factory(train.x, train.t)?;
                let validation = match validation {
                    Some(v) => Some(factory(v.x, v.t)?),
                    None => None,
                };
                Ok(built.insert(BoundEngines {
                    training,
                    validation,
                }))
            }
            Some(engines) => {
                engines.training.rebind(train.x, train.t)?;
                engines.validation = match (engines.validation.take(), validation) {
                    (Some(mut engine), Some(v)) => {
                        engine.rebind(v.x, v.t)?;
                        Some(engine)
                    }
                    (None, Some(v)) => Some(factory(v.x, v.t)?),
                    (_, None) => None,
                };
                Ok(engines)
            }
        }
    }
}
