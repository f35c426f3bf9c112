//! An optimizer's learned state as named f64 tensors and scalars, so that a
//! run can be checkpointed and resumed:
//! [`Optimizer::export_state`](super::Optimizer::export_state) and
//! [`Optimizer::import_state`](super::Optimizer::import_state).
//!
//! Importing the state exported from an optimizer into a freshly built one of
//! the same spec makes it behave bit-identically from then on. What is NOT
//! part of the state: caches of (E, ∇E) or of the curvature matrix at one
//! (θ, rows) (`GradCache`, Newton's linearisation). A resumed optimizer
//! recomputes them from the engine at the same θ and rows; on the CPU engines
//! that gives the same bits, so the resumed run is still bit-identical there.
//! On a GPU a recomputed loss may differ in its last bits from the cached one.
//!
//! Tensors are row-major with their shape; scalars are f64 (counters and flags
//! are stored as exact small integers, 0/1 for flags).

use std::collections::BTreeMap;

/// One tensor of an optimizer's state: shape and row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    pub shape: Vec<usize>,
    /// `shape.iter().product()` entries, row-major.
    pub data: Vec<f64>,
}

/// The complete learned state of one optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// The optimizer's CLI name ([`Optimizer::name`](super::Optimizer::name)), e.g. `cg-pr`.
    pub optimizer: String,
    pub tensors: BTreeMap<String, StateTensor>,
    pub scalars: BTreeMap<String, f64>,
}

/// A state that does not fit the optimizer it is imported into.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("the saved optimizer state is of `{saved}`, but the optimizer is `{expected}`")]
    WrongOptimizer { saved: String, expected: String },
    #[error("the saved state of `{optimizer}` lacks `{key}`")]
    Missing { optimizer: String, key: String },
    #[error(
        "the saved state of `{optimizer}` has `{key}` of shape {shape:?}, expected {expected}"
    )]
    WrongShape {
        optimizer: String,
        key: String,
        shape: Vec<usize>,
        expected: String,
    },
    #[error("the saved state of `{optimizer}` has `{key}` = {value}: {reason}")]
    BadValue {
        optimizer: String,
        key: String,
        value: f64,
        reason: String,
    },
    #[error("the saved state of `{optimizer}` has an unknown entry `{key}`")]
    Unknown { optimizer: String, key: String },
}

impl OptimizerState {
    /// An empty state of the optimizer `name`.
    pub fn new(name: &str) -> OptimizerState {
        OptimizerState {
            optimizer: name.to_string(),
            tensors: BTreeMap::new(),
            scalars: BTreeMap::new(),
        }
    }

    /// Adds a tensor (builder style).
    pub fn with_tensor(mut self, key: &str, shape: Vec<usize>, data: Vec<f64>) -> OptimizerState {
        self.tensors
            .insert(key.to_string(), StateTensor { shape, data });
        self
    }

    /// Adds a vector (W) unless it is empty: state made at the first step (a
    /// velocity, a warm start) is absent before it, and read back with
    /// `StateReader::optional_tensor(…).unwrap_or_default()`.
    pub fn with_vector_if_made(self, key: &str, data: &[f64]) -> OptimizerState {
        if data.is_empty() {
            return self;
        }
        self.with_tensor(key, vec![data.len()], data.to_vec())
    }

    /// Adds a scalar (builder style).
    pub fn with_scalar(mut self, key: &str, value: f64) -> OptimizerState {
        self.scalars.insert(key.to_string(), value);
        self
    }

    /// A reader that checks this state belongs to `expected` and that
    /// every entry is read (see [`StateReader::finish`]).
    pub fn reader(&self, expected: &str) -> Result<StateReader<'_>, StateError> {
        if self.optimizer != expected {
            return Err(StateError::WrongOptimizer {
                saved: self.optimizer.clone(),
                expected: expected.to_string(),
            });
        }
        Ok(StateReader {
            state: self,
            read: Vec::new(),
        })
    }
}

/// Reads a state's entries with shape checks, remembering which were read so
/// that an entry no optimizer asked for (a state from a newer build) is an error.
pub struct StateReader<'a> {
    state: &'a OptimizerState,
    read: Vec<String>,
}

impl StateReader<'_> {
    fn name(&self) -> String {
        self.state.optimizer.clone()
    }

    /// The scalar `key`.
    pub fn scalar(&mut self, key: &str) -> Result<f64, StateError> {
        let v = *self
            .state
            .scalars
            .get(key)
            .ok_or_else(|| StateError::Missing {
                optimizer: self.name(),
                key: key.to_string(),
            })?;
        self.read.push(key.to_string());
        Ok(v)
    }

    /// The scalar `key`, which must be a finite positive number.
    pub fn positive(&mut self, key: &str) -> Result<f64, StateError> {
        let v = self.scalar(key)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(self.bad(key, v, "must be finite and positive"))
        }
    }

    /// The scalar `key`, which must be a whole number ≥ 0 (a counter).
    pub fn count(&mut self, key: &str) -> Result<usize, StateError> {
        let v = self.scalar(key)?;
        if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 {
            Ok(v as usize)
        } else {
            Err(self.bad(key, v, "must be a whole number ≥ 0"))
        }
    }

    /// The scalar `key`, which must be 0 or 1 (a flag).
    pub fn flag(&mut self, key: &str) -> Result<bool, StateError> {
        let v = self.scalar(key)?;
        match v {
            0.0 => Ok(false),
            1.0 => Ok(true),
            _ => Err(self.bad(key, v, "must be 0 or 1")),
        }
    }

    fn bad(&self, key: &str, value: f64, reason: &str) -> StateError {
        StateError::BadValue {
            optimizer: self.name(),
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        }
    }

    /// The tensor `key` if present, checked to have `shape`.
    pub fn optional_tensor(
        &mut self,
        key: &str,
        shape: &[usize],
    ) -> Result<Option<Vec<f64>>, StateError> {
        let Some(t) = self.state.tensors.get(key) else {
            return Ok(None);
        };
        self.read.push(key.to_string());
        let count: usize = t.shape.iter().product();
        if t.shape != shape || t.data.len() != count {
            return Err(StateError::WrongShape {
                optimizer: self.name(),
                key: key.to_string(),
                shape: t.shape.clone(),
                expected: format!("{shape:?}"),
            });
        }
        Ok(Some(t.data.clone()))
    }

    /// The tensor `key`, which must be present with `shape`.
    pub fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f64>, StateError> {
        self.optional_tensor(key, shape)?
            .ok_or_else(|| StateError::Missing {
                optimizer: self.name(),
                key: key.to_string(),
            })
    }

    /// The shape of tensor `key`, if present (for states whose leading size varies).
    pub fn shape_of(&self, key: &str) -> Option<Vec<usize>> {
        self.state.tensors.get(key).map(|t| t.shape.clone())
    }

    /// Checks that every entry of the state was read.
    pub fn finish(self) -> Result<(), StateError> {
        let unread = self
            .state
            .tensors
            .keys()
            .chain(self.state.scalars.keys())
            .find(|k| !self.read.contains(k));
        match unread {
            Some(key) => Err(StateError::Unknown {
                optimizer: self.name(),
                key: key.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_checks_name_shapes_and_leftovers() {
        let s = OptimizerState::new("lbfgs")
            .with_tensor("s", vec![2, 3], vec![0.0; 6])
            .with_scalar("k", 2.0);
        assert!(matches!(
            s.reader("bfgs"),
            Err(StateError::WrongOptimizer { .. })
        ));
        let mut r = s.reader("lbfgs").unwrap();
        assert!(matches!(
            r.tensor("s", &[2, 4]),
            Err(StateError::WrongShape { .. })
        ));
        let mut r2 = s.reader("lbfgs").unwrap();
        assert_eq!(r2.count("k").unwrap(), 2);
        assert!(matches!(r2.finish(), Err(StateError::Unknown { .. })));
        let mut r3 = s.reader("lbfgs").unwrap();
        assert!(matches!(r3.flag("k"), Err(StateError::BadValue { .. })));
        let mut r4 = s.reader("lbfgs").unwrap();
        r4.tensor("s", &[2, 3]).unwrap();
        r4.count("k").unwrap();
        r4.finish().unwrap();
    }
}
