//! Notifications (agent config `notify:`) against a local HTTP receiver: the agent
//! process for two simulated clusters sends each (cluster, app, release, event) once,
//! signed with HMAC-SHA256; a restarted agent does not send them again; a receiver
//! that is down does not hold up the rollout and gets the events once it is up.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::git::{commit_files, free_port, work_repo};
use common::sim::{TestCluster, eventually};
use rollwave::agent::config::{AgentConfig, ClusterConfig, Connection, parse};
use rollwave::agent::daemon::Agent;
use rollwave::status::{ClusterStatus, Phase};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: IMAGE}]}\n";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    signature: Option<String>,
    body: serde_json::Value,
    raw: Vec<u8>,
}

/// An HTTP receiver on `addr` recording every POST; answers 200.
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(addr: SocketAddr) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = got.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    store.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        signature: headers
                            .get("x-rollwave-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(String::from),
                        body: serde_json::from_slice(&body).unwrap_or_default(),
                        raw: body.to_vec(),
                    });
                    "ok"
                }
            },
        );
        runtime.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { got, runtime }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// (cluster, app, event, release) of the JSON events received on `path`.
    fn events(&self, path: &str) -> Vec<(String, String, String, String)> {
        self.got()
            .into_iter()
            .filter(|r| r.path == path)
            .map(|r| {
                let s = |k: &str| r.body[k].as_str().unwrap_or_default().to_string();
                (s("cluster"), s("app"), s("event"), s("release"))
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        runtime.shutdown_background();
    }
}

/// A fleet of two clusters (canary test-1, then prod-1) and app web, baked 1 s.
struct World {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    clusters: Vec<TestCluster>,
}

fn files(image: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = common::MINIMAL
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    files.push((
        "fleet.yaml".into(),
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  bake: 1s\n  progressDeadline: 20s\n"
            .into(),
    ));
    files.push((
        "apps/web/base/deployment.yaml".into(),
        DEPLOYMENT.replace("IMAGE", image),
    ));
    files
}

fn as_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect()
}

impl World {
    fn start() -> (World, String) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("fleet");
        let v1 = work_repo(&repo, &as_refs(&files("nginx:1")));
        let clusters = vec![TestCluster::start("test-1"), TestCluster::start("prod-1")];
        (
            World {
                _dir: dir,
                repo,
                clusters,
            },
            v1,
        )
    }

    fn commit(&self, image: &str, message: &str) -> String {
        commit_files(&self.repo, &as_refs(&files(image)), message)
    }

    /// The agent config: both clusters, a pass every second, `notify` as given.
    fn config(&self, notify: &str) -> AgentConfig {
        // The `notify:` section as a user writes it, parsed as the agent does.
        let text = format!("repo: {{url: /unused}}\nclusters: [{{name: unused}}]\n{notify}");
        let notify = parse("agent.yaml", &text).unwrap().notify;
        AgentConfig {
            repo: self.repo.to_str().unwrap().to_string(),
            interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            drift_interval: Duration::from_millis(200),
            listen: "127.0.0.1:0".parse().unwrap(),
            clusters: self
                .clusters
                .iter()
                .zip(["test-1", "prod-1"])
                .map(|(c, name)| ClusterConfig {
                    name: name.into(),
                    connection: Connection::Kubeconfig {
                        path: Some(c.kubeconfig.clone()),
                        context: None,
                    },
                    prometheus: None,
                })
                .collect(),
            notify,
            ..AgentConfig::default()
        }
    }

    fn status(&self, cluster: &str) -> Option<ClusterStatus> {
        let r = git2::Repository::open(&self.repo).ok()?;
        rollwave::status::refs::read_statuses(&r).0.remove(cluster)
    }

    fn phase(&self, cluster: &str, release: &str) -> Option<Phase> {
        self.status(cluster)
            .and_then(|s| s.apps.get("web").cloned())
            .filter(|a| a.release == release)
            .map(|a| a.phase)
    }
}

/// An agent process running on its own thread until dropped.
struct RunningAgent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningAgent {
    fn start(config: AgentConfig) -> RunningAgent {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let agent = Agent::connect(config, true).await.unwrap();
                agent
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        RunningAgent {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn count(
    events: &[(String, String, String, String)],
    cluster: &str,
    event: &str,
    release: &str,
) -> usize {
    events
        .iter()
        .filter(|(c, a, e, r)| c == cluster && a == "web" && e == event && r == release)
        .count()
}

#[test]
fn events_are_signed_sent_once_and_not_again_after_a_restart() {
    let (w, v1) = World::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let receiver = Receiver::start(addr);
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("NOTIFY_TEST_SECRET", "s3cret-for-the-test") };
    let notify = format!(
        "notify:\n- url: http://{addr}/generic\n  secret: {{env: NOTIFY_TEST_SECRET}}\n- url: http://{addr}/slack\n  format: slack\n  events: [Degraded, Halted]\n"
    );
    let config = w.config(&notify);
    let agent = RunningAgent::start(config.clone());
    eventually(
        Duration::from_secs(120),
        "v1 Healthy on both, notified",
        || {
            let e = receiver.events("/generic");
            count(&e, "test-1", "Healthy", &v1) == 1 && count(&e, "prod-1", "Healthy", &v1) == 1
        },
    );
    // Every body is signed with the secret, over the exact bytes sent.
    for r in receiver.got().iter().filter(|r| r.path == "/generic") {
        assert_eq!(
            r.signature.as_deref(),
            Some(hmac_hex("s3cret-for-the-test", &r.raw).as_str()),
            "{:?}",
            r.body
        );
        assert!(
            r.body["text"].as_str().unwrap().contains("*web*"),
            "{:?}",
            r.body
        );
    }
    // A broken release: Degraded on the canary, Halted before prod-1's wave.
    let v2 = w.commit("nginx:broken", "broken");
    eventually(
        Duration::from_secs(120),
        "v2 Degraded and Halted, notified",
        || {
            let e = receiver.events("/generic");
            count(&e, "test-1", "Degraded", &v2) == 1 && count(&e, "prod-1", "Halted", &v2) == 1
        },
    );
    eventually(
        Duration::from_secs(30),
        "the Slack endpoint's two events",
        || {
            receiver
                .got()
                .iter()
                .filter(|r| {
                    r.path == "/slack"
                        && r.body["text"]
                            .as_str()
                            .is_some_and(|t| t.contains(&v2[..8]))
                })
                .count()
                >= 2
        },
    );
    let slack_texts: BTreeSet<String> = receiver
        .got()
        .into_iter()
        .filter(|r| r.path == "/slack")
        .map(|r| r.body["text"].as_str().unwrap_or_default().to_string())
        .filter(|t| t.contains(&v2[..8]))
        .collect();
    let short = &v2[..8];
    assert_eq!(
        slack_texts,
        BTreeSet::from([
            format!(
                ":red_circle: *web* on *test-1*: Degraded at `{short}` ({})",
                w.status("test-1").unwrap().apps["web"].message
            ),
            format!(
                ":red_circle: *web* on *prod-1*: release `{short}` halted before this cluster's wave (test-1 is Degraded)"
            ),
        ]),
        "{:?}",
        receiver.got()
    );
    // What was delivered is in the status, so a restarted agent sends none of it.
    eventually(
        Duration::from_secs(30),
        "the deliveries in the status",
        || {
            w.status("prod-1").is_some_and(|s| {
                s.notified
                    .get("web")
                    .is_some_and(|l| l.contains(&format!("Halted@{v2}")))
            })
        },
    );
    drop(agent);
    let before = receiver.got().len();
    let agent = RunningAgent::start(config);
    // The revert: new events for the new release only.
    let v3 = w.commit("nginx:1", "revert");
    eventually(
        Duration::from_secs(120),
        "v3 Healthy on both, notified",
        || {
            let e = receiver.events("/generic");
            count(&e, "test-1", "Healthy", &v3) == 1 && count(&e, "prod-1", "Healthy", &v3) == 1
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    drop(agent);
    let e = receiver.events("/generic");
    for (cluster, event, release) in [
        ("test-1", "Healthy", &v1),
        ("prod-1", "Healthy", &v1),
        ("test-1", "Degraded", &v2),
        ("prod-1", "Halted", &v2),
        ("test-1", "Healthy", &v3),
    ] {
        assert_eq!(
            count(&e, cluster, event, release),
            1,
            "{cluster} {event} {release}: {e:#?}"
        );
    }
    let after: Vec<_> = receiver.got()[before..]
        .iter()
        .map(|r| {
            (
                r.body["cluster"].clone(),
                r.body["event"].clone(),
                r.body["release"].clone(),
            )
        })
        .collect();
    assert!(
        after
            .iter()
            .all(|(_, _, r)| r.as_str().is_none_or(|r| r != v1 && r != v2)),
        "the restarted agent sent old events again: {after:?}"
    );
}

#[test]
fn an_agent_run_without_notifications_keeps_what_was_delivered_for_the_next_one() {
    let (w, v1) = World::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let receiver = Receiver::start(addr);
    let notify = format!("notify:\n- url: http://{addr}/generic\n");
    let agent = RunningAgent::start(w.config(&notify));
    let delivered = |cluster: &str| {
        w.status(cluster)
            .and_then(|s| s.notified.get("web").cloned())
            .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(120),
        "v1 Healthy on both, delivered and remembered",
        || {
            ["test-1", "prod-1"]
                .iter()
                .all(|c| delivered(c).contains(&format!("Healthy@{v1}")))
        },
    );
    drop(agent);
    let remembered = (delivered("test-1"), delivered("prod-1"));

    // Restarted without `notify:`: its heartbeats and its last status on stopping keep
    // the memory, so turning notifications back on later sends nothing twice.
    let heartbeat = w.status("prod-1").unwrap().heartbeat;
    let agent = RunningAgent::start(w.config(""));
    eventually(
        Duration::from_secs(30),
        "a heartbeat of the agent without notifications",
        || w.status("prod-1").is_some_and(|s| s.heartbeat != heartbeat),
    );
    drop(agent);
    assert_eq!((delivered("test-1"), delivered("prod-1")), remembered);

    let before = receiver.got().len();
    let agent = RunningAgent::start(w.config(&notify));
    let heartbeat = w.status("prod-1").unwrap().heartbeat;
    eventually(
        Duration::from_secs(30),
        "a heartbeat of the agent with notifications again",
        || w.status("prod-1").is_some_and(|s| s.heartbeat != heartbeat),
    );
    std::thread::sleep(Duration::from_secs(2));
    drop(agent);
    assert_eq!(
        receiver.got().len(),
        before,
        "events sent again: {:?}",
        &receiver.got()[before..]
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_receiver_that_is_down_holds_up_nothing_and_gets_the_events_when_up() {
    let (w, v1) = World::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent = RunningAgent::start(w.config(&format!("notify:\n- url: http://{addr}/down\n")));
    // The rollout goes on while nothing listens: both clusters Healthy, bake and all.
    eventually(
        Duration::from_secs(120),
        "v1 Healthy on both without a receiver",
        || {
            w.phase("test-1", &v1) == Some(Phase::Healthy)
                && w.phase("prod-1", &v1) == Some(Phase::Healthy)
        },
    );
    assert!(w.status("prod-1").unwrap().notified.is_empty());
    let receiver = Receiver::start(addr);
    eventually(
        Duration::from_secs(90),
        "the events, once the receiver is up",
        || {
            let e = receiver.events("/down");
            count(&e, "test-1", "Healthy", &v1) == 1 && count(&e, "prod-1", "Healthy", &v1) == 1
        },
    );
    drop(agent);
    let e = receiver.events("/down");
    assert_eq!(count(&e, "test-1", "Healthy", &v1), 1, "{e:#?}");
}

#[test]
fn a_bad_notify_entry_names_its_line_and_field() {
    let err = |notify: &str| {
        parse(
            "agent.yaml",
            &format!("repo: {{url: /r}}\nclusters: [{{name: a}}]\nnotify:\n{notify}"),
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        err("- url: http://x/\n  events: [Healthy, Deployed]\n"),
        "agent.yaml:5: field 'notify[0].events': unknown event 'Deployed'; the events are Progressing, Healthy, Degraded, Inconclusive, RolledBack, Halted, Frozen, Unfrozen"
    );
    assert_eq!(
        err("- url: ftp://x/\n"),
        "agent.yaml:4: field 'notify[0].url': not an http:// or https:// URL (a URL holding a token belongs in urlFrom: {env: NAME} or {file: PATH})"
    );
    assert_eq!(
        err("- format: slack\n"),
        "agent.yaml:4: field 'notify[0]': give exactly one of url or urlFrom ({env: NAME} or {file: PATH})"
    );
    // A secret that is not set stops the agent at start-up, naming where it is asked.
    let config = parse(
        "agent.yaml",
        "repo: {url: /r}\nclusters: [{name: a}]\nnotify:\n- urlFrom: {env: ROLLWAVE_TEST_UNSET_URL}\n",
    )
    .unwrap();
    let e = config.notify_endpoints().unwrap_err().to_string();
    assert_eq!(
        e,
        "agent.yaml:4: field 'notify[0].urlFrom': environment variable ROLLWAVE_TEST_UNSET_URL is not set"
    );
}

/// Fleet-wide events for `cluster` (`app` empty) of `kind`.
fn fleet_events(receiver: &Receiver, path: &str, kind: &str) -> Vec<(String, String)> {
    receiver
        .events(path)
        .into_iter()
        .filter(|(_, app, event, _)| app.is_empty() && event == kind)
        .map(|(cluster, _, _, release)| (cluster, release))
        .collect()
}

/// Waits until test-1's status has been written twice more: passes ran meanwhile.
fn two_more_heartbeats(w: &World) {
    for _ in 0..2 {
        let before = w.status("test-1").map(|s| s.heartbeat);
        eventually(
            Duration::from_secs(60),
            "a newer heartbeat of test-1",
            || w.status("test-1").map(|s| s.heartbeat) != before,
        );
    }
}

#[test]
fn a_freeze_is_told_once_when_it_begins_and_once_when_it_is_lifted_even_across_a_restart() {
    let (w, v1) = World::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let receiver = Receiver::start(addr);
    let config = w.config(&format!("notify:\n- url: http://{addr}/all\n"));
    let agent = RunningAgent::start(config.clone());
    eventually(Duration::from_secs(120), "v1 Healthy, notified", || {
        count(&receiver.events("/all"), "prod-1", "Healthy", &v1) == 1
    });
    let fleet = |extra: &str| {
        format!(
            "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  bake: 1s\n  progressDeadline: 20s\n{extra}"
        )
    };
    let frozen = fleet("freeze:\n  reason: 'INC-4411: payment errors'\n  by: alice\n");
    commit_files(&w.repo, &[("fleet.yaml", &frozen)], "freeze");
    eventually(Duration::from_secs(60), "Frozen told", || {
        !fleet_events(&receiver, "/all", "Frozen").is_empty()
    });
    // Once the status remembers it, a restarted agent does not tell it again.
    eventually(
        Duration::from_secs(60),
        "Frozen remembered in the status",
        || {
            w.status("test-1")
                .and_then(|s| s.notified.get("").cloned())
                .is_some_and(|m| m.iter().any(|e| e.starts_with("Frozen@")))
        },
    );
    drop(agent);
    let agent = RunningAgent::start(config.clone());
    two_more_heartbeats(&w);
    let told = fleet_events(&receiver, "/all", "Frozen");
    assert_eq!(told.len(), 1, "{told:?}");
    // Told by the agent's first cluster, once for the agent, naming the freeze.
    assert_eq!(told[0].0, "test-1");
    assert!(told[0].1.starts_with("freeze-"), "{told:?}");
    let text = receiver
        .got()
        .into_iter()
        .find(|r| r.body["event"] == "Frozen")
        .map(|r| r.body["text"].as_str().unwrap_or_default().to_string())
        .unwrap();
    assert!(text.contains("INC-4411: payment errors (alice)"), "{text}");

    commit_files(&w.repo, &[("fleet.yaml", &fleet(""))], "unfreeze");
    eventually(Duration::from_secs(60), "Unfrozen told", || {
        !fleet_events(&receiver, "/all", "Unfrozen").is_empty()
    });
    eventually(
        Duration::from_secs(60),
        "Unfrozen remembered in the status",
        || {
            w.status("test-1")
                .and_then(|s| s.notified.get("").cloned())
                .is_some_and(|m| m.iter().any(|e| e.starts_with("Unfrozen@")))
        },
    );
    drop(agent);
    let _agent = RunningAgent::start(config);
    two_more_heartbeats(&w);
    assert_eq!(
        fleet_events(&receiver, "/all", "Unfrozen"),
        vec![("test-1".to_string(), told[0].1.clone())]
    );
    assert_eq!(fleet_events(&receiver, "/all", "Frozen").len(), 1);
}
