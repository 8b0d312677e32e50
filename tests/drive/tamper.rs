//! Attacks by the store on every kind of object the engine writes: flipped
//! bytes, swapped objects, deleted objects, replayed older versions,
//! rollback and fork. Each must end in a typed refusal (`Tampered` naming
//! the altered object, or `Rollback`), which the FUSE edge maps to EIO,
//! never in wrong data. Also: the store never sees names or contents (marker test).

use crate::support::drive::*;
use bytes::Bytes;
use cardfs::drive::*;
use cardfs::store::{MemoryStore, ObjectStore, PutMode};
use std::sync::Arc;

pub(crate) async fn get(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    object_bytes(store, key).await
}

pub(crate) async fn set(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    store
        .put(key, Bytes::from(bytes), PutMode::Overwrite)
        .await
        .unwrap();
}

async fn flip(store: &dyn ObjectStore, key: &str, at: usize) {
    let mut b = get(store, key).await;
    let i = at.min(b.len() - 1);
    b[i] ^= 0x40;
    set(store, key, b).await;
}

/// Keys with `kind` ("l", "s": under `v/<volume>/`; "k": keyrings under
/// `k/<volume>/`) of the root volume.
async fn volume_keys(store: &dyn ObjectStore, kind: &str) -> Vec<String> {
    if kind == "k" {
        return keys_under(store, "k/").await;
    }
    keys_under(store, "v/")
        .await
        .into_iter()
        .filter(|k| k.split('/').nth(2) == Some(kind))
        .collect()
}

/// A deep copy of a memory store (a second, independent store).
async fn copy(store: &dyn ObjectStore) -> MemoryStore {
    let out = MemoryStore::new();
    for k in keys_under(store, "").await {
        out.put(&k, Bytes::from(get(store, &k).await), PutMode::Overwrite)
            .await
            .unwrap();
    }
    out
}

async fn open_err(env: &Env, cache: &str) -> DriveError {
    Drive::open_drive(env.store.clone(), env.id.clone(), env.opts(cache))
        .await
        .expect_err("open must refuse")
}

/// Two files of equal size, committed; returns their inodes.
async fn two_files(env: &Env) -> (Ino, Ino) {
    let d = env.open().await;
    let a = put(&d, ROOT_INO, "a", &vec![b'a'; 200_000]).await;
    sync(&d).await;
    let b = put(&d, ROOT_INO, "b", &vec![b'b'; 200_000]).await;
    sync(&d).await;
    d.shutdown().await.unwrap();
    (a, b)
}

async fn read_err(d: &Drive, ino: Ino) -> DriveError {
    let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    let r = d.read(ino, fh, 0, 300_000).await;
    d.release(ino, fh).await.unwrap();
    match r {
        Ok(bytes) => panic!("read returned {} bytes from a tampered object", bytes.len()),
        Err(e) => e,
    }
}

#[tokio::test]
async fn content_flip_swap_delete_replay() {
    let env = Env::new().await;
    let (a, b) = two_files(&env).await;
    let content = keys_under(env.store.as_ref(), "c/").await;
    assert_eq!(content.len(), 2);
    let (ka, kb) = (content[0].clone(), content[1].clone());
    let (va, vb) = (
        get(env.store.as_ref(), &ka).await,
        get(env.store.as_ref(), &kb).await,
    );

    // Flipped byte (fresh cache each time, so the store is read).
    flip(env.store.as_ref(), &ka, 70_000).await;
    // Only the file whose block was flipped fails, naming that block (the
    // key order says nothing about which file owns it).
    let d = env.open_with("flip").await;
    assert_eq!(failed_objects(&d, [a, b]).await, [ka.as_str()], "flip");
    set(env.store.as_ref(), &ka, va.clone()).await;

    // Swapped objects: each name now holds the other file's block.
    set(env.store.as_ref(), &ka, vb.clone()).await;
    set(env.store.as_ref(), &kb, va.clone()).await;
    let d = env.open_with("swap").await;
    let mut named = [
        tampered_object(read_err(&d, a).await),
        tampered_object(read_err(&d, b).await),
    ];
    named.sort();
    let mut want = [ka.clone(), kb.clone()];
    want.sort();
    assert_eq!(named, want, "each file names its own swapped block");
    set(env.store.as_ref(), &ka, va.clone()).await;
    set(env.store.as_ref(), &kb, vb.clone()).await;

    // Deleted object.
    env.store.delete(&ka).await.unwrap();
    let d = env.open_with("delete").await;
    assert_eq!(failed_objects(&d, [a, b]).await, [ka.as_str()], "delete");
    set(env.store.as_ref(), &ka, va.clone()).await;

    // Replay: rewrite file a, then put the old block under the new name.
    let d = env.open_with("replay").await;
    let fh = d.open(a, libc::O_WRONLY).await.unwrap();
    d.write(a, fh, 0, &vec![b'A'; 200_000]).await.unwrap();
    d.release(a, fh).await.unwrap();
    sync(&d).await;
    d.shutdown().await.unwrap();
    let now: Vec<String> = keys_under(env.store.as_ref(), "c/").await;
    let new_key = now.iter().find(|k| **k != ka && **k != kb).unwrap().clone();
    set(env.store.as_ref(), &new_key, va.clone()).await;
    let d = env.open_with("replay2").await;
    assert_eq!(tampered_object(read_err(&d, a).await), new_key);
    // The untouched file still reads correctly.
    assert_eq!(read_all(&d, b).await, vec![b'b'; 200_000]);
}

/// The objects named by the reads of `inos` that fail (each must fail as
/// `Tampered`); the reads that succeed return the file's own bytes.
async fn failed_objects(d: &Drive, inos: [Ino; 2]) -> Vec<String> {
    let mut out = Vec::new();
    for ino in inos {
        if let Some(e) = read_err_or_ok(d, ino).await {
            out.push(tampered_object(e));
        }
    }
    out
}

async fn read_err_or_ok(d: &Drive, ino: Ino) -> Option<DriveError> {
    let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    let r = d.read(ino, fh, 0, 300_000).await;
    d.release(ino, fh).await.unwrap();
    match r {
        Ok(bytes) => {
            assert!(bytes.iter().all(|x| *x == bytes[0]), "wrong bytes returned");
            None
        }
        Err(e) => Some(e),
    }
}

#[tokio::test]
async fn log_entry_flip_swap_delete_replay() {
    let env = Env::new().await;
    two_files(&env).await;
    let log = volume_keys(env.store.as_ref(), "l").await;
    assert!(log.len() >= 3, "genesis plus commits: {log:?}");
    let (k1, k2) = (log[1].clone(), log[2].clone());
    let (v1, v2) = (
        get(env.store.as_ref(), &k1).await,
        get(env.store.as_ref(), &k2).await,
    );

    for at in [0, 10, 60, 200, v1.len() - 1] {
        flip(env.store.as_ref(), &k1, at).await;
        assert_eq!(
            tampered_object(open_err(&env, "flip").await),
            k1,
            "flip at {at}"
        );
        set(env.store.as_ref(), &k1, v1.clone()).await;
    }
    // Swap entries 1 and 2.
    set(env.store.as_ref(), &k1, v2.clone()).await;
    set(env.store.as_ref(), &k2, v1.clone()).await;
    assert_eq!(tampered_object(open_err(&env, "swap").await), k1);
    set(env.store.as_ref(), &k1, v1.clone()).await;
    set(env.store.as_ref(), &k2, v2.clone()).await;
    // Delete an entry in the middle.
    env.store.delete(&k1).await.unwrap();
    assert_eq!(tampered_object(open_err(&env, "gap").await), k1);
    set(env.store.as_ref(), &k1, v1.clone()).await;
    // Replay an older entry at a later position.
    let last = log.last().unwrap().clone();
    let vl = get(env.store.as_ref(), &last).await;
    set(env.store.as_ref(), &last, v1.clone()).await;
    assert_eq!(tampered_object(open_err(&env, "replay").await), last);
    set(env.store.as_ref(), &last, vl).await;
    // Untouched, it opens.
    env.open_with("fine").await;
}

#[tokio::test]
async fn rollback_and_fork_are_refused() {
    let env = Env::new().await;
    let d = env.open().await;
    put(&d, ROOT_INO, "one", b"1").await;
    sync(&d).await;
    let old = copy(env.store.as_ref()).await;
    put(&d, ROOT_INO, "two", b"2").await;
    sync(&d).await;
    d.shutdown().await.unwrap();

    // Rollback: the store goes back to the older state (entries removed).
    let newest = volume_keys(env.store.as_ref(), "l").await;
    let older = volume_keys(&old, "l").await;
    let saved: Vec<(String, Vec<u8>)> = {
        let mut v = Vec::new();
        for k in newest.iter().filter(|k| !older.contains(k)) {
            v.push((k.clone(), get(env.store.as_ref(), k).await));
            env.store.delete(k).await.unwrap();
        }
        v
    };
    match open_err(&env, "cache").await {
        DriveError::Rollback { known, offered, .. } => assert!(known > offered),
        e => panic!("expected rollback, got {e}"),
    }
    for (k, v) in saved {
        set(env.store.as_ref(), &k, v).await;
    }

    // Fork: another client writes a different entry at the same position
    // in a copy of the older state; our client must refuse that history.
    let forked: Arc<dyn ObjectStore> = Arc::new(old);
    let other = Drive::open_drive(forked.clone(), env.id.clone(), env.opts("other"))
        .await
        .unwrap();
    put(&other, ROOT_INO, "different", b"x").await;
    sync(&other).await;
    other.shutdown().await.unwrap();
    let e = Drive::open_drive(forked, env.id.clone(), env.opts("cache"))
        .await
        .expect_err("fork accepted");
    assert!(matches!(e, DriveError::Rollback { .. }), "{e}");
    assert_eq!(e.errno(), libc::EIO);
    // The real store still opens.
    env.open().await;
}

#[tokio::test]
async fn snapshot_flip_swap_replay() {
    let env = Env::new().await;
    let d = env.open().await;
    for i in 0..(SNAPSHOT_EVERY * 2 + 3) {
        put(&d, ROOT_INO, &format!("f{i}"), format!("{i}").as_bytes()).await;
        sync(&d).await;
    }
    d.shutdown().await.unwrap();
    let snaps = volume_keys(env.store.as_ref(), "s").await;
    assert!(snaps.len() >= 2, "snapshots written: {snaps:?}");
    // A fresh client opens from the newest snapshot and sees everything.
    let fresh = env.open_with("fresh").await;
    assert_eq!(
        names(&fresh, ROOT_INO).await.len() as u64,
        SNAPSHOT_EVERY * 2 + 3
    );
    assert_eq!(
        read_all(&fresh, lookup(&fresh, "f7").await.unwrap()).await,
        b"7"
    );
    let newest = snaps.last().unwrap().clone();
    let v = get(env.store.as_ref(), &newest).await;
    flip(env.store.as_ref(), &newest, 100).await;
    assert_eq!(tampered_object(open_err(&env, "flip").await), newest);
    // An older snapshot replayed under the newest name.
    set(
        env.store.as_ref(),
        &newest,
        get(env.store.as_ref(), &snaps[0]).await,
    )
    .await;
    assert_eq!(tampered_object(open_err(&env, "replay").await), newest);
    set(env.store.as_ref(), &newest, v).await;
    // Deleting the newest snapshot falls back to the log: same tree.
    env.store.delete(&newest).await.unwrap();
    let d = env.open_with("nosnap").await;
    assert_eq!(
        names(&d, ROOT_INO).await.len() as u64,
        SNAPSHOT_EVERY * 2 + 3
    );
}

#[tokio::test]
async fn keyring_and_header_tamper() {
    let env = Env::new().await;
    two_files(&env).await;
    let kr = volume_keys(env.store.as_ref(), "k").await;
    assert_eq!(kr.len(), 1);
    let v = get(env.store.as_ref(), &kr[0]).await;
    flip(env.store.as_ref(), &kr[0], 50).await;
    assert_eq!(tampered_object(open_err(&env, "x1").await), kr[0]);
    env.store.delete(&kr[0]).await.unwrap();
    // With no keyring left, the error names the volume's keyring prefix.
    let (ring_prefix, _) = kr[0].rsplit_once('/').unwrap();
    assert_eq!(
        tampered_object(open_err(&env, "x2").await),
        format!("{ring_prefix}/")
    );
    set(env.store.as_ref(), &kr[0], v).await;

    let h = get(env.store.as_ref(), "drive").await;
    flip(env.store.as_ref(), "drive", 20).await;
    assert_eq!(tampered_object(open_err(&env, "x3").await), "drive");
    // Another drive's header (its owner is a stranger): refused.
    let other = Env::new().await;
    set(
        env.store.as_ref(),
        "drive",
        get(other.store.as_ref(), "drive").await,
    )
    .await;
    // It names a root volume whose keyring this store does not hold.
    let theirs = read_header(other.store.as_ref()).await.unwrap();
    let theirs: String = theirs
        .root_volume
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        tampered_object(open_err(&env, "cache").await),
        format!("k/{theirs}/")
    );
    set(env.store.as_ref(), "drive", h).await;
    // A stranger cannot open the drive at all.
    let e = Drive::open_drive(
        env.store.clone(),
        Identity::generate(),
        env.opts("stranger"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.errno(), libc::EACCES);
    env.open().await;
}

#[tokio::test]
async fn store_never_sees_names_or_contents() {
    let env = Env::new().await;
    let d = env.open().await;
    let dir = d
        .mkdir(ROOT_INO, os("MARKERDIRNAME"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let f = put(
        &d,
        dir,
        "MARKERFILENAME.txt",
        "MARKERCONTENT ".repeat(10_000).as_bytes(),
    )
    .await;
    put(&d, ROOT_INO, "small-MARKERFILENAME", b"MARKERCONTENT").await;
    d.setxattr(f, os("user.MARKERXATTR"), b"MARKERCONTENT", XattrSet::Any)
        .await
        .unwrap();
    d.symlink(
        ROOT_INO,
        os("MARKERLINK"),
        std::path::Path::new("MARKERTARGET"),
        WHO,
    )
    .await
    .unwrap();
    let fh = d.open(f, libc::O_RDWR).await.unwrap();
    d.fsync(f, fh, false).await.unwrap();
    d.release(f, fh).await.unwrap();
    sync(&d).await;
    // Force a snapshot too.
    for i in 0..SNAPSHOT_EVERY {
        d.mkdir(dir, os(&format!("MARKERDIRNAME{i}")), 0o755, WHO)
            .await
            .unwrap();
        sync(&d).await;
    }
    assert!(!volume_keys(env.store.as_ref(), "s").await.is_empty());
    let markers: [&[u8]; 6] = [
        b"MARKER",
        b"ARKERCONT",
        b"ARKERFILE",
        b"ARKERDIR",
        b"ARKERXATTR",
        b"ARKERTARGET",
    ];
    let all = keys_under(env.store.as_ref(), "").await;
    for k in &all {
        let body = get(env.store.as_ref(), k).await;
        for m in markers {
            assert!(
                !k.as_bytes().windows(m.len()).any(|w| w == m),
                "marker in key {k}"
            );
            assert!(
                !body.windows(m.len()).any(|w| w == m),
                "marker {:?} in body of {k}",
                String::from_utf8_lossy(m)
            );
        }
    }
    // Nor does the local cache hold plaintext.
    for entry in walk(&env.dir.path().join("cache")) {
        let body = std::fs::read(&entry).unwrap();
        for m in markers {
            assert!(
                !body.windows(m.len()).any(|w| w == m),
                "marker in cache file {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn entry_signed_by_a_non_member_is_refused() {
    use ed25519_dalek::Signer;
    let env = Env::new().await;
    two_files(&env).await;
    let log = volume_keys(env.store.as_ref(), "l").await;
    let key = log.last().unwrap().clone();
    let good = get(env.store.as_ref(), &key).await;
    let stranger = Identity::generate();
    // Claim to be the stranger and sign as the stranger.
    let mut forged = good.clone();
    forged[36..68].copy_from_slice(&stranger.card_id);
    let body_len = forged.len() - 64;
    let sig = stranger.ed25519.sign(&forged[..body_len]);
    forged[body_len..].copy_from_slice(&sig.to_bytes());
    set(env.store.as_ref(), &key, forged).await;
    match open_err(&env, "forged").await {
        DriveError::Tampered { object, reason } => {
            assert_eq!(object, key);
            assert!(reason.contains("not a writer"), "{reason}");
        }
        e => panic!("{e}"),
    }
    // Keep the owner's card id but sign with another key.
    let mut forged = good.clone();
    let sig = stranger.ed25519.sign(&forged[..body_len]);
    forged[body_len..].copy_from_slice(&sig.to_bytes());
    set(env.store.as_ref(), &key, forged).await;
    assert_eq!(tampered_object(open_err(&env, "forged2").await), key);
    set(env.store.as_ref(), &key, good).await;
    env.open_with("fine").await;
}
