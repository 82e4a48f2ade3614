//! The agent's container image (`deploy/image/build`, the debug binary for speed) run
//! by podman against a real control plane the way `deploy/` runs it in a cluster: the
//! manifests applied as shipped, the agent.yaml of the generated ConfigMap mounted at
//! /etc/rollwave/agent.yaml, the Git token of the Secret under /etc/rollwave/git, the
//! ServiceAccount's token where `inCluster: true` looks for it, a read-only root file
//! system, no capabilities. Needs root, podman, buildah and runc (deploy/README.md
//! says why runc and the lowered limits).

mod common;

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::git::{self, HttpAuth, HttpGit};
use common::k8s::RealCluster;
use common::sim::require_kubectl;

/// The image's user (deploy/deployment.yaml's runAsUser).
const NONROOT: u32 = 65532;
/// The cluster of fleet-example-repo the agent runs for: the canary, so the first
/// pass applies every app without waiting for a bake.
const CLUSTER: &str = "test-sh-1";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// podman with the flags every call needs on these machines (deploy/README.md):
/// runc, since crun refuses cgroups v1 mounted beside v2 ("hybrid mode").
fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc"]).args(args);
    c
}

fn output(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (is it installed? see deploy/README.md)"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails with what to install when a tool the test drives is missing.
fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the image test needs `{tool}` (Debian: apt-get install -y {package}); ./test installs it"
    );
}

/// An image in local container storage, removed when dropped.
struct Image(String);

impl Image {
    fn build() -> Image {
        let tag = format!("localhost/rollwave-test:{}", std::process::id());
        let started = Instant::now();
        let out = output(
            {
                let mut c = Command::new(repo_root().join("deploy/image/build"));
                c.args(["--binary", env!("CARGO_BIN_EXE_rollwave"), "--tag", &tag]);
                c
            },
            "deploy/image/build",
        );
        assert!(
            out.status.success(),
            "deploy/image/build failed:\n{}",
            text(&out)
        );
        eprintln!("built the image in {}s", started.elapsed().as_secs());
        Image(tag)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "--force", &self.0]).output();
    }
}

/// A container by name, removed (with force) when dropped.
struct Container(String);

impl Container {
    fn logs(&self) -> String {
        text(&output(podman(&["logs", &self.0]), "podman logs"))
    }

    fn inspect(&self, format: &str) -> String {
        let out = output(podman(&["inspect", "--format", format, &self.0]), "inspect");
        assert!(out.status.success(), "podman inspect: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]).output();
    }
}

/// Writes `files` into a new directory `dir/name` as the kubelet lays out a Secret
/// volume for a Pod with `fsGroup: 65532`: owned by root, group 65532, readable by
/// the group only.
fn secret_volume(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let volume = dir.join(name);
    std::fs::create_dir(&volume).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (file, content) in files {
        let path = volume.join(file);
        std::fs::write(&path, content).unwrap();
        chown(&path, Some(0), Some(NONROOT)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
    volume
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

/// Waits for `done` (checked every 500ms) until `limit`, which only ends a hang.
fn eventually(
    limit: Duration,
    what: &str,
    on_timeout: impl Fn() -> String,
    done: impl Fn() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}:\n{}",
            on_timeout()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `text` with `from` replaced by `to`, failing when `from` is not in it (so a changed
/// deploy/agent.yaml breaks the test where it should be updated).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "deploy/agent.yaml no longer holds `{from}`: update tests/image.rs\n{text}"
    );
    text.replacen(from, to, 1)
}

#[test]
fn the_image_runs_the_agent_as_deploy_configures_it_non_root_without_a_shell() {
    require_kubectl();
    require("podman", "podman");
    require("buildah", "buildah");
    require("runc", "runc");
    let image = Image::build();

    // No shell to run.
    let shell = output(
        podman(&[
            "run",
            "--rm",
            "--network=host",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            "--entrypoint",
            "/bin/sh",
            &image.0,
            "-c",
            "true",
        ]),
        "podman run --entrypoint /bin/sh",
    );
    assert!(
        !shell.status.success(),
        "the image has a shell: {}",
        text(&shell)
    );
    assert!(
        text(&shell).contains("/bin/sh: no such file or directory"),
        "the shell failed for another reason than its absence: {}",
        text(&shell)
    );

    // deploy/ applies as shipped, and its Deployment rolls out.
    let cluster = RealCluster::start();
    let deploy = repo_root().join("deploy");
    let applied = cluster.kubectl_ok(&["apply", "--server-side", "-k", deploy.to_str().unwrap()]);
    for object in [
        "namespace/rollwave-system serverside-applied",
        "serviceaccount/rollwave-agent serverside-applied",
        "clusterrole.rbac.authorization.k8s.io/rollwave-apply serverside-applied",
        "secret/rollwave-git serverside-applied",
        "deployment.apps/rollwave-agent serverside-applied",
        "service/rollwave-agent serverside-applied",
    ] {
        assert!(applied.contains(object), "no `{object}` in:\n{applied}");
    }
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/rollwave-agent",
        "-n",
        "rollwave-system",
        "--timeout=120s",
    ]);

    // The Pod as the Deployment describes it: its container, volumes and the Secret.
    let deployment: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "deployment",
        "rollwave-agent",
        "-n",
        "rollwave-system",
        "-o",
        "json",
    ]))
    .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let agent = &pod["containers"][0];
    assert_eq!(
        agent["args"],
        serde_json::json!(["agent", "--config", "/etc/rollwave/agent.yaml"]),
        "the Deployment's args are the image's CMD (deploy/image/build)"
    );
    let security = &agent["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsUser"], NONROOT);
    assert_eq!(pod["securityContext"]["fsGroup"], NONROOT);
    let volume_of = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name} in {pod}"))
            .clone()
    };
    let object_data = |kind: &str, name: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&cluster.kubectl_ok(&[
            "get",
            kind,
            name,
            "-n",
            "rollwave-system",
            "-o",
            "json",
        ]))
        .unwrap()["data"]
            .clone()
    };

    // The fleet served over HTTP, demanding the token the shipped Secret holds.
    let secret = object_data("secret", "rollwave-git");
    let git_token = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(secret["token"].as_str().expect("the Secret has a token"))
            .unwrap()
    };
    let work = tempfile::tempdir().unwrap();
    let fleet = work.path().join("fleet");
    common::copy_dir(&common::example_fleet(), &fleet);
    git::git(&fleet, &["init", "-q", "-b", "main"]);
    git::git(&fleet, &["add", "-A"]);
    git::git(&fleet, &["commit", "-q", "-m", "the example fleet"]);
    let served = work.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let bare = git::publish(&fleet, &served, "fleet");
    let server = HttpGit::start(
        &served,
        HttpAuth::Bearer(String::from_utf8(git_token).unwrap()),
    );

    // The agent.yaml the generated ConfigMap holds, pointed at that server, at a
    // cluster of the example fleet and at a free port (the container shares the
    // host's network).
    let port = git::free_port();
    let volumes = work.path().join("volumes");
    std::fs::create_dir(&volumes).unwrap();
    std::fs::set_permissions(&volumes, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut mounts = Vec::new();
    for mount in agent["volumeMounts"].as_array().unwrap() {
        let name = mount["name"].as_str().unwrap();
        let volume = volume_of(name);
        let source = if volume.get("emptyDir").is_some() {
            let dir = volumes.join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            dir
        } else if let Some(cm) = volume.get("configMap") {
            let data = object_data("configmap", cm["name"].as_str().unwrap());
            let shipped = data["agent.yaml"]
                .as_str()
                .expect("agent.yaml in the ConfigMap");
            let mut config = replaced(
                shipped,
                "url: https://git.example.com/platform/fleet.git",
                &format!("url: {}", server.url("fleet")),
            );
            config = replaced(
                &config,
                "listen: 0.0.0.0:9090",
                &format!("listen: 127.0.0.1:{port}"),
            );
            config = replaced(&config, "- name: prod-bj-1", &format!("- name: {CLUSTER}"));
            secret_volume(&volumes, name, &[("agent.yaml", config.as_bytes())])
        } else if volume.get("secret").is_some() {
            let files: Vec<(String, Vec<u8>)> = secret
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    use base64::Engine;
                    let value = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap())
                        .unwrap();
                    (k.clone(), value)
                })
                .collect();
            let files: Vec<(&str, &[u8])> = files
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            secret_volume(&volumes, name, &files)
        } else {
            panic!("tests/image.rs does not know volume {volume}: teach it");
        };
        let source = match mount["subPath"].as_str() {
            Some(sub) => source.join(sub),
            None => source,
        };
        let mode = if mount["readOnly"] == true {
            "ro"
        } else {
            "rw"
        };
        mounts.push(format!(
            "--volume={}:{}:{mode}",
            source.display(),
            mount["mountPath"].as_str().unwrap()
        ));
    }
    let mut env: Vec<String> = agent["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "--env={}={}",
                e["name"].as_str().unwrap(),
                e["value"].as_str().unwrap()
            )
        })
        .collect();

    // What the kubelet mounts for the Pod's ServiceAccount, and the Service's address.
    let kubeconfig: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cluster.service_account_kubeconfig("rollwave-system", "rollwave-agent"))
            .unwrap(),
    )
    .unwrap();
    let token = kubeconfig["users"][0]["user"]["token"].as_str().unwrap();
    let endpoint = &kubeconfig["clusters"][0]["cluster"];
    let ca = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(endpoint["certificate-authority-data"].as_str().unwrap())
            .unwrap()
    };
    let server_url = endpoint["server"].as_str().unwrap();
    let (host, api_port) = server_url
        .strip_prefix("https://")
        .and_then(|hp| hp.rsplit_once(':'))
        .unwrap_or_else(|| panic!("unexpected server address {server_url}"));
    let sa_volume = secret_volume(
        &volumes,
        "serviceaccount",
        &[
            ("token", token.as_bytes()),
            ("ca.crt", &ca),
            ("namespace", b"rollwave-system"),
        ],
    );
    mounts.push(format!(
        "--volume={}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        sa_volume.display()
    ));
    env.push(format!("--env=KUBERNETES_SERVICE_HOST={host}"));
    env.push(format!("--env=KUBERNETES_SERVICE_PORT={api_port}"));

    let name = format!("rollwave-image-test-{}", std::process::id());
    let mut args = vec![
        "run",
        "--detach",
        "--name",
        &name,
        "--network=host",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        // The container's security context: a read-only root (no tmpfs: only the
        // Deployment's volumes are writable), no capabilities, no privilege escalation.
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ];
    args.extend(mounts.iter().map(String::as_str));
    args.extend(env.iter().map(String::as_str));
    args.push(&image.0);
    let run = output(podman(&args), "podman run");
    assert!(run.status.success(), "podman run failed: {}", text(&run));
    let container = Container(name);

    // It runs as 65532 with no capabilities (the process itself, seen from the host).
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the agent is not running ({e}):\n{}", container.logs()));
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "65532 65532 65532 65532");
    assert_eq!(field("Gid:"), "65532 65532 65532 65532");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");

    // It applies the example fleet (the helm-rendered app included) with the
    // ServiceAccount's rights, pushes its status with the mounted token, and serves
    // /healthz.
    eventually(
        Duration::from_secs(180),
        "the example fleet's Deployments appearing",
        || container.logs(),
        || {
            ["api", "cache", "web"].iter().all(|ns| {
                let (code, out, _) =
                    cluster.kubectl(&["get", "deployments", "-n", ns, "-o", "name"]);
                code == 0 && out.contains("deployment.apps/")
            })
        },
    );
    eventually(
        Duration::from_secs(60),
        "the status ref being pushed",
        || container.logs(),
        || {
            git::git(&bare, &["for-each-ref", "--format=%(refname)"])
                .contains(&format!("refs/rollwave/status/{CLUSTER}"))
        },
    );
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200, "{body}\n{}", container.logs());

    // SIGTERM (podman stop) ends it within a few seconds with status 0.
    let started = Instant::now();
    let stop = output(
        podman(&["stop", "--time", "30", &container.0]),
        "podman stop",
    );
    let took = started.elapsed();
    assert!(stop.status.success(), "podman stop: {}", text(&stop));
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );
    assert!(
        took < Duration::from_secs(10),
        "the agent took {took:?} to stop:\n{}",
        container.logs()
    );
    let logs = container.logs();
    assert!(!logs.contains("\"level\":\"ERROR\""), "{logs}");
}
