//! The reference model of the drive-engine model test: random file
//! operations (symlinks, chmod, extended attributes, handles held open
//! across other operations, through renames and unlinks, and sharing a
//! folder, after which moves across its edge are EXDEV, removing and
//! adding back its member, re-encrypting it, among them), a
//! simple in-memory model of their POSIX results, and a driver that runs
//! both and compares every result and, after reopen or crash, the whole
//! tree: each path's kind, content or link target, permission bits and
//! extended attributes. Used over the memory store (`drive/model.rs`) and
//! over S3 (`drive/s3.rs`); the second client is in `model/two.rs`.
#![allow(dead_code)]

use super::*;
use cardfs::drive::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

mod rebase;
pub mod two;
use rebase::MOp;

pub const PATHS: [&str; 12] = [
    "a", "b", "c", "d", "d/a", "d/b", "d/d", "d/d/a", "e", "e/a", "d/e", "d/d/b",
];
/// Symlink targets (never followed by the engine: the kernel resolves them).
pub const TARGETS: [&str; 3] = ["a", "../d/b", "/somewhere/else"];
/// Permission bits a chmod sets.
pub const MODES: [u32; 4] = [0o600, 0o640, 0o755, 0o4711];
/// Extended attribute names.
pub const XATTRS: [&str; 2] = ["user.a", "user.bb"];
/// Handles a sequence may hold open at once.
pub const HELD: usize = 2;

#[derive(Debug, Clone)]
pub enum M {
    Create(usize),
    Mkdir(usize),
    Write(usize, u64, usize, u8),
    Truncate(usize, u64),
    Rename(usize, usize, u8),
    Unlink(usize),
    Rmdir(usize),
    Link(usize, usize),
    Read(usize),
    /// A symlink at a path to one of [`TARGETS`].
    Symlink(usize, usize),
    /// chmod to one of [`MODES`].
    Chmod(usize, usize),
    /// setxattr of one of [`XATTRS`] to a value of `len` bytes `b`, with
    /// flags 0 (either), 1 (create only) or 2 (replace only).
    SetXattr(usize, usize, usize, u8, u8),
    RemoveXattr(usize, usize),
    /// Opens a path read-write, creating a file there when nothing is (as
    /// O_CREAT), into handle slot `k` (releasing what the slot held), and
    /// keeps it open across the ops that follow.
    Hold(usize, usize),
    /// Writes through held handle `k` (EBADF when the slot is empty).
    WriteHeld(usize, u64, usize, u8),
    /// Reads everything through held handle `k`.
    ReadHeld(usize),
    Release(usize),
    Reopen,
    Crash,
    /// Collect everything unreferenced now (`--grace 0 --keep 0`) with
    /// changes possibly pending, then reopen on a fresh cache.
    Gc,
    /// Shares the folder at a path with a writer (always the same card):
    /// the folder becomes a volume of its own, so renames and links across
    /// its edge are EXDEV. Handles are closed first (a folder with writes
    /// in flight is EBUSY).
    Share(usize),
    /// Removes the writer from the shared folder at a path: a key
    /// rotation (sharing it again is another). ENOENT when the writer is
    /// not a member, EINVAL where no shared folder is. Handles stay open
    /// across it.
    Unshare(usize),
    /// Re-encrypts the shared folder at a path under its current keys
    /// (content unchanged); EINVAL where no shared folder is.
    Reencrypt(usize),
    /// Two clients only ([`two::check_two`]): the client whose turn it is
    /// commits and the other takes over, refreshed or, when `stale`, still
    /// on the view it had.
    Switch {
        stale: bool,
    },
}

pub fn op() -> impl Strategy<Value = M> {
    let p = 0..PATHS.len();
    let offset = prop_oneof![
        0u64..5000,
        (1u64..4).prop_map(|b| b * 1024 * 1024 - 3),
        1_000_000u64..3_200_000
    ];
    prop_oneof![
        3 => p.clone().prop_map(M::Create),
        2 => p.clone().prop_map(M::Mkdir),
        4 => (p.clone(), offset.clone(), 1usize..70_000, any::<u8>()).prop_map(|(a, o, l, b)| M::Write(a, o, l, b)),
        1 => (p.clone(), prop_oneof![0u64..3000, 1_000_000u64..3_000_000]).prop_map(|(a, s)| M::Truncate(a, s)),
        2 => (p.clone(), p.clone(), 0u8..3).prop_map(|(a, b, f)| M::Rename(a, b, f)),
        1 => p.clone().prop_map(M::Unlink),
        1 => p.clone().prop_map(M::Rmdir),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| M::Link(a, b)),
        2 => p.clone().prop_map(M::Read),
        1 => (p.clone(), 0..TARGETS.len()).prop_map(|(a, t)| M::Symlink(a, t)),
        1 => (p.clone(), 0..MODES.len()).prop_map(|(a, m)| M::Chmod(a, m)),
        1 => (p.clone(), 0..XATTRS.len(), 0usize..300, any::<u8>(), 0u8..3)
            .prop_map(|(a, x, l, b, f)| M::SetXattr(a, x, l, b, f)),
        1 => (p.clone(), 0..XATTRS.len()).prop_map(|(a, x)| M::RemoveXattr(a, x)),
        2 => (p.clone(), 0..HELD).prop_map(|(a, k)| M::Hold(a, k)),
        3 => (0..HELD, offset.clone(), 1usize..70_000, any::<u8>()).prop_map(|(k, o, l, b)| M::WriteHeld(k, o, l, b)),
        2 => (0..HELD).prop_map(M::ReadHeld),
        1 => (0..HELD).prop_map(M::Release),
        1 => Just(M::Reopen),
        1 => Just(M::Crash),
        1 => Just(M::Gc),
        1 => p.clone().prop_map(M::Share),
        1 => p.clone().prop_map(M::Unshare),
        1 => p.clone().prop_map(M::Reencrypt),
    ]
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
    Symlink(String),
}

/// What every node has besides its kind.
#[derive(Debug, Clone)]
struct Meta {
    perm: u16,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// A file's content version: every content change takes a fresh one
    /// (what a rebase compares with the version a change was based on).
    version: u64,
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<u64, Kind>,
    meta: BTreeMap<u64, Meta>,
    next: u64,
    /// The node each handle slot holds open (kept alive while held, as an
    /// unlinked file is).
    held: [Option<u64>; HELD],
    /// The node-level changes since the last commit, as the engine's log
    /// holds them: what a rebase replays on another client's commits.
    log: Vec<MOp>,
    /// Shared folders: the directories that are volumes of their own.
    shares: std::collections::BTreeSet<u64>,
    /// The shared folders the writer was removed from.
    unshared: std::collections::BTreeSet<u64>,
}

type R<T> = std::result::Result<T, i32>;

impl Model {
    fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(0, Kind::Dir(BTreeMap::new()));
        let mut meta = BTreeMap::new();
        meta.insert(
            0,
            Meta {
                perm: 0o755,
                xattrs: BTreeMap::new(),
                version: 0,
            },
        );
        Model {
            nodes,
            meta,
            next: 1,
            held: [None; HELD],
            log: Vec::new(),
            shares: Default::default(),
            unshared: Default::default(),
        }
    }
    fn children(&self, id: u64) -> R<&BTreeMap<String, u64>> {
        match &self.nodes[&id] {
            Kind::Dir(c) => Ok(c),
            Kind::File(_) | Kind::Symlink(_) => Err(libc::ENOTDIR),
        }
    }
    fn children_mut(&mut self, id: u64) -> &mut BTreeMap<String, u64> {
        match self.nodes.get_mut(&id).unwrap() {
            Kind::Dir(c) => c,
            _ => panic!("not a dir"),
        }
    }
    fn resolve(&self, path: &str) -> R<u64> {
        let mut id = 0;
        for part in path.split('/') {
            id = *self.children(id)?.get(part).ok_or(libc::ENOENT)?;
        }
        Ok(id)
    }
    fn parent(&self, path: &str) -> R<(u64, String)> {
        match path.rsplit_once('/') {
            Some((dir, name)) => {
                let id = self.resolve(dir)?;
                self.children(id)?;
                Ok((id, name.to_string()))
            }
            None => Ok((0, path.to_string())),
        }
    }
    fn is_dir(&self, id: u64) -> bool {
        matches!(self.nodes[&id], Kind::Dir(_))
    }
    fn within(&self, node: u64, ancestor: u64) -> bool {
        // Is `node` equal to or below `ancestor`?
        if node == ancestor {
            return true;
        }
        if let Kind::Dir(c) = &self.nodes[&ancestor] {
            return c.values().any(|child| self.within(node, *child));
        }
        false
    }
    /// The volume holding the node at `path` (the root's is 0, a shared
    /// folder's is its own id): the last shared folder on the way.
    fn volume(&self, path: &str) -> R<u64> {
        let (mut id, mut vol) = (0, 0);
        for part in path.split('/').filter(|p| !p.is_empty()) {
            id = *self.children(id)?.get(part).ok_or(libc::ENOENT)?;
            if self.shares.contains(&id) {
                vol = id;
            }
        }
        Ok(vol)
    }
    /// The directory path of `path` ("" for the root).
    fn dir_path(path: &str) -> &str {
        path.rsplit_once('/').map_or("", |(d, _)| d)
    }
    /// Copies the tree under `id` to fresh ids (hard links inside it stay
    /// one node); returns the copy's id.
    fn copy_tree(&mut self, id: u64, ids: &mut BTreeMap<u64, u64>) -> u64 {
        if let Some(c) = ids.get(&id) {
            return *c;
        }
        let new = self.fresh();
        ids.insert(id, new);
        let kind = match self.nodes[&id].clone() {
            Kind::Dir(c) => Kind::Dir(
                c.into_iter()
                    .map(|(name, child)| (name, self.copy_tree(child, ids)))
                    .collect(),
            ),
            k => k,
        };
        self.nodes.insert(new, kind);
        let meta = self.meta[&id].clone();
        self.meta.insert(new, meta);
        new
    }
    fn share(&mut self, p: &str) -> R<Vec<u8>> {
        let id = self.resolve(p)?;
        if self.volume(p)? != 0 {
            // Adding the same member again changes nothing (adding back
            // a removed one rotates the keys); a folder inside a shared
            // one cannot be shared on its own.
            return match self.shares.contains(&id) {
                true => {
                    self.unshared.remove(&id);
                    Ok(vec![])
                }
                false => Err(libc::EINVAL),
            };
        }
        if !self.is_dir(id) {
            return Err(libc::ENOTDIR);
        }
        if self.shares.iter().any(|s| self.within(*s, id)) {
            return Err(libc::EINVAL); // Shared folders do not nest.
        }
        // The folder's nodes move into the new volume; a file that also
        // has a name outside keeps that name as a file of its own.
        let copy = self.copy_tree(id, &mut BTreeMap::new());
        let (parent, name) = self.parent(p)?;
        self.children_mut(parent).insert(name, copy);
        self.shares.insert(copy);
        self.gc();
        Ok(vec![])
    }
    fn unshare(&mut self, p: &str) -> R<Vec<u8>> {
        let id = self.resolve(p)?;
        if !self.shares.contains(&id) {
            return Err(libc::EINVAL);
        }
        match self.unshared.insert(id) {
            true => Ok(vec![]),
            false => Err(libc::ENOENT),
        }
    }
    fn reencrypt(&self, p: &str) -> R<Vec<u8>> {
        match self.shares.contains(&self.resolve(p)?) {
            true => Ok(vec![]),
            false => Err(libc::EINVAL),
        }
    }
    fn gc(&mut self) {
        let mut live = std::collections::BTreeSet::new();
        let mut stack = vec![0u64];
        stack.extend(self.held.iter().flatten());
        while let Some(id) = stack.pop() {
            if live.insert(id)
                && let Kind::Dir(c) = &self.nodes[&id]
            {
                stack.extend(c.values());
            }
        }
        self.nodes.retain(|id, _| live.contains(id));
        self.meta.retain(|id, _| live.contains(id));
        self.shares.retain(|id| live.contains(id));
        self.unshared.retain(|id| live.contains(id));
    }
    fn make(&mut self, p: &str, k: Kind) -> R<()> {
        let (parent, name) = self.parent(p)?;
        if self.children(parent)?.contains_key(&name) {
            return Err(libc::EEXIST);
        }
        let id = self.fresh();
        let perm = match k {
            Kind::File(_) => 0o644,
            Kind::Dir(_) => 0o755,
            Kind::Symlink(_) => 0o777,
        };
        let meta = Meta {
            perm,
            xattrs: BTreeMap::new(),
            version: self.fresh(),
        };
        self.log.push(MOp::Create {
            parent,
            name: name.clone(),
            node: id,
            kind: k.clone(),
            meta: meta.clone(),
        });
        self.nodes.insert(id, k);
        self.meta.insert(id, meta);
        self.children_mut(parent).insert(name, id);
        Ok(())
    }
    /// Applies `op` (checked as POSIX checks it) as a replay would, and
    /// logs it.
    fn logged(&mut self, op: MOp) -> R<Vec<u8>> {
        self.replay(&op).expect("checked before");
        self.log.push(op);
        Ok(vec![])
    }
    /// A fresh node id or content version (one counter for both, shared by
    /// the clients: see `two::check_two`).
    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }
    /// Changes the content of file `id` by `f`, taking a fresh version.
    fn change(&mut self, id: u64, f: impl FnOnce(&mut Vec<u8>)) {
        let version = self.fresh();
        let Kind::File(d) = self.nodes.get_mut(&id).unwrap() else {
            unreachable!("only files change content")
        };
        f(d);
        let data = d.clone();
        let m = self.meta.get_mut(&id).unwrap();
        let base = std::mem::replace(&mut m.version, version);
        if self.name_of(id).is_none() {
            // Unlinked while held: the engine drops what is written to it
            // when the last handle closes; nothing is logged.
            return;
        }
        self.log.push(MOp::Content {
            node: id,
            base,
            version,
            data,
        });
    }
    /// The regular file at `p` (as open(2) with O_NOFOLLOW finds it).
    fn file_id(&self, p: &str) -> R<u64> {
        let id = self.resolve(p)?;
        match &self.nodes[&id] {
            Kind::File(_) => Ok(id),
            Kind::Dir(_) => Err(libc::EISDIR),
            Kind::Symlink(_) => Err(libc::ELOOP),
        }
    }
    fn file(&mut self, p: &str) -> R<&mut Vec<u8>> {
        let id = self.resolve(p)?;
        match self.nodes.get_mut(&id).unwrap() {
            Kind::File(d) => Ok(d),
            Kind::Dir(_) => Err(libc::EISDIR),
            // As open(2) with O_NOFOLLOW: the driver does the same.
            Kind::Symlink(_) => Err(libc::ELOOP),
        }
    }
    /// Every handle closed (before a reopen, crash or collection).
    fn release_all(&mut self) {
        self.held = [None; HELD];
        self.gc();
    }
    fn held_file(&mut self, k: usize) -> R<&mut Vec<u8>> {
        let id = self.held[k].ok_or(libc::EBADF)?;
        match self.nodes.get_mut(&id).unwrap() {
            Kind::File(d) => Ok(d),
            _ => unreachable!("only files are held"),
        }
    }
    fn write(d: &mut Vec<u8>, off: u64, len: usize, b: u8) {
        let end = off as usize + len;
        if d.len() < end {
            d.resize(end, 0);
        }
        d[off as usize..end].fill(b);
    }
    fn apply(&mut self, m: &M) -> R<Vec<u8>> {
        match m {
            M::Create(p) => self.make(PATHS[*p], Kind::File(Vec::new())).map(|_| vec![]),
            M::Mkdir(p) => self
                .make(PATHS[*p], Kind::Dir(BTreeMap::new()))
                .map(|_| vec![]),
            M::Write(p, off, len, b) => {
                let id = self.file_id(PATHS[*p])?;
                self.change(id, |d| Self::write(d, *off, *len, *b));
                Ok(vec![])
            }
            M::Hold(p, k) => {
                if self.held[*k].take().is_some() {
                    self.gc();
                }
                if self.resolve(PATHS[*p]) == Err(libc::ENOENT) {
                    self.make(PATHS[*p], Kind::File(Vec::new()))?;
                }
                self.file(PATHS[*p])?;
                self.held[*k] = Some(self.resolve(PATHS[*p])?);
                Ok(vec![])
            }
            M::WriteHeld(k, off, len, b) => {
                self.held_file(*k)?;
                let id = self.held[*k].unwrap();
                self.change(id, |d| Self::write(d, *off, *len, *b));
                Ok(vec![])
            }
            M::ReadHeld(k) => self.held_file(*k).map(|d| d.clone()),
            M::Release(k) => {
                self.held[*k].take().ok_or(libc::EBADF)?;
                self.gc();
                Ok(vec![])
            }
            M::Truncate(p, size) => {
                let id = self.file_id(PATHS[*p])?;
                self.change(id, |d| d.resize(*size as usize, 0));
                Ok(vec![])
            }
            M::Read(p) => self.file(PATHS[*p]).map(|d| d.clone()),
            M::Symlink(p, t) => self
                .make(PATHS[*p], Kind::Symlink(TARGETS[*t].to_string()))
                .map(|_| vec![]),
            M::Chmod(p, m) => {
                let id = self.resolve(PATHS[*p])?;
                let perm = (MODES[*m] & 0o7777) as u16;
                self.meta.get_mut(&id).unwrap().perm = perm;
                self.log.push(MOp::Perm { node: id, perm });
                Ok(vec![])
            }
            M::SetXattr(p, x, len, b, flags) => {
                let id = self.resolve(PATHS[*p])?;
                let xattrs = &mut self.meta.get_mut(&id).unwrap().xattrs;
                let exists = xattrs.contains_key(XATTRS[*x]);
                match (flags, exists) {
                    (1, true) => return Err(libc::EEXIST),
                    (2, false) => return Err(libc::ENODATA),
                    _ => {}
                }
                xattrs.insert(XATTRS[*x].to_string(), vec![*b; *len]);
                self.log.push(MOp::Xattr {
                    node: id,
                    name: XATTRS[*x].to_string(),
                    value: Some(vec![*b; *len]),
                });
                Ok(vec![])
            }
            M::RemoveXattr(p, x) => {
                let id = self.resolve(PATHS[*p])?;
                let xattrs = &mut self.meta.get_mut(&id).unwrap().xattrs;
                xattrs.remove(XATTRS[*x]).ok_or(libc::ENODATA)?;
                self.log.push(MOp::Xattr {
                    node: id,
                    name: XATTRS[*x].to_string(),
                    value: None,
                });
                Ok(vec![])
            }
            M::Unlink(p) => {
                let (parent, name) = self.parent(PATHS[*p])?;
                let id = *self.children(parent)?.get(&name).ok_or(libc::ENOENT)?;
                if self.is_dir(id) {
                    return Err(libc::EISDIR);
                }
                self.logged(MOp::Unlink {
                    parent,
                    name,
                    node: id,
                })
            }
            M::Rmdir(p) => {
                let (parent, name) = self.parent(PATHS[*p])?;
                let id = *self.children(parent)?.get(&name).ok_or(libc::ENOENT)?;
                if !self.is_dir(id) {
                    return Err(libc::ENOTDIR);
                }
                if !self.children(id)?.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
                self.logged(MOp::Unlink {
                    parent,
                    name,
                    node: id,
                })
            }
            M::Link(p, q) => {
                let id = self.resolve(PATHS[*p])?;
                let (parent, name) = self.parent(PATHS[*q])?;
                if self.volume(PATHS[*p])? != self.volume(Self::dir_path(PATHS[*q]))? {
                    return Err(libc::EXDEV);
                }
                if self.children(parent)?.contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                if self.is_dir(id) {
                    return Err(libc::EPERM);
                }
                self.logged(MOp::Link {
                    parent,
                    name,
                    node: id,
                })
            }
            M::Rename(p, q, flags) => {
                let (sp, sname) = self.parent(PATHS[*p])?;
                let (dp, dname) = self.parent(PATHS[*q])?;
                if self.volume(Self::dir_path(PATHS[*p]))?
                    != self.volume(Self::dir_path(PATHS[*q]))?
                {
                    return Err(libc::EXDEV);
                }
                let src = *self.children(sp)?.get(&sname).ok_or(libc::ENOENT)?;
                let dst = self.children(dp)?.get(&dname).copied();
                match (flags, dst) {
                    (1, Some(_)) => return Err(libc::EEXIST),
                    (2, None) => return Err(libc::ENOENT),
                    _ => {}
                }
                if dst == Some(src) {
                    // Both names are one node: rename(2) does nothing, and
                    // (as in the engine) no change is logged.
                    return Ok(vec![]);
                }
                // The rest of rename(2)'s checks are the replay's.
                let op = MOp::Rename {
                    parent: sp,
                    name: sname,
                    newparent: dp,
                    newname: dname,
                    exchange: *flags == 2,
                };
                self.replay(&op)?;
                self.log.push(op);
                Ok(vec![])
            }
            M::Share(p) => self.share(PATHS[*p]),
            M::Unshare(p) => self.unshare(PATHS[*p]),
            M::Reencrypt(p) => self.reencrypt(PATHS[*p]),
            M::Reopen | M::Crash | M::Gc | M::Switch { .. } => Ok(vec![]),
        }
    }
}

// ---------------------------------------------------------------- engine

async fn resolve(d: &Drive, path: &str) -> R<Ino> {
    lookup(d, path).await.map_err(|e| e.errno())
}

async fn parent(d: &Drive, path: &str) -> R<(Ino, String)> {
    match path.rsplit_once('/') {
        Some((dir, name)) => {
            let ino = resolve(d, dir).await?;
            if d.getattr(ino).await.map_err(|e| e.errno())?.kind != FileKind::Dir {
                return Err(libc::ENOTDIR);
            }
            Ok((ino, name.to_string()))
        }
        None => Ok((ROOT_INO, path.to_string())),
    }
}

/// The inode at `path` as open(2) with O_NOFOLLOW finds it: a symlink is
/// ELOOP (the kernel, not the engine, follows links).
async fn regular(d: &Drive, path: &str) -> R<Ino> {
    let ino = resolve(d, path).await?;
    match d.getattr(ino).await.map_err(|e| e.errno())?.kind {
        FileKind::Symlink => Err(libc::ELOOP),
        _ => Ok(ino),
    }
}

async fn run(d: &Drive, m: &M) -> R<Vec<u8>> {
    let e = |e: DriveError| e.errno();
    match m {
        M::Create(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            let (a, fh) = d
                .create(par, os(&name), 0o644, libc::O_RDWR, WHO)
                .await
                .map_err(e)?;
            d.release(a.ino, fh).await.map_err(e)?;
            Ok(vec![])
        }
        M::Mkdir(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            d.mkdir(par, os(&name), 0o755, WHO).await.map_err(e)?;
            Ok(vec![])
        }
        M::Write(p, off, len, b) => {
            let ino = regular(d, PATHS[*p]).await?;
            let fh = d.open(ino, libc::O_WRONLY).await.map_err(e)?;
            let r = d.write(ino, fh, *off, &vec![*b; *len]).await.map_err(e);
            d.release(ino, fh).await.map_err(e)?;
            assert_eq!(r?, *len as u32);
            Ok(vec![])
        }
        M::Truncate(p, size) => {
            let ino = regular(d, PATHS[*p]).await?;
            d.setattr(
                ino,
                None,
                SetAttr {
                    size: Some(*size),
                    ..Default::default()
                },
            )
            .await
            .map_err(e)?;
            Ok(vec![])
        }
        M::Read(p) => {
            let ino = regular(d, PATHS[*p]).await?;
            let fh = d.open(ino, libc::O_RDONLY).await.map_err(e)?;
            let r = read_through(d, ino, fh).await;
            d.release(ino, fh).await.map_err(e)?;
            r
        }
        M::Unlink(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            d.unlink(par, os(&name)).await.map_err(e).map(|_| vec![])
        }
        M::Rmdir(p) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            d.rmdir(par, os(&name)).await.map_err(e).map(|_| vec![])
        }
        M::Link(p, q) => {
            let ino = resolve(d, PATHS[*p]).await?;
            let (par, name) = parent(d, PATHS[*q]).await?;
            d.link(ino, par, os(&name)).await.map_err(e).map(|_| vec![])
        }
        M::Rename(p, q, f) => {
            let (sp, sname) = parent(d, PATHS[*p]).await?;
            let (dp, dname) = parent(d, PATHS[*q]).await?;
            let flags = RenameFlags {
                noreplace: *f == 1,
                exchange: *f == 2,
            };
            d.rename(sp, os(&sname), dp, os(&dname), flags)
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Symlink(p, t) => {
            let (par, name) = parent(d, PATHS[*p]).await?;
            let target = std::path::Path::new(TARGETS[*t]);
            d.symlink(par, os(&name), target, WHO)
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Chmod(p, m) => {
            let ino = resolve(d, PATHS[*p]).await?;
            let set = SetAttr {
                mode: Some(MODES[*m]),
                ..Default::default()
            };
            d.setattr(ino, None, set).await.map_err(e).map(|_| vec![])
        }
        M::SetXattr(p, x, len, b, flags) => {
            let ino = resolve(d, PATHS[*p]).await?;
            let how = match flags {
                1 => XattrSet::CreateOnly,
                2 => XattrSet::ReplaceOnly,
                _ => XattrSet::Any,
            };
            d.setxattr(ino, os(XATTRS[*x]), &vec![*b; *len], how)
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::RemoveXattr(p, x) => {
            let ino = resolve(d, PATHS[*p]).await?;
            d.removexattr(ino, os(XATTRS[*x]))
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Share(p) => {
            let ino = resolve(d, PATHS[*p]).await?;
            d.share_add(ino, writer().member(Role::Writer))
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Unshare(p) => {
            let ino = resolve(d, PATHS[*p]).await?;
            d.share_remove(ino, &writer().card_id)
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Reencrypt(p) => {
            let ino = resolve(d, PATHS[*p]).await?;
            d.share_reencrypt(ino, &|_, _| {})
                .await
                .map_err(e)
                .map(|_| vec![])
        }
        M::Reopen | M::Crash | M::Gc | M::Switch { .. } => {
            unreachable!("handled by the driver")
        }
        M::Hold(..) | M::WriteHeld(..) | M::ReadHeld(_) | M::Release(_) => {
            unreachable!("run_held")
        }
    }
}

/// The card folders are shared with.
fn writer() -> &'static Identity {
    static WRITER: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    WRITER.get_or_init(Identity::generate)
}

/// The engine's handles a sequence holds open, by slot.
type Held = [Option<(Ino, Fh)>; HELD];

/// Everything `fh` reads from offset 0 until a read returns nothing.
async fn read_through(d: &Drive, ino: Ino, fh: Fh) -> R<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let c = d
            .read(ino, fh, out.len() as u64, 128 * 1024)
            .await
            .map_err(|e| e.errno())?;
        if c.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&c);
    }
}

async fn run_held(d: &Drive, held: &mut Held, m: &M) -> R<Vec<u8>> {
    let e = |e: DriveError| e.errno();
    match m {
        M::Hold(p, k) => {
            if let Some((ino, fh)) = held[*k].take() {
                d.release(ino, fh).await.unwrap();
            }
            held[*k] = Some(match regular(d, PATHS[*p]).await {
                Err(libc::ENOENT) => {
                    let (par, name) = parent(d, PATHS[*p]).await?;
                    let (a, fh) = d
                        .create(par, os(&name), 0o644, libc::O_RDWR, WHO)
                        .await
                        .map_err(e)?;
                    (a.ino, fh)
                }
                Err(err) => return Err(err),
                Ok(ino) => (ino, d.open(ino, libc::O_RDWR).await.map_err(e)?),
            });
            Ok(vec![])
        }
        M::WriteHeld(k, off, len, b) => {
            let (ino, fh) = held[*k].ok_or(libc::EBADF)?;
            let n = d.write(ino, fh, *off, &vec![*b; *len]).await.map_err(e)?;
            assert_eq!(n, *len as u32);
            Ok(vec![])
        }
        M::ReadHeld(k) => {
            let (ino, fh) = held[*k].ok_or(libc::EBADF)?;
            read_through(d, ino, fh).await
        }
        M::Release(k) => {
            let (ino, fh) = held[*k].take().ok_or(libc::EBADF)?;
            d.release(ino, fh).await.map_err(e).map(|_| vec![])
        }
        _ => run(d, m).await,
    }
}

async fn release_all(d: &Drive, held: &mut Held) {
    for slot in held.iter_mut() {
        if let Some((ino, fh)) = slot.take() {
            d.release(ino, fh).await.unwrap();
        }
    }
}

/// One path of a tree as compared: its kind with its content (a file's
/// bytes, a symlink's target), permission bits and extended attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    path: String,
    content: Content,
    perm: u16,
    xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Content {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
}

/// The whole tree, by path, for comparison.
fn model_tree(m: &Model) -> Vec<Entry> {
    let mut out = Vec::new();
    fn walk(m: &Model, id: u64, prefix: &str, out: &mut Vec<Entry>) {
        if let Kind::Dir(c) = &m.nodes[&id] {
            for (name, child) in c {
                let path = format!("{prefix}{name}");
                let meta = &m.meta[child];
                let content = match &m.nodes[child] {
                    Kind::File(d) => Content::File(d.clone()),
                    Kind::Symlink(t) => Content::Symlink(t.as_bytes().to_vec()),
                    Kind::Dir(_) => Content::Dir,
                };
                out.push(Entry {
                    path: path.clone(),
                    content,
                    perm: meta.perm,
                    xattrs: meta.xattrs.clone().into_iter().collect(),
                });
                if matches!(m.nodes[child], Kind::Dir(_)) {
                    walk(m, *child, &format!("{path}/"), out);
                }
            }
        }
    }
    walk(m, 0, "", &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

async fn engine_tree(d: &Drive) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for name in names(d, dir).await {
            let path = format!("{prefix}{name}");
            let a = d.lookup(dir, os(&name)).await.unwrap();
            let content = match a.kind {
                FileKind::Dir => {
                    stack.push((a.ino, format!("{path}/")));
                    Content::Dir
                }
                FileKind::Symlink => Content::Symlink(d.readlink(a.ino).await.unwrap()),
                _ => Content::File(read_all(d, a.ino).await),
            };
            let mut xattrs = Vec::new();
            for x in d.listxattr(a.ino).await.unwrap() {
                let value = d.getxattr(a.ino, &x).await.unwrap();
                xattrs.push((x.to_string_lossy().into_owned(), value));
            }
            xattrs.sort();
            out.push(Entry {
                path,
                content,
                perm: a.perm,
                xattrs,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn summary(t: &[Entry]) -> Vec<String> {
    t.iter()
        .map(|e| {
            let content = match &e.content {
                Content::Dir => "dir".to_string(),
                Content::File(d) => short(&Ok(d.clone())),
                Content::Symlink(t) => format!("-> {}", String::from_utf8_lossy(t)),
            };
            let xattrs: Vec<String> = (e.xattrs.iter())
                .map(|(n, v)| format!("{n}={}", v.len()))
                .collect();
            format!("{}:{content} {:o} {xattrs:?}", e.path, e.perm)
        })
        .collect()
}

fn short(r: &R<Vec<u8>>) -> String {
    match r {
        Ok(v) => format!(
            "Ok({} bytes, sum {})",
            v.len(),
            v.iter().map(|b| *b as u64).sum::<u64>()
        ),
        Err(e) => format!("Err({e})"),
    }
}

/// Syncs, retrying while injected store failures make it fail.
async fn sync_retry(d: &Drive) {
    for _ in 0..100 {
        if d.sync(&|_, _| {}).await.is_ok() {
            return;
        }
    }
    panic!("sync kept failing");
}

pub async fn check(ops: Vec<M>) {
    check_on(Env::new().await, ops, 0).await
}

/// Runs `ops`; with `fail_every` > 0 every Nth store put fails
/// (transiently), through the fault-injecting wrapper.
pub async fn check_on(mut env: Env, ops: Vec<M>, fail_every: u64) {
    let fault = Arc::new(FaultStore::new(
        env.store.clone(),
        FaultConfig {
            fail_every_nth_put: fail_every,
            ..Default::default()
        },
    ));
    env.store = fault.clone();
    let mut d = env.open().await;
    let mut model = Model::new();
    let mut held: Held = [None; HELD];
    let mut opens = 0;
    let mut cache = "cache".to_string();
    for (i, m) in ops.iter().enumerate() {
        if matches!(m, M::Reopen | M::Gc | M::Crash | M::Share(_)) {
            // Handles are closed first: what they wrote is then as closed
            // as any other write (and survives a crash).
            release_all(&d, &mut held).await;
            model.release_all();
        }
        match m {
            M::Reopen => {
                sync_retry(&d).await;
                d.shutdown().await.unwrap();
                opens += 1;
                // Alternate between a fresh cache and the first one.
                cache = if opens % 2 == 0 {
                    "cache".to_string()
                } else {
                    format!("fresh{opens}")
                };
                d = env.open_with(&cache).await;
            }
            M::Gc => {
                let now = GcOptions {
                    grace: std::time::Duration::ZERO,
                    keep: std::time::Duration::ZERO,
                    ..Default::default()
                };
                d.gc(&now, &|_, _| {}).await.unwrap();
                sync_retry(&d).await;
                d.shutdown().await.unwrap();
                opens += 1;
                cache = format!("after-gc{opens}");
                d = env.open_with(&cache).await;
            }
            M::Crash => {
                // The process "dies" without fsync and without uploading:
                // every op above was closed, so all of it survives.
                d.abandon().await;
                d = env.open_with(&cache).await;
            }
            _ => {
                let want = model.apply(m);
                // A share retries its own puts (injected failures too).
                let got = run_held(&d, &mut held, m).await;
                assert_eq!(short(&got), short(&want), "op {i} {m:?}");
                assert_eq!(got, want, "op {i} {m:?}");
                continue;
            }
        }
        let mt = model_tree(&model);
        let et = engine_tree(&d).await;
        assert_eq!(
            et.len(),
            mt.len(),
            "after op {i} {m:?}: {:?} vs {:?}",
            et.iter().map(|x| &x.path).collect::<Vec<_>>(),
            mt.iter().map(|x| &x.path).collect::<Vec<_>>()
        );
        assert!(
            et == mt,
            "tree differs after op {i} {m:?}: engine {:?} model {:?}",
            summary(&et),
            summary(&mt)
        );
    }
    release_all(&d, &mut held).await;
    let mt = model_tree(&model);
    let et = engine_tree(&d).await;
    assert!(
        et == mt,
        "final tree differs: engine {:?} model {:?}",
        summary(&et),
        summary(&mt)
    );
    sync_retry(&d).await;
    d.shutdown().await.unwrap();
    // A brand-new client sees the same final tree.
    let d2 = env.open_with("final").await;
    assert!(
        engine_tree(&d2).await == mt,
        "tree differs for a new client"
    );
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
