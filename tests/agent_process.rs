//! The `rollwave agent` process with an agent.yaml: config errors at start-up, several
//! clusters in one process, a push webhook and a file watch waking it, JSON logs, and a
//! final status pushed on SIGTERM.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fakeapi::{Behaviour, FakeApi};
use common::git::{
    GitDaemon, commit_files, free_port, git, publish, signed_commit, ssh_keygen, work_repo,
};
use common::sim::{TestCluster, eventually, require_kubectl};
use common::webhook::{github_signature, http_get, post_hook, rss_kib};

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

/// How long a wait for an agent's work may last before the test is called hung: far
/// longer than the work takes on a loaded machine (about a second here), far shorter
/// than the hour-long poll interval the watch tests use.
const HANG_GUARD: Duration = Duration::from_secs(120);

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

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `check` holds, checking every 50 ms. Fails at once with the log
    /// when the agent has exited, and with the log after `limit` (a hang guard: the
    /// event waited for has no deadline of its own).
    fn eventually(&mut self, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if check() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the agent exited ({status}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; the agent's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
    // The Git server's own record of each push it received: the refs it updated (the
    // agent's status pushes, and this test's pushes of the branch).
    let pushes = dir.path().join("pushes.log");
    let hook = bare.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nrefs=\nwhile read old new ref; do refs=\"$refs $ref\"; done\necho \"$refs\" >> '{}'\n",
            pushes.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pushed = || -> Vec<String> {
        std::fs::read_to_string(&pushes)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("refs/rollwave/status/"))
            .map(str::to_string)
            .collect()
    };
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
    // One push per pass carries both clusters' statuses: the first (both clusters'
    // first status) holds both refs, and the agent counts its pushes as the server does.
    let both = |line: &str| {
        line.contains("refs/rollwave/status/test-1") && line.contains("refs/rollwave/status/prod-1")
    };
    let so_far = pushed();
    assert!(both(&so_far[0]), "pushes: {so_far:?}");
    let counted = |op: &str| -> usize {
        let metrics = http_get(port, "/metrics").1;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("rollwave_git_operations_total{{op=\"{op}\"}} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {op} count in:\n{metrics}"))
    };
    eventually(
        Duration::from_secs(10),
        "the agent's push count agrees with the server's",
        || counted("push") == pushed().len(),
    );
    assert!(counted("fetch") >= 2);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
    let after = (status_commit("test-1"), status_commit("prod-1"));
    assert_ne!(before.0, after.0, "a final status for test-1 was pushed");
    assert_ne!(before.1, after.1, "a final status for prod-1 was pushed");
    let all = pushed();
    assert!(
        both(all.last().unwrap()),
        "the final statuses go out in one push: {all:?}"
    );

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

/// A Git server that is down (or answers 429 to a fleet polling too often) is asked
/// less and less often, not every poll: the fetches the agent counts during an outage
/// grow with its log, and the agent picks the next commit up once the server is back.
#[test]
fn polls_back_off_while_the_git_server_fails_and_resume_when_it_is_back() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let release_1 = work_repo(&work, FILES);
    let bare = publish(&work, &served, "fleet");
    let daemon = GitDaemon::start(&served);
    let git_port = daemon.port;
    let test = TestCluster::start("test-1");
    let prod = TestCluster::start("prod-1");
    let port = free_port();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  branch: main\ninterval: 1s\nheartbeat: 1h\nlisten: 127.0.0.1:{port}\nclusters:\n  - name: test-1\n    kubeconfig: {}\n  - name: prod-1\n    kubeconfig: {}\n",
            daemon.url("fleet"),
            test.kubeconfig.display(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::start(&config, dir.path(), &[]);
    healthy_everywhere(&bare, &release_1);
    let fetches = || -> u64 {
        let metrics = http_get(port, "/metrics").1;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("rollwave_git_operations_total{op=\"fetch\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no fetch count in:\n{metrics}"))
    };

    drop(daemon);
    let before = fetches();
    std::thread::sleep(Duration::from_secs(12));
    let during = fetches() - before;
    // Every second would be about 12 fetches; doubling waits from 2 s make 3 or 4.
    assert!(
        (1..=5).contains(&during),
        "{during} fetches in 12 s of outage\n{}",
        agent.log()
    );
    assert_eq!(image(&test), "nginx:1", "the clusters keep running");

    let _daemon = GitDaemon::start_on(&served, git_port);
    let release_2 = commit_files(
        &work,
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web 2",
    );
    git(&work, &["push", "-q", "origin", "main"]);
    eventually(Duration::from_secs(60), "nginx:2 on both clusters", || {
        image(&test) == "nginx:2" && image(&prod) == "nginx:2"
    });
    healthy_everywhere(&bare, &release_2);
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
}

/// A commit in a local repository is applied through the file watch of its refs. The
/// poll interval is an hour (at least 54 minutes with its jitter), so within the
/// waits below nothing but the watch can start the pass that applies the commit; the
/// waits are hang guards, not timing assumptions, and an agent that exits (a config
/// it refuses, an address it cannot bind) fails the test at once with its log.
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
    // Port 0: the kernel picks a free port when the agent binds (a port picked here
    // could be taken by another process before the agent starts).
    std::fs::write(
        &config,
        format!(
            "repo: {{url: {}}}\ninterval: 1h\nlisten: 127.0.0.1:0\nclusters:\n  - name: prod-1\n    kubeconfig: {}\n",
            work.display(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::start(&config, dir.path(), &[]);
    agent.eventually(HANG_GUARD, "nginx:1 from the first pass", || {
        image(&prod) == "nginx:1"
    });
    commit_files(
        &work,
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web 2",
    );
    agent.eventually(HANG_GUARD, "nginx:2 after the commit", || {
        image(&prod) == "nginx:2"
    });
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
}

/// A wave whose gate opens when an earlier wave's bake ends moves then, not at the
/// next poll: the poll interval is an hour, the canary's bake 2 s, and nothing else
/// changes after the canary turns Healthy, so only a pass timed to the bake's end can
/// bring prod the release within the hang guard.
#[test]
fn the_next_wave_moves_when_the_bake_ends_without_waiting_for_the_poll() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let mut files = FILES.to_vec();
    files[0].1 = "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1]\n  bake: 2s\n  progressDeadline: 30s\n";
    work_repo(&work, &files);
    let test = TestCluster::start("test-1");
    let prod = TestCluster::start("prod-1");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "repo: {{url: {}}}\ninterval: 1h\nheartbeat: 1h\nlisten: 127.0.0.1:0\nclusters:\n  - name: test-1\n    kubeconfig: {}\n  - name: prod-1\n    kubeconfig: {}\n",
            work.display(),
            test.kubeconfig.display(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::start(&config, dir.path(), &[]);
    agent.eventually(HANG_GUARD, "nginx:1 on both clusters", || {
        image(&test) == "nginx:1" && image(&prod) == "nginx:1"
    });
    commit_files(
        &work,
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web 2",
    );
    agent.eventually(HANG_GUARD, "nginx:2 on the canary", || {
        image(&test) == "nginx:2"
    });
    agent.eventually(
        HANG_GUARD,
        "nginx:2 on prod after the canary's bake",
        || image(&prod) == "nginx:2",
    );
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
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

/// A plain directory (applied as it is, polled every second) with `web` targeting the
/// clusters `names`, all in stage prod.
fn plain_fleet(dir: &Path, names: &[&str]) -> std::path::PathBuf {
    let repo = dir.join("fleet");
    let write = |path: &str, text: &str| {
        let full = repo.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    };
    write("fleet.yaml", "stages: [prod]\nrollout:\n  batches: [1]\n");
    for n in names {
        write(
            &format!("clusters/{n}.yaml"),
            &format!("name: {n}\nstage: prod\n"),
        );
    }
    write(
        "apps/web/app.yaml",
        "namespace: web\ntargets:\n  stages: [prod]\n",
    );
    write("apps/web/base/kustomization.yaml", FILES[4].1);
    write("apps/web/base/deployment.yaml", FILES[5].1);
    repo
}

#[test]
fn a_hung_cluster_neither_holds_back_the_other_nor_goes_unnoticed_by_healthz() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let repo = plain_fleet(dir.path(), &["hung-1", "prod-1"]);
    let hung = FakeApi::start("hung-1", Behaviour::Hang);
    let prod = TestCluster::start("prod-1");
    let port = free_port();
    let config = dir.path().join("agent.yaml");
    // The hung cluster comes first: passes in order would reach prod-1 only after
    // hung-1's calls gave up (60 s).
    std::fs::write(
        &config,
        format!(
            "repo: {{url: {}}}\ninterval: 1s\nstuckAfter: 3s\nlisten: 127.0.0.1:{port}\nclusters:\n  - name: hung-1\n    kubeconfig: {}\n  - name: prod-1\n    kubeconfig: {}\n",
            repo.display(),
            hung.kubeconfig.display(),
            prod.kubeconfig.display(),
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let agent = AgentProcess::start(&config, dir.path(), &[]);
    eventually(Duration::from_secs(20), "nginx:1 on prod-1", || {
        image(&prod) == "nginx:1"
    });
    std::fs::write(
        repo.join("apps/web/base/deployment.yaml"),
        deployment_with("nginx:2"),
    )
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "nginx:2 on prod-1 while hung-1 hangs",
        || image(&prod) == "nginx:2",
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "prod-1 waited for hung-1: {:?}\n{}",
        started.elapsed(),
        agent.log()
    );
    assert!(hung.requests() >= 1, "hung-1 was asked");

    // hung-1's pass has run longer than stuckAfter: the liveness probe fails, naming it.
    let mut last = (0, String::new());
    eventually(Duration::from_secs(20), "/healthz to fail", || {
        last = http_get(port, "/healthz");
        last.0 == 503
    });
    assert!(
        last.1.starts_with("cluster 'hung-1': pass running for ")
            && last.1.ends_with("s, longer than stuckAfter (3s)"),
        "{}",
        last.1
    );
    drop(agent);
}

/// An agent with a webhook secret whose cluster never answers (the listener is what
/// is tested); its port.
fn listening_agent(dir: &Path) -> (AgentProcess, u16, FakeApi) {
    let repo = plain_fleet(dir, &["prod-1"]);
    let api = FakeApi::start("prod-1", Behaviour::Hang);
    let config = dir.join("agent.yaml");
    // Port 0, read back from the log: a port picked beforehand could be taken by
    // another process before the agent binds it.
    std::fs::write(
        &config,
        format!(
            "repo: {{url: {}}}\ninterval: 1h\nlisten: 127.0.0.1:0\nwebhook:\n  github: {{env: TEST_HOOK_SECRET}}\nclusters:\n  - name: prod-1\n    kubeconfig: {}\n",
            repo.display(),
            api.kubeconfig.display(),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::start(&config, dir, &[("TEST_HOOK_SECRET", "s3cret")]);
    let mut port = 0;
    agent.eventually(HANG_GUARD, "the agent to start listening", || {
        port = listening_port(&std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default())
            .unwrap_or(0);
        port != 0
    });
    agent.eventually(HANG_GUARD, "/healthz to answer", || {
        http_get(port, "/healthz").0 == 200
    });
    (agent, port, api)
}

/// The port of the `agent started ... listen=127.0.0.1:PORT` line of an agent's log.
fn listening_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("agent started"))?;
    let rest = &line[line.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[test]
fn connections_that_never_finish_their_headers_are_closed() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (agent, port, _api) = listening_agent(dir.path());
    let started = std::time::Instant::now();
    let waits: Vec<_> = (0..150)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /hooks/git HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut buf = [0u8; 512];
                // Closed by the agent: end of stream, or a reset.
                let closed = match s.read(&mut buf) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                };
                (closed, started.elapsed())
            })
        })
        .collect();
    let ends: Vec<(bool, Duration)> = waits.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(ends.iter().all(|(closed, _)| *closed), "{ends:?}");
    // 64 slots: the 86 oldest are displaced by newer ones as soon as those arrive,
    // the 64 newest held until the 10 s header timeout closes them (not refused at
    // once, not held forever).
    let held = ends
        .iter()
        .filter(|e| e.1 >= Duration::from_secs(9))
        .count();
    assert!((64..=70).contains(&held), "{held} held: {ends:?}");
    let last = ends.iter().map(|e| e.1).max().unwrap();
    assert!(last < Duration::from_secs(45), "{last:?}");
    assert_eq!(http_get(port, "/healthz").0, 200, "{}", agent.log());
}

/// A slow connection to the agent's listener, as a flood holds them: a request line
/// that never ends, or a webhook request whose announced body never comes (its
/// signature header makes the agent wait for the body).
fn slow_connection(port: u16, body: bool) -> Option<std::net::TcpStream> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let start: &[u8] = if body {
        b"POST /hooks/git HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\nX-Hub-Signature-256: sha256=00\r\n\r\n"
    } else {
        b"POST /hooks/git HT"
    };
    s.write_all(start).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Whether the agent has closed `s` (end of stream, a reset, or an answer it sent
/// before closing).
fn closed_by_the_agent(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 256];
    !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// `GET path` answered within a second: its status code and how long it took, or why
/// not.
fn probe(port: u16, path: &str) -> Result<(u16, Duration), String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = std::time::Instant::now();
    let limit = Duration::from_secs(1);
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("read after {:?}: {e}", started.elapsed()))?;
    if started.elapsed() > limit {
        return Err(format!("answered after {:?}", started.elapsed()));
    }
    let code = String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", String::from_utf8_lossy(&resp)))?;
    Ok((code, started.elapsed()))
}

/// The kubelet's probes and Prometheus' scrape are answered within a second while 500
/// slow connections are held on the same listener (half of them never finishing their
/// headers, half never sending the webhook body they announced), and every connection
/// the agent closes is opened again at once, as a flood would.
#[test]
fn health_and_metrics_answer_within_a_second_while_500_slow_connections_are_held() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (agent, port, _api) = listening_agent(dir.path());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conns: Vec<(bool, Option<std::net::TcpStream>)> = (0..500)
                .map(|i| (i % 2 == 0, slow_connection(port, i % 2 == 0)))
                .collect();
            held_tx.send(()).unwrap();
            let mut reopened = 0u64;
            // Bounded: the test stops it after its probes; the count is a guard. At
            // most 100 reopened per round (2,000 a second), so the flood does not run
            // the machine out of ports for the other tests.
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut budget = 100;
                for (body, conn) in conns.iter_mut() {
                    let gone = match conn {
                        Some(s) => closed_by_the_agent(s),
                        None => true,
                    };
                    if gone && budget > 0 {
                        *conn = slow_connection(port, *body);
                        reopened += 1;
                        budget -= 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            reopened
        })
    };
    held_rx
        .recv_timeout(HANG_GUARD)
        .expect("the flood opened its connections");
    let mut failures = Vec::new();
    let mut probes = 0;
    let mut slowest = Duration::ZERO;
    // Every 100 ms for 5 s, as a kubelet probing far more often than it does.
    for round in 0..50 {
        let at = std::time::Instant::now();
        for (path, want) in [
            ("/healthz", Some(200)),
            ("/metrics", Some(200)),
            ("/readyz", None),
        ] {
            if path != "/healthz" && round % 5 != 0 {
                continue;
            }
            probes += 1;
            match probe(port, path) {
                Ok((code, took)) if want.is_none_or(|w| w == code) => slowest = slowest.max(took),
                Ok((code, _)) => failures.push(format!("round {round}: {path}: {code}")),
                Err(e) => failures.push(format!("round {round}: {path}: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(at.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    let reopened = flood.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {probes} probes failed (the flood reopened {reopened} connections):\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        agent.log()
    );
    eprintln!(
        "{probes} probes, the slowest answered in {slowest:?}; the flood reopened {reopened} connections"
    );
    drop(agent);
}

#[test]
fn a_burst_of_slow_uploads_is_held_to_the_buffer_limit_and_memory_returns() {
    use std::io::{Read, Write};
    static BODY: [u8; 1024 * 1024 - 1] = [b'x'; 1024 * 1024 - 1];
    let dir = tempfile::tempdir().unwrap();
    let (agent, port, _api) = listening_agent(dir.path());
    let pid = agent.pid();
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);
    let uploads: Vec<_> = (0..150)
        .map(|_| {
            std::thread::spawn(move || {
                let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    return 0;
                };
                s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                let head = "POST /hooks/git HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\nX-Hub-Signature-256: sha256=00\r\n\r\n";
                if s.write_all(head.as_bytes()).is_err() {
                    return 0;
                }
                // Refused at once, or held: then the body, one byte short.
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut resp = [0u8; 64];
                let n = match s.read(&mut resp) {
                    Ok(n) => n,
                    Err(_) => {
                        let _ = s.write_all(&BODY);
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        s.read(&mut resp).unwrap_or(0)
                    }
                };
                String::from_utf8_lossy(&resp[..n])
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut peak = idle;
    while uploads.iter().any(|u| !u.is_finished()) {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let codes: Vec<u16> = uploads.into_iter().map(|u| u.join().unwrap()).collect();
    let count = |c: u16| codes.iter().filter(|x| **x == c).count();
    assert_eq!(count(202), 0, "{codes:?}");
    // 8 MiB of bodies at most: 8 uploads held (then 408), the others refused.
    assert!(count(408) <= 8, "{codes:?}");
    assert!(count(503) >= 100, "{codes:?}");
    let grown = peak.saturating_sub(idle);
    assert!(grown < 48 * 1024, "idle {idle} KiB, peak {peak} KiB");
    let mut now = 0;
    eventually(Duration::from_secs(10), "memory back near idle", || {
        now = rss_kib(pid);
        now < idle + 16 * 1024
    });
    eprintln!("idle {idle} KiB, peak {peak} KiB, after {now} KiB; {codes:?}");
    assert_eq!(http_get(port, "/healthz").0, 200, "{}", agent.log());
}

#[test]
fn an_empty_webhook_secret_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "repo: {url: /srv/fleet}\nwebhook:\n  github: {env: TEST_HOOK_SECRET}\nclusters: [{name: a}]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["agent", "--config"])
        .arg(&config)
        .env("TEST_HOOK_SECRET", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "error: {}:3: field 'webhook.github': the secret is empty (environment variable TEST_HOOK_SECRET); set it to a long random value, e.g. `openssl rand -hex 32`",
            config.display()
        )
    );
}
