//! The review comment (`rollwave diff --format markdown`) for the changes a reviewer
//! meets, compared with golden files in `tests/review/`: a base change reaching every
//! cluster (one group), an overlay change reaching one region (two groups, the
//! clusters' values differ), a Secret change (no values shown), a tenancy violation, a
//! change of `fleet.yaml`'s batches (the plan changes, no rendering does) and a
//! 1,000-cluster fleet whose differences pass the comment's size budget.
//!
//! Also `rollwave plan --from main --to change`: the releases a merge creates per app.
//!
//! `ROLLWAVE_BLESS=1 cargo test --test review_golden` rewrites the golden files from
//! the current output; read the difference before committing it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::git::{commit_files, git};

/// A fleet of `clusters` clusters: test-bj-1 and test-sh-1 in stage test, the rest in
/// prod, alternating regions bj and sh, replicaFactor 2 or 3 in turn. One app `shop`
/// in namespace `shop`: a Deployment (replicas from the cluster's values), a
/// ConfigMap, a Secret, and an overlay per region.
fn fleet_files(clusters: usize) -> Vec<(String, String)> {
    let mut files = vec![
        (
            "fleet.yaml".to_string(),
            "stages: [test, prod]\nrollout:\n  canary: [test-bj-1]\n  batches: [1, 2, 7]\n  bake: 10m\n  gate: health\ntenancy:\n  defaultPolicy: restricted\n  policies:\n    restricted:\n      namespaces: [self]\n      clusterScoped: [Namespace]\n      deny: [ClusterRoleBinding]\n".to_string(),
        ),
        (
            "apps/shop/app.yaml".to_string(),
            "namespace: shop\nowners: ['@example/shop']\ntargets:\n  stages: [test, prod]\noverlays:\n  - {selector: {region: bj}, path: overlays/bj}\n  - {selector: {region: sh}, path: overlays/sh}\nvalues: {tag: \"2.0.0\"}\nrollout:\n  bake: 5m\n  analysis:\n    interval: 1m\n    metrics:\n    - {name: error-ratio, query: 'sum(rate(errors[1m]))', max: 0.01}\n".to_string(),
        ),
        (
            "apps/shop/base/kustomization.yaml".to_string(),
            "resources:\n- deployment.yaml\n- config.yaml\n- secret.yaml\n".to_string(),
        ),
        (
            "apps/shop/base/deployment.yaml.hbs".to_string(),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  replicas: {{values.replicaFactor}}\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec:\n      containers:\n      - name: shop\n        image: example/shop:{{values.tag}}\n        env:\n        - {name: CLUSTER, value: \"{{cluster.name}}\"}\n".to_string(),
        ),
        (
            "apps/shop/base/config.yaml".to_string(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop-config}\ndata:\n  LOG_LEVEL: info\n  TIMEOUT: 30s\n".to_string(),
        ),
        (
            "apps/shop/base/secret.yaml".to_string(),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-db}\nstringData:\n  password: hunter2\n  user: shop\n".to_string(),
        ),
    ];
    for region in ["bj", "sh"] {
        files.push((
            format!("apps/shop/overlays/{region}/kustomization.yaml"),
            format!(
                "resources:\n- ../../base\ncommonAnnotations:\n  example.com/region: {region}\n"
            ),
        ));
    }
    for i in 0..clusters {
        let (name, stage, region) = match i {
            0 => ("test-bj-1".to_string(), "test", "bj"),
            1 => ("test-sh-1".to_string(), "test", "sh"),
            _ => {
                let region = if i % 2 == 0 { "bj" } else { "sh" };
                (format!("prod-{region}-{}", i / 2), "prod", region)
            }
        };
        files.push((
            format!("clusters/{name}.yaml"),
            format!(
                "name: {name}\nstage: {stage}\nlabels: {{region: {region}}}\nvalues: {{replicaFactor: {}}}\n",
                2 + i % 3 / 2
            ),
        ));
    }
    files
}

/// A repository holding `fleet_files(clusters)` at `main`, then `change` applied to
/// them (path, new content) committed on top; its path.
fn repository_with_change(tmp: &Path, clusters: usize, change: &[(String, String)]) -> PathBuf {
    let work = tmp.join("fleet");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    let files = fleet_files(clusters);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    commit_files(&work, &refs, "fleet");
    git(&work, &["checkout", "-q", "-b", "change"]);
    let refs: Vec<(&str, &str)> = change
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    commit_files(&work, &refs, "the change under review");
    work
}

/// `rollwave diff --format markdown --from main --to change`: its output and exit code.
fn review_comment(work: &Path) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["diff", "--repo"])
        .arg(work)
        .args(["--from", "main", "--to", "change", "--format", "markdown"])
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty() || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

/// Compares `actual` with `tests/review/NAME.md` (or writes it with ROLLWAVE_BLESS=1).
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/review")
        .join(format!("{name}.md"));
    if std::env::var_os("ROLLWAVE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (ROLLWAVE_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header("golden", "actual")
            .to_string();
        panic!(
            "the review comment differs from {}:\n{diff}",
            path.display()
        );
    }
}

/// File `path` of a 12-cluster fleet with `from` replaced by `to`.
fn edited(path: &str, from: &str, to: &str) -> (String, String) {
    let files = fleet_files(12);
    let (_, text) = files.iter().find(|(p, _)| p == path).unwrap();
    assert!(text.contains(from), "{path} has no {from:?}");
    (path.to_string(), text.replace(from, to))
}

#[test]
fn a_base_change_reaching_every_cluster_is_one_group() {
    let tmp = tempfile::tempdir().unwrap();
    let work = repository_with_change(
        tmp.path(),
        12,
        &[edited(
            "apps/shop/base/config.yaml",
            "TIMEOUT: 30s",
            "TIMEOUT: 45s",
        )],
    );
    let (text, code) = review_comment(&work);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("- **shop**: changes 12 clusters (1 distinct difference)"));
    assert_golden("base-change", &text);
    // The README shows an excerpt of this comment: it stays what rollwave writes.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let excerpt = readme
        .split("```markdown\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README's review comment excerpt");
    assert!(
        text.contains(excerpt),
        "the README's excerpt is not what rollwave writes:\n{excerpt}"
    );
}

#[test]
fn an_overlay_change_in_one_region_groups_its_clusters_by_their_values() {
    let tmp = tempfile::tempdir().unwrap();
    // The bj overlay gains a patch templated with the cluster's replicaFactor: bj
    // clusters with factor 2 and those with 3 get different differences.
    let work = repository_with_change(
        tmp.path(),
        12,
        &[
            (
                "apps/shop/overlays/bj/kustomization.yaml".to_string(),
                "resources:\n- ../../base\ncommonAnnotations:\n  example.com/region: bj\npatches:\n- path: surge.yaml\n".to_string(),
            ),
            (
                "apps/shop/overlays/bj/surge.yaml.hbs".to_string(),
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  replicas: {{values.replicaFactor}}0\n".to_string(),
            ),
        ],
    );
    let (text, code) = review_comment(&work);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("(2 distinct differences)"),
        "two groups expected:\n{text}"
    );
    assert!(
        !text.contains("test-sh-1") && !text.contains("prod-sh-"),
        "{text}"
    );
    assert_golden("overlay-change", &text);
}

#[test]
fn a_secret_change_shows_which_keys_changed_and_never_a_value() {
    let tmp = tempfile::tempdir().unwrap();
    let work = repository_with_change(
        tmp.path(),
        12,
        &[edited(
            "apps/shop/base/secret.yaml",
            "password: hunter2",
            "password: correct-horse",
        )],
    );
    let (text, code) = review_comment(&work);
    assert_eq!(code, 0, "{text}");
    for secret in [
        "hunter2",
        "correct-horse",
        "aHVudGVyMg",
        "Y29ycmVjdC1ob3JzZQ",
    ] {
        assert!(!text.contains(secret), "a Secret value is shown:\n{text}");
    }
    assert!(text.contains("Secret shop/shop-db"), "{text}");
    assert_golden("secret-change", &text);
}

#[test]
fn a_tenancy_violation_is_listed_first_and_fails_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let work = repository_with_change(
        tmp.path(),
        12,
        &[
            (
                "apps/shop/base/kustomization.yaml".to_string(),
                "resources:\n- deployment.yaml\n- config.yaml\n- secret.yaml\n- admin.yaml\n".to_string(),
            ),
            (
                "apps/shop/base/admin.yaml".to_string(),
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: shop-admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: ServiceAccount, name: default, namespace: shop}\n".to_string(),
            ),
        ],
    );
    let (text, code) = review_comment(&work);
    assert_eq!(code, 1, "a violation fails the review's check:\n{text}");
    let caution = text.find("> [!CAUTION]").expect("a caution block");
    let first_app = text.find("#### shop").expect("the app's section");
    assert!(caution < first_app, "{text}");
    assert!(text.contains("ClusterRoleBinding/shop-admin"), "{text}");
    assert_golden("tenancy-violation", &text);
}

#[test]
fn a_change_of_the_batches_changes_the_plan_and_no_rendering() {
    let tmp = tempfile::tempdir().unwrap();
    let work = repository_with_change(
        tmp.path(),
        12,
        &[edited(
            "fleet.yaml",
            "batches: [1, 2, 7]",
            "batches: [1, 1]",
        )],
    );
    let (text, code) = review_comment(&work);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("No rendered object changes on any cluster."),
        "{text}"
    );
    assert!(
        text.contains("- **shop**: no rendered object changes; its rollout plan changes"),
        "{text}"
    );
    assert!(text.contains("- before: wave 0 (1 cluster)"), "{text}");
    assert_golden("batches-change", &text);
}

#[test]
fn a_thousand_clusters_with_their_own_differences_stay_within_the_comment_limit() {
    let tmp = tempfile::tempdir().unwrap();
    // CLUSTER's value is each cluster's own name: renaming the variable changes every
    // cluster's Deployment differently, 1,000 distinct differences.
    let files = fleet_files(1000);
    let (path, text) = files
        .iter()
        .find(|(p, _)| p == "apps/shop/base/deployment.yaml.hbs")
        .unwrap();
    let work = repository_with_change(
        tmp.path(),
        1000,
        &[(
            path.clone(),
            text.replace("name: CLUSTER", "name: CLUSTER_NAME"),
        )],
    );
    let (text, code) = review_comment(&work);
    assert_eq!(code, 0);
    assert!(text.len() <= 65_536, "{} characters", text.len());
    assert!(
        text.contains("- **shop**: changes 1000 clusters (1000 distinct differences)"),
        "{}",
        &text[..2000.min(text.len())]
    );
    assert!(text.contains("within its size limit"), "the cut is said");
    assert_golden("thousand-clusters", &text);
}

#[test]
fn plan_from_to_names_the_releases_a_merge_creates_and_how_the_rollout_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let work = repository_with_change(
        tmp.path(),
        12,
        &[edited(
            "apps/shop/base/config.yaml",
            "TIMEOUT: 30s",
            "TIMEOUT: 45s",
        )],
    );
    // Two more commits on the branch: one the app does not read, one to fleet.yaml.
    let notes = commit_files(&work, &[("NOTES.md", "# notes\n")], "notes for people");
    let (path, text) = edited("fleet.yaml", "batches: [1, 2, 7]", "batches: [1, 1]");
    let batches = commit_files(
        &work,
        &[(path.as_str(), text.as_str())],
        "fleet: two batches",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["plan", "--repo"])
        .arg(&work)
        .args(["--from", "main", "--to", "change"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("app shop: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("app shop: 2 release(s): "), "{text}");
    assert!(
        line.contains(&format!("{} fleet: two batches", &batches[..8])),
        "{text}"
    );
    assert!(line.contains("the change under review"), "{text}");
    assert!(
        !text.contains(&notes[..8]),
        "a commit the app does not read is no release: {text}"
    );
    assert!(
        text.contains("  renders differently on 12 of 12 cluster(s)"),
        "{text}"
    );
    assert!(
        text.contains("  rollout plan changes from wave 0 (1 cluster)"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["plan", "--repo"])
        .arg(&work)
        .args(["--from", "main", "--to", "change", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shop = &v["apps"]["shop"];
    assert_eq!(shop["releases"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(
        shop["releases"][0]["release"],
        batches.as_str(),
        "newest first"
    );
    assert_eq!(shop["changedClusters"], 12);
    assert_eq!(shop["rolloutChanges"], true);
}
