//! A read-only filesystem of fixed files in one directory.
//!
//! It exists to check the mount path on its own (kernel, `/dev/fuse`,
//! permissions, unmounting) without involving the drive engine: the
//! foundation's mount test and `cardfs doctor`-style checks use it.
//! Invariant: inode 1 is the root; file `i` of the list has inode `i + 2`.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request,
};
use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::from_secs(1);

/// Files served by a [`StaticFs`], by name.
#[derive(Debug, Clone)]
pub struct StaticFs {
    files: Vec<(String, Vec<u8>)>,
    uid: u32,
    gid: u32,
    created: SystemTime,
}

impl StaticFs {
    /// A filesystem holding `files` (name, contents) in its root, owned by
    /// the calling user.
    // libc::getuid/getgid are `unsafe` only as foreign functions; std has
    // no safe wrapper for them.
    #[allow(unsafe_code)]
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            files,
            // SAFETY: getuid/getgid take no arguments, cannot fail and touch
            // no memory of ours.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            created: SystemTime::now(),
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = if ino == 1 {
            (FileType::Directory, 0o555, 0, 2)
        } else {
            let (_, data) = self.files.get(ino.checked_sub(2)? as usize)?;
            (FileType::RegularFile, 0o444, data.len() as u64, 1)
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.created,
            mtime: self.created,
            ctime: self.created,
            crtime: self.created,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        })
    }
}

impl Filesystem for StaticFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = (u64::from(parent) == 1)
            .then(|| self.files.iter().position(|(n, _)| OsStr::new(n) == name))
            .flatten()
            .and_then(|i| self.attr(i as u64 + 2));
        match found {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.into()) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let index = u64::from(ino).checked_sub(2).map(|i| i as usize);
        match index.and_then(|i| self.files.get(i)) {
            Some((_, data)) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if u64::from(ino) != 1 {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let mut entries = vec![
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
        ];
        for (i, (name, _)) in self.files.iter().enumerate() {
            entries.push((i as u64 + 2, FileType::RegularFile, name.as_str()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            // The offset given back is that of the next entry.
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
