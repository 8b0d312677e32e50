//! Node records: everything about one inode ([`Node`]), the block
//! versions of a file ([`BlockRef`]), directory entries ([`DirLink`]) and
//! timestamps ([`Time`]), as carried in snapshots and `Create` ops.
//!
//! Invariants: decoders refuse unknown node kinds, out-of-range
//! nanoseconds, and volume links that are not exactly a 16-byte volume id
//! with no blocks and no entries.

use crate::format::crypto::random_array;
use crate::format::wire::{FormatError, Reader, Writer};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A file's content key (docs/FORMAT.md, "content block"). Zeroized on
/// drop, so the copies nodes make (trees, dirty buffers, the journal) do
/// not outlive their use; `Debug` prints no key bytes. The default (all
/// zeros) is what nodes without content (directories, links) carry.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; 32]);

impl FileKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(random_array())
    }

    /// The key bytes. Callers must not copy them into unprotected storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for FileKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::ops::Deref for FileKey {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(..)")
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    pub(super) fn write(&self, w: &mut Writer) {
        w.i64(self.secs).u32(self.nanos);
    }
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let t = Self {
            secs: r.i64()?,
            nanos: r.u32()?,
        };
        if t.nanos >= 1_000_000_000 {
            return Err(FormatError::Invalid("nanoseconds"));
        }
        Ok(t)
    }
}

/// One stored block version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub id: [u8; 16],
    /// Plaintext length (1..=BLOCK_SIZE); bytes past it up to the file
    /// size read as zeros.
    pub len: u32,
    /// The volume generation whose key the block key is derived with;
    /// 0 = the plain file key (see docs/FORMAT.md, "content block").
    pub epoch: u32,
}

impl BlockRef {
    pub(super) fn write(&self, w: &mut Writer, index: u64) {
        w.u64(index).raw(&self.id).u32(self.len).u32(self.epoch);
    }
    /// Reads `(index, block)`.
    pub(super) fn read(r: &mut Reader<'_>) -> Result<(u64, Self), FormatError> {
        Ok((
            r.u64()?,
            Self {
                id: r.array()?,
                len: r.u32()?,
                epoch: r.u32()?,
            },
        ))
    }
}
/// Encoded size of one block ref with its index.
pub(super) const BLOCK_REF_LEN: usize = 8 + 16 + 4 + 4;

/// Node kinds.
pub const KIND_FILE: u8 = 1;
pub const KIND_DIR: u8 = 2;
pub const KIND_SYMLINK: u8 = 3;
/// A link to another volume (a shared folder): `target` holds the 16-byte
/// volume id; no blocks, no entries.
pub const KIND_VOLUME: u8 = 4;

/// A directory entry: child node and its stable readdir cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirLink {
    pub node: u64,
    pub cookie: u64,
}

/// Everything about one inode, as carried in snapshots and `Create` ops.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub id: u64,
    pub kind: u8,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub crtime: Time,
    pub size: u64,
    /// Symlink target; volume link: the volume id.
    pub target: Vec<u8>,
    /// Content identity bound into every chunk, and the per-file key.
    pub file_id: [u8; 16],
    pub file_key: FileKey,
    /// Changes on every content change (conflict detection).
    pub version: u64,
    pub blocks: BTreeMap<u64, BlockRef>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Directories: parent node (root: itself), entries, next cookie.
    pub parent: u64,
    pub entries: BTreeMap<Vec<u8>, DirLink>,
    pub next_cookie: u64,
}

impl Node {
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.id)
            .u8(self.kind)
            .u16(self.perm)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.nlink);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            t.write(w);
        }
        w.u64(self.size)
            .bytes(&self.target)
            .raw(&self.file_id)
            .raw(self.file_key.as_bytes())
            .u64(self.version);
        w.u32(self.blocks.len() as u32);
        for (i, b) in &self.blocks {
            b.write(w, *i);
        }
        w.u32(self.xattrs.len() as u32);
        for (k, v) in &self.xattrs {
            w.bytes(k).bytes(v);
        }
        w.u64(self.parent)
            .u64(self.next_cookie)
            .u32(self.entries.len() as u32);
        for (name, l) in &self.entries {
            w.bytes(name).u64(l.node).u64(l.cookie);
        }
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let mut n = Node {
            id: r.u64()?,
            kind: r.u8()?,
            perm: r.u16()?,
            uid: r.u32()?,
            gid: r.u32()?,
            nlink: r.u32()?,
            atime: Time::read(r)?,
            mtime: Time::read(r)?,
            ctime: Time::read(r)?,
            crtime: Time::read(r)?,
            size: r.u64()?,
            target: r.bytes()?.to_vec(),
            file_id: r.array()?,
            file_key: FileKey(r.array()?),
            version: r.u64()?,
            ..Default::default()
        };
        if !(KIND_FILE..=KIND_VOLUME).contains(&n.kind) {
            return Err(FormatError::Invalid("node kind"));
        }
        for _ in 0..r.count(BLOCK_REF_LEN)? {
            let (i, b) = BlockRef::read(r)?;
            n.blocks.insert(i, b);
        }
        for _ in 0..r.count(8)? {
            let k = r.bytes()?.to_vec();
            n.xattrs.insert(k, r.bytes()?.to_vec());
        }
        n.parent = r.u64()?;
        n.next_cookie = r.u64()?;
        for _ in 0..r.count(20)? {
            let name = r.bytes()?.to_vec();
            n.entries.insert(
                name,
                DirLink {
                    node: r.u64()?,
                    cookie: r.u64()?,
                },
            );
        }
        if n.kind == KIND_VOLUME
            && (n.target.len() != 16 || !n.blocks.is_empty() || !n.entries.is_empty())
        {
            return Err(FormatError::Invalid("volume link"));
        }
        Ok(n)
    }

    /// The volume a `KIND_VOLUME` node links to.
    pub fn linked_volume(&self) -> Option<[u8; 16]> {
        if self.kind != KIND_VOLUME {
            return None;
        }
        self.target.as_slice().try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sha256;
    use super::*;

    #[test]
    fn file_keys_never_print_their_bytes() {
        let n = Node {
            file_key: FileKey::from([0xab; 32]),
            ..Default::default()
        };
        let shown = format!("{n:?} {:?}", n.file_key);
        assert!(shown.contains("FileKey(..)"), "{shown}");
        for leak in ["171", "0xab", "ab, ab", "abab"] {
            assert!(!shown.contains(leak), "key bytes in {shown}");
        }
        assert_eq!(n.clone().file_key.as_bytes(), &[0xab; 32]);
    }

    #[test]
    fn volume_link_node_round_trip_and_checks() {
        let n = Node {
            id: 9,
            kind: KIND_VOLUME,
            perm: 0o755,
            nlink: 2,
            target: vec![7; 16],
            ..Default::default()
        };
        let mut w = Writer::new();
        n.write(&mut w);
        let enc = w.into_vec();
        let back = Node::read(&mut Reader::new(&enc)).unwrap();
        assert_eq!(back, n);
        assert_eq!(back.linked_volume(), Some([7; 16]));
        let hex: String = sha256(&enc).iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            "46f1c63dfbf1c7b9b64a4e7d0f783a470396f4e78d67a42e98b8c27653587834"
        );
        for bad in [
            Node {
                target: vec![7; 15],
                ..n.clone()
            },
            Node {
                entries: [(b"x".to_vec(), DirLink { node: 1, cookie: 1 })].into(),
                ..n.clone()
            },
        ] {
            let mut w = Writer::new();
            bad.write(&mut w);
            assert_eq!(
                Node::read(&mut Reader::new(&w.0)),
                Err(FormatError::Invalid("volume link"))
            );
        }
        let mut w = Writer::new();
        Node { kind: 5, ..n }.write(&mut w);
        assert_eq!(
            Node::read(&mut Reader::new(&w.0)),
            Err(FormatError::Invalid("node kind"))
        );
    }
}
