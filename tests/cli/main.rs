//! The `cardfs` command line, run as a real binary: identity commands and
//! the card directory. One test binary, so CI links it once.

#[path = "../support/mod.rs"]
mod support;

mod directory;
mod envelope_flags;
mod identity;
