//! `rollwave agent --once --repo R --cluster NAME [--kubeconfig F] [--context C]`:
//! one reconcile pass of the repository's current commit on one cluster; without
//! `--once`, the same pass every `--interval` until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::RepoArgs;
use crate::agent::{Source, reconcile_cluster};
use crate::apply::{DEFAULT_NAMESPACE, Reconciler};

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
    #[arg(long)]
    pub cluster: String,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of the inventories.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Time between passes without --once.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
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

async fn pass(args: &AgentArgs, reconciler: &Reconciler) -> anyhow::Result<bool> {
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
    let report = reconcile_cluster(&source, &args.cluster, reconciler).await?;
    print!("{}", report.table());
    for (app, r) in &report.apps {
        if let crate::agent::AppResult::ApplyFailed { message, .. }
        | crate::agent::AppResult::RenderFailed(message) = r
        {
            eprintln!("error: app '{app}': {message}");
        }
    }
    Ok(report.ok())
}

/// Runs the command.
pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
        let reconciler = Reconciler::new(client, &args.namespace);
        if args.once {
            let ok = pass(args, &reconciler).await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        let mut stop = Box::pin(super::sim::wait_for_signal());
        loop {
            // A failed pass is reported and retried next time: the agent keeps running
            // on what it applied last.
            if let Err(e) = pass(args, &reconciler).await {
                eprintln!("error: {e:#}");
            }
            tokio::select! {
                _ = tokio::time::sleep(args.interval) => {}
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}
