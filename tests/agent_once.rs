//! One agent pass over a cluster (`rollwave agent --once` and its library form): apps
//! that stop targeting the cluster are orphaned or deleted, suspended apps are left
//! alone, and the command's exit code says whether every app applied.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::ScratchRepo;
use common::sim::{TestCluster, require_kubectl};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rollwave::agent::{AppResult, Source, reconcile_cluster};
use rollwave::apply::Reconciler;
use rollwave::fleet::Removal;
use rollwave::tree::DirTree;

const API_APP: &[(&str, &str)] = &[
    (
        "apps/api/app.yaml",
        "namespace: api\nremoval: delete\ntargets:\n  stages: [test, prod]\n",
    ),
    (
        "apps/api/base/kustomization.yaml",
        "resources:\n- cm.yaml\n",
    ),
    (
        "apps/api/base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api-settings}\ndata: {mode: fast}\n",
    ),
];

async fn pass(repo: &ScratchRepo, reconciler: &Reconciler) -> rollwave::agent::PassReport {
    let tree = DirTree::open(repo.path()).unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let no_git = |_: &str, _: &BTreeSet<rollwave::tree::RepoPath>| None;
    let source = Source {
        tree: &tree,
        fleet: &fleet,
        release_of: &no_git,
    };
    reconcile_cluster(&source, "prod-1", reconciler)
        .await
        .unwrap()
}

#[test]
fn apps_that_stop_targeting_the_cluster_are_orphaned_or_deleted_and_suspended_apps_left_alone() {
    let c = TestCluster::start("prod-1");
    let repo = ScratchRepo::minimal_with(API_APP);
    let exists =
        |ns: &str, kind: &str, name: &str| c.kubectl(&["get", kind, name, "-n", ns]).0 == 0;
    c.runtime.block_on(async {
        let kc = Kubeconfig::read_from(&c.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let reconciler =
            Reconciler::new(kube::Client::try_from(config).unwrap(), "rollwave-system");
        let first = pass(&repo, &reconciler).await;
        assert!(first.ok(), "{}", first.table());

        // Both apps leave prod: web orphans (the default), api deletes.
        repo.write(
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [test]\n",
        );
        repo.write(
            "apps/api/app.yaml",
            "namespace: api\nremoval: delete\ntargets:\n  stages: [test]\n",
        );
        let second = pass(&repo, &reconciler).await;
        assert!(second.ok(), "{}", second.table());
        let released: Vec<(String, Removal)> = second
            .apps
            .iter()
            .filter_map(|(a, r)| match r {
                AppResult::Released { removal, .. } => Some((a.clone(), *removal)),
                _ => None,
            })
            .collect();
        assert_eq!(
            released,
            [
                ("api".to_string(), Removal::Delete),
                ("web".to_string(), Removal::Orphan)
            ]
        );
        assert!(reconciler.inventoried_apps().await.unwrap().is_empty());
    });
    assert!(
        exists("web", "deployment", "web"),
        "an orphaned app's objects keep running"
    );
    assert!(
        !exists("api", "configmap", "api-settings"),
        "removal: delete deletes the objects"
    );

    // A suspended app is not touched, even when its manifests change.
    repo.write(
        "apps/web/app.yaml",
        "namespace: web\nsuspend: true\ntargets:\n  stages: [test, prod]\n",
    );
    c.runtime.block_on(async {
        let kc = Kubeconfig::read_from(&c.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let reconciler =
            Reconciler::new(kube::Client::try_from(config).unwrap(), "rollwave-system");
        let writes = c.sim().stats().writes();
        let third = pass(&repo, &reconciler).await;
        assert!(
            matches!(
                third.apps.iter().find(|(a, _)| a == "web"),
                Some((_, AppResult::Suspended))
            ),
            "{}",
            third.table()
        );
        assert_eq!(c.sim().stats().writes(), writes);
    });
}

#[test]
fn agent_once_exits_0_when_every_app_applied_and_1_with_the_reason_otherwise() {
    require_kubectl();
    let c = TestCluster::start("prod-1");
    let repo = ScratchRepo::minimal_with(&[]);
    let kubeconfig = c.kubeconfig.to_str().unwrap().to_string();
    let run = |repo: &ScratchRepo| {
        common::run_cli(&[
            "agent",
            "--once",
            "--repo",
            repo.path().to_str().unwrap(),
            "--cluster",
            "prod-1",
            "--kubeconfig",
            &kubeconfig,
        ])
    };
    let (code, out, err) = run(&repo);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web\tapplied\t"), "{out}");
    common::sim::eventually(Duration::from_secs(10), "the Deployment to exist", || {
        c.kubectl(&["get", "deployment", "web", "-n", "web"]).0 == 0
    });

    repo.write(
        "apps/web/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: other}}\n    spec: {containers: [{name: web, image: nginx:2}]}\n",
    );
    let (code, out, err) = run(&repo);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "error: app 'web': Deployment web/web: rejected by the server, nothing applied"
        ),
        "{err}"
    );
    let image = c.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx", "the last good state stays applied");

    let (code, _, err) = common::run_cli(&[
        "agent",
        "--once",
        "--repo",
        repo.path().to_str().unwrap(),
        "--cluster",
        "nope",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cluster 'nope' is not in clusters/"), "{err}");
}
