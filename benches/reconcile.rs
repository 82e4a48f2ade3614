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
//!   needed to build it the first time): cold apply of APPS apps (default 1,000) by
//!   `rollwave agent --once` with the agent's peak RSS, the time until every Deployment
//!   is Available as the real deployment controller reports it, the API calls by verb
//!   from the apiserver's own `apiserver_request_total`, then a long-running agent on
//!   the same apps: API calls and CPU per steady-state resync, and its RSS.
//!
//! `cargo bench --bench reconcile` (the simulator), `cargo bench --bench reconcile --
//! real` (1,000 apps on the real control plane: run it on an otherwise idle machine),
//! `cargo bench --bench reconcile -- real 20` (a quick check).

#[path = "common/mod.rs"]
mod common;
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

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

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
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      serviceAccountName: {app}\n      containers:\n      - name: main\n        image: ghcr.io/example/{app}:1.0.0\n        ports: [{{containerPort: 8080}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {app}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {app}}}\nspec:\n  rules:\n  - host: {app}.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: {app}, port: {{number: 80}}}}}}\n"
            ),
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
        Some(other) => panic!("unknown target {other:?}: sim (the default) or real [APPS]"),
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

    // 2. Steady state with 5,000 managed objects.
    fleet(&repo, STEADY_APPS);
    let (mut sim, kubeconfig, server) = start_sim(dir.path(), "steady.kubeconfig");
    let interval = 5;
    let mut agent = spawn_agent(&repo, &kubeconfig, interval, Duration::from_secs(300));
    // Let workloads settle and a few resyncs pass before measuring.
    std::thread::sleep(Duration::from_secs(3 * interval));
    let pid = agent.id();
    let before = stats(&server);
    let cpu_before = common::cpu_seconds(pid);
    let resyncs = 4;
    std::thread::sleep(Duration::from_secs(resyncs * interval));
    let after = stats(&server);
    let cpu_after = common::cpu_seconds(pid);
    let delta = |verb: &str| {
        after["requests"][verb].as_u64().unwrap_or(0)
            - before["requests"][verb].as_u64().unwrap_or(0)
    };
    println!(
        "long-running agent managing {STEADY_APPS} apps ({} objects), resync every {interval} s:",
        after["objects"]
    );
    println!(
        "  per resync: {} writes, {} lists, {} gets, {:.2} s CPU",
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

/// Deployments whose Available condition is True.
fn available_real(c: &k8s::RealCluster) -> usize {
    let (_, out, _) = c.kubectl(&[
        "get",
        "deployments",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Available\")].status}{\"\\n\"}{end}",
    ]);
    out.lines().filter(|l| *l == "True").count()
}

fn real(apps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    fleet(&repo, apps);
    let c = k8s::RealCluster::start();
    c.wait_settled(Duration::from_secs(3), Duration::from_secs(120));

    // 1. Cold apply.
    let before = c.requests();
    let start = Instant::now();
    let (ok, peak_kib) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args(["agent", "--once", "--cluster", "bench", "--repo"])
            .arg(&repo)
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .stdout(Stdio::null()),
    );
    let applied = start.elapsed();
    assert!(ok, "cold apply failed (logs in {})", c.dir().display());
    let after = c.requests();
    let deadline = Instant::now() + Duration::from_secs(60 * 60);
    while available_real(&c) < apps {
        assert!(
            Instant::now() < deadline,
            "not every Deployment became Available within an hour"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let available = start.elapsed();
    println!(
        "real control plane: cold apply of {apps} apps ({} objects) by `rollwave agent --once`:",
        apps * 4
    );
    println!(
        "  applied in {:.1} s (agent peak RSS {:.1} MiB), every Deployment Available after {:.1} s",
        applied.as_secs_f64(),
        peak_kib as f64 / 1024.0,
        available.as_secs_f64()
    );
    let (calls, others) = calls_by_verb(&before, &after);
    println!(
        "  API calls during the pass, by verb (apiserver_request_total on namespaces, configmaps, \
         serviceaccounts, services, deployments and ingresses; the POSTs are the controllers' \
         default ServiceAccount and kube-root-ca.crt ConfigMap of each namespace):"
    );
    print_calls(&calls, 1.0);
    println!("  other calls meanwhile (controllers: ReplicaSets, Pods, status): {others}");

    // 2. Steady state on the same apps.
    c.wait_settled(Duration::from_secs(5), Duration::from_secs(30 * 60));
    let interval = 10;
    let mut agent = spawn_agent(&repo, c.kubeconfig(), interval, Duration::from_secs(600));
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
        "  long-running agent on those {apps} apps, resync every {interval} s: per resync {:.2} s CPU; API calls by verb (WATCHes are renewed every 25 s):",
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
