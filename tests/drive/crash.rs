//! Crash tests with a real process: a child process writes through the
//! engine to a local-directory store, fsyncs, and is killed with SIGKILL
//! (before its uploads, or while they run). Reopening with the same cache
//! directory must find every fsynced byte.

use crate::support::drive::crash::{self, child_arg, new_drive, open_in_child, quiet_opts};
use crate::support::drive::*;
use cardfs::drive::*;
use cardfs::store::ObjectStore;
use std::path::Path;
use std::sync::Arc;

const CHILD_ENV: &str = "CARDFS_TEST_CRASH_CHILD";

fn content(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// Runs the child role, then kills it with SIGKILL once it says READY.
fn run_child_and_kill(dir: &Path, mode: &str) {
    crash::run_child_and_kill(
        &crate::support::test_name(module_path!(), "crash_child_entry"),
        CHILD_ENV,
        &child_arg(dir, mode),
    );
}

async fn reopen_and_check(dir: &Path, store: Arc<dyn ObjectStore>, id: &Identity, len: usize) {
    let d = Drive::open_drive(store.clone(), id.clone(), quiet_opts(dir.join("cache")))
        .await
        .unwrap();
    let ino = lookup(&d, "dir/fsynced").await.unwrap();
    let got = read_all(&d, ino).await;
    assert!(
        got.len() >= len,
        "fsynced bytes lost: {} < {len}",
        got.len()
    );
    assert!(got[..len] == content(len), "fsynced bytes differ");
    // The write after fsync either survived whole or not at all.
    assert!(got.len() == len || &got[len..] == b"\0\0\0\0\0\0\0\0\0\0not fsynced");
    sync(&d).await;
    d.shutdown().await.unwrap();
    // And a client with an empty cache sees it in the store.
    let other = Drive::open_drive(store, id.clone(), quiet_opts(dir.join("other-cache")))
        .await
        .unwrap();
    let again = read_all(&other, lookup(&other, "dir/fsynced").await.unwrap()).await;
    assert!(again == got, "a new client sees different bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_write_and_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = new_drive(dir.path()).await;
    run_child_and_kill(dir.path(), "offline");
    reopen_and_check(dir.path(), store, &id, 3_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = new_drive(dir.path()).await;
    run_child_and_kill(dir.path(), "online");
    reopen_and_check(dir.path(), store, &id, 48_000_000).await;
}

/// The child process of the crash tests (does nothing unless started by
/// them): writes, fsyncs, prints CHILD-READY and keeps running until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the crash tests' child process"]
async fn crash_child_entry() {
    let Some((dir, mode)) = crash::child_role(CHILD_ENV) else {
        return;
    };
    let (d, flaky) = open_in_child(&dir, "cache").await;
    let len = if mode == "offline" {
        flaky.set_offline(true);
        3_000_000
    } else {
        48_000_000
    };
    let sub = d.mkdir(ROOT_INO, os("dir"), 0o755, WHO).await.unwrap().ino;
    let (a, fh) = d
        .create(sub, os("fsynced"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    let data = content(len);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        d.write(a.ino, fh, (i << 20) as u64, chunk).await.unwrap();
    }
    d.fsync(a.ino, fh, false).await.unwrap();
    // Unsynced extra data after the fsync; may or may not survive.
    d.write(a.ino, fh, len as u64 + 10, b"not fsynced")
        .await
        .unwrap();
    crash::ready();
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
}
