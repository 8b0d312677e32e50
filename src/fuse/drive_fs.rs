//! [`DriveFs`]: the kernel's view of a [`Drive`]. Every fuser callback
//! copies its arguments, hands the call to the drive on the daemon's tokio
//! runtime, and replies from that task; errors become the engine's errno.
//!
//! Invariants:
//! - Callbacks never wait on the network: fuser's request threads only
//!   read requests, spawn tasks and answer what one poll completes: cheap
//!   reads of the engine's memory (lookup, getattr, readdir, xattr reads),
//!   file reads served from the cache or a local store's small reads
//!   ([`store::in_place`]: a few disk reads of up to 64 KiB, cheaper than
//!   the three thread hops of a task), and every change of the namespace
//!   and the small-file path (create, open, setattr, mkdir, mknod,
//!   symlink, link, unlink, rmdir, rename, xattr changes, write, flush,
//!   release: memory, the local journal and cache directory). Anything
//!   else (a fetch over S3, a whole-block load, a
//!   writer waiting for room) goes on in a task, so a slow store never
//!   stalls the kernel's other requests, and no callback runs `block_on`
//!   inside the runtime.
//! - Every request is answered exactly once, even when a bug panics inside
//!   it (EIO and an error line): one request's panic never ends the mount.
//! - The adapter holds no filesystem state except the page-cache policy
//!   (size and mtime of each file when it was last opened or closed, to
//!   decide `FOPEN_KEEP_CACHE`), which only affects caching, never data.
//! - With the writeback cache, files are opened read-write (the kernel
//!   reads around partial pages even on write-only files) and without
//!   O_APPEND (the kernel places appended data itself).

use super::options::Ownership;
use super::reply_fit::ReplyFit;
use super::settings::{TTL, tune_kernel};
use crate::drive::{
    self, Attr, Caller, Drive, DriveError, FileKind, Ino, RenameFlags, SetAttr, Special, TimeSet,
    XattrSet,
};
use crate::store;
use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags,
    PollNotifier, ReplyAttr, ReplyBmap, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The FUSE filesystem of one mounted drive.
pub struct DriveFs {
    drive: Drive,
    rt: tokio::runtime::Handle,
    writeback_cache: bool,
    /// (size, mtime) of each file when last opened or released here.
    seen: Arc<Mutex<HashMap<Ino, (u64, SystemTime)>>>,
    present: Present,
    /// How many entries one READDIRPLUS reply holds (learned).
    plus_fit: Arc<ReplyFit>,
}

/// How attributes are shown (`uid=`, `gid=`, `umask=`, and the member
/// ownership model of docs/SHARING.md): a view only, never stored.
#[derive(Clone)]
struct Present {
    drive: Drive,
    ownership: Ownership,
    /// The mounting user (the daemon's uid and gid).
    me: (u32, u32),
}

impl Present {
    fn attr(&self, mut a: Attr) -> Attr {
        let o = &self.ownership;
        let as_mine = !o.keep_ownership && self.drive.in_shared_folder(a.ino);
        if let Some(uid) = o.uid {
            a.uid = uid;
        } else if as_mine {
            a.uid = self.me.0;
        }
        if let Some(gid) = o.gid {
            a.gid = gid;
        } else if as_mine {
            a.gid = self.me.1;
        }
        if let Some(mask) = o.umask {
            a.perm &= !mask;
        }
        a
    }
}

/// The uid and gid this process runs as (the owner of `/proc/self`).
fn process_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()))
}

impl DriveFs {
    /// Serves `drive`, running its calls on `rt` (a runtime owned by the
    /// daemon). `writeback_cache` must match the mount's kernel setting.
    pub fn new(drive: Drive, rt: tokio::runtime::Handle, writeback_cache: bool) -> Self {
        let present = Present {
            drive: drive.clone(),
            ownership: Ownership::default(),
            me: process_owner(),
        };
        Self {
            drive,
            rt,
            writeback_cache,
            seen: Arc::default(),
            present,
            plus_fit: Arc::default(),
        }
    }

    /// Presents owners and modes as `ownership` says (see docs/CLI.md,
    /// `uid=`, `gid=`, `umask=`, `keep_ownership`).
    pub fn with_ownership(mut self, ownership: Ownership) -> Self {
        self.present.ownership = ownership;
        self
    }

    /// Runs `call` on the runtime; replies with `ok` or the error's errno
    /// (see [`dispatch`]).
    fn forward<T, R>(
        &self,
        op: &'static str,
        reply: R,
        call: impl Future<Output = drive::Result<T>> + Send + 'static,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        T: Send + 'static,
        R: Fail + Send + 'static,
    {
        dispatch(&self.rt, Run::Task, op, reply, call, ok);
    }

    /// [`forward`](Self::forward) for calls that one poll on the request
    /// thread usually completes ([`Run::Inline`]): reads of the engine's
    /// memory, file reads served from the cache or a local store's small
    /// reads, and changes of the namespace and of small files (memory,
    /// the journal and the cache directory: see the module's invariants;
    /// open and setattr, which `md5sum` and `tar x` make once per file,
    /// were tasks until measured). A task hop and a
    /// second thread wake-up cost as much as such a call; one that waits
    /// (a volume to open, a fetch over the network, cache full) goes on in
    /// a task.
    fn forward_inline<T, R>(
        &self,
        op: &'static str,
        reply: R,
        call: impl Future<Output = drive::Result<T>> + Send + 'static,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        T: Send + 'static,
        R: Fail + Send + 'static,
    {
        dispatch(&self.rt, Run::Inline, op, reply, call, ok);
    }
}

/// Where a request's call runs (see [`dispatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// In a task on the runtime.
    Task,
    /// A cheap call that reads the engine's memory (lookup, getattr,
    /// readdir, xattr reads) or a file's bytes: polled once on the request
    /// thread, with small in-place store reads allowed
    /// ([`store::in_place::allowing`]), and answered at once when that poll
    /// completes it, with no task and no thread hop (a round trip costs
    /// about half as much); a call that is not ready then (a volume to
    /// open, see `Router::engine`; a fetch over the network) goes on in a
    /// task.
    Inline,
}

/// Runs one request's `call` as `how` says and answers the kernel: with
/// `ok` on success, with the error's errno on failure, and with EIO (plus
/// an error line naming the request and the panic message) when a bug
/// panics inside the call. In a task, a second task awaits the call. So a
/// panic fails that one request; the kernel never waits for an answer that
/// cannot come, and the mount goes on serving the others.
fn dispatch<T, R>(
    rt: &tokio::runtime::Handle,
    how: Run,
    op: &'static str,
    reply: R,
    call: impl Future<Output = drive::Result<T>> + Send + 'static,
    ok: impl FnOnce(R, T) + Send + 'static,
) where
    T: Send + 'static,
    R: Fail + Send + 'static,
{
    let mut call = Box::pin(call);
    if how == Run::Inline {
        use futures_util::FutureExt;
        let first = {
            let _in_runtime = rt.enter();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store::in_place::allowing(|| call.as_mut().now_or_never())
            }))
        };
        match first {
            Ok(Some(result)) => return finish(op, reply, result, ok),
            Ok(None) => {}
            Err(panic) => return panicked(op, reply, panic),
        }
    }
    let task = rt.spawn(call);
    rt.spawn(async move {
        match task.await {
            Ok(result) => finish(op, reply, result, ok),
            Err(join) if join.is_panic() => panicked(op, reply, join.into_panic()),
            Err(_) => {
                tracing::warn!("{op}: request cancelled (daemon stopping); answering EIO");
                reply.fail(Errno::EIO);
            }
        }
    });
}

/// Fails a request whose call panicked (a bug) with EIO, and says so.
fn panicked<R: Fail>(op: &'static str, reply: R, panic: Box<dyn std::any::Any + Send>) {
    tracing::error!(
        "{op}: bug: panicked ({}); the request fails with EIO, the mount goes on",
        panic_message(panic.as_ref())
    );
    reply.fail(Errno::EIO);
}

/// Answers one request with its call's `result`: `ok` on success (a panic
/// there drops `reply`, which answers EIO itself: fuser replies on drop),
/// the error's errno on failure.
fn finish<T, R: Fail>(op: &'static str, reply: R, result: drive::Result<T>, ok: impl FnOnce(R, T)) {
    match result {
        Ok(value) => {
            let answered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ok(reply, value)));
            if let Err(panic) = answered {
                tracing::error!(
                    "{op}: bug: panicked while answering ({}); the request fails with EIO",
                    panic_message(panic.as_ref())
                );
            }
        }
        Err(err) => {
            log_error(op, &err);
            reply.fail(Errno::from_i32(err.errno()));
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Open flags as the engine must see them (see the module invariants).
fn engine_flags(flags: i32, writeback_cache: bool) -> i32 {
    if !writeback_cache {
        return flags;
    }
    let mut flags = flags & !libc::O_APPEND;
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR;
    }
    flags
}

/// Logs what the kernel's caller will only see as an errno. Expected
/// answers (no such file, exists, ...) are not logged.
fn log_error(op: &str, err: &DriveError) {
    match err {
        DriveError::Tampered { .. }
        | DriveError::Rollback { .. }
        | DriveError::Store(_)
        | DriveError::Cache { .. } => tracing::error!("{op}: {err}"),
        _ => tracing::debug!("{op}: {err}"),
    }
}

/// The error half of every fuser reply type.
trait Fail {
    fn fail(self, err: Errno);
}

macro_rules! impl_fail {
    ($($t:ty),*) => {$(
        impl Fail for $t {
            fn fail(self, err: Errno) {
                self.error(err)
            }
        }
    )*};
}
impl_fail!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The kernel's form of the engine's attributes.
pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        flags: 0,
        blksize: a.blksize,
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
    }
}

fn entry(reply: ReplyEntry, attr: Attr) {
    reply.entry(&TTL, &file_attr(&attr), Generation(0));
}

/// An entry reply showing `attr` as `p` presents it.
fn entry_with(p: Present) -> impl FnOnce(ReplyEntry, Attr) + Send + 'static {
    move |r, a| entry(r, p.attr(a))
}

/// Answers a getxattr/listxattr: the size when asked for it (`size` 0),
/// ERANGE when the buffer is too small, the bytes otherwise.
fn xattr_reply(reply: ReplyXattr, size: u32, data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

impl Filesystem for DriveFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        tune_kernel(config, self.writeback_cache);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (d, name) = (self.drive.clone(), name.to_owned());
        self.forward_inline(
            "lookup",
            reply,
            async move { d.lookup(parent.0, &name).await },
            entry_with(self.present.clone()),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.drive.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (d, p) = (self.drive.clone(), self.present.clone());
        self.forward_inline(
            "getattr",
            reply,
            async move { d.getattr(ino.0).await },
            move |r, a| r.attr(&TTL, &file_attr(&p.attr(a))),
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime,
        };
        let (d, p) = (self.drive.clone(), self.present.clone());
        self.forward_inline(
            "setattr",
            reply,
            async move { d.setattr(ino.0, fh.map(|f| f.0), set).await },
            move |r, a| r.attr(&TTL, &file_attr(&p.attr(a))),
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let d = self.drive.clone();
        self.forward_inline(
            "readlink",
            reply,
            async move { d.readlink(ino.0).await },
            |r, t| r.data(&t),
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (d, name, who) = (self.drive.clone(), name.to_owned(), caller(req));
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            // FIFOs, sockets and devices are stored as nodes; the kernel
            // does their I/O (and refuses device I/O on a `nodev` mount).
            let Some(special) = Special::from_mode(mode, u64::from(rdev)) else {
                reply.error(Errno::EINVAL);
                return;
            };
            self.forward_inline(
                "mknod",
                reply,
                async move { d.mknod(parent.0, &name, mode & !umask, special, who).await },
                entry,
            );
            return;
        }
        self.forward_inline(
            "mknod",
            reply,
            async move {
                let (attr, fh) = d
                    .create(parent.0, &name, mode & !umask, libc::O_RDONLY, who)
                    .await?;
                d.release(attr.ino, fh).await?;
                Ok(attr)
            },
            entry_with(self.present.clone()),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (d, name, who) = (self.drive.clone(), name.to_owned(), caller(req));
        self.forward_inline(
            "mkdir",
            reply,
            async move { d.mkdir(parent.0, &name, mode & !umask, who).await },
            entry_with(self.present.clone()),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (d, name) = (self.drive.clone(), name.to_owned());
        self.forward_inline(
            "unlink",
            reply,
            async move { d.unlink(parent.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (d, name) = (self.drive.clone(), name.to_owned());
        self.forward_inline(
            "rmdir",
            reply,
            async move { d.rmdir(parent.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (d, name, target, who) = (
            self.drive.clone(),
            link_name.to_owned(),
            target.to_owned(),
            caller(req),
        );
        self.forward_inline(
            "symlink",
            reply,
            async move { d.symlink(parent.0, &name, &target, who).await },
            entry_with(self.present.clone()),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(fuser::RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let how = RenameFlags {
            noreplace: flags.contains(fuser::RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(fuser::RenameFlags::RENAME_EXCHANGE),
        };
        let (d, name, newname) = (self.drive.clone(), name.to_owned(), newname.to_owned());
        self.forward_inline(
            "rename",
            reply,
            async move { d.rename(parent.0, &name, newparent.0, &newname, how).await },
            |r, ()| r.ok(),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (d, newname) = (self.drive.clone(), newname.to_owned());
        self.forward_inline(
            "link",
            reply,
            async move { d.link(ino.0, newparent.0, &newname).await },
            entry_with(self.present.clone()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (d, seen) = (self.drive.clone(), self.seen.clone());
        let flags = engine_flags(flags.0, self.writeback_cache);
        self.forward_inline(
            "open",
            reply,
            async move {
                let fh = d.open(ino.0, flags).await?;
                let keep = match d.getattr(ino.0).await {
                    Ok(a) => remember(&seen, &a),
                    Err(_) => false,
                };
                Ok((fh, keep))
            },
            |r, (fh, keep)| {
                let flags = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                r.opened(FileHandle(fh), flags);
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let d = self.drive.clone();
        self.forward_inline(
            "read",
            reply,
            async move { d.read(ino.0, fh.0, offset, size).await },
            |r, data| r.data(&data),
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (d, data) = (self.drive.clone(), data.to_vec());
        self.forward_inline(
            "write",
            reply,
            async move { d.write(ino.0, fh.0, offset, &data).await },
            |r, n| r.written(n),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let d = self.drive.clone();
        self.forward_inline(
            "flush",
            reply,
            async move { d.flush(ino.0, fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let (d, seen) = (self.drive.clone(), self.seen.clone());
        self.forward_inline(
            "release",
            reply,
            async move {
                d.release(ino.0, fh.0).await?;
                // What this mount itself wrote is in the page cache already:
                // the next open may keep it.
                if let Ok(a) = d.getattr(ino.0).await {
                    remember(&seen, &a);
                }
                Ok(())
            },
            |r, ()| r.ok(),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let d = self.drive.clone();
        self.forward(
            "fsync",
            reply,
            async move { d.fsync(ino.0, fh.0, datasync).await },
            |r, ()| r.ok(),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let d = self.drive.clone();
        self.forward_inline(
            "opendir",
            reply,
            async move { d.opendir(ino.0).await },
            |r, fh| r.opened(FileHandle(fh), FopenFlags::empty()),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let d = self.drive.clone();
        self.forward_inline(
            "readdir",
            reply,
            async move { d.readdir(ino.0, fh.0, offset).await },
            |mut r, entries| {
                for e in entries {
                    if r.add(INodeNo(e.ino), e.next_offset, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                r.ok();
            },
        );
    }

    /// What `ls -l` and `find` need in one round trip: entries with their
    /// attributes, so the kernel needs no lookup per entry.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let (d, p, fit) = (
            self.drive.clone(),
            self.present.clone(),
            self.plus_fit.clone(),
        );
        let asked = fit.limit();
        self.forward_inline(
            "readdirplus",
            reply,
            async move { d.readdirplus(ino.0, fh.0, offset, asked).await },
            move |mut r, entries| {
                let (mut added, mut full) = (0, false);
                for (e, a) in entries {
                    let attr = file_attr(&p.attr(a));
                    full = r.add(
                        INodeNo(e.ino),
                        e.next_offset,
                        &e.name,
                        &TTL,
                        &attr,
                        Generation(0),
                    );
                    if full {
                        break;
                    }
                    added += 1;
                }
                fit.record(asked, added, full);
                r.ok();
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let d = self.drive.clone();
        self.forward_inline(
            "releasedir",
            reply,
            async move { d.releasedir(ino.0, fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let d = self.drive.clone();
        self.forward(
            "fsyncdir",
            reply,
            async move { d.fsync(ino.0, fh.0, datasync).await },
            |r, ()| r.ok(),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let d = self.drive.clone();
        self.forward("statfs", reply, async move { d.statfs().await }, |r, s| {
            r.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            )
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if is_refused_xattr(name) {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let how = if flags & libc::XATTR_CREATE != 0 {
            XattrSet::CreateOnly
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrSet::ReplaceOnly
        } else {
            XattrSet::Any
        };
        let (d, name, value) = (self.drive.clone(), name.to_owned(), value.to_vec());
        self.forward_inline(
            "setxattr",
            reply,
            async move { d.setxattr(ino.0, &name, &value, how).await },
            |r, ()| r.ok(),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if is_refused_xattr(name) {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let (d, name) = (self.drive.clone(), name.to_owned());
        self.forward_inline(
            "getxattr",
            reply,
            async move { d.getxattr(ino.0, &name).await },
            move |r, v| xattr_reply(r, size, &v),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let d = self.drive.clone();
        self.forward_inline(
            "listxattr",
            reply,
            async move { d.listxattr(ino.0).await },
            move |r, names| xattr_reply(r, size, &xattr_list(&names)),
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if is_refused_xattr(name) {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let (d, name) = (self.drive.clone(), name.to_owned());
        self.forward_inline(
            "removexattr",
            reply,
            async move { d.removexattr(ino.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The mount uses `default_permissions`: the kernel has checked the
        // mode bits before this call.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (d, name, who, seen) = (
            self.drive.clone(),
            name.to_owned(),
            caller(req),
            self.seen.clone(),
        );
        let flags = engine_flags(flags, self.writeback_cache);
        let p = self.present.clone();
        self.forward_inline(
            "create",
            reply,
            async move {
                let (attr, fh) = d.create(parent.0, &name, mode & !umask, flags, who).await?;
                remember(&seen, &attr);
                Ok((attr, fh))
            },
            move |r, (attr, fh)| {
                r.created(
                    &TTL,
                    &file_attr(&p.attr(attr)),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            },
        );
    }

    // Requests the drive does not support, answered without a log line
    // (fuser's defaults warn on every call, and tools send some of them
    // constantly: every `open()` in Python sends an ioctl TCGETS).

    /// No ioctl is supported: ENOTTY, what `isatty` and friends expect.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// ENOSYS: the kernel stops asking and answers polls itself (always
    /// ready, as for a regular file).
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS: the kernel stops asking and returns EOPNOTSUPP, on which
    /// `posix_fallocate` writes the range itself.
    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS: the kernel stops asking and seeks itself (SEEK_DATA and
    /// SEEK_HOLE then see one data extent, which is correct).
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// A copy within one shared folder or the rest of the drive shares the
    /// source's whole blocks (nothing uploaded but metadata); across them,
    /// EXDEV, on which `cp` and the kernel's callers copy the bytes
    /// themselves. At most `COPY_MAX` bytes per call (the reply is a u32;
    /// callers loop), a whole number of blocks so later calls stay aligned.
    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let d = self.drive.clone();
        let len = len.min(COPY_MAX);
        self.forward(
            "copy_file_range",
            reply,
            async move {
                d.copy_range(
                    (ino_in.0, fh_in.0, offset_in),
                    (ino_out.0, fh_out.0, offset_out),
                    len,
                )
                .await
            },
            |r, n| r.written(n as u32),
        );
    }

    /// Only block-device filesystems are asked this.
    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        reply.error(Errno::ENOSYS);
    }
}

/// Largest copy_file_range answered in one call: whole 1 MiB blocks below
/// u32::MAX.
const COPY_MAX: u64 = (u32::MAX as u64) & !((1 << 20) - 1);

/// Records a file's size and mtime; returns whether they are those seen
/// last time (so the kernel's cached pages are still the file's contents).
fn remember(seen: &Mutex<HashMap<Ino, (u64, SystemTime)>>, attr: &Attr) -> bool {
    let now = (attr.size, attr.mtime);
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.insert(attr.ino, now) == Some(now)
}

/// Attribute namespaces the drive refuses with EOPNOTSUPP (get, set and
/// remove; a listing omits them), as gocryptfs does:
/// - `system.*` (POSIX ACLs) are kernel features the drive does not
///   implement: refusing them makes tools such as `cp -a` fall back to
///   chmod instead of believing an ACL set the mode.
/// - `security.*` belongs to the kernel's security modules: an active one
///   (SELinux, Smack) answers its names itself and never asks the
///   filesystem, and a label stored with no module to read it means
///   nothing (`security.capability` neither: mounts are `nosuid` unless
///   asked). `ls -l` asks every file for `security.selinux`; "no such
///   attribute" (ENODATA) made that a FUSE round trip per file (100,000
///   of the ~3 s of `ls -lR` on 100,000 files), while "not supported"
///   makes `ls` stop asking for the rest of the mount.
fn is_refused_xattr(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b"system.") || name.starts_with(b"security.")
}

/// The listxattr wire form: each name followed by a NUL byte (names of a
/// refused namespace, which a drive written before they were refused may
/// hold, left out: they could not be read).
fn xattr_list(names: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names.iter().filter(|n| !is_refused_xattr(n)) {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_and_security_attributes_are_refused() {
        assert!(is_refused_xattr(OsStr::new("system.posix_acl_access")));
        assert!(is_refused_xattr(OsStr::new("security.selinux")));
        assert!(is_refused_xattr(OsStr::new("security.capability")));
        assert!(!is_refused_xattr(OsStr::new("user.system.x")));
        assert!(!is_refused_xattr(OsStr::new("user.security.x")));
        assert!(!is_refused_xattr(OsStr::new("trusted.x")));
    }

    #[test]
    fn xattr_list_is_nul_terminated_names() {
        let names = [OsString::from("user.a"), OsString::from("user.bc")];
        assert_eq!(xattr_list(&names), b"user.a\0user.bc\0");
        let held = [OsString::from("security.selinux"), OsString::from("user.a")];
        assert_eq!(xattr_list(&held), b"user.a\0");
        assert!(xattr_list(&[]).is_empty());
    }

    #[test]
    fn keep_cache_only_when_unchanged() {
        let seen = Mutex::new(HashMap::new());
        let t = SystemTime::UNIX_EPOCH;
        let mut a = Attr {
            ino: 7,
            kind: FileKind::File,
            size: 3,
            blocks: 1,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            rdev: 0,
            blksize: 4096,
        };
        assert!(!remember(&seen, &a), "first open has nothing cached");
        assert!(remember(&seen, &a));
        a.size = 4;
        assert!(!remember(&seen, &a), "a changed size drops the cache");
        a.mtime = t + std::time::Duration::from_secs(1);
        assert!(!remember(&seen, &a), "a changed mtime drops the cache");
    }

    /// A reply that reports what it was answered with.
    struct Probe(std::sync::mpsc::Sender<Result<u32, Errno>>);

    impl Fail for Probe {
        fn fail(self, err: Errno) {
            let _ = self.0.send(Err(err));
        }
    }

    fn answer(
        rt: &tokio::runtime::Runtime,
        call: impl Future<Output = drive::Result<u32>> + Send + 'static,
    ) -> Result<u32, Errno> {
        answer_as(rt, Run::Task, call)
    }

    fn answer_as(
        rt: &tokio::runtime::Runtime,
        how: Run,
        call: impl Future<Output = drive::Result<u32>> + Send + 'static,
    ) -> Result<u32, Errno> {
        let (tx, rx) = std::sync::mpsc::channel();
        dispatch(rt.handle(), how, "test", Probe(tx), call, |p, v| {
            let _ = p.0.send(Ok(v));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the request was answered")
    }

    #[test]
    fn a_panicking_request_fails_alone_with_eio() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(answer(&rt, async { Ok(7) }), Ok(7));
        assert_eq!(
            answer(&rt, async { Err(DriveError::NotFound) }),
            Err(Errno::ENOENT)
        );
        let boom = async {
            if std::hint::black_box(true) {
                panic!("a bug inside the engine");
            }
            Ok(0)
        };
        assert_eq!(answer(&rt, boom), Err(Errno::EIO));
        // The runtime (and so the mount) still serves the next request.
        assert_eq!(answer(&rt, async { Ok(8) }), Ok(8));
    }

    /// Inline requests are answered on the calling thread when ready at
    /// once, go on in a task when not, and fail alone on a panic.
    #[test]
    fn inline_requests_answer_at_once_or_in_a_task() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let on = std::thread::current().id();
        let here = async move { Ok(u32::from(std::thread::current().id() == on)) };
        assert_eq!(answer_as(&rt, Run::Inline, here), Ok(1), "answered inline");
        let later = async {
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok(9)
        };
        assert_eq!(answer_as(&rt, Run::Inline, later), Ok(9));
        let missing = async { Err(DriveError::NotFound) };
        assert_eq!(answer_as(&rt, Run::Inline, missing), Err(Errno::ENOENT));
        let boom = async {
            if std::hint::black_box(true) {
                panic!("a bug inside the engine");
            }
            Ok(0)
        };
        assert_eq!(answer_as(&rt, Run::Inline, boom), Err(Errno::EIO));
        assert_eq!(answer_as(&rt, Run::Inline, async { Ok(8) }), Ok(8));
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let s: Box<dyn std::any::Any + Send> = Box::new("literal");
        assert_eq!(panic_message(s.as_ref()), "literal");
        let s: Box<dyn std::any::Any + Send> = Box::new(format!("formatted {}", 1));
        assert_eq!(panic_message(s.as_ref()), "formatted 1");
        let s: Box<dyn std::any::Any + Send> = Box::new(3u8);
        assert_eq!(panic_message(s.as_ref()), "no message");
    }

    #[test]
    fn writeback_opens_write_only_files_read_write_without_append() {
        let w = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT;
        assert_eq!(engine_flags(w, true), libc::O_RDWR | libc::O_CREAT);
        assert_eq!(engine_flags(libc::O_RDONLY, true), libc::O_RDONLY);
        assert_eq!(
            engine_flags(w, false),
            w,
            "no writeback cache: flags as given"
        );
    }
}
