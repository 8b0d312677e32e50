//! Which card a `--with IDENTITY|CARD_ID` names, and whether it may be
//! used: the trust rules of `cardfs::identity::trust` (docs/SHARING.md)
//! applied to the local pins first, then to the cards published in the
//! drive's card directory.
//!
//! Invariants:
//! - A card is returned only when it is pinned here, or nothing is pinned
//!   for its identity and a trusted authority approved it, or the user
//!   gave its fingerprint; in the last two cases it is pinned on the way.
//!   Anything else stops with a [`UserError`] (exit codes 40-42) that
//!   names the fingerprint to compare.
//! - Cards from the directory come through the mount daemon as text and
//!   are verified again here (`Card::from_text`); the directory is never
//!   trusted for more than offering candidates.

use super::exit::UserError;
use cardfs::format::card::{Card, CardId};
use cardfs::identity::StoreError;
use cardfs::identity::cards::CardStore;
use cardfs::identity::trust::{self, Accepted, Status, TrustError};

/// Where published cards are looked up (the drive's card directory).
pub trait Directory {
    /// Verified cards published for `identity`, newest first.
    fn find(&mut self, identity: &str) -> anyhow::Result<Vec<Card>>;
    /// The published card with id `id`, if any.
    fn get(&mut self, id: CardId) -> anyhow::Result<Option<Card>>;
}

/// How a usable card was vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vouched {
    /// Already pinned here.
    Pinned,
    /// Approved by this trusted authority (now pinned).
    Authority(String),
    /// Its fingerprint was given (now pinned).
    Fingerprint,
}

/// The usable card `who` (an identity or a full card id) names; see the
/// module invariants. `option` is the flag that takes a fingerprint, for
/// the error message.
pub fn resolve(
    cards: &CardStore,
    who: &str,
    fingerprint: Option<&str>,
    directory: &mut dyn Directory,
    option: &'static str,
) -> anyhow::Result<(Card, Vouched)> {
    if let Ok(id) = who.parse::<CardId>() {
        let pinned = cards.list()?.into_iter().find(|c| c.id() == id);
        let card = match pinned {
            Some(card) => card,
            None => directory.get(id)?.ok_or_else(|| UserError::CardNotFound {
                who: format!("card id {id}"),
            })?,
        };
        let vouched = accept(cards, &card, fingerprint, option)?;
        return Ok((card, vouched));
    }
    if let Some(pinned) = cards.get(who)?
        && fingerprint.is_none_or(|fp| pinned.id().fingerprint_matches(fp))
    {
        return Ok((pinned, Vouched::Pinned));
    }
    let found = directory.find(who)?;
    if found.is_empty() {
        return Err(UserError::CardNotFound { who: who.into() }.into());
    }
    let chosen = match fingerprint {
        Some(fp) => found
            .iter()
            .find(|c| c.id().fingerprint_matches(fp))
            .ok_or_else(|| UserError::CardMismatch {
                identity: who.into(),
                detail: format!(
                    "no card published for it has fingerprint {fp} (published: {})",
                    fingerprints(&found)
                ),
            })?,
        None => {
            let approved: Vec<&Card> = found
                .iter()
                .filter(|c| matches!(trust::status(cards, c), Ok(Status::Approved { .. })))
                .collect();
            match approved.as_slice() {
                [one] => one,
                [] => &found[0],
                _ => anyhow::bail!(
                    "several cards published for {who} are approved by authorities you trust \
                     ({}); choose one with {option}",
                    fingerprints(&approved.into_iter().cloned().collect::<Vec<_>>())
                ),
            }
        }
    };
    let vouched = accept(cards, chosen, fingerprint, option)?;
    Ok((chosen.clone(), vouched))
}

fn fingerprints(cards: &[Card]) -> String {
    cards
        .iter()
        .map(Card::fingerprint)
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`trust::accept`] with its refusals turned into user errors.
pub fn accept(
    cards: &CardStore,
    card: &Card,
    fingerprint: Option<&str>,
    option: &'static str,
) -> anyhow::Result<Vouched> {
    match trust::accept(cards, card, fingerprint) {
        Ok(Accepted::Pinned) => Ok(Vouched::Pinned),
        Ok(Accepted::Approved { authority }) => Ok(Vouched::Authority(authority)),
        Ok(Accepted::Fingerprint(_)) => Ok(Vouched::Fingerprint),
        Err(TrustError::Unverified {
            identity,
            fingerprint,
        }) => Err(UserError::CardUnverified {
            identity,
            fingerprint,
            option,
        }
        .into()),
        Err(TrustError::Refused(StoreError::AlreadyPinned {
            identity,
            pinned,
            offered,
        })) => Err(UserError::CardMismatch {
            identity,
            detail: format!(
                "a different card is pinned for it here (pinned fingerprint {pinned}, \
                 offered {offered}); if they really have a new card, pass its fingerprint \
                 with {option}"
            ),
        }
        .into()),
        Err(TrustError::Refused(StoreError::FingerprintMismatch { given, actual })) => {
            Err(UserError::CardMismatch {
                identity: card.identity().into(),
                detail: format!("its fingerprint is {actual}, not the {given} given"),
            }
            .into())
        }
        Err(TrustError::Refused(other)) => Err(other.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::exit::code_of;
    use cardfs::format::key::UserKey;

    /// A key from `seed` and its card for `identity` (shared with owner.rs).
    pub(crate) fn card(seed: u8, identity: &str, created: u64) -> (UserKey, Card) {
        let key = UserKey::from_secret_bytes("k", &[seed; 32], &[seed + 1; 32]).unwrap();
        let card = Card::create(&key, identity, created).unwrap();
        (key, card)
    }

    /// A card directory holding a fixed list of cards.
    #[derive(Default)]
    struct Fake {
        cards: Vec<Card>,
        asked: usize,
    }

    impl Directory for Fake {
        fn find(&mut self, identity: &str) -> anyhow::Result<Vec<Card>> {
            self.asked += 1;
            Ok(self
                .cards
                .iter()
                .filter(|c| c.identity() == identity)
                .cloned()
                .collect())
        }
        fn get(&mut self, id: CardId) -> anyhow::Result<Option<Card>> {
            self.asked += 1;
            Ok(self.cards.iter().find(|c| c.id() == id).cloned())
        }
    }

    fn code(r: anyhow::Result<(Card, Vouched)>) -> u8 {
        code_of(&r.expect_err("must be refused"))
    }

    #[test]
    fn a_pinned_card_is_used_without_asking_the_store() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, bob) = card(1, "bob", 1);
        cards.pin(&bob, None).unwrap();
        let (_, forged) = card(3, "bob", 2);
        let mut dir = Fake {
            cards: vec![forged],
            ..Fake::default()
        };
        let (got, how) = resolve(&cards, "bob", None, &mut dir, "--fingerprint").unwrap();
        assert_eq!((got, how), (bob.clone(), Vouched::Pinned));
        let by_id = resolve(&cards, &bob.id().to_string(), None, &mut dir, "-f").unwrap();
        assert_eq!(by_id.0, bob);
        assert_eq!(dir.asked, 0);
    }

    #[test]
    fn an_unknown_published_card_needs_its_fingerprint() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, bob) = card(1, "bob", 1);
        let mut dir = Fake {
            cards: vec![bob.clone()],
            ..Fake::default()
        };
        let err = resolve(&cards, "bob", None, &mut dir, "--fingerprint").unwrap_err();
        assert_eq!(code_of(&err), 40);
        assert!(err.to_string().contains(&bob.fingerprint()), "{err}");
        assert!(cards.get("bob").unwrap().is_none(), "nothing pinned");
        let by_id = resolve(&cards, &bob.id().to_string(), None, &mut dir, "-f");
        assert_eq!(code(by_id), 40);
        let (got, how) = resolve(
            &cards,
            "bob",
            Some(&bob.fingerprint()),
            &mut dir,
            "--fingerprint",
        )
        .unwrap();
        assert_eq!((got, how), (bob.clone(), Vouched::Fingerprint));
        assert_eq!(cards.get("bob").unwrap(), Some(bob));
    }

    #[test]
    fn a_swapped_published_card_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, bob) = card(1, "bob", 1);
        let (_, forged) = card(3, "bob", 2);
        // The store serves only the attacker's card under Bob's name.
        let mut dir = Fake {
            cards: vec![forged.clone()],
            ..Fake::default()
        };
        let err = resolve(&cards, "bob", None, &mut dir, "--fingerprint").unwrap_err();
        assert_eq!(code_of(&err), 40, "{err}");
        assert!(err.to_string().contains(&forged.fingerprint()), "{err}");
        let with_fp = resolve(&cards, "bob", Some(&bob.fingerprint()), &mut dir, "-f");
        assert_eq!(code(with_fp), 41);
        // Bob pinned, then the store offers the forged card with its own
        // fingerprint given by a confused user: the pin is replaced only
        // by that explicit fingerprint, never silently.
        cards.pin(&bob, None).unwrap();
        let by_forged_id = resolve(&cards, &forged.id().to_string(), None, &mut dir, "-f");
        assert_eq!(code(by_forged_id), 41);
        assert_eq!(cards.get("bob").unwrap(), Some(bob));
    }

    #[test]
    fn authority_approval_and_missing_cards() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (auth_key, auth) = card(5, "acme", 1);
        cards.trust_authority(&auth, None).unwrap();
        let (_, mut bob) = card(1, "bob", 1);
        bob.approve(&auth_key, &auth).unwrap();
        let (_, other) = card(3, "bob", 2);
        let mut dir = Fake {
            cards: vec![other, bob.clone()],
            ..Fake::default()
        };
        let (got, how) = resolve(&cards, "bob", None, &mut dir, "-f").unwrap();
        assert_eq!((got, how), (bob, Vouched::Authority("acme".into())));
        assert_eq!(code(resolve(&cards, "carol", None, &mut dir, "-f")), 42);
        let nobody = CardId([9; 32]).to_string();
        assert_eq!(code(resolve(&cards, &nobody, None, &mut dir, "-f")), 42);
    }
}
