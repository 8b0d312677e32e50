//! Byte formats and cryptography. Pure and synchronous: nothing in this
//! module performs I/O other than reading the operating system's random
//! number generator.
//!
//! Invariants:
//! - Every byte layout produced here is documented in `docs/FORMAT.md`,
//!   starts with `magic[4] || version u8 || flags u8` (content chunks bind
//!   the same into their AAD), no two formats share a magic, and parsers
//!   refuse unknown versions and unknown feature flags.
//! - Secret material lives in types that zeroize on drop and never print
//!   their contents through `Debug`.

pub mod card;
pub mod content;
pub mod crypto;
pub mod envelope;
pub mod hex;
pub mod key;
pub mod keyfile;
pub mod meta;
pub mod wire;

/// The drive format version: every drive object (header, keyring, log
/// entry, snapshot, content block) of a drive is of this version. Version
/// 1 drives are refused with `drive::DriveError::OldFormat`.
pub const DRIVE_FORMAT: u8 = 2;
