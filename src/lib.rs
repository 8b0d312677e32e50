//! cardfs: an end-to-end encrypted filesystem over object storage, with
//! folders shared between people by public key.
//!
//! The crate is layered; each layer only calls the ones below it:
//!
//! - [`format`]: pure, synchronous byte formats and cryptography (keys,
//!   cards, envelopes, chunk streams, metadata records). No I/O.
//! - [`store`]: one narrow async trait for object storage and its
//!   implementations (local directory, S3, in-memory, fault injection).
//! - [`drive`]: the filesystem engine, generic over the store.
//! - [`fuse`]: a thin adapter from kernel FUSE callbacks to the engine.
//! - [`identity`]: the local key and card stores under `$CARDFS_HOME`, and
//!   streaming envelopes over readers and writers.
//!
//! The command line (`src/main.rs`, `src/cli/`) sits on top and is the only
//! place that uses `anyhow`; library code returns typed errors.
//!
//! `unsafe` is denied crate-wide; the few libc calls at the FUSE edge are
//! allowed item by item, each with a SAFETY comment.
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod drive;
pub mod format;
pub mod fuse;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod store;
