//! What an apply would change, without changing anything: each object's live state
//! next to the server's dry-run result, and the objects prune would delete. Feeds
//! `rollwave diff --live`. Made with the app's own identity, as the apply would be:
//! its policy is checked first, and an app whose policy names a ServiceAccount is read
//! and dry-run as that ServiceAccount, so a diff never shows what the apply could not
//! do.

use serde_json::Value;

use super::diff::Sync;
use super::inventory::ObjectKey;
use super::reconcile::{Planned, enforce_policy};
use super::{AppRevision, ApplyError, Reconciler, message_of, prepare};

/// One object's before and after.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The object.
    pub object: ObjectKey,
    /// As it is now (`None`: absent).
    pub live: Option<Value>,
    /// As it would be after the apply (`None`: pruned).
    pub after: Option<Value>,
}

/// The object without fields the server maintains, for showing to people.
pub fn comparable(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(meta) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(f);
        }
    }
    if let Some(m) = c.as_object_mut() {
        m.remove("status");
    }
    c
}

impl Reconciler {
    /// Every object of `rev` with its live state and its state after an apply (a
    /// server-side dry run), then the objects prune would delete.
    pub async fn preview(&self, rev: &AppRevision<'_>) -> Result<Vec<Preview>, ApplyError> {
        let objects = prepare(rev.objects);
        let mut scopes = Vec::with_capacity(objects.len());
        for obj in &objects {
            scopes.push(self.resolve(&ObjectKey::of(obj)).await?.map(|r| r.1));
        }
        enforce_policy(rev, &objects, &scopes)?;
        let client = self.client_for(rev)?;
        let mut out = Vec::new();
        let mut desired_ids = Vec::new();
        for obj in objects {
            let key = ObjectKey::of(&obj);
            desired_ids.push((
                key.group.clone(),
                key.kind.clone(),
                key.namespace.clone(),
                key.name.clone(),
            ));
            let resource = self.resolve(&key).await?;
            let Some((ar, namespaced)) = resource.clone() else {
                // Its CRD is not installed yet: the object would be created as is.
                out.push(Preview {
                    object: key,
                    live: None,
                    after: Some(obj),
                });
                continue;
            };
            let api = super::api_with(&client, &ar, namespaced, &key.namespace);
            let live = self
                .get_json(&api, &key.name)
                .await
                .map_err(|e| super::app_read_error(rev, key.clone(), &e))?;
            let planned = Planned {
                key: key.clone(),
                obj: obj.clone(),
                resource,
                sync: Sync::Missing,
                skipped: None,
            };
            let after = match self.apply_one(&client, &planned, rev.force, true).await {
                Ok(v) => v,
                Err((kube::Error::Api(s), _))
                    if s.code == 404 && s.message.starts_with("namespaces ") =>
                {
                    obj
                }
                Err((e, _)) => {
                    return Err(ApplyError::Rejected {
                        object: key,
                        message: message_of(&e),
                    });
                }
            };
            out.push(Preview {
                object: key,
                live,
                after: Some(after),
            });
        }
        let inventory = self.read_inventory(rev.app).await?;
        for key in inventory.objects {
            let id = (
                key.group.clone(),
                key.kind.clone(),
                key.namespace.clone(),
                key.name.clone(),
            );
            if desired_ids.contains(&id) {
                continue;
            }
            let Some((ar, namespaced)) = self.resolve(&key).await? else {
                continue;
            };
            // Read as prune would delete it (as the app's ServiceAccount): an object the
            // app may not read is an error, not a diff without it.
            let api = super::api_with(&client, &ar, namespaced, &key.namespace);
            let live = self
                .get_json(&api, &key.name)
                .await
                .map_err(|e| super::app_read_error(rev, key.clone(), &e))?;
            if let Some(live) = live
                && super::prune::keep_reason(&live, rev.app).is_none()
            {
                out.push(Preview {
                    object: key,
                    live: Some(live),
                    after: None,
                });
            }
        }
        Ok(out)
    }
}
