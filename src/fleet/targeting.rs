//! Which clusters an app targets and which overlay renders it for each: pure functions
//! of the model.

use super::model::{App, Cluster, OverlayRule};

fn labels_match(selector: &std::collections::BTreeMap<String, String>, cluster: &Cluster) -> bool {
    selector
        .iter()
        .all(|(k, v)| cluster.labels.get(k) == Some(v))
}

/// Whether `app` runs on `cluster`: (its stage is listed, or no stages are listed but a
/// selector is) and the selector matches, or it is named in `clusters`; and it is not
/// excluded.
pub fn targets_cluster(app: &App, cluster: &Cluster) -> bool {
    let t = &app.targets;
    if t.exclude.contains(&cluster.name) {
        return false;
    }
    if t.clusters.contains(&cluster.name) {
        return true;
    }
    if t.stages.is_empty() && t.selector.is_empty() {
        return false;
    }
    (t.stages.is_empty() || t.stages.contains(&cluster.stage)) && labels_match(&t.selector, cluster)
}

/// The kustomization root (relative to the app directory) for `cluster`: a cluster rule
/// beats a selector rule, which beats a stage rule; among selectors, more labels win;
/// ties go to the rule listed first. Without a match, `base`.
pub fn choose_overlay<'a>(app: &'a App, cluster: &Cluster) -> &'a str {
    let mut best: Option<(usize, &str)> = None;
    for rule in &app.overlays {
        let (score, path) = match rule {
            OverlayRule::Cluster { name, path } if *name == cluster.name => (usize::MAX, path),
            OverlayRule::Selector { labels, path } if labels_match(labels, cluster) => {
                (1000 + labels.len(), path)
            }
            OverlayRule::Stage { stage, path } if *stage == cluster.stage => (1, path),
            _ => continue,
        };
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, path.as_str()));
        }
    }
    best.map_or("base", |(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::model::{Removal, RolloutSpec, Targets};
    use std::collections::BTreeMap;

    fn cluster(name: &str, stage: &str, labels: &[(&str, &str)]) -> Cluster {
        Cluster {
            name: name.into(),
            stage: stage.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            values: Default::default(),
            kube_version: None,
        }
    }

    fn app(targets: Targets, overlays: Vec<OverlayRule>) -> App {
        App {
            name: "web".into(),
            namespace: None,
            targets,
            overlays,
            values: Default::default(),
            rollout: RolloutSpec::default(),
            removal: Removal::Orphan,
            removal_in_app: None,
            allow_empty: false,
            suspend: false,
            force: false,
            helm: None,
            policy: None,
            owners: vec![],
            depends_on: vec![],
        }
    }

    #[test]
    fn targeting_combines_stages_selector_clusters_and_exclude() {
        let a = app(
            Targets {
                stages: vec!["prod".into()],
                selector: BTreeMap::from([("provider".into(), "idc".into())]),
                clusters: vec!["test-1".into()],
                exclude: vec!["prod-3".into()],
            },
            vec![],
        );
        assert!(targets_cluster(
            &a,
            &cluster("prod-1", "prod", &[("provider", "idc")])
        ));
        assert!(!targets_cluster(
            &a,
            &cluster("prod-2", "prod", &[("provider", "aws")])
        ));
        assert!(!targets_cluster(
            &a,
            &cluster("prod-3", "prod", &[("provider", "idc")])
        ));
        assert!(targets_cluster(&a, &cluster("test-1", "test", &[])));
        assert!(!targets_cluster(
            &a,
            &cluster("pre-1", "pre", &[("provider", "idc")])
        ));
    }

    #[test]
    fn most_specific_overlay_wins() {
        let a = app(
            Targets::default(),
            vec![
                OverlayRule::Stage {
                    stage: "prod".into(),
                    path: "overlays/prod".into(),
                },
                OverlayRule::Selector {
                    labels: BTreeMap::from([("region".into(), "bj".into())]),
                    path: "overlays/bj".into(),
                },
                OverlayRule::Cluster {
                    name: "prod-bj-1".into(),
                    path: "overlays/prod-bj-1".into(),
                },
            ],
        );
        assert_eq!(
            choose_overlay(&a, &cluster("prod-bj-1", "prod", &[("region", "bj")])),
            "overlays/prod-bj-1"
        );
        assert_eq!(
            choose_overlay(&a, &cluster("prod-bj-2", "prod", &[("region", "bj")])),
            "overlays/bj"
        );
        assert_eq!(
            choose_overlay(&a, &cluster("prod-sh-1", "prod", &[("region", "sh")])),
            "overlays/prod"
        );
        assert_eq!(choose_overlay(&a, &cluster("test-1", "test", &[])), "base");
    }
}
