//! The `rollwave` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = rollwave::cli::Cli::parse();
    rollwave::source::bound_git_network();
    rollwave::cli::run(cli)
}
