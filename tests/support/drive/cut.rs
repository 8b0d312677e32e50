//! A store whose deletes stop working after a number of them (a
//! collector killed half-way).

use async_trait::async_trait;
use bytes::Bytes;
use cardfs::store::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result as StoreResult, StoreError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A store whose deletes stop working after `left` of them (a collector
/// killed half-way).
#[derive(Debug)]
pub struct DeletesCut {
    pub inner: Arc<dyn ObjectStore>,
    /// Deletes still allowed (each one counts down).
    pub left: AtomicI64,
}

#[async_trait]
impl ObjectStore for DeletesCut {
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> StoreResult<ETag> {
        self.inner.put(key, body, mode).await
    }
    async fn get(&self, key: &str, o: GetOptions) -> StoreResult<GetResult> {
        self.inner.get(key, o).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, p: &str, after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.inner.list(p, after, limit).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(StoreError::Transient {
                message: "killed".into(),
                retry_after: None,
            });
        }
        self.inner.delete(key).await
    }
    async fn put_multipart(&self, key: &str) -> StoreResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart(key).await
    }
    fn describe(&self) -> String {
        "deletes cut".into()
    }
}

impl DeletesCut {
    /// `inner` with every delete allowed until a test sets `left`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<DeletesCut> {
        Arc::new(DeletesCut {
            inner,
            left: AtomicI64::new(i64::MAX),
        })
    }
}
