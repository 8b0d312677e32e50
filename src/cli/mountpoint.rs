//! Mountpoints: checking one before mounting, finding what is mounted
//! (from `/proc/self/mountinfo`), and unmounting.
//!
//! Paths are compared in absolute, lexical form: a dead FUSE mount (daemon
//! killed) cannot be `stat`ed, so canonicalising through it would fail.

use super::exit::UserError;
use std::io;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// The absolute form of `path` with symlinks resolved where the path can be
/// resolved, and lexically otherwise.
pub fn absolute(path: &Path) -> io::Result<PathBuf> {
    match path.canonicalize() {
        Ok(p) => Ok(p),
        Err(_) => std::path::absolute(path),
    }
}

/// Every mount of this process's mount namespace.
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    let (left, right) = line.split_once(" - ")?;
    let mountpoint = unescape(left.split(' ').nth(4)?);
    let mut right = right.split(' ');
    let fstype = right.next()?.to_string();
    let source = unescape(right.next()?);
    Some(MountEntry {
        mountpoint: PathBuf::from(mountpoint),
        fstype,
        source,
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, etc.).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' && digits.is_some_and(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
        {
            let digits = std::str::from_utf8(digits.unwrap_or_default()).unwrap_or_default();
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The innermost cardfs mount holding the absolute path `path`, if any.
pub fn cardfs_mount_holding(path: &Path) -> io::Result<Option<PathBuf>> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.fstype == "fuse.cardfs" && path.starts_with(&m.mountpoint))
        .map(|m| m.mountpoint)
        .max_by_key(|m| m.components().count()))
}

/// The mount on exactly `path`, if any (the last one, which is the visible one).
pub fn mount_at(path: &Path) -> io::Result<Option<MountEntry>> {
    let path = absolute(path)?;
    Ok(mounts()?.into_iter().rev().find(|m| m.mountpoint == path))
}

/// Checks that `path` can take a new mount: it exists, is a directory, and
/// nothing is mounted on it.
pub fn check_free(path: &Path) -> Result<PathBuf, UserError> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(Some(_)) = mount_at(&abs) {
        return Err(UserError::AlreadyMounted { path: abs });
    }
    match std::fs::metadata(&abs) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(UserError::MountpointMissing { path: abs })
        }
        // Not stat-able for another reason (e.g. a dead FUSE mount below a
        // symlink): report it as missing with the path the user gave.
        Err(_) => Err(UserError::MountpointMissing { path: abs }),
        Ok(meta) if !meta.is_dir() => Err(UserError::MountpointNotDir { path: abs }),
        Ok(_) => Ok(abs.canonicalize().unwrap_or(abs)),
    }
}

/// Refuses a mountpoint that holds files (mounting would hide them).
pub fn check_empty(path: &Path) -> Result<(), UserError> {
    let has_entries = std::fs::read_dir(path).is_ok_and(|mut e| e.next().is_some());
    if has_entries {
        return Err(UserError::MountpointNotEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Unmounts `path` with `umount2(2)`; `lazy` detaches a busy mount.
#[allow(unsafe_code)] // umount2: no safe wrapper in std.
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // umount2 reads it and touches no other memory of ours.
    let rc = unsafe { libc::umount2(c.as_ptr(), flags) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        // Not root: the setuid helper may unmount FUSE mounts we own.
        let mut cmd = std::process::Command::new("fusermount3");
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        let status = cmd.arg(path).status()?;
        if status.success() {
            return Ok(());
        }
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let line = "36 35 0:48 / /mnt/my\\040drive rw,nosuid - fuse.cardfs file:///x\\040y rw";
        let e = parse_mountinfo_line(line).unwrap();
        assert_eq!(e.mountpoint, PathBuf::from("/mnt/my drive"));
        assert_eq!(e.fstype, "fuse.cardfs");
        assert_eq!(e.source, "file:///x y");
        let opt = "22 1 8:1 / / rw shared:1 master:2 - ext4 /dev/sda1 rw";
        assert_eq!(parse_mountinfo_line(opt).unwrap().fstype, "ext4");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn root_is_mounted_and_checks_refuse_it() {
        assert!(mount_at(Path::new("/")).unwrap().is_some());
        assert!(matches!(
            check_free(Path::new("/")),
            Err(UserError::AlreadyMounted { .. })
        ));
    }

    #[test]
    fn checks_report_missing_and_non_directories() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            check_free(&missing),
            Err(UserError::MountpointMissing { .. })
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_free(&file),
            Err(UserError::MountpointNotDir { .. })
        ));
        assert!(check_free(dir.path()).is_ok());
    }
}
