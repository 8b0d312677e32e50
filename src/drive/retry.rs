//! Retrying what an owner's call writes itself when the store fails on a
//! passing error: a folder conversion's new volume and a key rotation's
//! keyring are put in the caller's call, not through the committer's
//! retries, and so are the syncs those calls wait for.
//!
//! Invariants:
//! - Only transient store errors are retried, up to [`TRIES`] attempts
//!   with a pause that doubles from [`FIRST_PAUSE`] (about 3 s of pauses
//!   in all); any other result is returned at once.
//! - [`RetryPuts`] retries puts only; every other call goes through as is.
//!   A `Create` put whose earlier attempt failed transiently may have
//!   landed all the same: when the retry finds the key taken, the object
//!   is read back and taken as this put's only if its bytes are exactly
//!   the body (else `PreconditionFailed`, as without the retry). Bodies
//!   this is used for are sealed under a fresh nonce, so equal bytes mean
//!   this put's own.
//! - [`retry_transient`] is only for steps that can run again: a sync, a
//!   refresh.

use crate::drive::error::{DriveError, Result as DriveResult};
use crate::store::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result, StoreError,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Attempts of one put or step (about 3 s of pauses in all).
pub(crate) const TRIES: u32 = 7;
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Runs `step` again while it fails with a transient store error, up to
/// [`TRIES`] attempts; `what` names the step in the log.
pub(crate) async fn retry_transient<T, F, Fut>(what: &str, mut step: F) -> DriveResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = DriveResult<T>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match step().await {
            Err(DriveError::Store(e)) if e.is_transient() && attempt < TRIES => {
                tracing::warn!(error = %e, attempt, "{what} failed on a transient store error; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// The store with its puts retried (see the module doc).
#[derive(Debug)]
pub(crate) struct RetryPuts(pub(crate) Arc<dyn ObjectStore>);

#[async_trait]
impl ObjectStore for RetryPuts {
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ETag> {
        let mut pause = FIRST_PAUSE;
        let mut failed_before = false;
        for attempt in 1.. {
            match self.0.put(key, body.clone(), mode.clone()).await {
                Err(e) if e.is_transient() && attempt < TRIES => {
                    tracing::warn!(object = key, error = %e, attempt, "a put failed on a transient store error; trying again");
                    failed_before = true;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(StoreError::PreconditionFailed { .. })
                    if failed_before && matches!(mode, PutMode::Create) =>
                {
                    return self.landed(key, &body).await;
                }
                r => return r,
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult> {
        self.0.get(key, options).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.0.head(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        self.0.list(prefix, start_after, limit).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart(key).await
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

impl RetryPuts {
    /// The ETag of `key` if it holds exactly `body` (an earlier attempt
    /// that reported a failure landed), else `PreconditionFailed`.
    async fn landed(&self, key: &str, body: &Bytes) -> Result<ETag> {
        let got = self.0.get(key, GetOptions::default()).await?;
        if got.bytes != *body {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        Ok(got.meta.etag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Its first put lands and then reports a transient failure (a reply
    /// lost on the way back).
    #[derive(Debug)]
    struct LandsThenFails {
        inner: MemoryStore,
        failed: AtomicBool,
    }

    #[async_trait]
    impl ObjectStore for LandsThenFails {
        async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ETag> {
            let r = self.inner.put(key, body, mode).await;
            if !self.failed.swap(true, Ordering::SeqCst) {
                return Err(StoreError::Transient {
                    message: "reply lost".into(),
                    retry_after: None,
                });
            }
            r
        }
        async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult> {
            self.inner.get(key, options).await
        }
        async fn head(&self, key: &str) -> Result<ObjectMeta> {
            self.inner.head(key).await
        }
        async fn list(&self, p: &str, after: Option<&str>, limit: usize) -> Result<ListPage> {
            self.inner.list(p, after, limit).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key).await
        }
        async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart(key).await
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    fn store() -> Arc<LandsThenFails> {
        Arc::new(LandsThenFails {
            inner: MemoryStore::new(),
            failed: AtomicBool::new(false),
        })
    }

    /// A create that landed though its reply was lost is this put's own
    /// when the key holds exactly its bytes on the retry.
    #[tokio::test]
    async fn a_create_that_landed_unseen_is_taken_as_done() {
        let s = store();
        let r = RetryPuts(s.clone());
        let etag = r
            .put("k", Bytes::from_static(b"body"), PutMode::Create)
            .await;
        assert_eq!(etag.unwrap(), s.head("k").await.unwrap().etag);
    }

    /// Other bytes under the key are someone else's: still refused.
    #[tokio::test]
    async fn a_create_meeting_other_bytes_after_a_failure_is_refused() {
        let s = store();
        s.failed.store(true, Ordering::SeqCst);
        s.put("k", Bytes::from_static(b"theirs"), PutMode::Overwrite)
            .await
            .unwrap();
        s.failed.store(false, Ordering::SeqCst);
        let r = RetryPuts(s.clone());
        let e = r
            .put("k", Bytes::from_static(b"mine"), PutMode::Create)
            .await;
        assert!(
            matches!(e, Err(StoreError::PreconditionFailed { .. })),
            "{e:?}"
        );
    }
}
