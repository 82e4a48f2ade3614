//! The OpenAPI v3 documents kubectl reads: for every served kind the `get` and `patch`
//! operations with their `x-kubernetes-group-version-kind` and the `fieldValidation`
//! query parameter (which tells kubectl the server validates fields itself, so it
//! sends `fieldValidation=Strict` instead of validating client-side), and the schemas
//! of the kinds under `components.schemas`, so `kubectl explain` works: the built-in
//! kinds' schemas come from the k8s-openapi types (their JSON Schema, descriptions
//! included), a custom resource's from its CRD.
//!
//! The `patch` operations carry no request body on purpose: kubectl computes a
//! client-side apply's strategic merge patch from the v3 schema only when the
//! operation declares `application/strategic-merge-patch+json`, and otherwise from
//! the v2 document ([`crate::apiserver::openapi_v2`], built from these schemas), whose merge
//! keys come from the table the simulator's strategic merge follows; v3 schemas
//! carry none.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::apiserver::kinds::{Registry, ResourceType};

pub(crate) fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Adds the schema of `T` (and of every type it refers to) to `generator`, returning
/// its name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The schema name of a built-in kind, after adding its schema to `generator`.
fn builtin(
    generator: &mut SchemaGenerator,
    group: &str,
    version: &str,
    kind: &str,
) -> Option<String> {
    let g = generator;
    Some(match (group, version, kind) {
        ("", _, "Namespace") => add::<core::Namespace>(g),
        ("", _, "ConfigMap") => add::<core::ConfigMap>(g),
        ("", _, "Secret") => add::<core::Secret>(g),
        ("", _, "Service") => add::<core::Service>(g),
        ("", _, "ServiceAccount") => add::<core::ServiceAccount>(g),
        ("", _, "Pod") => add::<core::Pod>(g),
        ("", _, "PodTemplate") => add::<core::PodTemplate>(g),
        ("", _, "ReplicationController") => add::<core::ReplicationController>(g),
        ("", _, "PersistentVolumeClaim") => add::<core::PersistentVolumeClaim>(g),
        ("", _, "PersistentVolume") => add::<core::PersistentVolume>(g),
        ("", _, "Event") => add::<core::Event>(g),
        ("", _, "Endpoints") => add::<core::Endpoints>(g),
        ("", _, "LimitRange") => add::<core::LimitRange>(g),
        ("", _, "ResourceQuota") => add::<core::ResourceQuota>(g),
        ("", _, "Node") => add::<core::Node>(g),
        ("apps", _, "Deployment") => add::<apps::Deployment>(g),
        ("apps", _, "StatefulSet") => add::<apps::StatefulSet>(g),
        ("apps", _, "DaemonSet") => add::<apps::DaemonSet>(g),
        ("apps", _, "ReplicaSet") => add::<apps::ReplicaSet>(g),
        ("apps", _, "ControllerRevision") => add::<apps::ControllerRevision>(g),
        ("batch", _, "Job") => add::<batch::Job>(g),
        ("batch", _, "CronJob") => add::<batch::CronJob>(g),
        ("networking.k8s.io", _, "Ingress") => add::<networking::Ingress>(g),
        ("networking.k8s.io", _, "IngressClass") => add::<networking::IngressClass>(g),
        ("networking.k8s.io", _, "NetworkPolicy") => add::<networking::NetworkPolicy>(g),
        ("discovery.k8s.io", _, "EndpointSlice") => add::<discovery::EndpointSlice>(g),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            add::<autoscaling1::HorizontalPodAutoscaler>(g)
        }
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            add::<autoscaling2::HorizontalPodAutoscaler>(g)
        }
        ("policy", _, "PodDisruptionBudget") => add::<policy::PodDisruptionBudget>(g),
        ("rbac.authorization.k8s.io", _, "Role") => add::<rbac::Role>(g),
        ("rbac.authorization.k8s.io", _, "RoleBinding") => add::<rbac::RoleBinding>(g),
        ("rbac.authorization.k8s.io", _, "ClusterRole") => add::<rbac::ClusterRole>(g),
        ("rbac.authorization.k8s.io", _, "ClusterRoleBinding") => {
            add::<rbac::ClusterRoleBinding>(g)
        }
        ("apiextensions.k8s.io", _, "CustomResourceDefinition") => {
            add::<apiextensions::CustomResourceDefinition>(g)
        }
        ("coordination.k8s.io", _, "Lease") => add::<coordination::Lease>(g),
        ("events.k8s.io", _, "Event") => add::<events::Event>(g),
        ("storage.k8s.io", _, "StorageClass") => add::<storage::StorageClass>(g),
        ("scheduling.k8s.io", _, "PriorityClass") => add::<scheduling::PriorityClass>(g),
        ("admissionregistration.k8s.io", _, "ValidatingWebhookConfiguration") => {
            add::<admission::ValidatingWebhookConfiguration>(g)
        }
        ("admissionregistration.k8s.io", _, "MutatingWebhookConfiguration") => {
            add::<admission::MutatingWebhookConfiguration>(g)
        }
        ("authorization.k8s.io", _, "SelfSubjectAccessReview") => {
            add::<authz::SelfSubjectAccessReview>(g)
        }
        ("authorization.k8s.io", _, "SelfSubjectRulesReview") => {
            add::<authz::SelfSubjectRulesReview>(g)
        }
        ("authorization.k8s.io", _, "SubjectAccessReview") => add::<authz::SubjectAccessReview>(g),
        ("authorization.k8s.io", _, "LocalSubjectAccessReview") => {
            add::<authz::LocalSubjectAccessReview>(g)
        }
        ("authentication.k8s.io", _, "SelfSubjectReview") => add::<authn::SelfSubjectReview>(g),
        ("authentication.k8s.io", _, "TokenReview") => add::<authn::TokenReview>(g),
        _ => return None,
    })
}

/// Schemas by name.
type Schemas = Map<String, Value>;

/// The built-in kinds' schemas for one group version, computed once per process.
fn builtin_schemas(registry: &Registry, group: &str, version: &str) -> Schemas {
    static CACHE: OnceLock<Mutex<HashMap<(String, String), Schemas>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (group.to_string(), version.to_string());
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return m.clone();
    }
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for t in registry
        .all()
        .filter(|t| t.group == group && t.serves(version))
    {
        if let Some(name) = builtin(&mut generator, group, version, &t.kind) {
            kinds.push((name, t.kind.clone()));
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (name, kind) in kinds {
        if let Some(s) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            // The k8s-openapi types hold metadata as a plain field, so their schema
            // calls it required; a real server's does not (kubectl explain shows it).
            if let Some(Value::Array(required)) = s.get_mut("required") {
                required.retain(|r| r != "metadata");
                if required.is_empty() {
                    s.remove("required");
                }
            }
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, schemas.clone());
    schemas
}

/// The schema name of a custom resource's kind, as a real server writes it
/// (`com.example.v1.Widget` for `example.com/v1` Widgets).
fn custom_name(t: &ResourceType, version: &str) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), t.kind)
}

/// A custom resource's schema: its CRD's, with the object's standard fields.
fn custom_schema(t: &ResourceType, version: &str) -> Option<Value> {
    let mut s = t.schema.clone()?;
    let obj = s.as_object_mut()?;
    let props = obj
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    props.entry("apiVersion").or_insert_with(|| {
        json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."})
    });
    props.entry("kind").or_insert_with(|| {
        json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."})
    });
    props.insert(
        "metadata".into(),
        json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
            "description": "Standard object's metadata."}),
    );
    obj.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": t.group, "version": version, "kind": t.kind}]),
    );
    Some(s)
}

/// The schemas of a group version: built-in kinds' and custom resources'.
pub(crate) fn schemas(registry: &Registry, group: &str, version: &str) -> Map<String, Value> {
    let mut out = builtin_schemas(registry, group, version);
    let mut customs = registry
        .all()
        .filter(|t| t.group == group && t.serves(version) && t.schema.is_some())
        .peekable();
    if customs.peek().is_some()
        && !out.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    {
        let mut generator = SchemaSettings::openapi3().into_generator();
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
        out.extend(generator.take_definitions(true));
    }
    for t in customs {
        if let Some(s) = custom_schema(t, version) {
            out.insert(custom_name(t, version), s);
        }
    }
    out
}

/// The paths of a group version, or `None` when it is not served.
pub(crate) fn paths(registry: &Registry, group: &str, version: &str) -> Option<Map<String, Value>> {
    let mut paths = Map::new();
    let base = gv_path(group, version);
    for t in registry
        .all()
        .filter(|t| t.group == group && t.serves(version))
    {
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        if t.create_only {
            paths.insert(
                format!("/{base}/{}", t.plural),
                json!({"post": {"operationId": format!("create{}", t.kind),
                    "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk,
                    "responses": {"201": {"description": "Created"}}}}),
            );
            continue;
        }
        let item = if t.namespaced {
            format!("/{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("/{base}/{}/{{name}}", t.plural)
        };
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        paths.insert(
            item,
            json!({
                "get": {"operationId": format!("read{}", t.kind), "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}},
                "patch": {"operationId": format!("patch{}", t.kind), "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk, "parameters": params,
                    "responses": {"200": {"description": "OK"}}},
            }),
        );
    }
    (!paths.is_empty()).then_some(paths)
}

/// `GET /openapi/v3/<api|apis/group>/<version>`, or `None` when the group version is
/// not served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let paths = paths(registry, group, version)?;
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas(registry, group, version)},
    }))
}

/// Every served group version, in the registry's order.
pub(crate) fn group_versions(registry: &Registry) -> Vec<(String, String)> {
    let mut gvs: Vec<(String, String)> = Vec::new();
    for t in registry.all() {
        for v in &t.versions {
            let gv = (t.group.clone(), v.clone());
            if !gvs.contains(&gv) {
                gvs.push(gv);
            }
        }
    }
    gvs
}

/// `GET /openapi/v3`: every group version with a URL whose hash changes with its
/// content, so clients' caches follow CRD changes.
pub fn root(registry: &Registry) -> Value {
    let mut out = Map::new();
    for (g, v) in group_versions(registry) {
        let Some(paths) = paths(registry, &g, &v) else {
            continue;
        };
        // Built-in schemas never change within a process; custom ones follow their
        // CRD, so the hash covers the paths and the custom schemas.
        let customs: Vec<Value> = registry
            .all()
            .filter(|t| t.group == g && t.serves(&v))
            .filter_map(|t| custom_schema(t, &v))
            .collect();
        let hash: String =
            Sha256::digest(serde_json::to_vec(&json!([paths, customs])).unwrap_or_default())
                .iter()
                .take(16)
                .map(|b| format!("{b:02X}"))
                .collect();
        let p = gv_path(&g, &v);
        out.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({ "paths": out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_in_kind_has_its_schema_with_descriptions_and_its_group_version_kind() {
        let registry = Registry::builtin();
        let doc = group_version(&registry, "apps", "v1").unwrap();
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
        assert!(
            spec["properties"]["replicas"]["description"]
                .as_str()
                .unwrap()
                .contains("Number of desired pods"),
            "{spec}"
        );
        // kubectl follows the references to the pod template.
        assert!(
            doc["components"]["schemas"]
                .get("io.k8s.api.core.v1.PodSpec")
                .is_some()
        );
    }
}
