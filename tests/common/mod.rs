//! Helpers shared by integration tests: scratch fleet repositories on disk and real
//! Git servers.

#![allow(dead_code)]

pub mod backend;
pub mod fakeapi;
pub mod git;
pub mod helm;
pub mod hub;
pub mod k8s;
pub mod sim;
pub mod webhook;

use std::path::{Path, PathBuf};

use rollwave::fleet::{self, Fleet};
use rollwave::render::{self, Rendered};
use rollwave::tree::DirTree;

/// A fleet repository in a temporary directory, removed on drop.
pub struct ScratchRepo {
    dir: tempfile::TempDir,
}

/// A minimal valid fleet: stages test/prod, two clusters and one app `web` with a
/// Deployment; tests overwrite files to break it.
pub const MINIMAL: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1, 2, 7]\n  bake: 5m\n",
    ),
    (
        "clusters/test-1.yaml",
        "name: test-1\nstage: test\nlabels: {region: sh}\nvalues: {replicas: 1}\n",
    ),
    (
        "clusters/prod-1.yaml",
        "name: prod-1\nstage: prod\nlabels: {region: bj}\nvalues: {replicas: 3}\n",
    ),
    (
        "apps/web/app.yaml",
        "namespace: web\ntargets:\n  stages: [test, prod]\nvalues: {image: nginx}\n",
    ),
    (
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    ),
    (
        "apps/web/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n",
    ),
];

impl ScratchRepo {
    /// A repository holding `files`.
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = ScratchRepo { dir };
        for (path, content) in files {
            repo.write(path, content);
        }
        repo
    }

    /// The minimal fleet with `overrides` written over it.
    pub fn minimal_with(overrides: &[(&str, &str)]) -> Self {
        let repo = Self::new(MINIMAL);
        for (path, content) in overrides {
            repo.write(path, content);
        }
        repo
    }

    /// Writes one file, creating directories.
    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("has parent")).expect("mkdir");
        std::fs::write(full, content).expect("write");
    }

    /// Removes one file.
    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.path().join(path)).expect("remove");
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory as an owned path.
    pub fn path_buf(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Loads the fleet model.
    pub fn load(&self) -> Result<Fleet, String> {
        let tree = DirTree::open(self.path()).map_err(|e| e.to_string())?;
        fleet::load(&tree).map_err(|e| e.to_string())
    }

    /// One agent pass of this fleet (the files as they are, no Git: a release is its
    /// content hash) on `cluster` through `reconciler`.
    pub async fn pass(
        &self,
        cluster: &str,
        reconciler: &rollwave::apply::Reconciler,
    ) -> rollwave::agent::PassReport {
        self.pass_with(cluster, reconciler, &mut rollwave::agent::Memory::default())
            .await
    }

    /// [`ScratchRepo::pass`] with the agent's `memory` of earlier passes, which turns an
    /// app Progressing for longer than its `progressDeadline` Degraded.
    pub async fn pass_with(
        &self,
        cluster: &str,
        reconciler: &rollwave::apply::Reconciler,
        memory: &mut rollwave::agent::Memory,
    ) -> rollwave::agent::PassReport {
        let tree = DirTree::open(self.path()).unwrap();
        let fleet = fleet::load(&tree).unwrap();
        let no_git = |_: &str, _: &std::collections::BTreeSet<rollwave::tree::RepoPath>| None;
        let source = rollwave::agent::Source {
            tree: &tree,
            fleet: &fleet,
            release_of: &no_git,
        };
        rollwave::agent::reconcile_cluster_with(&source, cluster, reconciler, memory, None)
            .await
            .unwrap()
    }

    /// Loads the fleet and renders `app` for `cluster`.
    pub fn render(&self, app: &str, cluster: &str) -> Result<Rendered, String> {
        let tree = DirTree::open(self.path()).map_err(|e| e.to_string())?;
        let fleet = fleet::load(&tree).map_err(|e| e.to_string())?;
        let a = fleet.app(app).ok_or("no such app")?;
        let c = fleet.cluster(cluster).ok_or("no such cluster")?;
        render::render(&tree, &fleet, a, c).map_err(|e| e.to_string())
    }
}

/// The example fleet (`fleet-example-repo/`). Its `cache` app is a Helm chart, so this
/// builds the test `helm` and makes it the renderer's in this process and on the PATH
/// of the commands `run_cli` starts (`helm::path_with_helm()` for other children).
pub fn example_fleet() -> std::path::PathBuf {
    helm::helm();
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-example-repo")
}

/// The control plane of this test binary, started by the first test that asks, and a
/// turn to use it: the tests of one binary share it one at a time (their objects and
/// request counts would mix otherwise). A failed test poisons the lock; the next one
/// still has a usable cluster.
pub fn shared_real_cluster() -> (
    &'static k8s::RealCluster,
    std::sync::MutexGuard<'static, ()>,
) {
    static CLUSTER: std::sync::OnceLock<k8s::RealCluster> = std::sync::OnceLock::new();
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    sim::require_kubectl();
    (CLUSTER.get_or_init(k8s::RealCluster::start), turn)
}

/// Runs the built `rollwave` binary with `args`, returning (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"));
    if let Some(path) = helm::path_if_built() {
        cmd.env("PATH", path);
    }
    let out = cmd
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run rollwave");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies a directory tree.
/// The golden cases under tests/kustomize/ (each holds `expected.yaml`, or
/// `expected-error.txt` when kustomize refuses it), sorted by name.
pub fn golden_cases() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kustomize");
    let mut out: Vec<String> = std::fs::read_dir(&root)
        .expect("tests/kustomize exists")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path().join("expected.yaml").exists() || e.path().join("expected-error.txt").exists()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}
