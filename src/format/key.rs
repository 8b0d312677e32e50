//! A user's secret key: an X25519 key pair for receiving encrypted data and
//! an Ed25519 key pair for signatures, under a local name.
//!
//! Invariants:
//! - The secret halves zeroize on drop (both dalek types do with their
//!   `zeroize` feature) and `Debug` shows only the name and public keys.
//! - Names are 1-64 bytes of `[A-Za-z0-9._@+-]`, not starting with `.`, so
//!   a name is always a safe file name.

use super::crypto::random_array;
use super::wire::hash;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};

/// A name that is not acceptable for a key, card identity or authority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {0:?}: use 1-{MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ @ + - (not starting with '.')"
)]
pub struct InvalidName(pub String);

/// Longest accepted name or identity, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a key name or card identity (see the module invariants).
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_string()))
    }
}

/// Identifies an X25519 public key in envelope stanzas without the card:
/// `SHA-256("cardfs/v1/recipient" || x25519_public)`.
pub fn recipient_id(public: &PublicKey) -> [u8; 32] {
    hash(b"cardfs/v1/recipient", &[public.as_bytes()])
}

/// A user's (or authority's) secret key pair set.
pub struct UserKey {
    name: String,
    x25519: StaticSecret,
    x25519_public: PublicKey,
    signing: SigningKey,
}

impl UserKey {
    /// Fresh random keys from the operating system's generator.
    pub fn generate(name: &str) -> Result<Self, InvalidName> {
        let mut x = random_array::<32>();
        let mut ed = random_array::<32>();
        let key = Self::from_secret_bytes(name, &x, &ed);
        zeroize::Zeroize::zeroize(&mut x);
        zeroize::Zeroize::zeroize(&mut ed);
        key
    }

    /// Rebuilds a key from its secret bytes (X25519 scalar, Ed25519 seed).
    /// Used when unlocking a key file, and by tests to inject fixed keys.
    pub fn from_secret_bytes(
        name: &str,
        x25519_secret: &[u8; 32],
        ed25519_seed: &[u8; 32],
    ) -> Result<Self, InvalidName> {
        check_name(name)?;
        let x25519 = StaticSecret::from(*x25519_secret);
        let x25519_public = PublicKey::from(&x25519);
        Ok(Self {
            name: name.to_string(),
            x25519,
            x25519_public,
            signing: SigningKey::from_bytes(ed25519_seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn x25519_public(&self) -> &PublicKey {
        &self.x25519_public
    }

    pub fn ed25519_public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// This key's recipient id in envelopes (see [`recipient_id`]).
    pub fn recipient_id(&self) -> [u8; 32] {
        recipient_id(&self.x25519_public)
    }

    /// The same key under another name (for `key import` under a new name).
    pub fn renamed(&self, name: &str) -> Result<Self, InvalidName> {
        Self::from_secret_bytes(name, &self.x25519.to_bytes(), &self.signing.to_bytes())
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKey")
            .field("name", &self.name)
            .field(
                "x25519_public",
                &super::wire::hex(self.x25519_public.as_bytes()),
            )
            .field(
                "ed25519_public",
                &super::wire::hex(self.ed25519_public().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["alice", "bob@example.org", "a.b_c+d-1", "x"] {
            check_name(good).unwrap();
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", ".hidden", "a/b", "a b", "ä", "..", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = UserKey::from_secret_bytes("alice", &[1; 32], &[2; 32]).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("alice"));
        assert!(!debug.contains(&super::super::wire::hex(&[1; 32])));
        assert!(!debug.contains(&super::super::wire::hex(&[2; 32])));
        assert!(!debug.contains("[1, 1"));
        assert!(!debug.contains("[2, 2"));
    }
}
