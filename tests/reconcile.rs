//! The reconciler against simulated clusters: first apply and a no-op second pass,
//! change/rename/removal with prune, foreign objects left alone, all-or-nothing on a bad
//! manifest, drift, the autoscaler's replicas, faults and crash safety.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rollwave::agent::{AppResult, Source, reconcile_cluster};
use rollwave::apply::health::Health;
use rollwave::apply::inventory::ObjectKey;
use rollwave::apply::retry::RetryPolicy;
use rollwave::apply::{Action, AppRevision, ApplyError, Reconciler};
use rollwave::sim::{Faults, SimCluster, SimOptions, kubeconfig};
use rollwave::tree::DirTree;
use serde_json::{Value, json};

async fn cluster(name: &str) -> (SimCluster, Client, Reconciler) {
    let mut options = SimOptions::named(name);
    options.ready_after = Duration::from_millis(200);
    options.tick = Duration::from_millis(50);
    let sim = SimCluster::start(options).await.unwrap();
    let kc = Kubeconfig::from_yaml(&kubeconfig(&[(name.to_string(), sim.base_url())])).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let reconciler = Reconciler::new(client.clone(), "rollwave-system").with_retry(RetryPolicy {
        attempts: 12,
        base: Duration::from_millis(5),
        max: Duration::from_millis(200),
        ..RetryPolicy::default()
    });
    (sim, client, reconciler)
}

fn labels(app: &str) -> Value {
    json!({"app.kubernetes.io/managed-by": "rollwave", "rollwave.dev/app": app})
}

fn cm(app: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop", "labels": labels(app)}, "data": {"v": value}})
}

fn deployment(app: &str, name: &str, image: &str, replicas: Option<i64>) -> Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": labels(app)},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": image}]}}}});
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    d
}

fn rev<'a>(app: &'a str, release: &'a str, objects: &'a [Value]) -> AppRevision<'a> {
    AppRevision {
        app,
        release,
        content_hash: release,
        objects,
        force: false,
        namespace: Some("shop"),
        removal: None,
    }
}

fn configmaps(client: &Client) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), "shop")
}

async fn names(client: &Client) -> BTreeSet<String> {
    configmaps(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_app_of_the_example_fleet_applies_and_a_second_pass_writes_nothing() {
    let (sim, _client, reconciler) = cluster("prod-bj-1").await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-example-repo");
    let tree = DirTree::open(&root).unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let no_git = |_: &str, _: &BTreeSet<rollwave::tree::RepoPath>| None;
    let source = Source {
        tree: &tree,
        fleet: &fleet,
        release_of: &no_git,
    };
    let first = reconcile_cluster(&source, "prod-bj-1", &reconciler)
        .await
        .unwrap();
    assert!(first.ok(), "{}", first.table());
    let applied: Vec<&str> = first.apps.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(applied, ["api", "platform", "web"]);
    for (app, r) in &first.apps {
        let AppResult::Applied { counts, .. } = r else {
            panic!("{app}: {r:?}")
        };
        assert!(counts[0] > 0, "{app} created nothing: {}", first.table());
    }
    let writes = sim.stats().writes();
    let second = reconcile_cluster(&source, "prod-bj-1", &reconciler)
        .await
        .unwrap();
    assert!(second.ok(), "{}", second.table());
    assert_eq!(
        sim.stats().writes(),
        writes,
        "a second pass over an unchanged repository must not write:\n{}",
        second.table()
    );
    for (_, r) in &second.apps {
        let AppResult::Applied { counts, .. } = r else {
            panic!()
        };
        assert_eq!((counts[0], counts[1], counts[3]), (0, 0, 0));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_rename_and_removal_prune_exactly_what_left_and_never_a_foreign_object() {
    let (sim, client, r) = cluster("prune").await;
    let v1 = vec![
        cm("shop", "a", "1"),
        cm("shop", "b", "1"),
        cm("shop", "legacy", "1"),
        deployment("shop", "web", "nginx:1", Some(1)),
    ];
    let out = r.reconcile(&rev("shop", "r1", &v1)).await.unwrap();
    assert_eq!(out.count(&Action::Created), 4);
    assert_eq!(
        names(&client).await,
        ["a", "b", "legacy"].map(String::from).into()
    );

    // Someone replaces `legacy` with an object of their own (no rollwave labels).
    let cms = configmaps(&client);
    cms.delete("legacy", &Default::default()).await.unwrap();
    let foreign: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "legacy"}, "data": {"owner": "someone"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &foreign).await.unwrap();

    // v2: `a` changes, `b` is renamed `c`, `legacy` and the Deployment leave.
    let v2 = vec![cm("shop", "a", "2"), cm("shop", "c", "1")];
    let out = r.reconcile(&rev("shop", "r2", &v2)).await.unwrap();
    let action = |name: &str| {
        out.changes
            .iter()
            .find(|c| c.object.name == name)
            .map(|c| c.action.clone())
    };
    assert_eq!(action("a"), Some(Action::Configured));
    assert_eq!(action("c"), Some(Action::Created));
    assert_eq!(action("b"), Some(Action::Pruned));
    assert_eq!(action("web"), Some(Action::Pruned));
    assert!(
        matches!(action("legacy"), Some(Action::Skipped(reason)) if reason.contains("rollwave did not create it"))
    );
    assert_eq!(
        names(&client).await,
        ["a", "c", "legacy"].map(String::from).into()
    );
    assert_eq!(
        cms.get("legacy").await.unwrap().data.unwrap()["owner"],
        "someone"
    );
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "shop");
    assert!(deploys.get_opt("web").await.unwrap().is_none());

    // The inventory now lists exactly the new rendering.
    let inv = r.read_inventory("shop").await.unwrap();
    let listed: Vec<String> = inv.objects.iter().map(|k| k.name.clone()).collect();
    assert_eq!(listed, ["a", "c"]);
    assert_eq!(inv.release, "r2");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_writes_nothing_and_names_the_object() {
    let (sim, client, r) = cluster("bad").await;
    let v1 = vec![cm("shop", "a", "1")];
    r.reconcile(&rev("shop", "r1", &v1)).await.unwrap();
    let before = r.read_inventory("shop").await.unwrap();
    let mut broken = deployment("shop", "web", "nginx:1", Some(1));
    broken["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let v2 = vec![cm("shop", "a", "2"), broken];
    let err = r.reconcile(&rev("shop", "r2", &v2)).await.unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("Deployment shop/web: rejected by the server, nothing applied: Deployment.apps \"web\" is invalid"), "{text}");
    assert!(!err.retryable());
    // The previous state is intact: the ConfigMap keeps its value, the inventory its release.
    assert_eq!(
        configmaps(&client).get("a").await.unwrap().data.unwrap()["v"],
        "1"
    );
    assert_eq!(r.read_inventory("shop").await.unwrap(), before);

    // An unknown kind is refused before any write, too.
    let unknown = vec![
        cm("shop", "a", "3"),
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "shop"}}),
    ];
    let err = r.reconcile(&rev("shop", "r3", &unknown)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Widget shop/w: the cluster does not serve example.com/v1 Widget; install its CRD (or add it to the app) or fix the apiVersion"
    );
    assert_eq!(
        configmaps(&client).get("a").await.unwrap().data.unwrap()["v"],
        "1"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_by_another_writer_is_corrected_unless_the_object_opts_out() {
    let (sim, client, r) = cluster("drift").await;
    let mut held = cm("shop", "held", "1");
    held["metadata"]["annotations"] = json!({"rollwave.dev/reconcile": "disabled"});
    let v1 = vec![cm("shop", "a", "1"), held];
    r.reconcile(&rev("shop", "r1", &v1)).await.unwrap();
    let cms = configmaps(&client);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    cms.patch(
        "a",
        &edit,
        &Patch::Merge(json!({"data": {"v": "hand-edited"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "held",
        &edit,
        &Patch::Merge(json!({"data": {"v": "hand-edited"}})),
    )
    .await
    .unwrap();
    // Another applier's field changed by ssa too.
    let out = r.reconcile(&rev("shop", "r1", &v1)).await.unwrap();
    let action = |name: &str| {
        out.changes
            .iter()
            .find(|c| c.object.name == name)
            .map(|c| c.action.clone())
    };
    assert_eq!(action("a"), Some(Action::Configured));
    assert!(matches!(action("held"), Some(Action::Skipped(_))));
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "1");
    assert_eq!(
        cms.get("held").await.unwrap().data.unwrap()["v"],
        "hand-edited"
    );

    // A conflict with another *applier* is reported, not overridden, unless forced.
    let other = PatchParams::apply("other-gitops").force();
    cms.patch("a", &other, &Patch::Apply(cm("shop", "a", "theirs")))
        .await
        .unwrap();
    let err = r.reconcile(&rev("shop", "r1", &v1)).await.unwrap_err();
    assert!(
        err.to_string().contains("conflict with \"other-gitops\""),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("set `force: true` in the app's app.yaml to take these fields"),
        "{err}"
    );
    let mut forced = rev("shop", "r1", &v1);
    forced.force = true;
    r.reconcile(&forced).await.unwrap();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "1");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_set_by_the_autoscaler_are_not_reverted() {
    let (sim, client, r) = cluster("hpa").await;
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop", "labels": labels("shop")},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10}});
    let v1 = vec![deployment("shop", "web", "nginx:1", Some(2)), hpa];
    r.reconcile(&rev("shop", "r1", &v1)).await.unwrap();
    let deploys: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    let scaler = PatchParams {
        field_manager: Some("horizontal-pod-autoscaler".into()),
        ..Default::default()
    };
    deploys
        .patch(
            "web",
            &scaler,
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    let writes = sim.stats().writes();
    let out = r.reconcile(&rev("shop", "r1", &v1)).await.unwrap();
    assert_eq!(out.count(&Action::Configured), 0, "{:?}", out.changes);
    assert_eq!(sim.stats().writes(), writes);
    assert_eq!(
        deploys.get("web").await.unwrap().data["spec"]["replicas"],
        7
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_5xx_and_429_are_retried_until_the_revision_converges() {
    let (sim, client, r) = cluster("faulty").await;
    sim.set_faults(Faults {
        error_rate: 0.15,
        throttle_rate: 0.05,
        retry_after_seconds: 0,
        ..Faults::default()
    });
    let objects: Vec<Value> = (0..20).map(|i| cm("shop", &format!("c{i}"), "1")).collect();
    let out = r.reconcile(&rev("shop", "r1", &objects)).await.unwrap();
    assert_eq!(out.count(&Action::Created), 20);
    assert!(
        sim.stats().to_owned().writes() > 20,
        "faults forced retries"
    );
    sim.set_faults(Faults::default());
    assert_eq!(names(&client).await.len(), 20);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_422_is_reported_at_once_not_retried() {
    let (sim, _client, r) = cluster("invalid").await;
    r.reconcile(&rev("shop", "r0", &[cm("shop", "fine", "1")]))
        .await
        .unwrap();
    let mut bad = cm("shop", "Bad_Name", "1");
    bad["metadata"]["name"] = json!("Bad_Name");
    let before = sim.stats().requests("patch");
    let err = r
        .reconcile(&rev("shop", "r1", &[cm("shop", "fine", "1"), bad]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string().contains("a lowercase RFC 1123 subdomain"),
        "{err}"
    );
    assert_eq!(
        sim.stats().requests("patch") - before,
        1,
        "one dry run, no retries"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_at_random_points_converges_without_losing_or_orphaning_objects() {
    let (sim, client, r) = cluster("crash").await;
    let r = std::sync::Arc::new(r);
    let revisions: Vec<Vec<Value>> = vec![
        (0..8).map(|i| cm("shop", &format!("a{i}"), "1")).collect(),
        (4..12)
            .map(|i| cm("shop", &format!("a{i}"), "2"))
            .chain([deployment("shop", "web", "nginx:1", Some(1))])
            .collect(),
        (10..14)
            .map(|i| cm("shop", &format!("a{i}"), "3"))
            .collect(),
    ];
    let all_labelled = |client: Client| async move {
        let mut found = BTreeSet::new();
        for (g, v, k, p) in [
            ("", "v1", "ConfigMap", "configmaps"),
            ("apps", "v1", "Deployment", "deployments"),
        ] {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                "shop",
                &kube::api::ApiResource::from_gvk_with_plural(
                    &kube::api::GroupVersionKind::gvk(g, v, k),
                    p,
                ),
            );
            for o in api
                .list(&ListParams::default().labels("rollwave.dev/app=shop"))
                .await
                .unwrap()
                .items
            {
                found.insert((k.to_string(), o.metadata.name.unwrap()));
            }
        }
        found
    };
    for run in 0..50u64 {
        let objects = revisions[(run % 3) as usize].clone();
        if run % 2 == 0 {
            sim.set_faults(Faults {
                drop_rate: 0.1,
                error_rate: 0.1,
                ..Faults::default()
            });
        }
        let release = format!("r{run}");
        let task = {
            let r = r.clone();
            let objects = objects.clone();
            let release = release.clone();
            tokio::spawn(async move {
                r.reconcile(&rev("shop", &release, &objects))
                    .await
                    .map(|_| ())
            })
        };
        tokio::time::sleep(Duration::from_millis(rand_delay(run))).await;
        task.abort();
        let _ = task.await;
        sim.set_faults(Faults::default());
        // The agent restarts and applies the same revision to the end.
        r.reconcile(&rev("shop", &release, &objects))
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        let want: BTreeSet<(String, String)> = objects
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            all_labelled(client.clone()).await,
            want,
            "run {run}: the cluster holds exactly the revision"
        );
        let inv = r.read_inventory("shop").await.unwrap();
        let listed: BTreeSet<(String, String)> = inv
            .objects
            .iter()
            .map(|k: &ObjectKey| (k.kind.clone(), k.name.clone()))
            .collect();
        assert_eq!(
            listed, want,
            "run {run}: the inventory lists exactly the revision"
        );
    }
    sim.shutdown().await;
}

/// A deterministic spread of abort points over the first ~60 ms of an apply.
fn rand_delay(run: u64) -> u64 {
    (run * 37 + 11) % 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_reports_progressing_then_healthy_and_a_broken_image_degraded() {
    let (sim, _client, r) = cluster("health").await;
    let good = vec![deployment("shop", "web", "nginx:1", Some(2))];
    let out = r.reconcile(&rev("shop", "r1", &good)).await.unwrap();
    assert_eq!(out.health, Health::Progressing);
    let mut health = out.health;
    for _ in 0..100 {
        health = r.health(&good).await.unwrap().0;
        if health == Health::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health, Health::Healthy);
    let mut bad = deployment("shop", "web", "nginx:broken", Some(2));
    bad["spec"]["progressDeadlineSeconds"] = json!(1);
    let bad = vec![bad];
    r.reconcile(&rev("shop", "r2", &bad)).await.unwrap();
    for _ in 0..100 {
        health = r.health(&bad).await.unwrap().0;
        if health == Health::Degraded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health, Health::Degraded);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watches_a_steady_state_makes_no_request_and_drift_wakes_a_correction() {
    let (sim, client, r) = cluster("watching").await;
    let cache = rollwave::apply::drift::LiveCache::new(client.clone());
    let r = r.with_cache(cache.clone());
    let objects = vec![
        cm("shop", "a", "1"),
        cm("shop", "b", "1"),
        deployment("shop", "web", "nginx:1", Some(1)),
    ];
    r.reconcile(&rev("shop", "r1", &objects)).await.unwrap();
    for _ in 0..200 {
        if cache.synced() && cache.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.synced(), "the watches list their kinds");
    // Let the workload simulator finish writing status, then drain its notifications.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _ = tokio::time::timeout(Duration::from_millis(100), cache.drifted()).await;
    r.reconcile(&rev("shop", "r1", &objects)).await.unwrap();
    let counts = |sim: &SimCluster| {
        ["get", "list", "create", "update", "patch", "delete"].map(|v| sim.stats().requests(v))
    };
    let before = counts(&sim);
    for _ in 0..5 {
        let out = r.reconcile(&rev("shop", "r1", &objects)).await.unwrap();
        assert_eq!(out.count(&Action::Unchanged), 3);
    }
    assert_eq!(
        counts(&sim),
        before,
        "steady-state reconciles read from the watch cache and write nothing"
    );

    // Someone edits a managed field: the watch reports the app, a reconcile corrects it.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    configmaps(&client)
        .patch("b", &edit, &Patch::Merge(json!({"data": {"v": "edited"}})))
        .await
        .unwrap();
    let drifted = tokio::time::timeout(Duration::from_secs(5), cache.drifted())
        .await
        .expect("drift noticed");
    assert!(drifted.contains("shop"), "{drifted:?}");
    for _ in 0..100 {
        if cache
            .get(&("".into(), "v1".into(), "ConfigMap".into()), "shop", "b")
            .flatten()
            .is_some_and(|o| o["data"]["v"] == "edited")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = r.reconcile(&rev("shop", "r1", &objects)).await.unwrap();
    assert_eq!(
        out.changes
            .iter()
            .find(|c| c.object.name == "b")
            .unwrap()
            .action,
        Action::Configured
    );
    assert_eq!(
        configmaps(&client).get("b").await.unwrap().data.unwrap()["v"],
        "1"
    );
    sim.shutdown().await;
}
