//! The mount daemon's [`Backend`] for a real drive: sync, status and
//! shutdown of a [`Drive`], with status values in words for `cardfs status`;
//! folder sharing on the drive; and lookups in the card directory of the
//! drive's store (the command line decides whether a card found there may
//! be used, see `super::member`).

use super::control::{Answer, Request};
use super::control_messages::{DriveReport, GcSummary, MemberReport, ShareReport};
use super::daemon::Backend;
use super::exit::UserError;
use super::upload_meter::Meter;
use anyhow::Context;
use cardfs::drive::{
    DEFAULT_GRACE, DEFAULT_KEEP, DEFAULT_PACK_WASTE_PERCENT, Drive, DriveError, DriveStatus,
    GcOptions, Ino, Member, ROOT_INO, Role, ShareInfo,
};
use cardfs::format::card::{Card, CardId};
use cardfs::identity::directory::{self, DirectoryError};
use cardfs::store::ObjectStore;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// A mounted drive as the daemon controls it, and the store it lives in.
pub struct DriveBackend {
    drive: Drive,
    store: Arc<dyn ObjectStore>,
    notifier: OnceLock<fuser::Notifier>,
    meter: Meter,
    /// History retention this mount collects with, and how often the
    /// owner's mount collects on its own (zero: never).
    keep: Duration,
    gc_interval: Duration,
    /// The last collection: when it ended and its figures (or error).
    last_gc: Arc<Mutex<Option<LastGc>>>,
}

/// The outcome of the last collection, for `status`.
#[derive(Debug, Clone)]
struct LastGc {
    at: SystemTime,
    outcome: std::result::Result<GcSummary, String>,
}

impl DriveBackend {
    pub fn new(drive: Drive, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            meter: Meter::new(drive.clone()),
            drive,
            store,
            notifier: OnceLock::new(),
            keep: DEFAULT_KEEP,
            gc_interval: Duration::ZERO,
            last_gc: Arc::default(),
        }
    }

    /// Collects with history `keep`, and every `interval` on its own in
    /// the owner's mount (zero: only when asked).
    pub fn with_gc(mut self, keep: Duration, interval: Duration) -> Self {
        self.keep = keep;
        self.gc_interval = interval;
        self
    }

    /// Starts the automatic collection of the owner's mount.
    fn start_auto_gc(&self) {
        if self.gc_interval.is_zero() || !self.drive.is_owner() {
            return;
        }
        let (drive, last, interval) = (self.drive.clone(), self.last_gc.clone(), self.gc_interval);
        let opts = GcOptions {
            grace: DEFAULT_GRACE,
            keep: self.keep,
            ..Default::default()
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let outcome = collect(&drive, &opts, &|_, _| {}).await;
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, "automatic garbage collection failed; will retry");
                }
                record(&last, outcome.map_err(|e| format!("{e:#}")));
            }
        });
    }
}

/// One collection with `opts`, as figures for the control protocol.
async fn collect(
    drive: &Drive,
    opts: &GcOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> anyhow::Result<GcSummary> {
    Ok(GcSummary {
        figures: drive.gc(opts, progress).await?,
        dry_run: opts.dry_run,
        keep_secs: opts.keep.as_secs(),
        grace_secs: opts.grace.as_secs(),
    })
}

fn record(last: &Mutex<Option<LastGc>>, outcome: std::result::Result<GcSummary, String>) {
    let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
    *l = Some(LastGc {
        at: SystemTime::now(),
        outcome,
    });
}

impl Backend for DriveBackend {
    async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> anyhow::Result<()> {
        // A store that fails keeps its exit code (unreachable: 20, ...).
        self.meter
            .sync(progress)
            .await
            .map_err(|e| super::open::drive_error(e, &self.store.describe()))
    }

    fn status(&self) -> DriveReport {
        let (status, rate) = self.meter.take_status();
        let mut report = drive_report(&status, SystemTime::now());
        report.upload_rate = rate;
        if let Ok(card) = Card::from_bytes(self.drive.owner_card()) {
            report.owner_identity = Some(card.identity().to_string());
            report.owner_fingerprint = Some(card.fingerprint());
        }
        if let Some(l) = self
            .last_gc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            report.last_gc = Some(super::units::rfc3339(l.at));
            match &l.outcome {
                Ok(s) => {
                    report.last_gc_reclaimed_objects = Some(s.figures.reclaimed_objects);
                    report.last_gc_reclaimed_bytes = Some(s.figures.reclaimed_bytes);
                }
                Err(e) => report.last_gc_error = Some(e.clone()),
            }
        }
        report.role = if self.drive.is_owner() {
            "owner"
        } else {
            "member"
        }
        .into();
        report
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        Ok(self.drive.shutdown().await?)
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        Ok(self.drive.refresh().await?)
    }

    fn mounted(&self, notifier: fuser::Notifier) {
        let _ = self.notifier.set(notifier);
        self.meter.start_sampling();
        self.start_auto_gc();
    }

    async fn request(
        &self,
        request: Request,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> anyhow::Result<Answer> {
        match request {
            Request::ShareAdd {
                path,
                read_only,
                card,
            } => {
                let card = Card::from_bytes(&card).context("the card to share with")?;
                let member = Member {
                    card_id: card.id().0,
                    x25519: *card.x25519_public(),
                    ed25519: *card.ed25519_public(),
                    role: if read_only {
                        Role::Reader
                    } else {
                        Role::Writer
                    },
                };
                let (parent, ino) = self.walk(&path).await?;
                let info = self
                    .drive
                    .share_add(ino, member)
                    .await
                    .map_err(|e| share_error(e, &path))?;
                if info.ino != ino {
                    self.forget_entry(parent, &path);
                }
                Ok(shares(&[info]))
            }
            Request::ShareRemove { path, card_id } => {
                let ino = self.folder(&path).await?;
                let info = self
                    .drive
                    .share_remove(ino, &card_id)
                    .await
                    .map_err(|e| share_error(e, &path))?;
                Ok(shares(&[info]))
            }
            Request::ShareList => Ok(shares(&self.drive.share_list().await?)),
            Request::Gc {
                grace_secs,
                keep_secs,
                dry_run,
                pack_waste_percent,
            } => {
                if !self.drive.is_owner() {
                    return Err(UserError::GcNotOwner.into());
                }
                let opts = GcOptions {
                    grace: Duration::from_secs(grace_secs),
                    keep: keep_secs.map_or(self.keep, Duration::from_secs),
                    dry_run,
                    pack_waste_percent: pack_waste_percent.unwrap_or(DEFAULT_PACK_WASTE_PERCENT),
                    ..Default::default()
                };
                let outcome = collect(&self.drive, &opts, progress).await;
                if !dry_run {
                    let kept = outcome.as_ref().map(Clone::clone);
                    record(&self.last_gc, kept.map_err(|e| format!("{e:#}")));
                }
                Ok(Answer::Gc {
                    report: Box::new(outcome?),
                })
            }
            Request::ShareReencrypt { path } => {
                let ino = self.folder(&path).await?;
                self.drive
                    .share_reencrypt(ino, progress)
                    .await
                    .map_err(|e| share_error(e, &path))?;
                Ok(Answer::Nothing)
            }
            Request::CardsFind { identity } => {
                let found = directory::find(self.store.as_ref(), &identity)
                    .await
                    .context("searching the drive's card directory")?;
                Ok(Answer::Cards {
                    cards: found.cards.iter().map(Card::to_text).collect(),
                    rejected: (found.rejected.iter())
                        .map(|r| format!("{}: {}", r.key, r.reason))
                        .collect(),
                })
            }
            Request::CardsAll => {
                let found = directory::all(self.store.as_ref())
                    .await
                    .context("listing the drive's card directory")?;
                Ok(Answer::Cards {
                    cards: found.cards.iter().map(Card::to_text).collect(),
                    rejected: Vec::new(),
                })
            }
            Request::CardGet { id } => {
                let (cards, rejected) = match directory::get(self.store.as_ref(), CardId(id)).await
                {
                    Ok(card) => (vec![card.to_text()], Vec::new()),
                    Err(DirectoryError::NotFound(_)) => (Vec::new(), Vec::new()),
                    Err(DirectoryError::Invalid { key, reason }) => {
                        (Vec::new(), vec![format!("{key}: {reason}")])
                    }
                    Err(e) => return Err(e).context("reading the drive's card directory"),
                };
                Ok(Answer::Cards { cards, rejected })
            }
            Request::Fsck { verify_content } => {
                super::fsck::serve(&self.drive, verify_content, progress).await
            }
            Request::History { path } => super::history::serve_history(&self.drive, &path).await,
            Request::Restore {
                path,
                at,
                to,
                suffix,
            } => {
                let (answer, parent, dest) =
                    super::history::serve_restore(&self.drive, &path, &at, to, suffix).await?;
                // The kernel may remember that the name did not exist.
                self.forget_entry(parent, &dest);
                Ok(answer)
            }
            Request::Status | Request::Sync | Request::Unmount => {
                anyhow::bail!("{request:?} is answered by the daemon itself")
            }
        }
    }
}

impl DriveBackend {
    /// The inode of the folder at `path` (relative to the mount root,
    /// components separated by `/`), looked up from the root.
    async fn folder(&self, path: &[u8]) -> anyhow::Result<Ino> {
        Ok(self.walk(path).await?.1)
    }

    /// The inodes of the parent of `path` and of `path` itself (the root
    /// is its own parent).
    async fn walk(&self, path: &[u8]) -> anyhow::Result<(Ino, Ino)> {
        let (mut parent, mut ino) = (ROOT_INO, ROOT_INO);
        for name in path.split(|b| *b == b'/').filter(|n| !n.is_empty()) {
            if name == b"." || name == b".." {
                anyhow::bail!("a shared folder's path cannot contain . or ..");
            }
            parent = ino;
            ino = self
                .drive
                .lookup(ino, OsStr::from_bytes(name))
                .await
                .with_context(|| describe_path(path))?
                .ino;
        }
        Ok((parent, ino))
    }

    /// Makes the kernel forget its cached entry for `path` (in `parent`),
    /// whose inode number changed (a folder that became shared), so the
    /// next access looks it up again instead of using the old number.
    fn forget_entry(&self, parent: Ino, path: &[u8]) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or_default();
        if let Err(e) = notifier.inval_entry(fuser::INodeNo(parent), OsStr::from_bytes(name)) {
            // ENOENT: the kernel had no such entry cached.
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::warn!(
                    "could not drop the kernel's entry for {}: {e}",
                    describe_path(path)
                );
            }
        }
    }
}

fn describe_path(path: &[u8]) -> String {
    if path.is_empty() {
        "the drive's root".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// Gives a sharing refusal its user error.
fn share_error(err: DriveError, path: &[u8]) -> anyhow::Error {
    match err {
        DriveError::NotPermitted => UserError::NotOwner {
            path: PathBuf::from(OsStr::from_bytes(path)),
        }
        .into(),
        other => anyhow::Error::new(other).context(describe_path(path)),
    }
}

/// The drive's part of `cardfs status` at time `now` (owner and role
/// are filled in by the caller).
pub fn drive_report(s: &DriveStatus, now: SystemTime) -> DriveReport {
    DriveReport {
        pending_changes: s.pending_ops,
        pending_bytes: s.pending_bytes,
        uploaded_bytes: s.uploaded_bytes,
        upload_rate: 0,
        last_commit: s.last_commit.map(super::units::rfc3339),
        last_commit_age_secs: s
            .last_commit
            .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO).as_secs()),
        store_reachable: s.store_reachable,
        offline_since: s.offline_since.map(super::units::rfc3339),
        cache_full: s.cache_full,
        lost_writes: s.lost_unsealed.clone(),
        owner_identity: None,
        owner_fingerprint: None,
        role: String::new(),
        last_gc: None,
        last_gc_reclaimed_objects: None,
        last_gc_reclaimed_bytes: None,
        last_gc_error: None,
        refused_changes: s.refused_changes,
        last_refused: s.last_refused.as_ref().map(|r| super::units::rfc3339(r.0)),
        last_refused_reason: s.last_refused.as_ref().map(|r| r.1.clone()),
    }
}

/// A role as the control protocol and `share list` name it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Reader => "reader",
        Role::Writer => "writer",
        Role::Owner => "owner",
    }
}

/// The answer listing these shared folders.
fn shares(infos: &[ShareInfo]) -> Answer {
    Answer::Shares {
        shares: infos.iter().map(share_report).collect(),
    }
}

/// A shared folder as the control protocol reports it.
pub fn share_report(info: &ShareInfo) -> ShareReport {
    ShareReport {
        path: info.path.to_string_lossy().into_owned(),
        volume: info.volume,
        generation: info.generation,
        owner: info.owner,
        my_role: role_name(info.my_role).into(),
        members: (info.members.iter())
            .map(|m| MemberReport {
                card_id: m.card_id,
                role: role_name(m.role).into(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn drive_status_as_reported() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let s = DriveStatus {
            pending_ops: 3,
            pending_bytes: 2048,
            uploaded_bytes: 4096,
            last_commit: Some(UNIX_EPOCH + Duration::from_secs(88)),
            store_reachable: false,
            offline_since: None,
            cache_full: true,
            lost_unsealed: vec!["a/b.txt".into()],
            refused_changes: 2,
            last_refused: Some((
                UNIX_EPOCH + Duration::from_secs(90),
                "changes to c refused".into(),
            )),
        };
        let r = drive_report(&s, now);
        assert_eq!((r.pending_changes, r.pending_bytes), (3, 2048));
        assert_eq!(r.uploaded_bytes, 4096);
        assert_eq!(r.last_commit.as_deref(), Some("1970-01-01T00:01:28Z"));
        assert_eq!(r.last_commit_age_secs, Some(12));
        assert!(!r.store_reachable && r.cache_full);
        assert_eq!(r.lost_writes, ["a/b.txt"]);
        assert_eq!(r.offline_since, None);
        assert_eq!(r.refused_changes, 2);
        assert_eq!(r.last_refused.as_deref(), Some("1970-01-01T00:01:30Z"));
        assert_eq!(
            r.last_refused_reason.as_deref(),
            Some("changes to c refused")
        );
        let offline = DriveStatus {
            offline_since: Some(UNIX_EPOCH + Duration::from_secs(60)),
            ..s
        };
        let r = drive_report(&offline, now);
        assert_eq!(r.offline_since.as_deref(), Some("1970-01-01T00:01:00Z"));
    }
}
