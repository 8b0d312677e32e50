//! Runs the fuzz-target bodies (`cardfs::fuzzing`) over deterministic
//! mutations of the committed vectors: every bit flip of cards and key
//! files, and flips, truncations and extensions across envelopes. The real
//! fuzzing is `scripts/fuzz`; this keeps the targets compiled and sane in
//! the ordinary test run.

use cardfs::fuzzing;

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(name),
    )
    .unwrap()
}

fn card_bytes(name: &str) -> Vec<u8> {
    cardfs::format::card::Card::from_text(&String::from_utf8(vector(name)).unwrap())
        .unwrap()
        .to_bytes()
}

fn every_bit_flip(data: &[u8], f: fn(&[u8])) {
    for i in 0..data.len() {
        for bit in 0..8 {
            let mut m = data.to_vec();
            m[i] ^= 1 << bit;
            f(&m);
        }
        f(&data[..i]);
    }
}

#[test]
fn card_parser_survives_mutations() {
    for name in [
        "card-alice.txt",
        "card-acme.txt",
        "card-alice-approved-by-acme.txt",
    ] {
        fuzzing::card(&vector(name));
        every_bit_flip(&card_bytes(name), fuzzing::card);
    }
}

#[test]
fn key_file_parser_survives_mutations() {
    every_bit_flip(&vector("keyfile-alice-test-kdf.bin"), fuzzing::key_file);
}

#[test]
fn envelope_decryptor_survives_mutations() {
    let sealed = vector("envelope-to-alice-bob.bin");
    let armored = vector("envelope-signed-by-alice.armor");
    for data in [&sealed, &armored] {
        fuzzing::envelope(data);
        for i in (0..data.len()).step_by(997).chain(0..400) {
            let mut m = data.to_vec();
            m[i] ^= 0x5a;
            fuzzing::envelope(&m);
            fuzzing::envelope(&data[..i]);
        }
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0xff; 300]);
        fuzzing::envelope(&longer);
    }
}
