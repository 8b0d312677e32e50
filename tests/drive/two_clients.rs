//! Two engine instances (separate caches) on one store: changes by one are
//! visible to the other after a refresh; concurrent changes merge; a
//! concurrent edit of the same file keeps both versions (conflict copy).

use crate::support::drive::*;
use cardfs::drive::*;
use std::time::Duration;

async fn overwrite(d: &Drive, ino: Ino, data: &[u8]) {
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_become_visible_after_refresh() {
    let env = Env::new().await;
    let a = env.open_with("a").await;
    let b = env.open_with("b").await;
    let f = put(&a, ROOT_INO, "from-a", b"hello from a").await;
    sync(&a).await;
    assert!(b.lookup(ROOT_INO, os("from-a")).await.is_err());
    b.refresh().await.unwrap();
    assert_eq!(
        read_all(&b, lookup(&b, "from-a").await.unwrap()).await,
        b"hello from a"
    );
    // Renames, deletes and attribute changes travel too.
    a.rename(
        ROOT_INO,
        os("from-a"),
        ROOT_INO,
        os("renamed"),
        RenameFlags::default(),
    )
    .await
    .unwrap();
    a.setxattr(f, os("user.tag"), b"t", XattrSet::Any)
        .await
        .unwrap();
    sync(&a).await;
    b.refresh().await.unwrap();
    assert_eq!(names(&b, ROOT_INO).await, vec!["renamed"]);
    assert_eq!(b.getxattr(f, os("user.tag")).await.unwrap(), b"t");
    a.unlink(ROOT_INO, os("renamed")).await.unwrap();
    sync(&a).await;
    b.refresh().await.unwrap();
    assert!(names(&b, ROOT_INO).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresh_pulls_changes() {
    let env = Env::new().await;
    let a = env.open_with("a").await;
    let mut opts = env.opts("b");
    opts.refresh_interval = Duration::from_millis(50);
    let b = Drive::open_drive(env.store.clone(), env.id.clone(), opts)
        .await
        .unwrap();
    put(&a, ROOT_INO, "x", b"x").await;
    sync(&a).await;
    let mut seen = false;
    for _ in 0..400 {
        if b.lookup(ROOT_INO, os("x")).await.is_ok() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the background refresh never pulled the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_independent_changes_merge() {
    let env = Env::new().await;
    let a = env.open_with("a").await;
    let b = env.open_with("b").await;
    let shared = a
        .mkdir(ROOT_INO, os("shared"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    sync(&a).await;
    b.refresh().await.unwrap();
    put(&a, shared, "one", b"1").await;
    put(&b, shared, "two", b"2").await;
    b.mkdir(ROOT_INO, os("b-dir"), 0o755, WHO).await.unwrap();
    sync(&a).await;
    sync(&b).await; // one of the two loses the race, rebases, retries
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    for d in [&a, &b] {
        assert_eq!(names(d, shared).await, vec!["one", "two"]);
        assert_eq!(names(d, ROOT_INO).await, vec!["b-dir", "shared"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_keep_both_versions() {
    let env = Env::new().await;
    let a = env.open_with("a").await;
    let b = env.open_with("b").await;
    let f = put(&a, ROOT_INO, "doc.txt", b"base").await;
    sync(&a).await;
    b.refresh().await.unwrap();
    overwrite(&a, f, b"edited by a").await;
    overwrite(&b, f, b"edited by b, longer").await;
    sync(&a).await;
    sync(&b).await;
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    // Which edit stays under the name depends on which commit won; the
    // other is the conflict copy. Neither is lost, both clients agree.
    let mut seen = Vec::new();
    for d in [&a, &b] {
        let n = names(d, ROOT_INO).await;
        let mut contents = Vec::new();
        for name in &n {
            contents.push(
                String::from_utf8(read_all(d, lookup(d, name).await.unwrap()).await).unwrap(),
            );
        }
        assert_eq!(n.len(), 2, "{n:?} {contents:?}");
        assert_eq!(n[0], "doc.txt");
        assert!(n[1].starts_with("doc.txt.conflict-"), "{n:?}");
        let mut sorted = contents.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["edited by a", "edited by b, longer"], "{n:?}");
        seen.push(contents);
    }
    assert_eq!(seen[0], seen[1]);
    // Same name created on both sides: both files kept.
    put(&a, ROOT_INO, "new", b"a's new").await;
    put(&b, ROOT_INO, "new", b"b's new").await;
    sync(&a).await;
    sync(&b).await;
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    let n = names(&a, ROOT_INO).await;
    assert_eq!(n.len(), 4, "{n:?}");
    let copy = n.iter().find(|x| x.starts_with("new.conflict-")).unwrap();
    let mut both = vec![
        read_all(&a, lookup(&a, "new").await.unwrap()).await,
        read_all(&a, lookup(&a, copy).await.unwrap()).await,
    ];
    both.sort();
    assert_eq!(both, vec![b"a's new".to_vec(), b"b's new".to_vec()]);
    assert_eq!(names(&b, ROOT_INO).await, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_of_a_file_deleted_elsewhere_is_kept() {
    let env = Env::new().await;
    let a = env.open_with("a").await;
    let b = env.open_with("b").await;
    let f = put(&a, ROOT_INO, "gone", b"base").await;
    sync(&a).await;
    b.refresh().await.unwrap();
    a.unlink(ROOT_INO, os("gone")).await.unwrap();
    sync(&a).await;
    overwrite(&b, f, b"b kept editing").await;
    sync(&b).await;
    a.refresh().await.unwrap();
    let n = names(&a, ROOT_INO).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].starts_with("gone.conflict-"), "{n:?}");
    assert_eq!(
        read_all(&a, lookup(&a, &n[0]).await.unwrap()).await,
        b"b kept editing"
    );
}

/// A conflict decided in memory (a refresh turned this client's edit into
/// a conflict copy) survives a crash before the copy is committed: the
/// journal holds the copy, not the edit of a version that is gone (whose
/// replay on the other client's version would mix the two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_copy_survives_a_crash_before_its_commit() {
    let inner: std::sync::Arc<dyn cardfs::store::ObjectStore> =
        std::sync::Arc::new(cardfs::store::MemoryStore::new());
    let fault = faulty(inner.clone());
    let env = Env::with_store(fault.clone()).await;
    let a = env.open_with("a").await;
    let b = Drive::open_drive(inner.clone(), env.id.clone(), env.opts("b"))
        .await
        .unwrap();
    // Two blocks; A changes the first, B the second.
    let base = vec![7u8; 2 << 20];
    let f = put(&b, ROOT_INO, "doc.bin", &base).await;
    sync(&b).await;
    a.refresh().await.unwrap();
    // A's log puts fail from now on: its edit stays pending.
    refuse_commits(&fault);
    let patch = |d: Drive, at: usize, text: &'static [u8]| async move {
        let fh = d.open(f, libc::O_WRONLY).await.unwrap();
        d.write(f, fh, at as u64, text).await.unwrap();
        d.release(f, fh).await.unwrap();
        let mut v = vec![7u8; 2 << 20];
        v[at..at + text.len()].copy_from_slice(text);
        v
    };
    let mine = patch(a.clone(), 10, b"edited by a").await;
    let theirs = patch(b.clone(), (1 << 20) + 10, b"edited by b").await;
    sync(&b).await;
    a.refresh().await.unwrap();
    a.abandon().await;
    fault.update_config(|c| c.refuse_puts.clear());
    let a = env.open_with("a").await;
    sync(&a).await;
    let n = names(&a, ROOT_INO).await;
    assert_eq!(n.len(), 2, "{n:?}");
    let mut both = Vec::new();
    for name in &n {
        both.push(read_all(&a, lookup(&a, name).await.unwrap()).await);
    }
    let mut want = vec![mine, theirs];
    both.sort();
    want.sort();
    assert!(both == want, "{n:?}: a version was lost or mixed");
}
