//! One volume's engine: the in-memory namespace (committed tree plus
//! pending ops), file content I/O, the local cache and journal, and the
//! background committer that turns pending ops into signed log entries.
//!
//! Children and what they own:
//! - `state`: [`Core`] (the mutable state behind the engine's mutex) and
//!   its invariants; `rebase`: the pure rebase/conflict function.
//! - `open`: creating a drive and opening (verifying) one volume.
//! - `journal`: replaying the local journal and making it durable;
//!   `journal_file`: its records, appended as each op is queued; `commit`: refresh, commit,
//!   upload, snapshots and the background task; `catch_up`: a refresh
//!   that finds the entries after its head collected (reload past the
//!   owner's log base, rebase); `lifecycle`: sync, shutdown,
//!   abandon; `rotation`: key rotation and re-encryption of the volume.
//! - `listing`: a directory handle's snapshot of the entries `readdir`
//!   pages through (the tree keeps no index of entries by cookie).
//! - `fsck`: the read-only check of a whole drive as the store holds it;
//!   `history`: a path's versions, and restoring a past state of it.
//! - `mirror`: the local copy of the volume's metadata objects that an
//!   offline open verifies and starts from; `offline`: the checks of the
//!   store's copy once it answers again, before anything is committed.
//! - `reseal`: the collection race rule before a commit (own objects
//!   older than half the grace are sealed again under new ids).
//! - `gc`: the block ids a volume still needs (for the collector);
//!   `collect_log`: moving the log's base forward and deleting the
//!   metadata before it (the owner's collector); `repack`: moving the
//!   live block versions of mostly dead packs into new packs.
//! - `load`: the one loader of a volume's state (a verified checkpoint
//!   or genesis, then a verified replay of the log after it), used by
//!   `open`, `catch_up`, `past` and `fsck`.
//! - `past`: the tree at an earlier log position (snapshot at or before
//!   it plus a verified replay).
//! - `ops`: namespace operations; `io`: file content; `pack`: sealing
//!   block versions (small ones into the open pack); `pressure`: writers
//!   wait while the cache bound is full; `cache`: the local
//!   ciphertext cache, journal file and state file.
//!
//! Invariants:
//! - `view` always equals `committed` with `pending` applied in order.
//! - An op enters `pending` only after applying cleanly to `view`.
//! - A log entry is written only after every content object its ops name
//!   is in the store (uploads first, then the Create-only log put).
//! - `head` only moves forward; the persisted head is the newest accepted.
//! - No I/O to the store is done while the `core` mutex is held.
//!
//! Imports: `volume`, `tree`, `clock`, `identity`, `error`, `types` of
//! `drive`, and `format`/`store`; never `router` or `Drive`.

pub(super) mod cache;
pub(super) mod catch_up;
pub(super) mod collect_log;
pub(super) mod commit;
pub(super) mod fsck;
pub(super) mod gc;
pub(super) mod history;
pub(super) mod io;
pub(super) mod journal;
pub(super) mod journal_base;
pub(super) mod journal_file;
pub(super) mod lifecycle;
pub(super) mod listing;
pub(super) mod load;
pub(super) mod mirror;
pub(super) mod mirror_pages;
pub(super) mod offline;
pub(super) mod open;
pub(super) mod ops;
pub(super) mod pack;
pub(super) mod past;
pub(super) mod pressure;
pub(super) mod rebase;
pub(super) mod repack;
pub(super) mod reseal;
pub(super) mod rotation;
pub(super) mod state;
#[cfg(test)]
mod view_tests;

use super::identity::Identity;
use super::types::DriveOptions;
use super::volume::VolumeKeys;
use super::volume::held_keys::HeldKeys;
use crate::store::ObjectStore;
use cache::Cache;
use state::Core;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

/// A decrypted block (where its block version lies, plaintext) held in memory.
pub type PlainBlock = (crate::format::content::Place, Arc<Vec<u8>>);

/// Everything one open drive shares between its handles and tasks.
pub struct Engine {
    store: Arc<dyn ObjectStore>,
    /// The same store without the metadata mirror (reads of past entries
    /// and snapshots, and collection).
    unmirrored: Arc<dyn ObjectStore>,
    me: Identity,
    opts: DriveOptions,
    keys: HeldKeys,
    cache: Cache,
    header_hash: [u8; 32],
    core: Mutex<Core>,
    /// Wakes the committer.
    wake: tokio::sync::Notify,
    /// Signalled after each commit attempt (sync waits on it).
    progress: tokio::sync::Notify,
    /// Serialises commits and refreshes (both move `head`).
    commit_lock: tokio::sync::Mutex<()>,
    /// Serialises checkpoints; holds the pages of the last one written or
    /// loaded (what the next one reuses).
    checkpoint: tokio::sync::Mutex<Option<super::volume::PageIndex>>,
    stopped: AtomicBool,
    /// Content bytes per commit (adapted to the upload rate).
    batch_bytes: AtomicU64,
    /// Blocks being fetched ahead of readers.
    prefetching: Mutex<HashMap<crate::format::content::Place, Arc<tokio::sync::Mutex<()>>>>,
    /// Recently read block plaintexts (memory only, never on disk).
    plain: Mutex<VecDeque<PlainBlock>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The metadata mirror `store` copies into.
    mirror: Arc<mirror::Mirror>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }
}

impl Engine {
    /// The id of the volume this engine serves.
    pub fn volume(&self) -> [u8; 16] {
        self.keys.volume
    }

    /// The volume's keys held now (generations, members, name).
    pub fn volume_keys(&self) -> Arc<VolumeKeys> {
        self.keys.get()
    }

    /// Bytes of ciphertext objects in this volume's local cache.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.size()
    }

    /// Wakes the background committer (pending ops to commit).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The volume's metadata mirror (a handle on its directory).
    fn mirror(&self) -> &Arc<mirror::Mirror> {
        &self.mirror
    }
}
