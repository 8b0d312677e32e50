//! Atomic, private file writes for the key and card stores.
//!
//! Invariant: a reader of `path` sees the old content or the new content,
//! never a partial file, even if the process dies midway; temporary files
//! are removed on failure.

use super::FileError;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |error| FileError {
        action,
        path,
        error,
    }
}

/// Creates `dir` and its parents with mode 0700 (existing ones are kept).
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("creating directory", dir))
}

/// How [`write_atomic`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail with `AlreadyExists` if the file exists.
    Refuse,
    /// Replace it atomically.
    Replace,
}

/// Writes `bytes` to `path` with mode 0600: a temporary file in the same
/// directory, fsynced, then linked (no clobber) or renamed into place, then
/// the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8], existing: Existing) -> Result<(), FileError> {
    let dir = path.parent().expect("store paths have a parent");
    private_dir(dir)?;
    let name = path.file_name().expect("store paths have a file name");
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        crate::format::wire::hex(&crate::format::crypto::random_array::<6>())
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        file.write_all(bytes).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        match existing {
            Existing::Refuse => {
                fs::hard_link(&tmp, path).map_err(io("creating", path))?;
                fs::remove_file(&tmp).map_err(io("removing", &tmp))?;
            }
            Existing::Replace => fs::rename(&tmp, path).map_err(io("replacing", path))?,
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads `path`, or `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// The files in `dir` ending in `.{ext}` (none if `dir` does not exist),
/// sorted by name; temporary files are skipped.
pub fn list_files(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>, FileError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("listing", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io("listing", dir))?.path();
        let visible = !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if visible && path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
