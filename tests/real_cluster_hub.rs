//! The Kubernetes status store against a real control plane (DESIGN §5.1): deploy/hub/
//! applied as it ships, each agent reaching the hub with its own ServiceAccount's
//! token. Each agent writes its own clusters' statuses and nothing else, reads
//! everyone's, sees a peer's change through its watch, and a status of 500 apps with
//! full histories round-trips through the real API server; one too large is refused
//! before anything is sent.

mod common;

use std::path::Path;
use std::time::Duration;

use common::k8s::RealCluster;
use common::sim::require_kubectl;
use rollwave::status::hub::HubError;
use rollwave::status::object::ObjectError;
use rollwave::status::{ClusterStatus, MAX_HISTORY};
use serde_json::json;

const NAMESPACE: &str = "rollwave-status";

/// A status of `cluster` with `apps` apps, each with a full history, web's phase
/// `phase`.
fn status(cluster: &str, apps: usize, phase: &str) -> ClusterStatus {
    let history: Vec<_> = (0..MAX_HISTORY)
        .map(|i| {
            json!({"release": format!("{:040x}", i * 7919), "hash": format!("{:064x}", i * 104729),
                   "phase": "Healthy", "since": "2026-11-23T09:20:00.123Z", "until": "2026-11-23T09:50:00.456Z"})
        })
        .collect();
    let mut all = serde_json::Map::new();
    for i in 0..apps {
        let name = if i == 0 {
            "web".to_string()
        } else {
            format!("app-{i}")
        };
        all.insert(
            name,
            json!({"release": format!("{i:040x}"), "hash": format!("{:064x}", i * 31),
                   "phase": if i == 0 { phase } else { "Healthy" },
                   "since": "2026-11-23T09:51:00.000Z",
                   "knownGood": [format!("{:064x}", i * 97)], "history": history}),
        );
    }
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let doc = json!({"cluster": cluster, "agent": "rollwave/test", "heartbeat": now,
                     "interval": 60, "apps": all});
    ClusterStatus::parse(cluster, doc.to_string().as_bytes()).unwrap()
}

/// deploy/hub/ built by rollwave and applied by the cluster's admin.
fn apply_deploy_hub(cluster: &RealCluster) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/hub");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .arg("build")
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = cluster.dir().join("hub.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    cluster.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

fn forbidden(e: HubError) -> String {
    let text = e.to_string();
    assert!(
        text.contains("forbidden") && text.contains("deploy/hub/"),
        "{text}"
    );
    text
}

#[test]
fn each_agent_writes_only_its_own_clusters_statuses_and_sees_its_peers_change_live() {
    require_kubectl();
    let cluster = RealCluster::start();
    apply_deploy_hub(&cluster);
    let bj = cluster.service_account_kubeconfig(NAMESPACE, "rollwave-agent-prod-bj-1");
    let sh = cluster.service_account_kubeconfig(NAMESPACE, "rollwave-agent-prod-sh");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub_bj = common::hub::connect(&bj, &["prod-bj-1"]).await;
        let hub_sh = common::hub::connect(&sh, &["prod-sh-1", "prod-sh-2"]).await;

        // The empty objects deploy/hub/ creates read as "no status yet".
        let (statuses, errors) = hub_bj.list().await.unwrap();
        assert!(
            statuses.is_empty() && errors.is_empty(),
            "{statuses:?} {errors:?}"
        );

        hub_bj
            .write(&status("prod-bj-1", 3, "Healthy"))
            .await
            .unwrap();
        hub_sh
            .write(&status("prod-sh-1", 3, "Healthy"))
            .await
            .unwrap();
        hub_sh
            .write(&status("prod-sh-2", 3, "Healthy"))
            .await
            .unwrap();

        // Another agent's cluster, or a cluster nobody created an object for: refused
        // by the hub's RBAC, with what to do.
        forbidden(
            hub_bj
                .write(&status("prod-sh-1", 3, "Degraded"))
                .await
                .unwrap_err(),
        );
        forbidden(
            hub_sh
                .write(&status("prod-gz-1", 3, "Healthy"))
                .await
                .unwrap_err(),
        );
        let (statuses, _) = hub_bj.list().await.unwrap();
        assert_eq!(
            statuses.keys().map(String::as_str).collect::<Vec<_>>(),
            ["prod-bj-1", "prod-sh-1", "prod-sh-2"]
        );
        assert_eq!(
            statuses["prod-sh-1"].apps["web"].phase,
            rollwave::status::Phase::Healthy
        );

        // prod-sh's agent watches: prod-bj-1 turning Degraded wakes it, and what it
        // reads then says so.
        hub_sh.watch();
        let synced = async {
            while !hub_sh.snapshot().0.contains_key("prod-bj-1") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), synced)
            .await
            .expect("the watch lists the statuses");
        hub_bj
            .write(&status("prod-bj-1", 3, "Degraded"))
            .await
            .unwrap();
        // A wake may still be pending from the watch's first listing: wait for wakes
        // until one brings the change.
        let woken_by_the_change = async {
            loop {
                hub_sh.changed().await;
                let (seen, _) = hub_sh.read().await.unwrap();
                if seen["prod-bj-1"].apps["web"].phase == rollwave::status::Phase::Degraded {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), woken_by_the_change)
            .await
            .expect("a peer's phase change wakes the agent, and what it reads then says so");

        // 500 apps with full histories: stored compressed, read back whole.
        let big = status("prod-bj-1", 500, "Healthy");
        hub_bj.write(&big).await.unwrap();
        let (statuses, errors) = hub_sh.list().await.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(statuses["prod-bj-1"], big);

        // Too large even compressed: refused before anything is sent, with the sizes;
        // the stored status is unchanged.
        let mut huge = status("prod-bj-1", 1, "Healthy");
        let mut x: u64 = 88172645463325252;
        let template = huge.apps["web"].clone();
        for i in 0..3000 {
            let mut noise = String::new();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                noise.push_str(&format!("{x:016x}"));
            }
            let mut a = template.clone();
            a.message = noise;
            huge.apps.insert(format!("noisy-{i}"), a);
        }
        match hub_bj.write(&huge).await.unwrap_err() {
            HubError::Object(ObjectError::TooLarge {
                cluster,
                bytes,
                limit,
            }) => {
                assert_eq!(cluster, "prod-bj-1");
                assert!(bytes > limit, "{bytes} {limit}");
            }
            e => panic!("{e}"),
        }
        let (statuses, _) = hub_sh.list().await.unwrap();
        assert_eq!(statuses["prod-bj-1"], big);
    });
}
