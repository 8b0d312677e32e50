//! A running client behind a collection: another client of the owner ran
//! `gc` and deleted the log entries after this client's head before it
//! pulled them. Instead of failing every refresh on the gap, the client
//! checks that the owner's log bases list its head, reloads the committed
//! state from the newest checkpoint (or the one the newest base names)
//! plus the log after it, and rebases its own pending changes on that, as
//! a refresh does.
//!
//! Invariants:
//! - Only a gap a log base explains is caught up: the entry after the head
//!   is absent and the newest base lies past the head. The base chain must
//!   then list this client's head with the hash it accepted
//!   ([`volume::check_collected`]: `Rollback` when omitted or forked,
//!   `Tampered` for a base not signed by the owner); any other gap stays
//!   the `Tampered` error the refresh met.
//! - The state is loaded and verified exactly as an open loads it: the
//!   newest checkpoint of the current keys at or after the base (else the
//!   one the base names by hash), then every entry after it on the chain.
//! - Nothing of this client is lost: pending ops are rebased on the new
//!   committed tree (conflict copies as usual; a rename onto a name the
//!   other clients took gets a conflict name: those the entries still in
//!   the store took, and, for the collected ones, every name linking to
//!   another node in the reloaded tree than in the tree at the head),
//!   open files whose node went
//!   away stay readable as orphans, the journal is rewritten if the rebase
//!   changed ops.
//! - The pages this engine's last checkpoint named may be collected: they
//!   are reused only if the loaded checkpoint is the newest root (its own
//!   pages); otherwise the next checkpoint writes every page.

use super::Engine;
use super::load::{self, Collected};
use super::rebase::{Taken, names_changed, names_taken};
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::hex8;
use crate::drive::volume::{self, Head};
use crate::store::StoreError;
use std::collections::HashSet;

impl Engine {
    /// Whether the missing entry after `head` was collected: it is absent
    /// and the newest log base lies past `head` (whether the bases are
    /// honest is [`Engine::catch_up`]'s check).
    pub(super) async fn collected_after(&self, head: &Head) -> Result<bool> {
        let next = volume::log_key(&self.keys.volume, head.seq + 1);
        match self.store.head(&next).await {
            Ok(_) => return Ok(false),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let bases = volume::base_seqs(self.store.as_ref(), &self.keys.get()).await?;
        Ok(bases.last().is_some_and(|b| *b > head.seq))
    }

    /// Reloads the committed state past a collection that removed the
    /// entries after `head` (see the module doc); call with `commit_lock`
    /// held.
    pub(super) async fn catch_up(&self, head: Head) -> Result<()> {
        let store = self.store.as_ref();
        // The collected entries may have rotated the keys.
        self.keys.reload(store, &self.me.x25519).await?;
        let keys = self.keys.get();
        volume::check_collected(store, &keys, self.keys.owner(), head.seq, &head.hash)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "refusing the store's log"))?;
        let base = volume::newest_base(store, &keys, self.keys.owner())
            .await?
            .ok_or_else(|| {
                DriveError::tampered(
                    volume::log_key(&keys.volume, head.seq + 1),
                    "log base gone while catching up",
                )
            })?;
        // The newest checkpoint if it is not before the base, else the
        // base's (not the newest root: its pages are not reused).
        let x = &self.me.x25519;
        let load::Start {
            mut tree,
            head: mut at,
            index,
            ..
        } = load::start(
            store,
            &self.keys,
            x,
            u64::MAX,
            Collected::Known(Some(&base)),
        )
        .await?;
        let snapshot_seq = at.seq;
        let mut touched = HashSet::new();
        // Names other clients took in the entries still there; those the
        // collection removed are told by the trees (see the module doc).
        let client = self.cache.client_id();
        let mut taken = Taken::new();
        let (t, h) = (&mut tree, &mut at);
        load::replay(store, &self.keys, x, t, h, None, Some(&mut touched), |e| {
            if e.batch.client != client {
                taken.extend(names_taken(&e.batch.ops));
            }
            Ok(())
        })
        .await?;
        let mut last = self.checkpoint.lock().await;
        {
            let mut core = self.lock();
            let core = &mut *core;
            let simple = core.pending.is_empty();
            if !simple {
                taken.extend(names_changed(&core.committed, &tree));
            }
            core.committed = tree;
            core.head = at;
            core.touched = touched;
            core.last_snapshot = snapshot_seq;
            core.checkpoint_written = index.as_ref().map(|_| self.opts.clock.now());
            if let Some(index) = &index {
                // Id fill positions follow the loaded checkpoint's pages,
                // as at open and after a checkpoint this client writes.
                core.ids.set_step(index.ids_per_step());
            }
            // As a refresh does without pending changes: unsealed writes
            // to files gone and closed here are dropped (open ones stay
            // readable as orphans; the rebase keeps those in every case).
            let gone = match simple {
                true => (core.view.nodes.iter())
                    .filter(|(id, _)| !core.committed.nodes.contains_key(id))
                    .map(|(_, n)| (**n).clone())
                    .collect(),
                false => Vec::new(),
            };
            core.rebase(&self.me.card_id, &taken);
            core.keep_open(gone);
        }
        if let Some(index) = &index {
            self.mirror().retain_pages(index.page_keys(&keys.volume));
        }
        *last = index;
        drop(last);
        tracing::warn!(
            volume = %hex8(&keys.volume),
            from = head.seq,
            base = base.base.seq,
            to = at.seq,
            "the entries after this client's head were collected by the owner: reloaded from the newest checkpoint and rebased the pending changes"
        );
        self.save_state(false)?;
        self.maybe_snapshot().await;
        Ok(())
    }
}
