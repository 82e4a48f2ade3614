//! Statuses for the commands that print them (`plan`, `status`): read from the store
//! fleet.yaml names, with the warnings printed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context;

use crate::fleet::Fleet;
use crate::source::repo::GitRepo;
use crate::status::ClusterStatus;

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
    let (statuses, errors) = runtime
        .block_on(async {
            let client = crate::agent::daemon::client_for(&hub.connection()).await?;
            let hub = crate::status::hub::Hub::new(client, &hub.hub_namespace, Default::default());
            anyhow::Ok(hub.list().await?)
        })
        .context(
            "fleet.yaml keeps statuses on a hub (status: {store: kubernetes}); reach it with --hub-kubeconfig and --hub-context",
        )?;
    for e in errors {
        eprintln!("warning: {e}");
    }
    for w in crate::status::split_between_stores(&statuses, &refs, SystemTime::now()) {
        eprintln!("warning: {w}");
    }
    Ok(statuses)
}
