//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), kept in the
//! library so the main build compiles them and `tests/identity_fuzz_smoke.rs`
//! runs them on mutated vectors without a nightly toolchain.
//!
//! Each function must never panic on any input; where a parser accepts its
//! input, the functions also check the properties that must then hold
//! (canonical re-encoding, failure without output).
#![doc(hidden)]

use crate::format::card::Card;
use crate::format::key::UserKey;
use crate::format::keyfile::KeyFile;
use crate::identity::armor::dearmor;
use crate::identity::envelope::decrypt;
use std::io::Read;

/// Card parser: binary and text forms. An accepted card re-encodes to the
/// same bytes (the encoding is canonical).
pub fn card(data: &[u8]) {
    if let Ok(card) = Card::from_bytes(data) {
        assert_eq!(card.to_bytes(), data, "accepted card is not canonical");
        let again = Card::from_text(&card.to_text()).expect("text round trip");
        assert_eq!(again, card);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Card::from_text(text);
    }
}

/// Key-file parser. An accepted file re-encodes to the same bytes. (Not
/// unlocked: Argon2 would make each run take milliseconds to seconds.)
pub fn key_file(data: &[u8]) {
    if let Ok(file) = KeyFile::parse(data) {
        assert_eq!(file.to_bytes(), data);
    }
}

/// The fixed key the envelope target decrypts with (the vectors' "bob").
pub fn envelope_key() -> UserKey {
    UserKey::from_secret_bytes("bob", &[0x21; 32], &[0x22; 32]).expect("valid name")
}

/// Envelope parser and decryptor, binary and armored, reading through a
/// reader that returns the input in small pieces. On failure, no more than
/// the chunks that authenticated may have been written.
pub fn envelope(data: &[u8]) {
    static KEY: std::sync::OnceLock<UserKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(envelope_key);
    let mut out = Vec::new();
    let _ = decrypt(key, data, &mut out);
    if let Ok(mut reader) = dearmor(data) {
        let mut unarmored = Vec::new();
        if reader.read_to_end(&mut unarmored).is_ok() {
            let _ = decrypt(key, &unarmored[..], &mut Vec::new());
        }
    }
}
