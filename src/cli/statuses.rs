//! Statuses for the commands that print them (`plan`, `status`): read from the store
//! fleet.yaml names, with the warnings printed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context;

use crate::fleet::Fleet;
use crate::source::repo::GitRepo;
use crate::status::ClusterStatus;
use crate::status::store::Store;

/// Every cluster's status from the store fleet.yaml names: the status refs, or the
/// hub reached as `hub` says. With the hub, clusters that still publish fresh status
/// refs are reported (their agents run without `hub:` or an older version, and
/// their peers do not see them), so a fleet is never split in silence.
pub fn fleet_statuses(
    g: &GitRepo,
    fleet: &Fleet,
    hub: &super::HubArgs,
) -> anyhow::Result<BTreeMap<String, ClusterStatus>> {
    let (refs, errors) = g.statuses()?;
    for e in errors {
        eprintln!("warning: {e}");
    }
    if fleet.settings.status_store == crate::status::StoreKind::Git {
        return Ok(refs);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reach = "reach the hub with --hub-kubeconfig and --hub-context";
    let (statuses, errors) = runtime.block_on(async {
        let client = crate::agent::daemon::client_for(&hub.connection())
            .await
            .context(reach)?;
        let hub = std::sync::Arc::new(crate::status::hub::Hub::new(
            client,
            &hub.hub_namespace,
            Default::default(),
        ));
        let store = Store::open(fleet.settings.status_store, Some(&hub))?;
        store.read(&g.repository()?).await.context(reach)
    })?;
    for e in errors {
        eprintln!("warning: {e}");
    }
    for w in crate::status::split_between_stores(&statuses, &refs, SystemTime::now()) {
        eprintln!("warning: {w}");
    }
    Ok(std::sync::Arc::unwrap_or_clone(statuses))
}
