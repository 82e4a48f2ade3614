//! `rollwave sim` as a user runs it: clusters named after the fleet's cluster files, a
//! kubeconfig that appears only once all of them answer, and a clean stop on SIGTERM.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sim::{eventually, require_kubectl, wait_output};

fn fleet() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-example-repo")
}

#[test]
fn sim_fleet_writes_one_context_per_cluster_file_and_stops_on_sigterm() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("fleet.kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .arg("sim")
        .arg("--fleet")
        .arg(fleet())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    eventually(Duration::from_secs(30), "the kubeconfig to appear", || {
        kubeconfig.exists()
    });
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    for name in [
        "test-sh-1",
        "test-bj-1",
        "pre-sh-1",
        "prod-bj-1",
        "prod-gz-3",
    ] {
        assert!(
            text.contains(&format!("- name: {name}\n  context:")),
            "no context {name}:\n{text}"
        );
    }
    assert_eq!(text.matches("  context:").count(), 14);
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(["--context", "prod-gz-3", "get", "namespaces", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));

    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = wait_output(child, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !kubeconfig.exists(),
        "the kubeconfig of stopped clusters is removed"
    );
}

#[test]
fn sim_clusters_names_contexts_sim_1_to_n_and_prints_the_kubeconfig_without_a_path() {
    let child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["sim", "--clusters", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // The kubeconfig goes to stdout once ready; stop after it could have been written.
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = wait_output(child, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("- name: sim-1") && stdout.contains("- name: sim-2"),
        "{stdout}"
    );
    assert!(stdout.contains("current-context: sim-1"), "{stdout}");
}

#[test]
fn sim_refuses_bad_flags_with_a_clear_message() {
    let (code, _, err) = common::run_cli(&["sim", "--clusters", "0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--clusters must be between 1 and 1000, got 0"),
        "{err}"
    );
    let (code, _, err) = common::run_cli(&["sim", "--clusters", "1", "--error-rate", "1.5"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("errorRate must be between 0 and 1, got 1.5"),
        "{err}"
    );
    let (code, _, _) = common::run_cli(&["sim"]);
    assert_eq!(code, 2, "either --clusters or --fleet is required");
}
