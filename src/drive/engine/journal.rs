//! The local journal as the engine uses it: replaying it when a volume
//! opens, making it durable for `fsync`, and the persisted local state.
//!
//! Invariants:
//! - Every queued op is in the journal file (see `journal_file`); replay
//!   skips ops the log already holds (same client seq).
//! - Replay keeps a prefix of the journalled ops: it stops at the first op
//!   whose cached content objects are missing or damaged (page-cache data
//!   a crash of the machine lost), so every file comes back as a version
//!   that existed, never as one naming content that is gone.
//! - Replayed refs are all taken as refs this client did not seal: the
//!   journal does not say which objects it sealed and which it took from
//!   another client's file (a clone copy, a conflict copy), and a cached
//!   copy says neither. So the collection race rule (engine `reseal`)
//!   commits one only while the committed tree names its object, else
//!   seals its bytes again (from the cache or the store) or, when they
//!   are gone from both, refuses the ops naming it; a ref with no cached
//!   copy therefore never ends the replayed prefix. The cost: after a
//!   crash, content pending then is sealed and uploaded once more.

use super::Engine;
use super::cache::LocalState;
use super::io::StoreSizes;
use super::journal_file::Record;
use super::rebase::Taken;
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::{ROOT, Tree};
use crate::drive::volume;
use crate::format::content::sealed_len;
use crate::format::meta::{BlockRef, Op};
use std::collections::BTreeSet;

impl Engine {
    /// Re-applies journalled ops that are not yet in the log (up to the
    /// first one naming lost content), notes the files that lost unsealed
    /// writes, and rewrites the journal to what it kept. `base` is the tree
    /// at the head this client had accepted when the ops were journalled
    /// (when the open passed it): this client's view then, the ops applied
    /// to it, is what a conflict copy keeps when another client replaced a
    /// file meanwhile. `taken`: the names other clients' entries took
    /// since that head (see `journal_base`).
    pub(super) async fn replay_journal(
        &self,
        records: Vec<Record>,
        base: Option<Tree>,
        taken: &Taken,
    ) -> Result<()> {
        let client = self.cache.client_id();
        let done = {
            let core = self.lock();
            core.committed.clients.get(&client).copied().unwrap_or(0)
        };
        // Every op record in order (those committed since `base` too).
        let journalled: Vec<(u64, Op)> = records
            .iter()
            .filter_map(|r| match r {
                Record::Op(seq, op) => Some((*seq, op.clone())),
                Record::Unsealed(_) => None,
            })
            .collect();
        let mut ops: Vec<(u64, Op)> = Vec::new();
        // Markers of unsealed writes: (ops before the marker, node).
        let mut markers: Vec<(usize, u64)> = Vec::new();
        let mut last_seen = done;
        for r in records {
            match r {
                Record::Unsealed(node) => markers.push((ops.len(), node)),
                // Committed already, or a duplicate record: skip.
                Record::Op(seq, _) if seq <= last_seen => {}
                Record::Op(seq, op) => {
                    last_seen = seq;
                    ops.push((seq, op));
                }
            }
        }
        let mut keep = ops.len();
        let mut sizes = StoreSizes::new();
        'ops: for (i, (_, op)) in ops.iter().enumerate() {
            // A block ref carries everything needed to verify its object.
            for block in op_block_refs(op) {
                if self.cache.has_object(&block.id)
                    && !self.block_intact(&block, &mut sizes).await?
                {
                    tracing::error!(
                        object = %volume::content_key(&block.id),
                        dropped = ops.len() - i,
                        "a journalled change names content the cache lost (a crash of the machine before it was fsynced): replaying only the changes before it"
                    );
                    keep = i;
                    break 'ops;
                }
            }
        }
        ops.truncate(keep);
        let lost: BTreeSet<u64> = markers
            .iter()
            .filter(|(pos, node)| {
                *pos <= keep
                    && !ops[*pos..]
                        .iter()
                        .any(|(_, op)| matches!(op, Op::SetContent { node: n, .. } if n == node))
            })
            .map(|(_, node)| *node)
            .collect();
        let upto = ops.last().map_or(done, |(seq, _)| *seq);
        let mut core = self.lock();
        let before = before_crash(base, &core.committed, &journalled, client, upto);
        for (_, op) in &ops {
            // Not in `sealed_at`: of unknown origin (see the module doc).
            for b in op_block_refs(op) {
                if self.cache.has_object(&b.id) {
                    self.cache.pin(&b.id);
                    // A pack uploads whole (every block version in it).
                    let size = match b.packed {
                        Some(_) => self.cache.object_len(&b.id).unwrap_or(0),
                        None => sealed_len(b.len as usize) as u64,
                    };
                    core.add_upload(b.id, size);
                }
            }
        }
        if let Some((seq, _)) = ops.last() {
            core.next_client_seq = core.next_client_seq.max(seq + 1);
        }
        if !ops.is_empty() {
            tracing::info!(ops = ops.len(), "replaying journalled changes");
        }
        core.pending = ops.into();
        core.view = before;
        core.rebase(&self.me.card_id, taken);
        for node in lost {
            if let Some(path) = path_of(&core.view, node) {
                tracing::warn!(
                    file = %path,
                    "writes to this file were not yet sealed when the daemon stopped and are lost; it keeps what was sealed before"
                );
                core.lost_unsealed.push(path);
            }
        }
        let core = &mut *core;
        core.journal.rewrite(&core.pending, [])
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

    /// Appends any pending ops the journal lacks (after a failed append)
    /// and, with `durable`, makes the journal durable (fsync) outside the
    /// engine's lock. A durable call fails if an op is still missing.
    pub fn journal_pending(&self, durable: bool) -> Result<()> {
        let file = {
            let mut core = self.lock();
            let core = &mut *core;
            let appended = core.journal.catch_up(&core.pending);
            if !durable {
                return Ok(());
            }
            appended.map_err(|source| DriveError::Cache {
                path: self.cache.dir().join("journal").display().to_string(),
                source,
            })?;
            core.journal.sync_handle()?
        };
        if let Some(f) = file {
            f.sync_data().map_err(|source| DriveError::Cache {
                path: self.cache.dir().join("journal").display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Content blocks named by an op.
pub(super) fn op_block_refs(op: &Op) -> Vec<BlockRef> {
    match op {
        Op::SetContent { blocks, .. } => blocks.iter().map(|(_, b)| b.clone()).collect(),
        Op::Create { node, .. } => node.blocks.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The path of `node` from the volume root ("dir/file"), if it has one.
pub(super) fn path_of(tree: &Tree, mut node: u64) -> Option<String> {
    let mut parts = Vec::new();
    while node != ROOT {
        let (parent, name) = tree.name_of(node)?;
        parts.push(String::from_utf8_lossy(&name).into_owned());
        node = parent;
        if parts.len() > 4096 {
            return None;
        }
    }
    parts.reverse();
    Some(parts.join("/"))
}

/// This client's view before the crash, as far as it can be rebuilt: the
/// tree at the head it had accepted (`base`; the committed tree when that
/// head is no longer at hand) with its journalled ops up to client seq
/// `upto` applied in order (ops that do not apply there are skipped).
fn before_crash(
    base: Option<Tree>,
    committed: &Tree,
    journalled: &[(u64, Op)],
    client: [u8; 16],
    upto: u64,
) -> Tree {
    let mut view = base.unwrap_or_else(|| committed.clone());
    let in_base = view.clients.get(&client).copied().unwrap_or(0);
    for (seq, op) in journalled {
        if *seq > in_base && *seq <= upto {
            let _ = view.apply(op);
        }
    }
    view
}
