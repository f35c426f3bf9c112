//! The one error type of the data loaders: what went wrong, in which file, and where.
//!
//! Every message is one line of the form `FILE: POSITION: PROBLEM — WHAT TO DO`, so that
//! a user can open the file at the position and fix it without reading the code.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a file the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A text line (1-based) and, when known, a column (1-based, counted in cells).
    Line { line: usize, column: Option<usize> },
    /// A byte offset (0-based): for gzip errors in the file as stored, for other errors in
    /// the decompressed contents.
    Byte(u64),
    /// A record (0-based): an image or label index in an IDX file.
    Record(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line { line, column: None } => write!(f, "line {line}"),
            Position::Line {
                line,
                column: Some(c),
            } => write!(f, "line {line}, column {c}"),
            Position::Byte(b) => write!(f, "byte {b}"),
            Position::Record(r) => write!(f, "record {r}"),
        }
    }
}

/// The kind of problem, with the details a message needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataErrorKind {
    #[error("file not found — check the path, or set CURVATURE_DATA_DIR to the folder holding the bundled data")]
    NotFound,
    #[error("cannot read the file ({0}) — check its permissions")]
    Io(String),
    /// Over the read cap (`files::max_input_bytes`), as stored or once inflated.
    #[error("{}", crate::files::too_large_reason(*limit))]
    TooLarge { limit: u64 },
    #[error("the gzip stream ends early (truncated copy?) — copy or download the file again")]
    TruncatedGzip,
    #[error("the gzip stream is corrupt ({0}) — copy or download the file again")]
    CorruptGzip(String),
    #[error("the file is not UTF-8 text — save it as plain UTF-8 CSV")]
    NotText,
    #[error("{0}")]
    BadIdxMagic(String),
    #[error("{0}")]
    IdxSize(String),
    #[error("the images file holds {images} images but the labels file holds {labels} labels — pass the matching pair of files")]
    CountMismatch { images: usize, labels: usize },
    #[error("cell `{cell}` is not a number — every input cell must be numeric; fix the cell or remove the row")]
    NotNumeric { cell: String },
    #[error("the cell is empty — fill it in or remove the row (missing values are not imputed)")]
    EmptyCell,
    #[error("the row has {found} cells but {expected} were expected — every row needs the same number of cells")]
    Ragged { expected: usize, found: usize },
    #[error("cell `{cell}` is not a finite number (NaN or infinite after conversion to f32) — replace it with a finite value or remove the row")]
    NonFinite { cell: String },
    #[error(
        "value `{value}` is outside {range} — fix the cell; this file format allows only {range}"
    )]
    ValueOutOfRange { value: String, range: String },
    #[error("label `{label}` is out of range: labels must be integers 0..{max} ({classes} classes) — fix the label", max = classes.saturating_sub(1))]
    LabelOutOfRange { label: String, classes: usize },
    #[error("target column mixes integer labels and names (`{cell}`) — use integers 0..C-1 or names throughout")]
    MixedLabels { cell: String },
    #[error("the target column has only {found} class(es) — classification needs at least two; use a regression task or another column")]
    TooFewClasses { found: usize },
    #[error("the target column has {classes} classes over {rows} rows: one-hot targets of {rows}×{classes} entries exceed the limit of {limit} — is the target real-valued (a regression target) or an identifier? choose another target column or task")]
    TooManyClasses {
        classes: usize,
        rows: usize,
        limit: usize,
    },
    #[error("the data set has no rows — give a file with at least one sample")]
    Empty,
    #[error("{0}")]
    NoSuchColumn(String),
    #[error("the file has no input columns besides the target — add input columns")]
    NoInputColumns,
    #[error(
        "a quoted cell is not closed on its line — close the quote (cells may not span lines)"
    )]
    UnterminatedQuote,
    #[error("unknown data set name — use one of {0}, or give a path to a CSV or IDX file")]
    UnknownName(String),
    #[error("{0}")]
    BadSplit(String),
    #[error("{0}")]
    BadMetadata(String),
    #[error("rows have {found} input columns but {expected} were expected (the model's input width) — give exactly the input columns, without a target column")]
    WidthMismatch { expected: usize, found: usize },
}

/// A data loading error: the kind, the file (or data set name) and, when known, the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {kind}", file.display(), position_suffix(position))]
pub struct DataError {
    pub kind: DataErrorKind,
    /// The file the problem is in; for generated sets or metadata strings, a description in
    /// angle brackets such as `<scaling metadata>`.
    pub file: PathBuf,
    pub position: Option<Position>,
}

fn position_suffix(position: &Option<Position>) -> String {
    match position {
        Some(p) => format!(": {p}"),
        None => String::new(),
    }
}

impl DataError {
    pub fn new(kind: DataErrorKind, file: &Path, position: Option<Position>) -> DataError {
        DataError {
            kind,
            file: file.to_path_buf(),
            position,
        }
    }

    /// An error at a CSV line (1-based) and, optionally, a cell column (1-based).
    pub(crate) fn at_line(
        kind: DataErrorKind,
        file: &Path,
        line: usize,
        column: Option<usize>,
    ) -> DataError {
        DataError::new(kind, file, Some(Position::Line { line, column }))
    }
}

/// At most 40 characters of a cell or string, so that one-line messages stay short.
pub(crate) fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    if s.chars().count() <= MAX_CHARS {
        s.to_string()
    } else {
        s.chars().take(MAX_CHARS).chain("…".chars()).collect()
    }
}
