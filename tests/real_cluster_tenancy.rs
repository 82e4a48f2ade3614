//! Tenancy against a real control plane (DESIGN §6.1): the agent runs under its own
//! ServiceAccount token with deploy/impersonating's RBAC (read, impersonate, inventory:
//! no write to any app's objects), and the example fleet's policies name a
//! ServiceAccount each, so every app is applied as its own. The platform bootstrap (the
//! namespaces, the ServiceAccounts and their bindings) is applied by the cluster admin,
//! as a platform team would. Then: a restricted app shipping a cluster-scoped kind, an
//! object in another namespace, a denied kind; an app within its policy whose
//! ServiceAccount may not do what it ships; rights taken away mid-life; the running
//! agent (drift watches, live health) with impersonated apps; an app deleted from the
//! repository released as the ServiceAccount its inventory records; `diff --live`
//! checked against the policy and read as the app's ServiceAccount.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::git::{commit_files, git, work_repo};
use common::k8s::RealCluster;
use common::sim::require_kubectl;
use common::{copy_dir, run_cli};
use rollwave::status::refs::read_statuses;
use rollwave::status::{AppStatus, Phase};
use serde_json::{Value, json};

const CLUSTER: &str = "test-sh-1";
const APPS: [&str; 4] = ["api", "cache", "platform", "web"];

/// The example fleet's tenancy, each policy applied as a ServiceAccount.
const TENANCY: &str = "tenancy:
  defaultPolicy: restricted
  policies:
    restricted:
      namespaces: [self]
      clusterScoped: [Namespace]
      deny: [ClusterRoleBinding, RoleBinding/kube-system]
      serviceAccount: rollwave-app
    platform: {namespaces: ['*'], clusterScoped: ['*'], serviceAccount: rollwave-platform}
  apps: {platform: platform}
";

struct Setup {
    cluster: RealCluster,
    kubeconfig: PathBuf,
    repo: tempfile::TempDir,
    cold: (i32, String),
}

fn setup() -> (&'static Setup, MutexGuard<'static, ()>) {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_kubectl();
    (SETUP.get_or_init(start), turn)
}

/// What a platform team sets up before the agent applies the apps: a ClusterRole of
/// what a team may write in its namespace, each restricted app's namespace with its
/// ServiceAccount bound to that role there, and the platform app's ServiceAccount
/// bound to cluster-admin.
fn bootstrap() -> Vec<Value> {
    let verbs = json!(["get", "list", "watch", "create", "patch", "delete"]);
    let mut out = vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "rollwave-tenant"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets", "services", "serviceaccounts"], "verbs": verbs},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": verbs},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": verbs},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": verbs},
            // Quotas are the platform's: a team may read its own.
            {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get", "list", "watch"]},
        ]}),
    ];
    for ns in ["web", "api", "cache", "platform"] {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    for ns in ["web", "api", "cache"] {
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "rollwave-app", "namespace": ns}}));
        out.push(app_binding(ns));
    }
    out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "rollwave-platform", "namespace": "platform"}}));
    out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "rollwave-platform"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "rollwave-platform", "namespace": "platform"}]}));
    out
}

fn app_binding(ns: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "rollwave-app", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rollwave-tenant"},
        "subjects": [{"kind": "ServiceAccount", "name": "rollwave-app", "namespace": ns}]})
}

/// A team's ServiceAccount without its RoleBinding, given back when dropped (a failing
/// test must not leave the next ones without it).
struct Unbound<'a> {
    s: &'a Setup,
    namespace: &'static str,
}

impl<'a> Unbound<'a> {
    fn new(s: &'a Setup, namespace: &'static str) -> Unbound<'a> {
        s.c()
            .kubectl_ok(&["delete", "rolebinding", "rollwave-app", "-n", namespace]);
        Unbound { s, namespace }
    }
}

impl Drop for Unbound<'_> {
    fn drop(&mut self) {
        self.s
            .c()
            .kubectl_objects_ok(&["apply", "--server-side"], &[app_binding(self.namespace)]);
    }
}

fn start() -> Setup {
    let cluster = RealCluster::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/impersonating");
    let (code, out, err) = run_cli(&["build", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let identity: Vec<Value> = rollwave::yaml::parse_documents("deploy", &out)
        .unwrap()
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
    cluster.kubectl_objects_ok(&["apply", "--server-side"], &bootstrap());
    let kubeconfig = cluster.service_account_kubeconfig("rollwave-system", "rollwave-agent");
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&common::example_fleet(), repo.path());
    let fleet = repo.path().join("fleet.yaml");
    let text = std::fs::read_to_string(&fleet).unwrap();
    let without = &text[..text.find("tenancy:\n").expect("the example has tenancy")];
    std::fs::write(&fleet, format!("{without}{TENANCY}")).unwrap();
    let setup = Setup {
        cluster,
        kubeconfig,
        repo,
        cold: (0, String::new()),
    };
    let cold = setup.pass();
    Setup { cold, ..setup }
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

    fn pass(&self) -> (i32, String) {
        let (code, out, err) = run_cli(&[
            "agent",
            "--once",
            "--repo",
            self.repo.path().to_str().unwrap(),
            "--cluster",
            CLUSTER,
            "--kubeconfig",
            self.kubeconfig.to_str().unwrap(),
        ]);
        (code, format!("{out}{err}"))
    }

    fn pass_ok(&self) -> String {
        let (code, out) = self.pass();
        assert_eq!(code, 0, "{out}");
        for app in APPS {
            assert!(line_of(&out, app).contains("\tapplied\t"), "{out}");
        }
        out
    }

    /// A pass in which only web fails: its line.
    fn web_fails(&self) -> String {
        let (code, out) = self.pass();
        assert_eq!(code, 1, "{out}");
        for app in ["api", "cache", "platform"] {
            assert!(line_of(&out, app).contains("\tapplied\t"), "{out}");
        }
        line_of(&out, "web").to_string()
    }

    /// Changes `file` of the fleet copy; put back when the guard is dropped.
    fn edit(&self, file: &str, change: impl FnOnce(String) -> String) -> Edit {
        let path = self.repo.path().join(file);
        let original = std::fs::read_to_string(&path).unwrap_or_default();
        let changed = change(original.clone());
        assert_ne!(changed, original, "the edit of {file} changed nothing");
        std::fs::write(&path, changed).unwrap();
        Edit { path, original }
    }

    /// Adds `yaml` to web's base as `extra.yaml`, with a ConfigMap web-extra beside it
    /// (allowed by the policy, so it shows whether anything of the revision applied).
    fn web_ships(&self, yaml: &str) -> (Edit, Edit) {
        let extra = self.edit("apps/web/base/extra.yaml", |_| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-extra}}\ndata: {{a: b}}\n---\n{yaml}")
        });
        let k = self.edit("apps/web/base/kustomization.yaml", |k| {
            k.replace("- hpa.yaml\n", "- hpa.yaml\n- extra.yaml\n")
        });
        (extra, k)
    }

    fn exists(&self, args: &[&str]) -> bool {
        let mut all = vec!["get"];
        all.extend(args);
        let (code, _, err) = self.c().kubectl(&all);
        assert!(code == 0 || err.contains("NotFound"), "{err}");
        code == 0
    }
}

struct Edit {
    path: PathBuf,
    original: String,
}

impl Drop for Edit {
    fn drop(&mut self) {
        if self.original.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        } else {
            std::fs::write(&self.path, &self.original).unwrap();
        }
    }
}

#[test]
fn every_app_applies_as_its_own_service_account_and_the_wide_platform_app_applies_everything() {
    let (s, _turn) = setup();
    let (code, out) = &s.cold;
    assert_eq!(*code, 0, "{out}");
    for app in APPS {
        assert!(line_of(out, app).contains("\tapplied\t"), "{out}");
    }
    // The agent itself may write none of it: its writes went out as the apps'.
    let agent = "system:serviceaccount:rollwave-system:rollwave-agent";
    for (verb, what) in [
        ("create", "deployments.apps"),
        ("patch", "services"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ] {
        let (_, answer, _) = s
            .c()
            .kubectl(&["auth", "can-i", verb, what, "-n", "web", "--as", agent]);
        assert_eq!(answer.trim(), "no", "{verb} {what}");
    }
    // The platform app (policy with '*') created its cluster-scoped objects.
    assert!(s.exists(&["clusterrolebinding", "quota-reader"]));
    assert!(s.exists(&[
        "customresourcedefinition",
        "quotapolicies.platform.rollwave.dev"
    ]));
    assert!(s.exists(&["quotapolicy", "default", "-n", "platform"]));
    assert!(s.exists(&["deployment", "web", "-n", "web"]));
    let out = s.pass_ok();
    for app in APPS {
        assert!(
            line_of(&out, app).contains("0 created, 0 configured"),
            "{out}"
        );
    }
}

#[test]
fn a_restricted_app_shipping_what_its_policy_forbids_is_refused_with_the_rule_and_nothing_applied()
{
    let (s, _turn) = setup();
    s.pass_ok();
    let cases = [
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: web-admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: web}]\n",
            "web\tPolicyViolation\tapps/web: ClusterRoleBinding/web-admin: denied by policy 'restricted' (deny: ClusterRoleBinding)",
            vec!["clusterrolebinding", "web-admin"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: web-admin}\nrules: []\n",
            "web\tPolicyViolation\tapps/web: ClusterRole/web-admin: cluster-scoped kind not allowed by policy 'restricted'",
            vec!["clusterrole", "web-admin"],
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-elsewhere, namespace: api}\ndata: {a: b}\n",
            "web\tPolicyViolation\tapps/web: ConfigMap/api/web-elsewhere: namespace 'api' not allowed by policy 'restricted' (namespaces: self = web)",
            vec!["configmap", "web-elsewhere", "-n", "api"],
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {type: ExternalName, externalName: db.api.svc.cluster.local}\n",
            "web\tPolicyViolation\tapps/web: Service/web/db: externalName 'db.api.svc.cluster.local' points into namespace 'api', not allowed by policy 'restricted' (namespaces: self = web)",
            vec!["service", "db", "-n", "web"],
        ),
    ];
    for (yaml, want, object) in cases {
        let _edits = s.web_ships(yaml);
        let line = s.web_fails();
        assert_eq!(line, want);
        assert!(!s.exists(&object), "{object:?}");
        assert!(!s.exists(&["configmap", "web-extra", "-n", "web"]));
    }
    s.pass_ok();
}

#[test]
fn an_app_within_its_policy_but_beyond_its_service_account_is_refused_by_the_clusters_rbac() {
    let (s, _turn) = setup();
    s.pass_ok();
    // A team's role may read ResourceQuotas in its namespace but not write them.
    let _edits = s.web_ships(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: web}\nspec: {hard: {pods: '50'}}\n",
    );
    let line = s.web_fails();
    assert!(
        line.starts_with("web\tApplyFailed\tResourceQuota web/web: rejected by the server, nothing applied: ")
            && line.contains(r#"User "system:serviceaccount:web:rollwave-app" cannot patch resource "resourcequotas" in API group "" in the namespace "web""#),
        "{line}"
    );
    assert!(!s.exists(&["resourcequota", "web", "-n", "web"]));
    assert!(!s.exists(&["configmap", "web-extra", "-n", "web"]));
    drop(_edits);
    s.pass_ok();
}

#[test]
fn taking_an_apps_rights_away_mid_life_never_deletes_its_objects() {
    let (s, _turn) = setup();
    s.pass_ok();
    // The ServiceAccount loses its binding while the repository drops an object: the
    // pass fails on the cluster's RBAC and deletes nothing.
    {
        let _pdb = s.edit("apps/web/base/kustomization.yaml", |k| {
            k.replace("- service.yaml\n", "")
        });
        s.c()
            .kubectl_ok(&["delete", "rolebinding", "rollwave-app", "-n", "web"]);
        let line = s.web_fails();
        assert!(
            line.contains(r#"User "system:serviceaccount:web:rollwave-app" cannot get resource"#),
            "{line}"
        );
        assert!(s.exists(&["service", "web", "-n", "web"]));
        assert!(s.exists(&["deployment", "web", "-n", "web"]));
        s.c()
            .kubectl_objects_ok(&["apply", "--server-side"], &[app_binding("web")]);
    }
    s.pass_ok();
    // fleet.yaml narrows the policy under objects the app has: the revision is refused
    // and every object stays as it was.
    {
        let _fleet = s.edit("fleet.yaml", |f| {
            f.replace(
                "deny: [ClusterRoleBinding, RoleBinding/kube-system]",
                "deny: [ClusterRoleBinding, RoleBinding/kube-system, Ingress, HorizontalPodAutoscaler]",
            )
        });
        let line = s.web_fails();
        assert_eq!(
            line,
            "web\tPolicyViolation\tapps/web: HorizontalPodAutoscaler/web/web: denied by policy 'restricted' (deny: HorizontalPodAutoscaler); Ingress/web/web: denied by policy 'restricted' (deny: Ingress)"
        );
        assert!(s.exists(&["ingress", "web", "-n", "web"]));
        assert!(s.exists(&["horizontalpodautoscaler", "web", "-n", "web"]));
    }
    let out = s.pass_ok();
    assert!(
        line_of(&out, "web").contains("0 created, 0 configured"),
        "{out}"
    );
}

#[test]
fn an_app_released_with_removal_delete_is_deleted_as_its_service_account() {
    let (s, _turn) = setup();
    s.pass_ok();
    let released = || {
        s.edit("apps/api/app.yaml", |a| {
            a.replace("exclude: [prod-gz-3]", "exclude: [prod-gz-3, test-sh-1]")
                + "removal: delete\n"
        })
    };
    // Without its binding the ServiceAccount may not even read: nothing is deleted and
    // the inventory stays, so a later pass finishes the job.
    {
        let _api = released();
        s.c()
            .kubectl_ok(&["delete", "rolebinding", "rollwave-app", "-n", "api"]);
        let (code, out) = s.pass();
        assert_eq!(code, 1, "{out}");
        let line = line_of(&out, "api");
        assert!(
            line.starts_with("api\tPruneFailed\t")
                && line.contains(
                    r#"User "system:serviceaccount:api:rollwave-app" cannot get resource"#
                ),
            "{out}"
        );
        assert!(s.exists(&["deployment", "api", "-n", "api"]));
        assert!(s.exists(&[
            "configmap",
            "rollwave-inventory-api",
            "-n",
            "rollwave-system"
        ]));
        s.c()
            .kubectl_objects_ok(&["apply", "--server-side"], &[app_binding("api")]);
        let (code, out) = s.pass();
        assert_eq!(code, 0, "{out}");
        assert!(line_of(&out, "api").contains("\treleased\t"), "{out}");
        assert!(line_of(&out, "api").contains(" object(s) deleted"), "{out}");
        assert!(!s.exists(&["deployment", "api", "-n", "api"]));
    }
    let out = s.pass_ok();
    assert!(line_of(&out, "api").contains(" created"), "{out}");
}

/// The agent's own user: under deploy/impersonating it may read, impersonate and keep
/// inventories, nothing more.
const AGENT: &str = "system:serviceaccount:rollwave-system:rollwave-agent";

/// Waits (polling every 250 ms) until `check` holds; fails the test after `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// The fleet copy of the setup as a Git repository (a work tree on `main`), so that
/// the agent plans releases and writes its status ref there; removed on drop.
struct GitFleet {
    dir: tempfile::TempDir,
}

impl GitFleet {
    fn new(s: &Setup) -> GitFleet {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(s.repo.path(), dir.path());
        work_repo(dir.path(), &[]);
        GitFleet { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Rewrites `file` with `change` and commits it.
    fn commit_edit(&self, file: &str, change: impl FnOnce(String) -> String, message: &str) {
        let path = self.dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let changed = change(text.clone());
        assert_ne!(changed, text, "the edit of {file} changed nothing");
        commit_files(self.dir.path(), &[(file, &changed)], message);
    }

    /// Removes the directory `dir` and commits.
    fn commit_removal(&self, dir: &str, message: &str) {
        git(self.dir.path(), &["rm", "-r", "-q", dir]);
        git(self.dir.path(), &["commit", "-q", "-m", message]);
    }

    /// `agent --once` on this repository as the agent's ServiceAccount.
    fn pass(&self, s: &Setup) -> (i32, String) {
        let (code, out, err) = run_cli(&[
            "agent",
            "--once",
            "--repo",
            self.path(),
            "--cluster",
            CLUSTER,
            "--kubeconfig",
            s.kubeconfig.to_str().unwrap(),
        ]);
        (code, format!("{out}{err}"))
    }

    /// The status the cluster's agent wrote for `app` (its status ref), if any.
    fn status(&self, app: &str) -> Option<AppStatus> {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let (statuses, errors) = read_statuses(&repo);
        assert!(errors.is_empty(), "{errors:?}");
        statuses.get(CLUSTER)?.apps.get(app).cloned()
    }

    /// The phase `rollwave status` shows for `app` on the cluster.
    fn status_phase(&self, app: &str) -> String {
        let (code, out, err) = run_cli(&["status", "--repo", self.path()]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&app) && cols.get(2) == Some(&CLUSTER))
            .and_then(|cols| cols.get(4).map(|p| p.to_string()))
            .unwrap_or_else(|| panic!("no row for {app} on {CLUSTER}:\n{out}"))
    }
}

/// The running agent (`rollwave agent`, drift watches on) as its ServiceAccount,
/// logging JSON to a file; killed on drop.
struct RunningAgent {
    child: Child,
    port: u16,
    log: PathBuf,
    _work: tempfile::TempDir,
}

impl RunningAgent {
    fn start(s: &Setup, repo: &GitFleet) -> RunningAgent {
        let work = tempfile::tempdir().unwrap();
        let log = work.path().join("agent.log");
        let port = common::git::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args(["agent", "--repo", repo.path()])
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

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the first pass is over (`/readyz`).
    fn wait_ready(&self) {
        wait_for(Duration::from_secs(90), "the agent's first pass", || {
            common::webhook::http_get(self.port, "/readyz").0 == 200
        });
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `LOG_LEVEL` in web's generated ConfigMap (its name carries a hash).
fn web_log_level(s: &Setup) -> (String, String) {
    let names = s
        .c()
        .kubectl_ok(&["get", "configmaps", "-n", "web", "-o", "name"]);
    let name = names
        .lines()
        .find(|l| l.contains("web-config"))
        .expect("web's generated ConfigMap")
        .to_string();
    let level = s.c().kubectl_ok(&[
        "get",
        &name,
        "-n",
        "web",
        "-o",
        "jsonpath={.data.LOG_LEVEL}",
    ]);
    (name, level)
}

fn set_web_log_level(s: &Setup, level: &str) {
    let (name, _) = web_log_level(s);
    s.c().kubectl_ok(&[
        "patch",
        &name,
        "-n",
        "web",
        "--type=merge",
        "-p",
        &format!(r#"{{"data":{{"LOG_LEVEL":"{level}"}}}}"#),
    ]);
}

#[test]
fn the_running_agent_applies_takes_drift_back_and_reads_health_as_the_apps_service_account() {
    let (s, _turn) = setup();
    s.pass_ok();
    let repo = GitFleet::new(s);
    // The agent itself may not write web's objects: whatever it puts back, its
    // ServiceAccount did.
    for (verb, what) in [("patch", "configmaps"), ("create", "configmaps")] {
        let (_, answer, _) = s
            .c()
            .kubectl(&["auth", "can-i", verb, what, "-n", "web", "--as", AGENT]);
        assert_eq!(answer.trim(), "no", "{verb} {what}");
    }
    let agent = RunningAgent::start(s, &repo);
    agent.wait_ready();
    // Health is read live as each app's ServiceAccount (not from the agent's watch
    // cache): web's Deployment becomes available and the status says Healthy.
    wait_for(Duration::from_secs(90), "web Healthy in the status", || {
        repo.status_phase("web") == "Healthy"
    });
    for app in APPS {
        assert_eq!(repo.status_phase(app), "Healthy", "{}", agent.log());
    }

    // A new release of web (a ConfigMap the agent itself may not create) is applied
    // by the running agent, as web's ServiceAccount, and reported at that commit.
    let kustomization =
        std::fs::read_to_string(repo.dir.path().join("apps/web/base/kustomization.yaml")).unwrap();
    let release = commit_files(
        repo.dir.path(),
        &[
            (
                "apps/web/base/extra.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-extra}\ndata: {a: b}\n",
            ),
            (
                "apps/web/base/kustomization.yaml",
                &kustomization.replace("- hpa.yaml\n", "- hpa.yaml\n- extra.yaml\n"),
            ),
        ],
        "web: one more ConfigMap",
    );
    wait_for(Duration::from_secs(60), "web's new release applied", || {
        repo.status("web")
            .is_some_and(|a| a.release == release && a.phase == Phase::Healthy)
    });
    assert!(s.exists(&["configmap", "web-extra", "-n", "web"]));

    // Someone edits a field the app owns: the watch wakes the agent, which puts it
    // back as the app's ServiceAccount (the field's manager is rollwave's apply again).
    set_web_log_level(s, "debug");
    wait_for(Duration::from_secs(30), "the drift taken back", || {
        web_log_level(s).1 == "info"
    });
    let (name, _) = web_log_level(s);
    let fields = s.c().kubectl_ok(&[
        "get",
        &name,
        "-n",
        "web",
        "--show-managed-fields",
        "-o",
        "json",
    ]);
    let fields: Value = serde_json::from_str(&fields).unwrap();
    let owners: Vec<(&str, &str)> = fields["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["fieldsV1"]["f:data"].get("f:LOG_LEVEL").is_some())
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or(""),
                m["operation"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(owners, [("rollwave", "Apply")], "{fields:#}");

    // The ServiceAccount loses its rights: the next drift is not taken back, and the
    // status says why with the apiserver's answer to the ServiceAccount (the agent's
    // own identity could still read everything).
    let unbound = Unbound::new(s, "web");
    set_web_log_level(s, "debug");
    wait_for(
        Duration::from_secs(30),
        "web in Error in the status",
        || repo.status("web").is_some_and(|a| a.phase == Phase::Error),
    );
    let web = repo.status("web").unwrap();
    assert!(
        web.message
            .contains(r#"User "system:serviceaccount:web:rollwave-app" cannot get resource"#),
        "{}",
        web.message
    );
    assert_eq!(repo.status_phase("web"), "Error");
    assert_eq!(web_log_level(s).1, "debug");

    // Rights back, and the next edit is taken back with the first.
    drop(unbound);
    set_web_log_level(s, "trace");
    wait_for(Duration::from_secs(30), "the drift taken back", || {
        web_log_level(s).1 == "info"
    });
    wait_for(Duration::from_secs(30), "web Healthy again", || {
        repo.status_phase("web") == "Healthy"
    });
    drop(agent);
    // Back to the setup's fleet: its pass prunes the release's ConfigMap.
    s.pass_ok();
    assert!(!s.exists(&["configmap", "web-extra", "-n", "web"]));
}

#[test]
fn an_app_deleted_from_the_repository_is_deleted_as_the_service_account_its_inventory_records() {
    let (s, _turn) = setup();
    s.pass_ok();
    let repo = GitFleet::new(s);
    repo.commit_edit(
        "apps/api/app.yaml",
        |a| a + "removal: delete\n",
        "api: delete its objects when it goes",
    );
    let (code, out) = repo.pass(s);
    assert_eq!(code, 0, "{out}");
    // The inventory records who applied the app.
    let recorded = s.c().kubectl_ok(&[
        "get",
        "configmap",
        "rollwave-inventory-api",
        "-n",
        "rollwave-system",
        "-o",
        "jsonpath={.data.appliedAs}",
    ]);
    assert_eq!(recorded, "system:serviceaccount:api:rollwave-app");
    // The agent's own identity may not delete api's objects.
    let (_, answer, _) = s.c().kubectl(&[
        "auth",
        "can-i",
        "delete",
        "deployments.apps",
        "-n",
        "api",
        "--as",
        AGENT,
    ]);
    assert_eq!(answer.trim(), "no");

    repo.commit_removal("apps/api", "api leaves the fleet");
    // The recorded ServiceAccount has lost its rights: nothing is deleted, the
    // inventory stays, and the app's status says why.
    let unbound = Unbound::new(s, "api");
    let (code, out) = repo.pass(s);
    assert_eq!(code, 1, "{out}");
    let line = line_of(&out, "api");
    let prefix = "api\tPruneFailed\tapps/api: no longer targets this cluster and is deleted as system:serviceaccount:api:rollwave-app: ";
    assert!(
        line.starts_with(prefix)
            && line.contains(r#"User "system:serviceaccount:api:rollwave-app" cannot get resource"#)
            && line.ends_with("; its inventory is kept and the next pass tries again (give system:serviceaccount:api:rollwave-app back the right to read and delete these objects, or delete the inventory ConfigMap to leave them running)"),
        "{line}"
    );
    assert!(s.exists(&["deployment", "api", "-n", "api"]));
    assert!(s.exists(&["service", "api", "-n", "api"]));
    assert!(s.exists(&[
        "configmap",
        "rollwave-inventory-api",
        "-n",
        "rollwave-system"
    ]));
    let status = repo.status("api").expect("api stays in the status");
    assert_eq!(status.phase, Phase::Error);
    assert_eq!(
        status.message,
        line.trim_start_matches("api\tPruneFailed\t")
    );
    // `rollwave status` still lists the deleted app where its release is unfinished.
    assert_eq!(repo.status_phase("api"), "Error");

    // Rights back: the next pass deletes the objects as that ServiceAccount.
    drop(unbound);
    let (code, out) = repo.pass(s);
    assert_eq!(code, 0, "{out}");
    let line = line_of(&out, "api");
    assert!(
        line.starts_with("api\treleased\tno longer targeted: ")
            && line.ends_with(" object(s) deleted"),
        "{line}"
    );
    assert!(!s.exists(&["deployment", "api", "-n", "api"]));
    assert!(!s.exists(&["service", "api", "-n", "api"]));
    assert!(!s.exists(&[
        "configmap",
        "rollwave-inventory-api",
        "-n",
        "rollwave-system"
    ]));
    assert!(
        repo.status("api").is_none(),
        "released apps leave the status"
    );
    let (_, table, _) = run_cli(&["status", "--repo", repo.path()]);
    assert!(!table.contains("\napi "), "{table}");
    let out = s.pass_ok();
    assert!(line_of(&out, "api").contains(" created"), "{out}");
}

/// `rollwave diff --live` of `app` on the cluster, connecting with `kubeconfig`.
fn diff_live(s: &Setup, kubeconfig: &Path, app: &str) -> (i32, String, String) {
    run_cli(&[
        "diff",
        "--repo",
        s.repo.path().to_str().unwrap(),
        "--cluster",
        CLUSTER,
        "--live",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--app",
        app,
    ])
}

#[test]
fn diff_live_checks_the_policy_and_reads_as_the_apps_service_account() {
    let (s, _turn) = setup();
    s.pass_ok();
    let (code, out, err) = diff_live(s, &s.kubeconfig, "web");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "no differences: the cluster runs what the repository renders\n",
            ""
        )
    );
    // An edit shows as the ServiceAccount reads it and its dry run would put it back.
    set_web_log_level(s, "debug");
    let (code, out, err) = diff_live(s, &s.kubeconfig, "web");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\n-  LOG_LEVEL: debug\n") && out.contains("\n+  LOG_LEVEL: info\n"),
        "{out}"
    );

    // A revision that breaks the app's policy is not compared at all: exit 1, the
    // violation as the agent reports it.
    {
        let _edits = s.web_ships(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: web-admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: web}]\n",
        );
        let (code, out, err) = diff_live(s, &s.kubeconfig, "web");
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (
                1,
                "",
                "error: app 'web': apps/web: ClusterRoleBinding/web-admin: denied by policy 'restricted' (deny: ClusterRoleBinding)\n"
            )
        );
    }

    // The reads go out as the ServiceAccount: without its binding, the apiserver's 403
    // to it, although the connection's own user (the agent) may read everything.
    let (_, answer, _) = s.c().kubectl(&[
        "auth",
        "can-i",
        "get",
        "configmaps",
        "-n",
        "web",
        "--as",
        AGENT,
    ]);
    assert_eq!(answer.trim(), "yes");
    let unbound = Unbound::new(s, "web");
    let (code, out, err) = diff_live(s, &s.kubeconfig, "web");
    drop(unbound);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.starts_with("error: app 'web': ")
            && err.contains(": read failed: ")
            && err.contains(r#"User "system:serviceaccount:web:rollwave-app" cannot get resource"#)
            && err.lines().count() == 1,
        "{err}"
    );

    // A kubeconfig whose user may not impersonate the ServiceAccount gets no diff made
    // with its own rights, but what to grant.
    let own = s.c().service_account_kubeconfig("web", "rollwave-app");
    let (code, out, err) = diff_live(s, &own, "web");
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    // (The apiserver's own sentence differs between versions: with constrained
    // impersonation it names the object, "cannot impersonate-on:serviceaccount:get".)
    assert!(
        err.starts_with("error: app 'web': apps/web: its policy reads and applies it as system:serviceaccount:web:rollwave-app, and this connection's user may not impersonate it: ")
            && err.contains(r#"User "system:serviceaccount:web:rollwave-app" cannot impersonate"#)
            && err.ends_with("; grant that user `impersonate` on serviceaccounts/rollwave-app in namespace web (the agent's identity has it under deploy/impersonating/)\n"),
        "{err}"
    );
    s.pass_ok();
    assert_eq!(web_log_level(s).1, "info");
}

#[test]
fn an_agent_that_may_not_impersonate_an_apps_service_account_says_what_to_grant() {
    let (s, _turn) = setup();
    s.pass_ok();
    let role = s
        .c()
        .kubectl_ok(&["get", "clusterrole", "rollwave-apply", "-o", "json"]);
    let mut role: Value = serde_json::from_str(&role).unwrap();
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        role["metadata"].as_object_mut().unwrap().remove(field);
    }
    let original = role.clone();
    let impersonate = role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["verbs"] == json!(["impersonate"]))
        .expect("the impersonate rule");
    impersonate["resourceNames"] = json!(["rollwave-platform"]);
    s.c().kubectl_objects_ok(&["replace"], &[role]);
    let (code, out) = s.pass();
    s.c().kubectl_objects_ok(&["replace"], &[original]);
    assert_eq!(code, 1, "{out}");
    assert!(line_of(&out, "platform").contains("\tapplied\t"), "{out}");
    for (app, ns) in [("api", "api"), ("cache", "cache"), ("web", "web")] {
        let line = line_of(&out, app);
        let user = format!("system:serviceaccount:{ns}:rollwave-app");
        assert!(
            line.starts_with(&format!("{app}\tApplyFailed\tapps/{app}: its policy reads and applies it as {user}, and this connection's user may not impersonate it: "))
                && line.contains(&format!(r#"User "{AGENT}" cannot impersonate"#))
                && line.ends_with(&format!("; grant that user `impersonate` on serviceaccounts/rollwave-app in namespace {ns} (the agent's identity has it under deploy/impersonating/)")),
            "{line}"
        );
    }
    s.pass_ok();
}
