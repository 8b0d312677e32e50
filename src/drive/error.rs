//! The engine's error type and its mapping to POSIX errno values.

use crate::store::StoreError;

/// Result of an engine call.
pub type Result<T, E = DriveError> = std::result::Result<T, E>;

/// Everything an engine call can fail with. [`DriveError::errno`] gives the
/// value the FUSE adapter replies with.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file name too long")]
    NameTooLong,
    #[error("read-only drive")]
    ReadOnly,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("no such extended attribute")]
    NoXattr,
    #[error("extended attribute value too large")]
    XattrRange,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("resource busy")]
    Busy,
    #[error("bad file handle")]
    BadHandle,
    #[error("file too large")]
    TooBig,
    #[error("too many links")]
    TooManyLinks,
    /// A rename or hard link between two volumes (a shared folder and the
    /// rest of the drive, or two shared folders).
    #[error("cannot move or link across shared folders")]
    CrossDevice,
    /// An object failed verification: wrong signature, failed decryption,
    /// broken hash chain, wrong size, or missing.
    #[error("object {object} failed verification: {reason}")]
    Tampered { object: String, reason: String },
    /// An object names a format version or feature flags this build does
    /// not know: written by a newer cardfs (or altered to look so).
    #[error(
        "object {object} uses a format this cardfs does not understand ({reason}): \
         written by a newer version, or altered"
    )]
    UnsupportedFormat { object: String, reason: String },
    /// The drive is in an older format version, which this build no longer
    /// reads (format version 1: before per-version content keys).
    #[error(
        "object {object} is in drive format version {version}, which this cardfs \
         (drive format {current}) no longer reads",
        current = crate::format::DRIVE_FORMAT
    )]
    OldFormat { object: String, version: u16 },
    /// The store offers an older (or different) metadata state than this
    /// client already accepted: `known`/`offered` are log positions, or
    /// keyring generations (the reason says which).
    #[error(
        "volume {volume}: this client accepted {known} but the store offers {offered}: {reason}"
    )]
    Rollback {
        volume: String,
        known: u64,
        offered: u64,
        reason: String,
    },
    /// This identity is not a member of the drive.
    #[error("not a member of this drive")]
    NotMember,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("local cache {path}: {source}")]
    Cache {
        path: String,
        source: std::io::Error,
    },
    /// Pending changes cannot be committed for a reason retrying will not
    /// fix (the reason is in the message and the log).
    #[error("changes cannot be committed: {0}")]
    CommitFailed(String),
    /// Another engine (in this or another process) uses the cache directory.
    #[error("cache directory {0} is in use by another cardfs instance")]
    CacheInUse(String),
    /// The cache is full of data not yet uploaded and the store cannot
    /// take uploads now, so nothing can be freed.
    #[error(
        "local cache full: {pending} bytes wait for upload (bound {bound}) and the store does not take uploads now"
    )]
    NoSpace { pending: u64, bound: u64 },
}

impl DriveError {
    /// The POSIX errno for this error.
    pub fn errno(&self) -> i32 {
        use DriveError::*;
        match self {
            NotFound => libc::ENOENT,
            Exists => libc::EEXIST,
            NotDir => libc::ENOTDIR,
            IsDir => libc::EISDIR,
            NotEmpty => libc::ENOTEMPTY,
            NameTooLong => libc::ENAMETOOLONG,
            ReadOnly => libc::EROFS,
            Invalid(_) => libc::EINVAL,
            NoXattr => libc::ENODATA,
            XattrRange => libc::E2BIG,
            NotPermitted => libc::EPERM,
            Busy => libc::EBUSY,
            BadHandle => libc::EBADF,
            TooBig => libc::EFBIG,
            TooManyLinks => libc::EMLINK,
            CrossDevice => libc::EXDEV,
            Tampered { .. } | UnsupportedFormat { .. } | OldFormat { .. } | Rollback { .. } => {
                libc::EIO
            }
            NotMember => libc::EACCES,
            Store(StoreError::NotFound { .. }) => libc::EIO,
            Store(_) => libc::EIO,
            // A full disk under the cache is ENOSPC, never EIO.
            Cache { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                libc::ENOSPC
            }
            Cache { .. } => libc::EIO,
            CacheInUse(_) => libc::EBUSY,
            CommitFailed(_) => libc::EIO,
            NoSpace { .. } => libc::ENOSPC,
        }
    }

    /// The error for an object that failed to parse or verify: a format
    /// too new for this build, or tampering.
    pub(crate) fn unreadable(
        object: impl Into<String>,
        e: crate::format::wire::FormatError,
    ) -> Self {
        use crate::format::wire::FormatError::{Flags, Version};
        match e {
            Version(version) if version < crate::format::DRIVE_FORMAT.into() => {
                let object = object.into();
                tracing::error!(%object, version, "object in an older drive format version");
                DriveError::OldFormat { object, version }
            }
            Version(_) | Flags(_) => {
                let (object, reason) = (object.into(), e.to_string());
                tracing::error!(%object, %reason, "object in an unknown format version");
                DriveError::UnsupportedFormat { object, reason }
            }
            e => Self::tampered(object, e.to_string()),
        }
    }

    #[allow(dead_code)]
    pub(crate) fn tampered(object: impl Into<String>, reason: impl Into<String>) -> Self {
        let (object, reason) = (object.into(), reason.into());
        tracing::error!(%object, %reason, "object failed verification");
        DriveError::Tampered { object, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::wire::FormatError;

    #[test]
    fn unknown_versions_are_not_reported_as_tampering() {
        for e in [FormatError::Version(9), FormatError::Flags(0x80)] {
            let d = DriveError::unreadable("drive", e);
            assert!(matches!(d, DriveError::UnsupportedFormat { .. }), "{d}");
            assert_eq!(d.errno(), libc::EIO);
        }
        let d = DriveError::unreadable("drive", FormatError::Signature);
        assert!(matches!(d, DriveError::Tampered { .. }), "{d}");
        // An older version is its own error, naming the version.
        let d = DriveError::unreadable("drive", FormatError::Version(1));
        assert!(
            matches!(&d, DriveError::OldFormat { version: 1, .. }),
            "{d}"
        );
        assert!(d.to_string().contains("drive format version 1"), "{d}");
        assert_eq!(d.errno(), libc::EIO);
    }
}
