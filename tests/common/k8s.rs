//! A real Kubernetes control plane for tests (`tests/k8s/up`): etcd, kube-apiserver and
//! kube-controller-manager built from the pinned `k8s.io/kubernetes` Go module, and a
//! fake kubelet that binds Pods and reports them Ready (never for images tagged
//! `broken`). The first use builds it (Go is required: a missing toolchain fails the
//! test with the reason, it never skips); later uses start it in seconds.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the first build of the control plane may take (about 30 minutes on a busy
/// 2-core machine; seconds once cached).
const BUILD_LIMIT: Duration = Duration::from_secs(60 * 60);
/// How long a built control plane may take to answer and run its controllers.
const START_LIMIT: Duration = Duration::from_secs(240);

/// One running control plane; stopped (SIGTERM, then waited for) when dropped, or when
/// the test process exits, whichever comes first.
pub struct RealCluster {
    child: Child,
    // Held open for the control plane's life: its end of file stops it even when this
    // value is never dropped (a `static`).
    _stdin: ChildStdin,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

fn up_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/up")
}

/// Fails with a clear message when Go is missing.
pub fn require_go() {
    let found = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the real-cluster tests build kube-apiserver and kube-controller-manager from Go \
         sources (tests/k8s) and `go` is not on PATH: install Go 1.26 or newer \
         (https://go.dev/dl/) and re-run"
    );
}

/// Builds the control plane unless the build for the current sources is cached;
/// returns the binary's path.
pub fn build() -> PathBuf {
    require_go();
    let started = Instant::now();
    let mut cmd = Command::new(up_script());
    cmd.arg("--build");
    let out = output_within(cmd, BUILD_LIMIT, "tests/k8s/up --build");
    assert!(
        out.status.success(),
        "building the control plane failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if started.elapsed() > Duration::from_secs(10) {
        eprintln!(
            "built the real control plane in {:?}",
            started.elapsed().as_secs()
        );
    }
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl RealCluster {
    /// Builds if needed and starts a control plane; returns once it answers and its
    /// controllers run. Pods become Ready 2 seconds after they are bound.
    pub fn start() -> RealCluster {
        build();
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/k8s/runs");
        std::fs::create_dir_all(&base).expect("mkdir target/k8s/runs");
        forget_old_runs(&base);
        let dir = tempfile::Builder::new()
            .prefix("cplane-")
            .tempdir_in(&base)
            .expect("run dir")
            .keep();
        let mut child = Command::new(up_script())
            .arg(&dir)
            .arg("--pod-ready-after=2s")
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tests/k8s/up");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        let (errs_tx, errs_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
            }
            let _ = errs_tx.send(all);
        });
        let mut cluster = RealCluster {
            child,
            _stdin: stdin,
            kubeconfig: dir.join("kubeconfig"),
            dir,
        };
        if rx.recv_timeout(START_LIMIT).is_err() {
            cluster.stop();
            let errs = errs_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            panic!(
                "the control plane did not report ready within {START_LIMIT:?} (logs in {}):\n{errs}",
                cluster.dir.display()
            );
        }
        cluster
    }

    /// The admin kubeconfig (client certificate of group system:masters).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Where the components log (`kube-apiserver.log`, ...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubectl command with the admin kubeconfig and a private cache.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        // kubectl keeps a refused edit's copy (and diff's files) under TMPDIR: keep
        // them in this cluster's directory, removed with it.
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("TMPDIR", &self.dir)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args);
        c
    }

    /// Runs kubectl (for at most 2 minutes); returns (exit code, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        let out = output_within(
            self.kubectl_cmd(args),
            Duration::from_secs(120),
            &format!("kubectl {args:?}"),
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`RealCluster::kubectl`], failing the test unless it succeeds.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.kubectl(args);
        assert_eq!(code, 0, "kubectl {args:?} failed:\n{err}\n{out}");
        out
    }

    /// Runs kubectl with `args` followed by `-f FILE`, FILE holding `objects` (as one
    /// List); fails the test unless it succeeds.
    pub fn kubectl_objects_ok(&self, args: &[&str], objects: &[serde_json::Value]) -> String {
        let file = tempfile::Builder::new()
            .prefix("objects-")
            .suffix(".json")
            .tempfile_in(&self.dir)
            .expect("objects file");
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        std::fs::write(file.path(), list.to_string()).expect("write objects");
        let mut all = args.to_vec();
        all.extend(["-f", file.path().to_str().unwrap()]);
        self.kubectl_ok(&all)
    }

    /// A kubeconfig that holds nothing but a token of ServiceAccount `namespace/name`,
    /// issued by the TokenRequest API (`kubectl create token`, valid for 2 hours), and
    /// the cluster's address and CA: what a Pod running as that ServiceAccount has.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=2h"]);
        let cluster = |field: &str| {
            self.kubectl_ok(&[
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
            ])
        };
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cplane", "cluster": {
                "server": cluster("server"),
                "certificate-authority-data": cluster("certificate-authority-data"),
            }}],
            "users": [{"name": name, "user": {"token": token.trim()}}],
            "contexts": [{"name": name, "context": {"cluster": "cplane", "user": name}}],
            "current-context": name,
        });
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path
    }

    /// The apiserver's own count of requests (`apiserver_request_total` from
    /// /metrics), summed over response codes, keyed by "VERB resource" (with
    /// "/subresource" and "group:" when present); dry runs are keyed "dry-run VERB ...".
    pub fn requests(&self) -> BTreeMap<String, u64> {
        let text = self.kubectl_ok(&["get", "--raw", "/metrics"]);
        requests_of(&text)
    }

    /// The writes (POST, PUT, PATCH, DELETE, DELETECOLLECTION; an apply is a PATCH)
    /// that clients other than the control plane itself made and the apiserver
    /// carried out, by verb and resource, from its audit log: the tests' kubectl and
    /// the agent (as `admin` or as a ServiceAccount). Dry runs are left out, writes the
    /// server refused are keyed "refused VERB ..." apart, and Leases and Events are not
    /// logged. The controller manager, the fake kubelet and the apiserver's own
    /// loops write as users of their own ([`is_control_plane`]), whenever they please
    /// (the autoscaler's status on each sync): counting per user is what lets a test
    /// say "this pass wrote nothing" on a loaded machine.
    pub fn writes(&self) -> BTreeMap<String, u64> {
        let log = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        writes_in_audit_log(&log)
    }

    /// Every write request any client made (the controllers' included; Leases and
    /// Events left out), from `apiserver_request_total`: what "settled" is judged by.
    fn all_writes(&self) -> BTreeMap<String, u64> {
        self.requests()
            .into_iter()
            .filter(|(k, _)| is_write(k) && !k.contains("leases") && !k.contains("events"))
            .collect()
    }

    /// Waits until no client (controllers included) writes for `quiet`, so the agent
    /// next sees objects the controllers are done with; returns
    /// [`RealCluster::writes`] then. First it waits for what the controller manager
    /// creates in every new namespace (the `default` ServiceAccount and the
    /// `kube-root-ca.crt` ConfigMap) where a server-side dry run says such a create is
    /// admitted: on a busy machine those can come later than any quiet spell.
    pub fn wait_settled(&self, quiet: Duration, limit: Duration) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + limit;
        loop {
            let active = self.kubectl_ok(&[
                "get",
                "namespaces",
                "--field-selector",
                "status.phase=Active",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ]);
            let named = |kind: &str, name: &str| {
                self.kubectl_ok(&[
                    "get",
                    kind,
                    "--all-namespaces",
                    "--field-selector",
                    &format!("metadata.name={name}"),
                    "-o",
                    "jsonpath={.items[*].metadata.namespace}",
                ])
            };
            let missing: Vec<String> = [
                ("serviceaccounts", "default"),
                ("configmaps", "kube-root-ca.crt"),
            ]
            .iter()
            .flat_map(|(kind, name)| {
                let have = named(kind, name);
                let have: Vec<&str> = have.split_whitespace().collect();
                active
                    .split_whitespace()
                    .filter(|ns| !have.contains(ns))
                    // Where an admission webhook refuses such a create (a test's own
                    // broken webhook), the controller cannot make it either.
                    .filter(|ns| {
                        let singular = kind.trim_end_matches('s');
                        self.kubectl(&[
                            "create",
                            singular,
                            "rollwave-settle-probe",
                            "-n",
                            ns,
                            "--dry-run=server",
                            "-o",
                            "name",
                        ])
                        .0 == 0
                    })
                    .map(|ns| format!("{kind} {ns}/{name}"))
                    .collect::<Vec<_>>()
            })
            .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the controller manager never created {missing:?} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut last = self.all_writes();
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.all_writes();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return self.writes();
            }
            assert!(
                Instant::now() < deadline,
                "the control plane kept writing for {limit:?}: {last:?}"
            );
        }
    }

    fn stop(&mut self) {
        // SAFETY: signalling a child process this value owns (and has not reaped).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to the end, reading both pipes while it runs (/metrics is larger than a
/// pipe holds); fails the test after `limit`.
fn output_within(mut cmd: Command, limit: Duration, what: &str) -> std::process::Output {
    cmd.stdin(Stdio::null());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Removes the run directories (logs and kubeconfig of stopped control planes, kept for
/// reading after a failure) older than a day.
fn forget_old_runs(base: &Path) {
    let day = Duration::from_secs(24 * 60 * 60);
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn is_write(key: &str) -> bool {
    let verb = key.split(' ').next().unwrap_or("");
    matches!(
        verb,
        "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
    )
}

/// Whether `user` is part of the control plane: the controller manager and the fake
/// kubelet (one certificate, made by `tests/k8s/pki.go`), the apiserver's own loops
/// and the usual component and node identities.
fn is_control_plane(user: &str) -> bool {
    matches!(
        user,
        "rollwave-test-control-plane"
            | "system:apiserver"
            | "system:kube-controller-manager"
            | "system:kube-scheduler"
    ) || user.starts_with("system:node:")
}

/// The writes in a JSON audit log (one event per line, see `auditPolicy` in
/// `tests/k8s/run.go`) by clients outside the control plane, keyed like
/// [`requests_of`]: "VERB group:resource/subresource", "refused VERB ..." for answers
/// other than 2xx; dry runs are left out. A line still being written is skipped.
pub fn writes_in_audit_log(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        if event["stage"] != "ResponseComplete"
            || is_control_plane(&text(&event["user"]["username"]))
        {
            continue;
        }
        let uri = text(&event["requestURI"]);
        let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        if query.split('&').any(|p| p.starts_with("dryRun=")) {
            continue;
        }
        let verb = match event["verb"].as_str().unwrap_or("") {
            "create" => "POST",
            "update" => "PUT",
            "patch" => "PATCH",
            "delete" => "DELETE",
            "deletecollection" => "DELETECOLLECTION",
            _ => continue,
        };
        let code = event["responseStatus"]["code"].as_i64().unwrap_or(0);
        let object = &event["objectRef"];
        let mut key = String::new();
        if !(200..300).contains(&code) {
            key.push_str("refused ");
        }
        key.push_str(verb);
        key.push(' ');
        let group = text(&object["apiGroup"]);
        if !group.is_empty() {
            key.push_str(&group);
            key.push(':');
        }
        key.push_str(&text(&object["resource"]));
        let subresource = text(&object["subresource"]);
        if !subresource.is_empty() {
            key.push('/');
            key.push_str(&subresource);
        }
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// `apiserver_request_total` samples summed by verb and resource; a write the server
/// refused (any code but 2xx) is keyed "refused VERB ...", a dry run "dry-run VERB ...".
pub fn requests_of(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let mut label = BTreeMap::new();
        for pair in labels.split("\",") {
            if let Some((k, v)) = pair.split_once("=\"") {
                label.insert(k, v.trim_end_matches('"'));
            }
        }
        let get = |k: &str| label.get(k).copied().unwrap_or("");
        let mut key = String::new();
        if !get("dry_run").is_empty() {
            key.push_str("dry-run ");
        } else if is_write(get("verb")) && !get("code").starts_with('2') {
            // A write the server refused changed nothing. Controllers retry those
            // (the root-CA publisher in a namespace a broken webhook guards) at times
            // no test controls, so they are kept apart from the writes.
            key.push_str("refused ");
        }
        key.push_str(get("verb"));
        key.push(' ');
        if !get("group").is_empty() {
            key.push_str(get("group"));
            key.push(':');
        }
        key.push_str(get("resource"));
        if !get("subresource").is_empty() {
            key.push('/');
            key.push_str(get("subresource"));
        }
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *out.entry(key).or_insert(0) += n;
    }
    out
}

/// Builds `tests/k8s/protoclient` (client-go's protobuf codecs and typed clients, from
/// the control plane's pinned module) once per test process and returns its path; Go's
/// build cache makes the build take seconds once the control plane is built.
pub fn protoclient() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            require_go();
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| manifest.join(t))
                .unwrap_or_else(|| manifest.join("target"));
            let dir = target.join("k8s/tools");
            std::fs::create_dir_all(&dir).unwrap();
            let bin = dir.join("protoclient");
            // Test binaries may build at the same time: each builds its own file and
            // renames it into place, which replaces the file whole.
            let tmp = dir.join(format!("protoclient.{}.tmp", std::process::id()));
            let mut cmd = Command::new("go");
            cmd.current_dir(manifest.join("tests/k8s"))
                .env("GOFLAGS", "-mod=readonly")
                .args(["build", "-p", "1", "-o"])
                .arg(&tmp)
                .arg("./protoclient");
            let out = output_within(cmd, BUILD_LIMIT, "go build ./protoclient");
            assert!(
                out.status.success(),
                "building tests/k8s/protoclient failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&tmp, &bin).unwrap();
            bin
        })
        .clone()
}

/// Decodes one protobuf answer (the `k8s\0` envelope) with client-go's codecs and
/// returns the object as client-go writes it in JSON, or client-go's error.
pub fn decode_protobuf(body: &[u8]) -> Result<serde_json::Value, String> {
    use std::io::Write;
    let mut child = Command::new(protoclient())
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("protoclient printed no JSON: {e}"))
}
