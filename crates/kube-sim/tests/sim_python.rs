//! The simulated API server judged by the official Kubernetes Python client
//! (`pip install kubernetes`): `tests/python/client_check.py` does CRUD, lists with
//! selectors, watches, merge, strategic and JSON patches and server-side apply through
//! the client's typed models (CoreV1Api, AppsV1Api, DiscoveryV1Api, ApiextensionsV1Api,
//! CustomObjectsApi), which refuse answers of a shape they do not expect.
//!
//! The client lives in a virtualenv under the target directory that
//! `tests/python/setup` makes on first use (pip, from PyPI); a missing python3 fails
//! the test with the reason, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube_sim::SimOptions;
use kube_sim::testing::{TestCluster, wait_output};

/// The virtualenv's python, installed when missing.
fn python() -> PathBuf {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/setup");
    let child = Command::new(&setup)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/python/setup");
    let out = wait_output(child, Duration::from_secs(600));
    assert!(
        out.status.success(),
        "tests/python/setup failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn the_official_python_client_reads_every_answer_into_its_typed_models() {
    let python = python();
    let mut options = SimOptions::named("python-client");
    options.ready_after = Duration::from_millis(300);
    let cluster = TestCluster::start_with(options);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/client_check.py");
    let child = Command::new(&python)
        .arg(&script)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(cluster.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Python client");
    let out = wait_output(child, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("all checks passed"),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
}
