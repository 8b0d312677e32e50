//! The drive header (object `drive`): drive id, root volume and the
//! owner's keys and card, signed by the owner; and [`MemberRecord`], the
//! public keys of a member as headers and keyrings store them.
//!
//! Invariant: [`DriveHeader::open`] checks only the self-signature; whether
//! the owner it names is trusted is decided by `identity::trust`.

use super::{FORMAT_VERSION, HEADER_MAGIC, put_header, split_sig};
use crate::format::wire::{FormatError, Reader, Writer};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Encoded size of a [`MemberRecord`].
pub(super) const MEMBER_RECORD_LEN: usize = 32 + 32 + 32 + 1;

/// A member's public keys as stored in headers and keyrings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub card_id: [u8; 32],
    pub x25519: [u8; 32],
    pub ed25519: [u8; 32],
    /// 1 reader, 2 writer, 3 owner.
    pub role: u8,
}

impl MemberRecord {
    pub(super) fn write(&self, w: &mut Writer) {
        w.raw(&self.card_id)
            .raw(&self.x25519)
            .raw(&self.ed25519)
            .u8(self.role);
    }
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let m = Self {
            card_id: r.array()?,
            x25519: r.array()?,
            ed25519: r.array()?,
            role: r.u8()?,
        };
        if !(1..=3).contains(&m.role) {
            return Err(FormatError::Invalid("role"));
        }
        Ok(m)
    }
    pub fn verifying_key(&self) -> Result<VerifyingKey, FormatError> {
        VerifyingKey::from_bytes(&self.ed25519).map_err(|_| FormatError::Invalid("ed25519 key"))
    }
}

/// The drive header (object `drive`), signed by the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveHeader {
    pub drive_id: [u8; 16],
    pub root_volume: [u8; 16],
    pub owner: MemberRecord,
    /// The owner's card as published (opaque to the engine).
    pub owner_card: Vec<u8>,
}

impl DriveHeader {
    pub fn seal(&self, owner: &SigningKey) -> Vec<u8> {
        let mut w = Writer::new();
        put_header(&mut w, HEADER_MAGIC);
        w.raw(&self.drive_id).raw(&self.root_volume);
        self.owner.write(&mut w);
        w.bytes(&self.owner_card);
        let sig = owner.sign(&w.0);
        w.raw(&sig.to_bytes());
        w.into_vec()
    }

    /// Parses and verifies the self-signature (the caller still decides
    /// whether it trusts the owner key it names).
    pub fn open(bytes: &[u8]) -> Result<Self, FormatError> {
        let (body, sig) = split_sig(bytes)?;
        let mut r = Reader::new(body);
        r.versioned_header(HEADER_MAGIC, FORMAT_VERSION)?;
        let h = Self {
            drive_id: r.array()?,
            root_volume: r.array()?,
            owner: MemberRecord::read(&mut r)?,
            owner_card: r.bytes()?.to_vec(),
        };
        r.finish()?;
        h.owner
            .verifying_key()?
            .verify_strict(body, &sig)
            .map_err(|_| FormatError::Signature)?;
        Ok(h)
    }
}

#[cfg(test)]
impl MemberRecord {
    /// A record for `sk` and `x` with card id `[role; 32]` (tests).
    pub(super) fn sample(sk: &SigningKey, x: &x25519_dalek::StaticSecret, role: u8) -> Self {
        Self {
            card_id: [role; 32],
            x25519: *x25519_dalek::PublicKey::from(x).as_bytes(),
            ed25519: *sk.verifying_key().as_bytes(),
            role,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x25519_dalek::StaticSecret;

    #[test]
    fn header_signed_and_refuses_tamper() {
        let sk = SigningKey::from_bytes(&[1; 32]);
        let x = StaticSecret::from([2; 32]);
        let h = DriveHeader {
            drive_id: [3; 16],
            root_volume: [4; 16],
            owner: MemberRecord::sample(&sk, &x, 3),
            owner_card: b"card".to_vec(),
        };
        let bytes = h.seal(&sk);
        assert_eq!(DriveHeader::open(&bytes).unwrap(), h);
        for i in [0, 5, 10, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(DriveHeader::open(&bad).is_err(), "flip at {i} accepted");
        }
        // The prefix of every format: magic, version u8 (2), flags u8 (0).
        assert_eq!(&bytes[..6], b"CFSD\x02\x00");
        let hex = crate::format::hex::encode(&crate::format::meta::sha256(&bytes));
        assert_eq!(
            hex,
            "f8690c45813518cba1f6575148083ac42aa6b810fe21f5eec02fee70439931f6"
        );
        let mut v3 = bytes.clone();
        v3[4] = 3;
        assert_eq!(DriveHeader::open(&v3), Err(FormatError::Version(3)));
        let mut flagged = bytes.clone();
        flagged[5] = 1;
        assert_eq!(DriveHeader::open(&flagged), Err(FormatError::Flags(1)));
        // A version-1 header (`"CFSD" u16 1 u16 0`, then the same fields)
        // reads as version 1: refused as such, not as garbage.
        let v1 = [&b"CFSD\x01\x00\x00\x00"[..], &bytes[6..]].concat();
        assert_eq!(DriveHeader::open(&v1), Err(FormatError::Version(1)));
    }
}
