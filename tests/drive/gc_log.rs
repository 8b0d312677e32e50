//! Collection of metadata (engine level, MemoryStore): `gc` moves each
//! volume's log base to the oldest checkpoint the window needs and deletes
//! the entries, roots and pages before it; the drive reopens the same; a
//! client whose remembered entry was collected accepts the honest store
//! through the owner-signed log bases and refuses one that rolled back,
//! forged or omitted them; history and restore after collection; a
//! collection cut off half-way.

use crate::support::drive::*;
use crate::support::{keys_under, pattern};
use bytes::Bytes;
use cardfs::drive::*;
use cardfs::format::meta::LogBase;
use cardfs::store::{MemoryStore, ObjectStore, PutMode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `n` commits, each writing one of eight files (so checkpoints get
/// written every `SNAPSHOT_EVERY` of them).
async fn commits(d: &Drive, model: &mut Model, n: u64, tag: u64) {
    commits_in(d, "", model, n, tag).await
}

/// [`commits`] into the directory `dir` (a path; "" for the root).
async fn commits_in(d: &Drive, dir: &str, model: &mut Model, n: u64, tag: u64) {
    let parent = match dir {
        "" => ROOT_INO,
        _ => lookup(d, dir).await.unwrap(),
    };
    for i in 0..n {
        let name = format!("f{}", i % 8);
        let path = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        let data = pattern(100 + (i as usize * 7) % 900, tag * 1000 + i);
        match lookup(d, &path).await {
            Ok(ino) => {
                let fh = d.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
                d.write(ino, fh, 0, &data).await.unwrap();
                d.release(ino, fh).await.unwrap();
            }
            Err(_) => {
                put(d, parent, &name, &data).await;
            }
        }
        sync(d).await;
        model.insert(name, data);
    }
}

/// A copy of every object of `store` in a new MemoryStore.
async fn copy_of(store: &dyn ObjectStore) -> Arc<dyn ObjectStore> {
    let copy: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    for k in keys_under(store, "").await {
        let b = object_bytes(store, &k).await;
        copy.put(&k, Bytes::from(b), PutMode::Overwrite)
            .await
            .unwrap();
    }
    copy
}

/// A copy of the cache directory `from` named `to`.
fn copy_cache(env: &Env, from: &str, to: &str) {
    let (src, dst) = (env.dir.path().join(from), env.dir.path().join(to));
    for e in walk(&src) {
        let rel = e.strip_prefix(&src).unwrap();
        let target = dst.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&e, &target).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn open_on(env: &Env, store: Arc<dyn ObjectStore>, cache: &str) -> Result<Drive> {
    Drive::open_drive(store, env.id.clone(), env.opts(cache)).await
}

/// A drive whose client "old" saw only the first few entries, then
/// `2 × SNAPSHOT_EVERY + 5` more commits by the owner's client "a".
async fn old_client_and_a_long_log() -> (Env, Drive, Model) {
    let env = Env::new().await;
    let mut model = Model::new();
    let d = env.open_with("a").await;
    commits(&d, &mut model, 3, 0).await;
    d.shutdown().await.unwrap();
    let old = env.open_with("old").await;
    equals(&old, &model).await;
    old.shutdown().await.unwrap();
    let d = env.open_with("a").await;
    commits(&d, &mut model, 2 * SNAPSHOT_EVERY + 5, 1).await;
    (env, d, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_keeps_the_log_from_the_newest_checkpoint_and_reopens_the_same() {
    let (env, d, model) = old_client_and_a_long_log().await;
    let store = env.store.as_ref();
    let vol = volume(store).await;
    let roots = seqs(store, &vol, "s").await;
    assert!(roots.len() >= 2, "{roots:?}");
    let base = *roots.last().unwrap();
    let head = *seqs(store, &vol, "l").await.last().unwrap();
    let pages_before = keys_under(store, &format!("v/{vol}/p/")).await.len();
    // The default window (7 days) keeps everything written today.
    let r = d
        .gc(
            &GcOptions {
                grace: Duration::ZERO,
                ..Default::default()
            },
            &|_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(r.metadata_reclaimed_objects, 0);
    assert_eq!(seqs(store, &vol, "l").await.len() as u64, head + 1);
    // A dry run counts and deletes nothing.
    let dry = GcOptions {
        dry_run: true,
        ..now_all()
    };
    let r = d.gc(&dry, &|_, _| {}).await.unwrap();
    assert!(r.metadata_reclaimed_objects >= base, "{r:?}");
    assert!(seqs(store, &vol, "b").await.is_empty());
    assert_eq!(seqs(store, &vol, "l").await.len() as u64, head + 1);

    let r = d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(
        r.metadata_reclaimed_objects >= base + roots.len() as u64 - 1,
        "{r:?}"
    );
    assert_eq!(seqs(store, &vol, "b").await, vec![base]);
    assert_eq!(
        seqs(store, &vol, "l").await,
        (base..=head).collect::<Vec<_>>()
    );
    assert_eq!(seqs(store, &vol, "s").await, vec![base]);
    // Only pages the kept root names stay: without any one of them the
    // drive does not open.
    let pages = keys_under(store, &format!("v/{vol}/p/")).await;
    assert!(!pages.is_empty() && pages.len() < pages_before, "{pages:?}");
    for p in &pages {
        let bad = copy_of(store).await;
        bad.delete(p).await.unwrap();
        let err = open_on(&env, bad, &format!("no-page-{}", &p[p.len() - 8..]))
            .await
            .err();
        assert_eq!(tampered_object(err.expect("opened without a page")), *p);
    }
    let fsck = d.fsck(FsckOptions::default(), &|_, _| {}).await.unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    // Nothing more to collect.
    assert_eq!(
        d.gc(&now_all(), &|_, _| {})
            .await
            .unwrap()
            .metadata_reclaimed_objects,
        0
    );
    d.shutdown().await.unwrap();

    // An empty cache opens the collected drive to the model.
    let fresh = env.open_with("fresh").await;
    equals(&fresh, &model).await;
    fresh.shutdown().await.unwrap();
    // The client that last saw entry 3 (collected) accepts the honest store.
    let old = env.open_with("old").await;
    equals(&old, &model).await;
    old.shutdown().await.unwrap();
}

/// An attack on the collected store: its name, what it puts as the log
/// base (`None`: deletes it) and the objects it deletes.
type Attack = (&'static str, Option<Vec<u8>>, Vec<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_the_collection_refuses_a_store_that_lies_about_it() {
    let (env, d, model) = old_client_and_a_long_log().await;
    let store = env.store.clone();
    let vol = volume(store.as_ref()).await;
    d.gc(&now_all(), &|_, _| {}).await.unwrap();
    d.shutdown().await.unwrap();
    let base = seqs(store.as_ref(), &vol, "b").await[0];
    let base_key = format!("v/{vol}/b/{base:016x}");
    let honest = object_bytes(store.as_ref(), &base_key).await;
    let owner_vk = env.id.ed25519.verifying_key();
    let lb = LogBase::open(&honest, &owner_vk).unwrap();
    assert_eq!((lb.first, lb.seq), (0, base));

    // Each attack on a copy of the store, with a copy of the old cache.
    let attacks: Vec<Attack> = vec![
        // The store hides the summary (and so the collected past).
        ("no-base", None, vec![]),
        // The store deletes the kept log back past the base entry.
        (
            "rolled-back",
            Some(honest.clone()),
            (base..base + 3)
                .map(|s| format!("v/{vol}/l/{s:016x}"))
                .collect(),
        ),
        // A member (or anyone but the owner) signs a summary.
        (
            "member-signed",
            Some(lb.seal(&Identity::generate().ed25519)),
            vec![],
        ),
        // The owner's key over another past (a fork): another hash at
        // the old client's entry.
        (
            "forked",
            Some({
                let mut f = lb.clone();
                f.hashes[1..20].fill([7; 32]);
                f.seal(&env.id.ed25519)
            }),
            vec![],
        ),
        // A summary that omits the old client's entry.
        (
            "omitting",
            Some({
                let mut f = lb.clone();
                f.first = 20;
                f.hashes.drain(..20);
                f.seal(&env.id.ed25519)
            }),
            vec![],
        ),
    ];
    for (name, base_bytes, deletions) in attacks {
        let bad = copy_of(store.as_ref()).await;
        if let Some(b) = base_bytes {
            bad.put(&base_key, Bytes::from(b), PutMode::Overwrite)
                .await
                .unwrap();
        } else {
            bad.delete(&base_key).await.unwrap();
        }
        for k in deletions {
            bad.delete(&k).await.unwrap();
        }
        let cache = format!("old-{name}");
        copy_cache(&env, "old", &cache);
        let err = open_on(&env, bad, &cache)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(
            matches!(
                err,
                DriveError::Rollback { .. } | DriveError::Tampered { .. }
            ),
            "{name}: {err:?}"
        );
    }
    // The honest store still opens for it.
    let old = env.open_with("old").await;
    equals(&old, &model).await;
    old.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_cut_off_between_steps_leaves_a_drive_that_opens() {
    let env = Env::new().await;
    let cut = DeletesCut::new(env.store.clone());
    let mut model = Model::new();
    let a = env.open_with("old").await;
    commits(&a, &mut model, 2, 0).await;
    a.shutdown().await.unwrap();
    let d = open_on(&env, cut.clone(), "a").await.unwrap();
    commits(&d, &mut model, SNAPSHOT_EVERY + 3, 1).await;
    let vol = volume(env.store.as_ref()).await;
    let base = *seqs(env.store.as_ref(), &vol, "s").await.last().unwrap();
    // Content goes first, then the metadata: cut after `left` of those.
    let dry = GcOptions {
        dry_run: true,
        ..now_all()
    };
    let mut content = d.gc(&dry, &|_, _| {}).await.unwrap().reclaimed_objects as i64;
    for left in [0, 1, 5] {
        cut.left.store(content + left, Ordering::SeqCst);
        content = 0;
        assert!(
            d.gc(&now_all(), &|_, _| {}).await.is_err(),
            "cut after {left}"
        );
        assert_eq!(seqs(env.store.as_ref(), &vol, "b").await, vec![base]);
        let fresh = open_on(&env, env.store.clone(), &format!("fresh-{left}"))
            .await
            .unwrap();
        equals(&fresh, &model).await;
        fresh.shutdown().await.unwrap();
    }
    cut.left.store(i64::MAX, Ordering::SeqCst);
    d.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert_eq!(seqs(env.store.as_ref(), &vol, "l").await[0], base);
    assert_eq!(seqs(env.store.as_ref(), &vol, "s").await, vec![base]);
    d.shutdown().await.unwrap();
    let old = env.open_with("old").await;
    equals(&old, &model).await;
    old.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_restore_start_at_the_base_after_collection() {
    let env = Env::new().await;
    let mut model = Model::new();
    let d = env.open().await;
    commits(&d, &mut model, SNAPSHOT_EVERY + 3, 0).await;
    d.gc(&now_all(), &|_, _| {}).await.unwrap();
    let vol = volume(env.store.as_ref()).await;
    let base = seqs(env.store.as_ref(), &vol, "b").await[0];
    // Versions written after the collection.
    let f = lookup(&d, "f0").await.unwrap();
    let v1 = pattern(5000, 77);
    let fh = d.open(f, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    d.write(f, fh, 0, &v1).await.unwrap();
    d.release(f, fh).await.unwrap();
    sync(&d).await;
    let h = d.history(b"f0").await.unwrap();
    assert!(h.len() >= 2, "{h:?}");
    assert!(h.iter().all(|v| v.seq >= base), "{h:?}");
    // Each change names the card that signed it (the oldest state: none).
    assert_eq!(h[0].writer, None);
    assert!(
        h[1..].iter().all(|v| v.writer == Some(env.id.card_id)),
        "{h:?}"
    );
    // The oldest state kept is the base's; the version before v1 comes
    // back whole.
    assert_eq!(h[0].seq, base, "{h:?}");
    let then = h[h.len() - 2].time;
    d.restore(b"f0", then, RestoreTo::Path(b"f0-then".to_vec()))
        .await
        .unwrap();
    sync(&d).await;
    assert_eq!(
        read_all(&d, lookup(&d, "f0-then").await.unwrap()).await,
        model["f0"]
    );
    assert_eq!(read_all(&d, f).await, v1);
    d.shutdown().await.unwrap();
    let fresh = env.open_with("fresh").await;
    assert_eq!(
        read_all(&fresh, lookup(&fresh, "f0-then").await.unwrap()).await,
        model["f0"]
    );
    fresh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_accepts_the_owners_log_base_and_no_other() {
    let env = Env::new().await;
    let bob = Identity::generate();
    let owner = env.open_with("owner").await;
    let dir = owner
        .mkdir(ROOT_INO, os("projects"), 0o755, WHO)
        .await
        .unwrap()
        .ino;
    let mut model = Model::new();
    commits_in(&owner, "projects", &mut model, 2, 0).await;
    let info = owner
        .share_add(dir, bob.member(Role::Writer))
        .await
        .unwrap();
    let open_bob = |cache: &str| Drive::open_drive(env.store.clone(), bob.clone(), env.opts(cache));
    // Bob's client sees the shared folder's first entries, then goes away.
    let b = open_bob("bob").await.unwrap();
    assert_eq!(
        names(&b, lookup(&b, "projects").await.unwrap()).await.len(),
        2
    );
    b.shutdown().await.unwrap();
    commits_in(&owner, "projects", &mut model, SNAPSHOT_EVERY + 5, 1).await;
    owner.gc(&now_all(), &|_, _| {}).await.unwrap();
    owner.shutdown().await.unwrap();
    // The shared folder's volume was collected too.
    let vol = cardfs::format::hex::encode(&info.volume);
    let bases = seqs(env.store.as_ref(), &vol, "b").await;
    assert_eq!(bases.len(), 1, "{bases:?}");
    assert!(seqs(env.store.as_ref(), &vol, "l").await[0] > 0);
    // A member signs a base of its own (rewriting the collected past):
    // Bob's client refuses it; the owner's base it accepts.
    let key = format!("v/{vol}/b/{:016x}", bases[0]);
    let honest = object_bytes(env.store.as_ref(), &key).await;
    let lb = LogBase::open(&honest, &env.id.ed25519.verifying_key()).unwrap();
    copy_cache(&env, "bob", "bob-forged");
    let forged = copy_of(env.store.as_ref()).await;
    forged
        .put(&key, Bytes::from(lb.seal(&bob.ed25519)), PutMode::Overwrite)
        .await
        .unwrap();
    // (A member's view opens a shared folder's volume on first use.)
    let err = match Drive::open_drive(forged, bob.clone(), env.opts("bob-forged")).await {
        Err(e) => e,
        Ok(d) => {
            let e = lookup(&d, "projects/f0").await.err();
            d.abandon().await;
            e.expect("a member-signed base was accepted")
        }
    };
    assert_eq!(tampered_object(err), key);
    let b = open_bob("bob").await.unwrap();
    for (name, data) in &model {
        let ino = lookup(&b, &format!("projects/{name}")).await.unwrap();
        assert_eq!(&read_all(&b, ino).await, data, "{name}");
    }
    b.shutdown().await.unwrap();
}
