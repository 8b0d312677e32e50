//! `cardfs fsck MOUNTPOINT [--json] [--verify-content]`: the owner's check
//! of a whole mounted drive, run by the mount daemon (it holds the keys)
//! and reported here. Exit 0 when nothing is missing or damaged, 50 when
//! something is (listed with the files it belongs to), 51 when the check
//! could not run to its end.

use super::control::{self, Answer, Request};
use super::control_messages::{FsckProblem, FsckReport, FsckVolume};
use super::exit::UserError;
use super::mountpoint;
use super::progress::Progress;
use super::units::bytes;
use cardfs::drive::{Drive, DriveError, FsckOptions, ProblemKind};
use std::path::Path;

/// The client side: asks the daemon, prints the report, and fails with
/// exit 50 when it lists problems.
pub fn run(path: &Path, json: bool, verify_content: bool) -> anyhow::Result<()> {
    let mnt = mountpoint::absolute(path)?;
    let (stream, _) = control::connect_any_home(&mnt)?;
    let progress = Progress::counting("checking");
    let request = Request::Fsck { verify_content };
    let result = control::call_on(stream, &mnt, request, &mut |d, t| progress.update(d, t));
    progress.finish();
    let report = match result? {
        Answer::Fsck { report } => *report,
        other => anyhow::bail!("the mount daemon answered fsck with {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in report_lines(&mnt, &report) {
            println!("{line}");
        }
    }
    if report.clean {
        return Ok(());
    }
    Err(UserError::FsckProblems {
        path: mnt,
        problems: report.problems.len(),
    }
    .into())
}

/// The daemon side: runs the check on the mounted drive. Any failure to
/// run it to its end is [`UserError::FsckIncomplete`] (exit 51).
pub async fn serve(
    drive: &Drive,
    verify_content: bool,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> anyhow::Result<Answer> {
    let r = drive
        .fsck(FsckOptions { verify_content }, progress)
        .await
        .map_err(|e| UserError::FsckIncomplete {
            reason: match e {
                DriveError::NotPermitted => {
                    "only the drive's owner can check the whole drive; this is a member's mount"
                        .into()
                }
                other => other.to_string(),
            },
        })?;
    let text = |p: &Path| p.to_string_lossy().into_owned();
    let report = FsckReport {
        clean: r.is_clean(),
        content_verified: r.content_verified,
        volumes: (r.volumes.iter())
            .map(|v| FsckVolume {
                volume: v.volume,
                path: v.path.as_deref().map(text),
                generations: v.generations,
                log_entries: v.log_entries,
                snapshots: v.snapshots,
                snapshots_checked: v.snapshots_checked,
                nodes: v.nodes,
                block_refs: v.block_refs,
                failed: v.failed,
            })
            .collect(),
        problems: (r.problems.iter())
            .map(|p| FsckProblem {
                kind: match p.kind {
                    ProblemKind::Missing => "missing",
                    ProblemKind::Damaged => "damaged",
                    ProblemKind::Metadata => "metadata",
                }
                .into(),
                object: p.object.clone(),
                reason: p.reason.clone(),
                paths: p.paths.iter().map(|p| text(p)).collect(),
            })
            .collect(),
        referenced_objects: r.referenced_objects,
        referenced_bytes: r.referenced_bytes,
        orphan_objects: r.orphan_objects,
        orphan_bytes: r.orphan_bytes,
    };
    Ok(Answer::Fsck {
        report: Box::new(report),
    })
}

/// The report in words.
fn report_lines(mnt: &Path, r: &FsckReport) -> Vec<String> {
    let sum = |f: fn(&FsckVolume) -> u64| r.volumes.iter().map(f).sum::<u64>();
    let mut lines = vec![
        format!(
            "{}: checked {} volume{} ({} keyring generations, {} log entries, {} snapshots)",
            mnt.display(),
            r.volumes.len(),
            if r.volumes.len() == 1 { "" } else { "s" },
            sum(|v| v.generations.into()),
            sum(|v| v.log_entries),
            sum(|v| v.snapshots),
        ),
        format!(
            "  content: {} objects ({}) referenced, {}",
            r.referenced_objects,
            bytes(r.referenced_bytes),
            if r.content_verified {
                "each fetched and decrypted"
            } else {
                "each present with the right size (--verify-content decrypts them)"
            }
        ),
        format!(
            "  orphans: {} objects ({}) that no current file references (`cardfs gc` \
             collects them once past the history window)",
            r.orphan_objects,
            bytes(r.orphan_bytes)
        ),
    ];
    for v in r.volumes.iter().filter(|v| v.failed) {
        let at = match v.path.as_deref() {
            Some("") => "the drive's root".to_string(),
            Some(p) => mnt.join(p).display().to_string(),
            None => "a volume linked nowhere".into(),
        };
        lines.push(format!(
            "  volume {} ({at}): its state could not be verified, its files were not checked",
            cardfs::format::wire::hex(&v.volume)
        ));
    }
    if r.problems.is_empty() {
        lines.push("  no missing or damaged objects".into());
    } else {
        lines.push(format!("  problems: {}", r.problems.len()));
    }
    for p in &r.problems {
        lines.push(format!("  {} {}: {}", p.kind, p.object, p.reason));
        for f in &p.paths {
            lines.push(format!("      {}", mnt.join(f).display()));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_in_words() {
        let r = FsckReport {
            clean: false,
            volumes: vec![FsckVolume {
                volume: [1; 16],
                path: Some(String::new()),
                generations: 1,
                log_entries: 7,
                snapshots: 1,
                snapshots_checked: 1,
                nodes: 4,
                block_refs: 2,
                failed: false,
            }],
            problems: vec![FsckProblem {
                kind: "missing".into(),
                object: "c/ab".into(),
                reason: "content object missing".into(),
                paths: vec!["docs/a".into()],
            }],
            referenced_objects: 2,
            referenced_bytes: 2048,
            orphan_objects: 1,
            orphan_bytes: 1024,
            content_verified: false,
        };
        let lines = report_lines(Path::new("/m"), &r);
        assert_eq!(
            lines[0],
            "/m: checked 1 volume (1 keyring generations, 7 log entries, 1 snapshots)"
        );
        assert!(
            lines[1].contains("2 objects (2.0 KiB) referenced"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("orphans: 1 objects (1.0 KiB)"),
            "{lines:?}"
        );
        assert!(lines.contains(&"  missing c/ab: content object missing".into()));
        assert!(lines.contains(&"      /m/docs/a".into()));
    }
}
