//! The password-locked key file (layout in docs/FORMAT.md, "Key file").
//!
//! Invariants:
//! - Everything before the sealed secrets (magic, version, flags, algorithm
//!   ids, Argon2id parameters, salt, nonce, name, public keys) is the AEAD's
//!   associated data, so none of it can change without unlocking failing.
//! - Unlocking checks that the secrets derive the stored public keys.
//! - Parsing refuses unknown versions, flags, algorithms, and KDF
//!   parameters outside sane bounds (a hostile file cannot make us allocate
//!   gigabytes or spin for hours).
//! - Passwords live in [`Password`], which zeroizes and never prints.

use super::crypto::{Cipher, NONCE_LEN, SecretKey, TAG_LEN, random_array};
use super::key::{InvalidName, UserKey, check_name};
use super::wire::{Cursor, Prefix, read_prefix};
use std::fmt;
use x25519_dalek::PublicKey;
use zeroize::{Zeroize, Zeroizing};

pub const MAGIC: &[u8; 4] = b"CFSK";
pub const VERSION: u8 = 1;
/// Argon2id, version 0x13 (RFC 9106).
pub const KDF_ARGON2ID: u8 = 1;
/// AES-256-GCM-SIV (RFC 8452).
pub const AEAD_AES256GCMSIV: u8 = 1;
pub const SALT_LEN: usize = 16;
const SECRETS_LEN: usize = 64;
const SEALED_LEN: usize = SECRETS_LEN + TAG_LEN;

/// A password. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time equality (for "repeat the password" checks).
    pub fn ct_eq(&self, other: &Password) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Argon2id cost parameters, stored in (and authenticated by) the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes.
    pub const DEFAULT: Self = Self {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };

    /// Deliberately weak parameters (64 KiB, 1 pass) for tests only: they
    /// offer no protection against password guessing. Reachable from the
    /// command line only through the hidden `--insecure-test-kdf` flag,
    /// which prints a warning; never a default.
    pub const INSECURE_TEST_ONLY: Self = Self {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    /// Largest memory cost a file may ask for (1 GiB).
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// Largest pass and lane counts a file may ask for.
    pub const MAX_T: u32 = 16;
    pub const MAX_P: u32 = 16;

    fn check(&self) -> Result<(), KeyFileError> {
        let ok = (1..=Self::MAX_T).contains(&self.t)
            && (1..=Self::MAX_P).contains(&self.p)
            && self.m_kib >= 8 * self.p
            && self.m_kib <= Self::MAX_M_KIB;
        if ok {
            Ok(())
        } else {
            Err(KeyFileError::KdfParams(*self))
        }
    }

    fn derive(&self, password: &Password, salt: &[u8; SALT_LEN]) -> SecretKey {
        use argon2::{Algorithm, Argon2, Params, Version};
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .expect("parameters were checked against Argon2's bounds");
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password.bytes(), salt, &mut out)
            .expect("salt and output lengths are valid for Argon2");
        let key = SecretKey::from_bytes(out);
        out.zeroize();
        key
    }
}

/// Why a key file could not be read, written or unlocked.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("not a cardfs key file")]
    NotAKeyFile,
    #[error("key file version {0} is not supported by this cardfs (it reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("key file uses unknown feature flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("key file uses unknown algorithms (kdf {kdf}, aead {aead})")]
    UnknownAlgorithm { kdf: u8, aead: u8 },
    #[error("key file is malformed (truncated or with trailing bytes)")]
    Malformed,
    #[error("key file asks for unsafe or unreasonable Argon2id parameters {0:?}")]
    KdfParams(KdfParams),
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("wrong password (or the key file was modified)")]
    WrongPassword,
    #[error("the key file's secret keys do not match its public keys")]
    PublicKeyMismatch,
    #[error("the password is empty")]
    EmptyPassword,
}

/// A parsed, still locked key file.
#[derive(Debug, Clone)]
pub struct KeyFile {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    name: String,
    x25519_public: [u8; 32],
    ed25519_public: [u8; 32],
    sealed: [u8; SEALED_LEN],
    /// Length of the associated data prefix of `bytes`.
    bytes: Vec<u8>,
}

impl KeyFile {
    /// Locks `key` under `password` with fresh random salt and nonce.
    pub fn lock(
        key: &UserKey,
        password: &Password,
        params: KdfParams,
    ) -> Result<Self, KeyFileError> {
        Self::lock_with(key, password, params, random_array(), random_array())
    }

    /// [`KeyFile::lock`] with caller-chosen salt and nonce. For known-answer
    /// vectors only: reusing a salt or nonce weakens the file.
    #[doc(hidden)]
    pub fn lock_with(
        key: &UserKey,
        password: &Password,
        params: KdfParams,
        salt: [u8; SALT_LEN],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Self, KeyFileError> {
        if password.is_empty() {
            return Err(KeyFileError::EmptyPassword);
        }
        params.check()?;
        check_name(key.name())?;
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&[VERSION, 0, KDF_ARGON2ID, AEAD_AES256GCMSIV]);
        for v in [params.m_kib, params.t, params.p] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&salt);
        bytes.extend_from_slice(&nonce);
        bytes.push(key.name().len() as u8);
        bytes.extend_from_slice(key.name().as_bytes());
        bytes.extend_from_slice(key.x25519_public().as_bytes());
        bytes.extend_from_slice(key.ed25519_public().as_bytes());
        let mut secrets = Zeroizing::new(Vec::with_capacity(SEALED_LEN));
        secrets.extend_from_slice(key.x25519_secret().as_bytes());
        secrets.extend_from_slice(key.signing_key().as_bytes());
        let cipher = Cipher::new(&params.derive(password, &salt));
        cipher.seal_in_place(&nonce, &bytes, &mut secrets);
        bytes.extend_from_slice(&secrets);
        Self::parse(&bytes)
    }

    /// Parses a key file without unlocking it.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let short = |_| KeyFileError::Malformed;
        let mut c = Cursor::new(bytes);
        read_prefix(&mut c, MAGIC, VERSION, 0).map_err(|e| match e {
            Prefix::Magic => KeyFileError::NotAKeyFile,
            Prefix::Short => KeyFileError::Malformed,
            Prefix::Version(v) => KeyFileError::UnsupportedVersion(v),
            Prefix::Flags(f) => KeyFileError::UnknownFlags(f),
        })?;
        let (kdf, aead) = (c.u8().map_err(short)?, c.u8().map_err(short)?);
        if kdf != KDF_ARGON2ID || aead != AEAD_AES256GCMSIV {
            return Err(KeyFileError::UnknownAlgorithm { kdf, aead });
        }
        let params = KdfParams {
            m_kib: c.u32().map_err(short)?,
            t: c.u32().map_err(short)?,
            p: c.u32().map_err(short)?,
        };
        params.check()?;
        let salt = c.array().map_err(short)?;
        let nonce = c.array().map_err(short)?;
        let name_len = c.u8().map_err(short)? as usize;
        let name = c.take(name_len).map_err(short)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| KeyFileError::Malformed)?;
        check_name(&name)?;
        let x25519_public = c.array().map_err(short)?;
        let ed25519_public = c.array().map_err(short)?;
        let sealed = c.array().map_err(short)?;
        c.finish().map_err(short)?;
        Ok(Self {
            params,
            salt,
            nonce,
            name,
            x25519_public,
            ed25519_public,
            sealed,
            bytes: bytes.to_vec(),
        })
    }

    /// Checks the password and returns the key, after checking that its
    /// secrets derive the stored public keys.
    pub fn unlock(&self, password: &Password) -> Result<UserKey, KeyFileError> {
        let cipher = Cipher::new(&self.params.derive(password, &self.salt));
        let aad = &self.bytes[..self.bytes.len() - SEALED_LEN];
        let mut secrets = Zeroizing::new(self.sealed.to_vec());
        cipher
            .open_in_place(&self.nonce, aad, &mut secrets)
            .map_err(|_| KeyFileError::WrongPassword)?;
        let mut x = [0u8; 32];
        let mut ed = [0u8; 32];
        x.copy_from_slice(&secrets[..32]);
        ed.copy_from_slice(&secrets[32..]);
        let key = UserKey::from_secret_bytes(&self.name, &x, &ed);
        x.zeroize();
        ed.zeroize();
        let key = key?;
        if key.x25519_public().as_bytes() != &self.x25519_public
            || key.ed25519_public().as_bytes() != &self.ed25519_public
        {
            return Err(KeyFileError::PublicKeyMismatch);
        }
        Ok(key)
    }

    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn params(&self) -> KdfParams {
        self.params
    }

    pub fn x25519_public(&self) -> PublicKey {
        PublicKey::from(self.x25519_public)
    }

    pub fn ed25519_public(&self) -> &[u8; 32] {
        &self.ed25519_public
    }

    /// The recipient id of this key (matches envelope stanzas while locked).
    pub fn recipient_id(&self) -> [u8; 32] {
        super::key::recipient_id(&self.x25519_public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UserKey {
        UserKey::from_secret_bytes("alice", &[3; 32], &[4; 32]).unwrap()
    }

    fn locked() -> KeyFile {
        KeyFile::lock(&key(), &Password::new("pw"), KdfParams::INSECURE_TEST_ONLY).unwrap()
    }

    #[test]
    fn lock_unlock_round_trip() {
        let file = locked();
        let parsed = KeyFile::parse(file.to_bytes()).unwrap();
        assert_eq!(parsed.name(), "alice");
        assert_eq!(parsed.params(), KdfParams::INSECURE_TEST_ONLY);
        let key2 = parsed.unlock(&Password::new("pw")).unwrap();
        assert_eq!(key2.signing_key().to_bytes(), [4; 32]);
        assert_eq!(key2.x25519_public(), key().x25519_public());
    }

    #[test]
    fn wrong_password_and_empty_password() {
        assert!(matches!(
            locked().unlock(&Password::new("nope")),
            Err(KeyFileError::WrongPassword)
        ));
        assert!(matches!(
            KeyFile::lock(&key(), &Password::new(""), KdfParams::INSECURE_TEST_ONLY),
            Err(KeyFileError::EmptyPassword)
        ));
    }

    #[test]
    fn every_byte_is_authenticated() {
        let bytes = locked().to_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            // Either parsing refuses it or unlocking does; never a key.
            if let Ok(file) = KeyFile::parse(&bad) {
                assert!(file.unlock(&Password::new("pw")).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn refuses_versions_flags_algorithms_and_params() {
        let bytes = locked().to_bytes().to_vec();
        let with = |i: usize, v: u8| {
            let mut b = bytes.clone();
            b[i] = v;
            KeyFile::parse(&b).unwrap_err()
        };
        assert!(matches!(with(0, b'X'), KeyFileError::NotAKeyFile));
        assert!(matches!(with(4, 2), KeyFileError::UnsupportedVersion(2)));
        assert!(matches!(with(5, 1), KeyFileError::UnknownFlags(1)));
        assert!(matches!(with(6, 2), KeyFileError::UnknownAlgorithm { .. }));
        assert!(matches!(with(7, 2), KeyFileError::UnknownAlgorithm { .. }));
        assert!(matches!(with(11, 0x7f), KeyFileError::KdfParams(_)));
        assert!(matches!(with(12, 0), KeyFileError::KdfParams(_)));
        assert!(matches!(
            KeyFile::parse(&bytes[..bytes.len() - 1]),
            Err(KeyFileError::Malformed)
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            KeyFile::parse(&longer),
            Err(KeyFileError::Malformed)
        ));
    }
}
