//! TEMPORARY, branch `sharecli` only: the folder-sharing API of the design
//! (`/work/notes/sharing-design.md`, "Engine API") so the command line
//! compiles before the `router` and `volcrypto` branches land. Every
//! sharing call fails with `Invalid("folder sharing is not in this build")`;
//! [`read_header`] is real. This file is deleted when `router` is merged.

use super::{Drive, DriveError, Ino, Member, Result, Role, volume};
use crate::format::meta::DriveHeader;
use crate::store::ObjectStore;
use std::ffi::OsString;

/// One member of a shared folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMember {
    pub card_id: [u8; 32],
    pub role: Role,
}

/// A shared folder as one mount sees it.
#[derive(Debug, Clone)]
pub struct ShareInfo {
    pub ino: Ino,
    pub path: OsString,
    pub volume: [u8; 16],
    pub generation: u32,
    pub owner: [u8; 32],
    pub members: Vec<ShareMember>,
    pub my_role: Role,
}

fn missing() -> DriveError {
    DriveError::Invalid("folder sharing is not in this build".into())
}

impl Drive {
    pub async fn share_add(&self, _ino: Ino, _member: Member) -> Result<ShareInfo> {
        Err(missing())
    }
    pub async fn share_remove(&self, _ino: Ino, _card_id: &[u8; 32]) -> Result<ShareInfo> {
        Err(missing())
    }
    pub async fn share_list(&self) -> Result<Vec<ShareInfo>> {
        Err(missing())
    }
    pub async fn share_reencrypt(
        &self,
        _ino: Ino,
        _progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<()> {
        Err(missing())
    }
}

/// The drive header, its self-signature verified.
pub async fn read_header(store: &dyn ObjectStore) -> Result<DriveHeader> {
    let bytes = volume::get(store, volume::HEADER_KEY).await?;
    DriveHeader::open(&bytes).map_err(|e| DriveError::tampered(volume::HEADER_KEY, e.to_string()))
}
