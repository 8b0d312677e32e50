//! Errors a user must understand, each with one clear sentence and its own
//! exit code. The codes are part of the command's interface and are listed
//! in docs/CLI.md; never renumber one.
//!
//! Commands raise a [`UserError`] (inside `anyhow`) where they know what went
//! wrong; `main` finds it anywhere in the error chain and exits with its
//! code. Anything else exits with [`GENERIC`].

use std::fmt;
use std::path::PathBuf;

/// Exit code of an error that is not one of the user errors below.
pub const GENERIC: u8 = 1;
/// Exit code of bad command-line usage (clap's, and refused `-o` words).
pub const USAGE: u8 = 2;

/// A failure the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// The password does not unlock the key.
    WrongPassword { key: String },
    /// No password was given and there is no terminal to ask for one
    /// (documented under the same code as a wrong password).
    NoPassword,
    /// No key of that name exists.
    MissingKey { key: String },
    /// The key exists but has no card (needed to own a drive).
    MissingCard { key: String },
    /// `key import` of a key whose name a different key here has.
    KeyNameTaken { key: String, path: PathBuf },
    /// The mountpoint does not exist.
    MountpointMissing { path: PathBuf },
    /// The mountpoint exists but is not a directory.
    MountpointNotDir { path: PathBuf },
    /// Something is already mounted on the mountpoint.
    AlreadyMounted { path: PathBuf },
    /// Another running mount uses the same cache directory.
    CacheDirBusy { cache_dir: PathBuf, holder: String },
    /// The store cannot be reached (network, server down, path missing).
    StoreUnreachable { store: String, reason: String },
    /// The S3 bucket does not exist.
    BucketMissing { bucket: String },
    /// The store refused the credentials.
    CredentialsRejected { store: String, reason: String },
    /// No S3 credentials were found (environment, profile files).
    NoCredentials { store: String },
    /// The endpoint answers, but not as an S3 server.
    NotS3 { store: String, reason: String },
    /// The S3 server accepts conditional writes but does not honour them.
    NoConditionalWrites { store: String },
    /// `init` on a store that already holds a drive.
    DriveExists { store: String },
    /// `mount` of a store that holds no drive.
    NoDrive { store: String },
    /// The drive was written by a newer cardfs format version.
    NewerFormat { detail: String },
    /// The drive is in an older format version that this cardfs no longer
    /// reads.
    OldFormat { version: u16 },
    /// The path is not a running cardfs mount.
    NotMounted { path: PathBuf },
    /// The mount is in use and cannot be unmounted now.
    MountBusy { path: PathBuf },
    /// A live daemon serves the mount but this command cannot reach it
    /// (started with another `$CARDFS_HOME`, or hung): not unmounted.
    MountedElsewhere { path: PathBuf, who: String },
    /// The daemon of the mount speaks another control protocol version
    /// (`daemon` names its cardfs version).
    ProtocolMismatch { path: PathBuf, daemon: String },
    /// The daemon of the mount did not answer within the control timeout
    /// (stopped with SIGSTOP, or hung).
    DaemonHung {
        path: PathBuf,
        waited: std::time::Duration,
        pid: Option<u32>,
    },
    /// A card (a member's, or a drive owner's) is neither pinned nor
    /// approved by a trusted authority: its fingerprint must be compared
    /// and given with `option`.
    CardUnverified {
        identity: String,
        fingerprint: String,
        option: &'static str,
    },
    /// The card offered is not the one the user vouched for: another card
    /// is pinned for the identity, or the fingerprint given does not match
    /// (what a key substitution looks like).
    CardMismatch { identity: String, detail: String },
    /// No card for an identity or card id is pinned here or published in
    /// the drive's card directory.
    CardNotFound {
        who: String,
        /// Close identities that do have cards, to suggest.
        suggestions: Vec<String>,
    },
    /// A sharing change on a drive this user does not own.
    NotOwner { path: PathBuf },
    /// The drive header contradicts itself (its owner card does not hold
    /// the owner keys it names): forged or corrupted.
    DriveForged { reason: String },
    /// `mount` of a drive someone else owns that shares nothing with this key.
    NothingShared { store: String },
    /// `mount` over a directory that is not empty (without `-o nonempty`).
    MountpointNotEmpty { path: PathBuf },
    /// `fsck` found missing or damaged objects (listed in its output).
    FsckProblems { path: PathBuf, problems: usize },
    /// `fsck` could not run to its end (the store failed, or the mount is
    /// not the owner's): nothing is known about the unchecked part.
    FsckIncomplete { reason: String },
    /// `gc` on a member's mount: only the owner sees every volume, so only
    /// the owner can tell what nothing needs.
    GcNotOwner,
}

impl UserError {
    /// The process exit code for this error (documented in docs/CLI.md).
    pub fn code(&self) -> u8 {
        match self {
            UserError::WrongPassword { .. } | UserError::NoPassword => 10,
            UserError::MissingKey { .. } => 11,
            UserError::MissingCard { .. } => 12,
            UserError::KeyNameTaken { .. } => 18,
            UserError::MountpointMissing { .. } => 13,
            UserError::MountpointNotDir { .. } => 14,
            UserError::AlreadyMounted { .. } => 15,
            UserError::CacheDirBusy { .. } => 16,
            UserError::StoreUnreachable { .. } => 20,
            UserError::BucketMissing { .. } => 21,
            UserError::CredentialsRejected { .. } => 22,
            UserError::NoConditionalWrites { .. } => 23,
            UserError::DriveExists { .. } => 24,
            UserError::NoDrive { .. } => 25,
            UserError::NewerFormat { .. } => 26,
            UserError::OldFormat { .. } => 29,
            UserError::NoCredentials { .. } => 27,
            UserError::NotS3 { .. } => 28,
            UserError::NotMounted { .. } => 30,
            UserError::MountBusy { .. } => 31,
            UserError::MountedElsewhere { .. } => 32,
            UserError::ProtocolMismatch { .. } => 33,
            UserError::DaemonHung { .. } => 34,
            UserError::CardUnverified { .. } => 40,
            UserError::CardMismatch { .. } => 41,
            UserError::CardNotFound { .. } => 42,
            UserError::NotOwner { .. } => 43,
            UserError::DriveForged { .. } => 44,
            UserError::NothingShared { .. } => 45,
            UserError::MountpointNotEmpty { .. } => 17,
            UserError::FsckProblems { .. } => 50,
            UserError::FsckIncomplete { .. } => 51,
            UserError::GcNotOwner => 46,
        }
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::WrongPassword { key } => {
                write!(f, "wrong password for key {key:?}")
            }
            UserError::NoPassword => write!(
                f,
                "no password given and no terminal to ask for one; use --password-file FILE, \
                 --password-command CMD or CARDFS_PASSWORD"
            ),
            UserError::MissingKey { key } => write!(
                f,
                "there is no key named {key:?} (create one with `cardfs key generate --name NAME`)"
            ),
            UserError::MissingCard { key } => write!(
                f,
                "key {key:?} has no card in this home; if it has one on another machine, run \
                 `cardfs key export {key} -o FILE` there and `cardfs key import FILE` here; \
                 for a new key, create its card with `cardfs card create --key {key} --identity ID`"
            ),
            UserError::KeyNameTaken { key, path } => write!(
                f,
                "a different key named {key:?} already exists here ({}); refusing to overwrite \
                 it: import into another CARDFS_HOME, or move that file away first if you mean \
                 to replace it",
                path.display()
            ),
            UserError::MountpointMissing { path } => {
                write!(f, "mountpoint {} does not exist", path.display())
            }
            UserError::MountpointNotDir { path } => {
                write!(f, "mountpoint {} is not a directory", path.display())
            }
            UserError::AlreadyMounted { path } => write!(
                f,
                "something is already mounted on {} (unmount it first; for a cardfs mount \
                 whose daemon died: `cardfs unmount {}`)",
                path.display(),
                path.display()
            ),
            UserError::CacheDirBusy { cache_dir, holder } => write!(
                f,
                "cache directory {} is already used by another mount ({holder})",
                cache_dir.display()
            ),
            UserError::StoreUnreachable { store, reason } => write!(
                f,
                "cannot reach the store {store} ({reason}); check that its server is running \
                 and the address (--endpoint or AWS_ENDPOINT_URL for S3) is right"
            ),
            UserError::NoCredentials { store } => write!(
                f,
                "no S3 credentials found for {store}; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials)"
            ),
            UserError::NotS3 { store, reason } => write!(
                f,
                "the endpoint of {store} did not answer as an S3 server ({reason}); check \
                 --endpoint or AWS_ENDPOINT_URL"
            ),
            UserError::BucketMissing { bucket } => write!(
                f,
                "the bucket {bucket:?} does not exist on the S3 server; create it, or check \
                 the name and the endpoint"
            ),
            UserError::CredentialsRejected { store, reason } => write!(
                f,
                "the store {store} rejected the credentials ({reason}); check \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            UserError::NoConditionalWrites { store } => write!(
                f,
                "the S3 server of {store} ignores conditional writes (If-None-Match/If-Match), \
                 so concurrent clients could overwrite each other; use a server that honours them"
            ),
            UserError::DriveExists { store } => {
                write!(f, "the store {store} already holds a drive")
            }
            UserError::NoDrive { store } => write!(
                f,
                "the store {store} holds no drive (create one with `cardfs init`)"
            ),
            UserError::NewerFormat { detail } => write!(
                f,
                "the drive was written by a newer version of cardfs; upgrade cardfs ({detail})"
            ),
            UserError::OldFormat { version } => write!(
                f,
                "the drive is in drive format version {version}, which this cardfs (format {current}) \
                 no longer reads; open it with the cardfs release that wrote it, copy its files out, \
                 and copy them into a new drive made with `cardfs init`",
                current = cardfs::format::DRIVE_FORMAT
            ),
            UserError::NotMounted { path } => {
                write!(f, "{} is not a running cardfs mount", path.display())
            }
            UserError::MountBusy { path } => write!(
                f,
                "{} is busy (a program has a file open there); close it and try again",
                path.display()
            ),
            UserError::MountedElsewhere { path, who } => write!(
                f,
                "{} is served by a running cardfs daemon that this command cannot reach ({who}); \
                 nothing was unmounted: run `cardfs unmount` with that daemon's CARDFS_HOME, \
                 or send it SIGTERM (it commits, then unmounts)",
                path.display()
            ),
            UserError::ProtocolMismatch { path, daemon } => write!(
                f,
                "the daemon of {} runs {daemon}, but this command is cardfs {} (control \
                 protocol {}); use the cardfs binary that mounted it, or send the daemon \
                 SIGTERM (it commits, then unmounts)",
                path.display(),
                super::control_messages::CARDFS_VERSION,
                super::control_messages::PROTOCOL
            ),
            UserError::DaemonHung { path, waited, pid } => write!(
                f,
                "the daemon of {} ({}) did not answer within {} s: it is stopped or hung; \
                 resume a stopped one with `kill -CONT PID`, see its daemon.log, or wait \
                 longer with {}=SECONDS",
                path.display(),
                match pid {
                    Some(pid) => format!("pid {pid}"),
                    None => "pid unknown".into(),
                },
                waited.as_secs_f64(),
                super::control::TIMEOUT_ENV
            ),
            UserError::CardUnverified {
                identity,
                fingerprint,
                option,
            } => write!(
                f,
                "the card of {identity} is not pinned and no authority you trust approved it; \
                 compare its fingerprint {fingerprint} with {identity} over a channel you trust, \
                 then run the command again with {option} \"{fingerprint}\""
            ),
            UserError::CardMismatch { identity, detail } => write!(
                f,
                "refusing the card offered for {identity}: {detail}; this may be a \
                 key-substitution attack by the store"
            ),
            UserError::CardNotFound { who, suggestions } if !suggestions.is_empty() => write!(
                f,
                "no card for {who} is pinned here or published in the drive's store; \
                 did you mean {}?",
                suggestions.join(" or ")
            ),
            UserError::CardNotFound { who, .. } => write!(
                f,
                "no card for {who} is pinned here or published in the drive's store \
                 (ask them to run `cardfs card publish`, or import their card)"
            ),
            UserError::NotOwner { path } => write!(
                f,
                "only the owner of the drive can change who shares {}",
                path.display()
            ),
            UserError::GcNotOwner => write!(
                f,
                "this is a member's mount: only the drive's owner can collect garbage (a member \
                 cannot see every volume, so it cannot know what nothing needs); run \
                 `cardfs gc` on the owner's mount"
            ),
            UserError::DriveForged { reason } => write!(
                f,
                "the drive's header is not consistent ({reason}); the store may have been \
                 tampered with, refusing to mount"
            ),
            UserError::NothingShared { store } => write!(
                f,
                "the drive in {store} belongs to someone else and shares no folder with your key \
                 (the owner shares one with `cardfs share add`; a member who was removed loses access)"
            ),
            UserError::MountpointNotEmpty { path } => write!(
                f,
                "mountpoint {} is not empty; mounting would hide its files \
                 (empty it, or mount anyway with -o nonempty)",
                path.display()
            ),
            UserError::FsckProblems { path, problems } => write!(
                f,
                "the drive mounted on {} has {problems} missing or damaged object{} (listed \
                 above with the files they belong to); reading those files fails with EIO",
                path.display(),
                if *problems == 1 { "" } else { "s" }
            ),
            UserError::FsckIncomplete { reason } => write!(
                f,
                "the check could not be completed ({reason}); run it again once the cause is fixed"
            ),
        }
    }
}

impl std::error::Error for UserError {}

/// An error the daemon reported, carrying its exit code.
#[derive(Debug)]
pub struct DaemonError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DaemonError {}

/// Bad usage that clap cannot see (a `-o` mount option it does not know).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for `err`: that of the first [`UserError`] in its chain,
/// otherwise [`GENERIC`].
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| {
            // An error a mount daemon reported keeps the daemon's code.
            e.downcast_ref::<UserError>()
                .map(UserError::code)
                .or_else(|| e.downcast_ref::<DaemonError>().map(|d| d.code))
                .or_else(|| e.downcast_ref::<UsageError>().map(|_| USAGE))
                // A refused `-o` word is bad usage, like clap's errors.
                .or_else(|| {
                    e.downcast_ref::<cardfs::fuse::options::OptionError>()
                        .map(|_| USAGE)
                })
        })
        .unwrap_or(GENERIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<UserError> {
        let p = PathBuf::from("/m");
        let s = String::from("s3://b");
        vec![
            UserError::WrongPassword { key: s.clone() },
            UserError::NoPassword,
            UserError::MissingKey { key: s.clone() },
            UserError::MissingCard { key: s.clone() },
            UserError::KeyNameTaken {
                key: s.clone(),
                path: p.clone(),
            },
            UserError::MountpointMissing { path: p.clone() },
            UserError::MountpointNotDir { path: p.clone() },
            UserError::AlreadyMounted { path: p.clone() },
            UserError::CacheDirBusy {
                cache_dir: p.clone(),
                holder: s.clone(),
            },
            UserError::StoreUnreachable {
                store: s.clone(),
                reason: s.clone(),
            },
            UserError::BucketMissing { bucket: s.clone() },
            UserError::CredentialsRejected {
                store: s.clone(),
                reason: s.clone(),
            },
            UserError::NoConditionalWrites { store: s.clone() },
            UserError::NoCredentials { store: s.clone() },
            UserError::NotS3 {
                store: s.clone(),
                reason: s.clone(),
            },
            UserError::DriveExists { store: s.clone() },
            UserError::NoDrive { store: s.clone() },
            UserError::NewerFormat { detail: s.clone() },
            UserError::OldFormat { version: 1 },
            UserError::NotMounted { path: p.clone() },
            UserError::MountBusy { path: p.clone() },
            UserError::MountedElsewhere {
                path: p.clone(),
                who: s.clone(),
            },
            UserError::ProtocolMismatch {
                path: p.clone(),
                daemon: s.clone(),
            },
            UserError::DaemonHung {
                path: p.clone(),
                waited: std::time::Duration::from_millis(1500),
                pid: Some(7),
            },
            UserError::CardUnverified {
                identity: s.clone(),
                fingerprint: s.clone(),
                option: "--fingerprint",
            },
            UserError::CardMismatch {
                identity: s.clone(),
                detail: s.clone(),
            },
            UserError::CardNotFound {
                who: s.clone(),
                suggestions: Vec::new(),
            },
            UserError::NotOwner { path: p },
            UserError::DriveForged { reason: s.clone() },
            UserError::NothingShared { store: s },
            UserError::MountpointNotEmpty { path: "/m".into() },
            UserError::FsckProblems {
                path: "/m".into(),
                problems: 2,
            },
            UserError::FsckIncomplete { reason: "x".into() },
            UserError::GcNotOwner,
        ]
    }

    #[test]
    fn codes_are_distinct_and_not_generic_or_usage() {
        // docs/CLI.md gives code 10 to both a wrong and a missing password.
        let mut codes: Vec<u8> = all()
            .iter()
            .filter(|e| **e != UserError::NoPassword)
            .map(UserError::code)
            .collect();
        assert_eq!(UserError::NoPassword.code(), 10);
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n, "two user errors share an exit code");
        assert!(!codes.contains(&0) && !codes.contains(&GENERIC) && !codes.contains(&2));
    }

    #[test]
    fn code_is_found_through_context() {
        let err = anyhow::Error::new(UserError::NotMounted { path: "/x".into() })
            .context("unmounting /x");
        assert_eq!(code_of(&err), 30);
        assert_eq!(code_of(&anyhow::anyhow!("other")), GENERIC);
    }

    #[test]
    fn codes_match_the_documentation() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CLI.md"))
            .expect("docs/CLI.md");
        for err in all() {
            let row = format!("| {} |", err.code());
            assert!(
                doc.contains(&row),
                "docs/CLI.md lacks exit code {}",
                err.code()
            );
        }
    }
}
