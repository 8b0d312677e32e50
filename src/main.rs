//! The `cardfs` command. All logic lives in the library; this is the shell.
//!
//! `unsafe` is denied; the libc calls of mounting and unmounting are
//! allowed item by item, each with a SAFETY comment.
#![deny(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
