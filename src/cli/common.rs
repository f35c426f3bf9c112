//! What the commands share: loading a data set and taking a split of it,
//! opening the device, and loading a model checked against the data.

use clap::{Args, ValueEnum};
use curvature::data::{self, Dataset, SplitSpec, DEFAULT_TEST_FRACTION};
use curvature::engine::device::{Device, DeviceChoice};
use curvature::files::{load_model, SavedModel};
use curvature::{Error, Kind, Result};
use std::path::Path;

/// `--device` and `--adapter`.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Where to compute: `auto` (a hardware GPU if present, else the CPU, saying so),
    /// `gpu` (any adapter, software ones such as llvmpipe included) or `cpu`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Pick the GPU adapter whose name contains this text (see `curvature devices`).
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
}

impl DeviceArgs {
    /// Opens the device, printing on stderr why `auto` fell back to the CPU.
    pub fn open(&self) -> Result<Device> {
        let (device, note) = Device::open(self.device, self.adapter.as_deref())?;
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
        Ok(device)
    }
}

/// Which rows of a data set a command works on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitPart {
    /// Every row, in file order (reproducible curvature computations).
    All,
    /// The training part of the split the model was trained with.
    Train,
    /// The held-out part of that split.
    Test,
}

/// How a data set is split into training and test rows: the natural split for
/// mnist10k, else a seeded shuffle with a test fraction (the library's rule, which
/// `train` uses too).
pub fn split_spec(data_name: &str, test_fraction: f64, seed: u64) -> SplitSpec {
    data::split_spec_for(data_name, test_fraction, seed)
}

/// The requested part of a loaded data set.
pub fn take_part(ds: Dataset, part: SplitPart, test_fraction: f64, seed: u64) -> Result<Dataset> {
    if part == SplitPart::All {
        return Ok(ds);
    }
    let split = data::split(&ds, &split_spec(&ds.name, test_fraction, seed))?;
    let chosen = if part == SplitPart::Train {
        split.train
    } else {
        split.test
    };
    if chosen.is_empty() {
        return Err(Error::Input(format!(
            "the {part:?} part of `{}` is empty: use `--split all` or a test fraction above 0",
            ds.name
        )));
    }
    Ok(chosen)
}

/// The data set `data` as the model saw its training rows: a CSV file scaled by the
/// model's stored scaling (its training data's statistics), not by its own — the same
/// rows then give the same outputs here as in `predict`.
fn load_model_data(saved: &SavedModel, model: &Path, data: &str) -> Result<Dataset> {
    let stored = stored_scaling(saved, model)?;
    Ok(data::load_path_scaled(data, stored.as_ref())?)
}

/// The input scaling stored in a model's metadata by `train` (None for a model
/// without one), which every command applies to rows the model is given.
pub fn stored_scaling(saved: &SavedModel, model: &Path) -> Result<Option<data::Scaling>> {
    match saved.metadata.get("scaling") {
        Some(s) => data::Scaling::from_metadata(s).map(Some).map_err(|e| {
            Error::Input(format!(
                "{}: its stored input scaling is unreadable ({e}): retrain the model",
                model.display()
            ))
        }),
        None => Ok(None),
    }
}

/// Loads a model file and the `part` of a data set (the split the model was
/// trained with, from its metadata), checked to fit each other.
pub fn load_model_and_part(
    model: &Path,
    data: &str,
    part: SplitPart,
) -> Result<(SavedModel, Dataset)> {
    let saved = load_model(model)?;
    let (fraction, seed) = stored_split(&saved);
    let ds = take_part(load_model_data(&saved, model, data)?, part, fraction, seed)?;
    check_fits(&saved, model, &ds)?;
    Ok((saved, ds))
}

/// Loads a model file and both parts of the split it was trained with
/// (train, test), checked to fit each other.
pub fn load_model_train_test(model: &Path, data: &str) -> Result<(SavedModel, Dataset, Dataset)> {
    let saved = load_model(model)?;
    let (fraction, seed) = stored_split(&saved);
    let all = load_model_data(&saved, model, data)?;
    let train = take_part(all.clone(), SplitPart::Train, fraction, seed)?;
    let test = take_part(all, SplitPart::Test, fraction, seed)?;
    check_fits(&saved, model, &train)?;
    Ok((saved, train, test))
}

/// The model's input and output widths against the data's.
pub fn check_fits(model: &SavedModel, path: &Path, ds: &Dataset) -> Result<()> {
    let mlp = &model.mlp;
    if ds.num_inputs() != mlp.num_inputs() {
        return Err(Error::Input(format!(
            "{} takes {} inputs but `{}` has {} input columns: use the data the model was trained on",
            path.display(),
            mlp.num_inputs(),
            ds.name,
            ds.num_inputs()
        )));
    }
    if ds.num_outputs() != mlp.num_outputs() {
        return Err(Error::Input(format!(
            "{} has {} outputs but `{}` has {} target columns: use the data the model was trained on",
            path.display(),
            mlp.num_outputs(),
            ds.name,
            ds.num_outputs()
        )));
    }
    Ok(())
}

/// The split seed and test fraction stored in a model's metadata by `train`
/// (so that `eval --split test` sees the rows training did not), else the defaults.
pub fn stored_split(model: &SavedModel) -> (f64, u64) {
    let fraction = model
        .metadata
        .get("test_fraction")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TEST_FRACTION);
    let seed = model
        .metadata
        .get("split_seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (fraction, seed)
}

/// `--matrix hessian|ggn`: the command line's name for an [`Kind`] (clap needs its
/// own enum for the help text; every command maps it here and nowhere else).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// The exact Hessian H (products by R-propagation).
    Hessian,
    /// The Gauss-Newton matrix G (the outer-product approximation, positive semidefinite).
    Ggn,
}

impl From<KindArg> for Kind {
    fn from(arg: KindArg) -> Kind {
        match arg {
            KindArg::Hessian => Kind::Hessian,
            KindArg::Ggn => Kind::GaussNewton,
        }
    }
}

/// A count that must be at least 1 (`--steps`, `--probes`, `--samples`, …),
/// refused by clap at parse time: 0 steps or samples gives no estimate at all.
pub fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) => Err(format!("`{text}` is not a whole number ≥ 1")),
    }
}
