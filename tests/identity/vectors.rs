//! Known-answer vectors: the committed files in `tests/vectors/` (written
//! once by `examples/write_vectors.rs` from the fixed inputs in
//! `tests/vectors/inputs.rs`, never regenerated) must still parse, unlock
//! and decrypt, and where the encoding is deterministic, re-encoding the
//! same inputs must give the same bytes.

#[allow(dead_code)]
mod inputs {
    include!("../vectors/inputs.rs");
}

use cardfs::format::card::Card;
use cardfs::format::keyfile::{KdfParams, KeyFile, Password};
use cardfs::identity::armor::dearmor;
use cardfs::identity::envelope::{decrypt, decrypt_then_verify};
use inputs::*;

fn vector(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(name: &str) -> String {
    String::from_utf8(vector(name)).unwrap()
}

#[test]
fn key_files_unlock_and_re_encode() {
    for (name, params) in [
        ("keyfile-alice-test-kdf.bin", KdfParams::INSECURE_TEST_ONLY),
        ("keyfile-alice-default-kdf.bin", KdfParams::DEFAULT),
    ] {
        let bytes = vector(name);
        let file = KeyFile::parse(&bytes).unwrap();
        assert_eq!(file.name(), "alice");
        assert_eq!(file.params(), params);
        let key = file.unlock(&Password::new(PASSWORD)).unwrap();
        assert_eq!(key.x25519_secret().to_bytes(), [0x11; 32]);
        assert_eq!(key.signing_key().to_bytes(), [0x12; 32]);
        assert!(file.unlock(&Password::new("wrong")).is_err());
        assert_eq!(keyfile(params).to_bytes(), &bytes[..], "{name}");
    }
}

#[test]
fn cards_parse_verify_and_re_encode() {
    let alice_card = Card::from_text(&text("card-alice.txt")).unwrap();
    assert_eq!(alice_card.identity(), "alice");
    assert_eq!(alice_card.created(), CREATED);
    assert!(alice_card.matches_key(&alice()));
    assert_eq!(alice_card.id().to_string(), ALICE_CARD_ID);
    assert_eq!(alice_card.fingerprint(), ALICE_FINGERPRINT);
    assert_eq!(card(&alice()).to_text(), text("card-alice.txt").trim());

    let acme_card = Card::from_text(&text("card-acme.txt")).unwrap();
    let approved = Card::from_text(&text("card-alice-approved-by-acme.txt")).unwrap();
    assert_eq!(approved.id(), alice_card.id());
    assert!(approved.approved_by(&acme_card));
    assert!(!alice_card.approved_by(&acme_card));
    assert_eq!(
        approved_alice_card().to_text(),
        text("card-alice-approved-by-acme.txt").trim()
    );
}

#[test]
fn envelopes_decrypt_and_re_encode() {
    let sealed = vector("envelope-to-alice-bob.bin");
    for key in [alice(), bob()] {
        let mut out = Vec::new();
        assert!(decrypt(&key, &sealed[..], &mut out).unwrap().is_none());
        assert_eq!(out, plaintext());
    }
    assert_eq!(envelope(false), sealed);

    let armored = vector("envelope-signed-by-alice.armor");
    let mut out = Vec::new();
    let input = dearmor(&armored[..]).unwrap();
    decrypt_then_verify(&bob(), &card(&alice()), input, &mut out).unwrap();
    assert_eq!(out, plaintext());
    let mut binary = Vec::new();
    std::io::Read::read_to_end(&mut dearmor(&armored[..]).unwrap(), &mut binary).unwrap();
    assert_eq!(envelope(true), binary);
}

/// Computed independently (Python hashlib) from card-alice.txt.
const ALICE_CARD_ID: &str = "47627c5181bee863338677652256b5edcd41199b0fb5404e537d9ad8d572a35d";
const ALICE_FINGERPRINT: &str = "36689 72195 50405 08013 95675 36718 40568 59933";
