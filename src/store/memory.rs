//! An in-memory [`ObjectStore`] for fast engine tests.
//!
//! Invariants: all state sits behind one mutex, so every operation,
//! including conditional puts, is atomic; ETags come from a counter and are
//! never reused.

use super::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result, StoreError, clamp_range, validate_key,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, (Bytes, ETag, SystemTime)>,
    next_etag: u64,
}

/// Objects kept in a `BTreeMap`; clones share the same objects.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of objects stored (for tests).
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated:
        // every mutation is a single insert or remove.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_now(&self, key: &str, body: Bytes, mode: &PutMode) -> Result<ETag> {
        validate_key(key)?;
        let mut inner = self.lock();
        let current = inner.objects.get(key).map(|(_, etag, _)| etag);
        let allowed = match mode {
            PutMode::Overwrite => true,
            PutMode::Create => current.is_none(),
            PutMode::Update(expected) => current == Some(expected),
        };
        if !allowed {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        inner.next_etag += 1;
        let etag = ETag(format!("m{}", inner.next_etag));
        inner
            .objects
            .insert(key.to_string(), (body, etag.clone(), SystemTime::now()));
        Ok(etag)
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound {
        key: key.to_string(),
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ETag> {
        self.put_now(key, body, &mode)
    }

    async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult> {
        validate_key(key)?;
        let inner = self.lock();
        let (body, etag, modified) = inner.objects.get(key).ok_or_else(|| not_found(key))?;
        if let Some(expected) = &options.if_match
            && expected != etag
        {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        let size = body.len() as u64;
        let bytes = match &options.range {
            Some(range) => {
                let r = clamp_range(range, size);
                body.slice(r.start as usize..r.end as usize)
            }
            None => body.clone(),
        };
        Ok(GetResult {
            bytes,
            meta: ObjectMeta {
                key: key.to_string(),
                size,
                etag: etag.clone(),
                modified: Some(*modified),
            },
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        let inner = self.lock();
        let (body, etag, modified) = inner.objects.get(key).ok_or_else(|| not_found(key))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: body.len() as u64,
            etag: etag.clone(),
            modified: Some(*modified),
        })
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        let inner = self.lock();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut objects = Vec::new();
        let mut more = false;
        for (key, (body, etag, modified)) in inner.objects.range((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if objects.len() == limit {
                more = true;
                break;
            }
            objects.push(ObjectMeta {
                key: key.clone(),
                size: body.len() as u64,
                etag: etag.clone(),
                modified: Some(*modified),
            });
        }
        Ok(ListPage::new(objects, more))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        validate_key(key)?;
        Ok(Box::new(MemoryUpload {
            store: self.clone(),
            key: key.to_string(),
            buf: BytesMut::new(),
        }))
    }

    fn describe(&self) -> String {
        "memory:".to_string()
    }
}

struct MemoryUpload {
    store: MemoryStore,
    key: String,
    buf: BytesMut,
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    async fn put_part(&mut self, data: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn complete(self: Box<Self>) -> Result<ETag> {
        self.store
            .put_now(&self.key, self.buf.freeze(), &PutMode::Overwrite)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
