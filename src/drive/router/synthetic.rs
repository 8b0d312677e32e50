//! The member view's synthetic root as the router serves it: its
//! attributes, lookups and listing, and re-running discovery (new shares
//! appear, volumes I was removed from disappear and their engines stop).
//!
//! Invariant: the synthetic root never changes through the filesystem
//! (EROFS); its entries change only by discovery.
//!
//! Imports: the router (`super`), `member_view`, leaves.

use super::Router;
use super::member_view::{discover, merge};
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::hex8;
use crate::drive::tree::ROOT;
use crate::drive::types::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

impl Router {
    /// The synthetic root's attributes (mode 0555, owned by the owner of
    /// the cache directory, i.e. the user who mounted).
    pub fn synthetic_attr(&self) -> Attr {
        use std::os::unix::fs::MetadataExt;
        let shared = self.shared();
        let (uid, gid) = std::fs::metadata(&self.opts.cache_dir)
            .map(|m| (m.uid(), m.gid()))
            .unwrap_or((0, 0));
        Attr {
            ino: ROOT_INO,
            kind: FileKind::Dir,
            size: 4096,
            blocks: 0,
            perm: 0o555,
            nlink: 2 + shared.entries.len() as u32,
            uid,
            gid,
            atime: shared.mtime,
            mtime: shared.mtime,
            ctime: shared.mtime,
            crtime: shared.mtime,
            rdev: 0,
            blksize: 4096,
        }
    }

    pub async fn synthetic_lookup(&self, name: &OsStr) -> Result<Attr> {
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            return Ok(self.synthetic_attr());
        }
        let found = self
            .shared()
            .entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.volume, e.ino));
        let (vol, ino) = found.ok_or(DriveError::NotFound)?;
        let mut attr = self.engine(vol).await?.getattr(ROOT)?;
        attr.ino = ino;
        Ok(attr)
    }

    pub async fn synthetic_readdir(&self, offset: u64) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for (i, name) in [".", ".."].iter().enumerate() {
            if offset <= i as u64 {
                out.push(DirEntry {
                    ino: ROOT_INO,
                    kind: FileKind::Dir,
                    name: OsString::from(name),
                    next_offset: i as u64 + 1,
                });
            }
        }
        for e in &self.shared().entries {
            if e.cookie + 2 > offset {
                out.push(DirEntry {
                    ino: e.ino,
                    kind: FileKind::Dir,
                    name: e.name.clone(),
                    next_offset: e.cookie + 2,
                });
            }
        }
        Ok(out)
    }

    /// Re-runs discovery: new shares appear, volumes I was removed from
    /// disappear and their engines stop.
    pub async fn rediscover(&self) -> Result<()> {
        if self.root.is_some() {
            return Ok(());
        }
        let mut known = self.shared().known.clone();
        let found = discover(self.store.as_ref(), &self.header, &self.me, &mut known).await?;
        let gone = {
            let mut shared = self.shared();
            shared.known = known;
            merge(&mut shared, &found, |vol| self.ino_of(vol, ROOT))
        };
        for vol in gone {
            tracing::info!(volume = %hex8(&vol), "no longer shared with me; closing it");
            self.close_volume(vol).await;
        }
        Ok(())
    }

    /// Whether `vol` is listed in the member view.
    pub fn is_listed(&self, vol: &[u8; 16]) -> bool {
        self.shared().entries.iter().any(|e| &e.volume == vol)
    }
}
