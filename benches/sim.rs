//! The simulated API server under load, so it is never the bottleneck of another
//! benchmark: 5,000 objects applied server-side, one at a time, by one kube-rs client
//! (the agent's client) over loopback to a `rollwave sim` process; then the same 5,000
//! again (no-op applies), a list of everything, and the server's peak RSS.
//!
//! `cargo bench --bench sim`

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Client, Config};
use serde_json::{Value, json};

const OBJECTS: usize = 5000;

fn object(i: usize) -> (ApiResource, Value) {
    let name = format!("app-{:04}", i / 4);
    let ns = format!("team-{}", i % 10);
    let gvk = |g: &str, v: &str, k: &str, p: &str| {
        ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(g, v, k), p)
    };
    match i % 4 {
        0 => (
            gvk("apps", "v1", "Deployment", "deployments"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                        {"name": "main", "image": "ghcr.io/example/app:1.0", "ports": [{"containerPort": 8080}],
                         "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}}}),
        ),
        1 => (
            gvk("", "v1", "Service", "services"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
        2 => (
            gvk("", "v1", "ServiceAccount", "serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
        ),
        _ => (
            gvk("", "v1", "ConfigMap", "configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
                "data": {"settings.yaml": "log: info\nfeature: on\n"}}),
        ),
    }
}

async fn apply_all(client: &Client, pp: &PatchParams) -> Duration {
    let start = Instant::now();
    for i in 0..OBJECTS {
        let (ar, obj) = object(i);
        let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        api.patch(&name, pp, &Patch::Apply(&obj))
            .await
            .expect("apply");
    }
    start.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["sim", "--clusters", "1", "--kubeconfig"])
        .arg(&kubeconfig)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rollwave sim starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "the simulated cluster did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = server.id();
    let idle_rss = common::proc_kib(pid, "VmRSS:");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
        let client = Client::try_from(config).unwrap();
        let namespaces: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces"),
        );
        let pp = PatchParams::apply("bench");
        for n in 0..10 {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{n}")}});
            namespaces.patch(&format!("team-{n}"), &pp, &Patch::Apply(&ns)).await.unwrap();
        }
        let cold = apply_all(&client, &pp).await;
        let warm = apply_all(&client, &pp).await;
        let deploys: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments"),
        );
        let start = Instant::now();
        let listed = deploys.list(&ListParams::default()).await.unwrap().items.len();
        let list_time = start.elapsed();
        // Let the workload simulator write every Deployment's status once.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = common::proc_kib(pid, "VmRSS:");
        let hwm = common::proc_kib(pid, "VmHWM:");
        let rate = |d: Duration| OBJECTS as f64 / d.as_secs_f64();
        println!("simulated API server, {OBJECTS} objects (Deployment, Service, ServiceAccount, ConfigMap) in 10 namespaces");
        println!("  create by server-side apply, one client, sequential: {:>8.0} applies/s ({:.2} s)", rate(cold), cold.as_secs_f64());
        println!("  no-op re-apply of the same objects:                  {:>8.0} applies/s ({:.2} s)", rate(warm), warm.as_secs_f64());
        println!("  list of {listed} Deployments:                        {:>8.1} ms", list_time.as_secs_f64() * 1000.0);
        println!("  server RSS: idle {:.1} MiB, with {OBJECTS} objects {:.1} MiB, peak {:.1} MiB (target < 100 MB)",
            idle_rss as f64 / 1024.0, rss as f64 / 1024.0, hwm as f64 / 1024.0);
        println!("  target: >= 2,000 applies/s");
    });
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = server.wait();
}
