//! Garbage collection of content objects (engine level, MemoryStore):
//! what goes, what the retention window and the grace period keep, a
//! collection cut off half-way, two clients, and revocation completed by
//! re-encryption plus collection.

use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;
use cardfs::store::ObjectStore;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

async fn gc(d: &Drive, opts: &GcOptions) -> GcReport {
    d.gc(opts, &|_, _| {}).await.unwrap()
}

/// Content object names and their total bytes.
async fn content(store: &dyn ObjectStore) -> (BTreeSet<String>, u64) {
    let all = store.list_all("c/").await.unwrap();
    let bytes = all.iter().map(|o| o.size).sum();
    (all.into_iter().map(|o| o.key).collect(), bytes)
}

/// Writes `data` as the whole new content of `ino`.
async fn overwrite(d: &Drive, ino: Ino, data: &[u8]) {
    let fh = d.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    let zero = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    d.setattr(ino, Some(fh), zero).await.unwrap();
    d.write(ino, fh, 0, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

/// Opens the drive again on an empty cache and checks `files` read back.
async fn reopen_reads(env: &Env, cache: &str, files: &[(&str, &[u8])]) {
    let d = env.open_with(cache).await;
    for (name, data) in files {
        let ino = lookup(&d, name).await.unwrap();
        assert_eq!(&read_all(&d, ino).await, data, "{name}");
    }
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwritten_and_deleted_content_goes_and_live_content_stays() {
    let env = Env::new().await;
    let d = env.open().await;
    let keep = pattern((3 << 20) + 17, 1);
    put(&d, ROOT_INO, "keep", &keep).await;
    sync(&d).await;
    let (live, live_bytes) = content(env.store.as_ref()).await;
    assert_eq!(live.len(), 4);
    let f = put(&d, ROOT_INO, "f", &pattern(2 << 20, 2)).await;
    sync(&d).await;
    for i in 3..7 {
        overwrite(&d, f, &pattern(2 << 20, i)).await;
        sync(&d).await;
    }
    d.unlink(ROOT_INO, os("f")).await.unwrap();
    sync(&d).await;
    let (before, before_bytes) = content(env.store.as_ref()).await;
    assert_eq!(before.len(), 4 + 5 * 2);

    // The default window keeps every version written in the last 7 days.
    let r = gc(
        &d,
        &GcOptions {
            grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.reclaimed_objects, 0);
    assert_eq!(content(env.store.as_ref()).await.0, before);
    // A dry run deletes nothing but counts what would go.
    let r = gc(
        &d,
        &GcOptions {
            dry_run: true,
            ..now_all()
        },
    )
    .await;
    assert_eq!(
        (r.reclaimed_objects, r.reclaimed_bytes),
        (10, before_bytes - live_bytes)
    );
    assert_eq!(content(env.store.as_ref()).await.0, before);

    let r = gc(&d, &now_all()).await;
    assert_eq!(r.objects, 14);
    assert_eq!((r.live_objects, r.live_bytes), (4, live_bytes));
    assert_eq!(
        (r.reclaimed_objects, r.reclaimed_bytes),
        (10, before_bytes - live_bytes)
    );
    assert_eq!(content(env.store.as_ref()).await, (live, live_bytes));
    // Nothing more to collect.
    assert_eq!(gc(&d, &now_all()).await.reclaimed_objects, 0);
    d.shutdown().await.unwrap();
    reopen_reads(&env, "fresh", &[("keep", &keep)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_keeps_young_garbage() {
    let env = Env::new().await;
    let d = env.open().await;
    let f = put(&d, ROOT_INO, "f", b"first version").await;
    sync(&d).await;
    overwrite(&d, f, b"second version").await;
    sync(&d).await;
    let before = content(env.store.as_ref()).await;
    let r = gc(
        &d,
        &GcOptions {
            grace: HOUR,
            keep: Duration::ZERO,
            dry_run: false,
        },
    )
    .await;
    assert_eq!((r.young_objects, r.reclaimed_objects), (1, 0));
    assert_eq!(content(env.store.as_ref()).await, before);
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_unsealed_content_is_never_collected() {
    let env = Env::new().await;
    let (store, d) = env.open_faulty("cache").await;
    let old = put(&d, ROOT_INO, "old", b"committed").await;
    sync(&d).await;
    // Content uploaded, its log entry refused: pending in this engine.
    refuse_commits(&store);
    overwrite(&d, old, &pattern(1 << 20, 9)).await;
    upload_uncommitted(&d).await;
    let uploaded = content(env.store.as_ref()).await.0;
    assert_eq!(
        uploaded.len(),
        2,
        "the new block is in the store, uncommitted"
    );
    let r = gc(&d, &now_all()).await;
    assert_eq!(r.live_objects, 2);
    assert_eq!(content(env.store.as_ref()).await.0, uploaded);
    store.update_config(|c| c.refuse_puts.clear());
    sync(&d).await;
    let r = gc(&d, &now_all()).await;
    assert_eq!(
        r.reclaimed_objects, 1,
        "the committed version replaced the old one"
    );
    d.shutdown().await.unwrap();
    reopen_reads(&env, "fresh", &[("old", &pattern(1 << 20, 9))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_uncommitted_upload_survives_a_collection() {
    let env = Env::new().await;
    let a = env.open_with("a").await;
    put(&a, ROOT_INO, "a", b"from a").await;
    sync(&a).await;
    // Client B uploads content whose log entry cannot be written yet.
    let (b_store, b) = env.open_faulty("b").await;
    refuse_commits(&b_store);
    let data = pattern((1 << 20) + 5, 4);
    put(&b, ROOT_INO, "b", &data).await;
    upload_uncommitted(&b).await;
    assert_eq!(content(env.store.as_ref()).await.0.len(), 3);
    // A collects with the default grace: B's young upload stays.
    let r = gc(
        &a,
        &GcOptions {
            keep: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (r.live_objects, r.young_objects, r.reclaimed_objects),
        (1, 2, 0)
    );
    b_store.update_config(|c| c.refuse_puts.clear());
    sync(&b).await;
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    reopen_reads(&env, "fresh", &[("a", b"from a"), ("b", &data)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_cut_off_half_way_loses_nothing_live() {
    let env = Env::new().await;
    let cut = Arc::new(DeletesCut {
        inner: env.store.clone(),
        left: AtomicI64::new(i64::MAX),
    });
    let d = Drive::open_drive(cut.clone(), env.id.clone(), env.opts("cache"))
        .await
        .unwrap();
    let keep = pattern((2 << 20) + 3, 7);
    put(&d, ROOT_INO, "keep", &keep).await;
    let f = put(&d, ROOT_INO, "f", &pattern(4 << 20, 1)).await;
    sync(&d).await;
    overwrite(&d, f, b"small").await;
    sync(&d).await;
    cut.left.store(2, Ordering::SeqCst);
    assert!(d.gc(&now_all(), &|_, _| {}).await.is_err());
    assert_eq!(content(env.store.as_ref()).await.0.len(), 3 + 1 + 2);
    d.abandon().await;
    reopen_reads(&env, "after-cut", &[("keep", &keep), ("f", b"small")]).await;
    // The next collection finishes the job.
    cut.left.store(i64::MAX, Ordering::SeqCst);
    let d = Drive::open_drive(cut.clone(), env.id.clone(), env.opts("cache"))
        .await
        .unwrap();
    assert_eq!(gc(&d, &now_all()).await.reclaimed_objects, 2);
    assert_eq!(content(env.store.as_ref()).await.0.len(), 4);
    d.shutdown().await.unwrap();
    reopen_reads(&env, "fresh", &[("keep", &keep), ("f", b"small")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencryption_and_collection_leave_no_object_of_the_old_generation() {
    let env = Env::new().await;
    let d = env.open().await;
    let dir = d
        .mkdir(ROOT_INO, os("shared"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let data = pattern((2 << 20) + 99, 3);
    put(&d, dir, "doc", &data).await;
    sync(&d).await;
    let (bob, carol) = (Identity::generate(), Identity::generate());
    let info = d.share_add(dir, bob.member(Role::Reader)).await.unwrap();
    d.share_add(info.ino, carol.member(Role::Reader))
        .await
        .unwrap();
    sync(&d).await;
    let old = content(env.store.as_ref()).await.0;
    d.share_remove(info.ino, &bob.card_id).await.unwrap();
    d.share_reencrypt(info.ino, &|_, _| {}).await.unwrap();
    sync(&d).await;
    gc(&d, &now_all()).await;
    let now = content(env.store.as_ref()).await.0;
    assert_eq!(now.len(), 3);
    assert!(
        now.is_disjoint(&old),
        "an object of the old generation is left"
    );
    d.shutdown().await.unwrap();
    reopen_reads(&env, "fresh", &[("shared/doc", &data)]).await;
}

/// A drive on `store` whose clock runs `ahead` seconds fast (settable).
async fn open_with_clock(
    env: &Env,
    store: Arc<dyn ObjectStore>,
    cache: &str,
    ahead: Arc<AtomicI64>,
) -> Drive {
    let mut opts = env.opts(cache);
    opts.clock = Clock::from_fn(move || {
        std::time::SystemTime::now() + Duration::from_secs(ahead.load(Ordering::SeqCst) as u64)
    });
    Drive::open_drive(store, env.id.clone(), opts)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_content_older_than_half_the_grace_is_sealed_again_before_commit() {
    let env = Env::new().await;
    let store = faulty(env.store.clone());
    let ahead = Arc::new(AtomicI64::new(0));
    let d = open_with_clock(&env, store.clone(), "cache", ahead.clone()).await;
    // Uploaded, not committed (the log is out of reach).
    refuse_commits(&store);
    let data = pattern((1 << 20) + 77, 5);
    put(&d, ROOT_INO, "late", &data).await;
    upload_uncommitted(&d).await;
    let first = content(env.store.as_ref()).await.0;
    assert_eq!(first.len(), 2);
    // The client comes back after more than half the grace (1 h).
    ahead.store(31 * 60, Ordering::SeqCst);
    store.update_config(|c| c.refuse_puts.clear());
    sync(&d).await;
    let after = content(env.store.as_ref()).await.0;
    assert!(after.is_superset(&first));
    assert_eq!(
        after.len(),
        2 + 2,
        "both old objects sealed again under new ids"
    );
    // What the log names are the new objects: the first ones are garbage.
    let r = gc(&d, &now_all()).await;
    assert_eq!(r.reclaimed_objects, 2);
    assert!(content(env.store.as_ref()).await.0.is_disjoint(&first));
    d.shutdown().await.unwrap();
    reopen_reads(&env, "fresh", &[("late", &data)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_content_younger_than_half_the_grace_is_committed_as_it_is() {
    let env = Env::new().await;
    let store = faulty(env.store.clone());
    let ahead = Arc::new(AtomicI64::new(0));
    let d = open_with_clock(&env, store.clone(), "cache", ahead.clone()).await;
    refuse_commits(&store);
    put(&d, ROOT_INO, "f", &pattern(1 << 20, 6)).await;
    upload_uncommitted(&d).await;
    let first = content(env.store.as_ref()).await.0;
    ahead.store(29 * 60, Ordering::SeqCst);
    store.update_config(|c| c.refuse_puts.clear());
    sync(&d).await;
    assert_eq!(content(env.store.as_ref()).await.0, first);
    assert_eq!(gc(&d, &now_all()).await.reclaimed_objects, 0);
    d.shutdown().await.unwrap();
}
