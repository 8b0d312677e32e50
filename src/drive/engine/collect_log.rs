//! Collection of one volume's metadata (the drive owner's `gc`): moves the
//! log's base forward to the oldest checkpoint the history retention
//! window needs, then deletes the log entries and checkpoint roots before
//! it, the pages no kept root names, and last the keyrings of generations
//! older than every kept entry and root (nothing refers to them: after
//! `share rotate --reencrypt` and a collection past the window, no object
//! of the old generations is left).
//!
//! Crash safety: the new base (a [`LogBase`] naming that checkpoint and
//! the hash of every entry it summarises) is put, Create-only, before
//! anything is deleted; readers start from the newest base, so a
//! collection stopped at any point leaves a readable volume, and the next
//! one deletes what is left (deleting is idempotent).
//!
//! Race rules (docs/ARCHITECTURE.md, "Collection"):
//! - A writer reuses the pages of a checkpoint only within half the grace
//!   of writing it, or of loading it as the newest root at open (engine
//!   `snapshot`); after that its next checkpoint writes every page.
//! - So a root before the base is kept, with its pages, while it or the
//!   root after it is younger than the grace (a root loaded as the newest
//!   had no successor when loaded). Every other page is kept when a kept
//!   root names it, when this engine's last checkpoint names it, or when
//!   it is younger than the grace itself.
//! - Pages are listed before roots: a page written after the listing is
//!   never a candidate.
//! - A log entry before the base is deleted only once older than the
//!   grace: a client puts its next entry only within half the grace of
//!   seeing the end of the log (engine `commit`), so the slot after its
//!   head, if taken meanwhile, is still taken, and its put fails instead
//!   of landing in a collected gap. A client that saw the end longer ago
//!   refreshes first; a refresh meeting a gap the newest base explains
//!   reloads past it (engine `catch_up`).
//! - Only checkpoints that load with the current keys become bases (the
//!   entries before one are summarised only after the chain from the
//!   previous base to it verified).

use super::Engine;
use crate::drive::error::{DriveError, Result};
use crate::drive::types::{GcOptions, GcReport};
use crate::drive::volume::{self, Base};
use crate::format::hex::decode as unhex;
use crate::format::meta::{self, LogBase};
use crate::store::{ObjectMeta, PutMode, StoreError};
use bytes::Bytes;
use std::collections::HashSet;
use std::time::SystemTime;

/// Objects deleted per request.
const DELETE_BATCH: usize = 1000;

impl Engine {
    /// Collects this volume's metadata that no state in the retention
    /// window needs (see the module doc), adding to `report`'s metadata
    /// figures.
    pub async fn collect_log(&self, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
        let store = self.unmirrored.as_ref();
        let keys = self.keys.get();
        let owner = *self.keys.owner();
        if self.me.ed25519.verifying_key() != owner {
            return Err(DriveError::NotPermitted);
        }
        let cutoff = crate::drive::clock::to_time(
            SystemTime::now()
                .checked_sub(opts.keep)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let prev = volume::newest_base(store, &keys, &owner).await?;
        let candidate = self.window_base(cutoff).await?;
        let Some(base) = self
            .advance_base(prev.as_ref(), candidate, opts.dry_run)
            .await?
        else {
            return Ok(());
        };
        // Pages first (see the race rules), then roots and entries.
        let pages = store.list_all(&volume::page_prefix(&keys.volume)).await?;
        let roots = store
            .list_all(&volume::snapshot_prefix(&keys.volume))
            .await?;
        let entries = store
            .list_all(&format!(
                "v/{}/l/",
                crate::format::hex::encode(&keys.volume)
            ))
            .await?;
        let listed_at = SystemTime::now();
        let young = |m: &ObjectMeta| {
            m.modified
                .and_then(|t| listed_at.duration_since(t).ok())
                .is_none_or(|age| age < opts.grace)
        };
        let mut keep: HashSet<String> = HashSet::new();
        if let Some(index) = self.checkpoint.lock().await.as_ref() {
            keep.extend(index.page_keys(&keys.volume));
        }
        // The oldest keyring generation a kept object is sealed under:
        // the base entry's (later entries are not older) or a kept root's.
        let mut needed = entry_generation(store, &keys.volume, base).await?;
        let mut doomed: Vec<&ObjectMeta> = Vec::new();
        let root_prefix = volume::snapshot_prefix(&keys.volume);
        let mut by_seq = Vec::with_capacity(roots.len());
        for m in &roots {
            let seq = seq_of(&m.key, &root_prefix)
                .filter(|s| volume::snapshot_key(&keys.volume, *s) == m.key)
                .ok_or_else(|| DriveError::tampered(&m.key, "not a snapshot name"))?;
            by_seq.push((seq, m));
        }
        by_seq.sort_unstable_by_key(|(s, _)| *s);
        for (i, (seq, m)) in by_seq.iter().enumerate() {
            // A writer may still reuse the pages of a root it wrote, or
            // loaded as the newest, less than half the grace ago: such a
            // root is young, or its successor is.
            let successor_young = by_seq.get(i + 1).is_some_and(|(_, n)| young(n));
            if *seq >= base || young(m) || successor_young {
                let bytes = volume::get(store, &m.key).await?;
                needed = needed.min(signed_generation(meta::SNAPSHOT_MAGIC, &m.key, &bytes)?);
                let named = volume::root_pages(&keys, &m.key, &bytes)?;
                keep.extend(named.iter().map(|h| volume::page_key(&keys.volume, h)));
            } else {
                doomed.push(m);
            }
        }
        let page_prefix = volume::page_prefix(&keys.volume);
        for m in &pages {
            m.key
                .strip_prefix(&page_prefix)
                .and_then(unhex::<32>)
                .filter(|h| volume::page_key(&keys.volume, h) == m.key)
                .ok_or_else(|| DriveError::tampered(&m.key, "not a page name"))?;
            if !keep.contains(&m.key) && !young(m) {
                doomed.push(m);
            }
        }
        let log_prefix = format!("v/{}/l/", crate::format::hex::encode(&keys.volume));
        for m in &entries {
            if seq_of(&m.key, &log_prefix).is_some_and(|s| s < base) && !young(m) {
                doomed.push(m);
            }
        }
        // Keyrings of generations older than every kept object go last
        // (an interrupted collection leaves no kept object without its
        // keyring): nothing refers to them any more.
        let rings = store
            .list_all(&volume::keyring_prefix(&keys.volume))
            .await?;
        let ring_limit = needed.min(keys.current().0);
        let old_rings: Vec<&ObjectMeta> = rings
            .iter()
            .filter(|m| keyring_generation(&keys.volume, &m.key).is_some_and(|g| g < ring_limit))
            .collect();
        let all = doomed.iter().chain(&old_rings);
        report.metadata_reclaimed_objects += (doomed.len() + old_rings.len()) as u64;
        report.metadata_reclaimed_bytes += all.map(|m| m.size).sum::<u64>();
        if !opts.dry_run {
            for batch in [&doomed, &old_rings] {
                let names: Vec<String> = batch.iter().map(|m| m.key.clone()).collect();
                for chunk in names.chunks(DELETE_BATCH) {
                    store.delete_many(chunk).await?;
                }
            }
        }
        tracing::info!(
            volume = %crate::drive::identity::hex8(&keys.volume),
            base,
            objects = doomed.len(),
            keyrings = old_rings.len(),
            oldest_generation_kept = ring_limit,
            dry_run = opts.dry_run,
            "metadata collection finished"
        );
        Ok(())
    }

    /// Puts a new log base at `candidate` (the oldest checkpoint the
    /// window needs) if it is past `prev`'s and its checkpoint loads with
    /// the current keys; returns the base in force afterwards (`None`:
    /// the log was never collected and is not now). In a dry run nothing
    /// is written but the would-be base is returned.
    async fn advance_base(
        &self,
        prev: Option<&Base>,
        candidate: u64,
        dry_run: bool,
    ) -> Result<Option<u64>> {
        let store = self.unmirrored.as_ref();
        let keys = self.keys.get();
        let prev_seq = prev.map(|b| b.base.seq);
        if candidate == 0 || prev_seq.is_some_and(|p| p >= candidate) {
            return Ok(prev_seq);
        }
        let Some(c) = volume::checkpoint_at_or_before(store, &keys, candidate)
            .await?
            .filter(|c| c.head.seq == candidate)
        else {
            tracing::info!(
                seq = candidate,
                "the oldest checkpoint the window needs predates the current keyring generation; log not collected this time"
            );
            return Ok(prev_seq);
        };
        // The kept log must lead from the new base to the accepted head.
        self.walk_log(candidate, |_| {}).await?;
        let (first, mut hash, mut generation) = match prev {
            Some(b) => {
                let h = volume::base_head(store, &keys, &b.base).await?;
                (b.base.seq + 1, h.hash, h.generation)
            }
            None => (0, [0; 32], 0),
        };
        let mut hashes = Vec::with_capacity((candidate + 1 - first) as usize);
        for seq in first..=candidate {
            let (_, head, _) = self
                .keys
                .fetch_entry(store, &self.me.x25519, seq, &hash, generation)
                .await?
                .ok_or_else(|| {
                    DriveError::tampered(
                        volume::log_key(&keys.volume, seq),
                        "log entry missing before the checkpoint that becomes the log's base",
                    )
                })?;
            hashes.push(head.hash);
            (hash, generation) = (head.hash, head.generation);
        }
        if hash != c.head.hash {
            return Err(DriveError::tampered(
                volume::snapshot_key(&keys.volume, candidate),
                "checkpoint covers another entry than the log holds",
            ));
        }
        let root = meta::sha256(
            &volume::get(store, &volume::snapshot_key(&keys.volume, candidate)).await?,
        );
        let base = LogBase {
            drive_id: keys.drive_id,
            volume: keys.volume,
            first,
            seq: candidate,
            root,
            prev: prev.map_or([0; 32], |b| b.hash),
            hashes,
        };
        if dry_run {
            return Ok(Some(candidate));
        }
        let key = volume::base_key(&keys.volume, candidate);
        match store
            .put(
                &key,
                Bytes::from(base.seal(&self.me.ed25519)),
                PutMode::Create,
            )
            .await
        {
            Ok(_) => {}
            // Another collection (an earlier, interrupted one, or the
            // owner on another machine) put it: it must be the same.
            Err(StoreError::PreconditionFailed { .. }) => {
                let there = volume::read_base(store, &keys, self.keys.owner(), candidate).await?;
                if there.base != base {
                    return Err(DriveError::tampered(
                        &key,
                        "a different log base is already at this position",
                    ));
                }
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(volume = %crate::drive::identity::hex8(&keys.volume), seq = candidate, summarised = candidate + 1 - first, "log base written");
        Ok(Some(candidate))
    }
}

/// The counter a metadata object name ends with (`None`: another name).
fn seq_of(key: &str, prefix: &str) -> Option<u64> {
    u64::from_str_radix(key.strip_prefix(prefix)?, 16).ok()
}

/// The keyring generation a signed metadata object (log entry, checkpoint
/// root) names in its public header.
fn signed_generation(magic: &[u8; 4], key: &str, bytes: &[u8]) -> Result<u32> {
    meta::peek_signed(magic, bytes)
        .map(|h| h.generation)
        .map_err(|e| DriveError::tampered(key, e.to_string()))
}

/// The generation of log entry `seq` of `vol` (which must be in the store).
async fn entry_generation(
    store: &dyn crate::store::ObjectStore,
    vol: &[u8; 16],
    seq: u64,
) -> Result<u32> {
    let key = volume::log_key(vol, seq);
    signed_generation(meta::ENTRY_MAGIC, &key, &volume::get(store, &key).await?)
}

/// The generation a keyring name of `vol` stands for (`None`: another
/// name).
fn keyring_generation(vol: &[u8; 16], key: &str) -> Option<u32> {
    let g = u32::from_str_radix(key.strip_prefix(&volume::keyring_prefix(vol))?, 16).ok()?;
    (volume::keyring_key(vol, g) == key).then_some(g)
}
