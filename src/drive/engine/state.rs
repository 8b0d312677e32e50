//! [`Core`]: the engine's mutable state behind one mutex (committed tree,
//! view, pending ops, open handles, unsealed writes, uploads), and the
//! per-file records it holds ([`Dirty`], [`Handle`]).
//!
//! Invariants:
//! - `view` always equals `committed` with `pending` applied in order
//!   ([`Core::push`] applies before queueing; [`Core::rebase`] rebuilds).
//! - A node removed from the view while open here is kept in `orphans`
//!   until its last handle closes.
//! - `open_count[n]` is the number of handles whose `node` is `n`.
//! - Every op in `pending` is in the journal file (appended by
//!   [`Core::push`] as it is queued), unless an append failed, which is
//!   logged and retried with the next op.
//! - `upload_bytes` is the sum of `uploads` (kept by [`Core::add_upload`]
//!   and [`Core::upload_done`]).
//! - `open_pack`, if any, is in `uploads` and no upload of it has started:
//!   a commit closes it (under the lock) before it takes it into a batch,
//!   and nothing is appended to a closed pack.

use super::journal_file::Journal;
use super::listing::Listing;
use super::rebase::{self, Rebased};
use crate::drive::clock::from_time;
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::{IdCursor, KIND_VOLUME, Tree, is_dirlike};
use crate::drive::types::{Attr, Fh, FileKind, Ino};
use crate::drive::volume::Head;
use crate::format::meta::{
    self, KIND_BLOCK_DEV, KIND_CHAR_DEV, KIND_DIR, KIND_FIFO, KIND_SOCKET, KIND_SYMLINK, Node, Op,
    is_special,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Instant, SystemTime};

/// Unsealed writes of one file.
#[derive(Debug, Clone)]
pub struct Dirty {
    /// Current size of the file.
    pub(super) size: u64,
    /// Smallest size since the last seal: committed blocks at or past
    /// `ceil(min_size / BLOCK_SIZE)` are gone.
    pub(super) min_size: u64,
    /// Block plaintexts being written (each starts at the block start).
    pub(super) blocks: BTreeMap<u64, Vec<u8>>,
    pub(super) mtime: meta::Time,
    /// The version these writes started from, and its blocks: together
    /// with `blocks` they are this client's version of the file, even if
    /// another client changes the file meanwhile.
    pub(super) base: u64,
    pub(super) base_blocks: meta::BlockMap,
}

/// The pack object being filled: its id and its length so far (where the
/// next block version goes).
#[derive(Debug, Clone, Copy)]
pub struct OpenPack {
    pub(super) id: [u8; 16],
    pub(super) len: u64,
}

/// An open file or directory.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The node this handle reads and writes (a conflict copy after a
    /// concurrent edit diverted this client's version).
    pub(super) node: u64,
    /// The inode the handle was opened on (what the kernel keeps using).
    pub(super) opened_as: u64,
    pub(super) writable: bool,
    pub(super) append: bool,
    /// End of the last read (sequential read detection).
    pub(super) last_read_end: u64,
    /// Random reads through this handle that missed the cache (they widen
    /// the whole-block fetches behind random reads, see `engine::io`).
    pub(super) random_misses: u32,
    /// A directory handle's snapshot of the entries `readdir` pages
    /// through (taken by its first read, again at offset 0).
    pub(super) listing: Option<Box<Listing>>,
}

/// Mutable state, behind one mutex; no I/O to the store is done while it
/// is held.
#[derive(Debug)]
pub struct Core {
    pub(super) committed: Tree,
    pub(super) view: Tree,
    pub(super) head: Head,
    pub(super) pending: VecDeque<(u64, Op)>,
    pub(super) next_client_seq: u64,
    /// The journal file: every queued op, and markers of unsealed writes.
    pub(super) journal: Journal,
    pub(super) dirty: HashMap<u64, Dirty>,
    pub(super) orphans: HashMap<u64, Node>,
    pub(super) open_count: HashMap<u64, u32>,
    pub(super) handles: HashMap<Fh, Handle>,
    pub(super) next_fh: Fh,
    /// Sealed content objects not yet in the store: id -> size.
    pub(super) uploads: BTreeMap<[u8; 16], u64>,
    /// Sum of `uploads`.
    pub(super) upload_bytes: u64,
    /// The pack small block versions are appended to (see `pack`).
    pub(super) open_pack: Option<OpenPack>,
    /// When this client sealed each content object of its own that a
    /// pending op may still name (engine clock; the collection race rule,
    /// see `reseal`). Entries go once committed.
    pub(super) sealed_at: HashMap<[u8; 16], SystemTime>,
    /// Content bytes uploaded since the engine opened (only grows; the
    /// progress of `cardfs sync` is read from it).
    pub(super) uploaded_bytes: u64,
    /// When a store request last succeeded.
    pub(super) last_store_ok: Instant,
    /// Opened from the local mirror while the store was out of reach, and
    /// the store's copy not yet checked (see `offline`).
    pub(super) offline_since: Option<SystemTime>,
    /// When the running commit started (None: none running).
    pub(super) commit_since: Option<Instant>,
    /// Writers are being refused with ENOSPC (nothing can be freed).
    pub(super) cache_full: bool,
    /// Files that lost unsealed writes in the last crash (reported by the
    /// next `status`, once).
    pub(super) lost_unsealed: Vec<String>,
    /// Pending changes refused by the collection race rule since the
    /// engine opened (their content was collected before they could be
    /// committed; `reseal`), and when and why the last one was.
    pub(super) refused_changes: u64,
    pub(super) last_refused: Option<(SystemTime, String)>,
    pub(super) last_commit: Option<SystemTime>,
    pub(super) reachable: bool,
    pub(super) last_snapshot: u64,
    /// When this engine wrote the checkpoint `Engine::checkpoint` holds
    /// (its clock; `None`: loaded at open, or none). Its pages are reused
    /// only within half the collection grace (`collect_log` race rules).
    pub(super) checkpoint_written: Option<SystemTime>,
    /// When this engine last saw the end of the log (its clock): a refresh
    /// reaching it, or a log put landing within half the collection grace
    /// of the previous sighting. Entries written after it are younger, and
    /// collectors keep entries younger than the grace, so a put within half
    /// the grace of it cannot land in a collected gap (`catch_up`).
    pub(super) log_end_seen: Option<SystemTime>,
    /// Nodes of `committed` changed, added or removed since the checkpoint
    /// `Engine::checkpoint` holds (or since the one loaded at open): the
    /// next checkpoint rewrites the pages holding them.
    pub(super) touched: HashSet<u64>,
    /// A commit failure that retrying cannot fix (reported by `sync`).
    pub(super) fatal: Option<String>,
    /// Where this client's new node ids go (see [`IdCursor`]).
    pub(super) ids: IdCursor,
}

impl Core {
    /// Applies `op` to the view and queues it for commit.
    pub fn push(&mut self, op: Op) -> Result<()> {
        let removed = self.view.apply(&op)?;
        self.keep_open(removed);
        let seq = self.next_client_seq;
        self.next_client_seq += 1;
        self.pending.push_back((seq, op));
        // Journalled as it is queued: what a call acknowledged survives a
        // crash of the process. A failed append is logged and retried with
        // the next op (the op stays queued in memory meanwhile).
        let _ = self.journal.catch_up(&self.pending);
        Ok(())
    }

    /// A new id for a node of `kind`, unused in the view, the committed
    /// tree and the open orphans (see [`IdCursor`]: the ids of a burst
    /// share few checkpoint pages).
    pub fn fresh_id(&mut self, kind: u8) -> u64 {
        let (view, committed, orphans) = (&self.view, &self.committed, &self.orphans);
        self.ids.fresh(kind, |id| {
            view.nodes.contains_key(&id)
                || committed.nodes.contains_key(&id)
                || orphans.contains_key(&id)
        })
    }

    /// Queues a sealed object for upload.
    pub(super) fn add_upload(&mut self, id: [u8; 16], size: u64) {
        if let Some(old) = self.uploads.insert(id, size) {
            self.upload_bytes -= old;
        }
        self.upload_bytes += size;
    }

    /// An object is in the store now (or is no longer needed); returns
    /// its size (0 if it was not queued).
    pub(super) fn upload_done(&mut self, id: &[u8; 16]) -> u64 {
        let size = self.uploads.remove(id).unwrap_or(0);
        self.upload_bytes -= size;
        size
    }

    /// Closes the open pack if it is among `ids` (a batch about to be
    /// uploaded, or objects being replaced): nothing is appended to it
    /// after this, so its upload sends every byte a ref names.
    pub(super) fn close_pack_in(&mut self, ids: &[[u8; 16]]) {
        if self.open_pack.is_some_and(|p| ids.contains(&p.id)) {
            self.open_pack = None;
        }
    }

    /// Whether the store cannot take uploads now: the last request failed
    /// as unreachable, or a commit has had no answer for `stall`
    /// (`Engine::stall`).
    pub(super) fn store_stuck(&self, stall: std::time::Duration) -> bool {
        let stalled = self.commit_since.is_some_and(|t| t.elapsed() >= stall)
            && self.last_store_ok.elapsed() >= stall;
        !self.reachable || stalled
    }

    /// The next commit's batch: the longest prefix of `pending` whose not
    /// yet uploaded content stays within `budget` bytes (at least one op),
    /// as (objects to upload, last client seq). When the batch takes every
    /// pending op, every queued object goes with it.
    pub(super) fn next_batch(&self, budget: u64) -> (Vec<[u8; 16]>, Option<u64>) {
        let mut ids = std::collections::BTreeSet::new();
        let mut bytes = 0;
        let mut upto = None;
        for (seq, op) in &self.pending {
            let blocks: Vec<[u8; 16]> = super::journal::op_block_refs(op)
                .into_iter()
                .map(|b| b.id)
                .filter(|id| self.uploads.contains_key(id) && !ids.contains(id))
                .collect();
            let add: u64 = blocks.iter().map(|id| self.uploads[id]).sum();
            if upto.is_some() && bytes + add > budget {
                return (ids.into_iter().collect(), upto);
            }
            bytes += add;
            ids.extend(blocks);
            upto = Some(*seq);
        }
        (self.uploads.keys().copied().collect(), upto)
    }

    /// Bytes of unsealed writes held in memory.
    pub(super) fn dirty_bytes(&self) -> u64 {
        self.dirty
            .values()
            .flat_map(|d| d.blocks.values())
            .map(|b| b.len() as u64)
            .sum()
    }

    pub(super) fn keep_open(&mut self, removed: Vec<Node>) {
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
            .map(|n| &**n)
            .or_else(|| self.orphans.get(&id))
            .ok_or(DriveError::NotFound)
    }

    pub fn pending_bytes(&self) -> u64 {
        self.upload_bytes + self.dirty_bytes()
    }

    /// The attributes of a node as this client sees them (unsealed writes
    /// included).
    pub fn attr(&self, id: u64) -> Result<Attr> {
        let n = self.node(id)?;
        let (size, stored) = match self.dirty.get(&id) {
            Some(d) => (
                d.size,
                n.blocks
                    .iter()
                    .filter(|(i, _)| !d.blocks.contains_key(i))
                    .map(|(_, b)| b.len as u64)
                    .sum::<u64>()
                    + d.blocks.values().map(|b| b.len() as u64).sum::<u64>(),
            ),
            None => (n.size, n.blocks.values().map(|b| b.len as u64).sum()),
        };
        let mtime = self.dirty.get(&id).map(|d| d.mtime).unwrap_or(n.mtime);
        let nlink = if self.view.nodes.contains_key(&id) {
            n.nlink
        } else {
            0
        };
        Ok(Attr {
            ino: id,
            kind: kind_of(n.kind),
            size: if n.kind == KIND_SYMLINK {
                n.target.len() as u64
            } else if is_dirlike(n.kind) {
                4096
            } else if is_special(n.kind) {
                0
            } else {
                size
            },
            blocks: stored.div_ceil(512),
            perm: n.perm,
            nlink,
            uid: n.uid,
            gid: n.gid,
            atime: from_time(n.atime),
            mtime: from_time(mtime),
            ctime: from_time(n.ctime.max(mtime)),
            crtime: from_time(n.crtime),
            // The kernel's dev_t is 32 bits wide on the FUSE protocol.
            rdev: n.rdev() as u32,
            blksize: 4096,
        })
    }

    pub fn new_handle(&mut self, node: u64, writable: bool, append: bool) -> Fh {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(
            fh,
            Handle {
                node,
                opened_as: node,
                writable,
                append,
                last_read_end: u64::MAX,
                random_misses: 0,
                listing: None,
            },
        );
        *self.open_count.entry(node).or_insert(0) += 1;
        fh
    }

    /// The node an open handle reads and writes (`BadHandle` unless `fh`
    /// was opened on `ino` or now points at it).
    pub fn handle_node(&self, fh: Fh, ino: Ino) -> Result<u64> {
        self.handle(fh, ino).map(|h| h.node)
    }

    pub fn handle(&self, fh: Fh, ino: Ino) -> Result<Handle> {
        match self.handles.get(&fh) {
            Some(h) if h.node == ino || h.opened_as == ino => Ok(h.clone()),
            _ => Err(DriveError::BadHandle),
        }
    }

    pub fn close_handle(&mut self, fh: Fh) {
        if let Some(h) = self.handles.remove(&fh) {
            let c = self.open_count.entry(h.node).or_insert(1);
            *c -= 1;
            if *c == 0 {
                self.open_count.remove(&h.node);
                if self.orphans.remove(&h.node).is_some() {
                    self.dirty.remove(&h.node);
                }
            }
        }
    }

    /// Moves open handles and unsealed writes of `orig` to `copy`.
    pub(super) fn redirect(&mut self, orig: u64, copy: u64) {
        let mut moved = 0;
        for h in self.handles.values_mut().filter(|h| h.node == orig) {
            h.node = copy;
            moved += 1;
        }
        if moved > 0 {
            *self.open_count.entry(copy).or_insert(0) += moved;
            if let Some(c) = self.open_count.get_mut(&orig) {
                *c -= moved.min(*c);
                if *c == 0 {
                    self.open_count.remove(&orig);
                }
            }
        }
        if let Some(d) = self.dirty.remove(&orig) {
            self.dirty.insert(copy, d);
        }
    }

    /// After ops were applied to the committed tree: moves its changes
    /// into the node table it shares with the view, in place (the view
    /// keeps what differs: see [`Tree::fold_into_shared`]), and, with no
    /// pending op left, makes the view share everything again (they are
    /// equal then): one table and one copy of each node, not two.
    pub(super) fn fold_committed(&mut self) {
        self.committed.fold_into_shared(&mut self.view);
        if self.pending.is_empty() {
            self.view.share_from(&self.committed);
        }
    }

    /// Rebuilds the view as committed + pending (see [`rebase::rebase`]):
    /// open handles and unsealed writes follow conflict copies, and open
    /// files whose node went away stay readable as orphans. `taken`: the
    /// names other clients' entries applied since took (only those still
    /// in the store after a catch-up; none when no entry was applied).
    pub(super) fn rebase(&mut self, card: &[u8; 32], taken: &rebase::Taken) {
        let pending = std::mem::take(&mut self.pending);
        let Rebased {
            view,
            pending,
            conflicted,
            dropped,
            changed,
        } = rebase::rebase(
            &self.committed,
            &self.view,
            pending,
            taken,
            card,
            &mut self.ids,
        );
        for (seq, _) in &dropped {
            tracing::debug!(seq, "rebase dropped a local change");
        }
        let old_view = std::mem::replace(&mut self.view, view);
        self.pending = pending;
        if changed {
            // The journal holds the ops as first queued; a crash now would
            // replay them on a base they no longer fit.
            let dirty: Vec<u64> = self.dirty.keys().copied().collect();
            if let Err(e) = self.journal.rewrite(&self.pending, dirty) {
                tracing::error!(error = %e, "could not rewrite the journal after a rebase; a crash before the next commit may lose this client's side of a conflict");
            }
        }
        for (orig, copy) in conflicted {
            self.redirect(orig, copy);
        }
        let gone: Vec<u64> = self
            .open_count
            .iter()
            .filter(|(id, c)| {
                **c > 0 && !self.view.nodes.contains_key(id) && !self.orphans.contains_key(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(n) = old_view.nodes.get(&id) {
                self.orphans.insert(id, (**n).clone());
            }
        }
    }

    /// This client's namespace: committed plus pending.
    pub fn view(&self) -> &Tree {
        &self.view
    }

    /// Whether `id` is a node of the view, of the committed tree, or an
    /// unlinked node still open here (its number is in use).
    pub fn knows(&self, id: u64) -> bool {
        self.view.nodes.contains_key(&id)
            || self.committed.nodes.contains_key(&id)
            || self.orphans.contains_key(&id)
    }

    /// Whether ops are waiting to be committed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether one of `nodes` is open for writing or has unsealed writes.
    pub fn writing_any(&self, nodes: &HashSet<u64>) -> bool {
        self.handles
            .values()
            .any(|h| h.writable && nodes.contains(&h.node))
            || self.dirty.keys().any(|id| nodes.contains(id))
    }
}

pub fn kind_of(k: u8) -> FileKind {
    match k {
        KIND_DIR | KIND_VOLUME => FileKind::Dir,
        KIND_SYMLINK => FileKind::Symlink,
        KIND_FIFO => FileKind::Fifo,
        KIND_SOCKET => FileKind::Socket,
        KIND_CHAR_DEV => FileKind::CharDevice,
        KIND_BLOCK_DEV => FileKind::BlockDevice,
        _ => FileKind::File,
    }
}
