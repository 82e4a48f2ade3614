//! For tests: a simulated cluster driven from blocking code (kubectl, a client in
//! another language, a binary), on its own tokio runtime, with a kubeconfig in a
//! temporary directory; it stops when dropped. Everything here panics on failure, as
//! a test should: it is not for production code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::{SimCluster, SimOptions, write_kubeconfig};

/// One simulated cluster with a kubeconfig in a temporary directory.
pub struct TestCluster {
    /// The runtime the cluster's server runs on.
    pub runtime: tokio::runtime::Runtime,
    /// The cluster (taken when it stops).
    pub cluster: Option<SimCluster>,
    /// The temporary directory of its kubeconfig and kubectl's cache.
    pub dir: tempfile::TempDir,
    /// Its kubeconfig (one context, named after the cluster).
    pub kubeconfig: PathBuf,
}

/// Fails with a clear message when kubectl is missing.
pub fn require_kubectl() {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "these tests run the real kubectl against the simulated API server, and `kubectl` \
         is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/) and re-run"
    );
}

impl TestCluster {
    /// Starts a cluster named `name` with the default options.
    pub fn start(name: &str) -> TestCluster {
        Self::start_with(SimOptions::named(name))
    }

    /// Starts a cluster with `options`.
    pub fn start_with(options: SimOptions) -> TestCluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let name = options.name.clone();
        let cluster = runtime.block_on(SimCluster::start(options)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &[(name, cluster.base_url())]).unwrap();
        TestCluster {
            runtime,
            cluster: Some(cluster),
            dir,
            kubeconfig,
        }
    }

    /// The running cluster.
    pub fn sim(&self) -> &SimCluster {
        self.cluster.as_ref().unwrap()
    }

    /// Its API server's URL.
    pub fn base_url(&self) -> String {
        self.sim().base_url()
    }

    /// A kubectl command with this cluster's kubeconfig and a private cache.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        // kubectl keeps a refused edit's copy (and diff's files) under TMPDIR: keep
        // them in this cluster's directory, removed with it.
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("TMPDIR", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args);
        c
    }

    /// Runs kubectl with `stdin` as input; returns (exit code, stdout, stderr).
    pub fn kubectl_in(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = wait_output(child, Duration::from_secs(60));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl; returns (exit code, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        self.kubectl_in(args, "")
    }

    /// Like [`TestCluster::kubectl`], failing the test unless it succeeds.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.kubectl(args);
        assert_eq!(code, 0, "kubectl {args:?} failed:\n{err}\n{out}");
        out
    }

    /// Its temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.take() {
            self.runtime.block_on(c.shutdown());
        }
    }
}

/// Waits for a child with a time limit, killing it when exceeded.
pub fn wait_output(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "command did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}
