//! Back-pressure: writers wait while unsealed plus not-yet-uploaded data
//! fills the cache bound (`Cache::bound`: the cache size, never more than
//! its filesystem can take), so the cache never outgrows its disk and a
//! full disk slows writers instead of failing them.
//!
//! Invariants:
//! - A writer over the bound waits while uploads can free room; it gets
//!   ENOSPC (`DriveError::NoSpace`, with a log line and `cache_full` in the
//!   status) only when nothing can be freed: the store has not taken
//!   uploads for a third of the store timeout (`DriveOptions::store_timeout`)
//!   after it was found stuck.
//! - Waiting seals the unsealed data first (so it can be uploaded) and
//!   wakes the committer.

use super::Engine;
use crate::drive::error::{DriveError, Result};
use std::time::{Duration, Instant};

/// How often a waiting writer looks again (uploads also wake it).
const RECHECK: Duration = Duration::from_millis(250);

impl Engine {
    /// Waits until `n` more bytes of unsealed data fit under the cache
    /// bound; `NoSpace` when they cannot fit because the store does not
    /// take uploads.
    pub(super) async fn wait_for_room(&self, n: u64) -> Result<()> {
        // How long a writer waits for a store that does not take uploads
        // before it gets ENOSPC.
        let grace = self.opts.store_timeout / 3;
        let mut stuck_since: Option<Instant> = None;
        loop {
            let woken = self.progress.notified();
            let bound = self.cache.bound();
            let (used, dirty, stuck) = {
                let core = self.lock();
                let dirty = core.dirty_bytes();
                // Pinned objects in whole disk blocks (what the bound
                // counts): thousands of small files weigh more on disk
                // than their lengths.
                let sealed = core.upload_bytes.max(self.cache.pinned_bytes());
                (sealed + dirty, dirty, core.store_stuck(self.stall()))
            };
            if used == 0 || used + n <= bound {
                self.room_again();
                return Ok(());
            }
            if dirty > 0 {
                self.seal_all()?;
            }
            self.wake.notify_one();
            if stuck {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= grace {
                    let mut core = self.lock();
                    if !core.cache_full {
                        tracing::error!(
                            pending = used,
                            bound,
                            "local cache full and the store does not take uploads: writes fail with ENOSPC until it does"
                        );
                    }
                    core.cache_full = true;
                    return Err(DriveError::NoSpace {
                        pending: used,
                        bound,
                    });
                }
            } else {
                stuck_since = None;
            }
            let _ = tokio::time::timeout(RECHECK, woken).await;
        }
    }

    /// Clears the full-cache state once a write fits again.
    fn room_again(&self) {
        let mut core = self.lock();
        if core.cache_full {
            core.cache_full = false;
            tracing::info!("local cache has room again; writes go on");
        }
    }
}
