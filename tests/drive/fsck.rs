//! `Drive::fsck`: a clean drive checks clean; a deleted content object is
//! reported missing with the paths naming it; a flipped byte is found by
//! `verify_content` (and only the size is checked without it); orphaned
//! objects (older versions) are counted; a damaged log entry is named;
//! only the owner may run it (engine level, MemoryStore).

use crate::support::drive::*;
use crate::support::pattern;
use bytes::Bytes;
use cardfs::drive::*;
use cardfs::store::{ObjectStore, PutMode};
use std::path::PathBuf;

async fn fsck(d: &Drive, verify_content: bool) -> FsckReport {
    d.fsck(FsckOptions { verify_content }, &|_, _| {})
        .await
        .unwrap()
}

/// Content objects in the store now that are not in `seen`; adds them.
async fn new_objects(store: &dyn ObjectStore, seen: &mut Vec<String>) -> Vec<String> {
    let now = keys_under(store, "c/").await;
    let fresh: Vec<String> = now.iter().filter(|k| !seen.contains(k)).cloned().collect();
    seen.extend(fresh.iter().cloned());
    fresh
}

fn paths(p: &FsckProblem) -> Vec<String> {
    let mut v: Vec<String> = p.paths.iter().map(|p| p.display().to_string()).collect();
    v.sort();
    v
}

/// A drive with a folder, a two-block file in it, a hard link to it, a
/// small file, and a shared folder holding one file; all committed.
/// Returns the content objects of the two-block file and of the shared one.
async fn populated(env: &Env, d: &Drive) -> (Vec<String>, Vec<String>, Identity) {
    let mut seen = keys_under(env.store.as_ref(), "c/").await;
    let docs = d.mkdir(ROOT_INO, os("docs"), 0o755, WHO).await.unwrap().ino;
    let big = put(d, docs, "big", &pattern((1 << 20) + 5000, 1)).await;
    d.link(big, ROOT_INO, os("big-link")).await.unwrap();
    sync(d).await;
    let big_objects = new_objects(env.store.as_ref(), &mut seen).await;
    put(d, ROOT_INO, "small", b"a small file").await;
    let shared = d.mkdir(ROOT_INO, os("team"), 0o755, WHO).await.unwrap().ino;
    put(d, shared, "notes", b"shared notes").await;
    sync(d).await;
    let bob = Identity::generate();
    d.share_add(shared, bob.member(Role::Writer)).await.unwrap();
    sync(d).await;
    new_objects(env.store.as_ref(), &mut seen).await;
    let team = lookup(d, "team").await.unwrap();
    put(d, team, "later", b"written in the shared folder").await;
    sync(d).await;
    let shared_objects = new_objects(env.store.as_ref(), &mut seen).await;
    (big_objects, shared_objects, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_drive_checks_clean_with_every_object_counted() {
    let env = Env::new().await;
    let d = env.open().await;
    populated(&env, &d).await;
    for verify in [false, true] {
        let r = fsck(&d, verify).await;
        assert!(r.is_clean(), "{:?}", r.problems);
        assert_eq!(r.content_verified, verify);
        // big's first block alone; its 5,000-byte tail in a pack; small
        // and notes (written between the same two syncs) in one pack, or
        // two if a background commit came between them; later in a pack
        // of the shared folder's volume. Every object in the store.
        let stored = keys_under(env.store.as_ref(), "c/").await.len() as u64;
        assert_eq!(r.referenced_objects, stored);
        assert!((4..=5).contains(&stored), "{stored}");
        assert_eq!(r.orphan_objects, 0);
        assert_eq!(r.volumes.len(), 2);
        let root = r.volumes.iter().find(|v| v.path == Some(PathBuf::new()));
        let team = r.volumes.iter().find(|v| v.path == Some("team".into()));
        let (root, team) = (root.unwrap(), team.unwrap());
        assert!(!root.failed && !team.failed);
        assert!(root.log_entries >= 4, "{root:?}");
        assert_eq!((team.nodes, team.block_refs), (3, 2), "{team:?}");
        // big (2 blocks, two names), small: five block refs in all.
        assert_eq!(root.block_refs + team.block_refs, 5, "{root:?}");
        assert_eq!(
            team.snapshots_checked, 1,
            "the new volume's snapshot: {team:?}"
        );
    }
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_is_reported_with_every_path_naming_it() {
    let env = Env::new().await;
    let d = env.open().await;
    let (big, shared, _) = populated(&env, &d).await;
    assert_eq!((big.len(), shared.len()), (2, 1));
    env.store.delete(&big[1]).await.unwrap();
    env.store.delete(&shared[0]).await.unwrap();
    for verify in [false, true] {
        let r = fsck(&d, verify).await;
        let mut problems = r.problems.clone();
        problems.sort_by_key(|p| p.object.clone());
        let mut want = [big[1].clone(), shared[0].clone()];
        want.sort();
        assert_eq!(
            problems.iter().map(|p| &p.object).collect::<Vec<_>>(),
            want.iter().collect::<Vec<_>>()
        );
        assert!(problems.iter().all(|p| p.kind == ProblemKind::Missing));
        let of = |key: &str| problems.iter().find(|p| p.object == key).unwrap();
        assert_eq!(paths(of(&big[1])), ["big-link", "docs/big"]);
        assert_eq!(paths(of(&shared[0])), ["team/later"]);
    }
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_found_by_verifying_content() {
    let env = Env::new().await;
    let d = env.open().await;
    let (big, _, _) = populated(&env, &d).await;
    let mut bytes = object_bytes(env.store.as_ref(), &big[0]).await;
    bytes[100] ^= 0x01;
    env.store
        .put(&big[0], Bytes::from(bytes), PutMode::Overwrite)
        .await
        .unwrap();
    // Same size: only decrypting finds it.
    assert!(fsck(&d, false).await.is_clean());
    let r = fsck(&d, true).await;
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert_eq!(
        (p.kind, p.object.as_str()),
        (ProblemKind::Damaged, big[0].as_str())
    );
    assert_eq!(paths(p), ["big-link", "docs/big"]);
    // A shortened object is found from the listing alone.
    let bytes = object_bytes(env.store.as_ref(), &big[1]).await;
    env.store
        .put(
            &big[1],
            Bytes::copy_from_slice(&bytes[..bytes.len() - 1]),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    let r = fsck(&d, false).await;
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].object, big[1]);
    assert!(
        r.problems[0].reason.contains("bytes"),
        "{}",
        r.problems[0].reason
    );
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_versions_and_deleted_files_are_counted_as_orphans() {
    let env = Env::new().await;
    let (store, d) = env.open_faulty("cache").await;
    let mut seen = Vec::new();
    let f = put(&d, ROOT_INO, "f", b"version one").await;
    sync(&d).await;
    let v1 = new_objects(env.store.as_ref(), &mut seen).await;
    let fh = d.open(f, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(f, fh, 0, b"version two").await.unwrap();
    d.release(f, fh).await.unwrap();
    put(&d, ROOT_INO, "gone", &pattern(70_000, 3)).await;
    sync(&d).await;
    d.unlink(ROOT_INO, os("gone")).await.unwrap();
    sync(&d).await;
    let later = new_objects(env.store.as_ref(), &mut seen).await;
    assert_eq!((v1.len(), later.len()), (1, 2));
    // Orphans: "version one" and the deleted file (the larger new object).
    let size = |k: String| {
        let store = env.store.clone();
        async move { store.head(&k).await.unwrap().size }
    };
    let (a, b) = (size(later[0].clone()).await, size(later[1].clone()).await);
    let orphaned = size(v1[0].clone()).await + a.max(b);
    let r = fsck(&d, false).await;
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(r.referenced_objects, 1);
    assert_eq!(r.orphan_objects, 2);
    assert_eq!(r.orphan_bytes, orphaned);
    // An object this mount holds but has not committed is no orphan. The
    // store refuses log entries meanwhile: otherwise the background commit
    // may land before the fsck (it did on a loaded machine) and rightly
    // make "version two" an orphan.
    refuse_commits(&store);
    let fh = d.open(f, libc::O_WRONLY).await.unwrap();
    d.write(f, fh, 0, b"version three").await.unwrap();
    d.flush(f, fh).await.unwrap();
    assert_eq!(fsck(&d, false).await.orphan_objects, 2);
    d.release(f, fh).await.unwrap();
    // Once committed, "version two" is the orphan.
    store.update_config(|c| c.refuse_puts.clear());
    sync(&d).await;
    let r = fsck(&d, false).await;
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!((r.referenced_objects, r.orphan_objects), (1, 3));
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_entry_or_snapshot_is_named_and_members_may_not_check() {
    let env = Env::new().await;
    let d = env.open().await;
    let (_, _, bob) = populated(&env, &d).await;
    let member = Drive::open_drive(env.store.clone(), bob, env.opts("bob"))
        .await
        .unwrap();
    let refused = member.fsck(FsckOptions::default(), &|_, _| {}).await;
    assert!(
        matches!(refused, Err(DriveError::NotPermitted)),
        "{refused:?}"
    );
    member.shutdown().await.unwrap();
    let root = hex(&read_header(env.store.as_ref()).await.unwrap().root_volume);
    let entry = format!("v/{root}/l/{:016x}", 2);
    let mut bytes = object_bytes(env.store.as_ref(), &entry).await;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    env.store
        .put(&entry, Bytes::from(bytes), PutMode::Overwrite)
        .await
        .unwrap();
    // And the shared folder's snapshot (its only one).
    let snapshots: Vec<String> = keys_under(env.store.as_ref(), "v/")
        .await
        .into_iter()
        .filter(|k| k.contains("/s/"))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let mut bytes = object_bytes(env.store.as_ref(), &snapshots[0]).await;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    env.store
        .put(&snapshots[0], Bytes::from(bytes), PutMode::Overwrite)
        .await
        .unwrap();
    let r = fsck(&d, false).await;
    for object in [&entry, &snapshots[0]] {
        assert!(
            r.problems
                .iter()
                .any(|p| p.kind == ProblemKind::Metadata && &p.object == object),
            "{object}: {:?}",
            r.problems
        );
    }
    let failed: Vec<_> = r.volumes.iter().filter(|v| v.failed).collect();
    assert_eq!(
        failed.len(),
        1,
        "only the root volume fails: {:?}",
        r.volumes
    );
    d.shutdown().await.unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
