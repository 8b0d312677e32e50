//! Kernel settings of a cardfs mount, in one place, each with its reason
//! (measurements in FACTS.md, summary in docs/CLI.md "Kernel settings").
//!
//! - WRITE and READ requests up to 1 MiB: the kernel here caps WRITE at
//!   1 MiB (`fs.fuse.max_pages_limit=256`); bigger requests mean fewer
//!   round trips (~67 µs each).
//! - Read-ahead 1 MiB: buffered READs arrive as 128 KiB unless the mount's
//!   bdi read-ahead is raised after mounting ([`raise_read_ahead`]); 1 MiB
//!   read-ahead took sequential reads from ~2.0 to ~2.8 GB/s on a tmpfs-backed
//!   FUSE filesystem.
//! - Attribute and entry timeouts of [`TTL`]: the kernel's cached view is
//!   only stale when another client's change (a member of a shared folder,
//!   another machine) arrives through a refresh; one second bounds that staleness and
//!   keeps `stat`-heavy tools (git status, find, rsync) off the daemon
//!   (~3 µs per cached stat against ~70 µs per round trip).
//! - Several request threads ([`request_threads`]) with cloned `/dev/fuse`
//!   descriptors: they read requests and copy data in parallel, and answer
//!   cheap requests in place, including file reads served by a few small
//!   disk reads (a random 4 KiB read without a thread hop: 7 system calls
//!   instead of about 17, three of them wake-ups); anything that may wait
//!   on the network goes to tokio. Two per core (4 to 8), so a thread
//!   waiting on the disk does not hold up the others.
//! - Writeback cache, only when asked for ([`MountSettings::writeback`],
//!   `cardfs mount -o writeback_cache`): the kernel merges small writes into
//!   pages before sending them (4 KiB writes: ~61 MB/s without, ~810 MB/s
//!   with), but it then owns the size and mtime of every cached regular
//!   file and ignores the sizes the daemon reports (kernel
//!   `fuse_get_cache_mask`). A file another client changed (a member of a
//!   shared folder, the same drive on another machine) would keep its old
//!   size here: reads cut short or padded with zeros (tests/share_mount.rs
//!   showed both). So it is off by default and only right for a drive no
//!   other client writes. When on, the engine copes because the adapter
//!   opens write-only files read-write (the kernel reads pages around
//!   partial writes) and strips O_APPEND (the kernel places appends
//!   itself), and fsync still reaches the engine's journal. Never on for
//!   read-only mounts.
//! - Asynchronous reads and parallel directory operations, so one slow
//!   lookup (a cache miss fetching from the store) does not stall others.
//! - READDIRPLUS for every listing (`FUSE_DO_READDIRPLUS`): entries come
//!   with their attributes, so `ls -l`, `find` and `du` need no lookup
//!   round trip per entry (100,000 files: ~100,000 requests fewer), as
//!   many per reply as the kernel's buffer holds ([`super::reply_fit`]:
//!   ~200 into glibc's 32 KiB on Linux 6.16 and later, not 25).
//! - Mount flags from `-o` ([`super::options`]): `nodev` and `nosuid`
//!   unless `dev`/`suid` are given, `noexec`, `noatime`, `ro`; the access
//!   control (`allow_other`, `allow_root`) is fuser's session ACL.
//! - `max_background` raised so read-ahead and writeback of several files
//!   run concurrently instead of 12 requests at a time.

use super::options::{AtimeMode, MountFlags};
use fuser::{Config, InitFlags, KernelConfig, MountOption, SessionACL};
use std::path::Path;
use std::time::Duration;

/// Largest WRITE (and READ) request asked of the kernel.
pub const MAX_WRITE: u32 = 1 << 20;
/// Read-ahead asked of the kernel, in bytes.
pub const READ_AHEAD: u32 = 1 << 20;
/// How long the kernel may cache attributes and directory entries.
pub const TTL: Duration = Duration::from_secs(1);
/// Requests the kernel may have in flight in the background.
pub const MAX_BACKGROUND: u16 = 64;

/// How a cardfs mount is set up.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// Shown as the mount's source in `mount` and /proc/mounts.
    pub source: String,
    /// The `-o` flags (see [`super::options`]).
    pub flags: MountFlags,
}

impl MountSettings {
    /// The fuser session configuration for these settings.
    pub fn config(&self) -> Config {
        let f = &self.flags;
        let mut config = Config::default();
        config.mount_options.extend([
            MountOption::FSName(self.source.clone()),
            // As a kernel option (fuser passes `Subtype` only to
            // fusermount): the mount's type becomes `fuse.cardfs`.
            MountOption::CUSTOM("subtype=cardfs".into()),
            // The engine does not check permissions itself: the kernel does,
            // from the mode, uid and gid the engine keeps.
            MountOption::DefaultPermissions,
            // fuser's mount defaults to nodev and nosuid unless `Dev` and
            // `Suid` are given; noexec and noatime are mount flags.
            pick(!f.read_only, MountOption::RW, MountOption::RO),
            pick(f.dev, MountOption::Dev, MountOption::NoDev),
            pick(f.suid, MountOption::Suid, MountOption::NoSuid),
            pick(f.exec, MountOption::Exec, MountOption::NoExec),
            pick(
                f.atime == AtimeMode::Relatime,
                MountOption::Atime,
                MountOption::NoAtime,
            ),
        ]);
        config.acl = if f.allow_other {
            SessionACL::All
        } else if f.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(request_threads());
        config.clone_fd = true;
        config
    }

    /// Whether the kernel's writeback cache is used (see the module doc).
    pub fn writeback_cache(&self) -> bool {
        self.flags.writeback_cache && !self.flags.read_only
    }
}

/// `on` or `off` as `flag` says.
fn pick(flag: bool, on: MountOption, off: MountOption) -> MountOption {
    if flag { on } else { off }
}

/// Threads reading kernel requests: two per core, between 4 and 8.
pub fn request_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).clamp(4, 8))
}

/// Applies the settings to the kernel's INIT offer. Capabilities the kernel
/// lacks are skipped (with a log line), never fatal.
pub fn tune_kernel(config: &mut KernelConfig, writeback_cache: bool) {
    if let Err(max) = config.set_max_write(MAX_WRITE) {
        tracing::info!("kernel caps max_write at {max}");
        let _ = config.set_max_write(max);
    }
    if let Err(max) = config.set_max_readahead(READ_AHEAD) {
        let _ = config.set_max_readahead(max);
    }
    let _ = config.set_max_background(MAX_BACKGROUND);
    let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
    let mut wanted = InitFlags::FUSE_ASYNC_READ
        | InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_ASYNC_DIO
        | InitFlags::FUSE_DO_READDIRPLUS;
    if writeback_cache {
        wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
    }
    for flag in wanted.iter() {
        if let Err(missing) = config.add_capabilities(flag) {
            tracing::info!("kernel lacks FUSE capability {missing:?}");
        }
    }
}

/// Raises the mount's read-ahead to [`READ_AHEAD`] through sysfs. Must be
/// called once the session answers requests (it `stat`s the mountpoint).
pub fn raise_read_ahead(mountpoint: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    std::fs::write(path, (READ_AHEAD / 1024).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reflects_settings() {
        let s = MountSettings {
            source: "file:///x".into(),
            flags: MountFlags {
                read_only: true,
                allow_other: true,
                writeback_cache: true,
                exec: false,
                ..MountFlags::default()
            },
        };
        let c = s.config();
        assert!(c.mount_options.contains(&MountOption::RO));
        assert!(c.mount_options.contains(&MountOption::NoExec));
        assert!(c.mount_options.contains(&MountOption::NoDev));
        assert!(c.mount_options.contains(&MountOption::NoSuid));
        assert!(c.mount_options.contains(&MountOption::DefaultPermissions));
        assert_eq!(c.acl, SessionACL::All);
        assert!(!s.writeback_cache());
        assert!((2..=4).contains(&c.n_threads.unwrap()));
    }
}
