//! `rollwave completions SHELL` and `rollwave man [--dir DIR]`: shell completion
//! scripts and manual pages, generated from the same command-line definition as
//! `--help`, so they never disagree with the binary that prints them (as `kubectl
//! completion` and `flux completion` do).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rollwave", &mut out);
    let _ = std::io::stdout().lock().write_all(&out);
    Ok(ExitCode::SUCCESS)
}

/// Prints rollwave(1) to stdout, or with `dir` writes one page per command there
/// (rollwave.1, rollwave-plan.1, ...) and lists the files written.
pub fn man(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot render the manual page")?;
            let _ = std::io::stdout().lock().write_all(&out);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("{}: cannot write the manual pages", dir.display()))?;
            let mut pages: Vec<String> = std::fs::read_dir(dir)
                .with_context(|| format!("{}: cannot list the directory", dir.display()))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("rollwave") && n.ends_with(".1"))
                .collect();
            pages.sort();
            for p in pages {
                println!("{}", dir.join(p).display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
