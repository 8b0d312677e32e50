//! The namespace: every node of a volume and the deterministic application
//! of metadata operations to it.
//!
//! Invariants:
//! - [`Tree::apply`] is a pure function of the tree and the op: every
//!   client applying the same log gets the same tree (cookies included).
//! - An op that fails validation leaves the tree unchanged and returns the
//!   POSIX error the engine reports for it.
//! - Directory link counts are `2 + subdirectories`; a non-directory's is
//!   its number of names; a node whose last name goes is removed.
//! - Clones of a tree share one node table ([`NodeTable`]: a base table
//!   and each tree's overlay of its own changes) and every node in it
//!   (`Arc`, copied on write), so the engine's committed tree and view
//!   hold one table and one copy of every node neither has changed since
//!   they were last made equal ([`Tree::share_from`]).

use super::error::{DriveError, Result};
use super::node_table::NodeTable;
pub use super::node_table::PageNodes;
use crate::format::content::BLOCK_SIZE;
use crate::format::crypto::random_array;
use crate::format::meta::{KIND_DIR, KIND_FILE, Node, Op, Time};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The root directory's node id.
pub const ROOT: u64 = 1;

/// A link to another volume (a shared folder) in the root volume.
pub use crate::format::meta::KIND_VOLUME;

/// Directories and volume links: both count in their parent's link count
/// and keep a `parent`; a volume link never holds entries in this volume
/// (it acts as an empty directory for rename and unlink).
pub fn is_dirlike(kind: u8) -> bool {
    kind == KIND_DIR || kind == KIND_VOLUME
}

/// New node ids given at one fill position of an [`IdCursor`]: about the
/// file nodes a checkpoint page holds at its target size (8 KiB of nodes
/// of ~180 bytes: 40 of them pad to 8 KiB), so a burst of creates fills
/// one page before the next. A volume with larger pages (16 KiB from 2^13
/// buckets) gives a cursor a multiple of it (`PageIndex::ids_per_step`).
pub const IDS_PER_STEP: u32 = 40;
/// Low bits of a node id an [`IdCursor`] chooses: the bucket selector of
/// every bucket count a checkpoint may have (`MAX_BUCKET_BITS`).
pub const CURSOR_BITS: u32 = crate::format::meta::MAX_BUCKET_BITS as u32;
/// Node ids are below 2^53, so that the router can use them as inode
/// numbers (see `router::inos`).
const ID_BITS: u32 = 53;

/// Where a client's new node ids go: the low [`CURSOR_BITS`] of each id
/// are a fill position, the high bits random. The position moves on (by
/// one, wrapping) after [`IDS_PER_STEP`] file ids or one directory, and
/// starts at random, so a burst of creates lands in few checkpoint buckets
/// (locality: a checkpoint after it rewrites ~n/`IDS_PER_STEP` pages plus
/// one per new directory, not all of them),
/// while over time positions are visited round-robin and buckets fill
/// evenly. Ids stay unpredictable enough not to collide between clients:
/// 37 random bits per position.
#[derive(Debug, Clone)]
pub struct IdCursor {
    low: u64,
    left: u32,
    /// File ids per position: [`IDS_PER_STEP`], or a multiple of it in a
    /// volume whose checkpoint pages are larger ([`IdCursor::set_step`]).
    step: u32,
}

impl Default for IdCursor {
    fn default() -> Self {
        Self::starting_at(u64::from_le_bytes(random_array()))
    }
}

impl IdCursor {
    /// A cursor at fill position `low` (its low [`CURSOR_BITS`]).
    pub fn starting_at(low: u64) -> Self {
        IdCursor {
            low: low & ((1 << CURSOR_BITS) - 1),
            left: IDS_PER_STEP,
            step: IDS_PER_STEP,
        }
    }

    /// Fills each position with `step` file ids (at least one) from the
    /// next position on: the file nodes a checkpoint page of the volume
    /// holds at its target size, so that a burst fills one page before
    /// the next whatever the page size.
    pub fn set_step(&mut self, step: u32) {
        self.step = step.max(1);
    }

    /// A new node id for which `taken` is false (never 0 or the root), for
    /// a node of `kind`. A directory takes a whole position of its own: its
    /// node grows with its entries (~30 bytes each), a file's hardly, so
    /// directories made in a row (`mkdir -p`, the top of a copied tree)
    /// must not share a page: a page of 40 directories of 1,000 entries
    /// would be a megabyte rewritten by every create in any of them.
    pub fn fresh(&mut self, kind: u8, mut taken: impl FnMut(u64) -> bool) -> u64 {
        let weight = if kind == KIND_DIR { self.step } else { 1 };
        if self.left < weight {
            self.low = (self.low + 1) & ((1 << CURSOR_BITS) - 1);
            self.left = self.step;
        }
        self.left -= weight;
        loop {
            let high = u64::from_le_bytes(random_array()) & ((1 << (ID_BITS - CURSOR_BITS)) - 1);
            let id = (high << CURSOR_BITS) | self.low;
            if id > ROOT && !taken(id) {
                return id;
            }
        }
    }
}

/// All nodes. A directory's entries are in its node, by name; the tree
/// keeps no second index of them by cookie (that would be a second copy of
/// every name): a readdir handle takes its own snapshot in cookie order
/// (`engine::listing`).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub(super) nodes: NodeTable,
    /// Per writing client, the last `client_seq` it committed.
    pub(super) clients: BTreeMap<[u8; 16], u64>,
}

impl Tree {
    /// Builds the tree from the prepared pages of a checkpoint (a node id
    /// in two pages: the later one holds), its table sized once.
    pub fn from_pages(pages: Vec<PageNodes>, clients: BTreeMap<[u8; 16], u64>) -> Self {
        Tree {
            nodes: NodeTable::from_pages(pages),
            clients,
        }
    }

    pub fn get(&self, id: u64) -> Result<&Node> {
        self.nodes
            .get(&id)
            .map(|n| n.as_ref())
            .ok_or(DriveError::NotFound)
    }

    /// Makes this tree equal to `other`, sharing its node table and every
    /// node with it (no node is copied until one of the two trees changes
    /// it; the cost is a copy of `other`'s overlay).
    pub fn share_from(&mut self, other: &Tree) {
        self.clone_from(other);
    }

    /// Moves this tree's own changes into the node table it shares with
    /// `other`, in place (see [`NodeTable::fold_into_shared`]): neither
    /// tree changes, this one's overlay empties, `other`'s keeps only what
    /// differs from this tree.
    pub fn fold_into_shared(&mut self, other: &mut Tree) {
        self.nodes.fold_into_shared(&mut other.nodes);
    }

    pub fn dir(&self, id: u64) -> Result<&Node> {
        let n = self.get(id)?;
        if n.kind != KIND_DIR {
            return Err(DriveError::NotDir);
        }
        Ok(n)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<u64> {
        self.dir(parent)?
            .entries
            .get(name)
            .map(|l| l.node)
            .ok_or(DriveError::NotFound)
    }

    /// Some directory entry naming `node` (linear scan; rare use).
    pub fn name_of(&self, node: u64) -> Option<(u64, Vec<u8>)> {
        self.nodes
            .values()
            .filter(|n| n.kind == KIND_DIR)
            .find_map(|d| {
                d.entries
                    .iter()
                    .find(|(_, l)| l.node == node)
                    .map(|(name, _)| (d.id, name.to_vec()))
            })
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn is_within(&self, mut node: u64, ancestor: u64) -> bool {
        for _ in 0..self.nodes.len() + 1 {
            if node == ancestor {
                return true;
            }
            match self.nodes.get(&node) {
                Some(n) if n.kind == KIND_DIR && n.parent != node => node = n.parent,
                _ => return false,
            }
        }
        false
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or(DriveError::NotFound)
    }

    fn insert_entry(&mut self, parent: u64, name: Vec<u8>, child: u64, time: Time) {
        let p = self.node_mut(parent).expect("validated parent");
        let cookie = p.next_cookie;
        p.next_cookie += 1;
        p.entries.insert(
            name.into(),
            crate::format::meta::DirLink {
                node: child,
                cookie,
            },
        );
        p.mtime = time;
        p.ctime = time;
    }

    fn remove_entry(&mut self, parent: u64, name: &[u8], time: Time) -> u64 {
        let p = self.node_mut(parent).expect("validated parent");
        let link = p.entries.remove(name).expect("validated entry");
        p.mtime = time;
        p.ctime = time;
        link.node
    }

    /// Drops one name of `child` (already removed from its directory);
    /// returns the node if it is gone.
    fn drop_name(&mut self, parent: u64, child: u64, time: Time) -> Option<Node> {
        let is_dir = self.nodes.get(&child).map(|n| is_dirlike(n.kind))?;
        if is_dir {
            if let Ok(p) = self.node_mut(parent) {
                p.nlink = p.nlink.saturating_sub(1);
            }
            return self.nodes.remove(&child).map(Arc::unwrap_or_clone);
        }
        let n = self.node_mut(child).ok()?;
        n.nlink = n.nlink.saturating_sub(1);
        n.ctime = time;
        if n.nlink == 0 {
            return self.nodes.remove(&child).map(Arc::unwrap_or_clone);
        }
        None
    }

    /// Checks that `parent/name` may receive `child_kind`-kind node moving
    /// from elsewhere; returns the node it would replace.
    fn check_target(&self, parent: u64, name: &[u8], moving: u64) -> Result<Option<u64>> {
        let p = self.dir(parent)?;
        let Some(existing) = p.entries.get(name).map(|l| l.node) else {
            return Ok(None);
        };
        if existing == moving {
            return Ok(Some(existing));
        }
        let src_dir = is_dirlike(self.get(moving)?.kind);
        let dst = self.get(existing)?;
        match (src_dir, is_dirlike(dst.kind)) {
            (true, false) => Err(DriveError::NotDir),
            (false, true) => Err(DriveError::IsDir),
            (true, true) if !dst.entries.is_empty() => Err(DriveError::NotEmpty),
            _ => Ok(Some(existing)),
        }
    }

    /// Applies one op. Returns the nodes it removed (so the engine can keep
    /// open files readable). On error the tree is unchanged.
    pub fn apply(&mut self, op: &Op) -> Result<Vec<Node>> {
        let mut removed = Vec::new();
        match op {
            Op::Create { parent, name, node } => {
                if self.nodes.contains_key(&node.id) {
                    return Err(DriveError::Exists);
                }
                if *parent == 0 {
                    // Genesis: the root directory, only into an empty tree.
                    if node.id != ROOT || !self.nodes.is_empty() || node.kind != KIND_DIR {
                        return Err(DriveError::Invalid("bad root".into()));
                    }
                    let mut root = (**node).clone();
                    root.parent = ROOT;
                    root.nlink = 2;
                    root.entries.clear();
                    self.nodes.insert(ROOT, Arc::new(root));
                    return Ok(removed);
                }
                if self.dir(*parent)?.entries.contains_key(name.as_slice()) {
                    return Err(DriveError::Exists);
                }
                let mut n = (**node).clone();
                n.entries.clear();
                n.next_cookie = 1;
                if is_dirlike(n.kind) {
                    n.nlink = 2;
                    n.parent = *parent;
                    self.node_mut(*parent)?.nlink += 1;
                } else {
                    n.nlink = 1;
                    n.parent = 0;
                }
                let (id, t) = (n.id, n.crtime);
                self.nodes.insert(id, Arc::new(n));
                self.insert_entry(*parent, name.clone(), id, t);
            }
            Op::Link {
                parent,
                name,
                node,
                ctime,
            } => {
                if is_dirlike(self.get(*node)?.kind) {
                    return Err(DriveError::NotPermitted);
                }
                if self.dir(*parent)?.entries.contains_key(name.as_slice()) {
                    return Err(DriveError::Exists);
                }
                let n = self.node_mut(*node)?;
                n.nlink += 1;
                n.ctime = *ctime;
                self.insert_entry(*parent, name.clone(), *node, *ctime);
            }
            Op::Unlink {
                parent,
                name,
                node,
                time,
            } => {
                if self.lookup(*parent, name)? != *node {
                    return Err(DriveError::NotFound);
                }
                let n = self.get(*node)?;
                if n.kind == KIND_DIR && !n.entries.is_empty() {
                    return Err(DriveError::NotEmpty);
                }
                self.remove_entry(*parent, name, *time);
                removed.extend(self.drop_name(*parent, *node, *time));
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
                time,
            } => {
                let src = self.lookup(*parent, name)?;
                let src_dir = is_dirlike(self.get(src)?.kind);
                self.dir(*newparent)?;
                if src_dir && self.is_within(*newparent, src) {
                    return Err(DriveError::Invalid(
                        "cannot move a directory into itself".into(),
                    ));
                }
                if *exchange {
                    let dst = self.lookup(*newparent, newname)?;
                    let dst_dir = is_dirlike(self.get(dst)?.kind);
                    if dst_dir && self.is_within(*parent, dst) {
                        return Err(DriveError::Invalid(
                            "cannot move a directory into itself".into(),
                        ));
                    }
                    if src == dst {
                        return Ok(removed);
                    }
                    self.node_mut(*parent)?
                        .entries
                        .get_mut(name.as_slice())
                        .expect("checked")
                        .node = dst;
                    self.node_mut(*newparent)?
                        .entries
                        .get_mut(newname.as_slice())
                        .expect("checked")
                        .node = src;
                    for (id, is_dir, new_parent, old_parent) in [
                        (src, src_dir, *newparent, *parent),
                        (dst, dst_dir, *parent, *newparent),
                    ] {
                        if is_dir && new_parent != old_parent {
                            self.node_mut(id)?.parent = new_parent;
                            self.node_mut(new_parent)?.nlink += 1;
                            let op = self.node_mut(old_parent)?;
                            op.nlink = op.nlink.saturating_sub(1);
                        }
                        self.node_mut(id)?.ctime = *time;
                    }
                    for p in [*parent, *newparent] {
                        let p = self.node_mut(p)?;
                        p.mtime = *time;
                        p.ctime = *time;
                    }
                    return Ok(removed);
                }
                let target = self.check_target(*newparent, newname, src)?;
                if target == Some(src) {
                    // Both names already refer to the same node: no-op.
                    return Ok(removed);
                }
                if let Some(t) = target {
                    self.remove_entry(*newparent, newname, *time);
                    removed.extend(self.drop_name(*newparent, t, *time));
                }
                self.remove_entry(*parent, name, *time);
                self.insert_entry(*newparent, newname.clone(), src, *time);
                if src_dir && parent != newparent {
                    self.node_mut(src)?.parent = *newparent;
                    self.node_mut(*newparent)?.nlink += 1;
                    let op = self.node_mut(*parent)?;
                    op.nlink = op.nlink.saturating_sub(1);
                }
                self.node_mut(src)?.ctime = *time;
            }
            Op::SetAttr { node, change } => {
                let n = self.node_mut(*node)?;
                if let Some(p) = change.perm {
                    n.perm = p & 0o7777;
                }
                if let Some(u) = change.uid {
                    n.uid = u;
                }
                if let Some(g) = change.gid {
                    n.gid = g;
                }
                if let Some(t) = change.atime {
                    n.atime = t;
                }
                if let Some(t) = change.mtime {
                    n.mtime = t;
                }
                if let Some(t) = change.ctime {
                    n.ctime = t;
                }
            }
            Op::SetContent {
                node,
                version,
                size,
                drop_from,
                blocks,
                mtime,
                ..
            } => {
                let n = self.node_mut(*node)?;
                if n.kind != KIND_FILE {
                    return Err(DriveError::IsDir);
                }
                let end = size.div_ceil(BLOCK_SIZE as u64);
                if blocks
                    .iter()
                    .any(|(i, b)| b.len == 0 || b.len as usize > BLOCK_SIZE || *i >= end)
                {
                    return Err(DriveError::Invalid("block outside file".into()));
                }
                n.blocks.retain(|i, _| i < drop_from);
                n.blocks.extend(blocks.iter().cloned());
                n.blocks.retain(|i, _| *i < end);
                n.size = *size;
                n.version = *version;
                n.mtime = *mtime;
                // Never backwards: a `utimes` after the write (tar, cp -p)
                // sets an old mtime but changed ctime already, and a ctime
                // that moves back makes tar report "file changed as we read it".
                n.ctime = n.ctime.max(*mtime);
            }
            Op::SetXattr {
                node,
                name,
                value,
                ctime,
            } => {
                let n = self.node_mut(*node)?;
                match value {
                    Some(v) => {
                        n.xattrs.insert(name.clone(), v.clone());
                    }
                    None => {
                        if n.xattrs.remove(name).is_none() {
                            return Err(DriveError::NoXattr);
                        }
                    }
                }
                n.ctime = *ctime;
            }
            // Key switch only; the engine tracks generations.
            Op::Rotate { .. } => {}
        }
        Ok(removed)
    }

    /// The nodes `op` changes, adds or removes if it applies: the nodes it
    /// names, their directories, and a node a rename replaces (read before
    /// applying it). A checkpoint rewrites the pages holding them.
    pub fn touched_by(&self, op: &Op) -> Vec<u64> {
        match op {
            Op::Create { parent, node, .. } => vec![*parent, node.id],
            Op::Link { parent, node, .. } | Op::Unlink { parent, node, .. } => {
                vec![*parent, *node]
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                ..
            } => {
                let mut v = vec![*parent, *newparent];
                v.extend(self.lookup(*parent, name).ok());
                v.extend(self.lookup(*newparent, newname).ok());
                v
            }
            Op::SetAttr { node, .. } | Op::SetContent { node, .. } | Op::SetXattr { node, .. } => {
                vec![*node]
            }
            Op::Rotate { .. } => Vec::new(),
        }
    }

    /// [`Tree::apply`], adding the nodes it changed to `touched`.
    pub fn apply_tracked(&mut self, op: &Op, touched: &mut HashSet<u64>) -> Result<Vec<Node>> {
        let ids = self.touched_by(op);
        let removed = self.apply(op)?;
        touched.extend(ids);
        Ok(removed)
    }

    /// All nodes, sorted by id.
    pub fn all_nodes(&self) -> Vec<Node> {
        let mut v: Vec<Node> = self.nodes.values().map(|n| (**n).clone()).collect();
        v.sort_by_key(|n| n.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, kind: u8) -> Node {
        Node {
            id,
            kind,
            nlink: 1,
            next_cookie: 1,
            target: if kind == KIND_VOLUME {
                vec![9; 16].into()
            } else {
                Default::default()
            },
            ..Default::default()
        }
    }

    fn create(t: &mut Tree, parent: u64, name: &str, n: Node) -> Result<Vec<Node>> {
        t.apply(&Op::Create {
            parent,
            name: name.as_bytes().to_vec(),
            node: Box::new(n),
        })
    }

    /// Two trees made equal by sharing hold one copy of each node; a
    /// change to one copies only what it touches and never shows in the
    /// other.
    #[test]
    fn shared_trees_copy_on_write() {
        let mut committed = Tree::default();
        create(&mut committed, 0, "", node(ROOT, KIND_DIR)).unwrap();
        for i in 0..10 {
            create(
                &mut committed,
                ROOT,
                &format!("f{i}"),
                node(10 + i, KIND_FILE),
            )
            .unwrap();
        }
        let mut view = Tree::default();
        view.share_from(&committed);
        assert!(view.nodes.shares_base(&committed.nodes));
        for id in [ROOT, 10, 19] {
            assert!(Arc::ptr_eq(&view.nodes[&id], &committed.nodes[&id]));
        }
        create(&mut view, ROOT, "new", node(30, KIND_FILE)).unwrap();
        view.apply(&Op::Unlink {
            parent: ROOT,
            name: b"f0".to_vec(),
            node: 10,
            time: Time::default(),
        })
        .unwrap();
        // The view changed the root and dropped f0; committed did not.
        assert!(committed.lookup(ROOT, b"new").is_err());
        assert_eq!(committed.lookup(ROOT, b"f0").unwrap(), 10);
        assert_eq!(committed.dir(ROOT).unwrap().entries.len(), 10);
        assert_eq!(view.dir(ROOT).unwrap().entries.len(), 10);
        assert!(view.get(10).is_err() && committed.get(10).is_ok());
        assert!(!Arc::ptr_eq(&view.nodes[&ROOT], &committed.nodes[&ROOT]));
        // Untouched nodes stay shared.
        assert!(Arc::ptr_eq(&view.nodes[&19], &committed.nodes[&19]));
    }

    /// The engine's cycle on one node table: the view takes ops (pending),
    /// the committed tree takes a prefix of them (a commit) and folds it
    /// into the table it shares with the view: the view still reads as
    /// committed + the rest, its overlay holds only what the rest
    /// changed, and the table was not copied.
    #[test]
    fn view_overlay_after_commit_and_rebase() {
        let mut committed = Tree::default();
        create(&mut committed, 0, "", node(ROOT, KIND_DIR)).unwrap();
        create(&mut committed, ROOT, "d", node(10, KIND_DIR)).unwrap();
        for i in 0..50 {
            create(
                &mut committed,
                10,
                &format!("f{i}"),
                node(100 + i, KIND_FILE),
            )
            .unwrap();
        }
        let mut view = committed.clone();
        let pending: Vec<Op> = (0..6)
            .map(|i| Op::Create {
                parent: if i < 3 { 10 } else { ROOT },
                name: format!("new{i}").into_bytes(),
                node: Box::new(node(200 + i, KIND_FILE)),
            })
            .chain([Op::Unlink {
                parent: 10,
                name: b"f7".to_vec(),
                node: 107,
                time: Time::default(),
            }])
            .collect();
        for op in &pending {
            view.apply(op).unwrap();
        }
        let replayed = |upto: usize, base: &Tree| {
            let mut t = base.clone();
            for op in &pending[upto..] {
                t.apply(op).unwrap();
            }
            t.all_nodes()
        };
        // A commit of the first three (all in directory 10).
        for op in &pending[..3] {
            committed.apply(op).unwrap();
        }
        let table = committed.nodes.base_ptr();
        committed.fold_into_shared(&mut view);
        assert_eq!(committed.nodes.base_ptr(), table, "table copied");
        assert!(view.nodes.shares_base(&committed.nodes));
        assert_eq!(committed.nodes.overlay_len(), 0);
        assert_eq!(view.all_nodes(), replayed(3, &committed));
        // Left in the view's overlay: the root and the files created in
        // it, directory 10 (one unlink still pending there), the file
        // unlinked; the three files committed agree with the table.
        let over = view.nodes.overlay_ids();
        assert_eq!(over, [ROOT, 10, 107, 203, 204, 205]);
    }

    /// A volume link counts like a subdirectory, holds nothing, can be
    /// renamed, replaced like an empty directory and removed; never hard
    /// linked.
    #[test]
    fn volume_links_act_as_empty_directories() {
        let mut t = Tree::default();
        create(&mut t, 0, "", node(ROOT, KIND_DIR)).unwrap();
        create(&mut t, ROOT, "d", node(10, KIND_DIR)).unwrap();
        create(&mut t, ROOT, "shared", node(20, KIND_VOLUME)).unwrap();
        assert_eq!(t.get(ROOT).unwrap().nlink, 4);
        assert_eq!(t.get(20).unwrap().nlink, 2);
        assert_eq!(t.get(20).unwrap().parent, ROOT);
        assert!(matches!(t.dir(20), Err(DriveError::NotDir)));
        let link = Op::Link {
            parent: 10,
            name: b"l".to_vec(),
            node: 20,
            ctime: Time::default(),
        };
        assert!(matches!(t.apply(&link), Err(DriveError::NotPermitted)));
        let mv = |name: &str, newparent: u64, newname: &str| Op::Rename {
            parent: ROOT,
            name: name.as_bytes().to_vec(),
            newparent,
            newname: newname.as_bytes().to_vec(),
            exchange: false,
            time: Time::default(),
        };
        t.apply(&mv("shared", 10, "s")).unwrap();
        assert_eq!(
            (t.get(20).unwrap().parent, t.get(10).unwrap().nlink),
            (10, 3)
        );
        assert_eq!(t.get(ROOT).unwrap().nlink, 3);
        // A directory moved over the link replaces it (an empty directory).
        create(&mut t, ROOT, "e", node(30, KIND_DIR)).unwrap();
        let removed = t
            .apply(&Op::Rename {
                parent: ROOT,
                name: b"e".to_vec(),
                newparent: 10,
                newname: b"s".to_vec(),
                exchange: false,
                time: Time::default(),
            })
            .unwrap();
        assert_eq!(removed.iter().map(|n| n.id).collect::<Vec<_>>(), [20]);
        // A file cannot replace it, and unlinking removes it entirely.
        create(&mut t, ROOT, "v", node(40, KIND_VOLUME)).unwrap();
        create(&mut t, ROOT, "f", node(50, KIND_FILE)).unwrap();
        assert!(matches!(
            t.apply(&mv("f", ROOT, "v")),
            Err(DriveError::IsDir)
        ));
        let removed = t
            .apply(&Op::Unlink {
                parent: ROOT,
                name: b"v".to_vec(),
                node: 40,
                time: Time::default(),
            })
            .unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!t.nodes.contains_key(&40));
        assert_eq!(t.get(ROOT).unwrap().nlink, 3);
    }

    /// A burst of ids from one cursor fills one low-bits position per
    /// `IDS_PER_STEP` files (a directory takes a whole one), moving on
    /// by one and wrapping; every id is below 2^53, never 0 or the root,
    /// and never one `taken` refuses.
    #[test]
    fn id_cursor_fills_positions_in_turn() {
        let low = |id: u64| id & ((1 << CURSOR_BITS) - 1);
        let mut c = IdCursor::starting_at((1 << CURSOR_BITS) - 2);
        let mut seen = HashSet::new();
        let ids: Vec<u64> = (0..4 * IDS_PER_STEP)
            .map(|_| c.fresh(KIND_FILE, |id| seen.contains(&id)))
            .collect();
        for id in &ids {
            assert!(*id > ROOT && *id < 1 << ID_BITS);
            assert!(seen.insert(*id), "id {id} twice");
        }
        let positions: Vec<u64> = ids.iter().map(|id| low(*id)).collect();
        let step = IDS_PER_STEP as usize;
        for (i, want) in [(1 << CURSOR_BITS) - 2, (1 << CURSOR_BITS) - 1, 0, 1]
            .into_iter()
            .enumerate()
        {
            assert!(
                positions[i * step..(i + 1) * step]
                    .iter()
                    .all(|p| *p == want)
            );
        }
        // A directory takes a position of its own.
        let mut c = IdCursor::starting_at(7);
        let made: Vec<u64> = [KIND_FILE, KIND_DIR, KIND_DIR, KIND_FILE, KIND_FILE]
            .into_iter()
            .map(|kind| low(c.fresh(kind, |_| false)))
            .collect();
        assert_eq!(made, [7, 8, 9, 10, 10]);
        // A cursor given a larger step (a volume of larger pages) fills
        // each position with that many files from the next position on; a
        // directory still takes a whole one.
        let mut c = IdCursor::starting_at(3);
        c.set_step(2 * IDS_PER_STEP);
        let made: Vec<u64> = (0..1 + 4 * IDS_PER_STEP)
            .map(|_| low(c.fresh(KIND_FILE, |_| false)))
            .collect();
        let step = IDS_PER_STEP as usize;
        assert!(
            made[..step].iter().all(|p| *p == 3),
            "the current position ends first"
        );
        assert!(made[step..3 * step].iter().all(|p| *p == 4));
        assert!(made[3 * step..].iter().all(|p| *p == 5));
        assert_eq!(low(c.fresh(KIND_DIR, |_| false)), 6);
        assert_eq!(low(c.fresh(KIND_FILE, |_| false)), 7);
        // A refused id is drawn again at the same position.
        let mut c = IdCursor::starting_at(5);
        let first = c.fresh(KIND_FILE, |_| false);
        let mut refused = 0;
        let next = c.fresh(KIND_FILE, |id| {
            refused += 1;
            refused < 3 || id == first
        });
        assert_eq!((low(next), refused >= 3), (5, true));
    }
}
