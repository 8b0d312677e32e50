//! The metadata mirror read in place, as a read-only store: what an
//! offline open verifies, and where the replay of a journal finds the
//! state this client had accepted when a collection has removed it from
//! the store (`JournalBase`). Each object is read from its file (a page
//! from the pack file) when asked for, so an open holds no more of the
//! mirror in memory than what it reads (at a million files the mirror
//! holds ~70 MB of checkpoint pages).
//!
//! Invariants:
//! - It answers as a store holding exactly the mirrored objects: a key it
//!   does not hold is `NotFound`, a listing is in key order without
//!   duplicates (a page both in the pack and in a file of an older mirror
//!   is listed once, read from the pack).
//! - It trusts nothing it reads: callers verify every object as they
//!   verify the store's (signatures, hashes named in signed roots).
//! - It never writes: a put, delete or upload is refused.
//! - An ETag is the object's length (`mirror:<len>`): no reader of the
//!   mirror compares ETags to decide anything; they exist because the
//!   store trait carries them.

use super::Mirror;
use crate::store::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result, StoreError, clamp_range, validate_key,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::sync::Arc;

/// The mirror of one volume as a read-only store (`Mirror::source`).
#[derive(Debug, Clone)]
pub struct MirrorSource {
    mirror: Arc<Mirror>,
}

impl MirrorSource {
    pub(super) fn new(mirror: Arc<Mirror>) -> MirrorSource {
        MirrorSource { mirror }
    }

    /// The bytes of `key`, `None` when the mirror does not hold it.
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key)?;
        let m = &self.mirror;
        if !m.covers(key) {
            return Ok(None);
        }
        if key.starts_with(&m.pages)
            && let Some(body) = m.pack().get(key).map_err(|e| failed(key, e))?
        {
            return Ok(Some(body));
        }
        match fs::read(m.path(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(key, e)),
        }
    }

    /// Keys and sizes of the mirrored objects under `prefix`, in order.
    fn sizes(&self, prefix: &str) -> BTreeMap<String, u64> {
        let m = &self.mirror;
        let mut out: BTreeMap<String, u64> = (m.keys().into_iter())
            .filter(|k| k.starts_with(prefix))
            .filter_map(|k| {
                let len = fs::metadata(m.path(&k)).ok()?.len();
                Some((k, len))
            })
            .collect();
        out.extend(m.pack().sizes(prefix));
        out
    }
}

fn meta(key: &str, size: u64) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size,
        etag: ETag(format!("mirror:{size}")),
        modified: None,
    }
}

fn failed(key: &str, e: io::Error) -> StoreError {
    StoreError::Other {
        message: format!("reading {key} from the local metadata mirror: {e}"),
    }
}

fn read_only(key: &str) -> StoreError {
    StoreError::Other {
        message: format!("the local metadata mirror is read here only; refused to change {key}"),
    }
}

#[async_trait]
impl ObjectStore for MirrorSource {
    async fn put(&self, key: &str, _body: Bytes, _mode: PutMode) -> Result<ETag> {
        Err(read_only(key))
    }

    async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult> {
        let Some(body) = self.read(key)? else {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        };
        let meta = meta(key, body.len() as u64);
        if options.if_match.as_ref().is_some_and(|e| *e != meta.etag) {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        let mut bytes = Bytes::from(body);
        if let Some(range) = &options.range {
            let r = clamp_range(range, meta.size);
            bytes = bytes.slice(r.start as usize..r.end as usize);
        }
        Ok(GetResult { bytes, meta })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        Ok(self.get(key, GetOptions::default()).await?.meta)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        let mut objects = Vec::new();
        let mut more = false;
        for (key, size) in self.sizes(prefix) {
            if start_after.is_some_and(|after| key.as_str() <= after) {
                continue;
            }
            if objects.len() == limit {
                more = true;
                break;
            }
            objects.push(meta(&key, size));
        }
        Ok(ListPage::new(objects, more))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        Err(read_only(key))
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        Err(read_only(key))
    }

    fn describe(&self) -> String {
        format!("mirror:{}", self.mirror.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::volume;

    /// Entries, snapshots and pages are read in place and listed in key
    /// order, once each, paged by `start_after`; what is not there is not
    /// found; ranges are clamped; nothing is written through it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mirror_reads_as_a_store_of_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let vol = [5; 16];
        let m = Arc::new(Mirror::new(dir.path(), &vol, Arc::default()));
        let entry = |s: u64| volume::log_key(&vol, s);
        for s in 1..=3 {
            m.save(&entry(s), &[s as u8; 40]);
        }
        let page = |i: u8| volume::page_key(&vol, &[i; 32]);
        m.save(&page(1), &[1; 30]);
        m.save(&page(2), &[2; 20]);
        // A page file left by an older mirror, also in the pack.
        fs::write(m.path(&page(2)), [2; 20]).unwrap();
        let s = m.source();

        let got = s.get(&entry(2), GetOptions::default()).await.unwrap();
        assert_eq!(got.bytes.as_ref(), &[2; 40]);
        let part = s.get(&page(1), GetOptions::range(25..99)).await.unwrap();
        assert_eq!((part.bytes.as_ref(), part.meta.size), (&[1; 5][..], 30));
        assert!(matches!(
            s.get(&entry(4), GetOptions::default()).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.head("elsewhere/key").await,
            Err(StoreError::NotFound { .. })
        ));

        let logs = m.logs.as_str();
        let first = s.list(logs, None, 2).await.unwrap();
        let keys: Vec<_> = first.objects.iter().map(|o| o.key.clone()).collect();
        assert_eq!(keys, [entry(1), entry(2)]);
        let after = first.next_start_after.as_deref();
        let rest = s.list(logs, after, 2).await.unwrap();
        assert_eq!(rest.objects[0].key, entry(3));
        assert_eq!(rest.next_start_after, None);
        let pages = s.list_all(&m.pages).await.unwrap();
        let sizes: Vec<_> = pages.iter().map(|o| (o.key.clone(), o.size)).collect();
        assert_eq!(sizes, [(page(1), 30), (page(2), 20)]);

        let put = s.put(&entry(9), Bytes::new(), PutMode::Create).await;
        assert!(matches!(put, Err(StoreError::Other { .. })));
        assert!(s.delete(&entry(1)).await.is_err());
        assert!(m.path(&entry(1)).exists());
    }
}
