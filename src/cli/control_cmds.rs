//! `cardfs status`, `cardfs sync` and `cardfs unmount`: clients of a mount
//! daemon's control socket.

use super::control::{self, Answer, Request};
use super::control_messages::StatusReport;
use super::exit::UserError;
use super::mount_record::{self, Liveness};
use super::mountpoint;
use super::progress::Progress;
use std::path::Path;
use std::time::Duration;

/// `cardfs unmount MOUNTPOINT`: commit everything, then unmount.
///
/// The daemon is found from the mount itself: through this home's control
/// socket, else through the record the daemon left for other homes. A
/// mount is detached without its daemon only when the kernel says that
/// daemon is gone (its journal in the cache directory makes the next mount
/// finish the work); a live daemon that cannot be reached is refused.
pub fn unmount(path: &Path) -> anyhow::Result<()> {
    let mnt = mountpoint::absolute(path)?;
    let connected = match control::connect_any_home(&mnt) {
        Ok(found) => Some(found),
        Err(err) if is_not_mounted(&err) => None,
        Err(err) => return Err(err),
    };
    if let Some((stream, record)) = connected {
        let progress = Progress::new("committing");
        let result = control::call_on(stream, &mnt, Request::Unmount, &mut |d, t| {
            progress.update(d, t)
        });
        progress.finish();
        result?;
        match record {
            Some(r) => println!(
                "unmounted {} (mounted by {}); every change is in the store",
                mnt.display(),
                r.describe()
            ),
            None => println!("unmounted {}; every change is in the store", mnt.display()),
        }
        return Ok(());
    }
    let not_mounted = || UserError::NotMounted { path: mnt.clone() };
    match mountpoint::mount_at(&mnt)? {
        Some(entry) if entry.fstype == "fuse.cardfs" => {}
        _ => return Err(not_mounted().into()),
    }
    let record = mount_record::read(&mnt);
    match mount_record::probe(&mnt, Duration::from_secs(5)) {
        Liveness::Dead => {}
        live => {
            let who = match (&record, live) {
                (Some(r), Liveness::Hangs) => format!("{}, not answering", r.describe()),
                (Some(r), _) => r.describe(),
                (None, Liveness::Hangs) => "its daemon does not answer".to_string(),
                (None, _) => format!(
                    "its control socket is not in this CARDFS_HOME ({})",
                    control::run_dir()?.display()
                ),
            };
            return Err(UserError::MountedElsewhere { path: mnt, who }.into());
        }
    }
    mountpoint::unmount(&mnt, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            anyhow::Error::new(UserError::MountBusy { path: mnt.clone() })
        } else {
            anyhow::Error::new(e)
        }
    })?;
    mount_record::remove(&mnt);
    println!(
        "unmounted {} (its daemon was gone); the next mount of this cache \
         directory uploads whatever was not committed",
        mnt.display()
    );
    Ok(())
}

fn is_not_mounted(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<UserError>(),
        Some(UserError::NotMounted { .. })
    )
}

/// `cardfs sync MOUNTPOINT`: push everything now and wait.
pub fn sync(path: &Path) -> anyhow::Result<()> {
    let mnt = mountpoint::absolute(path)?;
    let (stream, _) = control::connect_any_home(&mnt)?;
    let progress = Progress::new("syncing");
    let result = control::call_on(stream, &mnt, Request::Sync, &mut |d, t| {
        progress.update(d, t)
    });
    progress.finish();
    result?;
    println!("{}: every change is in the store", mnt.display());
    Ok(())
}

/// `cardfs gc MOUNTPOINT`: collect content objects nothing needs.
pub fn gc(
    path: &Path,
    grace: std::time::Duration,
    keep: Option<std::time::Duration>,
    dry_run: bool,
    pack_waste: u64,
    json: bool,
) -> anyhow::Result<()> {
    use super::units::bytes;
    let mnt = mountpoint::absolute(path)?;
    let (stream, _) = control::connect_any_home(&mnt)?;
    let request = Request::Gc {
        grace_secs: grace.as_secs(),
        keep_secs: keep.map(|k| k.as_secs()),
        dry_run,
        pack_waste_percent: Some(pack_waste),
    };
    let progress = Progress::new("deleting");
    let result = control::call_on(stream, &mnt, request, &mut |d, t| progress.update(d, t));
    progress.finish();
    let Answer::Gc { report: summary } = result? else {
        anyhow::bail!("the daemon answered gc with something else");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let r = &summary.figures;
    let verb = if summary.dry_run {
        "would reclaim"
    } else {
        "reclaimed"
    };
    println!(
        "{}: {verb} {} objects, {} (of {} objects, {}; {} live, {} unreferenced but younger than the {} s grace) and {} metadata objects, {} (log entries, checkpoints and pages before the window); {} {} packs ({} of live block versions sealed into new packs, the old packs go once the history window has passed them); history kept {} s; took {:.1} s",
        mnt.display(),
        r.reclaimed_objects,
        bytes(r.reclaimed_bytes),
        r.objects,
        bytes(r.bytes),
        r.live_objects,
        r.young_objects,
        summary.grace_secs,
        r.metadata_reclaimed_objects,
        bytes(r.metadata_reclaimed_bytes),
        if summary.dry_run {
            "would repack"
        } else {
            "repacked"
        },
        r.repacked_packs,
        bytes(r.repacked_bytes),
        summary.keep_secs,
        r.millis as f64 / 1000.0
    );
    Ok(())
}

/// `cardfs status [MOUNTPOINT] [--json]`: one mount, or every mount of
/// this user; with `json`, a JSON array of [`StatusReport`]s.
pub fn status(path: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    if let Some(path) = path {
        let mnt = mountpoint::absolute(path)?;
        let (stream, _) = control::connect_any_home(&mnt)?;
        reports.push(ask_status(stream, &mnt)?);
    } else {
        for socket in control::all_sockets()? {
            let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else {
                // Nobody listens: a daemon that was killed left it behind.
                let _ = std::fs::remove_file(&socket);
                continue;
            };
            match ask_status(stream, &socket) {
                Ok(report) => reports.push(report),
                Err(e) => eprintln!("cardfs: {}: {e:#}", socket.display()),
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    if reports.is_empty() {
        println!("no cardfs drive is mounted");
    }
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        for line in status_lines(report) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The status of the daemon behind `stream` (`mnt` names it in errors).
pub fn ask_status(
    stream: std::os::unix::net::UnixStream,
    mnt: &Path,
) -> anyhow::Result<StatusReport> {
    match control::call_on(stream, mnt, Request::Status, &mut |_, _| {})? {
        Answer::Status { status } => Ok(*status),
        other => anyhow::bail!("the mount daemon answered a status request with {other:?}"),
    }
}

/// An RFC 3339 UTC time of a report as `cardfs status` words it.
fn words_utc(rfc3339: &str) -> String {
    rfc3339.replace('T', " ").replace('Z', " UTC")
}

/// `cardfs status` in words: the mountpoint, then indented fields.
fn status_lines(r: &StatusReport) -> Vec<String> {
    use super::units::bytes;
    let d = &r.drive;
    let last_commit = match (&d.last_commit, d.last_commit_age_secs) {
        (Some(t), Some(ago)) => {
            format!("{} ({ago} s ago)", words_utc(t))
        }
        _ => "none since mounting".into(),
    };
    let owner = match (&d.owner_identity, &d.owner_fingerprint) {
        (Some(id), Some(fp)) => format!("{id} ({fp})"),
        _ => "(unreadable card)".into(),
    };
    let mut fields = vec![
        ("store", r.store.clone()),
        ("cache dir", r.cache_dir.clone()),
        ("daemon pid", r.daemon_pid.to_string()),
        (
            "mode",
            if r.read_only {
                "read-only"
            } else {
                "read-write"
            }
            .into(),
        ),
        (
            "pending uploads",
            format!("{} changes, {}", d.pending_changes, bytes(d.pending_bytes)),
        ),
        (
            "upload rate",
            format!("{}/s (last 10 s)", bytes(d.upload_rate)),
        ),
        (
            "uploaded",
            format!("{} since mounting", bytes(d.uploaded_bytes)),
        ),
        ("last commit", last_commit),
        (
            "store reachable",
            match &d.offline_since {
                Some(t) => format!(
                    "offline (store unreachable since {}): serving the local cache, changes are \
                     queued",
                    words_utc(t)
                ),
                None if d.store_reachable => "yes".into(),
                None => "no".into(),
            },
        ),
    ];
    if let Some(t) = &d.last_gc {
        let what = match (
            &d.last_gc_error,
            d.last_gc_reclaimed_objects,
            d.last_gc_reclaimed_bytes,
        ) {
            (Some(e), _, _) => format!("failed: {e}"),
            (None, Some(n), Some(b)) => format!("reclaimed {n} objects, {}", bytes(b)),
            _ => String::new(),
        };
        fields.push(("last collection", format!("{} {what}", words_utc(t))));
    }
    if d.cache_full {
        fields.push((
            "cache",
            "full: writes fail with ENOSPC until the store takes uploads again".into(),
        ));
    }
    if !d.lost_writes.is_empty() {
        fields.push((
            "lost writes",
            format!(
                "the daemon stopped before these files' last writes were sealed: {}",
                d.lost_writes.join(", ")
            ),
        ));
    }
    if d.refused_changes > 0 {
        let last = match (&d.last_refused, &d.last_refused_reason) {
            (Some(t), Some(why)) => format!("; the last at {}: {why}", words_utc(t)),
            _ => String::new(),
        };
        fields.push((
            "refused changes",
            format!(
                "{} (their content was collected before they could be committed; the files stay as they were){last}",
                d.refused_changes
            ),
        ));
    }
    fields.push(("owner", owner));
    fields.push((
        "your role",
        if d.role == "owner" {
            "owner".into()
        } else {
            "member of the folders shared with you".into()
        },
    ));
    std::iter::once(r.mountpoint.clone())
        .chain(
            fields
                .into_iter()
                .map(|(name, value)| format!("  {name}: {value}")),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::control_messages::{DriveReport, MountInfo};

    #[test]
    fn status_in_words() {
        let info = MountInfo {
            mountpoint: "/mnt/d".into(),
            store: "s3://b".into(),
            ..MountInfo::default()
        };
        let report = info.report(DriveReport {
            pending_changes: 3,
            pending_bytes: 2048,
            uploaded_bytes: 3 << 20,
            upload_rate: 1536,
            last_commit: Some("1970-01-01T00:01:28Z".into()),
            last_commit_age_secs: Some(12),
            store_reachable: false,
            offline_since: None,
            cache_full: true,
            lost_writes: vec!["a/b.txt".into()],
            owner_identity: Some("alice@x".into()),
            owner_fingerprint: Some("1234".into()),
            role: "member".into(),
            ..DriveReport::default()
        });
        let lines = status_lines(&report);
        assert_eq!(lines[0], "/mnt/d");
        let has = |want: &str| {
            assert!(
                lines.iter().any(|l| l == want),
                "{want:?} not in {lines:#?}"
            )
        };
        has("  store: s3://b");
        has("  pending uploads: 3 changes, 2.0 KiB");
        has("  last commit: 1970-01-01 00:01:28 UTC (12 s ago)");
        has("  upload rate: 1.5 KiB/s (last 10 s)");
        has("  uploaded: 3.0 MiB since mounting");
        has("  store reachable: no");
        let offline = StatusReport {
            drive: DriveReport {
                offline_since: Some("1970-01-01T00:01:00Z".into()),
                ..report.drive.clone()
            },
            ..report.clone()
        };
        assert!(status_lines(&offline).iter().any(|l| l.starts_with(
            "  store reachable: offline (store unreachable since 1970-01-01 00:01:00 UTC)"
        )));
        has("  owner: alice@x (1234)");
        has("  your role: member of the folders shared with you");
        assert!(lines.iter().any(|l| l.starts_with("  cache: full")));
        assert!(lines.iter().any(|l| l.ends_with("a/b.txt")));
    }

    #[test]
    fn refused_changes_in_words() {
        let none = MountInfo::default().report(DriveReport::default());
        assert!(!status_lines(&none).iter().any(|l| l.contains("refused")));
        let report = MountInfo::default().report(DriveReport {
            refused_changes: 2,
            last_refused: Some("1970-01-01T00:01:30Z".into()),
            last_refused_reason: Some("changes to copy refused".into()),
            ..DriveReport::default()
        });
        let line = status_lines(&report)
            .into_iter()
            .find(|l| l.starts_with("  refused changes: 2 "))
            .expect("a refused changes line");
        assert!(
            line.ends_with("; the last at 1970-01-01 00:01:30 UTC: changes to copy refused"),
            "{line}"
        );
    }
}
