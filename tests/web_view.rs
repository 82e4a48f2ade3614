//! `rollwave ui`, the fleet web view: its JSON API and event stream against a fleet
//! repository with status refs written the way agents write them, and the page itself
//! in headless Chromium (Debian's `chromium`, driven by playwright-core, which
//! `tests/ui/setup` installs from npm on first use).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::git::{commit_files, git};
use rollwave::status::{AppStatus, ClusterStatus, HistoryEntry, MetricResult, Phase};
use serde_json::Value;

fn fmt(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The example fleet with two commits ("initial", then "web 1.5.0"), every cluster
/// reporting the first Healthy for an hour, and web's canary as `canary` says.
struct Fleet {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    first: String,
    second: String,
}

enum Canary {
    /// Took web 1.5.0 two minutes ago and its analysis failed: Degraded, so wave 1
    /// halts.
    Degraded,
    /// Took web 1.5.0 just now and is Healthy: wave 1 waits for its bake.
    Baking,
}

impl Fleet {
    fn new(canary: Canary) -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("fleet");
        common::copy_dir(&common::example_fleet(), &work);
        git(&work, &["init", "-q", "-b", "main"]);
        let first = commit_files(&work, &[], "initial");
        let app = std::fs::read_to_string(work.join("apps/web/app.yaml"))
            .unwrap()
            .replace("tag: \"1.4.2\"", "tag: \"1.5.0\"");
        let second = commit_files(&work, &[("apps/web/app.yaml", &app)], "web 1.5.0");
        let f = Fleet {
            _tmp: tmp,
            work,
            first,
            second,
        };
        let now = SystemTime::now();
        let hour_ago = fmt(now - Duration::from_secs(3600));
        let tree = rollwave::source::GitTree::open(
            &f.work.join(".git"),
            git2::Oid::from_str(&f.first).unwrap(),
        )
        .unwrap();
        let fleet = rollwave::fleet::load(&tree).unwrap();
        for c in &fleet.clusters {
            let mut apps = std::collections::BTreeMap::new();
            for a in fleet
                .apps
                .iter()
                .filter(|a| rollwave::fleet::targets_cluster(a, c))
            {
                let r = rollwave::render::render(&tree, &fleet, a, c).unwrap();
                apps.insert(
                    a.name.clone(),
                    AppStatus {
                        release: f.first.clone(),
                        hash: r.content_hash.clone(),
                        phase: Phase::Healthy,
                        since: hour_ago.clone(),
                        message: String::new(),
                        known_good: vec![r.content_hash],
                        poisoned: vec![],
                        history: vec![],
                        analysis: Default::default(),
                        verified: Some(hour_ago.clone()),
                    },
                );
            }
            let mut s = ClusterStatus {
                cluster: c.name.clone(),
                agent: "test".into(),
                heartbeat: fmt(now),
                interval: 60,
                apps,
                notified: Default::default(),
            };
            if c.name == "test-sh-1" {
                let web = s.apps.get_mut("web").unwrap();
                let moved = match canary {
                    Canary::Degraded => now - Duration::from_secs(120),
                    Canary::Baking => now - Duration::from_secs(5),
                };
                web.history.insert(
                    0,
                    HistoryEntry {
                        release: f.first.clone(),
                        hash: web.hash.clone(),
                        phase: Phase::Healthy,
                        since: hour_ago.clone(),
                        until: fmt(moved),
                        verified: Some(hour_ago.clone()),
                    },
                );
                web.release = f.second.clone();
                web.hash = "sha256:second".into();
                web.since = fmt(moved);
                web.verified = None;
                let metric = |v: f64, failures| MetricResult {
                    value: Some(v),
                    failures,
                    errors: 0,
                    measurements: 3,
                    at: fmt(now),
                    note: String::new(),
                };
                match canary {
                    Canary::Degraded => {
                        web.phase = Phase::Degraded;
                        web.message = "analysis error-ratio: 0.31 is above its max 0.01".into();
                        web.poisoned = vec!["sha256:second".into()];
                        web.analysis.insert("error-ratio".into(), metric(0.31, 1));
                        web.analysis.insert("latency-p99".into(), metric(0.12, 0));
                    }
                    Canary::Baking => {
                        web.phase = Phase::Healthy;
                        web.analysis.insert("error-ratio".into(), metric(0.002, 0));
                    }
                }
            }
            f.write(&s);
        }
        f
    }

    /// Writes `status` as its agent does: a new commit on its status ref.
    fn write(&self, status: &ClusterStatus) {
        let repo = git2::Repository::open(&self.work).unwrap();
        rollwave::status::refs::write_status(&repo, status).unwrap();
    }

    fn status(&self, cluster: &str) -> ClusterStatus {
        let repo = git2::Repository::open(&self.work).unwrap();
        rollwave::status::refs::read_statuses(&repo).0[cluster].clone()
    }
}

/// `rollwave ui` on a free port; killed on drop.
struct Ui {
    child: Child,
    addr: String,
}

impl Ui {
    fn start(repo: &Path) -> Ui {
        Ui::start_with(&repo.to_string_lossy(), &[], &[])
    }

    fn start_with(repo: &str, args: &[&str], env: &[(&str, &Path)]) -> Ui {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollwave"));
        if let Some(path) = common::helm::path_if_built() {
            cmd.env("PATH", path);
        }
        let mut child = cmd
            .args(["ui", "--listen", "127.0.0.1:0", "--repo", repo])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollwave ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("rollwave ui printed no address: {line:?}"))
            .to_string();
        Ui { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// GET `path`: status code, headers (lower-case names) and body.
    fn get(&self, path: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, head.to_ascii_lowercase(), body.to_string())
    }

    fn json(&self, path: &str) -> Value {
        let (code, _, body) = self.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn short(sha: &str) -> &str {
    &sha[..8]
}

#[test]
fn the_api_shows_each_wave_its_releases_and_why_a_wave_halted() {
    let f = Fleet::new(Canary::Degraded);
    let ui = Ui::start(&f.work);

    let fleet = ui.json("/api/fleet");
    assert_eq!(fleet["head"]["sha"], f.second);
    assert_eq!(fleet["head"]["subject"], "web 1.5.0");
    let names: Vec<&str> = fleet["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "cache", "platform", "web"]);
    let web = fleet["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "web")
        .unwrap();
    assert_eq!(web["clusters"], 14);
    assert_eq!(web["states"]["Degraded"], 1);
    assert_eq!(web["states"]["Healthy"], 13);
    assert_eq!(web["newest"]["short"], short(&f.second));
    assert_eq!(web["onNewest"], 1);
    assert_eq!(web["blocked"]["wave"], 1);
    assert_eq!(web["blocked"]["halted"], true);
    assert_eq!(web["blocked"]["reason"], "blocked: test-sh-1 Degraded");
    assert!(fleet["version"].as_u64().unwrap() >= 1);
    assert!(fleet["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        fleet["labels"]["pre-bj-1"],
        serde_json::json!({"region": "bj", "provider": "idc"}),
        "the clusters' labels, for the page's filter"
    );

    let app = ui.json("/api/apps/web");
    assert_eq!(app["policy"]["bake"], "5m");
    assert_eq!(app["policy"]["gate"], "health");
    assert_eq!(app["policy"]["onFailure"], "halt");
    assert_eq!(app["policy"]["metrics"][1], "latency-p99");
    let waves = app["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 7);
    let canary = &waves[0]["clusters"][0];
    assert_eq!(canary["cluster"], "test-sh-1");
    assert_eq!(canary["state"], "Degraded");
    assert_eq!(canary["release"]["short"], short(&f.second));
    assert_eq!(canary["release"]["subject"], "web 1.5.0");
    assert_eq!(
        canary["analysis"],
        "analysis error-ratio: 0.31 is above its max 0.01"
    );
    assert_eq!(canary["metrics"][0]["name"], "error-ratio");
    assert_eq!(canary["metrics"][0]["value"], "0.31");
    assert_eq!(canary["metrics"][0]["failures"], 1);
    assert_eq!(
        canary["bake"],
        Value::Null,
        "a Degraded cluster does not bake"
    );
    assert_eq!(waves[0]["gate"], Value::Null);
    let gate = &waves[1]["gate"];
    assert_eq!(gate["reason"], "blocked: test-sh-1 Degraded");
    assert_eq!(gate["halted"], true);
    assert_eq!(gate["gate"]["state"], "degraded");
    assert_eq!(gate["release"]["subject"], "web 1.5.0");
    for w in &waves[1..] {
        assert_eq!(w["gate"]["halted"], true, "every later wave halts: {w}");
        for c in w["clusters"].as_array().unwrap() {
            assert_eq!(c["state"], "Healthy", "{c}");
            assert_eq!(c["release"]["subject"], "initial");
            assert_eq!(c["bake"]["done"], true, "baked long ago: {c}");
            assert_eq!(c["bake"]["seconds"], 300);
        }
    }

    let releases = app["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[0]["sha"], f.second);
    assert_eq!(releases[0]["running"], 1);
    assert_eq!(releases[0]["furthestWave"], 0);
    assert_eq!(releases[0]["clusters"]["test-sh-1"]["phase"], "Degraded");
    assert_eq!(releases[0]["gates"][0], "open");
    assert_eq!(releases[0]["gates"][1], "blocked: test-sh-1 Degraded");
    assert_eq!(releases[1]["subject"], "initial");
    assert_eq!(releases[1]["running"], 13);
    assert_eq!(releases[1]["furthestWave"], 6);
    assert_eq!(
        releases[1]["clusters"]["test-sh-1"],
        serde_json::json!({"current": false, "phase": "Healthy"}),
        "the canary ran it before"
    );
    assert_eq!(
        releases[1]["gates"],
        Value::Null,
        "every cluster reached it"
    );

    // The view holds no query, rendered object or hash, only what people read.
    let (_, _, body) = ui.get("/api/apps/web");
    for secretish in ["sim_http_requests_total", "knownGood", "sha256:", "kind"] {
        assert!(!body.contains(secretish), "{secretish} in {body}");
    }
}

#[test]
fn a_wave_waiting_for_a_bake_says_until_when() {
    let f = Fleet::new(Canary::Baking);
    let ui = Ui::start(&f.work);
    let app = ui.json("/api/apps/web");
    let canary = &app["waves"][0]["clusters"][0];
    assert_eq!(canary["state"], "Healthy");
    assert_eq!(canary["bake"]["done"], false);
    assert_eq!(canary["bake"]["seconds"], 300);
    assert_eq!(canary["analysis"], "error-ratio=0.002");
    let gate = &app["waves"][1]["gate"];
    assert_eq!(gate["halted"], false);
    assert_eq!(gate["gate"]["state"], "waitingForBake");
    let reason = gate["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("waiting for bake of test-sh-1 until "),
        "{reason}"
    );
    assert_eq!(
        reason.trim_start_matches("waiting for bake of test-sh-1 until "),
        canary["bake"]["until"]
    );
    let fleet = ui.json("/api/fleet");
    let web = fleet["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "web")
        .unwrap();
    assert_eq!(web["blocked"]["halted"], false);
}

#[test]
fn an_unknown_app_is_a_404_that_lists_the_apps() {
    let f = Fleet::new(Canary::Baking);
    let ui = Ui::start(&f.work);
    let (code, headers, body) = ui.get("/api/apps/nope");
    assert_eq!(code, 404);
    assert!(headers.contains("application/json"), "{headers}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("no app 'nope' in the fleet at "),
        "{v}"
    );
    assert_eq!(
        v["apps"],
        serde_json::json!(["api", "cache", "platform", "web"])
    );
    let (code, _, body) = ui.get("/nothing-here");
    assert_eq!(code, 404);
    assert!(body.contains("/api/fleet"), "{body}");
}

#[test]
fn the_page_and_its_assets_are_served_by_the_binary_alone() {
    let f = Fleet::new(Canary::Baking);
    let ui = Ui::start(&f.work);
    let (code, headers, page) = ui.get("/");
    assert_eq!(code, 200);
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{headers}"
    );
    assert!(page.contains("<script src=\"/ui.js\""), "{page}");
    assert!(page.contains("name=\"viewport\""), "readable on a phone");
    for (path, kind) in [("/ui.js", "text/javascript"), ("/ui.css", "text/css")] {
        let (code, headers, body) = ui.get(path);
        assert_eq!(code, 200, "{path}");
        assert!(headers.contains(kind), "{path}: {headers}");
        for external in ["http://", "https://", "//cdn", "@import"] {
            assert!(!body.contains(external), "{path} loads {external}");
        }
    }
}

/// Reads server-sent events from `stream` until one named `change`; its data.
fn next_change(reader: &mut BufReader<TcpStream>) -> Value {
    let mut event = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream closed");
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(data) = line.strip_prefix("data: ")
            && event == "change"
        {
            return serde_json::from_str(data).unwrap();
        }
    }
}

#[test]
fn a_status_change_reaches_the_event_stream_within_a_second() {
    let f = Fleet::new(Canary::Degraded);
    let ui = Ui::start(&f.work);
    let mut s = TcpStream::connect(&ui.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        ui.addr
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let first = next_change(&mut reader)["version"].as_u64().unwrap();
    assert_eq!(ui.json("/api/fleet")["version"], first);

    let mut bj = f.status("test-bj-1");
    let web = bj.apps.get_mut("web").unwrap();
    web.phase = Phase::Progressing;
    web.since = fmt(SystemTime::now());
    let written = Instant::now();
    f.write(&bj);
    let next = next_change(&mut reader)["version"].as_u64().unwrap();
    let took = written.elapsed();
    assert!(next > first);
    assert!(
        took < Duration::from_secs(1),
        "the change took {took:?} to reach the stream"
    );
    let app = ui.json("/api/apps/web");
    let cell = app["waves"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["clusters"].as_array().unwrap())
        .find(|c| c["cluster"] == "test-bj-1")
        .unwrap();
    assert_eq!(cell["state"], "Progressing");
    assert_eq!(ui.json("/api/fleet")["version"], next);
}

#[test]
fn a_directory_that_is_not_a_repository_is_refused_before_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_string_lossy().into_owned();
    let (code, out, err) = common::run_cli(&["ui", "--repo", &dir, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "nothing served: {out}");
    assert!(err.contains("not a Git repository"), "{err}");
    let (code, _, err) = common::run_cli(&["ui", "--repo", &dir, "--listen", "nowhere"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--listen nowhere: cannot listen there"),
        "{err}"
    );
}

/// Where the browser test writes its screenshots: `$CARGO_TARGET_DIR/ui-screenshots`
/// (the target directory is found from the test binary's path).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/debug/deps/web_view-HASH
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        });
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_page_in_chromium_shows_the_waves_a_live_change_and_the_halt() {
    let (node_path, chromium) = browser();

    let f = Fleet::new(Canary::Degraded);
    let ui = Ui::start(&f.work);
    let shots = screenshot_dir();
    let mut node = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/fleet.js"))
        .arg(ui.url())
        .arg(&shots)
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node");
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut next = |want: &str| -> Value {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the browser script ended before '{want}'"))
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(v["event"], want, "{v}");
        v
    };

    let loaded = next("loaded");
    assert_eq!(
        loaded["apps"],
        serde_json::json!(["api", "cache", "platform", "web"])
    );
    let waves = loaded["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 7, "{loaded}");
    let canary = &waves[0]["cells"][0];
    assert_eq!(canary["cluster"], "test-sh-1");
    assert_eq!(canary["state"], "Degraded");
    let text = canary["text"].as_str().unwrap();
    for shown in [
        format!("{} web 1.5.0", short(&f.second)),
        "error-ratio 0.31".into(),
        "analysis error-ratio: 0.31 is above its max 0.01".into(),
    ] {
        assert!(text.contains(&shown), "{shown:?} not in {text:?}");
    }
    let healthy = waves[1]["cells"][0]["text"].as_str().unwrap();
    assert!(
        healthy.contains(&format!("{} initial", short(&f.first))) && healthy.contains("baked 5m"),
        "{healthy}"
    );
    assert_eq!(
        waves[1]["gate"],
        serde_json::json!({"text": format!("halted: blocked: test-sh-1 Degraded (release {})", short(&f.second)), "halted": true})
    );
    assert_eq!(
        waves[2]["gate"]["text"], "halted: as wave 1",
        "the reason is named once"
    );
    assert_eq!(waves[0]["gate"], Value::Null);
    let picked = next("picked");
    let (newest, older) = (&picked["newest"], &picked["older"]);
    assert_eq!(
        newest["dimmed"], 13,
        "only the canary took web 1.5.0: {picked}"
    );
    assert_eq!(
        newest["gates"][0], "halted: blocked: test-sh-1 Degraded",
        "{picked}"
    );
    assert_eq!(older["dimmed"], 0, "every cluster ran the first release");
    assert_eq!(
        older["gates"],
        serde_json::json!([]),
        "it reached everywhere"
    );
    assert!(
        older["heading"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("Where {} reached", short(&f.first)))),
        "{picked}"
    );

    next("ready");
    let mut bj = f.status("test-bj-1");
    let web = bj.apps.get_mut("web").unwrap();
    web.phase = Phase::Progressing;
    web.since = fmt(SystemTime::now());
    let written = Instant::now();
    f.write(&bj);
    writeln!(stdin, "expect test-bj-1 Progressing").unwrap();
    let seen = next("seen");
    let took = written.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the page showed the change after {took:?} ({seen})"
    );

    let done = next("done");
    assert_eq!(done["consoleErrors"], serde_json::json!([]), "{done}");
    assert_eq!(done["external"], serde_json::json!([]), "{done}");
    assert!(
        done["phone"]["scrollWidth"].as_u64() <= done["phone"]["width"].as_u64(),
        "the page scrolls sideways on a phone: {done}"
    );
    assert!(node.wait().unwrap().success());
    for png in ["fleet.png", "fleet-phone.png"] {
        let bytes = std::fs::read(shots.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
        assert!(bytes.len() > 10_000, "{png} is nearly empty");
    }
}

/// Runs tests/ui/setup and returns NODE_PATH and the Chromium to drive.
fn browser() -> (String, String) {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/setup");
    let out = Command::new(&setup).output().expect("run tests/ui/setup");
    assert!(
        out.status.success(),
        "tests/ui/setup failed (it needs node and npm):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node_path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} not found: install Debian's chromium package (apt-get install -y chromium), or set CHROMIUM"
    );
    (node_path, chromium)
}

#[test]
fn the_page_in_chromium_shows_the_freeze_banner_and_when_a_window_opens() {
    let (node_path, chromium) = browser();
    let f = Fleet::new(Canary::Baking);
    // A deny window for web that began a minute ago, for two hours, and a freeze of api.
    let began = SystemTime::now() - Duration::from_secs(60);
    let secs = began
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let began = SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % 60);
    let (hour, minute) = (secs / 3600 % 24, secs / 60 % 60);
    let fleet_yaml = std::fs::read_to_string(f.work.join("fleet.yaml")).unwrap()
        + &format!(
            "windows:\n- deny: {{schedule: '{minute} {hour} * * *', duration: 2h}}\n  apps: [web]\nfreeze:\n  reason: 'INC-4411: payment errors'\n  by: alice\n  apps: [api]\n"
        );
    commit_files(
        &f.work,
        &[("fleet.yaml", &fleet_yaml)],
        "a window for web, api frozen",
    );
    let ui = Ui::start(&f.work);
    let shots = screenshot_dir();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/calendar.js"))
        .arg(ui.url())
        .arg(&shots)
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium)
        .stderr(Stdio::inherit())
        .output()
        .expect("run node");
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success(), "{seen}");
    assert_eq!(
        seen["banner"],
        "Frozen: INC-4411: payment errors (alice) (apps: api). No new wave opens; reverts go through. `rollwave unfreeze` lifts it.",
        "{seen}"
    );
    let opens = fmt(began + Duration::from_secs(7200));
    let gates: Vec<&str> = seen["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        gates.first().is_some_and(|g| g
            .starts_with("waiting: outside window: inside the deny window")
            && g.contains(&format!("opens at {opens}"))),
        "{gates:?}"
    );
    assert_eq!(seen["consoleErrors"], serde_json::json!([]), "{seen}");
    let png = std::fs::read(shots.join("calendar.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}

#[test]
fn an_unreadable_status_ref_is_listed_and_the_rest_still_shown() {
    let f = Fleet::new(Canary::Baking);
    let repo = git2::Repository::open(&f.work).unwrap();
    let blob = repo.blob(b"{ not json").unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    tb.insert("status.json", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let commit = repo
        .commit(None, &sig, &sig, "broken status", &tree, &[])
        .unwrap();
    repo.reference("refs/rollwave/status/prod-bj-1", commit, true, "test")
        .unwrap();
    let ui = Ui::start(&f.work);
    let fleet = ui.json("/api/fleet");
    let unreadable = fleet["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{fleet}");
    assert!(
        unreadable[0]
            .as_str()
            .unwrap()
            .starts_with("status of cluster 'prod-bj-1': status.json: "),
        "{fleet}"
    );
    let app = ui.json("/api/apps/web");
    let cells: Vec<&Value> = app["waves"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["clusters"].as_array().unwrap())
        .collect();
    let bj = cells.iter().find(|c| c["cluster"] == "prod-bj-1").unwrap();
    assert_eq!(bj["state"], "Unknown");
    assert_eq!(cells.iter().filter(|c| c["state"] == "Healthy").count(), 13);
}

/// The cell of `cluster` in an app view.
fn cell_of<'a>(app: &'a Value, cluster: &str) -> &'a Value {
    app["waves"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["clusters"].as_array().unwrap())
        .find(|c| c["cluster"] == cluster)
        .unwrap()
}

#[test]
fn a_url_is_fetched_with_its_status_refs_every_fetch_interval() {
    let f = Fleet::new(Canary::Degraded);
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", f.work.display());
    let ui = Ui::start_with(
        &url,
        &["--fetch-interval", "1s"],
        &[("ROLLWAVE_CACHE", cache.path())],
    );
    assert_eq!(ui.json("/api/fleet")["head"]["subject"], "web 1.5.0");
    assert_eq!(
        cell_of(&ui.json("/api/apps/web"), "test-sh-1")["state"],
        "Degraded"
    );
    // An agent reports, and someone commits: both show after the next fetch.
    let mut bj = f.status("test-bj-1");
    bj.apps.get_mut("web").unwrap().phase = Phase::Progressing;
    f.write(&bj);
    let app = std::fs::read_to_string(f.work.join("apps/web/app.yaml"))
        .unwrap()
        .replace("tag: \"1.5.0\"", "tag: \"1.6.0\"");
    commit_files(&f.work, &[("apps/web/app.yaml", &app)], "web 1.6.0");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fleet = ui.json("/api/fleet");
        let app = ui.json("/api/apps/web");
        if fleet["head"]["subject"] == "web 1.6.0"
            && cell_of(&app, "test-bj-1")["state"] == "Progressing"
        {
            assert_eq!(app["releases"][0]["subject"], "web 1.6.0");
            assert_eq!(app["releases"].as_array().unwrap().len(), 3);
            break;
        }
        assert!(Instant::now() < deadline, "not fetched: {fleet}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fleet whose statuses live on a hub (`status: {store: kubernetes}`) is shown from
/// the hub's objects, not from status refs, and a change there reaches the view
/// through the hub's watch.
#[test]
fn a_fleet_whose_statuses_live_on_the_hub_is_shown_from_the_hub_live() {
    let f = Fleet::new(Canary::Degraded);
    let fleet_yaml = std::fs::read_to_string(f.work.join("fleet.yaml")).unwrap();
    commit_files(
        &f.work,
        &[(
            "fleet.yaml",
            &format!("{fleet_yaml}status:\n  store: kubernetes\n"),
        )],
        "statuses on the hub",
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(rollwave::sim::SimCluster::start(
            rollwave::sim::SimOptions::named("hub"),
        ))
        .unwrap();
    let kubeconfig = f.work.parent().unwrap().join("hub.kubeconfig");
    rollwave::sim::write_kubeconfig(&kubeconfig, &[("hub".into(), sim.base_url())]).unwrap();
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["create", "namespace", "rollwave-status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hub = runtime.block_on(common::hub::connect(&kubeconfig, &["test-bj-1"]));
    // The hub says test-bj-1 is Progressing; its status ref still says Healthy.
    let mut bj = f.status("test-bj-1");
    bj.apps.get_mut("web").unwrap().phase = Phase::Progressing;
    runtime.block_on(hub.write(&bj)).unwrap();

    let ui = Ui::start_with(
        &f.work.to_string_lossy(),
        &["--hub-kubeconfig", kubeconfig.to_str().unwrap()],
        &[],
    );
    let state =
        |cluster: &str| -> Value { cell_of(&ui.json("/api/apps/web"), cluster)["state"].clone() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while state("test-bj-1") != "Progressing" {
        assert!(Instant::now() < deadline, "{}", ui.json("/api/apps/web"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Clusters with no object on the hub are Unknown there, whatever their refs say.
    assert_eq!(state("test-sh-1"), "Unknown");

    bj.apps.get_mut("web").unwrap().phase = Phase::Degraded;
    runtime.block_on(hub.write(&bj)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while state("test-bj-1") != "Degraded" {
        assert!(Instant::now() < deadline, "{}", ui.json("/api/apps/web"));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(ui);
    runtime.block_on(sim.shutdown());
}

/// A generated fleet of `clusters` clusters running `apps` apps (`app-00`...), each app
/// in waves of 1, 4 and 15 clusters and the rest in two halves, and its views as
/// `rollwave ui` serves them, built by the view model (the server's own code) from
/// generated statuses: rendering a thousand clusters' releases from a repository would
/// take a test minutes, and the page is what is under test here.
mod big_fleet {
    use std::collections::{BTreeMap, HashMap};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use rollwave::fleet::RolloutSpec;
    use rollwave::plan::{AppPlan, Decision, GateState, Reason, Release};
    use rollwave::status::{AppStatus, ClusterStatus, HistoryEntry, Phase};
    use rollwave::ui::model::{AppSource, AppView, FleetSource, app_view, fleet_view};
    use serde_json::{Value, json};

    const RELEASES: usize = 10;
    const REGIONS: [&str; 4] = ["bj", "sh", "gz", "hk"];

    /// The first app's view before and after the live update, and which clusters the
    /// update changed.
    pub struct Written {
        pub before: Value,
        pub after: Value,
        pub changed: Vec<String>,
        pub labels: BTreeMap<String, BTreeMap<String, String>>,
    }

    pub fn cluster_name(i: usize) -> String {
        format!("prod-{}-{i:04}", REGIONS[i % REGIONS.len()])
    }

    fn sha(app: usize, k: usize) -> String {
        let mix = ((app * RELEASES + k) as u32 + 1).wrapping_mul(2_654_435_761);
        format!("{mix:08x}{app:02x}{k:030x}")
    }

    fn wave_sizes(n: usize) -> Vec<usize> {
        let rest = n.saturating_sub(20);
        [1, 4, 15, rest / 2, rest - rest / 2]
            .into_iter()
            .filter(|s| *s > 0)
            .collect()
    }

    /// Phase of app `a` on cluster `i` (Healthy mostly, some of each of the others).
    fn phase(i: usize, a: usize) -> Phase {
        match (i + a) % 100 {
            5 | 40 | 77 => Phase::Progressing,
            13 => Phase::Degraded,
            61 => Phase::Suspended,
            _ => Phase::Healthy,
        }
    }

    fn fmt(t: SystemTime) -> String {
        humantime::format_rfc3339_seconds(t).to_string()
    }

    /// Writes `dir/v1` and `dir/v2` (fleet.json, apps/<app>.json), v2 after `changed`
    /// Healthy clusters of app-00 (one of them in wave 1) turned Progressing and every
    /// agent sent a heartbeat.
    pub fn write(dir: &Path, clusters: usize, apps: usize, changed: usize) -> Written {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let names: Vec<String> = (0..clusters).map(cluster_name).collect();
        let labels: BTreeMap<String, BTreeMap<String, String>> = names
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let provider = if i % 3 == 0 { "cloud" } else { "idc" };
                let l = [
                    ("region".to_string(), REGIONS[i % REGIONS.len()].to_string()),
                    ("provider".to_string(), provider.to_string()),
                ];
                (c.clone(), l.into_iter().collect())
            })
            .collect();
        let mut waves = Vec::new();
        let mut at = 0;
        for size in wave_sizes(clusters) {
            waves.push(names[at..at + size].to_vec());
            at += size;
        }
        let wave_of = |i: usize| {
            let mut end = 0;
            wave_sizes(clusters)
                .iter()
                .position(|s| {
                    end += s;
                    i < end
                })
                .unwrap()
        };
        let mut order = HashMap::new();
        let mut subjects = HashMap::new();
        for a in 0..apps {
            for k in 0..RELEASES {
                order.insert(sha(a, k), k * apps + a);
                subjects.insert(sha(a, k), format!("app-{a:02} 1.{k}.0"));
            }
        }
        let newest = RELEASES - 1;
        let mut statuses: BTreeMap<String, ClusterStatus> = BTreeMap::new();
        for (i, c) in names.iter().enumerate() {
            let mut app_statuses = BTreeMap::new();
            for a in 0..apps {
                let k = if wave_of(i) <= 2 { newest } else { newest - 1 };
                app_statuses.insert(
                    format!("app-{a:02}"),
                    AppStatus {
                        release: sha(a, k),
                        hash: format!("h-{a}-{k}"),
                        phase: phase(i, a),
                        since: fmt(now - hour),
                        message: if phase(i, a) == Phase::Degraded {
                            "pods not ready: 1 of 3".into()
                        } else {
                            String::new()
                        },
                        known_good: vec![],
                        poisoned: vec![],
                        history: vec![HistoryEntry {
                            release: sha(a, k - 1),
                            hash: format!("h-{a}-{}", k - 1),
                            phase: Phase::Healthy,
                            since: fmt(now - 3 * hour),
                            until: fmt(now - hour),
                            verified: None,
                        }],
                        analysis: BTreeMap::new(),
                        verified: None,
                    },
                );
            }
            // Every 97th agent has gone silent: Unknown everywhere.
            let heartbeat = if i % 97 == 50 { now - 2 * hour } else { now };
            statuses.insert(
                c.clone(),
                ClusterStatus {
                    cluster: c.clone(),
                    agent: "generated".into(),
                    heartbeat: fmt(heartbeat),
                    interval: 60,
                    apps: app_statuses,
                    notified: Default::default(),
                },
            );
        }
        let candidates: Vec<usize> = (1..clusters)
            .filter(|&i| phase(i, 0) == Phase::Healthy && i % 97 != 50)
            .collect();
        let changed: Vec<String> = candidates
            .iter()
            .copied()
            .step_by((candidates.len() / changed.max(1)).max(1))
            .take(changed)
            .map(cluster_name)
            .collect();
        let policy = RolloutSpec::default();
        let views = |statuses: &BTreeMap<String, ClusterStatus>, now: SystemTime| {
            let src = FleetSource {
                head: &sha(apps - 1, newest),
                order: &order,
                subjects: &subjects,
                statuses,
                unreadable: &[],
                freeze: None,
                windows: &[],
                labels: &labels,
                now,
            };
            let app_views: Vec<AppView> = (0..apps)
                .map(|a| {
                    let name = format!("app-{a:02}");
                    let releases: Vec<Release> = (0..RELEASES)
                        .rev()
                        .map(|k| Release {
                            sha: sha(a, k),
                            time: now - hour * (RELEASES - k) as u32,
                            hashes: BTreeMap::new(),
                        })
                        .collect();
                    let decisions = names
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let on_newest = wave_of(i) <= 2;
                            (
                                c.clone(),
                                Decision {
                                    wave: wave_of(i),
                                    target: Some(sha(
                                        a,
                                        if on_newest { newest } else { newest - 1 },
                                    )),
                                    reason: Reason::Current,
                                    rollback_to: None,
                                },
                            )
                        })
                        .collect();
                    let plan = AppPlan {
                        waves: waves.clone(),
                        decisions,
                        pending: vec![],
                    };
                    let gates: HashMap<String, Vec<GateState>> = (0..RELEASES)
                        .map(|k| {
                            let g = (0..waves.len())
                                .map(|w| {
                                    if k == newest && w >= 3 {
                                        GateState::WaitingForApproval
                                    } else {
                                        GateState::Open
                                    }
                                })
                                .collect();
                            (sha(a, k), g)
                        })
                        .collect();
                    app_view(
                        &src,
                        &AppSource {
                            name: &name,
                            policy: &policy,
                            plan: &plan,
                            releases: &releases,
                            gates: &gates,
                        },
                    )
                })
                .collect();
            (fleet_view(&src, &app_views), app_views)
        };
        let stamp = |version: u64, at: SystemTime, view: Value| -> Value {
            let mut out =
                json!({"version": version, "at": humantime::format_rfc3339_millis(at).to_string()});
            let fields = out.as_object_mut().unwrap();
            for (k, v) in view.as_object().unwrap() {
                fields.insert(k.clone(), v.clone());
            }
            out
        };
        let write_version = |version: u64, statuses: &BTreeMap<String, ClusterStatus>, at| {
            let (fleet, app_views) = views(statuses, at);
            let dir = dir.join(format!("v{version}"));
            std::fs::create_dir_all(dir.join("apps")).unwrap();
            let fleet = stamp(version, at, serde_json::to_value(&fleet).unwrap());
            std::fs::write(dir.join("fleet.json"), fleet.to_string()).unwrap();
            let mut first = Value::Null;
            for v in &app_views {
                let v = stamp(version, at, serde_json::to_value(v).unwrap());
                std::fs::write(
                    dir.join("apps")
                        .join(format!("{}.json", v["name"].as_str().unwrap())),
                    v.to_string(),
                )
                .unwrap();
                if first.is_null() {
                    first = v;
                }
            }
            first
        };
        let before = write_version(1, &statuses, now);
        let later = now + Duration::from_secs(30);
        for s in statuses.values_mut() {
            let i: usize = s.cluster[s.cluster.len() - 4..].parse().unwrap();
            if i % 97 != 50 {
                s.heartbeat = fmt(later);
            }
            if changed.contains(&s.cluster) {
                let app = s.apps.get_mut("app-00").unwrap();
                app.history.insert(
                    0,
                    HistoryEntry {
                        release: app.release.clone(),
                        hash: app.hash.clone(),
                        phase: app.phase,
                        since: app.since.clone(),
                        until: fmt(later),
                        verified: None,
                    },
                );
                app.phase = Phase::Progressing;
                app.since = fmt(later);
            }
        }
        let after = write_version(2, &statuses, later);
        Written {
            before,
            after,
            changed,
            labels,
        }
    }
}

/// The clusters of each wave of an app view, with their states.
fn wave_cells(app: &Value) -> Vec<Vec<(String, String)>> {
    app["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["cluster"].as_str().unwrap().to_string(),
                        c["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The page's counts line for `cells`: "183 Healthy · 12 Progressing · 5 Degraded".
fn counts_line(cells: &[&(String, String)]) -> String {
    const ORDER: [(&str, &str); 9] = [
        ("Healthy", "Healthy"),
        ("Progressing", "Progressing"),
        ("Suspended", "Suspended"),
        ("Inconclusive", "Inconclusive"),
        ("RolledBack", "rolled back"),
        ("Degraded", "Degraded"),
        ("Error", "Error"),
        ("Unknown", "Unknown"),
        ("NotDeployed", "not deployed"),
    ];
    ORDER
        .iter()
        .filter_map(|(state, word)| {
            let n = cells.iter().filter(|c| c.1 == *state).count();
            (n > 0).then(|| format!("{n} {word}"))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// What the page should show for one wave under a filter: squares when more than 12
/// clusters pass it (unless expanded), else cards, and the counts line.
fn expected_wave(
    cells: &[(String, String)],
    pass: impl Fn(&(String, String)) -> bool,
    expanded: bool,
) -> Value {
    let shown: Vec<&(String, String)> = cells.iter().filter(|c| pass(c)).collect();
    let names: Vec<&str> = shown.iter().map(|c| c.0.as_str()).collect();
    let compact = shown.len() > 12 && !expanded;
    let hidden = cells.len() - shown.len();
    serde_json::json!({
        "compact": compact,
        "label": format!("{} {}{}", cells.len(), if cells.len() == 1 { "cluster" } else { "clusters" },
            if hidden > 0 { format!(", {hidden} hidden") } else { String::new() }),
        "counts": if shown.len() > 12 { Value::from(counts_line(&shown)) } else { Value::Null },
        "squares": if compact { names.clone() } else { vec![] },
        "cards": if compact { vec![] } else { names },
    })
}

/// The waves as the page reported them, without their index.
fn seen_waves(v: &Value) -> Vec<Value> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let mut w = w.clone();
            w.as_object_mut().unwrap().remove("index");
            w
        })
        .collect()
}

/// A fleet of 200 clusters: waves past 12 clusters show as squares with counts per
/// phase and open to cards from the keyboard; the filters (label, phase, name) hide the
/// right clusters in every wave, say how many, live in the URL's hash and open the
/// same view from a shared link; a live update replaces only the nodes of the clusters
/// that changed, and keeps an opened wave open and the filters as they were.
#[test]
fn a_big_fleet_shows_compact_waves_filters_and_updates_only_what_changed() {
    let (node_path, chromium) = browser();
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    let written = big_fleet::write(&fixtures, 200, 3, 10);
    let shots = screenshot_dir();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/bigfleet.js"))
        .arg("check")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui/assets"))
        .arg(&fixtures)
        .arg(&shots)
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium)
        .stderr(Stdio::inherit())
        .output()
        .expect("run node");
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success(), "{seen}");
    assert_eq!(seen["consoleErrors"], serde_json::json!([]), "{seen}");

    let waves = wave_cells(&written.before);
    assert_eq!(
        waves.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 4, 15, 90, 90]
    );
    let all = |_: &(String, String)| true;
    let expect = |pass: &dyn Fn(&(String, String)) -> bool, open: &[usize]| -> Vec<Value> {
        waves
            .iter()
            .enumerate()
            .map(|(i, w)| expected_wave(w, pass, open.contains(&i)))
            .collect()
    };
    let loaded = seen_waves(&seen["loaded"]);
    assert_eq!(loaded, expect(&all, &[]));
    assert_eq!(loaded[0]["compact"], false);
    assert_eq!(loaded[2]["compact"], true);
    assert!(
        loaded[3]["counts"].as_str().unwrap().starts_with("8"),
        "{}",
        loaded[3]
    );
    let mut expanded = seen["expanded"].clone();
    expanded.as_object_mut().unwrap().remove("index");
    assert_eq!(
        expanded,
        expect(&all, &[2])[2],
        "wave 2 opened from the keyboard"
    );

    let region = |want: &str| {
        let labels = &written.labels;
        let want = want.to_string();
        move |c: &(String, String)| labels[&c.0]["region"] == want
    };
    let bj = region("bj");
    let total = 200;
    let hidden = |pass: &dyn Fn(&(String, String)) -> bool| {
        total - waves.iter().flatten().filter(|c| pass(c)).count()
    };
    assert_eq!(seen_waves(&seen["label"]["waves"]), expect(&bj, &[2]));
    assert_eq!(
        seen["label"]["status"],
        format!("{} of {total} clusters hidden by the filters", hidden(&bj))
    );
    assert_eq!(hidden(&bj), 150);
    let bj_healthy = |c: &(String, String)| bj(c) && c.1 == "Healthy";
    assert_eq!(
        seen_waves(&seen["labelHealthy"]["waves"]),
        expect(&bj_healthy, &[2])
    );
    assert_eq!(
        seen["labelHealthy"]["status"],
        format!(
            "{} of {total} clusters hidden by the filters",
            hidden(&bj_healthy)
        )
    );
    assert_eq!(
        seen["labelHealthy"]["hash"],
        "#app=app-00&label=region%3Dbj&phase=Healthy&open=2"
    );
    assert_eq!(
        seen["shared"]["waves"], seen["labelHealthy"]["waves"],
        "a shared link shows the same"
    );
    assert_eq!(seen["shared"]["status"], seen["labelHealthy"]["status"]);
    assert_eq!(
        seen["shared"]["inputs"],
        serde_json::json!({"label": "region=bj", "phases": ["Healthy"]})
    );
    let named = |c: &(String, String)| c.0.contains("-00");
    assert_eq!(seen_waves(&seen["name"]["waves"]), expect(&named, &[2]));
    assert_eq!(
        seen["name"]["status"],
        format!(
            "{} of {total} clusters hidden by the filters",
            hidden(&named)
        )
    );
    assert_eq!(
        seen["cleared"],
        serde_json::json!({"status": "", "hash": "#app=app-00&open=2"})
    );

    // The live update: only the changed clusters' nodes are new, each once.
    let update = &seen["update"];
    let mut added: Vec<String> = update["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    added.sort();
    let mut changed = written.changed.clone();
    changed.sort();
    assert_eq!(changed.len(), 10);
    assert!(
        changed.contains(&big_fleet::cluster_name(1)),
        "one in wave 1: {changed:?}"
    );
    assert_eq!(added, changed, "{update}");
    for f in update["fresh"].as_array().unwrap() {
        assert_eq!(f["state"], "Progressing", "{update}");
    }
    assert_eq!(update["kept"], total - changed.len());
    assert_eq!(update["wavesKept"], true);
    let after = wave_cells(&written.after);
    let after_expected: Vec<Value> = after
        .iter()
        .enumerate()
        .map(|(i, w)| expected_wave(w, all, i == 2))
        .collect();
    assert_eq!(
        seen_waves(&seen["afterUpdate"]),
        after_expected,
        "wave 2 stays open"
    );
    let sh = region("sh");
    let filtered = &seen["filteredUpdate"];
    assert_eq!(
        seen_waves(&filtered["waves"]),
        expect(&sh, &[2]),
        "back to the first views, filtered"
    );
    assert_eq!(
        filtered["status"],
        format!("{} of {total} clusters hidden by the filters", hidden(&sh))
    );
    assert_eq!(filtered["label"], "region=sh");
    assert_eq!(filtered["hash"], "#app=app-00&label=region%3Dsh&open=2");
    assert!(
        seen["phone"]["scrollWidth"].as_u64() <= seen["phone"]["width"].as_u64(),
        "the page scrolls sideways on a phone: {seen}"
    );
}

/// Not a test: measures the page of a fleet of 1,000 clusters and 20 apps in Chromium
/// (time to first render, time to apply a live update of 50 clusters) and prints the
/// figures for docs/performance.md:
///
/// `cargo test --test web_view measure_the_page_of_a_big_fleet -- --ignored --nocapture`
///
/// `RUNS` sets the number of page loads (default 5); `UI_ASSETS` another directory of
/// the page's files, to compare with another version of the page.
#[test]
#[ignore = "a measurement, not a test"]
fn measure_the_page_of_a_big_fleet() {
    let (node_path, chromium) = browser();
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    let written = big_fleet::write(&fixtures, 1000, 20, 50);
    assert_eq!(written.changed.len(), 50);
    let bytes = |p: &Path| std::fs::metadata(p).unwrap().len();
    println!(
        "fixtures: /api/fleet {} bytes, /api/apps/app-00 {} bytes",
        bytes(&fixtures.join("v1/fleet.json")),
        bytes(&fixtures.join("v1/apps/app-00.json"))
    );
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/bigfleet.js"))
        .arg("measure")
        .arg(
            std::env::var_os("UI_ASSETS")
                .filter(|d| !d.is_empty())
                .map_or_else(
                    || Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui/assets"),
                    PathBuf::from,
                ),
        )
        .arg(&fixtures)
        .arg(std::env::var("RUNS").unwrap_or_else(|_| "5".into()))
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium)
        .stderr(Stdio::inherit())
        .output()
        .expect("run node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success());
}
