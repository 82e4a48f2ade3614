//! The `rollwave` command line: argument parsing (no I/O) and one module per command.
//!
//! Exit codes: 0 success; 1 the input (repository, kustomization, cluster name) is
//! wrong, with the reason on stderr; 2 the command line itself is wrong.

mod agent;
mod build;
mod codeowners;
mod demo;
mod diff;
mod diff_live;
mod fleet_commit;
mod freeze;
mod hub;
mod pause;
mod plan;
mod render;
mod shell;
mod sim;
mod status;
mod statuses;
mod ui;
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

/// Output format for `plan`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    /// A table for people: per app its policy, each cluster's wave and target, and the
    /// gates of pending releases (`yaml` is accepted for compatibility).
    #[value(alias = "yaml")]
    Text,
    /// One JSON document per fleet: per app its waves, targets, decisions, pending
    /// releases with their gates, and analysis (a stable interface for scripts).
    Json,
}

/// How the commands that read statuses reach the status hub, for a fleet whose
/// fleet.yaml says `status: {store: kubernetes}` (ignored otherwise).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HubArgs {
    /// The status hub's kubeconfig (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "ROLLWAVE_HUB_KUBECONFIG")]
    pub hub_kubeconfig: Option<PathBuf>,
    /// The status hub's kubeconfig context (default: the current context).
    #[arg(long, env = "ROLLWAVE_HUB_CONTEXT")]
    pub hub_context: Option<String>,
    /// The hub namespace of the status objects.
    #[arg(long, env = "ROLLWAVE_HUB_NAMESPACE", default_value = crate::status::object::NAMESPACE)]
    pub hub_namespace: String,
}

impl HubArgs {
    /// The hub connection these flags describe.
    pub fn connection(&self) -> crate::agent::config::Connection {
        crate::agent::config::Connection::Kubeconfig {
            path: self.hub_kubeconfig.clone(),
            context: self.hub_context.clone(),
        }
    }
}

/// `--repo`, `--rev` and `--branch`, shared by the commands that read a fleet.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// The fleet repository: a directory, a Git work tree or bare repository, or a URL.
    /// A directory inside a work tree reads the fleet there, with the enclosing
    /// repository's history.
    #[arg(long, env = "ROLLWAVE_REPO")]
    pub repo: String,
    /// The fleet's directory inside the repository (a fleet kept in a monorepo).
    #[arg(long, env = "ROLLWAVE_PATH")]
    pub path: Option<String>,
    /// Any commit-ish to read instead of the working directory (paths) or the head of
    /// --branch (URLs).
    #[arg(long)]
    pub rev: Option<String>,
    /// Branch to fetch when --repo is a URL.
    #[arg(long, default_value = "main", env = "ROLLWAVE_BRANCH")]
    pub branch: String,
}

impl RepoArgs {
    /// The fleet's files as these arguments name them (a directory, a revision, or a
    /// fetched remote).
    pub fn open_tree(
        &self,
    ) -> Result<crate::source::repo::OpenedRepo, crate::source::repo::RepoError> {
        crate::source::repo::open_tree(
            &self.repo,
            self.path.as_deref(),
            self.rev.as_deref(),
            &self.branch,
        )
    }
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
        /// Which repository and revision.
        #[command(flatten)]
        source: RepoArgs,
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
        /// Which repository and revision.
        #[command(flatten)]
        source: RepoArgs,
        /// Plan as of this time (RFC 3339) instead of now.
        #[arg(long, conflicts_with = "from")]
        at: Option<String>,
        /// Instead of the plan now: which releases merging the commits after this
        /// revision creates per app, where their renderings change and how their
        /// rollout plans change (a change to fleet.yaml or a cluster file can touch
        /// every app).
        #[arg(long)]
        from: Option<String>,
        /// With --from: the revision merged (default: --rev, or the branch's head).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Output format: text for people, json for scripts.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: PlanFormat,
        /// The status hub, when the fleet's statuses live there.
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Rendered differences between two revisions, per app and cluster, with a summary.
    Diff {
        /// The fleet repository: a Git work tree, bare repository or URL.
        #[arg(long)]
        repo: String,
        /// The fleet's directory inside the repository (a fleet kept in a monorepo).
        #[arg(long)]
        path: Option<String>,
        /// The base revision (not with --live).
        #[arg(long, required_unless_present = "live", conflicts_with = "live")]
        from: Option<String>,
        /// The new revision (not with --live).
        #[arg(long, required_unless_present = "live", conflicts_with = "live")]
        to: Option<String>,
        /// Compare the live objects of --cluster with what applying the repository
        /// (at --rev, default its current state) would make of them, by server-side
        /// dry run. Each app is checked against its tenancy policy first and, when the
        /// policy names a serviceAccount, read and dry-run as that ServiceAccount (the
        /// kubeconfig's user must be allowed to impersonate it). Exit 0 when every app
        /// was compared, differences or not; 1 when one could not be, with the reason.
        #[arg(long, requires = "cluster")]
        live: bool,
        /// With --live: the revision to render.
        #[arg(long, requires = "live")]
        rev: Option<String>,
        /// With --live: kubeconfig file.
        #[arg(long, requires = "live")]
        kubeconfig: Option<PathBuf>,
        /// With --live: kubeconfig context.
        #[arg(long, requires = "live")]
        context: Option<String>,
        /// With --live: namespace of the inventories.
        #[arg(long, default_value = crate::apply::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Branch to fetch when --repo is a URL.
        #[arg(long, default_value = "main")]
        branch: String,
        /// With --from/--to: `text`, `markdown` (a pull-request comment: clusters with
        /// the same difference grouped, within a comment's size limit) or `json`.
        /// Secret values are masked in every format.
        #[arg(long, value_enum, default_value = "text", conflicts_with = "live")]
        format: diff::DiffFormat,
    },
    /// The fleet table (app x wave x cluster) from the status refs, or the status hub.
    Status {
        /// Which repository and revision.
        #[command(flatten)]
        source: RepoArgs,
        /// The status hub, when the fleet's statuses live there.
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Render every app for every cluster and report every error (for CI).
    Validate {
        /// Which repository and revision.
        #[command(flatten)]
        source: RepoArgs,
    },
    /// Prints a CODEOWNERS file from the `owners` fields of fleet.yaml (the platform
    /// team: the fleet's own files and apps without owners) and each app.yaml (its
    /// `apps/<app>/` directory), so that review follows tenancy. Write it to
    /// `.github/CODEOWNERS` (GitHub) or `CODEOWNERS` (GitLab).
    Codeowners {
        /// Which repository and revision.
        #[command(flatten)]
        source: RepoArgs,
    },
    /// Pause an app: no wave takes a new release of it until it is resumed (reverts
    /// still go through). Writes `paused: true` and `pauseReason` into its app.yaml as
    /// a commit, on the checked-out branch or with --branch on a new one for review.
    Pause {
        /// The app (a directory under apps/).
        app: String,
        /// Why, for the people who see the rollout stop.
        #[arg(long)]
        reason: String,
        /// Where the commit goes.
        #[command(flatten)]
        target: fleet_commit::CommitTarget,
    },
    /// Resume a paused app: takes `paused` and `pauseReason` out of its app.yaml as a
    /// commit (see `pause`).
    Resume {
        /// The app (a directory under apps/).
        app: String,
        /// Where the commit goes.
        #[command(flatten)]
        target: fleet_commit::CommitTarget,
    },
    /// Stop the line: no agent opens a new wave in the freeze's scope (reverts still go
    /// through). Writes a `freeze:` entry into fleet.yaml as a commit, on the
    /// checked-out branch or with --branch on a new one for review.
    Freeze {
        /// Why, for the people who see every rollout stop.
        #[arg(long)]
        reason: String,
        /// When the freeze ends by itself (RFC 3339); without it, `unfreeze` ends it.
        #[arg(long)]
        until: Option<String>,
        /// Only clusters of this stage (repeatable).
        #[arg(long = "stage")]
        stages: Vec<String>,
        /// Only this app (repeatable).
        #[arg(long = "app")]
        apps: Vec<String>,
        /// Who says so (recorded with the reason).
        #[arg(long)]
        by: Option<String>,
        /// Where the commit goes.
        #[command(flatten)]
        target: fleet_commit::CommitTarget,
    },
    /// Lift the freeze: takes `freeze:` out of fleet.yaml as a commit (see `freeze`).
    Unfreeze {
        /// Where the commit goes.
        #[command(flatten)]
        target: fleet_commit::CommitTarget,
    },
    /// Start simulated Kubernetes clusters on loopback and write a kubeconfig for them.
    Sim(sim::SimArgs),
    /// Apply the fleet repository to one cluster: once (--once) or every --interval.
    Agent(agent::AgentArgs),
    /// The whole story on this machine: a fleet of simulated clusters, a good change
    /// rolling out wave by wave, a bad one halting at the canary, and its revert.
    Demo(demo::DemoArgs),
    /// Print a shell completion script: `rollwave completions bash >
    /// ~/.local/share/bash-completion/completions/rollwave`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page rollwave(1), or write one page per command to --dir.
    Man {
        /// Write rollwave.1 and one rollwave-COMMAND.1 per command here (e.g.
        /// ~/.local/share/man/man1) instead of printing rollwave.1.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Serve a web page of the fleet's rollouts (and its JSON API), updated live from
    /// the status refs.
    Ui(ui::UiArgs),
    /// The status hub, for fleets whose fleet.yaml says `status: {store: kubernetes}`.
    Hub {
        /// What to do with it.
        #[command(subcommand)]
        command: HubCommand,
    },
}

/// The subcommands of `rollwave hub`.
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Everything the hub needs for the fleet's clusters, printed, checked or applied.
    ///
    /// The namespace, a reader Role, per agent a ServiceAccount that may write only its
    /// own clusters' status objects, and those objects, empty. Prints them as YAML
    /// (for `kubectl apply --server-side -f -`), or with --check compares them with the
    /// hub, or with --apply writes what the hub lacks.
    Init(hub::InitArgs),
}

/// Sends logs to stderr in `format`. `ROLLWAVE_LOG` (tracing directives such as
/// `debug` or `rollwave=trace`) overrides `default_directives`. Only the first call in a
/// process takes effect.
pub fn init_logging(format: crate::agent::config::LogFormat, default_directives: &str) {
    let directives = std::env::var("ROLLWAVE_LOG").unwrap_or_else(|_| default_directives.into());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match format {
        crate::agent::config::LogFormat::Text => builder.try_init(),
        crate::agent::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the parsed command, printing errors to stderr and returning the exit code.
pub fn run(cli: Cli) -> ExitCode {
    // The agent sets up logging from its config; every other command logs warnings.
    // The web view re-reads the status refs twice a second: it reports an unreadable
    // one when the set changes (and on the page), not on every read.
    match cli.command {
        Command::Agent(_) => {}
        Command::Ui(_) => init_logging(
            crate::agent::config::LogFormat::Text,
            "warn,rollwave::source::statusref=error",
        ),
        _ => init_logging(crate::agent::config::LogFormat::Text, "warn"),
    }
    let result = match cli.command {
        Command::Build { dir, root } => build::run(&dir, root.as_deref()),
        Command::Render {
            source,
            cluster,
            app,
            output,
        } => render::run(&source, &cluster, app.as_deref(), output),
        Command::Validate { source } => validate::run(&source),
        Command::Codeowners { source } => codeowners::run(&source),
        Command::Pause {
            app,
            reason,
            target,
        } => pause::run(&target, &app, Some(&reason)),
        Command::Resume { app, target } => pause::run(&target, &app, None),
        Command::Freeze {
            reason,
            until,
            stages,
            apps,
            by,
            target,
        } => freeze::run(
            &target,
            Some(crate::fleet::edit::FreezeEntry {
                reason,
                by,
                until,
                stages,
                apps,
            }),
        ),
        Command::Unfreeze { target } => freeze::run(&target, None),
        Command::Plan {
            source,
            from: Some(from),
            to,
            output,
            ..
        } => plan::run_changes(&source, (&from, to.as_deref()), output),
        Command::Plan {
            source,
            at,
            output,
            hub,
            ..
        } => plan::run(&source, at.as_deref(), output, &hub),
        Command::Diff {
            repo,
            path,
            from,
            to,
            live,
            rev,
            kubeconfig,
            context,
            namespace,
            cluster,
            app,
            branch,
            format,
        } => match (live, from, to, cluster) {
            (true, _, _, Some(cluster)) => diff_live::run(
                (&repo, path.as_deref()),
                rev.as_deref(),
                &branch,
                &diff_live::LiveCluster {
                    name: &cluster,
                    kubeconfig: kubeconfig.as_ref(),
                    context: context.as_deref(),
                    namespace: &namespace,
                },
                app.as_deref(),
            ),
            (false, Some(from), Some(to), cluster) => diff::run(
                (&repo, path.as_deref()),
                (&from, &to),
                cluster.as_deref(),
                app.as_deref(),
                &branch,
                format,
            ),
            _ => Err(anyhow::anyhow!(
                "diff needs --from and --to, or --live and --cluster"
            )),
        },
        Command::Status { source, hub } => status::run(&source, &hub),
        Command::Sim(args) => sim::run(&args),
        Command::Agent(args) => agent::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Completions { shell } => shell::completions(shell),
        Command::Man { dir } => shell::man(dir.as_deref()),
        Command::Ui(args) => ui::run(&args),
        Command::Hub {
            command: HubCommand::Init(args),
        } => hub::init(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
