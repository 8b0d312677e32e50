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
use crate::format::hex::encode as hex;
use crate::format::meta::Node;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Block ids.
pub type BlockIds = HashSet<[u8; 16]>;

fn add_nodes<'a>(out: &mut BlockIds, nodes: impl IntoIterator<Item = &'a Node>) {
    for n in nodes {
        out.extend(n.blocks.values().map(|b| b.id));
    }
}

fn add_tree(out: &mut BlockIds, t: &Tree) {
    add_nodes(out, t.nodes.values().map(|n| &**n));
}

impl Engine {
    /// Adds to `out` every block id this volume needs with history kept
    /// for `keep` (see the module doc).
    pub async fn live_blocks(&self, keep: Duration, out: &mut BlockIds) -> Result<()> {
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
                        for op in &batch.ops {
                            out.extend(op_block_refs(op).iter().map(|b| b.id));
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
    pub fn held_blocks(&self, out: &mut BlockIds) {
        let core = self.lock();
        add_tree(out, &core.committed);
        add_tree(out, &core.view);
        for (_, op) in &core.pending {
            out.extend(op_block_refs(op).iter().map(|b| b.id));
        }
        out.extend(core.uploads.keys().copied());
        for d in core.dirty.values() {
            out.extend(d.base_blocks.values().map(|b| b.id));
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
