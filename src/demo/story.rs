//! The story `rollwave demo` tells: the whole story on this machine with no setup. A bare Git
//! repository made from `fleet-example-repo/`, a simulated cluster and an agent for
//! every cluster file, then a good change rolling out wave by wave, a bad one (a
//! `broken` image) halting at the canary, and its `git revert` reaching every cluster.
//! When a `prometheus` binary is installed, a real Prometheus scrapes every simulated
//! cluster's traffic and the story gains a chapter: a release whose pods are Ready but
//! answer 30% of requests with errors, halted at the canary by the analysis of its
//! bake (web's error-ratio check), then reverted. Without one, the demo says how to get
//! that chapter and the analysis is skipped (no Prometheus configured).
//! Agents coordinate only through the repository's status refs, as in production.
//! Exits 0 only if every expectation held.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::DemoError;

use crate::agent::rollout::ClusterAgent;
use crate::apply::Reconciler;
use crate::apply::retry::RetryPolicy;
use crate::demo::prometheus::{ScrapingPrometheus, find_binary};
use crate::plan::waves_for;
use crate::sim::{SimCluster, SimOptions, kubeconfig, write_kubeconfig};
use crate::status::Phase;
use crate::status::refs::read_statuses;

/// The demo's progress deadline at every speed. It decides the story: the broken image
/// turns the canary Degraded only when it runs out, and a healthy rollout that outlasts
/// it is Degraded too, which halts the good change for good. A healthy rollout here
/// takes about a second on an idle machine and took 4 s on a busy 2-core one (with a
/// 2 s deadline at `--speed 4`, that halted the good change), so the deadline is kept
/// well clear of it and not divided by `--speed`; the broken chapter waits for it.
pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(20);

/// How the demo runs (the flags of `rollwave demo`).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Divides the demo's bake time (4 s); the progress deadline stays
    /// [`PROGRESS_DEADLINE`].
    pub speed: f64,
    /// Leaves the clusters and agents running at the end and prints the kubeconfig.
    pub keep: bool,
    /// Builds the repository's pinned helm first when none is found, so the Helm app
    /// is in the story.
    pub build_helm: bool,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, DemoError> {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=rollwave demo",
            "-c",
            "user.email=demo@rollwave.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .map_err(|e| DemoError::Setup(format!("cannot run git (is it installed?): {e}")))?;
    if !out.status.success() {
        return Err(DemoError::Setup(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The example fleet: next to the sources (`cargo run`), or in the current directory.
fn example_fleet() -> Result<PathBuf, DemoError> {
    for p in [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-example-repo"),
        PathBuf::from("fleet-example-repo"),
    ] {
        if p.join("fleet.yaml").exists() {
            return Ok(p);
        }
    }
    Err(DemoError::Setup(
        "fleet-example-repo/ not found: run the demo from the rollwave source directory".into(),
    ))
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) -> Result<(), DemoError> {
    let text = std::fs::read_to_string(path)?;
    std::fs::write(path, f(text))?;
    Ok(())
}

/// (release, phase) of `app` on every cluster, from the status refs.
fn statuses(repo: &Path, app: &str) -> BTreeMap<String, (String, Phase)> {
    let Ok(r) = git2::Repository::open(repo) else {
        return BTreeMap::new();
    };
    read_statuses(&r)
        .0
        .into_iter()
        .filter_map(|(c, s)| s.apps.get(app).map(|a| (c, (a.release.clone(), a.phase))))
        .collect()
}

/// The analysis cell of `app` on every cluster, from the status refs.
fn analysis_cells(repo: &Path, app: &str) -> BTreeMap<String, String> {
    let Ok(r) = git2::Repository::open(repo) else {
        return BTreeMap::new();
    };
    read_statuses(&r)
        .0
        .into_iter()
        .filter_map(|(c, s)| s.apps.get(app).map(|a| (c, crate::plan::analysis::cell(a))))
        .collect()
}

/// The status message of `app` on `cluster`.
fn message(repo: &Path, cluster: &str, app: &str) -> String {
    git2::Repository::open(repo)
        .ok()
        .and_then(|r| {
            read_statuses(&r)
                .0
                .get(cluster)
                .and_then(|s| s.apps.get(app).map(|a| a.message.clone()))
        })
        .unwrap_or_default()
}

struct Story {
    /// Printed under the title: whether the analysis runs, and why not.
    note: String,
    bare: PathBuf,
    work: PathBuf,
    waves: Vec<Vec<String>>,
    interactive: bool,
    started: Instant,
    failures: Vec<String>,
    /// Without a terminal: the last title printed and each cluster's last printed
    /// (release, phase), so that only changes are printed.
    last_title: String,
    last_seen: BTreeMap<String, (String, Phase)>,
    /// The release the current chapter rolls out, and how long a wave bakes.
    target: Option<String>,
    bake: Duration,
    /// (wave, release) pairs already said to be baking.
    baking_said: std::collections::BTreeSet<(usize, String)>,
    /// The bake includes the analysis (a Prometheus runs).
    analysis: bool,
}

impl Story {
    fn show(&mut self, title: &str, marks: &BTreeMap<String, String>) {
        let st = statuses(&self.bare, "web");
        let mut out = String::new();
        if self.interactive {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(&format!(
            "rollwave demo  {:>5.1}s  {title}\n{}\n\n",
            self.started.elapsed().as_secs_f64(),
            self.note
        ));
        let cells = analysis_cells(&self.bare, "web");
        out.push_str("wave  cluster      web release  phase        analysis\n");
        for (i, wave) in self.waves.iter().enumerate() {
            for c in wave {
                let (rel, phase) = st
                    .get(c)
                    .map(|(r, p)| {
                        (
                            marks
                                .get(r)
                                .cloned()
                                .unwrap_or_else(|| r[..8.min(r.len())].to_string()),
                            format!("{p:?}"),
                        )
                    })
                    .unwrap_or_else(|| ("-".into(), "waiting".into()));
                let cell = cells.get(c).map(String::as_str).unwrap_or("-");
                out.push_str(&format!("{i:>4}  {c:<12} {rel:<12} {phase:<12} {cell}\n"));
            }
        }
        let baking = self.baking(&st, marks);
        if self.interactive {
            for (w, rel) in &baking {
                out.push_str(&format!("\n{}\n", self.baking_line(*w, rel)));
            }
            print!("{out}");
        } else {
            self.print_changes(title, &st, marks, &baking);
        }
        let _ = std::io::stdout().flush();
    }

    /// Without a terminal: one line per event (a new chapter, a cluster changing
    /// release or phase, a wave starting to bake), each stamped with the time.
    fn print_changes(
        &mut self,
        title: &str,
        st: &BTreeMap<String, (String, Phase)>,
        marks: &BTreeMap<String, String>,
        baking: &[(usize, String)],
    ) {
        let t = self.started.elapsed().as_secs_f64();
        if title != self.last_title {
            println!("{t:>6.1}s {title}");
            self.last_title = title.to_string();
        }
        for (w, wave) in self.waves.iter().enumerate() {
            for c in wave {
                let Some(now) = st.get(c) else { continue };
                if self.last_seen.get(c) == Some(now) {
                    continue;
                }
                let rel = marks
                    .get(&now.0)
                    .cloned()
                    .unwrap_or_else(|| now.0[..8.min(now.0.len())].to_string());
                println!("{t:>6.1}s   wave {w}  {c:<12} web {rel:<12} {:?}", now.1);
                self.last_seen.insert(c.clone(), now.clone());
            }
        }
        for (w, rel) in baking {
            if self.baking_said.insert((*w, rel.clone())) {
                println!("{t:>6.1}s   {}", self.baking_line(*w, rel));
            }
        }
    }

    /// Says that wave `w` bakes `rel` and what the next wave waits for.
    fn baking_line(&self, w: usize, rel: &str) -> String {
        format!(
            "wave {w} is Healthy at {rel}: baking {}s{} before wave {} may start",
            self.bake.as_secs(),
            if self.analysis {
                " and passing its analysis"
            } else {
                ""
            },
            w + 1
        )
    }

    /// The waves whose every cluster runs the chapter's release Healthy while the next
    /// wave has not all taken it yet: they are baking. (wave, release name) pairs.
    fn baking(
        &self,
        st: &BTreeMap<String, (String, Phase)>,
        marks: &BTreeMap<String, String>,
    ) -> Vec<(usize, String)> {
        let Some(target) = &self.target else {
            return Vec::new();
        };
        let on = |c: &String, phase: Option<Phase>| {
            st.get(c)
                .is_some_and(|(r, p)| r == target && phase.is_none_or(|want| *p == want))
        };
        let name = marks.get(target).cloned().unwrap_or_else(|| target.clone());
        (0..self.waves.len().saturating_sub(1))
            .filter(|&w| {
                self.waves[w].iter().all(|c| on(c, Some(Phase::Healthy)))
                    && !self.waves[w + 1].iter().all(|c| on(c, None))
            })
            .map(|w| (w, name.clone()))
            .collect()
    }

    fn commit(&self, message: &str) -> Result<String, DemoError> {
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-q", "-m", message])?;
        git(&self.work, &["push", "-q", "origin", "main"])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Polls until `done` holds; records a failure when no cluster's status has
    /// changed for `stall`.
    ///
    /// The guard only ends a hang: every change of any cluster's release or phase
    /// starts it again, so a slow machine (twelve control planes on two loaded cores
    /// can take a minute before the first status) is never mistaken for a fault. How
    /// long each chapter took is printed by the story itself.
    async fn until(
        &mut self,
        title: &str,
        marks: &BTreeMap<String, String>,
        stall: Duration,
        mut done: impl FnMut(&BTreeMap<String, (String, Phase)>) -> bool,
    ) -> bool {
        let mut deadline = Instant::now() + stall;
        let mut last = None;
        loop {
            let st = statuses(&self.bare, "web");
            self.show(title, marks);
            if done(&st) {
                return true;
            }
            if last.as_ref() != Some(&st) {
                deadline = Instant::now() + stall;
                last = Some(st);
            } else if Instant::now() > deadline {
                self.failures.push(format!(
                    "{title}: not reached; no cluster's status changed for {stall:?}"
                ));
                return false;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The `helm` for the demo: on PATH, or the one the repository builds from its pinned
/// module (`tests/helm/build`, which the tests and `./test` run) in the target
/// directory of this binary or of CI's cache, or built now with `--build-helm`.
fn demo_helm(args: &DemoOptions) -> Result<Option<PathBuf>, DemoError> {
    if let Some(helm) = crate::render::helm::installed_helm() {
        return Ok(Some(helm));
    }
    // target/<profile>/rollwave -> target
    let own_target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    let mut targets: Vec<PathBuf> = own_target.iter().cloned().collect();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.push(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HOME") {
        targets.push(Path::new(&home).join(".cache/rollwave/target"));
    }
    let built = targets
        .iter()
        .filter_map(|t| std::fs::read_dir(t.join("helm")).ok())
        .flatten()
        .flatten()
        .map(|e| e.path().join("helm"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    if built.is_some() || !args.build_helm {
        return Ok(built);
    }
    let script = example_fleet()?
        .parent()
        .map(|repo| repo.join("tests/helm/build"))
        .filter(|s| s.is_file())
        .ok_or_else(|| DemoError::Setup("--build-helm: tests/helm/build not found: run the demo from the rollwave source directory".into()))?;
    println!("building helm from its pinned Go module (tests/helm/build) ...");
    let mut cmd = Command::new(&script);
    if let Some(t) = &own_target {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| DemoError::Setup(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(DemoError::Setup(format!(
            "{} failed; see its output above",
            script.display()
        )));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(Some(path))
}

/// How to run this very binary again: its full path (after `cargo run` it is not on
/// PATH), or `rollwave` when the path is unknown.
fn rollwave_command() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "rollwave".into())
}

/// Runs the demo.
pub fn run(args: &DemoOptions) -> Result<ExitCode, DemoError> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(DemoError::Setup(format!(
            "--speed must be a positive number, got {}",
            args.speed
        )));
    }
    // Fleet durations are whole seconds.
    let bake = Duration::from_secs((4.0 / args.speed).round().max(1.0) as u64);
    let deadline = PROGRESS_DEADLINE;
    let dir = tempfile::Builder::new().prefix("rollwave-demo").tempdir()?;
    let root = if args.keep {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    let work = root.join("work");
    let bare = root.join("fleet.git");
    copy_dir(&example_fleet()?, &work)?;
    // The example fleet's `cache` app is a Helm chart: without `helm` the demo runs
    // without it rather than showing an app that can only fail.
    match demo_helm(args)? {
        Some(helm) => crate::render::helm::set_helm_binary(helm),
        None => {
            std::fs::remove_dir_all(work.join("apps/cache"))?;
            println!(
                "note: helm is not on PATH and the repository's pinned helm is not built yet, so the example fleet's Helm app (apps/cache) is left out of this demo; `{} demo --build-helm` builds it first (needs Go: about 3 minutes on 2 cores, up to 20 on a machine that never built Go code), and so does `./test`",
                rollwave_command()
            );
        }
    }
    let secs = |d: Duration| format!("{}s", d.as_secs());
    let rollout = format!(
        "bake: {}\n  progressDeadline: {}",
        secs(bake),
        secs(deadline)
    );
    edit(&work.join("fleet.yaml"), |t| {
        t.lines()
            .filter(|l| !l.trim_start().starts_with("progressDeadline:"))
            .map(|l| {
                if l.trim_start().starts_with("bake:") {
                    format!("  {rollout}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    })?;
    // Analysis at demo speed: Prometheus scrapes every second, so a rate over 5 s
    // windows, measured every second after 2 s (the first scrapes of a new Deployment
    // see no traffic yet).
    let initial_delay = Duration::from_secs(2);
    edit(&work.join("apps/web/app.yaml"), |t| {
        t.replace("  bake: 5m", &format!("  bake: {}", secs(bake)))
            .replace("interval: 30s", "interval: 1s")
            .replace(
                "initialDelay: 1m",
                &format!("initialDelay: {}", secs(initial_delay)),
            )
            .replace("[1m]", "[5s]")
    })?;
    git(
        &root,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            bare.to_str().unwrap_or("fleet.git"),
        ],
    )?;
    git(&work, &["init", "-q", "-b", "main"])?;
    git(
        &work,
        &["remote", "add", "origin", bare.to_str().unwrap_or("")],
    )?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let tree = crate::tree::DirTree::open(&work)?;
        let fleet = crate::fleet::load(&tree)?;
        let web = fleet.app("web").ok_or_else(|| DemoError::Setup("the example fleet has no app 'web'".into()))?;
        let waves = waves_for(&fleet, web);
        let mut story = Story { note: String::new(), bare: bare.clone(), work: work.clone(), waves: waves.clone(), interactive: std::io::stdout().is_terminal(), started: Instant::now(), failures: Vec::new(), last_title: String::new(), last_seen: BTreeMap::new(), target: None, bake, baking_said: Default::default(), analysis: false };
        let c0 = story.commit("the example fleet")?;

        // A simulated cluster and an agent per cluster file.
        let mut sims = Vec::new();
        for c in &fleet.clusters {
            let mut o = SimOptions::named(&c.name);
            // A rolling update moves one Pod at a time past this delay (2 to 3 steps
            // for the prod clusters' replicas), so the waves pace as they did when a
            // whole Deployment turned ready after 800 ms.
            o.ready_after = Duration::from_millis(400);
            sims.push(SimCluster::start(o).await?);
        }
        let entries: Vec<(String, String)> = sims.iter().map(|s| (s.name().to_string(), s.base_url())).collect();
        // A real Prometheus scraping every simulated cluster, when one is installed.
        let prometheus = match find_binary() {
            None => {
                story.note = "analysis skipped: no prometheus configured (install Debian's `prometheus` package, apt-get install -y prometheus, for the chapter where metrics halt a release whose pods are Ready)".into();
                None
            }
            Some(binary) => {
                let targets: Vec<(String, std::net::SocketAddr)> = sims.iter().map(|s| (s.name().to_string(), s.addr())).collect();
                let started = ScrapingPrometheus::start(&binary, &root.join("prometheus"), &targets, Duration::from_secs(1));
                let ready = match started {
                    Ok(p) => p.wait_for_targets(Duration::from_secs(30)).await.map(|_| p),
                    Err(e) => Err(e),
                };
                match ready {
                    Ok(p) => {
                        story.note = format!("analysis: Prometheus at {} scrapes every cluster; web's error-ratio and latency-p99 gate each wave", p.url());
                        Some(p)
                    }
                    Err(e) => {
                        story.note = format!("analysis skipped: prometheus did not start ({})", crate::error_text::chain(&e));
                        None
                    }
                }
            }
        };
        story.analysis = prometheus.is_some();
        // The fleet web view, on its usual port when free.
        let listener = match tokio::net::TcpListener::bind(crate::ui::DEFAULT_LISTEN).await { Ok(l) => l, Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await? };
        let ui = crate::ui::UiServer::start(listener, crate::ui::Loader::new(&bare.to_string_lossy(), "main", crate::source::repo::GitAccess::from_env(), Duration::from_secs(1))).await?;
        story.note.push_str(&format!("\nweb view: {} (rollwave ui)", ui.url()));
        println!("{}", story.note);
        let prometheus_config = prometheus.as_ref().map(|p| p.config());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (name, url) in &entries {
            let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig(&[(name.clone(), url.clone())]))?;
            let (name, bare, stop, prometheus_config) = (name.clone(), bare.clone(), stop.clone(), prometheus_config.clone());
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async move {
                    let config = kube::config::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig");
                    let client = kube::Client::try_from(config).expect("client");
                    let r = Reconciler::new(client, crate::apply::DEFAULT_NAMESPACE).with_retry(RetryPolicy { attempts: 5, base: Duration::from_millis(20), max: Duration::from_millis(500), ..RetryPolicy::default() });
                    let prometheus = prometheus_config.as_ref().map(crate::prometheus::Prometheus::new).transpose().expect("prometheus client");
                    let mut agent = ClusterAgent::new(&name, r, Duration::from_secs(5)).with_prometheus(prometheus);
                    while !stop.load(Ordering::Acquire) {
                        if let Err(e) = agent.pass(bare.to_str().unwrap_or(""), "main", SystemTime::now()).await {
                            tracing::warn!(cluster = %name, error = %crate::error_text::chain(&e), "agent pass failed");
                        }
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                });
            }));
        }
        let all: Vec<String> = waves.iter().flatten().cloned().collect();
        let mut marks = BTreeMap::new();
        marks.insert(c0.clone(), "initial".to_string());
        story.target = Some(c0.clone());
        let everywhere = |rel: &str, phase: Phase| {
            let (rel, all) = (rel.to_string(), all.clone());
            move |st: &BTreeMap<String, (String, Phase)>| all.iter().all(|c| st.get(c).is_some_and(|(r, p)| *r == rel && *p == phase))
        };
        // A hang guard on each chapter: how long no cluster's status may stay unchanged.
        let limit = Duration::from_secs(180) + bake * 8;
        story.until("bootstrap: the example fleet rolls out", &marks, limit, everywhere(&c0, Phase::Healthy)).await;

        // A good change: wave by wave, never a wave early.
        edit(&work.join("apps/web/app.yaml"), |t| t.replace("tag: \"1.4.2\"", "tag: \"1.4.3\""))?;
        let c1 = story.commit("web 1.4.3")?;
        marks.insert(c1.clone(), "1.4.3".into());
        story.target = Some(c1.clone());
        let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
        let mut healthy_at: BTreeMap<String, Instant> = BTreeMap::new();
        let c1c = c1.clone();
        story
            .until("good change: web 1.4.3 rolls out wave by wave", &marks, limit, |st| {
                for (c, (r, p)) in st {
                    if *r == c1c {
                        first_seen.entry(c.clone()).or_insert_with(Instant::now);
                        if *p == Phase::Healthy {
                            healthy_at.entry(c.clone()).or_insert_with(Instant::now);
                        }
                    }
                }
                all.iter().all(|c| healthy_at.contains_key(c))
            })
            .await;
        for w in 1..waves.len() {
            let prev_done = waves[w - 1].iter().filter_map(|c| healthy_at.get(c)).max();
            let started = waves[w].iter().filter_map(|c| first_seen.get(c)).min();
            if let (Some(done), Some(start)) = (prev_done, started)
                && start < done
            {
                story.failures.push(format!("wave {w} started before wave {} was healthy", w - 1));
            }
        }

        // A bad change: halts at the canary.
        edit(&work.join("apps/web/app.yaml"), |t| t.replace("tag: \"1.4.3\"", "tag: broken"))?;
        let c2 = story.commit("web: broken image")?;
        marks.insert(c2.clone(), "broken".into());
        story.target = Some(c2.clone());
        let canary = waves[0].clone();
        let c2c = c2.clone();
        story.until("bad change: the canary degrades and the rollout halts", &marks, limit, |st| canary.iter().all(|c| st.get(c).is_some_and(|(r, p)| *r == c2c && *p == Phase::Degraded))).await;
        tokio::time::sleep(bake * 2).await;
        let spread: Vec<String> = statuses(&bare, "web").into_iter().filter(|(c, (r, _))| *r == c2 && !canary.contains(c)).map(|(c, _)| c).collect();
        if !spread.is_empty() {
            story.failures.push(format!("the broken release reached {} beyond the canary", spread.join(", ")));
        }

        // The revert reaches every affected cluster at once.
        git(&work, &["revert", "--no-edit", "HEAD"])?;
        git(&work, &["push", "-q", "origin", "main"])?;
        let c3 = git(&work, &["rev-parse", "HEAD"])?;
        marks.insert(c3.clone(), "1.4.3-revert".into());
        story.target = Some(c3.clone());
        let reverted = Instant::now();
        let (c1c, c3c) = (c1.clone(), c3.clone());
        let all2 = all.clone();
        story
            .until("revert: every cluster back on 1.4.3 (1.4.3-revert, the revert of broken)", &marks, limit, |st| {
                all2.iter().all(|c| st.get(c).is_some_and(|(r, p)| (*r == c1c || *r == c3c) && *p == Phase::Healthy))
            })
            .await;
        let revert_time = reverted.elapsed();

        // Pods Ready, 30% of requests answered 500: only the analysis sees it.
        let mut analysis_chapter = false;
        if prometheus.is_some() {
            analysis_chapter = true;
            edit(&work.join("apps/web/app.yaml"), |t| t.replace("tag: \"1.4.3\"", "tag: errors"))?;
            let c4 = story.commit("web: errors (pods Ready, 30% of requests fail)")?;
            marks.insert(c4.clone(), "errors".into());
            story.target = Some(c4.clone());
            let c4c = c4.clone();
            story.until("errors change: the pods are Ready, the canary's analysis sees the errors and halts", &marks, limit, |st| canary.iter().all(|c| st.get(c).is_some_and(|(r, p)| *r == c4c && *p == Phase::Degraded))).await;
            for c in &canary {
                let m = message(&bare, c, "web");
                if !m.starts_with("analysis error-ratio: ") {
                    story.failures.push(format!("errors change: {c} is not Degraded by the analysis ({m})"));
                }
            }
            tokio::time::sleep(bake * 2).await;
            let spread: Vec<String> = statuses(&bare, "web").into_iter().filter(|(c, (r, _))| *r == c4 && !canary.contains(c)).map(|(c, _)| c).collect();
            if !spread.is_empty() {
                story.failures.push(format!("errors change reached {} beyond the canary", spread.join(", ")));
            }
            git(&work, &["revert", "--no-edit", "HEAD"])?;
            git(&work, &["push", "-q", "origin", "main"])?;
            let c5 = git(&work, &["rev-parse", "HEAD"])?;
            marks.insert(c5.clone(), "1.4.3-undo".into());
            story.target = Some(c5.clone());
            let good: Vec<String> = vec![c1.clone(), c3.clone(), c5.clone()];
            let all3 = all.clone();
            story
                .until("errors change undone: every cluster back on 1.4.3 (1.4.3-undo, undoing errors)", &marks, limit, |st| {
                    all3.iter().all(|c| st.get(c).is_some_and(|(r, p)| good.contains(r) && *p == Phase::Healthy))
                })
                .await;
        }

        story.show("done", &marks);
        println!();
        println!("expectations:");
        let checks = [
            ("good change reached every cluster in wave order", !story.failures.iter().any(|f| f.contains("good change") || f.contains("wave"))),
            ("bad change halted at the canary", !story.failures.iter().any(|f| f.contains("bad change") || f.contains("broken release"))),
            ("revert reached every cluster", !story.failures.iter().any(|f| f.contains("revert"))),
        ];
        for (what, ok) in checks {
            println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        }
        if analysis_chapter {
            let ok = !story.failures.iter().any(|f| f.contains("errors change"));
            println!("  [{}] errors change halted at the canary by analysis", if ok { "ok" } else { "FAILED" });
        } else {
            println!("  [skipped] errors change halted at the canary by analysis: install prometheus (apt-get install -y prometheus) to see it");
        }
        println!("  revert healthy everywhere {:.1} s after the commit; total {:.0} s", revert_time.as_secs_f64(), story.started.elapsed().as_secs_f64());
        for f in &story.failures {
            println!("  failure: {f}");
        }
        if args.keep {
            let stop = crate::signals::wait_for_signal();
            let path = root.join("kubeconfig");
            write_kubeconfig(&path, &entries)?;
            println!("\nclusters and agents keep running; explore with:\n  export KUBECONFIG={}\n  kubectl --context prod-bj-1 get deployments -A\n  kubectl --context prod-bj-1 get pods -n web\n  kubectl --context prod-bj-1 rollout history deployment/web -n web\n  kubectl --context prod-bj-1 logs deployment/web -n web\n  {} status --repo {}\nCtrl-C stops them.", path.display(), rollwave_command(), bare.display());
            stop.await;
        }
        stop.store(true, Ordering::Release);
        for t in threads {
            let _ = t.join();
        }
        drop(prometheus);
        for s in sims {
            s.shutdown().await;
        }
        Ok(if story.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}
