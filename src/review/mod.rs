//! What a change to the fleet repository does, made for a person reviewing it: the
//! rendered difference per app and cluster with Secret values masked, clusters with
//! identical differences grouped, objects added, removed and changed counted. Pure:
//! renderings in, a [`Review`] out; `cli/diff.rs` renders and prints, and
//! [`report`] writes it as text, Markdown (a pull-request comment) or JSON.

pub mod build;
pub mod codeowners;
pub mod report;
pub mod secrets;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// How one object changes between two renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectChange {
    /// Only in the new rendering.
    Added,
    /// Only in the old rendering (prune would delete it).
    Removed,
    /// In both, different.
    Changed,
}

/// The difference between an app's two renderings on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderingDiff {
    /// Unified diff per changed object, `kind namespace/name` as its header, Secret
    /// values masked.
    pub text: String,
    /// Each changed object (`Kind namespace/name`) and how it changes, in the order of
    /// the renderings.
    pub objects: Vec<(String, ObjectChange)>,
}

impl RenderingDiff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// How many objects change in each way: (added, removed, changed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |c| self.objects.iter().filter(|(_, x)| *x == c).count();
        (
            n(ObjectChange::Added),
            n(ObjectChange::Removed),
            n(ObjectChange::Changed),
        )
    }
}

/// An object's identity for display and matching: `Kind namespace/name` (no
/// namespace for cluster-scoped objects), with the API group when it has one.
fn object_label(obj: &Value) -> String {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let api = s("/apiVersion");
    let kind = match api.split_once('/') {
        Some((group, _)) => format!("{}.{group}", s("/kind")),
        None => s("/kind").to_string(),
    };
    match s("/metadata/namespace") {
        "" => format!("{kind} {}", s("/metadata/name")),
        ns => format!("{kind} {ns}/{}", s("/metadata/name")),
    }
}

/// The difference between two renderings of one app on one cluster, object by object,
/// with Secret values masked as `kubectl diff` masks them.
pub fn diff_renderings(old: &[Value], new: &[Value]) -> RenderingDiff {
    let index = |objs: &[Value]| -> BTreeMap<String, usize> {
        objs.iter()
            .enumerate()
            .map(|(i, o)| (object_label(o), i))
            .collect()
    };
    let (old_at, new_at) = (index(old), index(new));
    // The new rendering's order, then what only the old one had.
    let mut labels: Vec<String> = new.iter().map(object_label).collect();
    labels.extend(
        old.iter()
            .map(object_label)
            .filter(|l| !new_at.contains_key(l)),
    );
    labels.dedup();
    let mut out = RenderingDiff::default();
    for label in labels {
        let (before, after) = (
            old_at.get(&label).map(|&i| &old[i]),
            new_at.get(&label).map(|&i| &new[i]),
        );
        if before == after {
            continue;
        }
        let change = match (before, after) {
            (None, Some(_)) => ObjectChange::Added,
            (Some(_), None) => ObjectChange::Removed,
            _ => ObjectChange::Changed,
        };
        let (before, after) = secrets::masked_pair(before, after);
        let yaml = |v: &Option<Value>| v.as_ref().map(crate::yaml::to_yaml).unwrap_or_default();
        let (before, after) = (yaml(&before), yaml(&after));
        if before == after {
            // Only masked values changed: still a change, shown by its marks.
            out.objects.push((label, change));
            continue;
        }
        let diff = similar::TextDiff::from_lines(&before, &after);
        out.text.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("{label} (before)"), &format!("{label} (after)"))
                .to_string(),
        );
        out.objects.push((label, change));
    }
    out
}

/// Both renderings with every Secret masked against its counterpart on the other side
/// (for a diff of the whole stream).
pub fn masked_renderings(old: &[Value], new: &[Value]) -> (Vec<Value>, Vec<Value>) {
    // The first object of each label, as a linear search would find it.
    let index = |objs: &[Value]| -> BTreeMap<String, usize> {
        let mut at = BTreeMap::new();
        for (i, o) in objs.iter().enumerate() {
            at.entry(object_label(o)).or_insert(i);
        }
        at
    };
    let (old_at, new_at) = (index(old), index(new));
    let old_masked = old
        .iter()
        .map(|o| {
            let other = new_at.get(&object_label(o)).map(|&i| &new[i]);
            secrets::masked_pair(Some(o), other).0.unwrap_or_default()
        })
        .collect();
    let new_masked = new
        .iter()
        .map(|n| {
            let other = old_at.get(&object_label(n)).map(|&i| &old[i]);
            secrets::masked_pair(other, Some(n)).1.unwrap_or_default()
        })
        .collect();
    (old_masked, new_masked)
}

/// Clusters whose difference for an app is the same, and that difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffGroup {
    /// The clusters, sorted.
    pub clusters: Vec<String>,
    /// The difference they share.
    pub diff: RenderingDiff,
}

/// One app's part of a review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppReview {
    /// The app's name.
    pub app: String,
    /// Changed clusters grouped by identical difference, the largest group first.
    pub groups: Vec<DiffGroup>,
    /// Clusters whose rendering failed, with the error, at either revision.
    pub errors: Vec<(String, String)>,
    /// Objects of the new revision the app's tenancy policy refuses, by cluster.
    pub violations: Vec<(String, String)>,
    /// The rollout the new revision starts (none when the app is gone).
    pub rollout: Option<RolloutReview>,
}

impl AppReview {
    /// How many clusters the change reaches.
    pub fn changed_clusters(&self) -> usize {
        self.groups.iter().map(|g| g.clusters.len()).sum()
    }

    /// The waves that take a changed cluster, as (wave, its changed clusters).
    pub fn changed_waves(&self) -> Vec<(usize, &[String])> {
        self.rollout
            .iter()
            .flat_map(|r| r.waves.iter().enumerate())
            .filter(|(_, w)| !w.is_empty())
            .map(|(i, w)| (i, w.as_slice()))
            .collect()
    }
}

/// The rollout a merge would start for one app, as a reviewer needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutReview {
    /// The app's waves at the new revision, each with its changed clusters only.
    pub waves: Vec<Vec<String>>,
    /// All the app's waves at the new revision, described ("wave 0 (1 cluster) → …").
    pub all_waves: String,
    /// Its rollout policy at the new revision, described (batches, gate, bake,
    /// analysis, failure handling).
    pub policy: String,
    /// The waves and policy described at the old revision, when either differs: a
    /// change to `fleet.yaml` or `app.yaml` can change the rollout of every app
    /// without changing a rendered object.
    pub changed_from: Option<(String, String)>,
}

/// Groups per-cluster differences of one app by identical difference; clusters with
/// no difference are left out.
pub fn group_by_difference(per_cluster: Vec<(String, RenderingDiff)>) -> Vec<DiffGroup> {
    let mut groups: Vec<DiffGroup> = Vec::new();
    for (cluster, diff) in per_cluster {
        if diff.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|g| g.diff == diff) {
            Some(g) => g.clusters.push(cluster),
            None => groups.push(DiffGroup {
                clusters: vec![cluster],
                diff,
            }),
        }
    }
    for g in &mut groups {
        g.clusters.sort();
    }
    groups.sort_by(|a, b| {
        b.clusters
            .len()
            .cmp(&a.clusters.len())
            .then_with(|| a.clusters.cmp(&b.clusters))
    });
    groups
}

/// Everything a review shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    /// The revisions compared, as given.
    pub from: String,
    /// The revision compared with.
    pub to: String,
    /// Apps with a change or an error, by name.
    pub apps: Vec<AppReview>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str, v: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "web"}, "data": {"k": v}})
    }

    #[test]
    fn objects_are_counted_by_how_they_change() {
        let old = vec![cm("a", "1"), cm("b", "1")];
        let new = vec![cm("a", "2"), cm("c", "1")];
        let d = diff_renderings(&old, &new);
        assert_eq!(d.counts(), (1, 1, 1));
        assert!(
            d.text.contains("--- ConfigMap web/a (before)\n"),
            "{}",
            d.text
        );
        assert!(
            d.text.contains("-  k: '1'\n+  k: '2'\n")
                || d.text.contains("-  k: \"1\"\n+  k: \"2\"\n"),
            "{}",
            d.text
        );
        assert!(diff_renderings(&old, &old).is_empty());
    }

    #[test]
    fn identical_differences_share_a_group_largest_first() {
        let d1 = diff_renderings(&[cm("a", "1")], &[cm("a", "2")]);
        let d2 = diff_renderings(&[cm("a", "1")], &[cm("a", "3")]);
        let groups = group_by_difference(vec![
            ("z".into(), d1.clone()),
            ("y".into(), d2.clone()),
            ("x".into(), d1.clone()),
            ("w".into(), RenderingDiff::default()),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].clusters, vec!["x", "z"]);
        assert_eq!(groups[1].clusters, vec!["y"]);
    }
}
