//! Reading objects from S3, large ones as parallel range requests.
//!
//! Invariants:
//! - The first request asks for the first part of the wanted range and
//!   learns the object's size and ETag; the other parts are fetched in
//!   parallel (at most `concurrency` at a time) with `If-Match` on that
//!   ETag, so every byte returned comes from one version of the object.
//! - If the object changes between parts, the whole read starts again (a
//!   few times), unless the caller pinned a version with `if_match`, in
//!   which case the change is the caller's `PreconditionFailed`.
//! - A range at or past the end returns no bytes with the object's
//!   metadata (S3 answers 416; we then ask for the metadata alone).

use super::S3Inner;
use super::errors::{Call, body_error, map_sdk_error};
use crate::store::{ETag, GetOptions, GetResult, ObjectMeta, Result, StoreError, clamp_range};
use bytes::{Bytes, BytesMut};
use std::ops::Range;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Reads before giving up when the object keeps changing under us.
const ATTEMPTS: usize = 3;

/// Answer to one range request.
enum Ranged {
    /// The range starts at or past the end of the object.
    PastEnd,
    Got {
        bytes: BytesMut,
        /// Size of the whole object.
        total: u64,
        etag: ETag,
        /// False when the server ignored the range and sent everything.
        partial: bool,
    },
}

/// Total size from a `Content-Range: bytes A-B/TOTAL` header.
fn range_total(content_range: Option<&str>) -> Option<u64> {
    content_range?.rsplit('/').next()?.parse().ok()
}

/// Fetches `range` of `key`, streaming the body into `into` (which the
/// caller may give exactly the capacity needed, so nothing is copied twice).
async fn get_range(
    inner: &S3Inner,
    key: &str,
    range: &Range<u64>,
    if_match: Option<&ETag>,
    mut into: BytesMut,
) -> Result<Ranged> {
    let sent = inner
        .client
        .get_object()
        .bucket(&inner.bucket)
        .key(inner.full_key(key))
        .range(format!("bytes={}-{}", range.start, range.end - 1))
        .set_if_match(if_match.map(|e| e.0.clone()))
        .customize()
        .config_override(inner.quick())
        .send()
        .await;
    let mut out = match sent {
        Ok(out) => out,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
            return Ok(Ranged::PastEnd);
        }
        Err(e) => return Err(map_sdk_error(e, key, Call::Plain)),
    };
    let total = range_total(out.content_range());
    let etag = ETag(out.e_tag.clone().unwrap_or_default());
    into.reserve(out.content_length().unwrap_or(0).max(0) as usize);
    // The answer has started; a body that then stalls is a dead server.
    loop {
        let next = tokio::time::timeout(inner.idle_timeout, out.body.try_next())
            .await
            .map_err(|_| body_error(key, format!("no data for {:?}", inner.idle_timeout)))?;
        match next.map_err(|e| body_error(key, e))? {
            Some(chunk) => into.extend_from_slice(&chunk),
            None => break,
        }
    }
    Ok(match total {
        Some(total) => Ranged::Got {
            bytes: into,
            total,
            etag,
            partial: true,
        },
        None => Ranged::Got {
            total: into.len() as u64,
            bytes: into,
            etag,
            partial: false,
        },
    })
}

/// Reads `options.range` (or everything) of `key`.
pub(super) async fn get(
    inner: &Arc<S3Inner>,
    key: &str,
    options: &GetOptions,
) -> Result<GetResult> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match get_once(inner, key, options).await {
            Err(Changed) if attempt < ATTEMPTS && options.if_match.is_none() => continue,
            Err(Changed) => {
                return Err(StoreError::PreconditionFailed {
                    key: key.to_string(),
                });
            }
            Ok(result) => return result,
        }
    }
}

/// The object changed between two parts of one read.
struct Changed;

async fn get_once(
    inner: &Arc<S3Inner>,
    key: &str,
    options: &GetOptions,
) -> std::result::Result<Result<GetResult>, Changed> {
    let if_match = options.if_match.as_ref();
    let want = options.range.clone().unwrap_or(0..u64::MAX);
    let meta_only = || async {
        let meta = inner.head(key, if_match).await?;
        Ok(GetResult {
            bytes: Bytes::new(),
            meta,
        })
    };
    if want.start >= want.end {
        return Ok(meta_only().await);
    }
    let part = inner.part_size as u64;
    let first_range = want.start..want.end.min(want.start.saturating_add(part));
    let first = get_range(inner, key, &first_range, if_match, BytesMut::new()).await;
    let (bytes, total, etag, partial) = match first {
        Err(e) => return Ok(Err(e)),
        Ok(Ranged::PastEnd) => return Ok(meta_only().await),
        Ok(Ranged::Got {
            bytes,
            total,
            etag,
            partial,
        }) => (bytes, total, etag, partial),
    };
    // Reads do not need the write time (listings and heads carry it).
    let meta = ObjectMeta {
        key: key.to_string(),
        size: total,
        etag: etag.clone(),
        modified: None,
    };
    if !partial {
        let r = clamp_range(&want, total);
        let bytes = bytes.freeze().slice(r.start as usize..r.end as usize);
        return Ok(Ok(GetResult { bytes, meta }));
    }
    let end = want.end.min(total);
    let mut next = want.start + bytes.len() as u64;
    if next >= end {
        let bytes = bytes.freeze();
        return Ok(Ok(GetResult { bytes, meta }));
    }
    // One allocation for the whole result: every part streams into its own
    // region of it, and the regions join again without copying.
    let mut buf = BytesMut::with_capacity((end - want.start) as usize);
    buf.extend_from_slice(&bytes);
    drop(bytes);
    let mut free = buf.split_off(buf.len());
    let mut parts: Vec<Option<BytesMut>> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut index = 0;
    while next < end || !tasks.is_empty() {
        if next < end && tasks.len() < inner.concurrency {
            let range = next..end.min(next + part);
            next = range.end;
            parts.push(None);
            let rest = free.split_off((range.end - range.start) as usize);
            let region = std::mem::replace(&mut free, rest);
            let (inner, key, etag) = (inner.clone(), key.to_string(), etag.clone());
            let i = index;
            index += 1;
            tasks.spawn(async move {
                let got = get_range(&inner, &key, &range, Some(&etag), region).await;
                (i, range, got)
            });
            continue;
        }
        let joined = tasks.join_next().await.expect("tasks not empty");
        let (i, range, got) = match joined {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(StoreError::Other {
                    message: format!("range read task failed: {e}"),
                }));
            }
        };
        match got {
            Ok(Ranged::Got { bytes, .. }) if bytes.len() as u64 == range.end - range.start => {
                parts[i] = Some(bytes);
            }
            Err(StoreError::PreconditionFailed { .. }) | Ok(_) => return Err(Changed),
            Err(e) => return Ok(Err(e)),
        }
    }
    for part in parts {
        buf.unsplit(part.expect("every part joined"));
    }
    Ok(Ok(GetResult {
        bytes: buf.freeze(),
        meta,
    }))
}
