//! Rendering apps of a fleet: templates, overlays, rollwave's labels, the content hash,
//! the files read, and agreement with real kustomize on the example fleet.

mod common;

use std::path::Path;

use common::{ScratchRepo, run_cli};
use rollwave::fleet::{self, targets_cluster};
use rollwave::render;
use rollwave::tree::{DirTree, RepoPath};
use serde_json::Value;

fn example() -> std::path::PathBuf {
    common::example_fleet()
}

#[test]
fn rollwave_labels_go_on_metadata_only_and_namespace_defaults_to_the_app() {
    let repo = ScratchRepo::minimal_with(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- crole.yaml\n",
        ),
        (
            "apps/web/base/crole.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules: []\n",
        ),
    ]);
    let r = repo.render("web", "prod-1").unwrap();
    let crole = &r.objects[0];
    assert_eq!(crole["kind"], "ClusterRole");
    assert!(
        crole["metadata"].get("namespace").is_none(),
        "cluster-scoped objects get no namespace"
    );
    let deploy = &r.objects[1];
    assert_eq!(deploy["metadata"]["namespace"], "web");
    assert_eq!(
        deploy["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "rollwave"
    );
    assert_eq!(deploy["metadata"]["labels"]["rollwave.dev/app"], "web");
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app": "web"})
    );
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["labels"],
        serde_json::json!({"app": "web"})
    );
}

#[test]
fn templates_see_cluster_app_and_merged_values_and_other_files_stay_literal() {
    let repo = ScratchRepo::minimal_with(&[
        (
            "fleet.yaml",
            "stages: [test, prod]\nvalues: {registry: reg.example.com, deep: {a: fleet, b: fleet}}\n",
        ),
        (
            "apps/web/app.yaml",
            "namespace: web\ntargets: {stages: [test, prod]}\nvalues: {deep: {b: app}}\n",
        ),
        (
            "clusters/prod-1.yaml",
            "name: prod-1\nstage: prod\nlabels: {region: bj}\nvalues: {deep: {c: cluster}}\n",
        ),
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- cm.yaml\n- literal.yaml\n",
        ),
        (
            "apps/web/base/cm.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\ndata:\n  c: \"{{cluster.name}}/{{cluster.stage}}/{{cluster.labels.region}}\"\n  a: \"{{app.name}}/{{app.namespace}}\"\n  v: \"{{values.registry}} {{values.deep.a}} {{values.deep.b}} {{values.deep.c}}\"\n",
        ),
        (
            "apps/web/base/literal.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: l}\ndata:\n  rule: \"{{ $labels.instance }}\"\n",
        ),
    ]);
    let r = repo.render("web", "prod-1").unwrap();
    let t = r
        .objects
        .iter()
        .find(|o| o["metadata"]["name"] == "t")
        .unwrap();
    assert_eq!(t["data"]["c"], "prod-1/prod/bj");
    assert_eq!(t["data"]["a"], "web/web");
    assert_eq!(t["data"]["v"], "reg.example.com fleet app cluster");
    let l = r
        .objects
        .iter()
        .find(|o| o["metadata"]["name"] == "l")
        .unwrap();
    assert_eq!(l["data"]["rule"], "{{ $labels.instance }}");
    assert!(
        r.files_read
            .contains(&RepoPath::new("apps/web/base/cm.yaml.hbs").unwrap())
    );
    assert!(
        r.files_read
            .contains(&RepoPath::new("apps/web/base/literal.yaml").unwrap())
    );
    // The cluster's file is an input of every rendering for it, counted by release
    // detection with all of clusters/, and not named among the app's files read, so
    // that clusters rendering an app alike share one rendering.
    assert!(
        !r.files_read
            .iter()
            .any(|p| p.as_str().starts_with("clusters/"))
    );
}

#[test]
fn content_hash_is_stable_and_follows_the_desired_state() {
    let repo = ScratchRepo::minimal_with(&[]);
    let a = repo.render("web", "prod-1").unwrap();
    let b = repo.render("web", "prod-1").unwrap();
    assert_eq!(a.content_hash, b.content_hash);
    assert_eq!(a.content_hash.len(), 64);
    // Reformatting the YAML does not change the desired state...
    repo.write(
        "apps/web/base/deployment.yaml",
        "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: web}\nspec:\n  template:\n    spec: {containers: [{image: nginx, name: web}]}\n    metadata: {labels: {app: web}}\n  selector: {matchLabels: {app: web}}\n",
    );
    assert_eq!(
        repo.render("web", "prod-1").unwrap().content_hash,
        a.content_hash
    );
    // ...changing the image does.
    repo.write(
        "apps/web/base/deployment.yaml",
        "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: web}\nspec:\n  template:\n    spec: {containers: [{image: nginx:2, name: web}]}\n    metadata: {labels: {app: web}}\n  selector: {matchLabels: {app: web}}\n",
    );
    assert_ne!(
        repo.render("web", "prod-1").unwrap().content_hash,
        a.content_hash
    );
}

#[test]
fn overlay_choice_follows_the_most_specific_rule() {
    let tree = DirTree::open(example()).unwrap();
    let fleet = fleet::load(&tree).unwrap();
    let web = fleet.app("web").unwrap();
    let root = |c: &str| {
        render::render(&tree, &fleet, web, fleet.cluster(c).unwrap())
            .unwrap()
            .root
    };
    assert_eq!(root("prod-bj-1"), "apps/web/overlays/prod-bj-1");
    assert_eq!(root("prod-bj-2"), "apps/web/overlays/bj");
    assert_eq!(root("pre-bj-1"), "apps/web/overlays/bj");
    assert_eq!(root("prod-sh-1"), "apps/web/overlays/prod");
    assert_eq!(root("test-sh-1"), "apps/web/base");
}

#[test]
fn example_fleet_has_the_promised_shape() {
    let tree = DirTree::open(example()).unwrap();
    let fleet = fleet::load(&tree).unwrap();
    let count = |s: &str| fleet.clusters.iter().filter(|c| c.stage == s).count();
    assert_eq!((count("test"), count("pre"), count("prod")), (2, 2, 10));
    assert_eq!(fleet.settings.rollout.batches, vec![1, 2, 7]);
    assert_eq!(fleet.settings.rollout.canary[0].value, "test-sh-1");
    let api = fleet.app("api").unwrap();
    let targeted: Vec<&str> = fleet
        .clusters
        .iter()
        .filter(|c| targets_cluster(api, c))
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        targeted.contains(&"test-bj-1"),
        "explicit cluster added although its provider is aws"
    );
    assert!(!targeted.contains(&"prod-gz-3"), "excluded");
    assert!(
        !targeted.contains(&"prod-sh-2"),
        "provider aws does not match the selector"
    );
}

/// Materialises the templates of `app` for `cluster` into a copy of the repository and
/// runs real kustomize on the chosen root.
fn kustomize_reference(
    repo: &Path,
    fleet: &fleet::Fleet,
    app: &fleet::App,
    cluster: &fleet::Cluster,
    root: &str,
) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(repo, tmp.path());
    let tree = DirTree::open(repo).unwrap();
    let ctx = render::template_context(fleet, app, cluster);
    let rendered = render::template::render_templates(
        &tree,
        &RepoPath::new(&format!("apps/{}", app.name)).unwrap(),
        &ctx,
    )
    .unwrap();
    for (path, bytes) in rendered {
        std::fs::write(tmp.path().join(path.as_str()), bytes).unwrap();
    }
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &tmp.path().join(root).to_string_lossy()])
        .output()
        .expect(
            "kubectl must be installed for this test (it is on the development and CI machines)",
        );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rollwave::yaml::parse_documents("kustomize", &String::from_utf8_lossy(&out.stdout)).unwrap()
}

/// What real `helm template` makes of a Helm app for `cluster`: the values files
/// (templates materialised), the app's values, then the cluster's `values.helm.<app>`.
fn helm_reference(
    repo: &Path,
    fleet: &fleet::Fleet,
    app: &fleet::App,
    helm: &fleet::AppHelm,
    cluster: &fleet::Cluster,
) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(repo, tmp.path());
    let tree = DirTree::open(repo).unwrap();
    let ctx = render::template_context(fleet, app, cluster);
    let app_dir = format!("apps/{}", app.name);
    for (path, bytes) in
        render::template::render_templates(&tree, &RepoPath::new(&app_dir).unwrap(), &ctx).unwrap()
    {
        std::fs::write(tmp.path().join(path.as_str()), bytes).unwrap();
    }
    let dir = tmp.path().join(&app_dir);
    let mut cmd = std::process::Command::new(common::helm::helm());
    cmd.args(["template", &helm.release_name])
        .arg(dir.join(&helm.chart))
        .args(["--namespace", app.namespace.as_deref().unwrap_or("default")]);
    for f in &helm.values_files {
        cmd.arg("--values").arg(dir.join(f));
    }
    let cluster_values = cluster
        .values
        .get("helm")
        .and_then(|h| h.get(&app.name))
        .cloned()
        .unwrap_or(Value::Null);
    for (i, values) in [Value::Object(helm.values.clone()), cluster_values]
        .into_iter()
        .filter(|v| !v.is_null())
        .enumerate()
    {
        let file = tmp.path().join(format!("values-{i}.json"));
        std::fs::write(&file, values.to_string()).unwrap();
        cmd.arg("--values").arg(file);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rollwave::yaml::parse_documents("helm", &String::from_utf8_lossy(&out.stdout)).unwrap()
}

fn strip_rollwave(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("app.kubernetes.io/managed-by");
            labels.remove("rollwave.dev/app");
            if labels.is_empty() {
                meta.remove("labels");
            }
        }
        meta.remove("namespace");
    }
    obj
}

#[test]
fn every_rendering_of_the_example_fleet_matches_real_kustomize() {
    let repo = example();
    let tree = DirTree::open(&repo).unwrap();
    let fleet = fleet::load(&tree).unwrap();
    let mut compared = 0;
    for app in &fleet.apps {
        // One cluster per distinct overlay root is enough to cover every root.
        let mut seen_roots = std::collections::BTreeSet::new();
        for cluster in fleet.clusters.iter().filter(|c| targets_cluster(app, c)) {
            let ours = render::render(&tree, &fleet, app, cluster).unwrap();
            if !seen_roots.insert((
                ours.root.clone(),
                serde_json::to_string(&cluster.values).unwrap(),
                cluster.stage.clone(),
            )) {
                continue;
            }
            let theirs = match &app.helm {
                Some(helm) => helm_reference(&repo, &fleet, app, helm, cluster),
                None => kustomize_reference(&repo, &fleet, app, cluster, &ours.root),
            };
            let mut ours_objs: Vec<Value> = ours
                .objects
                .into_vec()
                .into_iter()
                .map(strip_rollwave)
                .collect();
            let mut theirs: Vec<Value> = theirs.into_iter().map(strip_rollwave).collect();
            // rollwave re-sorts after defaulting namespaces; compare as sets of documents.
            let key = |v: &Value| serde_json::to_string(v).unwrap();
            ours_objs.sort_by_key(key);
            theirs.sort_by_key(key);
            assert_eq!(
                ours_objs, theirs,
                "app {} on {} ({})",
                app.name, cluster.name, ours.root
            );
            compared += 1;
        }
    }
    assert!(compared >= 6, "compared only {compared} renderings");
}

#[test]
fn cli_build_prints_what_kustomize_prints() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kustomize/24-overlay-generator-nameref");
    let (code, out, err) = run_cli(&["build", &dir.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let expected = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
    assert_eq!(
        rollwave::yaml::parse_documents("out", &out).unwrap(),
        rollwave::yaml::parse_documents("expected", &expected).unwrap()
    );
}

#[test]
fn cli_render_json_reports_each_apps_hash_and_objects() {
    let repo = example();
    let (code, out, err) = run_cli(&[
        "render",
        "--repo",
        &repo.to_string_lossy(),
        "--cluster",
        "prod-bj-1",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cluster"], "prod-bj-1");
    for app in ["web", "api", "cache", "platform"] {
        assert_eq!(v["apps"][app]["hash"].as_str().unwrap().len(), 64, "{app}");
        assert!(
            !v["apps"][app]["objects"].as_array().unwrap().is_empty(),
            "{app}"
        );
    }
    let (code, out, _) = run_cli(&[
        "render",
        "--repo",
        &repo.to_string_lossy(),
        "--cluster",
        "prod-bj-1",
        "--app",
        "web",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("name: FEATURE_FLAGS"),
        "cluster overlay applied"
    );
}

#[test]
fn cli_validate_accepts_the_example_fleet() {
    let (code, out, err) = run_cli(&["validate", "--repo", &example().to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 errors"), "{out}");
}
