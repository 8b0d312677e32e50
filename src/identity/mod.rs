//! The local identity state and the I/O around the pure formats: key files
//! under `$CARDFS_HOME/keys/`, pinned cards and trusted authorities under
//! `$CARDFS_HOME/cards/`, envelopes streamed over readers and writers, the
//! card directory published in an object store, and the trust decision for
//! cards found there.
//!
//! Invariants:
//! - Every path derives from one home directory ([`home_from_env`] reads
//!   `CARDFS_HOME`, default `~/.config/cardfs`), so two users can share a
//!   machine in tests.
//! - Files are written atomically (temporary file, fsync, rename or link);
//!   a crash leaves the old file or the new one, never a mix. Key files and
//!   their directories are private to the user (0600 / 0700).

pub mod armor;
pub mod cards;
pub mod directory;
pub mod envelope;
pub mod fsutil;
pub mod keys;
pub mod trust;

use crate::format::card::CardError;
use crate::format::key::InvalidName;
use crate::format::keyfile::KeyFileError;
use std::path::PathBuf;

/// A file of the key or card store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {error}")]
pub struct FileError {
    /// What was being done ("reading", "creating directory", ...).
    pub action: &'static str,
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// Errors of the key store ([`keys::KeyStore`]).
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("no key named {0:?} (see `cardfs key list`)")]
    KeyNotFound(String),
    #[error("a key named {0:?} already exists")]
    KeyExists(String),
    #[error("key file {path}: {error}")]
    KeyFile { path: PathBuf, error: KeyFileError },
    #[error(transparent)]
    Name(#[from] InvalidName),
}

/// Errors of the card store ([`cards::CardStore`]): pinned cards and
/// trusted authorities.
#[derive(Debug, thiserror::Error)]
pub enum CardStoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("card {path}: {error}")]
    Card { path: PathBuf, error: CardError },
    #[error("no card matches {0:?} (see `cardfs card list`)")]
    CardNotFound(String),
    /// A different card is pinned (or trusted) for the identity and no
    /// fingerprint was given to replace it: a possible key substitution.
    #[error(
        "a different card is already pinned for {identity:?} (pinned fingerprint {pinned}); \
         this may be a key-substitution attack. If {identity} really has a new card, check its \
         fingerprint {offered} with them"
    )]
    AlreadyPinned {
        identity: String,
        pinned: String,
        offered: String,
    },
    /// The fingerprint given to replace a card is not the new card's.
    #[error("the card's fingerprint is {actual}, not the {given} given")]
    FingerprintMismatch { given: String, actual: String },
}

/// The cardfs home: `$CARDFS_HOME`, or `~/.config/cardfs`.
pub fn home_from_env() -> Result<PathBuf, FileError> {
    if let Some(home) = std::env::var_os("CARDFS_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("cardfs")),
        None => Err(FileError {
            action: "locating the cardfs home (set CARDFS_HOME or HOME)",
            path: PathBuf::new(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        }),
    }
}
