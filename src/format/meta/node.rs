//! Node records: everything about one inode ([`Node`]), the block
//! versions of a file ([`BlockRef`]), directory entries ([`DirLink`]) and
//! timestamps ([`Time`]), as carried in snapshots and `Create` ops.
//!
//! Invariants: decoders refuse unknown node kinds, out-of-range
//! nanoseconds, block lengths above `BLOCK_SIZE`, volume links that are
//! not exactly a 16-byte volume id with no blocks and no entries, and
//! special files (FIFO, socket, devices) with a size, blocks, entries, or
//! a target other than their device number (8 bytes for devices, empty
//! otherwise); every count is checked against the bytes left before items
//! are read.

use super::BlockMap;
use super::name::Name;
use super::sparse::Sparse;
use crate::format::content::{BLOCK_SIZE, PACK_LIMIT, Place, sealed_len};
use crate::format::crypto::random_array;
use crate::format::wire::{FormatError, Reader, Writer};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The random key of one stored block version (docs/FORMAT.md, "content
/// block"), carried in its [`BlockRef`]. Zeroized on drop, so the copies
/// block refs make (trees, dirty buffers, the journal) do not outlive their
/// use; `Debug` prints no key bytes.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct BlockKey([u8; 32]);

impl BlockKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(random_array())
    }

    /// The key bytes. Callers must not copy them into unprotected storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for BlockKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::ops::Deref for BlockKey {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockKey(..)")
    }
}

/// Seconds and nanoseconds since the Unix epoch. Packed to 12 bytes (a
/// node holds four, and every node is resident).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[repr(C, packed(4))]
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

/// One stored block version: the object's id, its plaintext length and
/// the random key it is sealed under. Everything needed to read the object
/// is here, so the same ref can name the block from another file (a clone
/// copy) without re-encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub id: [u8; 16],
    /// Plaintext length (1..=BLOCK_SIZE); bytes past it up to the file
    /// size read as zeros.
    pub len: u32,
    /// The keyring generation of the volume when this block version was
    /// sealed, i.e. the first generation whose metadata held its key (what
    /// re-encryption looks for; not part of any key derivation).
    pub epoch: u32,
    /// For a block version packed with others into one object (`id` then
    /// names that pack): the byte offset of its first chunk there. `None`:
    /// the object `id` holds this block version alone.
    pub packed: Option<u32>,
    /// The block version's own random key.
    pub key: BlockKey,
}

/// The bit of the encoded `len` that says an offset into a pack follows
/// the key (lengths are at most `BLOCK_SIZE`, far below it).
const LEN_PACKED: u32 = 1 << 31;

impl BlockRef {
    /// A new block ref with a fresh random key (sealed at `epoch`).
    pub fn fresh(len: u32, epoch: u32) -> Self {
        Self {
            id: random_array(),
            len,
            epoch,
            packed: None,
            key: BlockKey::random(),
        }
    }

    /// Where this block version's sealed bytes lie (what its chunks bind).
    pub fn place(&self) -> Place {
        Place {
            id: self.id,
            packed: self.packed,
        }
    }

    /// Encoded size of this block ref with its index.
    pub fn encoded_len(&self) -> usize {
        BLOCK_REF_LEN + if self.packed.is_some() { 4 } else { 0 }
    }

    pub(super) fn write(&self, w: &mut Writer, index: u64) {
        let flag = if self.packed.is_some() { LEN_PACKED } else { 0 };
        w.u64(index)
            .raw(&self.id)
            .u32(self.len | flag)
            .u32(self.epoch)
            .raw(self.key.as_bytes());
        if let Some(offset) = self.packed {
            w.u32(offset);
        }
    }
    /// Reads `(index, block)`; a length above [`BLOCK_SIZE`] is refused
    /// (a reader would otherwise size buffers from it), and so is a packed
    /// block version ending past [`PACK_LIMIT`].
    pub(super) fn read(r: &mut Reader<'_>) -> Result<(u64, Self), FormatError> {
        let index = r.u64()?;
        let id = r.array()?;
        let len = r.u32()?;
        let mut b = Self {
            id,
            len: len & !LEN_PACKED,
            epoch: r.u32()?,
            packed: None,
            key: BlockKey(r.array()?),
        };
        if b.len as usize > BLOCK_SIZE {
            return Err(FormatError::Invalid("block length"));
        }
        if len & LEN_PACKED != 0 {
            let offset = r.u32()?;
            if u64::from(offset) + sealed_len(b.len as usize) as u64 > PACK_LIMIT {
                return Err(FormatError::Invalid("packed block offset"));
            }
            b.packed = Some(offset);
        }
        Ok((index, b))
    }
}
/// Encoded size of one block ref with its index, when it is not packed
/// (the smallest; a packed one has a 4-byte offset more).
pub(super) const BLOCK_REF_LEN: usize = 8 + 16 + 4 + 4 + 32;
/// Encoded size of the smallest node (no target, blocks, xattrs or
/// entries): the bound on a count of nodes.
pub(super) const NODE_MIN_LEN: usize = 8 + 1 + 2 + 3 * 4 + 4 * 12 + 8 + 4 + 8 + 4 + 4 + 8 + 8 + 4;

/// Node kinds.
pub const KIND_FILE: u8 = 1;
pub const KIND_DIR: u8 = 2;
pub const KIND_SYMLINK: u8 = 3;
/// A link to another volume (a shared folder): `target` holds the 16-byte
/// volume id; no blocks, no entries.
pub const KIND_VOLUME: u8 = 4;
/// Special files: the drive stores only their identity (kind, mode,
/// owner, times, xattrs); their I/O is the kernel's. Devices carry their
/// device number (`rdev`, u64 little-endian) as the 8-byte `target`; a
/// FIFO or socket has an empty target. None has a size, blocks or entries.
pub const KIND_FIFO: u8 = 5;
pub const KIND_SOCKET: u8 = 6;
pub const KIND_CHAR_DEV: u8 = 7;
pub const KIND_BLOCK_DEV: u8 = 8;

/// Whether `kind` is a special file (FIFO, socket, character or block device).
pub fn is_special(kind: u8) -> bool {
    (KIND_FIFO..=KIND_BLOCK_DEV).contains(&kind)
}

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
    pub target: Sparse<Vec<u8>>,
    /// Changes on every content change (conflict detection).
    pub version: u64,
    pub blocks: BlockMap,
    pub xattrs: Sparse<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Directories: parent node (root: itself), entries, next cookie.
    pub parent: u64,
    pub entries: Sparse<BTreeMap<Name, DirLink>>,
    pub next_cookie: u64,
}

impl Node {
    /// The length of [`Node::write`]'s output, without writing it.
    pub fn encoded_len(&self) -> usize {
        NODE_MIN_LEN
            + self.target.len()
            + self
                .blocks
                .values()
                .map(BlockRef::encoded_len)
                .sum::<usize>()
            + self
                .xattrs
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>()
            + self
                .entries
                .keys()
                .map(|name| 20 + name.len())
                .sum::<usize>()
    }

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
        w.u64(self.size).bytes(&self.target).u64(self.version);
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
            target: r.bytes()?.to_vec().into(),
            version: r.u64()?,
            ..Default::default()
        };
        if !(KIND_FILE..=KIND_BLOCK_DEV).contains(&n.kind) {
            return Err(FormatError::Invalid("node kind"));
        }
        // Collected, so the map holds exactly its refs: growing by
        // inserts would keep room for 4 (288 bytes for a file of one block).
        n.blocks = (0..r.count(BLOCK_REF_LEN)?)
            .map(|_| BlockRef::read(r))
            .collect::<Result<BlockMap, _>>()?;
        for _ in 0..r.count(8)? {
            let k = r.bytes()?.to_vec();
            n.xattrs.insert(k, r.bytes()?.to_vec());
        }
        n.parent = r.u64()?;
        n.next_cookie = r.u64()?;
        let count = r.count(20)?;
        if count > 0 {
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let name = Name::from(r.bytes()?);
                let link = DirLink {
                    node: r.u64()?,
                    cookie: r.u64()?,
                };
                entries.push((name, link));
            }
            // Built in one pass (entries are encoded in name order): full
            // B-tree leaves, where inserting one by one leaves them about
            // half empty. A repeated name keeps its last link, as inserting
            // did.
            n.entries = BTreeMap::from_iter(entries).into();
        }
        if n.kind == KIND_VOLUME
            && (n.target.len() != 16 || !n.blocks.is_empty() || !n.entries.is_empty())
        {
            return Err(FormatError::Invalid("volume link"));
        }
        if is_special(n.kind) {
            let target_len = match n.kind {
                KIND_CHAR_DEV | KIND_BLOCK_DEV => 8,
                _ => 0,
            };
            if n.target.len() != target_len
                || n.size != 0
                || !n.blocks.is_empty()
                || !n.entries.is_empty()
            {
                return Err(FormatError::Invalid("special file"));
            }
        }
        Ok(n)
    }

    /// The device number of a device node (0 for any other kind).
    pub fn rdev(&self) -> u64 {
        match self.kind {
            KIND_CHAR_DEV | KIND_BLOCK_DEV => self
                .target
                .as_slice()
                .try_into()
                .map(u64::from_le_bytes)
                .unwrap_or(0),
            _ => 0,
        }
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
    fn block_keys_never_print_their_bytes() {
        let b = BlockRef {
            id: [1; 16],
            len: 3,
            epoch: 0,
            packed: None,
            key: BlockKey::from([0xab; 32]),
        };
        let n = Node {
            kind: KIND_FILE,
            blocks: [(0, b.clone())].into(),
            ..Default::default()
        };
        let shown = format!("{n:?} {:?} {b:?}", b.key);
        assert!(shown.contains("BlockKey(..)"), "{shown}");
        for leak in ["171", "0xab", "ab, ab", "abab"] {
            assert!(!shown.contains(leak), "key bytes in {shown}");
        }
        assert_eq!(n.clone().blocks[&0].key.as_bytes(), &[0xab; 32]);
    }

    /// A decoded node holds exactly its refs and its names in place: a
    /// file of one block does not keep room for four, a short name has no
    /// allocation of its own.
    #[test]
    fn decoded_nodes_hold_no_spare_room() {
        let b = BlockRef::fresh(3, 0);
        let file = Node {
            kind: KIND_FILE,
            blocks: [(0, b)].into(),
            ..Default::default()
        };
        let dir = Node {
            kind: KIND_DIR,
            entries: BTreeMap::from([(Name::from(b"f1"), DirLink { node: 5, cookie: 1 })]).into(),
            ..Default::default()
        };
        for n in [file, dir] {
            let mut w = Writer::new();
            n.write(&mut w);
            let back = Node::read(&mut Reader::new(&w.0)).unwrap();
            assert_eq!(back, n);
            assert_eq!(back.blocks.capacity(), back.blocks.len().max(1));
            assert!(back.entries.keys().all(Name::is_inline));
        }
    }

    #[test]
    fn block_ref_known_answer() {
        let b = BlockRef {
            id: [0x11; 16],
            len: 0x0102,
            epoch: 3,
            packed: None,
            key: BlockKey::from([0xee; 32]),
        };
        let mut w = Writer::new();
        b.write(&mut w, 7);
        assert_eq!(w.0.len(), BLOCK_REF_LEN);
        assert_eq!(
            crate::format::hex::encode(&w.0),
            format!(
                "0700000000000000{}0201000003000000{}",
                "11".repeat(16),
                "ee".repeat(32)
            )
        );
        assert_eq!(BlockRef::read(&mut Reader::new(&w.0)), Ok((7, b)));
    }

    /// A packed block ref: the length's top bit set, the offset after the
    /// key; an unpacked ref's bytes are unchanged (drives written before
    /// packs read as before).
    #[test]
    fn packed_block_ref_known_answer_and_checks() {
        let b = BlockRef {
            id: [0x11; 16],
            len: 0x0102,
            epoch: 3,
            packed: Some(0x0004_0010),
            key: BlockKey::from([0xee; 32]),
        };
        let mut w = Writer::new();
        b.write(&mut w, 7);
        assert_eq!(w.0.len(), b.encoded_len());
        assert_eq!(w.0.len(), BLOCK_REF_LEN + 4);
        assert_eq!(
            crate::format::hex::encode(&w.0),
            format!(
                "0700000000000000{}0201008003000000{}10000400",
                "11".repeat(16),
                "ee".repeat(32)
            )
        );
        assert_eq!(BlockRef::read(&mut Reader::new(&w.0)), Ok((7, b.clone())));
        assert_eq!(b.place().start(), 0x0004_0010);
        // In a node: the node's encoded length counts the offset.
        let n = Node {
            kind: KIND_FILE,
            size: 0x0102,
            blocks: [(0, b.clone())].into(),
            ..Default::default()
        };
        let mut w = Writer::new();
        n.write(&mut w);
        assert_eq!(n.encoded_len(), w.0.len());
        assert_eq!(Node::read(&mut Reader::new(&w.0)), Ok(n));
        // A packed block version ending past the pack limit is refused.
        let far = BlockRef {
            packed: Some((PACK_LIMIT - 100) as u32),
            ..b.clone()
        };
        let mut w = Writer::new();
        far.write(&mut w, 0);
        assert_eq!(
            BlockRef::read(&mut Reader::new(&w.0)),
            Err(FormatError::Invalid("packed block offset"))
        );
        // The flag without its offset: truncated.
        let mut w = Writer::new();
        b.write(&mut w, 0);
        let cut = &w.0[..w.0.len() - 4];
        assert_eq!(
            BlockRef::read(&mut Reader::new(cut)),
            Err(FormatError::Truncated)
        );
        // Other high bits of the length stay refused.
        let mut w = Writer::new();
        BlockRef { packed: None, ..b }.write(&mut w, 0);
        w.0[8 + 16 + 2] = 0x40;
        assert_eq!(
            BlockRef::read(&mut Reader::new(&w.0)),
            Err(FormatError::Invalid("block length"))
        );
    }

    #[test]
    fn volume_link_node_round_trip_and_checks() {
        let n = Node {
            id: 9,
            kind: KIND_VOLUME,
            perm: 0o755,
            nlink: 2,
            target: vec![7; 16].into(),
            ..Default::default()
        };
        let mut w = Writer::new();
        n.write(&mut w);
        let enc = w.into_vec();
        let back = Node::read(&mut Reader::new(&enc)).unwrap();
        assert_eq!(back, n);
        assert_eq!(back.linked_volume(), Some([7; 16]));
        let hex = crate::format::hex::encode(&sha256(&enc));
        assert_eq!(
            hex,
            "3fdc765bfaabf8cec5f2aedc1c420dba1c25ef87b750ef153d0ad3305fa7ffe3"
        );
        for bad in [
            Node {
                target: vec![7; 15].into(),
                ..n.clone()
            },
            Node {
                entries: BTreeMap::from([(Name::from(b"x"), DirLink { node: 1, cookie: 1 })])
                    .into(),
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
        Node { kind: 9, ..n }.write(&mut w);
        assert_eq!(
            Node::read(&mut Reader::new(&w.0)),
            Err(FormatError::Invalid("node kind"))
        );
    }

    #[test]
    fn special_file_nodes_round_trip_known_answer_and_checks() {
        let dev = Node {
            id: 12,
            kind: KIND_CHAR_DEV,
            perm: 0o640,
            uid: 1000,
            gid: 5,
            nlink: 1,
            target: 0x0103u64.to_le_bytes().to_vec().into(),
            ..Default::default()
        };
        let fifo = Node {
            id: 13,
            kind: KIND_FIFO,
            perm: 0o600,
            nlink: 1,
            ..Default::default()
        };
        let mut w = Writer::new();
        dev.write(&mut w);
        fifo.write(&mut w);
        let enc = w.into_vec();
        let mut r = Reader::new(&enc);
        assert_eq!(Node::read(&mut r).unwrap(), dev);
        assert_eq!(Node::read(&mut r).unwrap(), fifo);
        assert_eq!(dev.rdev(), 0x0103);
        assert_eq!(fifo.rdev(), 0);
        let hex: String = sha256(&enc).iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            "a2477c524f89fa820b6bdb18f329aee6edeeb0026eb298361f4365a4f7288dd2"
        );
        for bad in [
            Node {
                target: vec![1; 4].into(),
                ..dev.clone()
            },
            Node {
                target: vec![1; 8].into(),
                ..fifo.clone()
            },
            Node {
                size: 1,
                ..fifo.clone()
            },
            Node {
                kind: KIND_SOCKET,
                blocks: [(
                    0,
                    BlockRef {
                        id: [1; 16],
                        len: 1,
                        epoch: 0,
                        packed: None,
                        key: BlockKey::default(),
                    },
                )]
                .into(),
                ..fifo.clone()
            },
        ] {
            let mut w = Writer::new();
            bad.write(&mut w);
            assert_eq!(
                Node::read(&mut Reader::new(&w.0)),
                Err(FormatError::Invalid("special file"))
            );
        }
    }
}
