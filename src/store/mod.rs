//! Object storage behind one narrow async trait, [`ObjectStore`].
//!
//! The drive engine talks to storage only through this trait. Each
//! implementation must pass the conformance suite in `tests/`, which pins
//! the semantics documented on each method. In short:
//!
//! - Keys are non-empty UTF-8 strings of at most 1024 bytes whose
//!   `/`-separated segments have at most 255 bytes, see [`validate_key`].
//! - Listing order is the byte order of keys, with one allowance for S3
//!   servers that keep objects in a directory tree (SeaweedFS): they list
//!   the keys below `p/` right after `p`, before sibling keys `p` + c where
//!   c sorts below `/` (one of `` !"#$%&'()*+,-.``). Following
//!   `next_start_after` from page to page visits every key exactly once on
//!   every store. Code that needs a total order across such siblings sorts
//!   what it listed.
//! - `put` is atomic: readers see the old object or the new one, never a
//!   mix. [`PutMode::Create`] and [`PutMode::Update`] are atomic
//!   compare-and-swap operations: of many racing writers at most one wins
//!   and the others get [`StoreError::PreconditionFailed`].
//! - An [`ETag`] is an opaque token that changes whenever an object's bytes
//!   change.
//! - `delete` of a missing key succeeds.

use async_trait::async_trait;
use bytes::Bytes;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

pub mod fault;
pub mod in_place;
pub mod local;
pub mod memory;
mod open;
pub mod s3;

pub use fault::{CallCounts, FaultConfig, FaultStore, KeyMatch};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use open::{Location, OpenError, OpenOptions, open, parse_location};
pub use s3::{S3Options, S3Store};

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Errors the engine can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object not found: {key}")]
    NotFound { key: String },
    /// A conditional put or get did not hold (another writer won).
    #[error("precondition failed for object {key}")]
    PreconditionFailed { key: String },
    /// Worth retrying: network trouble, throttling, server busy.
    #[error("temporary store failure: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The store refused our credentials or permissions.
    #[error("store refused access: {message}")]
    Auth { message: String },
    /// The key is not usable as an object key.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The server accepts conditional puts but does not honour them, so
    /// the engine's compare-and-swap would silently lose updates.
    #[error(
        "{store} ignores conditional writes (a second put with If-None-Match: * \
         succeeded); cardfs needs a server that honours If-None-Match and If-Match \
         (AWS S3, MinIO, SeaweedFS, Cloudflare R2)"
    )]
    ConditionalWritesIgnored { store: String },
    /// The bucket named by the store location does not exist.
    #[error("bucket does not exist: {message}")]
    BucketMissing { message: String },
    /// Anything else, with the store's own words.
    #[error("store error: {message}")]
    Other { message: String },
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// Opaque version token of an object's current bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ETag(pub String);

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a listing or head tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    /// Size of the whole object in bytes.
    pub size: u64,
    pub etag: ETag,
    /// When the object was last written, by the store's clock (S3
    /// `Last-Modified`, the local file's mtime); `None` when the store did
    /// not say. Garbage collection leaves alone objects younger than its
    /// grace period by this time.
    pub modified: Option<std::time::SystemTime>,
}

/// How a put relates to what is already stored under the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Succeed only if no object exists (S3 `If-None-Match: *`).
    Create,
    /// Succeed only if the current object has this ETag (S3 `If-Match`).
    Update(ETag),
}

/// Options for [`ObjectStore::get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Byte range to return. The end is clamped to the object's size; a
    /// range that starts at or past the end returns no bytes.
    pub range: Option<Range<u64>>,
    /// Fail with [`StoreError::PreconditionFailed`] unless the object
    /// currently has this ETag.
    pub if_match: Option<ETag>,
}

impl GetOptions {
    /// Options for reading `range` of the object.
    pub fn range(range: Range<u64>) -> Self {
        Self {
            range: Some(range),
            if_match: None,
        }
    }
}

/// Bytes returned by [`ObjectStore::get`].
#[derive(Debug, Clone)]
pub struct GetResult {
    /// The requested bytes (the whole object, or the requested range).
    pub bytes: Bytes,
    /// Metadata of the whole object.
    pub meta: ObjectMeta,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects in ascending key order.
    pub objects: Vec<ObjectMeta>,
    /// When more objects follow, pass this as `start_after` for the next page.
    pub next_start_after: Option<String>,
}

impl ListPage {
    /// A page of `objects` (in ascending key order); `more` tells whether
    /// objects follow, in which case the last key continues the listing.
    pub fn new(objects: Vec<ObjectMeta>, more: bool) -> Self {
        let next_start_after = if more {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Self {
            objects,
            next_start_after,
        }
    }
}

/// A large object sent in parts. Parts are appended in the order given;
/// nothing is visible under the key until [`MultipartUpload::complete`]
/// succeeds, and [`MultipartUpload::abort`] leaves nothing behind.
#[async_trait]
pub trait MultipartUpload: Send {
    /// Appends the next part. Implementations may send parts concurrently.
    async fn put_part(&mut self, data: Bytes) -> Result<()>;
    /// Makes the object visible, replacing any object under the key.
    async fn complete(self: Box<Self>) -> Result<ETag>;
    /// Discards the upload and everything sent so far.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Object storage as the engine needs it.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `body` under `key` according to `mode`; returns the new ETag.
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ETag>;

    /// Reads the object, or a range of it.
    async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult>;

    /// Metadata of one object.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// At most `limit` objects whose keys start with `prefix` and sort after
    /// `start_after` (when given), in ascending key order.
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize)
    -> Result<ListPage>;

    /// Removes one object; removing a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Removes many objects; missing ones are not an error.
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    /// Starts a multipart upload to `key`.
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>>;

    /// Every object under `prefix`, following pagination.
    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list(prefix, after.as_deref(), 1000).await?;
            out.extend(page.objects);
            match page.next_start_after {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Checks that conditional puts are honoured, by putting a scratch
    /// object with [`PutMode::Create`] twice: the second put must fail with
    /// [`StoreError::PreconditionFailed`]. Fails with
    /// [`StoreError::ConditionalWritesIgnored`] otherwise. Stores that
    /// implement conditions themselves (memory, local) need no probe.
    async fn check_conditional_writes(&self) -> Result<()> {
        Ok(())
    }

    /// Multipart uploads that were started but neither completed nor
    /// aborted (e.g. after a crash), as `key` strings (local store: temp
    /// file names). Empty when nothing is left behind.
    async fn pending_uploads(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Where this store lives, for messages (e.g. `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// Puts a scratch object with [`PutMode::Create`] twice and with a wrong
/// [`PutMode::Update`] ETag once: both repeats must fail with
/// [`StoreError::PreconditionFailed`], else the store ignores conditions
/// and this returns [`StoreError::ConditionalWritesIgnored`]. The scratch
/// object (under `.cardfs-probe/`) is deleted afterwards.
pub async fn probe_conditional_writes(store: &dyn ObjectStore) -> Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!(".cardfs-probe/{}-{nanos:x}", std::process::id());
    let first = store
        .put(&key, Bytes::from_static(b"1"), PutMode::Create)
        .await?;
    let second = store
        .put(&key, Bytes::from_static(b"2"), PutMode::Create)
        .await;
    let wrong = ETag(format!("{}-not-the-etag", first.0.trim_matches('"')));
    let third = match &second {
        Err(StoreError::PreconditionFailed { .. }) => Some(
            store
                .put(&key, Bytes::from_static(b"3"), PutMode::Update(wrong))
                .await,
        ),
        _ => None,
    };
    let cleanup = store.delete(&key).await;
    let ignored = StoreError::ConditionalWritesIgnored {
        store: store.describe(),
    };
    match (second, third) {
        (Ok(_), _) | (_, Some(Ok(_))) => Err(ignored),
        (_, Some(Err(StoreError::PreconditionFailed { .. }))) => cleanup,
        (_, Some(Err(e))) | (Err(e), None) => Err(e),
    }
}

/// Longest key any implementation accepts (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Longest `/`-separated key segment (the file-name limit of Linux
/// filesystems and of SeaweedFS).
pub const MAX_SEGMENT_LEN: usize = 255;

/// Checks that `key` is usable by every implementation: non-empty, at most
/// [`MAX_KEY_LEN`] bytes, no NUL or control characters, no leading `/`, no
/// empty, `.` or `..` path segment, and no segment longer than
/// [`MAX_SEGMENT_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("has an empty, '.' or '..' segment");
    }
    if key.split('/').any(|seg| seg.len() > MAX_SEGMENT_LEN) {
        return bad("has a segment longer than 255 bytes");
    }
    Ok(())
}

/// Clamps a requested range to an object of `size` bytes.
pub fn clamp_range(range: &Range<u64>, size: u64) -> Range<u64> {
    let start = range.start.min(size);
    let end = range.end.clamp(start, size);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("a/b/c").is_ok());
        assert!(validate_key("ünïcode/ключ").is_ok());
        for bad in ["", "/a", "a//b", "a/", "a/../b", ".", "a\0b", "a\nb"] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_key(&"x".repeat(1025)).is_err());
        assert!(validate_key(&"x".repeat(255)).is_ok());
        assert!(validate_key(&"x".repeat(256)).is_err());
        let long = vec!["y".repeat(255); 4].join("/");
        assert_eq!(long.len(), 1023);
        assert!(validate_key(&long).is_ok());
    }

    #[test]
    fn ranges_are_clamped() {
        assert_eq!(clamp_range(&(2..5), 10), 2..5);
        assert_eq!(clamp_range(&(2..50), 10), 2..10);
        assert_eq!(clamp_range(&(20..50), 10), 10..10);
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..2;
        assert_eq!(clamp_range(&reversed, 10), 5..5);
    }
}
