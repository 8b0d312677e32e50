//! Writes the known-answer vectors in `tests/vectors/` from the fixed
//! inputs in `tests/vectors/inputs.rs`. Run once; it refuses to overwrite
//! an existing vector, because committed vectors are never regenerated.
//!
//! `cargo run --example write_vectors`

#[allow(dead_code)]
mod inputs {
    include!("../tests/vectors/inputs.rs");
}

use cardfs::format::keyfile::KdfParams;
use std::io::Write;

fn write_new(name: &str, bytes: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(bytes).unwrap();
            println!("wrote {}", path.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            println!("kept {} (vectors are never regenerated)", path.display());
        }
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn main() {
    use inputs::*;
    write_new(
        "keyfile-alice-test-kdf.bin",
        keyfile(KdfParams::INSECURE_TEST_ONLY).to_bytes(),
    );
    write_new(
        "keyfile-alice-default-kdf.bin",
        keyfile(KdfParams::DEFAULT).to_bytes(),
    );
    write_new(
        "card-alice.txt",
        format!("{}\n", card(&alice()).to_text()).as_bytes(),
    );
    write_new(
        "card-acme.txt",
        format!("{}\n", card(&acme()).to_text()).as_bytes(),
    );
    write_new(
        "card-alice-approved-by-acme.txt",
        format!("{}\n", approved_alice_card().to_text()).as_bytes(),
    );
    write_new("envelope-to-alice-bob.bin", &envelope(false));
    let mut armored = cardfs::identity::armor::ArmorWriter::new(Vec::new());
    armored.write_all(&envelope(true)).unwrap();
    write_new("envelope-signed-by-alice.armor", &armored.finish().unwrap());
}
