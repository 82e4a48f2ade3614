//! The `rollwave` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // ROLLWAVE_LOG takes tracing directives (e.g. `debug`, `rollwave=trace`); without it
    // only warnings are printed, and the cheaper level filter keeps start-up fast.
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    match std::env::var("ROLLWAVE_LOG") {
        Ok(directives) => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
            .init(),
        Err(_) => builder.with_max_level(tracing::Level::WARN).init(),
    }
    rollwave::cli::run(rollwave::cli::Cli::parse())
}
