//! Small files' block versions packed into shared objects (engine level):
//! few uploads for many files, every file readable from an empty cache,
//! collection keeps a pack while any file names it (repacking: repack.rs), the collection race
//! rule re-seals a stale pack block version by block version, and a
//! server that moves bytes inside a pack is caught.

use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;
use cardfs::store::{ObjectStore, PutMode};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Content objects in the store (their names).
pub(crate) async fn content_objects(store: &dyn ObjectStore) -> Vec<String> {
    keys_under(store, "c/").await
}

/// `n` small files `f000..` of 4 KiB, distinct contents.
pub(crate) fn files(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("f{i:03}"), pattern(4096, 100 + i as u64)))
        .collect()
}

/// Another client, with nothing cached, reads every file of `files`;
/// returns the store reads those file reads took.
pub(crate) async fn empty_cache_reads(env: &Env, files: &[(String, Vec<u8>)]) -> u64 {
    let (store, other) = env.open_faulty("empty").await;
    let before = store.counts().reads;
    for (name, data) in files {
        let ino = lookup(&other, name).await.unwrap();
        assert_eq!(&read_all(&other, ino).await, data, "{name}");
    }
    let reads = store.counts().reads - before;
    other.shutdown().await.unwrap();
    reads
}

/// Writes `files` into the root while the store refuses every call, so
/// that they gather into packs before any upload (a commit attempt that
/// fails still closes the pack it took: a few packs, not one per file).
pub(crate) async fn write_offline(
    d: &Drive,
    store: &cardfs::store::FaultStore,
    files: &[(String, Vec<u8>)],
) {
    store.set_offline(true);
    for (name, data) in files {
        put(d, ROOT_INO, name, data).await;
    }
    store.set_offline(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_cost_a_handful_of_uploads_and_read_back_from_an_empty_cache() {
    let env = Env::new().await;
    let (store, d) = env.open_faulty("cache").await;
    let written = files(200);
    write_offline(&d, &store, &written).await;
    let before = store.counts().writes;
    sync(&d).await;
    let writes = store.counts().writes - before;
    let objects = content_objects(env.store.as_ref()).await;
    // 200 files: a few packs (one per failed commit attempt at most, and
    // those back off), and the log entries and checkpoint that commit them.
    assert!(
        !objects.is_empty() && objects.len() <= 12,
        "{} content objects for 200 small files",
        objects.len()
    );
    assert!(
        writes <= objects.len() as u64 + 12,
        "{writes} store writes for 200 small files in {} packs",
        objects.len()
    );
    d.shutdown().await.unwrap();
    // The first file read of a pack fetches the pack whole into the cache:
    // its other files need no request.
    let reads = empty_cache_reads(&env, &written).await;
    assert!(
        reads <= objects.len() as u64,
        "{reads} store reads for 200 files in {} packs",
        objects.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_lives_while_any_file_names_it() {
    let env = Env::new().await;
    let d = env.open().await;
    let mut written = files(6);
    for (name, data) in &written {
        put(&d, ROOT_INO, name, data).await;
    }
    sync(&d).await;
    let packs = content_objects(env.store.as_ref()).await;
    assert!((1..=6).contains(&packs.len()), "{packs:?}");
    // Delete all but the last file: whatever pack holds it stays.
    let last = written.pop().unwrap();
    for (name, _) in &written {
        d.unlink(ROOT_INO, os(name)).await.unwrap();
    }
    sync(&d).await;
    let r = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    let left = content_objects(env.store.as_ref()).await;
    assert_eq!(r.reclaimed_objects as usize, packs.len() - 1, "{r:?}");
    let kept: Vec<&String> = left.iter().filter(|o| packs.contains(o)).collect();
    assert_eq!(kept.len(), 1, "the pack holding {} stays", last.0);
    // If other files shared it, it is mostly dead: its file was moved into
    // a new pack (repack), and it goes at the next collection.
    assert!(r.repacked_packs <= 1, "{r:?}");
    assert_eq!(left.len() as u64, 1 + r.repacked_packs, "{left:?}");
    let ino = lookup(&d, &last.0).await.unwrap();
    assert_eq!(read_all(&d, ino).await, last.1);
    // Gone with the last file naming it.
    d.unlink(ROOT_INO, os(&last.0)).await.unwrap();
    sync(&d).await;
    let r = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert_eq!(r.reclaimed_objects as usize, left.len());
    assert!(content_objects(env.store.as_ref()).await.is_empty());
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pack_is_sealed_again_block_version_by_block_version() {
    let env = Env::new().await;
    let store = faulty(env.store.clone());
    let ahead = Arc::new(AtomicI64::new(0));
    let mut opts = env.opts("cache");
    let clock_ahead = ahead.clone();
    opts.clock = Clock::from_fn(move || {
        std::time::SystemTime::now()
            + Duration::from_secs(clock_ahead.load(Ordering::SeqCst) as u64)
    });
    let d = Drive::open_drive(store.clone(), env.id.clone(), opts)
        .await
        .unwrap();
    // Uploaded, not committed (the log is out of reach).
    refuse_commits(&store);
    let written = files(8);
    for (name, data) in &written {
        put(&d, ROOT_INO, name, data).await;
    }
    upload_uncommitted(&d).await;
    let first = content_objects(env.store.as_ref()).await;
    assert!(!first.is_empty());
    // Back after more than half the grace: every block version is sealed
    // again (new keys, new places) and the old packs are garbage.
    ahead.store(31 * 60, Ordering::SeqCst);
    store.update_config(|c| c.refuse_puts.clear());
    sync(&d).await;
    let r = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert_eq!(r.reclaimed_objects as usize, first.len());
    let now = content_objects(env.store.as_ref()).await;
    assert!(now.iter().all(|o| !first.contains(o)), "{now:?} {first:?}");
    d.shutdown().await.unwrap();
    // Each file names its own block version, not another of the pack's.
    assert!(empty_cache_reads(&env, &written).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_versions_swapped_inside_a_pack_are_tampering() {
    let env = Env::new().await;
    let (store, d) = env.open_faulty("cache").await;
    let written = files(20);
    write_offline(&d, &store, &written).await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    // The server swaps the first two block versions of a pack holding at
    // least two (each file is 4 KiB: 4,096 bytes and a tag).
    let member = 4096 + 16;
    let mut pack = None;
    for o in content_objects(env.store.as_ref()).await {
        let bytes = object_bytes(env.store.as_ref(), &o).await;
        if bytes.len() >= 2 * member {
            pack = Some((o, bytes));
            break;
        }
    }
    let (pack, mut bytes) = pack.expect("a pack of two or more files");
    let (a, b) = bytes.split_at_mut(member);
    a.swap_with_slice(&mut b[..member]);
    env.store
        .put(&pack, bytes.into(), PutMode::Overwrite)
        .await
        .unwrap();
    // Exactly the two files whose bytes moved fail, naming the pack.
    let other = env.open_with("empty").await;
    let mut failed = 0;
    for (name, data) in &written {
        let ino = lookup(&other, name).await.unwrap();
        let fh = other.open(ino, libc::O_RDONLY).await.unwrap();
        match other.read(ino, fh, 0, 4096).await {
            Ok(got) => assert_eq!(&got, data, "{name}"),
            Err(e) => {
                assert_eq!(tampered_object(e), pack, "{name}");
                failed += 1;
            }
        }
        other.release(ino, fh).await.unwrap();
    }
    assert_eq!(failed, 2);
    other.shutdown().await.unwrap();
}

/// A journal replay checks the object of every block version it would
/// commit; when the cache no longer holds a pack (uploaded, then evicted
/// or lost), the block versions inside it cost one store request
/// together, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_checks_a_pack_once_for_all_its_block_versions() {
    let env = Env::new().await;
    let (store, d) = env.open_faulty("cache").await;
    // Uploaded, not committed (the log is out of reach).
    refuse_commits(&store);
    let written = files(200);
    for (name, data) in &written {
        put(&d, ROOT_INO, name, data).await;
    }
    upload_uncommitted(&d).await;
    let packs = content_objects(env.store.as_ref()).await;
    assert!(
        !packs.is_empty() && packs.len() <= 12,
        "{} packs",
        packs.len()
    );
    d.abandon().await;
    // The cache's copies of the packs are gone; the journal is not.
    let volumes = env.dir.path().join("cache").join("v");
    let mut removed = 0;
    for volume in std::fs::read_dir(&volumes).unwrap() {
        let objects = volume.unwrap().path().join("objects");
        for object in std::fs::read_dir(&objects).unwrap() {
            std::fs::remove_file(object.unwrap().path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed >= packs.len(), "{removed} cached objects");
    let before = store.counts().reads;
    let d = Drive::open_drive(store.clone(), env.id.clone(), env.opts("cache"))
        .await
        .unwrap();
    let reads = store.counts().reads - before;
    // The open's own reads (header, keyrings, log) and one per pack.
    assert!(
        reads < 60,
        "{reads} store reads to replay 200 files in {} packs",
        packs.len()
    );
    store.update_config(|c| c.refuse_puts.clear());
    sync(&d).await;
    d.shutdown().await.unwrap();
    empty_cache_reads(&env, &written).await;
}
