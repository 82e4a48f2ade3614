//! The agent against a real control plane with what real install bundles carry
//! (fleets under `tests/bundles/`): APIs that never answer stop only the apps that use
//! them, and objects the API server stores differently from how they are written cost
//! no write once applied. One control plane serves every test of this file, one test
//! at a time.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::Duration;

use common::k8s::RealCluster;
use common::{copy_dir, run_cli};

fn cluster() -> (&'static RealCluster, MutexGuard<'static, ()>) {
    common::shared_real_cluster()
}

fn bundle(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bundles")
        .join(name)
}

fn agent_once(c: &RealCluster, repo: &Path, inventory: &str) -> (i32, String, String) {
    run_cli(&[
        "agent",
        "--once",
        "--repo",
        repo.to_str().unwrap(),
        "--cluster",
        "real-1",
        "--kubeconfig",
        c.kubeconfig().to_str().unwrap(),
        "--namespace",
        inventory,
    ])
}

fn line_of<'a>(out: &'a str, app: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{app}\t")))
        .unwrap_or_else(|| panic!("no line for {app} in:\n{out}"))
}

/// The requests counted between two readings, as "key: before -> after".
fn counted_since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    keep: impl Fn(&str) -> bool,
) -> Vec<String> {
    after
        .iter()
        .filter(|(k, n)| keep(k) && before.get(*k) != Some(n))
        .map(|(k, n)| format!("{k}: {} -> {n}", before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Dry runs of the agent's own kinds (the control plane's components never dry-run).
fn dry_runs(c: &RealCluster) -> BTreeMap<String, u64> {
    c.requests()
        .into_iter()
        .filter(|(k, _)| k.starts_with("dry-run "))
        .collect()
}

/// A CustomResourceDefinition of about `kib` KiB: a schema with many described
/// fields, as generated CRDs of real operators have.
fn big_crd(plural: &str, kib: usize) -> String {
    let mut props = String::new();
    let text = "Configures one aspect of the reconciliation; see the operator's reference for every accepted value and the defaults applied when it is left out. ".repeat(6);
    let mut i = 0;
    while props.len() < kib * 1024 {
        props.push_str(&format!(
            "              field{i}:\n                type: string\n                description: \"{text}\"\n"
        ));
        i += 1;
    }
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.big.example.com\nspec:\n  group: big.example.com\n  names: {{kind: {plural}x, plural: {plural}}}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n{props}"
    )
}

#[test]
fn objects_the_server_normalises_are_written_once_and_then_never() {
    let (c, _turn) = cluster();
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&bundle("normalised"), repo.path());
    // Over 1 MB of CRDs, each over the 256 KiB a client-side apply annotation could hold.
    let mut names = Vec::new();
    for plural in ["alphas", "betas", "gammas", "deltas"] {
        std::fs::write(
            repo.path()
                .join(format!("apps/big-crds/base/{plural}.yaml")),
            big_crd(plural, 300),
        )
        .unwrap();
        names.push(format!("- {plural}.yaml"));
    }
    std::fs::write(
        repo.path().join("apps/big-crds/base/kustomization.yaml"),
        format!("resources:\n{}\n", names.join("\n")),
    )
    .unwrap();

    let (code, out, err) = agent_once(c, repo.path(), "rollwave-normalised");
    assert_eq!(code, 0, "{out}{err}");
    for app in ["access", "big-crds", "widgets", "workloads"] {
        assert!(line_of(&out, app).contains("\tapplied\t"), "{out}{err}");
    }
    assert!(
        err.contains("cluster-scoped object rendered with a namespace")
            && err.contains("Region widgets/north"),
        "the stray namespace is stripped with a warning: {err}"
    );
    assert!(
        c.kubectl_ok(&["get", "regions.example.com", "north", "-o", "name"])
            .contains("north")
    );
    // The aggregation controller fills the rules the rendering leaves empty.
    common::sim::eventually(Duration::from_secs(60), "aggregated rules", || {
        c.kubectl(&[
            "get",
            "clusterrole",
            "widgets-aggregate",
            "-o",
            "jsonpath={.rules[0].resources}",
        ])
        .1
        .contains("widgets")
    });

    for pass in ["second", "third"] {
        let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
        let dry_before = dry_runs(c);
        let (code, out, err) = agent_once(c, repo.path(), "rollwave-normalised");
        assert_eq!(code, 0, "{out}{err}");
        let writes = counted_since(&settled, &c.writes(), |_| true);
        assert!(
            writes.is_empty(),
            "the {pass} pass over an unchanged repository must not write; the apiserver counted: {writes:?}\n{out}"
        );
        let dry = counted_since(&dry_before, &dry_runs(c), |_| true);
        assert!(
            dry.is_empty(),
            "the {pass} pass needed dry runs to tell that nothing changed: {dry:?}"
        );
        for app in ["access", "big-crds", "widgets", "workloads"] {
            assert!(
                line_of(&out, app).contains("0 created, 0 configured"),
                "{pass} pass:\n{out}"
            );
        }
    }

    // An app leaving the repository is released; the others are not written to.
    std::fs::remove_dir_all(repo.path().join("apps/access")).unwrap();
    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-normalised");
    assert_eq!(code, 0, "{out}{err}");
    assert!(line_of(&out, "access").contains("released"), "{out}");
    let writes = counted_since(&settled, &c.writes(), |_| true);
    assert!(
        writes
            .iter()
            .all(|w| w.starts_with("DELETE configmaps") || w.starts_with("DELETE rbac")),
        "only the released app's inventory (and objects) may be written: {writes:?}\n{out}"
    );
}

fn commit_all(dir: &Path, message: &str) {
    common::git::git(dir, &["add", "-A"]);
    common::git::git(dir, &["commit", "-q", "-m", message]);
}

fn pushed_status(repo: &Path) -> serde_json::Value {
    let out = common::git::git_cmd(repo)
        .args(["show", "refs/rollwave/status/real-1:status.json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn an_api_that_never_answers_stops_only_the_apps_that_use_it() {
    let (c, _turn) = cluster();
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&bundle("broken-apis"), repo.path());
    common::git::git(repo.path(), &["init", "-q"]);
    commit_all(repo.path(), "fleet");

    // The first pass installs the APIService and the webhooks; the apps behind them
    // fail, the others apply.
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-broken");
    assert_eq!(code, 1, "an app in error makes the pass fail:\n{out}{err}");
    for app in ["plain", "metrics-api", "admission"] {
        assert!(line_of(&out, app).contains("\tapplied\t"), "{out}{err}");
    }
    // The APIService answers 503 on discovery from now on (as soon as the aggregator
    // has it, which the first pass may or may not have seen).
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Available=False",
        "--timeout=60s",
        "apiservice/v1beta1.metrics.example.net",
    ]);

    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-broken");
    assert_eq!(code, 1, "{out}{err}");
    let plain = line_of(&out, "plain");
    assert!(
        plain.contains("\tapplied\t") && plain.contains("0 created, 0 configured"),
        "{out}{err}"
    );
    let metrics = line_of(&out, "metrics-user");
    assert!(
        metrics.contains("LoadReport metrics-user/weekly: the cluster cannot serve metrics.example.net/v1beta1 now: APIService v1beta1.metrics.example.net is Available=False")
            && metrics.contains("kubectl get apiservice v1beta1.metrics.example.net"),
        "{metrics}"
    );
    let conversion = line_of(&out, "conversion");
    assert!(
        conversion.contains("Converter conversion/first: the conversion webhook of its CustomResourceDefinition cannot be called"),
        "{conversion}"
    );
    let guarded = line_of(&out, "guarded");
    assert!(
        guarded.contains("ConfigMap guarded/checked: the admission webhook guard.example.org cannot be called and its failurePolicy is Fail"),
        "{guarded}"
    );
    let writes = counted_since(&settled, &c.writes(), |_| true);
    assert!(
        writes.is_empty(),
        "a pass that can change nothing writes nothing, failing apps included: {writes:?}\n{out}{err}"
    );
    let status = pushed_status(repo.path());
    assert_eq!(status["apps"]["plain"]["phase"], "Healthy", "{status:#}");
    assert!(
        status["apps"]["metrics-user"]
            .to_string()
            .contains("metrics.example.net/v1beta1"),
        "the failing app is reported with its reason: {status:#}"
    );

    // Drift on the plain app is taken back, and what leaves the repository is pruned.
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "plain",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"edited"}}"#,
    ]);
    std::fs::remove_file(repo.path().join("apps/plain/base/extra.yaml")).unwrap();
    std::fs::write(
        repo.path().join("apps/plain/base/kustomization.yaml"),
        "resources:\n- settings.yaml\n",
    )
    .unwrap();
    commit_all(repo.path(), "plain: drop extra");
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-broken");
    assert_eq!(code, 1, "{out}{err}");
    let plain = line_of(&out, "plain");
    assert!(
        plain.contains("0 created, 1 configured") && plain.contains("1 pruned"),
        "{out}{err}"
    );
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "configmap",
            "settings",
            "-n",
            "plain",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "steady"
    );
    let (_, _, missing) = c.kubectl(&["get", "configmap", "extra", "-n", "plain"]);
    assert!(missing.contains("NotFound"), "{missing}");
    // The objects of the apps that failed are still there: nothing is pruned because
    // its API could not be reached.
    c.kubectl_ok(&["get", "crd", "converters.example.org"]);
    c.kubectl_ok(&["get", "namespace", "guarded"]);
}

/// Writes a fleet of `apps` into `root`: one cluster (real-1), each app with its own
/// namespace (`<prefix>-<n>`, made by the agent) and the objects `objects` renders for
/// that namespace, in one file.
fn write_fleet(root: &Path, prefix: &str, apps: usize, objects: impl Fn(&str) -> String) {
    let write = |path: &str, text: &str| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "fleet.yaml",
        "stages: [test]\nrollout:\n  canary: [real-1]\n",
    );
    write("clusters/real-1.yaml", "name: real-1\nstage: test\n");
    for i in 0..apps {
        let app = format!("{prefix}-{i}");
        write(
            &format!("apps/{app}/app.yaml"),
            &format!("namespace: {app}\ntargets:\n  stages: [test]\n"),
        );
        write(
            &format!("apps/{app}/base/kustomization.yaml"),
            "resources:\n- all.yaml\n",
        );
        write(&format!("apps/{app}/base/all.yaml"), &objects(&app));
    }
}

/// Three objects of kinds no controller reads one by one: a ConfigMap, a Service and
/// a ServiceAccount.
fn three_objects(app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {app}}}\ndata: {{mode: v1}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {app}}}\n"
    )
}

/// Requests between two readings of `apiserver_request_total` on `resources`, by
/// "verb resource" (dry runs keyed "dry-run ...").
fn requests_on(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    resources: &[&str],
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| resources.iter().any(|r| k.ends_with(&format!(" {r}"))))
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn a_cold_apply_costs_an_apply_per_object_and_a_dry_run_for_all_but_one_and_a_pass_without_changes_none()
 {
    let (c, _turn) = cluster();
    let repo = tempfile::tempdir().unwrap();
    let apps = 4;
    write_fleet(repo.path(), "counted", apps, three_objects);
    let objects = (apps * 3) as u64;

    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
    let before = c.requests();
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-counted");
    assert_eq!(code, 0, "{out}{err}");
    let after = c.requests();
    let writes: BTreeMap<String, u64> = c
        .writes()
        .into_iter()
        .map(|(k, n)| (k.clone(), n - settled.get(&k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    // Per object one apply; per app its namespace (one create) and its inventory
    // (written once: nothing is pruned); once, the agent's own namespace.
    let expected: BTreeMap<String, u64> = [
        ("PATCH configmaps".to_string(), objects / 3 + apps as u64),
        ("PATCH services".to_string(), objects / 3),
        ("PATCH serviceaccounts".to_string(), objects / 3),
        ("POST namespaces".to_string(), apps as u64 + 1),
    ]
    .into();
    assert_eq!(writes, expected, "{out}{err}");
    let dry = requests_on(
        &before,
        &after,
        &["configmaps", "services", "serviceaccounts"],
    );
    let dry: BTreeMap<_, _> = dry
        .into_iter()
        .filter(|(k, _)| k.starts_with("dry-run "))
        .collect();
    assert_eq!(
        dry.values().sum::<u64>(),
        objects - apps as u64,
        "one dry run per object, but for the one per app written first, alone: {dry:?}"
    );
    // Live objects come from one list per kind, never one read each (the controllers
    // read neither Services nor ServiceAccounts one by one).
    let reads = requests_on(&before, &after, &["services", "serviceaccounts"]);
    let reads: Vec<_> = reads.keys().filter(|k| k.starts_with("GET ")).collect();
    assert!(
        reads.is_empty(),
        "the cold apply read objects one by one: {reads:?}"
    );

    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
    let before = c.requests();
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-counted");
    assert_eq!(code, 0, "{out}{err}");
    let after = c.requests();
    let writes = counted_since(&settled, &c.writes(), |_| true);
    assert!(
        writes.is_empty(),
        "a pass without changes wrote: {writes:?}"
    );
    let per_object: Vec<_> = requests_on(
        &before,
        &after,
        &["services", "serviceaccounts", "namespaces"],
    )
    .into_iter()
    .filter(|(k, _)| !k.starts_with("LIST ") && !k.starts_with("WATCH "))
    .collect();
    assert!(
        per_object.is_empty(),
        "a pass without changes sent requests per object: {per_object:?}"
    );
    for i in 0..apps {
        assert!(
            line_of(&out, &format!("counted-{i}")).contains("0 created, 0 configured"),
            "{out}"
        );
    }
}

#[test]
fn a_new_app_with_one_object_the_apiserver_refuses_gets_none_of_its_objects_written() {
    let (c, _turn) = cluster();
    let repo = tempfile::tempdir().unwrap();
    // A ConfigMap, and a Deployment whose selector does not match its template: only
    // the apiserver's validation refuses it, and only once the namespace exists (in a
    // namespace that does not, a dry run answers 404 before validating anything).
    write_fleet(repo.path(), "refused", 1, |app| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {app}}}\ndata: {{mode: v1}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: other}}}}\n    spec: {{containers: [{{name: app, image: registry.example.com/x:1}}]}}\n"
        )
    });
    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-refused");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("Deployment refused-0/refused-0: rejected by the server, nothing applied"),
        "{out}{err}"
    );
    let writes = counted_since(&settled, &c.writes(), |_| true);
    assert!(
        writes.iter().all(|w| w.starts_with("POST namespaces")),
        "only the app's namespace may be made, nothing of the revision nor its inventory: {writes:?}"
    );
    let (_, listed, _) = c.kubectl(&["get", "configmap", "refused-0", "-n", "refused-0"]);
    assert!(!listed.contains("refused-0"), "{listed}");
}

/// The objects the agent wrote, in the order the apiserver finished them, as
/// "resource namespace/name" ("namespaces /name" for a Namespace), from the audit
/// log: writes by the admin, not by the control plane's own components.
fn written_in_order(c: &RealCluster) -> Vec<String> {
    let log = std::fs::read_to_string(c.dir().join("audit.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            let user = e["user"]["username"].as_str().unwrap_or("");
            e["stage"] == "ResponseComplete"
                && !user.starts_with("system:")
                && user != "rollwave-test-control-plane"
                && !e["requestURI"].as_str().unwrap_or("").contains("dryRun=")
                && matches!(e["verb"].as_str(), Some("create" | "patch"))
        })
        .map(|e| {
            let o = &e["objectRef"];
            let resource = o["resource"].as_str().unwrap_or("");
            let namespace = if resource == "namespaces" {
                ""
            } else {
                o["namespace"].as_str().unwrap_or("")
            };
            format!(
                "{resource} {namespace}/{}",
                o["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn side_by_side_writes_keep_kind_order_namespaces_and_crds_before_what_needs_them() {
    let (c, _turn) = cluster();
    let repo = tempfile::tempdir().unwrap();
    write_fleet(repo.path(), "ordered", 3, three_objects);
    // One more app brings a Namespace, a CRD and objects that need both.
    let base = repo.path().join("apps/ordered-defs/base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(
        repo.path().join("apps/ordered-defs/app.yaml"),
        "targets:\n  stages: [test]\n",
    )
    .unwrap();
    std::fs::write(base.join("kustomization.yaml"), "resources:\n- all.yaml\n").unwrap();
    std::fs::write(
        base.join("all.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first, namespace: ordered-space}\n---\napiVersion: example.org/v1\nkind: Gadget\nmetadata: {name: one, namespace: ordered-space}\nspec: {size: 1}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gadgets.example.org}\nspec:\n  group: example.org\n  names: {kind: Gadget, plural: gadgets}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ordered-space}\n",
    )
    .unwrap();
    let start = written_in_order(c).len();
    let (code, out, err) = agent_once(c, repo.path(), "rollwave-ordered");
    assert_eq!(code, 0, "{out}{err}");
    let written = written_in_order(c)[start..].to_vec();
    let at = |what: &str| {
        written
            .iter()
            .position(|w| w == what)
            .unwrap_or_else(|| panic!("{what} was not written: {written:?}"))
    };
    assert!(
        at("customresourcedefinitions /gadgets.example.org") < at("namespaces /ordered-space"),
        "{written:?}"
    );
    assert!(
        at("namespaces /ordered-space") < at("configmaps ordered-space/first"),
        "{written:?}"
    );
    assert!(
        at("namespaces /ordered-space") < at("gadgets ordered-space/one"),
        "{written:?}"
    );
    for i in 0..3 {
        let app = format!("ordered-{i}");
        assert!(
            at(&format!("namespaces /{app}")) < at(&format!("configmaps {app}/{app}")),
            "an app's namespace before its objects: {written:?}"
        );
    }
}
