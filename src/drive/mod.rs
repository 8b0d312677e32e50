//! The filesystem engine: inodes, metadata, cache, upload queue, sync and
//! sharing, generic over [`crate::store::ObjectStore`] and testable without
//! the kernel.
//!
//! Invariants (to hold as the engine is built):
//! - The store only ever sees random-looking object names and ciphertext.
//! - Every metadata change is signed by its writer and verified before use.
//! - A change acknowledged by `fsync` survives a crash of the process.
