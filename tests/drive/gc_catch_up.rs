//! A client left running behind a collection (engine level, two clients
//! of the owner over one MemoryStore): the other client collected the log
//! entries the first had not pulled yet. Its refresh checks the owner's
//! log base, reloads past it and goes on; its own changes made meanwhile
//! are rebased and committed at the real end of the log, nothing lost (a
//! rename onto a name the other client took gets a conflict name, whether
//! it took it in an entry the collection left or in one it removed). A
//! gap no owner-signed base explains is still refused (Tampered /
//! Rollback), and entries younger than the grace stay so a client that
//! saw the end of the log recently never commits into a gap.

use crate::support::drive::*;
use crate::support::pattern;
use bytes::Bytes;
use cardfs::drive::*;
use cardfs::format::meta::LogBase;
use cardfs::store::{FaultStore, PutMode};
use std::sync::Arc;
use std::time::Duration;

/// `n` commits, each writing one of eight files `<prefix>0..7`, enough
/// for checkpoints every `SNAPSHOT_EVERY`.
async fn commits(d: &Drive, model: &mut Model, prefix: &str, n: u64) {
    for i in 0..n {
        let name = format!("{prefix}{}", i % 8);
        let data = pattern(50 + (i as usize * 13) % 700, i + 1);
        write_file(d, &name, &data).await;
        sync(d).await;
        model.insert(name, data);
    }
}

/// Creates or replaces the root file `name` with `data` (not synced).
async fn write_file(d: &Drive, name: &str, data: &[u8]) {
    match lookup(d, name).await {
        Ok(ino) => {
            let fh = d.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
            d.write(ino, fh, 0, data).await.unwrap();
            d.release(ino, fh).await.unwrap();
        }
        Err(_) => {
            put(d, ROOT_INO, name, data).await;
        }
    }
}

/// Client "a" on the store, client "b" on the same store behind a fault
/// wrapper; both saw the first three commits.
async fn two_clients(env: &Env, model: &mut Model) -> (Drive, Drive, Arc<FaultStore>) {
    let a = env.open_with("a").await;
    commits(&a, model, "f", 3).await;
    let (flaky, b) = env.open_faulty("b").await;
    equals(&b, model).await;
    (a, b, flaky)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_collection_reloads_past_it_and_keeps_its_changes() {
    let env = Env::new().await;
    let mut model = Model::new();
    let (a, b, flaky) = two_clients(&env, &mut model).await;
    // B, cut off from the store, changes things: nothing is committed.
    flaky.set_offline(true);
    write_file(&b, "from-b", b"written by b while behind").await;
    write_file(&b, "f1", b"b's version of f1").await;
    // A rename onto a name free in B's view, which A takes after its
    // collection (in an entry the collection leaves).
    let no_flags = RenameFlags::default();
    b.rename(ROOT_INO, os("f0"), ROOT_INO, os("late"), no_flags)
        .await
        .unwrap();
    // And one onto a name A takes before its collection (in an entry the
    // collection removes: known only by comparing the trees).
    write_file(&b, "b-early", b"b's file renamed onto early").await;
    b.rename(ROOT_INO, os("b-early"), ROOT_INO, os("early"), no_flags)
        .await
        .unwrap();
    let open_fh = {
        let ino = lookup(&b, "f2").await.unwrap();
        (ino, b.open(ino, libc::O_RDONLY).await.unwrap())
    };
    // A writes on and collects everything before its newest checkpoint.
    write_file(&a, "early", b"a's early file").await;
    sync(&a).await;
    commits(&a, &mut model, "g", 2 * SNAPSHOT_EVERY + 5).await;
    a.unlink(ROOT_INO, os("f2")).await.unwrap();
    sync(&a).await;
    let f2 = model.remove("f2").unwrap();
    a.gc(&now_all(), &|_, _| {}).await.unwrap();
    let vol = volume(env.store.as_ref()).await;
    let bases = seqs(env.store.as_ref(), &vol, "b").await;
    let entries = seqs(env.store.as_ref(), &vol, "l").await;
    assert_eq!(bases.len(), 1);
    assert!(
        entries[0] > 10,
        "B's next entries were collected: {entries:?}"
    );
    write_file(&a, "late", b"a's late file").await;
    sync(&a).await;

    // B meets the store again and commits: it has not seen the end of
    // the log lately, so it refreshes first, reloads past the base, and
    // its entry lands at the real end of the log (not in the gap).
    flaky.set_offline(false);
    sync(&b).await;
    model.insert("from-b".into(), b"written by b while behind".to_vec());
    model.insert("f1".into(), b"b's version of f1".to_vec());
    // A's file keeps the name; B's renamed file gets a conflict name.
    model.insert("late".into(), b"a's late file".to_vec());
    let f0 = model.remove("f0").unwrap();
    let copies: Vec<String> = (names(&b, ROOT_INO).await.into_iter())
        .filter(|n| n.starts_with("late.conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    model.insert(copies[0].clone(), f0);
    model.insert("early".into(), b"a's early file".to_vec());
    let early: Vec<String> = (names(&b, ROOT_INO).await.into_iter())
        .filter(|n| n.starts_with("early.conflict-"))
        .collect();
    assert_eq!(early.len(), 1, "{early:?}");
    model.insert(early[0].clone(), b"b's file renamed onto early".to_vec());
    equals(&b, &model).await;
    // The file A deleted, open in B all along, still reads.
    let (ino, fh) = open_fh;
    assert_eq!(b.read(ino, fh, 0, 1 << 20).await.unwrap(), f2);
    b.release(ino, fh).await.unwrap();
    a.refresh().await.unwrap();
    equals(&a, &model).await;
    // Both keep working on one log: another round each way.
    write_file(&a, "after", b"a after").await;
    sync(&a).await;
    b.refresh().await.unwrap();
    write_file(&b, "after-b", b"b after").await;
    sync(&b).await;
    a.refresh().await.unwrap();
    model.insert("after".into(), b"a after".to_vec());
    model.insert("after-b".into(), b"b after".to_vec());
    equals(&a, &model).await;
    equals(&b, &model).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    equals(&env.open_with("fresh").await, &model).await;
    // B reopens from its own cache as well.
    let b = Drive::open_drive(flaky, env.id.clone(), env.opts("b"))
        .await
        .unwrap();
    equals(&b, &model).await;
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_client_refuses_a_gap_no_owner_signed_base_explains() {
    let env = Env::new().await;
    let mut model = Model::new();
    let (a, b, _flaky) = two_clients(&env, &mut model).await;
    // B's head: the newest entry when it opened.
    let vol = volume(env.store.as_ref()).await;
    let head = *seqs(env.store.as_ref(), &vol, "l").await.last().unwrap();
    commits(&a, &mut model, "g", 2 * SNAPSHOT_EVERY + 5).await;
    a.gc(&now_all(), &|_, _| {}).await.unwrap();
    a.shutdown().await.unwrap();
    let store = env.store.clone();
    let bases = seqs(store.as_ref(), &vol, "b").await;
    let base_key = format!("v/{vol}/b/{:016x}", bases[0]);
    let honest = object_bytes(store.as_ref(), &base_key).await;
    let lb = LogBase::open(&honest, &env.id.ed25519.verifying_key()).unwrap();
    assert!(lb.seq > head + 1 && lb.first == 0);
    let put = |bytes: Vec<u8>| {
        let (store, key) = (store.clone(), base_key.clone());
        async move {
            store
                .put(&key, Bytes::from(bytes), PutMode::Overwrite)
                .await
                .unwrap()
        }
    };

    // No base at all: the gap is tampering, naming the missing entry.
    store.delete(&base_key).await.unwrap();
    let err = b.refresh().await.unwrap_err();
    assert_eq!(tampered_object(err), format!("v/{vol}/l/{:016x}", head + 1));
    // A base signed by anyone but the owner.
    put(lb.seal(&Identity::generate().ed25519)).await;
    assert_eq!(tampered_object(b.refresh().await.unwrap_err()), base_key);
    // The owner's key over another past (a fork at B's head).
    let mut forked = lb.clone();
    forked.hashes[head as usize] = [7; 32];
    put(forked.seal(&env.id.ed25519)).await;
    let err = b.refresh().await.unwrap_err();
    assert!(
        matches!(err, DriveError::Rollback { known, .. } if known == head),
        "{err:?}"
    );
    // A base that omits B's head.
    let mut omitting = lb.clone();
    omitting.first = head + 1;
    omitting.hashes.drain(..=head as usize);
    put(omitting.seal(&env.id.ed25519)).await;
    let err = b.refresh().await.unwrap_err();
    assert!(matches!(err, DriveError::Rollback { .. }), "{err:?}");
    // None of it moved B; the honest base lets it through.
    equals(&b, &{
        let mut m = model.clone();
        m.retain(|k, _| k.starts_with('f'));
        m
    })
    .await;
    put(honest).await;
    b.refresh().await.unwrap();
    equals(&b, &model).await;
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_younger_than_the_grace_stay_so_a_recent_client_never_commits_into_a_gap() {
    let env = Env::new().await;
    let mut model = Model::new();
    let (a, b, _flaky) = two_clients(&env, &mut model).await;
    // B commits: it saw the end of the log just now.
    write_file(&b, "from-b", b"b").await;
    sync(&b).await;
    model.insert("from-b".into(), b"b".to_vec());
    a.refresh().await.unwrap();
    commits(&a, &mut model, "g", 2 * SNAPSHOT_EVERY + 5).await;
    // Nothing kept for history, but the grace of one hour.
    let opts = GcOptions {
        grace: Duration::from_secs(3600),
        ..now_all()
    };
    a.gc(&opts, &|_, _| {}).await.unwrap();
    let vol = volume(env.store.as_ref()).await;
    let bases = seqs(env.store.as_ref(), &vol, "b").await;
    let entries = seqs(env.store.as_ref(), &vol, "l").await;
    assert_eq!(bases.len(), 1, "the base moved");
    assert_eq!(entries[0], 0, "young entries stay: {entries:?}");
    // B's next put finds its slot taken, pulls and commits after.
    write_file(&b, "again-b", b"b again").await;
    sync(&b).await;
    model.insert("again-b".into(), b"b again".to_vec());
    a.refresh().await.unwrap();
    equals(&a, &model).await;
    equals(&b, &model).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
