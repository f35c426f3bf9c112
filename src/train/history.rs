//! The record of a run: one [`EpochRecord`] per epoch, the totals, why it
//! ended ([`StopReason`]), and its JSON form (the CLI's `history.json`).

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// 0 for the starting point, then 1, 2, …
    pub epoch: usize,
    /// E(θ) on the whole training set.
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Wall time since training started, evaluation included (s).
    pub seconds: f64,
    /// Accepted updates in this epoch.
    pub updates: usize,
    /// Rejected updates in this epoch.
    pub rejected: usize,
    /// λ in force when the epoch was evaluated (its losses include (λ/2)‖W‖²).
    pub l2: f64,
}

impl EpochRecord {
    /// The value early stopping watches: the validation loss, else the training loss.
    pub fn monitored(&self) -> f64 {
        self.val_loss.unwrap_or(self.train_loss)
    }
}

/// Why training ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// All epochs ran.
    Completed,
    /// No improvement for `patience` epochs; the best epoch is given.
    EarlyStopping { best_epoch: usize },
    /// A callback said stop.
    Callback,
    /// The training loss became NaN or infinite.
    Diverged,
}

/// The record of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    pub optimizer: String,
    /// Epoch 0 (start) and one per epoch run.
    pub records: Vec<EpochRecord>,
    /// Accepted updates in all.
    pub updates: usize,
    /// Rejected updates in all.
    pub rejected: usize,
    pub stop: StopReason,
}

impl History {
    /// A run of `optimizer` that has recorded nothing yet.
    pub fn new(optimizer: &str) -> History {
        History {
            optimizer: optimizer.to_string(),
            records: Vec::new(),
            updates: 0,
            rejected: 0,
            stop: StopReason::Completed,
        }
    }

    /// The last epoch run (0 if none).
    pub fn last_epoch(&self) -> usize {
        self.records.last().map_or(0, |r| r.epoch)
    }
    /// The last record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.records.last()
    }

    /// The history as a JSON object (hand-written: no serde in the crate).
    pub fn to_json(&self) -> String {
        let stop = match &self.stop {
            StopReason::Completed => "\"completed\"".to_string(),
            StopReason::EarlyStopping { best_epoch } => {
                format!("{{\"early_stopping\":{{\"best_epoch\":{best_epoch}}}}}")
            }
            StopReason::Callback => "\"callback\"".to_string(),
            StopReason::Diverged => "\"diverged\"".to_string(),
        };
        let records: Vec<String> = self.records.iter().map(record_json).collect();
        format!(
            "{{\"optimizer\":\"{}\",\"last_epoch\":{},\"updates\":{},\"rejected\":{},\"stop\":{},\"epochs\":[{}]}}",
            self.optimizer.replace('\\', "\\\\").replace('"', "\\\""),
            self.last_epoch(),
            self.updates,
            self.rejected,
            stop,
            records.join(",")
        )
    }
}

impl History {
    /// [`History::to_json`] with more members after the others: (key, JSON value).
    pub fn to_json_with(&self, extra: &[(&str, String)]) -> String {
        let mut s = self.to_json();
        s.pop(); // the closing brace
        for (key, value) in extra {
            s += &format!(",\"{key}\":{value}");
        }
        s.push('}');
        s
    }
}

/// A JSON number, or `null` for NaN and ∞ (which JSON cannot hold).
fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_string()
    }
}

fn json_optional(v: Option<f64>) -> String {
    v.map_or("null".to_string(), json_number)
}

fn record_json(r: &EpochRecord) -> String {
    format!(
        "{{\"epoch\":{},\"train_loss\":{},\"train_accuracy\":{},\"val_loss\":{},\"val_accuracy\":{},\"seconds\":{},\"updates\":{},\"rejected\":{},\"l2\":{}}}",
        r.epoch,
        json_number(r.train_loss),
        json_optional(r.train_accuracy),
        json_optional(r.val_loss),
        json_optional(r.val_accuracy),
        json_number(r.seconds),
        r.updates,
        r.rejected,
        json_number(r.l2)
    )
}
