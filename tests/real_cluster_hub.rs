//! The Kubernetes status store against a real control plane (DESIGN §5.1), one
//! control plane for the file.
//!
//! `rollwave hub init`: on an empty hub `--check` reports every object missing,
//! `--apply` makes them, `--check` then passes and a second `--apply` writes nothing;
//! the apiserver's own authorization then lets each agent's ServiceAccount write its
//! own clusters' status objects and nothing else, and the real agent publishes its
//! status into the object made for it.
//!
//! The store itself, on a hub made by `kubectl apply --server-side` of what `hub init`
//! prints: each agent reaching the hub with its own ServiceAccount's token writes its
//! own clusters' statuses and nothing else, reads everyone's, sees a peer's change
//! through its watch, and a status of 500 apps with full histories round-trips
//! through the real API server; one too large is refused before anything is sent.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::git::work_repo;
use common::k8s::RealCluster;
use common::run_cli;
use rollwave::status::hub::HubError;
use rollwave::status::object::{NAMESPACE, ObjectError};
use rollwave::status::{ClusterStatus, MAX_HISTORY, Phase};
use serde_json::json;

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

fn forbidden(e: HubError) -> String {
    let text = e.to_string();
    assert!(
        text.contains("forbidden") && text.contains("rollwave hub init"),
        "{text}"
    );
    text
}

/// A fleet whose statuses live on the hub, in a Git work tree: four clusters, and an
/// app `hello` (a Namespace and a ConfigMap) on each, prod-bj-1 the canary. With it,
/// `prod-sh.yaml`: an agent config serving prod-sh-1 and prod-sh-2, for a hub in
/// `hub_namespace`. prod-bj-1 and prod-gz-1 have an agent each.
struct Fleet {
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new(hub_namespace: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<(String, String)> = ["prod-bj-1", "prod-gz-1", "prod-sh-1", "prod-sh-2"]
            .iter()
            .map(|c| {
                (
                    format!("clusters/{c}.yaml"),
                    format!("name: {c}\nstage: prod\n"),
                )
            })
            .collect();
        let app = |path: &str, text: &str| (path.to_string(), text.to_string());
        files.extend([
            app(
                "fleet.yaml",
                "stages: [prod]\nrollout:\n  canary: [prod-bj-1]\n  batches: [1]\n  bake: 1h\nstatus:\n  store: kubernetes\n",
            ),
            app("apps/hello/app.yaml", "namespace: hello\ntargets:\n  stages: [prod]\n"),
            app(
                "apps/hello/base/kustomization.yaml",
                "resources:\n- namespace.yaml\n- configmap.yaml\n",
            ),
            app(
                "apps/hello/base/namespace.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hello\n",
            ),
            app(
                "apps/hello/base/configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: hello\ndata:\n  greeting: hi\n",
            ),
        ]);
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        work_repo(&dir.path().join("fleet"), &files);
        let fleet = Fleet { dir };
        std::fs::write(
            fleet.prod_sh_config(),
            format!(
                "repo:\n  url: {}\nhub:\n  kubeconfig: /etc/rollwave/hub/kubeconfig\n  namespace: {hub_namespace}\nclusters:\n- name: prod-sh-1\n  inCluster: true\n- name: prod-sh-2\n  inCluster: true\n",
                fleet.repo().display()
            ),
        )
        .unwrap();
        fleet
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("fleet")
    }

    fn prod_sh_config(&self) -> PathBuf {
        self.dir.path().join("prod-sh.yaml")
    }

    /// Runs `rollwave hub init` for this fleet and the prod-sh agent config with
    /// `args`, on the hub `cluster` as its admin; (exit code, stdout, stderr).
    fn hub_init(
        &self,
        cluster: &RealCluster,
        namespace: &str,
        args: &[&str],
    ) -> (i32, String, String) {
        let repo = self.repo();
        let config = self.prod_sh_config();
        let mut all = vec![
            "hub",
            "init",
            "--repo",
            repo.to_str().unwrap(),
            "--agent-config",
            config.to_str().unwrap(),
            "--hub-kubeconfig",
            cluster.kubeconfig().to_str().unwrap(),
            "--hub-namespace",
            namespace,
        ];
        all.extend(args);
        run_cli(&all)
    }
}

/// The objects `hub init` makes for [`Fleet`]: 4 shared, 4 per agent (3 agents), 1 per
/// cluster (4).
const OBJECTS: usize = 4 + 3 * 4 + 4;

/// Whether `user` may `verb` `resource` in `namespace`, by the apiserver's own
/// authorization (the admin impersonating `user`).
fn can(cluster: &RealCluster, user: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let (code, out, err) = cluster.kubectl(&[
        "auth", "can-i", verb, resource, "-n", namespace, "--as", user,
    ]);
    assert!(code == 0 || out.trim() == "no", "kubectl auth can-i: {err}");
    out.trim() == "yes"
}

fn agent_user(namespace: &str, agent: &str) -> String {
    format!("system:serviceaccount:{namespace}:rollwave-agent-{agent}")
}

/// The store test's hub namespace: its own, so it does not depend on the order the
/// tests of this file take turns in.
const STORE_NAMESPACE: &str = "statuses";

#[test]
fn each_agent_writes_only_its_own_clusters_statuses_and_sees_its_peers_change_live() {
    let (cluster, _turn) = common::shared_real_cluster();
    let fleet = Fleet::new(STORE_NAMESPACE);
    // What `hub init` prints, applied by kubectl; `hub init --check` then finds it all.
    let (code, yaml, err) = run_cli(&[
        "hub",
        "init",
        "--repo",
        fleet.repo().to_str().unwrap(),
        "--agent-config",
        fleet.prod_sh_config().to_str().unwrap(),
        "--hub-namespace",
        STORE_NAMESPACE,
    ]);
    assert_eq!(code, 0, "{err}");
    let file = cluster.dir().join("hub.yaml");
    std::fs::write(&file, &yaml).unwrap();
    cluster.kubectl_ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    let (code, out, err) = fleet.hub_init(cluster, STORE_NAMESPACE, &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    let bj = cluster.service_account_kubeconfig(STORE_NAMESPACE, "rollwave-agent-prod-bj-1");
    let sh = cluster.service_account_kubeconfig(STORE_NAMESPACE, "rollwave-agent-prod-sh");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub_bj = common::hub::connect_in(&bj, STORE_NAMESPACE, &["prod-bj-1"]).await;
        let hub_sh =
            common::hub::connect_in(&sh, STORE_NAMESPACE, &["prod-sh-1", "prod-sh-2"]).await;

        // The empty objects `hub init` makes read as "no status yet".
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

        // Another agent's cluster, or a cluster with no object: refused
        // by the hub's RBAC, with what to do.
        forbidden(
            hub_bj
                .write(&status("prod-sh-1", 3, "Degraded"))
                .await
                .unwrap_err(),
        );
        forbidden(
            hub_sh
                .write(&status("prod-9", 3, "Healthy"))
                .await
                .unwrap_err(),
        );
        let (statuses, _) = hub_bj.list().await.unwrap();
        assert_eq!(
            statuses.keys().map(String::as_str).collect::<Vec<_>>(),
            ["prod-bj-1", "prod-sh-1", "prod-sh-2"]
        );
        assert_eq!(statuses["prod-sh-1"].apps["web"].phase, Phase::Healthy);

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
                if seen["prod-bj-1"].apps["web"].phase == Phase::Degraded {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), woken_by_the_change)
            .await
            .expect("a peer's phase change wakes the agent, and what it reads then says so");

        // Reads with no event and no write between them share one map (the passes of
        // an agent's clusters plan once from it); a status this process writes is in
        // the next read at once, before the hub has it.
        let settled = async {
            loop {
                let (a, _) = hub_sh.read().await.unwrap();
                let (b, _) = hub_sh.read().await.unwrap();
                if Arc::ptr_eq(&a, &b) {
                    break a;
                }
            }
        };
        let shared = tokio::time::timeout(Duration::from_secs(20), settled)
            .await
            .expect("two reads with nothing new between them share one map");
        hub_sh.remember(&status("prod-sh-2", 3, "Progressing"));
        let (after, _) = hub_sh.read().await.unwrap();
        assert_eq!(after["prod-sh-2"].apps["web"].phase, Phase::Progressing);
        assert_eq!(shared["prod-sh-2"].apps["web"].phase, Phase::Healthy);

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

#[test]
fn hub_init_makes_what_each_agent_needs_and_a_second_apply_writes_nothing() {
    let (cluster, _turn) = common::shared_real_cluster();
    let fleet = Fleet::new(NAMESPACE);

    // An empty hub: every object missing, exit 1.
    let (code, out, err) = fleet.hub_init(cluster, NAMESPACE, &["--check"]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), OBJECTS, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("missing    ")), "{out}");
    for object in [
        "Namespace rollwave-status",
        "Role rollwave-status/rollwave-status-reader",
        "ServiceAccount rollwave-status/rollwave-agent-prod-sh",
        "Role rollwave-status/rollwave-status-writer-prod-sh",
        "RoleBinding rollwave-status/rollwave-status-writer-prod-bj-1",
        "ConfigMap rollwave-status/prod-gz-1",
    ] {
        assert!(
            lines.contains(&format!("missing    {object}").as_str()),
            "{object}: {out}"
        );
    }
    assert!(
        err.contains(&format!(
            "{OBJECTS} of {OBJECTS} objects missing or different"
        )),
        "{err}"
    );

    // --apply makes them all; --check then passes.
    let (code, out, err) = fleet.hub_init(cluster, NAMESPACE, &["--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), OBJECTS, "{out}");
    assert!(out.lines().all(|l| l.starts_with("created    ")), "{out}");
    let (code, out, err) = fleet.hub_init(cluster, NAMESPACE, &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), OBJECTS, "{out}");
    assert!(out.lines().all(|l| l.starts_with("ok         ")), "{out}");

    // A second --apply finds everything in place and writes nothing, by the
    // apiserver's own count.
    let before = cluster.wait_settled(Duration::from_secs(2), Duration::from_secs(120));
    let (code, out, err) = fleet.hub_init(cluster, NAMESPACE, &["--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().all(|l| l.starts_with("unchanged  ")), "{out}");
    assert_eq!(cluster.writes(), before, "a second apply wrote");

    // What each identity may do, by the apiserver's authorization.
    let sh = agent_user(NAMESPACE, "prod-sh");
    let bj = agent_user(NAMESPACE, "prod-bj-1");
    for verb in ["get", "patch", "update"] {
        assert!(
            can(cluster, &sh, verb, "configmaps/prod-sh-1", NAMESPACE),
            "{verb}"
        );
        assert!(
            can(cluster, &sh, verb, "configmaps/prod-sh-2", NAMESPACE),
            "{verb}"
        );
        assert!(
            can(cluster, &bj, verb, "configmaps/prod-bj-1", NAMESPACE),
            "{verb}"
        );
    }
    for verb in ["patch", "update"] {
        assert!(
            !can(cluster, &sh, verb, "configmaps/prod-bj-1", NAMESPACE),
            "{verb}"
        );
        assert!(
            !can(cluster, &bj, verb, "configmaps/prod-sh-1", NAMESPACE),
            "{verb}"
        );
        assert!(
            !can(cluster, &bj, verb, "configmaps/prod-gz-1", NAMESPACE),
            "{verb}"
        );
    }
    for user in [&sh, &bj] {
        assert!(can(cluster, user, "list", "configmaps", NAMESPACE));
        assert!(can(cluster, user, "watch", "configmaps", NAMESPACE));
        assert!(!can(cluster, user, "create", "configmaps", NAMESPACE));
        assert!(!can(
            cluster,
            user,
            "delete",
            "configmaps/prod-sh-1",
            NAMESPACE
        ));
        assert!(!can(cluster, user, "list", "secrets", NAMESPACE));
        assert!(!can(cluster, user, "list", "configmaps", "default"));
    }
    let reader = format!("system:serviceaccount:{NAMESPACE}:rollwave-status-reader");
    assert!(can(cluster, &reader, "list", "configmaps", NAMESPACE));
    assert!(!can(
        cluster,
        &reader,
        "patch",
        "configmaps/prod-sh-1",
        NAMESPACE
    ));

    // The hub store as the agents use it, each with a token of its ServiceAccount.
    let sh_kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, "rollwave-agent-prod-sh");
    let bj_kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, "rollwave-agent-prod-bj-1");
    let reader_kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, "rollwave-status-reader");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub_sh = common::hub::connect(&sh_kubeconfig, &["prod-sh-1", "prod-sh-2"]).await;
        // The empty objects read as "no status yet", not as broken statuses.
        let (statuses, errors) = hub_sh.list().await.unwrap();
        assert!(
            statuses.is_empty() && errors.is_empty(),
            "{statuses:?} {errors:?}"
        );
        hub_sh
            .write(&status("prod-sh-2", 1, "Healthy"))
            .await
            .unwrap();
        let text = forbidden(
            hub_sh
                .write(&status("prod-bj-1", 1, "Healthy"))
                .await
                .unwrap_err(),
        );
        assert!(text.contains("rollwave-agent-prod-sh"), "{text}");
        forbidden(
            hub_sh
                .write(&status("prod-9", 1, "Healthy"))
                .await
                .unwrap_err(),
        );
        let hub_reader = common::hub::connect(&reader_kubeconfig, &[]).await;
        forbidden(
            hub_reader
                .write(&status("prod-sh-1", 1, "Healthy"))
                .await
                .unwrap_err(),
        );
    });

    // The real agent of prod-bj-1, its hub credentials nothing but its ServiceAccount's
    // token: it applies the app and publishes its status into the object made for it.
    let config = fleet.dir.path().join("prod-bj-1.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\nlisten: 127.0.0.1:0\nhub:\n  kubeconfig: {}\nclusters:\n- name: prod-bj-1\n  kubeconfig: {}\n",
            fleet.repo().display(),
            bj_kubeconfig.display(),
            cluster.kubeconfig().display()
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["agent", "--once", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    runtime.block_on(async {
        let hub_reader = common::hub::connect(&reader_kubeconfig, &[]).await;
        let (statuses, errors) = hub_reader.list().await.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            statuses.keys().map(String::as_str).collect::<Vec<_>>(),
            ["prod-bj-1", "prod-sh-2"]
        );
        let hello = &statuses["prod-bj-1"].apps["hello"];
        assert!(
            matches!(hello.phase, Phase::Healthy | Phase::Progressing),
            "{hello:?}"
        );
    });

    // Statuses written into their objects are no difference; a status object of a
    // cluster the fleet does not have is reported, and left alone.
    cluster.kubectl_ok(&["create", "configmap", "gone-1", "-n", NAMESPACE]);
    cluster.kubectl_ok(&[
        "label",
        "configmap",
        "gone-1",
        "-n",
        NAMESPACE,
        "rollwave.io/status=true",
    ]);
    let (code, out, err) = fleet.hub_init(cluster, NAMESPACE, &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("\nextra      ConfigMap rollwave-status/gone-1: the status object of no cluster of the fleet"),
        "{out}"
    );

    // A Role widened by hand is reported with the field, and put back by --apply.
    cluster.kubectl_ok(&[
        "patch",
        "role",
        "rollwave-status-writer-prod-sh",
        "-n",
        NAMESPACE,
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/rules/0/verbs/-", "value": "delete"}]"#,
    ]);
    assert!(can(
        cluster,
        &sh,
        "delete",
        "configmaps/prod-sh-1",
        NAMESPACE
    ));
    let (code, out, _) = fleet.hub_init(cluster, NAMESPACE, &["--check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"different  Role rollwave-status/rollwave-status-writer-prod-sh: rules[0].verbs is ["get","patch","update","delete"], want ["get","patch","update"]"#),
        "{out}"
    );
    let (code, out, err) = fleet.hub_init(cluster, NAMESPACE, &["--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("configured Role rollwave-status/rollwave-status-writer-prod-sh\n"),
        "{out}"
    );
    assert!(!can(
        cluster,
        &sh,
        "delete",
        "configmaps/prod-sh-1",
        NAMESPACE
    ));
    let (code, out, _) = fleet.hub_init(cluster, NAMESPACE, &["--check"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn bad_input_is_refused_with_the_file_and_what_to_do() {
    let fleet = Fleet::new(NAMESPACE);
    let repo = fleet.repo();
    let repo = repo.to_str().unwrap();
    let unknown = fleet.dir.path().join("prod-x.yaml");
    std::fs::write(
        &unknown,
        "repo:\n  url: /x\nclusters:\n- name: prod-bj-1\n  inCluster: true\n- name: prod-bj-9\n  inCluster: true\n",
    )
    .unwrap();
    let unknown = unknown.to_str().unwrap();
    let (code, out, err) = run_cli(&["hub", "init", "--repo", repo, "--agent-config", unknown]);
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "error: {unknown}: field 'clusters[1].name': cluster 'prod-bj-9' is not in the fleet (no clusters/prod-bj-9.yaml); add the cluster to the fleet or take it out of this agent config"
        )),
        "{err}"
    );
    // An agent config for another hub namespace.
    let sh = fleet.prod_sh_config();
    let sh = sh.to_str().unwrap();
    let (code, _, err) = run_cli(&[
        "hub",
        "init",
        "--repo",
        repo,
        "--agent-config",
        sh,
        "--hub-namespace",
        "statuses",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{sh}: field 'hub.namespace': 'rollwave-status', but the hub is being initialized in namespace 'statuses'; pass --hub-namespace rollwave-status")),
        "{err}"
    );
    // An agent config that cannot be read.
    let (code, _, err) = run_cli(&[
        "hub",
        "init",
        "--repo",
        repo,
        "--agent-config",
        "/nonexistent.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent.yaml: cannot read the agent config"),
        "{err}"
    );
    // A directory that holds no fleet.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(&["hub", "init", "--repo", empty.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("fleet.yaml: missing"), "{err}");
    // A reader that is not a subject.
    let (code, _, err) = run_cli(&["hub", "init", "--repo", repo, "--reader", "alice"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("expected user:NAME, group:NAME or serviceaccount:NAMESPACE:NAME"),
        "{err}"
    );
}

/// An agent running in the hub's own cluster reaches it with its pod's
/// ServiceAccount, not a token of one `hub init` makes: its Roles are bound to that
/// one (deploy/'s by default, or what `--agent-identity` says), and no ServiceAccount
/// is made for it.
#[test]
fn an_agent_in_the_hubs_own_cluster_is_bound_as_its_pods_service_account() {
    let (cluster, _turn) = common::shared_real_cluster();
    let namespace = "in-cluster-statuses";
    let fleet = Fleet::new(namespace);
    std::fs::write(
        fleet.prod_sh_config(),
        format!(
            "repo:\n  url: {}\nhub:\n  inCluster: true\n  namespace: {namespace}\nclusters:\n- name: prod-sh-1\n  inCluster: true\n- name: prod-sh-2\n  inCluster: true\n",
            fleet.repo().display()
        ),
    )
    .unwrap();
    let (code, out, err) = fleet.hub_init(
        cluster,
        namespace,
        &[
            "--apply",
            "--agent-identity",
            "prod-gz-1=serviceaccount:gitops:rollwave",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let sh = fleet.prod_sh_config();
    assert!(
        err.contains(&format!(
            "note: {} reaches the hub in its own cluster, as serviceaccount:rollwave-system:rollwave-agent (deploy/'s ServiceAccount); if its pod runs as another, pass --agent-identity prod-sh=SUBJECT",
            sh.display()
        )),
        "{err}"
    );
    // Two agents are their pods' ServiceAccounts: two ServiceAccounts fewer.
    assert_eq!(out.lines().count(), OBJECTS - 2, "{out}");
    assert!(!out.contains("rollwave-agent-prod-sh"), "{out}");
    assert!(!out.contains("rollwave-agent-prod-gz-1"), "{out}");

    let deployed = "system:serviceaccount:rollwave-system:rollwave-agent";
    let gitops = "system:serviceaccount:gitops:rollwave";
    let bj = agent_user(namespace, "prod-bj-1");
    for verb in ["get", "patch", "update"] {
        for cm in ["configmaps/prod-sh-1", "configmaps/prod-sh-2"] {
            assert!(can(cluster, deployed, verb, cm, namespace), "{verb} {cm}");
        }
        assert!(can(
            cluster,
            gitops,
            verb,
            "configmaps/prod-gz-1",
            namespace
        ));
        assert!(can(cluster, &bj, verb, "configmaps/prod-bj-1", namespace));
    }
    // Each writes its own clusters' statuses only (every agent reads them all).
    for verb in ["patch", "update"] {
        for cm in ["configmaps/prod-sh-1", "configmaps/prod-sh-2"] {
            assert!(!can(cluster, gitops, verb, cm, namespace), "{verb} {cm}");
        }
        assert!(!can(
            cluster,
            deployed,
            verb,
            "configmaps/prod-gz-1",
            namespace
        ));
    }
    for user in [deployed, gitops] {
        assert!(can(cluster, user, "watch", "configmaps", namespace));
        assert!(!can(cluster, user, "create", "configmaps", namespace));
    }
    let (code, out, err) = fleet.hub_init(
        cluster,
        namespace,
        &[
            "--check",
            "--agent-identity",
            "prod-gz-1=serviceaccount:gitops:rollwave",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Without the identity, --check finds prod-gz-1's ServiceAccount missing and its
    // bindings naming another subject.
    let (code, out, _) = fleet.hub_init(cluster, namespace, &["--check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("missing")
            && l.ends_with("ServiceAccount in-cluster-statuses/rollwave-agent-prod-gz-1")),
        "{out}"
    );
}
