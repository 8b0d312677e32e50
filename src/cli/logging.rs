//! Where log lines go: stderr for commands and foreground mounts, the
//! cache directory's `daemon.log` for a background mount daemon.
//!
//! Both go through `tracing-appender`'s non-blocking writer: a request
//! thread only queues a line (dropped when the queue is full), and a worker
//! thread writes it. A write that fails (full disk, closed stderr) is
//! dropped by that worker, so logging can never stop or kill the daemon.
//!
//! `daemon.log` carries no colour codes and rotates by size: past
//! [`LOG_LIMIT`] it becomes `daemon.log.1` (the older one `daemon.log.2`,
//! the oldest is removed), so a flood of log lines costs at most three
//! files. The name of the live file stays `daemon.log` (tracing-appender's
//! own rolling appender rotates by date and puts the date in the live
//! file's name).
//!
//! Filter: `RUST_LOG`, default `warn` (errors only from the AWS SDK, and
//! from fuser's session module: after the daemon has unmounted the drive itself, fuser's own
//! unmount-on-drop finds the mount gone and warns "Failed to umount
//! filesystem: Invalid argument", which would alarm a user for nothing).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tracing_appender::non_blocking::WorkerGuard;

/// Without `RUST_LOG`: warnings, but the AWS SDK's own warnings (its
/// credential chain reports each provider it tried, IMDS included) only as
/// errors, since the command says what failed in one sentence.
const DEFAULT_FILTER: &str =
    "warn,fuser::session=error,aws_config=error,aws_smithy_runtime=error,aws_sdk_s3=error";

/// Size at which `daemon.log` is rotated.
pub const LOG_LIMIT: u64 = 8 << 20;
/// Rotated files kept besides the live one.
const KEEP: u32 = 2;

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
}

/// Logs to stderr (colours only on a terminal). Keep the guard alive: it
/// flushes queued lines when dropped.
pub fn to_stderr() -> WorkerGuard {
    use std::io::IsTerminal;
    let (writer, guard) = tracing_appender::non_blocking(io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(io::stderr().is_terminal())
        .with_writer(writer)
        .try_init();
    guard
}

/// Logs to `daemon.log` in `cache_dir`, rotated by size, without colour
/// codes; panics are logged there too (the daemon's stderr is /dev/null).
pub fn to_daemon_log(cache_dir: &Path) -> io::Result<WorkerGuard> {
    let file = RotatingLog::open(super::paths::daemon_log(cache_dir), LOG_LIMIT)?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}\n{}", std::backtrace::Backtrace::capture());
    }));
    Ok(guard)
}

/// An append-only log file that moves itself aside past a size limit.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
}

impl RotatingLog {
    /// Opens (or creates, mode 0600) the log at `path`, rotating first if
    /// it is already past `limit`.
    pub fn open(path: PathBuf, limit: u64) -> io::Result<Self> {
        let file = open_append(&path)?;
        let written = file.metadata()?.len();
        let mut log = RotatingLog {
            path,
            file,
            written,
            limit,
        };
        if log.written >= limit {
            log.rotate()?;
        }
        Ok(log)
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = open_append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit && self.written > 0 {
            // A failed rotation keeps writing to the live file.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_two_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut log = RotatingLog::open(path.clone(), 100).unwrap();
        for i in 0..10u8 {
            log.write_all(&[b'a' + i; 60]).unwrap();
        }
        let live = std::fs::read(&path).unwrap();
        assert_eq!(live, vec![b'a' + 9; 60]);
        assert_eq!(
            std::fs::read(dir.path().join("daemon.log.1")).unwrap(),
            vec![b'a' + 8; 60]
        );
        assert_eq!(
            std::fs::read(dir.path().join("daemon.log.2")).unwrap(),
            vec![b'a' + 7; 60]
        );
        assert!(!dir.path().join("daemon.log.3").exists());
        // Reopening a full log rotates it first.
        std::fs::write(&path, vec![b'z'; 150]).unwrap();
        drop(log);
        let _log = RotatingLog::open(path.clone(), 100).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(dir.path().join("daemon.log.1"))
                .unwrap()
                .len(),
            150
        );
    }
}
