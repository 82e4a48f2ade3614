//! The status hub as tests read and write it: a [`Hub`] client through a kubeconfig,
//! as an agent or `rollwave status` would open it.

use std::collections::BTreeSet;
use std::path::Path;

use rollwave::agent::config::Connection;
use rollwave::status::hub::Hub;
use rollwave::status::object::NAMESPACE;

/// A hub client through `kubeconfig` (its current context) on namespace
/// `rollwave-status`, writing for the clusters in `own`.
pub async fn connect(kubeconfig: &Path, own: &[&str]) -> Hub {
    connect_in(kubeconfig, NAMESPACE, own).await
}

/// A hub client through `kubeconfig` (its current context) on `namespace`, writing
/// for the clusters in `own`.
pub async fn connect_in(kubeconfig: &Path, namespace: &str, own: &[&str]) -> Hub {
    let connection = Connection::Kubeconfig {
        path: Some(kubeconfig.to_path_buf()),
        context: None,
    };
    let client = rollwave::agent::daemon::client_for(&connection)
        .await
        .unwrap();
    let own: BTreeSet<String> = own.iter().map(|c| c.to_string()).collect();
    Hub::new(client, namespace, own)
}
