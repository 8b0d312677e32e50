//! Deterministic pseudo-random bytes (xorshift64), fast enough for
//! hundreds of MiB; shared by tests and `examples/store_bench.rs`.

/// `len` bytes that depend only on `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
