//! The end of one engine's work, as the router fans it out over every open
//! volume: pushing everything to the store (`sync`), a clean stop
//! (`shutdown`) and a simulated crash (`abandon`).
//!
//! Invariants: after `shutdown` or `abandon` the engine writes nothing more
//! to the store and has released its cache directory; `shutdown` keeps in
//! the journal whatever could not be uploaded.

use super::Engine;
use crate::drive::error::{DriveError, Result};
use std::sync::atomic::Ordering;

impl Engine {
    /// Seals buffered writes and commits until nothing is pending;
    /// `progress` gets (done, total) content bytes of this engine.
    pub async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<()> {
        self.seal_all()?;
        let total = self.lock().pending_bytes();
        loop {
            let (left, fatal) = {
                let core = self.lock();
                (
                    if core.pending.is_empty() && core.uploads.is_empty() {
                        None
                    } else {
                        Some(core.pending_bytes())
                    },
                    core.fatal.clone(),
                )
            };
            progress(total.saturating_sub(left.unwrap_or(0)), total);
            let Some(_) = left else { return Ok(()) };
            if let Some(f) = fatal {
                return Err(DriveError::CommitFailed(f));
            }
            // Commit directly so errors reach the caller.
            self.commit_once().await?;
        }
    }

    /// Makes a final sync attempt, then stops background work and releases
    /// the cache directory.
    pub async fn shutdown(&self) -> Result<()> {
        let r = self.sync(&|_, _| {}).await;
        if r.is_err() {
            // Keep whatever could not be uploaded in the journal.
            self.journal_pending(true)?;
        } else {
            // The tail of a burst goes into a checkpoint now (see
            // `SHUTDOWN_TOUCHED`).
            self.snapshot_at_shutdown().await;
        }
        // The committer may be saving the state itself (it does after each
        // commit): it must end before this last save, or the two writes of
        // the state file race (one rename finds no temporary file).
        self.stop_and_wait().await;
        self.save_state(true)?;
        self.mirror.settle().await;
        self.cache.release();
        r
    }

    /// Stops background work and waits until its task has ended.
    async fn stop_and_wait(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Stops at once, like a killed process: nothing more is written to
    /// the store or the cache.
    pub async fn abandon(&self) {
        self.stop_and_wait().await;
        // Copies into the mirror begun before are finished (as a process
        // that dies later than they take would have).
        self.mirror.settle().await;
        self.cache.release();
    }
}
