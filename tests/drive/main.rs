//! The drive engine, tested without FUSE: file operations, the reference
//! model, write-back and crashes, two clients, shares and their keys,
//! tampering by the store, and the engine over S3. One test binary, so CI
//! links it once.

#[path = "../support/mod.rs"]
mod support;

mod clone_copy;
mod crash;
mod crash_rename;
mod durability;
mod fsck;
mod gc;
mod gc_catch_up;
mod gc_log;
mod gc_revocation;
mod history;
mod locality;
mod model;
mod model_two;
mod offline;
mod ops;
mod packs;
mod read_pieces;
mod readdir;
mod repack;
mod repack_bound;
mod s3;
mod share;
mod share_history;
mod share_keys;
mod spread_reads;
mod tamper;
mod tamper_pages;
mod tamper_refs;
mod two_clients;
mod two_clients_crash;
mod writeback;
