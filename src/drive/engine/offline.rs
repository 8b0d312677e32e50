//! An engine opened offline (from the metadata mirror) meeting the store
//! again: before its first commit or refresh, the store's copy must hold
//! everything this client accepted, checked exactly as an open checks it.
//!
//! Invariants:
//! - While `offline_since` is set, nothing is written to the log and no
//!   entry is pulled: [`Engine::check_reconnected`] runs first, under
//!   `commit_lock`, and clears it only when the store's header has the
//!   pinned hash, its keyrings keep every generation held (same keys, none
//!   hidden) and its log holds this client's head entry with the same hash.
//! - A store that came back rolled back or forked fails that check with
//!   `Rollback` / `Tampered` on every attempt: queued changes stay in the
//!   journal, nothing is committed, `sync` reports the error.

use super::Engine;
use super::open::{check_entry, read_header};
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::hex8;
use crate::drive::volume;

impl Engine {
    /// Verifies the store's copy once after an offline open (a no-op
    /// otherwise); call with `commit_lock` held.
    pub(super) async fn check_reconnected(&self) -> Result<()> {
        let Some(since) = self.lock().offline_since else {
            return Ok(());
        };
        let r = self.verify_store_copy().await;
        self.note_reachable(&r);
        if let Err(e) = &r
            && !super::mirror::unreachable(e)
        {
            tracing::error!(volume = %hex8(&self.keys.volume), error = %e, "the store answers again but its copy contradicts what this client accepted: nothing is committed (changes stay queued in the journal)");
        }
        r?;
        let head = {
            let mut core = self.lock();
            core.offline_since = None;
            core.head.seq
        };
        let offline_for = since.elapsed().unwrap_or_default().as_secs();
        tracing::info!(volume = %hex8(&self.keys.volume), head, offline_for, "store reachable again: header, keyrings and log head verified; committing queued changes");
        Ok(())
    }

    async fn verify_store_copy(&self) -> Result<()> {
        let h = read_header(self.store.as_ref()).await?;
        if h.hash != self.header_hash {
            return Err(DriveError::tampered(
                volume::HEADER_KEY,
                "drive header differs from the one this client accepted before",
            ));
        }
        self.keys
            .reload(self.store.as_ref(), &self.me.x25519)
            .await?;
        let head = self.lock().head;
        check_entry(self.store.as_ref(), &self.keys, head.seq, &head.hash).await
    }
}
