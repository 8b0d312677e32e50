//! Volume keys across generations, engine level (MemoryStore, generated
//! identities): members added later read old content; a removed member
//! cannot open anything written after the rotation even holding every old
//! key; re-encryption leaves no current block under old keys; forged
//! keyrings and log entries are refused with Tampered/Rollback naming the
//! object.
//!
//! These run on the root volume, whose keyring the owner rotates here to
//! add members; shared folders use the same engine code per volume.

use crate::support::drive::loot::{block_refs_in, try_keys};
use crate::support::drive::{WHO, keys_under, os, put, read_all, sync, tampered_object};
use crate::support::forge;
use cardfs::drive::*;
use cardfs::format::crypto::{SecretKey, WRAPPED_KEY_LEN, wrap_key};
use cardfs::format::meta::{
    self, ENTRY_MAGIC, Keyring, MemberRecord, SignedHead, volume_key_context,
};
use cardfs::store::{GetOptions, MemoryStore, ObjectStore, PutMode};
use ed25519_dalek::Signer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Alice owns the drive; Bob, Carol and Mallory are other card holders.
struct World {
    store: Arc<dyn ObjectStore>,
    alice: Identity,
    bob: Identity,
    carol: Identity,
    dir: tempfile::TempDir,
}

fn rec(id: &Identity, role: Role) -> MemberRecord {
    id.member(role).record()
}

impl World {
    /// Alice as owner plus `others`.
    fn team(&self, others: &[(&Identity, Role)]) -> Vec<MemberRecord> {
        let mut v = vec![rec(&self.alice, Role::Owner)];
        v.extend(others.iter().map(|(id, role)| rec(id, *role)));
        v
    }
}

impl World {
    async fn new() -> World {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let alice = Identity::generate();
        Drive::create_drive(store.clone(), &alice, b"alice card")
            .await
            .unwrap();
        World {
            store,
            alice,
            bob: Identity::generate(),
            carol: Identity::generate(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn opts(&self, cache: &str) -> DriveOptions {
        let mut o = DriveOptions::new(self.dir.path().join(cache));
        o.refresh_interval = Duration::from_secs(3600);
        o
    }

    async fn try_open(&self, who: &Identity, cache: &str) -> Result<Drive> {
        Drive::open_drive(self.store.clone(), who.clone(), self.opts(cache)).await
    }

    async fn open(&self, who: &Identity, cache: &str) -> Drive {
        self.try_open(who, cache).await.unwrap()
    }

    fn owner_vk(&self) -> ed25519_dalek::VerifyingKey {
        self.alice.ed25519.verifying_key()
    }

    /// Content objects that are not in `before`.
    async fn new_objects(&self, before: &[String]) -> Vec<String> {
        keys_under(self.store.as_ref(), "c/")
            .await
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect()
    }

    async fn keyring_names(&self) -> Vec<String> {
        keys_under(self.store.as_ref(), "k/").await
    }

    async fn volume(&self) -> [u8; 16] {
        let k = &self.keyring_names().await[0];
        let hex = &k[2..34];
        let mut v = [0u8; 16];
        for (i, b) in v.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        v
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        self.store
            .get(key, GetOptions::default())
            .await
            .unwrap()
            .bytes
            .to_vec()
    }

    async fn set(&self, key: &str, bytes: Vec<u8>) {
        self.store
            .put(key, bytes.into(), PutMode::Overwrite)
            .await
            .unwrap();
    }

    /// Everything `who` can learn as a member: every generation key it can
    /// open (its own generations and their histories) and every block ref
    /// (id, length, key) found in the log and snapshots it can decrypt.
    async fn loot(&self, who: &Identity) -> Loot {
        let mut loot = Loot::default();
        for name in self.keyring_names().await {
            let bytes = self.get(&name).await;
            if let Ok((ring, key)) = Keyring::open(&bytes, &self.owner_vk(), &who.x25519) {
                loot.members.insert(ring.generation, ring.members.clone());
                loot.gen_keys.insert(ring.generation, key);
                for (g, k) in ring.history {
                    loot.gen_keys.insert(g, k);
                }
            }
        }
        // Member lists of generations known only through history.
        for name in self.keyring_names().await {
            let bytes = self.get(&name).await;
            for k in loot.gen_keys.values() {
                if let Ok(ring) = Keyring::open_with_key(&bytes, &self.owner_vk(), k) {
                    loot.members.insert(ring.generation, ring.members.clone());
                }
            }
        }
        for name in keys_under(self.store.as_ref(), "v/").await {
            let bytes = self.get(&name).await;
            let magic = if name.contains("/l/") {
                ENTRY_MAGIC
            } else {
                meta::SNAPSHOT_MAGIC
            };
            let Ok(head) = meta::peek_signed(magic, &bytes) else {
                continue;
            };
            let (Some(key), Some(members)) = (
                loot.gen_keys.get(&head.generation),
                loot.members.get(&head.generation),
            ) else {
                continue;
            };
            let Some(writer) = members.iter().find(|m| m.card_id == head.writer) else {
                continue;
            };
            let Ok((_, payload)) =
                meta::open_signed(magic, &bytes, &writer.verifying_key().unwrap(), key)
            else {
                continue;
            };
            loot.blocks
                .extend(block_refs_in(self.store.as_ref(), magic, &head, key, &payload).await);
        }
        loot
    }
}

#[derive(Default)]
struct Loot {
    gen_keys: BTreeMap<u32, SecretKey>,
    members: BTreeMap<u32, Vec<MemberRecord>>,
    blocks: Vec<meta::BlockRef>,
}

impl Loot {
    /// Whether any stolen key opens content object `c/<id>`: every block
    /// key found, and every generation key too (as if it were a block key),
    /// with every plaintext length found in a block ref.
    fn opens(&self, object: &str, sealed: &[u8]) -> bool {
        try_keys(object, sealed, &self.blocks, self.gen_keys.values())
    }
}

async fn file(d: &Drive, name: &str) -> Vec<u8> {
    let ino = d.lookup(ROOT_INO, os(name)).await.unwrap().ino;
    read_all(d, ino).await
}

/// Overwrites `name` (already existing) with `data`.
async fn overwrite(d: &Drive, name: &str, data: &[u8]) {
    let ino = d.lookup(ROOT_INO, os(name)).await.unwrap().ino;
    let fh = d.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    d.write(ino, fh, 0, data).await.unwrap();
    d.release(ino, fh).await.unwrap();
}

#[tokio::test]
async fn member_added_later_reads_every_generation() {
    let w = World::new().await;
    let a = w.open(&w.alice, "a").await;
    put(&a, ROOT_INO, "g0", b"written in generation zero").await;
    sync(&a).await;
    let g1 = a
        .rotate_keys(w.team(&[(&w.bob, Role::Writer)]), b"team".to_vec())
        .await
        .unwrap();
    assert_eq!(g1, 1);
    put(&a, ROOT_INO, "g1", b"written in generation one").await;
    sync(&a).await;
    let g2 = a
        .rotate_keys(
            w.team(&[(&w.bob, Role::Writer), (&w.carol, Role::Reader)]),
            b"team".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(g2, 2);
    assert_eq!(w.keyring_names().await.len(), 3);

    // Carol (added at generation 2) reads content of generations 0 and 1.
    let c = w.open(&w.carol, "c").await;
    assert_eq!(file(&c, "g0").await, b"written in generation zero");
    assert_eq!(file(&c, "g1").await, b"written in generation one");
    let (generation, name, members) = c.keyring_info();
    assert_eq!(
        (generation, name.as_slice(), members.len()),
        (2, &b"team"[..], 3)
    );
    // A reader cannot write.
    let e = c
        .create(ROOT_INO, os("x"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EROFS);

    // Bob (writer) writes under generation 2; Alice and Carol read it.
    let b = w.open(&w.bob, "b").await;
    put(&b, ROOT_INO, "bob", b"from bob").await;
    sync(&b).await;
    a.refresh().await.unwrap();
    c.refresh().await.unwrap();
    assert_eq!(file(&a, "bob").await, b"from bob");
    assert_eq!(file(&c, "bob").await, b"from bob");
    for d in [a, b, c] {
        d.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn removed_member_cannot_open_anything_written_after() {
    let w = World::new().await;
    let a = w.open(&w.alice, "a").await;
    put(&a, ROOT_INO, "old", b"before removal").await;
    sync(&a).await;
    a.rotate_keys(w.team(&[(&w.bob, Role::Writer)]), b"team".to_vec())
        .await
        .unwrap();
    put(&a, ROOT_INO, "gen1", b"generation one").await;
    sync(&a).await;
    let b = w.open(&w.bob, "b").await;
    assert_eq!(file(&b, "gen1").await, b"generation one");
    // Everything Bob can take while he is a member.
    let loot = w.loot(&w.bob).await;
    assert_eq!(loot.gen_keys.len(), 2);
    assert!(loot.blocks.len() >= 2);
    let before: Vec<String> = keys_under(w.store.as_ref(), "c/").await;
    // The harness works: Bob's keys open the blocks he may read.
    for o in &before {
        assert!(loot.opens(o, &w.get(o).await), "control: {o}");
    }

    // Alice removes Bob, then writes: a new file and the old ones again.
    a.rotate_keys(w.team(&[]), b"team".to_vec()).await.unwrap();
    put(&a, ROOT_INO, "new", b"after removal").await;
    overwrite(&a, "old", b"old file, new content").await;
    overwrite(&a, "gen1", b"gen1 file, new content").await;
    sync(&a).await;
    let after: Vec<String> = w.new_objects(&before).await;
    // Three small block versions, in one to three packs (background
    // commits between the writes close a pack).
    assert!((1..=3).contains(&after.len()), "{after:?}");
    for o in &after {
        assert!(!loot.opens(o, &w.get(o).await), "{o} opened with old keys");
    }
    // Nor can Bob read the new metadata: the new generation is not his.
    let loot2 = w.loot(&w.bob).await;
    assert_eq!(loot2.gen_keys.len(), 2);

    // Bob's running mount stops serving; a new one is refused.
    assert!(matches!(b.refresh().await, Err(DriveError::NotMember)));
    let ino = b.lookup(ROOT_INO, os("gen1")).await.unwrap().ino;
    let fh = b.open(ino, libc::O_RDONLY).await.unwrap();
    let e = b.read(ino, fh, 0, 100).await.unwrap_err();
    assert_eq!(e.errno(), libc::EACCES);
    let e = b
        .create(ROOT_INO, os("y"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EACCES);
    b.abandon().await;
    assert!(matches!(
        w.try_open(&w.bob, "b2").await,
        Err(DriveError::NotMember)
    ));
    assert_eq!(file(&a, "old").await, b"old file, new content");
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn reencrypt_leaves_no_current_block_under_old_keys() {
    let w = World::new().await;
    let a = w.open(&w.alice, "a").await;
    put(&a, ROOT_INO, "zero", b"generation zero data").await;
    a.rotate_keys(w.team(&[(&w.bob, Role::Reader)]), Vec::new())
        .await
        .unwrap();
    put(&a, ROOT_INO, "one", b"generation one data").await;
    let big: Vec<u8> = (0..(2 << 20) + 77).map(|i| (i * 31 % 251) as u8).collect();
    put(&a, ROOT_INO, "big", &big).await;
    sync(&a).await;
    let loot = w.loot(&w.bob).await;
    a.rotate_keys(w.team(&[]), Vec::new()).await.unwrap();
    let before: Vec<String> = keys_under(w.store.as_ref(), "c/").await;
    let seen = std::sync::Mutex::new(Vec::new());
    a.reencrypt(&|done, total| seen.lock().unwrap().push((done, total)))
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    let total = (big.len() + 20 + 19) as u64;
    assert_eq!(seen.last(), Some(&(total, total)));
    let after: Vec<String> = w.new_objects(&before).await;
    // big's two whole blocks, and the three small block versions (zero,
    // one, big's tail) in one to three packs.
    assert!((3..=5).contains(&after.len()), "{after:?}");
    for o in &after {
        assert!(!loot.opens(o, &w.get(o).await), "{o} opened with old keys");
    }
    for o in &before {
        assert!(loot.opens(o, &w.get(o).await), "control: {o}");
    }
    // The current state names only the new objects: delete the old ones
    // and read everything from a fresh cache.
    for o in &before {
        w.store.delete(o).await.unwrap();
    }
    a.shutdown().await.unwrap();
    let a2 = w.open(&w.alice, "a2").await;
    assert_eq!(file(&a2, "zero").await, b"generation zero data");
    assert_eq!(file(&a2, "one").await, b"generation one data");
    assert_eq!(file(&a2, "big").await, big);
    // Nothing left to do: a second run writes nothing.
    let n = keys_under(w.store.as_ref(), "c/").await.len();
    a2.reencrypt(&|_, _| {}).await.unwrap();
    assert_eq!(keys_under(w.store.as_ref(), "c/").await.len(), n);
    a2.shutdown().await.unwrap();
}

/// Alice at generation 1 with Bob (writer) and Carol (reader), a file
/// written; returns the volume id.
async fn two_members(w: &World) -> [u8; 16] {
    let a = w.open(&w.alice, "setup").await;
    put(&a, ROOT_INO, "f", b"data").await;
    a.rotate_keys(
        w.team(&[(&w.bob, Role::Writer), (&w.carol, Role::Reader)]),
        b"team".to_vec(),
    )
    .await
    .unwrap();
    a.shutdown().await.unwrap();
    w.volume().await
}

#[tokio::test]
async fn forged_keyrings_are_refused() {
    let w = World::new().await;
    let vol = two_members(&w).await;
    let vhex: String = vol.iter().map(|b| format!("{b:02x}")).collect();
    let k1 = format!("k/{vhex}/00000001");
    let k0 = format!("k/{vhex}/00000000");
    let good = w.get(&k1).await;
    let owner_vk = w.owner_vk();
    let (ring, _) = Keyring::open(&good, &owner_vk, &w.bob.x25519).unwrap();
    let mallory = Identity::generate();
    let evil_key = SecretKey::random();

    // Magic, version and flags (6), drive, volume, generation, owner card.
    const PUBLIC_PART: usize = 6 + 16 + 16 + 4 + 32;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Bob's wrapped key replaced by one wrapping the attacker's key.
    let mut swapped = good.clone();
    let ctx = volume_key_context(&ring.drive_id, &vol, 1);
    let w_evil = wrap_key(&w.bob.member(Role::Writer).x25519, &evil_key, &ctx).unwrap();
    let at = PUBLIC_PART + 4 + WRAPPED_KEY_LEN; // Bob is member 1
    swapped[at..at + WRAPPED_KEY_LEN].copy_from_slice(&w_evil);
    cases.push(("wrapped key swapped", swapped));
    // The same, re-signed by the attacker.
    let mut resigned = good[..good.len() - 64].to_vec();
    resigned[at..at + WRAPPED_KEY_LEN].copy_from_slice(&w_evil);
    let sig = mallory.ed25519.sign(&resigned);
    resigned.extend_from_slice(&sig.to_bytes());
    cases.push(("swapped and re-signed by a non-owner", resigned));
    // A complete keyring made by a non-owner (naming Alice as owner).
    let forged = Keyring {
        history: vec![(0, SecretKey::random())],
        ..ring.clone()
    }
    .seal(&evil_key, &mallory.ed25519)
    .unwrap();
    cases.push(("sealed by a non-owner", forged));
    // Empty: no wrapped keys, nothing encrypted.
    let mut empty = good[..PUBLIC_PART].to_vec();
    empty.extend_from_slice(&0u32.to_le_bytes());
    cases.push(("empty", empty));
    // Shortened: the last wrapped key and everything after cut off.
    cases.push(("truncated", good[..good.len() / 2].to_vec()));
    let mut one_less = good.clone();
    one_less.drain(at..at + WRAPPED_KEY_LEN);
    let places = u32::from_le_bytes(good[PUBLIC_PART..PUBLIC_PART + 4].try_into().unwrap());
    one_less[PUBLIC_PART..PUBLIC_PART + 4].copy_from_slice(&(places - 1).to_le_bytes());
    cases.push(("one wrapped key removed", one_less));
    // Generation 0's keyring stored as generation 1.
    cases.push(("another generation's keyring", w.get(&k0).await));

    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        w.set(&k1, bytes).await;
        for who in [&w.alice, &w.bob] {
            let e = w
                .try_open(who, &format!("t{i}-{}", who.card_id[0]))
                .await
                .expect_err(what);
            assert_eq!(tampered_object(e), k1, "{what}");
        }
        w.set(&k1, good.clone()).await;
    }
    // Untouched again: both open.
    w.open(&w.bob, "ok-b").await.shutdown().await.unwrap();
}

#[tokio::test]
async fn hiding_the_newest_keyring_is_rollback() {
    let w = World::new().await;
    let vol = two_members(&w).await;
    let a = w.open(&w.alice, "a").await;
    a.rotate_keys(w.team(&[(&w.bob, Role::Writer)]), b"team".to_vec())
        .await
        .unwrap();
    a.shutdown().await.unwrap();
    // Bob accepts generation 2.
    w.open(&w.bob, "b").await.shutdown().await.unwrap();
    let vhex: String = vol.iter().map(|b| format!("{b:02x}")).collect();
    let k2 = format!("k/{vhex}/00000002");
    let saved = w.get(&k2).await;
    w.store.delete(&k2).await.unwrap();
    for (who, cache) in [(&w.alice, "a"), (&w.bob, "b")] {
        match w.try_open(who, cache).await {
            Err(DriveError::Rollback { known, offered, .. }) => {
                assert_eq!((known, offered), (2, 1))
            }
            other => panic!("expected Rollback, got {other:?}"),
        }
    }
    // A client that never saw generation 2 finds the log names it.
    let e = w.try_open(&w.alice, "fresh").await.unwrap_err();
    assert!(tampered_object(e).starts_with(&format!("v/{vhex}/")));
    w.set(&k2, saved).await;
    w.open(&w.bob, "b").await.shutdown().await.unwrap();
}

/// Appends a log entry signed by `signer` (card `card`) under generation
/// `generation` with `key`, after the current last entry.
async fn forge_entry(
    w: &World,
    vol: [u8; 16],
    card: [u8; 32],
    signer: &ed25519_dalek::SigningKey,
    generation: u32,
    key: &SecretKey,
    unsigned: bool,
) -> String {
    let vhex: String = vol.iter().map(|b| format!("{b:02x}")).collect();
    let log = keys_under(w.store.as_ref(), &format!("v/{vhex}/l/")).await;
    let last = log.last().unwrap();
    let seq = log.len() as u64;
    let previous = w.get(last).await;
    let mut bytes = forge::chmod_root_entry(vol, seq, generation, card, &previous, key, signer);
    if unsigned {
        let n = bytes.len();
        bytes[n - 64..].fill(0);
    }
    let name = format!("v/{vhex}/l/{seq:016x}");
    w.set(&name, bytes).await;
    name
}

#[tokio::test]
async fn forged_entries_are_refused() {
    let w = World::new().await;
    let vol = two_members(&w).await;
    let loot_c = w.loot(&w.carol).await;
    let loot_b = w.loot(&w.bob).await;
    let k1 = loot_c.gen_keys[&1].clone();
    let a = w.open(&w.alice, "a").await;

    // By a reader, signed with her own key.
    let name = forge_entry(&w, vol, w.carol.card_id, &w.carol.ed25519, 1, &k1, false).await;
    assert_eq!(tampered_object(a.refresh().await.unwrap_err()), name);
    let e = w.try_open(&w.bob, "b1").await.unwrap_err();
    assert_eq!(tampered_object(e), name);
    w.store.delete(&name).await.unwrap();
    // Unsigned (a writer's card, zero signature).
    let name = forge_entry(&w, vol, w.bob.card_id, &w.bob.ed25519, 1, &k1, true).await;
    assert_eq!(tampered_object(a.refresh().await.unwrap_err()), name);
    w.store.delete(&name).await.unwrap();
    // Under a key that is not the volume's.
    let name = forge_entry(
        &w,
        vol,
        w.bob.card_id,
        &w.bob.ed25519,
        1,
        &SecretKey::random(),
        false,
    )
    .await;
    assert_eq!(tampered_object(a.refresh().await.unwrap_err()), name);
    w.store.delete(&name).await.unwrap();
    a.refresh().await.unwrap();

    // Bob is removed; he writes after the rotation with the generation in
    // which he was a writer.
    a.rotate_keys(w.team(&[(&w.carol, Role::Reader)]), b"team".to_vec())
        .await
        .unwrap();
    let kb = loot_b.gen_keys[&1].clone();
    let name = forge_entry(&w, vol, w.bob.card_id, &w.bob.ed25519, 1, &kb, false).await;
    assert_eq!(tampered_object(a.refresh().await.unwrap_err()), name);
    let e = w.try_open(&w.carol, "c1").await.unwrap_err();
    assert_eq!(tampered_object(e), name);
    // ... or claiming the new generation (he has no key for it).
    w.store.delete(&name).await.unwrap();
    let name = forge_entry(&w, vol, w.bob.card_id, &w.bob.ed25519, 2, &kb, false).await;
    assert_eq!(tampered_object(a.refresh().await.unwrap_err()), name);
    w.store.delete(&name).await.unwrap();
    a.refresh().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn writer_catches_up_with_a_rotation_and_demotion_ends_writes() {
    let w = World::new().await;
    two_members(&w).await;
    let a = w.open(&w.alice, "a").await;
    let b = w.open(&w.bob, "b").await;
    // Alice rotates while Bob's mount is open; Bob's next commit lands
    // after the rotation (he reloads keys and rebases).
    a.rotate_keys(w.team(&[(&w.bob, Role::Writer)]), b"team".to_vec())
        .await
        .unwrap();
    put(&b, ROOT_INO, "late", b"written by bob").await;
    sync(&b).await;
    assert_eq!(b.keyring_info().0, 2);
    a.refresh().await.unwrap();
    assert_eq!(file(&a, "late").await, b"written by bob");
    // Bob becomes a reader: his mount refuses writes after a refresh.
    a.rotate_keys(w.team(&[(&w.bob, Role::Reader)]), b"team".to_vec())
        .await
        .unwrap();
    b.refresh().await.unwrap();
    let e = b
        .create(ROOT_INO, os("no"), 0o644, libc::O_RDWR, WHO)
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EROFS);
    assert_eq!(file(&b, "late").await, b"written by bob");
    // Only the owner rotates.
    let e = b
        .rotate_keys(vec![rec(&w.bob, Role::Owner)], Vec::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EPERM);
    for d in [a, b] {
        d.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn removed_writer_cannot_forge_a_snapshot() {
    let w = World::new().await;
    let vol = two_members(&w).await;
    let loot_b = w.loot(&w.bob).await;
    let a = w.open(&w.alice, "a").await;
    a.rotate_keys(w.team(&[(&w.carol, Role::Reader)]), b"team".to_vec())
        .await
        .unwrap();
    put(&a, ROOT_INO, "after", b"after bob left").await;
    a.shutdown().await.unwrap();
    // Bob signs a snapshot of an empty tree under generation 1 (where he
    // was a writer), covering the newest entry.
    let vhex: String = vol.iter().map(|b| format!("{b:02x}")).collect();
    let log = keys_under(w.store.as_ref(), &format!("v/{vhex}/l/")).await;
    let seq = log.len() as u64 - 1;
    let head = SignedHead {
        volume: vol,
        seq,
        generation: 1,
        writer: w.bob.card_id,
        chain: meta::sha256(&w.get(log.last().unwrap()).await),
    };
    let root = meta::Node {
        id: 1,
        kind: meta::KIND_DIR,
        perm: 0o777,
        nlink: 2,
        parent: 1,
        next_cookie: 1,
        ..Default::default()
    };
    // One page holding the root directory, then the root naming it.
    let place = meta::PagePlace {
        volume: vol,
        generation: 1,
        bucket: 0,
        bucket_bits: 0,
    };
    let page = meta::seal_page(
        &place,
        &loot_b.gen_keys[&1],
        &meta::encode_page_body([root].iter()),
    );
    let hash = meta::sha256(&page);
    let page_hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    w.set(&format!("v/{vhex}/p/{page_hex}"), page).await;
    let body = meta::CheckpointRoot {
        clients: BTreeMap::new(),
        bucket_bits: 0,
        pages: vec![hash],
    };
    let snap = meta::seal_signed(
        meta::SNAPSHOT_MAGIC,
        &head,
        &loot_b.gen_keys[&1],
        &w.bob.ed25519,
        &body.encode(),
    );
    w.set(&format!("v/{vhex}/s/{seq:016x}"), snap).await;
    // A new client does not take it: it replays the log.
    let c = w.open(&w.carol, "c").await;
    assert_eq!(file(&c, "f").await, b"data");
    assert_eq!(file(&c, "after").await, b"after bob left");
    c.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rotation_cut_short_before_its_log_entry_still_holds() {
    let w = World::new().await;
    let vol = two_members(&w).await;
    let vhex: String = vol.iter().map(|b| format!("{b:02x}")).collect();
    let log_before = keys_under(w.store.as_ref(), &format!("v/{vhex}/l/")).await;
    let snaps_before = keys_under(w.store.as_ref(), &format!("v/{vhex}/s/")).await;
    let pages_before = keys_under(w.store.as_ref(), &format!("v/{vhex}/p/")).await;
    let a = w.open(&w.alice, "a").await;
    a.rotate_keys(w.team(&[(&w.bob, Role::Writer)]), b"team".to_vec())
        .await
        .unwrap();
    a.abandon().await;
    // As if the owner crashed after writing keyring 2: its rotation entry
    // and checkpoint (root and pages) never reached the store.
    for k in keys_under(w.store.as_ref(), &format!("v/{vhex}/")).await {
        if !log_before.contains(&k) && !snaps_before.contains(&k) && !pages_before.contains(&k) {
            w.store.delete(&k).await.unwrap();
        }
    }
    // Carol, removed by keyring 2, is out at once.
    assert!(matches!(
        w.try_open(&w.carol, "c").await,
        Err(DriveError::NotMember)
    ));
    // The owner's next change is sealed under generation 2; Bob reads it,
    // Carol's keys open nothing of it.
    let before = keys_under(w.store.as_ref(), "c/").await;
    let a = w.open(&w.alice, "a2").await;
    put(&a, ROOT_INO, "next", b"after the cut").await;
    sync(&a).await;
    a.shutdown().await.unwrap();
    let b = w.open(&w.bob, "b").await;
    assert_eq!(b.keyring_info().0, 2);
    assert_eq!(file(&b, "next").await, b"after the cut");
    b.shutdown().await.unwrap();
    let loot = w.loot(&w.carol).await;
    let new: Vec<String> = w.new_objects(&before).await;
    assert_eq!(new.len(), 1);
    assert!(!loot.opens(&new[0], &w.get(&new[0]).await));
}
