//! S3-store behaviour beyond the conformance suite, against the server
//! from `crate::support::s3()`: error mapping the engine acts on, the
//! conditional-write probe, and cleanup of orphaned uploads.

use bytes::Bytes;
use cardfs::store::{ObjectStore, OpenOptions, PutMode, S3Options, S3Store, StoreError};
use std::time::Duration;

fn options(secret: Option<&str>) -> S3Options {
    let mut env = crate::support::s3().clone();
    if let Some(secret) = secret {
        env.secret_key = secret.to_string();
    }
    env.store_options()
}

async fn fresh_store(prefix: &str) -> S3Store {
    let bucket = crate::support::unique("s3store").to_lowercase();
    let store = S3Store::new(&bucket, prefix, &options(None)).await.unwrap();
    store.create_bucket().await.unwrap();
    store
}

#[tokio::test]
async fn probe_accepts_a_server_that_honours_conditions() {
    let store = fresh_store("p").await;
    store.check_conditional_writes().await.unwrap();
    assert!(
        store.list_all("").await.unwrap().is_empty(),
        "probe cleaned up"
    );
    assert!(store.describe().starts_with("s3://s3store-"));
    assert!(store.describe().ends_with("/p"));
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error() {
    let store = fresh_store("").await;
    store
        .put("k", Bytes::from_static(b"x"), PutMode::Overwrite)
        .await
        .unwrap();
    let bucket = store.describe().trim_start_matches("s3://").to_string();
    let bad = S3Store::new(&bucket, "", &options(Some("wrong-secret")))
        .await
        .unwrap();
    let err = bad.head("k").await.unwrap_err();
    assert!(matches!(err, StoreError::Auth { .. }), "{err:?}");
    let err = bad
        .put("k", Bytes::from_static(b"y"), PutMode::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_bucket_is_reported_as_such() {
    let bucket = crate::support::unique("never-created").to_lowercase();
    let store = S3Store::new(&bucket, "", &options(None)).await.unwrap();
    // (SeaweedFS creates a missing bucket on PUT, so ask with a listing.)
    let err = store.list("", None, 10).await.unwrap_err();
    assert!(err.to_string().contains("bucket does not exist"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = OpenOptions {
        s3: S3Options {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            max_attempts: 2,
            connect_timeout: Duration::from_secs(2),
            ..options(None)
        },
    };
    let store = cardfs::store::open("s3://some-bucket/x", &opts)
        .await
        .unwrap();
    let err = store.head("k").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn orphaned_uploads_are_found_and_aborted() {
    let store = fresh_store("orphans").await;
    let mut up = store.put_multipart("leaked").await.unwrap();
    up.put_part(Bytes::from(vec![7u8; 9 << 20])).await.unwrap();
    // Simulate a crash: the upload is never completed, aborted or dropped.
    std::mem::forget(up);
    let mut pending = store.pending_uploads().await.unwrap();
    for _ in 0..50 {
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending = store.pending_uploads().await.unwrap();
    }
    assert_eq!(pending, ["leaked"]);
    assert_eq!(store.abort_pending_uploads().await.unwrap(), 1);
    assert!(store.pending_uploads().await.unwrap().is_empty());
    assert!(store.list_all("").await.unwrap().is_empty());
}
