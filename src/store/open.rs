//! [`open`]: from a store argument (a path, `file://PATH` or
//! `s3://BUCKET[/PREFIX]`) to a ready [`ObjectStore`].
//!
//! Invariant: parsing is strict — an unknown scheme or a malformed URL is a
//! typed [`OpenError`], never a guess.

use super::{LocalStore, ObjectStore, S3Options, S3Store, StoreError, validate_key};
use std::path::PathBuf;
use std::sync::Arc;

/// Settings for [`open`]; only S3 has any today.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub s3: S3Options,
}

/// Why a store argument could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "unsupported store scheme {scheme:?} in {location:?}: give a directory path, \
         file:///PATH or s3://BUCKET[/PREFIX]"
    )]
    UnsupportedScheme { location: String, scheme: String },
    #[error("invalid store location {location:?}: {reason}")]
    InvalidLocation {
        location: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a store argument points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Parses a store argument without touching the store.
pub fn parse_location(location: &str) -> Result<Location, OpenError> {
    let invalid = |reason| OpenError::InvalidLocation {
        location: location.to_string(),
        reason,
    };
    if location.is_empty() {
        return Err(invalid("empty"));
    }
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(invalid(
                "bucket names have 3-63 lowercase letters, digits, '-' or '.'",
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && validate_key(prefix).is_err() {
            return Err(invalid(
                "the prefix must be a valid key (no empty, '.' or '..' segments)",
            ));
        }
        return Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        });
    }
    if let Some(path) = location.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid("file:// URLs need an absolute path (file:///dir)"));
        }
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(OpenError::UnsupportedScheme {
            location: location.to_string(),
            scheme: scheme.to_string(),
        });
    }
    Ok(Location::Local(PathBuf::from(location)))
}

/// Opens the store a command-line argument names. A local directory is
/// created when missing; an S3 store is connected but not probed (call
/// [`ObjectStore::check_conditional_writes`] before relying on it).
pub async fn open(
    location: &str,
    options: &OpenOptions,
) -> Result<Arc<dyn ObjectStore>, OpenError> {
    match parse_location(location)? {
        Location::Local(path) => {
            let store = tokio::task::spawn_blocking(move || LocalStore::open(path))
                .await
                .map_err(|e| StoreError::Other {
                    message: format!("opening the local store failed: {e}"),
                })??;
            Ok(Arc::new(store))
        }
        Location::S3 { bucket, prefix } => {
            Ok(Arc::new(S3Store::new(&bucket, &prefix, &options.s3).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let s3 = |b: &str, p: &str| Location::S3 {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(parse_location("s3://bucket").unwrap(), s3("bucket", ""));
        assert_eq!(parse_location("s3://bucket/").unwrap(), s3("bucket", ""));
        assert_eq!(
            parse_location("s3://my.bucket-1/a/b/").unwrap(),
            s3("my.bucket-1", "a/b")
        );
        assert_eq!(
            parse_location("/srv/store").unwrap(),
            Location::Local("/srv/store".into())
        );
        assert_eq!(
            parse_location("rel/dir").unwrap(),
            Location::Local("rel/dir".into())
        );
        assert_eq!(
            parse_location("file:///srv/x").unwrap(),
            Location::Local("/srv/x".into())
        );
    }

    #[test]
    fn bad_locations_are_typed_errors() {
        for bad in [
            "",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b_x",
            "s3://bucket/a/../b",
        ] {
            assert!(
                matches!(parse_location(bad), Err(OpenError::InvalidLocation { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_location("file://relative"),
            Err(OpenError::InvalidLocation { .. })
        ));
        assert!(matches!(
            parse_location("gs://bucket"),
            Err(OpenError::UnsupportedScheme { scheme, .. }) if scheme == "gs"
        ));
    }
}
