//! Atomic writes: a temporary file in the target's folder, synced, then renamed
//! over the target, so a reader never sees half a file and a failed write
//! leaves whatever was there before.

use super::FileError;
use std::io::Write;
use std::path::Path;

/// Whether an existing file may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse: the user named this file and did not say `--force`.
    Refuse,
    /// Replace it (atomically).
    Allow,
}

/// Writes `bytes` to `path` atomically; with `Overwrite::Refuse` an existing
/// file is an error and is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: Overwrite) -> Result<(), FileError> {
    if overwrite == Overwrite::Refuse && path.exists() {
        return Err(FileError::Exists { path: path.into() });
    }
    let write_err = |source| FileError::Write {
        path: path.into(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    if overwrite == Overwrite::Refuse {
        // persist_noclobber fails if the target appeared meanwhile.
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                FileError::Exists { path: path.into() }
            } else {
                write_err(e.error)
            }
        })?;
    } else {
        tmp.persist(path).map_err(|e| write_err(e.error))?;
    }
    Ok(())
}

/// Checks, before any work, that `path` can be written later: with
/// `Overwrite::Refuse` it must not exist, and its folder (which must exist)
/// must take a new file — probed by creating and removing a temporary one, the
/// same kind [`write_atomic`] writes, so a read-only folder or file system is
/// found before training or computing, not after.
pub fn check_writable(path: &Path, overwrite: Overwrite) -> Result<(), FileError> {
    if overwrite == Overwrite::Refuse && path.symlink_metadata().is_ok() {
        return Err(FileError::Exists { path: path.into() });
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::NamedTempFile::new_in(dir)
        .map(drop)
        .map_err(|source| FileError::Write {
            path: path.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_replace_and_keeps_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        write_atomic(&p, b"old", Overwrite::Refuse).unwrap();
        let err = write_atomic(&p, b"new", Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, FileError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        write_atomic(&p, b"new", Overwrite::Allow).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
