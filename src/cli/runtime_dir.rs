//! Mesa's Vulkan drivers (llvmpipe included) print `error: XDG_RUNTIME_DIR is invalid
//! or not set in the environment.` twice when the variable is missing — on every
//! command that looks for a GPU, where it reads as this tool's error (issue 21, item 9).
//! The variable is only where a desktop session keeps its sockets; a compute process
//! needs none, so when it is unset or not a directory we point it, for this process
//! only, at a private directory of ours (mode 0700, created once per user).

use std::path::PathBuf;

/// Sets `XDG_RUNTIME_DIR` for this process when it is unset or not a directory.
/// Called first thing in `main`, before any thread exists (changing the environment
/// is only sound while no other thread reads it). Failures are silent: the worst
/// outcome is Mesa's message, as before.
pub fn ensure_runtime_dir() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .is_some_and(|p| p.is_absolute() && p.is_dir());
    if valid {
        return;
    }
    let uid = user_id();
    let dir = std::env::temp_dir().join(format!("curvature-runtime-{uid}"));
    if create_private(&dir, uid).is_ok() {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

/// This process's user id (the directory is per user, as XDG's is): on Linux the
/// owner of `/proc/self`; elsewhere 0, which the 0700 mode still keeps private.
fn user_id() -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Creates `dir` with mode 0700 (unix), or accepts it when it already is the
/// private directory of user `uid`.
fn create_private(dir: &std::path::Path, uid: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Only a real directory (not a link) that is private.
                let m = std::fs::symlink_metadata(dir)?;
                if m.is_dir() && m.permissions().mode() & 0o077 == 0 && m.uid() == uid {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = uid; // no owner to compare off unix
        std::fs::create_dir_all(dir)
    }
}
