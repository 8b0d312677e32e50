//! A new volume in the store: keyring generation 0, the genesis log
//! entries recreating a set of nodes, and a snapshot after them.
//!
//! Invariants:
//! - Only the owner writes keyrings; a keyring generation is written
//!   Create-only (`Exists` if taken).
//! - A new volume's genesis recreates the given nodes exactly (same ids
//!   except the root, same file keys and block refs): no content is
//!   re-encrypted, and a node that does not apply is an error, never
//!   silently dropped.
//!
//! Imports: the rest of `volume`, `tree`, `clock`, `identity`, `error`.

use super::{Head, VolumeKeys};
use crate::drive::clock::now;
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::{Identity, Role};
use crate::drive::tree::{ROOT, Tree};
use crate::format::crypto::SecretKey;
use crate::format::meta::{Batch, KIND_DIR, KIND_VOLUME, Keyring, MemberRecord, Node, Op};
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Most ops, and about the most encoded bytes, per genesis log entry.
const GENESIS_BATCH: usize = 4096;
const GENESIS_BYTES: usize = 4 << 20;

/// Creates volume `volume` in the store: keyring generation 0 for
/// `members` (the owner among them, role 3) named `name`, genesis entries
/// recreating `nodes`, and a snapshot after them. `nodes[0]` is the volume
/// root (it becomes node `ROOT`; every other node keeps its id) and every
/// node reachable from it must be in `nodes`; block refs are kept with
/// their keys, so content is not re-encrypted (their epoch becomes 0: the
/// new volume's first generation is the first of it to hold those keys).
pub async fn create_volume(
    store: &dyn ObjectStore,
    drive_id: [u8; 16],
    owner: &Identity,
    volume: [u8; 16],
    name: &[u8],
    members: &[MemberRecord],
    nodes: Vec<Node>,
) -> Result<()> {
    let (keys, head, tree) =
        write_genesis(store, drive_id, owner, volume, name, members, nodes).await?;
    super::write_snapshot(store, &keys, &owner.ed25519, &owner.card_id, head, &tree).await
}

/// Keyring generation 0 and the genesis entries of a new volume (see
/// [`create_volume`]); returns its keys, head and tree.
pub async fn write_genesis(
    store: &dyn ObjectStore,
    drive_id: [u8; 16],
    owner: &Identity,
    volume: [u8; 16],
    name: &[u8],
    members: &[MemberRecord],
    nodes: Vec<Node>,
) -> Result<(VolumeKeys, Head, Tree)> {
    check_owner_listed(owner, members)?;
    let ops = genesis_ops(nodes)?;
    // Check that every op applies before anything is written.
    let mut tree = Tree::default();
    for op in &ops {
        tree.apply(op)
            .map_err(|e| DriveError::Invalid(format!("volume contents do not apply: {e}")))?;
    }
    let key = SecretKey::random();
    let ring = Keyring {
        drive_id,
        volume,
        generation: 0,
        owner_card_id: owner.card_id,
        members: members.to_vec(),
        name: name.to_vec(),
        history: Vec::new(),
    };
    let ring_bytes = ring
        .seal(&key, &owner.ed25519)
        .map_err(|e| DriveError::Invalid(format!("keyring: {e}")))?;
    put_create(store, &super::keyring_key(&volume, 0), ring_bytes).await?;
    let mut generations = BTreeMap::new();
    generations.insert(0, (key, members.to_vec()));
    let keys = VolumeKeys {
        drive_id,
        volume,
        generations,
        collected: Default::default(),
        name: name.to_vec(),
    };
    let t = now();
    let mut prev = [0u8; 32];
    let mut seq = 0;
    for (i, chunk) in batches(ops).into_iter().enumerate() {
        seq = i as u64;
        let batch = Batch {
            client: [0; 16],
            client_seq: 0,
            time: t,
            ops: chunk,
        };
        let entry = super::seal_entry(&keys, &owner.ed25519, &owner.card_id, seq, &prev, &batch);
        prev = crate::format::meta::sha256(&entry);
        put_create(store, &super::log_key(&volume, seq), entry).await?;
    }
    // As `apply_batch` records the genesis writer's progress.
    tree.clients.insert([0; 16], 0);
    let head = Head {
        seq,
        hash: prev,
        generation: 0,
    };
    Ok((keys, head, tree))
}

/// Cuts `ops` into entries of at most `GENESIS_BATCH` ops and about
/// `GENESIS_BYTES` (a single larger op gets an entry of its own).
fn batches(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = vec![Vec::new()];
    let mut bytes = 0;
    for op in ops {
        let mut w = crate::format::wire::Writer::new();
        op.write(&mut w);
        let last = out.last().expect("one batch");
        if !last.is_empty() && (last.len() >= GENESIS_BATCH || bytes + w.0.len() > GENESIS_BYTES) {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += w.0.len();
        out.last_mut().expect("one batch").push(op);
    }
    out
}

/// `members` must list `owner` as owner with its own current keys (else
/// the owner could not open the keyring it writes).
pub fn check_owner_listed(owner: &Identity, members: &[MemberRecord]) -> Result<()> {
    let me = owner.member(Role::Owner).record();
    if !members.contains(&me) {
        return Err(DriveError::Invalid(
            "the owner must be a member of the volume, with its own keys".into(),
        ));
    }
    Ok(())
}

pub async fn put_create(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) -> Result<()> {
    match store.put(key, Bytes::from(bytes), PutMode::Create).await {
        Ok(_) => Ok(()),
        Err(StoreError::PreconditionFailed { .. }) => Err(DriveError::Exists),
        Err(e) => Err(e.into()),
    }
}

/// The ops recreating `nodes` under a new root (see [`create_volume`]):
/// the root first, then each directory's entries breadth-first; a node
/// reached a second time (a hard link) becomes a `Link`.
fn genesis_ops(nodes: Vec<Node>) -> Result<Vec<Op>> {
    let mut nodes = nodes.into_iter();
    let mut root = nodes
        .next()
        .ok_or_else(|| DriveError::Invalid("a volume needs a root".into()))?;
    if root.kind != KIND_DIR {
        return Err(DriveError::Invalid(
            "a volume root must be a directory".into(),
        ));
    }
    let old_root = root.id;
    let mut by_id: HashMap<u64, Node> = HashMap::new();
    for n in nodes {
        if n.id == ROOT || n.id == 0 || n.id == old_root {
            return Err(DriveError::Invalid(format!("node id {} not allowed", n.id)));
        }
        if n.kind == KIND_VOLUME {
            return Err(DriveError::Invalid(
                "a shared folder cannot contain another shared folder".into(),
            ));
        }
        let mut n = n;
        for b in n.blocks.values_mut() {
            b.epoch = 0;
        }
        by_id.insert(n.id, n);
    }
    root.id = ROOT;
    root.parent = ROOT;
    let mut ops = vec![Op::Create {
        parent: 0,
        name: Vec::new(),
        node: Box::new(Node {
            entries: Default::default(),
            ..root.clone()
        }),
    }];
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(ROOT, root.entries.into_inner())]);
    while let Some((dir, entries)) = queue.pop_front() {
        for (name, link) in entries {
            if !seen.insert(link.node) {
                let ctime = by_id.get(&link.node).map(|n| n.ctime).unwrap_or_default();
                ops.push(Op::Link {
                    parent: dir,
                    name: name.into(),
                    node: link.node,
                    ctime,
                });
                continue;
            }
            let mut child = by_id.get(&link.node).cloned().ok_or_else(|| {
                DriveError::Invalid(format!("node {} missing from the volume", link.node))
            })?;
            let entries = std::mem::take(&mut child.entries).into_inner();
            if child.kind == KIND_DIR {
                queue.push_back((child.id, entries));
            }
            ops.push(Op::Create {
                parent: dir,
                name: name.into(),
                node: Box::new(child),
            });
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::volume::{self, Fetched};
    use crate::format::meta::{BlockRef, DirLink, KIND_FILE};
    use crate::store::MemoryStore;

    fn dir(id: u64, entries: &[(&str, u64)]) -> Node {
        Node {
            id,
            kind: KIND_DIR,
            perm: 0o755,
            nlink: 2,
            entries: entries
                .iter()
                .map(|(n, c)| {
                    (
                        crate::format::meta::Name::from(n.as_bytes()),
                        DirLink {
                            node: *c,
                            cookie: 9,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn file(id: u64) -> Node {
        let mut n = Node {
            id,
            kind: KIND_FILE,
            perm: 0o644,
            nlink: 1,
            size: 5,
            version: 4,
            ..Default::default()
        };
        n.blocks.insert(
            0,
            BlockRef {
                id: [id as u8 + 2; 16],
                len: 5,
                epoch: 0,
                packed: None,
                key: [id as u8 + 1; 32].into(),
            },
        );
        n
    }

    #[tokio::test]
    async fn create_volume_recreates_the_nodes_under_a_new_root() {
        let store = MemoryStore::new();
        let owner = Identity::generate();
        let bob = Identity::generate();
        let members = vec![
            owner.member(Role::Owner).record(),
            bob.member(Role::Reader).record(),
        ];
        // A block sealed at generation 3 of the source volume moves with
        // its key; in the new volume it is of generation 0.
        let mut b91 = file(91);
        b91.blocks.get_mut(&0).unwrap().epoch = 3;
        let nodes = vec![
            dir(77, &[("a", 80), ("sub", 90)]),
            file(80),
            dir(90, &[("hard", 80), ("b", 91)]),
            b91,
        ];
        let (drive, vol) = ([1; 16], [2; 16]);
        create_volume(&store, drive, &owner, vol, b"Projects", &members, nodes)
            .await
            .unwrap();
        // Bob, a reader, loads the keys and the snapshot.
        let vk = owner.ed25519.verifying_key();
        let keys = VolumeKeys::load(&store, drive, vol, &vk, &bob.x25519)
            .await
            .unwrap();
        assert_eq!(keys.name, b"Projects");
        assert_eq!(keys.members(), members.as_slice());
        let volume::checkpoint::Checkpoint { head, tree, .. } =
            volume::checkpoint_at_or_before(&store, &keys, u64::MAX)
                .await
                .unwrap()
                .unwrap();
        assert_eq!((head.seq, head.generation), (0, 0));
        let root = &tree.nodes[&ROOT];
        assert_eq!(root.entries.len(), 2);
        let a = &tree.nodes[&tree.lookup(ROOT, b"a").unwrap()];
        assert_eq!((a.id, a.nlink), (80, 2));
        assert_eq!(a.blocks, file(80).blocks);
        assert_eq!(tree.nodes[&91].blocks, file(91).blocks);
        let sub = tree.lookup(ROOT, b"sub").unwrap();
        assert_eq!(tree.nodes[&sub].parent, ROOT);
        assert_eq!(tree.lookup(sub, b"hard").unwrap(), 80);
        assert_eq!(tree.lookup(sub, b"b").unwrap(), 91);
        // The genesis entry verifies and replays to the same tree.
        let Fetched::Entry(batch, h, writer) = volume::fetch_entry(&store, &keys, 0, &[0; 32], 0)
            .await
            .unwrap()
        else {
            panic!("genesis entry missing")
        };
        assert_eq!((h, writer), (head, owner.card_id));
        let mut replay = Tree::default();
        for op in &batch.ops {
            replay.apply(op).unwrap();
        }
        assert_eq!(replay.all_nodes(), tree.all_nodes());
        // Creating it again is refused.
        let again = create_volume(
            &store,
            drive,
            &owner,
            vol,
            b"x",
            &members,
            vec![dir(5, &[])],
        );
        assert!(matches!(again.await, Err(DriveError::Exists)));
    }

    #[test]
    fn genesis_batches_bound_ops_and_bytes() {
        let small = |i| Op::Rotate { generation: i };
        let b = batches((0..GENESIS_BATCH as u32 * 2 + 1).map(small).collect());
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            [GENESIS_BATCH, GENESIS_BATCH, 1]
        );
        let big = || Op::SetXattr {
            node: 2,
            name: b"user.x".to_vec(),
            value: Some(vec![0; GENESIS_BYTES / 2]),
            ctime: Default::default(),
        };
        let b = batches(vec![big(), big(), big(), small(1)]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 2]);
        assert_eq!(batches(vec![]).len(), 1);
    }

    #[tokio::test]
    async fn create_volume_refuses_bad_input() {
        let store = MemoryStore::new();
        let owner = Identity::generate();
        let me = vec![owner.member(Role::Owner).record()];
        let nested = Node {
            id: 80,
            kind: KIND_VOLUME,
            target: vec![3; 16].into(),
            ..Default::default()
        };
        let cases: Vec<(Vec<MemberRecord>, Vec<Node>)> = vec![
            (me.clone(), vec![]),
            (me.clone(), vec![file(80)]),
            (me.clone(), vec![dir(77, &[("x", 80)])]),
            (me.clone(), vec![dir(77, &[("x", 80)]), nested]),
            (me.clone(), vec![dir(77, &[("x", 1)]), file(1)]),
            (
                vec![Identity::generate().member(Role::Owner).record()],
                vec![dir(77, &[])],
            ),
        ];
        for (i, (members, nodes)) in cases.into_iter().enumerate() {
            let r = create_volume(&store, [1; 16], &owner, [2; 16], b"", &members, nodes).await;
            assert!(matches!(r, Err(DriveError::Invalid(_))), "case {i}: {r:?}");
        }
        // Nothing was written.
        assert!(store.list_all("").await.unwrap().is_empty());
    }
}
