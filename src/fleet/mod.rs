//! The fleet repository model: `fleet.yaml`, `clusters/*.yaml` and `apps/*/app.yaml`,
//! parsed, validated and cross-checked.
//!
//! Loading reads through a [`FileTree`], so the same model comes from a directory or
//! a Git commit. Every error names the file, the line and the field. Targeting (which
//! clusters run an app) and overlay choice (which kustomization root renders it for a
//! cluster) are pure functions of the model.

pub mod edit;
pub mod health;
mod model;
mod targeting;
pub mod tenancy;
pub mod windows;

pub use model::{
    AnalysisSpec, App, AppHelm, Cluster, Fleet, FleetSettings, Freeze, FreezeScope, Gate,
    MAX_METRICS, MetricSpec, NameAt, NoData, OnFailure, OverlayRule, Removal, RolloutSpec, Targets,
    parse_duration,
};
pub use targeting::{choose_overlay, targets_cluster};

use std::collections::BTreeSet;

use crate::tree::{EntryKind, FileTree, RepoPath, TreeError};
use crate::yaml::YamlError;

/// Why the fleet repository could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// A file could not be read.
    #[error(transparent)]
    Read(#[from] TreeError),
    /// A file is not valid YAML or has the wrong shape.
    #[error(transparent)]
    Parse(#[from] YamlError),
    /// A file parsed but its content is inconsistent.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: String,
        /// The line, when known.
        line: Option<u64>,
        /// What is wrong and what to do.
        message: String,
    },
}

/// An app whose app.yaml could not be loaded, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenApp {
    /// The directory name under apps/.
    pub name: String,
    /// What is wrong.
    pub error: FleetError,
}

/// Loads and validates the whole fleet model from the root of `tree`; the first
/// problem anywhere is the error (what `validate`, `render` and `build` want).
pub fn load(tree: &dyn FileTree) -> Result<Fleet, FleetError> {
    let (fleet, broken) = load_apps_apart(tree)?;
    match broken.into_iter().next() {
        Some(b) => Err(b.error),
        None => Ok(fleet),
    }
}

/// The freeze as it applies to `app`: none when it names other apps; its clusters when
/// it is scoped by stage or labels.
fn freeze_scope(f: &Freeze, app: &App, clusters: &[Cluster]) -> Option<FreezeScope> {
    if !f.apps.is_empty() && !f.apps.iter().any(|a| a.value == app.name) {
        return None;
    }
    let scoped = !f.stages.is_empty() || !f.selector.is_empty();
    Some(FreezeScope {
        reason: f.reason.clone(),
        until: f.until,
        clusters: scoped.then(|| {
            clusters
                .iter()
                .filter(|c| f.stages.is_empty() || f.stages.contains(&c.stage))
                .filter(|c| f.selector.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
                .map(|c| c.name.clone())
                .collect()
        }),
    })
}

/// Loads the fleet with each app on its own: fleet.yaml and clusters/ must be valid
/// (they concern everyone), while an app whose app.yaml is broken is set aside and
/// returned with its error, so one team's mistake never stops the other apps of the
/// fleet from rolling out. The agent reports a broken app on the clusters that run it
/// and leaves its objects as they are.
pub fn load_apps_apart(tree: &dyn FileTree) -> Result<(Fleet, Vec<BrokenApp>), FleetError> {
    let fleet_file = RepoPath::new("fleet.yaml")?;
    let text = tree.read_text(&fleet_file).map_err(|e| match e {
        TreeError::NotFound(_) => FleetError::Invalid {
            file: "fleet.yaml".into(),
            line: None,
            message: "missing: a fleet repository needs fleet.yaml at its root".into(),
        },
        other => other.into(),
    })?;
    let settings: model::FleetFile = crate::yaml::parse_typed("fleet.yaml", &text)?;
    let settings = settings.validate()?;

    let mut clusters = Vec::new();
    let clusters_dir = RepoPath::new("clusters")?;
    if tree.kind(&clusters_dir)? == Some(EntryKind::Dir) {
        for name in tree.list(&clusters_dir)? {
            let Some(stem) = name
                .strip_suffix(".yaml")
                .or_else(|| name.strip_suffix(".yml"))
            else {
                continue;
            };
            let path = clusters_dir.join(&name)?;
            let text = tree.read_text(&path)?;
            let file: model::ClusterFile = crate::yaml::parse_typed(path.as_str(), &text)?;
            clusters.push(file.validate(path.as_str(), stem, &settings)?);
        }
    }
    let mut seen = BTreeSet::new();
    for c in &clusters {
        if !seen.insert(c.name.clone()) {
            return Err(FleetError::Invalid {
                file: format!("clusters/{}.yaml", c.name),
                line: None,
                message: format!("cluster '{}' is defined twice (.yaml and .yml)", c.name),
            });
        }
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));

    for canary in &settings.rollout.canary {
        if !clusters.iter().any(|c| c.name == canary.value) {
            return Err(FleetError::Invalid {
                file: "fleet.yaml".into(),
                line: Some(canary.line),
                message: format!(
                    "rollout.canary: '{}' is not a cluster in clusters/",
                    canary.value
                ),
            });
        }
    }
    let mut apps = Vec::new();
    let mut broken = Vec::new();
    let apps_dir = RepoPath::new("apps")?;
    if tree.kind(&apps_dir)? == Some(EntryKind::Dir) {
        for name in tree.list(&apps_dir)? {
            let dir = apps_dir.join(&name)?;
            if tree.kind(&dir)? != Some(EntryKind::Dir) {
                continue;
            }
            match load_app(tree, &dir, &name, &settings, &clusters) {
                Ok(app) => apps.push(app),
                Err(error) => broken.push(BrokenApp { name, error }),
            }
        }
    }
    if let Some(t) = &settings.tenancy {
        for (app, (_, line)) in &t.apps {
            let known = apps.iter().any(|a: &App| &a.name == app)
                || broken.iter().any(|b: &BrokenApp| &b.name == app);
            if !known {
                return Err(FleetError::Invalid {
                    file: "fleet.yaml".into(),
                    line: Some(*line),
                    message: format!(
                        "tenancy.apps: '{app}' is not an app (no directory apps/{app}/); remove the entry or add the app"
                    ),
                });
            }
        }
    }
    if let Some(f) = &settings.freeze {
        for app in &f.apps {
            let known = apps.iter().any(|a: &App| a.name == app.value)
                || broken.iter().any(|b: &BrokenApp| b.name == app.value);
            if !known {
                return Err(FleetError::Invalid {
                    file: "fleet.yaml".into(),
                    line: Some(app.line),
                    message: format!(
                        "freeze.apps: '{}' is not an app (no directory apps/{}/)",
                        app.value, app.value
                    ),
                });
            }
        }
        for stage in &f.stages {
            if !settings.stages.contains(stage) {
                return Err(FleetError::Invalid {
                    file: "fleet.yaml".into(),
                    line: Some(f.line),
                    message: format!(
                        "freeze.stages: '{stage}' is not one of stages {:?}",
                        settings.stages
                    ),
                });
            }
        }
        for app in &mut apps {
            app.rollout.freeze = freeze_scope(f, app, &clusters);
        }
    }
    check_window_apps(&settings, &apps, &broken)?;
    check_dependencies(&apps, &broken)?;
    // Sorted by name as Fleet promises (Git orders a directory `a` after `a-b`).
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((Fleet::new(settings, clusters, apps), broken))
}

/// Whether an app directory of that name exists (loaded or broken).
fn is_app(name: &str, apps: &[App], broken: &[BrokenApp]) -> bool {
    apps.iter().any(|a| a.name == name) || broken.iter().any(|b| b.name == name)
}

/// The apps named by fleet.yaml's `windows` exist.
fn check_window_apps(
    settings: &FleetSettings,
    apps: &[App],
    broken: &[BrokenApp],
) -> Result<(), FleetError> {
    for w in &settings.windows {
        if let Some(a) = w.apps.iter().find(|a| !is_app(&a.value, apps, broken)) {
            return Err(FleetError::Invalid {
                file: "fleet.yaml".into(),
                line: Some(a.line),
                message: format!(
                    "windows.apps: '{}' is not an app (no directory apps/{}/)",
                    a.value, a.value
                ),
            });
        }
    }
    Ok(())
}

/// `dependsOn` names apps that exist and has no cycle (DESIGN §4.9).
fn check_dependencies(apps: &[App], broken: &[BrokenApp]) -> Result<(), FleetError> {
    for app in apps {
        if let Some(d) = app
            .depends_on
            .iter()
            .find(|d| !is_app(&d.value, apps, broken))
        {
            return Err(FleetError::Invalid {
                file: format!("apps/{}/app.yaml", app.name),
                line: Some(d.line),
                message: format!(
                    "dependsOn: '{}' is not an app (no directory apps/{}/)",
                    d.value, d.value
                ),
            });
        }
    }
    dependency_order(apps).map(|_| ())
}

/// `apps` with every app after the apps it depends on (ties by name), or the first
/// cycle as an error naming its apps in order.
fn dependency_order(apps: &[App]) -> Result<Vec<&App>, FleetError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit<'a>(
        i: usize,
        apps: &'a [App],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        out: &mut Vec<&'a App>,
    ) -> Result<(), FleetError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let cycle: Vec<&str> = path[start..]
                    .iter()
                    .chain([&i])
                    .map(|&p| apps[p].name.as_str())
                    .collect();
                // Named where the cycle closes: the entry of the last app on the path.
                let last = &apps[*path.last().unwrap_or(&i)];
                let line = last
                    .depends_on
                    .iter()
                    .find(|d| d.value == apps[i].name)
                    .map(|d| d.line);
                return Err(FleetError::Invalid {
                    file: format!("apps/{}/app.yaml", last.name),
                    line,
                    message: format!(
                        "dependsOn: a cycle: {}; an app cannot wait for itself, remove one of these",
                        cycle.join(" -> ")
                    ),
                });
            }
            Mark::New => {}
        }
        marks[i] = Mark::Visiting;
        path.push(i);
        for d in &apps[i].depends_on {
            // Broken apps have no dependencies of their own to follow.
            if let Some(j) = apps.iter().position(|a| a.name == d.value) {
                visit(j, apps, marks, path, out)?;
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        out.push(&apps[i]);
        Ok(())
    }
    let mut marks = vec![Mark::New; apps.len()];
    let mut out = Vec::with_capacity(apps.len());
    for i in 0..apps.len() {
        visit(i, apps, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

impl Fleet {
    /// The apps with each after the apps it depends on (`dependsOn`), so a pass plans
    /// and applies a platform app before the apps that wait for it. A loaded fleet has
    /// no cycle; if one were there, the apps come in name order.
    pub fn apps_in_dependency_order(&self) -> Vec<&App> {
        dependency_order(&self.apps).unwrap_or_else(|_| self.apps.iter().collect())
    }
}

fn load_app(
    tree: &dyn FileTree,
    dir: &RepoPath,
    name: &str,
    settings: &FleetSettings,
    clusters: &[Cluster],
) -> Result<App, FleetError> {
    let path = dir.join("app.yaml")?;
    if tree.kind(&path)? != Some(EntryKind::File) {
        return Err(FleetError::Invalid {
            file: dir.to_string(),
            line: None,
            message: "an app directory needs an app.yaml; add one or remove the directory".into(),
        });
    }
    let text = tree.read_text(&path)?;
    let file: model::AppFile = crate::yaml::parse_typed(path.as_str(), &text)?;
    file.validate(path.as_str(), name, settings, clusters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::MemTree;

    /// A fleet of one cluster and the apps of `apps` (name, app.yaml).
    fn fleet_with(apps: &[(&str, &str)]) -> Result<Fleet, FleetError> {
        let mut tree = MemTree::new();
        tree.insert("fleet.yaml", "stages: [prod]\n");
        tree.insert("clusters/p1.yaml", "name: p1\nstage: prod\n");
        for (name, text) in apps {
            tree.insert(&format!("apps/{name}/app.yaml"), *text);
        }
        load(&tree)
    }

    const TARGETS: &str = "targets: {stages: [prod]}\n";

    #[test]
    fn apps_come_after_the_apps_they_depend_on() {
        let f = fleet_with(&[
            (
                "api",
                "targets: {stages: [prod]}\ndependsOn: [platform, db]\n",
            ),
            ("db", "targets: {stages: [prod]}\ndependsOn: [platform]\n"),
            ("platform", TARGETS),
            ("web", "targets: {stages: [prod]}\ndependsOn: [api]\n"),
        ])
        .unwrap();
        let order: Vec<&str> = f
            .apps_in_dependency_order()
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(order, ["platform", "db", "api", "web"]);
    }

    #[test]
    fn unknown_dependencies_and_cycles_are_refused_where_they_are_written() {
        let e = fleet_with(&[("web", "targets: {stages: [prod]}\ndependsOn: [platfrom]\n")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "apps/web/app.yaml:2: dependsOn: 'platfrom' is not an app (no directory apps/platfrom/)"
        );
        let e = fleet_with(&[
            ("a", "targets: {stages: [prod]}\ndependsOn: [b]\n"),
            ("b", "targets: {stages: [prod]}\ndependsOn:\n- c\n"),
            ("c", "targets: {stages: [prod]}\ndependsOn: [a]\n"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "apps/c/app.yaml:2: dependsOn: a cycle: a -> b -> c -> a; an app cannot wait for itself, remove one of these"
        );
        let e = fleet_with(&[("a", "targets: {stages: [prod]}\ndependsOn: [a]\n")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "apps/a/app.yaml:2: dependsOn: 'a' cannot depend on itself"
        );
    }

    #[test]
    fn an_app_window_is_checked_and_may_not_name_apps() {
        let e = fleet_with(&[(
            "web",
            "targets: {stages: [prod]}\nwindows:\n- deny: {schedule: '0 0 * * *', duration: 1h}\n  apps: [api]\n",
        )])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("apps/web/app.yaml:4: windows.apps:"), "{e}");
        let e = fleet_with(&[(
            "web",
            "targets: {stages: [prod]}\nwindows:\n- allow: {schedule: 'at noon', duration: 1h}\n",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("apps/web/app.yaml:3: windows.schedule:"),
            "{e}"
        );
    }
}
