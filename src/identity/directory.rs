//! The card directory: users' cards published inside an object store, so
//! that others can find a card by identity or by card id. Layout in
//! docs/FORMAT.md, "Card directory".
//!
//! Invariants:
//! - The store is not trusted. Every object read is parsed by
//!   [`Card::from_bytes`] (self-signature, version, keys), and its card id
//!   must equal the id in its object name and its identity the identity
//!   the name was derived from. Anything else is reported as a
//!   [`Rejected`] entry and never returned as a card; one bad object never
//!   hides the good ones.
//! - A card found here is only a candidate: whether it may be used is
//!   decided by [`crate::identity::trust`] against the local pins.
//! - Publishing is idempotent and only ever adds approvals: the object is
//!   updated with compare-and-swap, merging the approvals already stored,
//!   so concurrent publishers (the owner and an authority) lose nothing.

use crate::format::card::{Card, CardError, CardId};
use crate::format::key::{InvalidName, check_name};
use crate::format::wire::{hash, hex};
use crate::store::{GetOptions, ObjectStore, PutMode, StoreError};
use bytes::Bytes;

/// Prefix of every directory object.
pub const PREFIX: &str = "cards/v1/";
const IDENTITY_LABEL: &[u8] = b"cardfs/v1/directory-identity";
const SUFFIX: &str = ".card";
/// Compare-and-swap attempts before publishing gives up.
const ATTEMPTS: usize = 8;

/// Why a directory operation failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("no card with id {0} is published in this store")]
    NotFound(CardId),
    #[error("the store's object {key} is not a valid card: {reason}")]
    Invalid { key: String, reason: Invalid },
    #[error("the card object {key} kept changing while publishing; try again")]
    Contended { key: String },
}

/// Why one stored object was refused.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("{0}")]
    Card(#[from] CardError),
    #[error("it holds card {actual}, not the card {named} its name says")]
    IdMismatch { named: CardId, actual: CardId },
    #[error("it holds a card for {actual:?}, not for {expected:?}")]
    IdentityMismatch { expected: String, actual: String },
    #[error("its name is not IDENTITY-HASH/CARD-ID{SUFFIX}")]
    BadName,
}

/// A stored object that was skipped, and why.
#[derive(Debug)]
pub struct Rejected {
    pub key: String,
    pub reason: Invalid,
}

/// What [`find`] saw under an identity.
#[derive(Debug, Default)]
pub struct Found {
    /// Verified cards for the identity, sorted by creation time, newest first.
    pub cards: Vec<Card>,
    /// Objects that were skipped (malformed, swapped or misnamed).
    pub rejected: Vec<Rejected>,
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The card was not in the directory; now it is.
    New,
    /// The directory already held this card with every approval given.
    Unchanged,
    /// The card was there; this many approvals were added.
    ApprovalsAdded(usize),
    /// The object under the card's name was not a valid copy of the card
    /// (tampered or malformed) and has been replaced.
    Repaired,
}

/// `SHA-256("cardfs/v1/directory-identity" || identity)` in hex: the
/// folder of an identity's cards. Identities are used exactly as written
/// (they are already restricted to ASCII letters, digits and `._@+-`), so
/// `Alice` and `alice` are different identities, as in the local pins.
pub fn identity_folder(identity: &str) -> Result<String, InvalidName> {
    check_name(identity)?;
    Ok(format!(
        "{PREFIX}{}/",
        hex(&hash(IDENTITY_LABEL, &[identity.as_bytes()]))
    ))
}

/// Key of the copy found by identity.
pub fn card_key(identity: &str, id: CardId) -> Result<String, InvalidName> {
    Ok(format!("{}{id}{SUFFIX}", identity_folder(identity)?))
}

/// Key of the copy found by card id.
pub fn id_key(id: CardId) -> String {
    format!("{PREFIX}by-id/{id}{SUFFIX}")
}

/// Parses and checks one stored object (see the module invariants).
fn verify(bytes: &[u8], named: CardId, identity: Option<&str>) -> Result<Card, Invalid> {
    let card = Card::from_bytes(bytes)?;
    if card.id() != named {
        return Err(Invalid::IdMismatch {
            named,
            actual: card.id(),
        });
    }
    if let Some(expected) = identity
        && card.identity() != expected
    {
        return Err(Invalid::IdentityMismatch {
            expected: expected.to_string(),
            actual: card.identity().to_string(),
        });
    }
    Ok(card)
}

/// The card id in an object name `FOLDER/CARD-ID.card`.
fn named_id(key: &str, folder: &str) -> Option<CardId> {
    key.strip_prefix(folder)?.strip_suffix(SUFFIX)?.parse().ok()
}

/// Publishes `card` (with its approvals) under both of its keys.
/// Idempotent; see the module invariants.
pub async fn publish(store: &dyn ObjectStore, card: &Card) -> Result<Published, DirectoryError> {
    let by_identity = put_merged(store, &card_key(card.identity(), card.id())?, card).await?;
    // The by-id copy follows the same rules; report the identity copy,
    // which is the one `find` reads.
    put_merged(store, &id_key(card.id()), card).await?;
    Ok(by_identity)
}

/// Creates or updates one object holding `card`, merging the approvals
/// already stored there, by compare-and-swap.
async fn put_merged(
    store: &dyn ObjectStore,
    key: &str,
    card: &Card,
) -> Result<Published, DirectoryError> {
    for _ in 0..ATTEMPTS {
        let current = match store.get(key, GetOptions::default()).await {
            Ok(current) => Some(current),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let (body, mode, outcome) = match current {
            None => (card.clone(), PutMode::Create, Published::New),
            Some(current) => {
                let mode = PutMode::Update(current.meta.etag);
                match verify(&current.bytes, card.id(), Some(card.identity())) {
                    Ok(mut stored) => match stored.merge_approvals(card) {
                        0 => return Ok(Published::Unchanged),
                        n => (stored, mode, Published::ApprovalsAdded(n)),
                    },
                    Err(_) => (card.clone(), mode, Published::Repaired),
                }
            }
        };
        match store.put(key, Bytes::from(body.to_bytes()), mode).await {
            Ok(_) => return Ok(outcome),
            Err(StoreError::PreconditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DirectoryError::Contended {
        key: key.to_string(),
    })
}

/// Every verified card published for `identity`, and every object under
/// the identity's folder that was refused (for the caller to report).
/// Store failures fail the whole call; an object deleted between listing
/// and reading is skipped.
pub async fn find(store: &dyn ObjectStore, identity: &str) -> Result<Found, DirectoryError> {
    let mut found = read_folder(store, &identity_folder(identity)?, Some(identity)).await?;
    found
        .cards
        .sort_by(|a, b| b.created().cmp(&a.created()).then(a.id().cmp(&b.id())));
    Ok(found)
}

/// Every verified card published in the store (through the by-id copies),
/// for suggestions when an identity matches none exactly. One read per
/// published card: meant for small directories and error paths.
pub async fn all(store: &dyn ObjectStore) -> Result<Found, DirectoryError> {
    read_folder(store, &format!("{PREFIX}by-id/"), None).await
}

/// Reads and verifies every card object under `folder` (each named by its
/// card id, and of `identity` when given).
async fn read_folder(
    store: &dyn ObjectStore,
    folder: &str,
    identity: Option<&str>,
) -> Result<Found, DirectoryError> {
    let mut found = Found::default();
    for meta in store.list_all(folder).await? {
        let Some(named) = named_id(&meta.key, folder) else {
            reject(&mut found, meta.key, Invalid::BadName);
            continue;
        };
        let bytes = match store.get(&meta.key, GetOptions::default()).await {
            Ok(got) => got.bytes,
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        match verify(&bytes, named, identity) {
            Ok(card) => found.cards.push(card),
            Err(reason) => reject(&mut found, meta.key, reason),
        }
    }
    Ok(found)
}

fn reject(found: &mut Found, key: String, reason: Invalid) {
    found.rejected.push(Rejected { key, reason });
}

/// The published card with id `id`, verified against that id.
pub async fn get(store: &dyn ObjectStore, id: CardId) -> Result<Card, DirectoryError> {
    let key = id_key(id);
    let bytes = match store.get(&key, GetOptions::default()).await {
        Ok(got) => got.bytes,
        Err(StoreError::NotFound { .. }) => return Err(DirectoryError::NotFound(id)),
        Err(e) => return Err(e.into()),
    };
    verify(&bytes, id, None).map_err(|reason| DirectoryError::Invalid { key, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let id = CardId([0xab; 32]);
        let key = card_key("alice", id).unwrap();
        // SHA-256("cardfs/v1/directory-identity" || "alice"), computed with
        // sha256sum; pinned so the layout cannot change by accident.
        let folder = "4dc9770549ba8771b94b27f04da5c09fab72076b52d66121dc0a8ed5c93277e6";
        assert_eq!(key, format!("cards/v1/{folder}/{}.card", "ab".repeat(32)));
        assert_eq!(
            id_key(id),
            format!("cards/v1/by-id/{}.card", "ab".repeat(32))
        );
        assert_eq!(named_id(&key, &identity_folder("alice").unwrap()), Some(id));
        assert!(card_key("../x", id).is_err());
        assert_ne!(identity_folder("Alice"), identity_folder("alice"));
    }
}
