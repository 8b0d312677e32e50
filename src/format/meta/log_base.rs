//! The log base (`CFSA`, object `v/<volume>/b/<seq:016x>`): written by the
//! drive owner's collector before it deletes a volume's log entries, it
//! names the new base (the oldest entry kept, `seq`, and the checkpoint
//! root covering it) and lists the SHA-256 of every entry from the
//! previous base's successor (`first`) to `seq`. Bases chain: each names
//! the hash of the previous one, so together they list the hash of every
//! entry ever collected, and a client that last saw an entry now gone
//! checks that its entry is an ancestor of the kept log.
//!
//! Invariants: [`LogBase::open`] accepts only the owner's signature
//! (`verify_strict`) over a canonical encoding: `first <= seq`, exactly
//! `seq - first + 1` hashes, no trailing bytes. Hashes are public (the
//! store could compute them from the entries it held), so nothing is
//! encrypted.

use super::{FORMAT_VERSION, put_header, split_sig};
use crate::format::wire::{FormatError, Reader, Writer};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Magic of a log base ("ancestry").
pub const LOG_BASE_MAGIC: &[u8; 4] = b"CFSA";

/// A log base (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBase {
    pub drive_id: [u8; 16],
    pub volume: [u8; 16],
    /// The seq of the first hash listed (the previous base's `seq + 1`;
    /// 0 for a volume's first base).
    pub first: u64,
    /// The new base: the oldest log entry kept.
    pub seq: u64,
    /// SHA-256 of the checkpoint root `v/<volume>/s/<seq>`.
    pub root: [u8; 32],
    /// SHA-256 of the previous base object (zeros for the first).
    pub prev: [u8; 32],
    /// SHA-256 of entries `first..=seq`, in order.
    pub hashes: Vec<[u8; 32]>,
}

impl LogBase {
    /// The hash of entry `seq` if this base lists it.
    pub fn hash_of(&self, seq: u64) -> Option<&[u8; 32]> {
        let i = seq.checked_sub(self.first)?;
        self.hashes.get(usize::try_from(i).ok()?)
    }

    /// The hash of the base entry (`seq`).
    pub fn base_hash(&self) -> &[u8; 32] {
        self.hashes
            .last()
            .expect("a base lists at least its own entry")
    }

    /// Encodes and signs with the drive owner's key.
    pub fn seal(&self, owner: &SigningKey) -> Vec<u8> {
        assert_eq!(
            self.hashes.len() as u64,
            self.seq - self.first + 1,
            "a base lists exactly the hashes of first..=seq"
        );
        let mut w = Writer::new();
        put_header(&mut w, LOG_BASE_MAGIC);
        w.raw(&self.drive_id)
            .raw(&self.volume)
            .u64(self.first)
            .u64(self.seq)
            .raw(&self.root)
            .raw(&self.prev)
            .u32(self.hashes.len() as u32);
        for h in &self.hashes {
            w.raw(h);
        }
        let sig = owner.sign(&w.0);
        w.raw(&sig.to_bytes());
        w.into_vec()
    }

    /// Parses and verifies the owner's signature.
    pub fn open(bytes: &[u8], owner: &VerifyingKey) -> Result<Self, FormatError> {
        let (body, sig) = split_sig(bytes)?;
        let mut r = Reader::new(body);
        r.versioned_header(LOG_BASE_MAGIC, FORMAT_VERSION)?;
        let drive_id = r.array()?;
        let volume = r.array()?;
        let first = r.u64()?;
        let seq = r.u64()?;
        let root = r.array()?;
        let prev = r.array()?;
        let n = r.count(32)?;
        if seq < first || seq - first + 1 != n as u64 {
            return Err(FormatError::Invalid("hash count differs from first..=seq"));
        }
        let hashes = (0..n).map(|_| r.array()).collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        owner
            .verify_strict(body, &sig)
            .map_err(|_| FormatError::Signature)?;
        Ok(Self {
            drive_id,
            volume,
            first,
            seq,
            root,
            prev,
            hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex::encode as hex;

    fn sample() -> LogBase {
        LogBase {
            drive_id: [1; 16],
            volume: [2; 16],
            first: 3,
            seq: 5,
            root: [4; 32],
            prev: [5; 32],
            hashes: vec![[6; 32], [7; 32], [8; 32]],
        }
    }

    #[test]
    fn log_base_known_answer_and_refusals() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let b = sample();
        let bytes = b.seal(&sk);
        // Prefix, ids, first, seq, root, prev, count, hashes, signature
        // (the hash of the whole object checked with Python's
        // `cryptography` Ed25519 and hashlib).
        let body = [
            &b"CFSA\x02\x00"[..],
            &[1; 16],
            &[2; 16],
            &3u64.to_le_bytes(),
            &5u64.to_le_bytes(),
            &[4; 32],
            &[5; 32],
            &3u32.to_le_bytes(),
            &[6; 32],
            &[7; 32],
            &[8; 32],
        ]
        .concat();
        assert_eq!(&bytes[..body.len()], &body[..]);
        assert_eq!(bytes.len(), body.len() + 64);
        assert_eq!(
            hex(&crate::format::meta::sha256(&bytes)),
            "8f4b27ec338cc99b2708aed1e87d709bec463888ef71567e88e4959cb59f74a1"
        );
        let vk = sk.verifying_key();
        let back = LogBase::open(&bytes, &vk).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.hash_of(2), None);
        assert_eq!(back.hash_of(3), Some(&[6; 32]));
        assert_eq!(back.hash_of(5), Some(&[8; 32]));
        assert_eq!(back.hash_of(6), None);
        assert_eq!(back.base_hash(), &[8; 32]);
        // Another signer (a member, not the owner) is refused.
        let other = SigningKey::from_bytes(&[10; 32]);
        assert_eq!(
            LogBase::open(&b.seal(&other), &vk),
            Err(FormatError::Signature)
        );
        for i in [0, 4, 5, 6, 40, 60, 80, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(LogBase::open(&bad, &vk).is_err(), "flip at {i} accepted");
        }
        let mut v3 = bytes.clone();
        v3[4] = 3;
        assert_eq!(LogBase::open(&v3, &vk), Err(FormatError::Version(3)));
        let mut flagged = bytes.clone();
        flagged[5] = 1;
        assert_eq!(LogBase::open(&flagged, &vk), Err(FormatError::Flags(1)));
        // A count that disagrees with first..=seq, even when signed.
        let mut short = body.clone();
        short[6 + 32 + 8..6 + 32 + 16].copy_from_slice(&6u64.to_le_bytes());
        let signed = [&short[..], &sk.sign(&short).to_bytes()].concat();
        assert!(matches!(
            LogBase::open(&signed, &vk),
            Err(FormatError::Invalid(_))
        ));
        // Trailing bytes.
        let long = [&body[..], &[0]].concat();
        let signed = [&long[..], &sk.sign(&long).to_bytes()].concat();
        assert_eq!(LogBase::open(&signed, &vk), Err(FormatError::Trailing));
    }
}
