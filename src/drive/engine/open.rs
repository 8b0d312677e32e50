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
use super::cache::LocalState;
use super::commit::background;
use super::journal_base::JournalBase;
use super::load::{self, Collected};
use super::mirror::{Mirror, MirroredStore, unreachable};
use super::state::Core;
use crate::drive::clock::now;
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::{Identity, Role, hex8};
use crate::drive::tree::{IdCursor, ROOT, Tree};
use crate::drive::types::DriveOptions;
use crate::drive::volume::held_keys::HeldKeys;
use crate::drive::volume::{self, Head, PageIndex, genesis};
use crate::format::crypto::random_array;
use crate::format::meta::{self, DriveHeader, KIND_DIR, Node};
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// A drive header whose self-signature verified, with the hash of its
/// bytes (pinned in each volume's local state) and the owner's key.
#[derive(Debug, Clone)]
pub struct VerifiedHeader {
    pub(in crate::drive) header: DriveHeader,
    pub(in crate::drive) hash: [u8; 32],
    pub(in crate::drive) owner_vk: ed25519_dalek::VerifyingKey,
    bytes: Bytes,
}

/// Reads and verifies the drive header.
pub async fn read_header(store: &dyn ObjectStore) -> Result<VerifiedHeader> {
    let bytes = volume::get(store, volume::HEADER_KEY).await?;
    verify_header(bytes, volume::HEADER_KEY)
}

/// Verifies header bytes (`object` names where they came from).
fn verify_header(bytes: Bytes, object: &str) -> Result<VerifiedHeader> {
    let header = DriveHeader::open(&bytes).map_err(|e| DriveError::unreadable(object, e))?;
    let owner_vk = header
        .owner
        .verifying_key()
        .map_err(|e| DriveError::tampered(object, e.to_string()))?;
    Ok(VerifiedHeader {
        hash: meta::sha256(&bytes),
        header,
        owner_vk,
        bytes,
    })
}

/// The drive cache directory's copy of the header (for an offline open).
fn header_copy(cache_dir: &Path) -> PathBuf {
    cache_dir.join("header")
}

/// Keeps a copy of the verified header in the drive's cache directory
/// (not secret: the store holds the same bytes); a failure is logged.
pub fn save_header(cache_dir: &Path, h: &VerifiedHeader) {
    let path = header_copy(cache_dir);
    if std::fs::read(&path).is_ok_and(|b| b == h.bytes) {
        return;
    }
    if let Err(e) = super::cache::replace_file(&path, &h.bytes, false) {
        tracing::warn!(path = %path.display(), error = %e, "could not keep a copy of the drive header; opening offline will not be possible");
    }
}

/// The header copy kept by [`save_header`], verified (its self-signature
/// here; its hash against each volume's sealed state when the volume
/// opens); `None` if there is none.
pub fn cached_header(cache_dir: &Path) -> Result<Option<VerifiedHeader>> {
    let path = header_copy(cache_dir);
    match std::fs::read(&path) {
        Ok(b) => verify_header(Bytes::from(b), &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DriveError::Cache {
            path: path.display().to_string(),
            source,
        }),
    }
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
    ///
    /// With the store out of reach (or `offline`: the caller already found
    /// it so), a volume opened on this machine before is opened from its
    /// metadata mirror instead, verified the same way against the sealed
    /// local state; the store's own copy is checked before the first commit
    /// or refresh ([`Engine::check_reconnected`]).
    pub async fn open_volume(
        store: Arc<dyn ObjectStore>,
        me: Identity,
        mut opts: DriveOptions,
        header: &VerifiedHeader,
        volume_id: [u8; 16],
        offline: bool,
    ) -> Result<Arc<Engine>> {
        let header_hash = header.hash;
        let cache = Cache::open(
            &opts.cache_dir,
            &header.header.drive_id,
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
        let (journal, records) = cache.open_journal()?;
        // The tree at the head accepted before is the replay's base.
        let want_base = (!records.is_empty()).then(|| cache.client_id());
        let unmirrored = store.clone();
        let mirrored = Arc::new(Mirror::new(
            &opts.cache_dir,
            &volume_id,
            cache.mirror_bytes(),
        ));
        let store: Arc<dyn ObjectStore> = Arc::new(MirroredStore::new(store, mirrored.clone()));
        // With a journal to replay, the mirror as it was before this open
        // (the open's copies would remove its older checkpoint and entries
        // until `let_go_superseded`): it may hold the state at the
        // accepted head after a collection removed that from the store
        // (`JournalBase`). Read in place, only when needed.
        let earlier = (want_base.is_some() && !offline && mirrored.is_usable()).then(|| {
            mirrored.hold_superseded();
            mirrored.source()
        });
        let online = if offline {
            None
        } else {
            let verified = verify_volume(
                store.as_ref(),
                earlier.as_ref().map(|s| s as &dyn ObjectStore),
                &me,
                header,
                volume_id,
                state.as_ref(),
                want_base,
            )
            .await;
            if earlier.is_some() {
                mirrored.let_go_superseded();
            }
            match verified {
                Ok(v) => Some(v),
                Err(e) if unreachable(&e) && state.is_some() && mirrored.is_usable() => {
                    tracing::warn!(volume = %hex8(&volume_id), error = %e, "store unreachable; opening the volume from the local cache (offline)");
                    None
                }
                Err(e) => return Err(e),
            }
        };
        let (verified, offline_since) = match online {
            Some(v) => (v, None),
            None => {
                if state.is_none() || !mirrored.is_usable() {
                    return Err(DriveError::Store(StoreError::Transient {
                        message: format!(
                            "the store is unreachable and volume {} was never opened with this cache directory, so it cannot be opened offline",
                            hex8(&volume_id)
                        ),
                        retry_after: None,
                    }));
                }
                let source = mirrored.source();
                let v = match verify_volume(
                    &source,
                    None,
                    &me,
                    header,
                    volume_id,
                    state.as_ref(),
                    want_base,
                )
                .await
                {
                    Ok(v) => v,
                    Err(e) => return Err(not_in_mirror(&source, &volume_id, e).await),
                };
                tracing::warn!(volume = %hex8(&volume_id), head = v.head.seq, "opened offline from the local cache: reads of uncached content fail with EIO, changes are queued; the store is checked for rollback before the first commit");
                (v, Some(SystemTime::now()))
            }
        };
        let Verified {
            keys,
            tree,
            head,
            snapshot_seq,
            index,
            touched,
            read_only,
            journal_base,
        } = verified;
        if offline_since.is_none()
            && let Some(index) = &index
        {
            // The mirror holds (or is copying) this checkpoint's pages
            // now: older ones go.
            mirrored.retain_pages(index.page_keys(&volume_id));
        }
        opts.read_only |= read_only;
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
            journal,
            dirty: HashMap::new(),
            orphans: HashMap::new(),
            open_count: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            uploads: BTreeMap::new(),
            upload_bytes: 0,
            open_pack: None,
            sealed_at: HashMap::new(),
            uploaded_bytes: 0,
            last_store_ok: Instant::now(),
            offline_since,
            commit_since: None,
            cache_full: false,
            lost_unsealed: Vec::new(),
            refused_changes: 0,
            last_refused: None,
            last_commit: None,
            reachable: offline_since.is_none(),
            last_snapshot: snapshot_seq,
            // The loaded checkpoint was the newest when listed: its pages
            // are reusable for half the grace from now (`collect_log`).
            checkpoint_written: (offline_since.is_none() && index.is_some())
                .then(|| opts.clock.now()),
            // The first commit looks for the end of the log again.
            log_end_seen: None,
            touched,
            fatal: None,
            ids: {
                let mut ids = IdCursor::default();
                if let Some(index) = &index {
                    ids.set_step(index.ids_per_step());
                }
                ids
            },
        };
        let engine = Arc::new(Engine {
            store,
            unmirrored,
            me,
            opts,
            keys,
            cache,
            header_hash,
            core: Mutex::new(core),
            wake: tokio::sync::Notify::new(),
            progress: tokio::sync::Notify::new(),
            commit_lock: tokio::sync::Mutex::new(()),
            checkpoint: tokio::sync::Mutex::new(index),
            stopped: AtomicBool::new(false),
            batch_bytes: AtomicU64::new(64 << 20),
            prefetching: Mutex::new(Default::default()),
            plain: Mutex::new(Default::default()),
            task: Mutex::new(None),
            mirror: mirrored,
        });
        let (base, taken) = journal_base.map_or((None, Default::default()), |b| (b.tree, b.taken));
        engine.replay_journal(records, base, &taken).await?;
        engine.save_state(true)?;
        let task = tokio::spawn(background(Arc::downgrade(&engine)));
        *engine.task.lock().expect("task lock") = Some(task);
        if !engine.lock().pending.is_empty() {
            engine.wake.notify_one();
        }
        Ok(engine)
    }
}

/// A volume as verified at open.
struct Verified {
    keys: HeldKeys,
    tree: Tree,
    head: Head,
    snapshot_seq: u64,
    /// The pages of the checkpoint the tree started from.
    index: Option<PageIndex>,
    /// Nodes changed by the log entries replayed after that checkpoint.
    touched: HashSet<u64>,
    /// This identity may not write in the volume.
    read_only: bool,
    /// The tree at the head `state` names and the names other clients
    /// took since, when asked for (a journal to replay).
    journal_base: Option<JournalBase>,
}

/// Verifies a volume as `source` holds it (the store, or the local mirror
/// when offline): keyrings, newest snapshot, the log after it, and that
/// nothing this client accepted before (`state`) is missing or different.
/// `want_base`: this client's id, when it has a journal to replay (see
/// [`JournalBase`]); `earlier`: where else the state at the accepted head
/// may be found.
async fn verify_volume(
    source: &dyn ObjectStore,
    earlier: Option<&dyn ObjectStore>,
    me: &Identity,
    header: &VerifiedHeader,
    volume_id: [u8; 16],
    state: Option<&LocalState>,
    want_base: Option<[u8; 16]>,
) -> Result<Verified> {
    let keys = HeldKeys::load(
        source,
        header.header.drive_id,
        volume_id,
        header.owner_vk,
        &me.x25519,
        state.map(|s| s.generation).unwrap_or(0),
    )
    .await?;
    // A member who may not write gets a read-only drive (EROFS) rather
    // than writing entries every other client would refuse.
    let read_only = !keys.can_write(&me.card_id);
    // Start from the newest checkpoint, then replay the log after it.
    let load::Start {
        mut tree,
        mut head,
        index,
        ..
    } = load::start(source, &keys, &me.x25519, u64::MAX, Collected::Lazy).await?;
    let snapshot_seq = head.seq;
    let mut touched = HashSet::new();
    // At the head this client accepted before, the hash must be the one it
    // accepted (else a fork); the tree there is the base its journal
    // replays onto.
    let known = state.map(|s| (s.head_seq, s.head_hash));
    let check_known = |head: &Head| match known {
        Some((seq, hash)) if seq == head.seq && hash != head.hash => {
            Err(fork(&keys.volume, seq, head.seq))
        }
        _ => Ok(()),
    };
    let at_known = |head: &Head| known.is_some_and(|(seq, _)| seq == head.seq);
    check_known(&head)?;
    let mut known_checked = at_known(&head);
    let mut journal_base = match (want_base, known) {
        (Some(client), Some(known)) => Some(JournalBase::new(client, known)),
        _ => None,
    };
    let start = head;
    load::replay(
        source,
        &keys,
        &me.x25519,
        &mut tree,
        &mut head,
        None,
        Some(&mut touched),
        |e| {
            if let Some(b) = journal_base.as_mut() {
                b.visit(&e);
            }
            check_known(e.head)?;
            known_checked |= at_known(e.head);
            Ok(())
        },
    )
    .await?;
    if let Some(s) = state {
        if s.head_seq > head.seq {
            return Err(DriveError::Rollback {
                volume: hex8(&keys.volume),
                known: s.head_seq,
                offered: head.seq,
                reason: "the store is missing log entries this client already accepted".into(),
            });
        }
        if !known_checked {
            // Our known head lies inside the snapshot: check its hash
            // directly (or in the log bases, once collected).
            check_entry(source, &keys, s.head_seq, &s.head_hash).await?;
        }
    }
    if let Some(b) = journal_base.as_mut() {
        b.at_end(&tree, &head);
        b.behind(source, earlier, &keys, &me.x25519, &start, &tree)
            .await?;
    }
    Ok(Verified {
        keys,
        tree,
        head,
        snapshot_seq,
        index,
        touched,
        read_only,
        journal_base,
    })
}

/// The log entry `seq` of the volume must be in `source` with hash `hash`
/// or, once the owner collected it, listed with that hash by the log
/// bases ([`volume::check_collected`]): `Rollback` when it is missing or
/// omitted, a fork when it differs.
pub(super) async fn check_entry(
    source: &dyn ObjectStore,
    keys: &HeldKeys,
    seq: u64,
    hash: &[u8; 32],
) -> Result<()> {
    let vol = &keys.volume;
    let key = volume::log_key(vol, seq);
    match source.get(&key, Default::default()).await {
        Ok(g) if meta::sha256(&g.bytes) == *hash => Ok(()),
        Ok(_) => Err(fork(vol, seq, seq)),
        Err(StoreError::NotFound { .. })
            if !volume::base_seqs(source, &keys.get()).await?.is_empty() =>
        {
            volume::check_collected(source, &keys.get(), keys.owner(), seq, hash)
                .await
                .inspect_err(|e| tracing::error!(error = %e, "refusing the store's log"))
        }
        Err(StoreError::NotFound { .. }) => {
            let e = DriveError::Rollback {
                volume: hex8(vol),
                known: seq,
                offered: seq.saturating_sub(1),
                reason: "the store is missing log entries this client already accepted".into(),
            };
            tracing::error!(error = %e, "refusing rolled-back metadata");
            Err(e)
        }
        Err(e) => Err(store_err(e)),
    }
}

/// An offline open reads the mirror alone. An object that a verified
/// object names but the mirror does not hold was never copied (checkpoint
/// pages are copied in the background, so a process killed right after a
/// cold open can leave some out): a gap in this machine's cache, not a sign
/// that the store tampered with anything, so the error says that instead of
/// "failed verification". Every other error is returned as it is.
async fn not_in_mirror(source: &dyn ObjectStore, volume: &[u8; 16], e: DriveError) -> DriveError {
    if let DriveError::Tampered { object, .. } = &e
        && matches!(source.head(object).await, Err(StoreError::NotFound { .. }))
    {
        return DriveError::Store(StoreError::Transient {
            message: format!(
                "volume {}: the store is unreachable and the local cache lacks {object}, which the \
                 newest checkpoint names (its copy was cut short when cardfs last stopped), so the \
                 volume cannot be opened offline; open it once with the store reachable",
                hex8(volume)
            ),
            retry_after: None,
        });
    }
    e
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
