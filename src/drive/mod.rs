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
//! CacheInUse, CommitFailed, Cache, CrossDevice}`. A second drive on the
//! same cache directory gets `CacheInUse` (EBUSY) until the first one's
//! `shutdown`.
//!
//! Sharing: `Drive` routes every call to one engine per open volume (the
//! root volume and each shared folder's, see `router.rs`); the share API
//! ([`Drive::share_add`] and the following methods) and [`read_header`]
//! follow the sharing design of issue 7. Inode numbers of nodes inside a
//! shared folder are valid from the folder's lookup on, for the life of
//! the mount.

mod cache;
mod engine;
mod error;
mod identity;
mod inos;
mod io;
mod keys;
mod lifecycle;
mod member_view;
mod ops;
mod router;
mod share;
mod shares;
mod tree;
mod types;
mod volume;

pub use share::create_volume;

pub use engine::SNAPSHOT_EVERY;
pub use error::{DriveError, Result};
pub use identity::{Identity, Member, Role};
pub use types::*;

use crate::format::meta::DriveHeader;
use crate::store::ObjectStore;
use router::Router;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;

/// An open drive. Cheap to clone (all clones share one router and its
/// engines); every method may be called concurrently from many tasks.
/// Dropping the last clone without [`Drive::shutdown`] stops background
/// work like a crash would: whatever `fsync` made durable is recovered by
/// the next open.
#[derive(Clone)]
pub struct Drive {
    r: Arc<Router>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Drive({})", self.r.store.describe())
    }
}

/// Reads the drive header and verifies its self-signature (whether the
/// owner it names is trusted is the caller's decision: the CLI checks the
/// owner's card is pinned before a non-owner mounts).
pub async fn read_header(store: &dyn ObjectStore) -> Result<DriveHeader> {
    Ok(engine::read_header(store).await?.header)
}

impl Drive {
    /// Creates a new drive in an empty store (refuses a store that already
    /// holds one with `Exists`).
    pub async fn create_drive(
        store: Arc<dyn ObjectStore>,
        owner: &Identity,
        owner_card: &[u8],
    ) -> Result<()> {
        engine::Engine::create_drive(store, owner, owner_card).await
    }

    /// Opens (verifies) the drive: header, keyring, newest snapshot, log
    /// after it; replays the local journal and resumes its uploads. The
    /// owner sees the whole drive; a member of shared folders sees a
    /// read-only root listing them; anyone else gets `NotMember`.
    pub async fn open_drive(
        store: Arc<dyn ObjectStore>,
        me: Identity,
        opts: DriveOptions,
    ) -> Result<Drive> {
        Ok(Drive {
            r: Router::open_drive(store, me, opts).await?,
        })
    }

    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        self.r.lookup(parent, name).await
    }

    /// Inode numbers are stable for the life of the mount: nothing to forget.
    pub fn forget(&self, _ino: Ino, _nlookup: u64) {}

    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.r.getattr(ino).await
    }

    pub async fn setattr(&self, ino: Ino, _fh: Option<Fh>, set: SetAttr) -> Result<Attr> {
        self.r.setattr(ino, set).await
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> Result<(Attr, Fh)> {
        self.r.create(parent, name, mode, flags, who).await
    }

    pub async fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        self.r.open(ino, flags).await
    }

    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.r.read(ino, fh, offset, size).await
    }

    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        self.r.write(ino, fh, offset, data).await
    }

    /// Seals the file's buffered writes (queued for upload).
    pub async fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.r.flush(ino, fh).await
    }

    /// Makes the file's data and all pending metadata of its volume
    /// durable in the local journal (not necessarily uploaded yet; see
    /// [`Drive::sync`]).
    pub async fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.r.fsync(ino, fh).await
    }

    pub async fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.r.release(ino, fh).await
    }

    pub async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: Caller) -> Result<Attr> {
        self.r.mkdir(parent, name, mode, who).await
    }

    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.r.unlink(parent, name).await
    }

    /// Removes an empty directory. A shared folder (owner view) is removed
    /// only when it is empty; its volume stays in the store with its
    /// members (see docs/SHARING.md).
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.r.rmdir(parent, name).await
    }

    /// Renames within one volume; across a shared folder's boundary it is
    /// `CrossDevice` (EXDEV: `mv` then copies and deletes).
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        self.r.rename(parent, name, newparent, newname, flags).await
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &Path,
        who: Caller,
    ) -> Result<Attr> {
        self.r.symlink(parent, name, target, who).await
    }

    pub async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.r.readlink(ino).await
    }

    /// A hard link within one volume (`CrossDevice` across volumes).
    pub async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.r.link(ino, newparent, newname).await
    }

    pub async fn opendir(&self, ino: Ino) -> Result<Fh> {
        self.r.opendir(ino).await
    }

    /// Entries after `offset` (0 starts with "." and ".."), at most
    /// 4096 per call; an empty result means the end. Offsets are stable
    /// across calls and changes to the directory.
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>> {
        self.r.readdir(ino, fh, offset).await
    }

    pub async fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.r.releasedir(ino, fh).await
    }

    pub async fn statfs(&self) -> Result<StatFs> {
        Ok(self.r.statfs())
    }

    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrSet,
    ) -> Result<()> {
        self.r.setxattr(ino, name, value, how).await
    }

    pub async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        self.r.getxattr(ino, name).await
    }

    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>> {
        self.r.listxattr(ino).await
    }

    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        self.r.removexattr(ino, name).await
    }

    /// Pushes every pending change of every open volume to the store and
    /// waits; `progress` gets (done, total) bytes of content uploaded.
    pub async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        self.r.sync(progress).await
    }

    /// Pulls changes other clients committed since the last refresh, in
    /// every open volume; a member also re-discovers the folders shared
    /// with them (also runs on a timer).
    pub async fn refresh(&self) -> Result<()> {
        self.r.refresh().await
    }

    /// Pending work and reachability, summed over every open volume.
    pub fn status(&self) -> DriveStatus {
        self.r.status()
    }

    /// The drive's id (random, from its header).
    pub fn drive_id(&self) -> [u8; 16] {
        self.r.header.header.drive_id
    }

    /// Bytes of ciphertext objects held in the local cache.
    pub fn cache_bytes(&self) -> u64 {
        self.r.cache_bytes()
    }

    /// Simulates a crash (for tests and tools): background work stops at
    /// once and nothing more is written to the store or the cache; changes
    /// not made durable by `fsync` are lost, as in a killed process.
    pub async fn abandon(self) {
        self.r.abandon().await
    }

    /// Makes a final sync attempt, then stops background tasks.
    pub async fn shutdown(&self) -> Result<()> {
        self.r.shutdown().await
    }

    /// Shares folder `ino` with `member` (role Reader or Writer). Converts
    /// a plain folder into a shared one (a new volume) the first time;
    /// otherwise writes a new keyring generation. Adding an existing
    /// member changes their role. Owner only (`NotPermitted` otherwise);
    /// `Busy` while a file inside is open for writing or has unsealed
    /// writes; `Invalid` for the root and for nesting.
    pub async fn share_add(&self, ino: Ino, member: Member) -> Result<ShareInfo> {
        self.r.share_add(ino, member).await
    }

    /// Removes `card_id` and rotates to a new generation (fresh key).
    /// Removing the owner is refused.
    pub async fn share_remove(&self, ino: Ino, card_id: &[u8; 32]) -> Result<ShareInfo> {
        self.r.share_remove(ino, card_id).await
    }

    /// Every shared folder this mount can see (owner: all it shares;
    /// member: those shared with it).
    pub async fn share_list(&self) -> Result<Vec<ShareInfo>> {
        self.r.share_list().await
    }

    /// Rewrites every block of the shared folder under the current
    /// generation (new ids, keys). Owner only.
    pub async fn share_reencrypt(
        &self,
        ino: Ino,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<()> {
        self.r.share_reencrypt(ino, progress).await
    }

    /// The drive owner's card bytes from the drive header.
    pub fn owner_card(&self) -> &[u8] {
        &self.r.header.header.owner_card
    }

    /// Whether I am the drive's owner.
    pub fn is_owner(&self) -> bool {
        self.r.is_owner()
    }
}
