//! `Drive::history` and `Drive::restore`: the versions of a file (and of
//! a deleted one) from the log; each version's bytes restored; a folder
//! restored with its subtree (hard links and symlinks kept); restores in a
//! shared folder and the EXDEV rule across volumes; a version whose
//! content was collected fails whole; never an overwrite (engine level,
//! MemoryStore).

use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;
use std::time::SystemTime;

async fn overwrite(d: &Drive, ino: Ino, bytes: &[u8]) {
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, bytes).await.unwrap();
    d.release(ino, fh).await.unwrap();
    sync(d).await;
}

fn beside(suffix: &str) -> RestoreTo {
    RestoreTo::Default {
        suffix: suffix.into(),
    }
}

fn to(path: &str) -> RestoreTo {
    RestoreTo::Path(path.as_bytes().to_vec())
}

async fn read_path(d: &Drive, path: &str) -> Vec<u8> {
    read_all(d, lookup(d, path).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_a_deleted_file_comes_back() {
    let env = Env::new().await;
    let d = env.open().await;
    let docs = d.mkdir(ROOT_INO, os("docs"), 0o755, WHO).await.unwrap().ino;
    let v = [
        pattern((1 << 20) + 300, 1),
        b"version two".to_vec(),
        pattern(200_000, 3),
    ];
    let f = put(&d, docs, "f", &v[0]).await;
    sync(&d).await;
    overwrite(&d, f, &v[1]).await;
    overwrite(&d, f, &v[2]).await;
    d.unlink(docs, os("f")).await.unwrap();
    sync(&d).await;

    let h = d.history(b"docs/f").await.unwrap();
    // The committer may land a write in parts: versions in between.
    let changes: Vec<Change> = h.iter().map(|v| v.change).collect();
    assert_eq!(changes[0], Change::Created, "{h:?}");
    assert_eq!(changes[h.len() - 1], Change::Deleted, "{h:?}");
    assert!(
        changes[1..h.len() - 1]
            .iter()
            .all(|c| *c == Change::Modified),
        "{h:?}"
    );
    assert!(h.iter().all(|v| v.this_client && v.kind == FileKind::File));
    assert!(
        h.windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].time <= w[1].time)
    );
    // The version holding each of v, by its (distinct) size.
    let at = |bytes: &[u8]| {
        let i = h
            .iter()
            .rposition(|x| x.size == bytes.len() as u64 && x.change != Change::Deleted);
        h[i.unwrap_or_else(|| panic!("no version of {} bytes: {h:?}", bytes.len()))].time
    };
    let t = [at(&v[0]), at(&v[1]), at(&v[2])];
    assert!(t[0] < t[1] && t[1] < t[2]);

    // Before it existed: nothing to restore.
    let before = h[0].time - std::time::Duration::from_nanos(1);
    let err = d.restore(b"docs/f", before, beside("x")).await.unwrap_err();
    assert!(matches!(err, DriveError::NotFound), "{err:?}");
    // Each version, at its entry's time. The first goes back to its own
    // name (free now), the others beside it.
    let r = d.restore(b"docs/f", t[0], beside("v1")).await.unwrap();
    assert_eq!((r.dest.as_slice(), r.restored.nodes), (&b"docs/f"[..], 1));
    assert_eq!(r.restored.bytes, v[0].len() as u64);
    assert_eq!(read_path(&d, "docs/f").await, v[0]);
    for (i, name) in [(1, "v2"), (2, "v3")] {
        let r = d.restore(b"docs/f", t[i], beside(name)).await.unwrap();
        let want = format!("docs/f.restored-{name}");
        assert_eq!(r.dest, want.as_bytes());
        assert_eq!(read_path(&d, &want).await, v[i]);
    }
    // Never over anything: the same suffix again is refused.
    let err = d.restore(b"docs/f", t[1], beside("v2")).await.unwrap_err();
    assert!(matches!(err, DriveError::Exists), "{err:?}");
    let err = d.restore(b"docs/f", t[1], to("docs/f")).await.unwrap_err();
    assert!(matches!(err, DriveError::Exists), "{err:?}");
    // The restores are new versions in the history, and the drive reads
    // the same from an empty cache.
    sync(&d).await;
    let h2 = d.history(b"docs/f").await.unwrap();
    assert_eq!(h2.last().unwrap().change, Change::Created, "{h2:?}");
    d.shutdown().await.unwrap();
    let fresh = env.open_with("fresh").await;
    assert_eq!(read_path(&fresh, "docs/f").await, v[0]);
    assert_eq!(read_path(&fresh, "docs/f.restored-v3").await, v[2]);
    fresh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_folder_comes_back_with_its_subtree() {
    let env = Env::new().await;
    let d = env.open().await;
    let proj = d.mkdir(ROOT_INO, os("proj"), 0o750, WHO).await.unwrap().ino;
    let sub = d.mkdir(proj, os("sub"), 0o755, WHO).await.unwrap().ino;
    let a = put(&d, proj, "a", &pattern(3 << 20, 7)).await;
    put(&d, sub, "b", b"bee").await;
    d.link(a, sub, os("a-link")).await.unwrap();
    d.symlink(proj, os("to-b"), std::path::Path::new("sub/b"), WHO)
        .await
        .unwrap();
    sync(&d).await;
    let at = SystemTime::now();
    // Ransomware: everything overwritten, then removed.
    overwrite(&d, a, b"encrypted!").await;
    for (dir, name) in [(sub, "b"), (sub, "a-link"), (proj, "a"), (proj, "to-b")] {
        d.unlink(dir, os(name)).await.unwrap();
    }
    d.rmdir(proj, os("sub")).await.unwrap();
    d.rmdir(ROOT_INO, os("proj")).await.unwrap();
    sync(&d).await;
    assert!(lookup(&d, "proj").await.is_err());

    // A file of the deleted folder cannot come back beside nothing.
    let err = d.restore(b"proj/a", at, beside("x")).await.unwrap_err();
    assert!(matches!(err, DriveError::Invalid(_)), "{err:?}");
    let h = d.history(b"proj/sub/b").await.unwrap();
    assert_eq!(h.last().unwrap().change, Change::Deleted);

    let r = d.restore(b"proj", at, beside("x")).await.unwrap();
    assert_eq!(r.dest, b"proj");
    assert_eq!(r.restored.nodes, 5, "proj, sub, a, b, to-b");
    assert_eq!(
        names(&d, lookup(&d, "proj").await.unwrap()).await,
        ["a", "sub", "to-b"]
    );
    assert_eq!(read_path(&d, "proj/a").await, pattern(3 << 20, 7));
    assert_eq!(read_path(&d, "proj/sub/a-link").await, pattern(3 << 20, 7));
    assert_eq!(read_path(&d, "proj/sub/b").await, b"bee");
    let a2 = lookup(&d, "proj/a").await.unwrap();
    assert_eq!(d.getattr(a2).await.unwrap().nlink, 2);
    assert_eq!(lookup(&d, "proj/sub/a-link").await.unwrap(), a2);
    let link = lookup(&d, "proj/to-b").await.unwrap();
    assert_eq!(d.readlink(link).await.unwrap(), b"sub/b");
    assert_eq!(
        d.getattr(lookup(&d, "proj").await.unwrap())
            .await
            .unwrap()
            .perm,
        0o750
    );
    // The same state again, elsewhere; then the restored copies are
    // independent of each other.
    d.mkdir(ROOT_INO, os("backup"), 0o755, WHO).await.unwrap();
    d.restore(b"proj", at, to("backup/proj")).await.unwrap();
    overwrite(&d, a2, b"changed after the restore").await;
    assert_eq!(read_path(&d, "backup/proj/a").await, pattern(3 << 20, 7));
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_in_a_shared_folder_stay_in_its_volume() {
    let env = Env::new().await;
    let d = env.open().await;
    let team = d.mkdir(ROOT_INO, os("team"), 0o755, WHO).await.unwrap().ino;
    put(&d, team, "doc", b"first draft").await;
    sync(&d).await;
    let bob = Identity::generate();
    d.share_add(team, bob.member(Role::Writer)).await.unwrap();
    sync(&d).await;
    let doc = lookup(&d, "team/doc").await.unwrap();
    overwrite(&d, doc, b"second draft").await;
    let h = d.history(b"team/doc").await.unwrap();
    // The shared folder's own history: its state when it was shared (its
    // first snapshot), then the edit (perhaps in two entries: the
    // truncation, then the write).
    assert_eq!(h[0].change, Change::Present, "{h:?}");
    assert!(h[1..].iter().all(|v| v.change == Change::Modified), "{h:?}");
    assert_eq!(h.last().unwrap().size, 12);
    let r = d
        .restore(b"team/doc", h[0].time, beside("old"))
        .await
        .unwrap();
    assert_eq!(r.dest, b"team/doc.restored-old");
    assert_eq!(read_path(&d, "team/doc.restored-old").await, b"first draft");
    // Across the shared folder's boundary: EXDEV, nothing restored.
    let err = d
        .restore(b"team/doc", h[0].time, to("doc"))
        .await
        .unwrap_err();
    assert!(matches!(err, DriveError::CrossDevice), "{err:?}");
    assert!(lookup(&d, "doc").await.is_err());
    // The shared folder's root itself needs a destination.
    let err = d
        .restore(b"team", h[0].time, beside("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, DriveError::Invalid(_)), "{err:?}");
    sync(&d).await;
    // Bob, a member, sees the restored file.
    let b = Drive::open_drive(env.store.clone(), bob, env.opts("bob"))
        .await
        .unwrap();
    assert_eq!(read_path(&b, "team/doc.restored-old").await, b"first draft");
    b.shutdown().await.unwrap();
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_content_is_gone_is_not_restored() {
    let env = Env::new().await;
    let d = env.open().await;
    let before = keys_under(env.store.as_ref(), "c/").await;
    let f = put(&d, ROOT_INO, "f", &pattern(100_000, 1)).await;
    sync(&d).await;
    let t = SystemTime::now();
    let v1: Vec<String> = keys_under(env.store.as_ref(), "c/")
        .await
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    overwrite(&d, f, b"v2").await;
    // The old version's object is collected (gone from store and cache).
    env.store.delete(&v1[0]).await.unwrap();
    d.shutdown().await.unwrap();
    let d = env.open_with("fresh").await;
    let err = d.restore(b"f", t, beside("v1")).await.unwrap_err();
    assert_eq!(tampered_object(err), v1[0]);
    assert!(lookup(&d, "f.restored-v1").await.is_err());
    d.shutdown().await.unwrap();
}
