//! Sealing block versions into the cache for upload: a small one (sealed
//! size at most [`PACK_MEMBER_MAX`]) is appended to the volume's open pack
//! (docs/FORMAT.md, "content block": packs), a larger one becomes an
//! object of its own. 2,000 small files closed together are then a few
//! pack uploads instead of 2,000 object uploads.
//!
//! Invariants:
//! - Every block version has its own random key and is padded as if it
//!   were alone; a pack only concatenates sealed block versions, and
//!   belongs to this engine's volume only.
//! - A pack is appended to only while it is `Core::open_pack`: a commit
//!   closes it before its upload starts (`Core::close_pack_in`), a failed
//!   append closes it, and it is closed once it would pass
//!   [`PACK_TARGET`]. So an uploaded pack holds every byte a ref names.
//! - The pack's cache file holds each appended block version before the
//!   op naming it is queued (journalled), as a whole object's file does:
//!   a kill -9 loses neither; replay re-queues the pack for upload.
//! - A pack is one object id: upload, pinning, collection, the collection
//!   race rule (`sealed_at`, by its first block version) work on it as on
//!   any object; a pack lives while any ref names it (the collector
//!   repacks mostly dead ones: engine `repack`).

use super::Engine;
use super::state::{Core, OpenPack};
use crate::drive::error::Result;
use crate::format::content::{self, sealed_len};
use crate::format::crypto::random_array;
use crate::format::meta::{BlockKey, BlockRef};

/// Largest sealed block version that goes into a pack (a 1 MiB block is
/// an object of its own: one upload of it costs about what a pack's does).
pub(super) const PACK_MEMBER_MAX: usize = 64 << 10;
/// A pack is closed before it would pass this size (well within the
/// format's `PACK_LIMIT`): a few packs of one burst upload in parallel.
pub(super) const PACK_TARGET: u64 = 4 << 20;

impl Engine {
    /// Seals `plain` as a new block version (fresh key, the volume's
    /// current generation) into the cache, pinned and queued for upload:
    /// appended to the open pack when it is small, else an object of its
    /// own. `durable` fsyncs what was written.
    pub(super) fn seal_version(
        &self,
        core: &mut Core,
        plain: &[u8],
        durable: bool,
    ) -> Result<BlockRef> {
        let epoch = self.keys.get().current().0;
        let size = sealed_len(plain.len()) as u64;
        if size as usize > PACK_MEMBER_MAX {
            let block = BlockRef::fresh(plain.len() as u32, epoch);
            let cipher = content::block_cipher(block.key.as_bytes());
            let sealed = content::seal_block(&cipher, &block.place(), plain);
            self.cache.put_object(&block.id, &sealed, true, durable)?;
            core.add_upload(block.id, size);
            core.sealed_at.insert(block.id, self.opts.clock.now());
            return Ok(block);
        }
        let (id, at) = match core.open_pack {
            Some(p) if p.len + size <= PACK_TARGET => (p.id, p.len),
            _ => (random_array(), 0),
        };
        let block = BlockRef {
            id,
            len: plain.len() as u32,
            epoch,
            packed: Some(at as u32),
            key: BlockKey::random(),
        };
        let cipher = content::block_cipher(block.key.as_bytes());
        let sealed = content::seal_block(&cipher, &block.place(), plain);
        if let Err(e) = self.cache.append_object(&id, at, &sealed, durable) {
            // What the file holds past the last good append is unknown:
            // the pack takes no more (it uploads with what refs name).
            core.close_pack_in(&[id]);
            return Err(e);
        }
        let len = at + size;
        core.open_pack = Some(OpenPack { id, len });
        core.add_upload(id, len);
        core.sealed_at
            .entry(id)
            .or_insert_with(|| self.opts.clock.now());
        Ok(block)
    }
}
