//! One agent pass over a cluster (`rollwave agent --once` and its library form): apps
//! that stop targeting the cluster are orphaned or deleted, suspended apps are left
//! alone, and the command's exit code says whether every app applied — on a simulated
//! cluster and on the real control plane (`tests/k8s/`) alike.

mod common;

use std::time::Duration;

use common::ScratchRepo;
use common::backend::Backend;
use common::fakeapi::{Behaviour, FakeApi};
use common::sim::{TestCluster, require_kubectl};
use rollwave::agent::AppResult;
use rollwave::apply::Reconciler;
use rollwave::fleet::Removal;

const API_APP: &[(&str, &str)] = &[
    (
        "apps/api/app.yaml",
        "namespace: api\nremoval: delete\ntargets:\n  stages: [test, prod]\n",
    ),
    (
        "apps/api/base/kustomization.yaml",
        "resources:\n- cm.yaml\n",
    ),
    (
        "apps/api/base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api-settings}\ndata: {mode: fast}\n",
    ),
];

async fn pass(repo: &ScratchRepo, reconciler: &Reconciler) -> rollwave::agent::PassReport {
    repo.pass("prod-1", reconciler).await
}

on_both!(
    apps_that_stop_targeting_the_cluster_are_orphaned_or_deleted_and_suspended_apps_left_alone,
    agent_once_exits_0_when_every_app_applied_and_1_with_the_reason_otherwise,
);

/// The minimal fleet plus `api`, with each app in a namespace of the test's own
/// (`<ns>-web`, `<ns>-api`) so tests sharing a real control plane never meet.
fn repo_for(b: &Backend, with_api: bool) -> ScratchRepo {
    let repo = ScratchRepo::minimal_with(if with_api { API_APP } else { &[] });
    repo.write("apps/web/app.yaml", app_yaml(b, "web", "", "[test, prod]"));
    if with_api {
        repo.write(
            "apps/api/app.yaml",
            app_yaml(b, "api", "removal: delete\n", "[test, prod]"),
        );
    }
    repo
}

fn app_yaml(b: &Backend, app: &str, extra: &str, stages: &str) -> String {
    format!(
        "namespace: {}-{app}\n{extra}targets:\n  stages: {stages}\n",
        b.ns
    )
}

async fn apps_that_stop_targeting_the_cluster_are_orphaned_or_deleted_and_suspended_apps_left_alone(
    b: Backend,
) {
    let repo = repo_for(&b, true);
    let (web_ns, api_ns) = (format!("{}-web", b.ns), format!("{}-api", b.ns));
    let reconciler = b.fresh_reconciler();
    let first = pass(&repo, &reconciler).await;
    assert!(first.ok(), "{}", first.table());

    // Both apps leave prod: web orphans (the default), api deletes.
    repo.write("apps/web/app.yaml", app_yaml(&b, "web", "", "[test]"));
    repo.write(
        "apps/api/app.yaml",
        app_yaml(&b, "api", "removal: delete\n", "[test]"),
    );
    let second = pass(&repo, &reconciler).await;
    assert!(second.ok(), "{}", second.table());
    let released: Vec<(String, Removal)> = second
        .apps
        .iter()
        .filter_map(|(a, r)| match r {
            AppResult::Released { removal, .. } => Some((a.clone(), *removal)),
            _ => None,
        })
        .collect();
    assert_eq!(
        released,
        [
            ("api".to_string(), Removal::Delete),
            ("web".to_string(), Removal::Orphan)
        ]
    );
    assert!(reconciler.inventoried_apps().await.unwrap().is_empty());
    assert!(
        b.exists(&web_ns, "deployment", "web"),
        "an orphaned app's objects keep running"
    );
    assert!(
        !b.exists(&api_ns, "configmap", "api-settings"),
        "removal: delete deletes the objects"
    );

    // A suspended app is not touched, even when its manifests change (a fresh
    // reconciler: nothing remembered from the passes before).
    repo.write(
        "apps/web/app.yaml",
        app_yaml(&b, "web", "suspend: true\n", "[test, prod]"),
    );
    let reconciler = b.fresh_reconciler();
    let writes = b.writes().await;
    let third = pass(&repo, &reconciler).await;
    assert!(
        matches!(
            third.apps.iter().find(|(a, _)| a == "web"),
            Some((_, AppResult::Suspended))
        ),
        "{}",
        third.table()
    );
    assert_eq!(b.writes_now().await, writes);
    b.finish().await;
}

async fn agent_once_exits_0_when_every_app_applied_and_1_with_the_reason_otherwise(b: Backend) {
    require_kubectl();
    let repo = repo_for(&b, false);
    let web_ns = format!("{}-web", b.ns);
    let inventory = format!("inv-{}", b.ns);
    let kubeconfig = b.kubeconfig.to_str().unwrap().to_string();
    let run = |repo: &ScratchRepo, cluster: &str| {
        common::run_cli(&[
            "agent",
            "--once",
            "--repo",
            repo.path().to_str().unwrap(),
            "--cluster",
            cluster,
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            &inventory,
        ])
    };
    let (code, out, err) = run(&repo, "prod-1");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web\tapplied\t"), "{out}");
    common::sim::eventually(Duration::from_secs(10), "the Deployment to exist", || {
        b.exists(&web_ns, "deployment", "web")
    });

    repo.write(
        "apps/web/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: other}}\n    spec: {containers: [{name: web, image: nginx:2}]}\n",
    );
    let (code, out, err) = run(&repo, "prod-1");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "error: cluster 'prod-1': app 'web': Deployment {web_ns}/web: rejected by the server, nothing applied"
        )),
        "{err}"
    );
    let (_, image, _) = b.kubectl(&[
        "get",
        "deployment",
        "web",
        "-n",
        &web_ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx", "the last good state stays applied");

    let (code, _, err) = run(&repo, "nope");
    assert_eq!(code, 1);
    assert!(err.contains("cluster 'nope' is not in clusters/"), "{err}");
    b.finish().await;
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

/// A long-running agent on `repo` for `c`'s cluster prod-1, polling hourly (only drift
/// wakes it), serving on `port`; stderr piped for the test to read.
fn spawn_drift_agent(
    repo: &ScratchRepo,
    c: &TestCluster,
    port: u16,
    log: Option<&str>,
) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"));
    cmd.args(["agent", "--repo", repo.path().to_str().unwrap()])
        .args(["--cluster", "prod-1", "--kubeconfig"])
        .arg(&c.kubeconfig)
        .args(["--interval", "1h", "--drift-interval", "100ms"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(directives) = log {
        cmd.env("ROLLWAVE_LOG", directives);
    }
    cmd.spawn().unwrap()
}

#[test]
fn the_running_agent_corrects_drift_by_itself_and_reports_it_in_metrics() {
    require_kubectl();
    let c = TestCluster::start("prod-1");
    let repo = ScratchRepo::minimal_with(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- cm.yaml\n",
        ),
        (
            "apps/web/base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n",
        ),
    ]);
    let port = common::git::free_port();
    let child = spawn_drift_agent(&repo, &c, port, None);
    let pid = child.id() as i32;
    common::sim::eventually(Duration::from_secs(20), "the agent to be ready", || {
        http_get(port, "/readyz").0 == 200
    });
    assert_eq!(http_get(port, "/healthz").0, 200);
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "web",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ]);
    common::sim::eventually(
        Duration::from_secs(20),
        "the agent to revert the edit",
        || {
            c.kubectl_ok(&[
                "get",
                "configmap",
                "settings",
                "-n",
                "web",
                "-o",
                "jsonpath={.data.mode}",
            ]) == "fast"
        },
    );
    // The counter moves after the apply's answer, which on a busy machine can be
    // after the object changed: wait for it too.
    common::sim::eventually(
        Duration::from_secs(60),
        "the drift correction counted",
        || {
            http_get(port, "/metrics")
                .1
                .contains("rollwave_drift_corrections_total 1")
        },
    );
    let (_, metrics) = http_get(port, "/metrics");
    assert!(
        metrics.contains("rollwave_app_info{cluster=\"prod-1\",app=\"web\""),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("rollwave_reconcile_duration_seconds_count{cluster=\"prod-1\",app=\"web\"}"),
        "{metrics}"
    );
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = common::sim::wait_output(child, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn diff_live_shows_what_an_apply_would_change_on_the_cluster() {
    require_kubectl();
    let c = TestCluster::start("prod-1");
    let repo = ScratchRepo::minimal_with(&[]);
    let kubeconfig = c.kubeconfig.to_str().unwrap().to_string();
    let path = repo.path().to_str().unwrap().to_string();
    let (code, out, err) = common::run_cli(&[
        "agent",
        "--once",
        "--repo",
        &path,
        "--cluster",
        "prod-1",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let diff = |c: &TestCluster| {
        let _ = c;
        common::run_cli(&[
            "diff",
            "--repo",
            &path,
            "--cluster",
            "prod-1",
            "--live",
            "--kubeconfig",
            &kubeconfig,
        ])
    };
    let (code, out, err) = diff(&c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no differences"), "{out}");
    c.kubectl_ok(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        "web",
        "web=nginx:hacked",
    ]);
    let (code, out, err) = diff(&c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("--- live web/Deployment web/web"), "{out}");
    assert!(
        out.contains("-      - image: nginx:hacked") && out.contains("+      - image: nginx\n"),
        "{out}"
    );
    // The diff is a dry run: the cluster keeps the hand-set image.
    let image = c.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:hacked");
    let (code, _, err) = common::run_cli(&["diff", "--repo", &path, "--live"]);
    assert_eq!(code, 2, "--live needs --cluster: {err}");
}

/// Runs `agent --once` on the minimal fleet's `prod-1` against `kubeconfig`, with a
/// hard limit so a hang fails the test; (exit code, stderr, how long it took).
fn once_against(kubeconfig: &std::path::Path, limit: Duration) -> (i32, String, Duration) {
    let repo = ScratchRepo::minimal_with(&[]);
    let started = std::time::Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["agent", "--once", "--repo"])
        .arg(repo.path())
        .args(["--cluster", "prod-1", "--kubeconfig"])
        .arg(kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::sim::wait_output(child, limit);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn agent_once_gives_up_on_an_api_server_that_never_answers() {
    let api = FakeApi::start("prod-1", Behaviour::Hang);
    let (code, err, took) = once_against(&api.kubeconfig, Duration::from_secs(180));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: cluster 'prod-1'")
            && err.contains("the API server did not answer within 1m"),
        "{err}"
    );
    // One call's deadline (60 s); the calls after it fail at once.
    assert!(took < Duration::from_secs(120), "took {took:?}");
    assert!(api.requests() >= 1);
}

#[test]
fn agent_once_gives_up_on_an_api_server_that_answers_429_to_everything() {
    let api = FakeApi::start("prod-1", Behaviour::Answer(429));
    let (code, err, took) = once_against(&api.kubeconfig, Duration::from_secs(180));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: cluster 'prod-1'")
            && err.contains("the server is answering 429 to everything (HTTP 429; gave up after"),
        "{err}"
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
    // Retried with backoff, not hammered and not once.
    let n = api.requests();
    assert!((2..=20).contains(&n), "{n} requests");
}

#[test]
fn drift_is_still_corrected_after_the_watches_were_quiet_longer_than_the_read_timeout() {
    require_kubectl();
    // No bookmarks: nothing at all is sent on a watch while nothing changes (a real
    // API server sends a bookmark about once a minute, longer than the read timeout).
    let c = TestCluster::start_with(rollwave::sim::SimOptions {
        bookmark_interval: Duration::from_secs(3600),
        ..rollwave::sim::SimOptions::named("prod-1")
    });
    let repo = ScratchRepo::minimal_with(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/web/base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n",
        ),
    ]);
    let port = common::git::free_port();
    let child = spawn_drift_agent(&repo, &c, port, Some("rollwave::apply::drift=debug"));
    let pid = child.id() as i32;
    common::sim::eventually(Duration::from_secs(20), "the agent to be ready", || {
        http_get(port, "/readyz").0 == 200
    });
    // Longer than the client's read timeout (30 s): a watch that were simply left
    // open would have been cut as a dead connection by now.
    std::thread::sleep(rollwave::agent::daemon::READ_TIMEOUT + Duration::from_secs(5));
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "web",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ]);
    common::sim::eventually(
        Duration::from_secs(5),
        "the agent to revert the edit",
        || {
            c.kubectl_ok(&[
                "get",
                "configmap",
                "settings",
                "-n",
                "web",
                "-o",
                "jsonpath={.data.mode}",
            ]) == "fast"
        },
    );
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = common::sim::wait_output(child, Duration::from_secs(20));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // Each watch ended by the server's timeout and was renewed; none was cut.
    assert!(!log.contains("watch interrupted"), "{log}");
}
