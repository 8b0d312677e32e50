//! Creating a drive (header, root volume genesis) and opening one volume
//! of a verified drive: keyrings, newest snapshot, log after it, the
//! local journal, and the start of the background committer.
//!
//! Invariants:
//! - A drive is complete once its header is visible (the header is
//!   written last, Create-only).
//! - Opening refuses a header, log head or log that differs from what
//!   this client accepted before (tampering, rollback, fork).

use super::Engine;
use super::cache::Cache;
use super::commit::{apply_batch, background};
use super::state::Core;
use crate::drive::clock::now;
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::{Identity, Role, hex8};
use crate::drive::tree::{ROOT, Tree};
use crate::drive::types::DriveOptions;
use crate::drive::volume::held_keys::HeldKeys;
use crate::drive::volume::{self, genesis};
use crate::format::crypto::random_array;
use crate::format::meta::{self, DriveHeader, KIND_DIR, Node};
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A drive header whose self-signature verified, with the hash of its
/// bytes (pinned in each volume's local state) and the owner's key.
#[derive(Debug, Clone)]
pub struct VerifiedHeader {
    pub(in crate::drive) header: DriveHeader,
    pub(in crate::drive) hash: [u8; 32],
    pub(in crate::drive) owner_vk: ed25519_dalek::VerifyingKey,
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
        let owner_rec = owner.member(Role::Owner).record();
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
        genesis::write_genesis(
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
        let keys = HeldKeys::load(
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
        let (journal, records) = cache.open_journal()?;
        let core = Core {
            view: tree.clone(),
            committed: tree,
            head,
            pending: VecDeque::new(),
            next_client_seq,
            journal,
            dirty: HashMap::new(),
            orphans: HashMap::new(),
            open_count: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            uploads: BTreeMap::new(),
            upload_bytes: 0,
            uploaded_bytes: 0,
            last_store_ok: Instant::now(),
            commit_since: None,
            cache_full: false,
            lost_unsealed: Vec::new(),
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
            batch_bytes: AtomicU64::new(64 << 20),
            prefetching: Mutex::new(Default::default()),
            plain: Mutex::new(Default::default()),
            task: Mutex::new(None),
        });
        engine.replay_journal(records).await?;
        engine.save_state(true)?;
        let task = tokio::spawn(background(Arc::downgrade(&engine)));
        *engine.task.lock().expect("task lock") = Some(task);
        if !engine.lock().pending.is_empty() {
            engine.wake.notify_one();
        }
        Ok(engine)
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
