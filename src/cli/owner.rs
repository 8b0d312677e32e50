//! Before `cardfs mount` opens a drive someone else owns: is its owner the
//! person the user means? The decision is `cardfs::identity::trust`
//! (`drive_owner`: a forged header is refused; the owner's card must be
//! pinned here, approved by a trusted authority, or confirmed with
//! `--owner-fingerprint`, which pins it). This module words its refusals:
//! exit code 44 for a forged header, 40-41 for an owner not vouched for,
//! with the fingerprint to compare and the flag to pass it with.

use super::exit::UserError;
use super::member::{self, Vouched};
use super::open::Unlocked;
use cardfs::format::card::Card;
use cardfs::format::meta::DriveHeader;
use cardfs::identity::cards::CardStore;
use cardfs::identity::trust::{self, OwnerError};

/// What [`check`] found out about the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The drive is the user's own.
    Me,
    /// Someone else, vouched for as this.
    Other(Box<Card>, Vouched),
}

/// Decides whether `me` may mount a drive with `header`
/// ([`trust::drive_owner`]), wording a refusal for the command line.
pub fn check(
    header: &DriveHeader,
    me: &Unlocked,
    cards: &CardStore,
    fingerprint: Option<&str>,
) -> anyhow::Result<Owner> {
    match trust::drive_owner(header, me.card.id(), cards, fingerprint) {
        Ok(trust::Owner::Me) => Ok(Owner::Me),
        Ok(trust::Owner::Other(card, accepted)) => Ok(Owner::Other(card, accepted.into())),
        Err(OwnerError::Forged(forged)) => Err(UserError::DriveForged {
            reason: forged.to_string(),
        }
        .into()),
        Err(OwnerError::Untrusted(refused)) => Err(member::refusal(refused, "--owner-fingerprint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit::code_of;
    use cardfs::drive::{Identity, Role};
    use cardfs::format::key::UserKey;

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

    /// A header naming the holder of `owner` and carrying `card_in_header`.
    fn header(owner: &Unlocked, card_in_header: &Card) -> DriveHeader {
        DriveHeader {
            drive_id: [1; 16],
            root_volume: [2; 16],
            owner: owner.identity.member(Role::Owner).record(),
            owner_card: card_in_header.to_bytes(),
        }
    }

    #[test]
    fn own_drive_pinned_owner_and_unknown_owner() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (alice_key, alice) = user(1, "alice");
        let (bob_key, bob) = user(3, "bob");
        let a = unlocked(&alice_key, &alice);
        let h = header(&a, &alice);
        assert_eq!(check(&h, &a, &cards, None).unwrap(), Owner::Me);
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
        let (alice_key, alice) = user(1, "alice");
        let (bob_key, bob) = user(3, "bob");
        let (mallory_key, mallory) = user(5, "alice");
        let a = unlocked(&alice_key, &alice);
        let m = unlocked(&mallory_key, &mallory);
        cards.pin(&alice, None).unwrap();
        let b = unlocked(&bob_key, &bob);
        // Mallory's keys, Alice's card: the card does not hold the keys.
        let err = check(&header(&m, &alice), &b, &cards, None).unwrap_err();
        assert_eq!(code_of(&err), 44, "{err}");
        // A consistent header naming Mallory as "alice": a different card
        // than the one pinned for alice.
        let err = check(&header(&m, &mallory), &b, &cards, None).unwrap_err();
        assert_eq!(code_of(&err), 41, "{err}");
        let mut garbage = header(&a, &alice);
        garbage.owner_card = b"not a card".to_vec();
        assert_eq!(code_of(&check(&garbage, &b, &cards, None).unwrap_err()), 44);
    }
}
