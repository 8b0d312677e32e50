//! Runs the drive-format fuzz-target bodies (`cardfs::fuzzing::DRIVE_TARGETS`)
//! over deterministic mutations of their seeds (`drive_seeds`, encoder
//! output): bit flips, truncations, extensions, and every 4-byte window
//! overwritten with forged counts and lengths. The real fuzzing is
//! `scripts/fuzz`; this keeps every target compiled, its seeds accepted and
//! its properties checked in the ordinary test run (a few seconds: the
//! mutations per seed are capped).

use cardfs::fuzzing::{DRIVE_TARGETS, drive_seeds};

/// Positions mutated per seed; larger seeds are sampled at a stride (the
/// signed targets sign and verify on every call).
const PER_SEED: usize = 150;

fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let stride = (seed.len() / PER_SEED).max(1);
    for i in (0..seed.len()).step_by(stride) {
        for bit in [0, 7] {
            let mut m = seed.to_vec();
            m[i] ^= 1 << bit;
            out.push(m);
        }
        out.push(seed[..i].to_vec());
        // Forged counts and lengths: the largest, and one past BLOCK_SIZE.
        for forged in [u32::MAX, 0x0010_0001] {
            let mut m = seed.to_vec();
            let end = (i + 4).min(m.len());
            m[i..end].copy_from_slice(&forged.to_le_bytes()[..end - i]);
            out.push(m);
        }
    }
    for tail in [&[0u8][..], &[0xff; 7], &[0x01, 0, 0, 0]] {
        out.push([seed, tail].concat());
    }
    out.push(Vec::new());
    out
}

#[test]
fn every_drive_target_has_seeds() {
    let seeds = drive_seeds();
    for (name, _) in DRIVE_TARGETS {
        assert!(
            seeds.iter().any(|(t, _)| t == name),
            "no seed for target {name}"
        );
    }
    for (t, _) in &seeds {
        assert!(
            DRIVE_TARGETS.iter().any(|(name, _)| name == t),
            "seed for unknown target {t}"
        );
    }
}

#[test]
fn drive_parsers_survive_mutations() {
    let targets: std::collections::HashMap<_, _> = DRIVE_TARGETS.iter().copied().collect();
    for (name, seed) in drive_seeds() {
        let target = targets[name];
        target(&seed);
        for m in mutations(&seed) {
            target(&m);
        }
    }
}

#[test]
fn fuzz_targets_exist_for_every_entry_point() {
    // fuzz/fuzz_targets/<name>.rs calls cardfs::fuzzing::<name>, and
    // fuzz/Cargo.toml declares it, for every drive target.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fuzz"),
    )
    .unwrap();
    for (name, _) in DRIVE_TARGETS {
        let src = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz target {name}: {e}"));
        assert!(
            src.contains(&format!("cardfs::fuzzing::{name}(data)")),
            "{name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} in fuzz/Cargo.toml"
        );
        assert!(
            script
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == *name),
            "{name} in scripts/fuzz"
        );
    }
}
