//! Random reads spread over a file on a remote store
//! (`whole_blocks_on_random_reads`): after a few misses the blocks after
//! each further miss are fetched too, many GETs at once. Every byte is
//! still verified before it is returned: a neighbour fetched ahead that
//! is damaged or missing is never served, and the read of it fails
//! naming its object; a small cache fetches no neighbours and still reads
//! right while it evicts.

use crate::support::drive::*;
use crate::support::{keys_under, pattern};
use cardfs::drive::*;
use cardfs::store::FaultStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const BLOCKS: usize = 24;

/// A file of `BLOCKS` whole blocks, committed; returns its inode, its
/// bytes and the content object of each block.
async fn blocks_file(env: &Env) -> (Ino, Vec<u8>, Vec<String>) {
    let data = pattern(BLOCKS * MIB, 16);
    let d = env.open().await;
    let (attr, fh) = d
        .create(ROOT_INO, os("spread"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap();
    let mut keys = Vec::new();
    for b in 0..BLOCKS {
        let before = keys_under(env.store.as_ref(), "c/").await;
        let block = &data[b * MIB..(b + 1) * MIB];
        d.write(attr.ino, fh, (b * MIB) as u64, block)
            .await
            .unwrap();
        sync(&d).await;
        let new: Vec<String> = keys_under(env.store.as_ref(), "c/")
            .await
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        assert_eq!(new.len(), 1, "one object per whole block");
        keys.push(new[0].clone());
    }
    d.release(attr.ino, fh).await.unwrap();
    sync(&d).await;
    d.shutdown().await.unwrap();
    (attr.ino, data, keys)
}

/// Opens the drive as the mount does for S3, through a counting store.
async fn open_remote(env: &Env, cache: &str, cache_size: u64) -> (Arc<FaultStore>, Drive) {
    let counting = faulty(env.store.clone());
    let mut opts = env.opts(cache);
    opts.whole_blocks_on_random_reads = true;
    opts.cache_size = cache_size;
    let d = Drive::open_drive(counting.clone(), env.id.clone(), opts)
        .await
        .unwrap();
    (counting, d)
}

/// Waits until the store has seen no read for a while (the fetches behind
/// the reads have ended); returns the reads counted.
async fn settled(store: &FaultStore) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = store.counts().reads;
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = store.counts().reads;
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// A 4 KiB read inside block `b` (never at a block start: not sequential).
fn at(b: usize) -> usize {
    b * MIB + 40_960 + b * 4096
}

#[tokio::test]
async fn spread_random_reads_fetch_the_following_blocks_verified() {
    let env = Env::new().await;
    let (ino, data, keys) = blocks_file(&env).await;
    // Damage two blocks the fetches behind the fourth miss will cover:
    // one flipped, one deleted.
    let (flipped, deleted) = (15, 18);
    // A byte of the chunk the later read of that block covers (chunks of
    // 4 KiB, each sealed with a 16-byte tag).
    let chunk = (at(flipped) - flipped * MIB) / 4096;
    let mut bad = object_bytes(env.store.as_ref(), &keys[flipped]).await;
    bad[chunk * (4096 + 16) + 100] ^= 0x40;
    env.store
        .put(
            &keys[flipped],
            bytes::Bytes::from(bad),
            cardfs::store::PutMode::Overwrite,
        )
        .await
        .unwrap();
    env.store.delete(&keys[deleted]).await.unwrap();

    let (store, d) = open_remote(&env, "spread", 1 << 30).await;
    let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    let read = |b: usize| {
        let d = d.clone();
        async move { d.read(ino, fh, at(b) as u64, 4096).await }
    };
    // Four misses on blocks far apart; the fourth (block 12) also fetches
    // blocks 13 to 20 behind it.
    for b in [3, 22, 8, 12] {
        assert_eq!(
            read(b).await.unwrap(),
            data[at(b)..at(b) + 4096],
            "block {b}"
        );
    }
    let after_misses = settled(&store).await;
    // Blocks fetched behind the fourth miss read with no request of their own.
    for b in [13, 14, 16, 17, 19, 20] {
        assert_eq!(
            read(b).await.unwrap(),
            data[at(b)..at(b) + 4096],
            "block {b}"
        );
    }
    assert_eq!(
        store.counts().reads,
        after_misses,
        "the blocks after the fourth miss were fetched ahead"
    );
    // The damaged neighbours were never kept: their reads go to the store
    // and fail naming their objects.
    let e = read(flipped)
        .await
        .expect_err("flipped block must not read");
    assert_eq!(tampered_object(e), keys[flipped]);
    let e = read(deleted)
        .await
        .expect_err("deleted block must not read");
    assert_eq!(tampered_object(e), keys[deleted]);
    // Blocks never fetched ahead (before the misses spread) still read right.
    for b in [0, 1, 5, 21, 23] {
        assert_eq!(
            read(b).await.unwrap(),
            data[at(b)..at(b) + 4096],
            "block {b}"
        );
    }
    d.release(ino, fh).await.unwrap();
    d.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_small_cache_fetches_no_neighbours_and_reads_right_while_evicting() {
    let env = Env::new().await;
    let (ino, data, _) = blocks_file(&env).await;
    // Room for three blocks: far less than a spread window needs.
    let (store, d) = open_remote(&env, "small", 3 * MIB as u64 + 65_536).await;
    let opened = store.counts().reads;
    let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    let order = [3, 22, 8, 12, 17, 1, 20, 5, 14, 10];
    for round in 0..2 {
        for b in order {
            let got = d.read(ino, fh, at(b) as u64, 4096).await.unwrap();
            assert_eq!(got, data[at(b)..at(b) + 4096], "round {round} block {b}");
        }
    }
    // Each miss costs its ranged read and its own block only: at most two
    // requests per read, and no block after a miss.
    let reads = settled(&store).await - opened;
    assert!(
        reads <= 2 * 2 * order.len() as u64,
        "{reads} store reads for {} random reads",
        2 * order.len()
    );
    d.release(ino, fh).await.unwrap();
    d.shutdown().await.unwrap();
}
