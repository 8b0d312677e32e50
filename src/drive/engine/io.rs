//! File content: reads (cache, then ranged store reads, verified per
//! chunk), writes into per-block buffers, truncation, and sealing buffers
//! into immutable block objects plus one `SetContent` op.
//!
//! Invariants:
//! - A read returns verified plaintext or an error naming the object,
//!   never unverified or wrong bytes.
//! - Only the blocks a write touches are re-sealed and re-uploaded.
//! - Bytes past a block's stored length, holes, and truncated-away ranges
//!   read as zeros.
//! - A block object is never changed once sealed, so one block ref may
//!   name it from several files (clone copies, `copy_range`).
//! - A packed block version is read from its range of the pack; a whole
//!   block read that misses the cache fetches the whole pack and caches it
//!   (the block versions beside it are verified when they are read).

use super::Engine;
use super::rebase::conflict_name;
use super::state::{Core, Dirty};
use crate::drive::clock::now;
use crate::drive::error::{DriveError, Result};
use crate::drive::types::{Fh, Ino};
use crate::drive::volume;
use crate::format::content::{self, BLOCK_SIZE, PACK_LIMIT, sealed_len};
use crate::format::crypto::{Cipher, random_array};
use crate::format::meta::{BlockRef, KIND_DIR, KIND_FILE, Op};
use crate::store::{GetOptions, StoreError};
use std::ops::Range;
use std::sync::Arc;

const B: u64 = BLOCK_SIZE as u64;
/// Unsealed bytes of all files above which a write seals its file.
const DIRTY_LIMIT: u64 = 64 << 20;
/// Largest file size (block indexes stay far below u64 limits).
const MAX_FILE: u64 = 1 << 50;

/// What is needed to read one stored block: its position in the file and
/// its block ref (id, length, key).
#[derive(Clone)]
pub struct Fetch {
    index: u64,
    block: BlockRef,
}

/// Blocks fetched ahead of a sequential reader: enough GETs in flight to
/// hide the store's per-request latency (one 1 MiB GET at a time reaches
/// only a fraction of what the store can serve).
const READ_AHEAD_BLOCKS: u64 = 6;
/// Whole-block fetches behind random reads in flight at most (beyond
/// that a random read only fetches its range): bounds the bandwidth a
/// random reader of a big file can ask for at once.
const RANDOM_PREFETCH_MAX: usize = 16;
/// Decrypted blocks kept in memory for sequential readers (room for the
/// read-ahead window of two readers).
const PLAIN_BLOCKS: usize = 2 * READ_AHEAD_BLOCKS as usize + 4;
/// Random reads of one handle that must miss the cache before the blocks
/// after each further miss are fetched too: a reader spread over a file
/// (a database, an archive index, a media file being scrubbed) will
/// likely come back to its neighbourhood, and one request per 1 MiB costs
/// milliseconds however little of it is read (s3fs fetches far more: 50
/// MiB behind each miss).
const RANDOM_SPREAD_AFTER: u32 = 4;
/// Blocks fetched after a random miss once the reader is spread out.
const RANDOM_SPREAD: u64 = 8;

/// Where the bytes of one block of a read come from.
enum Part {
    Zeros(usize),
    Bytes(Vec<u8>),
    Stored(Fetch, Range<usize>),
}

impl Engine {
    /// Reads and verifies `range` (within the block) of a stored block.
    /// `whole` reads and verifies the entire block once and keeps its
    /// plaintext in memory for the reads that follow (sequential access);
    /// otherwise only the chunks covering `range` are fetched.
    async fn fetch(&self, f: &Fetch, range: Range<usize>, whole: bool) -> Result<Vec<u8>> {
        let len = f.block.len as usize;
        let range = range.start.min(len)..range.end.min(len);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        self.keys.check_member()?;
        let place = f.block.place();
        if let Some(p) = self.plain_get(&place) {
            return Ok(p[range].to_vec());
        }
        if whole {
            return Ok(self.whole_block(f).await?[range].to_vec());
        }
        // A whole-block fetch of this block under way (behind an earlier
        // random read): its answer is nearer than a request of our own.
        if let Some(m) = self.running_prefetch(&place) {
            drop(m.lock().await);
            if let Some(p) = self.plain_get(&place) {
                return Ok(p[range].to_vec());
            }
        }
        let key = volume::content_key(&place.id);
        let cipher = self.block_cipher(&f.block)?;
        let (chunks, obj) = content::chunk_span(range.clone(), len);
        let obj = place.object_range(obj);
        let base = chunks.start as usize * content::CHUNK_SIZE;
        if let Some(sealed) = self.cache.read_object(&place.id, Some(obj.clone()))? {
            match content::open_chunks(&cipher, &place, len, chunks.clone(), &sealed) {
                Ok(plain) => return Ok(plain[range.start - base..range.end - base].to_vec()),
                Err(e) => self.drop_cached(&key, &place, &e),
            }
        }
        let (got, _) = self
            .get_object(&key, GetOptions::range(obj.clone()), &f.block)
            .await?;
        let plain = content::open_chunks(&cipher, &place, len, chunks, &got)
            .map_err(|e| DriveError::tampered(&key, e.to_string()))?;
        Ok(plain[range.start - base..range.end - base].to_vec())
    }

    /// The cipher of a stored block: its own key, from its block ref
    /// (while this client is still a member).
    fn block_cipher(&self, block: &BlockRef) -> Result<Cipher> {
        self.keys.check_member()?;
        Ok(content::block_cipher(block.key.as_bytes()))
    }

    /// The plaintext of stored block `index` (re-encryption).
    pub(super) async fn read_stored_block(&self, index: u64, block: BlockRef) -> Result<Vec<u8>> {
        self.fetch_block(&Fetch { index, block }).await
    }

    /// Whether the object of `block` is intact: its cached copy has the
    /// right size and authenticates, or (uploaded and evicted already) the
    /// store holds an object of the right size. `Ok(false)`: missing or
    /// damaged. `sizes` keeps the sizes the store reported during one
    /// pass, so the block versions of one pack cost one HEAD together.
    pub(super) async fn block_intact(
        &self,
        block: &BlockRef,
        sizes: &mut StoreSizes,
    ) -> Result<bool> {
        let len = block.len as usize;
        let place = block.place();
        match self.cache.read_object(&block.id, sealed_range(block))? {
            Some(sealed) => {
                let Ok(cipher) = self.block_cipher(block) else {
                    return Ok(false);
                };
                let all = 0..content::chunk_count(len);
                Ok(content::open_chunks(&cipher, &place, len, all, &sealed).is_ok())
            }
            None if sizes.contains_key(&block.id) => Ok(size_fits(sizes[&block.id], block)),
            None => match self.store.head(&volume::content_key(&block.id)).await {
                Ok(meta) => {
                    sizes.insert(block.id, meta.size);
                    Ok(size_fits(meta.size, block))
                }
                Err(StoreError::NotFound { .. }) => Ok(false),
                // Opened offline: the block left the cache only after its
                // upload succeeded (objects stay pinned until then).
                Err(e) if e.is_transient() && self.lock().offline_since.is_some() => Ok(true),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Seals `plain` as a new block version (fresh key, epoch the current
    /// generation) into the cache (pinned, queued for upload; small ones
    /// into the open pack).
    pub(super) fn seal_stored_block(&self, plain: &[u8]) -> Result<BlockRef> {
        let mut core = self.lock();
        self.seal_version(&mut core, plain, false)
    }

    fn drop_cached(&self, key: &str, place: &content::Place, e: &crate::format::wire::FormatError) {
        // A pack not uploaded yet holds other block versions that only
        // its cached file has: it stays (this read fails at the store).
        if place.packed.is_some() && self.cache.is_pinned(&place.id) {
            tracing::error!(object = %key, error = %e, "cached copy of a packed block failed verification; reading the store");
            return;
        }
        tracing::error!(object = %key, error = %e, "cached copy failed verification; dropping it and reading the store");
        self.cache.remove_object(&place.id);
    }

    /// GETs (part of) a content object, checking the whole object's size
    /// against the block ref (a pack: long enough to hold the block).
    /// Returns the bytes and the whole object's size.
    async fn get_object(
        &self,
        key: &str,
        get: GetOptions,
        block: &BlockRef,
    ) -> Result<(bytes::Bytes, u64)> {
        let len = block.len as usize;
        let got = match self.store.get(key, get).await {
            Ok(g) => {
                self.lock().reachable = true;
                g
            }
            Err(StoreError::NotFound { .. }) => {
                return Err(DriveError::tampered(key, "content object missing"));
            }
            Err(e) => {
                if e.is_transient() {
                    self.lock().reachable = false;
                    tracing::error!(object = %key, error = %e, "content not in the local cache and the store is unreachable: the read fails with EIO (it works again once the store answers)");
                }
                return Err(e.into());
            }
        };
        if !size_fits(got.meta.size, block) {
            let msg = format!(
                "object is {} bytes, metadata says {}{}",
                got.meta.size,
                if block.packed.is_some() {
                    "at least "
                } else {
                    ""
                },
                block.place().start() + sealed_len(len) as u64
            );
            return Err(DriveError::tampered(key, msg));
        }
        Ok((got.bytes, got.meta.size))
    }

    /// The whole verified plaintext of a block, waiting for a read-ahead of
    /// the same block if one is running.
    async fn whole_block(&self, f: &Fetch) -> Result<Arc<Vec<u8>>> {
        let place = f.block.place();
        if let Some(m) = self.running_prefetch(&place) {
            drop(m.lock().await);
            if let Some(p) = self.plain_get(&place) {
                return Ok(p);
            }
        }
        self.load_whole(f).await
    }

    /// The lock a running whole-block fetch of `id` holds until it ends.
    fn running_prefetch(&self, place: &content::Place) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.prefetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(place)
            .cloned()
    }

    async fn load_whole(&self, f: &Fetch) -> Result<Arc<Vec<u8>>> {
        let (plain, fetched) = self.open_whole(f).await?;
        if let Some(object) = fetched {
            self.cache
                .put_object(&f.block.place().id, &object, false, false)?;
        }
        Ok(plain)
    }

    /// The verified plaintext of a whole block, from the cache or the
    /// store, now among the decrypted blocks; with the object fetched from
    /// the store when it is one to cache (whole, verified), which the
    /// caller writes to the cache (after releasing readers waiting for
    /// the plaintext).
    async fn open_whole(&self, f: &Fetch) -> Result<(Arc<Vec<u8>>, Option<bytes::Bytes>)> {
        let len = f.block.len as usize;
        let place = f.block.place();
        let key = volume::content_key(&place.id);
        let cipher = self.block_cipher(&f.block)?;
        let all = 0..content::chunk_count(len);
        let range = sealed_range(&f.block);
        if let Some(sealed) = self.cache.read_object(&place.id, range.clone())? {
            match content::open_chunks(&cipher, &place, len, all.clone(), &sealed) {
                Ok(plain) => return Ok((self.plain_put(place, plain), None)),
                Err(e) => self.drop_cached(&key, &place, &e),
            }
        }
        // A packed block version: the whole pack comes (clamped to the
        // object's size), so the block versions sealed beside it, mostly
        // files written and read together, are cached by the same request.
        let get = match range {
            None => GetOptions::default(),
            Some(_) => GetOptions::range(0..PACK_LIMIT),
        };
        let (object, size) = self.get_object(&key, get, &f.block).await?;
        let sealed = match &range {
            None => &object[..],
            Some(r) => object
                .get(r.start as usize..r.end as usize)
                .ok_or_else(|| DriveError::tampered(&key, "pack shorter than its size"))?,
        };
        let plain = content::open_chunks(&cipher, &place, len, all, sealed)
            .map_err(|e| DriveError::tampered(&key, e.to_string()))?;
        // Verified (the other block versions of a pack are verified when
        // read): keep the ciphertext in the cache, the whole object only.
        let whole = object.len() as u64 == size;
        Ok((self.plain_put(place, plain), whole.then_some(object)))
    }

    /// Whether the cache has room for fetching blocks after a random miss:
    /// the window is at most a sixteenth of what it may hold beside the
    /// data not uploaded yet, so the neighbours never crowd out what the
    /// reader came for.
    fn spread_fits(&self) -> bool {
        let free = self.cache.bound().saturating_sub(self.cache.pinned_bytes());
        RANDOM_SPREAD * B * 16 <= free
    }

    fn plain_get(&self, place: &content::Place) -> Option<Arc<Vec<u8>>> {
        let cache = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(k, _)| k == place)
            .map(|(_, p)| p.clone())
    }

    fn plain_put(&self, id: content::Place, plain: Vec<u8>) -> Arc<Vec<u8>> {
        let p = Arc::new(plain);
        let mut cache = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(k, _)| *k != id);
        cache.push_front((id, p.clone()));
        cache.truncate(PLAIN_BLOCKS);
        p
    }

    /// The full plaintext of a stored block (for read-modify-write).
    async fn fetch_block(&self, f: &Fetch) -> Result<Vec<u8>> {
        Ok(self.whole_block(f).await?.as_ref().clone())
    }

    /// Reads; also returns the blocks worth fetching ahead (in order).
    /// A read whose content fails (missing or damaged) after another
    /// client moved the file's block versions (the collector's repack)
    /// is retried once on the refreshed refs: the old pack may be gone.
    pub async fn read(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        size: u32,
    ) -> Result<(Vec<u8>, Vec<Fetch>)> {
        match self.read_now(ino, fh, offset, size).await {
            Err(e @ DriveError::Tampered { .. }) if self.refreshed_since_failure().await => {
                tracing::info!(error = %e, "retrying a read on refs refreshed from the log");
                self.read_now(ino, fh, offset, size).await
            }
            r => r,
        }
    }

    async fn read_now(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        size: u32,
    ) -> Result<(Vec<u8>, Vec<Fetch>)> {
        let (parts, sequential, prefetch) = {
            let mut core = self.lock();
            let h = core.handle(fh, ino)?;
            let ino = h.node;
            let n = core.node(ino)?;
            if n.kind == KIND_DIR {
                return Err(DriveError::IsDir);
            }
            let d = core.dirty.get(&ino);
            let file_size = d.map(|d| d.size).unwrap_or(n.size);
            let live_blocks = d.map(|d| d.min_size).unwrap_or(n.size).div_ceil(B);
            // With unsealed writes, this client's version is built on their base.
            let blocks = d.map(|d| &d.base_blocks).unwrap_or(&n.blocks);
            let end = offset.saturating_add(size as u64).min(file_size);
            let mut parts = Vec::new();
            let mut pos = offset;
            while pos < end {
                let idx = pos / B;
                let in_start = (pos - idx * B) as usize;
                let in_end = ((end - idx * B).min(B)) as usize;
                let want = in_end - in_start;
                if let Some(buf) = d.and_then(|d| d.blocks.get(&idx)) {
                    let mut v = vec![0u8; want];
                    if in_start < buf.len() {
                        let have = buf.len().min(in_end) - in_start;
                        v[..have].copy_from_slice(&buf[in_start..in_start + have]);
                    }
                    parts.push(Part::Bytes(v));
                } else if let (true, Some(b)) = (idx < live_blocks, blocks.get(&idx)) {
                    parts.push(Part::Stored(
                        Fetch {
                            index: idx,
                            block: b.clone(),
                        },
                        in_start..in_end,
                    ));
                } else {
                    parts.push(Part::Zeros(want));
                }
                pos = idx * B + in_end as u64;
            }
            let sequential = h.last_read_end == offset || offset == 0;
            // Read-ahead: on sequential reads, the next stored blocks; on
            // random reads (when the store is remote), the blocks just read
            // from, whole, so the next read there needs no request, and once
            // the handle has missed the cache on a few blocks (a reader
            // spread over the file), the blocks after them too.
            let first = end.div_ceil(B);
            let running = self
                .prefetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len();
            let random_whole = !sequential
                && self.opts.whole_blocks_on_random_reads
                && end > offset
                && running < RANDOM_PREFETCH_MAX;
            let (from, window) = if sequential {
                (first, READ_AHEAD_BLOCKS)
            } else if random_whole {
                (offset / B, first - offset / B)
            } else {
                (first, 0)
            };
            let wanted = |i: &u64| {
                !d.is_some_and(|d| d.blocks.contains_key(i))
                    // A random read's block already cached is read from there.
                    && (sequential || !blocks.get(i).is_some_and(|b| self.cache.has_object(&b.id)))
            };
            let fetch_of = |i: u64| {
                blocks.get(&i).map(|b| Fetch {
                    index: i,
                    block: b.clone(),
                })
            };
            let mut prefetch: Vec<Fetch> = (from..from.saturating_add(window).min(live_blocks))
                .filter(wanted)
                .filter_map(fetch_of)
                .collect();
            let missed = random_whole && !prefetch.is_empty();
            if missed && h.random_misses + 1 >= RANDOM_SPREAD_AFTER && self.spread_fits() {
                let after = from + window;
                let room = RANDOM_PREFETCH_MAX - running;
                let more: Vec<Fetch> = (after
                    ..after.saturating_add(RANDOM_SPREAD).min(live_blocks))
                    .filter(wanted)
                    .filter_map(fetch_of)
                    .filter(|f| {
                        let place = f.block.place();
                        self.plain_get(&place).is_none() && self.running_prefetch(&place).is_none()
                    })
                    .take(room.saturating_sub(prefetch.len()))
                    .collect();
                prefetch.extend(more);
            }
            if let Some(h) = core.handles.get_mut(&fh) {
                h.last_read_end = end;
                h.random_misses = h.random_misses.saturating_add(missed as u32);
            }
            (parts, sequential, prefetch)
        };
        let mut out = Vec::with_capacity(size as usize);
        for p in parts {
            match p {
                Part::Zeros(n) => out.resize(out.len() + n, 0),
                Part::Bytes(b) => out.extend_from_slice(&b),
                Part::Stored(f, r) => {
                    let want = r.len();
                    let bytes = self.fetch(&f, r, sequential).await?;
                    out.extend_from_slice(&bytes);
                    // Past the stored length of the block: zeros.
                    out.resize(out.len() + (want - bytes.len()), 0);
                }
            }
        }
        Ok((out, prefetch))
    }

    /// Fetches a whole block (into the cache and the plaintext blocks) ahead
    /// of a sequential reader, or behind a random read on a remote store.
    pub async fn prefetch(&self, f: Fetch) {
        let place = f.block.place();
        if self.plain_get(&place).is_some() {
            return;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let guard = lock.clone().try_lock_owned().expect("a new mutex is free");
        {
            let mut running = self.prefetching.lock().unwrap_or_else(|e| e.into_inner());
            if running.contains_key(&place) {
                return;
            }
            running.insert(place, lock);
        }
        let opened = self.open_whole(&f).await;
        // Readers waiting for this block take its plaintext now; the
        // ciphertext goes to the cache after.
        self.prefetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&place);
        drop(guard);
        match opened {
            Err(e) => tracing::debug!(error = %e, "read-ahead failed; the read itself will retry"),
            Ok((_, Some(object))) => {
                if let Err(e) = self.cache.put_object(&place.id, &object, false, false) {
                    tracing::warn!(error = %e, "could not cache a block read ahead");
                }
            }
            Ok((_, None)) => {}
        }
    }

    /// Loads into the dirty buffers the stored blocks `idxs` of `ino` that
    /// are not already there.
    ///
    /// A fetched block is kept only if it is still the block the file's
    /// dirty buffers start from: a concurrent write or flush may seal the
    /// file while the fetch runs (the kernel sends writes of one file in
    /// parallel), and the old block would then overwrite what that seal
    /// made current. Such a fetch is dropped and the block loaded again.
    async fn load_blocks(&self, ino: Ino, idxs: &[u64]) -> Result<()> {
        match self.load_blocks_now(ino, idxs).await {
            Err(DriveError::Tampered { .. }) if self.refreshed_since_failure().await => {
                self.load_blocks_now(ino, idxs).await
            }
            r => r,
        }
    }

    async fn load_blocks_now(&self, ino: Ino, idxs: &[u64]) -> Result<()> {
        loop {
            let fetches = to_load(&self.lock(), ino, idxs)?;
            if fetches.is_empty() {
                return Ok(());
            }
            for f in fetches {
                let plain = self.fetch_block(&f).await?;
                let mut core = self.lock();
                let still = to_load(&core, ino, &[f.index])?;
                if still
                    .first()
                    .is_some_and(|g| g.block.place() == f.block.place())
                {
                    dirty_entry(&mut core, ino)?
                        .blocks
                        .entry(f.index)
                        .or_insert(plain);
                }
            }
        }
    }

    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        self.writable()?;
        let h = self.lock().handle(fh, ino)?;
        // The handle may have been moved to a conflict copy.
        let ino = h.node;
        if !h.writable {
            return Err(DriveError::BadHandle);
        }
        if data.is_empty() {
            return Ok(0);
        }
        self.wait_for_room(data.len() as u64).await?;
        loop {
            let offset = if h.append {
                self.current_size(ino)?
            } else {
                offset
            };
            let end = offset
                .checked_add(data.len() as u64)
                .filter(|e| *e <= MAX_FILE)
                .ok_or(DriveError::TooBig)?;
            let idxs: Vec<u64> = (offset / B..end.div_ceil(B)).collect();
            // Blocks only partly overwritten need their old bytes first.
            let partial: Vec<u64> = idxs
                .iter()
                .copied()
                .filter(|i| offset > i * B || end < (i + 1) * B)
                .collect();
            self.load_blocks(ino, &partial).await?;
            let mut core = self.lock();
            let n = core.node(ino)?;
            if n.kind != KIND_FILE {
                return Err(DriveError::IsDir);
            }
            let size = n.size;
            if h.append && core.dirty.get(&ino).map(|d| d.size).unwrap_or(size) != offset {
                continue; // Another append moved the end meanwhile.
            }
            dirty_entry(&mut core, ino)?;
            let mut missing = false;
            for i in &idxs {
                let (s, e) = (
                    (offset.max(i * B) - i * B) as usize,
                    (end.min((i + 1) * B) - i * B) as usize,
                );
                let d = &core.dirty[&ino];
                if partial.contains(i)
                    && !d.blocks.contains_key(i)
                    && i * B < d.min_size
                    && d.base_blocks.contains_key(i)
                {
                    missing = true;
                    break;
                }
                let d = core.dirty.get_mut(&ino).expect("dirty entry");
                let buf = d.blocks.entry(*i).or_default();
                let src = (i * B + s as u64 - offset) as usize;
                let bytes = &data[src..src + (e - s)];
                if buf.capacity() < e && !buf.is_empty() {
                    // A block written in pieces (sequential writes come
                    // 128 KiB at a time): room for the whole block once,
                    // not a copy at each doubling.
                    buf.reserve_exact(B as usize - buf.len());
                }
                if buf.len() == s {
                    buf.extend_from_slice(bytes);
                } else {
                    if buf.len() < e {
                        buf.resize(e, 0);
                    }
                    buf[s..e].copy_from_slice(bytes);
                }
            }
            if missing {
                continue; // A block was sealed meanwhile; load it again.
            }
            let d = core.dirty.get_mut(&ino).expect("dirty entry");
            d.size = d.size.max(end);
            d.mtime = now();
            let unsealed: u64 = core
                .dirty
                .values()
                .flat_map(|d| d.blocks.values())
                .map(|b| b.len() as u64)
                .sum();
            let seal = end % B == 0 || unsealed > DIRTY_LIMIT;
            if seal {
                self.seal(&mut core, ino, false)?;
            }
            drop(core);
            if seal {
                self.wake.notify_one();
            }
            return Ok(data.len() as u32);
        }
    }

    fn current_size(&self, ino: Ino) -> Result<u64> {
        let core = self.lock();
        Ok(core
            .dirty
            .get(&ino)
            .map(|d| d.size)
            .unwrap_or(core.node(ino)?.size))
    }

    /// Sets the size of a file (truncate up or down).
    pub async fn truncate(&self, ino: Ino, size: u64) -> Result<()> {
        self.writable()?;
        if size > MAX_FILE {
            return Err(DriveError::TooBig);
        }
        {
            let core = self.lock();
            match core.node(ino)?.kind {
                KIND_FILE => {}
                KIND_DIR => return Err(DriveError::IsDir),
                _ => return Err(DriveError::Invalid("not a regular file".into())),
            }
        }
        if !size.is_multiple_of(B) {
            self.load_blocks(ino, &[size / B]).await?;
        }
        let mut core = self.lock();
        let d = dirty_entry(&mut core, ino)?;
        if size < d.size {
            let keep = size.div_ceil(B);
            d.blocks.retain(|i, _| *i < keep);
            if !size.is_multiple_of(B)
                && let Some(b) = d.blocks.get_mut(&(size / B))
            {
                b.truncate((size % B) as usize);
            }
            d.min_size = d.min_size.min(size);
        }
        d.size = size;
        d.mtime = now();
        self.seal(&mut core, ino, false)?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    /// Seals every unsealed block of `ino` into objects in the cache and
    /// queues one `SetContent` op. Unlinked files keep their data in
    /// memory only.
    pub fn seal(&self, core: &mut Core, ino: Ino, durable: bool) -> Result<()> {
        let Some(n) = core.view.nodes.get(&ino).map(|n| &**n) else {
            return Ok(());
        };
        if !core.dirty.contains_key(&ino) {
            return Ok(());
        }
        let ino = if core.dirty[&ino].base != n.version {
            // Another client changed the file since these writes began:
            // theirs keeps the name, this client's version becomes a
            // conflict copy next to it (never lose either).
            let Some((parent, name)) = core.view.name_of(ino) else {
                return Ok(());
            };
            let mut copy = n.clone();
            copy.id = core.fresh_id(copy.kind);
            let d = &core.dirty[&ino];
            copy.blocks = d.base_blocks.clone();
            copy.version = d.base;
            copy.entries.clear();
            let id = copy.id;
            let name = conflict_name(&core.view, parent, &name, &self.me.card_id);
            tracing::warn!(
                node = ino,
                "concurrent edit of the same file: keeping this client's version as a conflict copy"
            );
            core.push(Op::Create {
                parent,
                name,
                node: Box::new(copy),
            })?;
            core.redirect(ino, id);
            id
        } else {
            ino
        };
        let base = core.view.nodes[&ino].version;
        let Some(d) = core.dirty.remove(&ino) else {
            return Ok(());
        };
        let mut refs: Vec<(u64, BlockRef)> = Vec::new();
        for (idx, buf) in &d.blocks {
            if buf.is_empty() || idx * B >= d.size {
                continue;
            }
            let len = buf.len().min((d.size - idx * B) as usize);
            match self.seal_version(core, &buf[..len], durable) {
                Ok(block) => refs.push((*idx, block)),
                Err(e) => {
                    // Nothing sealed: the writes stay buffered for a later
                    // seal. Block versions already in a pack stay there,
                    // named by nothing (the pack uploads with the rest).
                    for (_, b) in refs.iter().filter(|(_, b)| b.packed.is_none()) {
                        core.upload_done(&b.id);
                        self.cache.remove_object(&b.id);
                    }
                    core.dirty.insert(ino, d);
                    return Err(e);
                }
            }
        }
        let op = Op::SetContent {
            node: ino,
            base,
            version: u64::from_le_bytes(random_array()),
            size: d.size,
            drop_from: d.min_size.div_ceil(B),
            blocks: refs,
            mtime: d.mtime,
        };
        core.push(op)
    }

    pub fn flush(&self, ino: Ino) -> Result<()> {
        let mut core = self.lock();
        self.seal(&mut core, ino, false)?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    /// Makes the file's data and every pending metadata op durable in the
    /// local journal.
    pub fn fsync(&self, ino: Ino) -> Result<()> {
        let uploads: Vec<[u8; 16]> = {
            let mut core = self.lock();
            self.seal(&mut core, ino, true)?;
            core.uploads.keys().copied().collect()
        };
        for id in &uploads {
            self.cache.sync_object(id)?;
        }
        self.journal_pending(true)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Seals every file with unsealed writes.
    pub fn seal_all(&self) -> Result<()> {
        let mut core = self.lock();
        let ids: Vec<u64> = core.dirty.keys().copied().collect();
        for id in ids {
            self.seal(&mut core, id, false)?;
        }
        Ok(())
    }
}

/// The byte range of its object a block version's sealed bytes take, for
/// a packed one (`None`: the whole object is the block version).
fn sealed_range(block: &BlockRef) -> Option<Range<u64>> {
    let start = block.packed? as u64;
    Some(start..start + sealed_len(block.len as usize) as u64)
}

/// Whether an object of `size` bytes can be the object of `block`: exactly
/// its sealed length, or for a pack, long enough to hold it.
/// Sizes of content objects as the store reported them, by object id
/// (see [`Engine::block_intact`]).
pub(super) type StoreSizes = std::collections::HashMap<[u8; 16], u64>;

fn size_fits(size: u64, block: &BlockRef) -> bool {
    let want = sealed_len(block.len as usize) as u64;
    match block.packed {
        None => size == want,
        Some(at) => size >= u64::from(at) + want,
    }
}

fn dirty_entry(core: &mut Core, ino: Ino) -> Result<&mut Dirty> {
    if !core.dirty.contains_key(&ino) {
        let n = core.node(ino)?;
        let d = Dirty {
            size: n.size,
            min_size: n.size,
            blocks: Default::default(),
            mtime: now(),
            base: n.version,
            base_blocks: n.blocks.clone(),
        };
        core.dirty.insert(ino, d);
        // A crash before the seal loses these writes: the next open says so.
        core.journal.mark_unsealed(ino);
    }
    Ok(core.dirty.get_mut(&ino).expect("just inserted"))
}

/// The stored blocks among `idxs` of `ino` that its dirty buffers lack.
fn to_load(core: &Core, ino: Ino, idxs: &[u64]) -> Result<Vec<Fetch>> {
    let n = core.node(ino)?;
    let d = core.dirty.get(&ino);
    let live = d.map(|d| d.min_size).unwrap_or(n.size).div_ceil(B);
    Ok(idxs
        .iter()
        .filter(|i| **i < live && !d.is_some_and(|d| d.blocks.contains_key(i)))
        .filter_map(|i| {
            let blocks = d.map(|d| &d.base_blocks).unwrap_or(&n.blocks);
            blocks.get(i).map(|b| Fetch {
                index: *i,
                block: b.clone(),
            })
        })
        .collect())
}

/// One side of a range copy: file, open handle, offset.
#[derive(Debug, Clone, Copy)]
pub struct CopyEnd {
    pub ino: Ino,
    pub fh: Fh,
    pub offset: u64,
}

impl Engine {
    /// Copies `len` bytes from `src` to `dst` (`copy_file_range`; both
    /// files of this volume). Destination blocks that the copy covers whole
    /// (or up to the source's end, past the destination's end), at the
    /// same position within a block on both sides, take the source's block
    /// ref: the same object under the same key, so nothing is uploaded (a
    /// clone copy). The rest is copied as bytes. Later writes to either
    /// file seal new block versions, so the copies never affect each
    /// other. Returns the bytes copied (fewer at the source's end).
    pub async fn copy_range(&self, src: CopyEnd, dst: CopyEnd, len: u64) -> Result<u64> {
        self.writable()?;
        let (h_in, h_out) = {
            let core = self.lock();
            (core.handle(src.fh, src.ino)?, core.handle(dst.fh, dst.ino)?)
        };
        if !h_out.writable || h_out.append {
            return Err(DriveError::BadHandle);
        }
        let src = CopyEnd {
            ino: h_in.node,
            ..src
        };
        let dst = CopyEnd {
            ino: h_out.node,
            ..dst
        };
        let (len, shared) = {
            let mut core = self.lock();
            // Buffered writes of both files become block refs first.
            self.seal(&mut core, src.ino, false)?;
            self.seal(&mut core, dst.ino, false)?;
            let (s, d) = (core.node(src.ino)?, core.node(dst.ino)?);
            if s.kind != KIND_FILE || d.kind != KIND_FILE {
                return Err(DriveError::Invalid("not a regular file".into()));
            }
            let len = len.min(s.size.saturating_sub(src.offset));
            let end = dst
                .offset
                .checked_add(len)
                .filter(|e| *e <= MAX_FILE)
                .ok_or(DriveError::TooBig)?;
            let mut shared: Vec<(u64, BlockRef)> = Vec::new();
            if src.offset % B == dst.offset % B && len > 0 {
                let to_eof = src.offset + len == s.size && end >= d.size;
                for j in dst.offset.div_ceil(B)..end.div_ceil(B) {
                    let whole = (j + 1) * B <= end || to_eof;
                    let i = j * B - dst.offset + src.offset;
                    if let (true, Some(b)) = (whole, s.blocks.get(&(i / B))) {
                        shared.push((j, b.clone()));
                    }
                }
            }
            if let Some((last, _)) = shared.last() {
                let size = d.size.max(((last + 1) * B).min(end));
                let op = Op::SetContent {
                    node: dst.ino,
                    base: d.version,
                    version: u64::from_le_bytes(random_array()),
                    size,
                    drop_from: u64::MAX,
                    blocks: shared.clone(),
                    mtime: now(),
                };
                core.push(op)?;
            }
            (len, shared)
        };
        if !shared.is_empty() {
            self.wake.notify_one();
        }
        // The rest, as bytes, a block at a time.
        let mut done = 0;
        while done < len {
            let at = dst.offset + done;
            let j = at / B;
            let n = ((j + 1) * B - at).min(len - done);
            if !shared.iter().any(|(k, _)| *k == j) {
                let (bytes, _) = self
                    .read(src.ino, src.fh, src.offset + done, n as u32)
                    .await?;
                self.write(dst.ino, dst.fh, at, &bytes).await?;
            }
            done += n;
        }
        Ok(len)
    }
}
