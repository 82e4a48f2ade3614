//! The agent end to end, each agent a `rollwave agent --config` process, each cluster a
//! `rollwave sim` cluster, the repository served by a real `git daemon`:
//!
//! 1. commit-to-applied latency on one cluster: a commit in a local repository (file
//!    watch), a push announced by a signed webhook, and a push found by polling
//!    (interval 2 s), each measured until the new image is in the cluster;
//! 2. a 100-cluster fleet (10 test, 20 pre, 70 prod; canary then 1:2:7 batches per
//!    stage, zero bake, poll every 5 s) rolling out one release: time until every cluster reports it
//!    Healthy, total API calls to all clusters, peak memory of all agents.
//!
//! `cargo bench --bench agent`

#[path = "common/mod.rs"]
mod common;

use common::write;
#[path = "../tests/common/git.rs"]
mod git;
#[path = "../tests/common/webhook.rs"]
mod webhook;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLES: usize = 20;
const FLEET: [(&str, usize); 3] = [("test", 10), ("pre", 20), ("prod", 70)];

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: '{image}'}}]}}\n"
    )
}

/// A fleet with one app `web` on `clusters` (name, stage).
fn fleet(root: &Path, clusters: &[(String, &str)], canary: &str) {
    let stages: Vec<&str> = FLEET.iter().map(|(s, _)| *s).collect();
    write(
        root,
        "fleet.yaml",
        &format!(
            "stages: [{}]\nrollout:\n  canary: [{canary}]\n  batches: [1, 2, 7]\n  bake: 0s\n  progressDeadline: 5m\n",
            stages.join(", ")
        ),
    );
    for (name, stage) in clusters {
        write(
            root,
            &format!("clusters/{name}.yaml"),
            &format!("name: {name}\nstage: {stage}\n"),
        );
    }
    write(
        root,
        "apps/web/app.yaml",
        &format!(
            "namespace: web\ntargets:\n  stages: [{}]\n",
            stages.join(", ")
        ),
    );
    write(
        root,
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    );
    write(
        root,
        "apps/web/base/deployment.yaml",
        &deployment("nginx:1"),
    );
}

fn http(addr: &str, request: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(request.as_bytes());
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

fn http_get(addr: &str, path: &str) -> String {
    let r = http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn image(server: &str) -> String {
    let body = http_get(server, "/apis/apps/v1/namespaces/web/deployments/web");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `rollwave sim` for the clusters of the fleet at `repo`; its kubeconfig and each
/// cluster's server address.
fn start_sims(dir: &Path, repo: &Path) -> (Child, PathBuf, Vec<(String, String)>) {
    let kubeconfig = dir.join(format!(
        "{}.kubeconfig",
        repo.file_name().unwrap().to_string_lossy()
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["sim", "--ready-after", "200ms", "--fleet"])
        .arg(repo)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "the simulated clusters did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `- name: X` then `server: http://...` for each cluster, before the contexts.
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let mut servers = Vec::new();
    let mut name = None;
    for line in text.lines().take_while(|l| *l != "contexts:") {
        let l = line.trim();
        if let Some(n) = l.strip_prefix("- name: ") {
            name = Some(n.to_string());
        } else if let Some(s) = l.strip_prefix("server: http://")
            && let Some(n) = name.take()
        {
            servers.push((n, s.to_string()));
        }
    }
    (child, kubeconfig, servers)
}

fn start_agent(dir: &Path, name: &str, body: &str, env: &[(&str, &str)]) -> Child {
    let config = dir.join(format!("{name}.agent.yaml"));
    std::fs::write(&config, body).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rollwave"));
    c.args(["agent", "--config"])
        .arg(&config)
        .env_remove("ROLLWAVE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn stop(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// CPU seconds the whole machine spent busy so far (all cores).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: f64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Commits a new image `samples` times and measures until the cluster has it;
/// `announce` runs right after each commit (a push, a webhook).
fn latencies(
    work: &Path,
    server: &str,
    mut announce: impl FnMut(),
    samples: usize,
    tag: &str,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..samples {
        let want = format!("nginx:{tag}-{i}");
        write(work, "apps/web/base/deployment.yaml", &deployment(&want));
        git::git(work, &["commit", "-qam", &want]);
        let start = Instant::now();
        announce();
        let deadline = start + Duration::from_secs(60);
        while image(server) != want {
            assert!(Instant::now() < deadline, "{want} never applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        out.push(start.elapsed());
        // Let the pass finish (status written) before the next commit.
        std::thread::sleep(Duration::from_millis(300));
    }
    out.sort();
    out
}

fn report(what: &str, sorted: &[Duration]) {
    println!(
        "  {what:<34} p50 {:>6.0} ms   p90 {:>6.0} ms   max {:>6.0} ms",
        percentile(sorted, 0.5).as_secs_f64() * 1000.0,
        percentile(sorted, 0.9).as_secs_f64() * 1000.0,
        sorted.last().unwrap().as_secs_f64() * 1000.0
    );
}

fn latency_bench(dir: &Path) {
    let work = dir.join("latency");
    let clusters = vec![("bench".to_string(), "prod")];
    fleet(&work, &clusters, "bench");
    git::git(&work, &["init", "-q", "-b", "main"]);
    git::git(&work, &["add", "-A"]);
    git::git(&work, &["commit", "-qm", "initial"]);
    let served = dir.join("served-latency");
    std::fs::create_dir_all(&served).unwrap();
    git::publish(&work, &served, "fleet");
    let daemon = git::GitDaemon::start(&served);
    let (mut sims, kubeconfig, servers) = start_sims(dir, &work);
    let server = servers[0].1.clone();
    let port = git::free_port();
    let agent_yaml = |repo: &str, interval: &str, webhook: bool| {
        format!(
            "repo: {{url: '{repo}'}}\ninterval: {interval}\nheartbeat: 1h\nlisten: 127.0.0.1:{port}\n{}log: {{level: warn}}\nclusters:\n- name: bench\n  kubeconfig: {}\n  context: bench\n",
            if webhook {
                "webhook: {github: {env: BENCH_HOOK}}\n"
            } else {
                ""
            },
            kubeconfig.display()
        )
    };
    let cache = dir.join("cache-latency");
    let env = [
        ("BENCH_HOOK", "s3cret"),
        ("ROLLWAVE_CACHE", cache.to_str().unwrap()),
    ];
    let wait_ready = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_get(&format!("127.0.0.1:{port}"), "/readyz").starts_with("ready") {
            assert!(Instant::now() < deadline, "the agent did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        while image(&server).is_empty() {
            assert!(Instant::now() < deadline, "nothing applied");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    println!("commit-to-applied latency, one cluster, {SAMPLES} commits each:");

    // A local repository: the file watch sees the commit.
    let agent = start_agent(
        dir,
        "notify",
        &agent_yaml(work.to_str().unwrap(), "1h", false),
        &env,
    );
    wait_ready();
    let l = latencies(&work, &server, || {}, SAMPLES, "notify");
    report("local repository (file watch)", &l);
    stop(agent);

    // A remote repository: a push, then the webhook the Git host sends.
    let agent = start_agent(
        dir,
        "webhook",
        &agent_yaml(&daemon.url("fleet"), "1h", true),
        &env,
    );
    wait_ready();
    let body = r#"{"ref":"refs/heads/main"}"#;
    let hook = format!(
        "POST /hooks/git HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n{body}",
        webhook::github_signature("s3cret", body.as_bytes()),
        body.len()
    );
    let push = || {
        git::git(&work, &["push", "-q", "origin", "main"]);
    };
    let l = latencies(
        &work,
        &server,
        || {
            push();
            let answer = http(&format!("127.0.0.1:{port}"), &hook);
            assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        },
        SAMPLES,
        "webhook",
    );
    report("git push + webhook (from the push)", &l);
    stop(agent);

    // The same remote, found by polling every 2 s.
    let agent = start_agent(
        dir,
        "poll",
        &agent_yaml(&daemon.url("fleet"), "2s", false),
        &env,
    );
    wait_ready();
    let l = latencies(&work, &server, push, SAMPLES, "poll");
    report("git push + polling every 2 s", &l);
    stop(agent);
    let _ = sims.kill();
    let _ = sims.wait();
    drop(daemon);
}

fn fleet_bench(dir: &Path) {
    let work = dir.join("fleet100");
    let mut clusters = Vec::new();
    for (stage, n) in FLEET {
        for i in 1..=n {
            clusters.push((format!("{stage}-{i:02}"), stage));
        }
    }
    fleet(&work, &clusters, "test-01");
    git::git(&work, &["init", "-q", "-b", "main"]);
    git::git(&work, &["add", "-A"]);
    git::git(&work, &["commit", "-qm", "initial"]);
    let served = dir.join("served-fleet");
    std::fs::create_dir_all(&served).unwrap();
    let bare = git::publish(&work, &served, "fleet");
    let daemon = git::GitDaemon::start(&served);
    let (mut sims, kubeconfig, servers) = start_sims(dir, &work);
    let url = daemon.url("fleet");
    let cache = dir.join("cache-fleet");
    let mut agents = Vec::new();
    for (name, _) in &clusters {
        let body = format!(
            "repo: {{url: '{url}'}}\ninterval: 5s\nheartbeat: 60s\nlisten: 127.0.0.1:0\nlog: {{level: error}}\nclusters:\n- name: {name}\n  kubeconfig: {}\n  context: {name}\n",
            kubeconfig.display()
        );
        let env = [("ROLLWAVE_CACHE", cache.join(name))];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
        agents.push(start_agent(dir, name, &body, &env));
    }
    let statuses = || {
        let (s, _) = rollwave::status::refs::read_statuses(&git2::Repository::open(&bare).unwrap());
        s
    };
    let all_healthy_at = |release: &str| {
        let s = statuses();
        clusters.iter().all(|(c, _)| {
            s.get(c).and_then(|st| st.apps.get("web")).is_some_and(|a| {
                a.release == release && a.phase == rollwave::status::Phase::Healthy
            })
        })
    };
    let requests = || -> u64 {
        servers
            .iter()
            .map(|(_, s)| {
                let v: serde_json::Value =
                    serde_json::from_str(&http_get(s, "/sim/stats")).unwrap_or_default();
                v["requests"]
                    .as_object()
                    .map(|o| o.values().filter_map(|x| x.as_u64()).sum::<u64>())
                    .unwrap_or(0)
            })
            .sum()
    };
    let v1 = git::git(&work, &["rev-parse", "HEAD"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !all_healthy_at(&v1) {
        assert!(Instant::now() < deadline, "the fleet never settled on v1");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let before = requests();
    let agents_cpu = || {
        agents
            .iter()
            .map(|a| common::cpu_seconds(a.id()))
            .sum::<f64>()
    };
    let cpu_before = (
        agents_cpu(),
        common::cpu_seconds(sims.id()),
        machine_busy_seconds(),
    );
    write(
        &work,
        "apps/web/base/deployment.yaml",
        &deployment("nginx:2"),
    );
    git::git(&work, &["commit", "-qam", "web: nginx 2"]);
    let v2 = git::git(&work, &["rev-parse", "HEAD"]);
    let start = Instant::now();
    git::git(&work, &["push", "-q", "origin", "main"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !all_healthy_at(&v2) {
        assert!(Instant::now() < deadline, "the fleet never reached v2");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    let cpu = (
        agents_cpu() - cpu_before.0,
        common::cpu_seconds(sims.id()) - cpu_before.1,
        machine_busy_seconds() - cpu_before.2,
    );
    let calls = requests() - before;
    let peaks: Vec<u64> = agents
        .iter()
        .map(|a| common::proc_kib(a.id(), "VmHWM:"))
        .collect();
    let total: u64 = peaks.iter().sum();
    let max = peaks.iter().max().copied().unwrap_or(0);
    println!(
        "{}-cluster fleet (waves: canary, then 1:2:7 per stage; bake 0s, poll 5s), one release:",
        clusters.len()
    );
    println!(
        "  every cluster Healthy {:.1} s after the push; {calls} API calls in all ({:.1} per cluster)",
        took.as_secs_f64(),
        calls as f64 / clusters.len() as f64
    );
    println!(
        "  agents' peak RSS: {:.0} MiB in all, {:.1} MiB the largest",
        total as f64 / 1024.0,
        max as f64 / 1024.0
    );
    println!(
        "  CPU during the rollout: agents {:.0} s, simulated clusters {:.0} s, everything else (git daemon, pushes) {:.0} s, of {:.0} s available on {} cores",
        cpu.0,
        cpu.1,
        (cpu.2 - cpu.0 - cpu.1).max(0.0),
        took.as_secs_f64() * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Stop them all at once (each pushes a last status), then wait.
    for a in &agents {
        unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    }
    for mut a in agents {
        let _ = a.wait();
    }
    let _ = sims.kill();
    let _ = sims.wait();
    drop(daemon);
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    latency_bench(dir.path());
    fleet_bench(dir.path());
}
