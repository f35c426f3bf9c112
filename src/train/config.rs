//! What a run is given: its [`TrainConfig`] and its data sets ([`DataView`]).

use crate::optim::DEFAULT_MAX_FAILURES;
use ndarray::ArrayView2;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training data (default 100).
    pub epochs: usize,
    /// Rows per update; `None` = the full batch (default).
    pub batch_size: Option<usize>,
    /// Failed (NaN/∞) updates in a row before training stops with
    /// [`OptimError::Diverged`](crate::optim::OptimError::Diverged) (default
    /// [`DEFAULT_MAX_FAILURES`]); see [`Guarded`](crate::optim::Guarded).
    pub max_failures: usize,
    /// Seed of the per-epoch shuffle (default 0).
    pub shuffle_seed: u64,
    /// Stop after this many epochs without a validation-loss improvement
    /// (training loss when there is no validation set); `None` = never (default).
    pub patience: Option<usize>,
    /// The least decrease that counts as an improvement (default 0).
    pub min_delta: f64,
    /// On early stopping, put back the θ of the best epoch (default true).
    pub restore_best: bool,
    /// λ by the evidence: re-estimate it by MacKay's fixed point
    /// (`analysis::evidence`) after every this many epochs, from the model's λ
    /// at the start; `None` (default): λ stays the model's.
    pub evidence_every: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 100,
            batch_size: None,
            max_failures: DEFAULT_MAX_FAILURES,
            shuffle_seed: 0,
            patience: None,
            min_delta: 0.0,
            restore_best: true,
            evidence_every: None,
        }
    }
}

/// A data set on the host: inputs x (N, D) and targets t (N, K).
#[derive(Clone, Copy, Debug)]
pub struct DataView<'a> {
    pub x: ArrayView2<'a, f32>,
    pub t: ArrayView2<'a, f32>,
}

impl<'a> DataView<'a> {
    /// The same views for a shorter lifetime (array views are invariant in
    /// theirs, so a struct holding views and other borrows needs this).
    pub(super) fn reborrow<'b>(self) -> DataView<'b>
    where
        'a: 'b,
    {
        DataView {
            x: self.x.reborrow(),
            t: self.t.reborrow(),
        }
    }
}
