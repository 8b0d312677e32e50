//! The filesystem engine: inodes, metadata, cache, upload queue, sync and
//! sharing, generic over [`crate::store::ObjectStore`] and testable without
//! the kernel. The public API is the contract in `notes/engine-api.md`.
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

mod error;
mod identity;
mod types;

pub use error::{DriveError, Result};
pub use identity::{Identity, Member, Role};
pub use types::*;

use crate::store::ObjectStore;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;

/// An open drive. Cheap to clone (shares one engine); every method may be
/// called concurrently from many tasks.
#[derive(Clone)]
pub struct Drive {
    _store: Arc<dyn ObjectStore>,
}

const TODO: DriveError = DriveError::NotImplemented("engine skeleton");

#[allow(unused_variables)]
impl Drive {
    /// Creates a new drive in an empty store (refuses a store that already holds one).
    pub async fn create_drive(
        store: Arc<dyn ObjectStore>,
        owner: &Identity,
        owner_card: &[u8],
    ) -> Result<()> {
        Err(TODO)
    }
    /// Opens (verifies) the drive: keyring, snapshot, log; finishes journalled uploads.
    pub async fn open_drive(
        store: Arc<dyn ObjectStore>,
        me: Identity,
        opts: DriveOptions,
    ) -> Result<Drive> {
        Err(TODO)
    }
    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        Err(TODO)
    }
    pub fn forget(&self, ino: Ino, nlookup: u64) {}
    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        Err(TODO)
    }
    pub async fn setattr(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Attr> {
        Err(TODO)
    }
    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> Result<(Attr, Fh)> {
        Err(TODO)
    }
    pub async fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        Err(TODO)
    }
    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        Err(TODO)
    }
    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        Err(TODO)
    }
    pub async fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        Err(TODO)
    }
    pub async fn fsync(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        Err(TODO)
    }
    pub async fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        Err(TODO)
    }
    pub async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: Caller) -> Result<Attr> {
        Err(TODO)
    }
    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        Err(TODO)
    }
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        Err(TODO)
    }
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        Err(TODO)
    }
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &Path,
        who: Caller,
    ) -> Result<Attr> {
        Err(TODO)
    }
    pub async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        Err(TODO)
    }
    pub async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        Err(TODO)
    }
    pub async fn opendir(&self, ino: Ino) -> Result<Fh> {
        Err(TODO)
    }
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>> {
        Err(TODO)
    }
    pub async fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        Err(TODO)
    }
    pub async fn statfs(&self) -> Result<StatFs> {
        Err(TODO)
    }
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrSet,
    ) -> Result<()> {
        Err(TODO)
    }
    pub async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        Err(TODO)
    }
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>> {
        Err(TODO)
    }
    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        Err(TODO)
    }
    pub async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        Err(TODO)
    }
    pub async fn refresh(&self) -> Result<()> {
        Err(TODO)
    }
    pub fn status(&self) -> DriveStatus {
        DriveStatus {
            pending_ops: 0,
            pending_bytes: 0,
            last_commit: None,
            store_reachable: false,
        }
    }
    pub async fn shutdown(&self) -> Result<()> {
        Err(TODO)
    }
}
