//! Identity and envelopes: the card directory, signed and encrypted
//! envelopes, the fuzz targets on their corpora (identity formats) and on
//! mutated seeds (drive formats), and the committed
//! known-answer vectors. One test binary, so CI links it once.
//!
//! `identity_stream_memory.rs` stays a binary of its own: it installs a
//! counting global allocator, which other tests running beside it would
//! disturb.

mod directory;
mod drive_fuzz_smoke;
mod envelope;
mod fuzz_smoke;
mod vectors;
