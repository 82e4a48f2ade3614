//! `rollwave hub init --repo R [--agent-config FILE]... [--reader SUBJECT]...
//! [--check | --apply]`: the status hub's objects for the fleet's clusters
//! ([`crate::status::hub_init`]), printed as YAML, compared with the hub, or applied
//! to it. Exit 0; with `--check`, 1 when anything is missing or differs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{HubArgs, RepoArgs};
use crate::status::hub_init::{self, Identity, Subject};

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
    /// Who an agent authenticates to the hub as, when not the ServiceAccount made for
    /// it: AGENT=user:NAME, AGENT=group:NAME or AGENT=serviceaccount:NAMESPACE:NAME,
    /// AGENT being a cluster's name or an agent config's file name (repeatable). An
    /// agent config with `hub: {inCluster: true}` is by default
    /// serviceaccount:rollwave-system:rollwave-agent, as deploy/ runs it.
    #[arg(long = "agent-identity", value_name = "AGENT=SUBJECT", value_parser = identity)]
    pub identities: Vec<Identity>,
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

fn identity(text: &str) -> Result<Identity, String> {
    hub_init::parse_identity(text).map_err(|e| e.to_string())
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
    let agents = hub_init::agents(&clusters, &configs, namespace, &args.identities)?;
    for agent in &agents {
        let told = args.identities.iter().any(|i| i.agent == agent.name);
        if let (Some(subject), false) = (&agent.identity, told) {
            eprintln!(
                "note: {} reaches the hub in its own cluster, as {subject} (deploy/'s ServiceAccount); if its pod runs as another, pass --agent-identity {}=SUBJECT",
                agent.from, agent.name
            );
        }
    }
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
        if let Some(first) = agents.iter().find(|a| a.identity.is_none()) {
            eprintln!(
                "each agent outside the hub's cluster reaches the hub with a token of its ServiceAccount in its config's `hub:` kubeconfig, e.g. `kubectl create token {} -n {namespace}`",
                hub_init::agent_service_account(&first.name)
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
