//! The messages of the control protocol between a `cardfs` command and a
//! mount daemon (the transport is `control`): serde types, sent as one
//! JSON object per line. JSON lines because the channel is local (a Unix
//! socket, so size and speed do not matter), debuggable by eye (`socat`),
//! and serde gives typed messages on both sides without a hand-written
//! parser; `cardfs status --json` prints the same [`StatusReport`].
//!
//! Every line is a [`Frame`]: the protocol version, the sender's cardfs
//! version and one message. A request is one [`Request`] frame; the answer
//! is any number of `progress`/`working` frames and one final frame, `done`
//! (with an [`Answer`]) or `error` (with an exit code). Invariant: a
//! receiver reads the frame's `protocol` before anything else and refuses
//! a frame of another version (exit 33) instead of guessing its layout.

use serde::{Deserialize, Serialize};

/// Version of the control protocol: raised on any change of the messages
/// below that an older peer could not read.
pub const PROTOCOL: u32 = 1;

/// The cardfs version of this binary, sent in every frame.
pub const CARDFS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One line on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame<T> {
    pub protocol: u32,
    /// The sender's cardfs version (only for error messages).
    pub cardfs: String,
    pub message: T,
}

impl<T> Frame<T> {
    /// `message` in a frame of this binary's protocol.
    pub fn new(message: T) -> Self {
        Frame {
            protocol: PROTOCOL,
            cardfs: CARDFS_VERSION.into(),
            message,
        }
    }
}

impl<T: Serialize> Frame<T> {
    /// The frame as one JSON line, newline included. JSON escapes control
    /// characters, so no value can end the line early.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("control messages always serialize");
        line.push('\n');
        line
    }
}

/// The version fields of a frame, read before its message.
#[derive(Debug, Deserialize)]
pub struct Head {
    pub protocol: u32,
    #[serde(default)]
    pub cardfs: Option<String>,
}

/// What a command asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Status,
    Sync,
    Unmount,
    /// Share the folder at `path` (relative to the mount root, as bytes)
    /// with the holder of `card` (a card's bytes, verified by the daemon).
    ShareAdd {
        #[serde(with = "hex_bytes")]
        path: Vec<u8>,
        read_only: bool,
        #[serde(with = "hex_bytes")]
        card: Vec<u8>,
    },
    /// Remove the member with this card id from the folder at `path`.
    ShareRemove {
        #[serde(with = "hex_bytes")]
        path: Vec<u8>,
        #[serde(with = "hex_array")]
        card_id: [u8; 32],
    },
    /// Every shared folder this mount sees.
    ShareList,
    /// Re-encrypt every block of the shared folder at `path`.
    ShareReencrypt {
        #[serde(with = "hex_bytes")]
        path: Vec<u8>,
    },
    /// Cards published for an identity in the drive's card directory.
    CardsFind {
        identity: String,
    },
    /// Every card published in the drive's card directory.
    CardsAll,
    /// The card with this id in the drive's card directory.
    CardGet {
        #[serde(with = "hex_array")]
        id: [u8; 32],
    },
    /// Check the whole drive (`cardfs fsck`).
    Fsck {
        verify_content: bool,
    },
    /// The versions of the file or folder at `path` (below the mount root;
    /// it may be deleted now).
    History {
        #[serde(with = "hex_bytes")]
        path: Vec<u8>,
    },
    /// Bring `path` back as it was at `at` (RFC 3339, UTC) into `to` (below
    /// the mount root), or by default to `path` itself when it is free,
    /// else beside it as `NAME.restored-SUFFIX`.
    Restore {
        #[serde(with = "hex_bytes")]
        path: Vec<u8>,
        at: String,
        #[serde(with = "opt_hex_bytes")]
        to: Option<Vec<u8>>,
        suffix: String,
    },
    /// Collect content objects nothing needs (`cardfs gc`): unreferenced
    /// objects older than `grace_secs`; history kept for `keep_secs`
    /// (`None`: the mount's setting); packs repacked until their dead
    /// bytes are within `pack_waste_percent` of their live bytes (`None`,
    /// from an older client: the default).
    Gc {
        grace_secs: u64,
        keep_secs: Option<u64>,
        dry_run: bool,
        #[serde(default)]
        pack_waste_percent: Option<u64>,
    },
}

/// One frame the daemon sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// `done` of `total` bytes of long work (sync, re-encryption).
    Progress { done: u64, total: u64 },
    /// Still working: sent when nothing else was sent for a second, so a
    /// client tells a slow request from a hung daemon.
    Working,
    /// The request succeeded (final).
    Done { answer: Answer },
    /// The request failed with this exit code (final).
    Error { code: u8, message: String },
}

impl Reply {
    pub fn is_final(&self) -> bool {
        matches!(self, Reply::Done { .. } | Reply::Error { .. })
    }
}

/// The result of a successful request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// Sync, unmount, re-encryption: nothing to report.
    Nothing,
    Status {
        status: Box<StatusReport>,
    },
    /// The shared folders the request touched or listed.
    Shares {
        shares: Vec<ShareReport>,
    },
    /// Cards from the drive's card directory, in their text form, and the
    /// objects that were skipped as invalid (`KEY: REASON`).
    Cards {
        cards: Vec<String>,
        rejected: Vec<String>,
    },
    /// What `cardfs fsck` found.
    Fsck {
        report: Box<FsckReport>,
    },
    /// The versions `cardfs history` lists, oldest first.
    History {
        versions: Vec<HistoryVersion>,
    },
    /// What `cardfs restore` did.
    Restored {
        report: RestoreReport,
    },
    /// What a collection found and did.
    Gc {
        /// Boxed: the largest answer by far (serialized the same).
        report: Box<GcSummary>,
    },
}

/// One version of a path (`cardfs history --json`, documented in
/// docs/CLI.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryVersion {
    /// The time of the change (its writer's clock), RFC 3339 UTC with
    /// nanoseconds: exact, so `restore --at` with it gets this version.
    pub time: String,
    /// The position of the change in its volume's log.
    pub seq: u64,
    /// `present` (in the oldest state kept), `created`, `moved_in`,
    /// `modified`, `replaced`, `attributes`, `moved_away` or `deleted`.
    pub change: String,
    /// `file`, `dir`, `symlink`, ... (before the change for `deleted`).
    pub kind: String,
    pub size: u64,
    /// The file's modification time then, RFC 3339 UTC.
    pub mtime: String,
    /// The id of the client (a cache directory) that made the change;
    /// zeros for `present`.
    #[serde(with = "hex_array")]
    pub client: [u8; 16],
    /// That client is this mount.
    pub this_client: bool,
    /// The card id of the member who signed the change (hex); absent
    /// for `present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

/// What `cardfs restore` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Where it was restored, below the mount root.
    pub dest: String,
    /// The time of the change whose state was restored (RFC 3339 UTC).
    pub state_time: String,
    pub nodes: u64,
    pub bytes: u64,
    /// Shared-folder links inside the restored folder, not restored.
    pub skipped_links: u64,
}

/// What `cardfs fsck --json` prints (documented in docs/CLI.md: names and
/// meanings never change, new fields may be added). Paths are relative to
/// the mount root.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FsckReport {
    /// No object is missing or damaged (orphans are no problem).
    pub clean: bool,
    /// Every referenced content object was fetched and decrypted
    /// (`--verify-content`); otherwise its presence and size were checked.
    pub content_verified: bool,
    pub volumes: Vec<FsckVolume>,
    pub problems: Vec<FsckProblem>,
    /// Distinct content objects the current trees reference, and their
    /// bytes in the store.
    pub referenced_objects: u64,
    pub referenced_bytes: u64,
    /// Content objects no current tree references (what a collection
    /// deletes), and their bytes.
    pub orphan_objects: u64,
    pub orphan_bytes: u64,
}

/// One volume of an [`FsckReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckVolume {
    #[serde(with = "hex_array")]
    pub volume: [u8; 16],
    /// Where it is linked (empty: the drive's root; `null`: not linked).
    pub path: Option<String>,
    pub generations: u32,
    pub log_entries: u64,
    pub snapshots: u64,
    /// Snapshots compared with the state their log entries give.
    pub snapshots_checked: u64,
    pub nodes: u64,
    pub block_refs: u64,
    /// Its state could not be established (see the problems).
    pub failed: bool,
}

/// One object that failed the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckProblem {
    /// `missing`, `damaged` (content) or `metadata`.
    pub kind: String,
    /// The store key of the object.
    pub object: String,
    pub reason: String,
    /// The files that reference it.
    pub paths: Vec<String>,
}

/// A garbage collection's figures (`cardfs gc --json`): the drive's
/// report (objects, bytes, live, young, reclaimed, millis) and the
/// settings of the run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GcSummary {
    #[serde(flatten)]
    pub figures: cardfs::drive::GcReport,
    pub dry_run: bool,
    /// The history retention and grace the run used, in seconds.
    pub keep_secs: u64,
    pub grace_secs: u64,
}

/// What `cardfs status` reports of a mount; the fields of
/// `cardfs status --json` (documented in docs/CLI.md: names and meanings
/// never change, new fields may be added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub mountpoint: String,
    pub store: String,
    pub cache_dir: String,
    pub daemon_pid: u32,
    /// The cardfs version of the daemon.
    pub daemon_version: String,
    pub read_only: bool,
    #[serde(flatten)]
    pub drive: DriveReport,
}

/// The mount's facts a daemon knows before its drive is asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountInfo {
    pub mountpoint: String,
    pub store: String,
    pub cache_dir: String,
    pub daemon_pid: u32,
    pub read_only: bool,
}

impl MountInfo {
    /// The full report with the drive's part.
    pub fn report(&self, drive: DriveReport) -> StatusReport {
        StatusReport {
            mountpoint: self.mountpoint.clone(),
            store: self.store.clone(),
            cache_dir: self.cache_dir.clone(),
            daemon_pid: self.daemon_pid,
            daemon_version: CARDFS_VERSION.into(),
            read_only: self.read_only,
            drive,
        }
    }
}

/// The drive's part of a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DriveReport {
    /// Changes (metadata operations) not yet committed to the store.
    pub pending_changes: u64,
    /// Content bytes not yet uploaded (queued).
    pub pending_bytes: u64,
    /// Content bytes uploaded since the mount began.
    pub uploaded_bytes: u64,
    /// Upload rate over the last 10 seconds, bytes per second.
    pub upload_rate: u64,
    /// The last commit of this mount, RFC 3339 UTC (`null`: none since
    /// mounting).
    pub last_commit: Option<String>,
    /// Seconds since the last commit.
    pub last_commit_age_secs: Option<u64>,
    /// The store answered its last request.
    pub store_reachable: bool,
    /// Mounted from the local cache while the store is unreachable: since
    /// when (RFC 3339 UTC); `null` when the store answered at mount.
    pub offline_since: Option<String>,
    /// Writes fail with ENOSPC until the store takes uploads again.
    pub cache_full: bool,
    /// Files whose last writes were lost when the daemon last stopped
    /// without unmounting.
    pub lost_writes: Vec<String>,
    /// The drive owner's card identity and fingerprint (`null` when the
    /// card is unreadable).
    pub owner_identity: Option<String>,
    pub owner_fingerprint: Option<String>,
    /// `owner`, or `member` (of the folders shared with you).
    pub role: String,
    /// The last garbage collection of this mount (RFC 3339 UTC; `null`:
    /// none since mounting), what it deleted, or why it failed.
    #[serde(default)]
    pub last_gc: Option<String>,
    #[serde(default)]
    pub last_gc_reclaimed_objects: Option<u64>,
    #[serde(default)]
    pub last_gc_reclaimed_bytes: Option<u64>,
    #[serde(default)]
    pub last_gc_error: Option<String>,
    /// Changes refused since mounting because the content they name was
    /// collected before they could be committed (the files stay as they
    /// were), and the last one's time (RFC 3339 UTC) and reason.
    #[serde(default)]
    pub refused_changes: u64,
    #[serde(default)]
    pub last_refused: Option<String>,
    #[serde(default)]
    pub last_refused_reason: Option<String>,
}

/// A shared folder as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareReport {
    /// The folder's path below the mount root (empty for the root).
    pub path: String,
    #[serde(with = "hex_array")]
    pub volume: [u8; 16],
    /// Key generation (raised by every member removal).
    pub generation: u32,
    /// The owner's card id.
    #[serde(with = "hex_array")]
    pub owner: [u8; 32],
    /// `owner`, `writer` or `reader`.
    pub my_role: String,
    pub members: Vec<MemberReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReport {
    #[serde(with = "hex_array")]
    pub card_id: [u8; 32],
    /// `owner`, `writer` or `reader`.
    pub role: String,
}

/// Bytes as lower-case hex text.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cardfs::format::wire::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        let digit = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        if !text.len().is_multiple_of(2) {
            return Err(D::Error::custom("odd-length hex"));
        }
        text.as_bytes()
            .chunks(2)
            .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| D::Error::custom("not hex"))
    }
}

/// Optional bytes as hex text or null.
mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::hex_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Hex(#[serde(with = "super::hex_bytes")] Vec<u8>);
        Ok(Option::<Hex>::deserialize(d)?.map(|h| h.0))
    }
}

/// A fixed-size byte array (card id, volume id) as hex text.
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cardfs::format::wire::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        cardfs::format::wire::parse_hex(&text)
            .ok_or_else(|| D::Error::custom(format!("not {N} bytes of hex")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(message: T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + Clone,
    {
        let line = Frame::new(message.clone()).to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        let back: Frame<T> = serde_json::from_str(&line).unwrap();
        assert_eq!(back.protocol, PROTOCOL);
        assert_eq!(back.message, message, "{line}");
    }

    #[test]
    fn requests_round_trip_as_one_line() {
        for r in [
            Request::Status,
            Request::Sync,
            Request::Unmount,
            Request::ShareAdd {
                path: b"projects/x y\nok".to_vec(),
                read_only: true,
                card: vec![1, 2, 0xff],
            },
            Request::ShareAdd {
                path: Vec::new(),
                read_only: false,
                card: vec![7],
            },
            Request::ShareRemove {
                path: b"a".to_vec(),
                card_id: [0xab; 32],
            },
            Request::ShareList,
            Request::ShareReencrypt {
                path: "d\u{e9}j\u{e0}".into(),
            },
            Request::CardsFind {
                identity: "bob@example.org\n{\"type\":\"unmount\"}".into(),
            },
            Request::CardGet { id: [3; 32] },
            Request::Fsck {
                verify_content: true,
            },
            Request::History {
                path: b"docs/a b".to_vec(),
            },
            Request::Restore {
                path: b"docs".to_vec(),
                at: "2026-11-29T10:00:00.5Z".into(),
                to: Some(b"back\n".to_vec()),
                suffix: "x".into(),
            },
            Request::Restore {
                path: b"f".to_vec(),
                at: "2026-11-29T10:00:00Z".into(),
                to: None,
                suffix: "x".into(),
            },
        ] {
            round_trip(r);
        }
    }

    #[test]
    fn replies_round_trip_as_one_line() {
        let drive = DriveReport {
            pending_changes: 3,
            lost_writes: vec!["a\nb".into()],
            role: "owner".into(),
            ..DriveReport::default()
        };
        for r in [
            Reply::Progress { done: 5, total: 9 },
            Reply::Working,
            Reply::Done {
                answer: Answer::Nothing,
            },
            Reply::Done {
                answer: Answer::Status {
                    status: Box::new(MountInfo::default().report(drive)),
                },
            },
            Reply::Done {
                answer: Answer::Shares {
                    shares: vec![ShareReport {
                        path: "a b/\ndéjà".into(),
                        volume: [4; 16],
                        generation: 3,
                        owner: [1; 32],
                        my_role: "writer".into(),
                        members: vec![MemberReport {
                            card_id: [2; 32],
                            role: "reader".into(),
                        }],
                    }],
                },
            },
            Reply::Done {
                answer: Answer::Cards {
                    cards: vec!["card".into()],
                    rejected: vec![],
                },
            },
            Reply::Done {
                answer: Answer::Fsck {
                    report: Box::new(FsckReport {
                        clean: false,
                        volumes: vec![FsckVolume {
                            volume: [5; 16],
                            path: None,
                            generations: 2,
                            log_entries: 9,
                            snapshots: 1,
                            snapshots_checked: 1,
                            nodes: 4,
                            block_refs: 3,
                            failed: false,
                        }],
                        problems: vec![FsckProblem {
                            kind: "missing".into(),
                            object: "c/00".into(),
                            reason: "content object missing".into(),
                            paths: vec!["a\nb".into()],
                        }],
                        orphan_objects: 2,
                        ..FsckReport::default()
                    }),
                },
            },
            Reply::Error {
                code: 31,
                message: "busy\nmount".into(),
            },
        ] {
            round_trip(r);
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        let id = "ab".repeat(32);
        for bad in [
            r#"{"protocol":1,"cardfs":"x","message":{"type":"rm -rf"}}"#.to_string(),
            r#"{"protocol":1,"cardfs":"x","message":{}}"#.into(),
            r#"{"protocol":1,"cardfs":"x"}"#.into(),
            // Not hex, odd length, a card id of the wrong size.
            r#"{"protocol":1,"cardfs":"x","message":{"type":"share_reencrypt","path":"zz"}}"#
                .into(),
            r#"{"protocol":1,"cardfs":"x","message":{"type":"share_reencrypt","path":"616"}}"#
                .into(),
            format!(
                r#"{{"protocol":1,"cardfs":"x","message":{{"type":"card_get","id":"{}"}}}}"#,
                &id[2..]
            ),
            "status".into(),
        ] {
            assert!(
                serde_json::from_str::<Frame<Request>>(&bad).is_err(),
                "{bad}"
            );
        }
    }
}
