//! A volume in the store: its keyring generations, its metadata log and
//! checkpoints (snapshots). Reads verify everything before returning it.
//!
//! Store layout (all ids random, all counters hex, fixed width):
//! - `drive`: the signed drive header.
//! - `k/<volume id>/<generation:08x>`: keyring generations (one prefix for
//!   all volumes, so a member finds what is shared with it by one listing).
//! - `v/<volume id>/l/<seq:016x>`: log entries, Create-only, consecutive.
//! - `v/<volume id>/s/<seq:016x>`: checkpoint root (snapshot) covering
//!   entries `0..=seq`, naming one page per bucket of node ids.
//! - `v/<volume id>/p/<sha256 hex>`: checkpoint pages, content-addressed.
//! - `v/<volume id>/b/<seq:016x>`: log bases (owner-signed summaries of
//!   collected entries; the log starts at the newest base's `seq`).
//! - `c/<block id>`: immutable content block objects.
//!
//! Invariants: an entry is returned only if its signature verifies with the
//! key of a card that is a writer in the generation it claims, its name,
//! volume and seq agree, its chain hash equals the previous entry's hash,
//! its generation is not lower than the previous entry's, and a `Rotate`
//! op in it is signed by the owner and names no later generation than the
//! entry's.
//! Keyrings: the newest generation opens with my key; every earlier one
//! opens with the key its successor's history gives, and all of them are
//! signed by the drive owner. An earlier generation's keyring may be gone
//! (the owner's collector deletes those no kept object is sealed under):
//! its key is still known from the history, its members are not, so no
//! object sealed under it verifies (`Tampered` naming the keyring).
//!
//! Children: `checkpoint` (writing and loading paged checkpoints),
//! `log_base` (reading and checking log bases),
//! `genesis` (writing a new volume), `held_keys` (the keys an engine holds,
//! reloaded as generations change). Imports: `error`,
//! `identity`, `tree`, `clock` of `drive`, and `format`/`store`; never the
//! engine or the router.

pub(super) mod checkpoint;
pub(super) mod genesis;
pub(super) mod held_keys;
pub(super) mod log_base;

pub use checkpoint::{
    PageIndex, attested_checkpoint, checkpoint_at_or_before, page_key, page_prefix, plan_pages,
    root_pages, snapshot_at_or_before, snapshot_key, snapshot_prefix, write_checkpoint,
    write_snapshot,
};
pub use log_base::{Base, base_head, base_key, base_seqs, check_collected, newest_base, read_base};

use super::error::{DriveError, Result};
use super::identity::hex8;
use crate::format::crypto::SecretKey;
use crate::format::hex::encode as hex;
use crate::format::meta::{self, Batch, ENTRY_MAGIC, Keyring, MemberRecord, Op, SignedHead};
use crate::format::wire::FormatError;
use crate::store::{GetOptions, ObjectStore, StoreError};
use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::{BTreeMap, BTreeSet};
use x25519_dalek::StaticSecret;

pub const HEADER_KEY: &str = "drive";

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
pub fn content_key(id: &[u8; 16]) -> String {
    format!("c/{}", hex(id))
}

/// Position in a volume's log: the last applied entry, its hash and the
/// keyring generation it was sealed under (the next entry's may not be
/// lower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub(super) seq: u64,
    pub(super) hash: [u8; 32],
    pub(super) generation: u32,
}

/// A volume's keys: every generation's key and members.
#[derive(Debug)]
pub struct VolumeKeys {
    /// The drive this volume belongs to (bound into key wrapping).
    pub(super) drive_id: [u8; 16],
    pub(super) volume: [u8; 16],
    pub(super) generations: BTreeMap<u32, (SecretKey, Vec<MemberRecord>)>,
    /// Earlier generations whose keyring the store no longer holds
    /// (collected): in `generations` with their key (from a newer
    /// keyring's history) and no members.
    pub(super) collected: BTreeSet<u32>,
    /// The display name from the newest keyring.
    pub(super) name: Vec<u8>,
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

    /// The members of the newest generation.
    pub fn members(&self) -> &[MemberRecord] {
        let (_, (_, m)) = self.generations.iter().next_back().expect("a generation");
        m
    }

    /// The role (1 reader, 2 writer, 3 owner) of `card` in the newest
    /// generation.
    pub fn role(&self, card: &[u8; 32]) -> Option<u8> {
        self.members()
            .iter()
            .find(|m| &m.card_id == card)
            .map(|m| m.role)
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
        Self::load_reusing(store, drive_id, volume, owner, me, None).await
    }

    /// [`VolumeKeys::load`], taking the member lists of generations whose
    /// key is unchanged from `known` instead of reading them again.
    pub async fn load_reusing(
        store: &dyn ObjectStore,
        drive_id: [u8; 16],
        volume: [u8; 16],
        owner: &VerifyingKey,
        me: &StaticSecret,
        known: Option<&VolumeKeys>,
    ) -> Result<Self> {
        let newest = newest_generation(store, &volume).await?;
        let (ring, key) = open_keyring(store, (drive_id, volume, newest), owner, |b| {
            Keyring::open(b, owner, me)
        })
        .await?;
        let mut generations = BTreeMap::new();
        let mut collected = BTreeSet::new();
        for (g, old_key) in &ring.history {
            let members = match known
                .filter(|k| !k.collected.contains(g))
                .and_then(|k| k.generations.get(g))
            {
                Some((k, m)) if k == old_key => m.clone(),
                _ => {
                    let at = (drive_id, volume, *g);
                    let opened = open_keyring_if_kept(store, at, owner, |b| {
                        Keyring::open_with_key(b, owner, old_key).map(|r| (r, old_key.clone()))
                    })
                    .await?;
                    match opened {
                        Some((old, _)) => old.members,
                        None => {
                            collected.insert(*g);
                            Vec::new()
                        }
                    }
                }
            };
            generations.insert(*g, (old_key.clone(), members));
        }
        generations.insert(newest, (key, ring.members));
        Ok(Self {
            drive_id,
            volume,
            generations,
            collected,
            name: ring.name,
        })
    }
}

/// The newest keyring generation the store lists for `volume` (every
/// name under the prefix must be a keyring name).
async fn newest_generation(store: &dyn ObjectStore, volume: &[u8; 16]) -> Result<u32> {
    let prefix = keyring_prefix(volume);
    let mut newest = None;
    for m in store.list_all(&prefix).await? {
        let g = u32::from_str_radix(&m.key[prefix.len()..], 16)
            .ok()
            .filter(|g| keyring_key(volume, *g) == m.key)
            .ok_or_else(|| DriveError::tampered(&m.key, "not a keyring name"))?;
        newest = newest.max(Some(g));
    }
    newest.ok_or_else(|| DriveError::tampered(prefix, "no keyring"))
}

/// Reads the keyring of `(drive, volume, generation)` and opens it with
/// `open`. "Not a member" becomes [`DriveError::NotMember`] if the owner
/// signed this very keyring for me to be left out of; anything else
/// (including a keyring moved from another name) is tampering.
async fn open_keyring(
    store: &dyn ObjectStore,
    (drive_id, volume, generation): ([u8; 16], [u8; 16], u32),
    owner: &VerifyingKey,
    open: impl FnOnce(&[u8]) -> std::result::Result<(Keyring, SecretKey), FormatError>,
) -> Result<(Keyring, SecretKey)> {
    let name = keyring_key(&volume, generation);
    let bytes = get(store, &name).await?;
    open_keyring_bytes(&bytes, (drive_id, volume, generation), owner, open)
}

/// [`open_keyring`] of an earlier generation, whose keyring the owner's
/// collector may have deleted: `None` when the store does not hold it.
async fn open_keyring_if_kept(
    store: &dyn ObjectStore,
    at: ([u8; 16], [u8; 16], u32),
    owner: &VerifyingKey,
    open: impl FnOnce(&[u8]) -> std::result::Result<(Keyring, SecretKey), FormatError>,
) -> Result<Option<(Keyring, SecretKey)>> {
    match store
        .get(&keyring_key(&at.1, at.2), GetOptions::default())
        .await
    {
        Ok(r) => open_keyring_bytes(&r.bytes, at, owner, open).map(Some),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the bytes of keyring `(drive, volume, generation)` with `open`
/// (see [`open_keyring`]).
fn open_keyring_bytes(
    bytes: &[u8],
    (drive_id, volume, generation): ([u8; 16], [u8; 16], u32),
    owner: &VerifyingKey,
    open: impl FnOnce(&[u8]) -> std::result::Result<(Keyring, SecretKey), FormatError>,
) -> Result<(Keyring, SecretKey)> {
    let name = keyring_key(&volume, generation);
    let misplaced =
        || DriveError::tampered(&name, "keyring names another drive, volume or generation");
    match open(bytes) {
        Ok((k, key)) if (k.drive_id, k.volume, k.generation) == (drive_id, volume, generation) => {
            Ok((k, key))
        }
        Ok(_) => Err(misplaced()),
        Err(FormatError::Invalid("not a member")) => match Keyring::verify_public(bytes, owner) {
            Ok(id) if id == (drive_id, volume, generation) => Err(DriveError::NotMember),
            Ok(_) => Err(misplaced()),
            Err(e) => Err(DriveError::unreadable(&name, e)),
        },
        Err(e) => Err(DriveError::unreadable(&name, e)),
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

/// One step along the log.
#[derive(Debug)]
pub enum Fetched {
    /// No entry after `prev` (yet).
    End,
    /// The verified entry, the head after it, and its writer's card.
    Entry(Batch, Head, [u8; 32]),
    /// The entry is sealed under a keyring generation these keys lack:
    /// reload the keys and fetch again.
    NeedKeys(u32),
}

/// Fetches and verifies log entry `seq` whose predecessor has hash `prev`
/// and generation `prev_generation` (zeros and 0 for entry 0).
pub async fn fetch_entry(
    store: &dyn ObjectStore,
    keys: &VolumeKeys,
    seq: u64,
    prev: &[u8; 32],
    prev_generation: u32,
) -> Result<Fetched> {
    let key = log_key(&keys.volume, seq);
    let bytes = match store.get(&key, GetOptions::default()).await {
        Ok(r) => r.bytes,
        Err(StoreError::NotFound { .. }) => {
            // The end of the log, unless later entries exist (a gap).
            let prefix = format!("v/{}/l/", hex(&keys.volume));
            let later = store.list(&prefix, Some(&key), 1).await?;
            let Some(next) = later.objects.first() else {
                return Ok(Fetched::End);
            };
            // A writer may have added entry `seq` and more since our
            // read: read it once more before calling it a gap.
            match store.get(&key, GetOptions::default()).await {
                Ok(r) => r.bytes,
                Err(_) => {
                    return Err(DriveError::tampered(
                        &key,
                        format!("log entry missing while {} exists", next.key),
                    ));
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    let head = meta::peek_signed(ENTRY_MAGIC, &bytes)
        .map_err(|e| DriveError::tampered(&key, e.to_string()))?;
    if keys.key(head.generation).is_none() && head.generation > keys.current().0 {
        return Ok(Fetched::NeedKeys(head.generation));
    }
    let (batch, hash) = verify_entry(keys, &key, seq, prev, prev_generation, &bytes)?;
    Ok(Fetched::Entry(
        batch,
        Head {
            seq,
            hash,
            generation: head.generation,
        },
        head.writer,
    ))
}

/// Verifies a log entry's bytes (see the module invariants); returns its
/// batch and hash.
pub fn verify_entry(
    keys: &VolumeKeys,
    key: &str,
    seq: u64,
    prev: &[u8; 32],
    prev_generation: u32,
    bytes: &[u8],
) -> Result<(Batch, [u8; 32])> {
    let (head, batch) = open_entry_at(keys, key, seq, bytes)?;
    if &head.chain != prev {
        return Err(DriveError::tampered(
            key,
            "hash chain broken (entry does not follow the previous one: fork or replay)",
        ));
    }
    if head.generation < prev_generation {
        return Err(DriveError::tampered(
            key,
            format!(
                "entry sealed under keyring generation {} after an entry of generation {prev_generation}",
                head.generation
            ),
        ));
    }
    for op in &batch.ops {
        if let Op::Rotate { generation } = op {
            let owner = keys
                .generations
                .get(&head.generation)
                .is_some_and(|(_, m)| m.iter().any(|m| m.card_id == head.writer && m.role == 3));
            // Lower than the entry's only when another rotation by the
            // owner landed between this one's keyring write and its commit.
            if *generation > head.generation || !owner {
                return Err(DriveError::tampered(
                    key,
                    "key rotation not by the owner or naming a later generation",
                ));
            }
        }
    }
    Ok((batch, meta::sha256(bytes)))
}

/// Opens log entry `seq` (signature, volume, position) without checking
/// its place in the chain: for reading the time of an entry whose chain a
/// walk checks.
pub fn open_entry(keys: &VolumeKeys, key: &str, seq: u64, bytes: &[u8]) -> Result<Batch> {
    Ok(open_entry_at(keys, key, seq, bytes)?.1)
}

fn open_entry_at(
    keys: &VolumeKeys,
    key: &str,
    seq: u64,
    bytes: &[u8],
) -> Result<(SignedHead, Batch)> {
    let (head, payload) = open_signed(keys, ENTRY_MAGIC, key, bytes)?;
    if head.seq != seq {
        return Err(DriveError::tampered(
            key,
            format!("entry claims seq {} at position {seq}", head.seq),
        ));
    }
    let batch =
        Batch::decode(&payload).map_err(|e| DriveError::tampered(key, format!("batch: {e}")))?;
    Ok((head, batch))
}

fn open_signed(
    keys: &VolumeKeys,
    magic: &[u8; 4],
    key: &str,
    bytes: &[u8],
) -> Result<(SignedHead, Vec<u8>)> {
    let head = meta::peek_signed(magic, bytes).map_err(|e| DriveError::unreadable(key, e))?;
    if head.volume != keys.volume {
        return Err(DriveError::tampered(
            key,
            "object belongs to another volume",
        ));
    }
    if keys.collected.contains(&head.generation) {
        return Err(DriveError::tampered(
            keyring_key(&keys.volume, head.generation),
            format!(
                "keyring missing from the store while {key}, sealed under its generation, remains"
            ),
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
