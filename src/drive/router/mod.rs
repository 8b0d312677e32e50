//! The router: one mount's single namespace over one [`Engine`] per open
//! volume (the root volume, and each shared folder's volume).
//!
//! Invariants:
//! - Kernel inode numbers are the router's ([`Inos`]); engines only ever
//!   see their own node ids, and every number leaving the router is
//!   translated back.
//! - A `KIND_VOLUME` link of the root volume and the root of the volume it
//!   names are one inode: lookups answer with the volume root's attributes.
//! - An operation naming two volumes (rename, link) fails with
//!   `CrossDevice` and changes nothing.
//! - Writes to the root volume hold `gate` shared; converting a folder into
//!   a shared volume holds it exclusively, so the folder cannot change
//!   between its copy and its replacement by a link.
//! - Children: `inos` (inode numbers), `member_view` (discovery and the
//!   synthetic root's entries, no router state), `synthetic` (serving the
//!   synthetic root), `share_api` (sharing folders), `collect` (garbage
//!   collection of content objects), `repack_choice` (which packs it
//!   repacks). Children import the
//!   router; the router imports only `inos` and `member_view` data types.
//! - The drive-level lock on the cache directory is held from open until
//!   shutdown/abandon; each engine also locks its own `v/<volume>/` cache.

mod collect;
mod inos;
mod member_view;
mod repack_choice;
mod share_api;
mod synthetic;

use super::engine::Engine;
use super::engine::cache::lock_dir;
use super::engine::mirror::unreachable;
use super::engine::open::{VerifiedHeader, cached_header, read_header, save_header};
use super::error::{DriveError, Result};
use super::identity::Identity;
use super::tree::{KIND_VOLUME, ROOT};
use super::types::*;
use crate::format::hex::encode as hex;
use crate::store::ObjectStore;
use inos::Inos;
use member_view::SharedRoot;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where an inode lives: the member view's synthetic root, or a node of an
/// open volume.
pub enum Target {
    Synthetic,
    At(At),
}

/// A node of an open volume.
#[derive(Clone)]
pub struct At {
    pub(super) e: Arc<Engine>,
    pub(super) vol: [u8; 16],
    pub(super) node: u64,
}

/// Everything one open drive shares between its clones.
pub struct Router {
    store: Arc<dyn ObjectStore>,
    me: Identity,
    /// Drive-level options (`cache_dir` is the drive's cache directory).
    opts: DriveOptions,
    header: VerifiedHeader,
    /// The root volume's engine (the owner's view); `None` for a member.
    root: Option<Arc<Engine>>,
    /// Open engines of other volumes.
    volumes: Mutex<HashMap<[u8; 16], Arc<Engine>>>,
    /// Serialises opening engines (two engines on one cache would clash).
    open_lock: tokio::sync::Mutex<()>,
    inos: Mutex<Inos>,
    /// Volume -> node id of the link naming it in the root volume.
    links: Mutex<HashMap<[u8; 16], u64>>,
    gate: tokio::sync::RwLock<()>,
    drive_lock: Mutex<Option<File>>,
    /// Member view: the synthetic root's entries.
    shared: Mutex<SharedRoot>,
    /// Member view: the task re-running discovery on the refresh timer.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(t) = locked(&self.task).take() {
            t.abort();
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The volume a node links to, if it is a volume link.
pub fn linked_volume(e: &Engine, node: u64) -> Option<[u8; 16]> {
    let core = e.lock();
    let n = core.view().nodes.get(&node)?;
    if n.kind != KIND_VOLUME {
        return None;
    }
    n.target.as_slice().try_into().ok()
}

impl Router {
    /// Opens the drive: verifies the header, takes the drive-level lock on
    /// the cache directory and opens the root volume; a member of shared
    /// folders only (the root keyring does not name them) gets the member
    /// view, and someone with no share at all `NotMember`.
    pub async fn open_drive(
        store: Arc<dyn ObjectStore>,
        me: Identity,
        opts: DriveOptions,
    ) -> Result<Arc<Router>> {
        let (header, offline) = match read_header(store.as_ref()).await {
            Ok(h) => (h, false),
            Err(e) if unreachable(&e) => match cached_header(&opts.cache_dir)? {
                Some(h) => {
                    tracing::warn!(store = %store.describe(), error = %e, "store unreachable; opening the drive from the local cache (offline)");
                    (h, true)
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let drive_lock = lock_dir(&opts.cache_dir)?;
        if !offline {
            save_header(&opts.cache_dir, &header);
        }
        let root_volume = header.header.root_volume;
        let root = match Engine::open_volume(
            store.clone(),
            me.clone(),
            volume_opts(&opts, &root_volume),
            &header,
            root_volume,
            offline,
        )
        .await
        {
            Ok(e) => Some(e),
            Err(DriveError::NotMember) => None,
            Err(e) => return Err(e),
        };
        let r = Arc::new(Router {
            store,
            me,
            opts,
            header,
            root,
            volumes: Mutex::new(HashMap::new()),
            open_lock: tokio::sync::Mutex::new(()),
            inos: Mutex::new(Inos::default()),
            links: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
            drive_lock: Mutex::new(Some(drive_lock)),
            shared: Mutex::new(SharedRoot::default()),
            task: Mutex::new(None),
        });
        if r.root.is_none() {
            r.rediscover().await?;
            if r.shared().entries.is_empty() {
                return Err(DriveError::NotMember);
            }
            let task = tokio::spawn(rediscover_timer(Arc::downgrade(&r)));
            *locked(&r.task) = Some(task);
        }
        Ok(r)
    }

    /// The store the drive lives in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The identity this mount opened the drive with.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// The verified drive header.
    pub fn header(&self) -> &VerifiedHeader {
        &self.header
    }

    fn shared(&self) -> MutexGuard<'_, SharedRoot> {
        locked(&self.shared)
    }

    /// Stops a volume's engine (no longer shared with me) and forgets its
    /// root's inode: its inodes answer `NotFound` from now on.
    pub async fn close_volume(&self, vol: [u8; 16]) {
        let e = locked(&self.volumes).remove(&vol);
        locked(&self.inos).remove(&(vol, ROOT));
        if let Some(e) = e
            && let Err(err) = e.shutdown().await
        {
            tracing::warn!(volume = %hex(&vol), error = %err, "closing a volume no longer shared: changes not uploaded stay in its cache journal");
        }
    }

    /// The root volume's engine (`NotMember` in a member's view).
    pub fn root_engine(&self) -> Result<Arc<Engine>> {
        self.root.clone().ok_or(DriveError::NotMember)
    }

    pub fn root_volume(&self) -> [u8; 16] {
        self.header.header.root_volume
    }

    /// Every open engine (root first).
    pub fn engines(&self) -> Vec<Arc<Engine>> {
        let mut v: Vec<Arc<Engine>> = self.root.iter().cloned().collect();
        v.extend(locked(&self.volumes).values().cloned());
        v
    }

    /// The engine of `vol`, opening it on first use.
    pub async fn engine(&self, vol: [u8; 16]) -> Result<Arc<Engine>> {
        if vol == self.root_volume() {
            return self.root_engine();
        }
        if let Some(e) = locked(&self.volumes).get(&vol) {
            return Ok(e.clone());
        }
        if self.root.is_none() && !self.is_listed(&vol) {
            return Err(DriveError::NotFound);
        }
        // Opening reads files and the store: never in a caller's first
        // poll (the FUSE adapter answers cheap requests inline and hands
        // a call that is not ready at once to the runtime).
        tokio::task::yield_now().await;
        let _g = self.open_lock.lock().await;
        if let Some(e) = locked(&self.volumes).get(&vol) {
            return Ok(e.clone());
        }
        let e = Engine::open_volume(
            self.store.clone(),
            self.me.clone(),
            volume_opts(&self.opts, &vol),
            &self.header,
            vol,
            false,
        )
        .await?;
        locked(&self.volumes).insert(vol, e.clone());
        Ok(e)
    }

    /// Records that `vol`'s root is the link node `link` (in the root
    /// volume) and returns the link's inode number.
    fn register_link(&self, vol: [u8; 16], link: u64) -> Ino {
        let mut inos = locked(&self.inos);
        let mut links = locked(&self.links);
        if let Some(ino) = inos.get(&(vol, ROOT))
            && links.get(&vol) == Some(&link)
        {
            return ino;
        }
        inos.remove(&(vol, ROOT));
        let root = self.root.clone();
        let ino = inos.for_root_node((self.root_volume(), link), |i| {
            root.as_ref().is_some_and(|r| r.lock().knows(i))
        });
        inos.set((vol, ROOT), ino);
        links.insert(vol, link);
        ino
    }

    /// Forgets a removed link's volume mapping.
    pub fn unregister_link(&self, vol: [u8; 16]) {
        let mut inos = locked(&self.inos);
        inos.remove(&(vol, ROOT));
        locked(&self.links).remove(&vol);
    }

    /// The kernel number of `node` in `vol`.
    pub fn ino_of(&self, vol: [u8; 16], node: u64) -> Ino {
        let root_vol = self.root_volume();
        if vol == root_vol {
            if let Some(root) = &self.root
                && let Some(v) = linked_volume(root, node)
            {
                return self.register_link(v, node);
            }
            let root = self.root.clone();
            return locked(&self.inos).for_root_node((vol, node), |i| {
                root.as_ref().is_some_and(|r| r.lock().knows(i))
            });
        }
        let root = self.root.clone();
        locked(&self.inos).for_other((vol, node), |i| {
            root.as_ref().is_some_and(|r| r.lock().knows(i))
        })
    }

    /// Whether `ino` lives in another volume than the root volume (a
    /// shared folder), or this is a member's view (everything is shared).
    pub fn in_shared_folder(&self, ino: Ino) -> bool {
        if self.root.is_none() {
            return true;
        }
        locked(&self.inos)
            .place(ino)
            .is_some_and(|(vol, _)| vol != self.root_volume())
    }

    /// Where inode `ino` lives (opening its volume if needed).
    pub async fn resolve(&self, ino: Ino) -> Result<Target> {
        let root_vol = self.root_volume();
        let place = if ino == ROOT_INO {
            match &self.root {
                Some(_) => (root_vol, ROOT),
                None => return Ok(Target::Synthetic),
            }
        } else {
            match locked(&self.inos).place(ino) {
                Some(p) => p,
                None if self.root.is_some() => (root_vol, ino),
                None => return Err(DriveError::NotFound),
            }
        };
        let (mut vol, mut node) = place;
        if vol == root_vol
            && let Some(root) = &self.root
            && let Some(v) = linked_volume(root, node)
        {
            self.register_link(v, node);
            (vol, node) = (v, ROOT);
        }
        let e = self.engine(vol).await?;
        Ok(Target::At(At { e, vol, node }))
    }

    /// Like [`Router::resolve`] for reading: the synthetic root is `err`.
    pub async fn at(&self, ino: Ino, err: fn() -> DriveError) -> Result<At> {
        match self.resolve(ino).await? {
            Target::At(a) => Ok(a),
            Target::Synthetic => Err(err()),
        }
    }

    /// For a change: the synthetic root is read-only.
    pub async fn at_mut(&self, ino: Ino) -> Result<At> {
        self.at(ino, || DriveError::ReadOnly).await
    }

    /// Holds the write gate shared for a change to the root volume.
    pub async fn gate(&self, a: &At) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        if a.vol == self.root_volume() {
            Some(self.gate.read().await)
        } else {
            None
        }
    }

    /// The inode of the directory holding a volume's root: the link's
    /// parent (owner view) or the mount root (member view).
    pub fn volume_parent(&self, vol: [u8; 16]) -> Ino {
        let Some(root) = &self.root else {
            return ROOT_INO;
        };
        let Some(link) = locked(&self.links).get(&vol).copied() else {
            return ROOT_INO;
        };
        let parent = root.lock().view().nodes.get(&link).map(|n| n.parent);
        match parent {
            Some(p) if p != 0 => self.ino_of(self.root_volume(), p),
            _ => ROOT_INO,
        }
    }

    /// Translates an attribute from `vol`'s engine: its node id becomes an
    /// inode number, and a volume link answers with its volume's root.
    pub async fn attr_out(&self, vol: [u8; 16], mut attr: Attr) -> Result<Attr> {
        if vol == self.root_volume()
            && let Some(root) = &self.root
            && let Some(v) = linked_volume(root, attr.ino)
        {
            let ino = self.register_link(v, attr.ino);
            let mut a = self.engine(v).await?.getattr(ROOT)?;
            a.ino = ino;
            return Ok(a);
        }
        attr.ino = self.ino_of(vol, attr.ino);
        Ok(attr)
    }

    /// The engine and node behind an open handle (`None`: the synthetic root).
    pub async fn handle(&self, ino: Ino, fh: Fh) -> Result<Option<(At, u64)>> {
        match self.resolve(ino).await? {
            Target::Synthetic => Ok(None),
            Target::At(a) => {
                let node = a.e.lock().handle_node(fh, a.node)?;
                Ok(Some((a, node)))
            }
        }
    }

    /// The volume linked as `name` in the root-volume directory `a`.
    pub fn link_at(&self, a: &At, name: &OsStr) -> Option<[u8; 16]> {
        if a.vol != self.root_volume() {
            return None;
        }
        let child = a.e.lock().view().lookup(a.node, name.as_bytes()).ok()?;
        linked_volume(&a.e, child)
    }

    /// `NotEmpty` unless the volume's root directory is empty.
    pub async fn check_volume_empty(&self, vol: [u8; 16]) -> Result<()> {
        let e = self.engine(vol).await?;
        let empty = e.lock().view().dir(ROOT)?.entries.is_empty();
        if empty {
            Ok(())
        } else {
            Err(DriveError::NotEmpty)
        }
    }

    /// Stops the member view's discovery timer.
    pub fn stop_task(&self) {
        if let Some(t) = locked(&self.task).take() {
            t.abort();
        }
    }

    /// Releases the drive-level lock on the cache directory (after every
    /// engine stopped).
    pub fn release_drive_lock(&self) {
        locked(&self.drive_lock).take();
    }
}

/// Member view: re-runs discovery every refresh interval (the engines
/// refresh themselves).
async fn rediscover_timer(r: std::sync::Weak<Router>) {
    loop {
        let Some(interval) = r.upgrade().map(|r| r.opts.refresh_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(router) = r.upgrade() else { return };
        if let Err(e) = router.rediscover().await {
            tracing::warn!(error = %e, "discovering shared folders failed; will retry");
        }
    }
}

/// The handle returned for the synthetic root (it holds no state).
pub const SYNTHETIC_FH: Fh = u64::MAX;

/// A volume's engine options: its own cache directory under the drive's.
pub fn volume_opts(opts: &DriveOptions, vol: &[u8; 16]) -> DriveOptions {
    let mut o = opts.clone();
    o.cache_dir = opts.cache_dir.join("v").join(hex(vol));
    o
}
