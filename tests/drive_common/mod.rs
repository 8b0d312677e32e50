//! Helpers shared by the drive engine tests: a drive on a MemoryStore with
//! a temporary cache directory, and small file helpers.
#![allow(dead_code)]

pub mod model;

use cardfs::drive::{Caller, Drive, DriveOptions, Fh, Identity, Ino, ROOT_INO};
use cardfs::store::{MemoryStore, ObjectStore};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

pub const WHO: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

pub struct Env {
    pub store: Arc<dyn ObjectStore>,
    pub id: Identity,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh drive on a fresh MemoryStore.
    pub async fn new() -> Env {
        Env::with_store(Arc::new(MemoryStore::new())).await
    }

    /// A fresh drive on `store` (which must be empty).
    pub async fn with_store(store: Arc<dyn ObjectStore>) -> Env {
        let id = Identity::generate();
        Drive::create_drive(store.clone(), &id, b"test card")
            .await
            .unwrap();
        Env {
            store,
            id,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Number of objects in the store.
    pub async fn object_count(&self) -> usize {
        self.store.list_all("").await.unwrap().len()
    }

    pub fn opts(&self, cache: &str) -> DriveOptions {
        let mut o = DriveOptions::new(self.dir.path().join(cache));
        o.refresh_interval = Duration::from_secs(3600);
        o
    }

    /// Opens the drive with the cache directory `cache`.
    pub async fn open_with(&self, cache: &str) -> Drive {
        Drive::open_drive(self.store.clone(), self.id.clone(), self.opts(cache))
            .await
            .unwrap()
    }

    pub async fn open(&self) -> Drive {
        self.open_with("cache").await
    }
}

/// The names of the store's objects under `prefix`.
pub async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    store
        .list_all(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Creates `name` in `parent` with `data`; returns its inode.
pub async fn put(d: &Drive, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (attr, fh) = d
        .create(parent, os(name), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    if !data.is_empty() {
        assert_eq!(
            d.write(attr.ino, fh, 0, data).await.unwrap() as usize,
            data.len()
        );
    }
    d.release(attr.ino, fh).await.unwrap();
    attr.ino
}

pub async fn read_all(d: &Drive, ino: Ino) -> Vec<u8> {
    let fh: Fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    let size = d.getattr(ino).await.unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let chunk = d.read(ino, fh, out.len() as u64, 1 << 20).await.unwrap();
        assert!(!chunk.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&chunk);
    }
    d.release(ino, fh).await.unwrap();
    out
}

pub async fn lookup(d: &Drive, path: &str) -> cardfs::drive::Result<Ino> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = d.lookup(ino, os(part)).await?.ino;
    }
    Ok(ino)
}

pub async fn sync(d: &Drive) {
    d.sync(&|_, _| {}).await.unwrap();
}

/// Names in a directory (without . and ..), via readdir.
pub async fn names(d: &Drive, dir: Ino) -> Vec<String> {
    let fh = d.opendir(dir).await.unwrap();
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let batch = d.readdir(dir, fh, off).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for e in batch {
            off = e.next_offset;
            let n = e.name.to_string_lossy().into_owned();
            if n != "." && n != ".." {
                out.push(n);
            }
        }
    }
    d.releasedir(dir, fh).await.unwrap();
    out.sort();
    out
}

/// A store wrapper whose failures tests switch on and off: `down` makes
/// every call fail as a transient network error; `block_log` makes only
/// metadata log puts fail (content uploads succeed).
#[derive(Debug)]
pub struct Flaky {
    pub inner: Arc<dyn ObjectStore>,
    pub down: std::sync::atomic::AtomicBool,
    pub block_log: std::sync::atomic::AtomicBool,
    pub puts: std::sync::atomic::AtomicU64,
    /// When non-zero, every Nth put fails as a transient error.
    pub fail_every: std::sync::atomic::AtomicU64,
    /// Reads (get, head, list) made so far.
    pub reads: std::sync::atomic::AtomicU64,
    /// When set, the next content GET signals `held` and then waits for a
    /// permit on `release` before returning (holds a block fetch open).
    pub hold_content_get: std::sync::atomic::AtomicBool,
    pub held: tokio::sync::Notify,
    pub release: tokio::sync::Semaphore,
    /// When set, puts of keys starting with this prefix fail as transient
    /// errors (e.g. one volume's log).
    pub block_prefix: std::sync::Mutex<Option<String>>,
}

impl Flaky {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner,
            down: Default::default(),
            block_log: Default::default(),
            puts: Default::default(),
            fail_every: Default::default(),
            reads: Default::default(),
            hold_content_get: Default::default(),
            held: Default::default(),
            release: tokio::sync::Semaphore::new(0),
            block_prefix: Default::default(),
        })
    }
    pub fn set_down(&self, v: bool) {
        self.down.store(v, std::sync::atomic::Ordering::SeqCst);
    }
    fn check(&self) -> cardfs::store::Result<()> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(cardfs::store::StoreError::Transient {
                message: "test: store down".into(),
                retry_after: None,
            });
        }
        Ok(())
    }
}

use cardfs::store::{ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, PutMode};

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        mode: PutMode,
    ) -> cardfs::store::Result<ETag> {
        self.check()?;
        let blocked_prefix = self
            .block_prefix
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|p| key.starts_with(p.as_str()));
        if blocked_prefix
            || self.block_log.load(std::sync::atomic::Ordering::SeqCst) && key.contains("/l/")
        {
            return Err(cardfs::store::StoreError::Transient {
                message: "test: log puts blocked".into(),
                retry_after: None,
            });
        }
        let n = self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let every = self.fail_every.load(std::sync::atomic::Ordering::SeqCst);
        if every > 0 && n.is_multiple_of(every) {
            return Err(cardfs::store::StoreError::Transient {
                message: "test: injected put failure".into(),
                retry_after: None,
            });
        }
        self.inner.put(key, body, mode).await
    }
    async fn get(&self, key: &str, options: GetOptions) -> cardfs::store::Result<GetResult> {
        self.check()?;
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let got = self.inner.get(key, options).await;
        if key.starts_with("c/")
            && self
                .hold_content_get
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.held.notify_one();
            drop(self.release.acquire().await.expect("release semaphore"));
        }
        got
    }
    async fn head(&self, key: &str) -> cardfs::store::Result<ObjectMeta> {
        self.check()?;
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> cardfs::store::Result<ListPage> {
        self.check()?;
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.list(prefix, start_after, limit).await
    }
    async fn delete(&self, key: &str) -> cardfs::store::Result<()> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn put_multipart(&self, key: &str) -> cardfs::store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart(key).await
    }
    fn describe(&self) -> String {
        format!("flaky({})", self.inner.describe())
    }
}
