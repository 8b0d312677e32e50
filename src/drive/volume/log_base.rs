//! Log bases of a volume in the store (`v/<volume>/b/<seq:016x>`, format
//! [`LogBase`]): what lets a client check its remembered log position
//! after the owner's collector deleted the entries before a base.
//!
//! Invariants:
//! - A base is used only when the drive owner's key signed it, it names
//!   this drive and volume, and its name carries its `seq`.
//! - The newest base is tied to the kept log: its base entry must be in
//!   the store with the hash the base lists (a store hiding a newer base
//!   has deleted that entry, so it fails here as a rollback).
//! - Walking back, each older base must be the object the newer one names
//!   (`prev`, by hash) and end right before the newer one's `first`: the
//!   bases together list one hash per collected entry, with no gap.

use super::{Head, VolumeKeys, log_key};
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::hex8;
use crate::format::hex::encode as hex;
use crate::format::meta::{self, LogBase};
use crate::store::{ObjectStore, StoreError};
use ed25519_dalek::VerifyingKey;

/// The name of the base whose oldest kept entry is `seq`.
pub fn base_key(vol: &[u8; 16], seq: u64) -> String {
    format!("{}{seq:016x}", base_prefix(vol))
}

/// The prefix listing every base of `vol`.
pub fn base_prefix(vol: &[u8; 16]) -> String {
    format!("v/{}/b/", hex(vol))
}

/// A verified base and the SHA-256 of its object.
#[derive(Debug, Clone)]
pub struct Base {
    pub base: LogBase,
    pub hash: [u8; 32],
}

/// The seqs of the bases listed for `keys.volume`, ascending (a name
/// under the prefix that is not a base name is tampering).
pub async fn base_seqs(store: &dyn ObjectStore, keys: &VolumeKeys) -> Result<Vec<u64>> {
    let prefix = base_prefix(&keys.volume);
    let mut seqs = Vec::new();
    for m in store.list_all(&prefix).await? {
        let seq = u64::from_str_radix(&m.key[prefix.len()..], 16)
            .ok()
            .filter(|s| base_key(&keys.volume, *s) == m.key)
            .ok_or_else(|| DriveError::tampered(&m.key, "not a log base name"))?;
        seqs.push(seq);
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Reads and verifies the base at `seq` (see the module invariants).
pub async fn read_base(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    owner: &VerifyingKey,
    seq: u64,
) -> Result<Base> {
    let key = base_key(&keys.volume, seq);
    let bytes = match store.get(&key, Default::default()).await {
        Ok(r) => r.bytes,
        Err(StoreError::NotFound { .. }) => {
            return Err(DriveError::Rollback {
                volume: hex8(&keys.volume),
                known: seq,
                offered: seq,
                reason: format!(
                    "log base {key} is missing (the store hides the summary of collected entries)"
                ),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let base = LogBase::open(&bytes, owner).map_err(|e| {
        DriveError::tampered(&key, format!("log base not signed by the drive owner: {e}"))
    })?;
    if (base.drive_id, base.volume, base.seq) != (keys.drive_id, keys.volume, seq) {
        return Err(DriveError::tampered(
            &key,
            "log base names another drive, volume or position",
        ));
    }
    Ok(Base {
        base,
        hash: meta::sha256(&bytes),
    })
}

/// The newest base of the volume, verified; `None` when the log was never
/// collected.
pub async fn newest_base(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    owner: &VerifyingKey,
) -> Result<Option<Base>> {
    match base_seqs(store, keys).await?.last() {
        Some(seq) => read_base(store, keys, owner, *seq).await.map(Some),
        None => Ok(None),
    }
}

/// The head at `b`'s base entry: that entry must be in the store with the
/// hash `b` lists (`Rollback` when it is gone: the store deleted kept
/// entries or hides a newer base; `Tampered` when it differs).
pub async fn base_head(store: &dyn ObjectStore, keys: &VolumeKeys, b: &LogBase) -> Result<Head> {
    let key = log_key(&keys.volume, b.seq);
    let bytes = match store.get(&key, Default::default()).await {
        Ok(r) => r.bytes,
        Err(StoreError::NotFound { .. }) => {
            return Err(DriveError::Rollback {
                volume: hex8(&keys.volume),
                known: b.seq,
                offered: b.seq.saturating_sub(1),
                reason: "the base entry of the newest log base is missing (entries deleted, or a newer log base hidden)".into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if meta::sha256(&bytes) != *b.base_hash() {
        return Err(DriveError::tampered(
            &key,
            "log entry differs from the one the log base names",
        ));
    }
    let generation = meta::peek_signed(meta::ENTRY_MAGIC, &bytes)
        .map_err(|e| DriveError::tampered(&key, e.to_string()))?
        .generation;
    Ok(Head {
        seq: b.seq,
        hash: meta::sha256(&bytes),
        generation,
    })
}

/// Checks that entry `seq` with hash `hash` (a position this client
/// accepted, now collected) is an ancestor of the kept log: the newest
/// base is tied to the log ([`base_head`]) and the base chain from it
/// back to the one listing `seq` lists `hash` there.
/// `Rollback` when no base lists `seq` (the store omits it) or lists
/// another hash (a fork); `Tampered` for a broken base chain.
pub async fn check_collected(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    owner: &VerifyingKey,
    seq: u64,
    hash: &[u8; 32],
) -> Result<()> {
    let omitted = |why: &str| DriveError::Rollback {
        volume: hex8(&keys.volume),
        known: seq,
        offered: seq.saturating_sub(1),
        reason: format!("the store no longer holds log entry {seq} this client accepted, {why}"),
    };
    let Some(mut b) = newest_base(store, keys, owner).await? else {
        return Err(omitted("and no log base summarises it"));
    };
    base_head(store, keys, &b.base).await?;
    if seq > b.base.seq {
        return Err(omitted("which lies after the newest log base"));
    }
    while seq < b.base.first {
        let older_seq = b.base.first - 1;
        let older = read_base(store, keys, owner, older_seq).await?;
        if older.hash != b.base.prev {
            return Err(DriveError::tampered(
                base_key(&keys.volume, b.base.seq),
                "log base does not follow the previous one",
            ));
        }
        b = older;
    }
    match b.base.hash_of(seq) {
        Some(h) if h == hash => Ok(()),
        Some(_) => {
            let e = DriveError::Rollback {
                volume: hex8(&keys.volume),
                known: seq,
                offered: b.base.seq,
                reason: "the owner's log base lists another entry at the position this client accepted (fork)".into(),
            };
            tracing::error!(error = %e, "refusing forked metadata");
            Err(e)
        }
        None => Err(omitted("and the log base chain does not list it")),
    }
}
