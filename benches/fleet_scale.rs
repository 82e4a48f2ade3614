//! A fleet at scale through one release: many simulated clusters, several clusters per
//! agent process, the status either in the fleet repository (`git`) or on a hub cluster
//! (`kubernetes`).
//!
//! ```text
//! cargo bench --bench fleet_scale -- [CLUSTERS] [PER_AGENT] [git|kubernetes|local] [STEADY_SECONDS] [BAKE]
//! ```
//! (defaults: 1000 clusters, 100 per agent, `git`, 120 s, bake `0s`). The fleet is 10 %
//! test, 20 % pre and 70 % prod; one app (a Deployment); canary, then 1:2:7 batches per
//! stage (10 waves). `local` is the Git store in a local repository: the agents read
//! the work repository by its path (a file watch wakes them on a commit) and write
//! their status refs into it, and the run counts the loose objects it gained. Agents poll every 30 s (±10 % jitter) and write a heartbeat
//! every 60 s, as a deployed agent would, without webhooks. The clusters are served by
//! `rollwave sim` processes (up to 250 clusters each, workloads ready 2 s after a
//! change), the fleet repository by a real `git daemon` whose own log (`--verbose`)
//! counts fetches (upload-pack) and pushes (receive-pack) at the server. In
//! `kubernetes` mode one more simulated cluster is the hub, and its request count is
//! the hub's load.
//!
//! The fleet first installs release 1 (timed too), then release 2 is pushed and timed
//! until every cluster reports it Healthy; then the fleet idles for STEADY_SECONDS to
//! measure the heartbeat-only load. Printed: time to the last cluster Healthy, Git
//! operations at the server per minute (average and the busiest 60 s) and the busiest
//! second of reads, per agent process and per cluster, the hub's requests per second,
//! agent CPU and peak RSS per cluster, the simulators' and the Git server's CPU apart.

#[path = "common/mod.rs"]
mod common;

use common::write;
#[path = "../tests/common/git.rs"]
mod git;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollwave::status::{ClusterStatus, Phase};

/// Stages and their share of the fleet, in per cent.
const STAGES: [(&str, usize); 3] = [("test", 10), ("pre", 20), ("prod", 70)];
/// Simulated clusters per `rollwave sim` process.
const SIMS_PER_PROCESS: usize = 250;
const POLL: &str = "30s";
const HEARTBEAT: &str = "60s";
const READY_AFTER: &str = "2s";
/// Longest a release may take to reach every cluster before the run fails.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(45 * 60);
/// The hub's namespace for statuses (DESIGN §5.1).
const STATUS_NAMESPACE: &str = "rollwave-status";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    Git,
    Kubernetes,
    /// The Git store, the fleet a local repository read by its path.
    Local,
}

struct Args {
    clusters: usize,
    per_agent: usize,
    store: Store,
    steady: Duration,
    bake: String,
}

fn parse_args() -> Args {
    // `cargo bench` passes `--bench`; everything else is ours.
    let free: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let number = |i: usize, default: usize, what: &str| -> usize {
        free.get(i).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{what} must be a number, got '{v}'"))
        })
    };
    let clusters = number(0, 1000, "the cluster count");
    let per_agent = number(1, 100, "the clusters per agent");
    let store = match free.get(2).map(String::as_str) {
        None | Some("git") => Store::Git,
        Some("kubernetes") => Store::Kubernetes,
        Some("local") => Store::Local,
        Some(other) => panic!("the store is 'git', 'kubernetes' or 'local', got '{other}'"),
    };
    let steady = Duration::from_secs(number(3, 120, "the steady-state seconds") as u64);
    assert!(clusters >= 10, "at least 10 clusters (one per stage share)");
    assert!(per_agent >= 1, "at least one cluster per agent");
    let bake = free.get(4).cloned().unwrap_or_else(|| "0s".into());
    Args {
        clusters,
        per_agent,
        store,
        steady,
        bake,
    }
}

/// Every process the benchmark started, killed when dropped (also on a panic), so a
/// failed run leaves nothing behind.
#[derive(Default)]
struct Processes(Vec<(String, Child)>);

impl Processes {
    fn add(&mut self, name: impl Into<String>, child: Child) -> u32 {
        let id = child.id();
        self.0.push((name.into(), child));
        id
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
        }
        for (_, c) in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: '{image}'}}]}}\n"
    )
}

/// The clusters (name, stage), test first, then pre, then prod.
fn cluster_names(total: usize) -> Vec<(String, &'static str)> {
    let test = total * STAGES[0].1 / 100;
    let pre = total * STAGES[1].1 / 100;
    let counts = [test, pre, total - test - pre];
    let mut out = Vec::new();
    for ((stage, _), n) in STAGES.iter().zip(counts) {
        for i in 1..=n {
            out.push((format!("{stage}-{i:04}"), *stage));
        }
    }
    out
}

/// The fleet repository's work tree: one app `web` on every stage.
fn write_fleet(root: &Path, clusters: &[(String, &str)], store: Store, bake: &str) {
    let stages: Vec<&str> = STAGES.iter().map(|(s, _)| *s).collect();
    let status = match store {
        Store::Git | Store::Local => "",
        Store::Kubernetes => "status:\n  store: kubernetes\n",
    };
    write(
        root,
        "fleet.yaml",
        &format!(
            "stages: [{}]\nrollout:\n  canary: [{}]\n  batches: [1, 2, 7]\n  bake: {bake}\n  progressDeadline: 10m\n{status}",
            stages.join(", "),
            clusters[0].0
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

/// The loose objects of the repository at `git_dir` (files under `objects/??/`).
fn loose_objects(git_dir: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(git_dir.join("objects")) else {
        return 0;
    };
    dirs.flatten()
        .filter(|d| d.file_name().len() == 2)
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .map(|files| files.count())
        .sum()
}

/// What the Git server did, from its own log: when each fetch (upload-pack) and push
/// (receive-pack) was requested.
#[derive(Default)]
struct GitLog {
    fetches: Vec<Instant>,
    pushes: Vec<Instant>,
    /// Lines that are neither a request nor routine (refused connections, errors).
    other: Vec<String>,
}

/// `git daemon --verbose` serving `base` with pushes on and no connection limit (a Git
/// host does not drop a client's connections because another is open); its log is
/// read as it is written.
fn start_git_daemon(base: &Path, procs: &mut Processes) -> (u16, u32, Arc<Mutex<GitLog>>) {
    let exec = Command::new("git").arg("--exec-path").output().unwrap();
    let daemon = PathBuf::from(String::from_utf8_lossy(&exec.stdout).trim()).join("git-daemon");
    let port = git::free_port();
    let mut child = Command::new(daemon)
        .args([
            "--verbose",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--max-connections=0",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
            &base.to_string_lossy(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git daemon starts");
    let stderr = child.stderr.take().unwrap();
    let pid = procs.add("git daemon", child);
    let log = Arc::new(Mutex::new(GitLog::default()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            let mut log = sink.lock().unwrap();
            if line.contains("Request upload-pack") {
                log.fetches.push(now);
            } else if line.contains("Request receive-pack") {
                log.pushes.push(now);
            } else if !(line.contains("Connection from")
                || line.contains("Extended attribute")
                || line.contains("Disconnected")
                || line.contains("Ready to rumble"))
                && log.other.len() < 20
            {
                log.other.push(line);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (port, pid, log)
}

/// A `rollwave sim` process of `n` clusters (contexts sim-1 ... sim-n of its
/// kubeconfig `name.kubeconfig`); the kubeconfig, each cluster's address and the pid.
fn start_sim(
    dir: &Path,
    name: &str,
    n: usize,
    procs: &mut Processes,
) -> (PathBuf, Vec<String>, u32) {
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["sim", "--ready-after", READY_AFTER, "--clusters"])
        .arg(n.to_string())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = procs.add(name, child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "simulated clusters of {name} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let servers = text
        .lines()
        .take_while(|l| *l != "contexts:")
        .filter_map(|l| l.trim().strip_prefix("server: http://"))
        .map(str::to_string)
        .collect();
    (kubeconfig, servers, pid)
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// API requests a simulated cluster has answered so far (every verb).
fn requests(server: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&http_get(server, "/sim/stats")).unwrap_or_default();
    v["requests"]
        .as_object()
        .map(|o| o.values().filter_map(|x| x.as_u64()).sum::<u64>())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process and of its children it has waited for (the
/// Git server's per-connection processes).
fn cpu_seconds_with_children(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
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

/// Where the statuses are read from.
enum StatusSource {
    /// The bare repository the Git server serves.
    Git(PathBuf),
    /// The hub's address: ConfigMaps in [`STATUS_NAMESPACE`].
    Hub(String),
}

impl StatusSource {
    fn read(&self) -> BTreeMap<String, ClusterStatus> {
        match self {
            StatusSource::Git(bare) => match git2::Repository::open(bare) {
                Ok(repo) => rollwave::status::refs::read_statuses(&repo).0,
                Err(_) => BTreeMap::new(),
            },
            StatusSource::Hub(server) => {
                let body = http_get(
                    server,
                    &format!("/api/v1/namespaces/{STATUS_NAMESPACE}/configmaps"),
                );
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let mut out = BTreeMap::new();
                for item in v["items"].as_array().into_iter().flatten() {
                    if let Ok(s) = rollwave::status::object::from_object(item) {
                        out.insert(s.cluster.clone(), s);
                    }
                }
                out
            }
        }
    }
}

/// How many of `clusters` report `release` Healthy, and the phases of the others.
fn healthy_at(
    statuses: &BTreeMap<String, ClusterStatus>,
    clusters: &[(String, &str)],
    release: &str,
) -> (usize, BTreeMap<String, usize>) {
    let mut healthy = 0;
    let mut others = BTreeMap::new();
    for (c, _) in clusters {
        match statuses.get(c).and_then(|s| s.apps.get("web")) {
            Some(a) if a.release == release && a.phase == Phase::Healthy => healthy += 1,
            Some(a) if a.release == release => {
                *others.entry(format!("{:?}", a.phase)).or_default() += 1
            }
            Some(_) => *others.entry("older release".to_string()).or_default() += 1,
            None => *others.entry("no status".to_string()).or_default() += 1,
        }
    }
    (healthy, others)
}

/// Waits until every cluster reports `release` Healthy; prints progress on the way.
fn wait_healthy(
    source: &StatusSource,
    clusters: &[(String, &str)],
    release: &str,
    start: Instant,
) -> Duration {
    let deadline = start + ROLLOUT_DEADLINE;
    let mut last_print = Instant::now();
    let mut last_count = usize::MAX;
    loop {
        let (healthy, others) = healthy_at(&source.read(), clusters, release);
        if healthy == clusters.len() {
            return start.elapsed();
        }
        if healthy != last_count && last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "    {:>5.0} s: {healthy}/{} Healthy (others: {others:?})",
                start.elapsed().as_secs_f64(),
                clusters.len()
            );
            last_print = Instant::now();
            last_count = healthy;
        }
        assert!(
            Instant::now() < deadline,
            "release {release} did not reach every cluster within {} min: {healthy}/{} Healthy, others {others:?}",
            ROLLOUT_DEADLINE.as_secs() / 60,
            clusters.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The most events in any window of `width` within [from, to].
fn busiest(events: &[Instant], from: Instant, to: Instant, width: Duration) -> usize {
    let inside: Vec<Instant> = events
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..inside.len() {
        while inside[hi].duration_since(inside[lo]) >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Counters read at the start and end of a measured interval.
struct Snapshot {
    at: Instant,
    agents_cpu: f64,
    sims_cpu: f64,
    git_cpu: f64,
    machine: f64,
    cluster_requests: u64,
    hub_requests: u64,
    hub_cpu: f64,
}

struct Measured<'a> {
    agents: &'a [u32],
    sims: &'a [u32],
    git_daemon: u32,
    servers: &'a [String],
    /// The hub's address and pid.
    hub: Option<(&'a str, u32)>,
}

impl Measured<'_> {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            agents_cpu: self.agents.iter().map(|p| common::cpu_seconds(*p)).sum(),
            sims_cpu: self.sims.iter().map(|p| common::cpu_seconds(*p)).sum(),
            git_cpu: cpu_seconds_with_children(self.git_daemon),
            machine: machine_busy_seconds(),
            cluster_requests: self.servers.iter().map(|s| requests(s)).sum(),
            hub_requests: self.hub.map_or(0, |(s, _)| requests(s)),
            hub_cpu: self.hub.map_or(0.0, |(_, p)| common::cpu_seconds(p)),
        }
    }
}

/// Prints what happened between `a` and `b`.
fn report(what: &str, a: &Snapshot, b: &Snapshot, log: &GitLog, args: &Args, agents: usize) {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let minutes = secs / 60.0;
    let count = |v: &[Instant]| v.iter().filter(|t| **t >= a.at && **t <= b.at).count();
    let (fetches, pushes) = (count(&log.fetches), count(&log.pushes));
    let minute = Duration::from_secs(60);
    let (peak_fetches, peak_pushes) = (
        busiest(&log.fetches, a.at, b.at, minute),
        busiest(&log.pushes, a.at, b.at, minute),
    );
    let mut all: Vec<Instant> = log.fetches.iter().chain(&log.pushes).copied().collect();
    all.sort();
    let peak_ops = busiest(&all, a.at, b.at, minute);
    let peak_reads_second = busiest(&log.fetches, a.at, b.at, Duration::from_secs(1));
    let n = args.clusters as f64;
    println!("  {what}: {secs:.0} s");
    println!(
        "    Git server: {fetches} fetches ({:.1}/min on average, {peak_fetches} in the busiest 60 s, {peak_reads_second} in the busiest second), {pushes} pushes ({:.1}/min, {peak_pushes} in the busiest 60 s); all operations {:.1}/min, {peak_ops} in the busiest 60 s",
        fetches as f64 / minutes,
        pushes as f64 / minutes,
        (fetches + pushes) as f64 / minutes,
    );
    println!(
        "    per agent process: {:.2} fetches/min, {:.2} pushes/min; per cluster: {:.3} fetches/min, {:.3} pushes/min",
        fetches as f64 / minutes / agents as f64,
        pushes as f64 / minutes / agents as f64,
        fetches as f64 / minutes / n,
        pushes as f64 / minutes / n,
    );
    let calls = b.cluster_requests - a.cluster_requests;
    println!(
        "    API calls to the clusters: {calls} ({:.1} per cluster, {:.1}/s in all)",
        calls as f64 / n,
        calls as f64 / secs
    );
    if args.store == Store::Kubernetes {
        let hub = b.hub_requests - a.hub_requests;
        println!(
            "    hub: {hub} requests, {:.1}/s ({:.3}/s per cluster), {:.1} s CPU",
            hub as f64 / secs,
            hub as f64 / secs / n,
            b.hub_cpu - a.hub_cpu
        );
    }
    let agents_cpu = b.agents_cpu - a.agents_cpu;
    let sims_cpu = b.sims_cpu - a.sims_cpu;
    let git_cpu = b.git_cpu - a.git_cpu;
    let hub_cpu = b.hub_cpu - a.hub_cpu;
    let machine = b.machine - a.machine;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    println!(
        "    CPU: agents {agents_cpu:.1} s ({:.1} ms per cluster per minute), simulated clusters {sims_cpu:.1} s, Git server {git_cpu:.1} s, the rest of the machine {:.1} s (other processes included), of {:.0} s on {cores} cores",
        agents_cpu * 1000.0 / n / minutes,
        (machine - agents_cpu - sims_cpu - git_cpu - hub_cpu).max(0.0),
        secs * cores,
    );
}

fn main() {
    let args = parse_args();
    let wall = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut procs = Processes::default();
    let clusters = cluster_names(args.clusters);
    let agents_n = args.clusters.div_ceil(args.per_agent);
    println!(
        "fleet of {} clusters ({} test, {} pre, {} prod), {} per agent ({agents_n} agent processes), status store {:?}; poll {POLL}, heartbeat {HEARTBEAT}, bake {}, workloads ready {READY_AFTER} after a change",
        clusters.len(),
        clusters.iter().filter(|c| c.1 == "test").count(),
        clusters.iter().filter(|c| c.1 == "pre").count(),
        clusters.iter().filter(|c| c.1 == "prod").count(),
        args.per_agent,
        args.store,
        args.bake
    );

    let work = dir.join("fleet");
    write_fleet(&work, &clusters, args.store, &args.bake);
    git::git(&work, &["init", "-q", "-b", "main"]);
    git::git(&work, &["add", "-A"]);
    git::git(&work, &["commit", "-qm", "fleet: web at nginx 1"]);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = git::publish(&work, &served, "fleet");
    let (port, git_pid, log) = start_git_daemon(&served, &mut procs);
    let url = match args.store {
        Store::Local => work.display().to_string(),
        _ => format!("git://127.0.0.1:{port}/fleet.git"),
    };
    let loose_at_start = loose_objects(&work.join(".git"));

    // The simulated clusters, SIMS_PER_PROCESS to a process; cluster i is context
    // sim-(i mod SIMS_PER_PROCESS + 1) of process i / SIMS_PER_PROCESS.
    let mut sims = Vec::new();
    let mut sim_pids = Vec::new();
    let mut servers = Vec::new();
    for (index, chunk) in clusters.chunks(SIMS_PER_PROCESS).enumerate() {
        let (kubeconfig, s, pid) = start_sim(dir, &format!("sim{index}"), chunk.len(), &mut procs);
        sim_pids.push(pid);
        servers.extend(s);
        sims.push(kubeconfig);
    }
    assert_eq!(
        servers.len(),
        clusters.len(),
        "a simulated cluster is missing"
    );
    let (hub_kubeconfig, hub): (_, Option<(String, u32)>) = match args.store {
        Store::Git | Store::Local => (None, None),
        Store::Kubernetes => {
            let (k, s, pid) = start_sim(dir, "hub", 1, &mut procs);
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&k)
                .args([
                    "--context",
                    "sim-1",
                    "create",
                    "namespace",
                    STATUS_NAMESPACE,
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            (Some(k), s.into_iter().next().map(|s| (s, pid)))
        }
    };
    eprintln!(
        "  {} simulated clusters up after {:.0} s",
        servers.len(),
        wall.elapsed().as_secs_f64()
    );

    let mut agent_pids = Vec::new();
    let mut logs = Vec::new();
    for (a, chunk) in clusters.chunks(args.per_agent).enumerate() {
        let mut body = format!(
            "repo: {{url: '{url}'}}\ninterval: {POLL}\nheartbeat: {HEARTBEAT}\nlisten: 127.0.0.1:0\nlog: {{level: warn}}\n"
        );
        if let Some(k) = &hub_kubeconfig {
            body.push_str(&format!(
                "hub:\n  kubeconfig: {}\n  context: sim-1\n",
                k.display()
            ));
        }
        body.push_str("clusters:\n");
        for (i, (name, _)) in chunk.iter().enumerate() {
            let global = a * args.per_agent + i;
            body.push_str(&format!(
                "- name: {name}\n  kubeconfig: {}\n  context: sim-{}\n",
                sims[global / SIMS_PER_PROCESS].display(),
                global % SIMS_PER_PROCESS + 1
            ));
        }
        let config = dir.join(format!("agent{a}.yaml"));
        std::fs::write(&config, body).unwrap();
        let stderr = dir.join(format!("agent{a}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args(["agent", "--config"])
            .arg(&config)
            .env_remove("ROLLWAVE_LOG")
            .env("ROLLWAVE_CACHE", dir.join(format!("cache{a}")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        agent_pids.push(procs.add(format!("agent {a}"), child));
        logs.push(stderr);
    }

    let source = match &hub {
        None if args.store == Store::Local => StatusSource::Git(work.join(".git")),
        None => StatusSource::Git(bare.clone()),
        Some((h, _)) => StatusSource::Hub(h.clone()),
    };
    let measured = Measured {
        agents: &agent_pids,
        sims: &sim_pids,
        git_daemon: git_pid,
        servers: &servers,
        hub: hub.as_ref().map(|(s, pid)| (s.as_str(), *pid)),
    };

    // Release 1: the first install, from the agents' start.
    let v1 = git::git(&work, &["rev-parse", "HEAD"]);
    eprintln!("  release 1 (first install) from the agents' start:");
    let t = wait_healthy(&source, &clusters, &v1, Instant::now());
    println!(
        "  release 1 (first install): every cluster Healthy {:.0} s after the agents started",
        t.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));

    // Release 2: pushed (in a local repository, committed), then timed to the last
    // cluster Healthy.
    write(
        &work,
        "apps/web/base/deployment.yaml",
        &deployment("nginx:2"),
    );
    let before = if args.store == Store::Local {
        let before = measured.snapshot();
        git::git(&work, &["commit", "-qam", "web: nginx 2"]);
        before
    } else {
        git::git(&work, &["commit", "-qam", "web: nginx 2"]);
        let before = measured.snapshot();
        git::git(&work, &["push", "-q", "origin", "main"]);
        before
    };
    let v2 = git::git(&work, &["rev-parse", "HEAD"]);
    eprintln!("  release 2 pushed:");
    let took = wait_healthy(&source, &clusters, &v2, before.at);
    let after = measured.snapshot();
    println!(
        "  release 2: every cluster Healthy {:.1} s after the push (its own push counts as one Git operation below)",
        took.as_secs_f64()
    );
    report(
        "during release 2",
        &before,
        &after,
        &log.lock().unwrap(),
        &args,
        agents_n,
    );

    // The idle fleet: heartbeats and polls only.
    if !args.steady.is_zero() {
        std::thread::sleep(args.steady);
        let idle = measured.snapshot();
        report(
            "idle after the release (heartbeats and polls only)",
            &after,
            &idle,
            &log.lock().unwrap(),
            &args,
            agents_n,
        );
    }

    let peaks: Vec<u64> = agent_pids
        .iter()
        .map(|p| common::proc_kib(*p, "VmHWM:"))
        .collect();
    let now: Vec<u64> = agent_pids
        .iter()
        .map(|p| common::proc_kib(*p, "VmRSS:"))
        .collect();
    let sims_rss: u64 = sim_pids
        .iter()
        .map(|p| common::proc_kib(*p, "VmRSS:"))
        .sum();
    let total_peak: u64 = peaks.iter().sum();
    println!(
        "  agents' RSS: peak {:.0} MiB in all ({:.0} MiB the largest process), {:.2} MiB per cluster; now {:.0} MiB ({:.2} MiB per cluster); simulated clusters {:.0} MiB",
        total_peak as f64 / 1024.0,
        peaks.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
        total_peak as f64 / 1024.0 / args.clusters as f64,
        now.iter().sum::<u64>() as f64 / 1024.0,
        now.iter().sum::<u64>() as f64 / 1024.0 / args.clusters as f64,
        sims_rss as f64 / 1024.0,
    );
    println!(
        "  agents' CPU since start: {:.1} s ({:.0} ms per cluster)",
        agent_pids
            .iter()
            .map(|p| common::cpu_seconds(*p))
            .sum::<f64>(),
        agent_pids
            .iter()
            .map(|p| common::cpu_seconds(*p))
            .sum::<f64>()
            * 1000.0
            / args.clusters as f64
    );
    let other = log.lock().unwrap().other.clone();
    if !other.is_empty() {
        println!("  Git server log, unexpected lines: {other:?}");
    }
    // Warnings and errors the agents logged (the level is warn).
    for (a, path) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            println!(
                "  agent {a} logged {} warnings/errors, the first: {}",
                lines.len(),
                lines[0]
            );
        }
    }
    if args.store == Store::Local {
        println!(
            "  loose objects in the local repository: {} more than at the start",
            loose_objects(&work.join(".git")).saturating_sub(loose_at_start)
        );
    }
    println!(
        "  wall time of the whole run: {:.0} s",
        wall.elapsed().as_secs_f64()
    );
    drop(procs);
}
