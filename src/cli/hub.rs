//! `rollwave hub init --repo R [--agent-config FILE]... [--reader SUBJECT]...
//! [--check | --apply]`: the status hub's objects for the fleet's clusters
//! ([`crate::status::hub_init`]), printed as YAML, compared with the hub, or applied
//! to it. Exit 0; with `--check`, 1 when anything is missing or differs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{HubArgs, RepoArgs};
use crate::status::hub_init::{self, Subject};

/// Flags of `rollwave hub init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Which repository and revision.
    #[command(flatten)]
    pub source: RepoArgs,
    /// An agent config (agent.yaml) whose clusters share one agent, named after the
    /// file (repeatable); every other cluster of the fleet gets an agent of its own.
    #[arg(long = "agent-config", value_name = "FILE")]
    pub agent_configs: Vec<PathBuf>,
    /// Who else reads every status, bound to the reader Role: user:NAME, group:NAME
    /// or serviceaccount:NAMESPACE:NAME (repeatable).
    #[arg(long = "reader", value_name = "SUBJECT", value_parser = reader)]
    pub readers: Vec<Subject>,
    /// Report, one line per object, what the hub lacks or holds differently; write
    /// nothing. Exit 1 when anything is missing or differs.
    #[arg(long, conflicts_with = "apply")]
    pub check: bool,
    /// Write what the hub lacks or holds differently, with server-side apply.
    #[arg(long)]
    pub apply: bool,
    /// The status hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

fn reader(text: &str) -> Result<Subject, String> {
    hub_init::parse_subject(text).map_err(|e| e.to_string())
}

/// Makes the objects, then prints, checks or applies them.
pub fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let opened = args.source.open_tree()?;
    let (fleet, _) = crate::fleet::load_apps_apart(opened.tree.as_ref())
        .with_context(|| format!("reading the fleet in {}", args.source.repo))?;
    if fleet.settings.status_store != crate::status::StoreKind::Kubernetes {
        eprintln!(
            "note: fleet.yaml keeps statuses in Git; agents use the hub once it says `status: {{store: kubernetes}}`"
        );
    }
    let mut configs = Vec::new();
    for path in &args.agent_configs {
        let config = crate::agent::config::load(path)?;
        if config.hub.is_none() {
            eprintln!(
                "warning: {}: no `hub:`, so its agent cannot reach the hub; add one (docs/operations/agent.md)",
                path.display()
            );
        }
        configs.push((path.as_path(), config));
    }
    let configs: Vec<_> = configs.iter().map(|(p, c)| (*p, c)).collect();
    let clusters: Vec<String> = fleet.clusters.iter().map(|c| c.name.clone()).collect();
    let namespace = &args.hub.hub_namespace;
    let agents = hub_init::agents(&clusters, &configs, namespace)?;
    let objects = hub_init::objects(namespace, &agents, &args.readers)?;
    if !args.check && !args.apply {
        print!("{}", objects.to_yaml());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = crate::agent::daemon::client_for(&args.hub.connection())
            .await
            .context("reach the hub with --hub-kubeconfig and --hub-context")?;
        if args.check {
            let findings = hub_init::check(&client, &objects).await?;
            for f in &findings {
                println!("{f}");
            }
            let failing = findings.iter().filter(|f| f.fails()).count();
            if failing > 0 {
                eprintln!(
                    "{failing} of {} objects missing or different; `rollwave hub init --apply` makes them",
                    objects.objects.len()
                );
                return Ok(ExitCode::from(1));
            }
            return Ok(ExitCode::SUCCESS);
        }
        for a in hub_init::apply(&client, &objects).await? {
            println!("{a}");
        }
        eprintln!(
            "each agent reaches the hub with a token of its ServiceAccount in its config's `hub:` kubeconfig, e.g. `kubectl create token {} -n {namespace}`",
            hub_init::agent_service_account(agents.first().map_or("AGENT", |a| a.name.as_str()))
        );
        Ok(ExitCode::SUCCESS)
    })
}
