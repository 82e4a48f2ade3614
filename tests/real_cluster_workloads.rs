//! The health rules of `src/apply/health.rs` against the real workload controllers:
//! StatefulSets, DaemonSets, Jobs and CronJobs applied by the reconciler to the real
//! control plane (`tests/k8s`: kube-controller-manager's statefulset, daemonset, job
//! and cronjob controllers, and the fake kubelet that runs their Pods, completes a
//! Job's and never starts an image tagged `broken`). What the unit tests there assume
//! of each controller's status is shown here to be what the controller writes. One
//! control plane serves the file, one test at a time; each test works in a namespace
//! of its own.

mod common;

use std::time::{Duration, Instant};

use common::ScratchRepo;
use common::backend::{Backend, rev};
use rollwave::agent::{AppResult, Memory};
use rollwave::apply::health::Health;
use serde_json::{Value, json};

/// How long a CronJob test may wait: the controller starts a `* * * * *` Job at the
/// next whole minute, up to 60 s away, and the Job runs a few seconds more.
const CRON_PATIENCE: Duration = Duration::from_secs(180);

fn meta(b: &Backend, name: &str) -> Value {
    json!({"name": name, "namespace": b.ns, "labels": b.labels()})
}

fn pod_template(name: &str, image: &str, restart: &str) -> Value {
    json!({"metadata": {"labels": {"app": name}},
        "spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": image}]}})
}

/// A StatefulSet of `replicas` (OrderedReady, RollingUpdate: the defaults) with the
/// headless Service that names its Pods.
fn stateful_set(b: &Backend, name: &str, image: &str, replicas: i64) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(b, name),
            "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(b, name),
            "spec": {"serviceName": name, "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": pod_template(name, image, "Always")}}),
    ]
}

fn daemon_set(b: &Backend, name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(b, name),
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, image, "Always")}})
}

/// A Job of one Pod; with `deadline`, the job controller fails it after that many
/// seconds of running.
fn job_spec(name: &str, image: &str, deadline: Option<u64>) -> Value {
    let mut spec = json!({"backoffLimit": 0, "template": pod_template(name, image, "Never")});
    if let Some(seconds) = deadline {
        spec["activeDeadlineSeconds"] = json!(seconds);
    }
    spec
}

fn job(b: &Backend, name: &str, image: &str, deadline: Option<u64>) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(b, name),
        "spec": job_spec(name, image, deadline)})
}

fn cron_job(b: &Backend, name: &str, image: &str, deadline: Option<u64>) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(b, name),
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": job_spec(name, image, deadline)}}})
}

/// The live object, as JSON.
fn live(b: &Backend, kind: &str, name: &str) -> Value {
    let (code, out, err) = b.kubectl(&["get", kind, name, "-n", &b.ns, "-o", "json"]);
    assert_eq!(code, 0, "kubectl get {kind} {name}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// The reasons of `unhealthy`, one per line, for assertion messages.
fn reasons(unhealthy: &[(rollwave::apply::inventory::ObjectKey, String)]) -> String {
    unhealthy
        .iter()
        .map(|(k, r)| format!("{k}: {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_is_healthy_once_the_controller_readied_its_replicas_in_order_and_again_after_a_rolling_update()
 {
    let b = Backend::real("statefulset").await;
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let v1 = stateful_set(&b, "db", "registry.example.com/db:1", 3);
    let out = r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    assert_eq!(out.health, Health::Progressing, "not observed yet");
    let (health, why) = b.health_within(&v1, Health::Healthy, b.patience()).await;
    assert_eq!(health, Health::Healthy, "{}", reasons(&why));

    // OrderedReady: the controller created each Pod once the one before it was Ready.
    let sts = live(&b, "statefulset", "db");
    assert_eq!(sts["status"]["readyReplicas"], 3, "{}", sts["status"]);
    assert_eq!(sts["status"]["availableReplicas"], 3, "{}", sts["status"]);
    let pod = |i: usize| live(&b, "pod", &format!("db-{i}"));
    for i in 1..3 {
        let before = pod(i - 1);
        let ready_at = before["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["lastTransitionTime"].as_str().unwrap().to_string())
            .unwrap();
        let created = pod(i)["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            created >= ready_at,
            "db-{i} created at {created}, before db-{} was Ready at {ready_at}",
            i - 1
        );
    }

    // A new template: Progressing until every replica runs it and the controller made
    // the update revision current.
    let v2 = stateful_set(&b, "db", "registry.example.com/db:2", 3);
    let out = r.reconcile(&rev(app, "r2", &v2)).await.unwrap();
    assert_eq!(out.health, Health::Progressing, "{:?}", out.unhealthy);
    let (health, why) = b.health_within(&v2, Health::Healthy, b.patience()).await;
    assert_eq!(health, Health::Healthy, "{}", reasons(&why));
    let status = &live(&b, "statefulset", "db")["status"];
    assert_eq!(status["updatedReplicas"], 3, "{status}");
    assert_eq!(
        status["currentRevision"], status["updateRevision"],
        "{status}"
    );
    for i in 0..3 {
        assert_eq!(
            pod(i)["spec"]["containers"][0]["image"],
            "registry.example.com/db:2"
        );
    }
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_is_healthy_once_its_pod_runs_on_the_node_and_again_after_an_update() {
    let b = Backend::real("daemonset").await;
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let v1 = vec![daemon_set(&b, "agent", "registry.example.com/agent:1")];
    let out = r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    assert_eq!(out.health, Health::Progressing, "not observed yet");
    let (health, why) = b.health_within(&v1, Health::Healthy, b.patience()).await;
    assert_eq!(health, Health::Healthy, "{}", reasons(&why));
    // Healthy because the one Node runs it, not because no Node is eligible.
    let status = &live(&b, "daemonset", "agent")["status"];
    assert_eq!(status["desiredNumberScheduled"], 1, "{status}");
    assert_eq!(status["numberAvailable"], 1, "{status}");

    let v2 = vec![daemon_set(&b, "agent", "registry.example.com/agent:2")];
    let out = r.reconcile(&rev(app, "r2", &v2)).await.unwrap();
    assert_eq!(out.health, Health::Progressing, "{:?}", out.unhealthy);
    let (health, why) = b.health_within(&v2, Health::Healthy, b.patience()).await;
    assert_eq!(health, Health::Healthy, "{}", reasons(&why));
    let status = &live(&b, "daemonset", "agent")["status"];
    assert_eq!(status["updatedNumberScheduled"], 1, "{status}");
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_healthy_once_complete_and_one_whose_image_cannot_be_pulled_is_degraded_at_its_deadline()
 {
    let b = Backend::real("job").await;
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let good = job(&b, "migrate", "registry.example.com/migrate:1", None);
    let stuck = job(&b, "stuck", "registry.example.com/migrate:broken", Some(5));
    let both = [good.clone(), stuck.clone()];
    let out = r.reconcile(&rev(app, "r1", &both)).await.unwrap();
    assert_eq!(out.health, Health::Progressing, "{:?}", out.unhealthy);

    let (health, why) = b
        .health_within(&[good], Health::Healthy, b.patience())
        .await;
    assert_eq!(health, Health::Healthy, "{}", reasons(&why));
    let status = &live(&b, "job", "migrate")["status"];
    assert_eq!(status["succeeded"], 1, "{status}");
    assert!(status["completionTime"].is_string(), "{status}");

    // Its Pod never starts, so it never completes; the job controller fails it when
    // activeDeadlineSeconds has passed.
    let (health, why) = b
        .health_within(&[stuck], Health::Degraded, b.patience())
        .await;
    assert_eq!(health, Health::Degraded, "{}", reasons(&why));
    assert!(
        why[0].1.starts_with("the job failed: DeadlineExceeded"),
        "{}",
        reasons(&why)
    );
    let status = &live(&b, "job", "stuck")["status"];
    assert!(status["succeeded"].is_null(), "{status}");
    let (health, _) = b.reconciler.health(&both).await.unwrap();
    assert_eq!(health, Health::Degraded, "the app is its worst object");
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_is_healthy_once_applied_and_after_its_job_completes_and_degraded_when_its_last_job_failed()
 {
    let b = Backend::real("cronjob").await;
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let good = cron_job(&b, "report", "registry.example.com/report:1", None);
    let failing = cron_job(&b, "flaky", "registry.example.com/report:broken", Some(5));
    let both = [good.clone(), failing.clone()];
    let out = r.reconcile(&rev(app, "r1", &both)).await.unwrap();
    assert_eq!(out.health, Health::Healthy, "{:?}", out.unhealthy);

    // Both run at the next whole minute: `report`'s Job completes, `flaky`'s fails by
    // its deadline (its Pod never starts). `report` is never Degraded meanwhile: the
    // controller drops a finished Job from `active` in the same write that records its
    // success.
    let deadline = Instant::now() + CRON_PATIENCE;
    let mut failed = None;
    loop {
        let report = live(&b, "cronjob", "report");
        let (health, why) = b
            .reconciler
            .health(std::slice::from_ref(&good))
            .await
            .unwrap();
        assert_ne!(health, Health::Degraded, "{}", reasons(&why));
        let flaky = b
            .reconciler
            .health(std::slice::from_ref(&failing))
            .await
            .unwrap();
        if failed.is_none() && flaky.0 == Health::Degraded {
            failed = Some(flaky.1.clone());
        }
        if failed.is_some() && report["status"]["lastSuccessfulTime"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within {CRON_PATIENCE:?}: report {}, flaky {:?}",
            report["status"],
            flaky
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let why = failed.unwrap();
    assert!(
        why[0].1.starts_with("the job scheduled at ") && why[0].1.ends_with(" did not succeed"),
        "{}",
        reasons(&why)
    );
    let (health, why) = b.reconciler.health(&[good]).await.unwrap();
    assert_eq!(health, Health::Healthy, "{}", reasons(&why));
    b.finish().await;
}

/// A fleet of one app, `app` in namespace `app` on cluster `real-1`, holding
/// `manifest`; a rollout that gives up after 5 s of Progressing.
fn fleet_of(app: &str, manifest: &str) -> ScratchRepo {
    ScratchRepo::new(&[
        (
            "fleet.yaml",
            "stages: [test]\nrollout:\n  canary: [real-1]\n  progressDeadline: 5s\n",
        ),
        ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
        (
            &format!("apps/{app}/app.yaml"),
            &format!("namespace: {app}\ntargets:\n  stages: [test]\n"),
        ),
        (
            &format!("apps/{app}/base/kustomization.yaml"),
            "resources:\n- workload.yaml\n",
        ),
        (&format!("apps/{app}/base/workload.yaml"), manifest),
    ])
}

/// A StatefulSet has no progress deadline of its own (unlike a Deployment's
/// `progressDeadlineSeconds`): one whose Pod cannot start stays Progressing, and the
/// agent makes the app Degraded once it has been Progressing for the app's
/// `progressDeadline` (docs/operations/applying.md, "Health").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_whose_image_cannot_be_pulled_is_progressing_until_the_apps_progress_deadline_makes_it_degraded()
 {
    let b = Backend::real("statefulset-stuck").await;
    let app = b.ns.clone();
    let repo = fleet_of(
        &app,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: stuck\nspec:\n  serviceName: stuck\n  replicas: 2\n  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata: {labels: {app: stuck}}\n    spec: {containers: [{name: main, image: registry.example.com/stuck:broken}]}\n",
    );
    let mut memory = Memory::default();
    let started = Instant::now();
    let mut progressing = Vec::new();
    let degraded = loop {
        let report = repo.pass_with("real-1", &b.reconciler, &mut memory).await;
        let (name, result) = &report.apps[0];
        assert_eq!(name, &app);
        let AppResult::Applied {
            health, unhealthy, ..
        } = result
        else {
            panic!("{}", report.table());
        };
        match health {
            Health::Progressing => progressing = unhealthy.clone(),
            Health::Degraded => break unhealthy.clone(),
            Health::Healthy => panic!(
                "a Pod that cannot start is not healthy:\n{}",
                report.table()
            ),
        }
        assert!(
            started.elapsed() < b.patience(),
            "still Progressing after {:?}:\n{}",
            b.patience(),
            report.table()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "Degraded before the deadline"
    );
    assert!(!progressing.is_empty(), "Progressing before the deadline");
    // The controller created the first Pod and, OrderedReady, waits for it for ever.
    assert!(
        degraded.join("; ").contains("StatefulSet")
            && degraded.join("; ").contains("0 of 2 replicas ready"),
        "{degraded:?}"
    );
    let pod = live(&b, "pod", "stuck-0");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ImagePullBackOff",
        "{}",
        pod["status"]
    );
    let (code, _, _) = b.kubectl(&["get", "pod", "stuck-1", "-n", &app]);
    assert_ne!(code, 0, "the second Pod waits for the first to be Ready");
    b.finish().await;
}

/// A CustomResourceDefinition of `kind` in `group`, namespaced, with a status
/// subresource whose fields are free (`x-kubernetes-preserve-unknown-fields`).
fn crd(group: &str, kind: &str, plural: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}, singular: {}}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources: {{status: {{}}}}\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
        kind.to_lowercase()
    )
}

/// The app's health and reasons after one agent pass.
async fn pass_health(
    repo: &ScratchRepo,
    b: &Backend,
    memory: &mut Memory,
) -> (Health, Vec<String>, String) {
    let report = repo.pass_with("real-1", &b.reconciler, memory).await;
    let AppResult::Applied {
        health, unhealthy, ..
    } = &report.apps[0].1
    else {
        panic!("{}", report.table());
    };
    (*health, unhealthy.clone(), report.table())
}

/// Custom resources get their health from their status, as their controller writes it
/// (here the test plays the controller, through the status subresource): a Widget by
/// the kstatus conventions (Reconciling, then Ready, then Stalled), a Gadget by the
/// fleet's CEL rule for its kind. The agent's passes see Progressing, Healthy and
/// Degraded in turn, on the real apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_healthy_by_kstatus_or_by_the_fleets_cel_rule() {
    let b = Backend::real("custom-health").await;
    let app = b.ns.clone();
    let manifest = format!(
        "{}---\n{}---\napiVersion: kstatus.example.com/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {{size: 3}}\n---\napiVersion: cel.example.com/v1\nkind: Gadget\nmetadata: {{name: g}}\nspec: {{wanted: 2}}\n",
        crd("kstatus.example.com", "Widget", "widgets"),
        crd("cel.example.com", "Gadget", "gadgets"),
    );
    let repo = ScratchRepo::new(&[
        (
            "fleet.yaml",
            "stages: [test]\nrollout:\n  canary: [real-1]\n  progressDeadline: 1h\nhealth:\n- apiVersion: cel.example.com/v1\n  kind: Gadget\n  current: status.running == spec.wanted\n  failed: \"status.phase == 'Broken'\"\n",
        ),
        ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
        (
            &format!("apps/{app}/app.yaml"),
            &format!("namespace: {app}\ntargets:\n  stages: [test]\n"),
        ),
        (
            &format!("apps/{app}/base/kustomization.yaml"),
            "resources:\n- resources.yaml\n",
        ),
        (&format!("apps/{app}/base/resources.yaml"), &manifest),
    ]);
    let status = |kind: &str, name: &str, status: Value| {
        let patch = json!({ "status": status }).to_string();
        let (code, _, err) = b.kubectl(&[
            "patch",
            kind,
            name,
            "-n",
            &app,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
        assert_eq!(code, 0, "kubectl patch {kind} {name} status: {err}");
    };
    let mut memory = Memory::default();

    // Applied; the Gadget's rule reads a status nobody wrote yet: Progressing.
    let (health, why, table) = pass_health(&repo, &b, &mut memory).await;
    assert_eq!(health, Health::Progressing, "{table}");
    assert!(
        why.iter()
            .any(|w| w.contains("Gadget") && w.contains("not current yet")),
        "{why:?}"
    );

    // The controllers start working.
    status(
        "widgets.kstatus.example.com",
        "w",
        json!({"observedGeneration": 1, "conditions": [
            {"type": "Reconciling", "status": "True", "reason": "Provisioning", "message": "creating disks"},
            {"type": "Ready", "status": "False", "reason": "Provisioning"}]}),
    );
    status("gadgets.cel.example.com", "g", json!({"running": 1}));
    let (health, why, table) = pass_health(&repo, &b, &mut memory).await;
    assert_eq!(health, Health::Progressing, "{table}");
    assert!(
        why.iter()
            .any(|w| w.contains("Widget") && w.contains("reconciling: creating disks")),
        "{why:?}"
    );

    // Both ready.
    status(
        "widgets.kstatus.example.com",
        "w",
        json!({"observedGeneration": 1, "conditions": [
            {"type": "Reconciling", "status": "False", "reason": "Done"},
            {"type": "Ready", "status": "True", "reason": "Ready"}]}),
    );
    status("gadgets.cel.example.com", "g", json!({"running": 2}));
    let (health, why, table) = pass_health(&repo, &b, &mut memory).await;
    assert_eq!(health, Health::Healthy, "{why:?}\n{table}");

    // One stalls, the other fails: Degraded, each with its reason.
    status(
        "widgets.kstatus.example.com",
        "w",
        json!({"observedGeneration": 1, "conditions": [
            {"type": "Stalled", "status": "True", "reason": "QuotaExceeded", "message": "disk quota exceeded"},
            {"type": "Ready", "status": "False", "reason": "QuotaExceeded"}]}),
    );
    let (health, why, table) = pass_health(&repo, &b, &mut memory).await;
    assert_eq!(health, Health::Degraded, "{table}");
    assert!(
        why.iter()
            .any(|w| w.contains("Widget") && w.contains("disk quota exceeded")),
        "{why:?}"
    );
    status(
        "widgets.kstatus.example.com",
        "w",
        json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    status(
        "gadgets.cel.example.com",
        "g",
        json!({"running": 0, "phase": "Broken"}),
    );
    let (health, why, table) = pass_health(&repo, &b, &mut memory).await;
    assert_eq!(health, Health::Degraded, "{table}");
    assert!(
        why.iter()
            .any(|w| w.contains("Gadget") && w.contains("failed (status.phase == 'Broken')")),
        "{why:?}"
    );
    b.finish().await;
}

/// A wave does not open while a custom resource of the canary is not ready: the
/// canary is the real control plane, where a Gadget is current only by the fleet's CEL
/// rule once its controller (the test) writes `status.running`; wave 1 is a simulated
/// cluster. The agents coordinate through the repository's status refs, as deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_does_not_open_while_the_canarys_custom_resource_is_not_ready() {
    use rollwave::agent::rollout::ClusterAgent;
    use rollwave::status::Phase;

    let b = Backend::real("custom-wave").await;
    let app = b.ns.clone();
    let manifest = format!(
        "{}---\napiVersion: cel.example.com/v1\nkind: Gadget\nmetadata: {{name: g}}\nspec: {{wanted: 2}}\n",
        crd("cel.example.com", "Gadget", "gadgets"),
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    let v1 = common::git::work_repo(
        &repo,
        &[
            (
                "fleet.yaml",
                "stages: [test, prod]\nrollout:\n  canary: [real-1]\n  bake: 0s\n  progressDeadline: 1h\nhealth:\n- apiVersion: cel.example.com/v1\n  kind: Gadget\n  current: status.running == spec.wanted\n",
            ),
            ("clusters/real-1.yaml", "name: real-1\nstage: test\n"),
            ("clusters/sim-1.yaml", "name: sim-1\nstage: prod\n"),
            (
                &format!("apps/{app}/app.yaml"),
                &format!("namespace: {app}\ntargets:\n  stages: [test, prod]\n"),
            ),
            (
                &format!("apps/{app}/base/kustomization.yaml"),
                "resources:\n- resources.yaml\n",
            ),
            (&format!("apps/{app}/base/resources.yaml"), &manifest),
        ],
    );
    let sim = rollwave::sim::SimCluster::start(rollwave::sim::SimOptions::named("sim-1"))
        .await
        .unwrap();
    let kubeconfig = rollwave::sim::kubeconfig(&[("sim-1".to_string(), sim.base_url())]);
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let sim_client = kube::Client::try_from(config).unwrap();
    let sim_reconciler = rollwave::apply::Reconciler::new(sim_client.clone(), "rollwave-system");
    let crds = kube::Api::<kube::api::DynamicObject>::all_with(
        sim_client,
        &kube::api::ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        },
    );
    let mut canary = ClusterAgent::new("real-1", b.fresh_reconciler(), Duration::from_secs(60));
    let mut wave_1 = ClusterAgent::new("sim-1", sim_reconciler, Duration::from_secs(60));
    let path = repo.to_str().unwrap().to_string();
    let phase_on = |cluster: &str| {
        let (statuses, _) =
            rollwave::status::refs::read_statuses(&git2::Repository::open(&repo).unwrap());
        statuses
            .get(cluster)
            .and_then(|s| s.apps.get(&app))
            .map(|a| (a.release.clone(), a.phase))
    };
    let mut passes = async |n: usize| {
        for _ in 0..n {
            for agent in [&mut canary, &mut wave_1] {
                agent
                    .pass(&path, "main", std::time::SystemTime::now())
                    .await
                    .unwrap();
            }
        }
    };

    // Applied on the canary; its Gadget is not current: wave 1 waits, pass after pass.
    passes(4).await;
    assert_eq!(phase_on("real-1"), Some((v1.clone(), Phase::Progressing)));
    assert_eq!(phase_on("sim-1"), None, "wave 1 took the release early");
    let gadgets = crds.get_opt("gadgets.cel.example.com").await.unwrap();
    assert!(gadgets.is_none(), "nothing of the release on wave 1");

    // The controller reports it running as wanted: Healthy, and wave 1 opens.
    let (code, _, err) = b.kubectl(&[
        "patch",
        "gadgets.cel.example.com",
        "g",
        "-n",
        &app,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"running": 2}}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while phase_on("sim-1").is_none() {
        assert!(Instant::now() < deadline, "wave 1 never opened");
        passes(1).await;
    }
    assert_eq!(phase_on("real-1"), Some((v1.clone(), Phase::Healthy)));
    assert_eq!(phase_on("sim-1").map(|(r, _)| r), Some(v1));
    assert!(
        crds.get_opt("gadgets.cel.example.com")
            .await
            .unwrap()
            .is_some()
    );
    sim.shutdown().await;
    b.finish().await;
}
