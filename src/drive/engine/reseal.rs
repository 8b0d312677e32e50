//! The collection race rule on the committing side: a client never commits
//! a new reference to a content object of its own that is older than half
//! the collectors' grace period; it seals the same bytes again under a new
//! object id and commits that instead.
//!
//! Why it closes the race: a collector lists the store before it reads
//! the logs, and deletes only unreferenced objects older than the grace
//! by the listing. An object this client sealed less than grace/2 before
//! the commit is younger than the grace at any listing taken before the
//! commit lands, unless the commit takes over grace/2 (a client suspended
//! mid-commit) or clocks disagree by more: the other half of the grace.
//! An object re-sealed under a new id is in no listing taken before it.
//!
//! The same rule for refs that are not this client's pending objects (a
//! clone copy, a conflict copy's base blocks, a ref read before the
//! collector repacked its file): such a ref is committed only while the
//! committed tree at the head the entry lands on names its object; else
//! its bytes are sealed again first. Why that is enough: a collector whose
//! walk reached a head at or before that one finds the object named there
//! (or by the tree that handed it on, down to a seal that is protected by
//! the grace), and a collector past it read this client's entry, since a
//! log put lands only right after the head it was built on. When the
//! bytes are gone already (cache and store), the ops naming them are
//! refused: dropped with an error naming the file, never committed to
//! turn into EIO later.
//!
//! Invariants:
//! - Only objects this client sealed (`Core::sealed_at`) more than half
//!   the grace ago, and objects not sealed by it, that the committed tree
//!   does not name are re-sealed (a block the committed tree names is
//!   live for every collector). `commit_once` checks the foreign ones
//!   again after each rebase before its log put ([`Engine::foreign_unnamed`]).
//! - The replacement is substituted in the pending ops, the view, open
//!   unlinked files and the bases of unsealed writes, and the journal is
//!   rewritten, under one hold of the lock; the old object is dropped from
//!   the upload queue (the store's copy is garbage for the next collection).
//! - A pack is stale as one object: every block version of it that a
//!   pending op names is re-sealed (matched by its place, never by the
//!   pack id alone, so no other block version of the pack is replaced),
//!   and then the pack is dropped.

use super::Engine;
use super::journal::{op_block_refs, path_of};
use super::state::Core;
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::Tree;
use crate::format::meta::{BlockRef, Node, Op};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

impl Engine {
    /// Re-seals the pending ops' own objects that are older than half the
    /// grace (see the module doc); returns how many objects were. A pack is
    /// re-sealed block version by block version (each under a new key and
    /// place) and dropped once none of its block versions is named.
    pub(super) async fn reseal_stale(&self) -> Result<usize> {
        let limit = self.opts.gc_grace / 2;
        let now = self.opts.clock.now();
        let stale: Vec<([u8; 16], Vec<BlockRef>)> = {
            let mut core = self.lock();
            // Every distinct block version the pending ops name, by object.
            let mut named: HashMap<[u8; 16], Vec<BlockRef>> = HashMap::new();
            for (_, op) in &core.pending {
                for b in op_block_refs(op) {
                    let versions = named.entry(b.id).or_default();
                    if !versions.iter().any(|v| v.place() == b.place()) {
                        versions.push(b);
                    }
                }
            }
            let stale = |t: &std::time::SystemTime| {
                now.duration_since(*t).unwrap_or(Duration::ZERO) > limit
            };
            // Entries of objects no pending op names go once they are
            // stale (a ref to one would be sealed again anyway). A younger
            // one stays: its sealer may not have queued the op naming it
            // yet (a repack or re-encryption seals a file's blocks, then
            // queues its op), and dropped now, that op's ref would look
            // foreign and be sealed again for nothing.
            core.sealed_at
                .retain(|id, t| named.contains_key(id) || !stale(t));
            let mut old: HashSet<[u8; 16]> = core
                .sealed_at
                .iter()
                .filter(|(id, t)| named.contains_key(*id) && stale(t))
                .map(|(id, _)| *id)
                .collect();
            // Objects this client did not seal count as old: only the
            // committed tree keeps them live.
            old.extend(named.keys().filter(|id| !core.sealed_at.contains_key(*id)));
            // The whole tree is walked only when something is that old:
            // every commit walking it made a burst of creates quadratic.
            let committed = named_by(&core.committed, &old);
            let ids: Vec<[u8; 16]> = old
                .into_iter()
                .filter(|id| !committed.contains(id))
                .collect();
            // A stale pack still open takes no more block versions: its
            // replacements go into a new one.
            core.close_pack_in(&ids);
            ids.into_iter()
                .map(|id| (id, named.remove(&id).unwrap_or_default()))
                .collect()
        };
        let mut done = 0;
        for (old_id, versions) in &stale {
            let own = self.lock().sealed_at.contains_key(old_id);
            let mut fresh = Vec::with_capacity(versions.len());
            for old in versions {
                match self.read_stored_block(0, old.clone()).await {
                    Ok(plain) => fresh.push((old, self.seal_stored_block(&plain)?)),
                    Err(e @ DriveError::Tampered { .. }) if !own => {
                        self.refuse_naming(old, &e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if fresh.is_empty() {
                continue;
            }
            done += 1;
            tracing::info!(
                old = %crate::drive::volume::content_key(old_id),
                versions = fresh.len(),
                "content sealed more than half the collection grace ago: sealed again under new ids before committing a reference to it"
            );
            {
                let mut core = self.lock();
                let core = &mut *core;
                for (old, new) in &fresh {
                    for (_, op) in core.pending.iter_mut() {
                        replace_in_op(op, old, new);
                    }
                    // Only nodes naming the old block are copied out of the
                    // tree they share with the committed one.
                    core.view.nodes.change_where(
                        |n| n.blocks.values().any(|b| b.place() == old.place()),
                        |n| replace_in_node(n, old, new),
                    );
                    for n in core.orphans.values_mut() {
                        replace_in_node(n, old, new);
                    }
                    for d in core.dirty.values_mut() {
                        replace_in_blocks(d.base_blocks.values_mut(), old, new);
                    }
                }
                core.sealed_at.remove(old_id);
                core.upload_done(old_id);
                core.journal
                    .rewrite(&core.pending, core.dirty.keys().copied())?;
            }
            self.cache.unpin(old_id);
        }
        Ok(done)
    }

    /// Whether a pending op names an object this client did not seal that
    /// the committed tree does not name (it must be sealed again before a
    /// commit: see the module doc). Walks the tree only when a pending op
    /// names such an object.
    pub(super) fn foreign_unnamed(&self) -> bool {
        let core = self.lock();
        let foreign: HashSet<[u8; 16]> = core
            .pending
            .iter()
            .flat_map(|(_, op)| op_block_refs(op))
            .map(|b| b.id)
            .filter(|id| !core.sealed_at.contains_key(id))
            .collect();
        named_by(&core.committed, &foreign).len() < foreign.len()
    }

    /// Drops the pending ops naming `block`, whose bytes are gone from the
    /// cache and the store (`e`): committing them would name content
    /// nobody can read. The view is rebuilt without them.
    fn refuse_naming(&self, block: &BlockRef, e: &DriveError) {
        let mut core = self.lock();
        let core: &mut Core = &mut core;
        let place = block.place();
        let before = core.pending.len();
        let names = |op: &Op| op_block_refs(op).iter().any(|b| b.place() == place);
        let refused: Vec<u64> = core
            .pending
            .iter()
            .filter(|(_, op)| names(op))
            .filter_map(|(_, op)| op_node(op))
            .collect();
        core.pending.retain(|(_, op)| !names(op));
        let dropped = (before - core.pending.len()) as u64;
        let files: Vec<String> = (refused.iter())
            .map(|n| path_of(&core.view, *n).unwrap_or_else(|| format!("node {n}")))
            .collect();
        core.refused_changes += dropped;
        core.last_refused = Some((
            std::time::SystemTime::now(),
            format!(
                "changes to {} refused: they name {}, collected before they were committed ({e})",
                files.join(", "),
                crate::drive::volume::content_key(&block.id)
            ),
        ));
        tracing::error!(
            object = %crate::drive::volume::content_key(&block.id),
            error = %e,
            files = ?files,
            ops = dropped,
            "a pending change names content that was collected before it could be committed (a copy of a file another client changed or repacked meanwhile): the change is refused, the file stays as it was"
        );
        // The view again as the committed tree plus what is left (a later
        // change of the same file becomes a conflict copy).
        core.rebase(&self.me.card_id, &Default::default());
        if let Err(err) = core
            .journal
            .rewrite(&core.pending, core.dirty.keys().copied())
        {
            tracing::error!(error = %err, "could not rewrite the journal after refusing a change");
        }
    }
}

/// The node a content-naming op changes.
fn op_node(op: &Op) -> Option<u64> {
    match op {
        Op::SetContent { node, .. } => Some(*node),
        Op::Create { node, .. } => Some(node.id),
        _ => None,
    }
}

/// The objects among `ids` that a block ref of `t` names (no walk when
/// `ids` is empty).
fn named_by(t: &Tree, ids: &HashSet<[u8; 16]>) -> HashSet<[u8; 16]> {
    if ids.is_empty() {
        return HashSet::new();
    }
    t.nodes
        .values()
        .flat_map(|n| n.blocks.values().map(|b| b.id))
        .filter(|id| ids.contains(id))
        .collect()
}

fn replace_in_blocks<'a>(
    blocks: impl Iterator<Item = &'a mut BlockRef>,
    old: &BlockRef,
    new: &BlockRef,
) {
    for b in blocks {
        if b.place() == old.place() {
            *b = new.clone();
        }
    }
}

fn replace_in_node(n: &mut Node, old: &BlockRef, new: &BlockRef) {
    replace_in_blocks(n.blocks.values_mut(), old, new);
}

fn replace_in_op(op: &mut Op, old: &BlockRef, new: &BlockRef) {
    match op {
        Op::SetContent { blocks, .. } => {
            replace_in_blocks(blocks.iter_mut().map(|(_, b)| b), old, new)
        }
        Op::Create { node, .. } => replace_in_node(node, old, new),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::past::tests::open;
    use crate::drive::identity::Identity;
    use crate::drive::tree::ROOT;
    use crate::drive::types::Caller;
    use crate::format::meta::Op;
    use crate::store::{MemoryStore, ObjectStore};
    use std::ffi::OsStr;
    use std::sync::Arc;

    /// A block version sealed before the op naming it is queued (what a
    /// repack does, file by file), with a commit in between, is committed
    /// as sealed: its object is this client's and young, not foreign, so
    /// it is not sealed again into a second object left as garbage.
    #[tokio::test]
    async fn a_block_sealed_before_its_op_is_queued_is_not_sealed_again() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let me = Identity::generate();
        super::Engine::create_drive(store.clone(), &me, b"card")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = open(&store, &me, dir.path()).await;
        let who = Caller { uid: 0, gid: 0 };
        let (attr, fh) = e
            .create_file(ROOT, OsStr::new("f"), 0o644, libc::O_RDWR, who)
            .unwrap();
        e.write(attr.ino, fh, 0, &[1; 4096]).await.unwrap();
        e.release_handle(fh);
        e.sync(&|_, _| {}).await.unwrap();

        let sealed = e.seal_stored_block(&[1; 4096]).unwrap();
        // A commit (the background committer's) before the op is queued.
        e.commit_once().await.unwrap();
        let node = e.lock().committed.nodes.get(&attr.ino).unwrap().clone();
        e.lock()
            .push(Op::SetContent {
                node: node.id,
                base: node.version,
                version: node.version,
                size: node.size,
                drop_from: u64::MAX,
                blocks: vec![(0, sealed.clone())],
                mtime: node.mtime,
            })
            .unwrap();
        e.sync(&|_, _| {}).await.unwrap();
        let now = e.lock().committed.nodes.get(&attr.ino).unwrap().clone();
        assert_eq!(now.blocks.get(&0), Some(&sealed), "sealed again");
        e.shutdown().await.unwrap();
    }
}
