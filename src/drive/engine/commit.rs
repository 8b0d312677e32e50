//! Moving `head`: pulling other clients' log entries (refresh), writing
//! this client's pending ops as signed log entries (commit, after their
//! content is uploaded), snapshots, and the background task doing both.
//!
//! Invariants:
//! - Commits and refreshes are serialised by `commit_lock`.
//! - A log entry is put Create-only after every content object its ops
//!   name is in the store; losing the race means refresh and rebase.
//! - Only a writer of the current generation writes snapshots.

use super::Engine;
use crate::drive::clock::{now, to_time};
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::Tree;
use crate::drive::types::DriveStatus;
use crate::drive::volume::{self, Head};
use crate::format::meta::{self, Batch, Op};
use crate::store::{PutMode, StoreError};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinError;

/// Entries between snapshots: opening reads at most this many entries
/// after the newest snapshot.
pub const SNAPSHOT_EVERY: u64 = 64;
/// Nodes changed since the last checkpoint that make the next one due
/// whatever the entry count: entries of a burst hold up to `MAX_BATCH`
/// ops each, and without this bound the log tail after a burst (what an
/// open replays, and what the first checkpoint after it rewrites) could
/// reach 64 × 4096 ops.
pub const SNAPSHOT_TOUCHED: usize = 8192;
/// Nodes changed since the last checkpoint from which a clean shutdown
/// writes one: the tail of a burst (a copy, an unpacked archive). The
/// next open then replays no tail and the first checkpoint after it does
/// not rewrite the burst's pages on the next changes' account; the same
/// pages are written, at the end of the burst that changed them. Below
/// this a shutdown writes none: at a million files a checkpoint's root
/// alone is 256 KiB, more than a few changed nodes are worth.
pub const SHUTDOWN_TOUCHED: usize = SNAPSHOT_TOUCHED / 8;
/// How long the background committer waits after a change so that a
/// burst of changes becomes one log entry.
const COMMIT_DELAY: Duration = Duration::from_millis(25);
/// Unsealed writes untouched for this long are sealed and queued for
/// upload by the background task.
const IDLE_SEAL: Duration = Duration::from_secs(2);
/// Largest number of ops in one log entry.
const MAX_BATCH: usize = 4096;
/// Under continuous writing, a commit (of the ops whose content is
/// uploaded) about this often: other clients see changes and a crash
/// window stays short.
const COMMIT_EVERY: Duration = Duration::from_secs(4);
/// Bounds of the content bytes uploaded per commit.
pub(super) const MIN_BATCH_BYTES: u64 = 8 << 20;
const MAX_BATCH_BYTES: u64 = 1 << 30;

/// Marks a commit as running (for the stall signal) until dropped.
struct CommitRunning<'a>(&'a Engine);

impl<'a> CommitRunning<'a> {
    fn start(e: &'a Engine) -> Self {
        e.lock().commit_since = Some(Instant::now());
        CommitRunning(e)
    }
}

impl Drop for CommitRunning<'_> {
    fn drop(&mut self) {
        self.0.lock().commit_since = None;
    }
}

impl Engine {
    /// Pulls entries committed by others and rebases pending ops on them.
    pub async fn refresh(&self) -> Result<()> {
        let _g = self.commit_lock.lock().await;
        self.refresh_locked().await
    }

    /// [`Engine::refresh`] with `commit_lock` held.
    pub(super) async fn refresh_locked(&self) -> Result<()> {
        self.check_reconnected().await?;
        let started = self.opts.clock.now();
        let mut head = self.lock().head;
        let mut batches = Vec::new();
        loop {
            let r = self
                .keys
                .fetch_entry(
                    self.store.as_ref(),
                    &self.me.x25519,
                    head.seq + 1,
                    &head.hash,
                    head.generation,
                )
                .await;
            self.note_reachable(&r);
            let r = match r {
                // Another client of the owner collected the entries after
                // our head: reload past the collection (engine `catch_up`).
                Err(e @ DriveError::Tampered { .. }) => match self.collected_after(&head).await {
                    Ok(true) => {
                        self.catch_up(head).await?;
                        self.lock().log_end_seen = Some(started);
                        return Ok(());
                    }
                    Ok(false) => Err(e),
                    Err(other) => Err(other),
                },
                r => r,
            };
            let Some((batch, next, _)) = r? else { break };
            head = next;
            tracing::debug!(seq = head.seq, ops = batch.ops.len(), "pulled a log entry");
            batches.push(batch);
        }
        self.lock().log_end_seen = Some(started);
        if batches.is_empty() {
            return Ok(());
        }
        {
            let mut core = self.lock();
            let simple = core.pending.is_empty();
            let core = &mut *core;
            for b in &batches {
                apply_batch(&mut core.committed, b, &mut core.touched);
                if simple {
                    let mut removed = Vec::new();
                    for op in &b.ops {
                        if let Ok(r) = core.view.apply(op) {
                            removed.extend(r);
                        }
                    }
                    core.keep_open(removed);
                }
            }
            core.fold_committed();
            core.head = head;
            if !simple {
                // This client's own entries (a put that landed though it
                // reported a failure) take nothing from it.
                let client = self.cache.client_id();
                let theirs = batches.iter().filter(|b| b.client != client);
                let taken = super::rebase::names_taken(theirs.flat_map(|b| &b.ops));
                core.rebase(&self.me.card_id, &taken);
            }
            core.rebind_moved_bases();
        }
        self.save_state(false)?;
        self.maybe_snapshot().await;
        Ok(())
    }

    /// Whether this client last saw the end of the log half the collection
    /// grace ago or more (or never since it opened): collectors keep log
    /// entries younger than the grace, so until then the entry after the
    /// head, if another writer put one, is still in the store and a log
    /// put there fails; after it, a collection may have deleted it and the
    /// put would succeed in the gap, off the log every other client reads.
    fn log_end_stale(&self) -> bool {
        let now = self.opts.clock.now();
        self.lock().log_end_seen.is_none_or(|t| {
            now.duration_since(t).unwrap_or(Duration::ZERO) >= self.opts.gc_grace / 2
        })
    }

    /// A commit that has had no answer from the store for this long counts
    /// as a store that does not answer (status says unreachable; writers
    /// held back by a full cache get ENOSPC): twice the store timeout.
    pub(super) fn stall(&self) -> Duration {
        self.opts.store_timeout * 2
    }

    pub(super) fn note_reachable<T>(&self, r: &Result<T>) {
        let reachable = !matches!(r, Err(DriveError::Store(e)) if e.is_transient());
        let mut core = self.lock();
        core.reachable = reachable;
        if r.is_ok() {
            core.last_store_ok = Instant::now();
        }
    }

    /// Sizes the next batch so that a commit lands about every
    /// `COMMIT_EVERY` at the upload rate just measured.
    fn adapt_batch(&self, bytes: u64, took: Duration) {
        if bytes < MIN_BATCH_BYTES || took.is_zero() {
            return;
        }
        let rate = bytes as f64 / took.as_secs_f64();
        let next = (rate * COMMIT_EVERY.as_secs_f64()) as u64;
        self.batch_bytes.store(
            next.clamp(MIN_BATCH_BYTES, MAX_BATCH_BYTES),
            Ordering::Relaxed,
        );
    }

    /// Uploads sealed content, then commits pending ops, retrying the
    /// log put after rebasing when another client won the race.
    pub async fn commit_once(&self) -> Result<()> {
        let _g = self.commit_lock.lock().await;
        self.keys.check_member()?;
        self.journal_pending(false)?;
        self.check_reconnected().await?;
        let _running = CommitRunning::start(self);
        // Never a new reference to an own object a collector may be
        // deleting (see `reseal`).
        self.reseal_stale().await?;
        let budget = self.batch_bytes.load(Ordering::Relaxed);
        let (uploads, upto) = {
            let mut core = self.lock();
            let batch = core.next_batch(budget);
            // Its upload starts now: the open pack takes no more appends.
            core.close_pack_in(&batch.0);
            batch
        };
        let started = Instant::now();
        let bytes = {
            let core = self.lock();
            uploads
                .iter()
                .filter_map(|id| core.uploads.get(id))
                .sum::<u64>()
        };
        self.upload(&uploads).await?;
        self.adapt_batch(bytes, started.elapsed());
        let Some(upto) = upto else { return Ok(()) };
        // Whether this attempt looked for the end of the log already.
        let mut end_checked = false;
        loop {
            let (ops, last, head) = {
                let core = self.lock();
                let ops: Vec<(u64, Op)> = core
                    .pending
                    .iter()
                    .filter(|(s, _)| *s <= upto)
                    .take(MAX_BATCH)
                    .cloned()
                    .collect();
                (
                    ops.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
                    ops.last().map(|(s, _)| *s),
                    core.head,
                )
            };
            let Some(last) = last else { break };
            // Not sure where the log ends: the entries after the head may
            // have been collected, and a put would land in their gap.
            if !end_checked && self.log_end_stale() {
                end_checked = true;
                self.refresh_locked().await?;
                if self.foreign_unnamed() {
                    // A ref the new head no longer names: the next commit
                    // seals its bytes again first (engine `reseal`).
                    self.wake.notify_one();
                    return Ok(());
                }
                continue;
            }
            let put_started = self.opts.clock.now();
            let batch = Batch {
                client: self.cache.client_id(),
                client_seq: last,
                time: now(),
                ops,
            };
            if !self.keys.can_write(&self.me.card_id) {
                return Err(DriveError::CommitFailed(
                    "this identity may no longer write in the volume".into(),
                ));
            }
            let seq = head.seq + 1;
            let keys = self.keys.get();
            let generation = keys.current().0;
            let bytes = volume::seal_entry(
                &keys,
                &self.me.ed25519,
                &self.me.card_id,
                seq,
                &head.hash,
                &batch,
            );
            let hash = meta::sha256(&bytes);
            let r = self
                .store
                .put(
                    &volume::log_key(&self.keys.volume, seq),
                    Bytes::from(bytes),
                    PutMode::Create,
                )
                .await;
            match r {
                Ok(_) => {
                    tracing::debug!(seq, ops = batch.ops.len(), "committed a log entry");
                    {
                        let mut core = self.lock();
                        let core = &mut *core;
                        core.reachable = true;
                        apply_batch(&mut core.committed, &batch, &mut core.touched);
                        core.head = Head {
                            seq,
                            hash,
                            generation,
                        };
                        core.pending.retain(|(s, _)| *s > last);
                        core.last_commit = Some(SystemTime::now());
                        // The slot was free while the end seen was recent:
                        // it was the end (see `log_end_stale`).
                        core.log_end_seen = Some(put_started);
                        core.fatal = None;
                        core.fold_committed();
                    }
                    self.save_state(false)?;
                    // Under the lock: an op pushed (and journalled by a
                    // concurrent fsync) after this check is never erased.
                    {
                        let mut core = self.lock();
                        let core = &mut *core;
                        core.journal.committed(last);
                        if core.pending.is_empty() {
                            core.journal.reset(core.dirty.keys().copied())?;
                        } else if core.journal.mostly_committed() {
                            // Steady writing never empties the queue: drop
                            // the committed records so the journal (which
                            // counts against the cache bound) stays small.
                            let dirty: Vec<u64> = core.dirty.keys().copied().collect();
                            if let Err(e) = core.journal.rewrite(&core.pending, dirty) {
                                // The old file still holds every pending op.
                                tracing::warn!(error = %e, "could not compact the journal; it keeps committed records until the next try");
                            }
                        }
                    }
                    self.maybe_snapshot().await;
                }
                Err(StoreError::PreconditionFailed { .. }) => {
                    tracing::debug!(seq, "log position taken by another writer; rebasing");
                    self.refresh_locked().await?;
                    end_checked = true;
                    if self.foreign_unnamed() {
                        self.wake.notify_one();
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.lock().reachable = !e.is_transient();
                    return Err(e.into());
                }
            }
        }
        self.progress.notify_waiters();
        Ok(())
    }

    async fn upload(&self, ids: &[[u8; 16]]) -> Result<()> {
        let sem = Arc::new(tokio::sync::Semaphore::new(
            self.opts.upload_concurrency.max(1),
        ));
        let mut set = tokio::task::JoinSet::new();
        let mut first_err = None;
        for id in ids {
            // Finished uploads free their room at once: writers held back
            // by the cache bound wait for exactly that.
            while let Some(j) = set.try_join_next() {
                self.upload_finished(j, &mut first_err)?;
            }
            if first_err.is_some() {
                break; // The rest waits for the next attempt.
            }
            let bytes = match self.cache.object_to_upload(id)? {
                Some(b) => b,
                None => {
                    tracing::error!(object = %volume::content_key(id), "sealed object vanished from the cache before upload");
                    self.lock().upload_done(id);
                    continue;
                }
            };
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let store = self.store.clone();
            let id = *id;
            set.spawn(async move {
                let r = store
                    .put(&volume::content_key(&id), bytes, PutMode::Overwrite)
                    .await;
                drop(permit);
                (id, r)
            });
        }
        while let Some(j) = set.join_next().await {
            self.upload_finished(j, &mut first_err)?;
        }
        self.progress.notify_waiters();
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Books one finished upload: the object is in the store (unpinned,
    /// its room free), or the first error is kept.
    fn upload_finished(
        &self,
        joined: std::result::Result<
            ([u8; 16], crate::store::Result<crate::store::ETag>),
            JoinError,
        >,
        first_err: &mut Option<StoreError>,
    ) -> Result<()> {
        let (id, r) = joined.map_err(|e| DriveError::Invalid(format!("upload task: {e}")))?;
        match r {
            Ok(_) => {
                {
                    let mut core = self.lock();
                    core.uploaded_bytes += core.upload_done(&id);
                    core.reachable = true;
                    core.last_store_ok = Instant::now();
                }
                self.cache.unpin(&id);
                self.progress.notify_waiters();
            }
            Err(e) => {
                self.lock().reachable = !e.is_transient();
                first_err.get_or_insert(e);
            }
        }
        Ok(())
    }

    pub(super) async fn maybe_snapshot(&self) {
        self.snapshot(false).await
    }

    /// Writes a checkpoint of the committed state once `SNAPSHOT_EVERY`
    /// entries passed since the last one or `SNAPSHOT_TOUCHED` nodes
    /// changed, or at once with `force`: the
    /// pages holding nodes changed since the previous checkpoint, then the
    /// root. Only a writer of the current generation writes checkpoints
    /// (readers' would be refused by everyone). Checkpoints are serialised
    /// by the `checkpoint` lock, which holds the last one's pages.
    pub(super) async fn snapshot(&self, force: bool) {
        self.snapshot_past(force, SNAPSHOT_TOUCHED).await
    }

    /// [`Engine::snapshot`] at a clean shutdown: due from
    /// [`SHUTDOWN_TOUCHED`] changed nodes.
    pub(super) async fn snapshot_at_shutdown(&self) {
        self.snapshot_past(false, SHUTDOWN_TOUCHED).await
    }

    /// [`Engine::snapshot`], due once `touched` nodes changed.
    async fn snapshot_past(&self, force: bool, touched: usize) {
        let writer = !self.opts.read_only && self.keys.can_write(&self.me.card_id);
        let due = |core: &super::state::Core| {
            force
                || core.head.seq >= core.last_snapshot + SNAPSHOT_EVERY
                || core.touched.len() >= touched
        };
        if writer && !due(&self.lock()) {
            return;
        }
        let mut last = self.checkpoint.lock().await;
        if !writer {
            // Nothing to track for a client that writes no checkpoint; if
            // it becomes a writer, its first one writes every page.
            *last = None;
            self.lock().touched.clear();
            return;
        }
        let keys = self.keys.get();
        let generation = keys.current().0;
        let (head, clients, plan, touched) = {
            let mut core = self.lock();
            // Another checkpoint may have been written while this waited.
            if !due(&core) {
                return;
            }
            let touched = std::mem::take(&mut core.touched);
            // Pages of a checkpoint loaded, or written more than half the
            // collection grace ago, may have been collected since: write
            // every page afresh then (engine `collect_log`).
            let now = self.opts.clock.now();
            let reusable = core.checkpoint_written.is_some_and(|t| {
                now.duration_since(t).unwrap_or_default() < self.opts.gc_grace / 2
            });
            let plan = volume::plan_pages(
                &core.committed,
                last.as_ref(),
                reusable,
                &touched,
                generation,
            );
            (core.head, core.committed.clients.clone(), plan, touched)
        };
        tracing::debug!(
            seq = head.seq,
            pages = plan.fresh_pages(),
            "writing a checkpoint"
        );
        match volume::write_checkpoint(
            self.store.as_ref(),
            &keys,
            &self.me.ed25519,
            &self.me.card_id,
            head,
            clients,
            plan,
        )
        .await
        {
            Ok((index, written)) => {
                if written {
                    self.mirror().retain_pages(index.page_keys(&keys.volume));
                }
                let mut core = self.lock();
                core.ids.set_step(index.ids_per_step());
                *last = Some(index);
                core.last_snapshot = head.seq;
                core.checkpoint_written = Some(self.opts.clock.now());
            }
            Err(e) => {
                // The changed nodes stay to be written by the next one.
                self.lock().touched.extend(touched);
                tracing::warn!(error = %e, "snapshot not written; will retry after later commits")
            }
        }
    }

    /// Seals files whose unsealed writes have been idle for `IDLE_SEAL`
    /// (open files that are neither flushed nor closed still get uploaded).
    pub fn seal_idle(&self) -> Result<()> {
        let mut core = self.lock();
        let limit = to_time(SystemTime::now() - IDLE_SEAL);
        let idle: Vec<u64> = core
            .dirty
            .iter()
            .filter(|(_, d)| d.mtime <= limit)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.seal(&mut core, id, false)?;
        }
        Ok(())
    }

    /// Pending work, reachability (a commit without an answer from the
    /// store for `Engine::stall` counts as unreachable), a full cache, and (once)
    /// the files that lost unsealed writes in the last crash.
    pub fn status(&self) -> DriveStatus {
        let mut core = self.lock();
        DriveStatus {
            pending_ops: core.pending.len() as u64,
            pending_bytes: core.pending_bytes(),
            uploaded_bytes: core.uploaded_bytes,
            last_commit: core.last_commit,
            store_reachable: !core.store_stuck(self.stall()),
            offline_since: core.offline_since,
            cache_full: core.cache_full,
            lost_unsealed: std::mem::take(&mut core.lost_unsealed),
            refused_changes: core.refused_changes,
            last_refused: core.last_refused.clone(),
        }
    }
}

/// Applies a verified batch to a tree, adding the nodes it changes to
/// `touched`. Ops that do not apply are skipped (deterministically, the
/// same on every client) with a warning.
pub fn apply_batch(tree: &mut Tree, batch: &Batch, touched: &mut HashSet<u64>) {
    for op in &batch.ops {
        if let Err(e) = tree.apply_tracked(op, touched) {
            tracing::warn!(error = %e, "skipping a logged op that does not apply");
        }
    }
    let c = tree.clients.entry(batch.client).or_insert(0);
    *c = (*c).max(batch.client_seq);
}

/// Background work: commit pending changes (retrying with backoff while
/// the store is unreachable) and refresh on a timer.
pub(super) async fn background(engine: Weak<Engine>) {
    let mut backoff = Duration::from_millis(100);
    let mut last_refresh = std::time::Instant::now();
    loop {
        let Some(e) = engine.upgrade() else { return };
        if e.stopped.load(Ordering::SeqCst) || e.keys.revoked() {
            return;
        }
        let interval = e.opts.refresh_interval;
        if let Err(err) = e.seal_idle() {
            tracing::warn!(error = %err, "could not seal idle writes");
        }
        let busy = {
            let core = e.lock();
            !core.pending.is_empty() || !core.uploads.is_empty()
        };
        let mut failed = false;
        if busy {
            // Let a burst of changes gather into one log entry.
            tokio::time::sleep(COMMIT_DELAY).await;
            if let Err(err) = e.commit_once().await {
                failed = true;
                match &err {
                    DriveError::Store(s) if s.is_transient() => {
                        tracing::warn!(error = %err, "store unreachable; will retry")
                    }
                    _ => {
                        tracing::error!(error = %err, "commit failed");
                        e.lock().fatal = Some(err.to_string());
                    }
                }
                e.progress.notify_waiters();
            } else {
                backoff = Duration::from_millis(100);
            }
        }
        if last_refresh.elapsed() >= interval {
            last_refresh = std::time::Instant::now();
            if let Err(err) = e.refresh().await {
                tracing::warn!(error = %err, "refresh failed");
            }
        }
        let wait = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(30));
            backoff
        } else {
            interval.min(Duration::from_secs(1))
        };
        let still_busy = !failed && {
            let core = e.lock();
            !core.pending.is_empty() || !core.uploads.is_empty()
        };
        if still_busy {
            continue;
        }
        let notified = e.wake.notified();
        let _ = tokio::time::timeout(wait, notified).await;
    }
}
