//! The agent under its own RBAC, against a real control plane: deploy/'s Namespace,
//! ServiceAccount, Role and ClusterRole applied as they ship, and the agent run with a
//! kubeconfig holding nothing but a token the TokenRequest API issued for its
//! ServiceAccount. It applies the example fleet with no 403, and a second pass, drift
//! correction and prune work too. Then least privilege: each resource, each rule and each
//! verb of deploy/rbac.yaml is taken away in turn (the roles are replaced between agent
//! runs, one control plane for the file) and the test asserts what then fails, with the
//! agent's own message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::k8s::RealCluster;
use common::sim::{eventually, require_kubectl};
use common::{copy_dir, run_cli};
use serde_json::Value;

const CLUSTER: &str = "test-sh-1";
const USER: &str = "system:serviceaccount:rollwave-system:rollwave-agent";
const APPS: [&str; 4] = ["api", "cache", "platform", "web"];

/// One control plane with deploy/'s RBAC, shared by every test of this file.
struct Setup {
    cluster: RealCluster,
    /// The ServiceAccount's token and nothing else.
    kubeconfig: PathBuf,
    /// The Role and ClusterRole as deploy/ renders them.
    role: Value,
    cluster_role: Value,
    /// A copy of fleet-example-repo that tests change and put back.
    repo: tempfile::TempDir,
    /// The first pass ever, on the empty cluster: (exit code, output).
    cold: (i32, String),
    /// The apiserver's write counts before it.
    writes_before_cold: std::collections::BTreeMap<String, u64>,
}

fn setup() -> (&'static Setup, MutexGuard<'static, ()>) {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one still has a usable cluster.
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_kubectl();
    (SETUP.get_or_init(start), turn)
}

/// deploy/ rendered by `rollwave build`.
fn deploy_objects() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let (code, out, err) = run_cli(&["build", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    rollwave::yaml::parse_documents("deploy", &out).unwrap()
}

fn start() -> Setup {
    let cluster = RealCluster::start();
    // The identity only: the agent's Deployment, ConfigMap and Secret are for a Pod.
    let identity: Vec<Value> = deploy_objects()
        .into_iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str().unwrap_or(""),
                "Namespace"
                    | "ServiceAccount"
                    | "Role"
                    | "RoleBinding"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
            )
        })
        .collect();
    assert_eq!(identity.len(), 6, "{identity:#?}");
    cluster.kubectl_objects_ok(&["apply", "--server-side"], &identity);
    let of = |kind: &str| {
        identity
            .iter()
            .find(|o| o["kind"] == kind)
            .cloned()
            .unwrap()
    };
    let kubeconfig = cluster.service_account_kubeconfig("rollwave-system", "rollwave-agent");
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&common::example_fleet(), repo.path());
    let writes_before_cold = cluster.writes();
    let cold = agent_once_as(&kubeconfig, repo.path());
    Setup {
        role: of("Role"),
        cluster_role: of("ClusterRole"),
        cluster,
        kubeconfig,
        repo,
        cold,
        writes_before_cold,
    }
}

fn agent_once_as(kubeconfig: &Path, repo: &Path) -> (i32, String) {
    let (code, out, err) = run_cli(&[
        "agent",
        "--once",
        "--repo",
        repo.to_str().unwrap(),
        "--cluster",
        CLUSTER,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    (code, format!("{out}{err}"))
}

fn line_of<'a>(out: &'a str, app: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{app}\t")))
        .unwrap_or_else(|| panic!("no line for {app} in:\n{out}"))
}

impl Setup {
    fn c(&self) -> &RealCluster {
        &self.cluster
    }

    /// One `agent --once` pass over the example fleet as the agent's ServiceAccount.
    fn pass(&self) -> (i32, String) {
        agent_once_as(&self.kubeconfig, self.repo.path())
    }

    /// A pass that must apply every app (no 403, no other failure).
    fn pass_ok(&self) -> String {
        let (code, out) = self.pass();
        assert_eq!(code, 0, "{out}");
        for app in APPS {
            assert!(line_of(&out, app).contains("\tapplied\t"), "{out}");
        }
        assert!(!out.contains("forbidden"), "{out}");
        out
    }

    /// Replaces the agent's ClusterRole and Role with what `change` makes of deploy/'s;
    /// deploy/'s come back when the returned guard is dropped.
    fn with_roles(&self, change: impl FnOnce(&mut Value, &mut Value)) -> Roles<'_> {
        let (mut cluster_role, mut role) = (self.cluster_role.clone(), self.role.clone());
        change(&mut cluster_role, &mut role);
        self.c()
            .kubectl_objects_ok(&["replace"], &[cluster_role, role]);
        Roles(self)
    }

    /// Changes `file` of the example fleet copy; put back when the guard is dropped.
    fn edit(&self, file: &str, change: impl FnOnce(String) -> String) -> Edit {
        let path = self.repo.path().join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        let changed = change(original.clone());
        assert_ne!(changed, original, "the edit of {file} changed nothing");
        std::fs::write(&path, changed).unwrap();
        Edit { path, original }
    }
}

/// Puts deploy/'s roles back.
struct Roles<'a>(&'a Setup);

impl Drop for Roles<'_> {
    fn drop(&mut self) {
        let s = self.0;
        s.c()
            .kubectl_objects_ok(&["replace"], &[s.cluster_role.clone(), s.role.clone()]);
    }
}

/// Puts a file of the fleet copy back.
struct Edit {
    path: PathBuf,
    original: String,
}

impl Drop for Edit {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.original).unwrap();
    }
}

/// The rule of `role` for `group`.
fn rule<'a>(role: &'a mut Value, group: &str) -> &'a mut Value {
    role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["apiGroups"][0] == group)
        .unwrap_or_else(|| panic!("no rule for API group {group:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Removes `verb` from the rule for `group`.
fn without_verb(role: &mut Value, group: &str, verb: &str) {
    let r = rule(role, group);
    let verbs: Vec<String> = strings(&r["verbs"])
        .into_iter()
        .filter(|v| v != verb)
        .collect();
    r["verbs"] = verbs.into();
}

/// Removes `resource` from the rule for `group`, and the rule when it was its only one.
fn without_resource(role: &mut Value, group: &str, resource: &str) {
    let r = rule(role, group);
    let resources: Vec<String> = strings(&r["resources"])
        .into_iter()
        .filter(|v| v != resource)
        .collect();
    if resources.is_empty() {
        role["rules"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r["apiGroups"][0] != group);
    } else {
        r["resources"] = resources.into();
    }
}

/// What a 403 of the apiserver says for `verb` on `resource` of `group`.
fn denied(verb: &str, resource: &str, group: &str) -> String {
    format!(r#"User "{USER}" cannot {verb} resource "{resource}" in API group "{group}""#)
}

/// The ClusterRole's rules, one object of each the example fleet ships: the object
/// each verb test takes away, changes or prunes.
struct Sample {
    group: &'static str,
    resource: &'static str,
    /// As the agent names the object.
    object: &'static str,
    app: &'static str,
    /// kubectl's arguments naming the object.
    kubectl: &'static [&'static str],
    /// The app's kustomization and the entries whose removal prunes the object.
    kustomization: &'static str,
    entries: &'static [&'static str],
}

const SAMPLES: &[Sample] = &[
    Sample {
        group: "",
        resource: "services",
        object: "Service web/web",
        app: "web",
        kubectl: &["service", "web", "-n", "web"],
        kustomization: "apps/web/base/kustomization.yaml",
        entries: &["service.yaml"],
    },
    Sample {
        group: "apps",
        resource: "deployments",
        object: "Deployment api/api",
        app: "api",
        kubectl: &["deployment", "api", "-n", "api"],
        kustomization: "apps/api/base/kustomization.yaml",
        entries: &["deployment.yaml"],
    },
    Sample {
        group: "networking.k8s.io",
        resource: "ingresses",
        object: "Ingress web/web",
        app: "web",
        kubectl: &["ingress", "web", "-n", "web"],
        kustomization: "apps/web/base/kustomization.yaml",
        entries: &["ingress.yaml"],
    },
    Sample {
        group: "autoscaling",
        resource: "horizontalpodautoscalers",
        object: "HorizontalPodAutoscaler web/web",
        app: "web",
        kubectl: &["horizontalpodautoscaler", "web", "-n", "web"],
        kustomization: "apps/web/base/kustomization.yaml",
        entries: &["hpa.yaml"],
    },
    Sample {
        group: "policy",
        resource: "poddisruptionbudgets",
        object: "PodDisruptionBudget api/api",
        app: "api",
        kubectl: &["poddisruptionbudget", "api", "-n", "api"],
        kustomization: "apps/api/base/kustomization.yaml",
        entries: &["pdb.yaml"],
    },
    Sample {
        group: "rbac.authorization.k8s.io",
        resource: "clusterroles",
        object: "ClusterRole quota-reader",
        app: "platform",
        kubectl: &["clusterrole", "quota-reader"],
        kustomization: "apps/platform/base/kustomization.yaml",
        // With its ServiceAccount and ClusterRoleBinding: pruned in that order, the
        // ServiceAccount first (namespaced), then the ClusterRole.
        entries: &["rbac.yaml"],
    },
    Sample {
        group: "apiextensions.k8s.io",
        resource: "customresourcedefinitions",
        object: "CustomResourceDefinition quotapolicies.platform.rollwave.dev",
        app: "platform",
        kubectl: &[
            "customresourcedefinition",
            "quotapolicies.platform.rollwave.dev",
        ],
        kustomization: "apps/platform/base/kustomization.yaml",
        // With its one object, pruned first.
        entries: &["crd.yaml", "quota-policy.yaml"],
    },
    Sample {
        group: "platform.rollwave.dev",
        resource: "quotapolicies",
        object: "QuotaPolicy platform/default",
        app: "platform",
        kubectl: &["quotapolicy", "default", "-n", "platform"],
        kustomization: "apps/platform/base/kustomization.yaml",
        entries: &["quota-policy.yaml"],
    },
];

#[test]
fn the_example_fleet_applies_under_the_agents_own_service_account_and_a_second_pass_writes_nothing()
{
    let (s, _turn) = setup();
    let c = s.c();
    // The first pass ever, on an empty cluster. Discovery worked without a rule for it
    // (Kubernetes' system:discovery binding), and no verb `update` was needed.
    let (code, out) = &s.cold;
    assert_eq!(*code, 0, "{out}");
    assert!(!out.contains("forbidden"), "{out}");
    for app in APPS {
        assert!(line_of(out, app).contains("\tapplied\t"), "{out}");
    }
    let whoami = Command::new("kubectl")
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .env("KUBECONFIG", &s.kubeconfig)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&whoami.stdout), USER);
    assert_ne!(c.writes(), s.writes_before_cold);

    s.pass_ok();
    for (ns, name) in [("web", "web"), ("api", "api")] {
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
    let out = s.pass_ok();
    assert_eq!(c.writes(), settled, "a pass in sync must not write:\n{out}");
    for app in APPS {
        let line = line_of(&out, app);
        assert!(
            line.contains("0 created, 0 configured") && line.ends_with("; Healthy"),
            "{out}"
        );
    }
}

#[test]
fn drift_correction_and_prune_work_under_the_agents_own_identity() {
    let (s, _turn) = setup();
    let c = s.c();
    s.pass_ok();
    c.kubectl_ok(&[
        "label",
        "--overwrite",
        "service",
        "web",
        "-n",
        "web",
        "app.kubernetes.io/managed-by=someone",
    ]);
    let out = s.pass_ok();
    assert!(
        line_of(&out, "web").contains("0 created, 1 configured"),
        "{out}"
    );
    let label = c.kubectl_ok(&[
        "get",
        "service",
        "web",
        "-n",
        "web",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    ]);
    assert_eq!(label, "rollwave");

    {
        let _pdb = s.edit("apps/api/base/kustomization.yaml", |k| {
            k.replace("- pdb.yaml\n", "")
        });
        let out = s.pass_ok();
        assert!(line_of(&out, "api").contains(" 1 pruned"), "{out}");
        let (code, _, err) = c.kubectl(&["get", "poddisruptionbudget", "api", "-n", "api"]);
        assert_ne!(code, 0);
        assert!(err.contains("NotFound"), "{err}");
    }
    let out = s.pass_ok();
    assert!(line_of(&out, "api").contains("1 created"), "{out}");
}

/// A running agent (`rollwave agent`) as the ServiceAccount, logging JSON to a file.
struct RunningAgent {
    child: Child,
    port: u16,
    log: PathBuf,
    _work: tempfile::TempDir,
}

impl RunningAgent {
    fn start(s: &Setup) -> RunningAgent {
        let work = tempfile::tempdir().unwrap();
        let log = work.path().join("agent.log");
        let port = common::git::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args(["agent", "--repo"])
            .arg(s.repo.path())
            .args(["--cluster", CLUSTER, "--kubeconfig"])
            .arg(&s.kubeconfig)
            .args(["--interval", "1h", "--log-format", "json"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("ROLLWAVE_CACHE", work.path().join("cache"))
            .env("PATH", common::helm::path_with_helm())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        RunningAgent {
            child,
            port,
            log,
            _work: work,
        }
    }

    /// The log lines, parsed.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the first pass is over (`/readyz`), then `settle` more for the
    /// watches' first lists and the pass they wake.
    fn wait_ready(&self, settle: Duration) {
        eventually(Duration::from_secs(60), "the agent's first pass", || {
            common::webhook::http_get(self.port, "/readyz").0 == 200
        });
        std::thread::sleep(settle);
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_running_agent_under_its_own_identity_writes_nothing_in_sync_and_reverts_drift_at_once() {
    let (s, _turn) = setup();
    let c = s.c();
    s.pass_ok();
    let settled = c.wait_settled(Duration::from_secs(3), Duration::from_secs(90));
    let agent = RunningAgent::start(s);
    // Its first pass, the watches' first lists and the pass they wake: none may write
    // (list items carry no apiVersion or kind; filled in, they compare equal).
    agent.wait_ready(Duration::from_secs(4));
    assert_eq!(c.writes(), settled, "the agent wrote:\n{}", agent.log());
    let refused = agent
        .lines()
        .into_iter()
        .any(|l| l["level"] == "WARN" && l["target"] == "rollwave::apply::drift");
    assert!(!refused, "every watch is allowed:\n{}", agent.log());

    let configmaps = c.kubectl_ok(&["get", "configmaps", "-n", "web", "-o", "name"]);
    let config = configmaps
        .lines()
        .find(|l| l.contains("web-config"))
        .unwrap();
    c.kubectl_ok(&[
        "patch",
        config,
        "-n",
        "web",
        "--type=merge",
        "-p",
        r#"{"data":{"LOG_LEVEL":"debug"}}"#,
    ]);
    eventually(
        Duration::from_secs(30),
        "the watch to revert the change",
        || {
            c.kubectl_ok(&[
                "get",
                "configmaps",
                "-n",
                "web",
                "-o",
                "jsonpath={.items[*].data.LOG_LEVEL}",
            ]) == "info"
        },
    );
}

#[test]
fn each_kind_of_the_cluster_role_is_needed_by_the_example_fleet() {
    let (s, _turn) = setup();
    s.pass_ok();
    // (API group, resource, an app that has one): without it, reading its objects fails.
    let kinds = [
        ("", "namespaces", "platform"),
        ("", "configmaps", "web"),
        ("", "secrets", "api"),
        ("", "services", "web"),
        ("", "serviceaccounts", "platform"),
        ("apps", "deployments", "api"),
        ("networking.k8s.io", "ingresses", "web"),
        ("autoscaling", "horizontalpodautoscalers", "web"),
        ("policy", "poddisruptionbudgets", "api"),
        ("rbac.authorization.k8s.io", "clusterroles", "platform"),
        (
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "platform",
        ),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "platform",
        ),
        ("platform.rollwave.dev", "quotapolicies", "platform"),
    ];
    let listed: usize = s.cluster_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resources"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        listed,
        kinds.len(),
        "every resource of the ClusterRole is tried"
    );
    for (group, resource, app) in kinds {
        let _roles = s.with_roles(|cr, _| without_resource(cr, group, resource));
        let (code, out) = s.pass();
        assert_eq!(code, 1, "without {resource}:\n{out}");
        let line = line_of(&out, app);
        assert!(
            line.contains(": read failed: ") && line.contains(&denied("get", resource, group)),
            "without {resource}:\n{out}"
        );
    }
    s.pass_ok();
}

#[test]
fn get_create_patch_and_delete_are_needed_in_every_rule_of_the_cluster_role() {
    let (s, _turn) = setup();
    let c = s.c();
    s.pass_ok();
    assert_eq!(
        SAMPLES.len(),
        s.cluster_role["rules"].as_array().unwrap().len(),
        "one sample per rule"
    );
    for x in SAMPLES {
        let fails = |verb: &str, out: &str, how: &str| {
            let line = line_of(out, x.app);
            assert!(
                line.contains(&format!("{}: {how}", x.object))
                    && line.contains(&denied(verb, x.resource, x.group)),
                "without {verb} on {}:\n{out}",
                x.resource
            );
        };

        // get: prune reads an object before deleting it, to delete only what still
        // carries rollwave's labels (a pass reads what it applies from the watch's
        // list, which list and watch allow).
        {
            let _edit = s.edit(x.kustomization, |mut k| {
                for e in x.entries {
                    k = k.replace(&format!("- {e}\n"), "");
                }
                k
            });
            let _roles = s.with_roles(|cr, _| without_verb(cr, x.group, "get"));
            let (code, out) = s.pass();
            assert_eq!(code, 1, "{out}");
            fails("get", &out, "prune failed: ");
        }
        s.pass_ok();

        // create: the object was deleted behind the agent's back.
        let mut delete = vec!["delete"];
        delete.extend(x.kubectl);
        c.kubectl_ok(&delete);
        {
            let _roles = s.with_roles(|cr, _| without_verb(cr, x.group, "create"));
            let (code, out) = s.pass();
            assert_eq!(code, 1, "{out}");
            fails("create", &out, "rejected by the server, nothing applied: ");
        }
        s.pass_ok();

        // patch: someone changed a field the agent sets.
        let mut label = vec!["label", "--overwrite"];
        label.extend(x.kubectl);
        label.push("app.kubernetes.io/managed-by=someone");
        c.kubectl_ok(&label);
        {
            let _roles = s.with_roles(|cr, _| without_verb(cr, x.group, "patch"));
            let (code, out) = s.pass();
            assert_eq!(code, 1, "{out}");
            fails("patch", &out, "rejected by the server, nothing applied: ");
        }
        s.pass_ok();

        // delete: the object left the repository.
        {
            let _edit = s.edit(x.kustomization, |mut k| {
                for e in x.entries {
                    k = k.replace(&format!("- {e}\n"), "");
                }
                k
            });
            let _roles = s.with_roles(|cr, _| without_verb(cr, x.group, "delete"));
            let (code, out) = s.pass();
            assert_eq!(code, 1, "{out}");
            fails("delete", &out, "prune failed: ");
        }
        s.pass_ok();
    }
}

#[test]
fn list_and_watch_are_needed_for_the_running_agents_drift_watch_of_every_kind() {
    let (s, _turn) = setup();
    s.pass_ok();
    // (kind, resource, API group) of every kind the example fleet ships.
    let kinds = [
        ("Namespace", "namespaces", ""),
        ("ConfigMap", "configmaps", ""),
        ("Secret", "secrets", ""),
        ("Service", "services", ""),
        ("ServiceAccount", "serviceaccounts", ""),
        ("Deployment", "deployments", "apps"),
        ("Ingress", "ingresses", "networking.k8s.io"),
        (
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "autoscaling",
        ),
        ("PodDisruptionBudget", "poddisruptionbudgets", "policy"),
        ("ClusterRole", "clusterroles", "rbac.authorization.k8s.io"),
        (
            "ClusterRoleBinding",
            "clusterrolebindings",
            "rbac.authorization.k8s.io",
        ),
        (
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "apiextensions.k8s.io",
        ),
        ("QuotaPolicy", "quotapolicies", "platform.rollwave.dev"),
    ];
    // Each kind is watched by its own request, which RBAC allows by that kind's rule
    // alone: taking the verb from every rule at once shows each rule's need in one run.
    for verb in ["list", "watch"] {
        let _roles = s.with_roles(|cr, _| {
            for x in SAMPLES {
                without_verb(cr, x.group, verb);
            }
        });
        let agent = RunningAgent::start(s);
        let refused = |kind: &str, resource: &str, group: &str| {
            agent.lines().iter().any(|l| {
                l["level"] == "WARN"
                    && l["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("cannot watch this kind: ")
                    && l["kind"] == kind
                    && l["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&denied(verb, resource, group))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for (kind, resource, group) in kinds {
            while !refused(kind, resource, group) {
                assert!(
                    Instant::now() < deadline,
                    "no warning that {verb} on {resource} is refused:\n{}",
                    agent.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    // The apiserver lets the agent create the example's quota-reader ClusterRole only
    // while it holds every permission the role grants, list and watch included: so even
    // `agent --once` needs them on quotapolicies.
    s.c().kubectl_ok(&["delete", "clusterrole", "quota-reader"]);
    {
        let _roles = s.with_roles(|cr, _| without_verb(cr, "platform.rollwave.dev", "watch"));
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        let line = line_of(&out, "platform");
        assert!(
            line.contains("ClusterRole quota-reader: rejected by the server, nothing applied: ")
                && line.contains("is attempting to grant RBAC permissions not currently held"),
            "{out}"
        );
    }
    s.pass_ok();
}

#[test]
fn the_inventory_role_alone_serves_the_inventories_and_each_of_its_verbs_is_needed() {
    let (s, _turn) = setup();
    let c = s.c();
    s.pass_ok();
    // The ClusterRole grants configmaps too, for web's and cache's ConfigMaps: take
    // them away there and leave those apps alone (suspended), so the Role is all that
    // allows the inventories.
    let _web = s.edit("apps/web/app.yaml", |a| format!("{a}suspend: true\n"));
    let _cache = s.edit("apps/cache/app.yaml", |a| format!("{a}suspend: true\n"));
    let no_configmaps = |cr: &mut Value| without_resource(cr, "", "configmaps");
    let pass_ok = || {
        let _roles = s.with_roles(|cr, _| no_configmaps(cr));
        let (code, out) = s.pass();
        assert_eq!(code, 0, "{out}");
        assert!(line_of(&out, "web").contains("\tsuspended\t"), "{out}");
        assert!(line_of(&out, "cache").contains("\tsuspended\t"), "{out}");
        out
    };
    let inventory = "rollwave-inventory-api";
    let refused = |verb: &str, out: &str, what: &str| {
        assert!(
            out.contains(what)
                && out.contains(&format!(
                    r#"{} in the namespace "rollwave-system""#,
                    denied(verb, "configmaps", "")
                )),
            "without {verb} in the Role:\n{out}"
        );
    };
    pass_ok();

    // get: a new agent reads the inventories from one list, and alone the one it
    // cannot parse from there, so that the error is reported for its app.
    let objects = c.kubectl_ok(&[
        "get",
        "configmap",
        inventory,
        "-n",
        "rollwave-system",
        "-o",
        "jsonpath={.data.objects}",
    ]);
    c.kubectl_ok(&[
        "patch",
        "configmap",
        inventory,
        "-n",
        "rollwave-system",
        "--type=merge",
        "-p",
        r#"{"data":{"objects":"not a list"}}"#,
    ]);
    {
        let _roles = s.with_roles(|cr, r| {
            no_configmaps(cr);
            without_verb(r, "", "get");
        });
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        refused(
            "get",
            line_of(&out, "api"),
            &format!("inventory ConfigMap {inventory}: read failed: "),
        );
    }
    let restored = serde_json::json!({"data": {"objects": objects}}).to_string();
    c.kubectl_ok(&[
        "patch",
        "configmap",
        inventory,
        "-n",
        "rollwave-system",
        "--type=merge",
        "-p",
        &restored,
    ]);

    // list: every pass looks for apps that left the repository.
    {
        let _roles = s.with_roles(|cr, r| {
            no_configmaps(cr);
            without_verb(r, "", "list");
        });
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        refused(
            "list",
            &out,
            &format!(
                "error: cluster '{CLUSTER}': inventory ConfigMaps in namespace rollwave-system: list failed: "
            ),
        );
    }

    // create: an app without an inventory (here deleted behind the agent's back).
    c.kubectl_ok(&["delete", "configmap", inventory, "-n", "rollwave-system"]);
    {
        let _roles = s.with_roles(|cr, r| {
            no_configmaps(cr);
            without_verb(r, "", "create");
        });
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        refused(
            "create",
            line_of(&out, "api"),
            &format!("inventory ConfigMap {inventory}: write failed: "),
        );
    }
    pass_ok();

    // patch: a new release of an app records it in its inventory before its objects
    // are written (a correction of drift does not write the inventory).
    {
        let _api = s.edit("apps/api/base/kustomization.yaml", |k| {
            format!("{k}commonAnnotations:\n  example.com/edited: \"yes\"\n")
        });
        let _roles = s.with_roles(|cr, r| {
            no_configmaps(cr);
            without_verb(r, "", "patch");
        });
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        refused(
            "patch",
            line_of(&out, "api"),
            &format!("inventory ConfigMap {inventory}: write failed: "),
        );
    }
    pass_ok();

    // delete: an app that no longer targets the cluster is released.
    {
        let _api = s.edit("apps/api/app.yaml", |a| {
            a.replace("exclude: [prod-gz-3]", "exclude: [prod-gz-3, test-sh-1]")
        });
        let _roles = s.with_roles(|cr, r| {
            no_configmaps(cr);
            without_verb(r, "", "delete");
        });
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        refused(
            "delete",
            line_of(&out, "api"),
            &format!("inventory ConfigMap {inventory}: write failed: "),
        );
    }
    pass_ok();
}
