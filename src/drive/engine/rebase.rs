//! The rebase: a pure function from (the committed tree, this client's
//! view before, its pending ops) to the new view and pending ops, with
//! the conflict decisions it took.
//!
//! Decisions:
//! - an op whose name was taken meanwhile gets a conflict name (a rename
//!   onto a name another client's entries took, too: it would replace
//!   what this client never saw there);
//! - a create into a directory another client removed goes to the nearest
//!   directory above it that is left, under a conflict name (unless this
//!   client removed the new entry again itself);
//! - a `SetContent` whose base version was replaced becomes a conflict
//!   copy (this client's version next to the file); when this client no
//!   longer has the file, it is dropped (never written over a version this
//!   client did not see); except a relocation
//!   (`version == base`: the collector's repack), which is dropped: the
//!   file's new version holds the content, and the old refs stay live;
//! - an op that no longer applies (its target is gone) is dropped;
//! - a later op of this client naming an entry the rebase moved (a
//!   conflict name, a create moved up) names it where it went: an unlink
//!   or rename of a file this client made never reaches the file another
//!   client put at the name meanwhile.
//!
//! Invariant: the returned view equals `committed` with the returned ops
//! applied in order. No I/O, no locks.

use crate::drive::clock::now;
use crate::drive::error::DriveError;
use crate::drive::identity::hex8;
use crate::drive::tree::{IdCursor, ROOT, Tree};
use crate::format::meta::{KIND_DIR, Op};
use std::collections::{HashMap, HashSet, VecDeque};

/// Names (directory, name) that other clients' entries, applied to the
/// committed tree since this client's pending ops were made, created or
/// moved something into: a rename of this client onto one of them would
/// replace a node this client never saw there.
pub type Taken = HashSet<(u64, Vec<u8>)>;

/// The names `ops` create or move something into.
pub fn names_taken<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Taken {
    let mut taken = Taken::new();
    for op in ops {
        match op {
            Op::Create { parent, name, .. } | Op::Link { parent, name, .. } => {
                taken.insert((*parent, name.clone()));
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
                ..
            } => {
                taken.insert((*newparent, newname.clone()));
                if *exchange {
                    taken.insert((*parent, name.clone()));
                }
            }
            _ => {}
        }
    }
    taken
}

/// The names that link to another node in `after` than in `before` (or
/// to one where `before` had nothing): what the changes between two
/// committed trees took, when their entries are not known (collected).
/// A name moved away and back to the same node is not among them (a
/// rename onto it replaces what this client saw there). One pass over
/// `after`'s directories: for rare reloads, not for every refresh.
pub fn names_changed(before: &Tree, after: &Tree) -> Taken {
    let mut taken = Taken::new();
    for dir in after.nodes.values().filter(|n| n.kind == KIND_DIR) {
        let old = before.nodes.get(&dir.id).filter(|o| o.kind == KIND_DIR);
        for (name, link) in dir.entries.iter() {
            let same = old
                .and_then(|o| o.entries.get(name))
                .is_some_and(|l| l.node == link.node);
            if !same {
                taken.insert((dir.id, name.to_vec()));
            }
        }
    }
    taken
}

/// What [`rebase`] decided.
#[derive(Debug)]
pub struct Rebased {
    /// `committed` with `pending` applied in order.
    pub(super) view: Tree,
    /// The pending ops that still apply, in order (some renamed, some
    /// turned into conflict copies), with their client seqs.
    pub(super) pending: VecDeque<(u64, Op)>,
    /// Original node -> the conflict copy now holding this client's version
    /// (open handles and unsealed writes follow the copy).
    pub(super) conflicted: HashMap<u64, u64>,
    /// Ops that no longer apply (their target is gone), with their seqs.
    pub(super) dropped: Vec<(u64, Op)>,
    /// Whether any op was renamed, turned into a copy or dropped (the
    /// journal must then be rewritten to the new ops: replaying the old
    /// ones after a crash would lose this client's version).
    pub(super) changed: bool,
}

/// Rebuilds this client's view as `committed` + `pending`, fixing up
/// pending ops that no longer apply: a name taken meanwhile gets a
/// conflict name; a content change whose base version was replaced becomes
/// a conflict copy of the file as this client saw it in `old_view`
/// (later changes of that file's content are then dropped: the copy
/// holds them); an op that still fails is dropped. A rename onto a name in
/// `taken` that holds another node now is a name taken meanwhile too (it
/// would replace what this client never saw). `card` (this client's card
/// id) goes into conflict names.
pub fn rebase(
    committed: &Tree,
    old_view: &Tree,
    pending: VecDeque<(u64, Op)>,
    taken: &Taken,
    card: &[u8; 32],
    ids: &mut IdCursor,
) -> Rebased {
    let mut view = committed.clone();
    let mut conflicted: HashMap<u64, u64> = HashMap::new();
    let mut kept = VecDeque::new();
    let mut dropped = Vec::new();
    let originals: Vec<Op> = pending.iter().map(|(_, o)| o.clone()).collect();
    let mut aliases = Aliases::new();
    for (seq, op) in pending {
        let wanted = target(&op);
        let mut op = aliased(op, &mut aliases);
        if let Op::SetContent {
            node,
            base,
            version,
            ..
        } = &op
        {
            let current = view.nodes.get(node).map(|n| n.version);
            let moved_off = base == version && current != Some(*base);
            if conflicted.contains_key(node) || moved_off {
                dropped.push((seq, op));
                continue;
            }
            if current != Some(*base) {
                // Never write this version over one this client did not
                // see: it goes to a conflict copy, or, when this client
                // no longer has the file (it deleted it), nowhere.
                let Some(copy) = conflict_copy(old_view, &view, *node, card, ids) else {
                    tracing::warn!(
                        node,
                        "dropping an edit of a file this client deleted and another client changed: the other version stays"
                    );
                    dropped.push((seq, op));
                    continue;
                };
                if let Op::Create { node: c, .. } = &copy {
                    conflicted.insert(*node, c.id);
                }
                op = copy;
            }
        }
        let op = rehomed(&view, old_view, op, card);
        let applied = match replaces_unseen(&view, &op, taken) {
            true => Err(DriveError::Exists),
            false => view.apply(&op),
        };
        let mut keep = |op: Op| {
            if let (Some(w), Some(got)) = (wanted.clone(), target(&op))
                && w != got
            {
                aliases.insert(w, got);
            }
            kept.push_back((seq, op));
        };
        match applied {
            Ok(_removed) => keep(op),
            Err(DriveError::Exists) => {
                let renamed = rename_for_conflict(&view, op.clone(), card);
                match view.apply(&renamed) {
                    Ok(_) => keep(renamed),
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping a local change that no longer applies");
                        dropped.push((seq, op));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropping a local change that no longer applies");
                dropped.push((seq, op));
            }
        }
    }
    let changed = !dropped.is_empty() || kept.iter().zip(&originals).any(|((_, a), b)| a != b);
    Rebased {
        view,
        pending: kept,
        conflicted,
        dropped,
        changed,
    }
}

/// Where the rebase put entries this client's ops named elsewhere:
/// (directory, name in this client's ops) -> (directory, name in the
/// rebased view).
type Aliases = HashMap<(u64, Vec<u8>), (u64, Vec<u8>)>;

/// The entry `op` creates or moves something into.
fn target(op: &Op) -> Option<(u64, Vec<u8>)> {
    match op {
        Op::Create { parent, name, .. } | Op::Link { parent, name, .. } => {
            Some((*parent, name.clone()))
        }
        Op::Rename {
            newparent, newname, ..
        } => Some((*newparent, newname.clone())),
        _ => None,
    }
}

/// `op` with the names it reads redirected to where the rebase put them
/// (`Aliases`); a name unlinked or moved away is this client's no longer.
fn aliased(mut op: Op, aliases: &mut Aliases) -> Op {
    match &mut op {
        Op::Unlink { parent, name, .. } => {
            if let Some(to) = aliases.remove(&(*parent, name.clone())) {
                (*parent, *name) = to;
            }
        }
        Op::Rename {
            parent,
            name,
            newparent,
            newname,
            exchange,
            ..
        } => {
            let from = (*parent, name.clone());
            let moved = match exchange {
                true => aliases.get(&from).cloned(),
                false => aliases.remove(&from),
            };
            if let Some(to) = moved {
                (*parent, *name) = to;
            }
            if let Some(to) = aliases.get(&(*newparent, newname.clone())) {
                (*newparent, *newname) = to.clone();
            }
        }
        _ => {}
    }
    op
}

/// A create into a directory that is gone from `view` (another client
/// removed it) goes to the nearest directory above it (as this client had
/// it) that is still there, under a conflict name: a new file or directory
/// is never dropped for want of a place. One this client removed again
/// itself (not in `old_view`) is left to fail and be dropped.
fn rehomed(view: &Tree, old_view: &Tree, op: Op, card: &[u8; 32]) -> Op {
    let is_dir = |t: &Tree, id: u64| t.nodes.get(&id).is_some_and(|n| n.kind == KIND_DIR);
    let Op::Create { parent, name, node } = op else {
        return op;
    };
    if parent == 0 || is_dir(view, parent) || !old_view.nodes.contains_key(&node.id) {
        return Op::Create { parent, name, node };
    }
    let mut to = parent;
    for _ in 0..=old_view.nodes.len() {
        to = match old_view.nodes.get(&to) {
            Some(n) if n.kind == KIND_DIR && n.parent != to => n.parent,
            _ => ROOT,
        };
        if to == ROOT || is_dir(view, to) {
            break;
        }
    }
    if !is_dir(view, to) {
        to = ROOT;
    }
    tracing::warn!(
        node = node.id,
        "a new entry's directory was removed by another client: keeping it in the nearest directory left, under a conflict name"
    );
    Op::Create {
        name: conflict_name(view, to, &name, card),
        parent: to,
        node,
    }
}

/// Whether `op` is a rename (not an exchange) onto a name in `taken` that
/// holds another node than the one it moves.
fn replaces_unseen(view: &Tree, op: &Op, taken: &Taken) -> bool {
    let Op::Rename {
        parent,
        name,
        newparent,
        newname,
        exchange: false,
        ..
    } = op
    else {
        return false;
    };
    if !taken.contains(&(*newparent, newname.clone())) {
        return false;
    }
    match view.lookup(*newparent, newname) {
        Ok(target) => view.lookup(*parent, name).ok() != Some(target),
        Err(_) => false,
    }
}

/// `name.conflict-<card8>-<unix time>`, with `-<n>` added until it is
/// free in `dir`; cut to fit 255 bytes.
pub fn conflict_name(tree: &Tree, dir: u64, name: &[u8], card: &[u8; 32]) -> Vec<u8> {
    let secs = now().secs;
    let base = format!(".conflict-{}-{secs}", hex8(card));
    let taken = |n: &[u8]| {
        tree.nodes
            .get(&dir)
            .is_some_and(|d| d.entries.contains_key(n))
    };
    for i in 0u32.. {
        let suffix = if i == 0 {
            base.clone()
        } else {
            format!("{base}-{i}")
        };
        let mut n = name[..name.len().min(255 - suffix.len())].to_vec();
        n.extend_from_slice(suffix.as_bytes());
        if !taken(&n) {
            return n;
        }
    }
    unreachable!("some suffix is free")
}

fn rename_for_conflict(tree: &Tree, op: Op, card: &[u8; 32]) -> Op {
    match op {
        Op::Create { parent, name, node } => Op::Create {
            name: conflict_name(tree, parent, &name, card),
            parent,
            node,
        },
        Op::Link {
            parent,
            name,
            node,
            ctime,
        } => Op::Link {
            name: conflict_name(tree, parent, &name, card),
            parent,
            node,
            ctime,
        },
        Op::Rename {
            parent,
            name,
            newparent,
            newname,
            exchange,
            time,
        } => Op::Rename {
            newname: conflict_name(tree, newparent, &newname, card),
            parent,
            name,
            newparent,
            exchange,
            time,
        },
        other => other,
    }
}

/// A Create op for a copy of `node` as this client last saw it, placed next
/// to the file in the current view.
fn conflict_copy(
    old_view: &Tree,
    view: &Tree,
    node: u64,
    card: &[u8; 32],
    ids: &mut IdCursor,
) -> Option<Op> {
    let mine = old_view.nodes.get(&node)?;
    let (parent, name) = view.name_of(node).or_else(|| old_view.name_of(node))?;
    let mut copy = (**mine).clone();
    copy.id = ids.fresh(copy.kind, |id| {
        view.nodes.contains_key(&id) || old_view.nodes.contains_key(&id)
    });
    copy.entries.clear();
    tracing::warn!(
        node,
        "concurrent edit of the same file: keeping this client's version as a conflict copy"
    );
    Some(Op::Create {
        parent,
        name: conflict_name(view, parent, &name, card),
        node: Box::new(copy),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::meta::{BlockRef, KIND_FILE, Node, Time};

    const CARD: [u8; 32] = [0xab; 32];

    fn node(id: u64, kind: u8, version: u64) -> Node {
        Node {
            id,
            kind,
            perm: 0o644,
            nlink: 1,
            version,
            next_cookie: 1,
            ..Default::default()
        }
    }

    fn create(parent: u64, name: &str, n: Node) -> Op {
        Op::Create {
            parent,
            name: name.as_bytes().to_vec(),
            node: Box::new(n),
        }
    }

    fn unlink(parent: u64, name: &str, node: u64) -> Op {
        Op::Unlink {
            parent,
            name: name.as_bytes().to_vec(),
            node,
            time: Time::default(),
        }
    }

    /// A rename within the root (not an exchange).
    fn rename(from: &str, to: &str) -> Op {
        Op::Rename {
            parent: ROOT,
            name: from.as_bytes().to_vec(),
            newparent: ROOT,
            newname: to.as_bytes().to_vec(),
            exchange: false,
            time: Time::default(),
        }
    }

    /// [`rebase`] with no names known to be taken, as card [`CARD`].
    fn rebase_here(committed: &Tree, old_view: &Tree, pending: VecDeque<(u64, Op)>) -> Rebased {
        let taken = Taken::new();
        rebase(
            committed,
            old_view,
            pending,
            &taken,
            &CARD,
            &mut IdCursor::default(),
        )
    }

    fn set_content(node: u64, base: u64, version: u64) -> Op {
        Op::SetContent {
            node,
            base,
            version,
            size: 3,
            drop_from: 0,
            blocks: vec![(
                0,
                BlockRef {
                    id: [version as u8; 16],
                    len: 3,
                    epoch: 0,
                    packed: None,
                    key: [version as u8; 32].into(),
                },
            )],
            mtime: Time::default(),
        }
    }

    /// A tree with the root and, for each (name, id, version), a file.
    fn tree(files: &[(&str, u64, u64)]) -> Tree {
        let mut t = Tree::default();
        t.apply(&create(0, "", node(ROOT, KIND_DIR, 0))).unwrap();
        for (name, id, version) in files {
            t.apply(&create(ROOT, name, node(*id, KIND_FILE, *version)))
                .unwrap();
        }
        t
    }

    fn apply_all(mut t: Tree, ops: &[&Op]) -> Tree {
        for op in ops {
            t.apply(op).unwrap();
        }
        t
    }

    fn names(t: &Tree) -> Vec<String> {
        t.get(ROOT)
            .unwrap()
            .entries
            .keys()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// The rebased view reads through the committed tree's node table
    /// (as the view before it did, see `Core::fold_committed`): its
    /// overlay holds only the nodes its pending ops changed, and it reads
    /// as committed + those ops.
    #[test]
    fn the_rebased_view_shares_the_committed_table() {
        let files: Vec<(String, u64)> = (0..40).map(|i| (format!("f{i}"), 100 + i)).collect();
        let named: Vec<(&str, u64, u64)> =
            files.iter().map(|(n, id)| (n.as_str(), *id, 1)).collect();
        let base = tree(&named);
        let mine = [
            create(ROOT, "mine", node(10, KIND_FILE, 1)),
            set_content(105, 1, 2),
        ];
        let mut old_view = base.clone();
        for op in &mine {
            old_view.apply(op).unwrap();
        }
        // Another client removed f7 meanwhile.
        let mut committed = base;
        committed.apply(&unlink(ROOT, "f7", 107)).unwrap();
        committed.fold_into_shared(&mut old_view);
        let pending = VecDeque::from([(1, mine[0].clone()), (2, mine[1].clone())]);
        let r = rebase_here(&committed, &old_view, pending);
        assert!(r.dropped.is_empty() && r.conflicted.is_empty() && !r.changed);
        assert!(r.view.nodes.shares_base(&committed.nodes));
        assert_eq!(r.view.nodes.overlay_ids(), [ROOT, 10, 105]);
        let replayed = apply_all(committed.clone(), &[&mine[0], &mine[1]]);
        assert_eq!(r.view.all_nodes(), replayed.all_nodes());
        assert!(r.view.get(107).is_err());
    }

    /// Ops after one the rebase gave a conflict name follow the entry
    /// there: a rename, then an unlink of this client's new files move
    /// and remove them, never the files the other client put at their
    /// names.
    #[test]
    fn later_ops_follow_an_entry_to_its_conflict_name() {
        let base = tree(&[]);
        let mine = [
            create(ROOT, "notes", node(10, KIND_FILE, 1)),
            rename("notes", "draft"),
            create(ROOT, "todo", node(11, KIND_FILE, 1)),
            unlink(ROOT, "todo", 11),
        ];
        let old_view = apply_all(base.clone(), &mine.iter().collect::<Vec<_>>());
        let theirs = [
            create(ROOT, "notes", node(20, KIND_FILE, 2)),
            create(ROOT, "todo", node(21, KIND_FILE, 2)),
        ];
        let committed = apply_all(base, &theirs.iter().collect::<Vec<_>>());
        let pending = (0..).zip(mine).collect();
        let r = rebase_here(&committed, &old_view, pending);
        assert!(r.dropped.is_empty(), "{:?}", r.dropped);
        assert_eq!(r.view.lookup(ROOT, b"notes").unwrap(), 20);
        assert_eq!(r.view.lookup(ROOT, b"todo").unwrap(), 21);
        assert_eq!(r.view.lookup(ROOT, b"draft").unwrap(), 10);
        assert_eq!(names(&r.view), ["draft", "notes", "todo"]);
    }

    #[test]
    fn a_name_taken_meanwhile_gets_a_conflict_name() {
        let base = tree(&[]);
        let mine = create(ROOT, "notes", node(10, KIND_FILE, 1));
        let old_view = apply_all(base.clone(), &[&mine]);
        // Another client created "notes" first.
        let committed = apply_all(base, &[&create(ROOT, "notes", node(20, KIND_FILE, 2))]);
        let r = rebase_here(&committed, &old_view, VecDeque::from([(7, mine)]));
        assert!(r.dropped.is_empty() && r.conflicted.is_empty());
        assert_eq!(r.pending.len(), 1);
        let (seq, op) = &r.pending[0];
        assert_eq!(*seq, 7);
        let Op::Create { name, node, .. } = op else {
            panic!("expected a Create, got {op:?}")
        };
        assert_eq!(node.id, 10);
        let name = String::from_utf8(name.clone()).unwrap();
        assert!(
            name.starts_with("notes.conflict-abababab"),
            "conflict name {name}"
        );
        // Theirs keeps the name, mine sits next to it.
        assert_eq!(r.view.lookup(ROOT, b"notes").unwrap(), 20);
        assert_eq!(r.view.lookup(ROOT, name.as_bytes()).unwrap(), 10);
        assert_eq!(names(&r.view).len(), 2);
    }

    #[test]
    fn set_content_on_a_replaced_base_becomes_a_conflict_copy() {
        let base = tree(&[("doc", 10, 1)]);
        // This client wrote version 2 on base 1, then version 3 on base 2.
        let first = set_content(10, 1, 2);
        let second = set_content(10, 2, 3);
        let old_view = apply_all(base.clone(), &[&first, &second]);
        // Another client committed version 9 on base 1 meanwhile.
        let committed = apply_all(base, &[&set_content(10, 1, 9)]);
        let r = rebase_here(
            &committed,
            &old_view,
            VecDeque::from([(1, first), (2, second.clone())]),
        );
        // Their version stays in place.
        assert_eq!(r.view.get(10).unwrap().version, 9);
        // Mine (as last seen: version 3) is a new file next to it.
        let copy = *r.conflicted.get(&10).expect("a conflict copy of node 10");
        assert_ne!(copy, 10);
        let c = r.view.get(copy).unwrap();
        assert_eq!(c.version, 3);
        assert_eq!(c.blocks, old_view.get(10).unwrap().blocks);
        let (parent, name) = r.view.name_of(copy).unwrap();
        assert_eq!(parent, ROOT);
        assert!(name.starts_with(b"doc.conflict-abababab"));
        // The first change became the copy's Create; the second is held by
        // the copy and dropped.
        assert_eq!(r.pending.len(), 1);
        assert!(matches!(&r.pending[0], (1, Op::Create { node, .. }) if node.id == copy));
        assert_eq!(r.dropped.len(), 1);
        assert_eq!(r.dropped[0].0, 2);
        assert!(matches!(r.dropped[0].1, Op::SetContent { version: 3, .. }));
    }

    #[test]
    fn an_edit_of_a_file_deleted_here_never_replaces_the_other_version() {
        let base = tree(&[("doc", 10, 1)]);
        // This client wrote version 2, then deleted the file.
        let edit = set_content(10, 1, 2);
        let unlink = unlink(ROOT, "doc", 10);
        let old_view = apply_all(base.clone(), &[&edit, &unlink]);
        // Another client wrote version 9 and renamed the file meanwhile.
        let rename = rename("doc", "kept");
        let committed = apply_all(base, &[&set_content(10, 1, 9), &rename]);
        let r = rebase_here(
            &committed,
            &old_view,
            VecDeque::from([(1, edit), (2, unlink)]),
        );
        // Their version stays, under their name; both changes are dropped
        // (the unlink names a name that is gone).
        assert_eq!(r.view.get(10).unwrap().version, 9);
        assert_eq!(r.view.name_of(10).unwrap().1, b"kept".to_vec());
        assert!(r.conflicted.is_empty() && r.pending.is_empty());
        assert_eq!(r.dropped.len(), 2);
    }

    /// A rename onto a name that was free here, or held what this client
    /// saw, but that another client's entry took meanwhile keeps both
    /// files: this client's under a conflict name. A rename onto a name
    /// nobody else touched still replaces what it held.
    #[test]
    fn a_rename_never_replaces_what_another_client_put_there() {
        let base = tree(&[("mine", 10, 1), ("old", 11, 1), ("also", 12, 1)]);
        let onto_new = rename("mine", "theirs");
        let onto_old = rename("also", "old");
        let old_view = apply_all(base.clone(), &[&onto_new, &onto_old]);
        let theirs = create(ROOT, "theirs", node(20, KIND_FILE, 1));
        let committed = apply_all(base, &[&theirs]);
        let r = rebase(
            &committed,
            &old_view,
            VecDeque::from([(1, onto_new), (2, onto_old)]),
            &names_taken([&theirs]),
            &CARD,
            &mut IdCursor::default(),
        );
        assert_eq!(r.view.lookup(ROOT, b"theirs").unwrap(), 20);
        let n = names(&r.view);
        assert_eq!(n.len(), 3, "{n:?}");
        assert!(n[2].starts_with("theirs.conflict-abababab"), "{n:?}");
        assert_eq!(r.view.lookup(ROOT, n[2].as_bytes()).unwrap(), 10);
        // "old" was nobody else's: replaced as this client asked.
        assert_eq!(r.view.lookup(ROOT, b"old").unwrap(), 12);
        assert!(r.view.get(11).is_err());
        assert!(r.changed && r.dropped.is_empty());
    }

    /// A file created (and a directory made) in a directory another
    /// client removed meanwhile land in the directory above it, under a
    /// conflict name; the file's content change follows it there. A file
    /// this client created and removed again there is not brought back.
    #[test]
    fn a_create_in_a_directory_removed_meanwhile_moves_up() {
        let mut base = tree(&[]);
        base.apply(&create(ROOT, "top", node(5, KIND_DIR, 1)))
            .unwrap();
        base.apply(&create(5, "gone", node(6, KIND_DIR, 1)))
            .unwrap();
        let file = create(6, "new", node(10, KIND_FILE, 1));
        let edit = set_content(10, 1, 2);
        let dir = create(6, "sub", node(11, KIND_DIR, 1));
        // A scratch file this client created and removed again.
        let scratch = create(6, "scratch", node(12, KIND_FILE, 1));
        let removed = unlink(6, "scratch", 12);
        let old_view = apply_all(base.clone(), &[&file, &edit, &dir, &scratch, &removed]);
        let rmdir = unlink(5, "gone", 6);
        let committed = apply_all(base, &[&rmdir]);
        let r = rebase_here(
            &committed,
            &old_view,
            VecDeque::from([(1, file), (2, edit), (3, dir), (4, scratch), (5, removed)]),
        );
        // The scratch file's create and unlink find no place: dropped.
        let dropped: Vec<u64> = r.dropped.iter().map(|(s, _)| *s).collect();
        assert_eq!(dropped, [4, 5]);
        assert!(r.changed);
        assert!(r.view.get(12).is_err());
        let (parent, name) = r.view.name_of(10).unwrap();
        assert_eq!(parent, 5);
        assert!(name.starts_with(b"new.conflict-abababab"));
        assert_eq!(r.view.get(10).unwrap().version, 2);
        let (parent, name) = r.view.name_of(11).unwrap();
        assert_eq!(parent, 5);
        assert!(name.starts_with(b"sub.conflict-abababab"));
        assert!(
            r.view.get(6).is_err(),
            "the removed directory stays removed"
        );
    }

    #[test]
    fn a_relocation_of_a_changed_file_is_dropped_not_copied() {
        let base = tree(&[("doc", 10, 1), ("other", 11, 1)]);
        // The collector relocates both files (same version, new refs).
        let moved = set_content(10, 1, 1);
        let kept = set_content(11, 1, 1);
        let old_view = apply_all(base.clone(), &[&moved, &kept]);
        // Another client wrote a new version of the first meanwhile.
        let committed = apply_all(base, &[&set_content(10, 1, 9)]);
        let r = rebase_here(
            &committed,
            &old_view,
            VecDeque::from([(1, moved), (2, kept)]),
        );
        assert!(r.conflicted.is_empty(), "no conflict copy");
        assert_eq!(names(&r.view).len(), 2);
        assert_eq!(r.dropped.len(), 1);
        assert_eq!(r.dropped[0].0, 1);
        assert_eq!(r.view.get(10).unwrap().version, 9);
        // The unchanged one still moves, and keeps its version.
        assert_eq!(r.pending.len(), 1);
        assert_eq!(r.pending[0].0, 2);
        assert_eq!(r.view.get(11).unwrap().version, 1);
        assert_eq!(r.view.get(11).unwrap().blocks.get(&0).unwrap().id, [1; 16]);
    }

    #[test]
    fn set_content_on_an_unchanged_base_applies_as_is() {
        let base = tree(&[("doc", 10, 1), ("other", 11, 1)]);
        let mine = set_content(10, 1, 2);
        let old_view = apply_all(base.clone(), &[&mine]);
        // Another client changed a different file.
        let committed = apply_all(base, &[&set_content(11, 1, 5)]);
        let r = rebase_here(&committed, &old_view, VecDeque::from([(4, mine)]));
        assert!(r.conflicted.is_empty() && r.dropped.is_empty());
        assert_eq!(r.view.get(10).unwrap().version, 2);
        assert_eq!(r.view.get(11).unwrap().version, 5);
        assert!(matches!(
            r.pending[0],
            (4, Op::SetContent { version: 2, .. })
        ));
    }

    #[test]
    fn an_op_whose_target_is_gone_is_dropped() {
        let base = tree(&[("doc", 10, 1)]);
        let rename = rename("doc", "renamed");
        let keep = create(ROOT, "new", node(12, KIND_FILE, 1));
        let old_view = apply_all(base.clone(), &[&rename, &keep]);
        // Another client removed "doc".
        let committed = apply_all(base, &[&unlink(ROOT, "doc", 10)]);
        let r = rebase_here(
            &committed,
            &old_view,
            VecDeque::from([(1, rename), (2, keep)]),
        );
        assert_eq!(r.dropped.len(), 1);
        assert!(matches!(r.dropped[0], (1, Op::Rename { .. })));
        assert_eq!(r.pending.len(), 1);
        assert_eq!(r.pending[0].0, 2);
        assert_eq!(names(&r.view), ["new"]);
        assert!(r.view.get(10).is_err());
    }

    /// Names that point elsewhere after, or are new, are taken; names
    /// kept, removed, or moved away and back to the same node are not.
    #[test]
    fn names_changed_between_two_trees_are_the_new_and_relinked_ones() {
        let before = tree(&[
            ("kept", 2, 1),
            ("gone", 3, 1),
            ("relinked", 4, 1),
            ("back", 5, 1),
        ]);
        let after = apply_all(
            before.clone(),
            &[
                &unlink(ROOT, "gone", 3),
                &unlink(ROOT, "relinked", 4),
                &create(ROOT, "relinked", node(6, KIND_FILE, 1)),
                &create(ROOT, "new", node(7, KIND_FILE, 1)),
                &rename("back", "away"),
                &rename("away", "back"),
            ],
        );
        let mut got: Vec<String> = names_changed(&before, &after)
            .into_iter()
            .map(|(dir, name)| {
                assert_eq!(dir, ROOT);
                String::from_utf8(name).unwrap()
            })
            .collect();
        got.sort();
        assert_eq!(got, ["new", "relinked"]);
        assert!(names_changed(&after, &after).is_empty());
    }
}
