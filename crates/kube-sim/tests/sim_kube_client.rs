//! The simulated API server judged by kube-rs, the client the agent uses: typed and
//! dynamic APIs, server-side apply conflicts, watch resumption and 410 Gone, a
//! reflector that survives a disconnect, the workload simulator and fault injection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{self, Scope};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use kube_sim::{Faults, SimCluster, SimOptions, kubeconfig};
use serde_json::json;

async fn start(name: &str) -> (SimCluster, Client) {
    start_with(SimOptions::named(name)).await
}

async fn start_with(options: SimOptions) -> (SimCluster, Client) {
    let sim = SimCluster::start(options).await.unwrap();
    let kc =
        Kubeconfig::from_yaml(&kubeconfig(&[(sim.name().to_string(), sim.base_url())])).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    (sim, Client::try_from(config).unwrap())
}

fn deployment(name: &str, image: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "progressDeadlineSeconds": 1,
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}}}
    })
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn within<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_api_creates_reads_lists_replaces_and_deletes() {
    let (sim, client) = start("typed").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings", "labels": {"tier": "web"}}, "data": {"mode": "fast"}}))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    // A real server gives ConfigMaps no generation (only kinds with a spec to observe).
    assert_eq!(created.metadata.generation, None);

    let err = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    cm.metadata.name = Some("other".into());
    cm.metadata.labels = Some(BTreeMap::from([("tier".into(), "db".into())]));
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let web = cms
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 1);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=other"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].metadata.name.as_deref(), Some("other"));
    let page = cms.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = cms
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].metadata.name, page.items[0].metadata.name);

    // Optimistic concurrency: a replace with a stale resourceVersion is a 409.
    let mut fresh = cms.get("settings").await.unwrap();
    let stale = fresh.clone();
    fresh.data = Some(BTreeMap::from([("mode".into(), "slow".into())]));
    cms.replace("settings", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let err = api_error(
        cms.replace("settings", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );

    cms.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    let err = api_error(cms.get("settings").await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "configmaps \"settings\" not found");

    let missing_ns: Api<ConfigMap> = Api::namespaced(cms.clone().into_client(), "nowhere");
    let err = api_error(
        missing_ns
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_between_managers_and_force_takes_the_field() {
    let (sim, client) = start("ssa").await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let mine = PatchParams::apply("rollwave");
    deploys
        .patch("web", &mine, &Patch::Apply(deployment("web", "nginx:1", 2)))
        .await
        .unwrap();

    let theirs = PatchParams::apply("ops");
    let err = api_error(
        deploys
            .patch(
                "web",
                &theirs,
                &Patch::Apply(deployment("web", "nginx:1", 4)),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"rollwave\": .spec.replicas"
    );

    let forced = deploys
        .patch(
            "web",
            &theirs.clone().force(),
            &Patch::Apply(deployment("web", "nginx:1", 4)),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(4));

    // A dry run answers with the result and stores nothing.
    let dry = deploys
        .patch(
            "web",
            &PatchParams::apply("rollwave").force().dry_run(),
            &Patch::Apply(deployment("web", "nginx:2", 4)),
        )
        .await
        .unwrap();
    assert_eq!(
        dry.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:2")
    );
    let live = deploys.get("web").await.unwrap();
    assert_eq!(
        live.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1")
    );

    // Dropping a field from the applied config removes it when nobody else owns it.
    let mut without_label = deployment("web", "nginx:1", 4);
    without_label["metadata"]["labels"] = json!({"app": "web", "extra": "x"});
    deploys
        .patch("web", &mine.clone().force(), &Patch::Apply(&without_label))
        .await
        .unwrap();
    deploys
        .patch(
            "web",
            &mine.clone().force(),
            &Patch::Apply(deployment("web", "nginx:1", 4)),
        )
        .await
        .unwrap();
    let labels = deploys.get("web").await.unwrap().metadata.labels.unwrap();
    assert!(!labels.contains_key("extra"), "{labels:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamic_api_serves_custom_resources_once_their_crd_exists() {
    let (sim, client) = start("dynamic").await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            ),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "backups.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Backup", "plural": "backups"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    crds.patch(
        "backups.example.com",
        &PatchParams::apply("rollwave"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();

    let discovery = discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Backup")
        .expect("discovery lists the new kind");
    assert_eq!(caps.scope, Scope::Namespaced);
    let backups: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let b: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Backup", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *"}}))
    .unwrap();
    backups
        .patch(
            "nightly",
            &PatchParams::apply("rollwave"),
            &Patch::Apply(&b),
        )
        .await
        .unwrap();
    let read = backups.get("nightly").await.unwrap();
    assert_eq!(read.data["spec"]["schedule"], "0 3 * * *");

    crds.delete("backups.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let err = api_error(backups.get("nightly").await.unwrap_err());
    assert_eq!(err.code, 404);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_resource_version_gets_410_gone() {
    let (sim, client) = start("gone").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    let rv = cms
        .create(&PostParams::default(), &cm)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();

    // Before compaction, a watch from `rv` replays the change.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let first = within(Duration::from_secs(5), "replayed event", stream.try_next())
        .await
        .unwrap();
    assert!(matches!(first, Some(WatchEvent::Modified(_))), "{first:?}");

    sim.compact();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match within(Duration::from_secs(5), "410", stream.try_next())
        .await
        .unwrap()
    {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflector_keeps_its_cache_through_a_disconnect_and_a_compaction() {
    let (sim, client) = start("reflector").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(cms.clone(), watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .touched_objects();
    let task = tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    let make = |n: usize| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": format!("cm-{n}")}})).unwrap()
    };
    for n in 0..5 {
        cms.create(&PostParams::default(), &make(n)).await.unwrap();
    }
    within(
        Duration::from_secs(10),
        "the first five in the cache",
        async {
            while reader.state().len() < 5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;

    // Cut every watch and forget the history: the reflector must relist.
    sim.disconnect_watches();
    sim.compact();
    for n in 5..10 {
        cms.create(&PostParams::default(), &make(n)).await.unwrap();
    }
    cms.delete("cm-0", &DeleteParams::default()).await.unwrap();
    within(
        Duration::from_secs(20),
        "the cache to catch up after the disconnect",
        async {
            loop {
                // Ours only: the namespace also holds its kube-root-ca.crt.
                let names: Vec<String> = reader
                    .state()
                    .iter()
                    .filter_map(|c| c.metadata.name.clone())
                    .filter(|n| n.starts_with("cm-"))
                    .collect();
                if names.len() == 9 && !names.contains(&"cm-0".to_string()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    task.abort();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_becomes_available_and_a_broken_image_never_does() {
    let mut options = SimOptions::named("workloads");
    options.ready_after = Duration::from_millis(300);
    options.tick = Duration::from_millis(50);
    let (sim, client) = start_with(options).await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("rollwave");
    deploys
        .patch(
            "good",
            &pp,
            &Patch::Apply(deployment("good", "nginx:1.27", 3)),
        )
        .await
        .unwrap();
    deploys
        .patch(
            "bad",
            &pp,
            &Patch::Apply(deployment("bad", "nginx:broken", 3)),
        )
        .await
        .unwrap();

    let condition = |d: &Deployment, t: &str| {
        d.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter().find(|c| c.type_.as_deref() == Some(t)).map(|c| {
                    (
                        c.status.clone().unwrap_or_default(),
                        c.reason.clone().unwrap_or_default(),
                    )
                })
            })
    };
    within(Duration::from_secs(10), "good to become Available", async {
        loop {
            let d = deploys.get("good").await.unwrap();
            let s = d.status.clone().unwrap_or_default();
            if s.available_replicas == Some(3)
                && s.observed_generation == Some(1)
                && condition(&d, "Available")
                    == Some(("True".to_string(), "MinimumReplicasAvailable".to_string()))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within(
        Duration::from_secs(10),
        "bad to exceed its progress deadline",
        async {
            loop {
                let d = deploys.get("bad").await.unwrap();
                if condition(&d, "Progressing")
                    == Some(("False".to_string(), "ProgressDeadlineExceeded".to_string()))
                {
                    let s = d.status.unwrap();
                    // Zero counts are left out, as the real controller writes them.
                    assert_eq!(s.available_replicas.unwrap_or(0), 0);
                    // Every Pod is of the one template, none of them ready.
                    assert_eq!(s.updated_replicas, Some(3));
                    assert_eq!(s.ready_replicas.unwrap_or(0), 0);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    // A good image on the broken Deployment recovers it.
    deploys
        .patch(
            "bad",
            &pp,
            &Patch::Apply(deployment("bad", "nginx:1.27", 3)),
        )
        .await
        .unwrap();
    within(Duration::from_secs(10), "bad to recover", async {
        loop {
            let d = deploys.get("bad").await.unwrap();
            if d.status.as_ref().and_then(|s| s.available_replicas) == Some(3)
                && d.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    sim.shutdown().await;
}

/// One GET over a fresh connection: the status code (0 when the response was cut)
/// and whether it carried `Retry-After`.
fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, bool) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let complete = s.read_to_end(&mut buf).is_ok();
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let cut = !complete || (code == 200 && !text.contains("\"kind\""));
    (
        if cut { 0 } else { code },
        text.to_ascii_lowercase().contains("retry-after: "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_observed_at_the_configured_rates() {
    let (sim, _) = start("faults").await;
    sim.set_faults(Faults {
        error_rate: 0.2,
        throttle_rate: 0.1,
        drop_rate: 0.1,
        retry_after_seconds: 3,
        ..Faults::default()
    });
    let addr = sim.addr();
    let results = tokio::task::spawn_blocking(move || {
        (0..1000)
            .map(|_| raw_get(addr, "/api/v1/namespaces/default/configmaps"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let share =
        |f: &dyn Fn(&(u16, bool)) -> bool| results.iter().filter(|r| f(r)).count() as f64 / 1000.0;
    let errors = share(&|r| r.0 == 500 || r.0 == 503);
    let throttled = share(&|r| r.0 == 429);
    let dropped = share(&|r| r.0 == 0);
    // 1,000 draws: five standard deviations either side.
    assert!((errors - 0.2).abs() < 0.065, "5xx share {errors}");
    assert!((throttled - 0.1).abs() < 0.05, "429 share {throttled}");
    assert!((dropped - 0.1).abs() < 0.05, "dropped share {dropped}");
    assert!(
        results.iter().filter(|r| r.0 == 429).all(|r| r.1),
        "every 429 carries Retry-After"
    );
    assert_eq!(sim.stats().requests("list"), 1000);

    // Switched off at run time over HTTP, as the reliability tests do.
    let addr = sim.addr();
    let code = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = "{}";
        write!(s, "PUT /sim/faults HTTP/1.1\r\nHost: sim\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let clean = tokio::task::spawn_blocking(move || {
        (0..50).all(|_| raw_get(addr, "/api/v1/namespaces").0 == 200)
    })
    .await
    .unwrap();
    assert!(clean);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_by_verb_so_a_no_op_can_be_asserted() {
    let (sim, client) = start("stats").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
    cms.patch("a", &PatchParams::apply("rollwave"), &Patch::Apply(&cm))
        .await
        .unwrap();
    let rv = cms.get("a").await.unwrap().metadata.resource_version;
    // The same apply again is a request but not a change: same resourceVersion.
    cms.patch("a", &PatchParams::apply("rollwave"), &Patch::Apply(&cm))
        .await
        .unwrap();
    assert_eq!(cms.get("a").await.unwrap().metadata.resource_version, rv);
    cms.list(&ListParams::default()).await.unwrap();
    let addr = sim.addr();
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /sim/stats HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf.split("\r\n\r\n").nth(1).unwrap().to_string()
    })
    .await
    .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        stats["requests"],
        json!({"get": 2, "list": 1, "watch": 0, "create": 0, "update": 0, "patch": 2, "delete": 0})
    );
    assert_eq!(stats["objects"], json!(sim.object_count()));
    sim.shutdown().await;
}
