//! The `rollwave agent` process with an agent.yaml: config errors at start-up, several
//! clusters in one process, a push webhook and a file watch waking it, JSON logs, and a
//! final status pushed on SIGTERM.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::git::{
    GitDaemon, commit_files, free_port, git, publish, signed_commit, ssh_keygen, work_repo,
};
use common::sim::{TestCluster, eventually, require_kubectl};
use common::webhook::{github_signature, post_hook};

const FILES: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1]\n  bake: 0s\n  progressDeadline: 30s\n",
    ),
    ("clusters/test-1.yaml", "name: test-1\nstage: test\n"),
    ("clusters/prod-1.yaml", "name: prod-1\nstage: prod\n"),
    (
        "apps/web/app.yaml",
        "namespace: web\ntargets:\n  stages: [test, prod]\n",
    ),
    (
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    ),
    (
        "apps/web/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'nginx:1'}]}\n",
    ),
];

fn deployment_with(image: &str) -> String {
    FILES[5].1.replace("nginx:1", image)
}

/// A running agent process, killed on drop.
struct AgentProcess {
    child: Option<Child>,
    stderr: std::path::PathBuf,
}

impl AgentProcess {
    fn start(config: &Path, dir: &Path, env: &[(&str, &str)]) -> AgentProcess {
        let stderr = dir.join("agent.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollwave"));
        cmd.args(["agent", "--config"])
            .arg(config)
            .env_remove("ROLLWAVE_LOG")
            .env("ROLLWAVE_CACHE", dir.join("cache"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        AgentProcess {
            child: Some(cmd.spawn().unwrap()),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit code within `limit`.
    fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent did not stop within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn image(c: &TestCluster) -> String {
    c.kubectl(&[
        "get",
        "deployment",
        "web",
        "-n",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
    .1
}

/// Waits until both clusters' pushed statuses show `web` Healthy at `release`.
fn healthy_everywhere(bare: &Path, release: &str) {
    eventually(Duration::from_secs(30), "Healthy statuses pushed", || {
        ["test-1", "prod-1"].iter().all(|cluster| {
            let out = common::git::git_cmd(bare)
                .args([
                    "show",
                    &format!("refs/rollwave/status/{cluster}:status.json"),
                ])
                .output()
                .unwrap();
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let web = &status["apps"]["web"];
            web["release"] == release && web["phase"] == "Healthy"
        })
    });
}

#[test]
fn config_mistakes_stop_the_agent_at_start_up_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "repo: {url: /srv/fleet}\nclusters:\n  - name: a\n  - name: a\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let (code, _, err) = common::run_cli(&["agent", "--config", path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{path}:4: field 'clusters[1].name': cluster 'a' is listed twice"
        )),
        "{err}"
    );
    std::fs::write(
        &config,
        "repo: {url: /srv/fleet}\nintervall: 5s\nclusters: [{name: a}]\n",
    )
    .unwrap();
    let (code, _, err) = common::run_cli(&["agent", "--config", path]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{path}:2")), "{err}");
    assert!(err.contains("unknown field 'intervall'"), "{err}");
    let (code, _, err) = common::run_cli(&["agent", "--config", "/nonexistent/agent.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/agent.yaml: cannot read the agent config"),
        "{err}"
    );
    let (code, _, err) = common::run_cli(&["agent", "--once"]);
    assert_eq!(code, 1);
    assert!(err.contains("give --config agent.yaml"), "{err}");
}

#[test]
fn one_agent_rolls_out_to_its_clusters_when_a_webhook_arrives_and_pushes_a_last_status_on_sigterm()
{
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let release_1 = work_repo(&work, FILES);
    let bare = publish(&work, &served, "fleet");
    let daemon = GitDaemon::start(&served);
    let test = TestCluster::start("test-1");
    let prod = TestCluster::start("prod-1");
    let port = free_port();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  branch: main\ninterval: 1h\nheartbeat: 1h\nlisten: 127.0.0.1:{port}\nwebhook:\n  github: {{env: TEST_HOOK_SECRET}}\nlog: {{format: json}}\nclusters:\n  - name: test-1\n    kubeconfig: {}\n  - name: prod-1\n    kubeconfig: {}\n",
            daemon.url("fleet"),
            test.kubeconfig.display(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::start(&config, dir.path(), &[("TEST_HOOK_SECRET", "s3cret")]);

    // Both clusters, canary first, from one process (the Deployment's progress wakes it).
    eventually(Duration::from_secs(60), "nginx:1 on both clusters", || {
        image(&test) == "nginx:1" && image(&prod) == "nginx:1"
    });

    // Once the Deployments are available nothing changes any more, and nothing but
    // the webhook wakes the agent within the hour.
    healthy_everywhere(&bare, &release_1);
    std::thread::sleep(Duration::from_secs(2));
    let release_2 = commit_files(
        &work,
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web 2",
    );
    git(&work, &["push", "-q", "origin", "main"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(image(&test), "nginx:1", "{}", agent.log());

    let body = r#"{"ref":"refs/heads/main"}"#.as_bytes();
    assert_eq!(
        post_hook(port, &[], body),
        401,
        "unsigned hooks are refused"
    );
    assert_eq!(
        post_hook(
            port,
            &[("X-Hub-Signature-256", github_signature("wrong", body))],
            body
        ),
        401
    );
    assert_eq!(image(&test), "nginx:1");
    assert_eq!(
        post_hook(
            port,
            &[("X-Hub-Signature-256", github_signature("s3cret", body))],
            body
        ),
        202
    );
    eventually(Duration::from_secs(30), "nginx:2 on both clusters", || {
        image(&test) == "nginx:2" && image(&prod) == "nginx:2"
    });

    let status_commit = |cluster: &str| {
        git(
            &bare,
            &["rev-parse", &format!("refs/rollwave/status/{cluster}")],
        )
    };
    healthy_everywhere(&bare, &release_2);
    let before = (status_commit("test-1"), status_commit("prod-1"));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
    let after = (status_commit("test-1"), status_commit("prod-1"));
    assert_ne!(before.0, after.0, "a final status for test-1 was pushed");
    assert_ne!(before.1, after.1, "a final status for prod-1 was pushed");

    let log = agent.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let has = |message: &str| events.iter().any(|e| e["message"] == message);
    assert!(has("agent started"), "{log}");
    assert!(has("applied"), "{log}");
    assert!(has("final status written"), "{log}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "applied" && e["cluster"] == "prod-1"),
        "{log}"
    );
}

#[test]
fn a_commit_in_a_local_repository_is_applied_without_waiting_for_the_poll() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let mut files = FILES.to_vec();
    files[0].1 = "stages: [prod]\nrollout:\n  batches: [1]\n  bake: 0s\n";
    files.remove(1);
    files[2].1 = "namespace: web\ntargets:\n  stages: [prod]\n";
    work_repo(&work, &files);
    let prod = TestCluster::start("prod-1");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "repo: {{url: {}}}\ninterval: 1h\nlisten: 127.0.0.1:{}\nclusters:\n  - name: prod-1\n    kubeconfig: {}\n",
            work.display(),
            free_port(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let agent = AgentProcess::start(&config, dir.path(), &[]);
    eventually(Duration::from_secs(30), "nginx:1", || {
        image(&prod) == "nginx:1"
    });
    commit_files(
        &work,
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web 2",
    );
    eventually(Duration::from_secs(15), "nginx:2 after the commit", || {
        image(&prod) == "nginx:2"
    });
    drop(agent);
}

#[test]
fn with_signature_checks_an_unsigned_tip_is_not_applied() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    let (key, public) = ssh_keygen(dir.path(), "signing");
    let mut files = FILES.to_vec();
    files[0].1 = "stages: [prod]\nrollout:\n  batches: [1]\n  bake: 0s\n";
    files.remove(1);
    files[2].1 = "namespace: web\ntargets:\n  stages: [prod]\n";
    signed_commit(&work, &key, &files, "signed v1");
    commit_files(
        &work,
        &[(
            "apps/web/base/deployment.yaml",
            &deployment_with("nginx:unsigned"),
        )],
        "unsigned",
    );
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("test@example.com {public}\n")).unwrap();
    let prod = TestCluster::start("prod-1");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  verify: {{allowedSigners: {}}}\nclusters:\n  - name: prod-1\n    kubeconfig: {}\n",
            work.display(),
            allowed.display(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let once = || common::run_cli(&["agent", "--once", "--config", config.to_str().unwrap()]);
    let (code, out, err) = once();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        image(&prod),
        "nginx:1",
        "the signed commit, not the unsigned tip"
    );
    signed_commit(
        &work,
        &key,
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:3"))],
        "signed v3",
    );
    let (code, out, err) = once();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(image(&prod), "nginx:3");
}
