// Fixed inputs of the known-answer vectors in this directory. Shared (via
// `include!`) by `examples/write_vectors.rs`, which wrote the vector files
// once, and `tests/identity_vectors.rs`, which checks them. Changing any of
// these values invalidates the committed vectors: don't.

use cardfs::format::card::Card;
use cardfs::format::crypto::SecretKey;
use cardfs::format::envelope::Sealer;
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::{KdfParams, KeyFile, Password};

pub const PASSWORD: &str = "correct horse battery staple";
pub const CREATED: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
pub const KEYFILE_SALT: [u8; 16] = [0x5a; 16];
pub const KEYFILE_NONCE: [u8; 12] = [0xa5; 12];
pub const FILE_KEY: [u8; 32] = [0x42; 32];
pub const ENVELOPE_NONCE: [u8; 16] = [0x24; 16];
pub const EPHEMERALS: [[u8; 32]; 2] = [[0x71; 32], [0x72; 32]];

pub fn alice() -> UserKey {
    UserKey::from_secret_bytes("alice", &[0x11; 32], &[0x12; 32]).unwrap()
}

pub fn bob() -> UserKey {
    UserKey::from_secret_bytes("bob", &[0x21; 32], &[0x22; 32]).unwrap()
}

pub fn acme() -> UserKey {
    UserKey::from_secret_bytes("acme", &[0x31; 32], &[0x32; 32]).unwrap()
}

pub fn card(key: &UserKey) -> Card {
    Card::create(key, key.name(), CREATED).unwrap()
}

pub fn approved_alice_card() -> Card {
    let mut card = card(&alice());
    card.approve(&acme(), &self::card(&acme())).unwrap();
    card
}

pub fn keyfile(params: KdfParams) -> KeyFile {
    KeyFile::lock_with(
        &alice(),
        &Password::new(PASSWORD),
        params,
        KEYFILE_SALT,
        KEYFILE_NONCE,
    )
    .unwrap()
}

/// 70,000 bytes: one full chunk and a partial one.
pub fn plaintext() -> Vec<u8> {
    (0..70_000u32).map(|i| (i.wrapping_mul(7) + 3) as u8).collect()
}

/// The envelope of [`plaintext`] to alice and bob, signed by alice or not.
pub fn envelope(signed: bool) -> Vec<u8> {
    let (a, b) = (alice(), bob());
    let keys = [a.x25519_public(), b.x25519_public()];
    let mut sealer = Sealer::new_with(
        &keys,
        signed,
        SecretKey::from_bytes(FILE_KEY),
        ENVELOPE_NONCE,
        &EPHEMERALS,
    )
    .unwrap();
    let mut out = sealer.header().to_vec();
    let plain = plaintext();
    let mut chunk = Vec::new();
    let mut pieces = plain.chunks(cardfs::format::envelope::CHUNK_LEN).peekable();
    while let Some(piece) = pieces.next() {
        sealer.seal_chunk(piece, pieces.peek().is_none(), &mut chunk);
        out.extend_from_slice(&chunk);
    }
    if signed {
        out.extend_from_slice(&sealer.sign(&a, &card(&a)).unwrap());
    }
    out
}
