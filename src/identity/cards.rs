//! The card store: pinned cards in `$CARDFS_HOME/cards/pinned/IDENTITY.card`
//! and trusted authorities in `$CARDFS_HOME/cards/authorities/IDENTITY.card`.
//!
//! Invariants:
//! - At most one card is pinned per identity. A different card for a
//!   pinned identity replaces it only when the caller passes the new
//!   card's fingerprint, or when a trusted authority approved the new card
//!   and the new card is newer than the pinned one (the defence against
//!   key substitution and rollback; see docs/SECURITY.md).
//! - Every card read back is re-verified by `Card::from_bytes`.

use super::CardStoreError;
use super::fsutil::{Existing, list_files, read_optional, write_atomic};
use crate::format::card::{Card, CardId};
use crate::format::key::check_name;
use std::path::{Path, PathBuf};

/// What [`CardStore::pin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// The identity had no card; this one is now pinned.
    New,
    /// The same card was already pinned; nothing changed.
    Unchanged,
    /// The same card was pinned; this copy added authority approvals.
    ApprovalsAdded(usize),
    /// A different card was pinned and has been replaced, because the
    /// fingerprint was given or because the named authority approved it.
    Replaced {
        old: CardId,
        approved_by: Option<String>,
    },
}

/// The pinned cards and trusted authorities of one cardfs home.
#[derive(Debug, Clone)]
pub struct CardStore {
    pinned: PathBuf,
    authorities: PathBuf,
}

fn read_card(path: &Path) -> Result<Option<Card>, CardStoreError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(bytes) => Card::from_bytes(&bytes)
            .map(Some)
            .map_err(|error| CardStoreError::Card {
                path: path.to_path_buf(),
                error,
            }),
    }
}

fn read_all(dir: &Path) -> Result<Vec<Card>, CardStoreError> {
    let mut out = Vec::new();
    for path in list_files(dir, "card")? {
        out.extend(read_card(&path)?);
    }
    Ok(out)
}

fn card_path(dir: &Path, identity: &str) -> Result<PathBuf, CardStoreError> {
    check_name(identity)?;
    Ok(dir.join(format!("{identity}.card")))
}

impl CardStore {
    pub fn new(home: &Path) -> Self {
        let cards = home.join("cards");
        Self {
            pinned: cards.join("pinned"),
            authorities: cards.join("authorities"),
        }
    }

    /// The card pinned for `identity`, if any.
    pub fn get(&self, identity: &str) -> Result<Option<Card>, CardStoreError> {
        read_card(&card_path(&self.pinned, identity)?)
    }

    /// The pinned card named by an identity or a full card id (hex).
    pub fn find(&self, query: &str) -> Result<Card, CardStoreError> {
        if let Ok(id) = query.parse::<CardId>() {
            if let Some(card) = self.list()?.into_iter().find(|c| c.id() == id) {
                return Ok(card);
            }
        } else if check_name(query).is_ok()
            && let Some(card) = self.get(query)?
        {
            return Ok(card);
        }
        Err(CardStoreError::CardNotFound(query.to_string()))
    }

    /// A pinned card or trusted authority with this id.
    pub fn find_id(&self, id: CardId) -> Result<Option<Card>, CardStoreError> {
        let mut all = self.list()?;
        all.extend(self.authorities()?);
        Ok(all.into_iter().find(|c| c.id() == id))
    }

    /// All pinned cards, sorted by identity.
    pub fn list(&self) -> Result<Vec<Card>, CardStoreError> {
        read_all(&self.pinned)
    }

    /// All trusted authorities, sorted by identity.
    pub fn authorities(&self) -> Result<Vec<Card>, CardStoreError> {
        read_all(&self.authorities)
    }

    /// Trusts `authority`: cards it approved are accepted without a
    /// fingerprint check. Replaces a previously trusted authority card of
    /// the same identity only with its fingerprint (as for pinning).
    pub fn trust_authority(
        &self,
        authority: &Card,
        replace: Option<&str>,
    ) -> Result<(), CardStoreError> {
        let path = card_path(&self.authorities, authority.identity())?;
        if let Some(old) = read_card(&path)?
            && old.id() != authority.id()
        {
            check_replace(&old, authority, replace)?;
        }
        Ok(write_atomic(
            &path,
            &authority.to_bytes(),
            Existing::Replace,
        )?)
    }

    /// The first trusted authority that approved `card`, if any.
    pub fn approving_authority(&self, card: &Card) -> Result<Option<Card>, CardStoreError> {
        Ok(self
            .authorities()?
            .into_iter()
            .find(|a| card.approved_by(a)))
    }

    /// Pins `card` for its identity (see the module invariants).
    pub fn pin(&self, card: &Card, replace: Option<&str>) -> Result<Pinned, CardStoreError> {
        let path = card_path(&self.pinned, card.identity())?;
        if let Some(given) = replace
            && !card.id().fingerprint_matches(given)
        {
            return Err(CardStoreError::FingerprintMismatch {
                given: given.to_string(),
                actual: card.fingerprint(),
            });
        }
        let outcome = match read_card(&path)? {
            None => Pinned::New,
            Some(mut old) if old.id() == card.id() => {
                let added = old.merge_approvals(card);
                if added == 0 {
                    return Ok(Pinned::Unchanged);
                }
                write_atomic(&path, &old.to_bytes(), Existing::Replace)?;
                return Ok(Pinned::ApprovalsAdded(added));
            }
            Some(old) => {
                let approved_by = match replace {
                    Some(_) => None,
                    // An approval replaces only an older card, so an old
                    // (perhaps compromised) approved card cannot roll back
                    // a newer one.
                    None => match self.approving_authority(card)? {
                        Some(authority) if card.created() > old.created() => {
                            Some(authority.identity().to_string())
                        }
                        _ => {
                            check_replace(&old, card, None)?;
                            None
                        }
                    },
                };
                Pinned::Replaced {
                    old: old.id(),
                    approved_by,
                }
            }
        };
        write_atomic(&path, &card.to_bytes(), Existing::Replace)?;
        Ok(outcome)
    }
}

fn check_replace(old: &Card, new: &Card, replace: Option<&str>) -> Result<(), CardStoreError> {
    match replace {
        Some(given) if new.id().fingerprint_matches(given) => Ok(()),
        Some(given) => Err(CardStoreError::FingerprintMismatch {
            given: given.to_string(),
            actual: new.fingerprint(),
        }),
        None => Err(CardStoreError::AlreadyPinned {
            identity: new.identity().to_string(),
            pinned: old.fingerprint(),
            offered: new.fingerprint(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::key::UserKey;

    fn card(seed: u8, identity: &str) -> (UserKey, Card) {
        let key = UserKey::from_secret_bytes("k", &[seed; 32], &[seed + 1; 32]).unwrap();
        let card = Card::create(&key, identity, 1).unwrap();
        (key, card)
    }

    #[test]
    fn pinning_refuses_substitution_without_fingerprint() {
        let home = tempfile::tempdir().unwrap();
        let store = CardStore::new(home.path());
        let (_, real) = card(1, "alice");
        let (_, fake) = card(3, "alice");
        assert_eq!(store.pin(&real, None).unwrap(), Pinned::New);
        assert_eq!(store.pin(&real, None).unwrap(), Pinned::Unchanged);
        assert!(matches!(
            store.pin(&fake, None),
            Err(CardStoreError::AlreadyPinned { .. })
        ));
        assert!(matches!(
            store.pin(&fake, Some(&real.fingerprint())),
            Err(CardStoreError::FingerprintMismatch { .. })
        ));
        assert_eq!(store.get("alice").unwrap().unwrap(), real);
        assert!(matches!(
            store.pin(&fake, Some(&fake.fingerprint())).unwrap(),
            Pinned::Replaced {
                approved_by: None,
                ..
            }
        ));
        assert_eq!(store.find("alice").unwrap(), fake);
        assert_eq!(store.find(&fake.id().to_string()).unwrap(), fake);
        assert!(matches!(
            store.find("bob"),
            Err(CardStoreError::CardNotFound(_))
        ));
    }

    #[test]
    fn trusted_authority_approval_replaces_and_merges() {
        let home = tempfile::tempdir().unwrap();
        let store = CardStore::new(home.path());
        let (auth_key, auth) = card(5, "acme");
        let (_, old) = card(1, "alice");
        let new_key = UserKey::from_secret_bytes("k", &[3; 32], &[4; 32]).unwrap();
        let mut new = Card::create(&new_key, "alice", 2).unwrap();
        store.pin(&old, None).unwrap();
        new.approve(&auth_key, &auth).unwrap();
        // Approved by an authority we do not trust yet: refused.
        assert!(matches!(
            store.pin(&new, None),
            Err(CardStoreError::AlreadyPinned { .. })
        ));
        store.trust_authority(&auth, None).unwrap();
        assert_eq!(
            store.pin(&new, None).unwrap(),
            Pinned::Replaced {
                old: old.id(),
                approved_by: Some("acme".into())
            }
        );
        // The old card, even if approved, cannot roll the pin back.
        let mut old_approved = old.clone();
        old_approved.approve(&auth_key, &auth).unwrap();
        assert!(matches!(
            store.pin(&old_approved, None),
            Err(CardStoreError::AlreadyPinned { .. })
        ));
        let (_, mut bob) = card(7, "bob");
        store.pin(&bob, None).unwrap();
        bob.approve(&auth_key, &auth).unwrap();
        assert_eq!(store.pin(&bob, None).unwrap(), Pinned::ApprovalsAdded(1));
        let stored = store.get("bob").unwrap().unwrap();
        assert_eq!(store.approving_authority(&stored).unwrap(), Some(auth));
    }
}
