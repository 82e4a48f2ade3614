//! `rollwave ui --repo URL|PATH [--listen ADDR]`: serves the fleet web view and its
//! JSON API until interrupted.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::source::repo::GitAccess;
use crate::ui::{DEFAULT_LISTEN, Loader, UiServer};

/// Flags of `rollwave ui`.
#[derive(Debug, Clone, clap::Args)]
pub struct UiArgs {
    /// The fleet repository: a Git work tree or bare repository (its HEAD is followed
    /// as it moves) or a URL (fetched with the status refs every --fetch-interval).
    #[arg(long, env = "ROLLWAVE_REPO")]
    pub repo: String,
    /// The fleet's directory inside the repository (a fleet kept in a monorepo).
    #[arg(long, env = "ROLLWAVE_PATH")]
    pub path: Option<String>,
    /// Branch to follow when --repo is a URL.
    #[arg(long, default_value = "main", env = "ROLLWAVE_BRANCH")]
    pub branch: String,
    /// Address to serve on (port 0: any free port). The page has no login: keep it on
    /// loopback, or behind a proxy that authenticates.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// How often a URL is fetched (a path is re-read twice a second).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub fetch_interval: Duration,
    /// The status hub, when the fleet's statuses live there (watched live).
    #[command(flatten)]
    pub hub: super::HubArgs,
}

/// Serves until SIGINT or SIGTERM.
pub fn run(args: &UiArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| {
                format!(
                    "--listen {}: cannot listen there (in use? try another port, or 127.0.0.1:0 for any free one)",
                    args.listen
                )
            })?;
        let mut loader = Loader::new(
            &args.repo,
            &args.branch,
            GitAccess::from_env(),
            args.fetch_interval.max(Duration::from_millis(500)),
        )
        .with_path(args.path.clone());
        // The hub is watched when the fleet keeps its statuses there, or when the flags
        // name one: then a fleet that moves to the hub while the page is served is
        // followed without a restart.
        let hub_named = args.hub.hub_kubeconfig.is_some() || args.hub.hub_context.is_some();
        if hub_named || loader.status_store()? == crate::status::StoreKind::Kubernetes {
            let client = crate::agent::daemon::client_for(&args.hub.connection())
                .await
                .context("the status hub: reach it with --hub-kubeconfig and --hub-context (fleet.yaml's `status: {store: kubernetes}` keeps statuses there)")?;
            let hub = crate::status::hub::Hub::new(client, &args.hub.hub_namespace, Default::default());
            hub.watch();
            loader = loader.with_hub(Some(std::sync::Arc::new(hub)));
        }
        let server = UiServer::start(listener, loader).await?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "rollwave ui: serving {} (Ctrl-C stops)", server.url());
        let _ = out.flush();
        drop(out);
        tokio::select! {
            _ = crate::signals::wait_for_signal() => {}
            _ = server.wait() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
