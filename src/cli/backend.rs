//! The mount daemon's [`Backend`] for a real drive: sync, status and
//! shutdown of a [`Drive`], with status values in words for `cardfs status`;
//! folder sharing on the drive; and lookups in the card directory of the
//! drive's store (the command line decides whether a card found there may
//! be used, see `super::member`).

use super::control::Request;
use super::daemon::Backend;
use super::exit::UserError;
use anyhow::Context;
use cardfs::drive::{Drive, DriveError, DriveStatus, Ino, Member, ROOT_INO, Role, ShareInfo};
use cardfs::format::card::{Card, CardId};
use cardfs::format::wire::hex;
use cardfs::identity::directory::{self, DirectoryError};
use cardfs::store::ObjectStore;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The status field saying whether this mount's user owns the drive; its
/// value starts with `owner` for the owner.
pub const YOUR_ROLE: &str = "your_role";

/// A mounted drive as the daemon controls it, and the store it lives in.
pub struct DriveBackend {
    drive: Drive,
    store: Arc<dyn ObjectStore>,
    notifier: OnceLock<fuser::Notifier>,
}

impl DriveBackend {
    pub fn new(drive: Drive, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            drive,
            store,
            notifier: OnceLock::new(),
        }
    }
}

impl Backend for DriveBackend {
    async fn sync(&self, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> anyhow::Result<()> {
        // A store that fails keeps its exit code (unreachable: 20, ...).
        self.drive
            .sync(progress)
            .await
            .map_err(|e| super::open::drive_error(e, &self.store.describe()))
    }

    fn status(&self) -> Vec<(String, String)> {
        let mut fields = status_fields(&self.drive.status(), SystemTime::now());
        let owner = match Card::from_bytes(self.drive.owner_card()) {
            Ok(card) => format!("{} ({})", card.identity(), card.fingerprint()),
            Err(_) => "(unreadable card)".into(),
        };
        fields.push(("owner".into(), owner));
        fields.push((
            YOUR_ROLE.into(),
            if self.drive.is_owner() {
                "owner"
            } else {
                "member of the folders shared with you"
            }
            .into(),
        ));
        fields
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        Ok(self.drive.shutdown().await?)
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        Ok(self.drive.refresh().await?)
    }

    fn mounted(&self, notifier: fuser::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    async fn request(
        &self,
        request: Request,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> anyhow::Result<Vec<(String, String)>> {
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
                Ok(vec![share_field(&info)])
            }
            Request::ShareRemove { path, card_id } => {
                let ino = self.folder(&path).await?;
                let info = self
                    .drive
                    .share_remove(ino, &card_id)
                    .await
                    .map_err(|e| share_error(e, &path))?;
                Ok(vec![share_field(&info)])
            }
            Request::ShareList => {
                let all = self.drive.share_list().await?;
                Ok(all.iter().map(share_field).collect())
            }
            Request::ShareReencrypt { path } => {
                let ino = self.folder(&path).await?;
                self.drive
                    .share_reencrypt(ino, progress)
                    .await
                    .map_err(|e| share_error(e, &path))?;
                Ok(Vec::new())
            }
            Request::CardsFind { identity } => {
                let found = directory::find(self.store.as_ref(), &identity)
                    .await
                    .context("searching the drive's card directory")?;
                let cards = found.cards.iter().map(|c| ("card".into(), c.to_text()));
                let rejected = found
                    .rejected
                    .iter()
                    .map(|r| ("rejected".into(), format!("{}: {}", r.key, r.reason)));
                Ok(cards.chain(rejected).collect())
            }
            Request::CardGet { id } => {
                match directory::get(self.store.as_ref(), CardId(id)).await {
                    Ok(card) => Ok(vec![("card".into(), card.to_text())]),
                    Err(DirectoryError::NotFound(_)) => Ok(Vec::new()),
                    Err(DirectoryError::Invalid { key, reason }) => {
                        Ok(vec![("rejected".into(), format!("{key}: {reason}"))])
                    }
                    Err(e) => Err(e).context("reading the drive's card directory"),
                }
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

/// `cardfs status` lines for a drive's status at time `now`.
pub fn status_fields(s: &DriveStatus, now: SystemTime) -> Vec<(String, String)> {
    let last_commit = match s.last_commit {
        None => "none since mounting".to_string(),
        Some(t) => {
            let ago = now.duration_since(t).unwrap_or(Duration::ZERO).as_secs();
            format!("{} ({ago} s ago)", utc(t))
        }
    };
    let mut fields = vec![
        (
            "pending_uploads".into(),
            format!("{} changes, {}", s.pending_ops, bytes(s.pending_bytes)),
        ),
        ("last_commit".into(), last_commit),
        (
            "store_reachable".into(),
            match s.offline_since {
                Some(t) => format!(
                    "offline (store unreachable since {}): serving the local cache, changes are queued",
                    utc(t)
                ),
                None if s.store_reachable => "yes".into(),
                None => "no".into(),
            },
        ),
    ];
    if s.cache_full {
        fields.push((
            "cache".into(),
            "full: writes fail with ENOSPC until the store takes uploads again".into(),
        ));
    }
    if !s.lost_unsealed.is_empty() {
        fields.push((
            "lost_writes".into(),
            format!(
                "the daemon stopped before these files' last writes were sealed: {}",
                s.lost_unsealed.join(", ")
            ),
        ));
    }
    fields
}

/// `n` bytes in binary units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A role as the control protocol and `share list` name it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Reader => "reader",
        Role::Writer => "writer",
        Role::Owner => "owner",
    }
}

/// One `share` field: `PATH-HEX VOLUME GENERATION OWNER MY-ROLE
/// ID:ROLE,ID:ROLE...` (every part free of spaces and newlines).
pub fn share_field(info: &ShareInfo) -> (String, String) {
    let members: Vec<String> = info
        .members
        .iter()
        .map(|m| format!("{}:{}", hex(&m.card_id), role_name(m.role)))
        .collect();
    let path = info.path.as_bytes();
    (
        "share".into(),
        format!(
            "{} {} {} {} {} {}",
            if path.is_empty() {
                ".".into()
            } else {
                hex(path)
            },
            hex(&info.volume),
            info.generation,
            hex(&info.owner),
            role_name(info.my_role),
            members.join(",")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_known_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_906_800 + 61);
        assert_eq!(utc(t), "2026-11-28 23:01:01 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1023), "1023 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn status_in_words() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let s = DriveStatus {
            pending_ops: 3,
            pending_bytes: 2048,
            last_commit: Some(UNIX_EPOCH + Duration::from_secs(88)),
            store_reachable: false,
            offline_since: None,
            cache_full: true,
            lost_unsealed: vec!["a/b.txt".into()],
        };
        let f = status_fields(&s, now);
        assert_eq!(f[0].1, "3 changes, 2.0 KiB");
        assert_eq!(f[1].1, "1970-01-01 00:01:28 UTC (12 s ago)");
        assert_eq!(f[2].1, "no");
        assert!(f[3].1.starts_with("full"), "{:?}", f[3]);
        assert!(f[4].1.ends_with("a/b.txt"), "{:?}", f[4]);
        let offline = DriveStatus {
            offline_since: Some(UNIX_EPOCH + Duration::from_secs(60)),
            ..s
        };
        let f = status_fields(&offline, now);
        assert!(
            f[2].1
                .starts_with("offline (store unreachable since 1970-01-01 00:01:00 UTC)"),
            "{:?}",
            f[2]
        );
    }
}
