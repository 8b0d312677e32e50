//! Before a user mounts a drive someone else owns: is its owner the person
//! the user means? The drive header names the owner's keys and carries
//! their card; a store can forge both (a header signed by an attacker who
//! calls themself "alice"), so the owner's card must pass the same trust
//! rules as a member's card ([`accept`]). The header's own signature is
//! checked by `DriveHeader::open`; this module decides whom it names.
//!
//! Invariants: a header whose card does not hold exactly the owner keys
//! and card id it names is refused as forged ([`ForgedHeader`]); the
//! user's own drive needs no decision (its card id is the user's own).

use super::{Accepted, TrustError, accept};
use crate::format::card::{Card, CardError, CardId};
use crate::format::meta::DriveHeader;
use crate::identity::cards::CardStore;

/// Why a drive header contradicts itself: forged or corrupted.
#[derive(Debug, thiserror::Error)]
pub enum ForgedHeader {
    /// The owner card it carries does not parse or verify.
    #[error("its owner card is invalid: {0}")]
    InvalidCard(#[source] CardError),
    /// The owner card is valid but is not the owner the header names
    /// (another card id, or other keys).
    #[error("its owner card ({identity}, {fingerprint}) is not the owner it names")]
    NotTheOwner {
        identity: String,
        fingerprint: String,
    },
}

/// Why the owner of a drive is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("the drive's header is not consistent: {0}")]
    Forged(#[from] ForgedHeader),
    /// The owner's card is consistent but not trusted (see [`accept`]).
    #[error(transparent)]
    Untrusted(#[from] TrustError),
}

/// Who owns a drive, as [`drive_owner`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The drive is the user's own.
    Me,
    /// Someone else, with this card, accepted this way.
    Other(Box<Card>, Accepted),
}

/// The owner's card in `header`, checked against the owner it names.
pub fn drive_owner_card(header: &DriveHeader) -> Result<Card, ForgedHeader> {
    let card = Card::from_bytes(&header.owner_card).map_err(ForgedHeader::InvalidCard)?;
    let keys_match = card.x25519_public().as_bytes() == &header.owner.x25519
        && card.ed25519_public().as_bytes() == &header.owner.ed25519;
    if card.id().0 != header.owner.card_id || !keys_match {
        return Err(ForgedHeader::NotTheOwner {
            identity: card.identity().to_string(),
            fingerprint: card.fingerprint(),
        });
    }
    Ok(card)
}

/// Decides whether the user whose card id is `me` may mount a drive with
/// `header` (see the module invariants); `fingerprint` is the owner
/// fingerprint the user gave, if any (a match pins the owner's card).
pub fn drive_owner(
    header: &DriveHeader,
    me: CardId,
    cards: &CardStore,
    fingerprint: Option<&str>,
) -> Result<Owner, OwnerError> {
    let card = drive_owner_card(header)?;
    if card.id() == me {
        return Ok(Owner::Me);
    }
    let accepted = accept(cards, &card, fingerprint)?;
    Ok(Owner::Other(Box::new(card), accepted))
}

#[cfg(test)]
mod tests {
    use super::super::tests::card;
    use super::*;
    use crate::format::meta::MemberRecord;
    use crate::identity::cards::Pinned;

    /// A header naming `owner` and carrying `card_in_header`.
    fn header(owner: &Card, card_in_header: &Card) -> DriveHeader {
        DriveHeader {
            drive_id: [1; 16],
            root_volume: [2; 16],
            owner: MemberRecord {
                card_id: owner.id().0,
                x25519: *owner.x25519_public().as_bytes(),
                ed25519: *owner.ed25519_public().as_bytes(),
                role: 3,
            },
            owner_card: card_in_header.to_bytes(),
        }
    }

    #[test]
    fn a_card_that_is_not_the_named_owner_is_forged() {
        let (_, alice) = card(1, "alice", 1);
        let (_, mallory) = card(5, "alice", 1);
        assert_eq!(drive_owner_card(&header(&alice, &alice)).unwrap(), alice);
        // Mallory's keys and card id, Alice's card.
        match drive_owner_card(&header(&mallory, &alice)) {
            Err(ForgedHeader::NotTheOwner {
                identity,
                fingerprint,
            }) => assert_eq!(
                (identity, fingerprint),
                ("alice".into(), alice.fingerprint())
            ),
            other => panic!("{other:?}"),
        }
        // Alice's card id but Mallory's keys.
        let mut h = header(&alice, &alice);
        h.owner.x25519 = *mallory.x25519_public().as_bytes();
        assert!(matches!(
            drive_owner_card(&h),
            Err(ForgedHeader::NotTheOwner { .. })
        ));
        let mut h = header(&alice, &alice);
        h.owner.ed25519 = *mallory.ed25519_public().as_bytes();
        assert!(matches!(
            drive_owner_card(&h),
            Err(ForgedHeader::NotTheOwner { .. })
        ));
        // Alice's keys under another card id.
        let mut h = header(&alice, &alice);
        h.owner.card_id = mallory.id().0;
        assert!(matches!(
            drive_owner_card(&h),
            Err(ForgedHeader::NotTheOwner { .. })
        ));
        let mut garbage = header(&alice, &alice);
        garbage.owner_card = b"not a card".to_vec();
        assert!(matches!(
            drive_owner_card(&garbage),
            Err(ForgedHeader::InvalidCard(_))
        ));
        // A forged header is refused before any trust decision, even for
        // the user whose card it carries.
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        assert!(matches!(
            drive_owner(&header(&mallory, &alice), alice.id(), &cards, None),
            Err(OwnerError::Forged(_))
        ));
    }

    #[test]
    fn own_pinned_approved_fingerprint_and_unknown_owners() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, alice) = card(1, "alice", 1);
        let (_, bob) = card(3, "bob", 1);
        let h = header(&alice, &alice);
        assert_eq!(
            drive_owner(&h, alice.id(), &cards, None).unwrap(),
            Owner::Me
        );
        match drive_owner(&h, bob.id(), &cards, None) {
            Err(OwnerError::Untrusted(TrustError::Unverified {
                identity,
                fingerprint,
            })) => assert_eq!(
                (identity, fingerprint),
                ("alice".into(), alice.fingerprint())
            ),
            other => panic!("{other:?}"),
        }
        assert!(cards.get("alice").unwrap().is_none(), "nothing pinned");
        match drive_owner(&h, bob.id(), &cards, Some(&bob.fingerprint())) {
            Err(OwnerError::Untrusted(TrustError::FingerprintMismatch {
                given, actual, ..
            })) => {
                assert_eq!((given, actual), (bob.fingerprint(), alice.fingerprint()))
            }
            other => panic!("{other:?}"),
        }
        let other = |accepted| Owner::Other(Box::new(alice.clone()), accepted);
        assert_eq!(
            drive_owner(&h, bob.id(), &cards, Some(&alice.fingerprint())).unwrap(),
            other(Accepted::Fingerprint(Pinned::New))
        );
        assert_eq!(
            drive_owner(&h, bob.id(), &cards, None).unwrap(),
            other(Accepted::Pinned)
        );

        // A consistent header naming Mallory as "alice": another card is
        // pinned for alice.
        let (_, mallory) = card(5, "alice", 2);
        match drive_owner(&header(&mallory, &mallory), bob.id(), &cards, None) {
            Err(OwnerError::Untrusted(TrustError::PinnedOther {
                pinned, offered, ..
            })) => assert_eq!(
                (pinned, offered),
                (alice.fingerprint(), mallory.fingerprint())
            ),
            other => panic!("{other:?}"),
        }

        // An owner approved by an authority the user trusts.
        let (auth_key, auth) = card(7, "acme", 1);
        cards.trust_authority(&auth, None).unwrap();
        let (_, mut carol) = card(9, "carol", 1);
        carol.approve(&auth_key, &auth).unwrap();
        assert_eq!(
            drive_owner(&header(&carol, &carol), bob.id(), &cards, None).unwrap(),
            Owner::Other(
                Box::new(carol),
                Accepted::Approved {
                    authority: "acme".into()
                }
            )
        );
    }
}
