//! The signed box shared by log entries (`ENTRY_MAGIC`) and snapshots
//! (`SNAPSHOT_MAGIC`): a public head naming volume, sequence, keyring
//! generation, writer and hash chain; the payload, padded to a size class,
//! encrypted under a subkey of the volume key with the head as associated
//! data; an Ed25519 signature by the writer over everything before it.
//!
//! Invariant: [`open_signed`] verifies the signature before decrypting;
//! [`peek_signed`] reads the head only so the caller can look the writer
//! up, and its result is not to be trusted on its own.

use super::{FORMAT_VERSION, PREFIX_LEN, pad, put_header, split_sig, subkey, unpad};
use crate::format::crypto::{NONCE_LEN, SecretKey, random_array};
use crate::format::wire::{FormatError, Reader, Writer};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// The public part of a signed log entry or snapshot, readable before
/// decryption so the signer can be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub volume: [u8; 16],
    /// Log entry: its sequence number. Snapshot: the last seq it covers.
    pub seq: u64,
    pub generation: u32,
    pub writer: [u8; 32],
    /// Log entry: hash of entry `seq - 1` (zeros for seq 0).
    /// Snapshot: hash of entry `seq`.
    pub chain: [u8; 32],
}

/// Seals `payload` as a log entry (`ENTRY_MAGIC`) or snapshot
/// (`SNAPSHOT_MAGIC`): public head, encrypted payload (AAD = everything
/// before the ciphertext), Ed25519 signature over everything before it.
pub fn seal_signed(
    magic: &[u8; 4],
    head: &SignedHead,
    volume_key: &SecretKey,
    signer: &SigningKey,
    payload: &[u8],
) -> Vec<u8> {
    let mut w = Writer::new();
    put_header(&mut w, magic);
    w.raw(&head.volume)
        .u64(head.seq)
        .u32(head.generation)
        .raw(&head.writer)
        .raw(&head.chain);
    let nonce = random_array::<NONCE_LEN>();
    w.raw(&nonce);
    let mut ct = pad(payload).to_vec();
    subkey(volume_key, &head.volume, magic).seal_in_place(&nonce, &w.0, &mut ct);
    w.bytes(&ct);
    let sig = signer.sign(&w.0);
    w.raw(&sig.to_bytes());
    w.into_vec()
}

/// Parses the public head of a signed object without verifying it.
pub fn peek_signed(magic: &[u8; 4], bytes: &[u8]) -> Result<SignedHead, FormatError> {
    let (body, _) = split_sig(bytes)?;
    let mut r = Reader::new(body);
    r.versioned_header(magic, FORMAT_VERSION)?;
    Ok(SignedHead {
        volume: r.array()?,
        seq: r.u64()?,
        generation: r.u32()?,
        writer: r.array()?,
        chain: r.array()?,
    })
}

/// Verifies the signature with `writer` and decrypts the payload.
pub fn open_signed(
    magic: &[u8; 4],
    bytes: &[u8],
    writer: &VerifyingKey,
    volume_key: &SecretKey,
) -> Result<(SignedHead, Vec<u8>), FormatError> {
    let head = peek_signed(magic, bytes)?;
    let (body, sig) = split_sig(bytes)?;
    writer
        .verify_strict(body, &sig)
        .map_err(|_| FormatError::Signature)?;
    let mut r = Reader::new(body);
    r.take(PREFIX_LEN + 16 + 8 + 4 + 32 + 32)?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let aad_end = r.position();
    let ct = r.bytes()?;
    r.finish()?;
    let plain = subkey(volume_key, &head.volume, magic)
        .open(&nonce, &body[..aad_end], ct)
        .map_err(|_| FormatError::Decrypt)?;
    Ok((head, unpad(&plain)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::super::{ENTRY_MAGIC, SNAPSHOT_MAGIC, pad, unpad};
    use super::*;

    /// A writer key, a volume key and a head for the tests.
    fn sample() -> (SigningKey, SecretKey, SignedHead) {
        let head = SignedHead {
            volume: [4; 16],
            seq: 3,
            generation: 0,
            writer: [1; 32],
            chain: [8; 32],
        };
        (SigningKey::from_bytes(&[1; 32]), SecretKey::random(), head)
    }

    #[test]
    fn signed_entry_round_trip_and_tamper() {
        let (sk, key, head) = sample();
        let bytes = seal_signed(ENTRY_MAGIC, &head, &key, &sk, b"payload");
        let (h, p) = open_signed(ENTRY_MAGIC, &bytes, &sk.verifying_key(), &key).unwrap();
        assert_eq!((h, p.as_slice()), (head.clone(), b"payload".as_slice()));
        assert!(open_signed(SNAPSHOT_MAGIC, &bytes, &sk.verifying_key(), &key).is_err());
        assert!(
            open_signed(
                ENTRY_MAGIC,
                &bytes,
                &sk.verifying_key(),
                &SecretKey::random()
            )
            .is_err()
        );
        for i in [0, 9, 20, 60, bytes.len() - 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                open_signed(ENTRY_MAGIC, &bad, &sk.verifying_key(), &key).is_err(),
                "flip at {i}"
            );
        }
        // A payload sealed as a snapshot does not open as a log entry.
        let snap = seal_signed(SNAPSHOT_MAGIC, &head, &key, &sk, b"payload");
        assert!(open_signed(ENTRY_MAGIC, &snap, &sk.verifying_key(), &key).is_err());
    }

    #[test]
    fn payloads_are_padded_to_size_classes() {
        let (sk, key, head) = sample();
        let size = |n: usize| seal_signed(ENTRY_MAGIC, &head, &key, &sk, &vec![b'x'; n]).len();
        // A 1-byte and a 100-byte name's entry: the same size.
        assert_eq!(size(200), size(299));
        assert_eq!(size(0), size(1020));
        assert!(size(1021) > size(1020));
        assert_eq!(size(3000), size(4000));
        // Large payloads (snapshots): Padmé classes, within 6.25%.
        let big = size(1_000_000);
        assert!((1_000_000..=1_062_500).contains(&big), "{big}");
        let bytes = seal_signed(ENTRY_MAGIC, &head, &key, &sk, b"payload");
        let (_, p) = open_signed(ENTRY_MAGIC, &bytes, &sk.verifying_key(), &key).unwrap();
        assert_eq!(p, b"payload");
    }

    #[test]
    fn padding_must_be_canonical() {
        assert_eq!(unpad(&pad(b"abc")), Ok(&b"abc"[..]));
        let mut p = pad(b"abc").to_vec();
        p[100] = 1;
        assert_eq!(unpad(&p), Err(FormatError::Invalid("padding")));
        let mut long = pad(b"abc").to_vec();
        long.extend_from_slice(&[0; 1024]);
        assert_eq!(unpad(&long), Err(FormatError::Invalid("padding")));
        let mut w = Writer::new();
        w.bytes(b"abc");
        assert_eq!(unpad(&w.0), Err(FormatError::Invalid("padding")));
        let mut huge = pad(b"abc").to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpad(&huge), Err(FormatError::Truncated));
    }
}
