//! The deployment manifests: rollwave and kustomize build them alike, they apply to a
//! (simulated) cluster, and the agent runs with the agent.yaml the ConfigMap carries.

mod common;

use std::path::Path;

use common::sim::{TestCluster, require_kubectl};

fn deploy_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn rollwave_and_kustomize_build_the_deploy_kustomization_alike() {
    require_kubectl();
    let (code, ours, err) = common::run_cli(&["build", &deploy_dir()]);
    assert_eq!(code, 0, "{err}");
    let theirs = std::process::Command::new("kubectl")
        .args(["kustomize", &deploy_dir()])
        .output()
        .unwrap();
    assert!(theirs.status.success());
    assert_eq!(ours, String::from_utf8_lossy(&theirs.stdout));
}

#[test]
fn the_manifests_apply_to_a_cluster() {
    require_kubectl();
    let c = TestCluster::start("deploy");
    let out = c.kubectl_ok(&["apply", "--server-side", "-k", &deploy_dir()]);
    assert!(
        out.contains("deployment.apps/rollwave-agent serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/rollwave-apply serverside-applied"),
        "{out}"
    );
    let sa = c.kubectl_ok(&[
        "get",
        "deployment",
        "rollwave-agent",
        "-n",
        "rollwave-system",
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    ]);
    assert_eq!(sa, "rollwave-agent");
    let cm = c.kubectl_ok(&["get", "configmaps", "-n", "rollwave-system", "-o", "name"]);
    let name = cm
        .lines()
        .find_map(|l| l.strip_prefix("configmap/rollwave-agent-"))
        .unwrap_or_else(|| panic!("no generated ConfigMap: {cm}"));
    let mounted = c.kubectl_ok(&[
        "get",
        "deployment",
        "rollwave-agent",
        "-n",
        "rollwave-system",
        "-o",
        "jsonpath={.spec.template.spec.volumes[1].configMap.name}",
    ]);
    assert_eq!(
        mounted,
        format!("rollwave-agent-{name}"),
        "the Deployment mounts the generated name"
    );
    let config = c.kubectl_ok(&[
        "get",
        "configmap",
        &mounted,
        "-n",
        "rollwave-system",
        "-o",
        "jsonpath={.data.agent\\.yaml}",
    ]);
    let file = std::fs::read_to_string(Path::new(&deploy_dir()).join("agent.yaml")).unwrap();
    assert_eq!(config.trim_end(), file.trim_end());
}

#[test]
fn the_shipped_agent_yaml_is_valid_and_flags_override_it() {
    require_kubectl();
    let file = Path::new(&deploy_dir()).join("agent.yaml");
    let config = rollwave::agent::config::load(&file).unwrap();
    assert_eq!(config.clusters.len(), 1);
    assert_eq!(
        config.clusters[0].connection,
        rollwave::agent::config::Connection::InCluster
    );
    // Run outside a cluster: the repository and the cluster come from flags.
    let c = TestCluster::start("prod-1");
    let repo = common::ScratchRepo::minimal_with(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["agent", "--once", "--config"])
        .arg(&file)
        .arg("--repo")
        .arg(repo.path())
        .args(["--cluster", "prod-1", "--kubeconfig"])
        .arg(&c.kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("web\tapplied\t"), "{stdout}");
}

#[test]
fn the_agent_takes_its_settings_from_the_environment() {
    require_kubectl();
    let c = TestCluster::start("prod-1");
    let repo = common::ScratchRepo::minimal_with(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["agent", "--once", "--kubeconfig"])
        .arg(&c.kubeconfig)
        .env("ROLLWAVE_REPO", repo.path())
        .env("ROLLWAVE_CLUSTER", "prod-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("web\tapplied\t"), "{stdout}");
}
