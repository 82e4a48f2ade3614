//! `rollwave diff --repo R --cluster NAME --live`: for every app targeting the
//! cluster, the live objects against what an apply of the repository would make of
//! them (a server-side dry run), as a unified diff; objects prune would delete are
//! shown removed. The comparison is the agent's ([`Reconciler::preview`]): the app's
//! policy first, then reads and dry runs as its ServiceAccount when the policy names
//! one. Secret values are masked as `kubectl diff` masks them. Exit 0 when every app
//! was compared, 1 when one could not be (each reason on stderr, the other apps'
//! differences still printed).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::agent::config::Connection;
use anyhow::{Context, bail};

use crate::apply::{AppRevision, Reconciler, comparable};
use crate::fleet::targets_cluster;
use crate::render::render;

fn yaml_of(v: Option<&serde_json::Value>) -> String {
    v.map(|v| crate::yaml::to_yaml(&comparable(v)))
        .unwrap_or_default()
}

/// The cluster to compare with and how to reach it.
pub struct LiveCluster<'a> {
    /// Its name in clusters/.
    pub name: &'a str,
    /// Kubeconfig file.
    pub kubeconfig: Option<&'a PathBuf>,
    /// Kubeconfig context.
    pub context: Option<&'a str>,
    /// Namespace of the inventories.
    pub namespace: &'a str,
}

/// Runs the command.
pub fn run(
    (repo, path): (&str, Option<&str>),
    rev: Option<&str>,
    branch: &str,
    target: &LiveCluster<'_>,
    app: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (cluster, kubeconfig, context, namespace) = (
        target.name,
        target.kubeconfig,
        target.context,
        target.namespace,
    );
    let opened = crate::source::repo::open_tree(repo, path, rev, branch)?;
    let tree = opened.tree.as_ref();
    let fleet = crate::fleet::load(tree)?;
    let Some(c) = fleet.cluster(cluster) else {
        bail!("cluster '{cluster}' is not in clusters/");
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = crate::agent::daemon::config_for(&Connection::Kubeconfig {
            path: kubeconfig.cloned(),
            context: context.map(String::from),
        })
        .await?;
        let client = kube::Client::try_from(config.clone())?;
        let reconciler = Reconciler::new(client, namespace).with_impersonation(config);
        let mut out = String::new();
        let mut errors = 0;
        let mut changed = 0;
        for a in fleet
            .apps
            .iter()
            .filter(|a| app.is_none_or(|n| n == a.name))
        {
            if !targets_cluster(a, c) || a.suspend {
                continue;
            }
            let r = render(tree, &fleet, a, c).with_context(|| format!("app '{}'", a.name))?;
            let rev = AppRevision {
                app: &a.name,
                release: &r.content_hash,
                content_hash: &r.content_hash,
                objects: &r.objects,
                force: a.force,
                namespace: a.namespace.as_deref(),
                removal: a.removal_in_app,
                policy: a.policy.as_ref(),
            };
            match reconciler.preview(&rev).await {
                Ok(previews) => {
                    for p in previews {
                        let (live, after) =
                            crate::review::secrets::masked_pair(p.live.as_ref(), p.after.as_ref());
                        let (before, after) = (yaml_of(live.as_ref()), yaml_of(after.as_ref()));
                        if before == after {
                            continue;
                        }
                        changed += 1;
                        let name = format!("{}/{}", a.name, p.object);
                        let diff = similar::TextDiff::from_lines(&before, &after);
                        out.push_str(
                            &diff
                                .unified_diff()
                                .header(&format!("live {name}"), &format!("rendered {name}"))
                                .to_string(),
                        );
                    }
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("error: app '{}': {e}", a.name);
                }
            }
        }
        if changed == 0 && errors == 0 {
            out.push_str("no differences: the cluster runs what the repository renders\n");
        }
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
        Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
