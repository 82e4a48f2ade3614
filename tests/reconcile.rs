//! The reconciler against a simulated cluster and against the real control plane
//! (`tests/k8s/`), the same test on both: first apply and a no-op second pass,
//! change/rename/removal with prune, foreign objects left alone, all-or-nothing on a bad
//! manifest, drift, the autoscaler's replicas, a CRD with its custom resources, crash
//! safety under random kills, health from the workload controllers. Fault injection is
//! the simulator's alone.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::backend::{Backend, rev};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use rollwave::agent::{AppResult, Source, reconcile_cluster};
use rollwave::apply::health::Health;
use rollwave::apply::inventory::ObjectKey;
use rollwave::apply::{Action, ApplyError};
use rollwave::fleet::tenancy::{DenyRule, NameSet, NamespaceRule, Policy};
use rollwave::sim::Faults;
use rollwave::tree::DirTree;
use serde_json::{Value, json};

on_both!(
    every_app_of_the_example_fleet_applies_and_a_second_pass_writes_nothing,
    change_rename_and_removal_prune_exactly_what_left_and_never_a_foreign_object,
    a_bad_manifest_writes_nothing_and_names_the_object,
    a_revision_against_the_tenancy_policy_writes_nothing_and_names_each_object_and_rule,
    drift_by_another_writer_is_corrected_unless_the_object_opts_out,
    replicas_set_by_the_autoscaler_are_not_reverted,
    a_crd_and_its_custom_resources_apply_in_one_revision_and_leave_in_order,
    a_permanent_422_is_reported_at_once_not_retried,
    an_apply_killed_at_random_points_converges_without_losing_or_orphaning_objects,
    a_deployment_reports_progressing_then_healthy_and_a_broken_image_degraded,
    with_watches_a_steady_state_makes_no_request_and_drift_wakes_a_correction,
    with_watches_an_app_in_sync_still_follows_live_changes_and_new_renderings,
    a_cold_apply_writes_the_inventory_once_and_a_change_that_prunes_twice,
    a_new_app_whose_first_object_is_refused_keeps_no_inventory_and_nothing_else,
    a_new_app_takes_over_an_object_someone_made_and_reports_it_configured,
);

/// The real control plane only: the simulator computes a quota's status but does not
/// enforce it.
mod an_apply_refused_midway_is_retried_as_the_release_not_as_drift {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real() {
        super::an_apply_refused_midway_is_retried_as_the_release_not_as_drift(
            super::common::backend::Backend::real("apply-refused-midway").await,
        )
        .await
    }
}

/// DESIGN §6.1's `restricted`: its own namespace, Namespaces only, no ClusterRoleBinding.
fn restricted() -> Policy {
    Policy {
        name: "restricted".into(),
        namespaces: vec![NamespaceRule::Own],
        cluster_scoped: NameSet::Only(vec!["Namespace".into()]),
        deny: vec![DenyRule {
            kind: "ClusterRoleBinding".into(),
            namespace: None,
        }],
        cluster_roles: NameSet::Only(vec![]),
        service_account: None,
    }
}

fn configmaps(b: &Backend) -> Api<ConfigMap> {
    Api::namespaced(b.client.clone(), &b.ns)
}

/// The ConfigMaps of the test's namespace, without the CA bundle a real cluster
/// publishes into every namespace.
async fn names(b: &Backend) -> BTreeSet<String> {
    configmaps(b)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

fn dynamic(
    client: &Client,
    ns: &str,
    g: &str,
    v: &str,
    k: &str,
    plural: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(g, v, k),
            plural,
        ),
    )
}

/// The write counts that changed between two readings, for a failure message.
fn changed(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(k, n)| before.get(*k) != Some(n))
        .map(|(k, n)| format!("{k}: {} -> {n}", before.get(k).copied().unwrap_or(0)))
        .collect()
}

async fn every_app_of_the_example_fleet_applies_and_a_second_pass_writes_nothing(b: Backend) {
    let root = common::example_fleet();
    let tree = DirTree::open(&root).unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let no_git = |_: &str, _: &BTreeSet<rollwave::tree::RepoPath>| None;
    let source = Source {
        tree: &tree,
        fleet: &fleet,
        release_of: &no_git,
    };
    let first = reconcile_cluster(&source, "prod-bj-1", &b.reconciler)
        .await
        .unwrap();
    assert!(first.ok(), "{}", first.table());
    let applied: Vec<&str> = first.apps.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(applied, ["api", "cache", "platform", "web"]);
    for (app, r) in &first.apps {
        let AppResult::Applied { counts, .. } = r else {
            panic!("{app}: {r:?}")
        };
        assert!(counts[0] > 0, "{app} created nothing: {}", first.table());
    }
    let writes = b.writes().await;
    let second = reconcile_cluster(&source, "prod-bj-1", &b.reconciler)
        .await
        .unwrap();
    assert!(second.ok(), "{}", second.table());
    let after = b.writes_now().await;
    assert!(
        changed(&writes, &after).is_empty(),
        "a second pass over an unchanged repository must not write: {:?}\n{}",
        changed(&writes, &after),
        second.table()
    );
    for (_, r) in &second.apps {
        let AppResult::Applied { counts, .. } = r else {
            panic!()
        };
        assert_eq!((counts[0], counts[1], counts[3]), (0, 0, 0));
    }
    b.finish().await;
}

async fn change_rename_and_removal_prune_exactly_what_left_and_never_a_foreign_object(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let v1 = vec![
        b.cm("a", "1"),
        b.cm("b", "1"),
        b.cm("legacy", "1"),
        b.deployment("web", "nginx:1", Some(1)),
    ];
    let out = r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    assert_eq!(out.count(&Action::Created), 4);
    assert_eq!(
        names(&b).await,
        ["a", "b", "legacy"].map(String::from).into()
    );

    // Someone replaces `legacy` with an object of their own (no rollwave labels).
    let cms = configmaps(&b);
    cms.delete("legacy", &Default::default()).await.unwrap();
    let foreign: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "legacy"}, "data": {"owner": "someone"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &foreign).await.unwrap();

    // v2: `a` changes, `b` is renamed `c`, `legacy` and the Deployment leave.
    let v2 = vec![b.cm("a", "2"), b.cm("c", "1")];
    let out = r.reconcile(&rev(app, "r2", &v2)).await.unwrap();
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
        names(&b).await,
        ["a", "c", "legacy"].map(String::from).into()
    );
    assert_eq!(
        cms.get("legacy").await.unwrap().data.unwrap()["owner"],
        "someone"
    );
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(b.client.clone(), app);
    assert!(deploys.get_opt("web").await.unwrap().is_none());

    // The inventory now lists exactly the new rendering.
    let inv = r.read_inventory(app).await.unwrap();
    let listed: Vec<String> = inv.objects.iter().map(|k| k.name.clone()).collect();
    assert_eq!(listed, ["a", "c"]);
    assert_eq!(inv.release, "r2");
    b.finish().await;
}

async fn a_bad_manifest_writes_nothing_and_names_the_object(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let v1 = vec![b.cm("a", "1")];
    r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    let before = r.read_inventory(app).await.unwrap();
    let mut broken = b.deployment("web", "nginx:1", Some(1));
    broken["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let v2 = vec![b.cm("a", "2"), broken];
    let err = r.reconcile(&rev(app, "r2", &v2)).await.unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "Deployment {app}/web: rejected by the server, nothing applied: Deployment.apps \"web\" is invalid"
        )),
        "{text}"
    );
    assert!(!err.retryable());
    // The previous state is intact: the ConfigMap keeps its value, the inventory its release.
    assert_eq!(
        configmaps(&b).get("a").await.unwrap().data.unwrap()["v"],
        "1"
    );
    assert_eq!(r.read_inventory(app).await.unwrap(), before);

    // An unknown kind is refused before any write, too.
    let unknown = vec![
        b.cm("a", "3"),
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": app}}),
    ];
    let err = r.reconcile(&rev(app, "r3", &unknown)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Widget {app}/w: the cluster does not serve example.com/v1 Widget; install its CRD (or add it to the app) or fix the apiVersion"
        )
    );
    assert_eq!(
        configmaps(&b).get("a").await.unwrap().data.unwrap()["v"],
        "1"
    );
    b.finish().await;
}

async fn a_revision_against_the_tenancy_policy_writes_nothing_and_names_each_object_and_rule(
    b: Backend,
) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let policy = restricted();
    let v1 = vec![b.cm("a", "1")];
    let mut first = rev(app, "r1", &v1);
    first.policy = Some(&policy);
    r.reconcile(&first).await.unwrap();
    let before = r.read_inventory(app).await.unwrap();
    let writes = b.writes().await;

    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{app}-admin")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": app}]});
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{app}-reader")}, "rules": []});
    let mut elsewhere = b.cm("b", "1");
    elsewhere["metadata"]["namespace"] = json!("kube-system");
    let v2 = vec![b.cm("a", "2"), binding, role, elsewhere];
    let mut second = rev(app, "r2", &v2);
    second.policy = Some(&policy);
    let err = r.reconcile(&second).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "apps/{app}: ClusterRoleBinding/{app}-admin: denied by policy 'restricted' (deny: ClusterRoleBinding); \
             ClusterRole/{app}-reader: cluster-scoped kind not allowed by policy 'restricted'; \
             ConfigMap/kube-system/b: namespace 'kube-system' not allowed by policy 'restricted' (namespaces: self = {app})"
        )
    );
    assert_eq!(err.reason(), "PolicyViolation");
    assert!(!err.retryable(), "only a change in the repository helps");
    // Nothing of the revision was written: not even the allowed ConfigMap.
    assert_eq!(b.writes().await, writes);
    assert_eq!(
        configmaps(&b).get("a").await.unwrap().data.unwrap()["v"],
        "1"
    );
    assert_eq!(r.read_inventory(app).await.unwrap(), before);
    // The same revision without a policy (no tenancy) applies.
    r.reconcile(&rev(app, "r2", &v2[..1])).await.unwrap();
    b.finish().await;
}

async fn drift_by_another_writer_is_corrected_unless_the_object_opts_out(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let mut held = b.cm("held", "1");
    held["metadata"]["annotations"] = json!({"rollwave.dev/reconcile": "disabled"});
    let v1 = vec![b.cm("a", "1"), held];
    r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    let cms = configmaps(&b);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    for name in ["a", "held"] {
        cms.patch(
            name,
            &edit,
            &Patch::Merge(json!({"data": {"v": "hand-edited"}})),
        )
        .await
        .unwrap();
    }
    let out = r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
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
    cms.patch("a", &other, &Patch::Apply(b.cm("a", "theirs")))
        .await
        .unwrap();
    let err = r.reconcile(&rev(app, "r1", &v1)).await.unwrap_err();
    assert!(
        err.to_string().contains("conflict with \"other-gitops\""),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("set `force: true` in the app's app.yaml to take these fields"),
        "{err}"
    );
    let mut forced = rev(app, "r1", &v1);
    forced.force = true;
    r.reconcile(&forced).await.unwrap();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "1");
    b.finish().await;
}

/// Whether rollwave's apply owns `spec.replicas` of `d` (its managedFields entry).
fn rollwave_owns_replicas(d: &DynamicObject) -> bool {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some("rollwave"))
        .any(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get("f:replicas").is_some())
        })
}

async fn replicas_set_by_the_autoscaler_are_not_reverted(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    // rollwave leaves `replicas` out of an autoscaled Deployment, so the API server
    // creates it with its default of 1. The range [1, 10] holds 1 and the 7 set below:
    // on the real control plane the autoscaler runs too, and without a metrics API a
    // count inside the range leaves it nothing to do (a minimum above 1 would have it
    // scale the new Deployment up, at a moment of its choosing: a race with the patch
    // below that it could win with its stale count).
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": app, "labels": b.labels()},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 10}});
    let v1 = vec![b.deployment("web", "nginx:1", Some(2)), hpa];
    r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    let deploys = dynamic(&b.client, app, "apps", "v1", "Deployment", "deployments");
    let created = deploys.get("web").await.unwrap();
    assert_eq!(created.data["spec"]["replicas"], 1, "the API's default");
    assert!(
        !rollwave_owns_replicas(&created),
        "{:?}",
        created.metadata.managed_fields
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
    // The autoscaler's own status updates (each of its syncs records the count it
    // saw) are not rollwave's writes.
    let theirs = |w: std::collections::BTreeMap<String, u64>| {
        w.into_iter()
            .filter(|(k, _)| !k.ends_with("horizontalpodautoscalers/status"))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let writes = theirs(b.writes().await);
    let out = r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    assert_eq!(out.count(&Action::Configured), 0, "{:?}", out.changes);
    let after = theirs(b.writes_now().await);
    assert!(
        changed(&writes, &after).is_empty(),
        "{:?}",
        changed(&writes, &after)
    );
    let now = deploys.get("web").await.unwrap();
    assert_eq!(now.data["spec"]["replicas"], 7);
    assert!(
        !rollwave_owns_replicas(&now),
        "{:?}",
        now.metadata.managed_fields
    );
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_5xx_and_429_are_retried_until_the_revision_converges() {
    let b = Backend::sim("faulty").await;
    let sim = b.sim_cluster().unwrap();
    sim.set_faults(Faults {
        error_rate: 0.15,
        throttle_rate: 0.05,
        retry_after_seconds: 0,
        ..Faults::default()
    });
    let objects: Vec<Value> = (0..20).map(|i| b.cm(&format!("c{i}"), "1")).collect();
    let out = b
        .reconciler
        .reconcile(&rev(&b.ns, "r1", &objects))
        .await
        .unwrap();
    assert_eq!(out.count(&Action::Created), 20);
    assert!(
        sim.stats().to_owned().writes() > 20,
        "faults forced retries"
    );
    sim.set_faults(Faults::default());
    assert_eq!(names(&b).await.len(), 20);
    b.finish().await;
}

async fn a_crd_and_its_custom_resources_apply_in_one_revision_and_leave_in_order(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com", "labels": b.labels()},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10}}}}}}}]}});
    let widget = |name: &str, size: i64| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": app, "labels": b.labels()},
            "spec": {"size": size}})
    };
    // The CRD and its resources in one revision: the CRD goes first and is waited for.
    let v1 = vec![widget("small", 2), crd.clone(), widget("large", 9)];
    let out = r.reconcile(&rev(app, "r1", &v1)).await.unwrap();
    assert_eq!(out.count(&Action::Created), 3, "{:?}", out.changes);
    let widgets = dynamic(&b.client, app, "example.com", "v1", "Widget", "widgets");
    assert_eq!(widgets.get("large").await.unwrap().data["spec"]["size"], 9);

    // A custom resource its schema refuses: nothing of the revision is written.
    let v2 = vec![crd.clone(), widget("small", 3), widget("large", 50)];
    let err = r.reconcile(&rev(app, "r2", &v2)).await.unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("Widget {app}/large: rejected by the server")),
        "{err}"
    );
    assert!(err.to_string().contains("spec.size"), "{err}");
    assert_eq!(widgets.get("small").await.unwrap().data["spec"]["size"], 2);
    assert_eq!(r.read_inventory(app).await.unwrap().release, "r1");

    // Everything leaves: the custom resources are pruned before their CRD, and the
    // kind is gone from the cluster.
    let out = r.reconcile(&rev(app, "r3", &[])).await.unwrap();
    let pruned: Vec<String> = out
        .changes
        .iter()
        .filter(|c| c.action == Action::Pruned)
        .map(|c| c.object.kind.clone())
        .collect();
    assert_eq!(pruned.len(), 3, "{:?}", out.changes);
    assert_eq!(
        pruned.last().map(String::as_str),
        Some("CustomResourceDefinition"),
        "{pruned:?}"
    );
    let crds = dynamic(
        &b.client,
        "",
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    let deadline = Instant::now() + b.patience();
    while crds.get_opt("widgets.example.com").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the CRD was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.finish().await;
}

async fn a_permanent_422_is_reported_at_once_not_retried(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    r.reconcile(&rev(app, "r0", &[b.cm("fine", "1")]))
        .await
        .unwrap();
    let bad = b.cm("Bad_Name", "1");
    let before = b.requests(&["patch"], &["configmaps"]).await;
    let err = r
        .reconcile(&rev(app, "r1", &[b.cm("fine", "1"), bad]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string().contains("a lowercase RFC 1123 subdomain"),
        "{err}"
    );
    assert_eq!(
        b.requests(&["patch"], &["configmaps"]).await - before,
        1,
        "one dry run, no retries"
    );
    b.finish().await;
}

async fn an_apply_killed_at_random_points_converges_without_losing_or_orphaning_objects(
    b: Backend,
) {
    let app = b.ns.clone();
    let r = std::sync::Arc::new(b.fresh_reconciler());
    let revisions: Vec<Vec<Value>> = vec![
        (0..8).map(|i| b.cm(&format!("a{i}"), "1")).collect(),
        (4..12)
            .map(|i| b.cm(&format!("a{i}"), "2"))
            .chain([b.deployment("web", "nginx:1", Some(1))])
            .collect(),
        (10..14).map(|i| b.cm(&format!("a{i}"), "3")).collect(),
    ];
    let all_labelled = || async {
        let mut found = BTreeSet::new();
        for (g, v, k, p) in [
            ("", "v1", "ConfigMap", "configmaps"),
            ("apps", "v1", "Deployment", "deployments"),
        ] {
            let api = dynamic(&b.client, &app, g, v, k, p);
            for o in api
                .list(&ListParams::default().labels(&format!("rollwave.dev/app={app}")))
                .await
                .unwrap()
                .items
            {
                found.insert((k.to_string(), o.metadata.name.unwrap()));
            }
        }
        found
    };
    // Requests take longer on the real apiserver: spread the kills over a longer span.
    let span = if b.is_real() { 400 } else { 60 };
    for run in 0..50u64 {
        let objects = revisions[(run % 3) as usize].clone();
        if let Some(sim) = b.sim_cluster().filter(|_| run % 2 == 0) {
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
            let app = app.clone();
            tokio::spawn(async move {
                r.reconcile(&rev(&app, &release, &objects))
                    .await
                    .map(|_| ())
            })
        };
        tokio::time::sleep(Duration::from_millis(kill_after(run, span))).await;
        task.abort();
        let _ = task.await;
        if let Some(sim) = b.sim_cluster() {
            sim.set_faults(Faults::default());
        }
        // The agent restarts and applies the same revision to the end.
        r.reconcile(&rev(&app, &release, &objects))
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
            all_labelled().await,
            want,
            "run {run}: the cluster holds exactly the revision"
        );
        let inv = r.read_inventory(&app).await.unwrap();
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
    b.finish().await;
}

/// A deterministic spread of kill points over the first `span` ms of an apply.
fn kill_after(run: u64, span: u64) -> u64 {
    (run * 37 + 11) % span
}

async fn a_deployment_reports_progressing_then_healthy_and_a_broken_image_degraded(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let good = vec![b.deployment("web", "nginx:1", Some(2))];
    let out = r.reconcile(&rev(app, "r1", &good)).await.unwrap();
    assert_eq!(out.health, Health::Progressing);
    assert_eq!(
        b.health_becomes(&good, Health::Healthy).await,
        Health::Healthy
    );
    // On the real control plane Degraded comes from the deployment controller's own
    // ProgressDeadlineExceeded: the fake kubelet never readies a `broken` image.
    let mut bad = b.deployment("web", "nginx:broken", Some(2));
    bad["spec"]["progressDeadlineSeconds"] = json!(if b.is_real() { 5 } else { 1 });
    let bad = vec![bad];
    r.reconcile(&rev(app, "r2", &bad)).await.unwrap();
    assert_eq!(
        b.health_becomes(&bad, Health::Degraded).await,
        Health::Degraded
    );
    b.finish().await;
}

async fn with_watches_a_steady_state_makes_no_request_and_drift_wakes_a_correction(b: Backend) {
    let app = b.ns.as_str();
    let cache = rollwave::apply::drift::LiveCache::new(b.client.clone());
    let r = b.fresh_reconciler().with_cache(cache.clone());
    let objects = vec![
        b.cm("a", "1"),
        b.cm("b", "1"),
        b.deployment("web", "nginx:1", Some(1)),
    ];
    r.reconcile(&rev(app, "r1", &objects)).await.unwrap();
    let deadline = Instant::now() + b.patience();
    // At least the three objects: the app's inventory ConfigMap carries the managed-by
    // label too, and is cached as well where it lives in the watched cluster.
    while !(cache.synced() && cache.len() >= 3) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.synced(), "the watches list their kinds");
    // Let the workload controllers finish writing status, then drain their notifications.
    assert_eq!(
        b.health_becomes(&objects, Health::Healthy).await,
        Health::Healthy
    );
    b.writes().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _ = tokio::time::timeout(Duration::from_millis(100), cache.drifted()).await;
    r.reconcile(&rev(app, "r1", &objects)).await.unwrap();
    let verbs = ["get", "list", "create", "update", "patch", "delete"];
    let ours = ["configmaps", "deployments", "namespaces"];
    let before = b.requests(&verbs, &ours).await;
    for _ in 0..5 {
        let out = r.reconcile(&rev(app, "r1", &objects)).await.unwrap();
        assert_eq!(out.count(&Action::Unchanged), 3);
    }
    assert_eq!(
        b.requests(&verbs, &ours).await,
        before,
        "steady-state reconciles read from the watch cache and write nothing"
    );

    // Someone edits a managed field: the watch reports the app, a reconcile corrects it.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    configmaps(&b)
        .patch("b", &edit, &Patch::Merge(json!({"data": {"v": "edited"}})))
        .await
        .unwrap();
    let drifted = tokio::time::timeout(Duration::from_secs(10), cache.drifted())
        .await
        .expect("drift noticed");
    assert!(drifted.contains(app), "{drifted:?}");
    for _ in 0..500 {
        if cache
            .get(&("".into(), "v1".into(), "ConfigMap".into()), app, "b")
            .flatten()
            .is_some_and(|o| o["data"]["v"] == "edited")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = r.reconcile(&rev(app, "r1", &objects)).await.unwrap();
    assert_eq!(
        out.changes
            .iter()
            .find(|c| c.object.name == "b")
            .unwrap()
            .action,
        Action::Configured
    );
    assert_eq!(
        configmaps(&b).get("b").await.unwrap().data.unwrap()["v"],
        "1"
    );
    b.finish().await;
}

/// Reconciles `objects` as release r1 until `done` holds for the outcome, within the
/// backend's patience: the watch delivers another writer's change in its own time.
async fn reconcile_until(
    b: &Backend,
    r: &rollwave::apply::Reconciler,
    objects: &[Value],
    what: &str,
    done: impl Fn(&rollwave::apply::Applied) -> bool,
) -> rollwave::apply::Applied {
    let deadline = Instant::now() + b.patience();
    loop {
        let out = r.reconcile(&rev(&b.ns, "r1", objects)).await.unwrap();
        if done(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}: last outcome {out:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn action_on(out: &rollwave::apply::Applied, name: &str) -> Action {
    out.changes
        .iter()
        .find(|c| c.object.name == name)
        .map(|c| c.action.clone())
        .unwrap_or_else(|| panic!("no change for {name}: {out:?}"))
}

/// An app found in sync is not compared again while nothing changes (see
/// `apply::settled`); this checks that whatever does change still reaches the outcome:
/// another writer's change that only health sees, a new rendering under the same
/// release, the label taken away, the object deleted.
async fn with_watches_an_app_in_sync_still_follows_live_changes_and_new_renderings(b: Backend) {
    use rollwave::fleet::health::{Expression, HealthRule};
    let app = b.ns.as_str();
    let cache = rollwave::apply::drift::LiveCache::new(b.client.clone());
    let r = b.fresh_reconciler().with_cache(cache.clone());
    // A ConfigMap is Healthy once annotated ready: a change health sees and the
    // comparison does not (the annotation is not in the rendering).
    r.set_health_rules(&[HealthRule {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        current: Expression {
            text: "has(metadata.annotations) && metadata.annotations['example.com/ready'] == 'yes'"
                .into(),
            source: "test".into(),
        },
        in_progress: None,
        failed: None,
    }]);
    let ready = json!({"example.com/ready": "yes"});
    let mut b_ready = b.cm("b", "1");
    b_ready["metadata"]["annotations"] = ready.clone();
    let objects = vec![b.cm("a", "1"), b_ready.clone()];
    r.reconcile(&rev(app, "r1", &objects)).await.unwrap();
    let deadline = Instant::now() + b.patience();
    while !(cache.synced() && cache.len() >= 2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.synced(), "the watches list their kinds");
    let unchanged = |out: &rollwave::apply::Applied| out.count(&Action::Unchanged) == 2;
    let out = reconcile_until(&b, &r, &objects, "in sync", unchanged).await;
    assert_eq!(out.health, Health::Progressing, "{out:?}");
    // Settled: the same outcome again.
    assert_eq!(
        r.reconcile(&rev(app, "r1", &objects)).await.unwrap().health,
        Health::Progressing
    );

    // Someone annotates `a` ready: nothing to correct, but the app is Healthy now.
    let other = PatchParams {
        field_manager: Some("someone-else".into()),
        ..Default::default()
    };
    configmaps(&b)
        .patch(
            "a",
            &other,
            &Patch::Merge(json!({"metadata": {"annotations": ready}})),
        )
        .await
        .unwrap();
    let out = reconcile_until(&b, &r, &objects, "health follows the annotation", |o| {
        o.health == Health::Healthy
    })
    .await;
    assert!(unchanged(&out), "{out:?}");

    // A new rendering under the same release is applied.
    let mut a_ready = b.cm("a", "2");
    a_ready["metadata"]["annotations"] = json!({"example.com/ready": "yes"});
    let renamed = vec![a_ready, b_ready];
    let out = r.reconcile(&rev(app, "r1", &renamed)).await.unwrap();
    assert_eq!(action_on(&out, "a"), Action::Configured);
    assert_eq!(
        configmaps(&b).get("a").await.unwrap().data.unwrap()["v"],
        "2"
    );
    reconcile_until(&b, &r, &renamed, "in sync again", unchanged).await;

    // Someone takes rollwave's label off `b`: it is taken back.
    configmaps(&b)
        .patch(
            "b",
            &other,
            &Patch::Merge(json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}})),
        )
        .await
        .unwrap();
    let out = reconcile_until(&b, &r, &renamed, "the label taken back", |o| {
        action_on(o, "b") != Action::Unchanged
    })
    .await;
    assert_eq!(action_on(&out, "b"), Action::Configured);
    let labels = configmaps(&b)
        .get("b")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "rollwave");
    reconcile_until(&b, &r, &renamed, "in sync again", unchanged).await;

    // Someone deletes `a`: it is made again.
    configmaps(&b)
        .delete("a", &Default::default())
        .await
        .unwrap();
    let out = reconcile_until(&b, &r, &renamed, "the deleted object made again", |o| {
        action_on(o, "a") != Action::Unchanged
    })
    .await;
    assert_eq!(action_on(&out, "a"), Action::Created);
    assert!(configmaps(&b).get_opt("a").await.unwrap().is_some());
    b.finish().await;
}

async fn a_cold_apply_writes_the_inventory_once_and_a_change_that_prunes_twice(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let patches = || b.requests(&["patch"], &["configmaps"]);
    let objects: Vec<Value> = (0..3).map(|i| b.cm(&format!("c{i}"), "1")).collect();
    let before = patches().await;
    r.reconcile(&rev(app, "r1", &objects)).await.unwrap();
    assert_eq!(
        patches().await - before,
        2 + 3 + 1,
        "an apply per object, a dry run for each but the first (written alone, before \
         the others), and one write of the inventory"
    );
    let inventory = b.fresh_reconciler().read_inventory(app).await.unwrap();
    assert_eq!(
        (
            inventory.release.as_str(),
            &inventory.applying,
            inventory.objects.len()
        ),
        ("r1", &None, 3),
        "the one write is the final record: {inventory:?}"
    );

    // Removing an object: the inventory names old and new before the writes, and what
    // is left after them.
    let changed = vec![b.cm("c0", "2"), b.cm("c1", "1")];
    let before = patches().await;
    let out = r.reconcile(&rev(app, "r2", &changed)).await.unwrap();
    assert_eq!(out.count(&Action::Pruned), 1, "{out:?}");
    assert_eq!(
        patches().await - before,
        1 + 1 + 2,
        "the changed object's dry run and apply, and two writes of the inventory"
    );
    let inventory = b.fresh_reconciler().read_inventory(app).await.unwrap();
    let names: Vec<&str> = inventory.objects.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        (inventory.release.as_str(), &inventory.applying, names),
        ("r2", &None, vec!["c0", "c1"])
    );
    b.finish().await;
}

async fn a_new_app_whose_first_object_is_refused_keeps_no_inventory_and_nothing_else(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    let deletes = || b.requests(&["delete"], &["configmaps"]);
    // A new app of two ConfigMaps to create: the first is written alone without a dry
    // run, and the server refuses its name; the second passed its dry run.
    let objects = [b.cm("Bad_Name", "1"), b.cm("good", "1")];
    let before = deletes().await;
    let err = r.reconcile(&rev(app, "r1", &objects)).await.unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "ConfigMap {app}/Bad_Name: rejected by the server, nothing applied"
        )),
        "{err}"
    );
    assert_eq!(deletes().await - before, 1, "the inventory's");
    assert!(
        configmaps(&b).get_opt("good").await.unwrap().is_none(),
        "nothing of the revision is written"
    );
    let listed = b.fresh_reconciler().inventoried_apps().await.unwrap();
    assert!(
        !listed.iter().any(|a| a == app),
        "the inventory written before the first object is deleted again: {listed:?}"
    );

    // The same revision again: every object dry-run, so the inventory is neither
    // written nor deleted again.
    let before = deletes().await;
    let err = r.reconcile(&rev(app, "r1", &objects)).await.unwrap_err();
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err:?}");
    assert_eq!(deletes().await - before, 0);
    assert!(
        !b.fresh_reconciler()
            .inventoried_apps()
            .await
            .unwrap()
            .iter()
            .any(|a| a == app)
    );

    // Fixed, the revision applies whole: the first object alone, then the rest.
    let fixed = [b.cm("bad-name", "1"), b.cm("good", "1")];
    let out = r.reconcile(&rev(app, "r2", &fixed)).await.unwrap();
    assert_eq!(out.count(&Action::Created), 2, "{out:?}");
    let inventory = b.fresh_reconciler().read_inventory(app).await.unwrap();
    assert_eq!(
        (inventory.release.as_str(), inventory.objects.len()),
        ("r2", 2)
    );
    b.finish().await;
}

async fn a_new_app_takes_over_an_object_someone_made_and_reports_it_configured(b: Backend) {
    let app = b.ns.as_str();
    // With watches, as the agent runs: an object made by hand before the app existed,
    // without rollwave's labels, is not in the watch, so the new app's first object
    // (written without a dry run) is it.
    let cache = rollwave::apply::drift::LiveCache::new(b.client.clone());
    let r = &b.fresh_reconciler().with_cache(cache.clone());
    let by_hand: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"v": "0", "other": "kept"}
    }))
    .unwrap();
    let pp = PostParams {
        field_manager: Some("someone".into()),
        ..Default::default()
    };
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": app}})).unwrap();
    let namespaces: Api<Namespace> = Api::all(b.client.clone());
    namespaces.create(&pp, &namespace).await.unwrap();
    configmaps(&b).create(&pp, &by_hand).await.unwrap();
    let out = r
        .reconcile(&rev(app, "r1", &[b.cm("settings", "1"), b.cm("new", "1")]))
        .await
        .unwrap();
    assert_eq!(action_on(&out, "settings"), Action::Configured, "{out:?}");
    assert_eq!(action_on(&out, "new"), Action::Created, "{out:?}");
    let taken = configmaps(&b).get("settings").await.unwrap();
    assert_eq!(taken.data.unwrap()["v"], "1");
    assert_eq!(
        taken.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "rollwave"
    );
    b.finish().await;
}

async fn an_apply_refused_midway_is_retried_as_the_release_not_as_drift(b: Backend) {
    let (r, app) = (&b.reconciler, b.ns.as_str());
    r.reconcile(&rev(app, "r0", &[b.cm("fine", "1")]))
        .await
        .unwrap();
    // Room for one more ConfigMap in the namespace: the dry run of each of two new
    // ones passes, the second apply is refused.
    let deadline = Instant::now() + b.patience();
    let used = loop {
        let names: Vec<String> = configmaps(&b)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        if names.iter().any(|n| n == "kube-root-ca.crt") || Instant::now() > deadline {
            break names.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let quotas: Api<ResourceQuota> = Api::namespaced(b.client.clone(), app);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "room-for-one"},
        "spec": {"hard": {"count/configmaps": (used + 1).to_string()}}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    // The status the quota controller would compute (the tests' control plane leaves
    // that controller out); the apiserver's quota admission checks against it.
    let status = json!({"status": {
        "hard": {"count/configmaps": (used + 1).to_string()},
        "used": {"count/configmaps": used.to_string()}
    }});
    quotas
        .patch_status(
            "room-for-one",
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .unwrap();

    let objects = vec![b.cm("fine", "1"), b.cm("a", "1"), b.cm("b", "1")];
    let err = r
        .reconcile(&rev(app, "r1", &objects))
        .await
        .expect_err("the second new ConfigMap exceeds the quota");
    assert!(err.to_string().contains("exceeded quota"), "{err}");
    let inventory = b.fresh_reconciler().read_inventory(app).await.unwrap();
    assert_eq!(
        (inventory.release.as_str(), inventory.applying.as_deref()),
        ("r1", Some("r1")),
        "the inventory says r1 is still being applied: {inventory:?}"
    );

    quotas
        .delete("room-for-one", &Default::default())
        .await
        .unwrap();
    // The apiserver's quota admission sees the deletion in its own time.
    let deadline = Instant::now() + b.patience();
    let out = loop {
        match r.reconcile(&rev(app, "r1", &objects)).await {
            Ok(out) => break out,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("exceeded quota"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(out.count(&Action::Created), 1, "{out:?}");
    assert_eq!(
        out.drift_corrections, 0,
        "the retried write is r1's, not a correction of drift"
    );
    let inventory = b.fresh_reconciler().read_inventory(app).await.unwrap();
    assert_eq!(
        (inventory.release.as_str(), &inventory.applying),
        ("r1", &None)
    );
    b.finish().await;
}
