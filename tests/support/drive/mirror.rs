//! Reading and damaging a cache directory's metadata mirror the way a test
//! needs to: its checkpoint pages are records in one file per volume,
//! `meta/pages` (docs/ARCHITECTURE.md, "Offline open": key length u16 LE,
//! store key, body length u32 LE, body), read here independently of the
//! engine's own reader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The page pack files under `cache` (one per mirrored volume).
fn packs(cache: &Path) -> Vec<PathBuf> {
    super::files_named(cache, "pages")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "pages"))
        .collect()
}

/// The records of one pack file, in order (a torn tail is left out).
fn records(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let key_len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
        let body_at = at + 2 + key_len + 4;
        if key_len == 0 || body_at > bytes.len() {
            break;
        }
        let key = String::from_utf8(bytes[at + 2..at + 2 + key_len].to_vec()).unwrap();
        let len = u32::from_le_bytes(bytes[body_at - 4..body_at].try_into().unwrap()) as usize;
        if body_at + len > bytes.len() {
            break;
        }
        out.push((key, bytes[body_at..body_at + len].to_vec()));
        at = body_at + len;
    }
    out
}

/// The checkpoint pages the mirrors under `cache` hold (store key to
/// bytes), and the bytes their pack files take.
pub fn mirrored_pages(cache: &Path) -> (BTreeMap<String, Vec<u8>>, u64) {
    let mut pages = BTreeMap::new();
    let mut size = 0;
    for pack in packs(cache) {
        let bytes = std::fs::read(&pack).unwrap();
        size += bytes.len() as u64;
        pages.extend(records(&bytes));
    }
    (pages, size)
}

/// Removes the page `key` from the mirror under `cache` (a kill before
/// its copy was written).
pub fn drop_mirrored_page(cache: &Path, key: &str) {
    for pack in packs(cache) {
        let kept: Vec<u8> = records(&std::fs::read(&pack).unwrap())
            .into_iter()
            .filter(|(k, _)| k != key)
            .flat_map(|(k, body)| {
                let mut r = (k.len() as u16).to_le_bytes().to_vec();
                r.extend_from_slice(k.as_bytes());
                r.extend_from_slice(&(body.len() as u32).to_le_bytes());
                r.extend_from_slice(&body);
                r
            })
            .collect();
        std::fs::write(&pack, kept).unwrap();
    }
}
