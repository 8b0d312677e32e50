//! Namespace operations (everything except file content): each validates
//! against the view, builds one op, and queues it.
//!
//! Invariant: validation that depends only on the tree lives in
//! [`crate::drive::tree::Tree::apply`] (shared with log replay); this file adds
//! the local checks (read-only, name length, flags, handles).

use super::Engine;
use super::listing::Listing;
use super::state::kind_of;
use crate::drive::clock::{now, to_time};
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::is_dirlike;
use crate::drive::types::*;
use crate::format::crypto::random_array;
use crate::format::meta::{
    AttrChange, KIND_BLOCK_DEV, KIND_CHAR_DEV, KIND_DIR, KIND_FIFO, KIND_FILE, KIND_SOCKET,
    KIND_SYMLINK, Node, Op,
};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Longest file name, as on Linux.
pub const NAME_MAX: usize = 255;
/// Largest extended attribute value (Linux's limit).
pub const XATTR_MAX: usize = 64 * 1024;
/// Entries returned by one `readdir` call at most.
pub const READDIR_BATCH: usize = 4096;

pub fn check_name(name: &OsStr) -> Result<Vec<u8>> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(DriveError::NameTooLong);
    }
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(DriveError::Invalid("file name".into()));
    }
    Ok(b.to_vec())
}

fn new_node(kind: u8, mode: u32, who: Caller, parent: u64) -> Node {
    let t = now();
    Node {
        id: 0,
        kind,
        perm: (mode & 0o7777) as u16,
        uid: who.uid,
        gid: who.gid,
        nlink: 1,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        version: u64::from_le_bytes(random_array()),
        parent,
        next_cookie: 1,
        ..Default::default()
    }
}

impl Engine {
    pub fn writable(&self) -> Result<()> {
        self.keys.check_member()?;
        if self.opts.read_only || !self.keys.can_write(&self.me.card_id) {
            return Err(DriveError::ReadOnly);
        }
        Ok(())
    }

    fn make(&self, parent: Ino, name: &OsStr, mut node: Node) -> Result<Attr> {
        self.writable()?;
        let name = check_name(name)?;
        let mut core = self.lock();
        if core.view.dir(parent)?.entries.contains_key(name.as_slice()) {
            return Err(DriveError::Exists);
        }
        node.id = core.fresh_id(node.kind);
        let id = node.id;
        core.push(Op::Create {
            parent,
            name,
            node: Box::new(node),
        })?;
        drop(core);
        self.wake.notify_one();
        self.lock().attr(id)
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        if name.len() > NAME_MAX {
            return Err(DriveError::NameTooLong);
        }
        let core = self.lock();
        let id = match name.as_bytes() {
            b"." => {
                core.view.dir(parent)?;
                parent
            }
            b".." => core.view.dir(parent)?.parent,
            n => core.view.lookup(parent, n)?,
        };
        core.attr(id)
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.lock().attr(ino)
    }

    pub fn create_file(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> Result<(Attr, Fh)> {
        let node = new_node(KIND_FILE, mode, who, 0);
        let attr = self.make(parent, name, node)?;
        let accmode = flags & libc::O_ACCMODE;
        let fh = self.lock().new_handle(
            attr.ino,
            accmode != libc::O_RDONLY,
            flags & libc::O_APPEND != 0,
        );
        Ok((attr, fh))
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: Caller) -> Result<Attr> {
        let node = new_node(KIND_DIR, mode, who, parent);
        self.make(parent, name, node)
    }

    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &Path, who: Caller) -> Result<Attr> {
        let t = target.as_os_str().as_bytes();
        if t.is_empty() || t.len() > 4096 {
            return Err(DriveError::Invalid("symlink target".into()));
        }
        let mut node = new_node(KIND_SYMLINK, 0o777, who, 0);
        node.target = t.to_vec().into();
        self.make(parent, name, node)
    }

    /// Creates a FIFO, socket or device node (`mknod`, `mkfifo`, `bind`).
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        special: Special,
        who: Caller,
    ) -> Result<Attr> {
        let (kind, rdev) = match special {
            Special::Fifo => (KIND_FIFO, None),
            Special::Socket => (KIND_SOCKET, None),
            Special::CharDevice(d) => (KIND_CHAR_DEV, Some(d)),
            Special::BlockDevice(d) => (KIND_BLOCK_DEV, Some(d)),
        };
        let mut node = new_node(kind, mode, who, 0);
        node.target = rdev
            .map(|d| d.to_le_bytes().to_vec())
            .unwrap_or_default()
            .into();
        self.make(parent, name, node)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let core = self.lock();
        let n = core.node(ino)?;
        if n.kind != KIND_SYMLINK {
            return Err(DriveError::Invalid("not a symlink".into()));
        }
        Ok(n.target.to_vec())
    }

    pub fn open_file(&self, ino: Ino, flags: i32) -> Result<(Fh, bool)> {
        let accmode = flags & libc::O_ACCMODE;
        let writable = accmode != libc::O_RDONLY;
        if writable || flags & libc::O_TRUNC != 0 {
            self.writable()?;
        }
        let mut core = self.lock();
        let n = core.node(ino)?;
        if is_dirlike(n.kind) && writable {
            return Err(DriveError::IsDir);
        }
        let truncate = flags & libc::O_TRUNC != 0 && n.kind == KIND_FILE;
        Ok((
            core.new_handle(ino, writable, flags & libc::O_APPEND != 0),
            truncate,
        ))
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr, dir: bool) -> Result<()> {
        self.writable()?;
        let name = check_name(name).map_err(|e| {
            if matches!(e, DriveError::Invalid(_)) && name.as_bytes() == b"." {
                DriveError::Invalid("cannot remove '.'".into())
            } else {
                e
            }
        })?;
        let mut core = self.lock();
        let child = core.view.lookup(parent, &name)?;
        let is_dir = is_dirlike(core.view.get(child)?.kind);
        match (dir, is_dir) {
            (true, false) => return Err(DriveError::NotDir),
            (false, true) => return Err(DriveError::IsDir),
            _ => {}
        }
        core.push(Op::Unlink {
            parent,
            name,
            node: child,
            time: now(),
        })?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        if flags.noreplace && flags.exchange {
            return Err(DriveError::Invalid(
                "RENAME_NOREPLACE with RENAME_EXCHANGE".into(),
            ));
        }
        let name = check_name(name)?;
        let newname = check_name(newname)?;
        let mut core = self.lock();
        let src = core.view.lookup(parent, &name)?;
        let target = core
            .view
            .dir(newparent)?
            .entries
            .get(newname.as_slice())
            .map(|l| l.node);
        if flags.noreplace && target.is_some() {
            return Err(DriveError::Exists);
        }
        if flags.exchange && target.is_none() {
            return Err(DriveError::NotFound);
        }
        if target == Some(src) {
            // Both names are one node: rename(2) does nothing, and no op
            // is logged (replayed on another client's names it could move
            // something else).
            return Ok(());
        }
        core.push(Op::Rename {
            parent,
            name,
            newparent,
            newname,
            exchange: flags.exchange,
            time: now(),
        })?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.writable()?;
        let name = check_name(newname)?;
        let mut core = self.lock();
        if !core.view.nodes.contains_key(&ino) {
            return Err(DriveError::NotFound);
        }
        if core
            .view
            .dir(newparent)?
            .entries
            .contains_key(name.as_slice())
        {
            return Err(DriveError::Exists);
        }
        core.push(Op::Link {
            parent: newparent,
            name,
            node: ino,
            ctime: now(),
        })?;
        drop(core);
        self.wake.notify_one();
        self.lock().attr(ino)
    }

    /// Attribute changes other than size (size goes through truncate).
    pub fn set_attrs(&self, ino: Ino, set: &SetAttr) -> Result<()> {
        let t = now();
        let resolve = |s: Option<TimeSet>| {
            s.map(|s| match s {
                TimeSet::Now => t,
                TimeSet::At(at) => to_time(at),
            })
        };
        let change = AttrChange {
            perm: set.mode.map(|m| (m & 0o7777) as u16),
            uid: set.uid,
            gid: set.gid,
            atime: resolve(set.atime),
            mtime: resolve(set.mtime),
            ctime: Some(set.ctime.map(to_time).unwrap_or(t)),
        };
        if change.perm.is_none()
            && change.uid.is_none()
            && change.gid.is_none()
            && change.atime.is_none()
            && change.mtime.is_none()
            && set.ctime.is_none()
        {
            return Ok(());
        }
        self.writable()?;
        let mut core = self.lock();
        if !core.view.nodes.contains_key(&ino) {
            // An unlinked open file: changes stay local and vanish with it.
            let n = core.orphans.get_mut(&ino).ok_or(DriveError::NotFound)?;
            if let Some(p) = change.perm {
                n.perm = p;
            }
            return Ok(());
        }
        if let Some(m) = change.mtime
            && let Some(d) = core.dirty.get_mut(&ino)
        {
            d.mtime = m;
        }
        core.push(Op::SetAttr { node: ino, change })?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    pub fn opendir(&self, ino: Ino) -> Result<Fh> {
        let mut core = self.lock();
        core.view.dir(ino)?;
        Ok(core.new_handle(ino, false, false))
    }

    pub fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>> {
        self.readdir_upto(ino, fh, offset, READDIR_BATCH + 2)
    }

    /// [`Engine::readdir`] with each entry's attributes, at most `limit`
    /// entries (what one kernel reply holds), under one lock. "." and ".."
    /// carry the directory's own attributes (the kernel ignores them).
    pub fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        let entries = self.readdir_upto(ino, fh, offset, limit)?;
        let core = self.lock();
        let own = core.attr(ino)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let attr = match e.name.as_bytes() {
                b"." | b".." => own.clone(),
                // Gone since the listing (another client's change): the
                // next listing will not show it either.
                _ => match core.attr(e.ino) {
                    Ok(a) => a,
                    Err(DriveError::NotFound) => continue,
                    Err(err) => return Err(err),
                },
            };
            out.push((e, attr));
        }
        Ok(out)
    }

    /// At most `limit` entries after `offset` ("." and ".." included; at
    /// most [`READDIR_BATCH`] others).
    fn readdir_upto(&self, ino: Ino, fh: Fh, offset: u64, limit: usize) -> Result<Vec<DirEntry>> {
        let limit = limit.clamp(1, READDIR_BATCH + 2);
        let mut guard = self.lock();
        let core = &mut *guard;
        let dir = core.view.dir(ino)?;
        let h = match core.handles.get_mut(&fh) {
            Some(h) if h.node == ino || h.opened_as == ino => h,
            _ => return Err(DriveError::BadHandle),
        };
        let mut out = Vec::new();
        if offset < 1 {
            out.push(DirEntry {
                ino,
                kind: FileKind::Dir,
                name: OsString::from("."),
                next_offset: 1,
            });
        }
        if offset < 2 {
            out.push(DirEntry {
                ino: dir.parent,
                kind: FileKind::Dir,
                name: OsString::from(".."),
                next_offset: 2,
            });
        }
        let after = offset.saturating_sub(2);
        let listing = match &mut h.listing {
            Some(l) if offset != 0 && l.covers(ino, after) => l,
            slot => slot.insert(Box::new(Listing::take(&core.view, ino, after)?)),
        };
        for (cookie, name, child) in
            listing.next(&core.view, after, limit - out.len().min(limit))?
        {
            let kind = core
                .view
                .nodes
                .get(&child)
                .map(|n| kind_of(n.kind))
                .unwrap_or(FileKind::File);
            out.push(DirEntry {
                ino: child,
                kind,
                name: OsString::from_vec(name),
                next_offset: cookie + 2,
            });
        }
        Ok(out)
    }

    pub fn release_handle(&self, fh: Fh) {
        self.lock().close_handle(fh);
    }

    /// Nodes in this engine's view, and the plaintext bytes of the file
    /// blocks they hold (for `statfs`).
    pub fn usage(&self) -> (u64, u64) {
        let core = self.lock();
        let bytes = core
            .view
            .nodes
            .values()
            .flat_map(|n| n.blocks.values())
            .map(|b| u64::from(b.len))
            .sum();
        (core.view.nodes.len() as u64, bytes)
    }
}

/// What `statfs` reports for a mount holding `files` nodes whose file
/// blocks hold `bytes` bytes: those bytes as used, and a constant 4 PiB
/// free (object storage has no fixed size).
pub fn statfs(files: u64, bytes: u64) -> StatFs {
    let free: u64 = 1 << 40; // 4 PiB in 4 KiB units.
    StatFs {
        blocks: free + bytes.div_ceil(4096),
        bfree: free,
        bavail: free,
        files: files + (1 << 32),
        ffree: 1 << 32,
        bsize: 4096,
        namelen: NAME_MAX as u32,
        frsize: 4096,
    }
}

impl Engine {
    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], how: XattrSet) -> Result<()> {
        self.writable()?;
        let name = name.as_bytes().to_vec();
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(DriveError::Invalid("xattr name".into()));
        }
        if value.len() > XATTR_MAX {
            return Err(DriveError::XattrRange);
        }
        let mut core = self.lock();
        let exists = core.view.get(ino)?.xattrs.contains_key(&name);
        match how {
            XattrSet::CreateOnly if exists => return Err(DriveError::Exists),
            XattrSet::ReplaceOnly if !exists => return Err(DriveError::NoXattr),
            _ => {}
        }
        core.push(Op::SetXattr {
            node: ino,
            name,
            value: Some(value.to_vec()),
            ctime: now(),
        })?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let core = self.lock();
        core.node(ino)?
            .xattrs
            .get(name.as_bytes())
            .cloned()
            .ok_or(DriveError::NoXattr)
    }

    pub fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>> {
        let core = self.lock();
        Ok(core
            .node(ino)?
            .xattrs
            .keys()
            .map(|k| OsString::from_vec(k.clone()))
            .collect())
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        self.writable()?;
        let mut core = self.lock();
        if !core.view.get(ino)?.xattrs.contains_key(name.as_bytes()) {
            return Err(DriveError::NoXattr);
        }
        core.push(Op::SetXattr {
            node: ino,
            name: name.as_bytes().to_vec(),
            value: None,
            ctime: now(),
        })?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }
}
