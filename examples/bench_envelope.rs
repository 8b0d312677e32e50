//! Throughput of the envelope (encrypt and decrypt, unsigned and signed)
//! against the raw AEAD on the same buffers, in one run. Columns: raw AEAD
//! over the same 64 KiB chunks (no copies), the envelope, their ratio, the
//! same for decryption, signed envelope encrypt/decrypt, and "raw+copy":
//! raw AEAD plus the two chunk copies that streaming through Read/Write
//! needs, for telling framing overhead from copying. Prints numbers;
//! asserts nothing about speed. Run through `scripts/bench-envelope`
//! (release mode).
//!
//! `cargo run --release --example bench_envelope -- [SIZE_MIB ...]`

use cardfs::format::card::Card;
use cardfs::format::crypto::{Cipher, SecretKey};
use cardfs::format::envelope::CHUNK_LEN;
use cardfs::format::key::UserKey;
use cardfs::identity::envelope::{decrypt, encrypt_for, sign_then_encrypt};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;

/// Best time of ROUNDS runs of `f`, each over enough repetitions to take
/// at least ~50 ms.
fn best(bytes: usize, mut f: impl FnMut()) -> f64 {
    let reps = (256 << 20) / bytes.max(1) + 1;
    let reps = reps.min(64);
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(start.elapsed() / reps as u32);
    }
    bytes as f64 / best.as_secs_f64() / 1e9
}

fn nonce(i: usize, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
    n[11] = last as u8;
    n
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("sizes are MiB integers") << 20)
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1 << 20, 16 << 20, 64 << 20]
    } else {
        sizes
    };
    let alice = UserKey::generate("alice").unwrap();
    let bob = UserKey::generate("bob").unwrap();
    let alice_card = Card::create(&alice, "alice", 0).unwrap();
    let bob_card = Card::create(&bob, "bob", 0).unwrap();
    let cards = [bob_card.clone()];
    let cipher = Cipher::new(&SecretKey::random());

    // Fixed cost per envelope (key wrapping, header, derivations): an
    // empty input, timed over many runs.
    let mut empty = Vec::new();
    let runs = 2000;
    let start = Instant::now();
    for _ in 0..runs {
        empty.clear();
        encrypt_for(&cards, &[][..], &mut empty).unwrap();
    }
    let fixed_enc = start.elapsed() / runs;
    let start = Instant::now();
    for _ in 0..runs {
        decrypt(&bob, &empty[..], std::io::sink()).unwrap();
    }
    let fixed_dec = start.elapsed() / runs;
    println!(
        "fixed cost per envelope (one recipient): encrypt {:.0} us, decrypt {:.0} us",
        fixed_enc.as_secs_f64() * 1e6,
        fixed_dec.as_secs_f64() * 1e6
    );
    println!(
        "{:>8}  {:>9} {:>9} {:>6}  {:>9} {:>9} {:>6}  {:>9} {:>9}  {:>9}",
        "size",
        "raw enc",
        "env enc",
        "ratio",
        "raw dec",
        "env dec",
        "ratio",
        "sig enc",
        "sig dec",
        "raw+copy"
    );
    for size in sizes {
        let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();

        // Raw AEAD: the same 64 KiB chunks sealed into one reused buffer;
        // no header, framing, look-ahead or reader/writer copies.
        let mut scratch = Vec::with_capacity(CHUNK_LEN + 16);
        let raw_enc = best(size, || {
            let n = plain.len().div_ceil(CHUNK_LEN);
            for (i, chunk) in plain.chunks(CHUNK_LEN).enumerate() {
                cipher.seal_into(&nonce(i, i + 1 == n), &[], chunk, &mut scratch);
                black_box(&scratch);
            }
        });
        // The same, plus the two 64 KiB copies any Read/Write streaming
        // does (input into a chunk buffer, sealed chunk into the output):
        // the floor for a streaming format, to separate framing overhead
        // from copying.
        let mut chunk_buf = vec![0u8; CHUNK_LEN];
        let mut copied_out = Vec::with_capacity(size + size / 1000 + 4096);
        let raw_copy_enc = best(size, || {
            copied_out.clear();
            let n = plain.len().div_ceil(CHUNK_LEN);
            for (i, chunk) in plain.chunks(CHUNK_LEN).enumerate() {
                chunk_buf[..chunk.len()].copy_from_slice(chunk);
                cipher.seal_into(
                    &nonce(i, i + 1 == n),
                    &[],
                    &chunk_buf[..chunk.len()],
                    &mut scratch,
                );
                copied_out.extend_from_slice(&scratch);
            }
            black_box(&copied_out);
        });
        // Sealed chunks for the raw decryption run.
        let sealed_chunks: Vec<Vec<u8>> = plain
            .chunks(CHUNK_LEN)
            .enumerate()
            .map(|(i, c)| cipher.seal(&nonce(i, false), &[], c))
            .collect();
        let raw_dec = best(size, || {
            for (i, c) in sealed_chunks.iter().enumerate() {
                cipher
                    .open_into(&nonce(i, false), &[], c, &mut scratch)
                    .unwrap();
                black_box(&scratch);
            }
        });

        let mut sealed = Vec::with_capacity(size + size / 1000 + 4096);
        let env_enc = best(size, || {
            sealed.clear();
            encrypt_for(&cards, &plain[..], &mut sealed).unwrap();
        });
        let mut out = Vec::with_capacity(size);
        let env_dec = best(size, || {
            out.clear();
            decrypt(&bob, &sealed[..], &mut out).unwrap();
        });
        assert_eq!(out, plain);

        let mut signed = Vec::with_capacity(size + size / 1000 + 4096);
        let sig_enc = best(size, || {
            signed.clear();
            sign_then_encrypt(&alice, &alice_card, &cards, &plain[..], &mut signed).unwrap();
        });
        let sig_dec = best(size, || {
            out.clear();
            decrypt(&bob, &signed[..], &mut out).unwrap();
        });

        println!(
            "{:>5} MiB  {:>6.2} GB/s {:>6.2} GB/s {:>5.0}%  {:>6.2} GB/s {:>6.2} GB/s {:>5.0}%  {:>6.2} GB/s {:>6.2} GB/s  {:>6.2} GB/s",
            size >> 20,
            raw_enc,
            env_enc,
            100.0 * env_enc / raw_enc,
            raw_dec,
            env_dec,
            100.0 * env_dec / raw_dec,
            sig_enc,
            sig_dec,
            raw_copy_enc,
        );
    }
}
