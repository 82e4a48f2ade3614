//! Apps deployed from Helm charts (app.yaml `helm`) and kustomize's `helmCharts`,
//! rendered by a real `helm` (built from its pinned Go module): values merged in order
//! and per cluster, subcharts, `.Capabilities` from the cluster's `kubeVersion`, hooks
//! and CRDs, a chart that fails, a missing `helm`; and `helmCharts` builds compared with
//! real kustomize's (`kubectl kustomize --enable-helm`) on the same files.

mod common;

use std::path::Path;
use std::process::Command;

use common::helm::{chart, helm, path_with_helm};
use common::{ScratchRepo, copy_dir};
use serde_json::Value;

/// The minimal fleet plus app `greeter` from the `greeter` chart, with `app_yaml`.
fn greeter_repo(app_yaml: &str) -> ScratchRepo {
    let repo = ScratchRepo::minimal_with(&[("apps/greeter/app.yaml", app_yaml)]);
    copy_dir(&chart("greeter"), &repo.path().join("apps/greeter/chart"));
    repo
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let ids: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind}/{name} among {ids:?}")
        })
}

#[test]
fn values_merge_chart_then_files_then_app_then_cluster_and_reach_subcharts() {
    helm();
    let repo = greeter_repo(
        "namespace: greet\ntargets:\n  stages: [test, prod]\nhelm:\n  chart: chart\n  valuesFiles: [values-common.yaml, values-cluster.yaml]\n  values:\n    image: {tag: '2.0.0'}\n",
    );
    repo.write(
        "apps/greeter/values-common.yaml",
        "greeting: hi\nreplicaCount: 2\nimage: {tag: '1.9.0'}\n",
    );
    // Values files may be templates, like every file of an app.
    repo.write(
        "apps/greeter/values-cluster.yaml.hbs",
        "greeting: \"hi from {{cluster.name}}\"\n",
    );
    repo.write(
        "clusters/prod-1.yaml",
        "name: prod-1\nstage: prod\nvalues:\n  helm:\n    greeter: {replicaCount: 5, cache: {size: 1Gi}}\n",
    );

    let test = repo.render("greeter", "test-1").unwrap();
    let d = find(&test.objects, "Deployment", "greeter-greeter");
    assert_eq!(d["metadata"]["namespace"], "greet");
    assert_eq!(d["spec"]["replicas"], 2, "from values-common.yaml");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"], "registry.example.com/greeter:2.0.0",
        "app.yaml values win over the files"
    );
    assert_eq!(
        c["env"][0]["value"], "hi from test-1",
        "the later file wins"
    );
    // The subchart takes the parent's value for it, over its own default.
    let cache = find(&test.objects, "ConfigMap", "greeter-cache");
    assert_eq!(cache["data"]["size"], "64Mi");
    // rollwave's own labels and the app namespace, as for every app.
    assert_eq!(cache["metadata"]["labels"]["rollwave.dev/app"], "greeter");
    assert_eq!(cache["metadata"]["namespace"], "greet");

    let prod = repo.render("greeter", "prod-1").unwrap();
    let d = find(&prod.objects, "Deployment", "greeter-greeter");
    assert_eq!(
        d["spec"]["replicas"], 5,
        "the cluster's values.helm.greeter win"
    );
    let cache = find(&prod.objects, "ConfigMap", "greeter-cache");
    assert_eq!(cache["data"]["size"], "1Gi");
    assert_ne!(test.content_hash, prod.content_hash);
    // The chart's files count as read, so a change to them is a release of the app.
    assert!(
        prod.files_read
            .iter()
            .any(|p| p.as_str() == "apps/greeter/chart/templates/deployment.yaml"),
        "{:?}",
        prod.files_read
    );
}

#[test]
fn crds_and_hooks_are_kept_and_test_hooks_left_out_unless_asked() {
    helm();
    let repo = greeter_repo(
        "namespace: greet\ntargets:\n  stages: [test, prod]\nhelm:\n  chart: chart\n  releaseName: hello\n",
    );
    let r = repo.render("greeter", "test-1").unwrap();
    let kinds: Vec<String> = r
        .objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    // kustomize's order: the CRD first; the hook Job is an ordinary object.
    assert_eq!(kinds[0], "CustomResourceDefinition/greetings.example.com");
    let job = find(&r.objects, "Job", "hello-greeter-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    assert!(!kinds.iter().any(|k| k.starts_with("Pod/")), "{kinds:?}");

    repo.write(
        "apps/greeter/app.yaml",
        "namespace: greet\ntargets:\n  stages: [test, prod]\nhelm:\n  chart: chart\n  releaseName: hello\n  includeCRDs: false\n  skipTests: false\n  skipHooks: false\n",
    );
    let r = repo.render("greeter", "test-1").unwrap();
    assert!(
        !r.objects
            .iter()
            .any(|o| o["kind"] == "CustomResourceDefinition")
    );
    find(&r.objects, "Pod", "hello-greeter-test");
}

#[test]
fn capabilities_follow_the_kube_version_in_the_cluster_file() {
    helm();
    let repo =
        greeter_repo("namespace: greet\ntargets:\n  stages: [test, prod]\nhelm: {chart: chart}\n");
    repo.write(
        "clusters/test-1.yaml",
        "name: test-1\nstage: test\nkubeVersion: \"1.29\"\n",
    );
    repo.write(
        "clusters/prod-1.yaml",
        "name: prod-1\nstage: prod\nkubeVersion: v1.31.4\n",
    );
    let settings = |cluster: &str| {
        let r = repo.render("greeter", cluster).unwrap();
        find(&r.objects, "ConfigMap", "greeter-greeter-settings")["data"].clone()
    };
    let old = settings("test-1");
    assert_eq!(
        (old["kubeVersion"].as_str(), old["sidecars"].as_str()),
        (Some("v1.29"), Some("legacy"))
    );
    let new = settings("prod-1");
    assert_eq!(
        (new["kubeVersion"].as_str(), new["sidecars"].as_str()),
        (Some("v1.31.4"), Some("native"))
    );

    // Through the render cache, which serves one rendering to every cluster that
    // renders an app alike: a cluster with test-1's chart inputs (its kubeVersion, no
    // values.helm.greeter) but values and labels of its own takes test-1's rendering,
    // and prod-1's kubeVersion and a values.helm.greeter of its own each keep a
    // cluster's rendering apart.
    repo.write(
        "clusters/test-2.yaml",
        "name: test-2\nstage: test\nkubeVersion: \"1.29\"\nlabels: {region: bj}\nvalues: {tier: gold}\n",
    );
    repo.write(
        "clusters/test-3.yaml",
        "name: test-3\nstage: test\nkubeVersion: \"1.29\"\nvalues:\n  helm:\n    greeter: {replicaCount: 3}\n",
    );
    let head = common::git::work_repo(repo.path(), &[]);
    let tree = rollwave::source::GitTree::open(
        &repo.path().join(".git"),
        git2::Oid::from_str(&head).unwrap(),
    )
    .unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let cache = rollwave::render::cache::RenderCache::new(1 << 20);
    let app = fleet.app("greeter").unwrap();
    for (cluster, renderings) in [("test-1", 1), ("test-2", 1), ("prod-1", 2), ("test-3", 3)] {
        let c = fleet.cluster(cluster).unwrap();
        let cached = cache
            .render(
                &tree,
                &fleet,
                app,
                c,
                rollwave::render::cache::Keep::Objects,
            )
            .unwrap();
        assert_eq!(
            *cached,
            rollwave::render::render(&tree, &fleet, app, c).unwrap(),
            "{cluster}"
        );
        assert_eq!(cache.misses_of("greeter"), renderings, "{cluster}");
    }

    repo.write(
        "clusters/prod-1.yaml",
        "name: prod-1\nstage: prod\nkubeVersion: latest\n",
    );
    let (code, _, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("clusters/prod-1.yaml:3: kubeVersion: 'latest' is not a Kubernetes version"),
        "{err}"
    );
}

#[test]
fn a_chart_that_fails_is_an_error_naming_the_app_and_helms_reason() {
    helm();
    let repo = ScratchRepo::minimal_with(&[(
        "apps/db/app.yaml",
        "namespace: db\ntargets:\n  stages: [test]\nhelm: {chart: chart}\n",
    )]);
    copy_dir(&chart("failing"), &repo.path().join("apps/db/chart"));
    let err = repo.render("db", "test-1").unwrap_err();
    assert!(
        err.starts_with("apps/db/app.yaml: helm template of apps/db/chart failed:"),
        "{err}"
    );
    assert!(
        err.contains("database.url is required: set it in the app's helm values"),
        "{err}"
    );

    // Once the value is given, it renders.
    repo.write(
        "apps/db/app.yaml",
        "namespace: db\ntargets:\n  stages: [test]\nhelm:\n  chart: chart\n  values: {database: {url: 'postgres://db'}}\n",
    );
    let r = repo.render("db", "test-1").unwrap();
    assert_eq!(
        find(&r.objects, "Secret", "db")["stringData"]["url"],
        "postgres://db"
    );

    // A chart path that is not a chart says so.
    repo.write(
        "apps/db/app.yaml",
        "namespace: db\ntargets:\n  stages: [test]\nhelm: {chart: charts/missing}\n",
    );
    let err = repo.render("db", "test-1").unwrap_err();
    assert!(
        err.contains("no Helm chart at apps/db/charts/missing"),
        "{err}"
    );
}

#[test]
fn without_helm_the_app_fails_with_what_to_install() {
    let repo =
        greeter_repo("namespace: greet\ntargets:\n  stages: [test, prod]\nhelm: {chart: chart}\n");
    // A PATH without helm (none is installed system-wide on the test machines; the
    // built one is only under the target directory).
    let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args([
            "render",
            "--repo",
            repo.path().to_str().unwrap(),
            "--cluster",
            "test-1",
            "--app",
            "greeter",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("apps/greeter/app.yaml: rendering the Helm chart apps/greeter/chart needs the `helm` binary (Helm 3), and none was found on PATH"),
        "{err}"
    );
}

/// Builds `dir` with rollwave and with real kustomize (`--enable-helm`); both must
/// succeed with the same documents in the same order.
fn same_as_kustomize(dir: &Path) {
    let helm = helm();
    let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["build", dir.to_str().unwrap()])
        .env("PATH", path_with_helm())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rollwave build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours =
        rollwave::yaml::parse_documents("rollwave", &String::from_utf8_lossy(&out.stdout)).unwrap();
    let theirs = Command::new("kubectl")
        .args(["kustomize", "--enable-helm", "--helm-command"])
        .arg(helm)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        theirs.status.success(),
        "kustomize: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let theirs =
        rollwave::yaml::parse_documents("kustomize", &String::from_utf8_lossy(&theirs.stdout))
            .unwrap();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "document count; ours:\n{ours:#?}\nkustomize's:\n{theirs:#?}"
    );
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "document {i} of {}", dir.display());
    }
}

/// A case name, its kustomization.yaml and other files beside it.
type KustomizeCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn helm_charts_in_a_kustomization_build_as_real_kustomize_builds_them() {
    common::sim::require_kubectl();
    let cases: &[KustomizeCase] = &[
        (
            "inline-values-override-with-transformers",
            "helmCharts:\n- name: greeter\n  releaseName: hello\n  namespace: greet\n  includeCRDs: true\n  valuesInline:\n    replicaCount: 3\n    image: {tag: '3.1.0'}\nnamePrefix: team-\ncommonLabels: {team: blue}\n",
            &[],
        ),
        (
            "values-merge-and-replace",
            "helmCharts:\n- name: greeter\n  releaseName: merged\n  valuesMerge: merge\n  valuesInline: {replicaCount: 4, greeting: ignored-when-the-file-has-it}\n- name: failing\n  releaseName: replaced\n  valuesMerge: replace\n  valuesInline: {database: {url: 'postgres://x'}}\n",
            &[],
        ),
        (
            "values-file-additional-files-skip-hooks-and-chart-home",
            "helmGlobals:\n  chartHome: vendor\nhelmCharts:\n- name: greeter\n  releaseName: files\n  valuesFile: greeter-values.yaml\n  additionalValuesFiles: [more-values.yaml]\n  skipHooks: true\n  kubeVersion: '1.28'\n",
            &[
                (
                    "greeter-values.yaml",
                    "replicaCount: 7\ngreeting: from-file\ncache: {enabled: false}\n",
                ),
                ("more-values.yaml", "greeting: from-the-additional-file\n"),
            ],
        ),
        (
            "default-release-name-and-patches",
            "helmCharts:\n- name: greeter\npatches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: release-name-greeter}\n    spec: {replicas: 9}\n",
            &[],
        ),
    ];
    for (name, kustomization, files) in cases {
        let dir = tempfile::tempdir().unwrap();
        let home = if kustomization.contains("chartHome: vendor") {
            "vendor"
        } else {
            "charts"
        };
        copy_dir(&chart("greeter"), &dir.path().join(home).join("greeter"));
        copy_dir(&chart("failing"), &dir.path().join(home).join("failing"));
        std::fs::write(dir.path().join("kustomization.yaml"), kustomization).unwrap();
        for (f, content) in *files {
            std::fs::write(dir.path().join(f), content).unwrap();
        }
        eprintln!("case {name}");
        same_as_kustomize(dir.path());
    }
}

#[test]
fn a_chart_to_pull_from_a_repository_is_refused_with_how_to_vendor_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "helmCharts:\n- name: ingress-nginx\n  repo: https://kubernetes.github.io/ingress-nginx\n  version: 4.11.0\n",
    )
    .unwrap();
    let (code, _, err) = common::run_cli(&["build", dir.path().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("helmCharts[0] 'ingress-nginx': no chart at")
            && err
                .contains("pulling it from https://kubernetes.github.io/ingress-nginx is refused"),
        "{err}"
    );
    assert!(err.contains("helm pull ingress-nginx --repo https://kubernetes.github.io/ingress-nginx --version 4.11.0 --untar"), "{err}");
}

#[test]
fn a_charts_objects_are_checked_against_the_apps_tenancy_policy() {
    helm();
    let repo = greeter_repo(
        "namespace: greet\ntargets:\n  stages: [test]\nhelm:\n  chart: chart\n  releaseName: hello\n",
    );
    let fleet = std::fs::read_to_string(repo.path().join("fleet.yaml")).unwrap();
    repo.write(
        "fleet.yaml",
        format!("{fleet}tenancy:\n  defaultPolicy: restricted\n  policies:\n    restricted: {{namespaces: [self]}}\n"),
    );
    let validate = || {
        let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args(["validate", "--repo", repo.path().to_str().unwrap()])
            .env("PATH", path_with_helm())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = validate();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("error: app 'greeter' for cluster 'test-1': apps/greeter: CustomResourceDefinition/greetings.example.com: cluster-scoped kind not allowed by policy 'restricted'\n"),
        "{err}"
    );
    // Without the chart's CRDs everything it renders stays in the app's namespace.
    repo.write(
        "apps/greeter/app.yaml",
        "namespace: greet\ntargets:\n  stages: [test]\nhelm:\n  chart: chart\n  releaseName: hello\n  includeCRDs: false\n",
    );
    let (code, out, err) = validate();
    assert_eq!(code, 0, "{out}{err}");
}
