//! Prune: objects of the previous inventory that left the rendering are deleted,
//! namespaced ones first and Namespaces and CRDs last, but only when the live object
//! still carries rollwave's labels for this app and is not annotated
//! `rollwave.dev/prune: disabled`. Nothing outside the inventory is ever deleted.
//! Also the end of an app on a cluster: orphaned (inventory dropped, objects left
//! running) or deleted (`removal: delete`).

use kube::api::{DeleteParams, PropagationPolicy};
use serde_json::Value;

use super::inventory::ObjectKey;
use super::retry::with_retries;
use super::{Action, ApplyError, Reconciler, message_of};
use crate::fleet::Removal;
use crate::vocab::{
    APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PRUNE_ANNOTATION, RECONCILE_ANNOTATION,
};

/// Why a live object must not be deleted by `app`, if it must not.
pub fn keep_reason(live: &Value, app: &str) -> Option<String> {
    let meta = &live["metadata"];
    if meta["labels"][MANAGED_BY_LABEL] != MANAGED_BY_VALUE || meta["labels"][APP_LABEL] != app {
        return Some(format!(
            "not deleted: it does not carry {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} and {APP_LABEL}={app}, so rollwave did not create it"
        ));
    }
    if meta["annotations"][PRUNE_ANNOTATION] == "disabled" {
        return Some(format!(
            "not deleted: annotated {PRUNE_ANNOTATION}: disabled"
        ));
    }
    if meta["annotations"][RECONCILE_ANNOTATION] == "disabled" {
        return Some(format!(
            "not deleted: annotated {RECONCILE_ANNOTATION}: disabled"
        ));
    }
    None
}

/// Deletion order: namespaced objects, then cluster-scoped, then Namespaces, then CRDs.
fn prune_rank(key: &ObjectKey) -> u8 {
    match (key.group.as_str(), key.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 3,
        ("", "Namespace") => 2,
        _ if key.namespace.is_empty() => 1,
        _ => 0,
    }
}

impl Reconciler {
    /// Deletes the objects in `absent` that rollwave created for `app`.
    pub(super) async fn prune_absent(
        &self,
        client: &kube::Client,
        app: &str,
        absent: &[ObjectKey],
    ) -> Vec<(ObjectKey, Result<Action, ApplyError>)> {
        let mut order: Vec<&ObjectKey> = absent.iter().collect();
        order.sort_by_key(|k| (prune_rank(k), (*k).clone()));
        let mut out = Vec::new();
        for key in order {
            let r = self.prune_one(client, app, key).await;
            out.push((key.clone(), r));
        }
        out
    }

    async fn prune_one(
        &self,
        client: &kube::Client,
        app: &str,
        key: &ObjectKey,
    ) -> Result<Action, ApplyError> {
        let err = |message: String| ApplyError::Prune {
            object: key.clone(),
            message,
        };
        // A kind no longer served (its CRD went) has no objects left to delete.
        let Some((ar, namespaced)) = self.resolve(key).await? else {
            return Ok(Action::Pruned);
        };
        let api = super::api_with(client, &ar, namespaced, &key.namespace);
        let live = match self.get_json(&api, &key.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(Action::Pruned),
            Err(e) => return Err(err(message_of(&e))),
        };
        if let Some(reason) = keep_reason(&live, app) {
            tracing::info!(object = %key, reason, "prune skipped");
            return Ok(Action::Skipped(reason));
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let r = with_retries(&self.retry, || api.delete(&key.name, &dp)).await;
        if let Some(cache) = &self.cache {
            cache.forget(
                &(key.group.clone(), key.version.clone(), key.kind.clone()),
                &key.namespace,
                &key.name,
            );
        }
        match r {
            Ok(_) => Ok(Action::Pruned),
            Err((kube::Error::Api(s), _)) if s.code == 404 => Ok(Action::Pruned),
            Err((e, _)) => Err(err(message_of(&e))),
        }
    }

    /// The app no longer targets this cluster: its inventory is dropped and its
    /// objects left running (`Orphan`) or deleted first (`Delete`). `removal` chooses,
    /// given the app's own setting remembered in the inventory; the choice is returned
    /// with what was done.
    ///
    /// `user` chooses the identity the deletes go out as, given the one the inventory
    /// records (the ServiceAccount the app was applied as): an app still in the
    /// repository goes by its policy, a deleted one by that record, since nothing else
    /// says which ServiceAccount it had; `None` is the agent's own identity. A delete
    /// that fails keeps the inventory, so a later pass tries again.
    pub async fn forget(
        &self,
        app: &str,
        removal: impl FnOnce(Option<Removal>) -> Removal,
        user: impl FnOnce(Option<&str>) -> Option<String>,
    ) -> Result<(Removal, Vec<(ObjectKey, Action)>), ApplyError> {
        self.settled.forget(app);
        let inventory = self.read_inventory(app).await?;
        let removal = removal(inventory.removal);
        let mut done = Vec::new();
        if removal == Removal::Delete {
            let user = user(inventory.applied_as.as_deref());
            let client = match &user {
                Some(u) => self.client_as(app, u)?,
                None => self.client.clone(),
            };
            let all: Vec<ObjectKey> = inventory.objects.iter().cloned().collect();
            for (key, r) in self.prune_absent(&client, app, &all).await {
                match r {
                    Ok(action) => done.push((key, action)),
                    Err(e) => {
                        return Err(ApplyError::Release {
                            app: app.to_string(),
                            user: user.unwrap_or_else(|| "the agent's own identity".into()),
                            message: e.to_string(),
                        });
                    }
                }
            }
        } else {
            done.extend(
                inventory
                    .objects
                    .iter()
                    .map(|k| (k.clone(), Action::Skipped("orphaned".into()))),
            );
        }
        self.delete_inventory(app).await?;
        Ok((removal, done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_objects_labelled_for_the_app_and_not_opted_out_are_deleted() {
        let ours =
            json!({"metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, APP_LABEL: "web"}}});
        assert_eq!(keep_reason(&ours, "web"), None);
        assert!(keep_reason(&ours, "api").is_some(), "another app's object");
        let foreign = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(
            keep_reason(&foreign, "web")
                .unwrap()
                .contains("rollwave did not create it")
        );
        let opted_out = json!({"metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, APP_LABEL: "web"},
            "annotations": {PRUNE_ANNOTATION: "disabled"}}});
        assert!(keep_reason(&opted_out, "web").is_some());
    }

    #[test]
    fn crds_and_namespaces_are_pruned_last() {
        let k = |g: &str, kind: &str, ns: &str| ObjectKey {
            group: g.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: "x".into(),
        };
        let mut keys = [
            k("apiextensions.k8s.io", "CustomResourceDefinition", ""),
            k("", "Namespace", ""),
            k("rbac.authorization.k8s.io", "ClusterRole", ""),
            k("apps", "Deployment", "a"),
        ];
        keys.sort_by_key(prune_rank);
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Deployment",
                "ClusterRole",
                "Namespace",
                "CustomResourceDefinition"
            ]
        );
    }
}
