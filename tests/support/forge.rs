//! What a hostile store or a removed member forges, built one way for every
//! test that needs it.

use cardfs::format::crypto::SecretKey;
use cardfs::format::meta::{self, AttrChange, Batch, ENTRY_MAGIC, Op, SignedHead, Time};
use ed25519_dalek::SigningKey;

/// A forged log entry of `volume` at `seq` (chained to `previous`, the
/// bytes of entry `seq - 1`), claiming `writer`'s card and `generation`,
/// sealed under `key` and signed by `signer`. Its one change makes the
/// root directory world-writable (mode 0777), so an applied forgery shows.
pub fn chmod_root_entry(
    volume: [u8; 16],
    seq: u64,
    generation: u32,
    writer: [u8; 32],
    previous: &[u8],
    key: &SecretKey,
    signer: &SigningKey,
) -> Vec<u8> {
    let head = SignedHead {
        volume,
        seq,
        generation,
        writer,
        chain: meta::sha256(previous),
    };
    let batch = Batch {
        client: [9; 16],
        client_seq: 1,
        time: Time { secs: 1, nanos: 0 },
        ops: vec![Op::SetAttr {
            node: 1,
            change: AttrChange {
                perm: Some(0o777),
                ..Default::default()
            },
        }],
    };
    meta::seal_signed(ENTRY_MAGIC, &head, key, signer, &batch.encode())
}
