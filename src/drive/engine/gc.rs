//! What one volume still needs of the content objects: the block ids
//! referenced by any state within the history retention window, by the
//! current committed tree, and by everything this engine holds pending.
//!
//! The window starts at the last entry written at or before `now - keep`
//! (by its writer's clock; the walk stops at the first entry written
//! after that, so a writer whose clock is behind only widens the window).
//! Live: the tree at that entry, every block named by the ops of the
//! entries after it, and the engine's own state taken at one instant
//! (committed tree, view, pending ops, uploads, unsealed files' base
//! blocks, open unlinked files).
//!
//! Besides the ids, the live set counts, for each pack, the sealed bytes
//! of the distinct block versions of it that are live (by place): the
//! collector chooses from these which packs to repack (router
//! `repack_choice`, engine `repack`).
//!
//! Invariant: the engine's own state is taken under its lock before the
//! walk, and the walk reaches the head it had then: a commit during the
//! walk only moves refs from pending to committed, both of which are in
//! the set already.

use super::Engine;
use super::journal::op_block_refs;
use super::past::Step;
use crate::drive::clock::to_time;
use crate::drive::error::Result;
use crate::drive::tree::Tree;
use crate::format::content::sealed_len;
use crate::format::hex::encode as hex;
use crate::format::meta::{BlockRef, Node};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// Block ids.
pub type BlockIds = HashSet<[u8; 16]>;

/// What the volumes still need: object ids, and for each pack the sealed
/// size of every live block version of it, by offset.
#[derive(Default)]
pub struct LiveSet {
    pub ids: BlockIds,
    pub packs: HashMap<[u8; 16], HashMap<u32, u64>>,
}

impl LiveSet {
    pub fn add(&mut self, b: &BlockRef) {
        self.ids.insert(b.id);
        if let Some(at) = b.packed {
            self.packs
                .entry(b.id)
                .or_default()
                .insert(at, sealed_len(b.len as usize) as u64);
        }
    }

    /// The sealed bytes of `pack` that some live ref names.
    pub fn pack_live_bytes(&self, pack: &[u8; 16]) -> u64 {
        self.packs.get(pack).map_or(0, |m| m.values().sum())
    }
}

fn add_nodes<'a>(out: &mut LiveSet, nodes: impl IntoIterator<Item = &'a Node>) {
    for n in nodes {
        for b in n.blocks.values() {
            out.add(b);
        }
    }
}

fn add_tree(out: &mut LiveSet, t: &Tree) {
    add_nodes(out, t.nodes.values().map(|n| &**n));
}

impl Engine {
    /// Adds to `out` every block id this volume needs with history kept
    /// for `keep` (see the module doc).
    pub async fn live_blocks(&self, keep: Duration, out: &mut LiveSet) -> Result<()> {
        self.held_blocks(out);
        let cutoff = to_time(
            SystemTime::now()
                .checked_sub(keep)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let from = self.window_base(cutoff).await?;
        let mut in_window = false;
        let (last, _) = self
            .walk_log(from, |step| match step {
                Step::Base { tree, time, .. } => {
                    if time > cutoff {
                        in_window = true;
                        add_tree(out, tree);
                    }
                }
                Step::Entry { before, batch, .. } => {
                    if !in_window && batch.time > cutoff {
                        in_window = true;
                        add_tree(out, before);
                    }
                    if in_window {
                        for b in batch.ops.iter().flat_map(op_block_refs) {
                            out.add(&b);
                        }
                    }
                }
            })
            .await?;
        if !in_window {
            add_tree(out, &last);
        }
        Ok(())
    }

    /// The block ids the engine holds now: committed tree, view, pending
    /// ops, uploads, the base blocks of unsealed writes, open unlinked
    /// files.
    pub fn held_blocks(&self, out: &mut LiveSet) {
        let core = self.lock();
        add_tree(out, &core.committed);
        add_tree(out, &core.view);
        for (_, op) in &core.pending {
            for b in op_block_refs(op) {
                out.add(&b);
            }
        }
        out.ids.extend(core.uploads.keys().copied());
        for d in core.dirty.values() {
            for b in d.base_blocks.values() {
                out.add(b);
            }
        }
        add_nodes(out, core.orphans.values());
    }

    /// The seq of the newest snapshot whose entry was written at or before
    /// `cutoff` (0: replay from genesis). Never before the newest log
    /// base: the entries before it are gone (a window wider than the last
    /// collection's starts at the base), so a snapshot left there by an
    /// interrupted collection is not read.
    pub(super) async fn window_base(&self, cutoff: crate::format::meta::Time) -> Result<u64> {
        let keys = self.keys.get();
        let floor =
            crate::drive::volume::newest_base(self.unmirrored.as_ref(), &keys, self.keys.owner())
                .await?
                .map_or(0, |b| b.base.seq);
        let prefix = format!("v/{}/s/", hex(&self.keys.volume));
        let mut seqs: Vec<u64> = self
            .unmirrored
            .list_all(&prefix)
            .await?
            .iter()
            .filter_map(|m| u64::from_str_radix(m.key.strip_prefix(&prefix)?, 16).ok())
            .collect();
        seqs.sort_unstable();
        let head = self.lock().head.seq;
        for s in seqs.into_iter().rev().filter(|s| *s <= head && *s >= floor) {
            if self.entry_time(s).await? <= cutoff {
                return Ok(s);
            }
        }
        Ok(floor)
    }
}
