//! Shared folders through the router: sharing a folder (converting it into
//! its own volume the first time), changing and removing members, listing
//! shares, re-encrypting a shared folder.
//!
//! Converting a folder of the root volume (first `share_add`):
//! 1. refuse (`Busy`) if a file inside is open for writing or has unsealed
//!    writes; sync the root volume; hold the router's write gate so the
//!    folder cannot change;
//! 2. write the new volume (keyring generation 0 for the owner and the
//!    member, genesis entries recreating every node of the folder with the
//!    same block refs (each carries its own key, so nothing is
//!    re-encrypted; only the current versions' keys enter the new volume),
//!    and a snapshot);
//! 3. commit, in the root volume, a link node under a temporary name
//!    exchanged with the folder (one log entry switches the name), then the
//!    removal of the folder's old nodes.
//!
//! A transient store error during 1 or 3 retries that sync, and during 2
//! the put that met it (`drive::retry`), up to `retry::TRIES`
//! attempts each: a share makes its puts in the caller's call, not
//! through the committer's retries.
//!
//! A crash between 2 and 3 (or another client of the owner changing the
//! folder meanwhile, which makes this `Busy`) leaves the folder unchanged
//! in the root volume and an unused volume in the store that the invited
//! member can still see (a copy of the folder at that moment); sharing
//! again makes another volume. Ops of step 3 are journalled durably before they are committed,
//! so a crash during 3 finishes on the next open.
//!
//! Invariants: only the drive owner changes shares (`NotPermitted`
//! otherwise); no nesting (the root, folders inside a shared folder and
//! folders containing one are refused with `Invalid`).

use super::{At, Router, Target, linked_volume};
use crate::drive::clock::now;
use crate::drive::engine::state::Core;
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::{Member, Role, hex8};
use crate::drive::retry::{RetryPuts, retry_transient};
use crate::drive::tree::{KIND_VOLUME, ROOT};
use crate::drive::types::{Ino, ShareInfo, ShareMember};
use crate::drive::volume::genesis::create_volume;
use crate::format::crypto::random_array;
use crate::format::meta::{KIND_DIR, MemberRecord, Node, Op};
use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// How many times conversion syncs while other changes keep arriving.
const SETTLE_TRIES: usize = 5;

/// What converting one folder needs, read under the root engine's lock.
struct Plan {
    /// The folder first, then every node below it (breadth-first, once).
    nodes: Vec<Node>,
    parent: u64,
    name: Vec<u8>,
    /// Removal of the folder's nodes, children before their directory, the
    /// folder itself last.
    unlinks: Vec<Op>,
}

/// Reads the folder `dir` and everything below it from the view.
fn read_plan(core: &Core, dir: u64) -> Result<Plan> {
    let folder = core.view().get(dir)?;
    if folder.kind != KIND_DIR {
        return Err(DriveError::NotDir);
    }
    let (parent, name) = core
        .view()
        .name_of(dir)
        .ok_or(DriveError::Invalid("folder has no name".into()))?;
    let mut nodes = vec![folder.clone()];
    let mut seen = HashSet::from([dir]);
    let mut queue = VecDeque::from([dir]);
    while let Some(d) = queue.pop_front() {
        for link in core.view().get(d)?.entries.values() {
            if !seen.insert(link.node) {
                continue;
            }
            let n = core.view().get(link.node)?;
            match n.kind {
                KIND_VOLUME => {
                    return Err(DriveError::Invalid(
                        "this folder contains a shared folder (shared folders do not nest)".into(),
                    ));
                }
                KIND_DIR => queue.push_back(n.id),
                _ => {}
            }
            nodes.push(n.clone());
        }
    }
    if core.writing_any(&seen) {
        return Err(DriveError::Busy);
    }
    let time = now();
    let mut unlinks = Vec::new();
    post_order(core, dir, time, &mut unlinks)?;
    unlinks.push(Op::Unlink {
        parent,
        name: name.clone(),
        node: dir,
        time,
    });
    Ok(Plan {
        nodes,
        parent,
        name,
        unlinks,
    })
}

fn post_order(
    core: &Core,
    dir: u64,
    time: crate::format::meta::Time,
    out: &mut Vec<Op>,
) -> Result<()> {
    for (name, link) in &core.view().get(dir)?.entries {
        if core.view().get(link.node)?.kind == KIND_DIR {
            post_order(core, link.node, time, out)?;
        }
        out.push(Op::Unlink {
            parent: dir,
            name: name.to_vec(),
            node: link.node,
            time,
        });
    }
    Ok(())
}

impl Router {
    /// Whether I am the drive's owner.
    pub fn is_owner(&self) -> bool {
        self.me.card_id == self.header.header.owner.card_id
    }

    pub(super) fn owner_only(&self) -> Result<()> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(DriveError::NotPermitted)
        }
    }

    /// The volume whose root is `ino` (a shared folder), else `Invalid`.
    async fn shared_root(&self, ino: Ino) -> Result<At> {
        match self.resolve(ino).await? {
            Target::At(a) if a.vol != self.root_volume() && a.node == ROOT => Ok(a),
            _ => Err(DriveError::Invalid("not a shared folder".into())),
        }
    }

    pub async fn share_add(&self, ino: Ino, member: Member) -> Result<ShareInfo> {
        self.owner_only()?;
        if !matches!(member.role, Role::Reader | Role::Writer) {
            return Err(DriveError::Invalid(
                "a member is added as a reader or a writer".into(),
            ));
        }
        if member.card_id == self.me.card_id {
            return Err(DriveError::Invalid(
                "the owner is a member of every shared folder already".into(),
            ));
        }
        let a = self.at(ino, || DriveError::NotPermitted).await?;
        a.e.writable()?;
        let rec = member.record();
        if a.vol == self.root_volume() {
            if a.node == ROOT {
                return Err(DriveError::Invalid(
                    "the drive's root cannot be shared; share a folder in it".into(),
                ));
            }
            let vol = self.convert(&a, rec).await?;
            return self.share_info(vol).await;
        }
        if a.node != ROOT {
            return Err(DriveError::Invalid(
                "a folder inside a shared folder cannot be shared on its own (shared folders do not nest)"
                    .into(),
            ));
        }
        let k = a.e.volume_keys();
        let mut members = k.members().to_vec();
        match members.iter_mut().find(|m| m.card_id == rec.card_id) {
            Some(m) if *m == rec => return self.share_info(a.vol).await,
            Some(m) => *m = rec,
            None => members.push(rec),
        }
        a.e.rotate(members, k.name.clone()).await?;
        self.share_info(a.vol).await
    }

    pub async fn share_remove(&self, ino: Ino, card_id: &[u8; 32]) -> Result<ShareInfo> {
        self.owner_only()?;
        let a = self.shared_root(ino).await?;
        a.e.writable()?;
        if card_id == &self.me.card_id {
            return Err(DriveError::Invalid(
                "the owner cannot be removed from a shared folder".into(),
            ));
        }
        let k = a.e.volume_keys();
        let members: Vec<MemberRecord> = k
            .members()
            .iter()
            .filter(|m| &m.card_id != card_id)
            .cloned()
            .collect();
        if members.len() == k.members().len() {
            return Err(DriveError::NotFound);
        }
        a.e.rotate(members, k.name.clone()).await?;
        self.share_info(a.vol).await
    }

    pub async fn share_list(&self) -> Result<Vec<ShareInfo>> {
        let vols: Vec<[u8; 16]> = match &self.root {
            Some(root) => {
                let core = root.lock();
                let mut v: Vec<[u8; 16]> = core
                    .view()
                    .nodes
                    .values()
                    .filter(|n| n.kind == KIND_VOLUME)
                    .filter_map(|n| n.target.as_slice().try_into().ok())
                    .collect();
                v.sort();
                v
            }
            None => self.shared().entries.iter().map(|e| e.volume).collect(),
        };
        let mut out = Vec::new();
        for v in vols {
            out.push(self.share_info(v).await?);
        }
        Ok(out)
    }

    pub async fn share_reencrypt(
        &self,
        ino: Ino,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<()> {
        self.owner_only()?;
        let a = self.shared_root(ino).await?;
        a.e.writable()?;
        a.e.reencrypt(progress).await
    }

    /// A shared folder as `share_list` reports it.
    async fn share_info(&self, vol: [u8; 16]) -> Result<ShareInfo> {
        let e = self.engine(vol).await?;
        let (ino, path) = match &self.root {
            Some(root) => {
                let link = {
                    let core = root.lock();
                    core.view()
                        .nodes
                        .values()
                        .find(|n| linked_volume_of(n) == Some(vol))
                        .map(|n| n.id)
                };
                let link = link.ok_or(DriveError::NotFound)?;
                (self.ino_of(self.root_volume(), link), self.path_of(link)?)
            }
            None => {
                let shared = self.shared();
                let e = shared
                    .entries
                    .iter()
                    .find(|e| e.volume == vol)
                    .ok_or(DriveError::NotFound)?;
                (e.ino, e.name.clone())
            }
        };
        let k = e.volume_keys();
        let members: Vec<ShareMember> = k
            .members()
            .iter()
            .filter_map(|m| {
                Some(ShareMember {
                    card_id: m.card_id,
                    role: Role::from_u8(m.role)?,
                })
            })
            .collect();
        let my_role = members
            .iter()
            .find(|m| m.card_id == self.me.card_id)
            .map(|m| m.role)
            .ok_or(DriveError::NotMember)?;
        Ok(ShareInfo {
            ino,
            path,
            volume: vol,
            generation: k.current().0,
            owner: self.header.header.owner.card_id,
            members,
            my_role,
        })
    }

    /// The path of a root-volume node from the mount root ("a/b").
    fn path_of(&self, mut node: u64) -> Result<OsString> {
        let root = self.root.as_ref().ok_or(DriveError::NotFound)?;
        let core = root.lock();
        let mut parts: Vec<Vec<u8>> = Vec::new();
        while node != ROOT {
            let n = core.view().get(node)?;
            let p = core.view().get(n.parent)?;
            let name = p
                .entries
                .iter()
                .find(|(_, l)| l.node == node)
                .map(|(name, _)| name.to_vec())
                .ok_or(DriveError::NotFound)?;
            parts.push(name);
            node = n.parent;
            if parts.len() > core.view().nodes.len() {
                return Err(DriveError::Invalid("directory cycle".into()));
            }
        }
        parts.reverse();
        Ok(OsString::from_vec(parts.join(&b'/')))
    }

    /// Converts the root-volume folder `a` into a new volume shared with
    /// `member` (see the module doc); returns the volume id.
    async fn convert(&self, a: &At, member: MemberRecord) -> Result<[u8; 16]> {
        let root = a.e.clone();
        let sync = || {
            retry_transient("sharing a folder: the root volume's sync", || {
                root.sync(&|_, _| {})
            })
        };
        read_plan(&root.lock(), a.node)?;
        sync().await?;
        let _gate = self.gate.write().await;
        let mut tries = 0;
        let plan = loop {
            sync().await?;
            let core = root.lock();
            if !core.has_pending() {
                break read_plan(&core, a.node)?;
            }
            tries += 1;
            if tries >= SETTLE_TRIES {
                return Err(DriveError::Busy);
            }
        };
        let mut owner = self.header.header.owner.clone();
        owner.role = Role::Owner as u8;
        let vol: [u8; 16] = random_array();
        create_volume(
            &RetryPuts(self.store.clone()),
            self.header.header.drive_id,
            &self.me,
            vol,
            &plan.name,
            &[owner, member],
            plan.nodes.clone(),
        )
        .await
        .inspect_err(|e| tracing::error!(volume = %hex8(&vol), error = %e, "the new volume was not written whole; it stays unused"))?;
        let link_id = {
            let mut core = root.lock();
            let now = read_plan(&core, a.node);
            if !matches!(&now, Ok(p) if p.nodes == plan.nodes) {
                tracing::error!(volume = %hex8(&vol), "the folder changed while it was being shared; the new volume stays unused");
                return Err(DriveError::Busy);
            }
            let (ops, link_id) = replace_ops(&mut core, &plan, vol)?;
            // All or nothing: check every op applies before queueing any.
            let mut check = core.view().clone();
            for op in &ops {
                check.apply(op)?;
            }
            for op in ops {
                core.push(op)?;
            }
            link_id
        };
        root.journal_pending(true)?;
        root.wake();
        drop(_gate);
        debug_assert_eq!(linked_volume(&root, link_id), Some(vol));
        sync().await?;
        Ok(vol)
    }
}

/// The volume a node links to.
fn linked_volume_of(n: &Node) -> Option<[u8; 16]> {
    if n.kind != KIND_VOLUME {
        return None;
    }
    n.target.as_slice().try_into().ok()
}

/// The root-volume ops replacing the folder of `plan` by a link to `vol`:
/// the link under a free temporary name, exchanged with the folder, then
/// the folder's removal. Returns them and the link's node id.
fn replace_ops(core: &mut Core, plan: &Plan, vol: [u8; 16]) -> Result<(Vec<Op>, u64)> {
    let folder = &plan.nodes[0];
    let dir = core.view().dir(plan.parent)?;
    let mut tmp = format!(".cardfs-sharing-{}", hex8(&vol)).into_bytes();
    while dir.entries.contains_key(tmp.as_slice()) {
        tmp.push(b'_');
    }
    let t = now();
    let link = Node {
        id: core.fresh_id(KIND_VOLUME),
        kind: KIND_VOLUME,
        perm: folder.perm,
        uid: folder.uid,
        gid: folder.gid,
        nlink: 2,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: folder.crtime,
        target: vol.to_vec().into(),
        parent: plan.parent,
        next_cookie: 1,
        ..Default::default()
    };
    let link_id = link.id;
    let mut ops = vec![
        Op::Create {
            parent: plan.parent,
            name: tmp.clone(),
            node: Box::new(link),
        },
        Op::Rename {
            parent: plan.parent,
            name: tmp.clone(),
            newparent: plan.parent,
            newname: plan.name.clone(),
            exchange: true,
            time: t,
        },
    ];
    for op in &plan.unlinks {
        let mut op = op.clone();
        // The folder itself now sits under the temporary name.
        if let Op::Unlink { node, name, .. } = &mut op
            && *node == folder.id
        {
            *name = tmp.clone();
        }
        ops.push(op);
    }
    Ok((ops, link_id))
}
