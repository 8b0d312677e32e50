//! The paged checkpoint: its root ([`CheckpointRoot`], the payload of the
//! signed `SNAPSHOT_MAGIC` box) and its pages (`PAGE_MAGIC` objects, one
//! per bucket of node ids, named by the SHA-256 of their bytes).
//!
//! A checkpoint splits the nodes of a volume into `2^bucket_bits` buckets
//! by the low bits of their id; page `i` holds the nodes with
//! `id & (2^bucket_bits - 1) == i`, in ascending id order. The root lists
//! the hash of every page (all zeros: an empty bucket, no object).
//!
//! Invariants: [`open_page`] authenticates before parsing, and returns
//! nodes only if every one lies in the page's bucket, ids strictly ascend
//! (no id twice) and the encoding is canonical; the AAD binds the page to
//! its volume, keyring generation, bucket and bucket count, so a page moved
//! to another place does not open. Every count is bounded by the bytes
//! left before anything is allocated.

use super::node::{NODE_MIN_LEN, Node};
use super::{FORMAT_VERSION, PAGE_MAGIC, PREFIX_LEN, pad, put_header, subkey, unpad};
use crate::format::crypto::{NONCE_LEN, SecretKey, random_array};
use crate::format::wire::{FormatError, Reader, Writer};
use std::collections::BTreeMap;

/// The layout version of a checkpoint root's payload (1 was the single
/// snapshot body listing every node; never released, refused).
pub const ROOT_LAYOUT: u8 = 2;
/// Most buckets a checkpoint may have: `2^16` pages (a 2 MiB root).
pub const MAX_BUCKET_BITS: u8 = 16;
/// The page hash standing for an empty bucket (no object).
pub const EMPTY_PAGE: [u8; 32] = [0; 32];

/// The decrypted payload of a checkpoint root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointRoot {
    /// Per writing client, the last `client_seq` the checkpoint covers.
    pub clients: BTreeMap<[u8; 16], u64>,
    pub bucket_bits: u8,
    /// `2^bucket_bits` page hashes, bucket order ([`EMPTY_PAGE`]: empty).
    pub pages: Vec<[u8; 32]>,
}

impl CheckpointRoot {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(
            10 + 24 * self.clients.len() + 32 * self.pages.len(),
        ));
        w.u8(ROOT_LAYOUT).u32(self.clients.len() as u32);
        for (c, s) in &self.clients {
            w.raw(c).u64(*s);
        }
        w.u8(self.bucket_bits);
        for p in &self.pages {
            w.raw(p);
        }
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let layout = r.u8()?;
        if layout != ROOT_LAYOUT {
            return Err(FormatError::Version(layout.into()));
        }
        let mut out = CheckpointRoot::default();
        for _ in 0..r.count(24)? {
            let c: [u8; 16] = r.array()?;
            if out
                .clients
                .last_key_value()
                .is_some_and(|(last, _)| *last >= c)
            {
                return Err(FormatError::Invalid("clients not ascending"));
            }
            out.clients.insert(c, r.u64()?);
        }
        out.bucket_bits = r.u8()?;
        if out.bucket_bits > MAX_BUCKET_BITS {
            return Err(FormatError::Invalid("bucket bits"));
        }
        let n = 1usize << out.bucket_bits;
        if r.remaining() != 32 * n {
            return Err(FormatError::Invalid("page count"));
        }
        out.pages = (0..n).map(|_| r.array()).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(out)
    }
}

/// Where a page belongs: what its AAD binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePlace {
    pub volume: [u8; 16],
    /// The keyring generation whose volume key seals the page (the root's).
    pub generation: u32,
    pub bucket: u32,
    pub bucket_bits: u8,
}

impl PagePlace {
    /// Whether node `id` belongs in this page's bucket.
    pub fn holds(&self, id: u64) -> bool {
        bucket_of(id, self.bucket_bits) == self.bucket
    }

    /// The associated data: the page prefix, then volume, generation,
    /// bucket and bucket bits.
    fn aad(&self, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut w = Writer::new();
        put_header(&mut w, PAGE_MAGIC);
        w.raw(&self.volume)
            .u32(self.generation)
            .u32(self.bucket)
            .u8(self.bucket_bits)
            .raw(nonce);
        w.into_vec()
    }
}

/// The bucket of node `id` among `2^bits` buckets.
pub fn bucket_of(id: u64, bits: u8) -> u32 {
    (id & ((1u64 << bits) - 1)) as u32
}

/// A page body: `n u32, n × node`. The nodes must ascend by id.
pub fn encode_page_body<'a>(nodes: impl ExactSizeIterator<Item = &'a Node>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(nodes.len() as u32);
    for n in nodes {
        n.write(&mut w);
    }
    w.into_vec()
}

/// Parses a page body for `place`: every node in its bucket, ids strictly
/// ascending, no trailing bytes.
pub fn decode_page_body(place: &PagePlace, body: &[u8]) -> Result<Vec<Node>, FormatError> {
    let mut r = Reader::new(body);
    let n = r.count(NODE_MIN_LEN)?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let node = Node::read(&mut r)?;
        if !place.holds(node.id) {
            return Err(FormatError::Invalid("node outside the page's bucket"));
        }
        if nodes.last().is_some_and(|p: &Node| p.id >= node.id) {
            return Err(FormatError::Invalid("page node ids not ascending"));
        }
        nodes.push(node);
    }
    r.finish()?;
    Ok(nodes)
}

/// Seals a page body (see [`encode_page_body`]) for `place`:
/// `"CFSP" 2 0 || nonce || AEAD(subkey, nonce, aad, pad(body))`.
pub fn seal_page(place: &PagePlace, volume_key: &SecretKey, body: &[u8]) -> Vec<u8> {
    let nonce = random_array::<NONCE_LEN>();
    let mut ct = pad(body).to_vec();
    subkey(volume_key, &place.volume, PAGE_MAGIC).seal_in_place(
        &nonce,
        &place.aad(&nonce),
        &mut ct,
    );
    let mut w = Writer(Vec::with_capacity(PREFIX_LEN + NONCE_LEN + ct.len()));
    put_header(&mut w, PAGE_MAGIC);
    w.raw(&nonce).raw(&ct);
    w.into_vec()
}

/// Opens a page sealed for `place` and parses its nodes (see the module
/// invariants).
pub fn open_page(
    place: &PagePlace,
    volume_key: &SecretKey,
    bytes: &[u8],
) -> Result<Vec<Node>, FormatError> {
    let mut r = Reader::new(bytes);
    r.versioned_header(PAGE_MAGIC, FORMAT_VERSION)?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let ct = &bytes[r.position()..];
    let plain = subkey(volume_key, &place.volume, PAGE_MAGIC)
        .open(&nonce, &place.aad(&nonce), ct)
        .map_err(|_| FormatError::Decrypt)?;
    decode_page_body(place, unpad(&plain)?)
}

#[cfg(test)]
mod tests {
    use super::super::node::KIND_FILE;
    use super::super::sha256;
    use super::*;
    use crate::format::hex::encode as hex;

    fn place(bucket: u32, bits: u8) -> PagePlace {
        PagePlace {
            volume: [5; 16],
            generation: 3,
            bucket,
            bucket_bits: bits,
        }
    }

    fn file(id: u64) -> Node {
        Node {
            id,
            kind: KIND_FILE,
            nlink: 1,
            size: id,
            ..Default::default()
        }
    }

    #[test]
    fn root_known_answer_and_refusals() {
        let mut root = CheckpointRoot {
            bucket_bits: 1,
            pages: vec![[7; 32], EMPTY_PAGE],
            ..Default::default()
        };
        root.clients.insert([1; 16], 9);
        let enc = root.encode();
        assert_eq!(enc.len(), 1 + 4 + 24 + 1 + 64);
        assert_eq!(&enc[..5], &[2, 1, 0, 0, 0]);
        assert_eq!(enc[29], 1);
        let want = format!(
            "02{}{}{}01{}{}",
            "01000000",
            "01".repeat(16),
            "0900000000000000",
            "07".repeat(32),
            "00".repeat(32)
        );
        assert_eq!(hex(&enc), want);
        assert_eq!(
            hex(&sha256(&enc)),
            "1d11bcc8cdb7b5e631e5a815bf3c046e97fd90fc089a6332bd58ebe2a941d156"
        );
        assert_eq!(CheckpointRoot::decode(&enc).unwrap(), root);
        for cut in 0..enc.len() {
            assert!(CheckpointRoot::decode(&enc[..cut]).is_err(), "cut {cut}");
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(CheckpointRoot::decode(&long).is_err());
        let mut v1 = enc.clone();
        v1[0] = 1;
        assert_eq!(CheckpointRoot::decode(&v1), Err(FormatError::Version(1)));
        // A root claiming 2^17 pages is refused before reading them.
        let mut big = enc.clone();
        big[29] = MAX_BUCKET_BITS + 1;
        assert_eq!(
            CheckpointRoot::decode(&big),
            Err(FormatError::Invalid("bucket bits"))
        );
        // Clients out of order or twice: refused (the encoding is canonical).
        let mut two = root.clone();
        two.clients.insert([0; 16], 1);
        let mut swapped = two.encode();
        let (a, b) = (swapped[5..29].to_vec(), swapped[29..53].to_vec());
        swapped[5..29].copy_from_slice(&b);
        swapped[29..53].copy_from_slice(&a);
        assert_eq!(
            CheckpointRoot::decode(&swapped),
            Err(FormatError::Invalid("clients not ascending"))
        );
        swapped[5..29].copy_from_slice(&a);
        assert_eq!(
            CheckpointRoot::decode(&swapped),
            Err(FormatError::Invalid("clients not ascending"))
        );
        let mut forged = enc.clone();
        forged[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            CheckpointRoot::decode(&forged),
            Err(FormatError::Count { .. })
        ));
    }

    #[test]
    fn page_body_known_answer() {
        let nodes = [file(2), file(6)];
        let body = encode_page_body(nodes.iter());
        // `n u32` then the node records, byte for byte as nodes encode.
        let mut w = Writer::new();
        w.u32(2);
        nodes[0].write(&mut w);
        nodes[1].write(&mut w);
        assert_eq!(body, w.0);
        assert_eq!(body.len(), 4 + 2 * NODE_MIN_LEN);
        assert_eq!(
            hex(&sha256(&body)),
            "f2eb66f5cbd09030fce56ebd72538d426cecaaa823822bb55d7a012d4b22c34a"
        );
        assert_eq!(decode_page_body(&place(2, 2), &body).unwrap(), nodes);
    }

    #[test]
    fn page_aad_known_answer() {
        let p = PagePlace {
            volume: [5; 16],
            generation: 0x0102_0304,
            bucket: 0x0a0b,
            bucket_bits: 12,
        };
        let want = format!(
            "43465350 02 00 {} 04030201 0b0a0000 0c {}",
            "05".repeat(16),
            "ee".repeat(12)
        )
        .replace(' ', "");
        assert_eq!(hex(&p.aad(&[0xee; 12])), want);
    }

    #[test]
    fn page_round_trip_and_binding() {
        let key = SecretKey::from_bytes([9; 32]);
        let nodes = [file(1), file(5), file(13)];
        let body = encode_page_body(nodes.iter());
        let p = place(1, 2);
        let sealed = seal_page(&p, &key, &body);
        assert_eq!(&sealed[..6], b"CFSP\x02\x00");
        // Padded: 6 + 12 + 1024 + 16 bytes for a small page.
        assert_eq!(sealed.len(), 6 + 12 + 1024 + 16);
        assert_eq!(open_page(&p, &key, &sealed).unwrap(), nodes);
        // Any other place, key or byte: refused.
        for other in [
            PagePlace {
                volume: [6; 16],
                ..p
            },
            PagePlace { generation: 4, ..p },
            PagePlace { bucket: 3, ..p },
            PagePlace {
                bucket_bits: 3,
                ..p
            },
        ] {
            assert_eq!(open_page(&other, &key, &sealed), Err(FormatError::Decrypt));
        }
        assert!(open_page(&p, &SecretKey::from_bytes([8; 32]), &sealed).is_err());
        for i in [0, 4, 5, 6, 20, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open_page(&p, &key, &bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn page_bodies_must_hold_their_bucket_in_order() {
        let p = place(1, 2);
        let outside = encode_page_body([file(1), file(2)].iter());
        assert_eq!(
            decode_page_body(&p, &outside),
            Err(FormatError::Invalid("node outside the page's bucket"))
        );
        for ids in [[5, 1], [5, 5]] {
            let body = encode_page_body([file(ids[0]), file(ids[1])].iter());
            assert_eq!(
                decode_page_body(&p, &body),
                Err(FormatError::Invalid("page node ids not ascending"))
            );
        }
        let mut forged = encode_page_body([file(1)].iter());
        forged[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_page_body(&p, &forged),
            Err(FormatError::Count { .. })
        ));
        assert_eq!(bucket_of(u64::MAX, 0), 0);
        assert_eq!(bucket_of(0b1011, 2), 0b11);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            /// Nodes split into buckets, sealed and opened again: the same
            /// nodes; the root round-trips.
            #[test]
            fn pages_and_roots_round_trip(
                ids in proptest::collection::btree_set(any::<u64>(), 0..40),
                bits in 0u8..4,
                clients in proptest::collection::btree_map(any::<[u8; 16]>(), any::<u64>(), 0..4),
            ) {
                let key = SecretKey::from_bytes([3; 32]);
                let mut root = CheckpointRoot { clients, bucket_bits: bits, pages: Vec::new() };
                let mut back = Vec::new();
                for b in 0..1u32 << bits {
                    let p = place(b, bits);
                    let nodes: Vec<Node> = ids.iter().filter(|i| p.holds(**i)).map(|i| file(*i)).collect();
                    let sealed = seal_page(&p, &key, &encode_page_body(nodes.iter()));
                    root.pages.push(sha256(&sealed));
                    back.extend(open_page(&p, &key, &sealed).unwrap());
                }
                back.sort_by_key(|n| n.id);
                prop_assert_eq!(back.iter().map(|n| n.id).collect::<Vec<_>>(), ids.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(CheckpointRoot::decode(&root.encode()).unwrap(), root);
            }
        }
    }
}
