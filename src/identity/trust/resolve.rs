//! Which card a name given by the user (an identity or a full card id)
//! stands for, and whether it may be used: the rules of [`accept`] applied
//! to the local pins first, then to the cards a card source (the drive's
//! card directory) offers.
//!
//! Invariants:
//! - A card is returned only when [`accept`] accepted it; a card pinned
//!   for the identity is used without asking the source at all.
//! - The source is never trusted for more than offering candidates: a
//!   published card is chosen by the fingerprint the user gave, else by
//!   being the one card a trusted authority approved, else it is the
//!   newest and must pass [`accept`] (which then asks for its fingerprint).

use super::{Accepted, Status, TrustError, accept, status};
use crate::format::card::{Card, CardId};
use crate::identity::cards::CardStore;

/// Where published cards are looked up (the drive's card directory).
pub trait CardSource {
    /// How a lookup fails.
    type Error;
    /// Verified cards published for `identity`, newest first.
    fn find(&mut self, identity: &str) -> Result<Vec<Card>, Self::Error>;
    /// The published card with id `id`, if any.
    fn get(&mut self, id: CardId) -> Result<Option<Card>, Self::Error>;
}

/// Why [`resolve`] found no usable card. `E` is the card source's error.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E> {
    /// A card was found but may not be used.
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// No card is pinned here or published for `who`.
    #[error("no card for {who} is pinned here or published")]
    NotFound { who: String },
    /// Cards are published for `identity`, none with the fingerprint given.
    #[error(
        "no card published for {identity} has fingerprint {given} (published: {})",
        .published.join(", ")
    )]
    NoneMatches {
        identity: String,
        given: String,
        published: Vec<String>,
    },
    /// Several published cards for `identity` are approved by trusted
    /// authorities (fingerprints listed): the user must choose one.
    #[error(
        "several cards published for {identity} are approved by authorities you trust ({})",
        .approved.join(", ")
    )]
    Ambiguous {
        identity: String,
        approved: Vec<String>,
    },
    /// The card source failed.
    #[error("looking up published cards: {0}")]
    Source(E),
}

/// The usable card `who` (an identity or a full card id) names, and how it
/// was accepted (see the module invariants). `fingerprint` is the one the
/// user gave, if any; a card accepted through it or an authority is pinned.
pub fn resolve<S: CardSource + ?Sized>(
    cards: &CardStore,
    who: &str,
    fingerprint: Option<&str>,
    source: &mut S,
) -> Result<(Card, Accepted), ResolveError<S::Error>> {
    let store = |e| ResolveError::Untrusted(TrustError::Store(e));
    if let Ok(id) = who.parse::<CardId>() {
        let pinned = cards
            .list()
            .map_err(store)?
            .into_iter()
            .find(|c| c.id() == id);
        let card = match pinned {
            Some(card) => card,
            None => source
                .get(id)
                .map_err(ResolveError::Source)?
                .ok_or_else(|| ResolveError::NotFound {
                    who: format!("card id {id}"),
                })?,
        };
        let accepted = accept(cards, &card, fingerprint)?;
        return Ok((card, accepted));
    }
    if let Some(pinned) = cards.get(who).map_err(store)?
        && fingerprint.is_none_or(|fp| pinned.id().fingerprint_matches(fp))
    {
        return Ok((pinned, Accepted::Pinned));
    }
    let found = source.find(who).map_err(ResolveError::Source)?;
    if found.is_empty() {
        return Err(ResolveError::NotFound { who: who.into() });
    }
    let chosen = match fingerprint {
        Some(fp) => found
            .iter()
            .find(|c| c.id().fingerprint_matches(fp))
            .ok_or_else(|| ResolveError::NoneMatches {
                identity: who.into(),
                given: fp.into(),
                published: found.iter().map(Card::fingerprint).collect(),
            })?,
        None => {
            let approved: Vec<&Card> = found
                .iter()
                .filter(|c| matches!(status(cards, c), Ok(Status::Approved { .. })))
                .collect();
            match approved.as_slice() {
                [one] => one,
                [] => &found[0],
                _ => {
                    return Err(ResolveError::Ambiguous {
                        identity: who.into(),
                        approved: approved.iter().map(|c| c.fingerprint()).collect(),
                    });
                }
            }
        }
    };
    let accepted = accept(cards, chosen, fingerprint)?;
    Ok((chosen.clone(), accepted))
}

#[cfg(test)]
mod tests {
    use super::super::tests::card;
    use super::*;
    use crate::identity::cards::Pinned;
    use std::convert::Infallible;

    /// A card source holding a fixed list of cards, counting lookups.
    #[derive(Default)]
    struct Fake {
        cards: Vec<Card>,
        asked: usize,
    }

    impl CardSource for Fake {
        type Error = Infallible;
        fn find(&mut self, identity: &str) -> Result<Vec<Card>, Infallible> {
            self.asked += 1;
            Ok(self
                .cards
                .iter()
                .filter(|c| c.identity() == identity)
                .cloned()
                .collect())
        }
        fn get(&mut self, id: CardId) -> Result<Option<Card>, Infallible> {
            self.asked += 1;
            Ok(self.cards.iter().find(|c| c.id() == id).cloned())
        }
    }

    type Resolved = Result<(Card, Accepted), ResolveError<Infallible>>;

    fn untrusted(r: Resolved) -> TrustError {
        match r {
            Err(ResolveError::Untrusted(e)) => e,
            other => panic!("not a trust refusal: {other:?}"),
        }
    }

    #[test]
    fn a_pinned_card_is_used_without_asking_the_source() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, bob) = card(1, "bob", 1);
        cards.pin(&bob, None).unwrap();
        let (_, forged) = card(3, "bob", 2);
        let mut dir = Fake {
            cards: vec![forged],
            ..Fake::default()
        };
        let got = resolve(&cards, "bob", None, &mut dir).unwrap();
        assert_eq!(got, (bob.clone(), Accepted::Pinned));
        let by_id = resolve(&cards, &bob.id().to_string(), None, &mut dir).unwrap();
        assert_eq!(by_id, (bob, Accepted::Pinned));
        assert_eq!(dir.asked, 0);
    }

    #[test]
    fn an_unknown_card_needs_its_fingerprint_which_pins_it() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, bob) = card(1, "bob", 1);
        let mut dir = Fake {
            cards: vec![bob.clone()],
            ..Fake::default()
        };
        let unverified = |e| match e {
            TrustError::Unverified {
                identity,
                fingerprint,
            } => (identity, fingerprint),
            other => panic!("{other:?}"),
        };
        let expected = ("bob".to_string(), bob.fingerprint());
        assert_eq!(
            unverified(untrusted(resolve(&cards, "bob", None, &mut dir))),
            expected
        );
        let by_id = resolve(&cards, &bob.id().to_string(), None, &mut dir);
        assert_eq!(unverified(untrusted(by_id)), expected);
        assert!(cards.get("bob").unwrap().is_none(), "nothing pinned");
        let got = resolve(&cards, "bob", Some(&bob.fingerprint()), &mut dir).unwrap();
        assert_eq!(got, (bob.clone(), Accepted::Fingerprint(Pinned::New)));
        assert_eq!(cards.get("bob").unwrap(), Some(bob));
    }

    #[test]
    fn a_swapped_published_card_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (_, bob) = card(1, "bob", 1);
        let (_, forged) = card(3, "bob", 2);
        // The source offers only the attacker's card under Bob's name.
        let mut dir = Fake {
            cards: vec![forged.clone()],
            ..Fake::default()
        };
        assert!(matches!(
            untrusted(resolve(&cards, "bob", None, &mut dir)),
            TrustError::Unverified { fingerprint, .. } if fingerprint == forged.fingerprint()
        ));
        match resolve(&cards, "bob", Some(&bob.fingerprint()), &mut dir) {
            Err(ResolveError::NoneMatches {
                given, published, ..
            }) => assert_eq!(
                (given, published),
                (bob.fingerprint(), vec![forged.fingerprint()])
            ),
            other => panic!("{other:?}"),
        }
        // Bob pinned, then the forged card named by its id: refused as a
        // substitution; the pin is kept.
        cards.pin(&bob, None).unwrap();
        let by_forged_id = resolve(&cards, &forged.id().to_string(), None, &mut dir);
        assert!(matches!(
            untrusted(by_forged_id),
            TrustError::PinnedOther { pinned, offered, .. }
                if pinned == bob.fingerprint() && offered == forged.fingerprint()
        ));
        assert_eq!(cards.get("bob").unwrap(), Some(bob));
    }

    #[test]
    fn authority_approval_ambiguity_and_missing_cards() {
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        let (auth_key, auth) = card(5, "acme", 1);
        cards.trust_authority(&auth, None).unwrap();
        let (_, mut bob) = card(1, "bob", 1);
        bob.approve(&auth_key, &auth).unwrap();
        let (_, mut other) = card(3, "bob", 2);
        let mut dir = Fake {
            cards: vec![other.clone(), bob.clone()],
            ..Fake::default()
        };
        let approved = Accepted::Approved {
            authority: "acme".into(),
        };
        assert_eq!(
            resolve(&cards, "bob", None, &mut dir).unwrap(),
            (bob.clone(), approved)
        );
        for who in ["carol".to_string(), CardId([9; 32]).to_string()] {
            assert!(matches!(
                resolve(&cards, &who, None, &mut dir),
                Err(ResolveError::NotFound { .. })
            ));
        }
        // Two approved cards for a name nothing is pinned for.
        let home = tempfile::tempdir().unwrap();
        let cards = CardStore::new(home.path());
        cards.trust_authority(&auth, None).unwrap();
        other.approve(&auth_key, &auth).unwrap();
        let mut dir = Fake {
            cards: vec![other.clone(), bob.clone()],
            ..Fake::default()
        };
        match resolve(&cards, "bob", None, &mut dir) {
            Err(ResolveError::Ambiguous { approved, .. }) => {
                assert_eq!(approved, vec![other.fingerprint(), bob.fingerprint()])
            }
            other => panic!("{other:?}"),
        }
        assert!(cards.get("bob").unwrap().is_none(), "nothing pinned");
    }
}
