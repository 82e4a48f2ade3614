//! Deleting an app's directory releases the app the way the repository says: the app's
//! own `removal` as it stood when it was last applied (remembered in its inventory),
//! else fleet.yaml's default.

mod common;

use common::ScratchRepo;
use common::sim::TestCluster;
use rollwave::agent::{AppResult, PassReport};
use rollwave::fleet::Removal;

fn released(report: &PassReport) -> Vec<(String, Removal)> {
    report
        .apps
        .iter()
        .filter_map(|(a, r)| match r {
            AppResult::Released { removal, .. } => Some((a.clone(), *removal)),
            _ => None,
        })
        .collect()
}

#[test]
fn deleting_an_app_directory_follows_the_fleet_default_unless_the_app_said_otherwise() {
    let c = TestCluster::start("prod-1");
    let repo = ScratchRepo::minimal_with(&[
        (
            "fleet.yaml",
            "stages: [test, prod]\nremoval: delete\nrollout:\n  canary: [test-1]\n",
        ),
        (
            "apps/api/app.yaml",
            "namespace: api\nremoval: orphan\ntargets:\n  stages: [test, prod]\n",
        ),
        (
            "apps/api/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/api/base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api-settings}\ndata: {mode: fast}\n",
        ),
    ]);
    let exists =
        |ns: &str, kind: &str, name: &str| c.kubectl(&["get", kind, name, "-n", ns]).0 == 0;
    c.runtime.block_on(async {
        let reconciler = common::sim::reconciler(&c).await;
        let first = repo.pass("prod-1", &reconciler).await;
        assert!(first.ok(), "{}", first.table());

        std::fs::remove_dir_all(repo.path().join("apps/web")).unwrap();
        std::fs::remove_dir_all(repo.path().join("apps/api")).unwrap();
        let second = repo.pass("prod-1", &reconciler).await;
        assert!(second.ok(), "{}", second.table());
        assert_eq!(
            released(&second),
            [
                ("api".to_string(), Removal::Orphan),
                ("web".to_string(), Removal::Delete)
            ]
        );
        assert!(reconciler.inventoried_apps().await.unwrap().is_empty());
    });
    assert!(
        !exists("web", "deployment", "web"),
        "fleet.yaml's removal: delete applies to an app whose directory was deleted"
    );
    assert!(
        exists("api", "configmap", "api-settings"),
        "the app's own removal: orphan, remembered in its inventory, still holds"
    );
}
