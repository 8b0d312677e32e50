//! `cardfs history PATH [--json]` and `cardfs restore PATH --at TIME
//! [--to DEST]`: a file's or folder's versions, and bringing one back, on
//! a mounted drive. PATH may be deleted now: the command finds the mount
//! from its nearest existing ancestor, and the mount daemon reads the
//! past from the log entries (and the snapshot before them) in the store.
//!
//! Times: `--at` takes RFC 3339 (`2026-11-29T10:14:00Z`, an offset such as
//! `+01:00`, fractions of a second; a space for `T` and no zone mean UTC),
//! a date (midnight UTC), `now`, or a span ago (`90s`, `2h`, `3d`, `1w`,
//! `2h 30m`, with or without a trailing `ago`). History prints times with
//! nanoseconds, so a time copied from it selects exactly that version.

use super::control::{self, Answer, Request};
use super::control_messages::{HistoryVersion, RestoreReport};
use super::exit::{UsageError, UserError};
use super::mountpoint;
use super::units::bytes;
use anyhow::Context;
use cardfs::drive::{Change, Drive, DriveError, FileKind, RestoreTo, Version};
use cardfs::format::card::CardId;
use cardfs::identity::cards::CardStore;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A path on a mounted drive that may not exist: the mountpoint and the
/// path below it.
struct OnMount {
    mnt: PathBuf,
    rel: PathBuf,
}

/// Finds the cardfs mount holding `path`, from its nearest existing
/// ancestor (the path itself may be deleted).
fn locate(path: &Path) -> anyhow::Result<OnMount> {
    let abs = mountpoint::absolute(path)?;
    let mut missing = Vec::new();
    let mut existing = abs.as_path();
    let real = loop {
        match existing.canonicalize() {
            Ok(p) => break p,
            Err(_) => {
                let name = existing
                    .file_name()
                    .with_context(|| format!("{} is not on a mounted drive", abs.display()))?;
                missing.push(name.to_owned());
                existing = existing
                    .parent()
                    .expect("a path with a file name has a parent");
            }
        }
    };
    let full = missing.iter().rev().fold(real, |p, n| p.join(n));
    if full.components().any(|c| c == Component::ParentDir) {
        anyhow::bail!("{}: `..` after a deleted name is ambiguous", abs.display());
    }
    let mnt = mountpoint::cardfs_mount_holding(&full)
        .context("reading /proc/self/mountinfo")?
        .ok_or_else(|| UserError::NotMounted { path: full.clone() })?;
    let rel = full.strip_prefix(&mnt)?.to_path_buf();
    Ok(OnMount { mnt, rel })
}

fn rel_bytes(rel: &Path) -> Vec<u8> {
    rel.as_os_str().as_bytes().to_vec()
}

/// `cardfs history PATH [--json]`.
pub fn history(path: &Path, json: bool) -> anyhow::Result<()> {
    let at = locate(path)?;
    let request = Request::History {
        path: rel_bytes(&at.rel),
    };
    let versions = match control::call(&at.mnt, request, |_, _| {})? {
        Answer::History { versions } => versions,
        other => anyhow::bail!("the mount daemon answered history with {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(());
    }
    let full = at.mnt.join(&at.rel);
    println!(
        "{}: {} version{} (times UTC, as the writing client's clock had them)",
        full.display(),
        versions.len(),
        if versions.len() == 1 { "" } else { "s" }
    );
    // Writers are named by their pinned cards where this user has them.
    let cards = super::card_files::card_store().ok();
    for v in &versions {
        println!("  {}", version_line(v, cards.as_ref()));
    }
    println!(
        "bring one back with: cardfs restore {} --at TIME [--to DEST]",
        full.display()
    );
    Ok(())
}

fn version_line(v: &HistoryVersion, cards: Option<&CardStore>) -> String {
    let what = match (v.change.as_str(), v.kind.as_str()) {
        ("deleted" | "moved_away", _) => String::new(),
        (_, "file") => bytes(v.size),
        (_, kind) => kind.to_string(),
    };
    let who = match (v.change.as_str(), v.this_client) {
        ("present", _) => "oldest state kept".to_string(),
        (_, true) => format!("client {} (this mount)", short(&v.client)),
        (_, false) => format!("client {}", short(&v.client)),
    };
    // The signer: its identity when its card is pinned here, else its
    // card id.
    let who = match &v.writer {
        Some(card) => {
            let pinned = (cardfs::format::hex::decode::<32>(card))
                .and_then(|id| cards?.find_id(CardId(id)).ok().flatten());
            match pinned {
                Some(c) => format!("{who}, by {}", c.identity()),
                None => format!("{who}, by card {card}"),
            }
        }
        None => who,
    };
    format!(
        "{:<30}  {:<10}  {:>10}  {who}",
        v.time,
        v.change.replace('_', " "),
        what
    )
}

fn short(id: &[u8; 16]) -> String {
    cardfs::format::wire::hex(&id[..4])
}

/// `cardfs restore PATH --at TIME [--to DEST]`.
pub fn restore(path: &Path, at: &str, to: Option<&Path>) -> anyhow::Result<()> {
    let when = parse_time(at, SystemTime::now())?;
    let src = locate(path)?;
    let to = match to {
        None => None,
        Some(dest) => {
            let d = locate(dest)?;
            if d.mnt != src.mnt {
                anyhow::bail!(
                    "{} is not on the same mount as {}",
                    dest.display(),
                    path.display()
                );
            }
            Some(rel_bytes(&d.rel))
        }
    };
    let request = Request::Restore {
        path: rel_bytes(&src.rel),
        at: super::units::rfc3339_nanos(when),
        to,
        suffix: basic_utc(when),
    };
    let report = match control::call(&src.mnt, request, |_, _| {})? {
        Answer::Restored { report } => report,
        other => anyhow::bail!("the mount daemon answered restore with {other:?}"),
    };
    let dest = src.mnt.join(&report.dest);
    println!(
        "restored {} as it was at {} (the state after the change of {}) to {}: {} item{}, {}",
        src.mnt.join(&src.rel).display(),
        super::units::rfc3339_nanos(when),
        report.state_time,
        dest.display(),
        report.nodes,
        if report.nodes == 1 { "" } else { "s" },
        bytes(report.bytes)
    );
    if report.skipped_links > 0 {
        println!(
            "  {} shared folder{} inside it not restored (each keeps its own history)",
            report.skipped_links,
            if report.skipped_links == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// `20261129T101400Z`: a time for a file name (no `:`).
fn basic_utc(t: SystemTime) -> String {
    super::units::rfc3339(t).replace(['-', ':'], "")
}

/// A `--at` time (see the module doc), relative to `now`.
fn parse_time(text: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    let t = text.trim();
    let bad = || {
        anyhow::Error::new(UsageError(format!(
            "cannot read {text:?} as a time: give RFC 3339 (2026-11-29T10:14:00Z, an offset \
             like +01:00 or none for UTC), a date, `now`, or a span ago (90s, 2h, 3d, 1w)"
        )))
    };
    if t == "now" {
        return Ok(now);
    }
    let span = t.strip_suffix("ago").unwrap_or(t).trim();
    if span.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(d) = humantime::parse_duration(span)
    {
        return now.checked_sub(d).ok_or_else(bad);
    }
    // A trailing offset `+HH:MM` / `-HH:MM` after a time of day.
    let (base, offset) = match t.len().checked_sub(6).map(|i| t.split_at(i)) {
        Some((b, o))
            if b.len() > 10
                && (o.starts_with('+') || o.starts_with('-'))
                && o.as_bytes()[3] == b':' =>
        {
            let h: u64 = o[1..3].parse().map_err(|_| bad())?;
            let m: u64 = o[4..6].parse().map_err(|_| bad())?;
            (
                b,
                Some((o.starts_with('-'), Duration::from_secs(h * 3600 + m * 60))),
            )
        }
        _ => (t, None),
    };
    let base = if base.len() == 10 {
        format!("{base}T00:00:00Z")
    } else {
        base.to_string()
    };
    let local = humantime::parse_rfc3339_weak(&base).map_err(|_| bad())?;
    let utc = match offset {
        None => local,
        // 10:00+01:00 is 09:00 UTC.
        Some((false, d)) => local.checked_sub(d).ok_or_else(bad)?,
        Some((true, d)) => local + d,
    };
    if utc > now {
        anyhow::bail!("{text} is in the future; nothing is known of it yet");
    }
    Ok(utc)
}

/// The daemon side of `history`.
pub async fn serve_history(drive: &Drive, path: &[u8]) -> anyhow::Result<Answer> {
    let versions = drive
        .history(path)
        .await
        .map_err(|e| described(e, path, "no version of it is kept"))?;
    Ok(Answer::History {
        versions: versions.iter().map(version_report).collect(),
    })
}

/// The daemon side of `restore`; also returns the inode of the directory
/// it restored into and the destination path (for the kernel's cache).
pub async fn serve_restore(
    drive: &Drive,
    path: &[u8],
    at: &str,
    to: Option<Vec<u8>>,
    suffix: String,
) -> anyhow::Result<(Answer, u64, Vec<u8>)> {
    let when = humantime::parse_rfc3339_weak(at).context("the restore time")?;
    let to = match to {
        Some(p) => RestoreTo::Path(p),
        None => RestoreTo::Default { suffix },
    };
    let info = drive
        .restore(path, when, to)
        .await
        .map_err(|e| described(e, path, "it did not exist at that time"))?;
    let report = RestoreReport {
        dest: String::from_utf8_lossy(&info.dest).into_owned(),
        state_time: super::units::rfc3339_nanos(info.restored.time),
        nodes: info.restored.nodes,
        bytes: info.restored.bytes,
        skipped_links: info.restored.skipped_links,
    };
    Ok((Answer::Restored { report }, info.parent, info.dest))
}

/// A history or restore refusal in words.
fn described(e: DriveError, path: &[u8], not_found: &str) -> anyhow::Error {
    let p = String::from_utf8_lossy(path);
    match e {
        DriveError::NotFound => anyhow::anyhow!("{p}: {not_found}"),
        DriveError::Exists => anyhow::anyhow!(
            "the destination already exists; nothing was overwritten (choose another with --to)"
        ),
        DriveError::CrossDevice => anyhow::anyhow!(
            "the destination is in another shared folder than {p} (restored files keep their \
             folder's keys): restore into the same folder, then copy"
        ),
        DriveError::Invalid(why) => anyhow::anyhow!("{p}: {why}"),
        other => anyhow::Error::new(other).context(p.into_owned()),
    }
}

fn version_report(v: &Version) -> HistoryVersion {
    HistoryVersion {
        time: super::units::rfc3339_nanos(v.time),
        seq: v.seq,
        change: match v.change {
            Change::Present => "present",
            Change::Created => "created",
            Change::MovedIn => "moved_in",
            Change::Modified => "modified",
            Change::Replaced => "replaced",
            Change::Attributes => "attributes",
            Change::MovedAway => "moved_away",
            Change::Deleted => "deleted",
        }
        .into(),
        kind: match v.kind {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "char_device",
            FileKind::BlockDevice => "block_device",
        }
        .into(),
        size: v.size,
        mtime: super::units::rfc3339(v.mtime.max(UNIX_EPOCH)),
        client: v.client,
        this_client: v.this_client,
        writer: v.writer.map(|w| cardfs::format::wire::hex(&w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_documented() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |s: &str| parse_time(s, now).unwrap();
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert_eq!(at("now"), now);
        assert_eq!(at("2h"), now - Duration::from_secs(7200));
        assert_eq!(at("3d ago"), now - Duration::from_secs(3 * 86400));
        assert_eq!(at("1w"), now - Duration::from_secs(7 * 86400));
        assert_eq!(at("2h 30m"), now - Duration::from_secs(9000));
        assert_eq!(secs(at("2026-11-29T10:14:00Z")), 1_795_947_240.0);
        assert_eq!(secs(at("2026-11-29 10:14:00")), 1_795_947_240.0);
        assert_eq!(secs(at("2026-11-29T11:14:00+01:00")), 1_795_947_240.0);
        assert_eq!(secs(at("2026-11-29T09:14:00-01:00")), 1_795_947_240.0);
        assert_eq!(secs(at("2026-11-29")), 1_795_910_400.0);
        let exact = at("2026-11-29T10:14:00.529615202Z");
        assert_eq!(
            super::super::units::rfc3339_nanos(exact),
            "2026-11-29T10:14:00.529615202Z"
        );
        for bad in ["yesterday", "10:14", "2026-13-01", "h2", ""] {
            let err = parse_time(bad, now).unwrap_err();
            assert_eq!(super::super::exit::code_of(&err), 2, "{bad}");
        }
        assert!(parse_time("2030-01-01T00:00:00Z", now).is_err());
        assert_eq!(basic_utc(at("2026-11-29T10:14:00Z")), "20261129T101400Z");
    }
}
