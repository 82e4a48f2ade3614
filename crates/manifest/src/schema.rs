//! Kubernetes schema knowledge shared by the renderer, the fleet model, the agent and
//! the simulator: which built-in kinds are cluster-scoped, and for merging, which
//! lists merge by which key.
//!
//! Strategic merge patch (in the renderer) and server-side apply (in the simulated API
//! server) both need to know that containers merge by `name`, container ports by
//! `containerPort`, a Service's ports by `port`, and so on. That knowledge lives here
//! and nowhere else. Lists of built-in kinds without a merge key are replaced whole;
//! lists of custom resources merge by `name` when every element has one, which is what
//! kustomize infers when it has no schema.

use serde_json::{Map, Value};

/// How a list field combines with a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original.
    Replace,
    /// Elements are matched by this key and merged.
    MergeByKey(&'static str),
    /// Scalar elements are unioned.
    MergePrimitives,
}

/// Built-in cluster-scoped kinds, by group and kind: the renderer (kustomize's
/// namespace handling), the tenancy checks and the agent all judge scope by this.
pub fn is_cluster_scoped_kind(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace")
            | ("", "Node")
            | ("", "PersistentVolume")
            | ("", "ComponentStatus")
            | ("rbac.authorization.k8s.io", "ClusterRole")
            | ("rbac.authorization.k8s.io", "ClusterRoleBinding")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | ("storage.k8s.io", "StorageClass")
            | ("storage.k8s.io", "CSIDriver")
            | ("storage.k8s.io", "CSINode")
            | ("storage.k8s.io", "VolumeAttachment")
            | ("scheduling.k8s.io", "PriorityClass")
            | ("node.k8s.io", "RuntimeClass")
            | ("networking.k8s.io", "IngressClass")
            | ("policy", "PodSecurityPolicy")
            | ("certificates.k8s.io", "CertificateSigningRequest")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
            )
            | (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration"
            )
            | ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy")
            | (
                "admissionregistration.k8s.io",
                "ValidatingAdmissionPolicyBinding"
            )
            | ("flowcontrol.apiserver.k8s.io", "FlowSchema")
            | ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration")
    )
}

/// API groups whose kinds kustomize knows a schema for.
pub fn is_builtin_group(group: &str) -> bool {
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The strategy for the list at `path` (field names from the object root, list indexes
/// left out) in an object of `kind` in `group`.
pub fn list_strategy(group: &str, kind: &str, path: &[String]) -> ListStrategy {
    let last = path.last().map(String::as_str).unwrap_or("");
    let parent = if path.len() >= 2 {
        path[path.len() - 2].as_str()
    } else {
        ""
    };
    if path.len() == 2 && path[0] == "metadata" {
        return match last {
            "ownerReferences" => ListStrategy::MergeByKey("uid"),
            "finalizers" => ListStrategy::MergePrimitives,
            "managedFields" => ListStrategy::Replace,
            _ => ListStrategy::Replace,
        };
    }
    if !is_builtin_group(group) {
        return ListStrategy::Replace; // refined by `infer_strategy` for custom kinds
    }
    if last == "conditions" && parent == "status" {
        return ListStrategy::MergeByKey("type");
    }
    if CONTAINER_LISTS.contains(&last) {
        return ListStrategy::MergeByKey("name");
    }
    if CONTAINER_LISTS.contains(&parent) {
        return match last {
            "ports" => ListStrategy::MergeByKey("containerPort"),
            "env" => ListStrategy::MergeByKey("name"),
            "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
            "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
            _ => ListStrategy::Replace,
        };
    }
    if kind == "Service" && path.len() == 2 && path[0] == "spec" && last == "ports" {
        return ListStrategy::MergeByKey("port");
    }
    // The rest of the built-in schema's `x-kubernetes-patch-merge-key` lists.
    match (kind, path.len(), last) {
        ("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration", 1, "webhooks") => {
            return ListStrategy::MergeByKey("name");
        }
        ("ServiceAccount", 1, "secrets") => return ListStrategy::MergeByKey("name"),
        ("CSINode", 2, "drivers") if parent == "spec" => {
            return ListStrategy::MergeByKey("name");
        }
        ("Node", 2, "addresses") if parent == "status" => {
            return ListStrategy::MergeByKey("type");
        }
        _ => {}
    }
    if parent == "spec" {
        return match last {
            "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims" => {
                ListStrategy::MergeByKey("name")
            }
            "hostAliases" => ListStrategy::MergeByKey("ip"),
            "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
            _ => ListStrategy::Replace,
        };
    }
    ListStrategy::Replace
}

fn is_directive_only(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 1 && m.contains_key("$patch"))
}

/// Why a strategic merge failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A `$patch` directive with an unknown value.
    #[error(
        "field '{path}': unknown $patch directive '{value}', expected merge, replace or delete"
    )]
    UnknownDirective {
        /// Dotted path of the field.
        path: String,
        /// The directive value.
        value: String,
    },
}

/// Outcome of merging a patch into a whole object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The object was patched in place.
    Patched,
    /// The patch said `$patch: delete` at the top: the object goes away.
    Deleted,
}

/// Applies a strategic merge patch to an object of `kind` in `group`.
pub fn strategic_merge(
    group: &str,
    kind: &str,
    target: &mut Value,
    patch: &Value,
) -> Result<MergeOutcome, MergeError> {
    strategic_merge_with(group, kind, target, patch, &|_| None)
}

/// Where a caller's own schema (kustomize's `openapi` field) decides a list's
/// strategy: `Some` for the lists it knows, `None` to fall back to the built-in rules.
pub type CustomStrategy<'a> = dyn Fn(&[String]) -> Option<ListStrategy> + 'a;

/// [`strategic_merge`] with list strategies looked up in `custom` first.
pub fn strategic_merge_with(
    group: &str,
    kind: &str,
    target: &mut Value,
    patch: &Value,
    custom: &CustomStrategy<'_>,
) -> Result<MergeOutcome, MergeError> {
    if let Some(p) = patch.as_object() {
        match p.get("$patch").and_then(Value::as_str) {
            Some("delete") => return Ok(MergeOutcome::Deleted),
            Some("replace") => {
                *target = strip_directives(patch);
                return Ok(MergeOutcome::Patched);
            }
            _ => {}
        }
    }
    let mut path = Vec::new();
    let ctx = Ctx {
        group,
        kind,
        custom,
    };
    merge_value(&ctx, &mut path, target, patch)?;
    Ok(MergeOutcome::Patched)
}

/// What a merge needs to know about the object it merges into.
struct Ctx<'a, 'c> {
    group: &'a str,
    kind: &'a str,
    custom: &'a CustomStrategy<'c>,
}

fn merge_value(
    ctx: &Ctx<'_, '_>,
    path: &mut Vec<String>,
    target: &mut Value,
    patch: &Value,
) -> Result<(), MergeError> {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_map(ctx, path, t, p),
        _ => {
            *target = added(ctx, path, patch);
            Ok(())
        }
    }
}

fn merge_map(
    ctx: &Ctx<'_, '_>,
    path: &mut Vec<String>,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), MergeError> {
    if let Some(d) = patch.get("$patch").and_then(Value::as_str) {
        match d {
            "replace" => {
                if let Value::Object(m) = strip_directives(&Value::Object(patch.clone())) {
                    *target = m;
                }
                return Ok(());
            }
            "merge" | "delete" => {}
            other => {
                return Err(MergeError::UnknownDirective {
                    path: path.join("."),
                    value: other.to_string(),
                });
            }
        }
    }
    for (key, pval) in patch {
        if key == PATCH_DIRECTIVE {
            continue;
        }
        if pval.is_null() {
            target.remove(key);
            continue;
        }
        if let Some(po) = pval.as_object()
            && po.get("$patch").and_then(Value::as_str) == Some("delete")
        {
            target.remove(key);
            continue;
        }
        path.push(key.clone());
        match (target.get_mut(key), pval) {
            (Some(Value::Array(tlist)), Value::Array(plist)) => {
                merge_list(ctx, path, tlist, plist)?;
            }
            (Some(t @ Value::Object(_)), Value::Object(_)) => {
                merge_value(ctx, path, t, pval)?;
            }
            (_, Value::Array(plist)) => {
                let by_key = merges_by_key(ctx.group, ctx.kind, path, ctx.custom);
                let cleaned: Vec<Value> = plist
                    .iter()
                    .filter(|v| !is_delete_item(v))
                    .map(|v| {
                        if by_key {
                            added(ctx, path, v)
                        } else {
                            strip_directives(v)
                        }
                    })
                    .filter(|v| !is_empty_map(v))
                    .collect();
                target.insert(key.clone(), Value::Array(cleaned));
            }
            _ => {
                target.insert(key.clone(), added(ctx, path, pval));
            }
        }
        path.pop();
    }
    Ok(())
}

/// Whether the list at `path` merges element by element (by a merge key), looked up
/// in `custom` first: kustomize's merge walks into such a list's elements and hands a
/// list of any other strategy over whole.
pub fn merges_by_key(
    group: &str,
    kind: &str,
    path: &[String],
    custom: &CustomStrategy<'_>,
) -> bool {
    matches!(
        custom(path).unwrap_or_else(|| list_strategy(group, kind, path)),
        ListStrategy::MergeByKey(_)
    )
}

/// Content a patch adds where the object has none, as kustomize's merge adds it: a
/// null there deletes nothing and is dropped, in maps and in the elements of lists
/// merged by key; a list of any other strategy is taken whole, nulls and all.
fn added(ctx: &Ctx<'_, '_>, path: &mut Vec<String>, v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| {
                    k.as_str() != PATCH_DIRECTIVE && !is_delete_item(v) && !v.is_null()
                })
                .map(|(k, v)| {
                    path.push(k.clone());
                    let out = added(ctx, path, v);
                    path.pop();
                    (k.clone(), out)
                })
                .collect(),
        ),
        Value::Array(items) if merges_by_key(ctx.group, ctx.kind, path, ctx.custom) => {
            Value::Array(
                items
                    .iter()
                    .filter(|v| !is_delete_item(v) && !is_directive_only(v))
                    .map(|v| added(ctx, path, v))
                    .collect(),
            )
        }
        other => strip_directives(other),
    }
}

fn is_delete_item(v: &Value) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn is_empty_map(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

fn merge_list(
    ctx: &Ctx<'_, '_>,
    path: &mut Vec<String>,
    target: &mut Vec<Value>,
    patch: &[Value],
) -> Result<(), MergeError> {
    if patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|v| !is_directive_only(v))
            .map(strip_directives)
            .collect();
        return Ok(());
    }
    let strategy = (ctx.custom)(path).unwrap_or_else(|| list_strategy(ctx.group, ctx.kind, path));
    match strategy {
        ListStrategy::Replace => {
            *target = patch
                .iter()
                .filter(|v| !is_delete_item(v))
                .map(strip_directives)
                .collect();
        }
        // kustomize's merge puts the patch's elements first, in the patch's order, then
        // the original elements the patch did not mention, in their order. It merges
        // such a list as a set of values and a null is no value, so nulls on either
        // side (`- ~`, or `-` with nothing after it) are left out.
        ListStrategy::MergePrimitives => {
            let mut out: Vec<Value> = patch
                .iter()
                .filter(|p| !p.is_object() && !no_value(p))
                .cloned()
                .collect();
            out.extend(
                target
                    .iter()
                    .filter(|t| !no_value(t) && !patch.contains(t))
                    .cloned(),
            );
            *target = out;
        }
        ListStrategy::MergeByKey(key) => {
            let mut original: Vec<Option<Value>> =
                std::mem::take(target).into_iter().map(Some).collect();
            let mut out = Vec::with_capacity(original.len() + patch.len());
            for p in patch {
                let Some(pkey) = p.get(key) else {
                    // Elements without the key cannot be matched: kept as new elements.
                    if !is_directive_only(p) {
                        out.push(added(ctx, path, p));
                    }
                    continue;
                };
                let pos = original
                    .iter()
                    .position(|t| t.as_ref().and_then(|t| t.get(key)) == Some(pkey));
                match pos {
                    Some(i) if is_delete_item(p) => {
                        original[i] = None;
                    }
                    Some(i) => {
                        let mut merged = original[i].take().unwrap_or(Value::Null);
                        merge_value(ctx, path, &mut merged, p)?;
                        out.push(merged);
                    }
                    None if is_delete_item(p) => {}
                    None => out.push(added(ctx, path, p)),
                }
            }
            out.extend(original.into_iter().flatten());
            *target = out;
        }
    }
    Ok(())
}

/// The one directive kustomize's strategic merge understands. Other `$` keys
/// (`$setElementOrder/...`, `$retainKeys`) are kept as ordinary fields, exactly as
/// `kustomize build` prints them.
pub const PATCH_DIRECTIVE: &str = "$patch";

/// Stands, in a strategic merge patch, for a list item the patch wrote as nothing
/// (`-`): a null to the merge, but one that the renderer later tells from `~` (where
/// the object wrote the list in flow style, kustomize turns it into an empty string).
pub const UNSPELLED_ITEM: &str = "\u{0}rollwave: a list item written as nothing";

/// Stands, during a strategic merge, for a null the patched object's file wrote as
/// nothing (the renderer marks those before merging: kustomize drops such a value
/// where a patch merges into it).
pub const UNSPELLED_NULL: &str = "\u{0}rollwave: a null written as nothing";

/// A null, spelled or written as nothing on either side ([`UNSPELLED_ITEM`],
/// [`UNSPELLED_NULL`]).
fn no_value(v: &Value) -> bool {
    v.is_null() || matches!(v.as_str(), Some(UNSPELLED_ITEM | UNSPELLED_NULL))
}

/// Removes `$patch` directives from content that is inserted rather than merged:
/// elements and fields marked `$patch: delete` disappear, `{$patch: replace}` markers
/// go, and other `$patch` keys are dropped.
pub fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| k.as_str() != PATCH_DIRECTIVE && !is_delete_item(v))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| !is_delete_item(v) && !is_directive_only(v))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(kind: &str, mut base: Value, patch: Value) -> Value {
        let group = if kind == "Widget" {
            "example.com"
        } else {
            "apps"
        };
        strategic_merge(group, kind, &mut base, &patch).unwrap();
        base
    }

    #[test]
    fn containers_merge_by_name_and_keep_unpatched_fields() {
        let base = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}}}});
        let out = merged("Deployment", base, patch);
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "b:2");
        assert_eq!(c[1]["name"], "c");
        assert_eq!(c[2]["image"], "a:1");
    }

    #[test]
    fn delete_directive_removes_a_list_element_and_null_removes_a_field() {
        let base = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "args": ["x"]}, {"name": "b"}]}}, "paused": true}});
        let patch = json!({"spec": {"paused": null, "template": {"spec": {"containers": [
            {"name": "b", "$patch": "delete"}]}}}});
        let out = merged("Deployment", base, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(out["spec"].get("paused").is_none());
    }

    #[test]
    fn delete_markers_vanish_from_inserted_content() {
        let base = json!({"spec": {"template": {"spec": {"containers": [{"name": "other"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "main", "env": [{"name": "NEW"}, {"name": "OLD", "$patch": "delete"}]}]}}}});
        let out = merged("Deployment", base, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "NEW"}])
        );
    }

    #[test]
    fn replace_directive_replaces_a_map() {
        let base = json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}});
        let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"c": "3"}}}});
        let out = merged("Deployment", base, patch);
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"c": "3"}}));
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let base = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}}});
        let patch =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}}});
        let out = merged("Deployment", base, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["3"])
        );
    }

    #[test]
    fn custom_resource_lists_are_replaced_as_kustomize_has_no_schema_for_them() {
        let base = json!({"spec": {"items": [{"name": "a", "v": 1}, {"name": "b", "v": 1}]}});
        let patch = json!({"spec": {"items": [{"name": "b", "v": 2}]}});
        let out = merged("Widget", base, patch);
        assert_eq!(out["spec"]["items"], json!([{"name": "b", "v": 2}]));
    }

    #[test]
    fn merged_lists_put_patch_elements_first_like_kustomize() {
        let base =
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v1"}, {"name": "v2"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"volumes": [{"name": "v2", "x": 1}, {"name": "v3"}]}}}});
        let out = merged("Deployment", base, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "v2", "x": 1}, {"name": "v3"}, {"name": "v1"}])
        );
    }

    proptest::proptest! {
        #[test]
        fn merging_an_object_into_itself_changes_nothing(
            names in proptest::collection::btree_set("[a-z]{1,6}", 0..6),
            replicas in 0i64..100,
        ) {
            let containers: Vec<Value> = names.iter().map(|n| json!({"name": n, "image": format!("{n}:1")})).collect();
            let obj = json!({"spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}});
            let out = merged("Deployment", obj.clone(), obj.clone());
            proptest::prop_assert_eq!(out, obj);
        }

        #[test]
        fn an_empty_patch_is_the_identity(a in "[a-z]{0,8}", n in 0i64..5) {
            let obj = json!({"metadata": {"name": a}, "spec": {"n": n, "l": [1, 2]}});
            let out = merged("Deployment", obj.clone(), json!({}));
            proptest::prop_assert_eq!(out, obj);
        }
    }
}
