//! Standard output that a reader closing it cannot break: `curvature eval … |
//! head -1` exits 0 quietly and `train … | true` still trains and saves its
//! model. Rust ignores SIGPIPE, so a write to a closed pipe returns BrokenPipe;
//! `println!` would panic on it (exit 101). [`outln!`] and [`out!`] instead
//! stop printing from then on and let the command finish its work, which
//! matters more than its report (a model, a checkpoint, a results file).
//! Another write error (a full disk behind `>`) is said once on stderr.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: nothing more is printed.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` (and a newline when `newline`) to stdout, unless it has
/// failed before; a failure closes it for the rest of the command.
pub fn write(args: std::fmt::Arguments, newline: bool) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let mut result = out.write_fmt(args);
    if newline {
        result = result.and_then(|()| out.write_all(b"\n"));
    }
    if let Err(e) = result {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!(
                "note: cannot write to standard output ({e}); the command goes on without it"
            );
        }
    }
}

/// `println!` that stops printing, instead of panicking, once stdout is closed.
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*), true)
    };
}

/// `print!` that stops printing, instead of panicking, once stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*), false)
    };
}

pub(crate) use {out, outln};
