//! Local-store behaviour beyond the conformance suite: conditional puts
//! stay atomic across processes (two mounts of one store), and a store
//! directory is recognised or refused.

use bytes::Bytes;
use cardfs::store::{LocalStore, ObjectStore, PutMode, StoreError};
use std::process::Command;

const CHILD_ENV: &str = "CARDFS_TEST_LOCAL_CHILD_STORE";

/// Run by `create_race_across_processes` in child processes (ignored in a
/// normal run): one create-only put, answering WON or LOST on stdout.
#[tokio::test]
#[ignore = "child process of create_race_across_processes"]
async fn child_create_writer() {
    let dir = std::env::var(CHILD_ENV).expect("run by the parent test");
    let store = LocalStore::open(&dir).expect("open store");
    let me = std::process::id().to_string();
    match store.put("race", Bytes::from(me), PutMode::Create).await {
        Ok(_) => println!("RESULT=WON"),
        Err(StoreError::PreconditionFailed { .. }) => println!("RESULT=LOST"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn create_race_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    LocalStore::open(&root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let child_test = crate::support::test_name(module_path!(), "child_create_writer");
    let children: Vec<_> = (0..12)
        .map(|_| {
            Command::new(&exe)
                .args(["--ignored", "--exact", &child_test, "--nocapture"])
                .env(CHILD_ENV, &root)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut won = 0;
    let mut lost = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        won += text.matches("RESULT=WON").count();
        lost += text.matches("RESULT=LOST").count();
    }
    assert_eq!((won, lost), (1, 11));
}

#[tokio::test]
async fn refuses_foreign_directories_and_reopens_its_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("someone-elses-file"), b"x").unwrap();
    let err = LocalStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a cardfs store"), "{err}");

    let root = dir.path().join("store");
    let store = LocalStore::open(&root).unwrap();
    store
        .put("a/b", Bytes::from_static(b"kept"), PutMode::Create)
        .await
        .unwrap();
    drop(store);
    let store = LocalStore::open(&root).unwrap();
    let got = store.get("a/b", Default::default()).await.unwrap();
    assert_eq!(got.bytes.as_ref(), b"kept");

    std::fs::write(
        root.join("cardfs-store"),
        "cardfs local object store, layout 9\n",
    )
    .unwrap();
    let err = LocalStore::open(&root).unwrap_err();
    assert!(err.to_string().contains("layout 9"), "{err}");
}

#[tokio::test]
async fn foreign_files_inside_are_ignored_and_nothing_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::open(&root).unwrap();
    store
        .put("x/..y/.z", Bytes::from_static(b"1"), PutMode::Create)
        .await
        .unwrap();
    std::fs::write(root.join("objects/stray+file"), b"?").unwrap();
    std::fs::write(root.join("objects/%zz"), b"?").unwrap();
    let keys = crate::support::keys_under(&store, "").await;
    assert_eq!(keys, ["x/..y/.z"]);
    // Every file the store made lives under objects/, none is hidden.
    for entry in walk(&root.join("objects")) {
        let name = entry.file_name().unwrap().to_str().unwrap().to_string();
        assert!(!name.starts_with('.'), "{entry:?}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
