//! `rollwave agent --once --repo R --cluster NAME [--kubeconfig F] [--context C]`:
//! one reconcile pass on one cluster; without `--once`, the same pass every
//! `--interval`, and whenever a watched object changes, until SIGTERM or Ctrl-C.
//!
//! With a Git repository (a URL, or the path of a repository) and no `--rev`, the
//! rollout planner decides the release of each app from the peers' status refs and the
//! agent writes (and pushes) its own status: the gray release. With a plain directory
//! or `--rev`, that tree is applied as it is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::RepoArgs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::agent::rollout::ClusterAgent;
use crate::agent::{Memory, Source, reconcile_cluster_with};
use crate::apply::drift::LiveCache;
use crate::apply::{DEFAULT_NAMESPACE, Reconciler};
use crate::metrics::Metrics;

/// Flags of `rollwave agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Apply once and exit: 0 when every app applied, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// Which repository and revision.
    #[command(flatten)]
    pub source: RepoArgs,
    /// The cluster this agent manages, as named in clusters/.
    #[arg(long, env = "ROLLWAVE_CLUSTER")]
    pub cluster: String,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of the inventories.
    #[arg(long, default_value = DEFAULT_NAMESPACE, env = "ROLLWAVE_NAMESPACE")]
    pub namespace: String,
    /// Time between passes without --once.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "ROLLWAVE_INTERVAL")]
    pub interval: Duration,
    /// Shortest time between drift-triggered passes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub drift_interval: Duration,
    /// How often the cluster's status is written even when nothing changed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, env = "ROLLWAVE_HEARTBEAT")]
    pub heartbeat: Duration,
    /// Where to serve /metrics, /healthz and /readyz without --once.
    #[arg(long, default_value = "127.0.0.1:9090", env = "ROLLWAVE_LISTEN")]
    pub listen: std::net::SocketAddr,
}

/// A client for the cluster the flags name.
pub async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("cannot load the kubeconfig context")?,
        None => kube::Config::infer().await.context(
            "no cluster configured: pass --kubeconfig, set KUBECONFIG, or run in a cluster",
        )?,
    };
    kube::Client::try_from(config).context("cannot create a Kubernetes client")
}

async fn pass(
    args: &AgentArgs,
    reconciler: &Reconciler,
    memory: &mut Memory,
    metrics: Option<&Metrics>,
) -> anyhow::Result<bool> {
    let opened = super::repo::open(
        &args.source.repo,
        args.source.rev.as_deref(),
        &args.source.branch,
    )?;
    let tree = opened.tree.as_ref();
    let fleet = crate::fleet::load(tree)?;
    let release_of = |app: &str, files: &std::collections::BTreeSet<crate::tree::RepoPath>| {
        opened.release_of(&crate::source::history::Inputs::for_app(app, files))
    };
    let source = Source {
        tree,
        fleet: &fleet,
        release_of: &release_of,
    };
    let r = reconcile_cluster_with(&source, &args.cluster, reconciler, memory, metrics).await?;
    Ok(report(&r))
}

/// Whether the repository has history to plan a rollout with.
fn rollout_mode(args: &AgentArgs) -> bool {
    args.source.rev.is_none()
        && (crate::source::is_remote_url(&args.source.repo)
            || git2::Repository::open(&args.source.repo).is_ok())
}

fn report(report: &crate::agent::PassReport) -> bool {
    print!("{}", report.table());
    for (app, r) in &report.apps {
        if let crate::agent::AppResult::ApplyFailed { message, .. }
        | crate::agent::AppResult::RenderFailed(message) = r
        {
            eprintln!("error: app '{app}': {message}");
        }
    }
    report.ok()
}

/// How passes are made: the rollout-aware agent, or the tree as it is.
enum Runner {
    Rollout(Box<ClusterAgent>),
    Direct(Box<(Reconciler, Memory)>),
}

impl Runner {
    async fn pass(&mut self, args: &AgentArgs, metrics: Option<&Metrics>) -> anyhow::Result<bool> {
        match self {
            Runner::Rollout(agent) => {
                let r = agent
                    .pass(
                        &args.source.repo,
                        &args.source.branch,
                        std::time::SystemTime::now(),
                    )
                    .await?;
                Ok(report(&r))
            }
            Runner::Direct(direct) => {
                let (reconciler, memory) = &mut **direct;
                pass(args, reconciler, memory, metrics).await
            }
        }
    }
}

/// `/metrics`, `/healthz` (the process is up) and `/readyz` (a pass has completed).
fn endpoints(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Acquire) {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the first pass has not finished",
                        )
                    }
                }
            }),
        )
}

/// A pass renders every app and drops the results; hand the freed pages back to the
/// system so the resident size reflects what the agent keeps, not its peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs the command.
pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    // One thread: the agent waits on the network most of the time, and a single
    // allocator arena keeps its memory small with thousands of managed objects.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
        let make = |reconciler: Reconciler| {
            if rollout_mode(args) {
                Runner::Rollout(Box::new(ClusterAgent::new(
                    &args.cluster,
                    reconciler,
                    args.heartbeat,
                )))
            } else {
                Runner::Direct(Box::new((reconciler, Memory::default())))
            }
        };
        if args.once {
            let mut runner = make(Reconciler::new(client, &args.namespace));
            let ok = runner.pass(args, None).await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        let cache = LiveCache::new(client.clone());
        let mut runner = make(Reconciler::new(client, &args.namespace).with_cache(cache.clone()));
        let metrics = Arc::new(Metrics::new());
        let ready = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let app = endpoints(metrics.clone(), ready.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut stop = super::sim::wait_for_signal();
        loop {
            // A failed pass is reported and retried next time: the agent keeps running
            // on what it applied last.
            match runner.pass(args, Some(&metrics)).await {
                Ok(_) => ready.store(true, Ordering::Release),
                Err(e) => eprintln!("error: {e:#}"),
            }
            release_freed_memory();
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
                _ = tokio::time::sleep(args.interval) => {}
                apps = cache.drifted() => {
                    tracing::info!(apps = apps.len(), "live objects changed; reconciling");
                    tracing::debug!(?apps, "changed apps");
                    tokio::time::sleep(args.drift_interval).await;
                }
            }
        }
    })
}
