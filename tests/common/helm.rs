//! The real `helm` for tests, built from its pinned Go module (`tests/helm/build`,
//! cached under the target directory), and the test charts in `tests/helm/charts/`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static HELM: OnceLock<PathBuf> = OnceLock::new();

/// The `helm` binary, built on first use (Go is required: without it the test fails
/// with the reason, it never skips). Also made the renderer's `helm` in this process.
pub fn helm() -> &'static Path {
    HELM.get_or_init(|| {
        super::k8s::require_go();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm/build");
        let out = Command::new(script).output().expect("run tests/helm/build");
        assert!(
            out.status.success(),
            "building helm failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        rollwave::render::helm::set_helm_binary(path.clone());
        path
    })
}

/// A test chart's directory (`greeter`, `failing`).
pub fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/helm/charts")
        .join(name)
}

/// `PATH` with the built `helm`'s directory first, for commands that look it up.
pub fn path_with_helm() -> String {
    let dir = helm().parent().unwrap().to_string_lossy().into_owned();
    match std::env::var("PATH") {
        Ok(p) => format!("{dir}:{p}"),
        Err(_) => dir,
    }
}

/// `PATH` with the built `helm` first once this process has asked for `helm()` (the
/// example fleet does), for the `rollwave` commands it starts; `None` before that.
pub fn path_if_built() -> Option<String> {
    HELM.get().map(|_| path_with_helm())
}
