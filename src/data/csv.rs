//! A generic comma-separated file of user data: an optional header row, numeric input
//! columns, and one target column (class labels or real values). Inputs are scaled with a
//! fitted [`Scaling`] that is kept in the data set for evaluation and prediction.
//!
//! Format: one record per line (cells may not span lines), cells separated by commas and
//! trimmed of spaces, a cell may be double-quoted (`""` inside quotes is a quote), blank
//! lines are skipped, gzip is detected by content. No missing values: an empty cell is an error.

use super::dataset::{one_hot, Dataset, Task};
use super::error::{shown, DataError, DataErrorKind};
use super::scaling::{Scaling, ScalingKind};
use super::source::{as_text, decode, read_raw};
use ndarray::Array2;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which column holds the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetColumn {
    /// 0-based column index.
    Index(usize),
    /// A header name (needs a header row).
    Name(String),
    /// The last column.
    Last,
}

/// How the target column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvTask {
    /// Labels: integers 0..C−1 (used as class indices, C = largest + 1), or names (any other
    /// text, including negative integers) mapped to class indices in sorted order and kept
    /// in `Dataset::class_names`. T is one-hot (N, C).
    Classification,
    /// Real values, not scaled; T is (N, 1).
    Regression,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// `None`: the first row is a header when none of its cells is a number.
    pub has_header: Option<bool>,
    pub target: TargetColumn,
    pub task: CsvTask,
    /// Fitted on all rows of the file (before any split) and applied to X.
    pub scaling: ScalingKind,
}

impl Default for CsvOptions {
    /// Auto-detected header, target last, classification, standardised inputs.
    fn default() -> CsvOptions {
        CsvOptions {
            has_header: None,
            target: TargetColumn::Last,
            task: CsvTask::Classification,
            scaling: ScalingKind::Standardize,
        }
    }
}

/// Integer class labels above this are refused: they would make a one-hot T of absurd width
/// and are more likely codes or values than class indices.
pub const MAX_INTEGER_CLASSES: usize = 100_000;

/// The most entries (rows × classes) of a one-hot T: 2²⁸ f32 = 1 GiB. Beyond it the target
/// is almost surely not a class label (a real-valued or identifier column read as names
/// gives about as many classes as rows, and N² entries), and building T would exhaust memory.
pub const MAX_ONE_HOT_ENTRIES: usize = 1 << 28;

/// One non-blank line split into cells, with its 1-based line number.
struct Record<'a> {
    line: usize,
    cells: Vec<Cow<'a, str>>,
}

/// Loads a generic CSV: X (N, D) scaled by `opts.scaling` (kept in `Dataset::scaling`),
/// T per `opts.task`, `name` = the path. Errors name the line and column: NotFound, gzip
/// errors, NotText, UnterminatedQuote, Ragged, NoSuchColumn, NoInputColumns, EmptyCell,
/// NotNumeric, NonFinite, MixedLabels, LabelOutOfRange, TooManyClasses, TooFewClasses, Empty.
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset, DataError> {
    load_csv_from_bytes(&read_raw(path)?, path, opts)
}

/// [`load_csv`] with X scaled by `stored` (a model's, from its metadata) instead of a
/// scaling fitted to this file: rows a model is evaluated on must be scaled as its
/// training rows were, whatever this file's own statistics. WidthMismatch when the
/// scaling's width is not the file's input width.
pub fn load_csv_with_scaling(
    path: &Path,
    opts: &CsvOptions,
    stored: &Scaling,
) -> Result<Dataset, DataError> {
    load_csv_scaled(&read_raw(path)?, path, opts, Some(stored))
}

/// [`load_csv`] on file contents already in memory (gzip or plain, detected by content);
/// `path` only names the source in errors and the data set. The same checks and errors
/// except NotFound and Io.
pub fn load_csv_from_bytes(
    raw: &[u8],
    path: &Path,
    opts: &CsvOptions,
) -> Result<Dataset, DataError> {
    load_csv_scaled(raw, path, opts, None)
}

/// The loader: X scaled by `stored` when given, else by a scaling fitted to X.
fn load_csv_scaled(
    raw: &[u8],
    path: &Path,
    opts: &CsvOptions,
    stored: Option<&Scaling>,
) -> Result<Dataset, DataError> {
    let bytes = decode(raw, path)?;
    let text = as_text(&bytes, path)?;
    let records = split_records(text, path)?;
    let header_wanted = matches!(opts.target, TargetColumn::Name(_));
    let has_header = opts
        .has_header
        .unwrap_or_else(|| header_wanted || records.first().is_some_and(looks_like_header));
    let (header, rows) = match (has_header, records.split_first()) {
        (true, Some((h, rest))) => (Some(h), rest),
        _ => (None, &records[..]),
    };
    let width = match (header, rows.first()) {
        (Some(h), _) => h.cells.len(),
        (None, Some(r)) => r.cells.len(),
        (None, None) => return Err(DataError::new(DataErrorKind::Empty, path, None)),
    };
    check_widths(rows, width, path)?;
    let target = target_index(&opts.target, header, width, path)?;
    if width < 2 {
        return Err(DataError::new(DataErrorKind::NoInputColumns, path, None));
    }
    if rows.is_empty() {
        return Err(DataError::new(DataErrorKind::Empty, path, None));
    }
    let mut x = read_inputs(rows, width, Some(target), path)?;
    let scaling = match stored {
        Some(s) if s.width() != x.ncols() => {
            return Err(DataError::new(
                DataErrorKind::WidthMismatch {
                    expected: s.width(),
                    found: x.ncols(),
                },
                path,
                None,
            ))
        }
        Some(s) => s.clone(),
        None => Scaling::fit(opts.scaling, x.view()),
    };
    scaling.apply(&mut x);
    let mut ds = match opts.task {
        CsvTask::Regression => Dataset {
            name: path.display().to_string(),
            x,
            t: read_real_targets(rows, target, path)?,
            labels: None,
            task: Task::Regression,
            scaling: None,
            class_names: None,
        },
        CsvTask::Classification => {
            let (labels, classes, class_names) = read_labels(rows, target, path)?;
            Dataset {
                name: path.display().to_string(),
                x,
                t: one_hot(&labels, classes),
                labels: Some(labels),
                task: Task::Classification { classes },
                scaling: None,
                class_names,
            }
        }
    };
    ds.scaling = Some(scaling);
    Ok(ds)
}

/// Reads a CSV of inputs only (no target column) for prediction: (N, expected_width),
/// scaled by `scaling` when given (the one stored with the model). `has_header: None`
/// detects a header as in [`load_csv`]. WidthMismatch when a row (or the scaling) has
/// another width; the cell errors of [`load_csv`] otherwise.
pub fn load_inputs_csv(
    path: &Path,
    has_header: Option<bool>,
    scaling: Option<&Scaling>,
    expected_width: usize,
) -> Result<Array2<f32>, DataError> {
    load_inputs_csv_from_bytes(&read_raw(path)?, path, has_header, scaling, expected_width)
}

/// [`load_inputs_csv`] on file contents already in memory (gzip or plain, detected by
/// content); `path` only names the source in errors. The same checks and errors except
/// NotFound and Io.
pub fn load_inputs_csv_from_bytes(
    raw: &[u8],
    path: &Path,
    has_header: Option<bool>,
    scaling: Option<&Scaling>,
    expected_width: usize,
) -> Result<Array2<f32>, DataError> {
    let bytes = decode(raw, path)?;
    let text = as_text(&bytes, path)?;
    let records = split_records(text, path)?;
    let has_header = has_header.unwrap_or_else(|| records.first().is_some_and(looks_like_header));
    let rows = if has_header {
        records.get(1..).unwrap_or(&[])
    } else {
        &records[..]
    };
    if rows.is_empty() {
        return Err(DataError::new(DataErrorKind::Empty, path, None));
    }
    for r in rows {
        if r.cells.len() != expected_width {
            return Err(DataError::at_line(
                DataErrorKind::WidthMismatch {
                    expected: expected_width,
                    found: r.cells.len(),
                },
                path,
                r.line,
                None,
            ));
        }
    }
    let mut x = read_inputs(rows, expected_width, None, path)?;
    if let Some(s) = scaling {
        if s.width() != expected_width {
            return Err(DataError::new(
                DataErrorKind::WidthMismatch {
                    expected: s.width(),
                    found: expected_width,
                },
                path,
                None,
            ));
        }
        s.apply(&mut x);
        // Finite cells stay finite under any sane scaling; a model file whose
        // stored scale is huge (tampered, or from elsewhere) could overflow.
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let (row, col) = (i / expected_width + 1, i % expected_width + 1);
            return Err(DataError::new(
                DataErrorKind::NonFinite {
                    cell: format!("row {row}, column {col}: {v} after the model's stored scaling"),
                },
                path,
                None,
            ));
        }
    }
    Ok(x)
}

/// Splits every non-blank line into cells.
fn split_records<'a>(text: &'a str, path: &Path) -> Result<Vec<Record<'a>>, DataError> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells =
            split_cells(line).map_err(|kind| DataError::at_line(kind, path, index + 1, None))?;
        records.push(Record {
            line: index + 1,
            cells,
        });
    }
    Ok(records)
}

/// Cells of one line, trimmed; quoted cells unquoted. Borrowed unless the line has quotes.
fn split_cells(line: &str) -> Result<Vec<Cow<'_, str>>, DataErrorKind> {
    if !line.contains('"') {
        return Ok(line.split(',').map(|c| Cow::Borrowed(c.trim())).collect());
    }
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => in_quotes = false,
            (false, '"') => in_quotes = true,
            (false, ',') => {
                cells.push(Cow::Owned(cell.trim().to_string()));
                cell.clear();
            }
            (_, c) => cell.push(c),
        }
    }
    if in_quotes {
        return Err(DataErrorKind::UnterminatedQuote);
    }
    cells.push(Cow::Owned(cell.trim().to_string()));
    Ok(cells)
}

/// A first row is a header when none of its cells is a number (a data row with one bad
/// cell is then reported as NotNumeric rather than silently skipped as a header).
fn looks_like_header(first: &Record<'_>) -> bool {
    first.cells.iter().all(|c| c.parse::<f64>().is_err())
}

fn check_widths(rows: &[Record<'_>], width: usize, path: &Path) -> Result<(), DataError> {
    match rows.iter().find(|r| r.cells.len() != width) {
        Some(r) => Err(DataError::at_line(
            DataErrorKind::Ragged {
                expected: width,
                found: r.cells.len(),
            },
            path,
            r.line,
            None,
        )),
        None => Ok(()),
    }
}

fn target_index(
    target: &TargetColumn,
    header: Option<&Record<'_>>,
    width: usize,
    path: &Path,
) -> Result<usize, DataError> {
    let missing = |msg: String| {
        DataError::at_line(
            DataErrorKind::NoSuchColumn(msg),
            path,
            header.map_or(1, |h| h.line),
            None,
        )
    };
    match target {
        TargetColumn::Last => Ok(width.saturating_sub(1)),
        TargetColumn::Index(i) if *i < width => Ok(*i),
        TargetColumn::Index(i) => Err(missing(format!(
            "target column index {i} does not exist: the rows have {width} columns (indices 0..{}) — give an index in range",
            width.saturating_sub(1)
        ))),
        TargetColumn::Name(name) => {
            let Some(h) = header else {
                return Err(missing(format!(
                    "target column `{}` named but the file has no header row — give the column by index",
                    shown(name)
                )));
            };
            h.cells.iter().position(|c| c == name).ok_or_else(|| {
                const SHOWN_COLUMNS: usize = 8;
                let mut names: Vec<String> =
                    h.cells.iter().take(SHOWN_COLUMNS).map(|c| format!("`{}`", shown(c))).collect();
                if h.cells.len() > SHOWN_COLUMNS {
                    names.push("…".to_string());
                }
                missing(format!(
                    "no column named `{}` in the header (columns: {}) — check the spelling",
                    shown(name),
                    names.join(", ")
                ))
            })
        }
    }
}

/// Parses a cell as a finite f32 (checked after conversion: 1e39 overflows f32).
fn parse_cell(cell: &str) -> Result<f32, DataErrorKind> {
    if cell.is_empty() {
        return Err(DataErrorKind::EmptyCell);
    }
    match cell.parse::<f64>() {
        Ok(v) if (v as f32).is_finite() => Ok(v as f32),
        Ok(_) => Err(DataErrorKind::NonFinite { cell: shown(cell) }),
        Err(_) => Err(DataErrorKind::NotNumeric { cell: shown(cell) }),
    }
}

/// X (N, width − 1 if a target is skipped, else width), rows already of equal width.
fn read_inputs(
    rows: &[Record<'_>],
    width: usize,
    skip: Option<usize>,
    path: &Path,
) -> Result<Array2<f32>, DataError> {
    let d = width - usize::from(skip.is_some());
    let mut values = Vec::with_capacity(rows.len() * d);
    for r in rows {
        for (c, cell) in r.cells.iter().enumerate() {
            if Some(c) == skip {
                continue;
            }
            let v =
                parse_cell(cell).map_err(|k| DataError::at_line(k, path, r.line, Some(c + 1)))?;
            values.push(v);
        }
    }
    Array2::from_shape_vec((rows.len(), d), values)
        .map_err(|e| DataError::new(DataErrorKind::Io(e.to_string()), path, None))
}

/// T (N, 1) of real values.
fn read_real_targets(
    rows: &[Record<'_>],
    target: usize,
    path: &Path,
) -> Result<Array2<f32>, DataError> {
    let mut t = Vec::with_capacity(rows.len());
    for r in rows {
        let v = parse_cell(&r.cells[target])
            .map_err(|k| DataError::at_line(k, path, r.line, Some(target + 1)))?;
        t.push(v);
    }
    Array2::from_shape_vec((rows.len(), 1), t)
        .map_err(|e| DataError::new(DataErrorKind::Io(e.to_string()), path, None))
}

/// Class indices, the class count, and the class names when labels are names.
type Labels = (Vec<usize>, usize, Option<Vec<String>>);

fn read_labels(rows: &[Record<'_>], target: usize, path: &Path) -> Result<Labels, DataError> {
    let at = |r: &Record<'_>, kind| DataError::at_line(kind, path, r.line, Some(target + 1));
    let cells: Vec<&str> = rows.iter().map(|r| r.cells[target].as_ref()).collect();
    if let Some(r) = rows.iter().find(|r| r.cells[target].is_empty()) {
        return Err(at(r, DataErrorKind::EmptyCell));
    }
    let integers: Vec<Option<i64>> = cells.iter().map(|c| c.parse::<i64>().ok()).collect();
    let first_is_integer = integers[0].is_some();
    if let Some(n) = integers
        .iter()
        .position(|v| v.is_some() != first_is_integer)
    {
        return Err(at(
            &rows[n],
            DataErrorKind::MixedLabels {
                cell: shown(cells[n]),
            },
        ));
    }
    let non_negative = integers.iter().all(|v| v.is_some_and(|v| v >= 0));
    let (labels, classes, names) = if non_negative {
        let mut labels = Vec::with_capacity(rows.len());
        for (r, v) in rows.iter().zip(&integers) {
            match v.and_then(|v| usize::try_from(v).ok()) {
                Some(c) if c < MAX_INTEGER_CLASSES => labels.push(c),
                _ => {
                    return Err(at(
                        r,
                        DataErrorKind::LabelOutOfRange {
                            label: shown(&r.cells[target]),
                            classes: MAX_INTEGER_CLASSES,
                        },
                    ))
                }
            }
        }
        let classes = labels.iter().max().map_or(0, |m| m + 1);
        (labels, classes, None)
    } else {
        // Names (or integers with negatives, such as −1/+1): sorted, numerically for integers.
        let names: Vec<String> = if first_is_integer {
            let set: BTreeSet<i64> = integers.iter().flatten().copied().collect();
            set.into_iter().map(|v| v.to_string()).collect()
        } else {
            let set: BTreeSet<&str> = cells.iter().copied().collect();
            set.into_iter().map(str::to_string).collect()
        };
        let index: BTreeMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let labels = cells
            .iter()
            .zip(&integers)
            .map(|(c, v)| {
                let key = v.map_or_else(|| c.to_string(), |v| v.to_string());
                index.get(key.as_str()).copied().unwrap_or(0)
            })
            .collect();
        let classes = names.len();
        (labels, classes, Some(names))
    };
    if rows.len().saturating_mul(classes) > MAX_ONE_HOT_ENTRIES {
        return Err(DataError::new(
            DataErrorKind::TooManyClasses {
                classes,
                rows: rows.len(),
                limit: MAX_ONE_HOT_ENTRIES,
            },
            path,
            None,
        ));
    }
    let distinct = labels.iter().collect::<BTreeSet<_>>().len();
    if distinct < 2 {
        return Err(DataError::new(
            DataErrorKind::TooFewClasses { found: distinct },
            path,
            None,
        ));
    }
    Ok((labels, classes, names))
}
