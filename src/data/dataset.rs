//! The in-memory data set every loader returns: inputs X (N, D), targets T (N, K).

use super::scaling::Scaling;
use ndarray::{Array2, Axis};

/// What the targets mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `classes` classes; T is one-hot (N, classes), except for two-class sets whose T is
    /// (N, 1) holding 0/1 (for a single sigmoid output with `bce`, as `xor` and `gaussians`).
    Classification { classes: usize },
    /// Real-valued targets, T (N, K), not scaled.
    Regression,
}

/// A loaded data set. X is already scaled (by `scaling` when it is `Some`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `digits`, `mnist10k`, … for named sets, else the file path.
    pub name: String,
    /// (N, D) row-major, already scaled.
    pub x: Array2<f32>,
    /// (N, K): one-hot for classification (or (N, 1) 0/1 for two classes, see [`Task`]),
    /// real values for regression.
    pub t: Array2<f32>,
    /// The class index of each row, for classification; `None` for regression.
    pub labels: Option<Vec<usize>>,
    pub task: Task,
    /// The input scaling applied to `x` (fitted for generic CSV, fixed for the named sets that
    /// scale); apply the same to new inputs before prediction. `None`: inputs are used as read.
    pub scaling: Option<Scaling>,
    /// For CSV files whose labels are names: the name of class c is `class_names[c]`.
    pub class_names: Option<Vec<String>>,
}

impl Dataset {
    /// A classification set with one-hot targets (N, classes) built from `labels`.
    ///
    /// # Panics
    /// If `labels.len() != x.nrows()` or a label is ≥ `classes` (loaders check both first).
    pub fn from_labels(
        name: impl Into<String>,
        x: Array2<f32>,
        labels: Vec<usize>,
        classes: usize,
    ) -> Dataset {
        assert_eq!(labels.len(), x.nrows(), "one label per row");
        Dataset {
            name: name.into(),
            t: one_hot(&labels, classes),
            x,
            labels: Some(labels),
            task: Task::Classification { classes },
            scaling: None,
            class_names: None,
        }
    }

    /// N, the number of samples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// D, the input width.
    pub fn num_inputs(&self) -> usize {
        self.x.ncols()
    }

    /// K, the target width (the network's output width).
    pub fn num_outputs(&self) -> usize {
        self.t.ncols()
    }

    /// The rows `rows`, in that order (repeats allowed); name, task and scaling are kept.
    ///
    /// # Panics
    /// If an index is ≥ `len()`.
    pub fn subset(&self, rows: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            x: self.x.select(Axis(0), rows),
            t: self.t.select(Axis(0), rows),
            labels: self
                .labels
                .as_ref()
                .map(|l| rows.iter().map(|&r| l[r]).collect()),
            task: self.task,
            scaling: self.scaling.clone(),
            class_names: self.class_names.clone(),
        }
    }

    /// The same set with T one-hot (N, 2) instead of (N, 1) 0/1, for a two-class set that
    /// should be trained with a softmax output and `ce`. Other sets are returned unchanged.
    pub fn with_one_hot_targets(&self) -> Dataset {
        match (&self.labels, self.task) {
            (Some(labels), Task::Classification { classes }) if self.t.ncols() != classes => {
                Dataset {
                    t: one_hot(labels, classes),
                    ..self.clone()
                }
            }
            _ => self.clone(),
        }
    }
}

/// One-hot targets (N, classes): row n has 1 in column `labels[n]`.
///
/// # Panics
/// If a label is ≥ `classes`.
pub fn one_hot(labels: &[usize], classes: usize) -> Array2<f32> {
    let mut t = Array2::<f32>::zeros((labels.len(), classes));
    for (n, &c) in labels.iter().enumerate() {
        t[[n, c]] = 1.0;
    }
    t
}
