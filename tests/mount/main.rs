//! Real mounts through FUSE: the adapter alone, the `cardfs` binary over a
//! local directory and over S3, its mount-related commands, and shared
//! folders between users. One test binary, so CI links it once; each test
//! has its own home, store and mount point, so they run side by side.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod cli_extras;
mod cli_ux;
mod control;
mod durability;
mod fsck;
mod fuse;
mod gc;
mod history;
mod invitation;
mod local;
mod offline;
mod posix;
mod s3;
mod second_machine;
mod share;
