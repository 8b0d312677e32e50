//! The `cardfs` command. All logic lives in the library; this is the shell.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
