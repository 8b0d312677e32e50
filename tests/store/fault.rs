//! The fault-injecting wrapper injects exactly what it is told, the same
//! way for the same seed, and its failures leave the store consistent.

use bytes::Bytes;
use cardfs::store::{
    FaultConfig, FaultStore, GetOptions, LocalStore, MemoryStore, ObjectStore, PutMode, StoreError,
};
use std::sync::Arc;
use std::time::Duration;

fn over_memory(config: FaultConfig) -> FaultStore {
    FaultStore::new(Arc::new(MemoryStore::new()), config)
}

fn body(n: usize) -> Bytes {
    Bytes::from(vec![0xa5; n])
}

#[tokio::test]
async fn fails_exactly_the_nth_calls() {
    let s = over_memory(FaultConfig {
        fail_calls: vec![3, 5],
        ..Default::default()
    });
    let mut outcomes = Vec::new();
    for i in 0..6 {
        let r = s.put(&format!("k{i}"), body(1), PutMode::Overwrite).await;
        if let Err(e) = &r {
            assert!(e.is_transient(), "{e}");
            assert!(e.to_string().contains(&format!("call {}", i + 1)), "{e}");
        }
        outcomes.push(r.is_ok());
    }
    assert_eq!(outcomes, [true, true, false, true, false, true]);
    assert_eq!((s.calls(), s.injected()), (6, 2));
    // A failed put stored nothing.
    let keys = crate::support::keys_under(&s, "").await;
    assert_eq!(keys, ["k0", "k1", "k3", "k5"]);
}

/// Which of 300 heads fail with `fail_fraction` and `seed`.
async fn failure_pattern(seed: u64, fraction: f64) -> Vec<bool> {
    let s = over_memory(FaultConfig::default());
    s.put("k", body(1), PutMode::Overwrite).await.unwrap();
    s.set_config(FaultConfig {
        seed,
        fail_fraction: fraction,
        ..Default::default()
    });
    let mut out = Vec::new();
    for _ in 0..300 {
        out.push(s.head("k").await.is_err());
    }
    out
}

#[tokio::test]
async fn fraction_of_failures_is_deterministic_from_the_seed() {
    let a = failure_pattern(42, 0.25).await;
    assert_eq!(a, failure_pattern(42, 0.25).await, "same seed, same faults");
    assert_ne!(a, failure_pattern(43, 0.25).await, "another seed differs");
    let failed = a.iter().filter(|f| **f).count();
    // 300 draws at p = 0.25: far outside 40..=110 would mean a broken generator.
    assert!((40..=110).contains(&failed), "{failed} of 300 failed");
    assert!(failure_pattern(1, 0.0).await.iter().all(|f| !f));
    assert!(failure_pattern(1, 1.0).await.iter().all(|f| *f));
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_to_every_call() {
    let s = over_memory(FaultConfig {
        latency: Duration::from_millis(40),
        latency_jitter: Duration::from_millis(20),
        ..Default::default()
    });
    let start = tokio::time::Instant::now();
    s.put("k", body(3), PutMode::Create).await.unwrap();
    s.get("k", GetOptions::default()).await.unwrap();
    s.head("k").await.unwrap();
    // Virtual time: three calls of 40..=60 ms each.
    let spent = start.elapsed();
    assert!(spent >= Duration::from_millis(120), "{spent:?}");
    assert!(spent <= Duration::from_millis(180), "{spent:?}");
}

#[tokio::test]
async fn cut_uploads_leave_nothing_after_abort() {
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalStore::open(dir.path().join("s")).unwrap());
    let s = FaultStore::new(
        local.clone(),
        FaultConfig {
            cut_upload_after: Some(10_000),
            ..Default::default()
        },
    );
    // A put over the limit fails and stores nothing; one under it works.
    let err = s
        .put("big", body(10_001), PutMode::Overwrite)
        .await
        .unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("cut"),
        "{err}"
    );
    assert!(matches!(
        local.head("big").await,
        Err(StoreError::NotFound { .. })
    ));
    s.put("small", body(10_000), PutMode::Overwrite)
        .await
        .unwrap();

    let mut up = s.put_multipart("multi").await.unwrap();
    up.put_part(body(4_000)).await.unwrap();
    up.put_part(body(4_000)).await.unwrap();
    assert!(
        up.put_part(body(4_000)).await.is_err(),
        "cut at 10 000 bytes"
    );
    assert!(up.put_part(body(1)).await.is_err(), "stays cut");
    assert!(!local.pending_uploads().await.unwrap().is_empty());
    up.abort().await.unwrap();
    assert!(local.pending_uploads().await.unwrap().is_empty());
    let keys = crate::support::keys_under(&*local, "").await;
    assert_eq!(keys, ["small"]);

    // Completing a cut upload fails and cleans up too.
    let mut up = s.put_multipart("multi").await.unwrap();
    assert!(up.put_part(body(20_000)).await.is_err());
    assert!(up.complete().await.is_err());
    assert!(local.pending_uploads().await.unwrap().is_empty());
    assert!(matches!(
        local.head("multi").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn stale_lists_miss_recent_writes() {
    let s = over_memory(FaultConfig {
        stale_list_fraction: 1.0,
        ..Default::default()
    });
    s.put("a", body(1), PutMode::Create).await.unwrap();
    let keys =
        |p: cardfs::store::ListPage| p.objects.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(keys(s.list("", None, 10).await.unwrap()), ["a"]);
    s.put("b", body(1), PutMode::Create).await.unwrap();
    s.delete("a").await.unwrap();
    assert_eq!(keys(s.list("", None, 10).await.unwrap()), ["a"], "stale");
    assert_eq!(
        keys(s.list("", None, 5).await.unwrap()),
        ["b"],
        "other args are fresh"
    );
    s.set_config(FaultConfig::default());
    assert_eq!(keys(s.list("", None, 10).await.unwrap()), ["b"]);
}

#[tokio::test]
async fn probe_detects_a_store_that_ignores_conditions() {
    let honest = over_memory(FaultConfig::default());
    honest.check_conditional_writes().await.unwrap();
    let liar = over_memory(FaultConfig {
        ignore_conditions: true,
        ..Default::default()
    });
    let err = liar.check_conditional_writes().await.unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionalWritesIgnored { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("ignores conditional writes") && text.contains("fault(memory:)"),
        "{text}"
    );
    // The probe cleaned up after itself even though it failed.
    assert!(liar.list_all("").await.unwrap().is_empty());
}

#[tokio::test]
async fn retrying_transient_faults_loses_nothing() {
    // What the engine does with Transient errors: retry. With a third of
    // all calls failing, every object still arrives intact.
    let s = over_memory(FaultConfig {
        seed: 7,
        fail_fraction: 0.33,
        ..Default::default()
    });
    for i in 0..50u8 {
        let key = format!("obj/{i}");
        loop {
            match s
                .put(&key, Bytes::from(vec![i; 100]), PutMode::Create)
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_transient() => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(s.injected() > 0);
    s.set_config(FaultConfig::default());
    for i in 0..50u8 {
        let got = s
            .get(&format!("obj/{i}"), GetOptions::default())
            .await
            .unwrap();
        assert_eq!(got.bytes.as_ref(), &[i; 100][..]);
    }
}

#[tokio::test]
async fn offline_fails_every_call_until_back() {
    let s = over_memory(FaultConfig::default());
    s.put("k", body(2), PutMode::Create).await.unwrap();
    s.set_offline(true);
    let errs = [
        s.put("new", body(1), PutMode::Create).await.map(|_| ()),
        s.get("k", GetOptions::default()).await.map(|_| ()),
        s.head("k").await.map(|_| ()),
        s.list("", None, 10).await.map(|_| ()),
        s.delete("k").await,
        s.put_multipart("up").await.map(|_| ()),
    ];
    for e in errs {
        let e = e.unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("offline"), "{e}");
    }
    assert_eq!((s.calls(), s.injected()), (7, 6));
    s.set_offline(false);
    // Nothing reached the store while it was offline.
    assert_eq!(crate::support::keys_under(&s, "").await, ["k"]);
    assert_eq!(
        s.get("k", GetOptions::default()).await.unwrap().bytes,
        body(2)
    );
}

#[tokio::test]
async fn refused_puts_fail_only_for_matching_keys() {
    use cardfs::store::KeyMatch;
    let s = over_memory(FaultConfig::default());
    s.put("v/1/l/0", body(1), PutMode::Create).await.unwrap();
    s.update_config(|c| {
        c.refuse_puts = vec![
            KeyMatch::Prefix("v/1/".into()),
            KeyMatch::Contains("/s/".into()),
        ]
    });
    for key in ["v/1/l/1", "v/2/s/0"] {
        let e = s.put(key, body(1), PutMode::Create).await.unwrap_err();
        assert!(e.is_transient() && e.to_string().contains(key), "{e}");
    }
    // Other keys, and reads of refused ones, still work.
    s.put("v/2/l/0", body(1), PutMode::Create).await.unwrap();
    s.put("c/x", body(1), PutMode::Create).await.unwrap();
    s.get("v/1/l/0", GetOptions::default()).await.unwrap();
    assert_eq!(
        crate::support::keys_under(&s, "").await,
        ["c/x", "v/1/l/0", "v/2/l/0"]
    );
    s.update_config(|c| c.refuse_puts.clear());
    s.put("v/1/l/1", body(1), PutMode::Create).await.unwrap();
    assert!(KeyMatch::Prefix("a/".into()).matches("a/b"));
    assert!(!KeyMatch::Prefix("b/".into()).matches("a/b/"));
    assert!(KeyMatch::Contains("/b/".into()).matches("a/b/c"));
}

#[tokio::test]
async fn every_nth_put_fails_counting_only_puts_that_reach_the_store() {
    use cardfs::store::KeyMatch;
    let s = over_memory(FaultConfig {
        fail_every_nth_put: 3,
        refuse_puts: vec![KeyMatch::Prefix("refused/".into())],
        ..Default::default()
    });
    let mut outcomes = Vec::new();
    for i in 0..7 {
        // Reads and refused puts between the puts do not move the count.
        s.head("nothing").await.unwrap_err();
        s.put(&format!("refused/{i}"), body(1), PutMode::Create)
            .await
            .unwrap_err();
        let r = s.put(&format!("k{i}"), body(1), PutMode::Create).await;
        if let Err(e) = &r {
            assert!(e.is_transient() && e.to_string().contains("put"), "{e}");
        }
        outcomes.push(r.is_ok());
    }
    assert_eq!(outcomes, [true, true, false, true, true, false, true]);
    assert_eq!(
        crate::support::keys_under(&s, "").await,
        ["k0", "k1", "k3", "k4", "k6"]
    );
}

#[tokio::test]
async fn calls_are_counted_by_kind() {
    use cardfs::store::CallCounts;
    let s = over_memory(FaultConfig::default());
    s.put("a", body(1), PutMode::Create).await.unwrap();
    s.put("b", body(1), PutMode::Create).await.unwrap();
    s.get("a", GetOptions::default()).await.unwrap();
    s.head("b").await.unwrap();
    s.list("", None, 10).await.unwrap();
    s.delete("a").await.unwrap();
    s.delete_many(&["b".to_string()]).await.unwrap();
    let mut up = s.put_multipart("m").await.unwrap();
    up.put_part(body(3)).await.unwrap();
    up.complete().await.unwrap();
    assert_eq!(
        s.counts(),
        CallCounts {
            writes: 5,
            reads: 3,
            deletes: 2,
        }
    );
    assert_eq!(s.calls(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_get_returns_only_when_released() {
    let s = over_memory(FaultConfig::default());
    s.put("c/block", body(5), PutMode::Create).await.unwrap();
    s.put("v/entry", body(6), PutMode::Create).await.unwrap();
    s.hold_next_get("c/");
    // A key outside the prefix is not held.
    let other = s.get("v/entry", GetOptions::default()).await.unwrap();
    assert_eq!(other.bytes, body(6));
    let held = {
        let s = s.clone();
        tokio::spawn(async move { s.get("c/block", GetOptions::default()).await })
    };
    s.wait_held().await;
    // Held: the fetch stays open while the test does other calls.
    s.head("c/block").await.unwrap();
    assert!(!held.is_finished());
    s.release_held();
    assert_eq!(held.await.unwrap().unwrap().bytes, body(5));
    // The hold was for one GET only.
    s.get("c/block", GetOptions::default()).await.unwrap();
}
