//! The agent against a real Kubernetes control plane (kube-apiserver with etcd,
//! kube-controller-manager, a fake kubelet; see `tests/k8s/`): what the simulator
//! shows, shown again where the answers come from Kubernetes itself. One control plane
//! serves every test of this file, one test at a time.

mod common;

use std::path::Path;
use std::sync::MutexGuard;
use std::time::Duration;

use common::k8s::RealCluster;
use common::sim::eventually;
use common::{ScratchRepo, copy_dir, run_cli};

fn cluster() -> (&'static RealCluster, MutexGuard<'static, ()>) {
    common::shared_real_cluster()
}

fn agent_once(c: &RealCluster, repo: &Path, cluster: &str, inventory: &str) -> (i32, String) {
    let (code, out, err) = run_cli(&[
        "agent",
        "--once",
        "--repo",
        repo.to_str().unwrap(),
        "--cluster",
        cluster,
        "--kubeconfig",
        c.kubeconfig().to_str().unwrap(),
        "--namespace",
        inventory,
    ]);
    (code, format!("{out}{err}"))
}

fn line_of<'a>(out: &'a str, app: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{app}\t")))
        .unwrap_or_else(|| panic!("no line for {app} in:\n{out}"))
}

#[test]
fn the_example_fleet_applies_becomes_available_and_a_second_pass_writes_nothing() {
    let (c, _turn) = cluster();
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&common::example_fleet(), repo.path());

    let before = c.writes();
    let (code, out) = agent_once(c, repo.path(), "test-sh-1", "rollwave-example");
    assert_eq!(code, 0, "{out}");
    for app in ["api", "cache", "platform", "web"] {
        assert!(line_of(&out, app).contains("\tapplied\t"), "{out}");
    }
    let first = c.writes();
    assert_ne!(
        first, before,
        "the apiserver counted the first pass's writes"
    );
    // The agent's applies are counted; the ReplicaSets the deployment controller makes
    // of them are not (the counts are the agent's, not the controllers').
    assert!(
        first.get("PATCH apps:deployments") > before.get("PATCH apps:deployments"),
        "{first:?}"
    );
    assert!(!first.contains_key("POST apps:replicasets"), "{first:?}");

    // Available as the real deployment controller reports it, from Pods the fake
    // kubelet made Ready.
    for (ns, name) in [("web", "web"), ("api", "api"), ("cache", "cache")] {
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Available",
            "--timeout=100s",
            "-n",
            ns,
            &format!("deployment/{name}"),
        ]);
    }

    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(90));
    let (code, out) = agent_once(c, repo.path(), "test-sh-1", "rollwave-example");
    assert_eq!(code, 0, "{out}");
    let after = c.writes();
    let changed: Vec<String> = after
        .iter()
        .filter(|(k, n)| settled.get(*k) != Some(n))
        .map(|(k, n)| format!("{k}: {} -> {n}", settled.get(k).copied().unwrap_or(0)))
        .collect();
    assert!(
        changed.is_empty(),
        "a pass over an unchanged repository must not write; the apiserver counted: {changed:?}\n{out}"
    );
    for app in ["api", "cache", "platform", "web"] {
        let line = line_of(&out, app);
        assert!(
            line.contains("0 created, 0 configured") && line.contains("0 pruned"),
            "{out}"
        );
    }
    assert!(line_of(&out, "web").ends_with("; Healthy"), "{out}");
}

const STUCK: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test]\nrollout:\n  canary: [real-1]\n",
    ),
    ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
    (
        "apps/stuck/app.yaml",
        "namespace: stuck\ntargets:\n  stages: [test]\n",
    ),
    (
        "apps/stuck/base/kustomization.yaml",
        "resources:\n- namespace.yaml\n- deployment.yaml\n",
    ),
    (
        "apps/stuck/base/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: stuck}\n",
    ),
    (
        "apps/stuck/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n  replicas: 1\n  progressDeadlineSeconds: 8\n  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata: {labels: {app: stuck}}\n    spec: {containers: [{name: app, image: registry.example.com/stuck:broken}]}\n",
    ),
];

#[test]
fn a_broken_image_is_degraded_by_the_real_deployment_controllers_progress_deadline() {
    let (c, _turn) = cluster();
    let repo = ScratchRepo::new(STUCK);
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-stuck");
    assert_eq!(code, 0, "{out}");
    assert!(line_of(&out, "stuck").contains("\tapplied\t"), "{out}");

    let progressing = || {
        c.kubectl_ok(&[
            "get",
            "deployment",
            "stuck",
            "-n",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ])
    };
    eventually(
        Duration::from_secs(90),
        "the deployment controller to report ProgressDeadlineExceeded",
        || progressing() == "ProgressDeadlineExceeded",
    );
    let pod_ready = c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "stuck",
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(pod_ready, "ContainersNotReady");

    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-stuck");
    assert_eq!(code, 0, "{out}");
    let line = line_of(&out, "stuck");
    assert!(
        line.contains("; Degraded") && line.contains("progress deadline exceeded"),
        "{out}"
    );
}

const SCALED: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test]\nrollout:\n  canary: [real-1]\n",
    ),
    ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
    (
        "apps/scaled/app.yaml",
        "namespace: scaled\ntargets:\n  stages: [test]\n",
    ),
    (
        "apps/scaled/base/kustomization.yaml",
        "resources:\n- namespace.yaml\n- deployment.yaml\n- hpa.yaml\n",
    ),
    (
        "apps/scaled/base/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: scaled}\n",
    ),
    (
        "apps/scaled/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: scaled\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: scaled}}\n  template:\n    metadata: {labels: {app: scaled}}\n    spec: {containers: [{name: app, image: registry.example.com/scaled:1}]}\n",
    ),
    (
        "apps/scaled/base/hpa.yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: scaled\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: scaled}\n  minReplicas: 3\n  maxReplicas: 5\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}\n",
    ),
];

#[test]
fn replicas_set_by_the_real_autoscaler_are_left_alone_by_the_next_pass() {
    let (c, _turn) = cluster();
    let repo = ScratchRepo::new(SCALED);
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-scaled");
    assert_eq!(code, 0, "{out}");

    // The horizontal-pod-autoscaler controller raises the Deployment to minReplicas
    // (it needs no metrics for that), through the scale subresource.
    let replicas = || {
        c.kubectl_ok(&[
            "get",
            "deployment",
            "scaled",
            "-n",
            "scaled",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
    };
    eventually(
        Duration::from_secs(90),
        "the autoscaler to scale the Deployment to 3",
        || replicas() == "3",
    );
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Available",
        "--timeout=100s",
        "-n",
        "scaled",
        "deployment/scaled",
    ]);

    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(90));
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-scaled");
    assert_eq!(code, 0, "{out}");
    assert_eq!(c.writes(), settled, "the pass wrote:\n{out}");
    assert_eq!(replicas(), "3", "the agent must not fight the autoscaler");
    assert!(line_of(&out, "scaled").ends_with("; Healthy"), "{out}");
}

const HALF: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test]\nrollout:\n  canary: [real-1]\n",
    ),
    ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
    (
        "apps/half/app.yaml",
        "namespace: half\ntargets:\n  stages: [test]\n",
    ),
    (
        "apps/half/base/kustomization.yaml",
        "resources:\n- namespace.yaml\n- cm.yaml\n",
    ),
    (
        "apps/half/base/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: half}\n",
    ),
    (
        "apps/half/base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: v1}\n",
    ),
];

#[test]
fn a_revision_the_real_apiserver_rejects_in_its_dry_run_writes_nothing() {
    let (c, _turn) = cluster();
    let repo = ScratchRepo::new(HALF);
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-half");
    assert_eq!(code, 0, "{out}");

    // v2 changes the ConfigMap and adds a Deployment whose selector does not match its
    // template: only the apiserver's validation (in the dry run) refuses it.
    repo.write(
        "apps/half/base/kustomization.yaml",
        "resources:\n- namespace.yaml\n- cm.yaml\n- deployment.yaml\n",
    );
    repo.write(
        "apps/half/base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: v2}\n",
    );
    repo.write(
        "apps/half/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: half\nspec:\n  selector: {matchLabels: {app: half}}\n  template:\n    metadata: {labels: {app: other}}\n    spec: {containers: [{name: app, image: registry.example.com/half:1}]}\n",
    );
    let settled = c.wait_settled(Duration::from_secs(2), Duration::from_secs(60));
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-half");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Deployment half/half: rejected by the server, nothing applied"),
        "{out}"
    );
    let mode = c.kubectl_ok(&[
        "get",
        "configmap",
        "settings",
        "-n",
        "half",
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(mode, "v1", "the last good state stays applied");
    let wrote: Vec<String> = c
        .writes()
        .into_iter()
        .filter(|(k, n)| settled.get(k) != Some(n) && !k.contains("configmaps"))
        .map(|(k, _)| k)
        .collect();
    assert!(
        wrote.is_empty(),
        "only the inventory may be written: {wrote:?}"
    );
}

#[test]
fn a_suspended_app_is_not_written_even_when_its_manifests_change() {
    let (c, _turn) = cluster();
    let repo = ScratchRepo::new(HALF);
    repo.write(
        "apps/half/app.yaml",
        "namespace: pause\ntargets:\n  stages: [test]\n",
    );
    repo.write(
        "apps/half/base/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: pause}\n",
    );
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-pause");
    assert_eq!(code, 0, "{out}");

    repo.write(
        "apps/half/app.yaml",
        "namespace: pause\nsuspend: true\ntargets:\n  stages: [test]\n",
    );
    repo.write(
        "apps/half/base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: v2}\n",
    );
    let settled = c.wait_settled(Duration::from_secs(2), Duration::from_secs(60));
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-pause");
    assert_eq!(code, 0, "{out}");
    assert!(line_of(&out, "half").contains("\tsuspended\t"), "{out}");
    assert_eq!(
        c.writes(),
        settled,
        "a suspended app is not written:\n{out}"
    );
    let mode = c.kubectl_ok(&[
        "get",
        "configmap",
        "settings",
        "-n",
        "pause",
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(mode, "v1");
}

const PRUNED: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test]\nrollout:\n  canary: [real-1]\n",
    ),
    ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
    (
        "apps/shop/app.yaml",
        "namespace: shop\ntargets:\n  stages: [test]\n",
    ),
    (
        "apps/shop/base/kustomization.yaml",
        "resources:\n- namespace.yaml\n- cms.yaml\n",
    ),
    (
        "apps/shop/base/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    ),
    (
        "apps/shop/base/cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {v: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: legacy}\ndata: {v: '1'}\n",
    ),
];

#[test]
fn prune_deletes_what_left_the_repository_and_never_a_foreign_object_of_the_same_name() {
    let (c, _turn) = cluster();
    let repo = ScratchRepo::new(PRUNED);
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-shop");
    assert_eq!(code, 0, "{out}");

    // Someone replaces `legacy` with an object of their own (no rollwave labels).
    c.kubectl_ok(&["delete", "configmap", "legacy", "-n", "shop"]);
    c.kubectl_ok(&[
        "create",
        "configmap",
        "legacy",
        "-n",
        "shop",
        "--from-literal=owner=someone",
    ]);
    repo.write(
        "apps/shop/base/cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n",
    );
    let (code, out) = agent_once(c, repo.path(), "real-1", "rollwave-shop");
    assert_eq!(code, 0, "{out}");
    let line = line_of(&out, "shop");
    assert!(line.contains("1 pruned, 1 skipped"), "{out}");
    let names = c.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        "shop",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(names, "a kube-root-ca.crt legacy");
    let owner = c.kubectl_ok(&[
        "get",
        "configmap",
        "legacy",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.owner}",
    ]);
    assert_eq!(owner, "someone");
}

#[test]
fn a_running_agent_reverts_a_change_made_behind_its_back() {
    let (c, _turn) = cluster();
    let repo = ScratchRepo::new(HALF);
    repo.write(
        "apps/half/app.yaml",
        "namespace: drift\ntargets:\n  stages: [test]\n",
    );
    repo.write(
        "apps/half/base/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: drift}\n",
    );
    let work = tempfile::tempdir().unwrap();
    let port = common::git::free_port().to_string();
    let log = work.path().join("agent.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["agent", "--repo"])
        .arg(repo.path())
        .args(["--cluster", "real-1", "--kubeconfig"])
        .arg(c.kubeconfig())
        .args(["--namespace", "rollwave-drift", "--interval", "1h"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("ROLLWAVE_CACHE", work.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Agent(child);
    let mode = || {
        c.kubectl(&[
            "get",
            "configmap",
            "settings",
            "-n",
            "drift",
            "-o",
            "jsonpath={.data.mode}",
        ])
        .1
    };
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(Duration::from_secs(60), "the agent's first apply", || {
        mode() == "v1"
    });
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "drift",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"tampered"}}"#,
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mode() != "v1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the change was not reverted within 30 s:\n{}",
            agent_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
