//! The filesystem engine: inodes, metadata, cache, upload queue, sync and
//! sharing, generic over [`crate::store::ObjectStore`] and testable without
//! the kernel. The public API below is what the FUSE adapter and the CLI call.
//!
//! Invariants:
//! - The store only ever sees random-looking object names and ciphertext.
//! - Every metadata change is signed by its writer and verified before use.
//! - A change acknowledged by `fsync` survives a crash of the process.
//!
//! Deviations from the API contract (Rust has no overloading, so the two
//! associated functions cannot share names with the `create`/`open` file
//! operations): `Drive::create(store, owner, card)` is
//! [`Drive::create_drive`] and `Drive::open(store, me, opts)` is
//! [`Drive::open_drive`]; the file operations keep the names `create` and
//! `open`. `read` returns `Vec<u8>`; the owner card is passed as bytes.
//! `readdir` returns at most 4096 entries per call (call again with the
//! last `next_offset`; an empty result is the end).
//!
//! Additions: [`Drive::abandon`] (simulate a crash), [`Drive::drive_id`],
//! [`Drive::cache_bytes`], [`DriveOptions::new`] (defaults), [`ROOT_INO`],
//! and `DriveError::{BadHandle, TooBig, TooManyLinks, NotMember,
//! CacheInUse, CommitFailed, Cache}`. A second engine on the same cache
//! directory gets `CacheInUse` (EBUSY) until the first one's `shutdown`.

mod cache;
mod engine;
mod error;
mod identity;
mod io;
mod ops;
// TEMPORARY until `router` is merged (see the file).
mod share_shim;
mod tree;
mod types;
mod volume;

pub use engine::SNAPSHOT_EVERY;
pub use error::{DriveError, Result};
pub use identity::{Identity, Member, Role};
pub use share_shim::{ShareInfo, ShareMember, read_header};
pub use types::*;

use crate::store::ObjectStore;
use engine::Engine;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;

/// An open drive. Cheap to clone (all clones share one engine); every
/// method may be called concurrently from many tasks. Dropping the last
/// clone without [`Drive::shutdown`] stops background work like a crash
/// would: whatever `fsync` made durable is recovered by the next open.
#[derive(Clone)]
pub struct Drive {
    e: Arc<Engine>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Drive({})", self.e.store.describe())
    }
}

impl Drive {
    /// Creates a new drive in an empty store (refuses a store that already
    /// holds one with `Exists`).
    pub async fn create_drive(
        store: Arc<dyn ObjectStore>,
        owner: &Identity,
        owner_card: &[u8],
    ) -> Result<()> {
        Engine::create_drive(store, owner, owner_card).await
    }

    /// Opens (verifies) the drive: header, keyring, newest snapshot, log
    /// after it; replays the local journal and resumes its uploads.
    pub async fn open_drive(
        store: Arc<dyn ObjectStore>,
        me: Identity,
        opts: DriveOptions,
    ) -> Result<Drive> {
        Ok(Drive {
            e: Engine::open_drive(store, me, opts).await?,
        })
    }

    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        self.e.lookup(parent, name)
    }

    /// Inode numbers are node ids, stable for the drive's life: nothing to forget.
    pub fn forget(&self, _ino: Ino, _nlookup: u64) {}

    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.e.getattr(ino)
    }

    pub async fn setattr(&self, ino: Ino, _fh: Option<Fh>, set: SetAttr) -> Result<Attr> {
        if let Some(size) = set.size {
            self.e.truncate(ino, size).await?;
        }
        self.e.set_attrs(ino, &set)?;
        self.e.getattr(ino)
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> Result<(Attr, Fh)> {
        self.e.create_file(parent, name, mode, flags, who)
    }

    pub async fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        let (fh, truncate) = self.e.open_file(ino, flags)?;
        if truncate && let Err(e) = self.e.truncate(ino, 0).await {
            self.e.release_handle(fh);
            return Err(e);
        }
        Ok(fh)
    }

    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let (data, next) = self.e.read(ino, fh, offset, size).await?;
        if let Some(f) = next {
            let e = self.e.clone();
            tokio::spawn(async move { e.prefetch(f).await });
        }
        Ok(data)
    }

    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        self.e.write(ino, fh, offset, data).await
    }

    /// Seals the file's buffered writes (queued for upload).
    pub async fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        let node = self.e.lock().handle(fh, ino)?.node;
        self.e.flush(node)
    }

    /// Makes the file's data and all pending metadata durable in the local
    /// journal (not necessarily uploaded yet; see [`Drive::sync`]).
    pub async fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        let node = self.e.lock().handle(fh, ino)?.node;
        self.e.fsync(node)
    }

    pub async fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let node = self.e.lock().handle(fh, ino)?.node;
        let r = self.e.flush(node);
        self.e.release_handle(fh);
        r
    }

    pub async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: Caller) -> Result<Attr> {
        self.e.mkdir(parent, name, mode, who)
    }

    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.e.unlink(parent, name, false)
    }

    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.e.unlink(parent, name, true)
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        self.e.rename(parent, name, newparent, newname, flags)
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &Path,
        who: Caller,
    ) -> Result<Attr> {
        self.e.symlink(parent, name, target, who)
    }

    pub async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.e.readlink(ino)
    }

    pub async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.e.link(ino, newparent, newname)
    }

    pub async fn opendir(&self, ino: Ino) -> Result<Fh> {
        self.e.opendir(ino)
    }

    /// Entries after `offset` (0 starts with "." and ".."), at most
    /// 4096 per call; an empty result means the end. Offsets are stable
    /// across calls and changes to the directory.
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>> {
        self.e.readdir(ino, fh, offset)
    }

    pub async fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.e.lock().handle(fh, ino)?;
        self.e.release_handle(fh);
        Ok(())
    }

    pub async fn statfs(&self) -> Result<StatFs> {
        Ok(self.e.statfs())
    }

    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrSet,
    ) -> Result<()> {
        self.e.setxattr(ino, name, value, how)
    }

    pub async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        self.e.getxattr(ino, name)
    }

    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>> {
        self.e.listxattr(ino)
    }

    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        self.e.removexattr(ino, name)
    }

    /// Pushes every pending change to the store and waits; `progress` gets
    /// (done, total) bytes of content uploaded.
    pub async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        self.e.seal_all()?;
        let total = self.e.lock().pending_bytes();
        loop {
            let (left, fatal) = {
                let core = self.e.lock();
                (
                    if core.pending.is_empty() && core.uploads.is_empty() {
                        None
                    } else {
                        Some(core.pending_bytes())
                    },
                    core.fatal.clone(),
                )
            };
            progress(total.saturating_sub(left.unwrap_or(0)), total);
            let Some(_) = left else { return Ok(()) };
            if let Some(f) = fatal {
                return Err(DriveError::CommitFailed(f));
            }
            // Commit directly so errors reach the caller.
            self.e.commit_once().await?;
        }
    }

    /// Pulls changes other clients committed since the last refresh (also
    /// runs on a timer).
    pub async fn refresh(&self) -> Result<()> {
        self.e.refresh().await
    }

    pub fn status(&self) -> DriveStatus {
        self.e.status()
    }

    /// The drive's id (random, from its header).
    pub fn drive_id(&self) -> [u8; 16] {
        self.e.drive_id
    }

    /// Bytes of ciphertext objects held in the local cache.
    pub fn cache_bytes(&self) -> u64 {
        self.e.cache.size()
    }

    /// Simulates a crash (for tests and tools): background work stops at
    /// once and nothing more is written to the store or the cache; changes
    /// not made durable by `fsync` are lost, as in a killed process.
    pub async fn abandon(self) {
        self.e
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let task = self.e.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        self.e.cache.release();
    }

    /// Makes a final sync attempt, then stops background tasks.
    pub async fn shutdown(&self) -> Result<()> {
        let r = self.sync(&|_, _| {}).await;
        if r.is_err() {
            // Keep whatever could not be uploaded in the journal.
            self.e.journal_pending(true)?;
        }
        self.e.stop();
        self.e.save_state(true)?;
        self.e.cache.release();
        r
    }
}
