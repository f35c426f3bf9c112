//! Writes the rows `curvature train` trains, validates and tests on to .npy files, so that
//! other libraries (scikit-learn, PyTorch: `benches/peers/`) train on exactly the same rows.
//!
//!   cargo run --release --example export_split -- DATA OUT_DIR [--seed=S]
//!       [--test-fraction=F] [--validation-fraction=V]
//!
//! DATA is a named set (`digits`, `mnist10k`, …) or anything `--data` takes; the flags have
//! `curvature train`'s defaults (seed 0, test fraction 0.2 — mnist10k's natural 8000/2000
//! split at that default —, validation fraction 0.1) and mean the same: the split comes from
//! [`curvature::data::run_parts`], the function `curvature train` itself calls, on the data
//! loaded (and scaled: digits ×1/16, MNIST ×1/255) by [`curvature::data::load_path`].
//! `--seed` is `train`'s only seed: it also draws the initial weights and the shuffles.
//!
//! In OUT_DIR: `x_train.npy` (f32, N×D, scaled as training sees it), `y_train.npy` (i64 class
//! labels), the same for `val` and `test` (absent when that part is empty), `x_trainval.npy` /
//! `y_trainval.npy` (the training part before the validation rows were taken out, i.e. train
//! then val — the rows a library without a validation set would fit on), and `split.json`
//! (what was asked and the row counts).

use curvature::data::{load_path, run_parts, Dataset, DEFAULT_TEST_FRACTION};
use std::error::Error;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let mut seed = 0u64;
    let mut test_fraction = DEFAULT_TEST_FRACTION;
    let mut validation_fraction = 0.1;
    let mut positional = Vec::new();
    for arg in std::env::args().skip(1) {
        if let Some(v) = arg.strip_prefix("--seed=") {
            seed = v.parse()?;
        } else if let Some(v) = arg.strip_prefix("--test-fraction=") {
            test_fraction = v.parse()?;
        } else if let Some(v) = arg.strip_prefix("--validation-fraction=") {
            validation_fraction = v.parse()?;
        } else if arg.starts_with("--") {
            return Err(format!("unknown option `{arg}`").into());
        } else {
            positional.push(arg);
        }
    }
    let [data, out] = positional.as_slice() else {
        return Err(
            "usage: export_split DATA OUT_DIR [--seed=S] [--test-fraction=F] \
                    [--validation-fraction=V]"
                .into(),
        );
    };
    let out = PathBuf::from(out);
    fs::create_dir_all(&out)?;

    let full = load_path(data)?;
    let parts = run_parts(&full, test_fraction, validation_fraction, seed)?;
    let mut counts = vec![("train", parts.train.len())];
    write_part(&out, "train", &parts.train)?;
    let mut trainval = parts.train.clone();
    if let Some(val) = &parts.validation {
        write_part(&out, "val", val)?;
        counts.push(("val", val.len()));
        trainval.x.append(ndarray::Axis(0), val.x.view())?;
        trainval.t.append(ndarray::Axis(0), val.t.view())?;
        if let (Some(l), Some(v)) = (trainval.labels.as_mut(), val.labels.as_ref()) {
            l.extend(v);
        }
    }
    write_part(&out, "trainval", &trainval)?;
    counts.push(("trainval", trainval.len()));
    if let Some(test) = &parts.test {
        write_part(&out, "test", test)?;
        counts.push(("test", test.len()));
    }

    let rows: Vec<String> = counts
        .iter()
        .map(|(name, n)| format!("\"{name}\":{n}"))
        .collect();
    let json = format!(
        "{{\"data\":\"{}\",\"seed\":{seed},\"test_fraction\":{test_fraction},\
         \"validation_fraction\":{validation_fraction},\"inputs\":{},\"classes\":{},\"rows\":{{{}}}}}\n",
        full.name.replace('\\', "\\\\").replace('"', "\\\""),
        full.num_inputs(),
        full.num_outputs(),
        rows.join(",")
    );
    fs::write(out.join("split.json"), json)?;
    let summary: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {c}")).collect();
    println!(
        "{} seed {seed}: {} rows → {}",
        full.name,
        summary.join(", "),
        out.display()
    );
    Ok(())
}

/// `x_{name}.npy` (f32, N×D) and `y_{name}.npy` (i64 labels).
fn write_part(dir: &Path, name: &str, ds: &Dataset) -> Result<(), Box<dyn Error>> {
    let labels = ds.labels.as_ref().ok_or_else(|| {
        format!(
            "`{}` has no class labels: export needs a classifier's data",
            ds.name
        )
    })?;
    let (n, d) = ds.x.dim();
    let x: Vec<u8> = ds.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&dir.join(format!("x_{name}.npy")), "<f4", &[n, d], &x)?;
    let y: Vec<u8> = labels
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    write_npy(&dir.join(format!("y_{name}.npy")), "<i8", &[n], &y)?;
    Ok(())
}

/// A C-ordered .npy file, format version 1.0 (numpy's `np.load` reads it as it is).
fn write_npy(path: &Path, dtype: &str, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let shape = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n', padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    header.push('\n');
    let mut file = fs::File::create(path)?;
    file.write_all(b"\x93NUMPY\x01\x00")?;
    file.write_all(&(header.len() as u16).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    file.write_all(data)?;
    Ok(())
}
