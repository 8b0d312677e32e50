//! History of one path of the volume (its versions, from the log entries
//! and snapshot still in the store) and restoring the path as it was at a
//! past time, as new nodes whose block refs are copied from that state.
//!
//! Invariants:
//! - Past states come from `past` (verified replay ending at the accepted
//!   head): history shows nothing the store could have invented.
//! - A restore never replaces anything: its destination name must be free
//!   (checked again under the state lock), and it only adds nodes.
//! - Block refs carry their own keys (format 2), so a restored file reads
//!   the very objects of the past version; each is checked to be in the
//!   store before anything is restored (a collected version fails whole).
//!
//! Imports: `past`, `state`, `tree`, `volume`, leaves; never `router`.

use super::Engine;
use super::io::StoreSizes;
use super::past::Step;
use super::state::kind_of;
use crate::drive::clock::{from_time, now};
use crate::drive::error::{DriveError, Result};
use crate::drive::tree::{KIND_VOLUME, ROOT, Tree};
use crate::drive::types::FileKind;
use crate::drive::volume;
use crate::format::crypto::random_array;
use crate::format::meta::{KIND_DIR, Node, Op, Time};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// What an entry did to the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The path existed in the oldest state kept (the walk's base).
    Present,
    Created,
    /// A node was moved or linked here.
    MovedIn,
    /// New content (a write, truncate or clone copy).
    Modified,
    /// Another node took the name (a rename over it, a delete and create).
    Replaced,
    /// Mode, owner, times or extended attributes changed.
    Attributes,
    /// The node was moved (or its name unlinked) but lives on elsewhere.
    MovedAway,
    Deleted,
}

/// One version of a path: the state after a log entry.
#[derive(Debug, Clone)]
pub struct Version {
    /// The log position after which this is the path's state.
    pub seq: u64,
    /// The entry's time (its writer's clock).
    pub time: SystemTime,
    /// The id of the client (cache directory) that wrote the entry.
    pub client: [u8; 16],
    /// That client is this mount.
    pub this_client: bool,
    /// The card id of the member who signed the entry (`None` for the
    /// oldest state kept).
    pub writer: Option<[u8; 32]>,
    pub change: Change,
    /// The node after the change (before it, for `Deleted`/`MovedAway`).
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The log position and time of the state restored.
    pub seq: u64,
    pub time: SystemTime,
    /// Nodes created (a folder and everything below it) and the file
    /// bytes they hold.
    pub nodes: u64,
    pub bytes: u64,
    /// Shared-folder links inside the restored folder, not restored (the
    /// shared folders themselves keep their own history).
    pub skipped_links: u64,
    /// The new top node.
    pub node: u64,
}

/// The node at `path` (names from the volume root) of `tree`.
fn node_at<'a>(tree: &'a Tree, path: &[Vec<u8>]) -> Option<&'a Node> {
    let mut id = ROOT;
    for name in path {
        id = tree.lookup(id, name).ok()?;
    }
    tree.nodes.get(&id).map(|n| &**n)
}

/// The entry whose effect on the path is judged once the state after it
/// is seen.
struct Open {
    seq: u64,
    time: Time,
    client: [u8; 16],
    /// The card id that signed the entry.
    writer: [u8; 32],
    /// Node ids the entry creates (a new node vs one moved here).
    created: Vec<u64>,
    /// The path's node before the entry.
    before: Option<Node>,
}

impl Engine {
    /// The versions of `path` (names from the volume root), oldest first,
    /// from the oldest state the store keeps to the accepted head.
    pub async fn history(&self, path: &[Vec<u8>]) -> Result<Vec<Version>> {
        let me = self.cache.client_id();
        let mut out = Vec::new();
        let mut open: Option<Open> = None;
        let (last, _) = self
            .walk_log(0, |step| match step {
                Step::Base { tree, head, time } => {
                    if let Some(n) = node_at(tree, path) {
                        out.push(Version {
                            seq: head.seq,
                            time: from_time(time),
                            client: [0; 16],
                            this_client: false,
                            writer: None,
                            change: Change::Present,
                            kind: kind_of(n.kind),
                            size: n.size,
                            mtime: from_time(n.mtime),
                        });
                    }
                }
                Step::Entry {
                    before,
                    head,
                    batch,
                    writer,
                } => {
                    if let Some(o) = open.take() {
                        out.extend(judge(o, before, path, me));
                    }
                    open = Some(Open {
                        seq: head.seq,
                        time: batch.time,
                        client: batch.client,
                        writer: *writer,
                        created: (batch.ops.iter())
                            .filter_map(|op| match op {
                                Op::Create { node, .. } => Some(node.id),
                                _ => None,
                            })
                            .collect(),
                        before: node_at(before, path).cloned(),
                    });
                }
            })
            .await?;
        if let Some(o) = open.take() {
            out.extend(judge(o, &last, path, me));
        }
        Ok(out)
    }

    /// The time of every log entry from the oldest state kept to the head.
    async fn entry_times(&self) -> Result<BTreeMap<u64, Time>> {
        let mut times = BTreeMap::new();
        self.walk_log(0, |step| match step {
            Step::Base { head, time, .. } => {
                times.insert(head.seq, time);
            }
            Step::Entry { head, batch, .. } => {
                times.insert(head.seq, batch.time);
            }
        })
        .await?;
        Ok(times)
    }

    /// Restores `path` (names from the volume root) as it was at `at`
    /// (after the last log entry whose time is at most `at`) as a new node
    /// named `name` in the directory `parent` of this volume's current
    /// view: a copy of the past node (a folder with everything below it)
    /// whose files name the same block objects. `NotFound` if the path did
    /// not exist then; `Exists` if `name` is taken; `Tampered` naming a
    /// block object of that state that is no longer in the store.
    pub async fn restore(
        &self,
        path: &[Vec<u8>],
        at: SystemTime,
        parent: u64,
        name: Vec<u8>,
    ) -> Result<Restored> {
        self.writable()?;
        let at_t = crate::drive::clock::to_time(at);
        let times = self.entry_times().await?;
        let Some((&seq, &time)) = times.iter().rev().find(|(_, t)| **t <= at_t) else {
            let oldest = times.values().next().copied().map(from_time);
            return Err(DriveError::Invalid(format!(
                "no state of the folder is kept from that time (the oldest kept is from {:?})",
                oldest
            )));
        };
        let past = self.state_at(seq).await?.tree;
        let top = node_at(&past, path).ok_or(DriveError::NotFound)?;
        if top.kind == KIND_VOLUME {
            return Err(DriveError::Invalid(
                "a shared folder keeps its own history: restore the files inside it".into(),
            ));
        }
        // Parents before children; a node met again (a hard link) is linked.
        let mut order: Vec<(Option<u64>, Vec<u8>, u64)> = vec![(None, name.clone(), top.id)];
        let mut i = 0;
        while i < order.len() {
            let id = order[i].2;
            if let Some(n) = past.nodes.get(&id).filter(|n| n.kind == KIND_DIR) {
                for (child, link) in &n.entries {
                    order.push((Some(id), child.to_vec(), link.node));
                }
            }
            i += 1;
        }
        let mut bytes = 0;
        let mut checked = HashMap::new();
        let mut sizes = StoreSizes::new();
        for (_, _, id) in &order {
            for b in past.nodes[id].blocks.values() {
                if checked.insert(b.place(), ()).is_some() {
                    continue;
                }
                if !self.block_intact(b, &mut sizes).await? {
                    return Err(DriveError::tampered(
                        volume::content_key(&b.id),
                        "this version's content is no longer in the store (collected after the \
                         history window, or lost)",
                    ));
                }
            }
        }
        let t = now();
        let mut made: HashMap<u64, u64> = HashMap::new();
        let (mut nodes, mut skipped_links) = (0, 0);
        {
            let mut core = self.lock();
            if core.view.dir(parent)?.entries.contains_key(name.as_slice()) {
                return Err(DriveError::Exists);
            }
            for (old_parent, child_name, old) in order {
                let new_parent = match old_parent {
                    None => parent,
                    Some(p) => match made.get(&p) {
                        Some(np) => *np,
                        None => continue, // Below a skipped link.
                    },
                };
                let n = &past.nodes[&old];
                if n.kind == KIND_VOLUME {
                    skipped_links += 1;
                    continue;
                }
                if let Some(existing) = made.get(&old) {
                    core.push(Op::Link {
                        parent: new_parent,
                        name: child_name,
                        node: *existing,
                        ctime: t,
                    })?;
                    continue;
                }
                let mut copy = Node::clone(n);
                copy.id = core.fresh_id(copy.kind);
                copy.version = u64::from_le_bytes(random_array());
                copy.ctime = t;
                copy.crtime = t;
                bytes += copy.blocks.values().map(|b| b.len as u64).sum::<u64>();
                made.insert(old, copy.id);
                core.push(Op::Create {
                    parent: new_parent,
                    name: child_name,
                    node: Box::new(copy),
                })?;
                nodes += 1;
            }
        }
        self.wake.notify_one();
        Ok(Restored {
            seq,
            time: from_time(time),
            nodes,
            bytes,
            skipped_links,
            node: made[&top.id],
        })
    }
}

/// The version `o` made of `path`, given the tree `after` it (`None`:
/// the entry did not touch the path).
fn judge(o: Open, after: &Tree, path: &[Vec<u8>], me: [u8; 16]) -> Option<Version> {
    let now = node_at(after, path);
    let change = match (&o.before, now) {
        (None, None) => return None,
        (None, Some(n)) if o.created.contains(&n.id) => Change::Created,
        (None, Some(_)) => Change::MovedIn,
        (Some(b), None) if after.nodes.contains_key(&b.id) => Change::MovedAway,
        (Some(_), None) => Change::Deleted,
        (Some(b), Some(n)) if b.id != n.id => Change::Replaced,
        (Some(b), Some(n)) if b.version != n.version => Change::Modified,
        (Some(b), Some(n)) if attributes_differ(b, n) => Change::Attributes,
        _ => return None,
    };
    let n = now.or(o.before.as_ref())?;
    Some(Version {
        seq: o.seq,
        time: from_time(o.time),
        client: o.client,
        this_client: o.client == me,
        writer: Some(o.writer),
        change,
        kind: kind_of(n.kind),
        size: n.size,
        mtime: from_time(n.mtime),
    })
}

/// Mode, owner, extended attributes, and for non-directories the times a
/// user sets (a directory's times move with every entry).
fn attributes_differ(a: &Node, b: &Node) -> bool {
    let common = (a.perm, a.uid, a.gid, &a.xattrs, &a.target)
        != (b.perm, b.uid, b.gid, &b.xattrs, &b.target);
    common || (a.kind != KIND_DIR && (a.mtime, a.atime) != (b.mtime, b.atime))
}
