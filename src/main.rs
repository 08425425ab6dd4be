//! The `cairn` binary: parse arguments, run one command, print, exit with cli.md's code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
