//! The `rollwave` command line: argument parsing (no I/O) and one module per command.
//!
//! Exit codes: 0 success; 1 the input (repository, kustomization, cluster name) is
//! wrong, with the reason on stderr; 2 the command line itself is wrong.

mod build;
mod diff;
pub mod history;
mod plan;
mod render;
pub mod repo;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// rollwave: GitOps for fleets of Kubernetes clusters, with gray-release rollouts.
#[derive(Debug, Parser)]
#[command(name = "rollwave", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format for `render`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Multi-document YAML.
    Yaml,
    /// One JSON document with every app's hash and objects.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build one kustomization root, printing YAML like `kustomize build DIR`.
    Build {
        /// The kustomization directory.
        dir: PathBuf,
        /// Directory that no path may leave (default: the enclosing Git work tree, or
        /// the filesystem root outside one, as kustomize).
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Print what the agent would apply to one cluster.
    Render {
        /// The fleet repository: a directory or a Git URL.
        #[arg(long)]
        repo: String,
        /// Any commit-ish to render instead of the working directory / branch head.
        #[arg(long)]
        rev: Option<String>,
        /// Branch to fetch when --repo is a URL.
        #[arg(long, default_value = "main")]
        branch: String,
        /// The cluster, as named in clusters/.
        #[arg(long)]
        cluster: String,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Per app: waves, the release each cluster should run now, and pending gates.
    Plan {
        /// The fleet repository: a Git work tree, bare repository or URL.
        #[arg(long)]
        repo: String,
        /// Plan as of this commit instead of the branch head.
        #[arg(long)]
        rev: Option<String>,
        /// Branch to fetch when --repo is a URL.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Plan as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Output format (json is a stable interface for scripts).
        #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Rendered differences between two revisions, per app and cluster, with a summary.
    Diff {
        /// The fleet repository: a Git work tree, bare repository or URL.
        #[arg(long)]
        repo: String,
        /// The base revision.
        #[arg(long)]
        from: String,
        /// The new revision.
        #[arg(long)]
        to: String,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Branch to fetch when --repo is a URL.
        #[arg(long, default_value = "main")]
        branch: String,
    },
    /// The fleet table (app x wave x cluster) from the status refs.
    Status {
        /// The fleet repository: a Git work tree, bare repository or URL.
        #[arg(long)]
        repo: String,
        /// Branch to fetch when --repo is a URL.
        #[arg(long, default_value = "main")]
        branch: String,
    },
    /// Render every app for every cluster and report every error (for CI).
    Validate {
        /// The fleet repository: a directory or a Git URL.
        #[arg(long)]
        repo: String,
        /// Any commit-ish to validate instead of the working directory / branch head.
        #[arg(long)]
        rev: Option<String>,
        /// Branch to fetch when --repo is a URL.
        #[arg(long, default_value = "main")]
        branch: String,
    },
}

/// Runs the parsed command, printing errors to stderr and returning the exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Build { dir, root } => build::run(&dir, root.as_deref()),
        Command::Render {
            repo,
            rev,
            branch,
            cluster,
            app,
            output,
        } => render::run(
            &repo,
            rev.as_deref(),
            &branch,
            &cluster,
            app.as_deref(),
            output,
        ),
        Command::Validate { repo, rev, branch } => validate::run(&repo, rev.as_deref(), &branch),
        Command::Plan {
            repo,
            rev,
            branch,
            at,
            output,
        } => plan::run(&repo, rev.as_deref(), &branch, at.as_deref(), output),
        Command::Diff {
            repo,
            from,
            to,
            cluster,
            app,
            branch,
        } => diff::run(
            &repo,
            &from,
            &to,
            cluster.as_deref(),
            app.as_deref(),
            &branch,
        ),
        Command::Status { repo, branch } => status::run(&repo, &branch),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
