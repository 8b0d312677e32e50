//! Repacking mostly dead packs (the owner's collector): the store shrinks
//! to about the live bytes once most small files are deleted, every file
//! left reads back from an empty cache; a second client holding the old
//! refs neither reads EIO nor commits refs to the deleted pack; a crash
//! between the re-seal and the commit loses nothing.

use crate::packs::{content_objects, empty_cache_reads, files, write_offline};
use crate::support::drive::*;
use cardfs::drive::*;
use cardfs::format::content::sealed_len;
use cardfs::store::ObjectStore;
use std::time::Duration;

/// Content objects in the store and their bytes.
async fn content_bytes(store: &dyn ObjectStore) -> (usize, u64) {
    let listed = store.list_all("c/").await.unwrap();
    (listed.len(), listed.iter().map(|m| m.size).sum())
}

/// Every file of `files` reads back its content from `d`.
async fn reads_back(d: &Drive, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let ino = lookup(d, name).await.unwrap();
        assert_eq!(&read_all(d, ino).await, data, "{name}");
    }
}

/// 200 files of 4 KiB written into a few packs by the owner's client on a
/// fault wrapper, then every file whose index is not a multiple of 10
/// deleted and committed. Returns the drive, its wrapper, the files kept.
async fn mostly_deleted(
    env: &Env,
) -> (
    Drive,
    std::sync::Arc<cardfs::store::FaultStore>,
    Vec<(String, Vec<u8>)>,
) {
    let (store, d) = env.open_faulty("cache").await;
    let written = files(200);
    write_offline(&d, &store, &written).await;
    sync(&d).await;
    let mut kept = Vec::new();
    for (i, (name, data)) in written.into_iter().enumerate() {
        if i % 10 == 0 {
            kept.push((name, data));
        } else {
            d.unlink(ROOT_INO, os(&name)).await.unwrap();
        }
    }
    sync(&d).await;
    (d, store, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_most_small_files_shrinks_the_store_to_the_live_bytes() {
    let env = Env::new().await;
    let (d, _store, kept) = mostly_deleted(&env).await;
    let packs = content_objects(env.store.as_ref()).await;
    let (_, before) = content_bytes(env.store.as_ref()).await;
    let live = kept.len() as u64 * sealed_len(4096) as u64;
    // A pack holding a kept file is a tenth live: repacked, not deleted yet
    // (the current tree names it). A pack holding only deleted files (a
    // loaded machine may cut the burst into small packs) goes at once.
    let first = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(first.repacked_packs > 0, "{first:?}");
    assert_eq!(
        (first.repacked_packs + first.reclaimed_objects) as usize,
        packs.len(),
        "{first:?}"
    );
    assert_eq!(first.repacked_bytes, live, "{first:?}");
    // The next collection finds the repacked packs unnamed and deletes them.
    let second = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert_eq!(second.reclaimed_objects, first.repacked_packs, "{second:?}");
    assert_eq!(second.repacked_packs, 0, "{second:?}");
    let left = content_objects(env.store.as_ref()).await;
    assert!(
        left.iter().all(|o| !packs.contains(o)),
        "{left:?} {packs:?}"
    );
    let (_, after) = content_bytes(env.store.as_ref()).await;
    assert!(
        after <= live + (64 << 10),
        "{after} bytes in the store for {live} live bytes (was {before})"
    );
    assert!(before > 5 * after, "{before} -> {after}");
    // Every file left reads back after a reopen from an empty cache.
    d.shutdown().await.unwrap();
    assert!(empty_cache_reads(&env, &kept).await > 0);
    let d = env.open().await;
    reads_back(&d, &kept).await;
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_the_packs_it_would_repack_and_moves_nothing() {
    let env = Env::new().await;
    let (d, _store, kept) = mostly_deleted(&env).await;
    let packs = content_objects(env.store.as_ref()).await;
    let opts = GcOptions {
        dry_run: true,
        ..now_all()
    };
    let r = d.gc(&opts, &|_, _| {}).await.unwrap();
    // Each pack is either repacked (it holds a kept file) or, holding only
    // deleted files, deleted.
    assert!(r.repacked_packs > 0, "{r:?}");
    assert_eq!(
        (r.repacked_packs + r.reclaimed_objects) as usize,
        packs.len(),
        "{r:?}"
    );
    assert_eq!(
        r.repacked_bytes,
        kept.len() as u64 * sealed_len(4096) as u64
    );
    assert_eq!(content_objects(env.store.as_ref()).await, packs);
    // With an hour of history, the deleted files' versions are live (they
    // are in the window): the packs are not mostly dead, nothing moves.
    let keep = GcOptions {
        keep: Duration::from_secs(3600),
        ..now_all()
    };
    let r = d.gc(&keep, &|_, _| {}).await.unwrap();
    assert_eq!((r.repacked_packs, r.reclaimed_objects), (0, 0), "{r:?}");
    assert_eq!(content_objects(env.store.as_ref()).await, packs);
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_refs_into_a_repacked_pack_never_reads_eio() {
    let env = Env::new().await;
    let (a, _a_store, kept) = mostly_deleted(&env).await;
    // B opens before the repack: its view names the old packs. It reads
    // the first file (its pack comes whole into B's cache), then makes
    // clone copies of two files, committed only later (log puts refused).
    let (b_store, b) = env.open_faulty("b").await;
    let src0 = lookup(&b, &kept[0].0).await.unwrap();
    assert_eq!(read_all(&b, src0).await, kept[0].1);
    refuse_commits(&b_store);
    for (name, _) in &kept[..2] {
        clone_copy(&b, name, &format!("copy-{name}")).await;
    }
    upload_uncommitted(&b).await;
    // A repacks and deletes the old packs (no grace, no history).
    let r = a.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(r.repacked_packs > 0, "{r:?}");
    let r = a.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(r.reclaimed_objects > 0, "{r:?}");
    // B reads every live file through its stale view: no EIO (a read that
    // finds the old pack gone retries on the refs the log has now).
    reads_back(&b, &kept).await;
    // B commits its copies: each is readable, or refused (left empty),
    // never a committed ref to a deleted pack.
    b_store.update_config(|c| c.refuse_puts.clear());
    sync(&b).await;
    b.shutdown().await.unwrap();
    let fresh = env.open_with("fresh").await;
    for (i, (name, data)) in kept[..2].iter().enumerate() {
        let ino = lookup(&fresh, &format!("copy-{name}")).await.unwrap();
        let got = read_all(&fresh, ino).await;
        if i == 0 {
            // Its pack was in B's cache: sealed again, committed.
            assert_eq!(&got, data, "copy of {name}");
        } else {
            assert!(
                got == *data || got.is_empty(),
                "copy of {name}: {} bytes",
                got.len()
            );
        }
    }
    reads_back(&fresh, &kept).await;
    fresh.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_reseal_and_its_commit_loses_nothing() {
    let env = Env::new().await;
    let (d, store, kept) = mostly_deleted(&env).await;
    let packs = content_objects(env.store.as_ref()).await;
    // The repack seals the live block versions again and queues the
    // relocation ops, but their log entry cannot be written: the
    // collection ends with them queued (a refused put is transient), and
    // the process dies there.
    refuse_commits(&store);
    let first = tokio::time::timeout(Duration::from_secs(3), d.gc(&now_all(), &|_, _| {}))
        .await
        .expect("gc returns")
        .unwrap();
    assert!(first.repacked_packs > 0, "{first:?}");
    assert!(
        d.status().pending_ops > 0,
        "the relocation is queued, not committed"
    );
    d.abandon().await;
    // The repacked packs stay (only a pack holding no kept file, if the
    // burst was cut into such, went before the repack).
    let left = content_objects(env.store.as_ref()).await;
    assert_eq!(
        packs.iter().filter(|p| left.contains(p)).count() as u64,
        packs.len() as u64 - first.reclaimed_objects,
        "the old packs stay"
    );
    assert_eq!(
        first.repacked_packs + first.reclaimed_objects,
        packs.len() as u64
    );
    // A fresh client sees every file in the old packs.
    assert!(empty_cache_reads(&env, &kept).await > 0);
    // Reopened: the journalled relocation commits, and the next collection
    // deletes the old packs; nothing is lost.
    let d = env.open().await;
    sync(&d).await;
    let r = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(r.reclaimed_objects >= first.repacked_packs, "{r:?}");
    let left = content_objects(env.store.as_ref()).await;
    assert!(left.iter().all(|o| !packs.contains(o)), "{left:?}");
    d.shutdown().await.unwrap();
    let fresh = env.open_with("fresh").await;
    reads_back(&fresh, &kept).await;
    fresh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_naming_a_collected_pack_is_refused_not_committed() {
    let env = Env::new().await;
    let a = env.open().await;
    // "a" shares its pack with files written right after it (one burst,
    // one pack) and deleted later.
    let data = crate::support::pattern(4096, 7);
    put(&a, ROOT_INO, "a", &data).await;
    for i in 0..10 {
        put(&a, ROOT_INO, &format!("x{i}"), &[i as u8; 4096]).await;
    }
    sync(&a).await;
    for i in 0..10 {
        a.unlink(ROOT_INO, os(&format!("x{i}"))).await.unwrap();
    }
    sync(&a).await;
    // B, nothing cached, makes a clone copy of "a" (no read: the copy
    // names the pack) and cannot commit it yet.
    let (b_store, b) = env.open_faulty("b").await;
    refuse_commits(&b_store);
    clone_copy(&b, "a", "copy").await;
    upload_uncommitted(&b).await;
    // A repacks "a" and deletes the old pack.
    repack_then_delete(&a, 1).await;
    // B's commit goes through without the copy's content (its bytes are
    // gone from B's cache and the store): "copy" stays empty, "a" reads.
    b_store.update_config(|c| c.refuse_puts.clear());
    sync(&b).await;
    assert_eq!(read_all(&b, lookup(&b, "a").await.unwrap()).await, data);
    b.shutdown().await.unwrap();
    let fresh = env.open_with("fresh").await;
    let copy = lookup(&fresh, "copy").await.unwrap();
    assert!(read_all(&fresh, copy).await.is_empty());
    reads_back(&fresh, &[("a".to_string(), data)]).await;
    fresh.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}
