//! Helpers shared by the drive engine tests: a drive on a MemoryStore with
//! a temporary cache directory, the fault wrapper around a store, and small
//! file helpers.
#![allow(dead_code)]

pub mod collect;
pub mod crash;
pub mod cut;
pub mod loot;
pub mod mirror;
pub mod model;

// Not every binary that includes the support module uses it.
#[allow(unused_imports)]
pub use super::keys_under;
#[allow(unused_imports)]
pub use collect::{Model, equals, now_all, repack_then_delete, seqs, volume};
#[allow(unused_imports)]
pub use cut::DeletesCut;

use cardfs::drive::{Caller, Drive, DriveError, DriveOptions, Fh, Identity, Ino, ROOT_INO};
use cardfs::store::{FaultConfig, FaultStore, MemoryStore, ObjectStore};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
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

    /// Opens the drive with the cache directory `cache` through the fault
    /// wrapper around the store ([`faulty`]: injecting nothing until the
    /// test configures it, counting every call).
    pub async fn open_faulty(&self, cache: &str) -> (Arc<FaultStore>, Drive) {
        let store = faulty(self.store.clone());
        let d = Drive::open_drive(store.clone(), self.id.clone(), self.opts(cache))
            .await
            .unwrap();
        (store, d)
    }
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

/// Creates `dst` in the root as a clone copy (`copy_file_range`) of the
/// first 4 KiB of the file at `src`: the copy names `src`'s block objects
/// (a pack it shares), it reads and seals nothing.
pub async fn clone_copy(d: &Drive, src: &str, dst: &str) {
    let src = lookup(d, src).await.unwrap();
    let (attr, out) = d
        .create(ROOT_INO, os(dst), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    let inp = d.open(src, libc::O_RDONLY).await.unwrap();
    assert_eq!(
        d.copy_range((src, inp, 0), (attr.ino, out, 0), 4096)
            .await
            .unwrap(),
        4096
    );
    d.release(src, inp).await.unwrap();
    d.release(attr.ino, out).await.unwrap();
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

/// Makes `store` refuse every log entry from now on: what a drive on it
/// writes next is sealed and uploaded but never committed.
pub fn refuse_commits(store: &FaultStore) {
    store.update_config(|c| c.refuse_puts = vec![cardfs::store::KeyMatch::Contains("/l/".into())]);
}

/// Runs a sync of a drive whose commits are refused ([`refuse_commits`])
/// long enough for its content to reach the store, then gives up on the
/// commit, which can never succeed.
pub async fn upload_uncommitted(d: &Drive) {
    let _ = tokio::time::timeout(Duration::from_secs(2), d.sync(&|_, _| {})).await;
}

/// The object a [`DriveError::Tampered`] names; any other error fails the
/// test (a plain store error is EIO too, so EIO alone proves nothing).
pub fn tampered_object(e: DriveError) -> String {
    match e {
        DriveError::Tampered { object, .. } => object,
        other => panic!("expected Tampered, got {other:?}"),
    }
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

/// `store` behind the fault-injecting wrapper, injecting nothing until a
/// test changes its configuration (e.g. [`FaultStore::set_offline`]).
pub fn faulty(store: Arc<dyn ObjectStore>) -> Arc<FaultStore> {
    Arc::new(FaultStore::new(store, FaultConfig::default()))
}

/// The whole bytes of object `key` (which must exist).
pub async fn object_bytes(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    store
        .get(key, cardfs::store::GetOptions::default())
        .await
        .unwrap()
        .bytes
        .to_vec()
}

/// Files under `dir` (recursively) whose name contains `part`.
pub fn files_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_named(&p, part));
        } else if e.file_name().to_string_lossy().contains(part) {
            out.push(p);
        }
    }
    out
}
