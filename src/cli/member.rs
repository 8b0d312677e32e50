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
    trust::resolve(cards, who, fingerprint, &mut Source(directory))
        .map(|(card, accepted)| (card, accepted.into()))
        .map_err(|e| resolve_error(e, option))
}

/// A failed [`trust::resolve`] as the user error it is (exit codes 40-42),
/// naming `option`, the flag that takes a fingerprint.
fn resolve_error(err: ResolveError<anyhow::Error>, option: &'static str) -> anyhow::Error {
    match err {
        ResolveError::Untrusted(refused) => refusal(refused, option),
        ResolveError::NotFound { who } => UserError::CardNotFound {
            who,
            suggestions: Vec::new(),
        }
        .into(),
        ResolveError::NoneMatches {
            identity,
            given,
            published,
        } => UserError::CardMismatch {
            identity,
            detail: format!(
                "no card published for it has fingerprint {given} (published: {})",
                published.join(", ")
            ),
        }
        .into(),
        ResolveError::Ambiguous { identity, approved } => anyhow::anyhow!(
            "several cards published for {identity} are approved by authorities you trust \
             ({}); choose one with {option}",
            approved.join(", ")
        ),
        // The directory's own error, with its exit code.
        ResolveError::Source(err) => err,
    }
}

/// The identities among `candidates` close to `who` (which matched none
/// exactly): the same name before `@`, the same letters in another case,
/// or at most two edits away. Sorted, at most five.
pub fn close_identities(who: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let low = who.to_lowercase();
    let local = |s: &str| s.split('@').next().unwrap_or_default().to_string();
    let mut close: Vec<String> = candidates
        .into_iter()
        .filter(|c| c != who)
        .filter(|c| {
            let c_low = c.to_lowercase();
            c_low == low
                || local(&c_low) == local(&low)
                || (low.len() >= 3 && edit_distance(&c_low, &low) <= 2)
        })
        .collect();
    close.sort();
    close.dedup();
    close.truncate(5);
    close
}

/// Levenshtein distance between two strings (by characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
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

    // Which card is accepted is `identity::trust::resolve`'s decision and
    // tested there; these tests pin how each refusal becomes an exit code
    // and names the flag the user answers with.

    fn mapped(err: ResolveError<anyhow::Error>) -> (u8, String) {
        let err = resolve_error(err, "--fingerprint");
        (code_of(&err), err.to_string())
    }

    #[test]
    fn close_identities_are_suggested() {
        let all = || {
            [
                "bob@example.org",
                "bobby",
                "alice@example.org",
                "Bob",
                "rob",
                "carol",
            ]
            .map(String::from)
        };
        assert_eq!(
            close_identities("bob", all()),
            ["Bob", "bob@example.org", "bobby", "rob"]
        );
        assert_eq!(close_identities("alice", all()), ["alice@example.org"]);
        assert!(close_identities("zed", all()).is_empty());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn trust_refusals_map_to_40_and_41_naming_the_flag() {
        let (code, text) = mapped(ResolveError::Untrusted(TrustError::Unverified {
            identity: "bob".into(),
            fingerprint: "FP-B".into(),
        }));
        assert_eq!(code, 40);
        assert!(text.contains("--fingerprint \"FP-B\""), "{text}");
        let (code, text) = mapped(ResolveError::Untrusted(TrustError::PinnedOther {
            identity: "bob".into(),
            pinned: "OLD".into(),
            offered: "NEW".into(),
        }));
        assert_eq!(code, 41);
        assert!(text.contains("OLD") && text.contains("NEW"), "{text}");
        assert!(text.contains("--fingerprint"), "{text}");
        let (code, text) = mapped(ResolveError::Untrusted(TrustError::FingerprintMismatch {
            identity: "bob".into(),
            given: "GIVEN".into(),
            actual: "ACTUAL".into(),
        }));
        assert_eq!(code, 41);
        assert!(text.contains("GIVEN") && text.contains("ACTUAL"), "{text}");
    }

    #[test]
    fn lookup_failures_map_to_41_42_and_keep_the_directory_code() {
        let (code, text) = mapped(ResolveError::NoneMatches {
            identity: "bob".into(),
            given: "GIVEN".into(),
            published: vec!["P1".into(), "P2".into()],
        });
        assert_eq!(code, 41);
        assert!(text.contains("GIVEN") && text.contains("P1, P2"), "{text}");
        let (code, text) = mapped(ResolveError::NotFound {
            who: "carol".into(),
        });
        assert_eq!(code, 42);
        assert!(text.contains("carol"), "{text}");
        let (code, text) = mapped(ResolveError::Ambiguous {
            identity: "bob".into(),
            approved: vec!["A1".into(), "A2".into()],
        });
        assert_eq!(code, 1);
        assert!(
            text.contains("A1, A2") && text.contains("--fingerprint"),
            "{text}"
        );
        // The directory failed (the daemon is gone): its own code stays.
        let gone = UserError::NotMounted { path: "/m".into() };
        let (code, _) = mapped(ResolveError::Source(gone.into()));
        assert_eq!(code, 30);
    }
}
