//! Envelopes: data encrypted to one or more cards, optionally signed by the
//! sender. Layout in docs/FORMAT.md, "Envelope". This module holds the pure
//! state machines ([`Sealer`], [`Opener`]); streaming over readers and
//! writers lives in `crate::identity::envelope`.
//!
//! Invariants:
//! - The header tag is an HMAC-based (HKDF) commitment to the file key over
//!   the whole header, so a header decrypts under one file key only and no
//!   header byte (flags, stanza order, nonce) can change unnoticed.
//! - The payload key is derived from the file key and the header tag, so
//!   every chunk is bound to its header; chunk nonces carry the chunk
//!   counter and a last-chunk flag, so reordering, truncation, extension
//!   and splicing between envelopes all fail authentication.
//! - A signature covers the header and every sealed chunk, and sits
//!   encrypted after the last chunk, so only recipients learn the sender.
//! - An [`Opener`] only ever returns plaintext that has authenticated.

use super::card::{Card, CardId};
use super::crypto::{
    AuthError, Cipher, NONCE_LEN, SecretKey, TAG_LEN, WRAPPED_KEY_LEN, hkdf, random_array,
    unwrap_key, wrap_key_with,
};
use super::key::{UserKey, recipient_id};
use super::wire::{Cursor, Prefix, hash, read_prefix};
use ed25519_dalek::{Signature, Signer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};

pub const MAGIC: &[u8; 4] = b"CFSE";
pub const VERSION: u8 = 1;
/// Header flag: a signature block follows the last chunk.
pub const FLAG_SIGNED: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_SIGNED;
/// Plaintext bytes per chunk (the last chunk may be shorter).
pub const CHUNK_LEN: usize = 64 * 1024;
/// A full chunk on the wire.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
pub const HEADER_NONCE_LEN: usize = 16;
/// Magic, version, flags, stanza count, nonce.
pub const FIXED_HEADER_LEN: usize = 4 + 1 + 1 + 2 + HEADER_NONCE_LEN;
/// Recipient id and wrapped file key.
pub const STANZA_LEN: usize = 32 + WRAPPED_KEY_LEN;
pub const HEADER_TAG_LEN: usize = 32;
pub const MAX_RECIPIENTS: usize = 1024;
/// Sealed signature block: signer card id, Ed25519 signature, tag.
pub const SIGNATURE_BLOCK_LEN: usize = 32 + 64 + TAG_LEN;

const NONCE_FLAG_MORE: u8 = 0;
const NONCE_FLAG_LAST: u8 = 1;
const NONCE_FLAG_SIGNATURE: u8 = 2;

/// Why an envelope could not be made or opened. Each variant names one
/// reason, and the messages say it in words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a cardfs envelope")]
    NotAnEnvelope,
    #[error("envelope version {0} is not supported by this cardfs (it reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("envelope uses unknown feature flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("envelope header is malformed ({0})")]
    MalformedHeader(&'static str),
    #[error("no recipients given")]
    NoRecipients,
    #[error("too many recipients (at most {MAX_RECIPIENTS})")]
    TooManyRecipients,
    #[error("a recipient's X25519 key is invalid")]
    BadRecipientKey,
    #[error("this key is not a recipient of the envelope")]
    NotARecipient,
    #[error("envelope header was tampered with (it does not authenticate under this key)")]
    HeaderTampered,
    #[error("envelope is truncated: {0}")]
    Truncated(&'static str),
    #[error("envelope was extended: data follows its final chunk")]
    Extended,
    #[error("chunk {0} was tampered with (modified, reordered, or taken from another envelope)")]
    ChunkTampered(u64),
    #[error("the final chunk ({0}) is truncated or was modified")]
    FinalChunkTampered(u64),
    #[error("signature block was tampered with")]
    SignatureBlockTampered,
    #[error("envelope is not signed, but a signature is required")]
    SignatureMissing,
    #[error("envelope is signed by card {found}, not by the expected sender {expected}")]
    WrongSender { expected: CardId, found: CardId },
    #[error("bad signature: the sender's signature does not verify")]
    BadSignature,
    #[error("the signing key does not match the signer's card")]
    SignerCardMismatch,
}

/// One recipient's copy of the file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub recipient: [u8; 32],
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

/// A parsed header (not yet authenticated: that needs a recipient's key).
#[derive(Debug, Clone)]
pub struct Header {
    flags: u8,
    nonce: [u8; HEADER_NONCE_LEN],
    stanzas: Vec<Stanza>,
    tag: [u8; HEADER_TAG_LEN],
    bytes: Vec<u8>,
}

/// Checks the fixed header prefix and returns the whole header's length.
pub fn header_len(fixed: &[u8]) -> Result<usize, EnvelopeError> {
    let mut c = Cursor::new(fixed);
    let truncated = |_| EnvelopeError::Truncated("the header is incomplete");
    read_prefix(&mut c, MAGIC, VERSION, KNOWN_FLAGS).map_err(|e| match e {
        Prefix::Magic => EnvelopeError::NotAnEnvelope,
        Prefix::Short => EnvelopeError::Truncated("the header is incomplete"),
        Prefix::Version(v) => EnvelopeError::UnsupportedVersion(v),
        Prefix::Flags(f) => EnvelopeError::UnknownFlags(f),
    })?;
    let count = c.u16().map_err(truncated)? as usize;
    if count == 0 || count > MAX_RECIPIENTS {
        return Err(EnvelopeError::MalformedHeader(
            "recipient count out of range",
        ));
    }
    Ok(FIXED_HEADER_LEN + count * STANZA_LEN + HEADER_TAG_LEN)
}

impl Header {
    /// Parses a complete header (exactly [`header_len`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let len = header_len(bytes)?;
        if bytes.len() < len {
            return Err(EnvelopeError::Truncated("the header is incomplete"));
        }
        if bytes.len() > len {
            return Err(EnvelopeError::MalformedHeader("trailing bytes"));
        }
        let short = |_| EnvelopeError::Truncated("the header is incomplete");
        let mut c = Cursor::new(bytes);
        c.take(5).map_err(short)?;
        let flags = c.u8().map_err(short)?;
        let count = c.u16().map_err(short)? as usize;
        let nonce = c.array().map_err(short)?;
        let mut stanzas = Vec::with_capacity(count);
        for _ in 0..count {
            stanzas.push(Stanza {
                recipient: c.array().map_err(short)?,
                wrapped: c.array().map_err(short)?,
            });
        }
        let tag = c.array().map_err(short)?;
        Ok(Self {
            flags,
            nonce,
            stanzas,
            tag,
            bytes: bytes.to_vec(),
        })
    }

    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn is_signed(&self) -> bool {
        self.flags & FLAG_SIGNED != 0
    }

    pub fn stanzas(&self) -> &[Stanza] {
        &self.stanzas
    }

    /// The recipient ids, for matching against local keys before unlocking.
    pub fn recipients(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.stanzas.iter().map(|s| &s.recipient)
    }

    fn unauthenticated_part(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - HEADER_TAG_LEN]
    }
}

fn stanza_context(nonce: &[u8; HEADER_NONCE_LEN], recipient: &[u8; 32]) -> Vec<u8> {
    [b"cardfs/v1/envelope/stanza".as_slice(), nonce, recipient].concat()
}

fn header_tag(file_key: &SecretKey, unauthenticated: &[u8]) -> [u8; 32] {
    let salt = hash(b"cardfs/v1/envelope/header", &[unauthenticated]);
    *hkdf(
        &salt,
        file_key.expose(),
        &[b"cardfs/v1/envelope/header-tag"],
    )
    .expose()
}

fn payload_cipher(file_key: &SecretKey, tag: &[u8; 32]) -> Cipher {
    Cipher::new(&hkdf(
        tag,
        file_key.expose(),
        &[b"cardfs/v1/envelope/payload"],
    ))
}

fn chunk_nonce(counter: u64, flag: u8) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = flag;
    nonce
}

fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    [b"cardfs/v1/envelope/signature".as_slice(), digest].concat()
}

/// Encrypts one envelope, chunk by chunk.
pub struct Sealer {
    cipher: Cipher,
    counter: u64,
    digest: Option<Sha256>,
    header: Vec<u8>,
    finished: bool,
}

impl Sealer {
    /// Starts an envelope for `recipients` (duplicates are merged) with a
    /// fresh random file key, nonce and ephemeral keys.
    pub fn new(recipients: &[&PublicKey], signed: bool) -> Result<Self, EnvelopeError> {
        let ephemerals: Vec<[u8; 32]> = recipients.iter().map(|_| random_array()).collect();
        Self::new_with(
            recipients,
            signed,
            SecretKey::random(),
            random_array(),
            &ephemerals,
        )
    }

    /// [`Sealer::new`] with caller-chosen randomness, one ephemeral secret
    /// per recipient. For known-answer vectors only.
    #[doc(hidden)]
    pub fn new_with(
        recipients: &[&PublicKey],
        signed: bool,
        file_key: SecretKey,
        nonce: [u8; HEADER_NONCE_LEN],
        ephemerals: &[[u8; 32]],
    ) -> Result<Self, EnvelopeError> {
        assert_eq!(
            recipients.len(),
            ephemerals.len(),
            "one ephemeral per recipient"
        );
        let mut ids: Vec<([u8; 32], &PublicKey, &[u8; 32])> = recipients
            .iter()
            .zip(ephemerals)
            .map(|(pk, e)| (recipient_id(pk), *pk, e))
            .collect();
        ids.sort_by_key(|a| a.0);
        ids.dedup_by(|a, b| a.0 == b.0);
        if ids.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        if ids.len() > MAX_RECIPIENTS {
            return Err(EnvelopeError::TooManyRecipients);
        }
        let flags = if signed { FLAG_SIGNED } else { 0 };
        let mut header = Vec::with_capacity(FIXED_HEADER_LEN + ids.len() * STANZA_LEN + 32);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&[VERSION, flags]);
        header.extend_from_slice(&(ids.len() as u16).to_le_bytes());
        header.extend_from_slice(&nonce);
        for (id, pk, ephemeral) in ids {
            let wrapped = wrap_key_with(
                pk,
                &file_key,
                &stanza_context(&nonce, &id),
                &StaticSecret::from(*ephemeral),
            )
            .map_err(|AuthError| EnvelopeError::BadRecipientKey)?;
            header.extend_from_slice(&id);
            header.extend_from_slice(&wrapped);
        }
        let tag = header_tag(&file_key, &header);
        header.extend_from_slice(&tag);
        let digest = signed.then(|| {
            let mut d = Sha256::new();
            d.update(&header);
            d
        });
        Ok(Self {
            cipher: payload_cipher(&file_key, &tag),
            counter: 0,
            digest,
            header,
            finished: false,
        })
    }

    /// The header, to be written before the first chunk.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Seals one chunk into `out`. Every chunk but the last must hold
    /// exactly [`CHUNK_LEN`] bytes; the last holds 0 to [`CHUNK_LEN`]
    /// bytes (0 only when the whole input is empty).
    ///
    /// # Panics
    /// On a wrongly sized chunk or a chunk after the last: caller bugs.
    pub fn seal_chunk(&mut self, plaintext: &[u8], last: bool, out: &mut Vec<u8>) {
        assert!(!self.finished, "chunk after the last chunk");
        assert!(plaintext.len() <= CHUNK_LEN && (last || plaintext.len() == CHUNK_LEN));
        let flag = if last {
            NONCE_FLAG_LAST
        } else {
            NONCE_FLAG_MORE
        };
        self.cipher
            .seal_into(&chunk_nonce(self.counter, flag), &[], plaintext, out);
        if let Some(d) = &mut self.digest {
            d.update(&out[..]);
        }
        self.counter += 1;
        self.finished = last;
    }

    /// After the last chunk of a signed envelope: the sealed signature
    /// block, signed by `signer` whose card is `signer_card`.
    pub fn sign(self, signer: &UserKey, signer_card: &Card) -> Result<Vec<u8>, EnvelopeError> {
        assert!(self.finished, "sign after the last chunk");
        let digest = self.digest.expect("sign called on an unsigned envelope");
        if !signer_card.matches_key(signer) {
            return Err(EnvelopeError::SignerCardMismatch);
        }
        let digest: [u8; 32] = digest.finalize().into();
        let signature = signer.signing_key().sign(&signed_message(&digest));
        let block = [signer_card.id().0.as_slice(), &signature.to_bytes()].concat();
        Ok(self.cipher.seal(
            &chunk_nonce(self.counter, NONCE_FLAG_SIGNATURE),
            &[],
            &block,
        ))
    }
}

/// A sender's signature recovered from an envelope, not yet checked against
/// any card. Only [`SignatureClaim::verify`] makes it mean anything.
#[derive(Debug, Clone)]
pub struct SignatureClaim {
    signer: CardId,
    signature: [u8; 64],
    digest: [u8; 32],
}

impl SignatureClaim {
    /// The card id the signer claims (unverified).
    pub fn signer(&self) -> CardId {
        self.signer
    }

    /// Checks that `card` is the claimed signer and that its key made the
    /// signature.
    pub fn verify(&self, card: &Card) -> Result<(), EnvelopeError> {
        if card.id() != self.signer {
            return Err(EnvelopeError::WrongSender {
                expected: card.id(),
                found: self.signer,
            });
        }
        card.ed25519_public()
            .verify_strict(
                &signed_message(&self.digest),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| EnvelopeError::BadSignature)
    }
}

/// Decrypts one envelope, chunk by chunk.
pub struct Opener {
    cipher: Cipher,
    counter: u64,
    digest: Option<Sha256>,
    finished: bool,
}

impl Opener {
    /// Finds `key`'s stanza, unwraps the file key and authenticates the
    /// header.
    pub fn new(header: &Header, key: &UserKey) -> Result<Self, EnvelopeError> {
        let id = key.recipient_id();
        let stanza = header
            .stanzas
            .iter()
            .find(|s| s.recipient == id)
            .ok_or(EnvelopeError::NotARecipient)?;
        let file_key = unwrap_key(
            key.x25519_secret(),
            &stanza.wrapped,
            &stanza_context(&header.nonce, &id),
        )
        .map_err(|AuthError| EnvelopeError::HeaderTampered)?;
        let expected = header_tag(&file_key, header.unauthenticated_part());
        if !bool::from(expected.ct_eq(&header.tag)) {
            return Err(EnvelopeError::HeaderTampered);
        }
        let digest = header.is_signed().then(|| {
            let mut d = Sha256::new();
            d.update(&header.bytes);
            d
        });
        Ok(Self {
            cipher: payload_cipher(&file_key, &header.tag),
            counter: 0,
            digest,
            finished: false,
        })
    }

    /// Whether a signature block follows the last chunk.
    pub fn is_signed(&self) -> bool {
        self.digest.is_some()
    }

    /// Authenticates and decrypts one sealed chunk into `out`. On failure,
    /// tells a truncation or extension apart from a modification where the
    /// bytes allow it.
    pub fn open_chunk(
        &mut self,
        sealed: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        assert!(!self.finished, "chunk after the last chunk");
        if sealed.len() < TAG_LEN {
            return Err(EnvelopeError::Truncated("the final chunk is incomplete"));
        }
        let flag = if last {
            NONCE_FLAG_LAST
        } else {
            NONCE_FLAG_MORE
        };
        let nonce = chunk_nonce(self.counter, flag);
        if self.cipher.open_into(&nonce, &[], sealed, out).is_err() {
            let other = if last {
                NONCE_FLAG_MORE
            } else {
                NONCE_FLAG_LAST
            };
            let mut scratch = Vec::new();
            let other_ok = self
                .cipher
                .open_into(&chunk_nonce(self.counter, other), &[], sealed, &mut scratch)
                .is_ok();
            return Err(match (other_ok, last) {
                (true, true) => {
                    EnvelopeError::Truncated("chunks are missing after the last one read")
                }
                (true, false) => EnvelopeError::Extended,
                (false, true) => EnvelopeError::FinalChunkTampered(self.counter),
                (false, false) => EnvelopeError::ChunkTampered(self.counter),
            });
        }
        if let Some(d) = &mut self.digest {
            d.update(sealed);
        }
        self.counter += 1;
        self.finished = last;
        Ok(())
    }

    /// After the last chunk: checks the signature block (present exactly
    /// when the header says the envelope is signed) and returns the claim.
    pub fn finish(self, block: Option<&[u8]>) -> Result<Option<SignatureClaim>, EnvelopeError> {
        assert!(self.finished, "finish before the last chunk");
        let Some(digest) = self.digest else {
            return match block {
                None => Ok(None),
                Some(_) => Err(EnvelopeError::Extended),
            };
        };
        let block = block.ok_or(EnvelopeError::Truncated("the signature block is missing"))?;
        if block.len() != SIGNATURE_BLOCK_LEN {
            return Err(EnvelopeError::Truncated(
                "the signature block is incomplete",
            ));
        }
        let plain = self
            .cipher
            .open(&chunk_nonce(self.counter, NONCE_FLAG_SIGNATURE), &[], block)
            .map_err(|AuthError| EnvelopeError::SignatureBlockTampered)?;
        let mut signer = [0u8; 32];
        let mut signature = [0u8; 64];
        signer.copy_from_slice(&plain[..32]);
        signature.copy_from_slice(&plain[32..]);
        Ok(Some(SignatureClaim {
            signer: CardId(signer),
            signature,
            digest: digest.finalize().into(),
        }))
    }
}

/// Bytes an envelope of `plaintext_len` bytes for `recipients` takes.
pub fn sealed_len(plaintext_len: u64, recipients: usize, signed: bool) -> u64 {
    let chunks = plaintext_len.div_ceil(CHUNK_LEN as u64).max(1);
    let header = (FIXED_HEADER_LEN + recipients * STANZA_LEN + HEADER_TAG_LEN) as u64;
    let signature = if signed {
        SIGNATURE_BLOCK_LEN as u64
    } else {
        0
    };
    header + plaintext_len + chunks * TAG_LEN as u64 + signature
}
