//! The inventory: one ConfigMap per app (`rollwave-inventory-<app>`) in the agent's
//! namespace, the only record of what rollwave created for the app and so the only
//! source for prune. It holds the applied release and content hash, the object list,
//! and the known-good and poisoned hashes the rollout uses, and the identity the app's
//! objects were applied as (its ServiceAccount, when its tenancy policy names one), so
//! that an app deleted from the repository is still deleted with the rights it was
//! applied with.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use super::diff::FIELD_MANAGER;
use super::retry::with_retries;
use super::{ApplyError, Reconciler, message_of};
use crate::fleet::Removal;
use crate::vocab::{APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// One object rollwave may have created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// API group, empty for core.
    pub group: String,
    /// Version the object was applied with (a hint; group and kind identify the type).
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a manifest.
    pub fn of(obj: &Value) -> ObjectKey {
        let av = obj["apiVersion"].as_str().unwrap_or("");
        let (group, version) = match av.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), av.to_string()),
        };
        ObjectKey {
            group,
            version,
            kind: obj["kind"].as_str().unwrap_or("").to_string(),
            namespace: obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        }
    }

    /// Identity without the version: the same object whichever version it is read in.
    pub fn identity(&self) -> (&str, &str, &str, &str) {
        (&self.group, &self.kind, &self.namespace, &self.name)
    }
}

impl std::fmt::Display for ObjectKey {
    /// `Deployment shop/web`, `Namespace shop`, as error messages name objects.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// What the inventory ConfigMap says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The app.
    pub app: String,
    /// The release (commit) last applied completely.
    pub release: String,
    /// Its content hash.
    pub content_hash: String,
    /// A release being applied, when the last apply did not finish.
    pub applying: Option<String>,
    /// Every object that may exist.
    pub objects: BTreeSet<ObjectKey>,
    /// Content hashes that were healthy here.
    pub known_good: Vec<String>,
    /// Content hashes that failed here.
    pub poisoned: Vec<String>,
    /// The app's own `removal` setting when it was last applied: what deleting the
    /// app's directory (and so its app.yaml) does, before the fleet default.
    pub removal: Option<Removal>,
    /// The user the app's objects were applied as (`system:serviceaccount:<ns>:<name>`,
    /// its policy's ServiceAccount), `None` for the agent's own identity. Releasing an
    /// app whose directory was deleted uses it: fleet.yaml can no longer say which
    /// ServiceAccount the app had. Inventories written before it was recorded read as
    /// `None`.
    pub applied_as: Option<String>,
}

/// The prefix of the user names Kubernetes gives ServiceAccounts.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whether `user` names a ServiceAccount (`system:serviceaccount:<namespace>:<name>`,
/// both parts non-empty): the only identity an inventory may ask the agent to take.
fn is_service_account_user(user: &str) -> bool {
    user.strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
}

/// What every inventory ConfigMap's name starts with.
const CONFIGMAP_PREFIX: &str = "rollwave-inventory-";

/// The ConfigMap name for an app.
fn configmap_name(app: &str) -> String {
    format!("{CONFIGMAP_PREFIX}{app}")
}

/// Why an inventory ConfigMap could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "inventory ConfigMap {namespace}/{name}: {reason}; fix or delete it (deleting it makes rollwave forget what to prune)"
)]
pub struct InventoryError {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl Inventory {
    /// What an app without an inventory ConfigMap reads as: nothing applied, nothing
    /// to prune.
    pub fn none(app: &str) -> Inventory {
        Inventory {
            app: app.to_string(),
            ..Default::default()
        }
    }

    /// Reads the inventory from a ConfigMap's JSON.
    fn from_configmap(cm: &Value) -> Result<Inventory, InventoryError> {
        let err = |reason: String| InventoryError {
            namespace: cm["metadata"]["namespace"].as_str().unwrap_or("").into(),
            name: cm["metadata"]["name"].as_str().unwrap_or("").into(),
            reason,
        };
        let data = &cm["data"];
        let text = |k: &str| data[k].as_str().unwrap_or("").to_string();
        let list = |k: &str| -> Result<Vec<String>, InventoryError> {
            match data[k].as_str() {
                None | Some("") => Ok(Vec::new()),
                Some(s) => serde_json::from_str(s).map_err(|e| err(format!("data.{k}: {e}"))),
            }
        };
        let objects: BTreeSet<ObjectKey> = match data["objects"].as_str() {
            None | Some("") => BTreeSet::new(),
            Some(s) => serde_json::from_str(s).map_err(|e| err(format!("data.objects: {e}")))?,
        };
        let removal = match data["removal"].as_str() {
            None | Some("") => None,
            Some("orphan") => Some(Removal::Orphan),
            Some("delete") => Some(Removal::Delete),
            Some(other) => {
                return Err(err(format!(
                    "data.removal: '{other}' is not orphan or delete"
                )));
            }
        };
        // Only a ServiceAccount: a ConfigMap edited to name another user must not make
        // the agent impersonate it.
        let applied_as = match data["appliedAs"].as_str() {
            None | Some("") => None,
            Some(user) if is_service_account_user(user) => Some(user.to_string()),
            Some(other) => {
                return Err(err(format!(
                    "data.appliedAs: '{other}' is not a ServiceAccount (system:serviceaccount:<namespace>:<name>)"
                )));
            }
        };
        Ok(Inventory {
            removal,
            applied_as,
            app: text("app"),
            release: text("release"),
            content_hash: text("contentHash"),
            applying: Some(text("applying")).filter(|s| !s.is_empty()),
            objects,
            known_good: list("knownGood")?,
            poisoned: list("poisoned")?,
        })
    }

    /// The ConfigMap to apply, in `namespace`.
    fn to_configmap(&self, namespace: &str) -> Value {
        let objects = serde_json::to_string(&self.objects).unwrap_or_default();
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": configmap_name(&self.app),
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, APP_LABEL: self.app},
            },
            "data": {
                "app": self.app,
                "release": self.release,
                "contentHash": self.content_hash,
                "applying": self.applying.clone().unwrap_or_default(),
                "objects": objects,
                "knownGood": serde_json::to_string(&self.known_good).unwrap_or_default(),
                "poisoned": serde_json::to_string(&self.poisoned).unwrap_or_default(),
                "removal": match self.removal {
                    None => "",
                    Some(Removal::Orphan) => "orphan",
                    Some(Removal::Delete) => "delete",
                },
                "appliedAs": self.applied_as.clone().unwrap_or_default(),
            },
        })
    }
}

// --- The inventory on the cluster -----------------------------------------------------
//
// Read once per app (from one list of them all), then kept in memory: this agent is
// an inventory's only writer.

impl Reconciler {
    pub(super) fn inventory_api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        );
        Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
    }

    /// Reads an app's inventory (empty when there is none); after the first read,
    /// from memory, since this agent is its only writer.
    pub async fn read_inventory(&self, app: &str) -> Result<Inventory, ApplyError> {
        if let Some(inv) = self
            .inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app)
        {
            return Ok(inv.clone());
        }
        if let Some(listed) = self.inventory_from_list(app).await {
            return Ok(listed);
        }
        let name = configmap_name(app);
        let read = match self.get_json(&self.inventory_api(), &name).await {
            Ok(Some(cm)) => Inventory::from_configmap(&cm)?,
            Ok(None) => Inventory::none(app),
            Err(e) => {
                return Err(ApplyError::InventoryRead {
                    name,
                    message: message_of(&e),
                });
            }
        };
        self.inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.to_string(), read.clone());
        Ok(read)
    }

    /// An app's inventory from one list of them all (made once, by the first app that
    /// asks): a pass over a thousand apps reads one list instead of a thousand
    /// ConfigMaps. `None` when the list failed or the app's ConfigMap could not be
    /// parsed from it: the caller reads it alone, which reports why.
    pub(super) async fn inventory_from_list(&self, app: &str) -> Option<Inventory> {
        {
            let _listing = self.listing.lock().await;
            let listed = self
                .known_apps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
            if !listed {
                self.inventoried_apps().await.ok()?;
            }
        }
        let known = self
            .known_apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|k| k.contains(app))?;
        let mut held = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        if known {
            return held.get(app).cloned();
        }
        let empty = Inventory::none(app);
        held.insert(app.to_string(), empty.clone());
        Some(empty)
    }

    /// Keeps the inventories of a list of them, except those already held (which are
    /// newer: this agent wrote them) and those that do not parse (read alone later,
    /// so that the error is reported for its app).
    fn remember_listed(&self, configmaps: &[DynamicObject]) {
        let mut held = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        for cm in configmaps {
            let Ok(value) = serde_json::to_value(cm) else {
                continue;
            };
            let Ok(inv) = Inventory::from_configmap(&value) else {
                continue;
            };
            if !inv.app.is_empty() && !held.contains_key(&inv.app) {
                held.insert(inv.app.clone(), inv);
            }
        }
    }

    fn remember_inventory(&self, inv: Option<&Inventory>, app: &str) {
        let mut m = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = self.known_apps.lock().unwrap_or_else(|e| e.into_inner());
        match inv {
            Some(i) => {
                m.insert(app.to_string(), i.clone());
                if let Some(k) = known.as_mut() {
                    k.insert(app.to_string());
                }
            }
            None => {
                m.remove(app);
                if let Some(k) = known.as_mut() {
                    k.remove(app);
                }
            }
        }
    }

    pub(super) async fn write_inventory(&self, inv: &Inventory) -> Result<(), ApplyError> {
        self.ensure_namespace().await?;
        let name = configmap_name(&inv.app);
        let cm = inv.to_configmap(&self.namespace);
        let api = self.inventory_api();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&cm);
        // Forget the remembered copy first: if this write is interrupted, the next
        // reconcile must read what the server has, not what it had (and so must not
        // take the app for one without an inventory, which the list would say).
        self.inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&inv.app);
        if let Some(known) = self
            .known_apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            known.insert(inv.app.clone());
        }
        let r = with_retries(&self.retry, || api.patch(&name, &pp, &patch))
            .await
            .map(|_| ())
            .map_err(|(e, _)| ApplyError::InventoryWrite {
                name,
                message: message_of(&e),
            });
        match &r {
            Ok(()) => self.remember_inventory(Some(inv), &inv.app),
            // Perhaps the namespace went away: look again next time.
            Err(_) => *self.namespace_exists.lock().await = false,
        }
        r
    }

    pub(super) async fn delete_inventory(&self, app: &str) -> Result<(), ApplyError> {
        let name = configmap_name(app);
        let api = self.inventory_api();
        let dp = Default::default();
        match with_retries(&self.retry, || api.delete(&name, &dp)).await {
            Ok(_) => {
                self.remember_inventory(None, app);
                Ok(())
            }
            Err((kube::Error::Api(s), _)) if s.code == 404 => {
                self.remember_inventory(None, app);
                Ok(())
            }
            Err((e, _)) => Err(ApplyError::InventoryWrite {
                name,
                message: message_of(&e),
            }),
        }
    }

    /// Creates the agent's namespace when it does not exist, once for the life of the
    /// reconciler: every inventory write would otherwise read it again. A namespace
    /// deleted behind the agent's back makes the next inventory write fail, which
    /// forgets it (see [`Reconciler::write_inventory`]), so the pass after creates it.
    pub(super) async fn ensure_namespace(&self) -> Result<(), ApplyError> {
        // Held across the read, so apps reconciled side by side read it once.
        let mut seen = self.namespace_exists.lock().await;
        if !*seen {
            self.ensure_namespace_named(&self.namespace.clone()).await?;
            *seen = true;
        }
        Ok(())
    }

    /// Apps with an inventory on this cluster (listed once, then kept in memory).
    pub async fn inventoried_apps(&self) -> Result<Vec<String>, ApplyError> {
        if let Some(known) = self
            .known_apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Ok(known.iter().cloned().collect());
        }
        let api = self.inventory_api();
        let lp = kube::api::ListParams::default()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
        let list = with_retries(&self.retry, || api.list(&lp))
            .await
            .map_err(|(e, _)| ApplyError::InventoryList {
                namespace: self.namespace.clone(),
                message: message_of(&e),
            })?;
        let apps: BTreeSet<String> = list
            .items
            .iter()
            .filter_map(|cm| {
                let name = cm.metadata.name.as_deref()?;
                name.strip_prefix(CONFIGMAP_PREFIX).map(String::from)
            })
            .collect();
        self.remember_listed(&list.items);
        *self.known_apps.lock().unwrap_or_else(|e| e.into_inner()) = Some(apps.clone());
        Ok(apps.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_round_trips_through_its_configmap() {
        let inv = Inventory {
            app: "web".into(),
            release: "abc".into(),
            content_hash: "h1".into(),
            applying: Some("def".into()),
            objects: [ObjectKey::of(
                &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"}}),
            )]
            .into(),
            known_good: vec!["h0".into()],
            poisoned: vec!["hx".into()],
            removal: Some(Removal::Delete),
            applied_as: Some("system:serviceaccount:shop:rollwave-app".into()),
        };
        let cm = inv.to_configmap("rollwave-system");
        assert_eq!(cm["metadata"]["name"], "rollwave-inventory-web");
        assert_eq!(
            cm["data"]["appliedAs"],
            "system:serviceaccount:shop:rollwave-app"
        );
        assert_eq!(Inventory::from_configmap(&cm).unwrap(), inv);
    }

    #[test]
    fn an_inventory_written_before_the_identity_was_recorded_reads_as_the_agents_own() {
        let cm = json!({"metadata": {"name": "rollwave-inventory-web", "namespace": "rs"},
            "data": {"app": "web", "release": "abc", "contentHash": "h1", "applying": "",
                "objects": "[]", "knownGood": "[]", "poisoned": "[]", "removal": "delete"}});
        let inv = Inventory::from_configmap(&cm).unwrap();
        assert_eq!(inv.applied_as, None);
        assert_eq!(inv.removal, Some(Removal::Delete));
    }

    #[test]
    fn an_inventory_naming_a_user_that_is_not_a_service_account_is_refused() {
        for user in [
            "system:admin",
            "system:serviceaccount:",
            "system:serviceaccount:web",
            "system:serviceaccount::x",
            "system:serviceaccount:web:a:b",
        ] {
            let cm = json!({"metadata": {"name": "rollwave-inventory-web", "namespace": "rs"},
                "data": {"appliedAs": user}});
            let e = Inventory::from_configmap(&cm).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "inventory ConfigMap rs/rollwave-inventory-web: data.appliedAs: '{user}' is not a ServiceAccount (system:serviceaccount:<namespace>:<name>); fix or delete it (deleting it makes rollwave forget what to prune)"
                )
            );
        }
    }

    #[test]
    fn a_corrupt_inventory_is_an_error_naming_the_configmap() {
        let cm = json!({"metadata": {"name": "rollwave-inventory-web", "namespace": "rs"},
            "data": {"objects": "not json"}});
        let e = Inventory::from_configmap(&cm).unwrap_err().to_string();
        assert!(
            e.starts_with("inventory ConfigMap rs/rollwave-inventory-web: data.objects:"),
            "{e}"
        );
    }
}
