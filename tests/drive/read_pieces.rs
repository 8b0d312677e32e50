//! Reads built from pieces: a read spanning stored blocks, holes, the
//! zeros past a short block and unsealed write buffers is joined from
//! them. Every read, at any offset and length, equals a plain model of the
//! file, on a cold cache (from the store), warm (decrypted blocks in
//! memory) and from the cache directory (a later client on the same
//! cache).

use crate::support::drive::*;
use crate::support::pattern;
use cardfs::drive::*;

const MIB: u64 = 1 << 20;

/// Reads of every kind of span: within a block, across one or two block
/// boundaries, into and out of holes, past the end.
fn spans(size: u64) -> Vec<(u64, u32)> {
    vec![
        (0, 4096),
        (MIB - 100, 300),
        (MIB - 1, 2),
        (0, 3 << 20),
        (2 * MIB - 4096, 8192 + MIB as u32),
        (2 * MIB + 12_345, 4096),
        (2 * MIB + MIB / 2 - 10, 20),
        (3 * MIB - 1, 1),
        (4 * MIB + 100, MIB as u32),
        (size - 10, 100),
        (size, 10),
        (size + 5000, 10),
    ]
}

async fn check_reads(d: &Drive, ino: Ino, model: &[u8], what: &str) {
    let fh = d.open(ino, libc::O_RDONLY).await.unwrap();
    // Each span twice: the second read finds the decrypted blocks the
    // first left in memory; the order mixes sequential and random reads.
    for pass in 0..2 {
        for (off, len) in spans(model.len() as u64) {
            let got = d.read(ino, fh, off, len).await.unwrap();
            let start = (off as usize).min(model.len());
            let end = (off as usize).saturating_add(len as usize).min(model.len());
            assert!(
                got[..] == model[start..end],
                "{what}, pass {pass}: read of {len} at {off} differs from the model"
            );
        }
    }
    d.release(ino, fh).await.unwrap();
}

#[tokio::test]
async fn reads_across_blocks_holes_and_buffers_equal_the_model() {
    let env = Env::new().await;
    let d = env.open().await;
    // Two and a half blocks of data, a hole up to 5 MiB, then 3 bytes; the
    // third block is stored short (half a block), so reads past its
    // stored length get zeros up to the hole.
    let mut model = pattern(5 * MIB as usize / 2, 3);
    let ino = put(&d, ROOT_INO, "f", &model).await;
    let fh = d.open(ino, libc::O_RDWR).await.unwrap();
    let far = 5 * MIB + 123;
    d.write(ino, fh, far, b"end").await.unwrap();
    d.release(ino, fh).await.unwrap();
    model.resize(far as usize, 0);
    model.extend_from_slice(b"end");
    sync(&d).await;
    check_reads(&d, ino, &model, "writer").await;
    d.shutdown().await.unwrap();

    // Another client, empty cache: every stored piece comes from the store.
    let other = env.open_with("other").await;
    check_reads(&other, ino, &model, "cold").await;
    // Unsealed writes inside block 1 and across blocks 2-3: a read spanning
    // them joins buffers, stored blocks and zeros.
    let fh = other.open(ino, libc::O_RDWR).await.unwrap();
    for (at, bytes) in [
        (MIB + 10, vec![0xa5u8; 5000]),
        (3 * MIB - 7, vec![0x5au8; 20]),
    ] {
        other.write(ino, fh, at, &bytes).await.unwrap();
        model[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    }
    check_reads(&other, ino, &model, "unsealed writes").await;
    other.release(ino, fh).await.unwrap();
    sync(&other).await;
    other.shutdown().await.unwrap();

    // The same cache directory again: the pieces come from cached objects.
    let again = env.open_with("other").await;
    check_reads(&again, ino, &model, "cached").await;
    again.shutdown().await.unwrap();
}
