//! The filesystem calls of [`Drive`], implemented once: each resolves its
//! inode(s) through the router to (engine, node), calls that volume's
//! engine, and translates node ids in the answer back to inode numbers.
//!
//! Invariants:
//! - Kernel inode numbers are the router's; engines only see their own
//!   node ids, and every number leaving here is translated back.
//! - A change to the root volume holds the router's write gate shared.
//! - An operation naming two volumes (rename, link) fails with
//!   `CrossDevice` and changes nothing.
//! - The member view's synthetic root is read-only (`ReadOnly`).
//!
//! Imports: `router`, `engine` (through the router's `At`), leaves.

use super::Drive;
use super::engine::io::CopyEnd;
use super::engine::ops::statfs;
use super::error::{DriveError, Result};
use super::router::{SYNTHETIC_FH, Target, linked_volume};
use super::tree::ROOT;
use super::types::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

impl Drive {
    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let a = match self.r.resolve(parent).await? {
            Target::Synthetic => return self.r.synthetic_lookup(name).await,
            Target::At(a) => a,
        };
        if a.node == ROOT && a.vol != self.r.root_volume() && name.as_bytes() == b".." {
            return self.getattr(self.r.volume_parent(a.vol)).await;
        }
        let attr = a.e.lookup(a.node, name)?;
        self.r.attr_out(a.vol, attr).await
    }

    /// Whether `ino` is in a shared folder (another volume than the root
    /// volume, or anything on a member's mount).
    pub fn in_shared_folder(&self, ino: Ino) -> bool {
        self.r.in_shared_folder(ino)
    }

    /// Inode numbers are stable for the life of the mount: nothing to forget.
    pub fn forget(&self, _ino: Ino, _nlookup: u64) {}

    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        match self.r.resolve(ino).await? {
            Target::Synthetic => Ok(self.r.synthetic_attr()),
            Target::At(a) => {
                let mut attr = a.e.getattr(a.node)?;
                attr.ino = ino;
                Ok(attr)
            }
        }
    }

    pub async fn setattr(&self, ino: Ino, _fh: Option<Fh>, set: SetAttr) -> Result<Attr> {
        let a = self.r.at_mut(ino).await?;
        let _g = self.r.gate(&a).await;
        if let Some(size) = set.size {
            a.e.truncate(a.node, size).await?;
        }
        a.e.set_attrs(a.node, &set)?;
        let mut attr = a.e.getattr(a.node)?;
        attr.ino = ino;
        Ok(attr)
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> Result<(Attr, Fh)> {
        let a = self.r.at_mut(parent).await?;
        let _g = self.r.gate(&a).await;
        let (mut attr, fh) = a.e.create_file(a.node, name, mode, flags, who)?;
        attr.ino = self.r.ino_of(a.vol, attr.ino);
        Ok((attr, fh))
    }

    pub async fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let a = match self.r.resolve(ino).await? {
            Target::Synthetic if writes => return Err(DriveError::IsDir),
            Target::Synthetic => return Ok(SYNTHETIC_FH),
            Target::At(a) => a,
        };
        let _g = if writes { self.r.gate(&a).await } else { None };
        let (fh, truncate) = a.e.open_file(a.node, flags)?;
        if truncate && let Err(e) = a.e.truncate(a.node, 0).await {
            a.e.release_handle(fh);
            return Err(e);
        }
        Ok(fh)
    }

    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let a = self.r.at(ino, || DriveError::IsDir).await?;
        let (data, ahead) = a.e.read(a.node, fh, offset, size).await?;
        // Each block of the read-ahead window is its own task, so the
        // window's GETs run concurrently.
        for f in ahead {
            let e = a.e.clone();
            tokio::spawn(async move { e.prefetch(f).await });
        }
        Ok(data)
    }

    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let a = self.r.at(ino, || DriveError::BadHandle).await?;
        let _g = self.r.gate(&a).await;
        a.e.write(a.node, fh, offset, data).await
    }

    /// `copy_file_range`: copies `len` bytes from `ino_in` at `off_in` to
    /// `ino_out` at `off_out` within one volume, sharing whole blocks (see
    /// `Engine::copy_range`); returns the bytes copied. Across volumes
    /// `CrossDevice` (the caller copies the bytes itself).
    pub async fn copy_range(
        &self,
        (ino_in, fh_in, off_in): (Ino, Fh, u64),
        (ino_out, fh_out, off_out): (Ino, Fh, u64),
        len: u64,
    ) -> Result<u64> {
        let a = self.r.at(ino_in, || DriveError::IsDir).await?;
        let b = self.r.at(ino_out, || DriveError::BadHandle).await?;
        if a.vol != b.vol {
            return Err(DriveError::CrossDevice);
        }
        let _g = self.r.gate(&b).await;
        let end = |ino, fh, offset| CopyEnd { ino, fh, offset };
        b.e.copy_range(
            end(a.node, fh_in, off_in),
            end(b.node, fh_out, off_out),
            len,
        )
        .await
    }

    /// Seals the file's buffered writes (queued for upload).
    pub async fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        match self.r.handle(ino, fh).await? {
            Some((a, node)) => a.e.flush(node),
            None => Ok(()),
        }
    }

    /// Makes the file's data and all pending metadata of its volume
    /// durable in the local journal (not necessarily uploaded yet; see
    /// [`Drive::sync`]).
    pub async fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        match self.r.handle(ino, fh).await? {
            Some((a, node)) => a.e.fsync(node),
            None => Ok(()),
        }
    }

    pub async fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let Some((a, node)) = self.r.handle(ino, fh).await? else {
            return Ok(());
        };
        let r = a.e.flush(node);
        a.e.release_handle(fh);
        r
    }

    pub async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: Caller) -> Result<Attr> {
        let a = self.r.at_mut(parent).await?;
        let _g = self.r.gate(&a).await;
        let attr = a.e.mkdir(a.node, name, mode, who)?;
        self.r.attr_out(a.vol, attr).await
    }

    /// Creates a FIFO, socket or device node.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        special: Special,
        who: Caller,
    ) -> Result<Attr> {
        let a = self.r.at_mut(parent).await?;
        let _g = self.r.gate(&a).await;
        let attr = a.e.mknod(a.node, name, mode, special, who)?;
        self.r.attr_out(a.vol, attr).await
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &Path,
        who: Caller,
    ) -> Result<Attr> {
        let a = self.r.at_mut(parent).await?;
        let _g = self.r.gate(&a).await;
        let attr = a.e.symlink(a.node, name, target, who)?;
        self.r.attr_out(a.vol, attr).await
    }

    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let a = self.r.at_mut(parent).await?;
        let _g = self.r.gate(&a).await;
        a.e.unlink(a.node, name, false)
    }

    /// Removes an empty directory. A shared folder (owner view) is removed
    /// only when it is empty; its volume stays in the store with its
    /// members (see docs/SHARING.md).
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let a = self.r.at_mut(parent).await?;
        let _g = self.r.gate(&a).await;
        let linked = self.r.link_at(&a, name);
        if let Some(vol) = linked {
            self.r.check_volume_empty(vol).await?;
        }
        a.e.unlink(a.node, name, true)?;
        if let Some(vol) = linked {
            self.r.unregister_link(vol);
        }
        Ok(())
    }

    /// Renames within one volume; across a shared folder's boundary it is
    /// `CrossDevice` (EXDEV: `mv` then copies and deletes).
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        let a = self.r.at_mut(parent).await?;
        let b = self.r.at_mut(newparent).await?;
        if a.vol != b.vol {
            return Err(DriveError::CrossDevice);
        }
        let _g = self.r.gate(&a).await;
        // Replacing a shared folder's link only when the folder is empty,
        // as for any directory.
        let replaced = if flags.exchange {
            None
        } else {
            self.r.link_at(&b, newname)
        };
        if let Some(vol) = replaced {
            self.r.check_volume_empty(vol).await?;
        }
        a.e.rename(a.node, name, b.node, newname, flags)?;
        if let Some(vol) = replaced {
            let gone = a.e.lock().view().lookup(b.node, newname.as_bytes()).ok();
            if gone.and_then(|n| linked_volume(&a.e, n)) != Some(vol) {
                self.r.unregister_link(vol);
            }
        }
        Ok(())
    }

    /// A hard link within one volume (`CrossDevice` across volumes).
    pub async fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        let a = self.r.at_mut(ino).await?;
        let b = self.r.at_mut(newparent).await?;
        if a.vol != b.vol {
            return Err(DriveError::CrossDevice);
        }
        let _g = self.r.gate(&a).await;
        let mut attr = a.e.link(a.node, b.node, newname)?;
        attr.ino = ino;
        Ok(attr)
    }

    pub async fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let a = self
            .r
            .at(ino, || DriveError::Invalid("not a symlink".into()))
            .await?;
        a.e.readlink(a.node)
    }

    pub async fn opendir(&self, ino: Ino) -> Result<Fh> {
        match self.r.resolve(ino).await? {
            Target::Synthetic => Ok(SYNTHETIC_FH),
            Target::At(a) => a.e.opendir(a.node),
        }
    }

    /// Entries after `offset` (0 starts with "." and ".."), at most
    /// 4096 per call; an empty result means the end. Offsets are stable
    /// across calls and changes to the directory.
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>> {
        let a = match self.r.resolve(ino).await? {
            Target::Synthetic => return self.r.synthetic_readdir(offset).await,
            Target::At(a) => a,
        };
        let mut entries = a.e.readdir(a.node, fh, offset)?;
        for d in &mut entries {
            d.ino = match d.name.as_bytes() {
                b"." => ino,
                b".." if a.node == ROOT && a.vol != self.r.root_volume() => {
                    self.r.volume_parent(a.vol)
                }
                _ => self.r.ino_of(a.vol, d.ino),
            };
        }
        Ok(entries)
    }

    /// [`Drive::readdir`] with each entry's attributes (as `lookup` gives
    /// them), at most `limit` entries: what `ls -l` needs in one round trip
    /// instead of a lookup per entry.
    pub async fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        let a = match self.r.resolve(ino).await? {
            Target::Synthetic => {
                let mut out = Vec::new();
                for e in self
                    .r
                    .synthetic_readdir(offset)
                    .await?
                    .into_iter()
                    .take(limit)
                {
                    match self.getattr(e.ino).await {
                        Ok(attr) => out.push((e, attr)),
                        Err(DriveError::NotFound) => {}
                        Err(err) => return Err(err),
                    }
                }
                return Ok(out);
            }
            Target::At(a) => a,
        };
        let mut entries = a.e.readdirplus(a.node, fh, offset, limit)?;
        for (d, attr) in &mut entries {
            match d.name.as_bytes() {
                b"." => {
                    d.ino = ino;
                    attr.ino = ino;
                }
                b".." if a.node == ROOT && a.vol != self.r.root_volume() => {
                    d.ino = self.r.volume_parent(a.vol);
                    attr.ino = d.ino;
                }
                b".." => {
                    d.ino = self.r.ino_of(a.vol, d.ino);
                    attr.ino = d.ino;
                }
                _ => {
                    *attr = self.r.attr_out(a.vol, attr.clone()).await?;
                    d.ino = attr.ino;
                }
            }
        }
        Ok(entries)
    }

    pub async fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        if let Some((a, _)) = self.r.handle(ino, fh).await? {
            a.e.release_handle(fh);
        }
        Ok(())
    }

    pub async fn statfs(&self) -> Result<StatFs> {
        let (files, bytes) = self
            .r
            .engines()
            .iter()
            .map(|e| e.usage())
            .fold((0, 0), |(f, b), (f2, b2)| (f + f2, b + b2));
        Ok(statfs(files, bytes))
    }

    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrSet,
    ) -> Result<()> {
        let a = self.r.at_mut(ino).await?;
        let _g = self.r.gate(&a).await;
        a.e.setxattr(a.node, name, value, how)
    }

    pub async fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let a = self.r.at(ino, || DriveError::NoXattr).await?;
        a.e.getxattr(a.node, name)
    }

    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>> {
        match self.r.resolve(ino).await? {
            Target::Synthetic => Ok(Vec::new()),
            Target::At(a) => a.e.listxattr(a.node),
        }
    }

    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let a = self.r.at_mut(ino).await?;
        let _g = self.r.gate(&a).await;
        a.e.removexattr(a.node, name)
    }
}
