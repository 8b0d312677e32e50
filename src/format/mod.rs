//! Byte formats and cryptography. Pure and synchronous: nothing in this
//! module performs I/O other than reading the operating system's random
//! number generator.
//!
//! Invariants:
//! - Every byte layout produced here is documented in `docs/FORMAT.md`,
//!   starts with a magic and a version, and parsers refuse unknown versions
//!   and unknown feature flags.
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
