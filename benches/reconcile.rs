//! The reconciler at fleet scale, shaped as Flux's published benchmark (each app a
//! Deployment, ServiceAccount, Service and Ingress), against a `rollwave sim` process:
//!
//! 1. cold apply of 1,000 apps by `rollwave agent --once`, then the time until every
//!    Deployment is available (the simulator makes workloads ready after 1 s);
//! 2. a long-running `rollwave agent` managing 1,250 apps (5,000 objects): API calls
//!    and CPU per steady-state resync, and its RSS.
//!
//! The simulated API server is not a real one: figures compare the agent's own costs,
//! not a cluster's.
//!
//! `cargo bench --bench reconcile`

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COLD_APPS: usize = 1000;
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let interval = 5;
    let mut agent = Command::new(env!("CARGO_BIN_EXE_rollwave"))
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
        .arg(&repo)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !http_get(&agent_addr, "/readyz").starts_with("ready") {
        assert!(Instant::now() < deadline, "the agent did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
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
