//! The card directory over an untrusted store: publish, find and get,
//! with the store swapping, misnaming and corrupting card objects
//! (MemoryStore) and failing calls (FaultStore).

use bytes::Bytes;
use cardfs::format::card::{Card, CardId};
use cardfs::format::key::UserKey;
use cardfs::identity::directory::{
    self, DirectoryError, Invalid, Published, card_key, id_key, identity_folder,
};
use cardfs::store::{
    FaultConfig, FaultStore, GetOptions, MemoryStore, ObjectStore, PutMode, StoreError,
};
use std::sync::Arc;

fn card(seed: u8, identity: &str, created: u64) -> (UserKey, Card) {
    let key = UserKey::from_secret_bytes("k", &[seed; 32], &[seed + 1; 32]).unwrap();
    let card = Card::create(&key, identity, created).unwrap();
    (key, card)
}

async fn put(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    store
        .put(key, Bytes::from(bytes), PutMode::Overwrite)
        .await
        .unwrap();
}

#[tokio::test]
async fn publish_find_get_round_trip_and_idempotence() {
    let store = MemoryStore::new();
    let (_, alice) = card(1, "alice", 10);
    let (_, alice_new) = card(3, "alice", 20);
    let (_, bob) = card(5, "bob", 10);
    assert_eq!(
        directory::publish(&store, &alice).await.unwrap(),
        Published::New
    );
    assert_eq!(
        directory::publish(&store, &alice).await.unwrap(),
        Published::Unchanged
    );
    directory::publish(&store, &alice_new).await.unwrap();
    directory::publish(&store, &bob).await.unwrap();
    // Two objects per card: by identity and by id.
    assert_eq!(store.len(), 6);

    let found = directory::find(&store, "alice").await.unwrap();
    assert_eq!(found.cards, vec![alice_new.clone(), alice.clone()]);
    assert!(found.rejected.is_empty());
    assert_eq!(
        directory::find(&store, "bob").await.unwrap().cards,
        vec![bob]
    );
    assert!(
        directory::find(&store, "carol")
            .await
            .unwrap()
            .cards
            .is_empty()
    );
    assert_eq!(directory::get(&store, alice.id()).await.unwrap(), alice);
    assert!(matches!(
        directory::get(&store, CardId([7; 32])).await,
        Err(DirectoryError::NotFound(_))
    ));
    assert!(matches!(
        directory::find(&store, "../etc").await,
        Err(DirectoryError::Name(_))
    ));
}

#[tokio::test]
async fn republishing_adds_approvals_and_never_drops_them() {
    let store = MemoryStore::new();
    let (a1_key, a1) = card(11, "acme", 1);
    let (a2_key, a2) = card(13, "other-ca", 1);
    let (_, alice) = card(1, "alice", 10);
    directory::publish(&store, &alice).await.unwrap();
    let mut by_a1 = alice.clone();
    by_a1.approve(&a1_key, &a1).unwrap();
    let mut by_a2 = alice.clone();
    by_a2.approve(&a2_key, &a2).unwrap();
    assert_eq!(
        directory::publish(&store, &by_a1).await.unwrap(),
        Published::ApprovalsAdded(1)
    );
    // A publisher holding only the other approval keeps the first one.
    assert_eq!(
        directory::publish(&store, &by_a2).await.unwrap(),
        Published::ApprovalsAdded(1)
    );
    // Publishing the bare card again removes nothing.
    assert_eq!(
        directory::publish(&store, &alice).await.unwrap(),
        Published::Unchanged
    );
    let found = directory::find(&store, "alice").await.unwrap().cards;
    assert_eq!(found.len(), 1);
    assert!(found[0].approved_by(&a1) && found[0].approved_by(&a2));
    let got = directory::get(&store, alice.id()).await.unwrap();
    assert!(got.approved_by(&a1) && got.approved_by(&a2));
}

#[tokio::test]
async fn swapped_card_object_is_refused() {
    let store = MemoryStore::new();
    let (_, alice) = card(1, "alice", 10);
    let (_, forged) = card(9, "alice", 10);
    directory::publish(&store, &alice).await.unwrap();
    // The store replaces Alice's card with a valid card for "alice" made
    // from the attacker's keys, under the real card's names.
    let key = card_key("alice", alice.id()).unwrap();
    put(&store, &key, forged.to_bytes()).await;
    put(&store, &id_key(alice.id()), forged.to_bytes()).await;
    let found = directory::find(&store, "alice").await.unwrap();
    assert!(found.cards.is_empty(), "{:?}", found.cards);
    assert_eq!(found.rejected.len(), 1);
    assert_eq!(found.rejected[0].key, key);
    assert!(matches!(
        found.rejected[0].reason,
        Invalid::IdMismatch { named, actual } if named == alice.id() && actual == forged.id()
    ));
    assert!(matches!(
        directory::get(&store, alice.id()).await,
        Err(DirectoryError::Invalid {
            reason: Invalid::IdMismatch { .. },
            ..
        })
    ));
    // The owner publishing again repairs both objects.
    assert_eq!(
        directory::publish(&store, &alice).await.unwrap(),
        Published::Repaired
    );
    assert_eq!(directory::get(&store, alice.id()).await.unwrap(), alice);
}

#[tokio::test]
async fn card_under_another_identity_or_name_is_refused() {
    let store = MemoryStore::new();
    let (_, alice) = card(1, "alice", 10);
    let (_, mallory) = card(9, "mallory", 10);
    directory::publish(&store, &alice).await.unwrap();
    // Mallory's own card, stored under its own id but in Alice's folder.
    put(
        &store,
        &format!("{}{}.card", identity_folder("alice").unwrap(), mallory.id()),
        mallory.to_bytes(),
    )
    .await;
    // Mallory's card under the name of another id.
    put(
        &store,
        &format!("{}{}.card", identity_folder("mallory").unwrap(), alice.id()),
        mallory.to_bytes(),
    )
    .await;
    let found = directory::find(&store, "alice").await.unwrap();
    assert_eq!(found.cards, vec![alice.clone()]);
    assert!(matches!(
        &found.rejected[..],
        [r] if matches!(&r.reason, Invalid::IdentityMismatch { actual, .. } if actual == "mallory")
    ));
    let found = directory::find(&store, "mallory").await.unwrap();
    assert!(found.cards.is_empty());
    assert!(matches!(
        found.rejected[0].reason,
        Invalid::IdMismatch { .. }
    ));
}

#[tokio::test]
async fn malformed_objects_are_skipped_and_the_rest_still_listed() {
    let store = MemoryStore::new();
    let (_, alice) = card(1, "alice", 10);
    let (_, alice2) = card(3, "alice", 11);
    directory::publish(&store, &alice).await.unwrap();
    directory::publish(&store, &alice2).await.unwrap();
    let folder = identity_folder("alice").unwrap();
    // A truncated copy under its own name, garbage, a bad name, and a
    // flipped bit in a real card.
    let (_, carol) = card(7, "alice", 12);
    let mut truncated = carol.to_bytes();
    truncated.truncate(40);
    put(&store, &format!("{folder}{}.card", carol.id()), truncated).await;
    put(
        &store,
        &format!("{folder}{}.card", CardId([1; 32])),
        b"junk".to_vec(),
    )
    .await;
    put(
        &store,
        &format!("{folder}not-a-card-name"),
        alice.to_bytes(),
    )
    .await;
    let mut flipped = alice2.to_bytes();
    flipped[20] ^= 1;
    put(&store, &card_key("alice", alice2.id()).unwrap(), flipped).await;

    let found = directory::find(&store, "alice").await.unwrap();
    assert_eq!(found.cards, vec![alice.clone()]);
    assert_eq!(found.rejected.len(), 4, "{:?}", found.rejected);
    assert!(
        found
            .rejected
            .iter()
            .any(|r| matches!(r.reason, Invalid::BadName))
    );
    assert!(
        found
            .rejected
            .iter()
            .filter(|r| matches!(r.reason, Invalid::Card(_)))
            .count()
            == 3
    );
}

#[tokio::test]
async fn store_failures_are_errors_not_empty_listings() {
    let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let (_, alice) = card(1, "alice", 10);
    directory::publish(inner.as_ref(), &alice).await.unwrap();
    let faulty = FaultStore::new(inner.clone(), FaultConfig::default());
    // Call 1 is the listing, call 2 the read of the one card.
    for call in [1, 2] {
        faulty.set_config(FaultConfig {
            fail_calls: vec![faulty.calls() + call],
            ..FaultConfig::default()
        });
        assert!(matches!(
            directory::find(&faulty, "alice").await,
            Err(DirectoryError::Store(StoreError::Transient { .. }))
        ));
    }
    // A failed publish (first put) leaves the directory as it was.
    let (_, bob) = card(5, "bob", 10);
    faulty.set_config(FaultConfig {
        fail_calls: vec![faulty.calls() + 2],
        ..FaultConfig::default()
    });
    assert!(directory::publish(&faulty, &bob).await.is_err());
    assert!(
        directory::find(inner.as_ref(), "bob")
            .await
            .unwrap()
            .cards
            .is_empty()
    );
    faulty.set_config(FaultConfig::default());
    assert_eq!(
        directory::publish(&faulty, &bob).await.unwrap(),
        Published::New
    );
    assert_eq!(
        directory::find(&faulty, "bob").await.unwrap().cards,
        vec![bob]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_races_lose_no_approval() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let (_, alice) = card(1, "alice", 10);
    let authorities: Vec<(UserKey, Card)> = (0..6).map(|i| card(20 + 2 * i, "ca", 1)).collect();
    let tasks: Vec<_> = authorities
        .iter()
        .map(|(key, auth)| {
            let mut approved = alice.clone();
            approved.approve(key, auth).unwrap();
            let store = store.clone();
            tokio::spawn(async move { directory::publish(store.as_ref(), &approved).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stored = store
        .get(
            &card_key("alice", alice.id()).unwrap(),
            GetOptions::default(),
        )
        .await
        .unwrap();
    let stored = Card::from_bytes(&stored.bytes).unwrap();
    for (_, auth) in &authorities {
        assert!(stored.approved_by(auth));
    }
}

#[tokio::test]
async fn all_lists_every_published_card_and_skips_a_swapped_one() {
    let store = MemoryStore::new();
    let (_, alice) = card(1, "alice@example.org", 10);
    let (_, bob) = card(5, "bob@example.org", 10);
    let (_, mallory) = card(7, "mallory", 10);
    assert!(directory::all(&store).await.unwrap().cards.is_empty());
    directory::publish(&store, &alice).await.unwrap();
    directory::publish(&store, &bob).await.unwrap();
    // The store puts Mallory's card where Bob's by-id copy should be.
    put(&store, &id_key(bob.id()), mallory.to_bytes()).await;
    let found = directory::all(&store).await.unwrap();
    assert_eq!(found.cards, [alice]);
    assert_eq!(found.rejected.len(), 1);
    assert_eq!(found.rejected[0].key, id_key(bob.id()));
}
