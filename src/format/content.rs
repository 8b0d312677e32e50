//! Content blocks: how a file's bytes are sealed into immutable objects.
//!
//! A file is cut into blocks of [`BLOCK_SIZE`] plaintext bytes; block `i`
//! covers bytes `[i*BLOCK_SIZE, (i+1)*BLOCK_SIZE)`. Each stored version of a
//! block is one object named by a random 16-byte block id and sealed under
//! its own random 32-byte key, both kept only in the block reference (inside
//! encrypted metadata). The object is the concatenation of sealed chunks of
//! [`CHUNK_SIZE`] plaintext bytes (the last one shorter), each followed by
//! its 16-byte tag, so chunk `k` starts at `k * (CHUNK_SIZE + 16)` and a
//! reader can fetch any chunk range.
//!
//! Padding: the sealed plaintext is the block's bytes followed by zeros up
//! to [`padded_len`] (Padmé, at least [`MIN_PADDED`] bytes), so an object's
//! size shows only a size class of its block (at most 6.25% larger for
//! blocks of 256 bytes or more). The block ref keeps the true length; the
//! padding is authenticated like the rest and must be zeros.
//!
//! Packs: several small block versions (each sealed exactly as above,
//! under its own key) may be concatenated into one pack object; the block
//! ref then names the pack's id and the byte offset where the block
//! version's first chunk starts ([`Place`]). A pack is at most
//! [`PACK_LIMIT`] bytes and has no header of its own.
//!
//! Keys and binding (format version 2): the chunk key is the block
//! version's random key itself, used for this one block version only, so
//! the nonce can be the chunk index. The AAD is
//! `"CFSB" || 2u8 || flags || object_id || [offset u32] || chunk_index ||
//! final_flag` (flags bit 0: packed, and then the offset is present): what
//! the block ref names, never the file, so a block ref can be copied to
//! another file (clone copies) without re-encryption, while a chunk still
//! cannot move to another object, another place in a pack, or another
//! chunk position, and dropping the tail is detected (the last chunk
//! carries the final flag and the plaintext length of the block is in the
//! signed metadata).
//!
//! Invariants: pure, no I/O; a failed open returns no plaintext.

use super::crypto::{Cipher, NONCE_LEN, SecretKey, TAG_LEN};
use super::wire::FormatError;
use std::ops::Range;

/// Plaintext bytes per chunk (the AEAD unit and the smallest range read).
pub const CHUNK_SIZE: usize = 4 * 1024;
/// Plaintext bytes per block (the unit of upload and rewrite).
pub const BLOCK_SIZE: usize = 1024 * 1024;
/// Stored bytes per full chunk.
pub const SEALED_CHUNK: usize = CHUNK_SIZE + TAG_LEN;
/// The magic bound into every chunk's AAD.
pub const BLOCK_AAD_MAGIC: &[u8; 4] = b"CFSB";
/// The content format version bound into every chunk's AAD.
pub const BLOCK_VERSION: u8 = super::DRIVE_FORMAT;

/// Blocks shorter than this are padded to it.
pub const MIN_PADDED: usize = 256;
/// Largest pack object: a packed block version ends at or before this
/// byte of its pack (block refs past it are refused).
pub const PACK_LIMIT: u64 = 16 << 20;
/// AAD flag: the block version lies at an offset inside a pack.
const AAD_PACKED: u8 = 1;

/// Where a block version's sealed bytes lie: the object that holds them
/// and, for a block version packed with others, the byte offset of its
/// first chunk in that pack. The chunk AAD binds both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    pub id: [u8; 16],
    pub packed: Option<u32>,
}

impl Place {
    /// A block version that is an object of its own.
    pub fn whole(id: [u8; 16]) -> Self {
        Self { id, packed: None }
    }

    /// Byte offset of the block version's first chunk in its object.
    pub fn start(&self) -> u64 {
        self.packed.map_or(0, u64::from)
    }

    /// The byte range of the object holding `range` of the block
    /// version's sealed bytes (as [`chunk_span`] gives it).
    pub fn object_range(&self, range: Range<u64>) -> Range<u64> {
        self.start() + range.start..self.start() + range.end
    }
}

/// Padmé (Nikitin et al., "Reducing metadata leakage from encrypted files
/// and communication with PURBs", 2019): rounds `l` up so that only the
/// top `floor(log2(floor(log2 l))) + 1` bits below the leading one may be
/// set, a size class with overhead at most `2^-(that)` (6.25% from 256 bytes
/// up, 12.5% from 16). Idempotent.
pub fn padme(l: usize) -> usize {
    if l < 2 {
        return l;
    }
    let e = usize::BITS - 1 - l.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let mask = (1usize << (e - s)) - 1;
    (l + mask) & !mask
}

/// The padded plaintext length of a block of `len` bytes (<= BLOCK_SIZE).
pub fn padded_len(len: usize) -> usize {
    padme(len.max(MIN_PADDED)).min(BLOCK_SIZE)
}

/// The cipher of one block version (its random key from the block ref).
pub fn block_cipher(key: &[u8; 32]) -> Cipher {
    Cipher::new(&SecretKey::from_bytes(*key))
}

fn nonce(chunk: u32) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&chunk.to_le_bytes());
    n
}

/// The chunk AAD (27 bytes, 31 for a packed block version) and its length.
fn aad(place: &Place, chunk: u32, last: bool) -> ([u8; 31], usize) {
    let mut a = [0u8; 31];
    a[..4].copy_from_slice(BLOCK_AAD_MAGIC);
    a[4] = BLOCK_VERSION;
    a[6..22].copy_from_slice(&place.id);
    let mut at = 22;
    if let Some(offset) = place.packed {
        a[5] = AAD_PACKED;
        a[22..26].copy_from_slice(&offset.to_le_bytes());
        at = 26;
    }
    a[at..at + 4].copy_from_slice(&chunk.to_le_bytes());
    a[at + 4] = last as u8;
    (a, at + 5)
}

/// Number of chunks of the object of a block of `len` plaintext bytes
/// (of its padded length; at least one).
pub fn chunk_count(len: usize) -> u32 {
    padded_len(len).div_ceil(CHUNK_SIZE).max(1) as u32
}

/// Stored size of a block of `len` plaintext bytes (padding included).
pub fn sealed_len(len: usize) -> usize {
    padded_len(len) + chunk_count(len) as usize * TAG_LEN
}

/// Seals a block's plaintext (1..=BLOCK_SIZE bytes) into object bytes.
pub fn seal_block(cipher: &Cipher, place: &Place, plain: &[u8]) -> Vec<u8> {
    assert!(plain.len() <= BLOCK_SIZE, "block larger than BLOCK_SIZE");
    let n = chunk_count(plain.len());
    let padded = padded_len(plain.len());
    let mut out = Vec::with_capacity(sealed_len(plain.len()));
    for k in 0..n {
        let start = k as usize * CHUNK_SIZE;
        let end = (start + CHUNK_SIZE).min(padded);
        // The block's bytes in this chunk, then zeros up to its end, sealed
        // where they lie in the object, then the tag.
        let at = out.len();
        out.extend_from_slice(&plain[start.min(plain.len())..end.min(plain.len())]);
        out.resize(at + (end - start), 0);
        let (a, a_len) = aad(place, k, k + 1 == n);
        let tag = cipher.seal_detached(&nonce(k), &a[..a_len], &mut out[at..]);
        out.extend_from_slice(&tag);
    }
    out
}

/// The chunks covering plaintext `range` of a block of `len` bytes, and
/// the byte range of the object that holds them.
pub fn chunk_span(range: Range<usize>, len: usize) -> (Range<u32>, Range<u64>) {
    let end = range.end.min(len);
    let first = (range.start / CHUNK_SIZE) as u32;
    let last = if end == 0 {
        1
    } else {
        (end.div_ceil(CHUNK_SIZE) as u32).max(first + 1)
    };
    let last = last.min(chunk_count(len));
    let first = first.min(last);
    // An empty span past the last (short) chunk starts at the object's end.
    let obj_start = (first as u64 * SEALED_CHUNK as u64).min(sealed_len(len) as u64);
    let obj_end =
        (obj_start + (last - first) as u64 * SEALED_CHUNK as u64).min(sealed_len(len) as u64);
    (first..last, obj_start..obj_end)
}

/// Opens chunks `chunks` of a block of `len` plaintext bytes from `sealed`,
/// the object bytes starting at chunk `chunks.start`. Returns the plaintext
/// of those chunks up to the block's length (the padding after it is
/// checked to be zeros and dropped), or an error if any chunk fails or the
/// bytes are short or long, or `len` is above [`BLOCK_SIZE`] (a length from
/// metadata is not trusted to size a buffer).
pub fn open_chunks(
    cipher: &Cipher,
    place: &Place,
    len: usize,
    chunks: Range<u32>,
    sealed: &[u8],
) -> Result<Vec<u8>, FormatError> {
    if len > BLOCK_SIZE {
        return Err(FormatError::Invalid("block length"));
    }
    let n = chunk_count(len);
    let padded = padded_len(len);
    if chunks.end > n || chunks.start > chunks.end {
        return Err(FormatError::Invalid("chunk range outside block"));
    }
    let base = chunks.start as usize * CHUNK_SIZE;
    // Sized by the bytes given, never by the lengths claimed.
    let mut out = Vec::with_capacity(sealed.len());
    let mut pos = 0usize;
    for k in chunks {
        let plain_len = if k + 1 == n {
            padded - k as usize * CHUNK_SIZE
        } else {
            CHUNK_SIZE
        };
        let take = plain_len + TAG_LEN;
        if sealed.len() < pos + take {
            return Err(FormatError::Truncated);
        }
        // Decrypted where it lands in `out`; a failure zeroes it and
        // `out` is dropped, so no unverified plaintext is returned.
        let at = out.len();
        out.extend_from_slice(&sealed[pos..pos + plain_len]);
        let (a, a_len) = aad(place, k, k + 1 == n);
        cipher
            .open_detached(
                &nonce(k),
                &a[..a_len],
                &mut out[at..],
                &sealed[pos + plain_len..pos + take],
            )
            .map_err(|_| FormatError::Decrypt)?;
        pos += take;
    }
    if pos != sealed.len() {
        return Err(FormatError::Trailing);
    }
    let keep = len.saturating_sub(base).min(out.len());
    if out[keep..].iter().any(|b| *b != 0) {
        return Err(FormatError::Invalid("block padding"));
    }
    out.truncate(keep);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn known_answer() {
        let key = [1u8; 32];
        let b = Place::whole([3u8; 16]);
        let plain: Vec<u8> = (0..CHUNK_SIZE + 10).map(|i| (i % 251) as u8).collect();
        let sealed = seal_block(&block_cipher(&key), &b, &plain);
        assert_eq!(sealed.len(), sealed_len(plain.len()));
        // Padmé: 4106 bytes are sealed as 4352 (256 multiples at 2^12).
        assert_eq!(padded_len(plain.len()), 4352);
        assert_eq!(sealed.len(), 4352 + 2 * TAG_LEN);
        // Checked with an independent AES-GCM-SIV (Python `cryptography`):
        // tests/vectors/content_block.py.
        let digest = crate::format::hex::encode(&sha2::Sha256::digest(&sealed));
        assert_eq!(
            digest,
            "4888edc44e55f9c4b9ffb40dd763d0bf4053224adfaa259db0651975d1aa9ccc"
        );
        // The AAD of the final chunk, byte for byte.
        let (a, a_len) = aad(&b, 1, true);
        assert_eq!(
            crate::format::hex::encode(&a[..a_len]),
            format!("434653420200{}0100000001", "03".repeat(16))
        );
    }

    /// Two block versions packed into one object, each under its own key,
    /// the second at an offset. Checked with an independent AES-GCM-SIV
    /// (tests/vectors/content_block.py).
    #[test]
    fn packed_known_answer() {
        let pack = [4u8; 16];
        let (c1, c2) = (block_cipher(&[1; 32]), block_cipher(&[2; 32]));
        let p1 = Place {
            id: pack,
            packed: Some(0),
        };
        let first = seal_block(&c1, &p1, b"first file");
        let p2 = Place {
            id: pack,
            packed: Some(first.len() as u32),
        };
        let plain2: Vec<u8> = (0..5000).map(|i| (i % 253) as u8).collect();
        let second = seal_block(&c2, &p2, &plain2);
        let object = [first.clone(), second.clone()].concat();
        assert_eq!((first.len(), object.len()), (272, 5424));
        assert_eq!(
            crate::format::hex::encode(&sha2::Sha256::digest(&object)),
            "c1a419ff5f70c33b377566f60e3820b5b7c9e2fb52bc25b989665ce35eef871c"
        );
        // The packed AAD: flag 1 and the offset after the object id.
        let (a, a_len) = aad(&p2, 1, true);
        assert_eq!(
            crate::format::hex::encode(&a[..a_len]),
            format!("434653420201{}100100000100000001", "04".repeat(16))
        );
        // Each member reads back from its range of the pack.
        let (chunks, obj) = chunk_span(0..plain2.len(), plain2.len());
        let r = p2.object_range(obj);
        assert_eq!(r, 272..5424);
        let got = open_chunks(
            &c2,
            &p2,
            plain2.len(),
            chunks,
            &object[r.start as usize..r.end as usize],
        );
        assert_eq!(got, Ok(plain2));
    }

    /// A chunk cannot move inside a pack, and a block ref naming another
    /// offset, or the same object as a whole, does not open it.
    #[test]
    fn packed_chunks_are_bound_to_their_place() {
        let pack = [8u8; 16];
        let c = block_cipher(&[3; 32]);
        let at = |o| Place {
            id: pack,
            packed: Some(o),
        };
        let plain = vec![9u8; 2 * CHUNK_SIZE];
        let member = seal_block(&c, &at(4096), &plain);
        let all = 0..chunk_count(plain.len());
        assert_eq!(
            open_chunks(&c, &at(4096), plain.len(), all.clone(), &member),
            Ok(plain.clone())
        );
        // The same bytes moved to another offset (the ref says where).
        for wrong in [at(0), at(4096 + SEALED_CHUNK as u32), Place::whole(pack)] {
            assert_eq!(
                open_chunks(&c, &wrong, plain.len(), all.clone(), &member),
                Err(FormatError::Decrypt),
                "{wrong:?}"
            );
        }
        // Another pack id, same offset.
        let other = Place {
            id: [7; 16],
            packed: Some(4096),
        };
        assert_eq!(
            open_chunks(&c, &other, plain.len(), all.clone(), &member),
            Err(FormatError::Decrypt)
        );
        // The member's own chunks swapped within the pack.
        let mut swapped = member.clone();
        let (a, rest) = swapped.split_at_mut(SEALED_CHUNK);
        a.swap_with_slice(&mut rest[..SEALED_CHUNK]);
        assert_eq!(
            open_chunks(&c, &at(4096), plain.len(), all, &swapped),
            Err(FormatError::Decrypt)
        );
        // Its second chunk read at the first one's position.
        assert_eq!(
            open_chunks(&c, &at(4096), plain.len(), 0..1, &member[SEALED_CHUNK..]),
            Err(FormatError::Decrypt)
        );
    }

    #[test]
    fn round_trip_ranges() {
        let c = block_cipher(&[7; 32]);
        let b = Place::whole([6u8; 16]);
        let len = 3 * CHUNK_SIZE + 17;
        let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let sealed = seal_block(&c, &b, &plain);
        for r in [
            0..1,
            0..len,
            CHUNK_SIZE - 1..CHUNK_SIZE + 1,
            len - 5..len,
            2 * CHUNK_SIZE..3 * CHUNK_SIZE,
        ] {
            let (chunks, obj) = chunk_span(r.clone(), len);
            let got = open_chunks(
                &c,
                &b,
                len,
                chunks.clone(),
                &sealed[obj.start as usize..obj.end as usize],
            )
            .unwrap();
            let base = chunks.start as usize * CHUNK_SIZE;
            assert_eq!(&got[r.start - base..r.end - base], &plain[r.clone()]);
        }
    }

    #[test]
    fn claimed_length_is_bounded_before_allocating() {
        // A block length above BLOCK_SIZE (metadata is signed, but by any
        // writer) is refused before a buffer is sized from it.
        let c = block_cipher(&[7; 32]);
        let b = Place::whole([6u8; 16]);
        let sealed = seal_block(&c, &b, &[1; 10]);
        for len in [BLOCK_SIZE + 1, u32::MAX as usize, usize::MAX] {
            assert_eq!(
                open_chunks(&c, &b, len, 0..1, &sealed),
                Err(FormatError::Invalid("block length"))
            );
        }
        // A whole block claimed but a few bytes given: refused as short.
        assert_eq!(
            open_chunks(&c, &b, BLOCK_SIZE, 0..16, &sealed),
            Err(FormatError::Truncated)
        );
        assert_eq!(open_chunks(&c, &b, 10, 0..1, &sealed), Ok(vec![1; 10]));
    }

    #[test]
    fn tamper_is_detected() {
        let key = [5u8; 32];
        let c = block_cipher(&key);
        let b = Place::whole([6u8; 16]);
        let len = 2 * CHUNK_SIZE + 1;
        let plain = vec![7u8; len];
        let sealed = seal_block(&c, &b, &plain);
        let all = 0..chunk_count(len);
        assert_eq!(open_chunks(&c, &b, len, all.clone(), &sealed), Ok(plain));
        // Flipped byte.
        let mut bad = sealed.clone();
        bad[100] ^= 1;
        assert!(open_chunks(&c, &b, len, all.clone(), &bad).is_err());
        // Truncated object (drops the final chunk) read as shorter block.
        let short = &sealed[..2 * SEALED_CHUNK];
        assert!(open_chunks(&c, &b, 2 * CHUNK_SIZE, 0..2, short).is_err());
        // Swapped chunks.
        let mut swapped = sealed.clone();
        let (a, rest) = swapped.split_at_mut(SEALED_CHUNK);
        a.swap_with_slice(&mut rest[..SEALED_CHUNK]);
        assert!(open_chunks(&c, &b, len, all.clone(), &swapped).is_err());
        // Another block id (the object moved under another name).
        assert!(open_chunks(&c, &Place::whole([9; 16]), len, all.clone(), &sealed).is_err());
        // Another block's key (a block ref whose key was swapped).
        let c3 = block_cipher(&[6u8; 32]);
        assert!(open_chunks(&c3, &b, len, all.clone(), &sealed).is_err());
        // The same plaintext under another key and id: a different object.
        let other = seal_block(&c3, &Place::whole([9; 16]), &vec![7u8; len]);
        assert_ne!(other, sealed);
        assert!(open_chunks(&c, &b, len, all, &other).is_err());
    }

    #[test]
    fn padme_size_classes() {
        // The example: a 12,345-byte file is no longer 12,361 bytes.
        // (Expected values from an independent Padmé in Python.)
        assert_eq!(padme(12_345), 12_800);
        assert_eq!(sealed_len(12_345), 12_800 + 4 * TAG_LEN); // 4 chunks of 4 KiB
        for (l, want) in [
            (0, 0),
            (1, 1),
            (255, 256),
            (256, 256),
            (257, 272),
            (1000, 1024),
        ] {
            assert_eq!(padme(l), want, "padme({l})");
        }
        assert_eq!(padded_len(1), MIN_PADDED);
        assert_eq!(padded_len(BLOCK_SIZE), BLOCK_SIZE);
        assert_eq!(padded_len(BLOCK_SIZE - 1), BLOCK_SIZE);
        let mut classes = std::collections::BTreeSet::new();
        for l in (1..=BLOCK_SIZE).step_by(97) {
            let p = padded_len(l);
            assert!(p >= l && p <= BLOCK_SIZE);
            assert_eq!(padme(p), p, "idempotent at {l}");
            if l >= MIN_PADDED {
                assert!((p - l) * 100 <= l * 12, "overhead at {l}: {p}");
            }
            classes.insert(p);
        }
        // Far fewer sizes than lengths: what the store sees is a class.
        assert!(classes.len() < 600, "{}", classes.len());
    }

    #[test]
    fn padding_is_authenticated_and_must_be_zero() {
        let c = block_cipher(&[7; 32]);
        let b = Place::whole([6u8; 16]);
        let sealed = seal_block(&c, &b, b"short");
        assert_eq!(sealed.len(), MIN_PADDED + TAG_LEN);
        assert_eq!(open_chunks(&c, &b, 5, 0..1, &sealed), Ok(b"short".to_vec()));
        // Read as a longer block: the padding shows as zeros, not garbage.
        assert_eq!(
            open_chunks(&c, &b, 7, 0..1, &sealed),
            Ok(b"short\0\0".to_vec())
        );
        // Non-zero bytes after the block's length are refused.
        let bad = seal_block(&c, &b, b"short and long");
        assert_eq!(
            open_chunks(&c, &b, 5, 0..1, &bad),
            Err(FormatError::Invalid("block padding"))
        );
        let mut flipped = sealed.clone();
        flipped[200] ^= 1;
        assert_eq!(
            open_chunks(&c, &b, 5, 0..1, &flipped),
            Err(FormatError::Decrypt)
        );
    }
}
