//! Checkpoint writes follow the change, not the drive (issue 17): the new
//! nodes of a burst share few pages (`IdCursor`), so the checkpoint after
//! a burst of n creates writes about n / `IDS_PER_STEP` pages plus a few;
//! one small change after a reopen, on the same cache or an empty one,
//! writes O(1) pages at its checkpoint, even when the log tail replayed at
//! open was a burst; and pages stay balanced after creates spread over many
//! directories. Page objects are named by the hash of bytes sealed under a
//! fresh nonce, so every page put is a new name under `v/<vol>/p/`:
//! counting new names counts page puts.

use super::tamper_pages::{commits_to_a_checkpoint, named_pages, newest_root, under};
use crate::support::drive::*;
use cardfs::drive::*;
use std::collections::BTreeSet;

/// Page objects in the store.
async fn pages(env: &Env) -> BTreeSet<String> {
    under(env.store.as_ref(), "p").await.into_iter().collect()
}

/// Directory `d0` holding `n` files, `f0`.. (one commit), then a
/// checkpoint: a drive with `buckets` page buckets or more.
async fn drive_of(n: usize, min_buckets: usize) -> Env {
    let env = Env::new().await;
    let d = env.open().await;
    let dir = d.mkdir(ROOT_INO, os("d0"), 0o755, WHO).await.unwrap().ino;
    for i in 0..n {
        put(&d, dir, &format!("f{i}"), b"").await;
    }
    sync(&d).await;
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let (_, _, root, _) = newest_root(&env).await;
    assert!(
        root.pages.len() >= min_buckets,
        "{} buckets",
        root.pages.len()
    );
    env
}

/// `n` files created in a new directory `name` and synced (fewer than
/// `SNAPSHOT_EVERY` log entries: no checkpoint yet).
async fn burst(d: &Drive, name: &str, n: usize) {
    let dir = d.mkdir(ROOT_INO, os(name), 0o755, WHO).await.unwrap().ino;
    for i in 0..n {
        put(d, dir, &format!("b{i}"), b"x").await;
    }
    sync(d).await;
}

/// The pages the newest checkpoint names that `before` did not hold.
async fn fresh_pages(env: &Env, before: &BTreeSet<String>) -> usize {
    let now = pages(env).await;
    let (_, head, root, _) = newest_root(env).await;
    let named: BTreeSet<String> = named_pages(&head.volume, &root)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(named.is_subset(&now));
    now.difference(before).count()
}

const FILES: usize = 6000;
const BURST: usize = 1000;

/// At most this many pages for a checkpoint after a burst of `n` creates:
/// one per `IDS_PER_STEP` new files (plus a partly filled one), the
/// directories the burst touches (the root, and `burst`, which has a page
/// of its own), and the page of the file `commits_to_a_checkpoint`
/// rewrites with its directory's.
fn burst_bound(n: usize) -> usize {
    n / IDS_PER_STEP as usize + 1 + 2 + 2
}

#[tokio::test]
async fn a_burst_of_creates_writes_pages_in_proportion() {
    let env = drive_of(FILES, 128).await;
    let (_, _, root, _) = newest_root(&env).await;
    let buckets = root.pages.len();
    let before = pages(&env).await;
    let d = env.open().await;
    burst(&d, "burst", BURST).await;
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let (_, _, root2, _) = newest_root(&env).await;
    assert_eq!(root2.pages.len(), buckets, "bucket count refitted");
    let fresh = fresh_pages(&env, &before).await;
    // Random ids would hit nearly every one of the buckets.
    assert!(
        fresh <= burst_bound(BURST) && fresh < buckets / 4,
        "{fresh} pages written for {BURST} creates ({buckets} buckets)"
    );
}

/// A burst replayed from the log at open (no checkpoint covered it), then
/// one file edited until the next checkpoint: on the same cache and on an
/// empty one, that checkpoint writes the burst's few pages and the edited
/// file's, not the drive.
#[tokio::test]
async fn a_checkpoint_after_reopen_writes_only_what_changed() {
    let env = drive_of(FILES, 128).await;
    for cache in ["cache", "empty"] {
        let d = env.open().await;
        burst(&d, &format!("burst-{cache}"), BURST).await;
        d.shutdown().await.unwrap();
        let before = pages(&env).await;
        let (_, head, _, _) = newest_root(&env).await;
        let d = env.open_with(cache).await;
        commits_to_a_checkpoint(&d).await;
        d.shutdown().await.unwrap();
        let (_, head2, _, _) = newest_root(&env).await;
        assert!(head2.seq > head.seq, "{cache}: no checkpoint written");
        let fresh = fresh_pages(&env, &before).await;
        assert!(
            (1..=burst_bound(BURST)).contains(&fresh),
            "{cache}: {fresh} pages written for a burst of {BURST} and one edited file"
        );
    }
}

/// With no burst, one file edited after a reopen on an empty cache: its
/// checkpoint writes the file's page (and its directory's) only.
#[tokio::test]
async fn one_edit_after_a_cold_reopen_writes_one_or_two_pages() {
    let env = drive_of(FILES, 128).await;
    let before = pages(&env).await;
    let d = env.open_with("empty").await;
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let fresh = fresh_pages(&env, &before).await;
    assert!((1..=2).contains(&fresh), "{fresh} pages written");
}

/// Creates spread over many directories (each file in another directory
/// than the one before) keep pages even: the largest page is a few times
/// the mean, not a pile of directories.
#[tokio::test]
async fn pages_stay_balanced_across_many_directories() {
    const DIRS: usize = 60;
    let env = Env::new().await;
    let d = env.open().await;
    let mut dirs = Vec::new();
    for i in 0..DIRS {
        let name = format!("d{i}");
        dirs.push(d.mkdir(ROOT_INO, os(&name), 0o755, WHO).await.unwrap().ino);
    }
    for i in 0..FILES {
        put(&d, dirs[i % DIRS], &format!("f{i}"), b"x").await;
    }
    sync(&d).await;
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let (_, head, root, _) = newest_root(&env).await;
    let mut sizes = Vec::new();
    for (_, page) in named_pages(&head.volume, &root) {
        sizes.push(object_bytes(env.store.as_ref(), &page).await.len());
    }
    let buckets = root.pages.len();
    let mean = sizes.iter().sum::<usize>() / buckets;
    let max = *sizes.iter().max().unwrap();
    assert!(buckets >= 32, "{buckets} buckets");
    assert!(
        max <= 4 * mean,
        "largest page {max} bytes, mean {mean} over {buckets} buckets"
    );
}

/// A burst in few log entries (each holds up to 4096 ops) is still
/// covered by checkpoints every `SNAPSHOT_TOUCHED` changed nodes or so,
/// so the tail an open replays stays short: after a burst of twice that
/// many creates a checkpoint exists, and reopening on an empty cache
/// replays less than one more bound's worth.
#[tokio::test]
async fn a_burst_in_few_entries_still_gets_checkpoints() {
    let env = Env::new().await;
    let d = env.open().await;
    burst(&d, "big", 2 * SNAPSHOT_TOUCHED).await;
    d.shutdown().await.unwrap();
    let entries = under(env.store.as_ref(), "l").await.len() as u64;
    let roots = under(env.store.as_ref(), "s").await.len() as u64;
    // By entry count alone there would be entries / 64 roots.
    assert!(
        roots >= 1 && roots > entries / SNAPSHOT_EVERY,
        "{roots} checkpoints for {entries} log entries"
    );
}

/// The newest log entry's position.
async fn last_entry(env: &Env) -> u64 {
    let entries = under(env.store.as_ref(), "l").await;
    let last = entries.last().unwrap().rsplit('/').next().unwrap();
    u64::from_str_radix(last, 16).unwrap()
}

/// A clean shutdown after a burst of `SHUTDOWN_TOUCHED` changed nodes or
/// more writes a checkpoint covering it (the next open replays no tail,
/// and the next changes' checkpoint does not rewrite the burst's pages);
/// after a few changes it writes none.
#[tokio::test]
async fn a_shutdown_after_a_burst_checkpoints_its_tail() {
    let env = Env::new().await;
    let roots = under(env.store.as_ref(), "s").await.len();
    let d = env.open().await;
    burst(&d, "few", 10).await;
    d.shutdown().await.unwrap();
    assert_eq!(under(env.store.as_ref(), "s").await.len(), roots);
    let d = env.open().await;
    burst(&d, "big", SHUTDOWN_TOUCHED).await;
    let before = last_entry(&env).await;
    assert_eq!(
        under(env.store.as_ref(), "s").await.len(),
        roots,
        "no checkpoint covers the burst before the shutdown"
    );
    d.shutdown().await.unwrap();
    let (_, head, _, _) = newest_root(&env).await;
    assert_eq!(head.seq, last_entry(&env).await);
    assert_eq!(head.seq, before, "the shutdown wrote no entry");
}
