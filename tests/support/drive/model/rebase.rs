//! The model's side of a second client: the node-level changes a client
//! logs ([`MOp`], as the engine's log entries hold them), replaying them on
//! a tree, and the rebase of one client's changes onto what another
//! committed meanwhile, by the rules docs/ARCHITECTURE.md states
//! ("Commits", step 7):
//! - a name taken meanwhile (create, link, rename target) gets a conflict
//!   name; for a rename, a target name that another client's commits
//!   created or moved something into and that holds another node now;
//! - a content change whose base version was replaced becomes a conflict
//!   copy holding this client's last version of the file (its later
//!   content changes are in the copy); when this client no longer has the
//!   file, the change is dropped: the other client's version stays;
//! - a create into a directory the other client removed goes to the
//!   nearest directory above it (as this client had it) that is left,
//!   under a conflict name (unless this client removed it again itself);
//! - a change that no longer applies (its target is gone) is dropped;
//! - a later change naming an entry the rebase moved (a conflict name, a
//!   create moved up) names it where it went.
//!
//! Replay follows the engine's log semantics: names are looked up when a
//! change is replayed; an unlink names the node it removes; a rename
//! replaces whatever its target name holds then.

use super::*;

/// A node-level change as the engine's log holds it.
#[derive(Debug, Clone)]
pub(super) enum MOp {
    Create {
        parent: u64,
        name: String,
        node: u64,
        kind: Kind,
        meta: Meta,
    },
    Link {
        parent: u64,
        name: String,
        node: u64,
    },
    Unlink {
        parent: u64,
        name: String,
        node: u64,
    },
    Rename {
        parent: u64,
        name: String,
        newparent: u64,
        newname: String,
        exchange: bool,
    },
    Perm {
        node: u64,
        perm: u16,
    },
    /// The whole content after the change (the engine logs the blocks
    /// that changed; on the base it names, the result is the same).
    Content {
        node: u64,
        base: u64,
        version: u64,
        data: Vec<u8>,
    },
    Xattr {
        node: u64,
        name: String,
        value: Option<Vec<u8>>,
    },
}

/// The suffix the model gives conflict names; the comparison turns the
/// engine's `.conflict-<card8>-<time>[-n]` and this alike into
/// `.conflict`.
const CONFLICT: &str = ".conflict~";

impl Model {
    fn dir_of(&self, id: u64) -> R<&BTreeMap<String, u64>> {
        self.nodes.get(&id).ok_or(libc::ENOENT)?;
        self.children(id)
    }

    fn lookup(&self, parent: u64, name: &str) -> R<u64> {
        self.dir_of(parent)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// Applies one logged change as the engine replays a log entry; on
    /// error the model is unchanged.
    pub(super) fn replay(&mut self, op: &MOp) -> R<()> {
        match op {
            MOp::Create {
                parent,
                name,
                node,
                kind,
                meta,
            } => {
                if self.nodes.contains_key(node) {
                    return Err(libc::EEXIST);
                }
                if self.dir_of(*parent)?.contains_key(name) {
                    return Err(libc::EEXIST);
                }
                let kind = match kind {
                    Kind::Dir(_) => Kind::Dir(BTreeMap::new()),
                    k => k.clone(),
                };
                self.nodes.insert(*node, kind);
                self.meta.insert(*node, meta.clone());
                self.children_mut(*parent).insert(name.clone(), *node);
            }
            MOp::Link { parent, name, node } => {
                if !self.nodes.contains_key(node) {
                    return Err(libc::ENOENT);
                }
                if self.is_dir(*node) {
                    return Err(libc::EPERM);
                }
                if self.dir_of(*parent)?.contains_key(name) {
                    return Err(libc::EEXIST);
                }
                self.children_mut(*parent).insert(name.clone(), *node);
            }
            MOp::Unlink { parent, name, node } => {
                if self.lookup(*parent, name)? != *node {
                    return Err(libc::ENOENT);
                }
                if let Kind::Dir(c) = &self.nodes[node]
                    && !c.is_empty()
                {
                    return Err(libc::ENOTEMPTY);
                }
                self.children_mut(*parent).remove(name);
                self.gc();
            }
            MOp::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
            } => {
                let src = self.lookup(*parent, name)?;
                self.dir_of(*newparent)?;
                if self.is_dir(src) && self.within(*newparent, src) {
                    return Err(libc::EINVAL);
                }
                if *exchange {
                    let dst = self.lookup(*newparent, newname)?;
                    if self.is_dir(dst) && self.within(*parent, dst) {
                        return Err(libc::EINVAL);
                    }
                    self.children_mut(*parent).insert(name.clone(), dst);
                    self.children_mut(*newparent).insert(newname.clone(), src);
                    return Ok(());
                }
                if let Some(&dst) = self.dir_of(*newparent)?.get(newname) {
                    if dst == src {
                        return Ok(());
                    }
                    match (self.is_dir(src), self.is_dir(dst)) {
                        (true, false) => return Err(libc::ENOTDIR),
                        (false, true) => return Err(libc::EISDIR),
                        (true, true) if !self.children(dst)?.is_empty() => {
                            return Err(libc::ENOTEMPTY);
                        }
                        _ => {}
                    }
                }
                self.children_mut(*parent).remove(name);
                self.children_mut(*newparent).insert(newname.clone(), src);
                self.gc();
            }
            MOp::Perm { node, perm } => {
                self.meta.get_mut(node).ok_or(libc::ENOENT)?.perm = *perm;
            }
            MOp::Content {
                node,
                version,
                data,
                ..
            } => {
                match self.nodes.get_mut(node).ok_or(libc::ENOENT)? {
                    Kind::File(d) => *d = data.clone(),
                    _ => return Err(libc::EISDIR),
                }
                self.meta.get_mut(node).unwrap().version = *version;
            }
            MOp::Xattr { node, name, value } => {
                let xattrs = &mut self.meta.get_mut(node).ok_or(libc::ENOENT)?.xattrs;
                match value {
                    Some(v) => {
                        xattrs.insert(name.clone(), v.clone());
                    }
                    None => {
                        xattrs.remove(name).ok_or(libc::ENODATA)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `name` + the conflict suffix, with `~n` added until it is free in
    /// `dir`.
    fn conflict_name(&self, dir: u64, name: &str) -> String {
        let taken = |n: &str| self.dir_of(dir).is_ok_and(|c| c.contains_key(n));
        (0u32..)
            .map(|i| format!("{name}{CONFLICT}{i}"))
            .find(|n| !taken(n))
            .expect("some suffix is free")
    }

    /// A name of `node` (a directory entry naming it), if any.
    pub(super) fn name_of(&self, node: u64) -> Option<(u64, String)> {
        self.nodes.iter().find_map(|(id, k)| match k {
            Kind::Dir(c) => (c.iter())
                .find(|(_, n)| **n == node)
                .map(|(name, _)| (*id, name.clone())),
            _ => None,
        })
    }
}

/// Names (directory, name) some changes created or moved something into.
pub(super) type Taken = std::collections::BTreeSet<(u64, String)>;

/// The names `ops` create or move something into.
pub(super) fn names_taken(ops: &[MOp]) -> Taken {
    let mut taken = Taken::new();
    for op in ops {
        match op {
            MOp::Create { parent, name, .. } | MOp::Link { parent, name, .. } => {
                taken.insert((*parent, name.clone()));
            }
            MOp::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
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

/// `committed` with `pending` (changes this client made on an older
/// committed tree, ending in `mine`) replayed by the rules above, `taken`
/// the names the commits since took; the result's log holds the changes
/// kept, as they were kept.
pub(super) fn rebase(committed: &Model, mine: &Model, pending: Vec<MOp>, taken: &Taken) -> Model {
    let mut view = committed.clone();
    view.log.clear();
    view.held = [None; HELD];
    view.next = committed.next.max(mine.next);
    let mut copied = std::collections::BTreeSet::new();
    let mut aliases = Aliases::new();
    for op in pending {
        let wanted = target(&op);
        let mut op = aliased(op, &mut aliases);
        if let MOp::Content { node, base, .. } = &op {
            if copied.contains(node) {
                continue;
            }
            let current = view.meta.get(node).map(|m| m.version);
            if current != Some(*base) {
                match conflict_copy(mine, &mut view, *node) {
                    Some(copy) => {
                        copied.insert(*node);
                        op = copy;
                    }
                    None => continue,
                }
            }
        }
        let op = view.rehomed(mine, op);
        let replaces_unseen = match &op {
            MOp::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange: false,
            } => {
                taken.contains(&(*newparent, newname.clone()))
                    && view
                        .lookup(*newparent, newname)
                        .is_ok_and(|t| view.lookup(*parent, name).ok() != Some(t))
            }
            _ => false,
        };
        let replayed = match replaces_unseen {
            true => Err(libc::EEXIST),
            false => view.replay(&op),
        };
        let op = match replayed {
            Ok(()) => op,
            Err(libc::EEXIST) => {
                let op = view.renamed_for_conflict(op);
                if view.replay(&op).is_err() {
                    continue;
                }
                op
            }
            Err(_) => continue,
        };
        if let (Some(w), Some(got)) = (wanted, target(&op))
            && w != got
        {
            aliases.insert(w, got);
        }
        view.log.push(op);
    }
    view
}

/// Where the rebase put entries the pending changes named elsewhere:
/// (directory, name in the changes) -> (directory, name in the view).
type Aliases = std::collections::BTreeMap<(u64, String), (u64, String)>;

/// The entry `op` creates or moves something into.
fn target(op: &MOp) -> Option<(u64, String)> {
    match op {
        MOp::Create { parent, name, .. } | MOp::Link { parent, name, .. } => {
            Some((*parent, name.clone()))
        }
        MOp::Rename {
            newparent, newname, ..
        } => Some((*newparent, newname.clone())),
        _ => None,
    }
}

/// `op` with the names it reads redirected by `aliases`; a name unlinked
/// or moved away is the client's no longer.
fn aliased(mut op: MOp, aliases: &mut Aliases) -> MOp {
    match &mut op {
        MOp::Unlink { parent, name, .. } => {
            if let Some(to) = aliases.remove(&(*parent, name.clone())) {
                (*parent, *name) = to;
            }
        }
        MOp::Rename {
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

impl Model {
    /// A create whose directory is gone, moved up (see the module doc).
    fn rehomed(&self, mine: &Model, op: MOp) -> MOp {
        let MOp::Create {
            parent,
            name,
            node,
            kind,
            meta,
        } = op
        else {
            return op;
        };
        let is_dir = |id: u64| matches!(self.nodes.get(&id), Some(Kind::Dir(_)));
        if !mine.nodes.contains_key(&node) {
            // This client removed it again itself: left to fail.
            return MOp::Create {
                parent,
                name,
                node,
                kind,
                meta,
            };
        }
        let mut to = parent;
        while !is_dir(to) {
            to = mine.name_of(to).map_or(0, |(p, _)| p);
        }
        let name = match to == parent {
            true => name,
            false => self.conflict_name(to, &name),
        };
        MOp::Create {
            parent: to,
            name,
            node,
            kind,
            meta,
        }
    }

    fn renamed_for_conflict(&self, op: MOp) -> MOp {
        match op {
            MOp::Create {
                parent,
                name,
                node,
                kind,
                meta,
            } => MOp::Create {
                name: self.conflict_name(parent, &name),
                parent,
                node,
                kind,
                meta,
            },
            MOp::Link { parent, name, node } => MOp::Link {
                name: self.conflict_name(parent, &name),
                parent,
                node,
            },
            MOp::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
            } => MOp::Rename {
                newname: self.conflict_name(newparent, &newname),
                parent,
                name,
                newparent,
                exchange,
            },
            other => other,
        }
    }
}

/// A create of a copy of `node` as this client last had it (`mine`), next
/// to the file where it is now (else where this client had it).
fn conflict_copy(mine: &Model, view: &mut Model, node: u64) -> Option<MOp> {
    let kind = mine.nodes.get(&node)?.clone();
    let meta = mine.meta[&node].clone();
    let (parent, name) = view.name_of(node).or_else(|| mine.name_of(node))?;
    let id = view.fresh();
    Some(MOp::Create {
        name: view.conflict_name(parent, &name),
        parent,
        node: id,
        kind,
        meta,
    })
}

/// `name` with any conflict suffix (the engine's or the model's) cut to
/// `.conflict`, in every component of `path`.
pub(super) fn normalized(path: &str) -> String {
    path.split('/')
        .map(|c| match c.find(".conflict") {
            Some(i) => format!("{}.conflict", &c[..i]),
            None => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}
