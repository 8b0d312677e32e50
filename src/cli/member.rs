//! Which card a `--with IDENTITY|CARD_ID` names, and whether it may be
//! used: the decision is `cardfs::identity::trust` (docs/SHARING.md); this
//! module words its typed refusals for the command line, adding the flag
//! the user can answer with, and maps them to exit codes.
//!
//! Invariants:
//! - A card is returned only when the library accepted it (pinned here,
//!   or approved by a trusted authority with nothing pinned, or its
//!   fingerprint given; pinned on the way in the last two cases).
//!   Anything else stops with a [`UserError`] (exit codes 40-42) that
//!   names the fingerprint to compare.
//! - Cards from the directory come through the mount daemon as text and
//!   are verified again here (`Card::from_text`); the directory is never
//!   trusted for more than offering candidates.

use super::exit::UserError;
use cardfs::format::card::{Card, CardId};
use cardfs::identity::CardStoreError;
use cardfs::identity::cards::CardStore;
use cardfs::identity::trust::{self, Accepted, CardSource, ResolveError, TrustError};

/// Where published cards are looked up (the drive's card directory).
pub trait Directory {
    /// Verified cards published for `identity`, newest first.
    fn find(&mut self, identity: &str) -> anyhow::Result<Vec<Card>>;
    /// The published card with id `id`, if any.
    fn get(&mut self, id: CardId) -> anyhow::Result<Option<Card>>;
}

/// A [`Directory`] as the library's card source.
struct Source<'a>(&'a mut dyn Directory);

impl CardSource for Source<'_> {
    type Error = anyhow::Error;
    fn find(&mut self, identity: &str) -> anyhow::Result<Vec<Card>> {
        self.0.find(identity)
    }
    fn get(&mut self, id: CardId) -> anyhow::Result<Option<Card>> {
        self.0.get(id)
    }
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

impl From<Accepted> for Vouched {
    fn from(accepted: Accepted) -> Self {
        match accepted {
            Accepted::Pinned => Vouched::Pinned,
            Accepted::Approved { authority } => Vouched::Authority(authority),
            Accepted::Fingerprint(_) => Vouched::Fingerprint,
        }
    }
}

/// The usable card `who` (an identity or a full card id) names
/// ([`trust::resolve`]); see the module invariants. `option` is the flag
/// that takes a fingerprint, for the error message.
pub fn resolve(
    cards: &CardStore,
    who: &str,
    fingerprint: Option<&str>,
    directory: &mut dyn Directory,
    option: &'static str,
) -> anyhow::Result<(Card, Vouched)> {
    match trust::resolve(cards, who, fingerprint, &mut Source(directory)) {
        Ok((card, accepted)) => Ok((card, accepted.into())),
        Err(ResolveError::Untrusted(refused)) => Err(refusal(refused, option)),
        Err(ResolveError::NotFound { who }) => Err(UserError::CardNotFound { who }.into()),
        Err(ResolveError::NoneMatches {
            identity,
            given,
            published,
        }) => Err(UserError::CardMismatch {
            identity,
            detail: format!(
                "no card published for it has fingerprint {given} (published: {})",
                published.join(", ")
            ),
        }
        .into()),
        Err(ResolveError::Ambiguous { identity, approved }) => anyhow::bail!(
            "several cards published for {identity} are approved by authorities you trust \
             ({}); choose one with {option}",
            approved.join(", ")
        ),
        // The directory's own error, with its exit code.
        Err(ResolveError::Source(err)) => Err(err),
    }
}

/// A trust refusal as the user error it is (exit codes 40-41), naming
/// `option`, the flag that takes the card's fingerprint.
pub fn refusal(refused: TrustError, option: &'static str) -> anyhow::Error {
    match refused {
        TrustError::Unverified {
            identity,
            fingerprint,
        } => UserError::CardUnverified {
            identity,
            fingerprint,
            option,
        }
        .into(),
        TrustError::PinnedOther {
            identity,
            pinned,
            offered,
        } => UserError::CardMismatch {
            identity,
            detail: format!(
                "a different card is pinned for it here (pinned fingerprint {pinned}, \
                 offered {offered}); if they really have a new card, pass its fingerprint \
                 with {option}"
            ),
        }
        .into(),
        TrustError::FingerprintMismatch {
            identity,
            given,
            actual,
        } => UserError::CardMismatch {
            identity,
            detail: format!("its fingerprint is {actual}, not the {given} given"),
        }
        .into(),
        TrustError::Store(err) => err.into(),
    }
}

/// A trust refusal for a command that pins cards directly (`card find
/// --pin`): the library's sentence plus the hint for `option`.
pub fn pin_hint(refused: TrustError, option: &str) -> anyhow::Error {
    match &refused {
        TrustError::Unverified { fingerprint, .. } => {
            anyhow::anyhow!("{refused}, then pass {option} \"{fingerprint}\"")
        }
        TrustError::PinnedOther { .. } => anyhow::anyhow!(
            "{refused}; if they really have a new card, pass its fingerprint with {option}"
        ),
        TrustError::FingerprintMismatch { .. } => anyhow::anyhow!("{refused}"),
        TrustError::Store(_) => refused.into(),
    }
}

/// A card store's refusal to pin or trust a card in place of another
/// (`card import`, `authority trust`), with the hint for `option`, the
/// flag that takes the new card's fingerprint.
pub fn replace_hint(err: CardStoreError, option: &str) -> anyhow::Error {
    match &err {
        CardStoreError::AlreadyPinned { offered, .. } => {
            anyhow::anyhow!("{err} and import again with {option} \"{offered}\"")
        }
        CardStoreError::FingerprintMismatch { .. } => anyhow::anyhow!("{err} with {option}"),
        _ => err.into(),
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
