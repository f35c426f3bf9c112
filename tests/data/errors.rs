//! One test per kind of bad input (issue 3), each on files written to a temporary directory:
//! the loader returns the expected error kind, at the expected position, with a one-line
//! message that names the file — and never panics.

use curvature::data::{
    load_csv, load_digits_csv, load_idx, load_inputs_csv, load_named, load_path, split, CsvOptions,
    DataError, DataErrorKind as K, Position, Scaling, SplitSpec, TargetColumn,
};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A valid digits row: 64 pixels then the label.
fn digits_row(label: &str) -> String {
    let pixels: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
    format!("{},{label}", pixels.join(","))
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An IDX file: magic, big-endian sizes, then `data`.
fn idx(magic: u32, sizes: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for s in sizes {
        out.extend_from_slice(&s.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

const IMAGES: u32 = 0x0803;
const LABELS: u32 = 0x0801;

/// A valid IDX pair of `n` 2×3 images with labels 0..n−1 (mod 10).
fn idx_pair(dir: &TempDir, n: u32) -> (PathBuf, PathBuf) {
    let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (
        write(dir, "images.idx", &idx(IMAGES, &[n, 2, 3], &pixels)),
        write(dir, "labels.idx", &idx(LABELS, &[n], &labels)),
    )
}

/// The error of `result`, after checking that it names `file` in a one-line message.
fn error_of<T: Debug>(result: Result<T, DataError>, file: &Path) -> DataError {
    let err = result.expect_err("bad input must be an error");
    let msg = err.to_string();
    assert_eq!(err.file, file, "error names the wrong file: {msg}");
    assert!(
        msg.contains(&file.display().to_string()),
        "message does not name the file: {msg}"
    );
    assert!(!msg.contains('\n'), "message is not one line: {msg}");
    eprintln!("{msg}");
    err
}

fn line(line: usize, column: Option<usize>) -> Option<Position> {
    Some(Position::Line { line, column })
}

#[test]
fn missing_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("absent.csv");
    let err = error_of(load_digits_csv(&path), &path);
    assert_eq!(err.kind, K::NotFound);
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::NotFound);
    let (_, labels) = idx_pair(&dir, 3);
    let err = error_of(load_idx(&path, &labels), &path);
    assert_eq!(err.kind, K::NotFound);
}

#[test]
fn truncated_gzip() {
    let dir = TempDir::new().unwrap();
    let rows: Vec<String> = (0..200)
        .map(|i| digits_row(&(i % 10).to_string()))
        .collect();
    let gz = gzip(rows.join("\n").as_bytes());
    for cut in [gz.len() / 2, gz.len() - 3, 11] {
        let path = write(&dir, "digits.csv.gz", &gz[..cut]);
        let err = error_of(load_digits_csv(&path), &path);
        assert_eq!(err.kind, K::TruncatedGzip, "cut at {cut} of {}", gz.len());
    }
}

#[test]
fn corrupt_gzip() {
    let dir = TempDir::new().unwrap();
    let rows: Vec<String> = (0..200)
        .map(|i| digits_row(&(i % 10).to_string()))
        .collect();
    let gz = gzip(rows.join("\n").as_bytes());
    // A damaged CRC-32 in the trailer (the 8 bytes before the end hold CRC then size).
    let mut bad_crc = gz.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    let path = write(&dir, "crc.csv.gz", &bad_crc);
    let err = error_of(load_digits_csv(&path), &path);
    assert!(matches!(err.kind, K::CorruptGzip(_)), "{err}");
    // A damaged compressed body: invalid deflate data or, if it still decodes, a CRC mismatch.
    let mut bad_body = gz.clone();
    for b in &mut bad_body[20..60] {
        *b = 0xff;
    }
    let path = write(&dir, "body.csv.gz", &bad_body);
    let err = error_of(load_digits_csv(&path), &path);
    assert!(matches!(err.kind, K::CorruptGzip(_)), "{err}");
    assert!(matches!(err.position, Some(Position::Byte(_))));
}

#[test]
fn wrong_idx_magic() {
    let dir = TempDir::new().unwrap();
    let (images, labels) = idx_pair(&dir, 3);
    // The two files swapped: each has the other's magic.
    let err = error_of(load_idx(&labels, &images), &labels);
    assert!(matches!(err.kind, K::BadIdxMagic(_)), "{err}");
    assert_eq!(err.position, Some(Position::Byte(0)));
    // A file that is not IDX at all (a CSV).
    let csv = write(&dir, "x.csv", digits_row("1").as_bytes());
    let err = error_of(load_idx(&images, &csv), &csv);
    assert!(matches!(err.kind, K::BadIdxMagic(_)), "{err}");
}

#[test]
fn idx_header_sizes_disagree_with_data_length() {
    let dir = TempDir::new().unwrap();
    let (_, labels) = idx_pair(&dir, 3);
    // Header claims 3 images of 2×3 (18 bytes), the file holds 12 (truncated).
    let short = write(&dir, "short.idx", &idx(IMAGES, &[3, 2, 3], &[7; 12]));
    let err = error_of(load_idx(&short, &labels), &short);
    assert!(matches!(err.kind, K::IdxSize(_)), "{err}");
    // Data longer than the header claims.
    let long = write(&dir, "long.idx", &idx(IMAGES, &[3, 2, 3], &[7; 19]));
    let err = error_of(load_idx(&long, &labels), &long);
    assert!(matches!(err.kind, K::IdxSize(_)), "{err}");
    // Sizes whose product overflows 64 bits must be refused before any allocation.
    let huge = write(
        &dir,
        "huge.idx",
        &idx(IMAGES, &[u32::MAX, u32::MAX, u32::MAX], &[0; 8]),
    );
    let err = error_of(load_idx(&huge, &labels), &huge);
    assert!(matches!(err.kind, K::IdxSize(_)), "{err}");
    // Sizes that do not overflow but claim gigabytes: refused as well, nothing allocated.
    let big = write(
        &dir,
        "big.idx",
        &idx(IMAGES, &[60_000, 28, 28_000], &[0; 8]),
    );
    let err = error_of(load_idx(&big, &labels), &big);
    assert!(matches!(err.kind, K::IdxSize(_)), "{err}");
    // A header cut off in the middle of the sizes.
    let cut = write(&dir, "cut.idx", &idx(IMAGES, &[3], &[0, 0]));
    let err = error_of(load_idx(&cut, &labels), &cut);
    assert!(matches!(err.kind, K::IdxSize(_)), "{err}");
}

#[test]
fn idx_image_and_label_counts_differ() {
    let dir = TempDir::new().unwrap();
    let (images, _) = idx_pair(&dir, 3);
    let labels = write(&dir, "four.idx", &idx(LABELS, &[4], &[0, 1, 2, 3]));
    let err = error_of(load_idx(&images, &labels), &labels);
    assert_eq!(
        err.kind,
        K::CountMismatch {
            images: 3,
            labels: 4
        }
    );
}

#[test]
fn idx_label_out_of_range() {
    let dir = TempDir::new().unwrap();
    let (images, _) = idx_pair(&dir, 3);
    let labels = write(&dir, "labels.idx", &idx(LABELS, &[3], &[0, 10, 2]));
    let err = error_of(load_idx(&images, &labels), &labels);
    assert!(
        matches!(err.kind, K::LabelOutOfRange { classes: 10, .. }),
        "{err}"
    );
    assert_eq!(err.position, Some(Position::Record(1)));
}

#[test]
fn digits_label_out_of_range() {
    let dir = TempDir::new().unwrap();
    for label in ["10", "-1"] {
        let text = format!("{}\n{}\n", digits_row("3"), digits_row(label));
        let path = write(&dir, "digits.csv", text.as_bytes());
        let err = error_of(load_digits_csv(&path), &path);
        assert!(matches!(err.kind, K::LabelOutOfRange { .. }), "{err}");
        assert_eq!(err.position, line(2, Some(65)));
    }
}

#[test]
fn digits_pixel_out_of_range() {
    let dir = TempDir::new().unwrap();
    let text = digits_row("3").replacen("0,", "17,", 1);
    let path = write(&dir, "digits.csv", text.as_bytes());
    let err = error_of(load_digits_csv(&path), &path);
    assert!(matches!(err.kind, K::ValueOutOfRange { .. }), "{err}");
    assert_eq!(err.position, line(1, Some(1)));
}

#[test]
fn non_numeric_csv_cell() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{}\n{}\n",
        digits_row("3"),
        digits_row("3").replacen("5", "five", 1)
    );
    let path = write(&dir, "digits.csv", text.as_bytes());
    let err = error_of(load_digits_csv(&path), &path);
    assert!(matches!(err.kind, K::NotNumeric { .. }), "{err}");
    assert_eq!(err.position, line(2, Some(6)));

    let path = write(&dir, "user.csv", b"a,b,y\n1,2,0\n3,x3,1\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::NotNumeric { cell: "x3".into() });
    assert_eq!(err.position, line(3, Some(2)));
}

#[test]
fn empty_csv_cell() {
    let dir = TempDir::new().unwrap();
    let text = digits_row("3").replacen("5", "", 1);
    let path = write(&dir, "digits.csv", text.as_bytes());
    let err = error_of(load_digits_csv(&path), &path);
    assert_eq!(err.kind, K::EmptyCell);
    assert_eq!(err.position, line(1, Some(6)));

    let path = write(&dir, "user.csv", b"1,2,0\n3, ,1\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::EmptyCell);
    assert_eq!(err.position, line(2, Some(2)));
    // An empty label cell.
    let path = write(&dir, "label.csv", b"1,2,0\n3,4,\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::EmptyCell);
    assert_eq!(err.position, line(2, Some(3)));
}

#[test]
fn ragged_rows() {
    let dir = TempDir::new().unwrap();
    let text = format!("{}\n{},0\n", digits_row("3"), digits_row("3"));
    let path = write(&dir, "digits.csv", text.as_bytes());
    let err = error_of(load_digits_csv(&path), &path);
    assert_eq!(
        err.kind,
        K::Ragged {
            expected: 65,
            found: 66
        }
    );
    assert_eq!(err.position, line(2, None));

    let path = write(&dir, "user.csv", b"a,b,y\n1,2,0\n\n3,1\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(
        err.kind,
        K::Ragged {
            expected: 3,
            found: 2
        }
    );
    assert_eq!(err.position, line(4, None));
}

#[test]
fn nan_or_infinite_value() {
    let dir = TempDir::new().unwrap();
    for bad in ["NaN", "inf", "-infinity", "1e39"] {
        let text = format!("a,b,y\n1,2,0\n3,{bad},1\n");
        let path = write(&dir, "user.csv", text.as_bytes());
        let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
        assert!(matches!(err.kind, K::NonFinite { .. }), "{bad}: {err}");
        assert_eq!(err.position, line(3, Some(2)));
    }
    let path = write(&dir, "digits.csv", digits_row("nan").as_bytes());
    let err = error_of(load_digits_csv(&path), &path);
    assert!(matches!(err.kind, K::NonFinite { .. }), "{err}");
}

#[test]
fn empty_data_set() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "empty.csv", b"");
    let err = error_of(load_digits_csv(&path), &path);
    assert_eq!(err.kind, K::Empty);
    let path = write(&dir, "blank.csv.gz", &gzip(b"\n\n"));
    let err = error_of(load_digits_csv(&path), &path);
    assert_eq!(err.kind, K::Empty);
    let path = write(&dir, "header.csv", b"a,b,label\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::Empty);
    let images = write(&dir, "i.idx", &idx(IMAGES, &[0, 28, 28], &[]));
    let labels = write(&dir, "l.idx", &idx(LABELS, &[0], &[]));
    let err = error_of(load_idx(&images, &labels), &images);
    assert_eq!(err.kind, K::Empty);
}

#[test]
fn target_column_does_not_exist() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "user.csv", b"a,b,label\n1,2,0\n3,4,1\n");
    let by_name = CsvOptions {
        target: TargetColumn::Name("class".into()),
        ..CsvOptions::default()
    };
    let err = error_of(load_csv(&path, &by_name), &path);
    assert!(matches!(err.kind, K::NoSuchColumn(_)), "{err}");
    assert!(
        err.to_string().contains("`label`"),
        "lists the columns: {err}"
    );
    let by_index = CsvOptions {
        target: TargetColumn::Index(3),
        ..CsvOptions::default()
    };
    let err = error_of(load_csv(&path, &by_index), &path);
    assert!(matches!(err.kind, K::NoSuchColumn(_)), "{err}");
    // A name with no header row to look it up in.
    let no_header = CsvOptions {
        has_header: Some(false),
        ..by_name
    };
    let path = write(&dir, "plain.csv", b"1,2,0\n3,4,1\n");
    let err = error_of(load_csv(&path, &no_header), &path);
    assert!(matches!(err.kind, K::NoSuchColumn(_)), "{err}");
}

#[test]
fn csv_label_problems() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "mixed.csv", b"1,2,0\n3,4,cat\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::MixedLabels { cell: "cat".into() });
    assert_eq!(err.position, line(2, Some(3)));
    let path = write(&dir, "one.csv", b"1,2,4\n3,4,4\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::TooFewClasses { found: 1 });
    let path = write(&dir, "quote.csv", b"1,2,0\n3,\"4,1\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::UnterminatedQuote);
    let path = write(&dir, "one-column.csv", b"0\n1\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::NoInputColumns);
    let path = write(&dir, "latin1.csv", b"1,2,0\n3,\xe9,1\n");
    let err = error_of(load_csv(&path, &CsvOptions::default()), &path);
    assert_eq!(err.kind, K::NotText);
    assert_eq!(err.position, Some(Position::Byte(8)));
}

#[test]
fn prediction_inputs_of_the_wrong_width() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "inputs.csv", b"1,2\n3,4,5\n");
    let err = error_of(load_inputs_csv(&path, None, None, 2), &path);
    assert_eq!(
        err.kind,
        K::WidthMismatch {
            expected: 2,
            found: 3
        }
    );
    assert_eq!(err.position, line(2, None));
    let path = write(&dir, "ok.csv", b"1,2\n3,4\n");
    let three = Scaling::fixed(vec![1.0; 3]);
    let err = error_of(load_inputs_csv(&path, None, Some(&three), 2), &path);
    assert!(matches!(err.kind, K::WidthMismatch { .. }), "{err}");
}

#[test]
fn unknown_names_bad_splits_and_bad_metadata() {
    let err = error_of(load_named("mnist60k"), Path::new("mnist60k"));
    assert!(matches!(err.kind, K::UnknownName(_)), "{err}");
    let xor = load_named("xor").unwrap();
    for spec in [
        SplitSpec::Natural,
        SplitSpec::Shuffled {
            test_fraction: 1.0,
            seed: 1,
        },
        SplitSpec::Shuffled {
            test_fraction: f64::NAN,
            seed: 1,
        },
        SplitSpec::Shuffled {
            test_fraction: 0.9,
            seed: 1,
        },
    ] {
        let err = error_of(split(&xor, &spec), Path::new("xor"));
        assert!(matches!(err.kind, K::BadSplit(_)), "{spec:?}: {err}");
    }
    let metadata = Path::new("<scaling metadata>");
    for bad in [
        "",
        "kind=standardize;shift=1,2;scale=1",
        "kind=zscore;shift=1;scale=1",
        "kind=none;shift=nan;scale=1",
        "kind=none;shift=1",
    ] {
        let err = error_of(Scaling::from_metadata(bad), metadata);
        assert!(matches!(err.kind, K::BadMetadata(_)), "`{bad}`: {err}");
    }
}

#[test]
fn load_path_reports_the_file_it_could_not_read() {
    let dir = TempDir::new().unwrap();
    let images = dir.path().join("train-images-idx3-ubyte.gz");
    std::fs::write(&images, gzip(&idx(IMAGES, &[1, 2, 3], &[0; 6]))).unwrap();
    // The labels file named after the images file is absent.
    let labels = dir.path().join("train-labels-idx1-ubyte.gz");
    let err = error_of(load_path(images.to_str().unwrap()), &labels);
    assert_eq!(err.kind, K::NotFound);
}

/// Every truncation of a valid IDX pair, raw and gzipped, is an error, never a panic.
#[test]
fn every_truncation_of_an_idx_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let (images, labels) = idx_pair(&dir, 5);
    assert!(load_idx(&images, &labels).is_ok());
    let raw = std::fs::read(&images).unwrap();
    let gz = gzip(&raw);
    for cut in 0..raw.len() {
        let path = write(&dir, "cut.idx", &raw[..cut]);
        error_of(load_idx(&path, &labels), &path);
    }
    for cut in 0..gz.len() {
        let path = write(&dir, "cut.idx.gz", &gz[..cut]);
        error_of(load_idx(&path, &labels), &path);
    }
}

/// Every truncation of a small digits file either loads the complete rows it still holds
/// (a cut at a line end) or is an error — never a panic.
#[test]
fn every_truncation_of_a_digits_file_loads_whole_rows_or_fails() {
    let dir = TempDir::new().unwrap();
    let text = format!("{}\n{}\n", digits_row("3"), digits_row("7"));
    let bytes = text.as_bytes();
    let gz = gzip(bytes);
    for cut in 0..bytes.len() {
        let path = write(&dir, "cut.csv", &bytes[..cut]);
        match load_digits_csv(&path) {
            Ok(ds) => {
                // Only a cut right after a row's last digit parses: the label is one digit.
                let complete = bytes[..cut].iter().filter(|&&b| b == b'\n').count() + 1;
                assert!(ds.len() <= complete, "cut {cut}");
            }
            Err(err) => assert_eq!(err.file, path),
        }
    }
    for cut in 0..gz.len() {
        let path = write(&dir, "cut.csv.gz", &gz[..cut]);
        error_of(load_digits_csv(&path), &path);
    }
}
