//! Cryptographic primitives shared by every format: random bytes, secret
//! keys, the AEAD (AES-256-GCM-SIV), HKDF-SHA-256, and wrapping a symmetric
//! key to an X25519 public key.
//!
//! Invariants:
//! - [`SecretKey`] zeroizes on drop and its `Debug` never shows key bytes.
//! - A key wrapped with [`wrap_key`] can only be unwrapped by the holder of
//!   the recipient's X25519 secret, and only under the same `context`; the
//!   ephemeral and recipient public keys are bound into the derivation.
//! - Contributory-only key agreement: a low-order peer key is refused.

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use hkdf::Hkdf;
use rand::TryRng;
use sha2::Sha256;
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an AEAD tag in bytes.
pub const TAG_LEN: usize = 16;
/// Length of an AEAD nonce in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of a wrapped key: ephemeral public key, encrypted key, tag.
pub const WRAPPED_KEY_LEN: usize = 32 + 32 + TAG_LEN;

/// Failure of a cryptographic check. Deliberately carries no detail: the
/// caller knows what it was checking and names that in its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// Fills `buf` from the operating system's random number generator.
///
/// # Panics
/// If the operating system cannot supply randomness; continuing without it
/// would produce predictable keys.
pub fn fill_random(buf: &mut [u8]) {
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .expect("the operating system's random number generator failed");
}

/// Returns `N` random bytes from the operating system.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

/// A 256-bit secret key. Zeroized on drop; `Debug` prints no key bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(random_array())
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes. Callers must not copy them into unprotected storage.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An initialised AES-256-GCM-SIV cipher, so that the key schedule runs once
/// per key rather than once per message.
#[derive(Clone)]
pub struct Cipher(Aes256GcmSiv);

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    pub fn new(key: &SecretKey) -> Self {
        Self(Aes256GcmSiv::new(key.expose().into()))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.as_mut_slice().into())
            .expect("plaintext within AES-GCM-SIV limits");
        buf.extend_from_slice(tag.as_slice());
    }

    /// Verifies and decrypts `buf` (ciphertext followed by tag) in place,
    /// leaving only the plaintext. On failure `buf` holds no plaintext.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        if buf.len() < TAG_LEN {
            return Err(AuthError);
        }
        let split = buf.len() - TAG_LEN;
        let tag = Tag::try_from(&buf[split..]).map_err(|_| AuthError)?;
        buf.truncate(split);
        let result = self.0.decrypt_inout_detached(
            &Nonce::from(*nonce),
            aad,
            buf.as_mut_slice().into(),
            &tag,
        );
        if result.is_err() {
            buf.zeroize();
            buf.clear();
            return Err(AuthError);
        }
        Ok(())
    }

    /// Encrypts `buf` in place and returns its tag (for callers that lay
    /// many sealed chunks out in one buffer without a copy per chunk).
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
            .expect("plaintext within AES-GCM-SIV limits");
        tag.into()
    }

    /// Verifies `buf` (ciphertext) against `tag` and decrypts it in place.
    /// On failure `buf` is zeroed: it holds no plaintext.
    pub fn open_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AuthError> {
        let tag = Tag::try_from(tag).map_err(|_| AuthError)?;
        if self
            .0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, (&mut *buf).into(), &tag)
            .is_err()
        {
            buf.zeroize();
            return Err(AuthError);
        }
        Ok(())
    }

    /// Encrypts `plaintext` into `out` (ciphertext then tag), leaving the
    /// input untouched. `out` is resized, not cleared, so reusing one buffer
    /// for equal-sized chunks costs no extra memory writes.
    pub fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) {
        use aes_gcm_siv::aead::inout::InOutBuf;
        let n = plaintext.len();
        out.resize(n + TAG_LEN, 0);
        let buf = InOutBuf::new(plaintext, &mut out[..n]).expect("equal lengths");
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf)
            .expect("plaintext within AES-GCM-SIV limits");
        out[n..].copy_from_slice(tag.as_slice());
    }

    /// Verifies and decrypts `sealed` (ciphertext then tag) into `out`,
    /// leaving `sealed` untouched so a caller can retry it (for example to
    /// tell a truncation from a modification). On failure `out` is empty.
    pub fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        use aes_gcm_siv::aead::inout::InOutBuf;
        if sealed.len() < TAG_LEN {
            out.clear();
            return Err(AuthError);
        }
        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let tag = Tag::try_from(tag).map_err(|_| AuthError)?;
        out.resize(ct.len(), 0);
        let buf = InOutBuf::new(ct, out.as_mut_slice()).expect("equal lengths");
        if self
            .0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf, &tag)
            .is_err()
        {
            out.zeroize();
            out.clear();
            return Err(AuthError);
        }
        Ok(())
    }

    /// Allocating form of [`Cipher::seal_in_place`].
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, &mut buf);
        buf
    }

    /// Allocating form of [`Cipher::open_in_place`].
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, AuthError> {
        let mut buf = sealed.to_vec();
        self.open_in_place(nonce, aad, &mut buf)?;
        Ok(buf)
    }
}

/// HKDF-SHA-256: extract with `salt`, expand to one 32-byte key with `info`.
pub fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> SecretKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = [0u8; 32];
    let info: Vec<u8> = info.concat();
    hk.expand(&info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    let key = SecretKey::from_bytes(okm);
    okm.zeroize();
    key
}

const WRAP_INFO: &[u8] = b"cardfs/v1/wrap-key";

/// Encrypts `key` to `recipient` with a fresh ephemeral X25519 key:
/// `ephemeral_public (32) || AEAD(k, nonce=0, aad=context, key) (48)` where
/// `k = HKDF(salt = ephemeral_public || recipient, ikm = DH, info = WRAP_INFO || context)`.
/// The derived key is used once, so the all-zero nonce is safe.
///
/// Fails only for a low-order recipient key (no shared secret), which is
/// never a real card's key.
pub fn wrap_key(
    recipient: &PublicKey,
    key: &SecretKey,
    context: &[u8],
) -> Result<[u8; WRAPPED_KEY_LEN], AuthError> {
    wrap_key_with(
        recipient,
        key,
        context,
        &StaticSecret::from(random_array::<32>()),
    )
}

/// [`wrap_key`] with a caller-chosen ephemeral secret. For known-answer
/// vectors only: an ephemeral secret must never be used twice.
#[doc(hidden)]
pub fn wrap_key_with(
    recipient: &PublicKey,
    key: &SecretKey,
    context: &[u8],
    ephemeral: &StaticSecret,
) -> Result<[u8; WRAPPED_KEY_LEN], AuthError> {
    let ephemeral_public = PublicKey::from(ephemeral);
    let shared = ephemeral.diffie_hellman(recipient);
    if !shared.was_contributory() {
        return Err(AuthError);
    }
    let salt = [ephemeral_public.as_bytes().as_slice(), recipient.as_bytes()].concat();
    let k = hkdf(&salt, shared.as_bytes(), &[WRAP_INFO, context]);
    let sealed = Cipher::new(&k).seal(&[0; NONCE_LEN], context, key.expose());
    Ok(assemble_wrapped(ephemeral_public.as_bytes(), &sealed))
}

fn assemble_wrapped(ephemeral_public: &[u8; 32], sealed: &[u8]) -> [u8; WRAPPED_KEY_LEN] {
    let mut out = [0u8; WRAPPED_KEY_LEN];
    out[..32].copy_from_slice(ephemeral_public);
    out[32..].copy_from_slice(sealed);
    out
}

/// Reverses [`wrap_key`] with the recipient's secret key.
pub fn unwrap_key(
    secret: &StaticSecret,
    wrapped: &[u8; WRAPPED_KEY_LEN],
    context: &[u8],
) -> Result<SecretKey, AuthError> {
    let mut ephemeral_public = [0u8; 32];
    ephemeral_public.copy_from_slice(&wrapped[..32]);
    let ephemeral_public = PublicKey::from(ephemeral_public);
    let shared = secret.diffie_hellman(&ephemeral_public);
    if !shared.was_contributory() {
        return Err(AuthError);
    }
    let recipient = PublicKey::from(secret);
    let salt = [ephemeral_public.as_bytes().as_slice(), recipient.as_bytes()].concat();
    let k = hkdf(&salt, shared.as_bytes(), &[WRAP_INFO, context]);
    let mut plain = Cipher::new(&k).open(&[0; NONCE_LEN], context, &wrapped[32..])?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&plain);
    plain.zeroize();
    let key = SecretKey::from_bytes(bytes);
    bytes.zeroize();
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let cipher = Cipher::new(&SecretKey::from_bytes([7; 32]));
        let sealed = cipher.seal(&[1; 12], b"aad", b"hello");
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(cipher.open(&[1; 12], b"aad", &sealed).unwrap(), b"hello");
        assert_eq!(cipher.open(&[1; 12], b"aaX", &sealed), Err(AuthError));
        assert_eq!(cipher.open(&[2; 12], b"aad", &sealed), Err(AuthError));
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(cipher.open(&[1; 12], b"aad", &flipped), Err(AuthError));
        assert_eq!(cipher.open(&[1; 12], b"aad", &sealed[..10]), Err(AuthError));
    }

    #[test]
    fn out_of_place_matches_in_place() {
        let cipher = Cipher::new(&SecretKey::from_bytes([7; 32]));
        let mut out = Vec::new();
        cipher.seal_into(&[1; 12], b"aad", b"hello world", &mut out);
        assert_eq!(out, cipher.seal(&[1; 12], b"aad", b"hello world"));
        let mut plain = vec![9; 3];
        cipher
            .open_into(&[1; 12], b"aad", &out, &mut plain)
            .unwrap();
        assert_eq!(plain, b"hello world");
        let mut bad = out.clone();
        bad[0] ^= 1;
        assert_eq!(
            cipher.open_into(&[1; 12], b"aad", &bad, &mut plain),
            Err(AuthError)
        );
        assert!(plain.is_empty());
        assert_eq!(
            cipher.open_into(&[1; 12], b"aad", &out[..4], &mut plain),
            Err(AuthError)
        );
    }

    #[test]
    fn aead_known_answer() {
        // RFC 8452 appendix C.2, AEAD_AES_256_GCM_SIV, first vector with
        // plaintext 0100000000000000 and empty AAD.
        let mut key = [0u8; 32];
        key[0] = 1;
        let mut nonce = [0u8; 12];
        nonce[0] = 3;
        let cipher = Cipher::new(&SecretKey::from_bytes(key));
        let sealed = cipher.seal(&nonce, b"", &[1, 0, 0, 0, 0, 0, 0, 0]);
        let hex = crate::format::hex::encode(&sealed);
        assert_eq!(hex, "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28");
    }

    #[test]
    fn wrap_unwrap_binds_recipient_and_context() {
        let alice = StaticSecret::from([9; 32]);
        let bob = StaticSecret::from([10; 32]);
        let key = SecretKey::random();
        let wrapped = wrap_key(&PublicKey::from(&alice), &key, b"ctx").unwrap();
        assert_eq!(unwrap_key(&alice, &wrapped, b"ctx").unwrap(), key);
        assert!(unwrap_key(&bob, &wrapped, b"ctx").is_err());
        assert!(unwrap_key(&alice, &wrapped, b"other").is_err());
        let mut bad = wrapped;
        bad[40] ^= 1;
        assert!(unwrap_key(&alice, &bad, b"ctx").is_err());
        assert!(wrap_key(&PublicKey::from([0u8; 32]), &key, b"ctx").is_err());
    }

    #[test]
    fn secret_key_debug_hides_bytes() {
        assert_eq!(
            format!("{:?}", SecretKey::from_bytes([0xAB; 32])),
            "SecretKey(..)"
        );
    }
}
