//! Finding the daemon behind a mount from the mountpoint alone, whatever
//! `$CARDFS_HOME` the asking command runs with.
//!
//! Each mount daemon writes a record (its pid, its control socket, its
//! cardfs home) into a per-user directory that does not depend on
//! `$CARDFS_HOME`: `/run/user/UID/cardfs/mounts/` when the system provides
//! `/run/user/UID`, else `/tmp/cardfs-UID/mounts/`. The record is named by
//! a hash of the mountpoint, like the control socket, and removed when the
//! daemon exits (a killed daemon leaves a stale one, recognised by its dead
//! pid).
//!
//! Invariants: the directory is created 0700 and used only if it belongs
//! to this user and nobody else can write to it, so another user cannot
//! plant a record that points `cardfs unmount` at their socket; a record
//! is only a hint (the socket it names still has to answer), and the
//! liveness of a mount is decided by the mount itself ([`probe`]).

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a running daemon says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub mountpoint: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// The `$CARDFS_HOME` it was started with.
    pub home: PathBuf,
    pub store: String,
}

impl MountRecord {
    /// "daemon pid N started with CARDFS_HOME=H, store S".
    pub fn describe(&self) -> String {
        format!(
            "daemon pid {} started with CARDFS_HOME={} (store {})",
            self.pid,
            self.home.display(),
            self.store
        )
    }
}

/// The per-user directory of mount records (created 0700 if missing).
#[allow(unsafe_code)] // getuid: libc has no safe wrapper
pub fn dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    let base = match std::fs::metadata(&run_user) {
        Ok(m) if m.is_dir() && m.uid() == uid => run_user.join("cardfs"),
        _ => PathBuf::from(format!("/tmp/cardfs-{uid}")),
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&base)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    let meta = std::fs::symlink_metadata(&base)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of this user; remove it",
                base.display()
            ),
        ));
    }
    let mounts = base.join("mounts");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&mounts)?;
    Ok(mounts)
}

fn path_for(mountpoint: &Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = super::paths::short_hash(mountpoint.as_os_str().as_bytes());
    Ok(dir()?.join(format!("{name}.json")))
}

/// Writes the record of a daemon; the returned guard removes it.
pub fn write(record: &MountRecord) -> io::Result<RecordGuard> {
    let path = path_for(&record.mountpoint)?;
    let tmp = path.with_extension(format!("tmp{}", record.pid));
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(RecordGuard(path))
}

/// Removes a daemon's record when dropped.
#[derive(Debug)]
pub struct RecordGuard(PathBuf);

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The record of the mount on `mountpoint`, if one was written (it may be
/// stale: check [`MountRecord::pid_alive`]).
pub fn read(mountpoint: &Path) -> Option<MountRecord> {
    let text = std::fs::read(path_for(mountpoint).ok()?).ok()?;
    serde_json::from_slice::<MountRecord>(&text)
        .ok()
        .filter(|r| r.mountpoint == mountpoint)
}

/// Removes the record of `mountpoint` (after a dead mount was detached).
pub fn remove(mountpoint: &Path) {
    if let Ok(path) = path_for(mountpoint) {
        let _ = std::fs::remove_file(path);
    }
}

/// What the mount itself says about its daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The daemon answered a `stat` of the mount's root.
    Answers,
    /// The kernel says the daemon is gone (ENOTCONN).
    Dead,
    /// No answer within the time allowed: a daemon exists but hangs.
    Hangs,
}

/// Asks the mount on `mountpoint` whether a daemon serves it: `statfs(2)`
/// of a FUSE mount always goes to the daemon (unlike `stat`, which the
/// kernel may answer from its attribute cache), and the kernel answers
/// ENOTCONN for a mount whose daemon died. The call runs on its own
/// thread, so a hung daemon costs `patience`, not the caller.
#[allow(unsafe_code)] // statfs(2): libc has no safe wrapper
pub fn probe(mountpoint: &Path, patience: Duration) -> Liveness {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) else {
        return Liveness::Answers;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: `path` is a valid NUL-terminated string and `buf` a
        // zeroed statfs the call may fill; both outlive the call.
        let rc = unsafe {
            let mut buf: libc::statfs = std::mem::zeroed();
            libc::statfs(path.as_ptr(), &mut buf)
        };
        let _ = tx.send(if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        });
    });
    match rx.recv_timeout(patience) {
        Ok(Ok(())) => Liveness::Answers,
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => Liveness::Dead,
        // Any other error came from a daemon that answered.
        Ok(Err(_)) => Liveness::Answers,
        Err(_) => Liveness::Hangs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_guard_removes() {
        let mnt = std::env::temp_dir().join(format!("record-test-{}", std::process::id()));
        let record = MountRecord {
            pid: std::process::id(),
            mountpoint: mnt.clone(),
            socket: "/x/run/a.sock".into(),
            home: "/x".into(),
            store: "s3://b".into(),
        };
        let guard = write(&record).unwrap();
        assert_eq!(read(&mnt), Some(record.clone()));
        drop(guard);
        assert_eq!(read(&mnt), None);
    }

    #[test]
    fn a_plain_directory_answers() {
        assert_eq!(
            probe(Path::new("/"), Duration::from_secs(5)),
            Liveness::Answers
        );
    }
}
