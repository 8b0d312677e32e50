//! Checkpoint pages under attack, in a drive of a few thousand nodes (so
//! a checkpoint has many pages): a flipped byte, a deleted page, two pages
//! swapped, a page of an older checkpoint in place of the current one, a
//! page of another volume, and a root (validly signed) naming a page of
//! another bucket or volume. Each open must fail with `Tampered` naming the
//! page. Also: a small change rewrites O(1) pages, and a client with an
//! empty cache opens the paged checkpoint to the same tree.

use super::tamper::{get, set};
use crate::support::drive::mirror::mirrored_pages;
use crate::support::drive::*;
use cardfs::drive::*;
use cardfs::format::crypto::SecretKey;
use cardfs::format::hex::encode as hex;
use cardfs::format::meta::{self, CheckpointRoot, SignedHead};
use cardfs::store::ObjectStore;
use std::collections::BTreeSet;

const DIRS: usize = 20;
const PER_DIR: usize = 100;

/// Keys under `v/<root volume>/<kind>/`.
pub(super) async fn under(store: &dyn ObjectStore, kind: &str) -> Vec<String> {
    keys_under(store, "v/")
        .await
        .into_iter()
        .filter(|k| k.split('/').nth(2) == Some(kind))
        .collect()
}

/// `SNAPSHOT_EVERY` commits rewriting file `f` in directory `d0`, so a
/// checkpoint follows.
pub(super) async fn commits_to_a_checkpoint(d: &Drive) {
    let dir = lookup(d, "d0").await.unwrap();
    for i in 0..SNAPSHOT_EVERY {
        let f = match d.lookup(dir, os("f")).await {
            Ok(a) => a.ino,
            Err(_) => put(d, dir, "f", b"").await,
        };
        let fh = d.open(f, libc::O_RDWR).await.unwrap();
        d.write(f, fh, 0, format!("edit {i}").as_bytes())
            .await
            .unwrap();
        d.release(f, fh).await.unwrap();
        sync(d).await;
    }
}

/// A drive of `DIRS` directories of `PER_DIR` directories each, then a
/// checkpoint.
async fn big_drive() -> Env {
    let env = Env::new().await;
    let d = env.open().await;
    for i in 0..DIRS {
        let dir = d
            .mkdir(ROOT_INO, os(&format!("d{i}")), 0o755, WHO)
            .await
            .unwrap()
            .ino;
        for j in 0..PER_DIR {
            d.mkdir(dir, os(&format!("e{j}")), 0o755, WHO)
                .await
                .unwrap();
        }
    }
    sync(&d).await;
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    env
}

/// The newest checkpoint root: its key, signed head, decrypted payload and
/// the volume key it is sealed under (the test owns the drive).
pub(super) async fn newest_root(env: &Env) -> (String, SignedHead, CheckpointRoot, SecretKey) {
    let roots = under(env.store.as_ref(), "s").await;
    root(env, roots.last().unwrap()).await
}

/// [`newest_root`] of the root at `key`.
pub(super) async fn root(env: &Env, key: &str) -> (String, SignedHead, CheckpointRoot, SecretKey) {
    let key = key.to_string();
    let bytes = get(env.store.as_ref(), &key).await;
    let head = meta::peek_signed(meta::SNAPSHOT_MAGIC, &bytes).unwrap();
    let ring_key = format!("k/{}/{:08x}", hex(&head.volume), head.generation);
    let ring = get(env.store.as_ref(), &ring_key).await;
    let owner = env.id.ed25519.verifying_key();
    let (_, vkey) = meta::Keyring::open(&ring, &owner, &env.id.x25519).unwrap();
    let (_, payload) = meta::open_signed(meta::SNAPSHOT_MAGIC, &bytes, &owner, &vkey).unwrap();
    (key, head, CheckpointRoot::decode(&payload).unwrap(), vkey)
}

fn page_name(volume: &[u8; 16], hash: &[u8; 32]) -> String {
    format!("v/{}/p/{}", hex(volume), hex(hash))
}

/// The pages `root` names, by bucket (empty buckets left out).
pub(super) fn named_pages(volume: &[u8; 16], root: &CheckpointRoot) -> Vec<(usize, String)> {
    (root.pages.iter().enumerate())
        .filter(|(_, h)| **h != meta::EMPTY_PAGE)
        .map(|(b, h)| (b, page_name(volume, h)))
        .collect()
}

async fn open_err(env: &Env, cache: &str) -> DriveError {
    Drive::open_drive(env.store.clone(), env.id.clone(), env.opts(cache))
        .await
        .expect_err("open must refuse")
}

/// The names of every directory's entries, via readdir.
async fn listing(d: &Drive) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for top in names(d, ROOT_INO).await {
        let ino = lookup(d, &top).await.unwrap();
        out.push((top, names(d, ino).await));
    }
    out
}

#[tokio::test]
async fn tampered_pages_are_refused_naming_the_page() {
    let env = big_drive().await;
    let store = env.store.as_ref();
    // A second checkpoint, so that pages of an older one exist.
    let (first_key, ..) = newest_root(&env).await;
    let (_, _, first, _) = root(&env, &first_key).await;
    let d = env.open().await;
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let (root_key, head, root, vkey) = newest_root(&env).await;
    assert_ne!(root_key, first_key);
    let pages = named_pages(&head.volume, &root);
    assert!(pages.len() >= 8, "{} pages", pages.len());
    // The bucket whose page changed since the first checkpoint first.
    let changed = (0..root.pages.len())
        .find(|b| first.pages[*b] != root.pages[*b])
        .expect("a page changed");
    let at = pages.iter().position(|(b, _)| *b == changed).unwrap();
    let (b1, p1) = pages[at].clone();
    let (_, p2) = pages[(at + 1) % pages.len()].clone();
    let v1 = get(store, &p1).await;
    let v2 = get(store, &p2).await;

    // A flipped byte.
    let mut bad = v1.clone();
    bad[40] ^= 0x40;
    set(store, &p1, bad).await;
    assert_eq!(tampered_object(open_err(&env, "flip").await), p1);
    set(store, &p1, v1.clone()).await;

    // A deleted page.
    store.delete(&p1).await.unwrap();
    let e = open_err(&env, "deleted").await;
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(tampered_object(e), p1);
    set(store, &p1, v1.clone()).await;

    // Two pages swapped.
    set(store, &p1, v2.clone()).await;
    set(store, &p2, v1.clone()).await;
    let named = tampered_object(open_err(&env, "swapped").await);
    assert!(named == p1 || named == p2, "{named}");
    set(store, &p1, v1.clone()).await;
    set(store, &p2, v2.clone()).await;

    // The page of the older checkpoint for the same bucket in place of the
    // current one.
    let older = page_name(&head.volume, &first.pages[b1]);
    assert!(keys_under(store, &older).await.len() == 1);
    set(store, &p1, get(store, &older).await).await;
    assert_eq!(tampered_object(open_err(&env, "older").await), p1);
    set(store, &p1, v1.clone()).await;

    // A page of another volume (another drive's) under this page's name.
    let other = Env::new().await;
    let o = other.open().await;
    o.mkdir(ROOT_INO, os("d0"), 0o755, WHO).await.unwrap();
    commits_to_a_checkpoint(&o).await;
    o.shutdown().await.unwrap();
    let foreign = under(other.store.as_ref(), "p").await[0].clone();
    let foreign_bytes = get(other.store.as_ref(), &foreign).await;
    set(store, &p1, foreign_bytes.clone()).await;
    assert_eq!(tampered_object(open_err(&env, "foreign").await), p1);
    set(store, &p1, v1.clone()).await;

    // Roots signed by a writer (here the owner itself) naming a page of
    // another bucket, or another volume's page stored under its own hash:
    // the hash matches, the page's binding does not.
    let root_bytes = get(store, &root_key).await;
    let forge = |pages: Vec<[u8; 32]>| {
        let forged = CheckpointRoot {
            pages,
            ..root.clone()
        };
        meta::seal_signed(
            meta::SNAPSHOT_MAGIC,
            &head,
            &vkey,
            &env.id.ed25519,
            &forged.encode(),
        )
    };
    let mut moved = root.pages.clone();
    let (b2, _) = pages[(at + 1) % pages.len()];
    moved[b1] = root.pages[b2];
    set(store, &root_key, forge(moved)).await;
    assert_eq!(tampered_object(open_err(&env, "bucket").await), p2);
    let foreign_hash = meta::sha256(&foreign_bytes);
    set(
        store,
        &page_name(&head.volume, &foreign_hash),
        foreign_bytes,
    )
    .await;
    let mut moved = root.pages.clone();
    moved[b1] = foreign_hash;
    set(store, &root_key, forge(moved)).await;
    assert_eq!(
        tampered_object(open_err(&env, "volume").await),
        page_name(&head.volume, &foreign_hash)
    );
    set(store, &root_key, root_bytes).await;

    // Untouched again: opens.
    let d = env.open_with("fine").await;
    assert_eq!(names(&d, ROOT_INO).await.len(), DIRS);
    d.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_small_change_rewrites_few_pages_and_reopens_the_same() {
    let env = big_drive().await;
    let store = env.store.as_ref();
    let (_, head, root, _) = newest_root(&env).await;
    let pages_before: BTreeSet<String> = under(store, "p").await.into_iter().collect();
    let buckets = root.pages.len();
    assert!(buckets >= 16, "{buckets} buckets");
    let d = env.open().await;
    let want = listing(&d).await;
    // One file rewritten over and over: the next checkpoint rewrites the
    // page holding it (and its directory's, if another) only.
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let (_, head2, root2, _) = newest_root(&env).await;
    assert!(head2.seq > head.seq);
    assert_eq!(root2.pages.len(), buckets);
    let pages_after: BTreeSet<String> = under(store, "p").await.into_iter().collect();
    let fresh: Vec<&String> = pages_after.difference(&pages_before).collect();
    assert!(
        (1..=2).contains(&fresh.len()),
        "{} new pages of {buckets}",
        fresh.len()
    );
    let changed = (root.pages.iter().zip(&root2.pages))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, fresh.len());
    // The writer's metadata mirror holds the new checkpoint's pages; the
    // replaced ones stay in its pack file only until they are most of it
    // (over 1 MiB), so the file is within twice the pages named plus that.
    let (mirrored, pack_bytes) = mirrored_pages(&env.dir.path().join("cache"));
    let named: BTreeSet<String> = named_pages(&head2.volume, &root2)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(named.iter().all(|p| mirrored.contains_key(p)), "{named:?}");
    let named_bytes: u64 = named
        .iter()
        .map(|p| (6 + p.len() + mirrored[p].len()) as u64)
        .sum();
    assert!(
        pack_bytes <= 2 * named_bytes + (1 << 20),
        "{pack_bytes} bytes of mirrored pages for {named_bytes} named"
    );
    // A client with an empty cache opens it to the same tree.
    let fresh_client = env.open_with("empty").await;
    assert_eq!(listing(&fresh_client).await, want);
    let f = lookup(&fresh_client, "d0/f").await.unwrap();
    assert_eq!(
        read_all(&fresh_client, f).await,
        format!("edit {}", SNAPSHOT_EVERY - 1).as_bytes()
    );
    fresh_client.shutdown().await.unwrap();
}

#[tokio::test]
async fn checkpoints_on_a_local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn ObjectStore> =
        std::sync::Arc::new(cardfs::store::LocalStore::open(dir.path().join("store")).unwrap());
    let env = Env::with_store(store).await;
    let d = env.open().await;
    d.mkdir(ROOT_INO, os("d0"), 0o755, WHO).await.unwrap();
    commits_to_a_checkpoint(&d).await;
    d.shutdown().await.unwrap();
    let roots = under(env.store.as_ref(), "s").await;
    let pages = under(env.store.as_ref(), "p").await;
    assert_eq!((roots.len(), pages.len()), (1, 1), "{roots:?} {pages:?}");
}
