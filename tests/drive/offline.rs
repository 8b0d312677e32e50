//! Offline open: a drive opened on this machine before opens from its
//! cache while the store is out of reach, serves what the cache holds,
//! queues changes, and commits them once the store answers again, after
//! checking that the store did not roll back or fork meanwhile. A cache
//! altered on disk is not trusted, and a drive never opened here still
//! needs the store.

use super::tamper_pages::{named_pages, newest_root};
use crate::support::drive::mirror::{drop_mirrored_page, mirrored_pages};
use crate::support::drive::*;
use cardfs::drive::*;
use cardfs::store::{FaultStore, MemoryStore, ObjectStore};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// A drive on a MemoryStore behind the fault wrapper (the MemoryStore is
/// the store's own view, reachable while the wrapper is offline).
async fn setup() -> (Env, Arc<FaultStore>, Arc<MemoryStore>) {
    let inner = Arc::new(MemoryStore::new());
    let fault = faulty(inner.clone());
    (Env::with_store(fault.clone()).await, fault, inner)
}

/// [`setup`], then the drive opened once with the cache `laptop`, file
/// `a` written and committed, and closed again.
async fn opened_once() -> (Env, Arc<FaultStore>, Arc<MemoryStore>) {
    let (env, fault, inner) = setup().await;
    let d = env.open_with("laptop").await;
    put(&d, ROOT_INO, "a", b"first").await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    (env, fault, inner)
}

async fn open_result(env: &Env, cache: &str) -> Result<Drive> {
    Drive::open_drive(env.store.clone(), env.id.clone(), env.opts(cache)).await
}

async fn append(d: &Drive, path: &str, data: &[u8]) {
    let ino = lookup(d, path).await.unwrap();
    let size = d.getattr(ino).await.unwrap().size;
    let fh = d.open(ino, libc::O_WRONLY).await.unwrap();
    d.write(ino, fh, size, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

/// Keys of the volume's log entries in the store.
async fn log_keys(store: &dyn ObjectStore) -> Vec<String> {
    let all = store.list_all("v/").await.unwrap();
    all.into_iter()
        .map(|m| m.key)
        .filter(|k| k.contains("/l/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_open_serves_the_cache_and_commits_on_reconnect() {
    let (env, fault, inner) = setup().await;
    let small = b"written online".to_vec();
    let big = bytes(3_000_000, 1);
    let d = env.open_with("laptop").await;
    let docs = d.mkdir(ROOT_INO, os("docs"), 0o755, WHO).await.unwrap().ino;
    put(&d, docs, "notes.txt", &small).await;
    put(&d, ROOT_INO, "big.bin", &big).await;
    sync(&d).await;
    // Another client adds a file the laptop learns of but never reads.
    let other = env.open_with("desktop").await;
    put(&other, ROOT_INO, "uncached.bin", &bytes(100_000, 2)).await;
    sync(&other).await;
    other.shutdown().await.unwrap();
    d.refresh().await.unwrap();
    d.shutdown().await.unwrap();

    fault.set_offline(true);
    let d = open_result(&env, "laptop")
        .await
        .expect("a drive opened here before opens offline");
    let st = d.status();
    assert!(st.offline_since.is_some(), "{st:?}");
    assert!(!st.store_reachable, "{st:?}");
    // What the cache holds reads byte-exact; the rest is EIO.
    assert_eq!(
        read_all(&d, lookup(&d, "docs/notes.txt").await.unwrap()).await,
        small
    );
    assert!(read_all(&d, lookup(&d, "big.bin").await.unwrap()).await == big);
    let ino = lookup(&d, "uncached.bin").await.unwrap();
    let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    let err = d.read(ino, fh, 0, 4096).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err:?}");
    d.release(ino, fh).await.unwrap();
    // Changes are queued.
    let more = bytes(1_500_000, 3);
    put(&d, docs, "offline.bin", &more).await;
    append(&d, "docs/notes.txt", b", appended offline").await;
    d.mkdir(ROOT_INO, os("made-offline"), 0o755, WHO)
        .await
        .unwrap();
    d.unlink(ROOT_INO, os("uncached.bin")).await.unwrap();
    assert!(
        d.sync(&|_, _| {}).await.is_err(),
        "sync cannot succeed offline"
    );
    let queued = d.status().pending_ops;
    assert!(queued >= 4, "{queued} ops queued");
    let before = log_keys(inner.as_ref()).await.len();

    // The store answers again: checked, then everything is committed.
    fault.set_offline(false);
    sync(&d).await;
    let st = d.status();
    assert_eq!(st.offline_since, None, "{st:?}");
    assert!(st.store_reachable, "{st:?}");
    assert_eq!(st.pending_ops, 0);
    assert!(log_keys(env.store.as_ref()).await.len() > before);
    d.shutdown().await.unwrap();

    // A fresh client (empty cache) reads it all back.
    let fresh = env.open_with("fresh").await;
    assert_eq!(
        read_all(&fresh, lookup(&fresh, "docs/notes.txt").await.unwrap()).await,
        b"written online, appended offline"
    );
    assert!(read_all(&fresh, lookup(&fresh, "docs/offline.bin").await.unwrap()).await == more);
    assert!(read_all(&fresh, lookup(&fresh, "big.bin").await.unwrap()).await == big);
    assert_eq!(
        names(&fresh, ROOT_INO).await,
        vec!["big.bin", "docs", "made-offline"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_while_offline_is_refused_on_reconnect() {
    let (env, fault, inner) = setup().await;
    let d = env.open_with("laptop").await;
    put(&d, ROOT_INO, "a", b"first").await;
    sync(&d).await;
    let kept = log_keys(env.store.as_ref()).await;
    put(&d, ROOT_INO, "b", b"second").await;
    sync(&d).await;
    d.shutdown().await.unwrap();

    fault.set_offline(true);
    let d = open_result(&env, "laptop").await.unwrap();
    put(&d, ROOT_INO, "c", b"written offline").await;
    // Meanwhile the store is rolled back: the newest entry disappears.
    let newer: Vec<String> = log_keys(inner.as_ref())
        .await
        .into_iter()
        .filter(|k| !kept.contains(k))
        .collect();
    assert!(!newer.is_empty());
    inner.delete_many(&newer).await.unwrap();
    fault.set_offline(false);

    match d.sync(&|_, _| {}).await {
        Err(DriveError::Rollback { .. }) => {}
        other => panic!("expected Rollback on reconnect, got {other:?}"),
    }
    // Nothing was committed on top of the rolled-back log, and the change
    // stays queued.
    assert_eq!(log_keys(env.store.as_ref()).await, kept);
    assert!(d.status().pending_ops >= 1);
    assert!(d.status().offline_since.is_some());
    // The background committer refuses it too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(log_keys(env.store.as_ref()).await, kept);
    d.abandon().await;
    // And an ordinary open refuses the store as well.
    match open_result(&env, "laptop").await {
        Err(DriveError::Rollback { .. }) => {}
        other => panic!("expected Rollback at open, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_store_is_refused_on_reconnect() {
    let (env, fault, inner) = opened_once().await;
    let head_key = log_keys(env.store.as_ref()).await.pop().unwrap();

    fault.set_offline(true);
    let d = open_result(&env, "laptop").await.unwrap();
    put(&d, ROOT_INO, "c", b"written offline").await;
    // The store swaps the entry this client accepted for another one.
    let forged = inner
        .get(&head_key, Default::default())
        .await
        .unwrap()
        .bytes;
    let mut forged = forged.to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    inner
        .put(&head_key, forged.into(), cardfs::store::PutMode::Overwrite)
        .await
        .unwrap();
    fault.set_offline(false);
    let err = d.sync(&|_, _| {}).await.unwrap_err();
    assert!(matches!(err, DriveError::Rollback { .. }), "{err:?}");
    assert!(d.status().pending_ops >= 1);
    d.abandon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drive_never_opened_here_needs_the_store() {
    let (env, fault, _) = setup().await;
    fault.set_offline(true);
    match open_result(&env, "never").await {
        Err(DriveError::Store(e)) => assert!(e.is_transient(), "{e:?}"),
        other => panic!("expected the store error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_cache_is_not_trusted_offline() {
    let (env, fault, _) = opened_once().await;
    let cache = env.dir.path().join("laptop");
    fault.set_offline(true);

    // A mirrored log entry altered on disk: verification fails.
    let entries = files_named(&cache, "~l~");
    assert!(!entries.is_empty(), "no mirrored log entry in the cache");
    let saved: Vec<(PathBuf, Vec<u8>)> = entries
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    for (p, b) in &saved {
        let mut b = b.clone();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(p, b).unwrap();
    }
    match open_result(&env, "laptop").await {
        Err(e) => assert_eq!(e.errno(), libc::EIO, "{e:?}"),
        Ok(_) => panic!("an altered mirror was trusted"),
    }
    for (p, b) in &saved {
        std::fs::write(p, b).unwrap();
    }
    // Mirrored entries deleted: the state's head is missing (rollback).
    for (p, _) in &saved {
        std::fs::remove_file(p).unwrap();
    }
    match open_result(&env, "laptop").await {
        Err(e) => assert_eq!(e.errno(), libc::EIO, "{e:?}"),
        Ok(_) => panic!("a mirror missing accepted entries was trusted"),
    }
    for (p, b) in &saved {
        std::fs::write(p, b).unwrap();
    }
    // Another drive's header in place of the kept copy: refused.
    let header = cache.join("header");
    let kept = std::fs::read(&header).unwrap();
    let (other, _, _) = setup().await;
    let other_header = other
        .store
        .get("drive", Default::default())
        .await
        .unwrap()
        .bytes;
    std::fs::write(&header, &other_header).unwrap();
    assert!(open_result(&env, "laptop").await.is_err());
    std::fs::write(&header, kept).unwrap();
    // Restored: it opens offline again.
    let d = open_result(&env, "laptop").await.unwrap();
    assert_eq!(read_all(&d, lookup(&d, "a").await.unwrap()).await, b"first");
    d.abandon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_open_starts_from_the_mirrored_snapshot() {
    let (env, fault, _) = setup().await;
    let d = env.open_with("laptop").await;
    let n = SNAPSHOT_EVERY as usize + 6;
    for i in 0..n {
        put(
            &d,
            ROOT_INO,
            &format!("f{i}"),
            format!("file {i}").as_bytes(),
        )
        .await;
        sync(&d).await;
    }
    d.shutdown().await.unwrap();
    // The mirror keeps the newest snapshot, its pages (one or two, in a
    // drive this small; replaced ones stay in the pack file until they
    // are most of it) and the entries after it only.
    let cache = env.dir.path().join("laptop");
    assert_eq!(files_named(&cache, "~s~").len(), 1);
    let (named, mirrored) = newest_and_mirrored_pages(&env, &cache).await;
    assert!((1..=2).contains(&named.len()), "{} pages", named.len());
    assert!(named.is_subset(&mirrored), "{named:?} {mirrored:?}");
    assert!(files_named(&cache, "~p~").is_empty(), "a file per page");
    let entries = files_named(&cache, "~l~").len();
    assert!(entries < 20, "{entries} mirrored entries");
    fault.set_offline(true);
    let d = open_result(&env, "laptop").await.unwrap();
    assert_eq!(names(&d, ROOT_INO).await.len(), n);
    let last = format!("f{}", n - 1);
    assert_eq!(
        read_all(&d, lookup(&d, &last).await.unwrap()).await,
        format!("file {}", n - 1).as_bytes()
    );
    d.abandon().await;
}

/// The pages the store's newest checkpoint names, and the pages the
/// mirror in `cache` holds (both as store keys).
async fn newest_and_mirrored_pages(
    env: &Env,
    cache: &std::path::Path,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (_, head, root, _) = newest_root(env).await;
    let named = named_pages(&head.volume, &root)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mirrored = mirrored_pages(cache).0.into_keys().collect();
    (named, mirrored)
}

/// `n` synced commits of files `<prefix>0..n` (enough for checkpoints).
async fn synced_files(d: &Drive, prefix: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        put(d, ROOT_INO, &name, format!("file {name}").as_bytes()).await;
        sync(d).await;
        names.push(name);
    }
    names
}

async fn reads_back(d: &Drive, names: &[String]) {
    for name in names {
        assert_eq!(
            read_all(d, lookup(d, name).await.unwrap()).await,
            format!("file {name}").as_bytes(),
            "{name}"
        );
    }
}

/// A mirror missing one page of its newest checkpoint (a kill before the
/// background copies finished) cannot open offline, and says the local
/// cache lacks the page rather than calling it tampered; once the store
/// is back, an online open copies the page again and offline works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_missing_from_the_mirror_is_a_cache_gap_not_tampering() {
    let (env, fault, _) = setup().await;
    let d = env.open_with("laptop").await;
    let names = synced_files(&d, "f", SNAPSHOT_EVERY as usize + 6).await;
    d.shutdown().await.unwrap();
    let cache = env.dir.path().join("laptop");
    let (named, mirrored) = newest_and_mirrored_pages(&env, &cache).await;
    let page = named.first().expect("no page named").clone();
    assert!(mirrored.contains(&page), "{page} not mirrored");
    drop_mirrored_page(&cache, &page);
    fault.set_offline(true);
    match open_result(&env, "laptop").await {
        Err(DriveError::Store(e)) => {
            assert!(e.is_transient(), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains("local cache lacks") && text.contains(&page),
                "{text}"
            );
        }
        other => panic!("expected a cache gap, got {:?}", other.map(|_| ())),
    }
    fault.set_offline(false);
    env.open_with("laptop").await.shutdown().await.unwrap();
    // Every page of the newest checkpoint is in the mirror again.
    let (named, mirrored) = newest_and_mirrored_pages(&env, &cache).await;
    assert!(named.is_subset(&mirrored), "{named:?} {mirrored:?}");
    fault.set_offline(true);
    let d = open_result(&env, "laptop").await.unwrap();
    reads_back(&d, &names).await;
    d.abandon().await;
}

/// This client collected the log itself (a new log base, the entries and
/// checkpoints before it gone), then closed: it opens offline from its
/// mirror all the same, and commits what it queued once back online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_open_after_this_client_collected() {
    let (env, fault, _) = setup().await;
    let d = env.open_with("laptop").await;
    let mut names = synced_files(&d, "f", SNAPSHOT_EVERY as usize + 6).await;
    d.gc(&now_all(), &|_, _| {}).await.unwrap();
    names.extend(synced_files(&d, "g", 3).await);
    d.shutdown().await.unwrap();

    fault.set_offline(true);
    let d = open_result(&env, "laptop")
        .await
        .expect("opens offline after its own collection");
    reads_back(&d, &names).await;
    put(&d, ROOT_INO, "offline", b"file offline").await;
    fault.set_offline(false);
    sync(&d).await;
    d.shutdown().await.unwrap();
    names.push("offline".into());
    let fresh = env.open_with("fresh").await;
    reads_back(&fresh, &names).await;
}

/// Another client of the owner collected while this one was closed; this
/// one then caught up online (past the log base) and closed: its next
/// open, offline, starts from what it mirrored then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_open_after_catching_up_with_a_collection() {
    let (env, fault, _) = setup().await;
    let d = env.open_with("laptop").await;
    let mut names = synced_files(&d, "f", 4).await;
    d.shutdown().await.unwrap();
    names.extend(another_writes_and_collects(&env).await);
    let d = env.open_with("laptop").await;
    reads_back(&d, &names).await;
    d.shutdown().await.unwrap();

    fault.set_offline(true);
    let d = open_result(&env, "laptop")
        .await
        .expect("opens offline after catching up with a collection");
    reads_back(&d, &names).await;
    d.abandon().await;
}

/// Client "desktop" commits enough files for checkpoints and collects
/// everything it can; returns the names it wrote.
async fn another_writes_and_collects(env: &Env) -> Vec<String> {
    let other = env.open_with("desktop").await;
    let names = synced_files(&other, "g", SNAPSHOT_EVERY as usize + 6).await;
    other.gc(&now_all(), &|_, _| {}).await.unwrap();
    other.shutdown().await.unwrap();
    names
}

/// This client stayed open while another collected, caught up on refresh
/// and then died (no clean shutdown): it opens offline from its mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_open_after_a_crash_behind_a_collection() {
    let (env, fault, _) = setup().await;
    let d = env.open_with("laptop").await;
    let mut names = synced_files(&d, "f", 4).await;
    names.extend(another_writes_and_collects(&env).await);
    d.refresh().await.unwrap();
    reads_back(&d, &names).await;
    d.abandon().await;

    fault.set_offline(true);
    let d = open_result(&env, "laptop")
        .await
        .expect("opens offline after a crash behind a collection");
    reads_back(&d, &names).await;
    d.abandon().await;
}
