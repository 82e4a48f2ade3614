//! Whether a live object already is what rollwave would apply: every field of the
//! desired object present in the live one with the same value (the server may add
//! defaults and others may own extra fields), and rollwave's own managed fields no
//! wider than the desired set (otherwise an apply would still remove something).
//! Pure; this is what lets a steady-state reconcile make no write at all.
//!
//! The comparison follows what a real apiserver does to an applied object, as far as
//! it can be known without its schema:
//! - a zero value (`""`, `0`, `false`, `null`, `[]`, `{}`) the server leaves out
//!   (Go's `omitempty`) matches an absent field, and `null` in the rendering (such as
//!   `creationTimestamp: null`) states no opinion;
//! - a Secret's `stringData` is compared as the `data` the server stores it as;
//! - the `rules` of a ClusterRole with an `aggregationRule` belong to the aggregation
//!   controller;
//! - the server's managedFields say which maps and structs it treats as atomic (one
//!   leaf, as `nodeSelector`): those are compared whole, so removing a key from one is
//!   still seen; `"."` marks and granularity differences between the rendering and the
//!   server's schema are not taken for a change of ownership.
//!
//! What this cannot know (a default the server fills into a field the rendering also
//! sets, say) shows as a difference; the reconciler then asks the server with a dry run
//! and remembers the answer ([`Verified`]), so such an object costs one dry run after
//! it changes and never a write.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::fieldset::{
    FieldPath, FieldSet, ListShape, ListShapes, PathElement, fields_of, from_fields_v1, item_key,
};

/// The field manager rollwave applies with.
pub const FIELD_MANAGER: &str = "rollwave";

/// Why a live object needs an apply, or that it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// Nothing to do.
    InSync,
    /// The object does not exist.
    Missing,
    /// A field differs (dotted path).
    Differs(String),
    /// rollwave's managed fields are not the desired ones.
    Ownership,
}

fn group_kind(obj: &Value) -> (String, String) {
    let av = obj["apiVersion"].as_str().unwrap_or("");
    let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    (
        group.to_string(),
        obj["kind"].as_str().unwrap_or("").to_string(),
    )
}

/// The rendering as the server will store it, where that is known without asking:
/// a Secret's `stringData` folded into `data`, and an aggregated ClusterRole's `rules`
/// left to the aggregation controller.
fn as_stored(desired: &Value) -> Value {
    let mut d = desired.clone();
    let (group, kind) = group_kind(desired);
    let Some(m) = d.as_object_mut() else {
        return d;
    };
    if group.is_empty()
        && kind == "Secret"
        && let Some(Value::Object(strings)) = m.remove("stringData")
    {
        let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if data.is_null() {
            *data = Value::Object(Map::new());
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in strings {
                let text = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                data.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    if group == "rbac.authorization.k8s.io"
        && kind == "ClusterRole"
        && m.get("aggregationRule").is_some_and(|a| !a.is_null())
    {
        m.remove("rules");
    }
    d
}

/// The fields rollwave owns on `live` (its Apply entry), `None` when it owns nothing.
fn owned_fields(live: &Value) -> Option<FieldSet> {
    live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["manager"] == FIELD_MANAGER
                && e["operation"] == "Apply"
                && e["subresource"].as_str().unwrap_or("").is_empty()
        })
        .map(|e| from_fields_v1(&e["fieldsV1"]))
}

/// Compares desired with live.
pub fn sync_state(desired: &Value, live: Option<&Value>) -> Sync {
    let Some(live) = live else {
        return Sync::Missing;
    };
    let (group, kind) = group_kind(desired);
    let shapes = ListShapes::new(&group, &kind, None);
    let owned = owned_fields(live);
    let stored = as_stored(desired);
    let mut walk = Walk {
        shapes: &shapes,
        owned: owned.as_ref(),
        names: Vec::new(),
        path: Vec::new(),
    };
    if let Some(p) = walk.first_difference(&stored, live) {
        return Sync::Differs(p);
    }
    let mut scoped = desired.clone();
    if let Some(m) = scoped.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
        }
    }
    let Ok(want) = fields_of(&scoped, &shapes) else {
        return Sync::Ownership;
    };
    match owned {
        // Someone else made it: an apply adopts it, so that a field later removed from
        // the repository is removed from the object too.
        None if !want.is_empty() => Sync::Ownership,
        None => Sync::InSync,
        Some(owned) if owns_more_than(&owned, &want) => Sync::Ownership,
        Some(_) => Sync::InSync,
    }
}

/// Whether rollwave owns a field the rendering no longer sets (an apply would remove
/// it). A path covers another when one is a prefix of the other: the server may own a
/// map whole where the rendering's schema knowledge sees its keys, or the other way
/// round, and marks maps and items it owns as members (`"."`).
fn owns_more_than(owned: &FieldSet, want: &FieldSet) -> bool {
    owned.iter().any(|p| {
        // The first wanted path at or after p: p itself, or one it is a prefix of.
        let after = want.range(p.clone()..).next();
        if after.is_some_and(|q| q.starts_with(p)) {
            return false;
        }
        // Or a wanted prefix of p (checked on each of p's prefixes).
        !(1..p.len()).any(|n| want.contains(&p[..n]))
    })
}

/// Whether `v` is the zero value Go's `omitempty` leaves out of stored objects.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// One walk of desired against live, knowing where it is both by field names (for
/// list shapes) and by field path (for what the server says rollwave owns).
struct Walk<'a> {
    shapes: &'a ListShapes<'a>,
    owned: Option<&'a FieldSet>,
    names: Vec<String>,
    path: FieldPath,
}

impl Walk<'_> {
    fn here(&self) -> String {
        self.names.join(".")
    }

    /// Whether the server owns the map at the current path whole (an atomic map or
    /// struct: one leaf in its managedFields, with nothing under it).
    fn atomic_on_server(&self) -> bool {
        let Some(owned) = self.owned else {
            return false;
        };
        if self.path.is_empty() || !owned.contains(&self.path) {
            return false;
        }
        !owned
            .range(self.path.clone()..)
            .nth(1)
            .is_some_and(|q| q.starts_with(&self.path))
    }

    fn enter(&mut self, name: &str) {
        self.names.push(name.to_string());
        self.path.push(PathElement::Field(name.to_string()));
    }

    fn leave(&mut self) {
        self.names.pop();
        self.path.pop();
    }

    /// The first path where `desired` is not contained in `live`.
    fn first_difference(&mut self, desired: &Value, live: &Value) -> Option<String> {
        match (desired, live) {
            (Value::Object(d), Value::Object(l)) => {
                // An empty map sets nothing inside: the server's defaults fill it
                // (`strategy: {}`, `securityContext: {}`), and it owns the map only.
                if d.is_empty() {
                    return None;
                }
                if self.atomic_on_server() {
                    let field = self.names.last().map(String::as_str).unwrap_or("");
                    let same = same_whole(desired, live)
                        || same_whole(&with_atomic_defaults(field, desired, live), live);
                    return (!same).then(|| self.here());
                }
                for (k, dv) in d {
                    if self.names.is_empty() && k == "status" {
                        continue;
                    }
                    self.enter(k);
                    let r = match l.get(k) {
                        Some(lv) if !dv.is_null() => self.first_difference(dv, lv),
                        Some(_) => None,
                        None if is_zero(dv) => None,
                        None => Some(self.here()),
                    };
                    self.leave();
                    if r.is_some() {
                        return r;
                    }
                }
                None
            }
            (Value::Array(d), Value::Array(l)) => match self.shapes.list(&self.names) {
                ListShape::Map(keys) => {
                    for item in d {
                        let Ok(k) = item_key(item, &keys) else {
                            return Some(self.here());
                        };
                        let Some(live_item) = l
                            .iter()
                            .find(|x| item_key(x, &keys).ok().as_ref() == Some(&k))
                        else {
                            return Some(self.here());
                        };
                        self.path.push(k);
                        let r = self.first_difference(item, live_item);
                        self.path.pop();
                        if r.is_some() {
                            return r;
                        }
                    }
                    None
                }
                ListShape::Set => d.iter().any(|x| !l.contains(x)).then(|| self.here()),
                ListShape::Atomic => (!same_whole(desired, live)).then(|| self.here()),
            },
            (Value::Number(a), Value::Number(b)) => (a.as_f64() != b.as_f64()).then(|| self.here()),
            (d, l) => (d != l).then(|| self.here()),
        }
    }
}

/// An atomic struct of a built-in kind with the defaults the server fills in (the
/// `apiVersion` of a `fieldRef`, the `divisor` of a `resourceFieldRef`) where the
/// live object has exactly those.
fn with_atomic_defaults(field: &str, desired: &Value, live: &Value) -> Value {
    let defaults: &[(&str, &str)] = match field {
        "fieldRef" => &[("apiVersion", "v1")],
        "resourceFieldRef" => &[("divisor", "0")],
        _ => &[],
    };
    let mut d = desired.clone();
    if let Some(m) = d.as_object_mut() {
        for (k, v) in defaults {
            if !m.contains_key(*k) && live[*k] == *v {
                m.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
    d
}

/// Whether two values are equal as a whole (an atomic list or map: a key the live
/// side has and the rendering lacks is a difference), zero values the server leaves
/// out aside.
fn same_whole(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            d.iter().all(|(k, dv)| match l.get(k) {
                Some(lv) => same_whole(dv, lv),
                None => is_zero(dv),
            }) && l.keys().all(|k| d.contains_key(k))
        }
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| same_whole(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (d, l) => d == l,
    }
}

/// What identifies a live object's state for [`Verified`]: the object without the
/// fields that change on their own (status, resourceVersion, the times in
/// managedFields), so a controller writing status does not make it unknown again.
fn live_fingerprint(live: &Value) -> [u8; 32] {
    let mut v = live.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
                entries.retain(|e| e["subresource"] != "status");
                for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("time");
                }
            }
        }
    }
    digest(&v)
}

fn digest(v: &Value) -> [u8; 32] {
    Sha256::digest(serde_json::to_vec(v).unwrap_or_default()).into()
}

/// Objects the server confirmed to be as rendered although [`sync_state`] saw a
/// difference (a dry run of the apply changed nothing, or the apply itself returned
/// them so): remembered per object as (rendering, live state), so an object costs one
/// dry run after either changes, and a steady state none.
#[derive(Debug, Default)]
pub struct Verified {
    seen: Mutex<HashMap<String, Confirmed>>,
}

/// Digests of a rendering and of the live object the server confirmed it to be.
type Confirmed = ([u8; 32], [u8; 32]);

impl Verified {
    /// Whether `live` was confirmed to be `desired` applied.
    pub fn holds(&self, id: &str, desired: &Value, live: &Value) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(id)
            .is_some_and(|(d, l)| *d == digest(desired) && *l == live_fingerprint(live))
    }

    /// Records that `live` is what applying `desired` makes.
    pub fn remember(&self, id: &str, desired: &Value, live: &Value) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), (digest(desired), live_fingerprint(live)));
    }

    /// Forgets an object (deleted).
    pub fn forget(&self, id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Whether a dry run's result is the live object unchanged: the apply would write
/// nothing (the server keeps resourceVersion and the managedFields times of a no-op).
pub fn dry_run_changes_nothing(after: &Value, live: &Value) -> bool {
    live_fingerprint(after) == live_fingerprint(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
            "labels": {"app": "x"}}, "data": {"a": "1"}})
    }

    fn live_owned(data: Value, owned: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
            "labels": {"app": "x", "extra": "y"}, "uid": "u", "resourceVersion": "5",
            "managedFields": [{"manager": "rollwave", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": owned}]},
            "data": data})
    }

    #[test]
    fn a_live_object_with_extra_fields_and_exact_ownership_is_in_sync() {
        let owned = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}}});
        assert_eq!(
            sync_state(
                &desired(),
                Some(&live_owned(json!({"a": "1", "b": "2"}), owned))
            ),
            Sync::InSync
        );
    }

    #[test]
    fn changed_values_missing_objects_and_stale_ownership_need_an_apply() {
        let owned = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}}});
        assert_eq!(
            sync_state(&desired(), Some(&live_owned(json!({"a": "2"}), owned))),
            Sync::Differs("data.a".into())
        );
        assert_eq!(sync_state(&desired(), None), Sync::Missing);
        let more =
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}, "f:old": {}}});
        assert_eq!(
            sync_state(&desired(), Some(&live_owned(json!({"a": "1"}), more))),
            Sync::Ownership
        );
    }

    fn live_with(obj: Value, owned: Value) -> Value {
        let mut l = obj;
        l["metadata"]["managedFields"] = json!([{"manager": "rollwave", "operation": "Apply",
            "fieldsType": "FieldsV1", "fieldsV1": owned, "time": "2026-01-01T00:00:00Z"}]);
        l["metadata"]["resourceVersion"] = json!("7");
        l
    }

    #[test]
    fn an_atomic_map_owned_whole_is_in_sync_and_a_key_removed_from_it_is_seen() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}});
        let owned = json!({"f:spec": {"f:template": {"f:spec": {"f:nodeSelector": {}}}}});
        let live = live_with(desired.clone(), owned.clone());
        assert_eq!(sync_state(&desired, Some(&live)), Sync::InSync);
        let mut wider = live.clone();
        wider["spec"]["template"]["spec"]["nodeSelector"]["zone"] = json!("a");
        assert_eq!(
            sync_state(&desired, Some(&wider)),
            Sync::Differs("spec.template.spec.nodeSelector".into()),
            "an atomic map is replaced whole by the apply"
        );
        // The server fills defaults into some atomic structs.
        let desired = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}});
        let mut live = desired.clone();
        live["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] =
            json!("v1");
        let owned = json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {},
            "f:env": {"k:{\"name\":\"POD\"}": {".": {}, "f:name": {}, "f:valueFrom": {".": {}, "f:fieldRef": {}}}}}}}});
        assert_eq!(
            sync_state(&desired, Some(&live_with(live, owned))),
            Sync::InSync
        );
    }

    #[test]
    fn zero_values_the_server_leaves_out_and_nulls_are_in_sync() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "s", "creationTimestamp": null, "annotations": null},
            "spec": {"volumeClaimTemplates": [], "updateStrategy": {}, "template": {"spec": {"containers": [
                {"name": "c", "env": [{"name": "EMPTY", "value": ""}]}]}}}});
        let mut live = desired.clone();
        live["metadata"] = json!({"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"});
        live["spec"] = json!({"updateStrategy": {"type": "RollingUpdate"}, "template": {"spec": {"containers": [
            {"name": "c", "env": [{"name": "EMPTY"}], "imagePullPolicy": "Always"}]}}});
        let owned = json!({"f:spec": {"f:volumeClaimTemplates": {}, "f:updateStrategy": {}, "f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:env": {"k:{\"name\":\"EMPTY\"}": {".": {}, "f:name": {}, "f:value": {}}}}}}}}});
        assert_eq!(
            sync_state(&desired, Some(&live_with(live, owned))),
            Sync::InSync
        );
    }

    #[test]
    fn string_data_is_compared_as_the_data_the_server_stores() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"password": "hunter2"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"});
        let owned = json!({"f:stringData": {".": {}, "f:password": {}}});
        assert_eq!(
            sync_state(&desired, Some(&live_with(live.clone(), owned.clone()))),
            Sync::InSync
        );
        let mut changed = live;
        changed["data"]["password"] = json!("b3RoZXI=");
        assert_eq!(
            sync_state(&desired, Some(&live_with(changed, owned))),
            Sync::Differs("data.password".into())
        );
    }

    #[test]
    fn the_rules_of_an_aggregated_cluster_role_are_the_controllers() {
        let desired = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "view-widgets"}, "rules": [],
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        let mut live = desired.clone();
        live["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        let owned = json!({"f:rules": {}, "f:aggregationRule": {"f:clusterRoleSelectors": {}}});
        assert_eq!(
            sync_state(&desired, Some(&live_with(live, owned))),
            Sync::InSync
        );
    }

    #[test]
    fn member_marks_of_schemaless_objects_are_not_a_change_of_ownership() {
        let desired = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": {"cpu": 1}, "tags": ["a"]}});
        let owned = json!({"f:spec": {".": {}, "f:size": {".": {}, "f:cpu": {}}, "f:tags": {}}});
        assert_eq!(
            sync_state(&desired, Some(&live_with(desired.clone(), owned))),
            Sync::InSync
        );
        // A field owned and no longer rendered still needs the apply that removes it.
        let stale = json!({"f:spec": {".": {}, "f:size": {".": {}, "f:cpu": {}}, "f:tags": {}, "f:old": {}}});
        assert_eq!(
            sync_state(&desired, Some(&live_with(desired.clone(), stale))),
            Sync::Ownership
        );
    }

    #[test]
    fn an_object_someone_else_made_is_adopted_by_an_apply() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
            "labels": {"app": "x"}}, "data": {"a": "1"}});
        assert_eq!(sync_state(&desired(), Some(&live)), Sync::Ownership);
    }

    #[test]
    fn a_verified_object_holds_until_the_rendering_or_the_live_spec_changes() {
        let v = Verified::default();
        let desired = desired();
        let live = live_owned(json!({"a": "1"}), json!({}));
        v.remember("c", &desired, &live);
        let mut status_only = live.clone();
        status_only["status"] = json!({"x": 1});
        status_only["metadata"]["resourceVersion"] = json!("9");
        assert!(v.holds("c", &desired, &status_only));
        let mut edited = live.clone();
        edited["data"]["a"] = json!("2");
        assert!(!v.holds("c", &desired, &edited));
        let mut other = desired.clone();
        other["data"]["a"] = json!("3");
        assert!(!v.holds("c", &other, &live));
        assert!(dry_run_changes_nothing(&status_only, &live));
        assert!(!dry_run_changes_nothing(&edited, &live));
    }
}
