//! `rollwave render --repo PATH|URL [--rev REV] --cluster NAME [--app A] [-o yaml|json]`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::{Format, RepoArgs};
use crate::fleet::{self, targets_cluster};
use crate::render::render;

/// Renders every app targeting `cluster` (or just `app`).
pub fn run(
    source: &RepoArgs,
    cluster: &str,
    app: Option<&str>,
    output: Format,
) -> anyhow::Result<ExitCode> {
    let opened = source.open_tree()?;
    let tree = opened.tree.as_ref();
    let fleet = fleet::load(tree)?;
    let Some(c) = fleet.cluster(cluster) else {
        let names: Vec<&str> = fleet.clusters.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "cluster '{cluster}' is not in clusters/ (known: {})",
            names.join(", ")
        );
    };
    if let Some(a) = app
        && fleet.app(a).is_none()
    {
        let names: Vec<&str> = fleet.apps.iter().map(|a| a.name.as_str()).collect();
        bail!("app '{a}' is not in apps/ (known: {})", names.join(", "));
    }
    let mut docs = Vec::new();
    let mut apps_json = Map::new();
    for a in fleet
        .apps
        .iter()
        .filter(|a| app.is_none_or(|n| n == a.name))
    {
        if !targets_cluster(a, c) {
            continue;
        }
        let r = render(tree, &fleet, a, c)
            .with_context(|| format!("app '{}' for cluster '{cluster}'", a.name))?;
        apps_json.insert(
            a.name.clone(),
            json!({
                "release": opened.release_of(&crate::source::history::Inputs::for_app(&a.name, &r.files_read)),
                "root": r.root,
                "hash": r.content_hash,
                "suspended": a.suspend,
                "objects": r.objects,
            }),
        );
        docs.extend(r.objects.into_vec());
    }
    let text = match output {
        Format::Yaml => crate::yaml::to_yaml_stream(&docs),
        Format::Json => {
            let v = json!({"cluster": cluster, "commit": opened.commit, "apps": Value::Object(apps_json)});
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
