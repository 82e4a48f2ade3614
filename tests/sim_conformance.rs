//! Differential conformance of the simulated API server: every case sends the same
//! requests to a simulated cluster and to a real control plane (kube-apiserver from
//! `tests/k8s`), removes what legitimately differs between two servers (uids,
//! timestamps, resourceVersion values, allocated IPs), and compares the answers.
//!
//! A case that differs fails the test with a diff of the two answers, unless it is in
//! [`KNOWN`] with the reason the simulator keeps that difference (docs/development.md,
//! "Simulated clusters", lists the same); a listed case that stops differing
//! fails too, so the list stays true. Each case runs in its own namespace; one control
//! plane and one simulated cluster serve the whole file.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::http::{Method, Request};
use common::k8s::{self, RealCluster};
use common::sim::TestCluster;
use serde_json::{Value, json};

/// Cases whose answers differ on purpose, with the reason (docs/development.md repeats them).
const KNOWN: &[(&str, &str)] = &[
    (
        "pod-admission",
        "no admission plugins: a real server's ServiceAccount admission mounts a token \
         volume, DefaultTolerationSeconds adds tolerations, Priority sets priority and \
         preemptionPolicy",
    ),
    (
        "list-whole-answer",
        "list items keep their apiVersion and kind (lists are written from each \
         object's stored bytes); a real server leaves them out, clients accept both",
    ),
    (
        "apply-keeps-a-field-another-manager-owns",
        "when an applier drops a field another applier also owns, a real server clears \
         that other manager's timestamp (which moves its entry first); the simulator \
         keeps it",
    ),
];

/// The two servers under comparison and a runtime for their clients.
struct Servers {
    runtime: tokio::runtime::Runtime,
    real: kube::Client,
    sim: kube::Client,
    _real_cluster: RealCluster,
    _sim_cluster: TestCluster,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let real_cluster = RealCluster::start();
        let sim_cluster = TestCluster::start("conformance");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (real, sim) = runtime.block_on(async {
            (
                client(real_cluster.kubeconfig()).await,
                client(&sim_cluster.kubeconfig).await,
            )
        });
        Servers {
            runtime,
            real,
            sim,
            _real_cluster: real_cluster,
            _sim_cluster: sim_cluster,
        }
    })
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// What of an answer a step compares.
#[derive(Clone)]
enum Keep {
    /// Status code and the whole (normalized) body.
    All,
    /// The status code only (a step that prepares the next).
    Code,
    /// The status code and these JSON pointers of the body.
    Only(Vec<&'static str>),
    /// The status code and a view computed from the body.
    View(fn(&Value) -> Value),
}

/// One request of a case.
#[derive(Clone)]
struct Step {
    method: Method,
    /// Path and query; `{ns}` is the case's namespace, `{name}` a captured value.
    path: String,
    content_type: Option<&'static str>,
    body: Option<String>,
    keep: Keep,
    /// Values of the raw answer kept for later steps: (name, JSON pointer).
    capture: Vec<(&'static str, &'static str)>,
    /// A watch: the body is one JSON event per line.
    watch: bool,
    /// Asks for the answer in protobuf only; the body compared is what client-go
    /// decodes from it (or its Content-Type when the answer is not protobuf).
    protobuf: bool,
    /// Repeat (on the real server only) until the answer is 200, for what its
    /// controllers do a moment after a write (a namespace's ServiceAccount, a CRD
    /// established).
    until_ok: bool,
    /// Repeat (on both servers) until the value at this JSON pointer of the answer is
    /// this one, for what the controllers of both do over time (a rollout).
    until: Option<(&'static str, Value)>,
}

fn step(method: Method, path: &str) -> Step {
    Step {
        method,
        path: path.to_string(),
        content_type: None,
        body: None,
        keep: Keep::All,
        capture: Vec::new(),
        watch: false,
        protobuf: false,
        until_ok: false,
        until: None,
    }
}

fn get(path: &str) -> Step {
    step(Method::GET, path)
}

fn with_body(method: Method, path: &str, content_type: &'static str, body: Value) -> Step {
    let mut s = step(method, path);
    s.content_type = Some(content_type);
    s.body = Some(body.to_string());
    s
}

fn post(path: &str, body: Value) -> Step {
    with_body(Method::POST, path, "application/json", body)
}

fn put(path: &str, body: Value) -> Step {
    with_body(Method::PUT, path, "application/json", body)
}

fn delete(path: &str) -> Step {
    step(Method::DELETE, path)
}

/// Server-side apply of `body` by `manager`.
fn apply(path: &str, manager: &str, body: Value) -> Step {
    let sep = if path.contains('?') { '&' } else { '?' };
    with_body(
        Method::PATCH,
        &format!("{path}{sep}fieldManager={manager}"),
        "application/apply-patch+yaml",
        body,
    )
}

fn merge(path: &str, body: Value) -> Step {
    with_body(Method::PATCH, path, "application/merge-patch+json", body)
}

fn json_patch(path: &str, body: Value) -> Step {
    with_body(Method::PATCH, path, "application/json-patch+json", body)
}

fn smp(path: &str, body: Value) -> Step {
    with_body(
        Method::PATCH,
        path,
        "application/strategic-merge-patch+json",
        body,
    )
}

/// A watch that ends after a second, so its answer is complete.
fn watch(path: &str) -> Step {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut s = get(&format!("{path}{sep}watch=true&timeoutSeconds=1"));
    s.watch = true;
    s
}

impl Step {
    fn code_only(mut self) -> Step {
        self.keep = Keep::Code;
        self
    }

    fn only(mut self, pointers: &[&'static str]) -> Step {
        self.keep = Keep::Only(pointers.to_vec());
        self
    }

    fn view(mut self, f: fn(&Value) -> Value) -> Step {
        self.keep = Keep::View(f);
        self
    }

    fn in_protobuf(mut self) -> Step {
        self.protobuf = true;
        self
    }

    fn capture(mut self, name: &'static str, pointer: &'static str) -> Step {
        self.capture.push((name, pointer));
        self
    }

    fn until_ok(mut self) -> Step {
        self.until_ok = true;
        self
    }

    /// A wait, not a comparison: repeats until the answer has `value` at `pointer`.
    fn until(mut self, pointer: &'static str, value: Value) -> Step {
        self.until = Some((pointer, value));
        self
    }
}

/// A named sequence of requests in a fresh namespace.
struct Case {
    name: &'static str,
    steps: Vec<Step>,
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case { name, steps }
}

/// The raw answer to one request.
struct Answer {
    code: u16,
    body: Value,
}

async fn send(client: &kube::Client, step: &Step, path: &str) -> Answer {
    let mut req = Request::builder().method(step.method.clone()).uri(path);
    if let Some(ct) = step.content_type {
        req = req.header("content-type", ct);
    }
    let accept = if step.protobuf {
        "application/vnd.kubernetes.protobuf"
    } else {
        "application/json"
    };
    req = req.header("accept", accept);
    let body = step.body.clone().unwrap_or_default().into_bytes();
    let req = req.body(kube::client::Body::from(body)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.send(req))
        .await
        .unwrap_or_else(|_| panic!("{} {path}: no answer within 30 s", step.method))
        .unwrap_or_else(|e| panic!("{} {path}: {e}", step.method));
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.into_body().collect_bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let body = if step.protobuf {
        if content_type == "application/vnd.kubernetes.protobuf" {
            k8s::decode_protobuf(&bytes).unwrap_or_else(|e| json!({"undecodable": e}))
        } else {
            json!({"contentType": content_type})
        }
    } else if step.watch {
        Value::Array(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!(l)))
                .collect(),
        )
    } else if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| json!(text.trim()))
    };
    Answer { code, body }
}

/// What a side answered to a case, and the values it captured.
#[derive(Default)]
struct Side {
    captured: BTreeMap<String, String>,
    answers: Vec<Value>,
}

fn fill(template: &str, ns: &str, captured: &BTreeMap<String, String>) -> String {
    let mut out = template.replace("{ns}", ns);
    for (k, v) in captured {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

async fn run_step(client: &kube::Client, step: &Step, ns: &str, side: &mut Side, real: bool) {
    let path = fill(&step.path, ns, &side.captured);
    let mut s = step.clone();
    s.body = s.body.map(|b| fill(&b, ns, &side.captured));
    let mut answer = send(client, &s, &path).await;
    if step.until_ok && real {
        let deadline = Instant::now() + Duration::from_secs(60);
        while answer.code != 200 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = send(client, &s, &path).await;
        }
    }
    if let Some((pointer, want)) = &step.until {
        let deadline = Instant::now() + Duration::from_secs(60);
        // A missing member counts as null.
        while answer.body.pointer(pointer).unwrap_or(&Value::Null) != want {
            assert!(
                Instant::now() < deadline,
                "{} {path}: {pointer} never became {want} on the {} server; last answer: {}",
                step.method,
                if real { "real" } else { "simulated" },
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = send(client, &s, &path).await;
        }
    }
    for (name, pointer) in &step.capture {
        let v = match answer.body.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        side.captured.insert(name.to_string(), v);
    }
    let mut body = answer.body;
    normalize(&mut body);
    let kept = match &step.keep {
        Keep::All => body,
        Keep::Code => Value::Null,
        Keep::Only(pointers) => Value::Object(
            pointers
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        body.pointer(p).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect(),
        ),
        Keep::View(f) => f(&body),
    };
    if step.until_ok || step.until.is_some() {
        // A wait for the servers' controllers, not a comparison.
        return;
    }
    let mut record =
        json!({"request": format!("{} {}", step.method, step.path), "code": answer.code});
    if !kept.is_null() {
        record["body"] = kept;
    }
    side.answers.push(record);
}

/// Managers that write on their own in a real cluster (controllers, the kubelet; the
/// test control plane runs its controllers in one program called `cplane`): their
/// entries come and go with timing, so neither side's are compared.
const BACKGROUND_MANAGERS: &[&str] = &["kube-controller-manager", "cplane", "kubelet"];

/// Replaces what two correct servers may legitimately answer differently.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match (k.as_str(), &*val) {
                    ("uid", Value::String(_)) => *val = json!("<uid>"),
                    ("resourceVersion", Value::String(s)) if !s.is_empty() => *val = json!("<rv>"),
                    (
                        "creationTimestamp" | "deletionTimestamp" | "time" | "lastTransitionTime"
                        | "lastUpdateTime",
                        Value::String(_),
                    ) => *val = json!("<time>"),
                    ("clusterIP", Value::String(s)) if s != "None" => *val = json!("<ip>"),
                    ("clusterIPs", Value::Array(a)) if a.iter().all(|x| x != "None") => {
                        *val = json!(["<ip>"])
                    }
                    ("nodePort", Value::Number(_)) => *val = json!("<port>"),
                    ("continue", Value::String(s)) if !s.is_empty() => *val = json!("<continue>"),
                    ("message", Value::String(s)) if s.starts_with("too old resource version") => {
                        *val = json!("too old resource version: <rv>")
                    }
                    _ => normalize(val),
                }
            }
            if let Some(Value::Array(fields)) = m
                .get_mut("metadata")
                .and_then(|meta| meta.get_mut("managedFields"))
            {
                fields.retain(|e| {
                    !BACKGROUND_MANAGERS.contains(&e["manager"].as_str().unwrap_or_default())
                });
            }
            if let Some(Value::Object(notes)) = m
                .get_mut("metadata")
                .and_then(|meta| meta.get_mut("annotations"))
            {
                notes.remove("deployment.kubernetes.io/revision");
                if notes.is_empty() {
                    m["metadata"].as_object_mut().unwrap().remove("annotations");
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Runs one case on both servers, step by step; returns the diff of their answers,
/// empty when they agree.
fn run_case(c: &Case) -> String {
    let s = servers();
    let ns = format!("conf-{}", c.name);
    s.runtime.block_on(async {
        let ns_body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let create_ns = post("/api/v1/namespaces", ns_body);
        let (mut real, mut sim) = (Side::default(), Side::default());
        tokio::join!(
            run_step(&s.real, &create_ns, &ns, &mut real, true),
            run_step(&s.sim, &create_ns, &ns, &mut sim, false),
        );
        real.answers.clear();
        sim.answers.clear();
        for st in &c.steps {
            tokio::join!(
                run_step(&s.real, st, &ns, &mut real, true),
                run_step(&s.sim, st, &ns, &mut sim, false),
            );
        }
        let a = serde_json::to_string_pretty(&real.answers).unwrap();
        let b = serde_json::to_string_pretty(&sim.answers).unwrap();
        if a == b {
            return String::new();
        }
        similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(4)
            .header("real apiserver", "simulator")
            .to_string()
    })
}

/// Runs every case; fails listing each unexpected difference and each listed
/// difference that no longer shows.
fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        let diff = run_case(c);
        let known = KNOWN.iter().find(|(n, _)| *n == c.name);
        match (diff.is_empty(), known) {
            (true, None) | (false, Some(_)) => {
                if let (false, Some((_, why))) = (diff.is_empty(), known) {
                    eprintln!("case {}: known difference ({why})", c.name);
                }
            }
            (false, None) => failures.push(format!("case {}: the answers differ:\n{diff}", c.name)),
            (true, Some((_, why))) => failures.push(format!(
                "case {}: listed as a known difference ({why}) but both servers now agree: remove it from KNOWN and docs/development.md",
                c.name
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------
// Fixtures

const CM: &str = "/api/v1/namespaces/{ns}/configmaps";
const DEPLOY: &str = "/apis/apps/v1/namespaces/{ns}/deployments";

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn deployment(name: &str, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": containers}}}})
}

fn web() -> Value {
    deployment("web", json!([{"name": "web", "image": "nginx:1.27"}]))
}

/// The object without its status (which controllers of the real cluster write at
/// their own pace).
fn no_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

// ---------------------------------------------------------------------------------
// Cases

#[test]
fn server_side_apply_agrees_with_the_real_apiserver() {
    let one = format!("{CM}/one");
    check(vec![
        case(
            "apply-create",
            vec![apply(&one, "alice", configmap("one", json!({"a": "1"})))],
        ),
        case(
            "apply-update",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1"}))).code_only(),
                apply(&one, "alice", configmap("one", json!({"a": "2", "b": "3"}))),
            ],
        ),
        case(
            "apply-no-op-writes-nothing",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1"})))
                    .code_only()
                    .capture("rv", "/metadata/resourceVersion"),
                apply(&one, "alice", configmap("one", json!({"a": "1"}))),
                watch(&format!(
                    "{CM}?resourceVersion={{rv}}&fieldSelector=metadata.name%3Done"
                )),
            ],
        ),
        case(
            "apply-conflict",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1"}))).code_only(),
                apply(&one, "bob", configmap("one", json!({"a": "2", "b": "2"}))),
            ],
        ),
        case(
            "apply-force",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1", "c": "1"}))).code_only(),
                apply(
                    &format!("{one}?force=true"),
                    "bob",
                    configmap("one", json!({"a": "2"})),
                ),
            ],
        ),
        case(
            "apply-removes-a-dropped-field",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1", "b": "2"}))).code_only(),
                apply(&one, "alice", configmap("one", json!({"a": "1"}))),
            ],
        ),
        case(
            "apply-keeps-a-field-another-manager-owns",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1", "b": "2"}))).code_only(),
                apply(&one, "bob", configmap("one", json!({"b": "2"}))).code_only(),
                apply(&one, "alice", configmap("one", json!({"a": "1"}))),
            ],
        ),
        case(
            "apply-after-an-update-by-another-manager-conflicts",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1"}))).code_only(),
                merge(
                    &format!("{one}?fieldManager=bob"),
                    json!({"data": {"a": "9"}}),
                ),
                apply(&one, "alice", configmap("one", json!({"a": "1"}))),
            ],
        ),
        case(
            "apply-dry-run-stores-nothing",
            vec![
                apply(
                    &format!("{one}?dryRun=All"),
                    "alice",
                    configmap("one", json!({"a": "1"})),
                ),
                get(&one),
            ],
        ),
        case(
            "apply-deployment-leaves-defaults-unowned",
            vec![apply(&format!("{DEPLOY}/web"), "alice", web()).view(no_status)],
        ),
        case(
            "apply-deployment-change-image",
            vec![
                apply(&format!("{DEPLOY}/web"), "alice", web()).code_only(),
                apply(
                    &format!("{DEPLOY}/web"),
                    "alice",
                    deployment("web", json!([{"name": "web", "image": "nginx:1.28"}])),
                )
                .view(no_status),
            ],
        ),
        case(
            "apply-deployment-drops-a-container",
            vec![
                apply(
                    &format!("{DEPLOY}/web"),
                    "alice",
                    deployment(
                        "web",
                        json!([{"name": "web", "image": "nginx:1.27"},
                            {"name": "side", "image": "busybox:1.36"}]),
                    ),
                )
                .code_only(),
                apply(&format!("{DEPLOY}/web"), "alice", web()).view(no_status),
            ],
        ),
        case(
            "apply-on-a-kubectl-created-object-conflicts-on-defaults",
            vec![
                post(&format!("{DEPLOY}?fieldManager=kubectl-create"), web()).code_only(),
                apply(
                    &format!("{DEPLOY}/web"),
                    "alice",
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web"},
                        "spec": {"strategy": {"type": "Recreate"}, "revisionHistoryLimit": 3}}),
                ),
            ],
        ),
    ]);
}

#[test]
fn writes_and_patches_agree_with_the_real_apiserver() {
    let one = format!("{CM}/one");
    let web_path = format!("{DEPLOY}/web");
    let two = || {
        post(
            DEPLOY,
            deployment(
                "web",
                json!([{"name": "web", "image": "nginx:1.27",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "side", "image": "busybox:1.36"}]),
            ),
        )
        .code_only()
    };
    let containers = || {
        Step::only(
            get(&format!("{DEPLOY}/web")),
            &["/spec/template/spec/containers"],
        )
    };
    check(vec![
        case(
            "create-owns-every-field-it-sent-and-the-defaults",
            vec![post(&format!("{DEPLOY}?fieldManager=creator"), web()).view(no_status)],
        ),
        case(
            "create-dry-run-stores-nothing",
            vec![
                post(&format!("{CM}?dryRun=All"), configmap("one", json!({"a": "1"}))),
                get(&one),
            ],
        ),
        case(
            "update-replaces-and-takes-ownership",
            vec![
                apply(&one, "alice", configmap("one", json!({"a": "1", "b": "2"})))
                    .code_only()
                    .capture("rv", "/metadata/resourceVersion"),
                put(
                    &format!("{one}?fieldManager=bob"),
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "one", "resourceVersion": "{rv}"},
                        "data": {"a": "1", "c": "3"}}),
                ),
            ],
        ),
        case(
            "merge-patch-sets-and-removes",
            vec![
                post(CM, configmap("one", json!({"a": "1", "b": "2"}))).code_only(),
                merge(
                    &format!("{one}?fieldManager=patcher"),
                    json!({"data": {"a": null, "c": "3"}, "metadata": {"labels": {"x": "y"}}}),
                ),
            ],
        ),
        case(
            "json-patch-add-replace-remove",
            vec![
                post(CM, configmap("one", json!({"a": "1", "b": "2"}))).code_only(),
                json_patch(
                    &one,
                    json!([{"op": "add", "path": "/data/c", "value": "3"},
                        {"op": "replace", "path": "/data/a", "value": "9"},
                        {"op": "remove", "path": "/data/b"}]),
                ),
            ],
        ),
        case(
            "json-patch-failed-test-is-422",
            vec![
                post(CM, configmap("one", json!({"a": "1"}))).code_only(),
                json_patch(
                    &one,
                    json!([{"op": "test", "path": "/data/a", "value": "2"}]),
                ),
            ],
        ),
        case(
            "smp-merges-containers-by-name",
            vec![
                two(),
                smp(
                    &web_path,
                    json!({"spec": {"template": {"spec": {"containers": [
                        {"name": "side", "image": "busybox:1.37"},
                        {"name": "new", "image": "redis:7"}]}}}}),
                )
                .only(&["/spec/template/spec/containers"]),
            ],
        ),
        case(
            "smp-set-element-order",
            vec![
                two(),
                smp(
                    &web_path,
                    json!({"spec": {"template": {"spec": {
                        "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
                        "containers": [{"name": "web", "image": "nginx:1.28"}]}}}}),
                )
                .only(&["/spec/template/spec/containers"]),
            ],
        ),
        case(
            "smp-kubectl-apply-image-change",
            vec![
                // With annotations from the start, whether the real deployment
                // controller has added its own by the time of the patch does not show.
                post(DEPLOY, {
                    let mut d = web();
                    d["metadata"]["annotations"] = json!({"team": "shop"});
                    d
                })
                .code_only(),
                smp(
                    &web_path,
                    json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                        "spec": {"template": {"spec": {
                        "$setElementOrder/containers": [{"name": "web"}],
                        "containers": [{"name": "web", "image": "nginx:1.28"}]}}}}),
                )
                .view(no_status),
            ],
        ),
        case(
            "smp-delete-and-replace-directives-in-lists",
            vec![
                two(),
                smp(
                    &web_path,
                    json!({"spec": {"template": {"spec": {"containers": [
                        {"name": "side", "$patch": "delete"},
                        {"name": "web", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}]}]}}}}),
                )
                .only(&["/spec/template/spec/containers"]),
                smp(
                    &web_path,
                    json!({"spec": {"template": {"spec": {"containers": [
                        {"name": "only", "image": "redis:7"}, {"$patch": "replace"}]}}}}),
                )
                .only(&["/spec/template/spec/containers"]),
            ],
        ),
        case(
            "smp-retain-keys",
            vec![
                post(DEPLOY, web()).code_only(),
                smp(
                    &web_path,
                    json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                )
                .only(&["/spec/strategy"]),
            ],
        ),
        case(
            "smp-map-directives",
            vec![
                post(
                    CM,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "one", "labels": {"a": "1", "b": "2"},
                            "annotations": {"n": "1"}},
                        "data": {"x": "1"}}),
                )
                .code_only(),
                smp(
                    &one,
                    json!({"metadata": {"labels": {"$patch": "replace", "c": "3"},
                        "annotations": {"$patch": "delete"}}}),
                )
                .only(&["/metadata/labels", "/metadata/annotations"]),
            ],
        ),
        case(
            "smp-delete-from-primitive-list",
            vec![
                post(
                    CM,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "one", "finalizers": ["a.example.com/x", "b.example.com/y"]}}),
                )
                .code_only(),
                smp(
                    &one,
                    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"],
                        "finalizers": ["c.example.com/z"]}}),
                )
                .only(&["/metadata/finalizers"]),
                merge(&one, json!({"metadata": {"finalizers": null}})).code_only(),
            ],
        ),
        case(
            "smp-env-merges-by-name-in-place",
            vec![
                two(),
                smp(
                    &web_path,
                    json!({"spec": {"template": {"spec": {"containers": [
                        {"name": "web", "env": [{"name": "A", "value": "changed"}]}]}}}}),
                )
                .code_only(),
                containers(),
            ],
        ),
        case(
            "smp-on-a-custom-resource-is-415",
            vec![smp(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nothing.example.com",
                json!({"metadata": {"labels": {"a": "b"}}}),
            )],
        ),
    ]);
}

#[test]
fn defaults_agree_with_the_real_apiserver() {
    check(vec![
        case(
            "defaults-deployment",
            vec![post(DEPLOY, web()).view(no_status)],
        ),
        case(
            "defaults-deployment-explicit-values-stay",
            vec![post(
                DEPLOY,
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 3, "strategy": {"type": "Recreate"},
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"restartPolicy": "Always", "containers": [
                                {"name": "web", "image": "nginx", "imagePullPolicy": "Never",
                                 "ports": [{"containerPort": 80, "name": "http"}]}]}}}}),
            )
            .view(no_status)],
        ),
        case(
            "defaults-pod-spec",
            vec![
                get("/api/v1/namespaces/{ns}/serviceaccounts/default")
                    .until_ok()
                    .code_only(),
                post(
                    "/api/v1/namespaces/{ns}/pods",
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "a", "image": "nginx:latest"},
                            {"name": "b", "image": "registry.example.com:5000/app"},
                            {"name": "c", "image": "nginx:1.27",
                             "ports": [{"containerPort": 80}]}]}}),
                )
                .view(pod_defaults),
            ],
        ),
        case(
            "pod-admission",
            vec![
                get("/api/v1/namespaces/{ns}/serviceaccounts/default")
                    .until_ok()
                    .code_only(),
                post(
                    "/api/v1/namespaces/{ns}/pods",
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "a", "image": "nginx:1.27"}]}}),
                ),
            ],
        ),
        case(
            "defaults-service",
            vec![post(
                "/api/v1/namespaces/{ns}/services",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"name": "a", "port": 80},
                        {"name": "b", "port": 81, "targetPort": "http", "protocol": "UDP"}]}}),
            )],
        ),
        case(
            "service-ports-need-names-when-several",
            vec![post(
                "/api/v1/namespaces/{ns}/services",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"name": "b", "port": 81}]}}),
            )],
        ),
        case(
            "defaults-namespace",
            vec![
                post(
                    "/api/v1/namespaces",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "conf-defaults-namespace-x"}}),
                ),
                delete("/api/v1/namespaces/conf-defaults-namespace-x").view(no_status),
            ],
        ),
        case(
            "defaults-service-nodeport-and-headless",
            vec![
                post(
                    "/api/v1/namespaces/{ns}/services",
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
                        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
                ),
                post(
                    "/api/v1/namespaces/{ns}/services",
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless"},
                        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
                ),
            ],
        ),
        case(
            "defaults-statefulset",
            vec![post(
                "/apis/apps/v1/namespaces/{ns}/statefulsets",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}},
                            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}}),
            )
            .view(no_status)],
        ),
        case(
            "defaults-daemonset",
            vec![post(
                "/apis/apps/v1/namespaces/{ns}/daemonsets",
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                    "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                            "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}}),
            )
            .view(no_status)],
        ),
        case(
            "defaults-job",
            vec![post(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
                    "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "once", "image": "busybox:1.36"}]}}}}),
            )
            .view(job_view)],
        ),
        case(
            "defaults-cronjob",
            vec![post(
                "/apis/batch/v1/namespaces/{ns}/cronjobs",
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                    "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "tick", "image": "busybox:1.36"}]}}}}}}),
            )
            .view(no_status)],
        ),
        case(
            "defaults-configmap-and-secret-add-nothing",
            vec![
                post(CM, configmap("one", json!({"a": "1"}))),
                post(
                    "/api/v1/namespaces/{ns}/secrets",
                    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                        "stringData": {"a": "1"}}),
                ),
            ],
        ),
    ]);
}

/// The defaulted fields of a Pod, without what the real server's admission plugins add
/// (the ServiceAccount token volume and its mounts).
fn pod_defaults(v: &Value) -> Value {
    let mut spec = v["spec"].clone();
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        if let Some(m) = c.as_object_mut() {
            m.remove("volumeMounts");
        }
    }
    let mut out = json!({"status": v["status"]});
    for f in [
        "containers",
        "restartPolicy",
        "dnsPolicy",
        "schedulerName",
        "securityContext",
        "terminationGracePeriodSeconds",
        "enableServiceLinks",
    ] {
        out[f] = spec[f].take();
    }
    out
}

/// A Job without its status and the selector and labels the apiserver generates from
/// its uid (different on each server).
fn job_view(v: &Value) -> Value {
    let mut v = no_status(v);
    for labels in [
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
        "/metadata/labels",
    ] {
        if let Some(Value::Object(m)) = v.pointer_mut(labels) {
            for (k, val) in m.iter_mut() {
                if k.contains("controller-uid") {
                    *val = json!("<uid>");
                }
            }
        }
    }
    v
}

#[test]
fn errors_agree_with_the_real_apiserver() {
    let one = format!("{CM}/one");
    check(vec![
        case("get-missing-is-404-with-details", vec![get(&one)]),
        case(
            "get-missing-deployment-is-404-with-group",
            vec![get(&format!("{DEPLOY}/none"))],
        ),
        case(
            "patch-missing-is-404",
            vec![merge(&one, json!({"data": {"a": "1"}}))],
        ),
        case(
            "create-existing-is-409",
            vec![
                post(CM, configmap("one", json!({}))).code_only(),
                post(CM, configmap("one", json!({}))),
            ],
        ),
        case(
            "update-stale-is-409",
            vec![
                post(CM, configmap("one", json!({"a": "1"})))
                    .code_only()
                    .capture("rv", "/metadata/resourceVersion"),
                merge(&one, json!({"data": {"a": "2"}})).code_only(),
                put(
                    &one,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "one", "resourceVersion": "{rv}"}, "data": {"a": "3"}}),
                ),
            ],
        ),
        case(
            "scale-with-a-stale-resource-version-is-409",
            vec![
                post(DEPLOY, web())
                    .code_only()
                    .capture("rv", "/metadata/resourceVersion"),
                merge(&format!("{DEPLOY}/web"), json!({"metadata": {"labels": {"a": "b"}}}))
                    .code_only(),
                put(
                    &format!("{DEPLOY}/web/scale"),
                    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                        "metadata": {"name": "web", "resourceVersion": "{rv}"},
                        "spec": {"replicas": 3}}),
                ),
            ],
        ),
        case(
            "invalid-name-is-422",
            vec![post(CM, configmap("Bad_Name", json!({})))],
        ),
        case(
            "invalid-deployment-is-422-with-causes",
            vec![post(
                DEPLOY,
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "other"}},
                            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
            )],
        ),
        case(
            "unknown-field-strict-is-400",
            vec![post(
                &format!("{CM}?fieldValidation=Strict"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"},
                    "bogus": 1}),
            )],
        ),
        case(
            "delete-answers-with-a-status",
            vec![
                post(CM, configmap("one", json!({}))).code_only(),
                delete(&one),
                delete(&one),
            ],
        ),
        case(
            "delete-of-other-kinds",
            vec![
                post(DEPLOY, web()).code_only(),
                delete(&format!("{DEPLOY}/web")).view(no_status),
                post(
                    "/api/v1/namespaces/{ns}/serviceaccounts",
                    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}),
                )
                .code_only(),
                delete("/api/v1/namespaces/{ns}/serviceaccounts/sa"),
                post(
                    "/api/v1/namespaces/{ns}/services",
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                        "spec": {"ports": [{"port": 80}]}}),
                )
                .code_only(),
                delete("/api/v1/namespaces/{ns}/services/svc"),
            ],
        ),
        case(
            "delete-of-an-object-with-finalizers-marks-it",
            vec![
                post(
                    CM,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "one", "finalizers": ["example.com/hold"]}}),
                )
                .code_only(),
                delete(&one),
                merge(&one, json!({"metadata": {"finalizers": null}})),
                get(&one),
            ],
        ),
        case(
            "unsupported-field-selector-is-400",
            vec![get(&format!("{CM}?fieldSelector=data.a%3D1"))],
        ),
    ]);
}

#[test]
fn lists_and_watches_agree_with_the_real_apiserver() {
    let labelled = |name: &str, tier: &str| {
        post(
            CM,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"tier": tier}}}),
        )
        .code_only()
    };
    let names = |v: &Value| {
        json!(
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i["metadata"]["name"].clone())
                .collect::<Vec<_>>()
        )
    };
    let events = |v: &Value| {
        json!(
            v.as_array()
                .into_iter()
                .flatten()
                .map(|e| json!([
                    e["type"],
                    e["object"]["metadata"]["name"],
                    e["object"]["data"]
                ]))
                .collect::<Vec<_>>()
        )
    };
    check(vec![
        case(
            "list-label-selector",
            vec![
                labelled("a", "front"),
                labelled("b", "back"),
                labelled("c", "db"),
                get(&format!("{CM}?labelSelector=tier+in+(front,back),tier!=back")).view(names),
                get(&format!("{CM}?labelSelector=tier")).view(names),
                get(&format!("{CM}?labelSelector=!tier&fieldSelector=metadata.name!%3Dkube-root-ca.crt"))
                    .view(names),
            ],
        ),
        case(
            "list-field-selector",
            vec![
                labelled("a", "front"),
                labelled("b", "back"),
                get(&format!("{CM}?fieldSelector=metadata.name%3Db")).view(names),
                get(&format!("{CM}?fieldSelector=metadata.name!%3Db,metadata.name!%3Dkube-root-ca.crt")).view(names),
            ],
        ),
        case(
            "namespace-controllers-fill-a-new-namespace",
            vec![
                get("/api/v1/namespaces/{ns}/serviceaccounts/default")
                    .until_ok()
                    .code_only(),
                get("/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
                    .until_ok()
                    .code_only(),
                get("/api/v1/namespaces/{ns}/serviceaccounts").view(names),
                get(CM).view(names),
            ],
        ),
        case(
            "list-whole-answer",
            vec![labelled("a", "front"), get(&format!("{CM}?labelSelector=tier"))],
        ),
        case(
            "list-limit-and-continue",
            vec![
                labelled("a", "x"),
                labelled("b", "x"),
                labelled("c", "x"),
                get(&format!("{CM}?labelSelector=tier&limit=2"))
                    .capture("next", "/metadata/continue")
                    .view(|v| json!({"names": v["items"].as_array().map(|a| a.len()), "metadata": v["metadata"]})),
                get(&format!("{CM}?labelSelector=tier&limit=2&continue={{next}}")).view(names),
            ],
        ),
        case(
            "watch-from-a-resource-version",
            vec![
                labelled("a", "x").capture("rv", "/metadata/resourceVersion"),
                merge(&format!("{CM}/a"), json!({"data": {"k": "v"}})).code_only(),
                labelled("b", "x"),
                delete(&format!("{CM}/a")).code_only(),
                watch(&format!("{CM}?resourceVersion={{rv}}&labelSelector=tier")).view(events),
            ],
        ),
        case(
            "watch-with-a-label-selector-sees-objects-leave",
            vec![
                labelled("a", "x").capture("rv", "/metadata/resourceVersion"),
                merge(&format!("{CM}/a"), json!({"metadata": {"labels": {"tier": "y"}}}))
                    .code_only(),
                merge(&format!("{CM}/a"), json!({"metadata": {"labels": {"tier": "x"}}}))
                    .code_only(),
                watch(&format!("{CM}?resourceVersion={{rv}}&labelSelector=tier%3Dx")).view(events),
            ],
        ),
        case(
            "watch-whole-events",
            vec![
                labelled("a", "x").capture("rv", "/metadata/resourceVersion"),
                merge(&format!("{CM}/a"), json!({"data": {"k": "v"}})).code_only(),
                watch(&format!("{CM}?resourceVersion={{rv}}&labelSelector=tier")),
            ],
        ),
    ]);
}

/// Entries of a discovery document's `resources` for these names.
fn resources_named(v: &Value, names: &[&str]) -> Value {
    let mut out: Vec<Value> = v["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| names.contains(&r["name"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    for r in &mut out {
        if let Some(Value::Array(verbs)) = r.get_mut("verbs") {
            verbs.sort_by_key(|x| x.to_string());
        }
        if let Some(m) = r.as_object_mut() {
            m.remove("storageVersionHash");
        }
    }
    json!({"kind": v["kind"], "groupVersion": v["groupVersion"], "resources": out})
}

#[test]
fn discovery_agrees_with_the_real_apiserver() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.conf.example.com"},
        "spec": {"group": "conf.example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget",
                "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}});
    check(vec![
        case(
            "discovery-core-v1",
            vec![get("/api/v1").view(|v| {
                resources_named(
                    v,
                    &[
                        "configmaps",
                        "namespaces",
                        "pods",
                        "pods/status",
                        "secrets",
                        "services",
                        "serviceaccounts",
                    ],
                )
            })],
        ),
        case(
            "discovery-apps-v1",
            vec![get("/apis/apps/v1").view(|v| {
                resources_named(
                    v,
                    &[
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "statefulsets",
                        "daemonsets",
                    ],
                )
            })],
        ),
        case(
            "discovery-group-apps",
            vec![get("/apis/apps")],
        ),
        case(
            "discovery-of-a-new-crd",
            vec![
                post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).code_only(),
                get("/apis/conf.example.com/v1").until_ok(),
                get("/apis/conf.example.com/v1").view(|v| resources_named(v, &["widgets", "widgets/status"])),
                post(
                    "/apis/conf.example.com/v1/namespaces/{ns}/widgets",
                    json!({"apiVersion": "conf.example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w"}, "spec": {"size": 2}}),
                ),
                delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.conf.example.com")
                    .code_only(),
            ],
        ),
    ]);
}

/// `text` with each name generated from `web` (`web-<pod-template-hash>`, and the
/// Pods' and slices' `web-<hash>-<suffix>`) written `web-<name>`: the hashes and random
/// suffixes differ between two servers.
fn unhash(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("web-") {
        out.push_str(&rest[..i]);
        out.push_str("web-<name>");
        rest = rest[i + 4..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '-');
    }
    out.push_str(rest);
    out
}

fn unhash_value(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(unhash(s)),
        Value::Array(a) => Value::Array(a.iter().map(unhash_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if k == "pod-template-hash" {
                        json!("<hash>")
                    } else {
                        unhash_value(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What the controllers made of a list: per item, the fields both servers' controllers
/// write, names unhashed.
fn made(v: &Value, fields: &[&str]) -> Value {
    let items: Vec<Value> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let mut out = serde_json::Map::new();
            for f in fields {
                out.insert(f.to_string(), i.pointer(f).cloned().unwrap_or(Value::Null));
            }
            unhash_value(&Value::Object(out))
        })
        .collect();
    // In a stable order: generated names, and so the order of a list, differ.
    let mut items = items;
    items.sort_by_key(|i| i.to_string());
    json!(items)
}

/// The Deployment, ReplicaSet and garbage-collector controllers against the real ones
/// (the real control plane in the tests runs no endpoint controllers, so Endpoints and
/// EndpointSlices are checked with kubectl and the Python client only).
#[test]
fn controllers_agree_with_the_real_control_plane() {
    let deploy = format!("{DEPLOY}/web");
    let rs_list = "/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=app%3Dweb";
    let pod_list = "/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb";
    let rolled_out = || get(&deploy).until("/status/availableReplicas", json!(1));
    check(vec![
        case(
            "controllers-make-a-replicaset-and-pods",
            vec![
                post(DEPLOY, web()).code_only(),
                rolled_out(),
                get(rs_list).view(|v| {
                    made(v, &["/metadata/name", "/metadata/labels", "/metadata/annotations",
                        "/metadata/ownerReferences", "/spec", "/status"])
                }),
                get(pod_list).view(|v| {
                    made(v, &["/metadata/generateName", "/metadata/labels", "/metadata/ownerReferences",
                        "/spec/containers/0/image", "/status/phase"])
                }),
                get(&deploy).view(|v| {
                    let mut status = v["status"].clone();
                    for c in status["conditions"].as_array_mut().into_iter().flatten() {
                        c.as_object_mut().map(|m| m.remove("lastUpdateTime"));
                    }
                    unhash_value(&json!({"annotations": v["metadata"]["annotations"], "status": status}))
                }),
            ],
        ),
        case(
            "controllers-roll-out-a-new-template",
            vec![
                post(DEPLOY, web()).code_only(),
                rolled_out(),
                smp(&deploy, json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}))
                    .code_only(),
                get(&deploy).until("/status/observedGeneration", json!(2)).code_only(),
                get(&deploy).until("/status/updatedReplicas", json!(1)).code_only(),
                get(&deploy).until("/status/replicas", json!(1)).code_only(),
                get(rs_list).view(|v| made(v, &["/metadata/annotations", "/spec/replicas", "/spec/template/spec/containers/0/image"])),
            ],
        ),
        case(
            "a-new-workload-has-an-empty-status",
            vec![
                post(DEPLOY, web()).only(&["/status"]),
                post(
                    "/apis/apps/v1/namespaces/{ns}/replicasets",
                    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
                        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "rs"}},
                            "template": {"metadata": {"labels": {"app": "rs"}},
                                "spec": {"containers": [{"name": "a", "image": "nginx:1.27"}]}}}}),
                )
                .only(&["/status"]),
                post(
                    "/apis/batch/v1/namespaces/{ns}/cronjobs",
                    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                        "spec": {"schedule": "*/5 * * * *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "tick", "image": "busybox:1.36"}]}}}}}}),
                )
                .only(&["/status"]),
                post(
                    "/apis/apps/v1/namespaces/{ns}/statefulsets",
                    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                        "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                            "template": {"metadata": {"labels": {"app": "db"}},
                                "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}}),
                )
                .only(&["/status"]),
                post(
                    "/apis/apps/v1/namespaces/{ns}/daemonsets",
                    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                            "template": {"metadata": {"labels": {"app": "agent"}},
                                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}}),
                )
                .only(&["/status"]),
                post(
                    "/apis/batch/v1/namespaces/{ns}/jobs",
                    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
                        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                            "containers": [{"name": "once", "image": "busybox:1.36"}]}}}}),
                )
                .only(&["/status"]),
            ],
        ),
        case(
            "garbage-collector-orphans-a-replicaset",
            vec![
                post(DEPLOY, web()).code_only(),
                rolled_out(),
                with_body(Method::DELETE, &deploy, "application/json",
                    json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}))
                    .code_only(),
                get(rs_list).until("/items/0/metadata/ownerReferences", Value::Null).code_only(),
                get(&deploy).code_only().until("/code", json!(404)),
                get(rs_list).view(|v| made(v, &["/metadata/name", "/metadata/ownerReferences", "/spec/replicas"])),
                get(pod_list).view(|v| made(v, &["/metadata/ownerReferences/0/kind", "/status/phase"])),
            ],
        ),
    ]);
}

/// A Service's node ports as an update of its type moves them, and a foreground
/// deletion through the garbage collector.
#[test]
fn node_ports_and_foreground_deletion_agree_with_the_real_control_plane() {
    let svc = "/api/v1/namespaces/{ns}/services/edge";
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge"},
        "spec": {"selector": {"app": "edge"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let deploy = format!("{DEPLOY}/web");
    let rs_list = "/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=app%3Dweb";
    let pod_list = "/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb";
    check(vec![
        case(
            "an-update-allocates-and-releases-node-ports",
            vec![
                post("/api/v1/namespaces/{ns}/services", service).code_only(),
                merge(svc, json!({"spec": {"type": "NodePort"}})).only(&["/spec/type", "/spec/ports"]),
                merge(svc, json!({"spec": {"type": "LoadBalancer"}}))
                    .only(&["/spec/type", "/spec/ports", "/spec/allocateLoadBalancerNodePorts"]),
                merge(svc, json!({"spec": {"type": "ClusterIP"}})).only(&["/spec/type", "/spec/ports"]),
            ],
        ),
        case(
            "garbage-collector-deletes-in-the-foreground",
            vec![
                post(DEPLOY, web()).code_only(),
                get(&deploy).until("/status/availableReplicas", json!(1)).code_only(),
                with_body(Method::DELETE, &deploy, "application/json",
                    json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}))
                    .only(&["/kind", "/metadata/finalizers", "/metadata/deletionTimestamp",
                        "/metadata/deletionGracePeriodSeconds"]),
                get(&deploy).code_only().until("/code", json!(404)),
                get(&deploy).only(&["/code", "/reason"]),
                get(rs_list).view(|v| json!(v["items"])),
                get(pod_list).view(|v| json!(v["items"])),
            ],
        ),
        case(
            "a-deployment-adopts-its-orphaned-replicaset",
            vec![
                post(DEPLOY, web()).code_only(),
                get(&deploy).until("/status/availableReplicas", json!(1)).code_only(),
                get(pod_list).code_only().capture("pod", "/items/0/metadata/name"),
                with_body(Method::DELETE, &deploy, "application/json",
                    json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}))
                    .code_only(),
                get(rs_list).until("/items/0/metadata/ownerReferences", Value::Null).code_only(),
                get(&deploy).code_only().until("/code", json!(404)),
                post(DEPLOY, web()).code_only(),
                get(rs_list).until("/items/0/metadata/ownerReferences/0/kind", json!("Deployment")).code_only(),
                get(&deploy).until("/status/availableReplicas", json!(1)).code_only(),
                get(rs_list).view(|v| made(v, &["/metadata/ownerReferences/0/kind", "/metadata/ownerReferences/0/controller", "/spec/replicas"])),
                get("/api/v1/namespaces/{ns}/pods/{pod}").only(&["/metadata/ownerReferences/0/kind", "/status/phase"]),
            ],
        ),
    ]);
}

#[test]
fn protobuf_answers_agree_with_the_real_apiserver() {
    let one = format!("{CM}/one");
    let svc = "/api/v1/namespaces/{ns}/services";
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles";
    check(vec![
        case(
            "protobuf-configmap-verbs",
            vec![
                post(CM, configmap("one", json!({"a": "1"}))).in_protobuf(),
                get(&one).in_protobuf(),
                merge(&one, json!({"data": {"b": "2"}})).in_protobuf(),
                put(
                    &one,
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"},
                        "data": {"c": "3"}}),
                )
                .in_protobuf(),
                get(&format!("{CM}?fieldSelector=metadata.name%3Done")).in_protobuf(),
                delete(&one).in_protobuf(),
            ],
        ),
        case(
            "protobuf-deployment",
            vec![
                post(DEPLOY, web()).in_protobuf().view(no_status),
                get(&format!("{DEPLOY}/web")).in_protobuf().view(no_status),
                get(DEPLOY).in_protobuf().view(|v| {
                    let mut v = v.clone();
                    if let Some(Value::Array(items)) = v.get_mut("items") {
                        items.iter_mut().for_each(|i| *i = no_status(i));
                    }
                    v
                }),
            ],
        ),
        case(
            "protobuf-service-secret-role",
            vec![
                post(
                    svc,
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                        "spec": {"selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
                )
                .in_protobuf(),
                post(
                    "/api/v1/namespaces/{ns}/secrets",
                    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                        "stringData": {"token": "s3cret"}}),
                )
                .in_protobuf(),
                post(
                    roles,
                    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": {"name": "reader"},
                        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
                )
                .in_protobuf(),
            ],
        ),
        case(
            "protobuf-statefulset-daemonset-claim",
            vec![
                post(
                    "/apis/apps/v1/namespaces/{ns}/statefulsets",
                    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                        "spec": {"replicas": 0, "serviceName": "db",
                            "selector": {"matchLabels": {"app": "db"}},
                            "template": {"metadata": {"labels": {"app": "db"}},
                                "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                            "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": "data"},
                                "spec": {"accessModes": ["ReadWriteOnce"],
                                    "resources": {"requests": {"storage": "1Gi"}}}}]}}),
                )
                .in_protobuf()
                // A real server defaults a claim template's status to Pending; the
                // simulator does not (in JSON alike).
                .view(|v| {
                    let mut v = no_status(v);
                    if let Some(t) = v.pointer_mut("/spec/volumeClaimTemplates/0") {
                        t.as_object_mut().map(|m| m.remove("status"));
                    }
                    v
                }),
                post(
                    "/apis/apps/v1/namespaces/{ns}/daemonsets",
                    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                            "template": {"metadata": {"labels": {"app": "agent"}},
                                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}}),
                )
                .in_protobuf()
                .view(no_status),
                post(
                    "/api/v1/namespaces/{ns}/persistentvolumeclaims",
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                        "spec": {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}}}}),
                )
                .in_protobuf()
                // Without admission plugins the simulator adds no pvc-protection
                // finalizer (in JSON alike).
                .view(|v| {
                    let mut v = no_status(v);
                    v["metadata"].as_object_mut().map(|m| m.remove("finalizers"));
                    v
                }),
            ],
        ),
        case(
            "protobuf-statuses-the-controllers-write",
            vec![
                post(DEPLOY, web()).code_only(),
                get(&format!("{DEPLOY}/web")).until("/status/availableReplicas", json!(1)),
                get(&format!("{DEPLOY}/web")).in_protobuf().view(|v| {
                    let mut status = v["status"].clone();
                    for c in status["conditions"].as_array_mut().into_iter().flatten() {
                        c.as_object_mut().map(|m| m.remove("lastUpdateTime"));
                    }
                    unhash_value(&status)
                }),
                get("/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=app%3Dweb")
                    .in_protobuf()
                    .view(|v| made(v, &["/metadata/name", "/spec/replicas", "/status"])),
                get("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")
                    .in_protobuf()
                    .view(|v| {
                        made(
                            v,
                            &[
                                "/status/phase",
                                "/status/qosClass",
                                "/status/containerStatuses/0/ready",
                                "/status/containerStatuses/0/name",
                            ],
                        )
                    }),
            ],
        ),
        case(
            "protobuf-errors-are-status-messages",
            vec![
                get(&one).in_protobuf(),
                post(CM, configmap("Bad_Name", json!({}))).in_protobuf(),
                post(CM, configmap("one", json!({}))).code_only(),
                post(CM, configmap("one", json!({}))).in_protobuf(),
            ],
        ),
    ]);
}

#[test]
fn typed_go_clients_in_protobuf_agree_with_the_real_apiserver() {
    let s = servers();
    let ns = "conf-go-typed-clients";
    s.runtime.block_on(async {
        let ns_body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let create_ns = post("/api/v1/namespaces", ns_body);
        let (mut real, mut sim) = (Side::default(), Side::default());
        tokio::join!(
            run_step(&s.real, &create_ns, ns, &mut real, true),
            run_step(&s.sim, &create_ns, ns, &mut sim, false),
        );
    });
    let run = |kubeconfig: &std::path::Path| {
        let out = std::process::Command::new(k8s::protoclient())
            .arg("run")
            .arg(kubeconfig)
            .arg(ns)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let real = run(s._real_cluster.kubeconfig());
    let sim = run(&s._sim_cluster.kubeconfig);
    assert!(
        real.0,
        "the typed clients failed on the real server:\n{}{}",
        real.1, real.2
    );
    assert!(
        sim.0,
        "the typed clients failed on the simulator:\n{}{}",
        sim.1, sim.2
    );
    // Every answer was protobuf (the watch's in its stream form), and client-go read
    // the same from both.
    assert!(
        sim.1.contains(
            r#"{"result":["application/vnd.kubernetes.protobuf","application/vnd.kubernetes.protobuf;stream=watch"],"step":"content types"}"#
        ),
        "{}",
        sim.1
    );
    if real.1 != sim.1 {
        panic!(
            "{}",
            similar::TextDiff::from_lines(&real.1, &sim.1)
                .unified_diff()
                .header("real apiserver", "simulator")
        );
    }
}

/// The merge keys and strategies of an OpenAPI v2 document's definitions that
/// client-side `kubectl apply` reads for the kinds it patches most, by
/// `definition.property`.
fn patch_extensions(doc: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for def in [
        "io.k8s.api.core.v1.PodSpec",
        "io.k8s.api.core.v1.Container",
        "io.k8s.api.core.v1.ServiceSpec",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.api.apps.v1.DeploymentSpec",
        "io.k8s.api.apps.v1.DeploymentStatus",
    ] {
        for (prop, schema) in doc["definitions"][def]["properties"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if prop == "evictionResponders" {
                // Newer than the k8s-openapi types the simulator's schemas come from.
                continue;
            }
            let strategy = schema["x-kubernetes-patch-strategy"].as_str().unwrap_or("");
            let key = &schema["x-kubernetes-patch-merge-key"];
            if strategy.contains("merge") || !key.is_null() {
                out.insert(
                    format!("{def}.{prop}"),
                    json!({"merge": strategy.contains("merge"), "key": key}),
                );
            }
        }
    }
    json!({
        "gvk": doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        "mergedLists": out,
    })
}

#[test]
fn openapi_v2_agrees_with_the_real_apiserver() {
    check(vec![case(
        "openapi-v2-merge-keys",
        vec![get("/openapi/v2").view(patch_extensions)],
    )]);
}

#[test]
fn explain_from_openapi_v2_agrees_with_the_real_apiserver() {
    let s = servers();
    let mut diffs = Vec::new();
    for field in [
        "deployment.spec.strategy",
        "service.spec.ports",
        "configmap",
        "pod.spec.containers.ports",
    ] {
        let args = ["explain", field, "--output=plaintext-openapiv2"];
        // The k8s-openapi descriptions the simulator's schemas come from carry no
        // "Possible enum values" notes (docs/development.md lists this difference).
        let real = without_enum_notes(&s._real_cluster.kubectl_ok(&args));
        let sim = s._sim_cluster.kubectl_ok(&args);
        if real.trim_end() != sim.trim_end() {
            diffs.push(
                similar::TextDiff::from_lines(&real, &sim)
                    .unified_diff()
                    .header("real apiserver", "simulator")
                    .to_string(),
            );
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `kubectl explain` output without its "Possible enum values:" paragraphs.
fn without_enum_notes(text: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.trim() == "Possible enum values:" {
            skipping = true;
            continue;
        }
        if skipping && (line.trim().is_empty() || !line.starts_with("     ")) {
            skipping = false;
            if line.trim().is_empty() {
                continue;
            }
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}
