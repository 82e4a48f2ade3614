//! Discovery: which kinds a cluster serves, and whether they are namespaced. Read once,
//! read again when a kind is missing (a CRD of the revision, or one installed since),
//! and with partial failure allowed: an aggregated API that does not answer makes only
//! the objects of its group-version fail, naming its APIService's condition.

use std::collections::HashMap;

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use super::inventory::ObjectKey;
use super::retry::{self, RetryPolicy, with_retries};
use super::{ApplyError, DISCOVERY_DEADLINE, Reconciler, bounded, message_of};

/// The kinds a cluster serves: (group, version, kind) to resource and scope.
#[derive(Debug, Default)]
pub(super) struct Kinds {
    pub(super) map: HashMap<(String, String, String), (ApiResource, bool)>,
    /// Group-versions the cluster lists but could not describe, with why (the
    /// APIService's condition when it is an aggregated API), and the pass in which
    /// that was found: the next pass asks again.
    pub(super) failed: HashMap<(String, String), (String, u64)>,
}

impl Reconciler {
    /// Reads every served kind, each discovery request retried on its own (one
    /// flaky response among dozens must not fail the whole read). A group-version that
    /// cannot be described (an aggregated API whose service does not answer) is
    /// recorded as unavailable, with its APIService's condition, and stops only the
    /// apps that use it: kubectl, the garbage collector and the namespace controller
    /// carry on with partial discovery the same way.
    pub(super) async fn refresh_discovery(&self) -> Result<(), ApplyError> {
        let err = |(e, _): (kube::Error, u32)| ApplyError::Discovery(message_of(&e));
        let c = &self.client;
        let mut kinds = Kinds::default();
        let core = with_retries(&self.retry, || c.list_core_api_versions())
            .await
            .map_err(err)?;
        let mut lists = Vec::new();
        for v in &core.versions {
            let list = with_retries(&self.retry, || c.list_core_api_resources(v))
                .await
                .map_err(err)?;
            lists.push((String::new(), v.clone(), list));
        }
        let groups = with_retries(&self.retry, || c.list_api_groups())
            .await
            .map_err(err)?;
        // One group-version's API is not the API server: a few tries, and its failure
        // does not trip the cluster's breaker.
        let one_api = RetryPolicy {
            attempts: retry::LOCAL_ATTEMPTS,
            deadline: DISCOVERY_DEADLINE,
            breaker: retry::Breaker::default(),
            ..self.retry.clone()
        };
        let mut described = Vec::new();
        for g in &groups.groups {
            for v in &g.versions {
                let one_api = &one_api;
                described.push(async move {
                    let r = with_retries(one_api, || c.list_api_group_resources(&v.group_version))
                        .await;
                    (g.name.clone(), v.version.clone(), r)
                });
            }
        }
        let pass = self.retry.breaker.pass();
        for (group, version, r) in bounded(described, self.concurrency).await {
            match r {
                Ok(list) => lists.push((group, version, list)),
                // Listed a moment ago and gone now (a CRD just deleted): not served.
                Err((kube::Error::Api(s), _)) if s.code == 404 => {}
                Err((e, _)) => {
                    let reason = self.apiservice_condition(&group, &version).await;
                    let reason = reason.unwrap_or_else(|| message_of(&e));
                    tracing::warn!(
                        group,
                        version,
                        reason,
                        "API unavailable: the apps that use it wait, the others are applied"
                    );
                    kinds.failed.insert((group, version), (reason, pass));
                }
            }
        }
        for (group, version, list) in lists {
            for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
                let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
                kinds.map.insert(
                    (group.clone(), version.clone(), r.kind.clone()),
                    (
                        ApiResource::from_gvk_with_plural(&gvk, &r.name),
                        r.namespaced,
                    ),
                );
            }
        }
        *self.discovery.write().await = Some(kinds);
        self.refreshed
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Why an aggregated API is not served, from its APIService's `Available`
    /// condition (`None` when there is no APIService or it cannot be read).
    async fn apiservice_condition(&self, group: &str, version: &str) -> Option<String> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
            "apiservices",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let name = format!("{version}.{group}");
        let svc = serde_json::to_value(api.get_opt(&name).await.ok()??).ok()?;
        let cond = svc["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Available")?
            .clone();
        Some(format!(
            "APIService {name} is Available={} ({}: {})",
            cond["status"].as_str().unwrap_or("Unknown"),
            cond["reason"].as_str().unwrap_or(""),
            cond["message"].as_str().unwrap_or("")
        ))
    }

    /// The resource serving a group/version/kind, refreshing discovery once when it is
    /// not known, or when its group-version was unavailable in an earlier pass.
    pub(super) async fn resolve(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<(ApiResource, bool)>, ApplyError> {
        let id = (key.group.clone(), key.version.clone(), key.kind.clone());
        let gv = (key.group.clone(), key.version.clone());
        let pass = self.retry.breaker.pass();
        let seen = self.refreshed.load(std::sync::atomic::Ordering::Acquire);
        {
            let kinds = self.discovery.read().await;
            if let Some(kinds) = kinds.as_ref() {
                if let Some(found) = kinds.map.get(&id) {
                    return Ok(Some(found.clone()));
                }
                if let Some((reason, when)) = kinds.failed.get(&gv)
                    && *when == pass
                {
                    return Err(self.unavailable(key, reason));
                }
            }
        }
        {
            let _one = self.refreshing.lock().await;
            // Read again by another app while this one waited: that answer is as new.
            if self.refreshed.load(std::sync::atomic::Ordering::Acquire) == seen {
                self.refresh_discovery().await?;
            }
        }
        let kinds = self.discovery.read().await;
        let Some(kinds) = kinds.as_ref() else {
            return Ok(None);
        };
        if let Some((reason, _)) = kinds.failed.get(&gv) {
            return Err(self.unavailable(key, reason));
        }
        Ok(kinds.map.get(&id).cloned())
    }

    fn unavailable(&self, key: &ObjectKey, reason: &str) -> ApplyError {
        ApplyError::Unavailable {
            object: key.clone(),
            group_version: format!("{}/{}", key.group, key.version),
            apiservice: format!("{}.{}", key.version, key.group),
            reason: reason.to_string(),
        }
    }
}
