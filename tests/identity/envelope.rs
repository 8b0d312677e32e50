//! Envelope round trips and one negative test per tamper case, through the
//! streaming library API (`cardfs::identity::envelope`).

use cardfs::format::card::Card;
use cardfs::format::crypto::{Cipher, SecretKey, hkdf};
use cardfs::format::envelope::{
    CHUNK_LEN, EnvelopeError as E, FIXED_HEADER_LEN, HEADER_TAG_LEN, SEALED_CHUNK_LEN, STANZA_LEN,
    Sealer, sealed_len,
};
use cardfs::format::key::UserKey;
use cardfs::identity::envelope::{
    Error, decrypt, decrypt_then_verify, encrypt_for, sign_then_encrypt,
};
use proptest::prelude::*;
use std::io::Read;

fn user(seed: u8, name: &str) -> (UserKey, Card) {
    let key = UserKey::from_secret_bytes(name, &[seed; 32], &[seed ^ 0x80; 32]).unwrap();
    let card = Card::create(&key, name, 1_700_000_000).unwrap();
    (key, card)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn seal(to: &[&Card], plain: &[u8]) -> Vec<u8> {
    let cards: Vec<Card> = to.iter().map(|c| (*c).clone()).collect();
    let mut out = Vec::new();
    encrypt_for(&cards, plain, &mut out).unwrap();
    out
}

fn seal_signed(from: &(UserKey, Card), to: &[&Card], plain: &[u8]) -> Vec<u8> {
    let cards: Vec<Card> = to.iter().map(|c| (*c).clone()).collect();
    let mut out = Vec::new();
    sign_then_encrypt(&from.0, &from.1, &cards, plain, &mut out).unwrap();
    out
}

fn open(key: &UserKey, sealed: &[u8]) -> Result<Vec<u8>, E> {
    let mut out = Vec::new();
    match decrypt(key, sealed, &mut out) {
        Ok(_) => Ok(out),
        Err(Error::Envelope(e)) => Err(e),
        Err(other) => panic!("unexpected I/O error {other}"),
    }
}

fn open_verified(key: &UserKey, sender: &Card, sealed: &[u8]) -> Result<Vec<u8>, E> {
    let mut out = Vec::new();
    match decrypt_then_verify(key, sender, sealed, &mut out) {
        Ok(()) => Ok(out),
        Err(Error::Envelope(e)) => Err(e),
        Err(other) => panic!("unexpected I/O error {other}"),
    }
}

fn header_len(recipients: usize) -> usize {
    FIXED_HEADER_LEN + recipients * STANZA_LEN + HEADER_TAG_LEN
}

/// A reader that hands out at most `step` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn round_trip_for_several_recipients_and_overhead() {
    let (a, ac) = user(1, "alice");
    let (b, bc) = user(2, "bob");
    let (c, _) = user(3, "carol");
    let plain = data(3 * CHUNK_LEN + 17);
    let sealed = seal(&[&ac, &bc, &bc], &plain);
    assert_eq!(
        sealed.len() as u64,
        sealed_len(plain.len() as u64, 2, false)
    );
    assert_eq!(open(&a, &sealed).unwrap(), plain);
    assert_eq!(open(&b, &sealed).unwrap(), plain);
    assert_eq!(open(&c, &sealed), Err(E::NotARecipient));
}

#[test]
fn sign_then_encrypt_and_verify() {
    let alice = user(1, "alice");
    let (b, bc) = user(2, "bob");
    let (_, cc) = user(3, "carol");
    let plain = data(CHUNK_LEN + 5);
    let sealed = seal_signed(&alice, &[&bc], &plain);
    assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64, 1, true));
    assert_eq!(open_verified(&b, &alice.1, &sealed).unwrap(), plain);
    // Plain decrypt returns the (unverified) claim, which verifies.
    let mut out = Vec::new();
    let claim = decrypt(&b, &sealed[..], &mut out).unwrap().unwrap();
    assert_eq!(claim.signer(), alice.1.id());
    claim.verify(&alice.1).unwrap();
    // Wrong sender.
    assert!(matches!(
        open_verified(&b, &cc, &sealed),
        Err(E::WrongSender { expected, found }) if expected == cc.id() && found == alice.1.id()
    ));
    // A signature is required but missing.
    let unsigned = seal(&[&bc], &plain);
    assert_eq!(
        open_verified(&b, &alice.1, &unsigned),
        Err(E::SignatureMissing)
    );
    // Signing with a key that does not match the card is refused.
    let mut sink = Vec::new();
    let err = sign_then_encrypt(
        &b,
        &alice.1,
        std::slice::from_ref(&bc),
        &plain[..],
        &mut sink,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Envelope(E::SignerCardMismatch)));
}

#[test]
fn header_regions_each_fail_with_their_reason() {
    let (b, bc) = user(2, "bob");
    let (_, ac) = user(1, "alice");
    let sealed = seal(&[&bc, &ac], &data(100));
    let flip = |i: usize, mask: u8| {
        let mut t = sealed.clone();
        t[i] ^= mask;
        open(&b, &t)
    };
    assert_eq!(flip(0, 1), Err(E::NotAnEnvelope));
    assert_eq!(flip(4, 2), Err(E::UnsupportedVersion(3)));
    assert_eq!(flip(5, 0x40), Err(E::UnknownFlags(0x40)));
    // Setting the known "signed" flag changes the authenticated header.
    assert_eq!(flip(5, 1), Err(E::HeaderTampered));
    assert!(
        matches!(flip(7, 0xff), Err(E::MalformedHeader(_))),
        "recipient count"
    );
    assert!(
        matches!(flip(6, 0x10), Err(E::Truncated(_))),
        "recipient count"
    );
    assert_eq!(flip(8, 1), Err(E::HeaderTampered), "header nonce");
    // Which stanza is bob's depends on the recipient ids' order.
    let bob_first = sealed[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 32] == b.recipient_id();
    let (bob_at, other_at) = if bob_first {
        (FIXED_HEADER_LEN, FIXED_HEADER_LEN + STANZA_LEN)
    } else {
        (FIXED_HEADER_LEN + STANZA_LEN, FIXED_HEADER_LEN)
    };
    assert_eq!(flip(bob_at, 1), Err(E::NotARecipient), "recipient id");
    assert_eq!(flip(bob_at + 40, 1), Err(E::HeaderTampered), "wrapped key");
    assert_eq!(
        flip(other_at + 40, 1),
        Err(E::HeaderTampered),
        "other stanza"
    );
    assert_eq!(
        flip(header_len(2) - 1, 1),
        Err(E::HeaderTampered),
        "header tag"
    );
    // Swapping the two stanzas.
    let mut swapped = sealed.clone();
    let (s1, s2) = (FIXED_HEADER_LEN, FIXED_HEADER_LEN + STANZA_LEN);
    let first = sealed[s1..s2].to_vec();
    swapped.copy_within(s2..s2 + STANZA_LEN, s1);
    swapped[s2..s2 + STANZA_LEN].copy_from_slice(&first);
    assert_eq!(
        open(&b, &swapped),
        Err(E::HeaderTampered),
        "swapped stanzas"
    );
    // Truncated inside the header, and an empty input.
    assert!(matches!(
        open(&b, &sealed[..FIXED_HEADER_LEN - 3]),
        Err(E::Truncated(_))
    ));
    assert!(matches!(
        open(&b, &sealed[..header_len(2) - 1]),
        Err(E::Truncated(_))
    ));
    assert_eq!(open(&b, &[]), Err(E::NotAnEnvelope));
}

#[test]
fn chunk_tampering_truncation_extension_reordering_splicing() {
    let (b, bc) = user(2, "bob");
    let plain = data(3 * CHUNK_LEN); // exactly three full chunks
    let sealed = seal(&[&bc], &plain);
    let h = header_len(1);
    let chunk = |i: usize| h + i * SEALED_CHUNK_LEN;
    assert_eq!(sealed.len(), chunk(3));
    let flip = |i: usize| {
        let mut t = sealed.clone();
        t[i] ^= 0x10;
        open(&b, &t)
    };
    assert_eq!(flip(chunk(0) + 5), Err(E::ChunkTampered(0)), "chunk body");
    assert_eq!(flip(chunk(1) - 1), Err(E::ChunkTampered(0)), "chunk tag");
    assert_eq!(flip(chunk(1) + 9), Err(E::ChunkTampered(1)));
    assert_eq!(
        flip(chunk(3) - 1),
        Err(E::FinalChunkTampered(2)),
        "last chunk"
    );
    // Truncation at each chunk boundary, and just after the header.
    assert!(matches!(
        open(&b, &sealed[..chunk(2)]),
        Err(E::Truncated(_))
    ));
    assert!(matches!(
        open(&b, &sealed[..chunk(1)]),
        Err(E::Truncated(_))
    ));
    assert!(matches!(open(&b, &sealed[..h]), Err(E::Truncated(_))));
    // Truncation between boundaries: the final chunk read does not verify.
    assert_eq!(
        open(&b, &sealed[..chunk(2) + 100]),
        Err(E::FinalChunkTampered(2))
    );
    assert!(matches!(open(&b, &sealed[..h + 10]), Err(E::Truncated(_))));
    // Extension: bytes after the (full) final chunk.
    let mut longer = sealed.clone();
    longer.extend_from_slice(&[0; 40]);
    assert_eq!(open(&b, &longer), Err(E::Extended));
    // Reordering: chunks 0 and 1 swapped.
    let mut swapped = sealed.clone();
    swapped[chunk(0)..chunk(1)].copy_from_slice(&sealed[chunk(1)..chunk(2)]);
    swapped[chunk(1)..chunk(2)].copy_from_slice(&sealed[chunk(0)..chunk(1)]);
    assert_eq!(open(&b, &swapped), Err(E::ChunkTampered(0)));
    // Splicing: chunk 1 of another envelope of the same data to bob.
    let other = seal(&[&bc], &plain);
    let mut spliced = sealed.clone();
    spliced[chunk(1)..chunk(2)].copy_from_slice(&other[chunk(1)..chunk(2)]);
    assert_eq!(open(&b, &spliced), Err(E::ChunkTampered(1)));
    // Splicing: one envelope's header on the other's payload.
    let mut spliced = other.clone();
    spliced[..h].copy_from_slice(&sealed[..h]);
    assert_eq!(open(&b, &spliced), Err(E::ChunkTampered(0)));
}

#[test]
fn extension_after_a_short_final_chunk_is_caught() {
    let (b, bc) = user(2, "bob");
    let mut sealed = seal(&[&bc], &data(1000));
    sealed.extend_from_slice(b"appended");
    assert_eq!(open(&b, &sealed), Err(E::FinalChunkTampered(0)));
}

#[test]
fn signature_block_tampering_truncation_and_wrong_key() {
    let alice = user(1, "alice");
    let (b, bc) = user(2, "bob");
    let (c, _) = user(3, "carol");
    let sealed = seal_signed(&alice, &[&bc], &data(CHUNK_LEN));
    let mut t = sealed.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert_eq!(open(&b, &t), Err(E::SignatureBlockTampered));
    assert_eq!(
        open_verified(&b, &alice.1, &t),
        Err(E::SignatureBlockTampered)
    );
    // Cutting the whole signature block off.
    let cut = &sealed[..sealed.len() - cardfs::format::envelope::SIGNATURE_BLOCK_LEN];
    assert!(matches!(
        open(&b, cut),
        Err(E::Truncated(_)) | Err(E::FinalChunkTampered(0))
    ));
    assert_eq!(open(&c, &sealed), Err(E::NotARecipient));
}

/// A co-recipient knows the file key, so it can re-seal chunks that every
/// other recipient accepts; only the sender's signature catches that. This
/// test plays that co-recipient with a known file key and the derivations
/// documented in docs/FORMAT.md.
#[test]
fn co_recipient_forgery_is_a_bad_signature() {
    let alice = user(1, "alice");
    let (b, bc) = user(2, "bob");
    let (_, cc) = user(3, "carol");
    let file_key = SecretKey::from_bytes([42; 32]);
    let keys = [bc.x25519_public(), cc.x25519_public()];
    let mut sealer =
        Sealer::new_with(&keys, true, file_key.clone(), [9; 16], &[[5; 32], [6; 32]]).unwrap();
    let mut sealed = sealer.header().to_vec();
    let mut out = Vec::new();
    sealer.seal_chunk(b"pay bob 10 coins", true, &mut out);
    sealed.extend_from_slice(&out);
    sealed.extend_from_slice(&sealer.sign(&alice.0, &alice.1).unwrap());
    assert_eq!(
        open_verified(&b, &alice.1, &sealed).unwrap(),
        b"pay bob 10 coins"
    );

    // Carol re-seals the chunk with new content under the payload key.
    let h = header_len(2);
    let tag: [u8; 32] = sealed[h - 32..h].try_into().unwrap();
    let payload = Cipher::new(&hkdf(
        &tag,
        file_key.expose(),
        &[b"cardfs/v1/envelope/payload"],
    ));
    let mut nonce = [0u8; 12];
    nonce[11] = 1; // chunk 0, last
    let forged_chunk = payload.seal(&nonce, &[], b"pay carol 99 coin");
    let mut forged = sealed[..h].to_vec();
    forged.extend_from_slice(&forged_chunk);
    forged.extend_from_slice(&sealed[h + out.len()..]);
    assert_eq!(open_verified(&b, &alice.1, &forged), Err(E::BadSignature));
}

proptest! {
    // Failures kept beside this file, as before it moved next to a main.rs.
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        .. ProptestConfig::default()
    })]

    #[test]
    fn round_trips_around_chunk_boundaries(
        len in prop_oneof![
            Just(0usize), Just(1), Just(CHUNK_LEN - 1), Just(CHUNK_LEN), Just(CHUNK_LEN + 1),
            Just(2 * CHUNK_LEN), Just(3 * CHUNK_LEN + 1), 0usize..4 * CHUNK_LEN
        ],
        signed in any::<bool>(),
        step in prop_oneof![Just(1usize), 2usize..200, Just(1 << 20)],
    ) {
        let alice = user(1, "alice");
        let (b, bc) = user(2, "bob");
        let plain = data(len);
        let sealed = if signed { seal_signed(&alice, &[&bc], &plain) } else { seal(&[&bc], &plain) };
        prop_assert_eq!(sealed.len() as u64, sealed_len(len as u64, 1, signed));
        // Read in odd-sized pieces to exercise the look-ahead logic.
        let mut out = Vec::new();
        let step = if len > 100_000 { step.max(64) } else { step };
        let claim = decrypt(&b, Trickle { data: &sealed, step }, &mut out).unwrap();
        prop_assert_eq!(&out, &plain);
        prop_assert_eq!(claim.is_some(), signed);
        if signed {
            prop_assert!(open_verified(&b, &alice.1, &sealed).is_ok());
        }
    }
}
