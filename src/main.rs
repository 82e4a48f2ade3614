//! The `rollwave` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rollwave::cli::run(rollwave::cli::Cli::parse())
}
