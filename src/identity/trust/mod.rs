//! Trust decisions about cards the local user did not create: whether a
//! card found in a card directory (or anywhere the store controls) may be
//! used, e.g. to share a folder with its holder ([`accept`], [`resolve`]),
//! and whether the owner a drive header names is who it claims to be
//! ([`drive_owner`]).
//!
//! Invariants:
//! - A card is usable only when it is the card pinned for its identity
//!   (same card id), or no card is pinned for the identity and a locally
//!   trusted authority approved it, or the user gave its fingerprint. In
//!   the last two cases it becomes pinned.
//! - A card for an identity already pinned with a different card is a
//!   possible key substitution: it is refused unless the user gives the
//!   new card's fingerprint (the replace rule of [`CardStore::pin`]); an
//!   authority approval alone does not replace a pin here.
//! - Refusals are typed and carry the identity and fingerprints the user
//!   must compare; their messages name no command-line flag (the command
//!   line adds the hint for the flag it offers).

mod owner;
mod resolve;

pub use owner::{ForgedHeader, Owner, OwnerError, drive_owner, drive_owner_card};
pub use resolve::{CardSource, ResolveError, resolve};

use super::CardStoreError;
use super::cards::{CardStore, Pinned};
use crate::format::card::Card;

/// How a card relates to the local pins and trusted authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// This exact card is pinned.
    Pinned,
    /// Another card is pinned for the identity (with this fingerprint).
    PinnedOther { pinned_fingerprint: String },
    /// Nothing is pinned; the named trusted authority approved the card.
    Approved { authority: String },
    /// Nothing is pinned and no trusted authority approved it.
    Unknown,
}

/// Why a card may not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Nothing is pinned for the identity and no trusted authority
    /// approved the card: the user must compare its fingerprint.
    #[error(
        "the card for {identity} is not pinned and no authority you trust approved it; \
         compare its fingerprint {fingerprint} with {identity} over a channel you trust"
    )]
    Unverified {
        identity: String,
        fingerprint: String,
    },
    /// Another card is pinned for the identity: a possible key
    /// substitution.
    #[error(
        "a different card is pinned for {identity} (pinned fingerprint {pinned}, offered \
         {offered}); this may be a key-substitution attack"
    )]
    PinnedOther {
        identity: String,
        pinned: String,
        offered: String,
    },
    /// The fingerprint the user gave is not the card's.
    #[error("the card of {identity} has fingerprint {actual}, not the {given} given")]
    FingerprintMismatch {
        identity: String,
        given: String,
        actual: String,
    },
    /// The local card store failed.
    #[error(transparent)]
    Store(CardStoreError),
}

impl TrustError {
    /// `err` from pinning `card`, with the refusals the pin store makes
    /// turned into their typed variants.
    fn pinning(card: &Card, err: CardStoreError) -> Self {
        match err {
            CardStoreError::AlreadyPinned {
                identity,
                pinned,
                offered,
            } => TrustError::PinnedOther {
                identity,
                pinned,
                offered,
            },
            CardStoreError::FingerprintMismatch { given, actual } => {
                TrustError::FingerprintMismatch {
                    identity: card.identity().to_string(),
                    given,
                    actual,
                }
            }
            other => TrustError::Store(other),
        }
    }
}

/// What [`accept`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The card was already pinned.
    Pinned,
    /// Approved by this trusted authority; now pinned.
    Approved { authority: String },
    /// The user's fingerprint matched; the card is now pinned (this is
    /// what the pin store did).
    Fingerprint(Pinned),
}

/// The card's status, without changing anything.
pub fn status(cards: &CardStore, card: &Card) -> Result<Status, CardStoreError> {
    Ok(match cards.get(card.identity())? {
        Some(pinned) if pinned.id() == card.id() => Status::Pinned,
        Some(pinned) => Status::PinnedOther {
            pinned_fingerprint: pinned.fingerprint(),
        },
        None => match cards.approving_authority(card)? {
            Some(authority) => Status::Approved {
                authority: authority.identity().to_string(),
            },
            None => Status::Unknown,
        },
    })
}

/// Decides whether `card` may be used (see the module invariants), pinning
/// it when it is accepted through an authority or `fingerprint`.
pub fn accept(
    cards: &CardStore,
    card: &Card,
    fingerprint: Option<&str>,
) -> Result<Accepted, TrustError> {
    let pin = |given| {
        cards
            .pin(card, given)
            .map_err(|e| TrustError::pinning(card, e))
    };
    if let Some(given) = fingerprint {
        // `pin` checks the fingerprint first, then replaces any other pin.
        return Ok(Accepted::Fingerprint(pin(Some(given))?));
    }
    match status(cards, card).map_err(TrustError::Store)? {
        Status::Pinned => Ok(Accepted::Pinned),
        Status::Approved { authority } => {
            pin(None)?;
            Ok(Accepted::Approved { authority })
        }
        Status::PinnedOther { pinned_fingerprint } => Err(TrustError::PinnedOther {
            identity: card.identity().to_string(),
            pinned: pinned_fingerprint,
            offered: card.fingerprint(),
        }),
        Status::Unknown => Err(TrustError::Unverified {
            identity: card.identity().to_string(),
            fingerprint: card.fingerprint(),
        }),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::format::key::UserKey;

    /// A key from `seed` and its card for `identity` (shared with the
    /// submodules' tests).
    pub(super) fn card(seed: u8, identity: &str, created: u64) -> (UserKey, Card) {
        let key = UserKey::from_secret_bytes("k", &[seed; 32], &[seed + 1; 32]).unwrap();
        let card = Card::create(&key, identity, created).unwrap();
        (key, card)
    }

    #[test]
    fn unknown_card_needs_its_fingerprint_and_is_then_pinned() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, alice) = card(1, "alice", 1);
        assert_eq!(status(&cards, &alice).unwrap(), Status::Unknown);
        match accept(&cards, &alice, None) {
            Err(TrustError::Unverified { fingerprint, .. }) => {
                assert_eq!(fingerprint, alice.fingerprint())
            }
            other => panic!("{other:?}"),
        }
        let (_, other) = card(9, "x", 1);
        assert!(matches!(
            accept(&cards, &alice, Some(&other.fingerprint())),
            Err(TrustError::FingerprintMismatch { identity, .. }) if identity == "alice"
        ));
        assert!(cards.get("alice").unwrap().is_none(), "nothing pinned");
        assert_eq!(
            accept(&cards, &alice, Some(&alice.fingerprint())).unwrap(),
            Accepted::Fingerprint(Pinned::New)
        );
        assert_eq!(accept(&cards, &alice, None).unwrap(), Accepted::Pinned);
    }

    #[test]
    fn substitution_is_refused_even_when_approved() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (auth_key, auth) = card(5, "acme", 1);
        cards.trust_authority(&auth, None).unwrap();
        let (_, real) = card(1, "alice", 1);
        cards.pin(&real, None).unwrap();
        let (_, mut forged) = card(3, "alice", 2);
        forged.approve(&auth_key, &auth).unwrap();
        assert_eq!(
            status(&cards, &forged).unwrap(),
            Status::PinnedOther {
                pinned_fingerprint: real.fingerprint()
            }
        );
        assert!(matches!(
            accept(&cards, &forged, None),
            Err(TrustError::PinnedOther { pinned, offered, .. })
                if pinned == real.fingerprint() && offered == forged.fingerprint()
        ));
        assert_eq!(cards.get("alice").unwrap().unwrap(), real);
        assert!(matches!(
            accept(&cards, &forged, Some(&forged.fingerprint())).unwrap(),
            Accepted::Fingerprint(Pinned::Replaced { .. })
        ));
        assert_eq!(cards.get("alice").unwrap().unwrap(), forged);
    }

    #[test]
    fn approved_card_is_accepted_and_pinned() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (auth_key, auth) = card(5, "acme", 1);
        let (_, mut bob) = card(7, "bob", 1);
        bob.approve(&auth_key, &auth).unwrap();
        // Approved by an authority that is not trusted here: unknown.
        assert_eq!(status(&cards, &bob).unwrap(), Status::Unknown);
        cards.trust_authority(&auth, None).unwrap();
        assert_eq!(
            accept(&cards, &bob, None).unwrap(),
            Accepted::Approved {
                authority: "acme".into()
            }
        );
        assert_eq!(status(&cards, &bob).unwrap(), Status::Pinned);
    }
}
