//! The store as a folder conversion writes its new volume through: each
//! put that fails with a transient store error is made again, so a share
//! does not fail on a passing store hiccup (its puts are made in the
//! caller's call, not through the committer's retries).
//!
//! Invariants:
//! - Only puts are retried, up to [`TRIES`] attempts with a pause that
//!   doubles from [`FIRST_PAUSE`]; every other call goes through as is.
//! - A `Create` put whose earlier attempt failed transiently may have
//!   landed all the same: when the retry finds the key taken, the object
//!   is read back and taken as this put's only if its bytes are exactly
//!   the body (else `PreconditionFailed`, as without the retry).

use crate::store::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result, StoreError,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Attempts of one put (about 3 s of pauses in all).
pub(super) const TRIES: u32 = 7;
const FIRST_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(super) struct RetryPuts(pub(super) Arc<dyn ObjectStore>);

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
