//! Repacking (owner's collector): the block versions of mostly dead packs
//! that the current tree names are sealed again into the open pack, and
//! each file's refs are moved to them by a committed relocation op (a
//! `SetContent` whose `version` equals its `base`: same content, new
//! placement; docs/FORMAT.md). The old pack is then named only by states
//! in the history retention window, and a later collection deletes it
//! once the window has passed them (docs/ARCHITECTURE.md, "Collection").
//!
//! Invariants:
//! - A block version is re-sealed the way `reseal` and `reencrypt` do it
//!   (`seal_stored_block`): verified plaintext, a fresh per-version key,
//!   the current generation, a new place (the chunk AAD binds object id
//!   and offset, so sealed bytes are never copied to another place).
//! - A file is relocated only as the committed tree and this client's view
//!   both have it (same version, no pending change, no unsealed writes);
//!   a relocation whose file changed before it commits is dropped by the
//!   rebase, never turned into a conflict copy. The old refs stay valid
//!   until then: nothing is deleted here.
//! - Once the relocation ops are committed, a checkpoint is written: the
//!   collection's metadata step can then move the log base past them.
//! - A crash before the relocation ops are committed leaves the old refs
//!   in the committed tree (the old pack stays live); replay commits the
//!   journalled relocation ops or the next collection repacks again.

use super::Engine;
use super::state::Core;
use crate::drive::error::{DriveError, Result};
use crate::format::content::sealed_len;
use crate::format::meta::{BlockRef, KIND_FILE, Node, Op};
use std::collections::HashSet;

/// What one volume's repack moved.
#[derive(Debug, Default)]
pub struct Moved {
    /// The packs some block version was moved out of.
    pub packs: HashSet<[u8; 16]>,
    /// Sealed bytes moved.
    pub bytes: u64,
}

impl Engine {
    /// Moves every block version of `packs` that the current tree names
    /// into new packs, then commits (see the module doc).
    pub async fn repack(&self, packs: &HashSet<[u8; 16]>) -> Result<Moved> {
        let mut moved = Moved::default();
        if packs.is_empty() {
            return Ok(moved);
        }
        self.writable()?;
        let todo: Vec<Node> = {
            let core = self.lock();
            core.committed
                .nodes
                .values()
                .filter(|n| n.kind == KIND_FILE && n.blocks.values().any(|b| packs.contains(&b.id)))
                .map(|n| (**n).clone())
                .collect()
        };
        for n in todo {
            let mut refs: Vec<(u64, BlockRef)> = Vec::new();
            let mut bytes = 0;
            for (idx, b) in n.blocks.iter().filter(|(_, b)| packs.contains(&b.id)) {
                let plain = self.read_stored_block(*idx, b.clone()).await?;
                refs.push((*idx, self.seal_stored_block(&plain)?));
                bytes += sealed_len(b.len as usize) as u64;
            }
            let mut core = self.lock();
            let unchanged = |t: &crate::drive::tree::Tree| {
                t.nodes
                    .get(&n.id)
                    .is_some_and(|c| c.version == n.version && c.blocks == n.blocks)
            };
            if !unchanged(&core.committed)
                || !unchanged(&core.view)
                || core.dirty.contains_key(&n.id)
            {
                // Changed meanwhile: its new version is looked at by the
                // next collection. The block versions sealed for it stay
                // in the pack, named by nothing.
                continue;
            }
            moved.packs.extend(
                n.blocks
                    .values()
                    .map(|b| b.id)
                    .filter(|id| packs.contains(id)),
            );
            moved.bytes += bytes;
            core.push(Op::SetContent {
                node: n.id,
                base: n.version,
                version: n.version,
                size: n.size,
                drop_from: u64::MAX,
                blocks: refs,
                mtime: n.mtime,
            })?;
        }
        if !moved.packs.is_empty() {
            tracing::info!(
                packs = moved.packs.len(),
                bytes = moved.bytes,
                "repacked the live block versions of mostly dead packs"
            );
            let through = self.lock().next_client_seq;
            match self.commit_before(through).await {
                // The relocation ops restate every moved file's refs: a
                // checkpoint after them lets the log base move past them
                // (with `--keep 0` in this very collection), instead of
                // keeping them until the writes make the next checkpoint
                // due.
                Ok(()) => self.snapshot(true).await,
                // The store refused a put for now: the relocation ops stay
                // queued (journalled) and commit with the next sync, like
                // any change. Until then the committed tree names the old
                // packs, so nothing deletes them: the collection goes on.
                Err(DriveError::Store(e)) if e.is_transient() => {
                    tracing::warn!(error = %e, "repacked blocks not committed yet: they commit with the next sync, and the old packs stay until then");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Commits until no pending op older than client seq `seq` is left
    /// (other writes queued meanwhile may stay pending: a collection does
    /// not wait for a busy writer to go quiet, nor seals its open files).
    async fn commit_before(&self, seq: u64) -> Result<()> {
        loop {
            let (left, fatal) = {
                let core = self.lock();
                let left = core.pending.iter().any(|(s, _)| *s < seq);
                (left, core.fatal.clone())
            };
            if !left {
                return Ok(());
            }
            if let Some(f) = fatal {
                return Err(DriveError::CommitFailed(f));
            }
            self.commit_once().await?;
        }
    }
}

impl Engine {
    /// After a read failed on content that is missing or damaged: pulls
    /// the log; whether it moved the head (the failed refs may have been
    /// relocated, and are worth one more try). Errors of the refresh
    /// itself leave the read's own error standing.
    pub(super) async fn refreshed_since_failure(&self) -> bool {
        let before = self.lock().head.seq;
        if let Err(e) = self.refresh().await {
            tracing::debug!(error = %e, "refresh after a failed read failed");
            return false;
        }
        self.lock().head.seq != before
    }
}

impl Core {
    /// Unsealed writes keep the block refs of the version they started
    /// from; when a relocation (same version, new refs) landed since, the
    /// moved ones follow it: the old pack may be deleted while the file is
    /// still being written.
    pub(super) fn rebind_moved_bases(&mut self) {
        let Core { dirty, view, .. } = self;
        for (ino, d) in dirty.iter_mut() {
            let Some(n) = view.nodes.get(ino) else {
                continue;
            };
            if n.version != d.base {
                continue;
            }
            d.base_blocks.retain(|idx, b| {
                if let Some(now) = n.blocks.get(idx)
                    && now.place() != b.place()
                    && now.len == b.len
                {
                    *b = now.clone();
                }
                true
            });
        }
    }
}
