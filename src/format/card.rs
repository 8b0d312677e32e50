//! Cards: an identity bound to an X25519 and an Ed25519 public key, signed
//! by that Ed25519 key, optionally approved (countersigned) by authorities.
//! Layout in docs/FORMAT.md, "Card".
//!
//! Invariants:
//! - A [`Card`] value always carries a valid self-signature, a valid
//!   identity, a usable (not low-order) X25519 key and a strong Ed25519 key;
//!   [`Card::from_bytes`] refuses anything else, and unknown versions/flags.
//! - The card id is `SHA-256("cardfs/v1/card-id" || body)`; approvals are
//!   outside the body, so approving a card does not change its id.
//! - Approvals are kept sorted by authority id and unique, so the encoding
//!   is canonical. They are only trusted through [`Card::approved_by`],
//!   which verifies the authority's signature.

use super::key::{InvalidName, UserKey, check_name};
use super::wire::{Cursor, Prefix, hash, hex, parse_hex, read_prefix};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use std::fmt;
use std::str::FromStr;
use x25519_dalek::{PublicKey, StaticSecret};

pub const MAGIC: &[u8; 4] = b"CFSC";
pub const VERSION: u8 = 1;
/// Prefix of the one-line text form.
pub const TEXT_PREFIX: &str = "cardfs-card:";
const SELF_SIG_LABEL: &[u8] = b"cardfs/v1/card";
const APPROVAL_LABEL: &[u8] = b"cardfs/v1/card-approval";
const ID_LABEL: &[u8] = b"cardfs/v1/card-id";

/// A card's id: the SHA-256 of its canonical body. Displays as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId(pub [u8; 32]);

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardId({self})")
    }
}

impl FromStr for CardId {
    type Err = CardError;
    fn from_str(s: &str) -> Result<Self, CardError> {
        parse_hex(s).map(CardId).ok_or(CardError::BadId)
    }
}

impl CardId {
    /// The fingerprint people compare aloud: eight groups of five digits,
    /// each group the big-endian `u32` of 4 id bytes modulo 100000
    /// (about 133 bits in total).
    pub fn fingerprint(&self) -> String {
        self.0
            .chunks(4)
            .map(|c| {
                format!(
                    "{:05}",
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]) % 100_000
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether `text` is this id's fingerprint, ignoring spaces and dashes.
    pub fn fingerprint_matches(&self, text: &str) -> bool {
        let given: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let ours: String = self.fingerprint().chars().filter(|c| *c != ' ').collect();
        given == ours
    }
}

/// Why a card was refused.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("not a cardfs card")]
    NotACard,
    #[error("card version {0} is not supported by this cardfs (it reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("card uses unknown feature flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("card is malformed (truncated or with trailing bytes)")]
    Malformed,
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("card's X25519 key is invalid (low order)")]
    BadX25519,
    #[error("card's Ed25519 key is invalid or weak")]
    BadEd25519,
    #[error("card's self-signature does not verify (mis-signed or modified card)")]
    BadSelfSignature,
    #[error("card lists the same authority twice")]
    DuplicateApproval,
    #[error("card text is malformed (expected one line starting with {TEXT_PREFIX:?})")]
    BadText,
    #[error("not a card id (expected 64 hex digits)")]
    BadId,
    #[error("the authority key does not match the authority card")]
    WrongAuthorityKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Approval {
    authority: CardId,
    signature: [u8; 64],
}

/// A verified card (see the module invariants).
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    body: Vec<u8>,
    id: CardId,
    identity: String,
    created: u64,
    x25519: PublicKey,
    ed25519: VerifyingKey,
    self_signature: [u8; 64],
    approvals: Vec<Approval>,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("identity", &self.identity)
            .field("id", &self.id)
            .field("created", &self.created)
            .field("approvals", &self.approvals.len())
            .finish()
    }
}

fn body_bytes(identity: &str, created: u64, x: &PublicKey, ed: &VerifyingKey) -> Vec<u8> {
    let mut body = Vec::with_capacity(80 + identity.len());
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&[VERSION, 0]);
    body.extend_from_slice(&created.to_le_bytes());
    body.push(identity.len() as u8);
    body.extend_from_slice(identity.as_bytes());
    body.extend_from_slice(x.as_bytes());
    body.extend_from_slice(ed.as_bytes());
    body
}

/// Refuses X25519 keys in the small subgroup: a clamped scalar (a multiple
/// of the cofactor) maps exactly those to the all-zero shared secret.
fn check_x25519(key: &PublicKey) -> Result<(), CardError> {
    let probe = StaticSecret::from([0x55; 32]);
    if probe.diffie_hellman(key).was_contributory() {
        Ok(())
    } else {
        Err(CardError::BadX25519)
    }
}

impl Card {
    /// Creates and self-signs a card for `key` under `identity`, created at
    /// `created` (seconds since the Unix epoch).
    pub fn create(key: &UserKey, identity: &str, created: u64) -> Result<Self, CardError> {
        check_name(identity)?;
        let body = body_bytes(
            identity,
            created,
            key.x25519_public(),
            &key.ed25519_public(),
        );
        let signature = key
            .signing_key()
            .sign(&[SELF_SIG_LABEL, &body].concat())
            .to_bytes();
        let mut bytes = body;
        bytes.extend_from_slice(&signature);
        bytes.push(0);
        Self::from_bytes(&bytes)
    }

    /// Parses and verifies a card (see the module invariants).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CardError> {
        let short = |_| CardError::Malformed;
        let mut c = Cursor::new(bytes);
        read_prefix(&mut c, MAGIC, VERSION, 0).map_err(|e| match e {
            Prefix::Magic => CardError::NotACard,
            Prefix::Short => CardError::Malformed,
            Prefix::Version(v) => CardError::UnsupportedVersion(v),
            Prefix::Flags(f) => CardError::UnknownFlags(f),
        })?;
        let created = c.u64().map_err(short)?;
        let len = c.u8().map_err(short)? as usize;
        let identity = String::from_utf8(c.take(len).map_err(short)?.to_vec())
            .map_err(|_| CardError::Malformed)?;
        check_name(&identity)?;
        let x25519 = PublicKey::from(c.array::<32>().map_err(short)?);
        let ed = c.array::<32>().map_err(short)?;
        let body = bytes[..c.position(bytes)].to_vec();
        let self_signature = c.array::<64>().map_err(short)?;
        let count = c.u8().map_err(short)? as usize;
        let mut approvals: Vec<Approval> = Vec::with_capacity(count);
        for _ in 0..count {
            let approval = Approval {
                authority: CardId(c.array().map_err(short)?),
                signature: c.array().map_err(short)?,
            };
            if let Some(last) = approvals.last()
                && last.authority >= approval.authority
            {
                return Err(CardError::DuplicateApproval);
            }
            approvals.push(approval);
        }
        c.finish().map_err(short)?;
        check_x25519(&x25519)?;
        let ed25519 = VerifyingKey::from_bytes(&ed).map_err(|_| CardError::BadEd25519)?;
        if ed25519.is_weak() {
            return Err(CardError::BadEd25519);
        }
        ed25519
            .verify_strict(
                &[SELF_SIG_LABEL, &body].concat(),
                &Signature::from_bytes(&self_signature),
            )
            .map_err(|_| CardError::BadSelfSignature)?;
        Ok(Self {
            id: CardId(hash(ID_LABEL, &[&body])),
            body,
            identity,
            created,
            x25519,
            ed25519,
            self_signature,
            approvals,
        })
    }

    /// The canonical encoding, approvals included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body.clone();
        out.extend_from_slice(&self.self_signature);
        out.push(self.approvals.len() as u8);
        for a in &self.approvals {
            out.extend_from_slice(&a.authority.0);
            out.extend_from_slice(&a.signature);
        }
        out
    }

    /// One line of text, safe to paste: `cardfs-card:` and unpadded
    /// URL-safe base64 of [`Card::to_bytes`].
    pub fn to_text(&self) -> String {
        format!("{TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }

    /// Parses [`Card::to_text`] output; surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, CardError> {
        let b64 = text
            .trim()
            .strip_prefix(TEXT_PREFIX)
            .ok_or(CardError::BadText)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| CardError::BadText)?;
        Self::from_bytes(&bytes)
    }

    pub fn id(&self) -> CardId {
        self.id
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Creation time, seconds since the Unix epoch.
    pub fn created(&self) -> u64 {
        self.created
    }

    pub fn x25519_public(&self) -> &PublicKey {
        &self.x25519
    }

    pub fn ed25519_public(&self) -> &VerifyingKey {
        &self.ed25519
    }

    pub fn fingerprint(&self) -> String {
        self.id.fingerprint()
    }

    /// Whether this card holds `key`'s public keys.
    pub fn matches_key(&self, key: &UserKey) -> bool {
        self.x25519 == *key.x25519_public() && self.ed25519 == key.ed25519_public()
    }

    /// Ids of the authorities that claim to approve this card (unverified).
    pub fn approval_ids(&self) -> impl Iterator<Item = CardId> + '_ {
        self.approvals.iter().map(|a| a.authority)
    }

    /// Adds (or replaces) `authority`'s approval, signed by its key.
    pub fn approve(&mut self, authority_key: &UserKey, authority: &Card) -> Result<(), CardError> {
        if !authority.matches_key(authority_key) {
            return Err(CardError::WrongAuthorityKey);
        }
        let signature = authority_key
            .signing_key()
            .sign(&[APPROVAL_LABEL, &self.id.0].concat())
            .to_bytes();
        self.insert_approval(Approval {
            authority: authority.id,
            signature,
        });
        Ok(())
    }

    fn insert_approval(&mut self, approval: Approval) {
        match self
            .approvals
            .binary_search_by(|a| a.authority.cmp(&approval.authority))
        {
            Ok(i) => self.approvals[i] = approval,
            Err(i) => self.approvals.insert(i, approval),
        }
    }

    /// Whether `authority` approved this card (its signature verifies).
    pub fn approved_by(&self, authority: &Card) -> bool {
        self.approvals.iter().any(|a| {
            a.authority == authority.id
                && authority
                    .ed25519
                    .verify_strict(
                        &[APPROVAL_LABEL, &self.id.0].concat(),
                        &Signature::from_bytes(&a.signature),
                    )
                    .is_ok()
        })
    }

    /// Adds approvals from another copy of the same card that this copy
    /// lacks. Returns how many were added; copies of other cards add none.
    pub fn merge_approvals(&mut self, other: &Card) -> usize {
        if other.id != self.id {
            return 0;
        }
        let mut added = 0;
        for a in &other.approvals {
            if !self.approvals.iter().any(|b| b.authority == a.authority) {
                self.insert_approval(a.clone());
                added += 1;
            }
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> (UserKey, Card) {
        let key = UserKey::from_secret_bytes("alice", &[1; 32], &[2; 32]).unwrap();
        let card = Card::create(&key, "alice@example.org", 1_700_000_000).unwrap();
        (key, card)
    }

    #[test]
    fn round_trip_bytes_and_text() {
        let (key, card) = alice();
        assert!(card.matches_key(&key));
        assert_eq!(Card::from_bytes(&card.to_bytes()).unwrap(), card);
        let text = card.to_text();
        assert!(!text.contains(char::is_whitespace));
        assert_eq!(Card::from_text(&format!("  {text}\n")).unwrap(), card);
        assert_eq!(card.identity(), "alice@example.org");
        assert_eq!(card.id().to_string().parse::<CardId>().unwrap(), card.id());
    }

    #[test]
    fn fingerprint_is_eight_groups_of_five_digits() {
        let (_, card) = alice();
        let fp = card.fingerprint();
        let groups: Vec<&str> = fp.split(' ').collect();
        assert_eq!(groups.len(), 8);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(card.id().fingerprint_matches(&fp.replace(' ', "-")));
        assert!(!card.id().fingerprint_matches("00000 00000"));
    }

    #[test]
    fn any_modified_byte_is_refused() {
        let (_, card) = alice();
        let bytes = card.to_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(Card::from_bytes(&bad).is_err(), "byte {i} accepted");
        }
    }

    #[test]
    fn refuses_versions_flags_and_bad_keys() {
        let (_, card) = alice();
        let bytes = card.to_bytes();
        let mut v = bytes.clone();
        v[4] = 2;
        assert!(matches!(
            Card::from_bytes(&v),
            Err(CardError::UnsupportedVersion(2))
        ));
        let mut f = bytes.clone();
        f[5] = 0x80;
        assert!(matches!(
            Card::from_bytes(&f),
            Err(CardError::UnknownFlags(0x80))
        ));
        assert!(matches!(Card::from_bytes(b"CFS"), Err(CardError::NotACard)));
        assert!(matches!(Card::from_text("hello"), Err(CardError::BadText)));
        // A low-order X25519 key, correctly self-signed, is still refused.
        let key = UserKey::from_secret_bytes("mallory", &[1; 32], &[5; 32]).unwrap();
        let body = body_bytes(
            "mallory",
            1,
            &PublicKey::from([0u8; 32]),
            &key.ed25519_public(),
        );
        let sig = key.signing_key().sign(&[SELF_SIG_LABEL, &body].concat());
        let mut bytes = body;
        bytes.extend_from_slice(&sig.to_bytes());
        bytes.push(0);
        assert!(matches!(
            Card::from_bytes(&bytes),
            Err(CardError::BadX25519)
        ));
    }

    #[test]
    fn approvals_verify_merge_and_keep_the_id() {
        let (_, mut card) = alice();
        let id = card.id();
        let auth_key = UserKey::from_secret_bytes("acme", &[7; 32], &[8; 32]).unwrap();
        let auth = Card::create(&auth_key, "acme", 1).unwrap();
        let other_key = UserKey::from_secret_bytes("evil", &[9; 32], &[10; 32]).unwrap();
        let other = Card::create(&other_key, "evil", 1).unwrap();
        assert!(!card.approved_by(&auth));
        assert!(matches!(
            card.approve(&other_key, &auth),
            Err(CardError::WrongAuthorityKey)
        ));
        card.approve(&auth_key, &auth).unwrap();
        assert_eq!(card.id(), id);
        assert!(card.approved_by(&auth));
        assert!(!card.approved_by(&other));
        let reparsed = Card::from_bytes(&card.to_bytes()).unwrap();
        assert!(reparsed.approved_by(&auth));
        let (_, mut plain) = alice();
        assert_eq!(plain.merge_approvals(&card), 1);
        assert_eq!(plain.to_bytes(), card.to_bytes());
        // A forged approval (signature bytes altered) does not count.
        let mut bytes = card.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged = Card::from_bytes(&bytes).unwrap();
        assert!(!forged.approved_by(&auth));
    }
}
