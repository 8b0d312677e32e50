//! Metadata changes and the payloads that carry them: [`Op`] (one change
//! to the tree), [`Batch`] (the decrypted payload of a log entry) and
//! [`SnapshotBody`] (the content of a checkpoint as loaded).
//!
//! Invariants: applying ops in log order to a snapshot gives every client
//! the same tree; decoders refuse unknown op and option tags, counts
//! larger than the bytes left, and trailing bytes.

use super::node::{BLOCK_REF_LEN, BlockRef, Node, Time};
use crate::format::wire::{FormatError, Reader, Writer};
use std::collections::BTreeMap;

/// Attribute changes carried by [`Op::SetAttr`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttrChange {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Time>,
    pub mtime: Option<Time>,
    pub ctime: Option<Time>,
}

/// One metadata change. Applying a list of ops in log order to a snapshot
/// gives every client the same tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Adds `node` (fresh id) and links it as `parent/name`.
    Create {
        parent: u64,
        name: Vec<u8>,
        node: Box<Node>,
    },
    /// Adds another name for an existing non-directory node.
    Link {
        parent: u64,
        name: Vec<u8>,
        node: u64,
        ctime: Time,
    },
    /// Removes `parent/name`; a node with no names left is deleted.
    Unlink {
        parent: u64,
        name: Vec<u8>,
        node: u64,
        time: Time,
    },
    /// Moves `parent/name` to `newparent/newname` (replacing, or swapping
    /// with `exchange`).
    Rename {
        parent: u64,
        name: Vec<u8>,
        newparent: u64,
        newname: Vec<u8>,
        exchange: bool,
        time: Time,
    },
    SetAttr {
        node: u64,
        change: AttrChange,
    },
    /// Content change from version `base` to `version`: blocks at or past
    /// `drop_from` are removed, then `blocks` are set, then size is set.
    SetContent {
        node: u64,
        base: u64,
        version: u64,
        size: u64,
        drop_from: u64,
        blocks: Vec<(u64, BlockRef)>,
        mtime: Time,
    },
    SetXattr {
        node: u64,
        name: Vec<u8>,
        value: Option<Vec<u8>>,
        ctime: Time,
    },
    /// The volume switched to keyring `generation` (no tree change):
    /// entries from here on are sealed under it.
    Rotate {
        generation: u32,
    },
}

fn opt_u32(w: &mut Writer, v: Option<u32>) {
    match v {
        Some(x) => w.u8(1).u32(x),
        None => w.u8(0),
    };
}
fn read_opt_u32(r: &mut Reader<'_>) -> Result<Option<u32>, FormatError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u32()?)),
        _ => Err(FormatError::Invalid("option tag")),
    }
}
fn opt_time(w: &mut Writer, v: Option<Time>) {
    match v {
        Some(t) => {
            w.u8(1);
            t.write(w);
        }
        None => {
            w.u8(0);
        }
    }
}
fn read_opt_time(r: &mut Reader<'_>) -> Result<Option<Time>, FormatError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Time::read(r)?)),
        _ => Err(FormatError::Invalid("option tag")),
    }
}

impl Op {
    pub fn write(&self, w: &mut Writer) {
        match self {
            Op::Create { parent, name, node } => {
                w.u8(1).u64(*parent).bytes(name);
                node.write(w);
            }
            Op::Link {
                parent,
                name,
                node,
                ctime,
            } => {
                w.u8(2).u64(*parent).bytes(name).u64(*node);
                ctime.write(w);
            }
            Op::Unlink {
                parent,
                name,
                node,
                time,
            } => {
                w.u8(3).u64(*parent).bytes(name).u64(*node);
                time.write(w);
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
                time,
            } => {
                w.u8(4)
                    .u64(*parent)
                    .bytes(name)
                    .u64(*newparent)
                    .bytes(newname)
                    .u8(*exchange as u8);
                time.write(w);
            }
            Op::SetAttr { node, change } => {
                w.u8(5).u64(*node);
                opt_u32(w, change.perm.map(u32::from));
                opt_u32(w, change.uid);
                opt_u32(w, change.gid);
                opt_time(w, change.atime);
                opt_time(w, change.mtime);
                opt_time(w, change.ctime);
            }
            Op::SetContent {
                node,
                base,
                version,
                size,
                drop_from,
                blocks,
                mtime,
            } => {
                w.u8(6)
                    .u64(*node)
                    .u64(*base)
                    .u64(*version)
                    .u64(*size)
                    .u64(*drop_from);
                w.u32(blocks.len() as u32);
                for (i, b) in blocks {
                    b.write(w, *i);
                }
                mtime.write(w);
            }
            Op::SetXattr {
                node,
                name,
                value,
                ctime,
            } => {
                w.u8(7).u64(*node).bytes(name);
                match value {
                    Some(v) => w.u8(1).bytes(v),
                    None => w.u8(0),
                };
                ctime.write(w);
            }
            Op::Rotate { generation } => {
                w.u8(8).u32(*generation);
            }
        }
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        Ok(match r.u8()? {
            1 => Op::Create {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                node: Box::new(Node::read(r)?),
            },
            2 => Op::Link {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                node: r.u64()?,
                ctime: Time::read(r)?,
            },
            3 => Op::Unlink {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                node: r.u64()?,
                time: Time::read(r)?,
            },
            4 => Op::Rename {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                newparent: r.u64()?,
                newname: r.bytes()?.to_vec(),
                exchange: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(FormatError::Invalid("bool")),
                },
                time: Time::read(r)?,
            },
            5 => Op::SetAttr {
                node: r.u64()?,
                change: AttrChange {
                    perm: read_opt_u32(r)?
                        .map(|p| u16::try_from(p).map_err(|_| FormatError::Invalid("perm")))
                        .transpose()?,
                    uid: read_opt_u32(r)?,
                    gid: read_opt_u32(r)?,
                    atime: read_opt_time(r)?,
                    mtime: read_opt_time(r)?,
                    ctime: read_opt_time(r)?,
                },
            },
            6 => {
                let node = r.u64()?;
                let base = r.u64()?;
                let version = r.u64()?;
                let size = r.u64()?;
                let drop_from = r.u64()?;
                let n = r.count(BLOCK_REF_LEN)?;
                let blocks = (0..n)
                    .map(|_| BlockRef::read(r))
                    .collect::<Result<Vec<_>, _>>()?;
                Op::SetContent {
                    node,
                    base,
                    version,
                    size,
                    drop_from,
                    blocks,
                    mtime: Time::read(r)?,
                }
            }
            7 => Op::SetXattr {
                node: r.u64()?,
                name: r.bytes()?.to_vec(),
                value: match r.u8()? {
                    0 => None,
                    1 => Some(r.bytes()?.to_vec()),
                    _ => return Err(FormatError::Invalid("option tag")),
                },
                ctime: Time::read(r)?,
            },
            8 => Op::Rotate {
                generation: r.u32()?,
            },
            _ => return Err(FormatError::Invalid("op tag")),
        })
    }
}

/// The decrypted payload of a log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Random id of the writing client instance (its cache directory).
    pub client: [u8; 16],
    /// The client's local counter of the last op in this batch, so a
    /// client replaying its journal after a crash skips ops already in.
    pub client_seq: u64,
    pub time: Time,
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.client).u64(self.client_seq);
        self.time.write(&mut w);
        w.u32(self.ops.len() as u32);
        for op in &self.ops {
            op.write(&mut w);
        }
        w.into_vec()
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let client = r.array()?;
        let client_seq = r.u64()?;
        let time = Time::read(&mut r)?;
        // The smallest op (Rotate) is 5 bytes.
        let n = r.count(5)?;
        let ops = (0..n)
            .map(|_| Op::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Self {
            client,
            client_seq,
            time,
            ops,
        })
    }
}

/// The content of a checkpoint as loaded: the clients' progress (see
/// [`Batch::client_seq`]) and every node. Stored as a root and pages
/// (`super::page`), never as one record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotBody {
    pub clients: BTreeMap<[u8; 16], u64>,
    pub nodes: Vec<Node>,
}

#[cfg(test)]
mod tests {
    use super::super::node::{KIND_FILE, KIND_VOLUME, NODE_MIN_LEN};
    use super::super::sha256;
    use super::*;
    use crate::format::content::BLOCK_SIZE;
    use crate::fuzzing::sample_ops;

    #[test]
    fn batch_round_trip_and_known_answer() {
        let b = Batch {
            client: [3; 16],
            client_seq: 42,
            time: Time { secs: 1, nanos: 2 },
            ops: sample_ops(),
        };
        let enc = b.encode();
        assert_eq!(Batch::decode(&enc).unwrap(), b);
        let hex = crate::format::hex::encode(&sha256(&enc));
        assert_eq!(
            hex,
            "1aeff457778b2adf10b61bde0e989af87a7ac1c3929f42fb0b86187e7657c082"
        );
        for cut in 0..enc.len() {
            assert!(Batch::decode(&enc[..cut]).is_err());
        }
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(Batch::decode(&long), Err(FormatError::Trailing));
    }

    #[test]
    fn batch_of_one_rotation_round_trips() {
        let b = Batch {
            client: [0; 16],
            client_seq: 1,
            time: Time::default(),
            ops: vec![Op::Rotate { generation: 7 }],
        };
        assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
    }

    /// `enc` with the u32 at `at` replaced by `u32::MAX` (a forged count).
    fn forge_count(enc: &[u8], at: usize) -> Vec<u8> {
        let mut bad = enc.to_vec();
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        bad
    }

    fn is_count_error<T: std::fmt::Debug>(got: Result<T, FormatError>) -> bool {
        matches!(got, Err(FormatError::Count { count, .. }) if count == u32::MAX as u64)
    }

    #[test]
    fn forged_counts_are_refused_before_reading_items() {
        // Every count in batches, ops, nodes and snapshot bodies, forged to
        // the largest a u32 can claim (4 Gi items): a typed error at the
        // count, before any item is read or allocated.
        let node = match &sample_ops()[0] {
            Op::Create { node, .. } => (**node).clone(),
            _ => unreachable!(),
        };
        let mut w = Writer::new();
        node.write(&mut w);
        let node_enc = w.into_vec();
        assert_eq!(node.target.len(), 0);
        let blocks_at = 8 + 1 + 2 + 3 * 4 + 4 * 12 + 8 + 4 + 8;
        let xattrs_at = blocks_at + 4 + BLOCK_REF_LEN * node.blocks.len();
        let entries_at = xattrs_at + 4 + 4 + 6 + 4 + 1 + 8 + 8;
        for at in [blocks_at, xattrs_at, entries_at] {
            let bad = forge_count(&node_enc, at);
            assert!(
                is_count_error(Node::read(&mut Reader::new(&bad))),
                "count at {at}"
            );
        }
        let content = Op::SetContent {
            node: 1,
            base: 0,
            version: 1,
            size: 1,
            drop_from: 0,
            blocks: vec![],
            mtime: Time::default(),
        };
        let mut w = Writer::new();
        content.write(&mut w);
        let bad = forge_count(&w.0, 1 + 5 * 8);
        assert!(is_count_error(Op::read(&mut Reader::new(&bad))));

        let b = Batch {
            client: [3; 16],
            client_seq: 42,
            time: Time::default(),
            ops: sample_ops(),
        };
        assert!(is_count_error(Batch::decode(&forge_count(
            &b.encode(),
            16 + 8 + 12
        ))));

        // The node count of a page body is bounded by the smallest node's size.
        let mut w = Writer::new();
        Node {
            kind: KIND_FILE,
            ..Default::default()
        }
        .write(&mut w);
        assert_eq!(w.0.len(), NODE_MIN_LEN);
        let place = super::super::PagePlace {
            volume: [0; 16],
            generation: 0,
            bucket: 0,
            bucket_bits: 0,
        };
        let mut second = Writer::new();
        Node {
            id: 1,
            kind: KIND_FILE,
            ..Default::default()
        }
        .write(&mut second);
        let mut two = Writer::new();
        two.u32(2).raw(&w.0).raw(&second.0);
        assert_eq!(
            super::super::decode_page_body(&place, &two.0)
                .unwrap()
                .len(),
            2
        );
        let mut short = two.0.clone();
        short.truncate(short.len() - 1);
        assert!(matches!(
            super::super::decode_page_body(&place, &short),
            Err(FormatError::Count { count: 2, .. })
        ));
        assert!(is_count_error(super::super::decode_page_body(
            &place,
            &forge_count(&two.0, 0)
        )));
        let root = super::super::CheckpointRoot::default().encode();
        assert!(is_count_error(super::super::CheckpointRoot::decode(
            &forge_count(&root, 1)
        )));
    }

    #[test]
    fn block_length_above_block_size_is_refused() {
        let op = |len| Op::SetContent {
            node: 1,
            base: 0,
            version: 1,
            size: 1,
            drop_from: 0,
            blocks: vec![(
                0,
                BlockRef {
                    id: [1; 16],
                    len,
                    epoch: 0,
                    packed: None,
                    key: [2; 32].into(),
                },
            )],
            mtime: Time::default(),
        };
        for (len, ok) in [
            (1, true),
            (BLOCK_SIZE as u32, true),
            (BLOCK_SIZE as u32 + 1, false),
            (u32::MAX, false),
        ] {
            let mut w = Writer::new();
            op(len).write(&mut w);
            let got = Op::read(&mut Reader::new(&w.0));
            assert_eq!(got.is_ok(), ok, "len {len}");
            if !ok {
                assert_eq!(got, Err(FormatError::Invalid("block length")));
            }
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn block_refs() -> impl Strategy<Value = Vec<(u64, BlockRef)>> {
            proptest::collection::vec(
                (
                    any::<u64>(),
                    any::<[u8; 16]>(),
                    1u32..=1 << 20,
                    any::<u32>(),
                    any::<[u8; 32]>(),
                    // Packed block versions too (offsets within a pack).
                    proptest::option::of(0u32..8 << 20),
                ),
                0..6,
            )
            .prop_map(|v| {
                v.into_iter()
                    .map(|(i, id, len, epoch, key, packed)| {
                        (
                            i,
                            BlockRef {
                                id,
                                len,
                                epoch,
                                packed,
                                key: key.into(),
                            },
                        )
                    })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            #[test]
            fn nodes_and_content_ops_round_trip(
                blocks in block_refs(),
                generation in any::<u32>(),
                volume in any::<[u8; 16]>(),
            ) {
                let mut file = Node { id: 9, kind: KIND_FILE, ..Default::default() };
                file.blocks = blocks.iter().cloned().collect();
                let link = Node { id: 10, kind: KIND_VOLUME, target: volume.to_vec().into(), ..Default::default() };
                let batch = Batch {
                    client: [1; 16],
                    client_seq: 2,
                    time: Time::default(),
                    ops: vec![
                        Op::Create { parent: 1, name: b"f".to_vec(), node: Box::new(file) },
                        Op::Create { parent: 1, name: b"v".to_vec(), node: Box::new(link) },
                        Op::SetContent {
                            node: 9, base: 1, version: 2, size: 3, drop_from: 0,
                            blocks, mtime: Time::default(),
                        },
                        Op::Rotate { generation },
                    ],
                };
                prop_assert_eq!(Batch::decode(&batch.encode()).unwrap(), batch);
            }
        }
    }
}
