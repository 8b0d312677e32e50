//! Helpers of the collection tests: options that collect everything now,
//! the files a test wrote as a model of the root directory, and the
//! counters of a volume's metadata objects in the store.

use super::{keys_under, lookup, names, read_all};
use cardfs::drive::{Drive, GcOptions, ROOT_INO};
use cardfs::store::ObjectStore;
use std::collections::BTreeMap;
use std::time::Duration;

/// A collection that keeps no history and no grace: everything
/// unreferenced goes now.
pub fn now_all() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        keep: Duration::ZERO,
        ..Default::default()
    }
}

/// Two collections that collect everything now: the first repacks at
/// least `packs` packs, the second deletes at least as many old ones.
pub async fn repack_then_delete(d: &Drive, packs: u64) {
    let first = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(first.repacked_packs >= packs, "{first:?}");
    let second = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(second.reclaimed_objects >= packs, "{second:?}");
}

/// The files a test wrote: name to content (the model the root directory
/// must equal).
pub type Model = BTreeMap<String, Vec<u8>>;

/// The drive's root directory equals `model`.
pub async fn equals(d: &Drive, model: &Model) {
    assert_eq!(
        names(d, ROOT_INO).await,
        model.keys().cloned().collect::<Vec<_>>()
    );
    for (name, data) in model {
        let ino = lookup(d, name).await.unwrap();
        assert_eq!(&read_all(d, ino).await, data, "{name}");
    }
}

/// The id (hex) of the volume of the first `v/` object: the root volume
/// of a drive that shares nothing.
pub async fn volume(store: &dyn ObjectStore) -> String {
    let keys = keys_under(store, "v/").await;
    keys[0].split('/').nth(1).unwrap().to_string()
}

/// The counters of the objects under `v/<vol>/<kind>/`, ascending.
pub async fn seqs(store: &dyn ObjectStore, vol: &str, kind: &str) -> Vec<u64> {
    let prefix = format!("v/{vol}/{kind}/");
    (keys_under(store, &prefix).await.iter())
        .map(|k| u64::from_str_radix(&k[prefix.len()..], 16).unwrap())
        .collect()
}
