//! Garbage collection across every volume of the drive (owner only):
//! content objects (list `c/`, gather what each volume still needs,
//! delete the rest that is older than the grace period), then each
//! volume's metadata before the oldest state the retention window needs
//! (engine `collect_log`: a new owner-signed log base first, then the
//! entries, checkpoint roots and pages it makes unneeded).
//!
//! Race rules (docs/ARCHITECTURE.md, "Collection"):
//! - The listing is taken before any volume's live set: an object uploaded
//!   after the listing is never a candidate; one uploaded before it is
//!   either referenced by a state the live sets read, still held by its
//!   client, or garbage.
//! - An object younger than `grace` by the store's clock is never deleted:
//!   another client's upload that is not committed yet is in no live set.
//!   Clients re-seal instead of committing a new reference to an object of
//!   their own older than half the grace (engine `commit`).
//! - A volume that cannot be read fails the whole collection before
//!   anything is deleted (its references are unknown).
//! - Deleting is idempotent: a collection interrupted half-way deletes
//!   only garbage, and the next one finishes it.
//!
//! Repacking: among the packs older than the grace, those `repack_choice`
//! picks (every pack under half live, then the emptiest until the dead
//! bytes left in packs are within a share of their live bytes) have the
//! block versions the current trees name sealed again into new packs
//! (engine `repack`), after the deletions. A pack is live in this run's
//! sets, so it goes at a later collection, once no state in the window
//! names it.

use super::Router;
use super::repack_choice::{self, PackUse};
use crate::drive::engine::gc::LiveSet;
use crate::drive::error::{DriveError, Result};
use crate::drive::types::{GcOptions, GcReport};
use crate::drive::volume;
use crate::format::hex::decode as unhex;
use futures_util::{StreamExt, stream};
use std::collections::{BTreeSet, HashSet};
use std::time::SystemTime;

/// Objects deleted per request.
const DELETE_BATCH: usize = 1000;
/// Delete requests in flight at once. A remote S3 answers each batch
/// after a round trip, so several in flight hide the latency; the local
/// SeaweedFS of the tests deletes about 3,600 objects/s either way, about
/// what it lists, so a collection of 100,000 there takes ~55 s.
const DELETES_AT_ONCE: usize = 4;

impl Router {
    /// Collects content objects nothing needs (see the module doc);
    /// `progress` gets (objects examined or deleted, total).
    pub async fn gc(
        &self,
        opts: &GcOptions,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<GcReport> {
        self.owner_only()?;
        let started = SystemTime::now();
        let store = self.store().clone();
        let listed = store.list_all("c/").await?;
        let listed_at = SystemTime::now();
        // Every volume with a keyring, each through its engine (opened on
        // first use).
        let mut vols = BTreeSet::new();
        for m in store.list_all("k/").await? {
            match m.key.split('/').nth(1).and_then(unhex::<16>) {
                Some(v) => vols.insert(v),
                None => return Err(DriveError::tampered(&m.key, "not a keyring name")),
            };
        }
        let mut live = LiveSet::default();
        for v in &vols {
            let e = self.engine(*v).await?;
            // The live set is read up to the engine's head: a head older
            // than the store's (a mount that has not refreshed yet) would
            // leave out what other clients committed since, and their
            // objects would go.
            e.refresh().await?;
            e.live_blocks(opts.keep, &mut live).await?;
        }
        let mut packs = Vec::new();
        let mut report = GcReport {
            objects: listed.len() as u64,
            bytes: listed.iter().map(|m| m.size).sum(),
            ..Default::default()
        };
        let mut doomed = Vec::new();
        for m in &listed {
            let Some(id) = content_id(&m.key) else {
                continue; // Not a content object name: not ours to judge.
            };
            let age = m
                .modified
                .and_then(|t| listed_at.duration_since(t).ok())
                .unwrap_or_default();
            let young = m.modified.is_none() || age < opts.grace;
            if live.ids.contains(&id) {
                report.live_objects += 1;
                report.live_bytes += m.size;
                if !young && live.packs.contains_key(&id) {
                    packs.push(PackUse {
                        id,
                        size: m.size,
                        live: live.pack_live_bytes(&id),
                    });
                }
                continue;
            }
            if young {
                report.young_objects += 1;
                report.young_bytes += m.size;
                continue;
            }
            report.reclaimed_objects += 1;
            report.reclaimed_bytes += m.size;
            doomed.push(m.key.clone());
        }
        let total = doomed.len() as u64;
        progress(0, total);
        if !opts.dry_run {
            let mut done = 0;
            // Owned batches: a stream borrowing `doomed` would not be Send
            // for every lifetime the spawned mount task needs.
            let owned: Vec<Vec<String>> = doomed.chunks(DELETE_BATCH).map(<[_]>::to_vec).collect();
            let mut batches = stream::iter(owned)
                .map(|chunk| {
                    let store = store.clone();
                    async move { store.delete_many(&chunk).await.map(|()| chunk.len()) }
                })
                .buffer_unordered(DELETES_AT_ONCE);
            while let Some(deleted) = batches.next().await {
                done += deleted? as u64;
                progress(done, total);
            }
        }
        // Then the live block versions of the packs chosen into new ones.
        let sparse: HashSet<[u8; 16]> =
            repack_choice::choose(&packs, opts.pack_waste_percent, opts.max_repack_moved)
                .into_iter()
                .collect();
        if opts.dry_run {
            report.repacked_packs = sparse.len() as u64;
            report.repacked_bytes = sparse.iter().map(|id| live.pack_live_bytes(id)).sum();
        } else if !sparse.is_empty() {
            for v in &vols {
                let moved = self.engine(*v).await?.repack(&sparse).await?;
                report.repacked_packs += moved.packs.len() as u64;
                report.repacked_bytes += moved.bytes;
            }
        }
        // Then each volume's log, checkpoints and pages before the oldest
        // state the window needs (engine `collect_log`).
        for v in &vols {
            self.engine(*v)
                .await?
                .collect_log(opts, &mut report)
                .await?;
        }
        report.millis = started.elapsed().map_or(0, |d| d.as_millis() as u64);
        tracing::info!(
            reclaimed_objects = report.reclaimed_objects,
            reclaimed_bytes = report.reclaimed_bytes,
            live_objects = report.live_objects,
            repacked_packs = report.repacked_packs,
            dry_run = opts.dry_run,
            "content collection finished"
        );
        Ok(report)
    }
}

/// The block id a content object name stands for (`None`: not one).
fn content_id(key: &str) -> Option<[u8; 16]> {
    let id = unhex::<16>(key.strip_prefix("c/")?)?;
    (volume::content_key(&id) == key).then_some(id)
}

#[cfg(test)]
mod tests {
    use crate::format::hex::encode as hex;

    #[test]
    fn only_content_names_parse() {
        let id = [7u8; 16];
        assert_eq!(super::content_id(&format!("c/{}", hex(&id))), Some(id));
        assert_eq!(super::content_id("c/0707"), None);
        assert_eq!(super::content_id("c/zz"), None);
        assert_eq!(super::content_id(&format!("k/{}", hex(&id))), None);
    }
}
