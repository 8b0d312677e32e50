//! The member view: a member of shared folders (not of the root volume)
//! sees a synthetic read-only root directory listing each volume shared
//! with them under its keyring's display name.
//!
//! Discovery lists every keyring (`k/`, one listing), takes the newest
//! generation of each volume and trial-opens it with my key: only keyrings
//! that wrap a key to me are opened, so names of other folders are never
//! seen. A duplicate name gets " (2)", " (3)", ... in volume-id order.
//!
//! Invariants:
//! - The synthetic root never changes through the filesystem (EROFS).
//! - A volume's entry keeps its inode and readdir cookie while it stays
//!   shared with me; a volume whose newest keyring no longer names me
//!   disappears and its engine is stopped.
//! - A volume whose newest keyring fails verification keeps its entry if
//!   it had one (its engine reports the error), and is not added otherwise.

use crate::drive::engine::open::VerifiedHeader;
use crate::drive::engine::ops::check_name;
use crate::drive::error::{DriveError, Result};
use crate::drive::identity::{Identity, hex8};
use crate::drive::types::*;
use crate::drive::volume;
use crate::format::meta::Keyring;
use crate::format::wire::FormatError;
use crate::store::ObjectStore;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::SystemTime;

/// One volume in the synthetic root.
#[derive(Debug, Clone)]
pub struct SharedVolume {
    pub(super) volume: [u8; 16],
    /// Display name as listed (deduplicated).
    pub(super) name: OsString,
    pub(super) ino: Ino,
    pub(super) cookie: u64,
}

/// The synthetic root's entries, in cookie order.
#[derive(Debug)]
pub struct SharedRoot {
    pub(super) entries: Vec<SharedVolume>,
    next_cookie: u64,
    pub(super) mtime: SystemTime,
    /// Discovery's cache of verified keyring answers.
    pub(super) known: Known,
}

impl Default for SharedRoot {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            next_cookie: 1,
            mtime: SystemTime::now(),
            known: Known::new(),
        }
    }
}

/// What the newest keyring of a volume says about me.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// I am a member; the volume's display name.
    Member(Vec<u8>),
    /// The keyring failed verification (logged).
    Broken,
}

/// `k/<volume hex>/<generation:08x>` => (volume, generation).
fn parse_keyring_key(key: &str) -> Option<([u8; 16], u32)> {
    let rest = key.strip_prefix("k/")?;
    let (vol, generation) = rest.split_once('/')?;
    let vol = crate::format::hex::decode::<16>(vol)?;
    if generation.len() != 8 {
        return None;
    }
    Some((vol, u32::from_str_radix(generation, 16).ok()?))
}

/// What a keyring generation that verified said: my volume's name, or
/// `None` (not shared with me). Generations are Create-only, so this never
/// changes and the keyring is not fetched again.
pub type Known = BTreeMap<[u8; 16], (u32, Option<Vec<u8>>)>;

/// Every volume other than the root whose newest keyring is for me (or
/// failed verification). Store errors are returned (a refresh that cannot
/// list must not make every share disappear). `known` caches verified
/// answers per newest generation (a keyring that failed is tried again).
pub async fn discover(
    store: &dyn ObjectStore,
    header: &VerifiedHeader,
    me: &Identity,
    known: &mut Known,
) -> Result<BTreeMap<[u8; 16], Found>> {
    let mut newest: BTreeMap<[u8; 16], (u32, String)> = BTreeMap::new();
    for m in store.list_all("k/").await? {
        let Some((vol, generation)) = parse_keyring_key(&m.key) else {
            tracing::warn!(object = %m.key, "ignoring an object with a keyring name in another form");
            continue;
        };
        if vol == header.header.root_volume {
            continue;
        }
        let e = newest.entry(vol).or_insert((generation, m.key.clone()));
        if generation >= e.0 {
            *e = (generation, m.key);
        }
    }
    known.retain(|vol, (g, _)| newest.get(vol).is_some_and(|(n, _)| n == g));
    let mut out = BTreeMap::new();
    for (vol, (generation, key)) in newest {
        if let Some((_, answer)) = known.get(&vol) {
            if let Some(name) = answer {
                out.insert(vol, Found::Member(name.clone()));
            }
            continue;
        }
        let bytes = match volume::get(store, &key).await {
            Ok(b) => b,
            Err(DriveError::Store(e)) => return Err(DriveError::Store(e)),
            Err(e) => {
                tracing::error!(object = %key, error = %e, "keyring unreadable");
                out.insert(vol, Found::Broken);
                continue;
            }
        };
        let want = (header.header.drive_id, vol, generation);
        let misplaced = "keyring names another drive, volume or generation";
        let broken = match Keyring::open(&bytes, &header.owner_vk, &me.x25519) {
            Ok((k, _)) if (k.drive_id, k.volume, k.generation) == want => {
                known.insert(vol, (generation, Some(k.name.clone())));
                out.insert(vol, Found::Member(k.name));
                continue;
            }
            Ok(_) => misplaced.to_string(),
            // Not for me: still the owner's keyring for this very place?
            Err(FormatError::Invalid("not a member")) => {
                match Keyring::verify_public(&bytes, &header.owner_vk) {
                    Ok(id) if id == want => {
                        known.insert(vol, (generation, None));
                        continue;
                    }
                    Ok(_) => misplaced.to_string(),
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        let _ = DriveError::tampered(&key, broken);
        out.insert(vol, Found::Broken);
    }
    Ok(out)
}

/// A listable name for a display name: '/' and NUL replaced, empty or
/// dot names replaced, cut to 240 bytes (room for a " (n)" suffix).
fn listable(name: &[u8], vol: &[u8; 16]) -> Vec<u8> {
    let mut n: Vec<u8> = name
        .iter()
        .map(|&b| if b == b'/' || b == 0 { b'_' } else { b })
        .collect();
    n.truncate(240);
    if check_name(OsStr::from_bytes(&n)).is_err() {
        n = format!("shared-{}", hex8(vol)).into_bytes();
    }
    n
}

/// Entries for `found`, keeping the inode and cookie of volumes already
/// listed; returns the volumes that disappeared.
pub fn merge(
    root: &mut SharedRoot,
    found: &BTreeMap<[u8; 16], Found>,
    mut ino_for: impl FnMut([u8; 16]) -> Ino,
) -> Vec<[u8; 16]> {
    let old: BTreeMap<[u8; 16], SharedVolume> =
        root.entries.drain(..).map(|e| (e.volume, e)).collect();
    let mut names: BTreeMap<[u8; 16], Vec<u8>> = BTreeMap::new();
    for (vol, f) in found {
        match f {
            Found::Member(n) => {
                names.insert(*vol, listable(n, vol));
            }
            Found::Broken => {
                if let Some(e) = old.get(vol) {
                    names.insert(*vol, e.name.as_bytes().to_vec());
                }
            }
        }
    }
    // Deduplicate in volume-id order (stable across clients).
    let mut seen: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    let mut entries = Vec::new();
    for (vol, base) in names {
        let count = seen.entry(base.clone()).or_insert(0);
        *count += 1;
        let mut name = base;
        if *count > 1 {
            name.extend_from_slice(format!(" ({count})").as_bytes());
        }
        let (ino, cookie) = match old.get(&vol) {
            Some(e) => (e.ino, e.cookie),
            None => {
                let c = root.next_cookie;
                root.next_cookie += 1;
                (ino_for(vol), c)
            }
        };
        entries.push(SharedVolume {
            volume: vol,
            name: OsString::from_vec(name),
            ino,
            cookie,
        });
    }
    entries.sort_by_key(|e| e.cookie);
    let gone: Vec<[u8; 16]> = old
        .keys()
        .filter(|v| !entries.iter().any(|e| e.volume == **v))
        .copied()
        .collect();
    let changed = !gone.is_empty()
        || entries.len() != old.len()
        || entries
            .iter()
            .any(|e| old.get(&e.volume).is_none_or(|o| o.name != e.name));
    if changed {
        root.mtime = SystemTime::now();
    }
    root.entries = entries;
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_names_parse() {
        let v = [0xab; 16];
        let k = volume::keyring_key(&v, 7);
        assert_eq!(parse_keyring_key(&k), Some((v, 7)));
        assert_eq!(parse_keyring_key("k/zz/00000001"), None);
        assert_eq!(
            parse_keyring_key(&format!("k/{}/1", crate::format::hex::encode(&v))),
            None
        );
        assert_eq!(parse_keyring_key("v/x/k/00000001"), None);
    }

    #[test]
    fn merge_dedups_keeps_inodes_and_drops_removed() {
        let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let mut root = SharedRoot::default();
        let mut next = 100;
        let mut ino_for = |_| {
            next += 1;
            next
        };
        let mut found = BTreeMap::new();
        found.insert(a, Found::Member(b"docs".to_vec()));
        found.insert(b, Found::Member(b"docs".to_vec()));
        found.insert(c, Found::Member(b"a/b".to_vec()));
        assert!(merge(&mut root, &found, &mut ino_for).is_empty());
        let names: Vec<_> = root.entries.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["docs", "docs (2)", "a_b"]);
        let ino_b = root.entries[1].ino;
        found.remove(&a);
        found.insert(c, Found::Broken);
        assert_eq!(merge(&mut root, &found, &mut ino_for), vec![a]);
        let names: Vec<_> = root.entries.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["docs", "a_b"]);
        assert_eq!(root.entries[0].ino, ino_b, "inode changed");
        // A broken keyring is not added when it was not listed.
        let mut fresh = SharedRoot::default();
        let mut only = BTreeMap::new();
        only.insert(c, Found::Broken);
        merge(&mut fresh, &only, &mut ino_for);
        assert!(fresh.entries.is_empty());
    }
}
