//! One conformance suite for every `ObjectStore` implementation: each
//! behaviour is one async function, run against every store by the
//! `conformance!` macro at the bottom. Against S3 it uses the server from
//! `crate::support::s3()` (fails, never skips, without one) with a unique prefix per
//! test, so tests run in parallel on one server.

use crate::support::keys_under;
use crate::support::pattern::pattern;
use bytes::Bytes;
use cardfs::store::{
    ETag, FaultConfig, FaultStore, GetOptions, LocalStore, MemoryStore, ObjectStore, OpenOptions,
    PutMode, S3Store, StoreError,
};
use std::sync::Arc;

/// A store under test and whatever must live as long as it.
struct Fixture {
    store: Arc<dyn ObjectStore>,
    /// The store may list in directory-tree order (the allowance in the
    /// `store` module docs for S3 servers such as SeaweedFS).
    tree_order: bool,
    _dir: Option<tempfile::TempDir>,
}

async fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        tree_order: false,
        _dir: None,
    }
}

async fn local() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalStore::open(dir.path().join("store")).expect("open local store");
    Fixture {
        store: Arc::new(store),
        tree_order: false,
        _dir: Some(dir),
    }
}

/// The fault wrapper with no faults must be invisible.
async fn fault() -> Fixture {
    let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    Fixture {
        store: Arc::new(FaultStore::new(inner, FaultConfig::default())),
        tree_order: false,
        _dir: None,
    }
}

/// Options that reach the test S3 server (`crate::support::s3()` fails the test
/// when there is none).
fn s3_options() -> OpenOptions {
    OpenOptions {
        s3: crate::support::s3().store_options(),
    }
}

/// One bucket per test process, created once; each test gets its own prefix.
async fn s3_bucket(options: &OpenOptions) -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| crate::support::unique("conformance").to_lowercase());
    // Each test has its own runtime, so every test creates the bucket with
    // a short-lived store; creating a bucket we own again is harmless.
    let store = S3Store::new(name, "", &options.s3).await.unwrap();
    store.create_bucket().await.expect("create test bucket");
    name
}

async fn s3() -> Fixture {
    let options = s3_options();
    let bucket = s3_bucket(&options).await;
    let prefix = crate::support::unique("t");
    let store = cardfs::store::open(&format!("s3://{bucket}/{prefix}"), &options)
        .await
        .expect("open S3 store");
    Fixture {
        store,
        tree_order: true,
        _dir: None,
    }
}

fn is_not_found<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound { .. }))
}

fn is_precondition<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::PreconditionFailed { .. }))
}

async fn read(store: &dyn ObjectStore, key: &str) -> Bytes {
    let got = store.get(key, GetOptions::default()).await;
    got.unwrap_or_else(|e| panic!("get {key}: {e}")).bytes
}

// ---------------------------------------------------------------- behaviours

async fn put_get_head_delete(f: Fixture) {
    let s = &*f.store;
    let etag = s
        .put("obj", Bytes::from_static(b"hello"), PutMode::Overwrite)
        .await
        .unwrap();
    let got = s.get("obj", GetOptions::default()).await.unwrap();
    assert_eq!(got.bytes.as_ref(), b"hello");
    assert_eq!(got.meta.size, 5);
    assert_eq!(got.meta.etag, etag);
    assert_eq!(got.meta.key, "obj");
    let head = s.head("obj").await.unwrap();
    assert_eq!((head.size, head.etag.clone()), (5, etag.clone()));

    let etag2 = s
        .put("obj", Bytes::from_static(b"goodbye!"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_ne!(etag, etag2, "new bytes must give a new ETag");
    let got = s.get("obj", GetOptions::default()).await.unwrap();
    assert_eq!(got.bytes.as_ref(), b"goodbye!");
    assert_eq!(got.meta.etag, etag2);

    s.delete("obj").await.unwrap();
    assert!(is_not_found(&s.get("obj", GetOptions::default()).await));
    assert!(is_not_found(&s.head("obj").await));
}

async fn missing_objects(f: Fixture) {
    let s = &*f.store;
    assert!(is_not_found(&s.get("nope", GetOptions::default()).await));
    assert!(is_not_found(&s.get("no/pe", GetOptions::range(0..4)).await));
    assert!(is_not_found(&s.head("nope").await));
    s.delete("nope")
        .await
        .expect("deleting a missing object succeeds");
    s.delete("no/such/dir").await.expect("missing parents too");
    s.delete_many(&["x".into(), "y/z".into()]).await.unwrap();
}

async fn empty_object(f: Fixture) {
    let s = &*f.store;
    s.put("empty", Bytes::new(), PutMode::Create).await.unwrap();
    let got = s.get("empty", GetOptions::default()).await.unwrap();
    assert!(got.bytes.is_empty());
    assert_eq!(got.meta.size, 0);
    let got = s.get("empty", GetOptions::range(0..10)).await.unwrap();
    assert!(got.bytes.is_empty());
    assert_eq!(s.head("empty").await.unwrap().size, 0);
}

async fn ranges(f: Fixture) {
    let s = &*f.store;
    let body = pattern(1000, 7);
    s.put("r", Bytes::from(body.clone()), PutMode::Overwrite)
        .await
        .unwrap();
    let read = |r: std::ops::Range<u64>| async move {
        let got = s.get("r", GetOptions::range(r)).await.unwrap();
        assert_eq!(got.meta.size, 1000, "meta describes the whole object");
        got.bytes.to_vec()
    };
    assert_eq!(read(0..1000).await, body);
    assert_eq!(read(10..20).await, &body[10..20]);
    assert_eq!(read(999..1000).await, &body[999..]);
    assert_eq!(read(990..5000).await, &body[990..], "end is clamped");
    assert!(
        read(1000..1010).await.is_empty(),
        "range at the end is empty"
    );
    assert!(
        read(5000..6000).await.is_empty(),
        "range past the end is empty"
    );
    assert!(read(10..10).await.is_empty(), "empty range");
}

async fn conditional_get(f: Fixture) {
    let s = &*f.store;
    let etag = s
        .put("c", Bytes::from_static(b"v1"), PutMode::Overwrite)
        .await
        .unwrap();
    let opts = GetOptions {
        range: None,
        if_match: Some(etag.clone()),
    };
    assert_eq!(s.get("c", opts).await.unwrap().bytes.as_ref(), b"v1");
    let ranged = GetOptions {
        range: Some(1..2),
        if_match: Some(etag.clone()),
    };
    assert_eq!(s.get("c", ranged).await.unwrap().bytes.as_ref(), b"1");
    s.put("c", Bytes::from_static(b"v2"), PutMode::Overwrite)
        .await
        .unwrap();
    let stale = GetOptions {
        range: None,
        if_match: Some(etag.clone()),
    };
    assert!(is_precondition(&s.get("c", stale).await));
    let stale_past_end = GetOptions {
        range: Some(100..200),
        if_match: Some(etag),
    };
    assert!(is_precondition(&s.get("c", stale_past_end).await));
}

async fn create_and_update(f: Fixture) {
    let s = &*f.store;
    let e1 = s
        .put("k", Bytes::from_static(b"one"), PutMode::Create)
        .await
        .unwrap();
    let again = s
        .put("k", Bytes::from_static(b"two"), PutMode::Create)
        .await;
    assert!(is_precondition(&again), "{again:?}");
    assert_eq!(read(s, "k").await.as_ref(), b"one");
    let e2 = s
        .put("k", Bytes::from_static(b"two"), PutMode::Update(e1.clone()))
        .await
        .unwrap();
    let stale = s
        .put("k", Bytes::from_static(b"three"), PutMode::Update(e1))
        .await;
    assert!(is_precondition(&stale), "{stale:?}");
    assert_eq!(read(s, "k").await.as_ref(), b"two");
    let missing = s
        .put("absent", Bytes::from_static(b"x"), PutMode::Update(e2))
        .await;
    assert!(
        is_precondition(&missing),
        "update of a missing object: {missing:?}"
    );
    s.delete("k").await.unwrap();
    s.put("k", Bytes::from_static(b"back"), PutMode::Create)
        .await
        .expect("create after delete");
}

/// Runs 16 writers that each put `[i; len]` to `key` with `mode`; returns
/// the indexes of those that succeeded after checking that every other
/// one failed with `PreconditionFailed`.
async fn race(store: &Arc<dyn ObjectStore>, key: &str, mode: PutMode, len: usize) -> Vec<u8> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        let (s, key, mode) = (store.clone(), key.to_string(), mode.clone());
        tasks.spawn(async move { (i, s.put(&key, Bytes::from(vec![i; len]), mode).await) });
    }
    let mut winners = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let (i, r) = res.unwrap();
        match r {
            Ok(_) => winners.push(i),
            Err(StoreError::PreconditionFailed { .. }) => {}
            Err(e) => panic!("writer {i}: unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let got = store.get(key, GetOptions::default()).await.unwrap();
    assert_eq!(got.bytes.as_ref(), &vec![winners[0]; len][..]);
    winners
}

async fn create_race(f: Fixture) {
    race(&f.store, "race", PutMode::Create, 64).await;
}

async fn compare_and_swap_race(f: Fixture) {
    // 16 writers all try to replace the same version: exactly one wins.
    let base = f
        .store
        .put("cas", Bytes::from_static(b"base"), PutMode::Create)
        .await
        .unwrap();
    race(&f.store, "cas", PutMode::Update(base), 8).await;

    // A counter incremented by 8 workers with read-modify-CAS loses nothing.
    f.store
        .put("counter", Bytes::from_static(b"0"), PutMode::Create)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = f.store.clone();
        tasks.spawn(async move {
            for _ in 0..5 {
                loop {
                    let cur = s.get("counter", GetOptions::default()).await.unwrap();
                    let n: u64 = std::str::from_utf8(&cur.bytes).unwrap().parse().unwrap();
                    let next = Bytes::from((n + 1).to_string());
                    match s.put("counter", next, PutMode::Update(cur.meta.etag)).await {
                        Ok(_) => break,
                        Err(StoreError::PreconditionFailed { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    let got = f.store.get("counter", GetOptions::default()).await.unwrap();
    assert_eq!(got.bytes.as_ref(), b"40");
}

/// Follows `next_start_after` with pages of `limit`; checks page shape.
async fn paged(store: &dyn ObjectStore, prefix: &str, limit: usize) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), limit).await.unwrap();
        assert!(page.objects.len() <= limit);
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
        match page.next_start_after {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "continues after the last key");
                after = Some(next);
            }
            None => return seen,
        }
    }
}

async fn put_keys(store: &dyn ObjectStore, keys: &[&str]) {
    for k in keys {
        store
            .put(k, Bytes::from(k.as_bytes().to_vec()), PutMode::Overwrite)
            .await
            .unwrap();
    }
}

async fn list_prefix_pagination(f: Fixture) {
    let s = &*f.store;
    // Keys whose byte order and directory-tree order agree.
    let keys = ["a", "a/b", "a/b/c", "a/bb", "a0", "b", "ba/x", "é"];
    put_keys(s, &keys).await;
    let all = s.list_all("").await.unwrap();
    let listed: Vec<_> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(listed, keys, "whole listing in byte order");
    for o in &all {
        assert_eq!(o.size, o.key.len() as u64);
        assert_eq!(o.etag, s.head(&o.key).await.unwrap().etag);
    }
    assert_eq!(keys_under(s, "a/").await, ["a/b", "a/b/c", "a/bb"]);
    assert_eq!(keys_under(s, "a/b").await, ["a/b", "a/b/c", "a/bb"]);
    assert_eq!(keys_under(s, "a/b/").await, ["a/b/c"]);
    assert_eq!(keys_under(s, "b").await, ["b", "ba/x"]);
    assert!(keys_under(s, "zz").await.is_empty());
    assert!(keys_under(s, "a/b/c/").await.is_empty());
    for limit in [1, 2, 3] {
        assert_eq!(paged(s, "", limit).await, keys, "pages of {limit}");
    }
    assert_eq!(paged(s, "a/", 1).await, ["a/b", "a/b/c", "a/bb"]);

    // start_after that is not a key, and one before the prefix.
    let page = s.list("", Some("a/b/d"), 100).await.unwrap();
    let got: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(got, ["a/bb", "a0", "b", "ba/x", "é"]);
    let page = s.list("a/", Some("0"), 100).await.unwrap();
    assert_eq!(page.objects.len(), 3);
    assert!(page.next_start_after.is_none());
    let page = s.list("a/", Some("a/b"), 1).await.unwrap();
    assert_eq!(page.objects[0].key, "a/b/c");
    assert_eq!(page.next_start_after.as_deref(), Some("a/b/c"));
    let page = s.list("a/", Some("zzz"), 10).await.unwrap();
    assert!(page.objects.is_empty() && page.next_start_after.is_none());
}

async fn list_order_with_punctuation(f: Fixture) {
    let s = &*f.store;
    // Characters below '/' make byte order and tree order differ.
    let keys = [
        "a", "a!", "a-c", "a.x", "a/ b", "a/-", "a/b", "a/b-c", "a/b/c", "a/b/c/d", "a/bb", "a0",
    ];
    put_keys(s, &keys).await;
    let mut bytewise: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    bytewise.sort();
    let mut treewise = bytewise.clone();
    treewise.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    assert_ne!(bytewise, treewise);
    let whole = keys_under(s, "").await;
    if f.tree_order {
        assert!(whole == bytewise || whole == treewise, "{whole:?}");
    } else {
        assert_eq!(whole, bytewise);
    }
    // Whatever the order, pages visit every key exactly once, in it.
    for limit in [1, 2, 3, 5] {
        assert_eq!(paged(s, "", limit).await, whole, "pages of {limit}");
    }
    let under: Vec<String> = whole
        .iter()
        .filter(|k| k.starts_with("a/b"))
        .cloned()
        .collect();
    for limit in [1, 2] {
        assert_eq!(
            paged(s, "a/b", limit).await,
            under,
            "prefix pages of {limit}"
        );
    }
}

async fn delete_many(f: Fixture) {
    let s = &*f.store;
    let keys: Vec<String> = (0..30).map(|i| format!("d/{i:02}")).collect();
    for k in &keys {
        s.put(k, Bytes::from_static(b"x"), PutMode::Overwrite)
            .await
            .unwrap();
    }
    s.put("keep", Bytes::from_static(b"y"), PutMode::Overwrite)
        .await
        .unwrap();
    let mut doomed = keys[..20].to_vec();
    doomed.push("d/not-there".into());
    s.delete_many(&doomed).await.unwrap();
    let left = keys_under(s, "").await;
    let mut expected: Vec<String> = keys[20..].to_vec();
    expected.push("keep".into());
    assert_eq!(left, expected);
}

async fn unicode_and_slash_keys(f: Fixture) {
    let s = &*f.store;
    let keys = [
        "a",
        "a/b",
        "a/b/c",
        "ключ/значение",
        "emoji/🎉 party.txt",
        "spaces and %25 + ~ chars/x",
        "日本語/ファイル",
        ".dot/.hidden",
    ];
    for k in keys {
        s.put(k, Bytes::from(format!("body of {k}")), PutMode::Create)
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    for k in keys {
        let got = s.get(k, GetOptions::default()).await.unwrap();
        assert_eq!(got.bytes, Bytes::from(format!("body of {k}")), "{k}");
    }
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort();
    assert_eq!(keys_under(s, "").await, sorted);
    assert_eq!(keys_under(s, "ключ/").await, ["ключ/значение"]);
    s.delete("a").await.unwrap();
    assert_eq!(keys_under(s, "a").await, ["a/b", "a/b/c"]);
    s.delete("a/b").await.unwrap();
    assert_eq!(read(s, "a/b/c").await, Bytes::from("body of a/b/c"));
    let long = format!("{}/{}", "é".repeat(127), "x".repeat(255));
    s.put(&long, Bytes::from_static(b"long"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(keys_under(s, "é").await, [long]);
}

async fn invalid_keys(f: Fixture) {
    let s = &*f.store;
    let too_long = "x".repeat(256);
    for bad in ["", "/abs", "a//b", "a/../b", "..", "a\nb", &too_long] {
        let r = s
            .put(bad, Bytes::from_static(b"x"), PutMode::Overwrite)
            .await;
        assert!(
            matches!(r, Err(StoreError::InvalidKey { .. })),
            "{bad:?}: {r:?}"
        );
    }
    assert!(keys_under(s, "").await.is_empty());
}

async fn multipart_100_mib(f: Fixture) {
    let s = &*f.store;
    let body = pattern(100 << 20, 42);
    s.put("big", Bytes::from_static(b"old"), PutMode::Overwrite)
        .await
        .unwrap();
    let mut up = s.put_multipart("big").await.unwrap();
    // Uneven chunks, so implementations must re-cut them into parts.
    let mut off = 0;
    let mut step = 3 << 20;
    while off < body.len() {
        let end = (off + step).min(body.len());
        up.put_part(Bytes::copy_from_slice(&body[off..end]))
            .await
            .unwrap();
        off = end;
        step = step * 3 / 2 + 12345;
    }
    let etag = up.complete().await.unwrap();
    let head = s.head("big").await.unwrap();
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.etag, etag);
    let got = s.get("big", GetOptions::default()).await.unwrap();
    assert!(got.bytes.as_ref() == body.as_slice(), "100 MiB differ");
    let mid = (50 << 20) - 7;
    let got = s
        .get("big", GetOptions::range(mid..mid + 1_000_000))
        .await
        .unwrap();
    assert!(got.bytes.as_ref() == &body[mid as usize..mid as usize + 1_000_000]);
    assert!(s.pending_uploads().await.unwrap().is_empty());
}

async fn small_multipart_and_large_put(f: Fixture) {
    let s = &*f.store;
    let mut up = s.put_multipart("small").await.unwrap();
    up.put_part(Bytes::from_static(b"ab")).await.unwrap();
    up.put_part(Bytes::new()).await.unwrap();
    up.put_part(Bytes::from_static(b"cd")).await.unwrap();
    up.complete().await.unwrap();
    assert_eq!(read(s, "small").await.as_ref(), b"abcd");
    let up = s.put_multipart("nothing").await.unwrap();
    up.complete().await.unwrap();
    assert_eq!(s.head("nothing").await.unwrap().size, 0);
    // A put big enough for an implementation to split it into parts.
    let body = pattern(40 << 20, 9);
    let etag = s
        .put("large", Bytes::from(body.clone()), PutMode::Overwrite)
        .await
        .unwrap();
    let got = s.get("large", GetOptions::default()).await.unwrap();
    assert!(got.bytes.as_ref() == body.as_slice());
    assert_eq!(got.meta.etag, etag);
    assert!(s.pending_uploads().await.unwrap().is_empty());
}

async fn reads_never_mix_versions(f: Fixture) {
    // Large reads (split into range requests by S3) while the object is
    // overwritten: every read returns one whole version.
    let len = 20 << 20;
    f.store
        .put("v", Bytes::from(vec![0u8; len]), PutMode::Overwrite)
        .await
        .unwrap();
    let writer = {
        let s = f.store.clone();
        tokio::spawn(async move {
            for v in 1..=4u8 {
                s.put("v", Bytes::from(vec![v; len]), PutMode::Overwrite)
                    .await
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        let got = f.store.get("v", GetOptions::default()).await.unwrap();
        assert_eq!(got.bytes.len(), len);
        assert_eq!(got.meta.size, len as u64);
        let first = got.bytes[0];
        assert!(got.bytes.iter().all(|b| *b == first), "read mixed versions");
        let part = f
            .store
            .get("v", GetOptions::range(5..(len as u64 - 5)))
            .await
            .unwrap();
        let first = part.bytes[0];
        assert!(
            part.bytes.iter().all(|b| *b == first),
            "range mixed versions"
        );
        reads += 1;
    }
    writer.await.unwrap();
    let got = f.store.get("v", GetOptions::default()).await.unwrap();
    assert!(got.bytes.iter().all(|b| *b == 4));
}

async fn abort_leaves_nothing(f: Fixture) {
    let s = &*f.store;
    let mut up = s.put_multipart("aborted/obj").await.unwrap();
    for i in 0..4 {
        up.put_part(Bytes::from(pattern(6 << 20, i))).await.unwrap();
    }
    assert!(
        is_not_found(&s.head("aborted/obj").await),
        "visible before complete"
    );
    if !s.describe().contains("memory:") {
        // Memory holds an upload only in the upload object itself.
        let pending = s.pending_uploads().await.unwrap();
        assert!(!pending.is_empty(), "the upload in progress is listed");
    }
    up.abort().await.unwrap();
    assert!(is_not_found(&s.head("aborted/obj").await));
    assert!(keys_under(s, "").await.is_empty());
    assert_eq!(s.pending_uploads().await.unwrap(), Vec::<String>::new());

    // Dropping an unfinished upload cleans up too (possibly in background).
    let mut up = s.put_multipart("dropped").await.unwrap();
    up.put_part(Bytes::from(pattern(12 << 20, 5)))
        .await
        .unwrap();
    drop(up);
    let mut left = s.pending_uploads().await.unwrap();
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = s.pending_uploads().await.unwrap();
    }
    assert!(left.is_empty(), "dropped upload left {left:?}");
    assert!(keys_under(s, "").await.is_empty());
}

async fn etag_is_opaque_and_stable(f: Fixture) {
    let s = &*f.store;
    let e = s
        .put("e", Bytes::from_static(b"same"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(s.head("e").await.unwrap().etag, e);
    assert_eq!(s.list_all("e").await.unwrap()[0].etag, e);
    let e2 = s
        .put(
            "e",
            Bytes::from_static(b"other"),
            PutMode::Update(e.clone()),
        )
        .await
        .unwrap();
    assert_ne!(e, e2);
    let _: ETag = e2;
    s.check_conditional_writes().await.unwrap();
    assert!(!s.describe().is_empty());
}

macro_rules! conformance {
    ($backend:ident: $($behaviour:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $behaviour() {
                    super::$behaviour(super::$backend().await).await;
                }
            )*
        }
    };
}

macro_rules! all_behaviours {
    ($($backend:ident),*) => {
        $(
            conformance!($backend:
                put_get_head_delete,
                missing_objects,
                empty_object,
                ranges,
                conditional_get,
                create_and_update,
                create_race,
                compare_and_swap_race,
                list_prefix_pagination,
                list_order_with_punctuation,
                delete_many,
                unicode_and_slash_keys,
                invalid_keys,
                multipart_100_mib,
                small_multipart_and_large_put,
                abort_leaves_nothing,
                reads_never_mix_versions,
                etag_is_opaque_and_stable,
            );
        )*
    };
}

all_behaviours!(memory, local, s3, fault);
