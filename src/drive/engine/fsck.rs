//! `fsck`: a check of the whole drive as the store holds it. Every volume
//! (found by listing the keyrings) is verified from its keyrings, through
//! its log from entry 0 (signatures, hash chain, generations), against
//! each usable snapshot, to the tree at its head; then every content object a
//! current tree references is checked (in the store listing with the size
//! its block ref implies, or with `verify_content` fetched and decrypted
//! with its key), and content objects no tree references are counted as
//! orphans (what a collection would delete).
//!
//! Invariants:
//! - Read-only: nothing is written to the store or the cache.
//! - A damaged object is reported, never fatal: the check goes on and
//!   names every object that fails (with the paths that reference it).
//!   Only a store that fails to answer (or refuses access) stops the check
//!   with an error, since its result would be incomplete.
//! - Objects this mount still holds but has not committed (pending
//!   uploads, unsealed files: `Engine::held_blocks` of `gc`) are not
//!   orphans.
//!
//! Imports: `volume`, `tree`, `identity`, `error` and the engine's
//! `open::VerifiedHeader`; never `router`.

use super::load;
use super::open::VerifiedHeader;
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::Identity;
use crate::drive::tree::{KIND_VOLUME, ROOT, Tree};
use crate::drive::volume::held_keys::HeldKeys;
use crate::drive::volume::{self, Head, VolumeKeys};
use crate::format::content::{self, Place, sealed_len};
use crate::format::hex::{decode as unhex, encode as hex};
use crate::format::meta::{BlockKey, KIND_DIR, Node};
use crate::store::{GetOptions, ObjectStore, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// Content objects fetched at once with `verify_content`.
const VERIFY_PARALLEL: usize = 8;

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Fetch and decrypt every referenced content object (otherwise its
    /// presence and size in the store listing are checked).
    pub verify_content: bool,
}

/// The kind of a problem found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A content object a tree references is not in the store.
    Missing,
    /// A content object has the wrong size or fails authentication.
    Damaged,
    /// A metadata object (keyring, log entry, snapshot) is missing or
    /// fails verification: the volume's state could not be established.
    Metadata,
}

/// One object that failed the check.
#[derive(Debug, Clone)]
pub struct FsckProblem {
    pub kind: ProblemKind,
    /// The store key of the object.
    pub object: String,
    pub reason: String,
    /// Paths (from the mount root) of the files referencing it.
    pub paths: Vec<PathBuf>,
}

/// What was checked of one volume.
#[derive(Debug, Clone)]
pub struct VolumeCheck {
    pub volume: [u8; 16],
    /// Where the volume is linked in the root volume (empty for the root
    /// volume itself; `None`: not linked anywhere, only in the store).
    pub path: Option<PathBuf>,
    /// Keyring generations verified.
    pub generations: u32,
    /// Log entries verified (from entry 0 to the head).
    pub log_entries: u64,
    /// Snapshot objects in the store, and how many of them (those sealed
    /// under the newest keyring generation, the ones clients use) were
    /// compared with the state their log entries give.
    pub snapshots: u64,
    pub snapshots_checked: u64,
    /// Nodes and block refs of the tree at the head.
    pub nodes: u64,
    pub block_refs: u64,
    /// The volume's state could not be established (see the problems).
    pub failed: bool,
}

/// The result of [`check_drive`].
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub volumes: Vec<VolumeCheck>,
    pub problems: Vec<FsckProblem>,
    /// Distinct content objects referenced by the current trees, and
    /// their bytes in the store.
    pub referenced_objects: u64,
    pub referenced_bytes: u64,
    /// Whether each was fetched and decrypted (`verify_content`).
    pub content_verified: bool,
    /// Content objects in the store that no current tree references and
    /// this mount does not hold pending: what a collection would delete.
    pub orphan_objects: u64,
    pub orphan_bytes: u64,
}

impl FsckReport {
    /// Nothing missing or damaged (orphans are not problems).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One referenced content object: the block versions refs name in it
/// (one, or several of a pack: place, length, key; the first ref naming
/// a place decides) and the paths naming it.
struct Referenced {
    versions: Vec<(Place, u32, BlockKey)>,
    paths: Vec<PathBuf>,
}

impl Referenced {
    /// The size the object must have (`exact`), or at least have (a pack).
    fn want(&self) -> (u64, bool) {
        let end =
            |(p, len, _): &(Place, u32, BlockKey)| p.start() + sealed_len(*len as usize) as u64;
        let exact = self.versions.iter().all(|(p, ..)| p.packed.is_none());
        (self.versions.iter().map(end).max().unwrap_or(0), exact)
    }
}

/// A volume as verified from the store: its check, and the tree at its
/// head (`None` when it could not be established).
struct VolumeState {
    check: VolumeCheck,
    tree: Option<Tree>,
}

/// Checks the whole drive in `store` (see the module doc). `held`: content
/// objects the caller's mount holds but has not committed. `progress` gets
/// (done, total) content objects checked.
pub async fn check_drive(
    store: Arc<dyn ObjectStore>,
    header: &VerifiedHeader,
    me: &Identity,
    held: HashSet<[u8; 16]>,
    opts: FsckOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<FsckReport> {
    let mut report = FsckReport {
        content_verified: opts.verify_content,
        ..Default::default()
    };
    let root_volume = header.header.root_volume;
    let mut volumes = BTreeSet::from([root_volume]);
    for m in store.list_all("k/").await? {
        match keyring_volume(&m.key) {
            Some(v) => {
                volumes.insert(v);
            }
            None => report.problems.push(metadata(&m.key, "not a keyring name")),
        }
    }
    let mut states = BTreeMap::new();
    for vol in volumes {
        let state = check_volume(store.as_ref(), header, me, vol, &mut report.problems).await?;
        states.insert(vol, state);
    }
    // Where each volume sits: the root volume's links name them.
    let mut prefix: HashMap<[u8; 16], PathBuf> = HashMap::from([(root_volume, PathBuf::new())]);
    if let Some(tree) = states.get(&root_volume).and_then(|s| s.tree.as_ref()) {
        for (id, paths) in node_paths(tree) {
            let n = &tree.nodes[&id];
            if let (KIND_VOLUME, Ok(v)) = (n.kind, <[u8; 16]>::try_from(n.target.as_slice())) {
                prefix.insert(v, paths[0].clone());
            }
        }
    }
    let mut refs: BTreeMap<[u8; 16], Referenced> = BTreeMap::new();
    for (vol, state) in states {
        let mut check = state.check;
        check.path = prefix.get(&vol).cloned();
        if let Some(tree) = &state.tree {
            let base = check
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("(volume {} not linked)", hex(&vol))));
            for (id, paths) in node_paths(tree) {
                for b in tree.nodes[&id].blocks.values() {
                    let r = refs.entry(b.id).or_insert_with(|| Referenced {
                        versions: Vec::new(),
                        paths: Vec::new(),
                    });
                    if !r.versions.iter().any(|(p, ..)| *p == b.place()) {
                        r.versions.push((b.place(), b.len, b.key.clone()));
                    }
                    r.paths.extend(paths.iter().map(|p| base.join(p)));
                }
            }
        }
        report.volumes.push(check);
    }
    check_content(store, &refs, &held, opts, &mut report, progress).await?;
    Ok(report)
}

/// The volume id of a keyring key `k/<volume>/<generation>`.
fn keyring_volume(key: &str) -> Option<[u8; 16]> {
    let (vol, generation) = key.strip_prefix("k/")?.split_once('/')?;
    let vol: [u8; 16] = unhex(vol)?;
    let g = u32::from_str_radix(generation, 16).ok()?;
    (volume::keyring_key(&vol, g) == key).then_some(vol)
}

fn metadata(object: &str, reason: impl Into<String>) -> FsckProblem {
    FsckProblem {
        kind: ProblemKind::Metadata,
        object: object.into(),
        reason: reason.into(),
        paths: Vec::new(),
    }
}

/// A verification failure becomes a problem naming its object; a store
/// that does not answer (or refuses access) stops the check.
fn as_problem(e: DriveError, fallback: &str) -> Result<FsckProblem> {
    match e {
        DriveError::Store(s) => match s {
            StoreError::NotFound { .. } => Ok(metadata(fallback, "object missing")),
            other => Err(DriveError::Store(other)),
        },
        DriveError::Tampered { object, reason }
        | DriveError::UnsupportedFormat { object, reason } => Ok(metadata(&object, reason)),
        DriveError::OldFormat { object, version } => Ok(metadata(
            &object,
            format!("drive format version {version}, no longer read"),
        )),
        DriveError::Rollback { reason, .. } => Ok(metadata(fallback, reason)),
        DriveError::NotMember => Ok(metadata(
            fallback,
            "the newest keyring does not list the drive owner",
        )),
        other => Err(other),
    }
}

/// Verifies one volume: keyrings, the log bases, the log from entry 0 (or
/// the newest base's checkpoint), the newest
/// snapshots against the log's state at their positions.
async fn check_volume(
    store: &dyn ObjectStore,
    header: &VerifiedHeader,
    me: &Identity,
    vol: [u8; 16],
    problems: &mut Vec<FsckProblem>,
) -> Result<VolumeState> {
    let mut check = VolumeCheck {
        volume: vol,
        path: None,
        generations: 0,
        log_entries: 0,
        snapshots: 0,
        snapshots_checked: 0,
        nodes: 0,
        block_refs: 0,
        failed: true,
    };
    let keyrings = volume::keyring_prefix(&vol);
    let keys = match VolumeKeys::load(
        store,
        header.header.drive_id,
        vol,
        &header.owner_vk,
        &me.x25519,
    )
    .await
    {
        Ok(k) => k,
        Err(e) => {
            problems.push(as_problem(e, &keyrings)?);
            return Ok(VolumeState { check, tree: None });
        }
    };
    check.generations = keys.generations.len() as u32;
    // Every snapshot is compared with the log's state at its position
    // when the replay gets there (one in memory at a time).
    let prefix = format!("v/{}/s/", hex(&vol));
    let listed = store.list_all(&prefix).await?;
    check.snapshots = listed.len() as u64;
    let mut snapshot_seqs = BTreeSet::new();
    for m in &listed {
        match u64::from_str_radix(&m.key[prefix.len()..], 16) {
            Ok(seq) if volume::snapshot_key(&vol, seq) == m.key => {
                snapshot_seqs.insert(seq);
            }
            _ => problems.push(metadata(&m.key, "not a snapshot name")),
        }
    }
    let keys = HeldKeys::new(keys, header.owner_vk);
    // Once collected, the log starts at the newest log base (whose
    // checkpoint is the snapshot there, checked by loading it); else at
    // genesis.
    let (mut tree, mut head) = match from_base(store, &keys.get(), &header.owner_vk).await {
        Ok(Some((tree, at))) => {
            check.snapshots_checked += 1;
            (tree, at)
        }
        Ok(None) => match load::genesis(store, &keys, &me.x25519).await {
            Ok(s) => {
                check.log_entries += 1;
                if snapshot_seqs.contains(&s.head.seq) {
                    compare_snapshot(store, &keys, &s.tree, s.head, &mut check, problems).await?;
                }
                (s.tree, s.head)
            }
            Err(e) => {
                problems.push(as_problem(e, &volume::log_key(&vol, 0))?);
                return Ok(VolumeState { check, tree: None });
            }
        },
        Err(e) => {
            problems.push(as_problem(e, &volume::base_key(&vol, 0))?);
            return Ok(VolumeState { check, tree: None });
        }
    };
    // The log, stopping at each snapshot's position to compare it.
    loop {
        let stop = snapshot_seqs.range(head.seq + 1..).next().copied();
        let from = head.seq;
        let (t, h) = (&mut tree, &mut head);
        let replayed = load::replay(store, &keys, &me.x25519, t, h, stop, None, |_| Ok(())).await;
        check.log_entries += head.seq - from;
        if let Err(e) = replayed {
            problems.push(as_problem(e, &volume::log_key(&vol, head.seq + 1))?);
            return Ok(VolumeState { check, tree: None });
        }
        if stop != Some(head.seq) {
            break;
        }
        compare_snapshot(store, &keys, &tree, head, &mut check, problems).await?;
    }
    check.nodes = tree.nodes.len() as u64;
    check.block_refs = tree.nodes.values().map(|n| n.blocks.len() as u64).sum();
    check.failed = false;
    Ok(VolumeState {
        check,
        tree: Some(tree),
    })
}

/// Compares the snapshot at `head` (when it is one of the newest keyring
/// generation, the ones clients use) with `tree`, the log's state there.
async fn compare_snapshot(
    store: &dyn ObjectStore,
    keys: &HeldKeys,
    tree: &Tree,
    head: Head,
    check: &mut VolumeCheck,
    problems: &mut Vec<FsckProblem>,
) -> Result<()> {
    let name = volume::snapshot_key(&keys.volume, head.seq);
    match volume::snapshot_at_or_before(store, &keys.get(), head.seq).await {
        // Sealed under an older keyring generation: never used
        // (a member removed since could have signed it).
        Ok(None) => {}
        Ok(Some((at, _))) if at.seq != head.seq => {}
        Ok(Some((at, snapshot))) => {
            check.snapshots_checked += 1;
            if at.hash != head.hash {
                problems.push(metadata(&name, "covers another log entry"));
            } else if snapshot.all_nodes() != tree.all_nodes() || snapshot.clients != tree.clients {
                problems.push(metadata(
                    &name,
                    "snapshot differs from the state its log entries give",
                ));
            }
        }
        Err(e) => problems.push(as_problem(e, &name)?),
    }
    Ok(())
}

/// When the log was collected: checks the chain of log bases (each the
/// object the next names, listing the entries right before the next's,
/// the first from entry 0), ties the newest to the log and loads the
/// checkpoint it names; `None` when there is no base.
async fn from_base(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    owner: &ed25519_dalek::VerifyingKey,
) -> Result<Option<(Tree, Head)>> {
    let seqs = volume::base_seqs(store, keys).await?;
    let Some(newest) = seqs.last() else {
        return Ok(None);
    };
    let mut b = volume::read_base(store, keys, owner, *newest).await?;
    let head = volume::base_head(store, keys, &b.base).await?;
    let c = volume::attested_checkpoint(store, keys, b.base.seq, &b.base.root).await?;
    let tree = c.tree;
    while b.base.first > 0 {
        let older = volume::read_base(store, keys, owner, b.base.first - 1).await?;
        if older.hash != b.base.prev {
            return Err(DriveError::tampered(
                volume::base_key(&keys.volume, b.base.seq),
                "log base does not follow the previous one",
            ));
        }
        b = older;
    }
    if b.base.prev != [0; 32] {
        return Err(DriveError::tampered(
            volume::base_key(&keys.volume, b.base.seq),
            "the first log base names a previous one",
        ));
    }
    Ok(Some((tree, head)))
}

/// Every path (relative to the tree's root) of every node reachable from
/// the root: one per name, so a hard-linked file has several.
pub fn node_paths(tree: &Tree) -> HashMap<u64, Vec<PathBuf>> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut out: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![(ROOT, PathBuf::new())];
    out.insert(ROOT, vec![PathBuf::new()]);
    while let Some((dir, path)) = stack.pop() {
        let Some(n) = tree.nodes.get(&dir) else {
            continue;
        };
        for (name, link) in &n.entries {
            let p = path.join(OsStr::from_bytes(name));
            let child: Option<&Node> = tree.nodes.get(&link.node).map(|n| &**n);
            if child.is_some_and(|c| c.kind == KIND_DIR) && !out.contains_key(&link.node) {
                stack.push((link.node, p.clone()));
            }
            out.entry(link.node).or_default().push(p);
        }
    }
    out
}

/// Checks every referenced content object and counts the orphans.
async fn check_content(
    store: Arc<dyn ObjectStore>,
    refs: &BTreeMap<[u8; 16], Referenced>,
    held: &HashSet<[u8; 16]>,
    opts: FsckOptions,
    report: &mut FsckReport,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<()> {
    let listed: HashMap<String, u64> = store
        .list_all("c/")
        .await?
        .into_iter()
        .map(|m| (m.key, m.size))
        .collect();
    for (key, size) in &listed {
        let id = key.strip_prefix("c/").and_then(unhex::<16>);
        if id.is_none_or(|id| !refs.contains_key(&id) && !held.contains(&id)) {
            report.orphan_objects += 1;
            report.orphan_bytes += size;
        }
    }
    let total = refs.len() as u64;
    report.referenced_objects = total;
    progress(0, total);
    let problem = |kind, id: &[u8; 16], reason: String, r: &Referenced| FsckProblem {
        kind,
        object: volume::content_key(id),
        reason,
        paths: r.paths.clone(),
    };
    let mut done = 0u64;
    let mut to_fetch = Vec::new();
    for (id, r) in refs {
        let key = volume::content_key(id);
        let (want, exact) = r.want();
        let size = match listed.get(&key) {
            Some(s) => Some(*s),
            // A listing may lag behind a recent upload: ask for the object.
            None => match store.head(&key).await {
                Ok(m) => Some(m.size),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        // A pack's bytes are its size in the store (dead parts included).
        report.referenced_bytes += match size {
            Some(s) if !exact => s,
            _ => want,
        };
        match size {
            None => {
                let reason = "content object missing".to_string();
                report
                    .problems
                    .push(problem(ProblemKind::Missing, id, reason, r))
            }
            Some(s) if (exact && s != want) || s < want => {
                let reason = if exact {
                    format!("object is {s} bytes, its block ref says {want}")
                } else {
                    format!("pack is {s} bytes, its block refs reach byte {want}")
                };
                report
                    .problems
                    .push(problem(ProblemKind::Damaged, id, reason, r))
            }
            Some(_) if opts.verify_content => {
                to_fetch.push((*id, r.versions.clone()));
                continue;
            }
            Some(_) => {}
        }
        done += 1;
        progress(done, total);
    }
    // Fetch and decrypt, a few objects at a time.
    let sem = Arc::new(tokio::sync::Semaphore::new(VERIFY_PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for (id, versions) in to_fetch {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let store = store.clone();
        set.spawn(async move {
            let r = verify_object(store.as_ref(), &id, &versions).await;
            drop(permit);
            (id, r)
        });
        while let Some(j) = set.try_join_next() {
            done += 1;
            progress(done, total);
            record(j, refs, report, &problem)?;
        }
    }
    while let Some(j) = set.join_next().await {
        done += 1;
        progress(done, total);
        record(j, refs, report, &problem)?;
    }
    Ok(())
}

/// Books one finished verification.
fn record(
    joined: std::result::Result<([u8; 16], Result<Option<String>>), tokio::task::JoinError>,
    refs: &BTreeMap<[u8; 16], Referenced>,
    report: &mut FsckReport,
    problem: &impl Fn(ProblemKind, &[u8; 16], String, &Referenced) -> FsckProblem,
) -> Result<()> {
    let (id, r) = joined.map_err(|e| DriveError::Invalid(format!("verify task: {e}")))?;
    if let Some(reason) = r? {
        let kind = if reason == MISSING {
            ProblemKind::Missing
        } else {
            ProblemKind::Damaged
        };
        report.problems.push(problem(kind, &id, reason, &refs[&id]));
    }
    Ok(())
}

const MISSING: &str = "content object missing";

/// Fetches one content object and decrypts every block version refs name
/// in it; `Some(reason)` if one fails.
async fn verify_object(
    store: &dyn ObjectStore,
    id: &[u8; 16],
    versions: &[(Place, u32, BlockKey)],
) -> Result<Option<String>> {
    let got = match store
        .get(&volume::content_key(id), GetOptions::default())
        .await
    {
        Ok(g) => g,
        Err(StoreError::NotFound { .. }) => return Ok(Some(MISSING.into())),
        Err(e) => return Err(e.into()),
    };
    for (place, len, key) in versions {
        let len = *len as usize;
        let cipher = content::block_cipher(key.as_bytes());
        let all = 0..content::chunk_count(len);
        let bytes = match place.packed {
            None => &got.bytes[..],
            Some(_) => {
                let start = place.start() as usize;
                let end = start + sealed_len(len);
                got.bytes.get(start..end).unwrap_or_default()
            }
        };
        if let Err(e) = content::open_chunks(&cipher, place, len, all, bytes) {
            let at = match place.packed {
                Some(o) => format!(" (block version at byte {o} of the pack)"),
                None => String::new(),
            };
            return Ok(Some(format!(
                "does not decrypt with its block ref's key{at}: {e}"
            )));
        }
    }
    Ok(None)
}
