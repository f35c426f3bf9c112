//! Where a run's files go: the model, the history, the picture and the
//! checkpoint, all decided (and existing files refused) before training.

use super::args::TrainArgs;
use curvature::files::{FileError, Overwrite};
use curvature::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the outputs go.
pub(super) struct Outputs {
    pub model: PathBuf,
    pub history: PathBuf,
    pub plot: PathBuf,
    /// The run's checkpoint (periodic, and on SIGINT/SIGTERM).
    pub checkpoint: PathBuf,
}

impl Outputs {
    /// Creates the folders of the checkpoint and the model: the checkpoint may
    /// be written before the model, so its folder must exist from the start.
    pub fn create_folders(&self) -> Result<()> {
        for path in [&self.checkpoint, &self.model, &self.plot] {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| FileError::Write {
                    path: parent.into(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Checks that every output can be written (its folder takes a new file),
    /// before the first epoch: a read-only run directory fails now, not after
    /// training. Existing files were refused when the outputs were planned.
    pub fn check_writable(&self) -> Result<()> {
        for path in [&self.checkpoint, &self.model, &self.history, &self.plot] {
            curvature::files::check_writable(path, Overwrite::Allow)?;
        }
        Ok(())
    }
}

/// Decides every output path before training, refusing existing files up front.
pub(super) fn plan_outputs(args: &TrainArgs, overwrite: Overwrite) -> Result<Outputs> {
    let (model, history, default_plot, checkpoint) = match &args.out {
        Some(model) => {
            let stem = model.with_extension("");
            (
                model.clone(),
                PathBuf::from(format!("{}.history.json", stem.display())),
                PathBuf::from(format!("{}.curves.png", stem.display())),
                PathBuf::from(format!("{}.checkpoint.safetensors", stem.display())),
            )
        }
        None => {
            let dir = match &args.run_dir {
                Some(d) => d.clone(),
                None => fresh_run_dir(Path::new("runs")),
            };
            (
                dir.join("model.safetensors"),
                dir.join("history.json"),
                dir.join("curves.png"),
                dir.join("checkpoint.safetensors"),
            )
        }
    };
    let plot = args.plot.clone().unwrap_or(default_plot);
    match plot
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "png" || e == "svg" => {}
        _ => {
            return Err(Error::Input(format!(
                "--plot {}: the picture must be a .png or .svg file",
                plot.display()
            )))
        }
    }
    if overwrite == Overwrite::Refuse {
        for p in [&model, &history, &plot, &checkpoint] {
            if p.exists() {
                return Err(FileError::Exists { path: p.clone() }.into());
            }
        }
    }
    Ok(Outputs {
        model,
        history,
        plot,
        checkpoint,
    })
}

/// An output as a checkpoint stores it: its file name only, which a resume
/// resolves in the checkpoint's own directory (`resume.rs`: a checkpoint
/// writes only beside itself). The model, history and checkpoint always share
/// a folder; a `--plot` elsewhere is drawn beside the checkpoint on resume.
pub(super) fn stored_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// runs/<UTC date-time>/, with a suffix if that exists already.
fn fresh_run_dir(base: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = utc_stamp(secs);
    let mut dir = base.join(&stamp);
    let mut k = 2;
    while dir.exists() {
        dir = base.join(format!("{stamp}-{k}"));
        k += 1;
    }
    dir
}

/// `YYYYmmdd-HHMMSS` in UTC from Unix seconds (civil-from-days, proleptic Gregorian).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_stamp;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2026-11-22 02:17:06 UTC, as `date -u +%s` gives it.
        assert_eq!(utc_stamp(1_795_313_826), "20261122-021706");
    }
}
