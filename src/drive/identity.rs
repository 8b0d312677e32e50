//! The local user's identity as the engine needs it, and keyring members.
//!
//! Invariants: secrets are held in types that zeroize on drop; `Debug`
//! shows only the card id.

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};

/// The unlocked key of the local user: X25519 secret (unwraps volume keys),
/// Ed25519 signing key (signs metadata), and the id of their card.
pub struct Identity {
    pub x25519: StaticSecret,
    pub ed25519: SigningKey,
    pub card_id: [u8; 32],
}

impl Identity {
    pub fn new(x25519: StaticSecret, ed25519: SigningKey, card_id: [u8; 32]) -> Self {
        Self {
            x25519,
            ed25519,
            card_id,
        }
    }

    /// A fresh random identity whose card id is the SHA-256 of its two
    /// public keys (for tests and tools; real card ids come from cards).
    pub fn generate() -> Self {
        use sha2::Digest;
        let x25519 = StaticSecret::from(crate::format::crypto::random_array::<32>());
        let ed25519 = SigningKey::from_bytes(&crate::format::crypto::random_array::<32>());
        let mut h = sha2::Sha256::new();
        h.update(PublicKey::from(&x25519).as_bytes());
        h.update(ed25519.verifying_key().as_bytes());
        let card_id: [u8; 32] = h.finalize().into();
        Self::new(x25519, ed25519, card_id)
    }

    /// This identity as a keyring member with `role`.
    pub fn member(&self, role: Role) -> Member {
        Member {
            card_id: self.card_id,
            x25519: PublicKey::from(&self.x25519),
            ed25519: self.ed25519.verifying_key(),
            role,
        }
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self::new(self.x25519.clone(), self.ed25519.clone(), self.card_id)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(card {})", hex8(&self.card_id))
    }
}

/// What a member may do in a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader = 1,
    Writer = 2,
    Owner = 3,
}

impl Role {
    pub fn from_u8(v: u8) -> Option<Role> {
        match v {
            1 => Some(Role::Reader),
            2 => Some(Role::Writer),
            3 => Some(Role::Owner),
            _ => None,
        }
    }
    pub fn can_write(self) -> bool {
        matches!(self, Role::Writer | Role::Owner)
    }
}

/// One member of a volume's keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub card_id: [u8; 32],
    pub x25519: PublicKey,
    pub ed25519: VerifyingKey,
    pub role: Role,
}

impl Member {
    /// This member as stored in keyrings.
    pub fn record(&self) -> crate::format::meta::MemberRecord {
        crate::format::meta::MemberRecord {
            card_id: self.card_id,
            x25519: *self.x25519.as_bytes(),
            ed25519: *self.ed25519.as_bytes(),
            role: self.role as u8,
        }
    }
}

/// First 8 hex digits of an id, for names and messages.
pub fn hex8(id: &[u8]) -> String {
    crate::format::hex::encode(&id[..id.len().min(4)])
}
