//! The local cache directory: ciphertext objects exactly as stored (or to
//! be stored), the sealed journal of metadata ops not yet committed, and
//! the sealed client state (newest accepted log head, for rollback and
//! fork detection).
//!
//! Layout: `client` (random client id, not secret), `state` (sealed),
//! `journal` (sealed records), `objects/<hex block id>` (ciphertext).
//!
//! Invariants:
//! - No plaintext file data or names are ever written here: objects are
//!   the store's ciphertext, journal and state are sealed with a key
//!   derived from the user's X25519 secret and the drive id.
//! - Objects not yet uploaded are pinned and never evicted; clean objects
//!   are evicted least-recently-used once the cache exceeds its bound
//!   (`bound`: the size limit, or less when its filesystem is fuller).
//! - The journal file's format and appends belong to `journal_file`.
//! - Small pinned objects are also held in memory (`fresh`, bounded) until
//!   uploaded, so the upload does not read back what was just written;
//!   the file stays the copy that survives a crash of the process.

use super::journal_file::{Journal, Record};
use crate::drive::error::{DriveError, Result};
use crate::format::crypto::{Cipher, NONCE_LEN, SecretKey, hkdf, random_array};
use crate::format::hex::encode as hex;
use crate::format::wire::{FormatError, Reader, Writer};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest object kept in memory until uploaded (small files' blocks).
const FRESH_OBJECT_MAX: usize = 64 << 10;
/// Most bytes kept in memory that way; objects beyond it are read back.
const FRESH_TOTAL_MAX: u64 = 16 << 20;
/// How long a `statvfs` of the cache's filesystem is reused by `bound`
/// (each put and upload asks; the figure it feeds moves slowly).
const DISK_STALE: Duration = Duration::from_millis(100);

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DriveError + '_ {
    move |source| DriveError::Cache {
        path: path.display().to_string(),
        source,
    }
}

/// What this client remembers about the drive between runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalState {
    /// Hash of the drive header first accepted (pins the owner key).
    pub(super) header_hash: [u8; 32],
    /// Newest log entry accepted: sequence number and hash.
    pub(super) head_seq: u64,
    pub(super) head_hash: [u8; 32],
    /// Next local op counter.
    pub(super) next_client_seq: u64,
    /// Highest keyring generation of the volume accepted (a store offering
    /// fewer is rolling back).
    pub(super) generation: u32,
}

#[derive(Debug, Default)]
struct Lru {
    tick: u64,
    total: u64,
    /// The part of `total` that is pinned (not uploaded yet).
    pinned: u64,
    entries: HashMap<[u8; 16], (u64, u64, bool)>, // size, tick, pinned
    order: BTreeMap<u64, [u8; 16]>,
}

/// Bytes a file of `len` bytes takes on disk: whole 4 KiB blocks. The
/// bound counts these, not lengths: thousands of small objects each fill
/// a block, and the disk is what the bound protects.
pub(super) fn on_disk(len: u64) -> u64 {
    const BLOCK: u64 = 4096;
    len.div_ceil(BLOCK) * BLOCK
}

/// The cache directory of one drive on this machine.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    cipher: Cipher,
    client: [u8; 16],
    limit: u64,
    lru: Mutex<Lru>,
    /// Bytes on disk of the metadata mirror beside the objects (kept up to
    /// date by `mirror::Mirror`); they count against `limit`.
    mirror_bytes: Arc<AtomicU64>,
    /// Bytes of the journal file (kept up to date by `Journal`); they
    /// count against `limit` too.
    journal_bytes: Arc<AtomicU64>,
    /// Held (an exclusive file lock on `lock`) while a drive uses this
    /// directory: two engines on one cache would corrupt its journal.
    lock: Mutex<Option<File>>,
    /// Copies of small pinned objects, for their upload.
    fresh: Mutex<Fresh>,
    /// The last `statvfs` of the cache's filesystem: when, the bytes the
    /// cache could hold then (free plus held), and its margin.
    disk: Mutex<Option<(Instant, u64, u64)>>,
}

/// In-memory copies of small objects not uploaded yet, and their bytes.
#[derive(Default)]
struct Fresh {
    objects: HashMap<[u8; 16], bytes::Bytes>,
    bytes: u64,
}

impl std::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fresh")
            .field("objects", &self.objects.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Fresh {
    fn drop_copy(&mut self, id: &[u8; 16]) {
        if let Some(b) = self.objects.remove(id) {
            self.bytes -= b.len() as u64;
        }
    }
}

/// How long `lock_dir` waits for a lock that is held: a process that forks
/// (to run a child) while a lock file is open holds a duplicate of the
/// descriptor, and so the lock, until the child's exec closes it; a drive
/// closed and reopened at that moment must not fail for that.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Takes the exclusive lock on `dir/lock` (creating `dir`), held until the
/// returned file is dropped; a holder that keeps it past `LOCK_WAIT` =>
/// `CacheInUse`.
pub fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DriveError::CacheInUse(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
    }
}

impl Cache {
    /// Opens (creating if needed) the cache for `drive_id`; `secret` is the
    /// user's X25519 secret, from which the sealing key is derived.
    pub fn open(dir: &Path, drive_id: &[u8; 16], secret: &[u8; 32], limit: u64) -> Result<Cache> {
        let objects = dir.join("objects");
        fs::create_dir_all(&objects).map_err(io_err(&objects))?;
        let lock = lock_dir(dir)?;
        let client_path = dir.join("client");
        let client = match fs::read(&client_path) {
            Ok(b) if b.len() == 16 => b.try_into().expect("16 bytes"),
            _ => {
                let c: [u8; 16] = random_array();
                write_file(&client_path, &c, true)?;
                c
            }
        };
        let key: SecretKey = hkdf(drive_id, secret, &[b"cardfs/v1/cache-key"]);
        let cache = Cache {
            dir: dir.to_path_buf(),
            cipher: Cipher::new(&key),
            client,
            limit,
            lru: Mutex::new(Lru::default()),
            mirror_bytes: Arc::default(),
            journal_bytes: Arc::default(),
            lock: Mutex::new(Some(lock)),
            fresh: Mutex::default(),
            disk: Mutex::default(),
        };
        let mut found = Vec::new();
        for e in fs::read_dir(&objects).map_err(io_err(&objects))?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            match crate::format::hex::decode::<16>(&name) {
                Some(id) => found.push((id, on_disk(e.metadata().map(|m| m.len()).unwrap_or(0)))),
                None => {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        {
            let mut lru = cache.lru.lock().expect("lru lock");
            for (id, size) in found {
                lru.touch(id, size, false);
            }
        }
        Ok(cache)
    }

    /// Releases the directory for another engine (after shutdown).
    pub fn release(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn client_id(&self) -> [u8; 16] {
        self.client
    }

    fn object_path(&self, id: &[u8; 16]) -> PathBuf {
        self.dir.join("objects").join(hex(id))
    }

    /// Stores an object's ciphertext; `pinned` keeps it until uploaded;
    /// `durable` fsyncs it.
    pub fn put_object(
        &self,
        id: &[u8; 16],
        bytes: &[u8],
        pinned: bool,
        durable: bool,
    ) -> Result<()> {
        let path = self.object_path(id);
        // A unique temporary name: two tasks may cache the same object.
        let tmp = path.with_extension(format!("{}.tmp", hex(&random_array::<8>())));
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(bytes).map_err(io_err(&tmp))?;
            if durable {
                f.sync_all().map_err(io_err(&tmp))?;
            }
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        if durable {
            sync_dir(&self.dir.join("objects"))?;
        }
        if pinned && bytes.len() <= FRESH_OBJECT_MAX {
            let mut fresh = self.fresh();
            if fresh.bytes + bytes.len() as u64 <= FRESH_TOTAL_MAX
                && !fresh.objects.contains_key(id)
            {
                fresh.bytes += bytes.len() as u64;
                fresh
                    .objects
                    .insert(*id, bytes::Bytes::copy_from_slice(bytes));
            }
        }
        self.lru
            .lock()
            .expect("lru lock")
            .touch(*id, on_disk(bytes.len() as u64), pinned);
        self.evict();
        Ok(())
    }

    /// Writes `bytes` at byte `at` of a pack object's file (pinned; `at`
    /// 0 creates the file): how a block version joins the open pack. The
    /// bytes are in the file (the page cache) when this returns, as a
    /// `put_object` would leave them; `durable` fsyncs the file and the
    /// directory.
    pub fn append_object(&self, id: &[u8; 16], at: u64, bytes: &[u8], durable: bool) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self.object_path(id);
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(at == 0)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all_at(bytes, at).map_err(io_err(&path))?;
        if durable {
            f.sync_data().map_err(io_err(&path))?;
            sync_dir(&self.dir.join("objects"))?;
        }
        self.lru
            .lock()
            .expect("lru lock")
            .touch(*id, on_disk(at + bytes.len() as u64), true);
        self.evict();
        Ok(())
    }

    /// The length of a cached object's file (`None`: not cached).
    pub fn object_len(&self, id: &[u8; 16]) -> Option<u64> {
        fs::metadata(self.object_path(id)).ok().map(|m| m.len())
    }

    /// Whether a cached object is pinned (not uploaded yet).
    pub fn is_pinned(&self, id: &[u8; 16]) -> bool {
        let lru = self.lru.lock().expect("lru lock");
        lru.entries.get(id).is_some_and(|e| e.2)
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, Fresh> {
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole object to upload: the in-memory copy kept since it was
    /// sealed, else the cached file; `None` if it is not cached.
    pub fn object_to_upload(&self, id: &[u8; 16]) -> Result<Option<bytes::Bytes>> {
        if let Some(b) = self.fresh().objects.get(id) {
            return Ok(Some(b.clone()));
        }
        Ok(self.read_object(id, None)?.map(bytes::Bytes::from))
    }

    /// Makes an object durable (fsync) if it is cached.
    pub fn sync_object(&self, id: &[u8; 16]) -> Result<()> {
        let path = self.object_path(id);
        match File::open(&path) {
            Ok(f) => f.sync_all().map_err(io_err(&path)),
            Err(_) => Ok(()),
        }
    }

    /// Reads `range` of a cached object, or `None` if it is not cached.
    pub fn read_object(&self, id: &[u8; 16], range: Option<Range<u64>>) -> Result<Option<Vec<u8>>> {
        let path = self.object_path(id);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let out = match range {
            None => {
                let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
                let mut v = Vec::with_capacity(len);
                f.read_to_end(&mut v).map_err(io_err(&path))?;
                v
            }
            Some(r) => {
                f.seek(SeekFrom::Start(r.start)).map_err(io_err(&path))?;
                let mut v = Vec::with_capacity((r.end - r.start) as usize);
                f.take(r.end - r.start)
                    .read_to_end(&mut v)
                    .map_err(io_err(&path))?;
                v
            }
        };
        let mut lru = self.lru.lock().expect("lru lock");
        if let Some(&(size, _, pinned)) = lru.entries.get(id) {
            lru.touch(*id, size, pinned);
        }
        Ok(Some(out))
    }

    /// Whether the object is in the cache.
    pub fn has_object(&self, id: &[u8; 16]) -> bool {
        self.lru.lock().expect("lru lock").entries.contains_key(id)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Drops a cached object (e.g. after it failed verification).
    pub fn remove_object(&self, id: &[u8; 16]) {
        self.fresh().drop_copy(id);
        let _ = fs::remove_file(self.object_path(id));
        self.lru.lock().expect("lru lock").remove(id);
    }

    /// The object is in the store now: it may be evicted.
    pub fn unpin(&self, id: &[u8; 16]) {
        self.fresh().drop_copy(id);
        self.lru.lock().expect("lru lock").set_pinned(id, false);
        self.evict();
    }

    /// Pins an object (it is needed by an op not yet committed).
    pub fn pin(&self, id: &[u8; 16]) {
        self.lru.lock().expect("lru lock").set_pinned(id, true);
    }

    /// Bytes on disk of the pinned objects (not uploaded yet): what
    /// back-pressure weighs against the bound, in the bound's units.
    pub fn pinned_bytes(&self) -> u64 {
        self.lru.lock().expect("lru lock").pinned
    }

    /// Bytes of objects held in the cache.
    pub fn size(&self) -> u64 {
        self.lru.lock().expect("lru lock").total
    }

    /// The counter of the metadata mirror's bytes on disk, which the
    /// mirror keeps up to date and the bound subtracts.
    pub fn mirror_bytes(&self) -> Arc<AtomicU64> {
        self.mirror_bytes.clone()
    }

    /// The most bytes this cache may hold in objects: its size bound less
    /// what the metadata mirror and the journal take, but never more than its filesystem
    /// can take (free space plus what the cache holds, less a margin of a
    /// tenth of the filesystem, at most 64 MiB). Data not yet uploaded
    /// counts against it (back-pressure on writers).
    ///
    /// The filesystem's figures are reused for `DISK_STALE` as free space
    /// plus what the cache held then: the cache's own writes move both
    /// parts and leave their sum, so only other writers make it stale.
    pub fn bound(&self) -> u64 {
        let limit = self
            .limit
            .saturating_sub(self.mirror_bytes.load(Ordering::Relaxed))
            .saturating_sub(self.journal_bytes.load(Ordering::Relaxed));
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        if disk.is_none_or(|(at, _, _)| at.elapsed() >= DISK_STALE) {
            *disk = rustix::fs::statvfs(&self.dir).ok().map(|st| {
                let total = st.f_blocks.saturating_mul(st.f_frsize);
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                let margin = (total / 10).min(64 << 20);
                (Instant::now(), free + self.size(), margin)
            });
        }
        match *disk {
            Some((_, room, margin)) => limit.min(room.saturating_sub(margin)),
            None => limit,
        }
    }

    fn evict(&self) {
        let bound = self.bound();
        let mut victims = Vec::new();
        {
            let mut lru = self.lru.lock().expect("lru lock");
            let mut over = lru.total.saturating_sub(bound);
            let mut candidates = Vec::new();
            for (_, id) in lru.order.iter() {
                if over == 0 {
                    break;
                }
                let (size, _, pinned) = lru.entries[id];
                if !pinned {
                    candidates.push(*id);
                    over = over.saturating_sub(size);
                }
            }
            for id in candidates {
                lru.remove(&id);
                victims.push(id);
            }
        }
        for id in victims {
            let _ = fs::remove_file(self.object_path(&id));
        }
    }

    /// The journal of this directory and the records it holds.
    pub fn open_journal(&self) -> Result<(Journal, Vec<Record>)> {
        Journal::open(
            &self.dir,
            self.cipher.clone(),
            &self.client,
            self.journal_bytes.clone(),
        )
    }

    /// Saves the state; `durable` fsyncs it (a lost update only weakens
    /// rollback detection to the previous head, never correctness).
    pub fn save_state(&self, s: &LocalState, durable: bool) -> Result<()> {
        write_file(
            &self.dir.join("state"),
            &seal_state(&self.cipher, s),
            durable,
        )
    }

    /// The saved state; `None` on first use. A state file that fails
    /// verification is an error (someone altered the cache).
    pub fn load_state(&self) -> Result<Option<LocalState>> {
        let path = self.dir.join("state");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let bad = || {
            DriveError::tampered(
                path.display().to_string(),
                "local state failed verification",
            )
        };
        open_state(&self.cipher, &bytes).map(Some).ok_or_else(bad)
    }
}

const STATE_AAD: &[u8] = b"cardfs/v1/state";

impl LocalState {
    /// The state file's plaintext.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.header_hash)
            .u64(self.head_seq)
            .raw(&self.head_hash)
            .u64(self.next_client_seq)
            .u32(self.generation);
        w.into_vec()
    }

    /// Parses the state file's plaintext.
    pub(crate) fn decode(plain: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(plain);
        Ok(LocalState {
            header_hash: r.array()?,
            head_seq: r.u64()?,
            head_hash: r.array()?,
            next_client_seq: r.u64()?,
            // Absent in state files written before key rotation existed.
            generation: if r.remaining() == 0 { 0 } else { r.u32()? },
        })
    }
}

/// The state file: `nonce || sealed plaintext`.
pub(crate) fn seal_state(cipher: &Cipher, s: &LocalState) -> Vec<u8> {
    let nonce = random_array::<NONCE_LEN>();
    let mut ct = s.encode();
    cipher.seal_in_place(&nonce, STATE_AAD, &mut ct);
    [nonce.as_slice(), &ct].concat()
}

/// Opens a state file; `None` if it fails verification or parsing.
pub(crate) fn open_state(cipher: &Cipher, bytes: &[u8]) -> Option<LocalState> {
    let (nonce, ct) = bytes.split_first_chunk::<NONCE_LEN>()?;
    let plain = cipher.open(nonce, STATE_AAD, ct).ok()?;
    LocalState::decode(&plain).ok()
}

impl Lru {
    fn touch(&mut self, id: [u8; 16], size: u64, pinned: bool) {
        self.remove(&id);
        self.tick += 1;
        self.total += size;
        if pinned {
            self.pinned += size;
        }
        self.entries.insert(id, (size, self.tick, pinned));
        self.order.insert(self.tick, id);
    }
    fn remove(&mut self, id: &[u8; 16]) {
        if let Some((size, tick, pinned)) = self.entries.remove(id) {
            self.total -= size;
            if pinned {
                self.pinned -= size;
            }
            self.order.remove(&tick);
        }
    }
    fn set_pinned(&mut self, id: &[u8; 16], pinned: bool) {
        if let Some(e) = self.entries.get_mut(id)
            && e.2 != pinned
        {
            e.2 = pinned;
            if pinned {
                self.pinned += e.0;
            } else {
                self.pinned -= e.0;
            }
        }
    }
}

/// Replaces a file atomically (temp file + rename); `durable` fsyncs the
/// file and its directory.
fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    replace_file(path, bytes, durable).map_err(io_err(path))
}

/// [`write_file`] with the plain I/O error.
pub(super) fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable && let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> Cache {
        Cache::open(dir, &[7; 16], &[9; 32], 1 << 30).unwrap()
    }

    /// A small pinned object is uploaded from its in-memory copy (the file
    /// stays the crash copy); once in the store (unpinned) or dropped, the
    /// copy goes. Big objects and clean ones are never held.
    #[test]
    fn small_pinned_objects_upload_from_memory_until_unpinned() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let (small, big, clean) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        c.put_object(&small, b"sealed small", true, false).unwrap();
        c.put_object(&big, &vec![5u8; FRESH_OBJECT_MAX + 1], true, false)
            .unwrap();
        c.put_object(&clean, b"fetched", false, false).unwrap();
        for id in [small, big, clean] {
            assert!(c.object_path(&id).exists(), "every object is a file too");
            fs::remove_file(c.object_path(&id)).unwrap();
        }
        let held = |id: &[u8; 16]| c.object_to_upload(id).unwrap();
        assert_eq!(held(&small).as_deref(), Some(&b"sealed small"[..]));
        assert_eq!(held(&big), None, "too big to hold: read back");
        assert_eq!(held(&clean), None, "not pinned: not held");
        c.unpin(&small);
        assert_eq!(held(&small), None, "uploaded: the copy is gone");
        assert_eq!(c.fresh().bytes, 0);

        c.put_object(&small, b"again", true, false).unwrap();
        c.remove_object(&small);
        assert_eq!(held(&small), None, "dropped with the object");
        assert_eq!(c.fresh().bytes, 0);
    }

    /// The copies stay within `FRESH_TOTAL_MAX`: beyond it, objects are
    /// read back from their files.
    #[test]
    fn in_memory_copies_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let n = FRESH_TOTAL_MAX as usize / FRESH_OBJECT_MAX + 3;
        for i in 0..n {
            let id = [
                i as u8,
                (i >> 8) as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                1,
            ];
            c.put_object(&id, &vec![i as u8; FRESH_OBJECT_MAX], true, false)
                .unwrap();
            assert_eq!(
                c.object_to_upload(&id).unwrap().unwrap().len(),
                FRESH_OBJECT_MAX
            );
        }
        let fresh = c.fresh();
        assert!(fresh.bytes <= FRESH_TOTAL_MAX, "{}", fresh.bytes);
        assert_eq!(fresh.bytes, FRESH_TOTAL_MAX);
        assert_eq!(
            fresh.objects.len(),
            FRESH_TOTAL_MAX as usize / FRESH_OBJECT_MAX
        );
    }

    /// `bound` reuses a `statvfs` for `DISK_STALE`, then asks again.
    #[test]
    fn bound_reuses_the_disk_figures_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let first = c.bound();
        let at = c.disk.lock().unwrap().expect("measured").0;
        assert!(first > 0);
        c.bound();
        assert_eq!(c.disk.lock().unwrap().unwrap().0, at, "reused");
        std::thread::sleep(DISK_STALE + Duration::from_millis(10));
        c.bound();
        assert!(c.disk.lock().unwrap().unwrap().0 > at, "asked again");
    }
}
