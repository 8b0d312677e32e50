//! Revocation completed by collection (engine level, MemoryStore): after
//! `share remove`, `share rotate --reencrypt` and a collection that keeps
//! no history, no object of the store opens with anything the removed
//! member held, tried object by object with every key he had (not by
//! trusting names), while the owner and the remaining member read every
//! current file; within the retention window the old generation stays
//! (history), and a store that hides a keyring the window still needs is
//! refused naming it.

use crate::support::drive::loot::Loot;
use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;
use cardfs::store::{ObjectStore, PutMode};
use std::sync::Arc;
use std::time::Duration;

/// The default window (7 days), objects of any age.
fn window() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        ..Default::default()
    }
}

/// A drive whose owner shared "shared" with Bob (writer) and Carol
/// (reader), Bob wrote into it, then the owner removed Bob and
/// re-encrypted the folder.
struct Revoked {
    env: Env,
    owner: Drive,
    bob: Identity,
    carol: Identity,
    /// Everything Bob could reach in the store while a member.
    bob_had: Loot,
    /// Path under the owner's root to content, as it is now.
    files: Vec<(String, Vec<u8>)>,
}

impl Revoked {
    async fn new() -> Revoked {
        let env = Env::new().await;
        let owner = env.open_with("owner").await;
        let dir = owner
            .mkdir(ROOT_INO, os("shared"), 0o755, WHO)
            .await
            .unwrap()
            .ino;
        let doc = pattern((2 << 20) + 99, 3);
        put(&owner, dir, "doc", &doc).await;
        let note = put(&owner, dir, "note", b"first words").await;
        sync(&owner).await;
        overwrite(&owner, note, b"second words").await;
        sync(&owner).await;
        let (bob, carol) = (Identity::generate(), Identity::generate());
        let info = owner
            .share_add(dir, bob.member(Role::Writer))
            .await
            .unwrap();
        owner
            .share_add(info.ino, carol.member(Role::Reader))
            .await
            .unwrap();
        sync(&owner).await;
        // Bob writes into the folder (entries signed by him).
        let b = member(&env, &bob, "bob").await;
        let bdir = lookup(&b, "shared").await.unwrap();
        put(&b, bdir, "from-bob", b"bob was here").await;
        sync(&b).await;
        assert_eq!(
            read_all(&b, lookup(&b, "shared/doc").await.unwrap()).await,
            doc
        );
        b.shutdown().await.unwrap();
        owner.refresh().await.unwrap();
        let owner_vk = env.id.ed25519.verifying_key();
        let bob_had = Loot::take(env.store.as_ref(), &owner_vk, &bob.x25519).await;
        assert!(
            bob_had.gen_keys.len() >= 2,
            "bob held {} generation keys",
            bob_had.gen_keys.len()
        );
        owner.share_remove(info.ino, &bob.card_id).await.unwrap();
        owner.share_reencrypt(info.ino, &|_, _| {}).await.unwrap();
        sync(&owner).await;
        let files = vec![
            ("shared/doc".to_string(), doc),
            ("shared/note".to_string(), b"second words".to_vec()),
            ("shared/from-bob".to_string(), b"bob was here".to_vec()),
        ];
        Revoked {
            env,
            owner,
            bob,
            carol,
            bob_had,
            files,
        }
    }

    /// The objects of the store that anything Bob held (`loot`) opens,
    /// with how many objects there are in all.
    async fn opened_by(&self, loot: &Loot) -> (Vec<String>, usize) {
        let store = self.env.store.as_ref();
        let owner_vk = self.env.id.ed25519.verifying_key();
        let all = keys_under(store, "").await;
        let mut opened = Vec::new();
        for name in &all {
            let bytes = object_bytes(store, name).await;
            if loot.opens_object(&owner_vk, &self.bob.x25519, name, &bytes) {
                opened.push(name.clone());
            }
        }
        (opened, all.len())
    }
}

/// The member view of `who` with the cache directory `cache`.
async fn member(env: &Env, who: &Identity, cache: &str) -> Drive {
    Drive::open_drive(env.store.clone(), who.clone(), env.opts(cache))
        .await
        .unwrap()
}

async fn overwrite(d: &Drive, ino: Ino, data: &[u8]) {
    let fh = d.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

async fn reads(d: &Drive, files: &[(String, Vec<u8>)]) {
    for (path, data) in files {
        let ino = lookup(d, path).await.unwrap();
        assert_eq!(&read_all(d, ino).await, data, "{path}");
    }
}

/// The kinds (`k`, `l`, `s`, `p`, `c`) of the named objects.
fn kinds(names: &[String]) -> std::collections::BTreeSet<&str> {
    names
        .iter()
        .map(|n| match n.split('/').collect::<Vec<_>>()[..] {
            ["v", _, kind, _] => kind,
            [kind, ..] => kind,
            _ => unreachable!(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_reencryption_and_collection_nothing_the_removed_member_held_opens() {
    let r = Revoked::new().await;
    // The check finds what it looks for: before the collection Bob's keys
    // open keyrings, log entries, roots, pages and content of the folder.
    let (before, _) = r.opened_by(&r.bob_had).await;
    assert_eq!(
        kinds(&before),
        ["c", "k", "l", "p", "s"].into_iter().collect(),
        "{before:?}"
    );

    let report = r.owner.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert!(report.metadata_reclaimed_objects > 0, "{report:?}");
    let (opened, total) = r.opened_by(&r.bob_had).await;
    assert!(
        opened.is_empty(),
        "objects Bob's old keys open after the collection: {opened:?}"
    );
    assert!(total > 10, "{total} objects left");
    // What Bob could take from the store now adds nothing: no keyring
    // opens for him, so no key and no block ref.
    let owner_vk = r.env.id.ed25519.verifying_key();
    let now = Loot::take(r.env.store.as_ref(), &owner_vk, &r.bob.x25519).await;
    assert!(now.gen_keys.is_empty() && now.blocks.is_empty());
    // The keyrings left are each volume's newest generation only.
    let rings = keys_under(r.env.store.as_ref(), "k/").await;
    assert_eq!(rings.len(), 2, "{rings:?}");
    // Nothing more to collect, and fsck finds nothing wrong.
    let again = r.owner.gc(&now_all(), &|_, _| {}).await.unwrap();
    assert_eq!(
        (again.reclaimed_objects, again.metadata_reclaimed_objects),
        (0, 0)
    );
    let fsck = r
        .owner
        .fsck(FsckOptions::default(), &|_, _| {})
        .await
        .unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    reads(&r.owner, &r.files).await;
    r.owner.shutdown().await.unwrap();

    // The owner from an empty cache and Carol (her member view, fresh)
    // read every current file.
    reads(&r.env.open_with("owner-fresh").await, &r.files).await;
    let carol = member(&r.env, &r.carol, "carol").await;
    assert_eq!(names(&carol, ROOT_INO).await, ["shared"]);
    reads(&carol, &r.files).await;
    carol.shutdown().await.unwrap();
    // Bob, with the cache he used as a member, is no member of anything.
    let bob = Drive::open_drive(r.env.store.clone(), r.bob.clone(), r.env.opts("bob")).await;
    assert!(matches!(bob, Err(DriveError::NotMember)), "{:?}", bob.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_window_the_old_generation_stays_and_its_keyring_is_needed() {
    let r = Revoked::new().await;
    let vol = {
        let rings = keys_under(r.env.store.as_ref(), "k/").await;
        let shared: Vec<&String> = rings
            .iter()
            .filter(|k| rings.iter().filter(|o| o[..34] == k[..34]).count() > 1)
            .collect();
        shared[0][2..34].to_string()
    };
    let before = keys_under(r.env.store.as_ref(), &format!("k/{vol}/")).await;
    assert_eq!(before.len(), 3, "{before:?}");
    r.owner.gc(&window(), &|_, _| {}).await.unwrap();
    // History keeps the old generation: its keyrings, entries and the
    // content of the versions before the re-encryption.
    assert_eq!(
        keys_under(r.env.store.as_ref(), &format!("k/{vol}/")).await,
        before
    );
    let (opened, _) = r.opened_by(&r.bob_had).await;
    assert!(kinds(&opened).contains("c") && kinds(&opened).contains("l"));
    let versions = r.owner.history(b"shared/note").await.unwrap();
    assert!(versions.len() >= 2, "{versions:?}");
    r.owner.shutdown().await.unwrap();

    // A store that hides an old keyring the window still needs: the
    // history walk meets an entry of that generation and names the keyring.
    let hidden = before[1].clone();
    let bytes = object_bytes(r.env.store.as_ref(), &hidden).await;
    r.env.store.delete(&hidden).await.unwrap();
    let d = r.env.open_with("owner-fresh").await;
    reads(&d, &r.files).await;
    let err = d.history(b"shared/note").await.unwrap_err();
    assert_eq!(tampered_object(err), hidden);
    d.shutdown().await.unwrap();
    // Put back, the same walk succeeds.
    let store: Arc<dyn ObjectStore> = r.env.store.clone();
    store
        .put(&hidden, bytes.into(), PutMode::Create)
        .await
        .unwrap();
    let d = r.env.open_with("owner-again").await;
    assert_eq!(
        d.history(b"shared/note").await.unwrap().len(),
        versions.len()
    );
    d.shutdown().await.unwrap();
}
