//! The metadata mirror: a copy, in a volume's cache directory, of the
//! volume's metadata objects exactly as the store served or took them
//! (keyrings, the newest checkpoint root and its pages, the log entries
//! after it), so that a drive opened before can be opened again while the
//! store is out of reach (offline open, docs/ARCHITECTURE.md).
//!
//! Layout: `meta/<store key with '/' as '~'>`, one file per object, but
//! checkpoint pages, which are appended to one file, `meta/pages`
//! (`mirror_pages`; a mirror written before that holds a file per page,
//! still read, and removed once the pack holds the page or it is no
//! longer kept).
//!
//! Invariants:
//! - The mirror is trusted no more than the store: every object in it is
//!   signed (keyrings by the owner, entries and checkpoint roots by a
//!   writer, sealed under the volume key) or named by hash in a signed root
//!   (checkpoint pages), and an offline open verifies it exactly
//!   as an online open verifies the store's copy, against the sealed local
//!   state (header hash, newest accepted head, keyring generation). Nothing
//!   in it is secret beyond what the store itself holds.
//! - A failure to write the mirror never fails a store call (it only makes
//!   a later offline open fail); it is logged.
//! - Checkpoint pages read from the store are copied in the background (a
//!   cold open reads thousands: their copies must not hold it up); the
//!   engine waits for those copies before it lets go of the cache
//!   directory (`Mirror::settle`). Every other object is in the mirror
//!   when the call that passed it returns. A page is named by its hash, so
//!   one already mirrored is not written again.
//! - Mirrored log entries and snapshots older than the newest mirrored
//!   snapshot are removed (not while an open holds them: `hold_superseded`,
//!   for a journal's replay that may need the state before the open), and
//!   so are pages no longer named by the newest
//!   checkpoint the engine wrote or loaded (`retain_pages`; from the pack
//!   file once they are most of it), so the mirror stays within about two
//!   checkpoints' pages plus `SNAPSHOT_EVERY` entries in size.
//!
//! `MirroredStore` is the store as the engine uses it: the real store,
//! with the volume's metadata objects copied into the mirror as they pass.
//! It adds no behaviour to the store's answers. `MirrorSource` (`source`)
//! is the mirror read in place as a read-only store.

mod source;
pub use source::MirrorSource;

use super::mirror_pages::PagePack;
use crate::drive::volume;
use crate::format::hex::encode as hex;
use crate::store::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::{HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The mirror directory of one volume.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    keyrings: String,
    logs: String,
    snapshots: String,
    pages: String,
    /// Bytes the mirror takes on disk (`Cache::mirror_bytes`: the cache
    /// bound counts them).
    held: Arc<AtomicU64>,
    /// Page copies waiting for the background writer.
    copies: Mutex<Copies>,
    /// The mirrored checkpoint pages.
    pack: Mutex<PagePack>,
    /// Signalled when the writer has nothing left.
    settled: Notify,
    /// Whether superseded entries and snapshots stay for now
    /// (`hold_superseded`).
    holding: AtomicBool,
}

/// The page copies of a [`Mirror`] not written yet; one writer at a time
/// on the blocking pool takes them in order (a cold open queues thousands:
/// a thread each would crowd out the opening itself).
///
/// The queued bytes are copies in a spool of their own, not the store's
/// buffers: a cold open reads pages faster than one writer saves them, and
/// the store's buffers, held until saved, sat among the nodes decoded
/// meanwhile; freed, they left holes the daemon never gave back (at
/// 1,000,000 files, up to ~80 MB of RSS; docs/BENCHMARKS.md, "Where the
/// daemon's memory goes"). A spool is one allocation of [`SPOOL_BYTES`],
/// above the largest size malloc ever serves from its arenas, so it is
/// mapped on its own, takes memory only as it fills, and is returned to
/// the system whole once its last copy is written.
#[derive(Debug, Default)]
struct Copies {
    waiting: VecDeque<(String, Bytes)>,
    /// The pages to keep, once the copies queued before are written
    /// (`retain_pages`: dropping the others may rewrite the pack file,
    /// hundreds of megabytes at a million files, never on an async thread).
    keep: Option<HashSet<String>>,
    writing: bool,
    spool: BytesMut,
}

/// Size of one spool of queued page copies: above glibc's largest
/// adaptive mmap threshold (32 MiB on 64-bit systems).
const SPOOL_BYTES: usize = 33 << 20;

impl Copies {
    /// A copy of `bytes` in the spool (a new spool when this one is full;
    /// the old one is freed with its last copy).
    fn spooled(&mut self, bytes: &[u8]) -> Bytes {
        if self.spool.capacity() < bytes.len() {
            self.spool = BytesMut::with_capacity(SPOOL_BYTES.max(bytes.len()));
        }
        self.spool.extend_from_slice(bytes);
        self.spool.split().freeze()
    }
}

impl Mirror {
    /// The mirror in the volume cache directory `cache_dir`; `held` gets
    /// the bytes it takes on disk.
    pub fn new(cache_dir: &Path, volume: &[u8; 16], held: Arc<AtomicU64>) -> Mirror {
        let dir = cache_dir.join("meta");
        let m = Mirror {
            pack: Mutex::new(PagePack::new(&dir)),
            dir,
            keyrings: volume::keyring_prefix(volume),
            logs: format!("v/{}/l/", hex(volume)),
            snapshots: volume::snapshot_prefix(volume),
            pages: volume::page_prefix(volume),
            held,
            copies: Mutex::default(),
            settled: Notify::new(),
            holding: AtomicBool::new(false),
        };
        m.measure();
        m
    }

    /// Counts the bytes the mirror's files take on disk.
    fn measure(&self) {
        let bytes = fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| super::cache::on_disk(m.len()))
                    .sum()
            })
            .unwrap_or(0);
        self.held.store(bytes, Ordering::Relaxed);
    }

    /// Whether `key` is one of the volume's metadata objects.
    fn covers(&self, key: &str) -> bool {
        [&self.keyrings, &self.logs, &self.snapshots, &self.pages]
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key.replace('/', "~"))
    }

    /// Whether the mirror holds anything to open the volume from.
    pub fn is_usable(&self) -> bool {
        self.keys().iter().any(|k| k.starts_with(&self.keyrings))
    }

    fn pack(&self) -> std::sync::MutexGuard<'_, PagePack> {
        self.pack.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies an object the store served or took; a snapshot drops the
    /// older entries and snapshots it supersedes.
    fn save(&self, key: &str, bytes: &[u8]) {
        if !self.covers(key) {
            return;
        }
        if key.starts_with(&self.pages) {
            match self.pack().append(key, bytes) {
                Ok(added) => {
                    self.held.fetch_add(added, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "could not copy a checkpoint page into the local mirror; opening offline may fail until the next copy");
                }
            }
            return;
        }
        let path = self.path(key);
        let replaced = fs::metadata(&path).map(|m| m.len()).ok();
        let r = fs::create_dir_all(&self.dir)
            .and_then(|()| super::cache::replace_file(&path, bytes, false));
        if let Err(e) = r {
            tracing::warn!(object = %key, error = %e, "could not copy a metadata object into the local mirror; opening offline may fail until the next copy");
            return;
        }
        if let Some(seq) = self.seq_of(key, &self.snapshots) {
            if !self.holding.load(Ordering::Acquire) {
                self.drop_older_than(seq);
            }
        } else {
            // One file added or replaced: counted without reading the
            // directory again (a cold open copies every page and entry).
            let on_disk = super::cache::on_disk;
            self.held
                .fetch_add(on_disk(bytes.len() as u64), Ordering::Relaxed);
            if let Some(old) = replaced {
                let less = |h: u64| Some(h.saturating_sub(on_disk(old)));
                let _ = self
                    .held
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
            }
        }
    }

    /// Removes the mirrored entries and snapshots older than `seq`.
    fn drop_older_than(&self, seq: u64) {
        for old in self.keys() {
            let older = |p: &String| self.seq_of(&old, p).is_some_and(|s| s < seq);
            if older(&self.logs) || older(&self.snapshots) {
                let _ = fs::remove_file(self.path(&old));
            }
        }
        self.measure();
    }

    /// Keeps the entries and snapshots a newer snapshot supersedes until
    /// `let_go_superseded`: an open with a journal to replay may need the
    /// state this client had accepted before it (`JournalBase`), which
    /// the open's own copies would otherwise remove.
    pub fn hold_superseded(&self) {
        self.holding.store(true, Ordering::Release);
    }

    /// Ends `hold_superseded`: removes what the newest mirrored snapshot
    /// supersedes.
    pub fn let_go_superseded(&self) {
        self.holding.store(false, Ordering::Release);
        let newest = (self.keys().iter())
            .filter_map(|k| self.seq_of(k, &self.snapshots))
            .max();
        if let Some(seq) = newest {
            self.drop_older_than(seq);
        }
    }

    fn copies(&self) -> std::sync::MutexGuard<'_, Copies> {
        self.copies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a page copy for the background writer (see the module doc),
    /// starting it if it is not running.
    fn save_page(self: &Arc<Self>, key: String, bytes: Bytes) {
        let mut copies = self.copies();
        let copy = copies.spooled(&bytes);
        drop(bytes);
        copies.waiting.push_back((key, copy));
        self.start_writer(&mut copies);
    }

    fn start_writer(self: &Arc<Self>, copies: &mut Copies) {
        if !copies.writing {
            copies.writing = true;
            let mirror = self.clone();
            tokio::task::spawn_blocking(move || mirror.write_queued());
        }
    }

    /// The background writer: saves queued copies, then drops the pages
    /// not kept, until nothing is left.
    fn write_queued(&self) {
        loop {
            let (next, keep) = {
                let mut copies = self.copies();
                let next = copies.waiting.pop_front();
                let keep = if next.is_none() {
                    copies.keep.take()
                } else {
                    None
                };
                copies.writing = next.is_some() || keep.is_some();
                if next.is_none() {
                    // Nothing queued: the spool's memory goes back now.
                    copies.spool = BytesMut::new();
                }
                (next, keep)
            };
            match (next, keep) {
                (Some((key, bytes)), _) => self.save(&key, &bytes),
                (None, Some(keep)) => self.drop_pages_but(&keep),
                (None, None) => {
                    self.settled.notify_waiters();
                    return;
                }
            }
        }
    }

    /// Waits until the page copies queued so far are written.
    pub async fn settle(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if !self.copies().writing {
                return;
            }
            settled.await;
        }
    }

    /// Drops the mirrored checkpoint pages not in `keep` (the pages of the
    /// newest checkpoint, written or loaded: older ones are not needed),
    /// on the background writer once the copies queued before are written
    /// (`settle` waits for it).
    pub fn retain_pages(self: &Arc<Self>, keep: HashSet<String>) {
        let mut copies = self.copies();
        copies.keep = Some(keep);
        self.start_writer(&mut copies);
    }

    /// [`Mirror::retain_pages`] itself: the pack file is rewritten only
    /// once dropped pages are most of it; a page file of an older mirror
    /// goes once the pack holds its page too.
    fn drop_pages_but(&self, keep: &HashSet<String>) {
        let mut pack = self.pack();
        let mut changed = match pack.retain(keep) {
            Ok(rewritten) => rewritten,
            Err(e) => {
                tracing::warn!(error = %e, "could not drop old checkpoint pages from the local mirror; it keeps them until the next checkpoint");
                false
            }
        };
        for key in self.keys() {
            if key.starts_with(&self.pages) && (!keep.contains(&key) || pack.contains(&key)) {
                let _ = fs::remove_file(self.path(&key));
                changed = true;
            }
        }
        drop(pack);
        if changed {
            self.measure();
        }
    }

    fn seq_of(&self, key: &str, prefix: &str) -> Option<u64> {
        u64::from_str_radix(key.strip_prefix(prefix)?, 16).ok()
    }

    /// Keys of the mirrored objects (files that do not name one are
    /// ignored).
    fn keys(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(|n| n.replace('~', "/")))
            // Temporary files of an interrupted copy end in `.tmp`.
            .filter(|k| !k.contains('.'))
            .filter(|k| self.covers(k))
            .collect()
    }

    /// The mirror read in place, as a read-only store (verified there
    /// like the store's).
    pub fn source(self: &Arc<Self>) -> MirrorSource {
        MirrorSource::new(self.clone())
    }
}

/// The store with the volume's metadata objects mirrored as they pass.
#[derive(Debug)]
pub struct MirroredStore {
    inner: Arc<dyn ObjectStore>,
    mirror: Arc<Mirror>,
}

impl MirroredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, mirror: Arc<Mirror>) -> MirroredStore {
        MirroredStore { inner, mirror }
    }
}

#[async_trait]
impl ObjectStore for MirroredStore {
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> crate::store::Result<ETag> {
        let r = self.inner.put(key, body.clone(), mode).await;
        if r.is_ok() {
            self.mirror.save(key, &body);
        }
        r
    }

    async fn get(&self, key: &str, options: GetOptions) -> crate::store::Result<GetResult> {
        let whole = options.range.is_none();
        let r = self.inner.get(key, options).await;
        if let Ok(g) = &r
            && whole
            && self.mirror.covers(key)
        {
            let (mirror, key, bytes) = (self.mirror.clone(), key.to_string(), g.bytes.clone());
            if key.starts_with(&mirror.pages) {
                mirror.save_page(key, bytes);
            } else {
                // On the blocking pool, and awaited: the copy is in the
                // mirror when the call returns.
                let _ = tokio::task::spawn_blocking(move || mirror.save(&key, &bytes)).await;
            }
        }
        r
    }

    async fn head(&self, key: &str) -> crate::store::Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> crate::store::Result<ListPage> {
        self.inner.list(prefix, start_after, limit).await
    }

    async fn delete(&self, key: &str) -> crate::store::Result<()> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> crate::store::Result<()> {
        self.inner.delete_many(keys).await
    }

    async fn put_multipart(&self, key: &str) -> crate::store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart(key).await
    }

    async fn check_conditional_writes(&self) -> crate::store::Result<()> {
        self.inner.check_conditional_writes().await
    }

    async fn pending_uploads(&self) -> crate::store::Result<Vec<String>> {
        self.inner.pending_uploads().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Whether an error means the store is out of reach (as opposed to an
/// answer that refuses or contradicts).
pub fn unreachable(e: &crate::drive::DriveError) -> bool {
    matches!(e, crate::drive::DriveError::Store(s) if s.is_transient())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queued page copies are written with exactly the bytes served, and
    /// the spool they were copied into is let go once the queue drains.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn page_copies_are_written_and_the_spool_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let volume = [7; 16];
        let mirror = Arc::new(Mirror::new(dir.path(), &volume, Arc::default()));
        let pages: Vec<(String, Bytes)> = (0..200u32)
            .map(|i| {
                let key = volume::page_key(&volume, &[i as u8; 32]);
                let len = 1 + (i as usize * 97) % 9000;
                (key, Bytes::from(vec![(i % 251) as u8; len]))
            })
            .collect();
        for (key, bytes) in &pages {
            mirror.save_page(key.clone(), bytes.clone());
        }
        mirror.settle().await;
        let mut written = mirror.pack().pages().unwrap();
        // Read in place too.
        let source = mirror.source();
        for (key, bytes) in &pages {
            let got = source.get(key, GetOptions::default()).await.unwrap();
            assert_eq!(&got.bytes, bytes);
        }
        written.sort();
        let mut want: Vec<(String, Vec<u8>)> =
            pages.iter().map(|(k, b)| (k.clone(), b.to_vec())).collect();
        want.sort();
        assert_eq!(written, want);
        // One file holds them all, and the bytes held count it.
        let on_disk = fs::metadata(mirror.dir.join(super::super::mirror_pages::PACK_FILE))
            .unwrap()
            .len();
        assert!(mirror.held.load(Ordering::Relaxed) >= on_disk);
        assert_eq!(mirror.copies().spool.capacity(), 0);
        assert!(mirror.copies().waiting.is_empty());
    }

    /// A mirror written with a file per page (before the pack file) is
    /// still read; a page file goes once the pack holds its page or the
    /// newest checkpoint no longer names it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn page_files_of_an_older_mirror_are_read_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let volume = [3; 16];
        let key = |i: u8| volume::page_key(&volume, &[i; 32]);
        let mirror = Arc::new(Mirror::new(dir.path(), &volume, Arc::default()));
        fs::create_dir_all(&mirror.dir).unwrap();
        for i in 1..=3 {
            fs::write(mirror.path(&key(i)), [i; 10]).unwrap();
        }
        let store = mirror.source();
        for i in 1..=3 {
            let got = store.get(&key(i), GetOptions::default()).await.unwrap();
            assert_eq!(got.bytes.as_ref(), &[i; 10]);
        }
        // Page 1 copied into the pack, page 2 still kept, page 3 dropped.
        mirror.save_page(key(1), Bytes::from_static(&[1; 10]));
        mirror.retain_pages([key(1), key(2)].into_iter().collect());
        mirror.settle().await;
        assert!(!mirror.path(&key(1)).exists());
        assert!(mirror.path(&key(2)).exists());
        assert!(!mirror.path(&key(3)).exists());
        assert!(matches!(
            store.get(&key(3), GetOptions::default()).await,
            Err(crate::store::StoreError::NotFound { .. })
        ));
        for i in 1..=2 {
            let got = store.get(&key(i), GetOptions::default()).await.unwrap();
            assert_eq!(got.bytes.as_ref(), &[i; 10]);
        }
    }

    /// While an open holds them, the entries and snapshot a newer
    /// snapshot supersedes stay readable; let go, they are removed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn superseded_objects_stay_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let vol = [9; 16];
        let m = Arc::new(Mirror::new(dir.path(), &vol, Arc::default()));
        let (entry, snap) = (
            |s| volume::log_key(&vol, s),
            |s| volume::snapshot_key(&vol, s),
        );
        m.save(&snap(4), b"old root");
        m.save(&entry(5), b"entry 5");
        m.hold_superseded();
        m.save(&snap(8), b"new root");
        m.save(&entry(9), b"entry 9");
        let s = m.source();
        for key in [snap(4), entry(5), snap(8), entry(9)] {
            assert!(s.head(&key).await.is_ok(), "{key}");
        }
        m.let_go_superseded();
        for key in [snap(4), entry(5)] {
            assert!(s.head(&key).await.is_err(), "{key}");
        }
        for key in [snap(8), entry(9)] {
            assert!(s.head(&key).await.is_ok(), "{key}");
        }
        // Not held, a snapshot supersedes at once.
        m.save(&snap(12), b"newer root");
        assert!(s.head(&snap(8)).await.is_err());
        assert!(s.head(&entry(9)).await.is_err());
    }

    /// A copy too large for what is left of the spool starts a new one;
    /// every copy keeps its own bytes.
    #[test]
    fn a_full_spool_is_replaced() {
        let mut copies = Copies::default();
        let first = copies.spooled(&[1; 100]);
        assert!(copies.spool.capacity() >= SPOOL_BYTES - 100);
        let big = vec![2; SPOOL_BYTES];
        let second = copies.spooled(&big);
        let third = copies.spooled(&[3; 10]);
        assert_eq!(first.as_ref(), &[1; 100][..]);
        assert_eq!(second.as_ref(), &big[..]);
        assert_eq!(third.as_ref(), &[3; 10][..]);
    }
}
