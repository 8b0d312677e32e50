//! Drive metadata formats, one submodule per concern (layouts in
//! docs/FORMAT.md, "Drive ..." sections):
//!
//! - [`header`]: the owner-signed drive header and the member records it
//!   and keyrings carry;
//! - [`keyring`]: a volume's keyring (the volume key wrapped to each
//!   member, the member list and key history encrypted under it);
//! - [`signed`]: the signed and encrypted box shared by log entries and
//!   snapshots;
//! - [`node`] and [`ops`]: the records inside those boxes (nodes, block
//!   refs, metadata ops, batches); [`block_map`]: a file's block refs by
//!   index, and [`name`]: a directory entry's name, as nodes hold them in
//!   memory;
//! - [`page`]: the paged checkpoint (its root, the payload of a snapshot
//!   box, and its pages of nodes);
//! - [`log_base`]: the owner-signed summary of collected log entries.
//!
//! Every item is re-exported here, so `format::meta::X` names it whatever
//! submodule holds it.
//!
//! Invariants: pure, no I/O. Every signed object is verified before any of
//! its content is decrypted or used; decoders refuse unknown magics,
//! versions, flags, tags and trailing bytes.

pub mod block_map;
pub mod header;
pub mod keyring;
pub mod log_base;
pub mod name;
pub mod node;
pub mod ops;
pub mod page;
pub mod signed;
pub mod sparse;

pub use block_map::BlockMap;
pub use header::{DriveHeader, MemberRecord};
pub use keyring::{Keyring, volume_key_context};
pub use log_base::{LOG_BASE_MAGIC, LogBase};
pub use name::Name;
pub use node::{
    BlockKey, BlockRef, DirLink, KIND_BLOCK_DEV, KIND_CHAR_DEV, KIND_DIR, KIND_FIFO, KIND_FILE,
    KIND_SOCKET, KIND_SYMLINK, KIND_VOLUME, Node, Time, is_special,
};
pub use ops::{AttrChange, Batch, Op, SnapshotBody};
pub use page::{
    CheckpointRoot, EMPTY_PAGE, MAX_BUCKET_BITS, PagePlace, bucket_of, decode_page_body,
    encode_page_body, open_page, seal_page,
};
pub use signed::{SignedHead, open_signed, peek_signed, seal_signed};

use super::crypto::{Cipher, SecretKey, hkdf};
use super::wire::{FormatError, Writer};
use ed25519_dalek::Signature;
use sha2::Digest;

pub const HEADER_MAGIC: &[u8; 4] = b"CFSD";
/// Keyring magic ("ring"; `CFSK` is the key file's).
pub const KEYRING_MAGIC: &[u8; 4] = b"CFSR";
pub const ENTRY_MAGIC: &[u8; 4] = b"CFSL";
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"CFSS";
/// A checkpoint page (content-addressed, sealed but not signed: its root
/// names its hash).
pub const PAGE_MAGIC: &[u8; 4] = b"CFSP";
/// The version of every metadata object: the drive format.
pub use crate::format::DRIVE_FORMAT as FORMAT_VERSION;
/// Length of the Ed25519 signature that ends every signed object.
const SIG_LEN: usize = 64;

/// Writes magic, version and the (zero) flags: `magic[4] version u8
/// flags u8`, the prefix of every format.
fn put_header(w: &mut Writer, magic: &[u8; 4]) {
    w.raw(magic).u8(FORMAT_VERSION).u8(0);
}

/// Length of [`put_header`]'s prefix.
const PREFIX_LEN: usize = 6;

/// Splits a signed object into the signed bytes and the signature.
fn split_sig(bytes: &[u8]) -> Result<(&[u8], Signature), FormatError> {
    if bytes.len() < SIG_LEN {
        return Err(FormatError::Truncated);
    }
    let (body, sig) = bytes.split_at(bytes.len() - SIG_LEN);
    let sig = Signature::from_slice(sig).map_err(|_| FormatError::Signature)?;
    Ok((body, sig))
}

/// SHA-256 of bytes (the hash chaining log entries).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// The cipher for one use (`label`) of a volume key.
fn subkey(volume_key: &SecretKey, volume: &[u8; 16], label: &[u8]) -> Cipher {
    Cipher::new(&hkdf(volume, volume_key.expose(), &[b"cardfs/v1/", label]))
}

/// Encrypted metadata payloads (log entries, snapshots, a keyring's secret
/// part) are padded to at least this many bytes.
pub const PAD_FLOOR: usize = 1024;
/// Up to this size payloads are padded to a power of two; above it, to a
/// Padmé class (overhead at most 6.25% there).
const PAD_POW2_UNTIL: usize = 64 << 10;

/// The padded size of a payload of `n` bytes (its u32 length included).
pub fn padded_payload_len(n: usize) -> usize {
    let n = n.max(PAD_FLOOR);
    if n <= PAD_POW2_UNTIL {
        n.next_power_of_two()
    } else {
        crate::format::content::padme(n)
    }
}

/// `len u32 || payload || zeros`, padded to [`padded_payload_len`].
fn pad(payload: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let total = padded_payload_len(4 + payload.len());
    let mut w = Writer(Vec::with_capacity(total));
    w.bytes(payload);
    w.0.resize(total, 0);
    zeroize::Zeroizing::new(w.into_vec())
}

/// Reverses [`pad`]: the padding must be canonical (the exact size class
/// of the payload, zeros only).
fn unpad(plain: &[u8]) -> Result<&[u8], FormatError> {
    let mut r = super::wire::Reader::new(plain);
    let payload = r.bytes()?;
    let rest = &plain[r.position()..];
    if plain.len() != padded_payload_len(4 + payload.len()) || rest.iter().any(|b| *b != 0) {
        return Err(FormatError::Invalid("padding"));
    }
    Ok(payload)
}
