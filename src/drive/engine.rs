//! The engine's shared state and its life cycle: creating and opening a
//! drive, the in-memory namespace (committed tree plus pending ops), the
//! background committer, refresh and rebase.
//!
//! Invariants:
//! - `view` always equals `committed` with `pending` applied in order.
//! - An op enters `pending` only after applying cleanly to `view`.
//! - A log entry is written only after every content object its ops name
//!   is in the store (uploads first, then the Create-only log put).
//! - `head` only moves forward; the persisted head is the newest accepted.

use super::cache::{Cache, LocalState, now};
use super::error::{DriveError, Result};
use super::identity::{Identity, hex8};
use super::keys::Keys;
use super::tree::{ROOT, Tree};
use super::types::{DriveOptions, DriveStatus, Fh};
use super::volume::{self, Head};
use crate::format::crypto::random_array;
use crate::format::meta::{self, Batch, DriveHeader, KIND_DIR, Node, Op, SnapshotBody};
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

/// Entries between snapshots: opening reads at most this many entries
/// after the newest snapshot.
pub const SNAPSHOT_EVERY: u64 = 64;
/// How long the background committer waits after a change so that a
/// burst of changes becomes one log entry.
const COMMIT_DELAY: Duration = Duration::from_millis(25);
/// Unsealed writes untouched for this long are sealed and queued for
/// upload by the background task.
const IDLE_SEAL: Duration = Duration::from_secs(2);
/// Largest number of ops in one log entry.
const MAX_BATCH: usize = 4096;

/// Unsealed writes of one file.
#[derive(Debug, Clone)]
pub struct Dirty {
    /// Current size of the file.
    pub size: u64,
    /// Smallest size since the last seal: committed blocks at or past
    /// `ceil(min_size / BLOCK_SIZE)` are gone.
    pub min_size: u64,
    /// Block plaintexts being written (each starts at the block start).
    pub blocks: BTreeMap<u64, Vec<u8>>,
    pub mtime: meta::Time,
    /// The version these writes started from, and its blocks: together
    /// with `blocks` they are this client's version of the file, even if
    /// another client changes the file meanwhile.
    pub base: u64,
    pub base_blocks: BTreeMap<u64, meta::BlockRef>,
}

/// An open file or directory.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The node this handle reads and writes (a conflict copy after a
    /// concurrent edit diverted this client's version).
    pub node: u64,
    /// The inode the handle was opened on (what the kernel keeps using).
    pub opened_as: u64,
    pub writable: bool,
    pub append: bool,
    /// End of the last read (sequential read detection).
    pub last_read_end: u64,
}

/// Mutable state, behind one mutex; no I/O to the store is done while it
/// is held.
#[derive(Debug)]
pub struct Core {
    pub committed: Tree,
    pub view: Tree,
    pub head: Head,
    pub pending: VecDeque<(u64, Op)>,
    pub next_client_seq: u64,
    pub journaled_upto: u64,
    pub dirty: HashMap<u64, Dirty>,
    pub orphans: HashMap<u64, Node>,
    pub open_count: HashMap<u64, u32>,
    pub handles: HashMap<Fh, Handle>,
    pub next_fh: Fh,
    /// Sealed content objects not yet in the store: id -> size.
    pub uploads: BTreeMap<[u8; 16], u64>,
    pub last_commit: Option<SystemTime>,
    pub reachable: bool,
    pub last_snapshot: u64,
    /// A commit failure that retrying cannot fix (reported by `sync`).
    pub fatal: Option<String>,
}

impl Core {
    /// Applies `op` to the view and queues it for commit.
    pub fn push(&mut self, op: Op) -> Result<()> {
        let removed = self.view.apply(&op)?;
        self.keep_open(removed);
        let seq = self.next_client_seq;
        self.next_client_seq += 1;
        self.pending.push_back((seq, op));
        Ok(())
    }

    fn keep_open(&mut self, removed: Vec<Node>) {
        for n in removed {
            if self.open_count.get(&n.id).copied().unwrap_or(0) > 0 {
                self.orphans.insert(n.id, n);
            } else {
                self.dirty.remove(&n.id);
            }
        }
    }

    /// A node of the view, or an unlinked node still open here.
    pub fn node(&self, id: u64) -> Result<&Node> {
        self.view
            .nodes
            .get(&id)
            .or_else(|| self.orphans.get(&id))
            .ok_or(DriveError::NotFound)
    }

    pub fn pending_bytes(&self) -> u64 {
        self.uploads.values().sum::<u64>()
            + self
                .dirty
                .values()
                .flat_map(|d| d.blocks.values())
                .map(|b| b.len() as u64)
                .sum::<u64>()
    }
}

/// A decrypted block (block id, plaintext) held in memory.
pub type PlainBlock = ([u8; 16], Arc<Vec<u8>>);

/// Everything one open drive shares between its handles and tasks.
pub struct Engine {
    pub store: Arc<dyn ObjectStore>,
    pub me: Identity,
    pub opts: DriveOptions,
    pub keys: Keys,
    pub cache: Cache,
    pub header_hash: [u8; 32],
    pub core: Mutex<Core>,
    /// Wakes the committer.
    pub wake: tokio::sync::Notify,
    /// Signalled after each commit attempt (sync waits on it).
    pub progress: tokio::sync::Notify,
    /// Serialises commits and refreshes (both move `head`).
    pub commit_lock: tokio::sync::Mutex<()>,
    pub stopped: AtomicBool,
    /// Serialises journal appends.
    pub journal_lock: Mutex<()>,
    /// Blocks being fetched ahead of readers.
    pub prefetching: Mutex<HashMap<[u8; 16], Arc<tokio::sync::Mutex<()>>>>,
    /// Recently read block plaintexts (memory only, never on disk).
    pub plain: Mutex<VecDeque<PlainBlock>>,
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }
}

/// A drive header whose self-signature verified, with the hash of its
/// bytes (pinned in each volume's local state) and the owner's key.
#[derive(Debug, Clone)]
pub struct VerifiedHeader {
    pub header: DriveHeader,
    pub hash: [u8; 32],
    pub owner_vk: ed25519_dalek::VerifyingKey,
}

/// Reads and verifies the drive header.
pub async fn read_header(store: &dyn ObjectStore) -> Result<VerifiedHeader> {
    let bytes = volume::get(store, volume::HEADER_KEY).await?;
    let header =
        DriveHeader::open(&bytes).map_err(|e| DriveError::unreadable(volume::HEADER_KEY, e))?;
    let owner_vk = header
        .owner
        .verifying_key()
        .map_err(|e| DriveError::tampered(volume::HEADER_KEY, e.to_string()))?;
    Ok(VerifiedHeader {
        hash: meta::sha256(&bytes),
        header,
        owner_vk,
    })
}

fn store_err(e: StoreError) -> DriveError {
    DriveError::Store(e)
}

impl Engine {
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a new drive: header, root volume keyring generation 0, and
    /// the genesis log entry creating the root directory.
    pub async fn create_drive(
        store: Arc<dyn ObjectStore>,
        owner: &Identity,
        owner_card: &[u8],
    ) -> Result<()> {
        match store.head(volume::HEADER_KEY).await {
            Ok(_) => return Err(DriveError::Exists),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
        let drive_id: [u8; 16] = random_array();
        let volume: [u8; 16] = random_array();
        let owner_rec = owner.member(super::identity::Role::Owner).record();
        let t = now();
        let root = Node {
            id: ROOT,
            kind: KIND_DIR,
            perm: 0o755,
            nlink: 2,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            parent: ROOT,
            next_cookie: 1,
            ..Default::default()
        };
        super::share::write_genesis(
            store.as_ref(),
            drive_id,
            owner,
            volume,
            b"",
            std::slice::from_ref(&owner_rec),
            vec![root],
        )
        .await?;
        // The header goes last: a drive is complete once it is visible.
        let header = DriveHeader {
            drive_id,
            root_volume: volume,
            owner: owner_rec,
            owner_card: owner_card.to_vec(),
        };
        match store
            .put(
                volume::HEADER_KEY,
                Bytes::from(header.seal(&owner.ed25519)),
                PutMode::Create,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::PreconditionFailed { .. }) => Err(DriveError::Exists),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Opens and verifies one volume of a verified drive (keyrings, newest
    /// snapshot, log after it), replays the volume's local journal from
    /// `opts.cache_dir`, and starts the background committer. A member who
    /// may not write gets a read-only engine.
    pub async fn open_volume(
        store: Arc<dyn ObjectStore>,
        me: Identity,
        mut opts: DriveOptions,
        header: &VerifiedHeader,
        volume_id: [u8; 16],
    ) -> Result<Arc<Engine>> {
        let header_hash = header.hash;
        let owner_vk = header.owner_vk;
        let header = &header.header;
        let cache = Cache::open(
            &opts.cache_dir,
            &header.drive_id,
            &me.x25519.to_bytes(),
            opts.cache_size,
        )?;
        let state = cache.load_state()?;
        if let Some(s) = &state
            && s.header_hash != header_hash
        {
            return Err(DriveError::tampered(
                volume::HEADER_KEY,
                "drive header differs from the one this client accepted before",
            ));
        }
        let keys = Keys::load(
            store.as_ref(),
            header.drive_id,
            volume_id,
            owner_vk,
            &me.x25519,
            state.as_ref().map(|s| s.generation).unwrap_or(0),
        )
        .await?;
        // A member who may not write gets a read-only drive (EROFS) rather
        // than writing entries every other client would refuse.
        if !keys.can_write(&me.card_id) {
            opts.read_only = true;
        }
        // Start from the newest snapshot, then replay the log after it.
        let (mut tree, mut head) =
            match volume::newest_snapshot(store.as_ref(), &keys.get()).await? {
                Some((h, body)) => (Tree::from_nodes(body.nodes, body.clients), h),
                None => {
                    let (batch, head, _) = keys
                        .fetch_entry(store.as_ref(), &me.x25519, 0, &[0; 32], 0)
                        .await?
                        .ok_or_else(|| {
                            DriveError::tampered(
                                volume::log_key(&keys.volume, 0),
                                "genesis entry missing",
                            )
                        })?;
                    let mut t = Tree::default();
                    apply_batch(&mut t, &batch);
                    (t, head)
                }
            };
        let snapshot_seq = head.seq;
        let mut known_checked = false;
        if let Some(s) = &state
            && s.head_seq == head.seq
        {
            if s.head_hash != head.hash {
                return Err(fork(&keys.volume, s.head_seq, head.seq));
            }
            known_checked = true;
        }
        while let Some((batch, next, _)) = keys
            .fetch_entry(
                store.as_ref(),
                &me.x25519,
                head.seq + 1,
                &head.hash,
                head.generation,
            )
            .await?
        {
            apply_batch(&mut tree, &batch);
            head = next;
            if let Some(s) = &state
                && s.head_seq == head.seq
            {
                if s.head_hash != head.hash {
                    return Err(fork(&keys.volume, s.head_seq, head.seq));
                }
                known_checked = true;
            }
        }
        if let Some(s) = &state {
            if s.head_seq > head.seq {
                return Err(DriveError::Rollback {
                    volume: hex8(&keys.volume),
                    known: s.head_seq,
                    offered: head.seq,
                    reason: "the store is missing log entries this client already accepted".into(),
                });
            }
            if !known_checked {
                // Our known head lies inside the snapshot: check its hash directly.
                let key = volume::log_key(&keys.volume, s.head_seq);
                let bytes = volume::get(store.as_ref(), &key).await?;
                if meta::sha256(&bytes) != s.head_hash {
                    return Err(fork(&keys.volume, s.head_seq, head.seq));
                }
            }
        }
        let client = cache.client_id();
        let next_client_seq = state
            .as_ref()
            .map(|s| s.next_client_seq)
            .unwrap_or(1)
            .max(tree.clients.get(&client).map(|s| s + 1).unwrap_or(1));
        let core = Core {
            view: tree.clone(),
            committed: tree,
            head,
            pending: VecDeque::new(),
            next_client_seq,
            journaled_upto: 0,
            dirty: HashMap::new(),
            orphans: HashMap::new(),
            open_count: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            uploads: BTreeMap::new(),
            last_commit: None,
            reachable: true,
            last_snapshot: snapshot_seq,
            fatal: None,
        };
        let engine = Arc::new(Engine {
            store,
            me,
            opts,
            keys,
            cache,
            header_hash,
            core: Mutex::new(core),
            wake: tokio::sync::Notify::new(),
            progress: tokio::sync::Notify::new(),
            commit_lock: tokio::sync::Mutex::new(()),
            stopped: AtomicBool::new(false),
            journal_lock: Mutex::new(()),
            prefetching: Mutex::new(Default::default()),
            plain: Mutex::new(Default::default()),
            task: Mutex::new(None),
        });
        engine.replay_journal()?;
        engine.save_state(true)?;
        let task = tokio::spawn(background(Arc::downgrade(&engine)));
        *engine.task.lock().expect("task lock") = Some(task);
        if !engine.lock().pending.is_empty() {
            engine.wake.notify_one();
        }
        Ok(engine)
    }

    /// Re-applies journalled ops that are not yet in the log.
    fn replay_journal(&self) -> Result<()> {
        let records = self.cache.journal_read()?;
        let client = self.cache.client_id();
        let mut core = self.lock();
        let done = core.committed.clients.get(&client).copied().unwrap_or(0);
        let mut replayed = Vec::new();
        let mut last_seen = done;
        for (seq, op) in records {
            // Committed already, or a duplicate record: skip.
            if seq <= last_seen {
                continue;
            }
            last_seen = seq;
            for id in op_blocks(&op) {
                self.cache.pin(&id);
                if let Ok(Some(b)) = self.cache.read_object(&id, None) {
                    core.uploads.insert(id, b.len() as u64);
                }
            }
            core.next_client_seq = core.next_client_seq.max(seq + 1);
            replayed.push((seq, op));
        }
        if !replayed.is_empty() {
            tracing::info!(ops = replayed.len(), "replaying journalled changes");
        }
        let last = replayed.last().map(|(s, _)| *s).unwrap_or(0);
        core.pending = replayed.into();
        core.journaled_upto = last;
        rebase(&mut core, &self.me.card_id);
        Ok(())
    }

    pub fn save_state(&self, durable: bool) -> Result<()> {
        let core = self.lock();
        let s = LocalState {
            header_hash: self.header_hash,
            head_seq: core.head.seq,
            head_hash: core.head.hash,
            next_client_seq: core.next_client_seq,
            generation: self.keys.generation(),
        };
        drop(core);
        self.cache.save_state(&s, durable)
    }

    /// Writes not-yet-journalled pending ops to the journal.
    pub fn journal_pending(&self, durable: bool) -> Result<()> {
        // One writer at a time, so no op is appended twice.
        let _j = self.journal_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (ops, upto) = {
            let core = self.lock();
            let ops: Vec<(u64, Op)> = core
                .pending
                .iter()
                .filter(|(s, _)| *s > core.journaled_upto)
                .cloned()
                .collect();
            (
                ops,
                core.pending
                    .back()
                    .map(|(s, _)| *s)
                    .unwrap_or(core.journaled_upto),
            )
        };
        if ops.is_empty() && !durable {
            return Ok(());
        }
        self.cache.journal_append(&ops, durable)?;
        let mut core = self.lock();
        core.journaled_upto = core.journaled_upto.max(upto);
        Ok(())
    }

    /// Pulls entries committed by others and rebases pending ops on them.
    pub async fn refresh(&self) -> Result<()> {
        let _g = self.commit_lock.lock().await;
        self.refresh_locked().await
    }

    /// [`Engine::refresh`] with `commit_lock` held.
    pub(super) async fn refresh_locked(&self) -> Result<()> {
        let mut head = self.lock().head;
        let mut batches = Vec::new();
        loop {
            let r = self
                .keys
                .fetch_entry(
                    self.store.as_ref(),
                    &self.me.x25519,
                    head.seq + 1,
                    &head.hash,
                    head.generation,
                )
                .await;
            self.note_reachable(&r);
            let Some((batch, next, _)) = r? else { break };
            head = next;
            tracing::debug!(seq = head.seq, ops = batch.ops.len(), "pulled a log entry");
            batches.push(batch);
        }
        if batches.is_empty() {
            return Ok(());
        }
        {
            let mut core = self.lock();
            let simple = core.pending.is_empty();
            for b in &batches {
                apply_batch(&mut core.committed, b);
                if simple {
                    let mut removed = Vec::new();
                    for op in &b.ops {
                        if let Ok(r) = core.view.apply(op) {
                            removed.extend(r);
                        }
                    }
                    core.keep_open(removed);
                    core.view.clients = core.committed.clients.clone();
                }
            }
            core.head = head;
            if !simple {
                rebase(&mut core, &self.me.card_id);
            }
        }
        self.save_state(false)?;
        self.maybe_snapshot().await;
        Ok(())
    }

    fn note_reachable<T>(&self, r: &Result<T>) {
        let reachable = !matches!(r, Err(DriveError::Store(e)) if e.is_transient());
        self.lock().reachable = reachable;
    }

    /// Uploads sealed content, then commits pending ops, retrying the
    /// log put after rebasing when another client won the race.
    pub async fn commit_once(&self) -> Result<()> {
        let _g = self.commit_lock.lock().await;
        self.keys.check_member()?;
        self.journal_pending(false)?;
        let (uploads, upto) = {
            let core = self.lock();
            (
                core.uploads.keys().copied().collect::<Vec<_>>(),
                core.pending.back().map(|(s, _)| *s),
            )
        };
        self.upload(&uploads).await?;
        let Some(upto) = upto else { return Ok(()) };
        loop {
            let (ops, last, head) = {
                let core = self.lock();
                let ops: Vec<(u64, Op)> = core
                    .pending
                    .iter()
                    .filter(|(s, _)| *s <= upto)
                    .take(MAX_BATCH)
                    .cloned()
                    .collect();
                (
                    ops.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
                    ops.last().map(|(s, _)| *s),
                    core.head,
                )
            };
            let Some(last) = last else { break };
            let batch = Batch {
                client: self.cache.client_id(),
                client_seq: last,
                time: now(),
                ops,
            };
            if !self.keys.can_write(&self.me.card_id) {
                return Err(DriveError::CommitFailed(
                    "this identity may no longer write in the volume".into(),
                ));
            }
            let seq = head.seq + 1;
            let keys = self.keys.get();
            let generation = keys.current().0;
            let bytes = volume::seal_entry(
                &keys,
                &self.me.ed25519,
                &self.me.card_id,
                seq,
                &head.hash,
                &batch,
            );
            let hash = meta::sha256(&bytes);
            let r = self
                .store
                .put(
                    &volume::log_key(&self.keys.volume, seq),
                    Bytes::from(bytes),
                    PutMode::Create,
                )
                .await;
            match r {
                Ok(_) => {
                    tracing::debug!(seq, ops = batch.ops.len(), "committed a log entry");
                    {
                        let mut core = self.lock();
                        core.reachable = true;
                        apply_batch(&mut core.committed, &batch);
                        core.head = Head {
                            seq,
                            hash,
                            generation,
                        };
                        core.pending.retain(|(s, _)| *s > last);
                        core.last_commit = Some(SystemTime::now());
                        core.fatal = None;
                        if core.pending.is_empty() {
                            core.view.clients = core.committed.clients.clone();
                        }
                    }
                    self.save_state(false)?;
                    // Under the lock: an op pushed (and journalled by a
                    // concurrent fsync) after this check is never erased.
                    {
                        let mut core = self.lock();
                        if core.pending.is_empty() {
                            self.cache.journal_reset()?;
                            core.journaled_upto = 0;
                        }
                    }
                    self.maybe_snapshot().await;
                }
                Err(StoreError::PreconditionFailed { .. }) => {
                    tracing::debug!(seq, "log position taken by another writer; rebasing");
                    self.refresh_locked().await?;
                }
                Err(e) => {
                    self.lock().reachable = !e.is_transient();
                    return Err(e.into());
                }
            }
        }
        self.progress.notify_waiters();
        Ok(())
    }

    async fn upload(&self, ids: &[[u8; 16]]) -> Result<()> {
        let sem = Arc::new(tokio::sync::Semaphore::new(
            self.opts.upload_concurrency.max(1),
        ));
        let mut set = tokio::task::JoinSet::new();
        for id in ids {
            let bytes = match self.cache.read_object(id, None)? {
                Some(b) => b,
                None => {
                    tracing::error!(object = %volume::content_key(id), "sealed object vanished from the cache before upload");
                    self.lock().uploads.remove(id);
                    continue;
                }
            };
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let store = self.store.clone();
            let id = *id;
            set.spawn(async move {
                let r = store
                    .put(
                        &volume::content_key(&id),
                        Bytes::from(bytes),
                        PutMode::Overwrite,
                    )
                    .await;
                drop(permit);
                (id, r)
            });
        }
        let mut first_err = None;
        while let Some(j) = set.join_next().await {
            let (id, r) = j.map_err(|e| DriveError::Invalid(format!("upload task: {e}")))?;
            match r {
                Ok(_) => {
                    self.lock().uploads.remove(&id);
                    self.cache.unpin(&id);
                }
                Err(e) => {
                    self.lock().reachable = !e.is_transient();
                    first_err.get_or_insert(e);
                }
            }
        }
        self.progress.notify_waiters();
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn maybe_snapshot(&self) {
        self.snapshot(false).await
    }

    /// Writes a snapshot of the committed state once `SNAPSHOT_EVERY`
    /// entries passed since the last one, or at once with `force`. Only a
    /// writer of the current generation writes snapshots (readers' would be
    /// refused by everyone).
    pub(super) async fn snapshot(&self, force: bool) {
        if self.opts.read_only || !self.keys.can_write(&self.me.card_id) {
            return;
        }
        let (head, body) = {
            let core = self.lock();
            if !force && core.head.seq < core.last_snapshot + SNAPSHOT_EVERY {
                return;
            }
            (
                core.head,
                SnapshotBody {
                    clients: core.committed.clients.clone(),
                    nodes: core.committed.all_nodes(),
                },
            )
        };
        match volume::write_snapshot(
            self.store.as_ref(),
            &self.keys.get(),
            &self.me.ed25519,
            &self.me.card_id,
            head,
            &body,
        )
        .await
        {
            Ok(()) => self.lock().last_snapshot = head.seq,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot not written; will retry after later commits")
            }
        }
    }

    /// Seals files whose unsealed writes have been idle for `IDLE_SEAL`
    /// (open files that are neither flushed nor closed still get uploaded).
    pub fn seal_idle(&self) -> Result<()> {
        let mut core = self.lock();
        let limit = super::cache::to_time(SystemTime::now() - IDLE_SEAL);
        let idle: Vec<u64> = core
            .dirty
            .iter()
            .filter(|(_, d)| d.mtime <= limit)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.seal(&mut core, id, false)?;
        }
        Ok(())
    }

    pub fn status(&self) -> DriveStatus {
        let core = self.lock();
        DriveStatus {
            pending_ops: core.pending.len() as u64,
            pending_bytes: core.pending_bytes(),
            last_commit: core.last_commit,
            store_reachable: core.reachable,
        }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

fn fork(volume: &[u8; 16], known: u64, offered: u64) -> DriveError {
    let e = DriveError::Rollback {
        volume: hex8(volume),
        known,
        offered,
        reason: "log entry differs from the one this client accepted (fork)".into(),
    };
    tracing::error!(error = %e, "refusing forked metadata");
    e
}

/// Applies a verified batch to a tree. Ops that do not apply are skipped
/// (deterministically, the same on every client) with a warning.
pub fn apply_batch(tree: &mut Tree, batch: &Batch) {
    for op in &batch.ops {
        if let Err(e) = tree.apply(op) {
            tracing::warn!(error = %e, "skipping a logged op that does not apply");
        }
    }
    let c = tree.clients.entry(batch.client).or_insert(0);
    *c = (*c).max(batch.client_seq);
}

/// Content block ids named by an op.
pub fn op_blocks(op: &Op) -> Vec<[u8; 16]> {
    match op {
        Op::SetContent { blocks, .. } => blocks.iter().map(|(_, b)| b.id).collect(),
        Op::Create { node, .. } => node.blocks.values().map(|b| b.id).collect(),
        _ => Vec::new(),
    }
}

/// Rebuilds the view as committed + pending, fixing up pending ops that
/// no longer apply: a name taken meanwhile gets a conflict name; a content
/// change whose base version was replaced becomes a conflict copy next to
/// the file; ops already in the log (same client seq) are dropped.
pub fn rebase(core: &mut Core, card: &[u8; 32]) {
    let old_view = std::mem::replace(&mut core.view, core.committed.clone());
    // Original node -> conflict copy holding this client's version.
    let mut conflicted: HashMap<u64, u64> = HashMap::new();
    let pending = std::mem::take(&mut core.pending);
    let mut kept = VecDeque::new();
    for (seq, op) in pending {
        let mut op = op;
        if let Op::SetContent { node, base, .. } = &op {
            if conflicted.contains_key(node) {
                continue;
            }
            let current = core.view.nodes.get(node).map(|n| n.version);
            if current != Some(*base)
                && let Some(copy) = conflict_copy(&old_view, &core.view, *node, card)
            {
                if let Op::Create { node: c, .. } = &copy {
                    conflicted.insert(*node, c.id);
                }
                op = copy;
            }
        }
        match core.view.apply(&op) {
            Ok(removed) => {
                drop(removed);
                kept.push_back((seq, op));
            }
            Err(DriveError::Exists) => {
                let renamed = rename_for_conflict(&core.view, op, card);
                match core.view.apply(&renamed) {
                    Ok(_) => kept.push_back((seq, renamed)),
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping a local change that no longer applies")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "dropping a local change that no longer applies"),
        }
    }
    core.pending = kept;
    // Open handles and unsealed writes follow this client's version.
    for (orig, copy) in conflicted {
        redirect(core, orig, copy);
    }
    // Open files whose node went away stay readable.
    let gone: Vec<u64> = core
        .open_count
        .iter()
        .filter(|(id, c)| {
            **c > 0 && !core.view.nodes.contains_key(id) && !core.orphans.contains_key(id)
        })
        .map(|(id, _)| *id)
        .collect();
    for id in gone {
        if let Some(n) = old_view.nodes.get(&id) {
            core.orphans.insert(id, n.clone());
        }
    }
}

/// `name.conflict-<card8>-<unix time>`, with `-<n>` added until it is
/// free in `dir`; cut to fit 255 bytes.
pub fn conflict_name(tree: &Tree, dir: u64, name: &[u8], card: &[u8; 32]) -> Vec<u8> {
    let base = format!(".conflict-{}-{}", hex8(card), now().secs);
    let taken = |n: &[u8]| {
        tree.nodes
            .get(&dir)
            .is_some_and(|d| d.entries.contains_key(n))
    };
    for i in 0u32.. {
        let suffix = if i == 0 {
            base.clone()
        } else {
            format!("{base}-{i}")
        };
        let mut n = name[..name.len().min(255 - suffix.len())].to_vec();
        n.extend_from_slice(suffix.as_bytes());
        if !taken(&n) {
            return n;
        }
    }
    unreachable!("some suffix is free")
}

fn rename_for_conflict(tree: &Tree, op: Op, card: &[u8; 32]) -> Op {
    match op {
        Op::Create { parent, name, node } => Op::Create {
            name: conflict_name(tree, parent, &name, card),
            parent,
            node,
        },
        Op::Link {
            parent,
            name,
            node,
            ctime,
        } => Op::Link {
            name: conflict_name(tree, parent, &name, card),
            parent,
            node,
            ctime,
        },
        Op::Rename {
            parent,
            name,
            newparent,
            newname,
            exchange,
            time,
        } => Op::Rename {
            newname: conflict_name(tree, newparent, &newname, card),
            parent,
            name,
            newparent,
            exchange,
            time,
        },
        other => other,
    }
}

/// Moves open handles and unsealed writes of `orig` to `copy`.
pub fn redirect(core: &mut Core, orig: u64, copy: u64) {
    let mut moved = 0;
    for h in core.handles.values_mut().filter(|h| h.node == orig) {
        h.node = copy;
        moved += 1;
    }
    if moved > 0 {
        *core.open_count.entry(copy).or_insert(0) += moved;
        if let Some(c) = core.open_count.get_mut(&orig) {
            *c -= moved.min(*c);
            if *c == 0 {
                core.open_count.remove(&orig);
            }
        }
    }
    if let Some(d) = core.dirty.remove(&orig) {
        core.dirty.insert(copy, d);
    }
}

/// A Create op for a copy of `node` as this client last saw it, placed next
/// to the file in the current view.
fn conflict_copy(old_view: &Tree, view: &Tree, node: u64, card: &[u8; 32]) -> Option<Op> {
    let mine = old_view.nodes.get(&node)?;
    let (parent, name) = view.name_of(node).or_else(|| old_view.name_of(node))?;
    let mut copy = mine.clone();
    copy.id = fresh_id(view);
    copy.entries.clear();
    tracing::warn!(
        node,
        "concurrent edit of the same file: keeping this client's version as a conflict copy"
    );
    Some(Op::Create {
        parent,
        name: conflict_name(view, parent, &name, card),
        node: Box::new(copy),
    })
}

/// A random node id not in use (never 0 or the root).
pub fn fresh_id(tree: &Tree) -> u64 {
    loop {
        let id = u64::from_le_bytes(random_array());
        if id > ROOT && !tree.nodes.contains_key(&id) {
            return id;
        }
    }
}

/// Background work: commit pending changes (retrying with backoff while
/// the store is unreachable) and refresh on a timer.
async fn background(engine: Weak<Engine>) {
    let mut backoff = Duration::from_millis(100);
    let mut last_refresh = std::time::Instant::now();
    loop {
        let Some(e) = engine.upgrade() else { return };
        if e.stopped.load(Ordering::SeqCst) || e.keys.revoked() {
            return;
        }
        let interval = e.opts.refresh_interval;
        if let Err(err) = e.seal_idle() {
            tracing::warn!(error = %err, "could not seal idle writes");
        }
        let busy = {
            let core = e.lock();
            !core.pending.is_empty() || !core.uploads.is_empty()
        };
        let mut failed = false;
        if busy {
            // Let a burst of changes gather into one log entry.
            tokio::time::sleep(COMMIT_DELAY).await;
            if let Err(err) = e.commit_once().await {
                failed = true;
                match &err {
                    DriveError::Store(s) if s.is_transient() => {
                        tracing::warn!(error = %err, "store unreachable; will retry")
                    }
                    _ => {
                        tracing::error!(error = %err, "commit failed");
                        e.lock().fatal = Some(err.to_string());
                    }
                }
                e.progress.notify_waiters();
            } else {
                backoff = Duration::from_millis(100);
            }
        }
        if last_refresh.elapsed() >= interval {
            last_refresh = std::time::Instant::now();
            if let Err(err) = e.refresh().await {
                tracing::warn!(error = %err, "refresh failed");
            }
        }
        let wait = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(30));
            backoff
        } else {
            interval.min(Duration::from_secs(1))
        };
        let still_busy = !failed && {
            let core = e.lock();
            !core.pending.is_empty() || !core.uploads.is_empty()
        };
        if still_busy {
            continue;
        }
        let notified = e.wake.notified();
        let _ = tokio::time::timeout(wait, notified).await;
    }
}
