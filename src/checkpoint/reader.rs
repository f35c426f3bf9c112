//! Reading a checkpoint's header: its metadata strings and the typed fields of
//! its JSON entries, every error naming the file and the key.

use crate::files::FileError;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The metadata of one checkpoint file.
pub(super) struct Reader<'p> {
    pub path: &'p Path,
    pub meta: &'p HashMap<String, String>,
}

impl Reader<'_> {
    /// An error about this file.
    pub fn bad(&self, reason: String) -> FileError {
        FileError::Invalid {
            path: self.path.into(),
            reason,
        }
    }

    /// The metadata entry `key`.
    pub fn text(&self, key: &str) -> Result<&str, FileError> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("checkpoint metadata `{key}` is missing")))
    }

    /// The metadata entry `key`, parsed as JSON.
    pub fn json(&self, key: &str) -> Result<Value, FileError> {
        serde_json::from_str(self.text(key)?)
            .map_err(|e| self.bad(format!("checkpoint metadata `{key}` is not JSON: {e}")))
    }

    /// Field `key` of the JSON object `v` (named `within` in errors).
    pub fn field<'v>(&self, v: &'v Value, key: &str, within: &str) -> Result<&'v Value, FileError> {
        v.get(key)
            .ok_or_else(|| self.bad(format!("checkpoint `{within}` lacks `{key}`")))
    }

    pub fn uint(&self, v: &Value, key: &str, within: &str) -> Result<u64, FileError> {
        self.field(v, key, within)?.as_u64().ok_or_else(|| {
            self.bad(format!(
                "checkpoint `{within}.{key}` is not a whole number ≥ 0"
            ))
        })
    }

    pub fn usize(&self, v: &Value, key: &str, within: &str) -> Result<usize, FileError> {
        let u = self.uint(v, key, within)?;
        usize::try_from(u)
            .map_err(|_| self.bad(format!("checkpoint `{within}.{key}` = {u} is too large")))
    }

    pub fn opt_usize(
        &self,
        v: &Value,
        key: &str,
        within: &str,
    ) -> Result<Option<usize>, FileError> {
        match self.field(v, key, within)? {
            Value::Null => Ok(None),
            _ => self.usize(v, key, within).map(Some),
        }
    }

    /// An f64 stored as a string in its shortest round-trip form (`what` names it).
    pub fn float_of(&self, v: &Value, what: &str) -> Result<f64, FileError> {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| self.bad(format!("checkpoint `{what}` is not a number in a string")))
    }

    pub fn float(&self, v: &Value, key: &str, within: &str) -> Result<f64, FileError> {
        self.float_of(self.field(v, key, within)?, &format!("{within}.{key}"))
    }

    pub fn opt_float(&self, v: &Value, key: &str, within: &str) -> Result<Option<f64>, FileError> {
        match self.field(v, key, within)? {
            Value::Null => Ok(None),
            x => self.float_of(x, &format!("{within}.{key}")).map(Some),
        }
    }

    pub fn string(&self, v: &Value, key: &str, within: &str) -> Result<String, FileError> {
        self.field(v, key, within)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad(format!("checkpoint `{within}.{key}` is not a string")))
    }

    pub fn boolean(&self, v: &Value, key: &str, within: &str) -> Result<bool, FileError> {
        self.field(v, key, within)?
            .as_bool()
            .ok_or_else(|| self.bad(format!("checkpoint `{within}.{key}` is not true or false")))
    }
}
