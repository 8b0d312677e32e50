//! [`Drive::history`] and [`Drive::restore`]: a path of the mount (bytes,
//! from the mount root) is followed through the namespace as far as it
//! exists now; the volume holding it answers for the rest (names that may
//! exist only in the past).
//!
//! Invariants:
//! - A restore goes into the volume the path lives in (block refs are
//!   copied, never re-encrypted): a destination in another volume is
//!   `CrossDevice`, as for rename and clone copies.
//! - A restore never overwrites: the destination name must be free.
//!
//! Imports: `router` (resolve, gate), `engine::history`, leaves.

use super::Drive;
use super::engine::history::{Restored, Version};
use super::engine::ops::check_name;
use super::error::{DriveError, Result};
use super::router::{At, Target};
use super::tree::ROOT;
use super::types::{Ino, ROOT_INO};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

/// Where [`Drive::restore`] puts what it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTo {
    /// The path itself if it is free; otherwise beside it, named
    /// `NAME.restored-SUFFIX`.
    Default { suffix: String },
    /// This path (from the mount root), which must not exist.
    Path(Vec<u8>),
}

/// What [`Drive::restore`] did, and where.
#[derive(Debug, Clone)]
pub struct RestoreInfo {
    pub restored: Restored,
    /// The restored node's path from the mount root.
    pub dest: Vec<u8>,
    /// The directory holding it (its kernel entry may need dropping).
    pub parent: Ino,
}

/// A path of the mount, followed as far as it exists now.
struct Located {
    /// The volume holding the path, and the path's names from its root.
    at: At,
    rel: Vec<Vec<u8>>,
    /// The inode of the path's parent directory, if it exists now.
    parent: Option<Ino>,
    /// The path itself exists now.
    exists: bool,
}

fn names(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

impl Drive {
    /// Follows `path` from the root through every name that exists now.
    async fn locate(&self, path: &[u8]) -> Result<Located> {
        let names = names(path);
        if names.iter().any(|n| n == b"..") {
            return Err(DriveError::Invalid("a path with `..`".into()));
        }
        let (mut ino, mut parent) = (ROOT_INO, None);
        let mut rel: Vec<Vec<u8>> = Vec::new();
        let mut found = 0;
        for name in &names {
            match self.lookup(ino, OsStr::from_bytes(name)).await {
                Ok(attr) => {
                    parent = Some(ino);
                    ino = attr.ino;
                    found += 1;
                    match self.r.resolve(ino).await? {
                        // A shared folder's root: its volume's path starts here.
                        Target::At(a) if a.node == ROOT => rel.clear(),
                        _ => rel.push(name.clone()),
                    }
                }
                Err(DriveError::NotFound) => break,
                Err(e) => return Err(e),
            }
        }
        let at = match self.r.resolve(ino).await? {
            Target::At(a) => a,
            // Nothing of the path exists under a member's synthetic root.
            Target::Synthetic => return Err(DriveError::NotFound),
        };
        let exists = found == names.len();
        if !exists {
            parent = (found + 1 == names.len()).then_some(ino);
        }
        rel.extend(names[found..].iter().cloned());
        Ok(Located {
            at,
            rel,
            parent,
            exists,
        })
    }

    /// The versions of the file or folder at `path` (from the mount root;
    /// it may be deleted now), oldest first, from the log entries and the
    /// snapshot before them still in the store. `NotFound` when none.
    pub async fn history(&self, path: &[u8]) -> Result<Vec<Version>> {
        let l = self.locate(path).await?;
        let versions = l.at.e.history(&l.rel).await?;
        if versions.is_empty() {
            return Err(DriveError::NotFound);
        }
        Ok(versions)
    }

    /// Brings back the file or folder at `path` as it was at `at` (after
    /// the last log entry whose time is at most `at`), as new nodes whose
    /// files name the past version's block objects, at `to`. `NotFound`
    /// if it did not exist then; `Exists` if the destination is taken;
    /// `CrossDevice` for a destination in another volume.
    pub async fn restore(&self, path: &[u8], at: SystemTime, to: RestoreTo) -> Result<RestoreInfo> {
        let src = self.locate(path).await?;
        let (parent, name, dest) = match to {
            RestoreTo::Default { suffix } => {
                let Some(last) = names(path).pop() else {
                    return Err(DriveError::Invalid(
                        "the drive's root is restored with --to DEST".into(),
                    ));
                };
                if src.rel.is_empty() {
                    return Err(DriveError::Invalid(
                        "a shared folder's root is restored with --to DEST".into(),
                    ));
                }
                let parent = src.parent.ok_or_else(|| {
                    DriveError::Invalid(
                        "the folder that held it no longer exists: restore that folder first, \
                         or give --to DEST"
                            .into(),
                    )
                })?;
                let mut name = last.clone();
                if src.exists {
                    name.extend_from_slice(b".restored-");
                    name.extend_from_slice(suffix.as_bytes());
                }
                let mut parts = names(path);
                parts.pop();
                parts.push(name.clone());
                (parent, name, parts.join(&b'/'))
            }
            RestoreTo::Path(dest) => {
                let mut dnames = names(&dest);
                let name = dnames.pop().ok_or(DriveError::Exists)?;
                let mut parent = ROOT_INO;
                for n in &dnames {
                    parent = self.lookup(parent, OsStr::from_bytes(n)).await?.ino;
                }
                (parent, name, dest)
            }
        };
        check_name(OsStr::from_bytes(&name))?;
        let dir = match self.r.resolve(parent).await? {
            Target::At(a) => a,
            Target::Synthetic => return Err(DriveError::ReadOnly),
        };
        if dir.vol != src.at.vol {
            return Err(DriveError::CrossDevice);
        }
        let _g = self.r.gate(&dir).await;
        let restored = src.at.e.restore(&src.rel, at, dir.node, name).await?;
        Ok(RestoreInfo {
            restored,
            dest,
            parent,
        })
    }
}
