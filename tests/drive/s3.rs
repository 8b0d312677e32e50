//! The drive engine over a real S3 server (`crate::support::s3()`: fails, never
//! skips, without one): the reference-model test, tamper and rollback
//! checks, a crash before upload, and two clients racing with real
//! conditional writes.

use crate::support::drive::model::*;
use crate::support::drive::*;
use bytes::Bytes;
use cardfs::drive::*;
use cardfs::store::{GetOptions, ObjectStore, PutMode, S3Store};
use proptest::prelude::*;
use std::sync::Arc;

/// An empty S3 store in a fresh bucket.
async fn s3_store() -> Arc<dyn ObjectStore> {
    let options = crate::support::s3().store_options();
    let bucket = crate::support::unique("drive").to_lowercase();
    let store = S3Store::new(&bucket, "d", &options).await.unwrap();
    store.create_bucket().await.unwrap();
    Arc::new(store)
}

async fn s3_env() -> Env {
    Env::with_store(s3_store().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_reopen_and_tamper_over_s3() {
    let env = s3_env().await;
    let d = env.open().await;
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
    let dir = d.mkdir(ROOT_INO, os("dir"), 0o755, WHO).await.unwrap().ino;
    let f = put(&d, dir, "file", &data).await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    let other = env.open_with("other").await;
    assert_eq!(
        read_all(&other, lookup(&other, "dir/file").await.unwrap()).await,
        data
    );
    other.shutdown().await.unwrap();

    // A flipped content byte is EIO for a client reading from the store:
    // `Tampered`, naming the flipped object.
    let key = env.store.list_all("c/").await.unwrap()[0].key.clone();
    let good = env
        .store
        .get(&key, GetOptions::default())
        .await
        .unwrap()
        .bytes
        .to_vec();
    let mut bad = good.clone();
    bad[1000] ^= 1;
    env.store
        .put(&key, Bytes::from(bad), PutMode::Overwrite)
        .await
        .unwrap();
    let d = env.open_with("third").await;
    let fh = d.open(f, libc::O_RDONLY).await.unwrap();
    let mut saw_eio = false;
    let mut off = 0;
    while off < data.len() as u64 {
        match d.read(f, fh, off, 1 << 20).await {
            Ok(b) => {
                assert!(
                    b[..] == data[off as usize..off as usize + b.len()],
                    "wrong bytes"
                );
                off += b.len() as u64;
            }
            Err(e) => {
                assert_eq!(e.errno(), libc::EIO);
                assert_eq!(tampered_object(e), key);
                saw_eio = true;
                off += 1 << 20;
            }
        }
    }
    assert!(saw_eio);
    env.store
        .put(&key, Bytes::from(good), PutMode::Overwrite)
        .await
        .unwrap();

    // Rollback: hide the newest log entry from a client that saw it.
    let log = env
        .store
        .list_all("v/")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.key.contains("/l/"))
        .map(|m| m.key)
        .collect::<Vec<_>>();
    let last = log.last().unwrap().clone();
    let saved = env
        .store
        .get(&last, GetOptions::default())
        .await
        .unwrap()
        .bytes;
    env.store.delete(&last).await.unwrap();
    let e = Drive::open_drive(env.store.clone(), env.id.clone(), env.opts("cache"))
        .await
        .unwrap_err();
    assert!(matches!(e, DriveError::Rollback { .. }), "{e}");
    env.store
        .put(&last, saved, PutMode::Overwrite)
        .await
        .unwrap();
    env.open().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_upload_over_s3() {
    let env = s3_env().await;
    let (flaky, d) = env.open_faulty("cache").await;
    flaky.set_offline(true);
    let f = put(&d, ROOT_INO, "f", &vec![9u8; 1_500_000]).await;
    let fh = d.open(f, libc::O_RDONLY).await.unwrap();
    d.fsync(f, fh, false).await.unwrap();
    d.abandon().await;
    let d = env.open().await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    let other = env.open_with("other").await;
    assert_eq!(read_all(&other, f).await, vec![9u8; 1_500_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_race_over_s3() {
    let env = s3_env().await;
    let a = env.open_with("a").await;
    let b = env.open_with("b").await;
    let f = put(&a, ROOT_INO, "doc", b"base").await;
    sync(&a).await;
    b.refresh().await.unwrap();
    for (d, text) in [(&a, b"from a".as_slice()), (&b, b"from b".as_slice())] {
        let fh = d.open(f, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
        d.write(f, fh, 0, text).await.unwrap();
        d.release(f, fh).await.unwrap();
        put(d, ROOT_INO, &format!("own-{}", text[5] as char), text).await;
    }
    sync(&a).await;
    sync(&b).await;
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    let n = names(&a, ROOT_INO).await;
    assert_eq!(n, names(&b, ROOT_INO).await);
    assert_eq!(n.len(), 4, "{n:?}");
    let mut docs = Vec::new();
    for name in n.iter().filter(|x| x.starts_with("doc")) {
        docs.push(read_all(&a, lookup(&a, name).await.unwrap()).await);
    }
    docs.sort();
    assert_eq!(docs, vec![b"from a".to_vec(), b"from b".to_vec()]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        max_shrink_iters: 200,
        failure_persistence: crate::model::beside_this_file(),
        .. ProptestConfig::default()
    })]
    #[test]
    fn engine_matches_model_over_s3(ops in proptest::collection::vec(op(), 1..25)) {
        rt().block_on(async { check_on(s3_env().await, ops, 0).await });
    }
}
