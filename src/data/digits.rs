//! The 8×8 optical digits CSV (UCI / scikit-learn `digits.csv.gz`): no header, each line
//! 64 pixel counts 0..16 (row-major 8×8 image) then the class label 0..9.

use super::dataset::Dataset;
use super::error::{shown, DataError, DataErrorKind};
use super::scaling::Scaling;
use super::source::{as_text, decode, read_raw};
use ndarray::Array2;
use std::path::Path;

/// D for the digits format: 8×8 pixels.
pub const DIGITS_PIXELS: usize = 64;
/// The largest pixel count (a pixel counts set bits in a 4×4 block of a 32×32 bitmap).
pub const DIGITS_MAX_PIXEL: i64 = 16;
/// Classes 0..9.
pub const DIGITS_CLASSES: usize = 10;

/// Loads a digits CSV (gzip or plain, detected by content): X (N, 64) = pixels / 16 in
/// [0, 1], one-hot T (N, 10), labels, and `scaling` = the fixed ×1/16.
///
/// Every line must hold exactly 65 integer cells; blank lines are skipped. Errors name the
/// line and column: EmptyCell, NotNumeric, NonFinite, ValueOutOfRange (pixel outside 0..16
/// or not an integer), LabelOutOfRange (label outside 0..9), Ragged, Empty.
pub fn load_digits_csv(path: &Path) -> Result<Dataset, DataError> {
    load_digits_csv_from_bytes(&read_raw(path)?, path)
}

/// [`load_digits_csv`] on file contents already in memory (gzip or plain, detected by
/// content); `path` only names the source in errors and the data set. The same checks and
/// errors except NotFound and Io.
pub fn load_digits_csv_from_bytes(raw: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let bytes = decode(raw, path)?;
    let text = as_text(&bytes, path)?;
    let width = DIGITS_PIXELS + 1;
    let mut pixels: Vec<f32> = Vec::with_capacity(2048 * DIGITS_PIXELS);
    let mut labels = Vec::with_capacity(2048);
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let found = line.split(',').count();
        if found != width {
            return Err(DataError::at_line(
                DataErrorKind::Ragged {
                    expected: width,
                    found,
                },
                path,
                line_no,
                None,
            ));
        }
        for (c, cell) in line.split(',').enumerate() {
            let at = |kind| DataError::at_line(kind, path, line_no, Some(c + 1));
            let value = parse_integer(cell.trim()).map_err(at)?;
            if c < DIGITS_PIXELS {
                if !(0..=DIGITS_MAX_PIXEL).contains(&value) {
                    return Err(at(DataErrorKind::ValueOutOfRange {
                        value: shown(cell.trim()),
                        range: format!("pixel counts 0..{DIGITS_MAX_PIXEL}"),
                    }));
                }
                // Exact: every integer 0..16 over 16 is a dyadic fraction.
                pixels.push(value as f32 / DIGITS_MAX_PIXEL as f32);
            } else {
                match usize::try_from(value) {
                    Ok(label) if label < DIGITS_CLASSES => labels.push(label),
                    _ => {
                        return Err(at(DataErrorKind::LabelOutOfRange {
                            label: shown(cell.trim()),
                            classes: DIGITS_CLASSES,
                        }))
                    }
                }
            }
        }
    }
    if labels.is_empty() {
        return Err(DataError::new(DataErrorKind::Empty, path, None));
    }
    let x = Array2::from_shape_vec((labels.len(), DIGITS_PIXELS), pixels)
        .map_err(|e| DataError::new(DataErrorKind::Io(e.to_string()), path, None))?;
    let mut ds = Dataset::from_labels(path.display().to_string(), x, labels, DIGITS_CLASSES);
    ds.scaling = Some(Scaling::fixed(vec![
        1.0 / DIGITS_MAX_PIXEL as f32;
        DIGITS_PIXELS
    ]));
    Ok(ds)
}

/// An integer cell; a cell that is a number but not an integer is out of range.
fn parse_integer(cell: &str) -> Result<i64, DataErrorKind> {
    if cell.is_empty() {
        return Err(DataErrorKind::EmptyCell);
    }
    if let Ok(v) = cell.parse::<i64>() {
        return Ok(v);
    }
    match cell.parse::<f64>() {
        Ok(v) if !v.is_finite() => Err(DataErrorKind::NonFinite { cell: shown(cell) }),
        Ok(_) => Err(DataErrorKind::ValueOutOfRange {
            value: shown(cell),
            range: "integers".to_string(),
        }),
        Err(_) => Err(DataErrorKind::NotNumeric { cell: shown(cell) }),
    }
}
