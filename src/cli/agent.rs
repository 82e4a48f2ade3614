//! `rollwave agent --config agent.yaml`: the agent for one or several clusters (see
//! [`crate::agent::config`] for the file). Flags override the file; without a file,
//! `--repo` and `--cluster` (or their `ROLLWAVE_*` variables) describe one cluster.
//! `--once` makes one pass, prints its table and exits 0 when every app applied, 1
//! otherwise; without it the agent runs until SIGTERM or Ctrl-C. A cluster that does
//! not answer, or answers 429 to everything, fails its pass within about a minute
//! (see [`crate::apply::retry::CALL_DEADLINE`]).
//!
//! With a Git repository (a URL, or the path of a repository) and no `--rev`, the
//! rollout planner decides the release of each app from the peers' status refs and the
//! agent writes (and pushes) its own status: the gray release. With a plain directory
//! or `--rev`, that tree is applied as it is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::agent::config::{self, AgentConfig, ClusterConfig, Connection, LogFormat};
use crate::agent::daemon::Agent;

/// Flags of `rollwave agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The agent config file (agent.yaml); the flags below override it.
    #[arg(long, env = "ROLLWAVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Apply once and exit: 0 when every app applied, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// The fleet repository: a URL, a Git repository, or a plain directory.
    #[arg(long, env = "ROLLWAVE_REPO")]
    pub repo: Option<String>,
    /// The fleet's directory inside the repository (a fleet kept in a monorepo).
    #[arg(long, env = "ROLLWAVE_PATH")]
    pub path: Option<String>,
    /// Apply this commit-ish as it is, without rollout planning.
    #[arg(long)]
    pub rev: Option<String>,
    /// Branch followed when the repository is a URL (default main).
    #[arg(long, env = "ROLLWAVE_BRANCH")]
    pub branch: Option<String>,
    /// Manage only this cluster (as named in clusters/) instead of the config's list.
    #[arg(long, env = "ROLLWAVE_CLUSTER")]
    pub cluster: Option<String>,
    /// Kubeconfig file for --cluster (default: $KUBECONFIG, ~/.kube/config, or
    /// in-cluster).
    #[arg(long, requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --cluster (default: the current one).
    #[arg(long, requires = "cluster")]
    pub context: Option<String>,
    /// Namespace of the inventories (default rollwave-system).
    #[arg(long, env = "ROLLWAVE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Poll interval (default 30s); the webhook and file watch wake the agent sooner.
    #[arg(long, value_parser = humantime::parse_duration, env = "ROLLWAVE_INTERVAL")]
    pub interval: Option<Duration>,
    /// Shortest time between drift-triggered passes (default 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drift_interval: Option<Duration>,
    /// How often the status is written even when nothing changed (default 60s).
    #[arg(long, value_parser = humantime::parse_duration, env = "ROLLWAVE_HEARTBEAT")]
    pub heartbeat: Option<Duration>,
    /// Where to serve /metrics, /healthz, /readyz and /hooks/git (default
    /// 127.0.0.1:9090).
    #[arg(long, env = "ROLLWAVE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Do not push the status ref (a read-only agent; the fleet needs `gate: time`).
    #[arg(long)]
    pub no_push: bool,
    /// Log format (default text).
    #[arg(long, value_enum, env = "ROLLWAVE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Requests in flight to each cluster at once, and apps reconciled side by side
    /// (default 32; agent.yaml `apply.concurrency`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,
    /// Requests a second to each cluster, on average; 0 for no limit (default 500;
    /// agent.yaml `apply.qps`).
    #[arg(long)]
    pub qps: Option<u32>,
}

/// The configuration the flags and the file describe together.
pub fn resolve(args: &AgentArgs) -> anyhow::Result<AgentConfig> {
    let mut c = match &args.config {
        Some(path) => config::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(repo) = &args.repo {
        c.repo = repo.clone();
    }
    if let Some(path) = &args.path {
        c.repo_path = Some(path.clone());
    }
    if c.repo.is_empty() {
        anyhow::bail!("no repository: give --config agent.yaml, or --repo URL|PATH");
    }
    if args.rev.is_some() {
        c.rev = args.rev.clone();
    }
    if let Some(b) = &args.branch {
        c.branch = b.clone();
    }
    if let Some(name) = &args.cluster {
        let from_file = c.clusters.iter().find(|k| &k.name == name).cloned();
        let connection = match (&args.kubeconfig, &args.context, from_file) {
            (None, None, Some(k)) => k.connection,
            (path, context, _) => Connection::Kubeconfig {
                path: path.clone(),
                context: context.clone(),
            },
        };
        c.clusters = vec![ClusterConfig {
            name: name.clone(),
            connection,
            prometheus: None,
        }];
    }
    if c.clusters.is_empty() {
        anyhow::bail!("no cluster: give --config agent.yaml, or --cluster NAME");
    }
    if let Some(n) = &args.namespace {
        c.namespace = n.clone();
    }
    for (flag, value, field) in [
        ("--interval", args.interval, &mut c.interval),
        (
            "--drift-interval",
            args.drift_interval,
            &mut c.drift_interval,
        ),
        ("--heartbeat", args.heartbeat, &mut c.heartbeat),
    ] {
        if let Some(v) = value {
            if v.is_zero() {
                anyhow::bail!("{flag} must be longer than 0s");
            }
            *field = v;
        }
    }
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if args.no_push {
        c.push_status = false;
    }
    if let Some(f) = args.log_format {
        c.log_format = f;
    }
    if let Some(n) = args.concurrency {
        c.apply.concurrency = usize::from(n);
    }
    if let Some(q) = args.qps {
        c.apply.qps = f64::from(q);
    }
    Ok(c)
}

/// Runs the command.
pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(args)?;
    if !args.once {
        config.webhook_secrets()?;
    }
    super::init_logging(
        config.log_format,
        if args.once { "warn" } else { &config.log_level },
    );
    if !config.push_status {
        tracing::info!("status push is off: peers cannot see this agent; use gate: time");
    }
    // One thread: the agent waits on the network most of the time, and a single
    // allocator arena keeps its memory small with thousands of managed objects.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if args.once {
            let mut agent = Agent::connect(config, false).await?;
            let mut ok = true;
            let several = agent.cluster_names().len() > 1;
            for (cluster, result) in agent.pass().await {
                if several {
                    println!("# cluster {cluster}");
                }
                match result {
                    Ok(r) => ok &= report(&cluster, &r),
                    Err(e) => {
                        eprintln!("error: cluster '{cluster}': {e:#}");
                        ok = false;
                    }
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        let stop = crate::signals::wait_for_signal();
        let agent = Agent::connect(config, true).await?;
        agent.run(stop).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn report(cluster: &str, report: &crate::agent::PassReport) -> bool {
    print!("{}", report.table());
    for (app, r) in &report.apps {
        if let crate::agent::AppResult::ApplyFailed { message, .. }
        | crate::agent::AppResult::RenderFailed(message) = r
        {
            eprintln!("error: cluster '{cluster}': app '{app}': {message}");
        }
    }
    report.ok()
}
