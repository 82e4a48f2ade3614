//! The reconciler at fleet scale, shaped as Flux's published benchmark (each app a
//! Deployment, ServiceAccount, Service and Ingress), against one of two targets:
//!
//! - `sim` (the default), a `rollwave sim` process:
//!   1. cold apply of 1,000 apps by `rollwave agent --once`, then the time until every
//!      Deployment is available (the simulator makes workloads ready after 1 s);
//!   2. a long-running `rollwave agent` managing 1,250 apps (5,000 objects): API calls
//!      and CPU per steady-state resync, and its RSS.
//!
//!   The simulated API server is not a real one: figures compare the agent's own
//!   costs, not a cluster's.
//! - `real [APPS]`, the real control plane of the tests (`tests/k8s`: kube-apiserver,
//!   etcd, kube-controller-manager, a fake kubelet readying Pods after 2 s; Go is
//!   needed to build it the first time): first the anchor, `kubectl apply
//!   --server-side -R -f` of the same objects (in namespaces of their own), then a cold
//!   apply of APPS apps (default 1,000) by `rollwave agent --once` with the agent's peak
//!   RSS, each timed until every Deployment is Available as the real deployment
//!   controller reports it, with the requests per object by verb from the apiserver's
//!   own `apiserver_request_total`; then a second `--once` pass over the unchanged
//!   repository (the no-op pass), and a long-running agent on the same apps: API calls
//!   and CPU per steady-state resync, and its RSS.
//!
//! - `real-concurrency [APPS] [N,N,...]`: the cold apply of `real` alone (default 1,000
//!   apps), once per value of `--concurrency` (default 8,16,32,64), each on a control
//!   plane of its own: how the requests in flight change the time to Available, the
//!   measurement behind the default.
//!
//! - `real-rollout [APPS]`: the cold apply of `real` alone (default 1,000 apps) on a
//!   control plane of its own, with the repository in Git, so that the agent plans the
//!   release as a rollout (the planner, then the apply in batches, then its status
//!   written to the repository): the rollout path's cost against the plain one above;
//!   then a long-running agent on the same apps and repository, as `real` measures it
//!   on a plain directory (which the render cache does not serve).
//!
//! `cargo bench --bench reconcile` (the simulator), `cargo bench --bench reconcile --
//! steady` (its part 2 alone), `cargo bench --bench reconcile -- steady-git` (part 2
//! with the repository in Git, as the rollout-aware agent reads it; both measure 4
//! resyncs unless given a number: `-- steady-git 24` takes two minutes, so that each
//! run holds the same share of minute-long heartbeats), `cargo bench
//! --bench reconcile -- real` (1,000 apps on the real control plane: run it on an otherwise idle machine),
//! `cargo bench --bench reconcile -- real 20` (a quick check).

#[path = "common/mod.rs"]
mod common;

use common::write;
#[path = "../tests/common/k8s.rs"]
mod k8s;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COLD_APPS: usize = 1000;

/// A long-running `rollwave agent` on `repo` resyncing every `interval` seconds,
/// returned once its /readyz answers (within `ready_within`).
fn spawn_agent(
    repo: &Path,
    kubeconfig: &Path,
    interval: u64,
    ready_within: Duration,
) -> std::process::Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args([
            "agent",
            "--cluster",
            "bench",
            "--interval",
            &format!("{interval}s"),
            "--drift-interval",
            "1s",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--repo",
        ])
        .arg(repo)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + ready_within;
    while !http_get(&agent_addr, "/readyz").starts_with("ready") {
        assert!(Instant::now() < deadline, "the agent did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    agent
}
const STEADY_APPS: usize = 1250;

fn fleet(root: &Path, apps: usize) {
    write(
        root,
        "fleet.yaml",
        "stages: [prod]\nrollout:\n  batches: [1]\n",
    );
    write(root, "clusters/bench.yaml", "name: bench\nstage: prod\n");
    for i in 0..apps {
        let app = format!("app-{i:04}");
        let dir = format!("apps/{app}");
        write(
            root,
            &format!("{dir}/app.yaml"),
            &format!("namespace: {app}\ntargets:\n  stages: [prod]\n"),
        );
        write(
            root,
            &format!("{dir}/base/kustomization.yaml"),
            "resources:\n- all.yaml\n",
        );
        write(
            root,
            &format!("{dir}/base/all.yaml"),
            &app_objects(&app, ""),
        );
    }
}

/// The four objects of one app, with `metadata.namespace` when `namespace` is given
/// (the kubectl anchor; rollwave sets the app's namespace itself).
fn app_objects(app: &str, namespace: &str) -> String {
    let ns = if namespace.is_empty() {
        String::new()
    } else {
        format!(", namespace: {namespace}")
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}{ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      serviceAccountName: {app}\n      containers:\n      - name: main\n        image: ghcr.io/example/{app}:1.0.0\n        ports: [{{containerPort: 8080}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {app}{ns}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}{ns}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {app}{ns}}}\nspec:\n  rules:\n  - host: {app}.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: {app}, port: {{number: 80}}}}}}\n"
    )
}

/// The same apps as plain manifests for `kubectl apply --server-side -R -f`: each in
/// namespace `kubectl-<app>`, the Namespaces in a file that sorts first (kubectl
/// applies the files of a directory in name order).
fn kubectl_tree(root: &Path, apps: usize) {
    let namespaces: String = (0..apps)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: kubectl-app-{i:04}}}\n---\n"
            )
        })
        .collect();
    write(root, "0-namespaces.yaml", &namespaces);
    for i in 0..apps {
        let app = format!("app-{i:04}");
        write(
            root,
            &format!("apps/{app}.yaml"),
            &app_objects(&app, &format!("kubectl-{app}")),
        );
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

fn stats(server: &str) -> serde_json::Value {
    serde_json::from_str(&http_get(server, "/sim/stats")).unwrap_or_default()
}

fn start_sim(dir: &Path, name: &str) -> (std::process::Child, std::path::PathBuf, String) {
    let kubeconfig = dir.join(name);
    let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args([
            "sim",
            "--clusters",
            "1",
            "--ready-after",
            "1s",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let server = text
        .split("server: http://")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    (child, kubeconfig, server)
}

fn available_deployments(kubeconfig: &Path) -> usize {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args([
            "get",
            "deployments",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.status.availableReplicas}{\"\\n\"}{end}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "2")
        .count()
}

fn main() {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        None | Some("sim") => simulated(),
        Some("real") => {
            let apps = args.get(1).map_or(COLD_APPS, |n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("real [APPS]: {n:?} is not a number of apps"))
            });
            real(apps)
        }
        Some("real-concurrency") => {
            let apps = args.get(1).map_or(COLD_APPS, |n| {
                n.parse().unwrap_or_else(|_| {
                    panic!("real-concurrency [APPS] [N,...]: {n:?} is not a number of apps")
                })
            });
            let concurrencies: Vec<u16> = args.get(2).map_or(vec![8, 16, 32, 64], |list| {
                list.split(',')
                    .map(|n| {
                        n.parse().unwrap_or_else(|_| {
                            panic!("real-concurrency [APPS] [N,...]: {n:?} is not a number")
                        })
                    })
                    .collect()
            });
            real_concurrency(apps, &concurrencies)
        }
        Some("real-rollout") => {
            let apps = args.get(1).map_or(COLD_APPS, |n| {
                n.parse().unwrap_or_else(|_| {
                    panic!("real-rollout [APPS]: {n:?} is not a number of apps")
                })
            });
            real_rollout(apps)
        }
        Some(target @ ("steady" | "steady-git")) => {
            let resyncs = args.get(1).map_or(4, |n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("{target} [RESYNCS]: {n:?} is not a number"))
            });
            steady(target == "steady-git", resyncs)
        }
        Some(other) => panic!(
            "unknown target {other:?}: sim (the default), steady [RESYNCS], steady-git [RESYNCS], real [APPS], real-concurrency [APPS] [N,...] or real-rollout [APPS]"
        ),
    }
}

fn simulated() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    fleet(&repo, COLD_APPS);

    // 1. Cold apply.
    let (mut sim, kubeconfig, server) = start_sim(dir.path(), "cold.kubeconfig");
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["agent", "--once", "--cluster", "bench", "--repo"])
        .arg(&repo)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let applied = start.elapsed();
    assert!(status.success(), "cold apply failed");
    while available_deployments(&kubeconfig) < COLD_APPS {
        std::thread::sleep(Duration::from_millis(200));
    }
    let healthy = start.elapsed();
    let cold = stats(&server);
    println!(
        "cold apply of {COLD_APPS} apps ({} objects) by `rollwave agent --once`:",
        COLD_APPS * 4
    );
    println!(
        "  applied in {:.1} s, all Deployments available after {:.1} s",
        applied.as_secs_f64(),
        healthy.as_secs_f64()
    );
    println!("  API calls: {}", cold["requests"]);
    let _ = sim.kill();
    let _ = sim.wait();
    drop(dir);
    steady(false, 4);
}

/// Part 2 alone: a long-running agent on 1,250 apps, the repository a plain directory
/// or (`git`) a Git repository of one commit, which the agent reads in rollout mode.
fn steady(git: bool, resyncs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    fleet(&repo, STEADY_APPS);
    if git {
        commit_all(&repo);
    }
    let (mut sim, kubeconfig, server) = start_sim(dir.path(), "steady.kubeconfig");
    let interval = 5;
    let mut agent = spawn_agent(&repo, &kubeconfig, interval, Duration::from_secs(300));
    // Let workloads settle and a few resyncs pass before measuring.
    std::thread::sleep(Duration::from_secs(3 * interval));
    let pid = agent.id();
    let before = stats(&server);
    let cpu_before = common::cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(resyncs * interval));
    let after = stats(&server);
    let cpu_after = common::cpu_seconds(pid);
    let delta = |verb: &str| {
        after["requests"][verb].as_u64().unwrap_or(0)
            - before["requests"][verb].as_u64().unwrap_or(0)
    };
    println!(
        "long-running agent managing {STEADY_APPS} apps ({} objects), repository {}, resync every {interval} s:",
        after["objects"],
        if git { "in Git" } else { "a directory" }
    );
    println!(
        "  per resync: {} writes, {} lists, {} gets, {:.3} s CPU",
        (delta("create") + delta("update") + delta("patch") + delta("delete")) as f64
            / resyncs as f64,
        delta("list") as f64 / resyncs as f64,
        delta("get") as f64 / resyncs as f64,
        (cpu_after - cpu_before) / resyncs as f64
    );
    println!(
        "  agent RSS {:.1} MiB (peak {:.1} MiB); target: 0 writes and 0 lists per resync, RSS < 40 MiB",
        common::proc_kib(pid, "VmRSS:") as f64 / 1024.0,
        common::proc_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let _ = sim.kill();
    let _ = sim.wait();
}

/// Makes `repo` a Git repository of one commit holding everything in it.
fn commit_all(repo: &Path) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-qm",
            "fleet",
        ],
    ] {
        let ok = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?} failed");
    }
}

/// Runs `cmd` to its end; returns whether it succeeded and its peak RSS in KiB.
fn run_measured(cmd: &mut Command) -> (bool, u64) {
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps our own child, which `child` (dropped
    // without a wait) never waits for again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    drop(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_maxrss as u64)
}

/// The kinds the agent applies here (and its inventories): their calls are the agent's,
/// apart from the controllers' creations noted where printed.
const AGENT_RESOURCES: &[&str] = &[
    "namespaces",
    "configmaps",
    "serviceaccounts",
    "services",
    "apps:deployments",
    "networking.k8s.io:ingresses",
];

/// Calls between two `apiserver_request_total` readings by verb, for the agent's
/// resources (no subresources, which only controllers write) and discovery; and the
/// rest, summed.
fn calls_by_verb(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> (BTreeMap<String, u64>, u64) {
    let mut agent = BTreeMap::new();
    let mut others = 0;
    for (key, n) in after {
        let n = n - before.get(key).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let (verb, resource) = key.rsplit_once(' ').unwrap_or((key, ""));
        if resource.is_empty() {
            *agent.entry(format!("{verb} (discovery)")).or_insert(0) += n;
        } else if AGENT_RESOURCES.contains(&resource) {
            *agent.entry(verb.to_string()).or_insert(0) += n;
        } else {
            others += n;
        }
    }
    (agent, others)
}

fn print_calls(calls: &BTreeMap<String, u64>, per: f64) {
    let list: Vec<String> = calls
        .iter()
        .map(|(verb, n)| format!("{verb} {}", (*n as f64 / per).round()))
        .collect();
    println!(
        "    {}",
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    );
}

/// Deployments whose Available condition is True, in namespaces starting with `prefix`.
fn available_real(c: &k8s::RealCluster, prefix: &str) -> usize {
    let (_, out, _) = c.kubectl(&[
        "get",
        "deployments",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace} {.status.conditions[?(@.type==\"Available\")].status}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter(|l| l.starts_with(prefix) && l.ends_with(" True"))
        .count()
}

/// Waits until `apps` Deployments in namespaces starting with `prefix` are Available.
fn wait_available(c: &k8s::RealCluster, prefix: &str, apps: usize) {
    let deadline = Instant::now() + Duration::from_secs(60 * 60);
    while available_real(c, prefix) < apps {
        assert!(
            Instant::now() < deadline,
            "not every Deployment became Available within an hour"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The kinds of each app's own objects.
const APP_KINDS: &[&str] = &[
    "serviceaccounts",
    "services",
    "apps:deployments",
    "networking.k8s.io:ingresses",
];

/// Requests on the apps' own kinds between two readings, per object, by verb. The
/// controllers' POSTs (the `default` ServiceAccount of each namespace) are left out:
/// neither kubectl nor rollwave creates with POST.
fn per_object(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    objects: usize,
) -> String {
    let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
    for (key, n) in after {
        let n = n - before.get(key).copied().unwrap_or(0);
        let (verb, resource) = key.rsplit_once(' ').unwrap_or((key, ""));
        if n > 0 && APP_KINDS.contains(&resource) && !verb.ends_with("POST") {
            *by_verb.entry(verb.to_string()).or_insert(0) += n;
        }
    }
    let total: u64 = by_verb.values().sum();
    let list: Vec<String> = by_verb
        .iter()
        .map(|(verb, n)| format!("{verb} {:.2}", *n as f64 / objects as f64))
        .collect();
    format!(
        "{:.2} per object ({})",
        total as f64 / objects as f64,
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    )
}

/// What the controller manager creates in every new namespace (its `default`
/// ServiceAccount and `kube-root-ca.crt` ConfigMap): neither client creates with POST
/// on these kinds.
const CONTROLLER_POSTS: &[&str] = &["POST serviceaccounts", "POST configmaps"];

/// Every request between two readings on the kinds either client uses and discovery,
/// by verb and resource, and their sum, the controllers' creations left out.
fn all_calls(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> (String, u64) {
    let mut list = Vec::new();
    let mut total = 0;
    for (key, n) in after {
        let n = n - before.get(key).copied().unwrap_or(0);
        let (_, resource) = key.rsplit_once(' ').unwrap_or((key, ""));
        if n > 0
            && (resource.is_empty() || AGENT_RESOURCES.contains(&resource))
            && !CONTROLLER_POSTS.contains(&key.as_str())
        {
            list.push(format!("{key} {n}"));
            total += n;
        }
    }
    (list.join(", "), total)
}

/// The apiserver's own time answering requests (`apiserver_request_duration_seconds`
/// sum and count) on the apps' kinds, by verb ("dry-run VERB" for dry runs).
fn server_time(c: &k8s::RealCluster) -> ServerTime {
    let text = c.kubectl_ok(&["get", "--raw", "/metrics"]);
    let mut out = ServerTime::new();
    for line in text.lines() {
        let (sum, rest) =
            if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
                (true, r)
            } else if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
                (false, r)
            } else {
                continue;
            };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split("\",")
                .find_map(|p| p.strip_prefix(&format!("{k}=\"")))
                .unwrap_or("")
                .trim_end_matches('"')
                .to_string()
        };
        let resource = match label("group").as_str() {
            "" => label("resource"),
            g => format!("{g}:{}", label("resource")),
        };
        if !APP_KINDS.contains(&resource.as_str()) || !label("subresource").is_empty() {
            continue;
        }
        let mut verb = label("verb");
        if !label("dry_run").is_empty() {
            verb = format!("dry-run {verb}");
        }
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        let e = out.entry(verb).or_insert((0.0, 0));
        if sum {
            e.0 += v;
        } else {
            e.1 += v as u64;
        }
    }
    out
}

/// How long the apiserver took per request by verb between two [`server_time`]
/// readings (watches left out), and its time in all against the wall time: the requests' worth the server
/// had in hand on average (how much of the wait was the server's).
fn print_server_time(before: &ServerTime, after: &ServerTime, wall: Duration) {
    let mut list = Vec::new();
    let mut total = 0.0;
    for (verb, (sum, n)) in after {
        let (s0, n0) = before.get(verb).copied().unwrap_or((0.0, 0));
        let (ds, dn) = (sum - s0, n - n0);
        // A watch is held open for a minute by design: not time spent answering.
        if dn == 0 || verb.ends_with("WATCH") {
            continue;
        }
        total += ds;
        list.push(format!("{verb} {:.1} ms", ds * 1000.0 / dn as f64));
    }
    println!(
        "    apiserver time per request on the apps' kinds: {}; {:.1} s in all over {:.1} s of wall time ({:.1} requests in the server's hands on average)",
        list.join(", "),
        total,
        wall.as_secs_f64(),
        total / wall.as_secs_f64()
    );
}

fn rollwave_once(c: &k8s::RealCluster, repo: &Path) -> (bool, u64) {
    rollwave_once_with(c, repo, &[])
}

/// [`rollwave_once`] with more arguments for the agent.
fn rollwave_once_with(c: &k8s::RealCluster, repo: &Path, more: &[&str]) -> (bool, u64) {
    run_measured(
        Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args(["agent", "--once", "--cluster", "bench", "--repo"])
            .arg(repo)
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(more)
            .stdout(Stdio::null()),
    )
}

/// The apiserver's time answering and requests answered, by verb ([`server_time`]).
type ServerTime = BTreeMap<String, (f64, u64)>;

/// What [`cold_apply`] measured.
struct ColdApply {
    /// Until `agent --once` returned.
    applied: Duration,
    /// Until every Deployment was Available.
    available: Duration,
    /// The agent's peak RSS, KiB.
    peak_kib: u64,
    /// The apiserver's request counts before and after.
    requests: (BTreeMap<String, u64>, BTreeMap<String, u64>),
    /// The apiserver's time per verb before and after.
    server_time: (ServerTime, ServerTime),
}

/// A cold apply of `repo`'s `apps` apps by `rollwave agent --once` (with `more`
/// arguments), timed until it returns and until every Deployment is Available.
fn cold_apply(c: &k8s::RealCluster, repo: &Path, apps: usize, more: &[&str]) -> ColdApply {
    let before = c.requests();
    let timed = server_time(c);
    let start = Instant::now();
    let (ok, peak_kib) = rollwave_once_with(c, repo, more);
    let applied = start.elapsed();
    assert!(ok, "cold apply failed (logs in {})", c.dir().display());
    let after = c.requests();
    let timed_after = server_time(c);
    wait_available(c, "app-", apps);
    ColdApply {
        applied,
        available: start.elapsed(),
        peak_kib,
        requests: (before, after),
        server_time: (timed, timed_after),
    }
}

/// The cold apply of `apps` apps at each of `concurrencies`, each on a new control
/// plane: applied, Available, requests a second and the server's time per request.
fn real_concurrency(apps: usize, concurrencies: &[u16]) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    fleet(&repo, apps);
    let objects = apps * 4;
    println!("real control plane: cold apply of {apps} apps ({objects} objects) by --concurrency");
    for &n in concurrencies {
        let c = settled_control_plane();
        let load = load_average();
        let cold = cold_apply(&c, &repo, apps, &["--concurrency", &n.to_string()]);
        let (_, total) = all_calls(&cold.requests.0, &cold.requests.1);
        println!(
            "  --concurrency {n}: applied in {:.1} s, every Deployment Available after {:.1} s; {:.0} requests a second; agent peak RSS {:.1} MiB; load average before: {}",
            cold.applied.as_secs_f64(),
            cold.available.as_secs_f64(),
            total as f64 / cold.applied.as_secs_f64(),
            cold.peak_kib as f64 / 1024.0,
            load
        );
        print_server_time(&cold.server_time.0, &cold.server_time.1, cold.applied);
    }
}

/// A new real control plane, once its own components have settled.
fn settled_control_plane() -> k8s::RealCluster {
    let c = k8s::RealCluster::start();
    c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));
    c
}

/// The load average now, as `/proc/loadavg` gives it.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.trim().to_string()
}

/// What a cold apply cost the apiserver: requests per object on the apps' kinds, the
/// server's time per request, and every request on the kinds used.
fn print_requests(
    requests: (&BTreeMap<String, u64>, &BTreeMap<String, u64>),
    timed: (&ServerTime, &ServerTime),
    wall: Duration,
    objects: usize,
) {
    let (before, after) = requests;
    println!(
        "    requests on the apps' kinds: {}",
        per_object(before, after, objects)
    );
    print_server_time(timed.0, timed.1, wall);
    let (list, total) = all_calls(before, after);
    println!(
        "    all requests on the kinds used and discovery, the controllers' creations left out \
         ({:.2} per object; GETs of namespaces, if any, are the apiserver's own admission \
         lookups in a namespace its cache has not seen yet): {list}",
        total as f64 / objects as f64
    );
}

/// The cold apply of `apps` apps from a Git repository (the rollout path) on a control
/// plane of its own.
fn real_rollout(apps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    fleet(&repo, apps);
    commit_all(&repo);
    let objects = apps * 4;
    let c = settled_control_plane();
    println!(
        "real control plane: cold apply of {apps} apps ({objects} objects) from a Git repository (the rollout path), load average before: {}",
        load_average()
    );
    let cold = cold_apply(&c, &repo, apps, &[]);
    println!(
        "  rollwave agent --once: applied in {:.1} s (agent peak RSS {:.1} MiB), every Deployment Available after {:.1} s",
        cold.applied.as_secs_f64(),
        cold.peak_kib as f64 / 1024.0,
        cold.available.as_secs_f64()
    );
    let (before, after) = &cold.requests;
    let timed = (&cold.server_time.0, &cold.server_time.1);
    print_requests((before, after), timed, cold.applied, objects);
    steady_on(&c, &repo, apps, "in Git, as the rollout reads it");
}

fn real(apps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    fleet(&repo, apps);
    let plain = dir.path().join("kubectl");
    kubectl_tree(&plain, apps);
    let objects = apps * 4;
    let c = settled_control_plane();
    println!(
        "real control plane: cold apply of {apps} apps ({objects} objects, each app in a namespace of its own), load average before: {}",
        load_average()
    );

    // 1. The anchor: kubectl, first, so that rollwave applies into the fuller cluster.
    let before = c.requests();
    let timed = server_time(&c);
    let start = Instant::now();
    let out = c
        .kubectl_cmd(&["apply", "--server-side", "-R", "-f"])
        .arg(&plain)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubectl_applied = start.elapsed();
    let after = c.requests();
    let timed_after = server_time(&c);
    wait_available(&c, "kubectl-", apps);
    let kubectl_available = start.elapsed();
    println!(
        "  kubectl apply --server-side -R -f: applied in {:.1} s, every Deployment Available after {:.1} s",
        kubectl_applied.as_secs_f64(),
        kubectl_available.as_secs_f64()
    );
    print_requests(
        (&before, &after),
        (&timed, &timed_after),
        kubectl_applied,
        objects,
    );

    // 2. rollwave's cold apply.
    c.wait_settled(Duration::from_secs(3), Duration::from_secs(30 * 60));
    let ColdApply {
        applied,
        available,
        peak_kib,
        requests: (before, after),
        server_time: (timed, timed_after),
    } = cold_apply(&c, &repo, apps, &[]);
    println!(
        "  rollwave agent --once: applied in {:.1} s (agent peak RSS {:.1} MiB), every Deployment Available after {:.1} s: {:.2}x kubectl's time to Available",
        applied.as_secs_f64(),
        peak_kib as f64 / 1024.0,
        available.as_secs_f64(),
        available.as_secs_f64() / kubectl_available.as_secs_f64()
    );
    print_requests((&before, &after), (&timed, &timed_after), applied, objects);

    // 3. A second pass over the unchanged repository.
    c.wait_settled(Duration::from_secs(5), Duration::from_secs(30 * 60));
    let before = c.requests();
    let start = Instant::now();
    let (ok, _) = rollwave_once(&c, &repo);
    let took = start.elapsed();
    assert!(ok, "no-op pass failed (logs in {})", c.dir().display());
    let after = c.requests();
    let (list, total) = all_calls(&before, &after);
    println!(
        "  rollwave agent --once again, nothing changed: {:.1} s; requests on the apps' kinds: {}; all ({total}): {list}",
        took.as_secs_f64(),
        per_object(&before, &after, objects)
    );

    // 4. Steady state on the same apps.
    steady_on(&c, &repo, apps, "a plain directory, rendered at every pass");
}

/// A long-running agent on `repo`'s `apps` apps, applied already: CPU and API calls
/// per resync once a few resyncs have passed, and its RSS. `repo` says which.
fn steady_on(c: &k8s::RealCluster, repo: &Path, apps: usize, repo_is: &str) {
    c.wait_settled(Duration::from_secs(5), Duration::from_secs(30 * 60));
    let interval = 10;
    let mut agent = spawn_agent(repo, c.kubeconfig(), interval, Duration::from_secs(600));
    std::thread::sleep(Duration::from_secs(3 * interval));
    let pid = agent.id();
    let before = c.requests();
    let cpu_before = common::cpu_seconds(pid);
    let resyncs = 4;
    std::thread::sleep(Duration::from_secs(resyncs * interval));
    let after = c.requests();
    let cpu_after = common::cpu_seconds(pid);
    let (calls, others) = calls_by_verb(&before, &after);
    println!(
        "  long-running agent on those {apps} apps ({repo_is}), resync every {interval} s: per resync {:.3} s CPU; API calls by verb (WATCHes are renewed every 25 s):",
        (cpu_after - cpu_before) / resyncs as f64
    );
    print_calls(&calls, resyncs as f64);
    println!(
        "    other calls per resync (controllers, leases, the fake kubelet): {:.0}",
        others as f64 / resyncs as f64
    );
    println!(
        "  agent RSS {:.1} MiB (peak {:.1} MiB)",
        common::proc_kib(pid, "VmRSS:") as f64 / 1024.0,
        common::proc_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = agent.wait();
}
