//! A volume in the store: its keyring generations, its metadata log and
//! snapshots. Reads verify everything before returning it.
//!
//! Store layout (all ids random, all counters hex, fixed width):
//! - `drive`: the signed drive header.
//! - `k/<volume id>/<generation:08x>`: keyring generations (one prefix for
//!   all volumes, so a member finds what is shared with it by one listing).
//! - `v/<volume id>/l/<seq:016x>`: log entries, Create-only, consecutive.
//! - `v/<volume id>/s/<seq:016x>`: snapshot covering entries `0..=seq`.
//! - `c/<block id>`: immutable content block objects.
//!
//! Invariants: an entry is returned only if its signature verifies with the
//! key of a card that is a writer in the generation it claims, its name,
//! volume and seq agree, and its chain hash equals the previous entry's
//! hash.

use super::error::{DriveError, Result};
use super::identity::hex8;
use crate::format::crypto::SecretKey;
use crate::format::meta::{
    self, Batch, ENTRY_MAGIC, Keyring, MemberRecord, SNAPSHOT_MAGIC, SignedHead, SnapshotBody,
};
use crate::store::{GetOptions, ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::BTreeMap;
use x25519_dalek::StaticSecret;

pub const HEADER_KEY: &str = "drive";

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
pub fn keyring_key(vol: &[u8; 16], generation: u32) -> String {
    format!("{}{generation:08x}", keyring_prefix(vol))
}
/// The prefix listing every keyring generation of `vol`.
pub fn keyring_prefix(vol: &[u8; 16]) -> String {
    format!("k/{}/", hex(vol))
}
pub fn log_key(vol: &[u8; 16], seq: u64) -> String {
    format!("v/{}/l/{seq:016x}", hex(vol))
}
pub fn snapshot_key(vol: &[u8; 16], seq: u64) -> String {
    format!("v/{}/s/{seq:016x}", hex(vol))
}
pub fn content_key(id: &[u8; 16]) -> String {
    format!("c/{}", hex(id))
}

/// Position in a volume's log: the last applied entry and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// A volume's keys: every generation's key and members.
#[derive(Debug)]
pub struct VolumeKeys {
    /// The drive this volume belongs to (bound into key wrapping).
    #[allow(dead_code)]
    pub drive_id: [u8; 16],
    pub volume: [u8; 16],
    pub generations: BTreeMap<u32, (SecretKey, Vec<MemberRecord>)>,
}

impl VolumeKeys {
    pub fn current(&self) -> (u32, &SecretKey) {
        let (g, (k, _)) = self
            .generations
            .iter()
            .next_back()
            .expect("at least one generation");
        (*g, k)
    }

    pub fn key(&self, generation: u32) -> Option<&SecretKey> {
        self.generations.get(&generation).map(|(k, _)| k)
    }

    /// The verifying key of `card` if it may write in `generation`.
    pub fn writer(&self, generation: u32, card: &[u8; 32]) -> Option<VerifyingKey> {
        let (_, members) = self.generations.get(&generation)?;
        let m = members.iter().find(|m| &m.card_id == card && m.role >= 2)?;
        m.verifying_key().ok()
    }

    /// Loads and verifies every keyring generation of `volume`.
    pub async fn load(
        store: &dyn ObjectStore,
        drive_id: [u8; 16],
        volume: [u8; 16],
        owner: &VerifyingKey,
        me: &StaticSecret,
    ) -> Result<Self> {
        let prefix = keyring_prefix(&volume);
        let mut generations = BTreeMap::new();
        for meta in store.list_all(&prefix).await? {
            let bytes = get(store, &meta.key).await?;
            let (k, key) = Keyring::open(&bytes, owner, me).map_err(|e| match e {
                crate::format::wire::FormatError::Invalid("not a member") => DriveError::NotMember,
                e => DriveError::tampered(&meta.key, e.to_string()),
            })?;
            if k.drive_id != drive_id
                || k.volume != volume
                || meta.key != keyring_key(&volume, k.generation)
            {
                return Err(DriveError::tampered(
                    &meta.key,
                    "keyring names another drive, volume or generation",
                ));
            }
            generations.insert(k.generation, (key, k.members));
        }
        if generations.is_empty() {
            return Err(DriveError::tampered(prefix, "no keyring"));
        }
        Ok(Self {
            drive_id,
            volume,
            generations,
        })
    }
}

/// Reads a whole object; a missing object is reported as tampering (the
/// metadata said it exists).
pub async fn get(store: &dyn ObjectStore, key: &str) -> Result<Bytes> {
    match store.get(key, GetOptions::default()).await {
        Ok(r) => Ok(r.bytes),
        Err(StoreError::NotFound { .. }) => Err(DriveError::tampered(key, "object missing")),
        Err(e) => Err(e.into()),
    }
}

/// Fetches and verifies log entry `seq` whose predecessor has hash `prev`.
/// `Ok(None)` when the entry does not exist (yet).
pub async fn fetch_entry(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    seq: u64,
    prev: &[u8; 32],
) -> Result<Option<(Batch, [u8; 32], [u8; 32])>> {
    let key = log_key(&keys.volume, seq);
    let bytes = match store.get(&key, GetOptions::default()).await {
        Ok(r) => r.bytes,
        Err(StoreError::NotFound { .. }) => {
            // The end of the log, unless later entries exist (a gap).
            let prefix = format!("v/{}/l/", hex(&keys.volume));
            let later = store.list(&prefix, Some(&key), 1).await?;
            if let Some(next) = later.objects.first() {
                // A writer may have added entry `seq` and more since our
                // read: read it once more before calling it a gap.
                if let Ok(r) = store.get(&key, GetOptions::default()).await {
                    let (batch, hash) = verify_entry(keys, &key, seq, prev, &r.bytes)?;
                    return Ok(Some((batch, hash, head_writer(&r.bytes))));
                }
                return Err(DriveError::tampered(
                    &key,
                    format!("log entry missing while {} exists", next.key),
                ));
            }
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let (batch, hash) = verify_entry(keys, &key, seq, prev, &bytes)?;
    Ok(Some((batch, hash, head_writer(&bytes))))
}

fn head_writer(bytes: &[u8]) -> [u8; 32] {
    meta::peek_signed(ENTRY_MAGIC, bytes)
        .map(|h| h.writer)
        .unwrap_or([0; 32])
}

/// Verifies a log entry's bytes; returns its batch and hash.
pub fn verify_entry(
    keys: &VolumeKeys,
    key: &str,
    seq: u64,
    prev: &[u8; 32],
    bytes: &[u8],
) -> Result<(Batch, [u8; 32])> {
    let (head, payload) = open_signed(keys, ENTRY_MAGIC, key, bytes)?;
    if head.seq != seq {
        return Err(DriveError::tampered(
            key,
            format!("entry claims seq {} at position {seq}", head.seq),
        ));
    }
    if &head.chain != prev {
        return Err(DriveError::tampered(
            key,
            "hash chain broken (entry does not follow the previous one: fork or replay)",
        ));
    }
    let batch =
        Batch::decode(&payload).map_err(|e| DriveError::tampered(key, format!("batch: {e}")))?;
    Ok((batch, meta::sha256(bytes)))
}

fn open_signed(
    keys: &VolumeKeys,
    magic: &[u8; 4],
    key: &str,
    bytes: &[u8],
) -> Result<(SignedHead, Vec<u8>)> {
    let head =
        meta::peek_signed(magic, bytes).map_err(|e| DriveError::tampered(key, e.to_string()))?;
    if head.volume != keys.volume {
        return Err(DriveError::tampered(
            key,
            "object belongs to another volume",
        ));
    }
    let writer = keys.writer(head.generation, &head.writer).ok_or_else(|| {
        DriveError::tampered(
            key,
            format!(
                "signer {} is not a writer in generation {}",
                hex8(&head.writer),
                head.generation
            ),
        )
    })?;
    let vkey = keys
        .key(head.generation)
        .expect("writer implies generation");
    meta::open_signed(magic, bytes, &writer, vkey)
        .map_err(|e| DriveError::tampered(key, e.to_string()))
}

/// Signs and encrypts `batch` as entry `seq` following `prev`.
pub fn seal_entry(
    keys: &VolumeKeys,
    signer: &SigningKey,
    card: &[u8; 32],
    seq: u64,
    prev: &[u8; 32],
    batch: &Batch,
) -> Vec<u8> {
    let (generation, key) = keys.current();
    let head = SignedHead {
        volume: keys.volume,
        seq,
        generation,
        writer: *card,
        chain: *prev,
    };
    meta::seal_signed(ENTRY_MAGIC, &head, key, signer, &batch.encode())
}

/// Writes a snapshot of the state after entry `head` (Create-only: a
/// snapshot that already exists is left alone).
pub async fn write_snapshot(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    signer: &SigningKey,
    card: &[u8; 32],
    head: Head,
    body: &SnapshotBody,
) -> Result<()> {
    let (generation, key) = keys.current();
    let sh = SignedHead {
        volume: keys.volume,
        seq: head.seq,
        generation,
        writer: *card,
        chain: head.hash,
    };
    let bytes = meta::seal_signed(SNAPSHOT_MAGIC, &sh, key, signer, &body.encode());
    match store
        .put(
            &snapshot_key(&keys.volume, head.seq),
            Bytes::from(bytes),
            PutMode::Create,
        )
        .await
    {
        Ok(_) | Err(StoreError::PreconditionFailed { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The newest snapshot that verifies, with the head it covers. A snapshot
/// that fails verification is an error (never silently skipped: skipping
/// would let the store choose which state we see).
pub async fn newest_snapshot(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
) -> Result<Option<(Head, SnapshotBody)>> {
    let prefix = format!("v/{}/s/", hex(&keys.volume));
    let list = store.list_all(&prefix).await?;
    let Some(meta) = list.last() else {
        return Ok(None);
    };
    let bytes = get(store, &meta.key).await?;
    let (head, payload) = open_signed(keys, SNAPSHOT_MAGIC, &meta.key, &bytes)?;
    if meta.key != snapshot_key(&keys.volume, head.seq) {
        return Err(DriveError::tampered(
            &meta.key,
            "snapshot stored under another name",
        ));
    }
    let body = SnapshotBody::decode(&payload)
        .map_err(|e| DriveError::tampered(&meta.key, format!("snapshot: {e}")))?;
    Ok(Some((
        Head {
            seq: head.seq,
            hash: head.chain,
        },
        body,
    )))
}
