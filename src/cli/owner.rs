//! Before `cardfs mount` opens a drive someone else owns: is its owner the
//! person the user means? The drive header names the owner's keys and
//! carries their card; a store can forge both (a header signed by an
//! attacker who calls themself "alice"), so the owner's card must pass the
//! same trust rules as a member's (docs/SHARING.md): pinned here, approved
//! by a trusted authority, or confirmed with `--owner-fingerprint` (which
//! pins it). Otherwise the mount stops and shows the fingerprint.
//!
//! Invariants: a header whose card does not hold exactly the owner keys
//! and card id it names is refused as forged; the user's own drive needs
//! no decision (its card id is the user's own).

use super::exit::UserError;
use super::member::{self, Vouched};
use super::open::Unlocked;
use cardfs::format::card::Card;
use cardfs::format::meta::DriveHeader;
use cardfs::identity::cards::CardStore;

/// The owner's card in `header`, checked against the owner it names.
pub fn owner_card(header: &DriveHeader) -> Result<Card, UserError> {
    let forged = |reason: String| UserError::DriveForged { reason };
    let card = Card::from_bytes(&header.owner_card)
        .map_err(|e| forged(format!("its owner card is invalid: {e}")))?;
    let keys_match = card.x25519_public().as_bytes() == &header.owner.x25519
        && card.ed25519_public().as_bytes() == &header.owner.ed25519;
    if card.id().0 != header.owner.card_id || !keys_match {
        return Err(forged(format!(
            "its owner card ({}, {}) is not the owner it names",
            card.identity(),
            card.fingerprint()
        )));
    }
    Ok(card)
}

/// What [`check`] found out about the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The drive is the user's own.
    Me,
    /// Someone else, vouched for as this.
    Other(Box<Card>, Vouched),
}

/// Decides whether `me` may mount a drive with `header` (see the module doc).
pub fn check(
    header: &DriveHeader,
    me: &Unlocked,
    cards: &CardStore,
    fingerprint: Option<&str>,
) -> anyhow::Result<Owner> {
    let card = owner_card(header)?;
    if card.id() == me.card.id() {
        return Ok(Owner::Me);
    }
    let vouched = member::accept(cards, &card, fingerprint, "--owner-fingerprint")?;
    Ok(Owner::Other(Box::new(card), vouched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit::code_of;
    use cardfs::drive::Identity;
    use cardfs::format::key::UserKey;
    use cardfs::format::meta::MemberRecord;

    fn user(seed: u8, identity: &str) -> (UserKey, Card) {
        crate::cli::member::tests::card(seed, identity, 1)
    }

    fn unlocked(key: &UserKey, card: &Card) -> Unlocked {
        Unlocked {
            identity: Identity::new(
                key.x25519_secret().clone(),
                key.signing_key().clone(),
                card.id().0,
            ),
            card: card.clone(),
        }
    }

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
    fn own_drive_pinned_owner_and_unknown_owner() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (alice_key, alice) = user(1, "alice");
        let (bob_key, bob) = user(3, "bob");
        let h = header(&alice, &alice);
        assert_eq!(
            check(&h, &unlocked(&alice_key, &alice), &cards, None).unwrap(),
            Owner::Me
        );
        let b = unlocked(&bob_key, &bob);
        let err = check(&h, &b, &cards, None).unwrap_err();
        assert_eq!(code_of(&err), 40);
        assert!(err.to_string().contains(&alice.fingerprint()), "{err}");
        assert!(err.to_string().contains("--owner-fingerprint"), "{err}");
        let wrong = check(&h, &b, &cards, Some(&bob.fingerprint())).unwrap_err();
        assert_eq!(code_of(&wrong), 41);
        assert_eq!(
            check(&h, &b, &cards, Some(&alice.fingerprint())).unwrap(),
            Owner::Other(Box::new(alice.clone()), Vouched::Fingerprint)
        );
        assert_eq!(
            check(&h, &b, &cards, None).unwrap(),
            Owner::Other(Box::new(alice), Vouched::Pinned)
        );
    }

    #[test]
    fn forged_headers_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, alice) = user(1, "alice");
        let (bob_key, bob) = user(3, "bob");
        let (_, mallory) = user(5, "alice");
        cards.pin(&alice, None).unwrap();
        let b = unlocked(&bob_key, &bob);
        // Mallory's keys, Alice's card: the card does not hold the keys.
        let err = check(&header(&mallory, &alice), &b, &cards, None).unwrap_err();
        assert_eq!(code_of(&err), 44, "{err}");
        // A consistent header naming Mallory as "alice": a different card
        // than the one pinned for alice.
        let err = check(&header(&mallory, &mallory), &b, &cards, None).unwrap_err();
        assert_eq!(code_of(&err), 41, "{err}");
        let mut garbage = header(&alice, &alice);
        garbage.owner_card = b"not a card".to_vec();
        assert_eq!(code_of(&check(&garbage, &b, &cards, None).unwrap_err()), 44);
    }
}
