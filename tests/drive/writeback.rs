//! Write-back: writes return before upload, fsync makes them durable in
//! the local journal, a crash (dropping the engine, or kill -9 of a real
//! process) loses nothing fsynced, a half-done upload never becomes a
//! committed version, and an unreachable store does not stop writes or
//! cached reads.

use crate::support::drive::*;
use cardfs::drive::*;
use std::sync::Arc;

async fn open_on(env: &Env, store: Arc<dyn cardfs::store::ObjectStore>, cache: &str) -> Drive {
    Drive::open_drive(store, env.id.clone(), env.opts(cache))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsynced_data_survives_crash_before_upload() {
    let env = Env::new().await;
    let flaky = faulty(env.store.clone());
    let d = open_on(&env, flaky.clone(), "cache").await;
    flaky.set_offline(true);
    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (a, fh) = d
        .create(ROOT_INO, os("kept"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    d.write(a.ino, fh, 0, &data).await.unwrap();
    // fsync covers every pending metadata change, not only this file's.
    d.mkdir(ROOT_INO, os("dir-before-fsync"), 0o755, WHO)
        .await
        .unwrap();
    d.fsync(a.ino, fh, false).await.unwrap();
    // Not fsynced: may be lost by the crash (and must not break anything).
    let (b, fhb) = d
        .create(ROOT_INO, os("maybe"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    d.write(b.ino, fhb, 0, b"unsynced").await.unwrap();
    assert!(d.status().pending_ops > 0);
    d.abandon().await;
    flaky.set_offline(false);
    // Nothing reached the store's log.
    let fresh = open_on(&env, env.store.clone(), "fresh").await;
    assert_eq!(names(&fresh, ROOT_INO).await, Vec::<String>::new());
    fresh.shutdown().await.unwrap();
    // Reopening with the same cache replays the journal and uploads.
    let d = open_on(&env, env.store.clone(), "cache").await;
    assert_eq!(read_all(&d, lookup(&d, "kept").await.unwrap()).await, data);
    assert!(lookup(&d, "dir-before-fsync").await.is_ok());
    sync(&d).await;
    d.shutdown().await.unwrap();
    let other = open_on(&env, env.store.clone(), "other").await;
    assert_eq!(
        read_all(&other, lookup(&other, "kept").await.unwrap()).await,
        data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_done_upload_is_never_a_committed_version() {
    let env = Env::new().await;
    let flaky = faulty(env.store.clone());
    let d = open_on(&env, flaky.clone(), "cache").await;
    let f = put(&d, ROOT_INO, "f", b"version one").await;
    sync(&d).await;
    // Content uploads succeed, the log commit does not.
    refuse_commits(&flaky);
    let fh = d.open(f, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(f, fh, 0, b"version two").await.unwrap();
    d.fsync(f, fh, false).await.unwrap();
    d.release(f, fh).await.unwrap();
    assert!(
        d.sync(&|_, _| {}).await.is_err(),
        "sync must report the failed commit"
    );
    let other = open_on(&env, env.store.clone(), "other").await;
    assert_eq!(read_all(&other, f).await, b"version one");
    other.shutdown().await.unwrap();
    d.abandon().await;
    flaky.update_config(|c| c.refuse_puts.clear());
    let d = open_on(&env, flaky.clone(), "cache").await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    let other = open_on(&env, env.store.clone(), "other2").await;
    assert_eq!(read_all(&other, f).await, b"version two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_keeps_writes_and_cached_reads_working() {
    let env = Env::new().await;
    let flaky = faulty(env.store.clone());
    let d = open_on(&env, flaky.clone(), "cache").await;
    let cached = put(&d, ROOT_INO, "cached", &vec![5u8; 2_000_000]).await;
    sync(&d).await;
    assert_eq!(read_all(&d, cached).await.len(), 2_000_000);
    flaky.set_offline(true);
    // Writes and namespace changes keep working.
    let dir = d
        .mkdir(ROOT_INO, os("offline"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let f = put(&d, dir, "new", b"written offline").await;
    assert_eq!(read_all(&d, f).await, b"written offline");
    // Cached content still reads.
    assert_eq!(read_all(&d, cached).await, vec![5u8; 2_000_000]);
    let err = d.sync(&|_, _| {}).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(!d.status().store_reachable);
    assert!(d.status().pending_ops > 0);
    // Back online: the pending changes go up.
    flaky.set_offline(false);
    sync(&d).await;
    let st = d.status();
    assert_eq!(
        (st.pending_ops, st.pending_bytes, st.store_reachable),
        (0, 0, true)
    );
    assert!(st.last_commit.is_some());
    d.shutdown().await.unwrap();
    let other = open_on(&env, env.store.clone(), "other").await;
    assert_eq!(
        read_all(&other, lookup(&other, "offline/new").await.unwrap()).await,
        b"written offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reports_progress_and_background_uploads() {
    let env = Env::new().await;
    let d = env.open().await;
    let f = put(&d, ROOT_INO, "f", &vec![1u8; 3_000_000]).await;
    let seen = std::sync::Mutex::new(Vec::new());
    d.sync(&|done, total| seen.lock().unwrap().push((done, total)))
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    let last = *seen.last().unwrap();
    assert_eq!(last.0, last.1, "{seen:?}");
    // The background committer uploads without an explicit sync.
    let g = put(&d, ROOT_INO, "g", b"background").await;
    for _ in 0..200 {
        if d.status().pending_ops == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(d.status().pending_ops, 0);
    let other = env.open_with("other").await;
    assert_eq!(read_all(&other, g).await, b"background");
    assert_eq!(read_all(&other, f).await.len(), 3_000_000);
}

#[tokio::test]
async fn cache_is_bounded_with_lru_eviction() {
    let env = Env::new().await;
    let mut opts = env.opts("small");
    opts.cache_size = 3 * 1024 * 1024;
    let d = Drive::open_drive(env.store.clone(), env.id.clone(), opts)
        .await
        .unwrap();
    let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 253) as u8).collect();
    let f = put(&d, ROOT_INO, "big", &data).await;
    sync(&d).await;
    assert!(
        d.cache_bytes() <= 3 * 1024 * 1024 + 100_000,
        "cache holds {}",
        d.cache_bytes()
    );
    // Everything still reads (evicted blocks come back from the store).
    assert_eq!(read_all(&d, f).await, data);
    assert!(d.cache_bytes() <= 3 * 1024 * 1024 + 100_000);
}

/// Bytes the files under `dir` take on disk.
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_usage(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

/// The bound holds for what the cache directory takes on disk: many small
/// objects each fill a whole block, and the metadata mirror counts too.
#[tokio::test]
async fn cache_bound_counts_disk_blocks_and_the_metadata_mirror() {
    let env = Env::new().await;
    let mut opts = env.opts("small-files");
    let dir = opts.cache_dir.clone();
    opts.cache_size = 1 << 20;
    let d = Drive::open_drive(env.store.clone(), env.id.clone(), opts)
        .await
        .unwrap();
    let mut files = Vec::new();
    for i in 0..600u32 {
        let body = vec![(i % 251) as u8; 700];
        files.push((put(&d, ROOT_INO, &format!("f{i}"), &body).await, body));
        if i % 100 == 99 {
            sync(&d).await;
        }
    }
    sync(&d).await;
    let used = disk_usage(&dir);
    // The journal, state and client files are not counted: a few blocks.
    assert!(
        used <= (1 << 20) + (64 << 10),
        "the cache directory takes {used} bytes on disk with a 1 MiB bound"
    );
    for (ino, body) in &files {
        assert_eq!(&read_all(&d, *ino).await, body);
    }
}

#[tokio::test]
async fn one_engine_per_cache_directory() {
    let env = Env::new().await;
    let d = env.open().await;
    let e = Drive::open_drive(env.store.clone(), env.id.clone(), env.opts("cache"))
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EBUSY, "{e}");
    d.shutdown().await.unwrap();
    env.open().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_writes_of_an_open_file_are_uploaded() {
    let env = Env::new().await;
    let d = env.open().await;
    let (a, fh) = d
        .create(ROOT_INO, os("open"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    d.write(a.ino, fh, 0, b"still open, never flushed")
        .await
        .unwrap();
    assert!(d.status().pending_bytes > 0);
    let mut uploaded = false;
    for _ in 0..600 {
        let st = d.status();
        if st.pending_ops == 0 && st.pending_bytes == 0 {
            uploaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(uploaded, "idle writes were never sealed and committed");
    let other = env.open_with("other").await;
    assert_eq!(read_all(&other, a.ino).await, b"still open, never flushed");
    d.release(a.ino, fh).await.unwrap();
}

/// The kernel sends the writes of one file concurrently (writeback of an
/// mmap'd file, say). A partial-block write that is still fetching the old
/// block while another write seals that block must not put the old bytes
/// back: the second write's data would be lost once the file is sealed
/// again (seen as an mmap write gone after remount).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_fetching_a_block_sealed_meanwhile_keeps_the_seal() {
    const HALF: usize = 512 << 10;
    let store = faulty(Arc::new(cardfs::store::MemoryStore::new()));
    let env = Env::with_store(store.clone()).await;
    let writer = env.open_with("writer").await;
    let ino = put(&writer, ROOT_INO, "f", &vec![b'o'; 2 * HALF]).await;
    writer.shutdown().await.unwrap();
    drop(writer);

    // A fresh cache: block 0 must come from the (gated) store.
    let d = env.open_with("cache").await;
    let fh = d.open(ino, libc::O_RDWR).await.unwrap();
    store.hold_next_get("c/");
    let first = {
        let d = d.clone();
        tokio::spawn(async move { d.write(ino, fh, 0, &[b'a'; HALF]).await })
    };
    store.wait_held().await;
    // The second half ends on the block boundary: this write seals block 0.
    d.write(ino, fh, HALF as u64, &[b'b'; HALF]).await.unwrap();
    store.release_held();
    assert_eq!(first.await.unwrap().unwrap() as usize, HALF);
    d.release(ino, fh).await.unwrap();

    let mut want = vec![b'a'; HALF];
    want.extend_from_slice(&[b'b'; HALF]);
    assert!(read_all(&d, ino).await == want, "write lost while mounted");
    d.shutdown().await.unwrap();
    drop(d);
    let again = env.open_with("again").await;
    assert!(
        read_all(&again, ino).await == want,
        "write lost after reopen"
    );
    again.shutdown().await.unwrap();
}

/// A sequential reader gets a window of blocks fetched ahead of it (their
/// GETs run together), so it does not wait on one store round trip per
/// block: after the first read, the next six blocks are local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_reads_fetch_a_window_ahead() {
    const MIB: usize = 1 << 20;
    let env = Env::new().await;
    let data: Vec<u8> = (0..10 * MIB as u32).map(|i| (i % 251) as u8).collect();
    let d = env.open_with("writer").await;
    put(&d, ROOT_INO, "big", &data).await;
    sync(&d).await;
    d.shutdown().await.unwrap();

    let flaky = faulty(env.store.clone());
    let r = open_on(&env, flaky.clone(), "reader").await;
    let ino = lookup(&r, "big").await.unwrap();
    let fh = r.open(ino, libc::O_RDONLY).await.unwrap();
    let first = r.read(ino, fh, 0, 128 << 10).await.unwrap();
    assert_eq!(first, data[..128 << 10]);
    // Wait for the read-ahead to land in the cache (blocks 0..=6).
    let mut waited = 0;
    while r.cache_bytes() < 7 * MIB as u64 {
        assert!(waited < 3000, "read-ahead never completed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    flaky.set_offline(true);
    let mut off = 128 << 10;
    while off < 7 * MIB {
        let want = (7 * MIB - off).min(MIB) as u32;
        let got = r.read(ino, fh, off as u64, want).await.unwrap();
        assert_eq!(got, data[off..off + got.len()], "at {off}");
        off += got.len();
    }
    // Block 7 was beyond the window: it needs the store.
    assert!(r.read(ino, fh, off as u64, 1 << 20).await.is_err());
    flaky.set_offline(false);
    r.release(ino, fh).await.unwrap();
    r.shutdown().await.unwrap();
}
