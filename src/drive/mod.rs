//! The filesystem engine: inodes, metadata, cache, upload queue, sync and
//! sharing, generic over [`crate::store::ObjectStore`] and testable without
//! the kernel. The public API below is what the FUSE adapter and the CLI call.
//!
//! Invariants:
//! - The store only ever sees random-looking object names and ciphertext.
//! - Every metadata change is signed by its writer and verified before use.
//! - A change acknowledged by `fsync` survives a crash of the machine; a
//!   queued change (a namespace call, a closed or flushed file) survives a
//!   crash of the process (it is journalled as it is queued).
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
//! root volume and each shared folder's, see `router`); the share API
//! ([`Drive::share_add`] and the following methods) and [`read_header`]
//! follow the sharing design of issue 7. Inode numbers of nodes inside a
//! shared folder are valid from the folder's lookup on, for the life of
//! the mount.
//!
//! Module map (each child opens with what it owns; the arrows are the only
//! imports between them, and there are no cycles):
//! - `history_api`: [`Drive::history`] and [`Drive::restore`]: a mount
//!   path to its volume and the names inside it. -> router, engine, leaves.
//! - `namespace`: the filesystem calls of [`Drive`], implemented once:
//!   resolve the inode through the router, call the volume's engine,
//!   translate node ids back to inode numbers. -> router, engine, leaves.
//! - `router/`: the volume registry and inode numbers, the member view,
//!   the share API. -> engine, volume, leaves.
//! - `engine/`: one volume's engine (state, open, journal, commit, the pure
//!   rebase, ops, io, lifecycle, rotation, cache). -> volume, leaves.
//! - `volume/`: a volume in the store (keyring, log and snapshot I/O), its
//!   genesis, and the keys an engine holds. -> leaves.
//! - leaves: `tree` (the namespace and op application), `node_table` (the
//!   tree's node table, shared by the committed tree and the view), `clock`,
//!   `error`, `identity`, `types`; they import only `format`, `store` and
//!   each other.

mod clock;
pub use clock::Clock;
mod engine;
mod error;
mod history_api;
mod identity;
mod namespace;
mod node_table;
mod retry;
mod router;
mod tree;
mod types;
mod volume;

/// The local journal and state file parsers, for `crate::fuzzing`.
pub(crate) use engine::cache::{LocalState, open_state, seal_state};
pub use engine::commit::{SHUTDOWN_TOUCHED, SNAPSHOT_EVERY, SNAPSHOT_TOUCHED};
pub use engine::fsck::{FsckOptions, FsckProblem, FsckReport, ProblemKind, VolumeCheck};
pub use engine::history::{Change, Restored, Version};
pub(crate) use engine::journal_file::{
    JournalStop, Record as JournalRecord, encode_journal_record, parse_journal,
    parse_journal_record, seal_journal_record,
};
pub use error::{DriveError, Result};
pub use history_api::{RestoreInfo, RestoreTo};
pub use identity::{Identity, Member, Role};
pub use tree::IDS_PER_STEP;
pub use types::*;
pub use volume::HEADER_KEY;
pub use volume::genesis::create_volume;

use crate::format::hex::encode as hex;
use crate::format::meta::{DriveHeader, MemberRecord};
use crate::store::ObjectStore;
use engine::Engine;
use router::Router;
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
        write!(f, "Drive({})", self.r.store().describe())
    }
}

/// Reads the drive header and verifies its self-signature (whether the
/// owner it names is trusted is the caller's decision: the CLI checks the
/// owner's card is pinned before a non-owner mounts).
pub async fn read_header(store: &dyn ObjectStore) -> Result<DriveHeader> {
    Ok(engine::open::read_header(store).await?.header)
}

/// The copy of the drive header kept in the drive cache directory
/// `cache_dir` by an earlier open (self-signature verified; `None` when
/// this cache never opened a drive). An offline mount checks the owner
/// against it; each volume's sealed state pins its hash.
pub fn cached_header(cache_dir: &std::path::Path) -> Result<Option<DriveHeader>> {
    Ok(engine::open::cached_header(cache_dir)?.map(|h| h.header))
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

    /// Pushes every pending change of every open volume to the store and
    /// waits; `progress` gets (done, total) bytes of content uploaded,
    /// summed over the volumes.
    pub async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        let engines = self.r.engines();
        for e in &engines {
            e.seal_all()?;
        }
        let total: u64 = engines.iter().map(|e| e.lock().pending_bytes()).sum();
        if engines.is_empty() {
            progress(0, 0);
        }
        // Engines in turn; `before` is what the earlier ones uploaded.
        let mut before = 0;
        for e in &engines {
            let mine = std::sync::atomic::AtomicU64::new(0);
            e.sync(&|d, t| {
                mine.store(t, std::sync::atomic::Ordering::Relaxed);
                progress(before + d, total.max(before + t))
            })
            .await?;
            before += mine.load(std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Pulls changes other clients committed since the last refresh, in
    /// every open volume; a member also re-discovers the folders shared
    /// with them (also runs on a timer). The first error is returned
    /// after every volume was tried.
    pub async fn refresh(&self) -> Result<()> {
        let mut first = self.r.rediscover().await.err();
        for e in self.r.engines() {
            if let Err(err) = e.refresh().await {
                tracing::warn!(volume = %hex(&e.volume()), error = %err, "refresh failed");
                first.get_or_insert(err);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Pending work and reachability, summed over every open volume.
    pub fn status(&self) -> DriveStatus {
        let mut s = DriveStatus {
            pending_ops: 0,
            pending_bytes: 0,
            uploaded_bytes: 0,
            last_commit: None,
            store_reachable: true,
            offline_since: None,
            cache_full: false,
            lost_unsealed: Vec::new(),
            refused_changes: 0,
            last_refused: None,
        };
        for e in self.r.engines() {
            let x = e.status();
            s.pending_ops += x.pending_ops;
            s.pending_bytes += x.pending_bytes;
            s.uploaded_bytes += x.uploaded_bytes;
            s.last_commit = s.last_commit.max(x.last_commit);
            s.store_reachable &= x.store_reachable;
            s.offline_since = match (s.offline_since, x.offline_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            s.cache_full |= x.cache_full;
            s.lost_unsealed.extend(x.lost_unsealed);
            s.refused_changes += x.refused_changes;
            if x.last_refused.as_ref().map(|r| r.0) > s.last_refused.as_ref().map(|r| r.0) {
                s.last_refused = x.last_refused;
            }
        }
        s
    }

    /// Deletes content objects that no state of any volume within the
    /// retention window `opts.keep` references and that are older than
    /// `opts.grace` in the store (owner only: `NotPermitted` otherwise).
    /// `progress` gets (objects deleted, objects to delete).
    pub async fn gc(
        &self,
        opts: &GcOptions,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<GcReport> {
        self.r.gc(opts, progress).await
    }

    /// The drive's id (random, from its header).
    pub fn drive_id(&self) -> [u8; 16] {
        self.r.header().header.drive_id
    }

    /// Bytes of ciphertext objects held in the local cache.
    pub fn cache_bytes(&self) -> u64 {
        self.r.engines().iter().map(|e| e.cache_bytes()).sum()
    }

    /// Simulates a crash (for tests and tools): background work stops at
    /// once and nothing more is written to the store or the cache, as in a
    /// killed process. What was journalled survives (every queued op:
    /// closed files, namespace changes); unsealed writes are lost.
    pub async fn abandon(self) {
        self.r.stop_task();
        for e in self.r.engines() {
            e.abandon().await;
        }
        self.r.release_drive_lock();
    }

    /// Makes a final sync attempt, then stops background tasks (the first
    /// error is returned after every volume was stopped).
    pub async fn shutdown(&self) -> Result<()> {
        self.r.stop_task();
        let mut first = None;
        for e in self.r.engines() {
            if let Err(err) = e.shutdown().await {
                first.get_or_insert(err);
            }
        }
        self.r.release_drive_lock();
        first.map_or(Ok(()), Err)
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

    /// Checks the whole drive as the store holds it (every volume's
    /// keyrings, log and snapshot, every content object the current trees
    /// reference) and counts orphaned content objects; read-only. Owner
    /// only (`NotPermitted` otherwise). Damaged or missing objects are in
    /// the report; an error means the check could not run to its end.
    /// `progress` gets (done, total) content objects.
    pub async fn fsck(
        &self,
        opts: FsckOptions,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<FsckReport> {
        if !self.is_owner() {
            return Err(DriveError::NotPermitted);
        }
        let mut held = engine::gc::LiveSet::default();
        for e in self.r.engines() {
            e.held_blocks(&mut held);
        }
        let held = held.ids;
        let (store, header) = (self.r.store().clone(), self.r.header());
        engine::fsck::check_drive(store, header, self.r.identity(), held, opts, progress).await
    }

    /// The drive owner's card bytes from the drive header.
    pub fn owner_card(&self) -> &[u8] {
        &self.r.header().header.owner_card
    }

    /// Whether I am the drive's owner.
    pub fn is_owner(&self) -> bool {
        self.r.is_owner()
    }

    // The root volume's key operations (tools and tests; shared folders
    // reach rotation and re-encryption through the share API).

    /// Moves the root volume to a new keyring generation for `members`
    /// (see the engine's `rotate`).
    #[doc(hidden)]
    pub async fn rotate_keys(&self, members: Vec<MemberRecord>, name: Vec<u8>) -> Result<u32> {
        self.r.root_engine()?.rotate(members, name).await
    }

    /// Re-encrypts the root volume's content under its current generation.
    #[doc(hidden)]
    pub async fn reencrypt(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        self.r.root_engine()?.reencrypt(progress).await
    }

    /// The root volume's newest keyring generation, name and members.
    ///
    /// # Panics
    /// In a member's view (the root volume is not open there).
    #[doc(hidden)]
    pub fn keyring_info(&self) -> (u32, Vec<u8>, Vec<MemberRecord>) {
        let k = self
            .r
            .root_engine()
            .expect("keyring_info needs the root volume")
            .volume_keys();
        (k.current().0, k.name.clone(), k.members().to_vec())
    }
}
