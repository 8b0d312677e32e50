//! Upload progress and rate for the mount daemon, read from the drive's
//! uploaded-bytes counter (`DriveStatus::uploaded_bytes`): `sync` and
//! `unmount` report bytes as they reach the store (not only when a commit
//! ends), and `status` shows the upload rate of the last seconds.
//!
//! Invariants: every read of the drive's status goes through
//! [`Meter::status`], which keeps the one-time report of lost writes
//! (`lost_unsealed`) until `cardfs status` takes it, so sampling never
//! swallows it; progress reported to a client never goes backwards.

use cardfs::drive::{Drive, DriveStatus};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far back the upload rate looks.
const WINDOW: Duration = Duration::from_secs(10);
/// How often the sampler and a running sync look at the counter.
const TICK: Duration = Duration::from_millis(250);

/// Samples of the uploaded-bytes counter and the stashed lost-writes report.
#[derive(Default)]
struct Shared {
    samples: VecDeque<(Instant, u64)>,
    lost: Vec<String>,
}

/// The drive's upload counter, sampled.
#[derive(Clone)]
pub struct Meter {
    drive: Drive,
    shared: Arc<Mutex<Shared>>,
}

impl Meter {
    pub fn new(drive: Drive) -> Self {
        Self {
            drive,
            shared: Arc::default(),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The drive's status; its lost-writes report is kept for
    /// [`Meter::take_status`].
    fn status(&self) -> DriveStatus {
        let mut s = self.drive.status();
        let now = Instant::now();
        let mut shared = self.shared();
        shared.lost.append(&mut s.lost_unsealed);
        shared.samples.push_back((now, s.uploaded_bytes));
        while shared
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            shared.samples.pop_front();
        }
        s
    }

    /// The drive's status for `cardfs status` (with the lost-writes report,
    /// once) and the upload rate in bytes per second over the last
    /// [`WINDOW`].
    pub fn take_status(&self) -> (DriveStatus, u64) {
        let mut s = self.status();
        let mut shared = self.shared();
        s.lost_unsealed = std::mem::take(&mut shared.lost);
        (s, rate(&shared.samples))
    }

    /// Samples the counter every [`TICK`] while the runtime runs, so the
    /// rate is known when `status` asks.
    pub fn start_sampling(&self) {
        let meter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK * 4);
            loop {
                tick.tick().await;
                meter.status();
            }
        });
    }

    /// Runs the drive's sync, reporting (uploaded, total) bytes to
    /// `progress` as uploads finish; `total` is what was pending when the
    /// sync began (or more, if the engine counts more).
    pub async fn sync(
        &self,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> cardfs::drive::Result<()> {
        let start = self.status();
        let total = AtomicU64::new(start.pending_bytes);
        let shown = AtomicU64::new(0);
        let report = |done: u64| {
            let total = total.load(Ordering::Relaxed);
            let done = done.min(total);
            progress(shown.fetch_max(done, Ordering::Relaxed).max(done), total);
        };
        let from_engine = |done, engine_total| {
            total.fetch_max(engine_total, Ordering::Relaxed);
            report(done);
        };
        let sync = self.drive.sync(&from_engine);
        tokio::pin!(sync);
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                result = &mut sync => {
                    if result.is_ok() {
                        report(total.load(Ordering::Relaxed));
                    }
                    return result;
                }
                _ = tick.tick() => {
                    let now = self.status().uploaded_bytes;
                    report(now.saturating_sub(start.uploaded_bytes));
                }
            }
        }
    }
}

/// Bytes per second between the first and the last sample.
fn rate(samples: &VecDeque<(Instant, u64)>) -> u64 {
    match (samples.front(), samples.back()) {
        (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
            let secs = t1.duration_since(*t0).as_secs_f64();
            (b1.saturating_sub(*b0) as f64 / secs) as u64
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardfs::drive::{Caller, DriveOptions, Identity, ROOT_INO};
    use cardfs::store::{FaultConfig, FaultStore, MemoryStore, ObjectStore};

    /// Progress of a sync over a slow store moves with the uploads: values
    /// strictly between nothing and everything, never backwards, ending at
    /// the total.
    #[test]
    fn sync_progress_is_fed_by_uploaded_bytes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let seen = rt.block_on(async {
            let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
            let id = Identity::generate();
            Drive::create_drive(memory.clone(), &id, b"test card")
                .await
                .unwrap();
            let slow: Arc<dyn ObjectStore> = Arc::new(FaultStore::new(
                memory,
                FaultConfig {
                    latency: Duration::from_millis(120),
                    ..FaultConfig::default()
                },
            ));
            let mut opts = DriveOptions::new(dir.path().join("cache"));
            opts.upload_concurrency = 1;
            opts.refresh_interval = Duration::from_secs(3600);
            let drive = Drive::open_drive(slow, id, opts).await.unwrap();
            let who = Caller { uid: 0, gid: 0 };
            for i in 0..8 {
                let name = format!("f{i}");
                let (attr, fh) = drive
                    .create(ROOT_INO, name.as_ref(), 0o644, libc::O_RDWR, who)
                    .await
                    .unwrap();
                drive
                    .write(attr.ino, fh, 0, &vec![i as u8; 200_000])
                    .await
                    .unwrap();
                drive.release(attr.ino, fh).await.unwrap();
            }
            let meter = Meter::new(drive.clone());
            let seen = Mutex::new(Vec::new());
            meter
                .sync(&|d, t| seen.lock().unwrap().push((d, t)))
                .await
                .unwrap();
            drive.shutdown().await.unwrap();
            seen.into_inner().unwrap()
        });
        let (_, total) = *seen.last().unwrap();
        assert!(total >= 8 * 200_000, "{seen:?}");
        assert_eq!(seen.last().unwrap().0, total, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
        assert!(
            seen.iter().any(|(d, t)| *d > 0 && d < t),
            "no progress between 0 and the total: {seen:?}"
        );
    }

    #[test]
    fn rate_over_the_samples() {
        let t0 = Instant::now();
        let mut s = VecDeque::new();
        assert_eq!(rate(&s), 0);
        s.push_back((t0, 1000));
        assert_eq!(rate(&s), 0);
        s.push_back((t0 + Duration::from_secs(2), 5000));
        assert_eq!(rate(&s), 2000);
        // A counter that went down (a volume closed) is no negative rate.
        s.push_back((t0 + Duration::from_secs(4), 10));
        assert_eq!(rate(&s), 0);
    }
}
