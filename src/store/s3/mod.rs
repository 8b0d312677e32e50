//! The S3 [`ObjectStore`] (aws-sdk-s3), for `s3://bucket[/prefix]`.
//!
//! Invariants:
//! - Every key is stored as `prefix + key`, where `prefix` is empty or ends
//!   in `/`; listings strip it again, so two stores on different prefixes
//!   of one bucket never see each other's objects.
//! - Conditional puts are sent as `If-None-Match: *` / `If-Match: ETAG`;
//!   412 and (for conditional writes) 409 answers become
//!   [`StoreError::PreconditionFailed`]. Whether the server honours them is
//!   checked by [`ObjectStore::check_conditional_writes`].
//! - Transient failures and throttling are retried by the SDK's standard
//!   retry strategy (exponential backoff with full jitter) up to
//!   `max_attempts`; what is still failing then surfaces as
//!   [`StoreError::Transient`].
//! - A request that carries little data (head, list, delete, a small put,
//!   a get until its answer starts) has `request_timeout` per attempt and
//!   three times that in all, so a server that accepts connections but does
//!   not answer (stopped, overloaded) is a [`StoreError::Transient`] within
//!   seconds, not after `attempt_timeout`; bodies that stall for
//!   `idle_timeout` fail the same way. Only transfers of real data (parts,
//!   large puts) get the long `attempt_timeout`, since their duration
//!   depends on the link.
//! - Checksums are computed and validated only where S3 requires them
//!   (FACTS.md: S3-compatible servers reject the SDK's default CRC headers).
//! - An unconditional put larger than `multipart_threshold` goes up as a
//!   multipart upload with parallel parts, aborted on failure; a get larger
//!   than one part comes down as parallel range requests pinned to one
//!   ETag (see `download`).
//!
//! - A conditional put carries a random tag of its own in its user metadata
//!   (`x-amz-meta-cardfs-put`). When it is refused, the object is read
//!   (HEAD) once: if it holds that tag, an earlier attempt of this same put
//!   landed and only its answer was lost (the SDK then retried and met the
//!   object it had written), so the put succeeded and returns the ETag.
//!
//! Known limit: if another writer replaces the object between that landed
//! attempt and the HEAD, the put is reported refused though it landed; the
//! caller then reads the object to find out (as after any lost race).

mod download;
mod errors;
mod upload;

use super::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result, StoreError, probe_conditional_writes, validate_key,
};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use errors::{Call, map_sdk_error};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use upload::S3Upload;

/// Smallest part S3 accepts (except for the last part).
const MIN_PART: usize = 5 << 20;
/// Most keys one DeleteObjects call accepts.
const DELETE_BATCH: usize = 1000;
/// Puts up to this size (log entries, keyrings) get `request_timeout`.
const SMALL_PUT: usize = 64 << 10;

/// How to reach and use an S3 service. Anything left `None` comes from the
/// standard AWS chain (environment, `~/.aws/config` and `credentials`).
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Custom endpoint such as `http://127.0.0.1:8333`; otherwise
    /// `AWS_ENDPOINT_URL` or the AWS default.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when the chain gives none.
    pub region: Option<String>,
    /// Path-style addressing; default: on with a custom endpoint, else off.
    pub path_style: Option<bool>,
    /// Fixed credentials instead of the chain (tests, benchmarks).
    pub credentials: Option<Credentials>,
    /// Parts of a multipart upload (at least 5 MiB).
    pub part_size: usize,
    /// Unconditional puts larger than this use a multipart upload.
    pub multipart_threshold: usize,
    /// Parts in flight per upload.
    pub concurrency: usize,
    /// Attempts per request, including the first.
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    /// Limit for one attempt of a request that transfers data (a part, a
    /// put larger than `SMALL_PUT`, completing a multipart upload).
    pub attempt_timeout: Duration,
    /// Limit for one attempt of a request that carries little data (head,
    /// list, delete, a small put, a get until its answer starts); the
    /// request with its retries gets three times this.
    pub request_timeout: Duration,
    /// Longest pause while a response body is being read.
    pub idle_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            path_style: None,
            credentials: None,
            part_size: 8 << 20,
            multipart_threshold: 16 << 20,
            concurrency: 8,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Objects in one bucket, under an optional prefix; clones share the
/// connection pool.
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<S3Inner>,
}

#[derive(Debug)]
struct S3Inner {
    client: Client,
    bucket: String,
    /// Empty, or ends in `/`.
    prefix: String,
    part_size: usize,
    multipart_threshold: usize,
    concurrency: usize,
    /// Timeouts of requests that carry little data.
    quick: TimeoutConfig,
    idle_timeout: Duration,
    /// Continuation tokens of recent truncated listings, by (full prefix,
    /// full last key): see [`S3Store::list`].
    tokens: Mutex<HashMap<(String, String), String>>,
}

/// User metadata (`x-amz-meta-…`) holding a conditional put's own tag.
const PUT_TAG: &str = "cardfs-put";

/// A fresh random tag for one conditional put (128 bits, hex).
fn put_tag() -> String {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Most continuation tokens remembered; the map is cleared when full.
const MAX_TOKENS: usize = 4096;

impl S3Inner {
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The per-request override that gives a request carrying little data
    /// its short timeouts (see `S3Options::request_timeout`).
    fn quick(&self) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default().timeout_config(self.quick.clone())
    }

    async fn put_single(&self, key: &str, body: Bytes, mode: &PutMode) -> Result<ETag> {
        let body_len = body.len();
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(body.len() as i64)
            .body(ByteStream::from(body));
        let call = match mode {
            PutMode::Overwrite => Call::Plain,
            PutMode::Create => {
                req = req.if_none_match("*");
                Call::ConditionalWrite
            }
            PutMode::Update(etag) => {
                req = req.if_match(&etag.0);
                Call::ConditionalWrite
            }
        };
        // A conditional put carries a tag of its own, so that a refusal
        // can be told apart from the SDK's retry of a put that had already
        // landed (see `landed`).
        let tag = (call == Call::ConditionalWrite).then(put_tag);
        if let Some(tag) = &tag {
            req = req.metadata(PUT_TAG, tag);
        }
        // The payload is not hashed into the signature (UNSIGNED-PAYLOAD):
        // a SHA-256 pass over every uploaded byte bought nothing here,
        // since every object is sealed (AEAD) and checked when read.
        let req = req.customize().disable_payload_signing();
        let sent = if body_len <= SMALL_PUT {
            req.config_override(self.quick()).send().await
        } else {
            req.send().await
        };
        let out = match (sent.map_err(|e| map_sdk_error(e, key, call)), tag) {
            (Err(StoreError::PreconditionFailed { .. }), Some(tag)) => {
                return self.landed(key, &tag).await;
            }
            (sent, _) => sent?,
        };
        match out.e_tag {
            Some(etag) => Ok(ETag(etag)),
            None => Err(StoreError::Other {
                message: format!("server gave no ETag for {key}"),
            }),
        }
    }

    /// After a conditional put of `key` was refused: `Ok` with the ETag
    /// when the object holds this put's `tag` after all (an earlier attempt
    /// landed and its answer was lost, so the SDK's retry met the object
    /// that attempt wrote), else the refusal. A tag is never reused, so
    /// nothing else can match it.
    async fn landed(&self, key: &str, tag: &str) -> Result<ETag> {
        let refused = StoreError::PreconditionFailed {
            key: key.to_string(),
        };
        let out = match self.head_output(key, None).await {
            Ok(out) => out,
            // Gone again, or unreadable now: the refusal stands, as it
            // would have without this check.
            Err(_) => return Err(refused),
        };
        let ours = out
            .metadata
            .as_ref()
            .and_then(|m| m.get(PUT_TAG))
            .is_some_and(|t| t == tag);
        match out.e_tag {
            Some(etag) if ours => {
                tracing::debug!("conditional put of {key:?} had landed before its retry");
                Ok(ETag(etag))
            }
            _ => Err(refused),
        }
    }

    async fn head_output(&self, key: &str, if_match: Option<&ETag>) -> Result<HeadObjectOutput> {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .set_if_match(if_match.map(|e| e.0.clone()))
            .customize()
            .config_override(self.quick())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, key, Call::Plain))
    }

    async fn head(&self, key: &str, if_match: Option<&ETag>) -> Result<ObjectMeta> {
        let out = self.head_output(key, if_match).await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length.unwrap_or(0).max(0) as u64,
            etag: ETag(out.e_tag.unwrap_or_default()),
            modified: out.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
        })
    }
}

/// The SDK's HTTP client: hyper with rustls on ring (HTTP and HTTPS
/// endpoints, the platform's root certificates), chosen here instead of
/// the SDK default so that the build needs no aws-lc C library.
pub fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl S3Store {
    /// Connects to `bucket` (keys under `prefix`, which may be empty).
    /// Makes no request; see [`S3Store::create_bucket`] and
    /// [`ObjectStore::check_conditional_writes`].
    pub async fn new(bucket: &str, prefix: &str, options: &S3Options) -> Result<Self> {
        if options.part_size < MIN_PART {
            return Err(StoreError::Other {
                message: format!("S3 part size must be at least {MIN_PART} bytes"),
            });
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(options.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(options.connect_timeout)
                    .operation_attempt_timeout(options.attempt_timeout)
                    .build(),
            );
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(creds) = &options.credentials {
            loader = loader.credentials_provider(creds.clone());
        }
        let sdk = loader.load().await;
        let custom_endpoint = sdk.endpoint_url().is_some();
        let quick = TimeoutConfig::builder()
            .connect_timeout(options.connect_timeout)
            .operation_attempt_timeout(options.request_timeout)
            .operation_timeout(options.request_timeout * 3)
            .build();
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(options.path_style.unwrap_or(custom_endpoint))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            validate_key(prefix)?;
            format!("{prefix}/")
        };
        Ok(Self {
            inner: Arc::new(S3Inner {
                client: Client::from_conf(config.build()),
                bucket: bucket.to_string(),
                prefix,
                part_size: options.part_size,
                multipart_threshold: options.multipart_threshold.max(options.part_size),
                concurrency: options.concurrency.max(1),
                quick,
                idle_timeout: options.idle_timeout,
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Creates the bucket; succeeds when we already own it.
    pub async fn create_bucket(&self) -> Result<()> {
        match self
            .inner
            .client
            .create_bucket()
            .bucket(&self.inner.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you())
                {
                    return Ok(());
                }
                Err(map_sdk_error(e, &self.inner.bucket, Call::Plain))
            }
        }
    }

    /// Aborts every unfinished multipart upload under this store's prefix
    /// (leftovers of a crashed writer); returns how many there were.
    pub async fn abort_pending_uploads(&self) -> Result<usize> {
        let pending = self.list_uploads().await?;
        for (key, id) in &pending {
            upload_abort(&self.inner, key, id).await?;
        }
        Ok(pending.len())
    }

    /// `(key, upload id)` of unfinished multipart uploads under the prefix.
    async fn list_uploads(&self) -> Result<Vec<(String, String)>> {
        let inner = &self.inner;
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.bucket)
                .prefix(&inner.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .customize()
                .config_override(inner.quick())
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &inner.prefix, Call::Plain))?;
            for up in page.uploads.unwrap_or_default() {
                if let (Some(key), Some(id)) = (up.key, up.upload_id) {
                    let key = key.strip_prefix(&inner.prefix).unwrap_or(&key).to_string();
                    out.push((key, id));
                }
            }
            if page.is_truncated != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker;
            id_marker = page.next_upload_id_marker;
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Aborts one multipart upload; one that is already gone is fine.
async fn upload_abort(inner: &S3Inner, key: &str, id: &str) -> Result<()> {
    let sent = inner
        .client
        .abort_multipart_upload()
        .bucket(&inner.bucket)
        .key(inner.full_key(key))
        .upload_id(id)
        .customize()
        .config_override(inner.quick())
        .send()
        .await;
    match sent.map_err(|e| map_sdk_error(e, key, Call::Plain)) {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ETag> {
        validate_key(key)?;
        if mode == PutMode::Overwrite && body.len() > self.inner.multipart_threshold {
            let mut up = S3Upload::new(self.inner.clone(), key.to_string());
            up.put_part(body).await?;
            return Box::new(up).complete().await;
        }
        self.inner.put_single(key, body, &mode).await
    }

    async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult> {
        validate_key(key)?;
        download::get(&self.inner, key, &options).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        self.inner.head(key, None).await
    }

    /// Lists with ListObjectsV2. A `start_after` that ended an earlier
    /// page of this store continues with that page's continuation token
    /// rather than with StartAfter: servers that walk a directory tree
    /// (SeaweedFS) skip keys when StartAfter is a key below a `/`, but
    /// follow their own tokens exactly.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let inner = &self.inner;
        let limit = limit.clamp(1, 1000);
        let full_prefix = inner.full_key(prefix);
        let full_after = start_after.map(|a| inner.full_key(a));
        let mut token = full_after.as_ref().and_then(|after| {
            let tokens = inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.get(&(full_prefix.clone(), after.clone())).cloned()
        });
        let start_after = if token.is_some() { None } else { full_after };
        loop {
            let out = inner
                .client
                .list_objects_v2()
                .bucket(&inner.bucket)
                .prefix(&full_prefix)
                .set_start_after(start_after.clone())
                .set_continuation_token(token.take())
                .max_keys(limit as i32)
                .customize()
                .config_override(inner.quick())
                .send()
                .await
                .map_err(|e| map_sdk_error(e, prefix, Call::Plain))?;
            let more = out.is_truncated == Some(true);
            let objects: Vec<ObjectMeta> = out
                .contents
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| {
                    let key = o.key?.strip_prefix(&inner.prefix)?.to_string();
                    Some(ObjectMeta {
                        key,
                        size: o.size.unwrap_or(0).max(0) as u64,
                        etag: ETag(o.e_tag.unwrap_or_default()),
                        modified: o.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
                    })
                })
                .collect();
            let next = out.next_continuation_token;
            // A truncated page without objects can only continue by token.
            if objects.is_empty() && more && next.is_some() {
                token = next;
                continue;
            }
            if let (true, Some(next), Some(last)) = (more, next, objects.last()) {
                let mut tokens = inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
                if tokens.len() >= MAX_TOKENS {
                    tokens.clear();
                }
                tokens.insert((full_prefix.clone(), inner.full_key(&last.key)), next);
            }
            return Ok(ListPage::new(objects, more));
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let inner = &self.inner;
        match inner
            .client
            .delete_object()
            .bucket(&inner.bucket)
            .key(inner.full_key(key))
            .customize()
            .config_override(inner.quick())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, key, Call::Plain))
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let inner = &self.inner;
        for batch in keys.chunks(DELETE_BATCH) {
            let mut ids = Vec::with_capacity(batch.len());
            for key in batch {
                validate_key(key)?;
                ids.push(
                    ObjectIdentifier::builder()
                        .key(inner.full_key(key))
                        .build()
                        .map_err(|e| StoreError::Other {
                            message: e.to_string(),
                        })?,
                );
            }
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Other {
                    message: e.to_string(),
                })?;
            let out = inner
                .client
                .delete_objects()
                .bucket(&inner.bucket)
                .delete(delete)
                .customize()
                .config_override(inner.quick())
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &batch[0], Call::Plain))?;
            if let Some(err) = out.errors.unwrap_or_default().into_iter().next() {
                let code = err.code.unwrap_or_default();
                let message = format!(
                    "cannot delete {}: {code} {}",
                    err.key.unwrap_or_default(),
                    err.message.unwrap_or_default()
                );
                return Err(match code.as_str() {
                    "AccessDenied" => StoreError::Auth { message },
                    "SlowDown" | "InternalError" => StoreError::Transient {
                        message,
                        retry_after: None,
                    },
                    _ => StoreError::Other { message },
                });
            }
        }
        Ok(())
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        validate_key(key)?;
        Ok(Box::new(S3Upload::new(self.inner.clone(), key.to_string())))
    }

    async fn check_conditional_writes(&self) -> Result<()> {
        probe_conditional_writes(self).await
    }

    async fn pending_uploads(&self) -> Result<Vec<String>> {
        Ok(self
            .list_uploads()
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    fn describe(&self) -> String {
        let prefix = self.inner.prefix.trim_end_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.inner.bucket)
        } else {
            format!("s3://{}/{prefix}", self.inner.bucket)
        }
    }
}
