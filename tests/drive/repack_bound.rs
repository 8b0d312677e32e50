//! The repack policy bounds the drive's dead pack bytes, not each pack's:
//! packs at 60-90% live end within the bound (`pack_waste_percent` of the
//! live bytes) after a collection and the next one, a fully live pack is
//! never moved, with no waste allowed the store holds exactly the live
//! bytes, and a run moves at most `max_repack_moved` bytes for those packs
//! (the next run goes on). And a client that replays its journal after a
//! crash, with ops naming another client's objects, treats those as
//! foreign: a copy whose pack was collected meanwhile is refused (and
//! shows in `status`), one whose bytes it has is sealed again, and its own
//! later changes are kept.

use crate::packs::{content_objects, empty_cache_reads, write_offline};
use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;
use cardfs::format::content::sealed_len;
use cardfs::store::ObjectStore;

/// Bytes of the content objects in the store.
async fn content_bytes(store: &dyn ObjectStore) -> u64 {
    store
        .list_all("c/")
        .await
        .unwrap()
        .iter()
        .map(|m| m.size)
        .sum()
}

/// The end of every test here: the whole group's packs are still in the
/// store, and after shutdown the kept files read from an empty cache.
async fn whole_group_kept_and_files_read(
    env: &Env,
    d: Drive,
    kept: &[(String, Vec<u8>)],
    whole: &[String],
) {
    let left = content_objects(env.store.as_ref()).await;
    assert!(whole.iter().all(|o| left.contains(o)), "{whole:?} {left:?}");
    d.shutdown().await.unwrap();
    assert!(empty_cache_reads(env, kept).await > 0);
}

/// Files per group; every group is written offline (into packs of its
/// own) and committed before the next.
const GROUP: usize = 20;

/// Groups of 4 KiB files whose packs end 60, 70, 80 and 90% live (every
/// k-th file of a group deleted, spread through it), then a group left
/// whole. Returns the drive, the files kept, and the pack objects of the
/// whole group.
async fn mostly_live_packs(env: &Env) -> (Drive, Vec<(String, Vec<u8>)>, Vec<String>) {
    packs_with_deleted(env, &[&[1, 4, 6, 9], &[2, 5, 8], &[3, 7], &[5], &[]]).await
}

/// Groups of [`GROUP`] 4 KiB files, each written offline and committed
/// (a group is one pack, or a few runs of its files when commit attempts
/// closed the open pack meanwhile), then in group `g` the files whose index modulo ten is in
/// `deleted[g]` deleted. Returns the drive, the files kept, and the pack
/// objects of the (last) group that deletes nothing.
async fn packs_with_deleted(
    env: &Env,
    deleted: &[&[usize]],
) -> (Drive, Vec<(String, Vec<u8>)>, Vec<String>) {
    let (store, d) = env.open_faulty("cache").await;
    let mut kept = Vec::new();
    let mut whole = Vec::new();
    for (g, del) in deleted.iter().enumerate() {
        let before = content_objects(env.store.as_ref()).await;
        let files: Vec<(String, Vec<u8>)> = (0..GROUP)
            .map(|i| {
                let name = format!("g{g}-{i:02}");
                (name, pattern(4096, (g * 100 + i) as u64))
            })
            .collect();
        write_offline(&d, &store, &files).await;
        sync(&d).await;
        if del.is_empty() {
            whole = (content_objects(env.store.as_ref()).await.into_iter())
                .filter(|o| !before.contains(o))
                .collect();
        }
        for (i, f) in files.into_iter().enumerate() {
            if del.contains(&(i % 10)) {
                d.unlink(ROOT_INO, os(&f.0)).await.unwrap();
            } else {
                kept.push(f);
            }
        }
        sync(&d).await;
    }
    assert!(!whole.is_empty());
    (d, kept, whole)
}

fn gc_with(waste: u64) -> GcOptions {
    GcOptions {
        pack_waste_percent: waste,
        ..now_all()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_sixty_to_ninety_percent_live_end_within_the_bound_after_gc_and_gc() {
    let env = Env::new().await;
    let (d, kept, whole) = mostly_live_packs(&env).await;
    let live = kept.len() as u64 * sealed_len(4096) as u64;
    let before = content_bytes(env.store.as_ref()).await;
    // 20 of 100 files deleted: the dead bytes are a quarter of the live
    // ones, and no pack is under half live.
    assert!(4 * (before - live) >= live, "{before} for {live} live");
    let old_rule = d.gc(&gc_with(1000), &|_, _| {}).await.unwrap();
    assert_eq!(old_rule.repacked_packs, 0, "{old_rule:?}");
    let first = d.gc(&gc_with(10), &|_, _| {}).await.unwrap();
    assert!(first.repacked_packs >= 1, "{first:?}");
    // A checkpoint follows the relocation: the log base moved past it, and
    // only the head entry (the checkpoint's) is left.
    let vol = volume(env.store.as_ref()).await;
    let roots = seqs(env.store.as_ref(), &vol, "s").await;
    assert_eq!(
        seqs(env.store.as_ref(), &vol, "l").await,
        roots,
        "{roots:?}"
    );
    // The whole group's bytes never move: at most the other groups' live.
    let whole_live = GROUP as u64 * sealed_len(4096) as u64;
    assert!(first.repacked_bytes <= live - whole_live, "{first:?}");
    let second = d.gc(&gc_with(10), &|_, _| {}).await.unwrap();
    assert_eq!(second.reclaimed_objects, first.repacked_packs, "{second:?}");
    assert_eq!(second.repacked_packs, 0, "{second:?}");
    let after = content_bytes(env.store.as_ref()).await;
    assert!(
        after >= live && (after - live) * 10 <= live,
        "{after} bytes in the store for {live} live (was {before})"
    );
    whole_group_kept_and_files_read(&env, d, &kept, &whole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_waste_allowed_the_store_keeps_exactly_the_live_bytes() {
    let env = Env::new().await;
    let (d, kept, whole) = mostly_live_packs(&env).await;
    let live = kept.len() as u64 * sealed_len(4096) as u64;
    let dry = GcOptions {
        dry_run: true,
        ..gc_with(0)
    };
    let would = d.gc(&dry, &|_, _| {}).await.unwrap();
    let first = d.gc(&gc_with(0), &|_, _| {}).await.unwrap();
    assert_eq!(
        (would.repacked_packs, would.repacked_bytes),
        (first.repacked_packs, first.repacked_bytes)
    );
    d.gc(&gc_with(0), &|_, _| {}).await.unwrap();
    assert_eq!(content_bytes(env.store.as_ref()).await, live);
    whole_group_kept_and_files_read(&env, d, &kept, &whole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_one_collection_moves_are_capped_and_the_next_one_goes_on() {
    let env = Env::new().await;
    // Three groups 80% live (files 2 and 7 of every ten deleted: a pack
    // holding part of a group is still at least half live, so every move
    // counts against the cap). A group is one pack unless commit attempts
    // closed its open pack meanwhile (more likely on a loaded machine);
    // a run of up to four files between deleted ones can then be a pack
    // of its own, fully live, which is never moved.
    let (d, kept, whole) = packs_with_deleted(&env, &[&[2, 7], &[2, 7], &[2, 7], &[]]).await;
    let sealed = sealed_len(4096) as u64;
    let live = kept.len() as u64 * sealed;
    let packs = content_objects(env.store.as_ref()).await.len();
    // With no waste allowed, uncapped, one run would move the three
    // groups' live files (48) but for those in fully live packs.
    let dry = GcOptions {
        dry_run: true,
        ..gc_with(0)
    };
    let would = d.gc(&dry, &|_, _| {}).await.unwrap();
    let cap = 16 * sealed;
    assert!(
        would.repacked_bytes <= 48 * sealed && would.repacked_bytes > cap,
        "{would:?}"
    );
    // Capped at one group's live bytes, each run moves at most that, and
    // the next goes on (deleting the packs the previous one emptied).
    let capped = GcOptions {
        max_repack_moved: cap,
        ..gc_with(0)
    };
    let (mut moved, mut runs) = (0, 0);
    loop {
        let r = d.gc(&capped, &|_, _| {}).await.unwrap();
        assert!(r.repacked_bytes <= cap, "run {runs}: {r:?}");
        if runs > 0 {
            assert!(r.reclaimed_objects >= 1, "run {runs}: {r:?}");
        }
        runs += 1;
        if r.repacked_packs == 0 {
            break;
        }
        moved += r.repacked_bytes;
        // Every run moves at least one pack (none holds more live bytes
        // than the cap).
        assert!(runs <= packs, "{r:?}");
    }
    assert_eq!(moved, would.repacked_bytes);
    let moving = would.repacked_bytes.div_ceil(cap) as usize;
    assert!(
        moving >= 2 && runs > moving,
        "{runs} runs: at least {moving} that move, then one that deletes"
    );
    assert_eq!(content_bytes(env.store.as_ref()).await, live);
    whole_group_kept_and_files_read(&env, d, &kept, &whole).await;
}

/// Writes `name` with `data` amid ten 4 KiB files, offline (into one pack
/// or a few), commits, deletes the ten and commits: the pack holding
/// `name` is mostly dead.
async fn in_a_mostly_dead_pack(
    d: &Drive,
    store: &cardfs::store::FaultStore,
    name: &str,
    data: &[u8],
) {
    let mut files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("{name}-x{i}"), vec![i as u8; 4096]))
        .collect();
    files.insert(5, (name.to_string(), data.to_vec()));
    write_offline(d, store, &files).await;
    sync(d).await;
    for i in 0..10 {
        d.unlink(ROOT_INO, os(&format!("{name}-x{i}")))
            .await
            .unwrap();
    }
    sync(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_journal_treats_another_clients_objects_as_foreign() {
    let env = Env::new().await;
    let (a_store, a) = env.open_faulty("cache").await;
    let (da, db) = (pattern(4096, 1), pattern(4096, 2));
    in_a_mostly_dead_pack(&a, &a_store, "a", &da).await;
    in_a_mostly_dead_pack(&a, &a_store, "b", &db).await;
    // B reads "b" (its pack comes whole into B's cache), not "a"; clone-
    // copies both, writes a file of its own, and crashes before any of it
    // is committed.
    let (b_store, b) = env.open_faulty("b").await;
    assert_eq!(read_all(&b, lookup(&b, "b").await.unwrap()).await, db);
    refuse_commits(&b_store);
    clone_copy(&b, "a", "copy-a").await;
    clone_copy(&b, "b", "copy-b").await;
    let mine = pattern(6000, 3);
    put(&b, ROOT_INO, "mine", &mine).await;
    upload_uncommitted(&b).await;
    b.abandon().await;
    // A repacks "a" and "b" and deletes their old packs.
    repack_then_delete(&a, 2).await;
    // B reopens and replays its journal. Its own file is kept (a foreign
    // object gone does not end the replayed prefix); "copy-b" is sealed
    // again from B's cache; "copy-a" names bytes gone from B's cache and
    // the store: refused, and `status` says so.
    let b = env.open_with("b").await;
    sync(&b).await;
    let s = b.status();
    assert_eq!(s.refused_changes, 1, "{s:?}");
    let (_, why) = s.last_refused.expect("the last refusal");
    assert!(why.contains("copy-a"), "{why}");
    b.shutdown().await.unwrap();
    let fresh = env.open_with("fresh").await;
    for (name, data) in [("a", &da), ("b", &db), ("copy-b", &db), ("mine", &mine)] {
        let ino = lookup(&fresh, name).await.unwrap();
        assert_eq!(&read_all(&fresh, ino).await, data, "{name}");
    }
    let copy = lookup(&fresh, "copy-a").await.unwrap();
    assert!(read_all(&fresh, copy).await.is_empty());
    fresh.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}
