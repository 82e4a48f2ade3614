//! The OpenAPI v3 documents kubectl reads before `apply` and `diff`: not full schemas,
//! but for every served kind the PATCH operation with its `x-kubernetes-group-version-kind`
//! and the `fieldValidation` query parameter. That tells kubectl the server validates
//! fields itself, so it sends `fieldValidation=Strict` instead of validating client-side
//! against schemas we do not publish.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::kinds::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3/<api|apis/group>/<version>`, or `None` when the group version is
/// not served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let base = gv_path(group, version);
    for t in registry
        .all()
        .filter(|t| t.group == group && t.serves(version))
    {
        let item = if t.namespaced {
            format!("/{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("/{base}/{}/{{name}}", t.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
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
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// `GET /openapi/v3`: every group version with a URL whose hash changes with its
/// content, so clients' caches follow CRD changes.
pub fn root(registry: &Registry) -> Value {
    let mut gvs: Vec<(String, String)> = Vec::new();
    for t in registry.all() {
        for v in &t.versions {
            let gv = (t.group.clone(), v.clone());
            if !gvs.contains(&gv) {
                gvs.push(gv);
            }
        }
    }
    let mut paths = Map::new();
    for (g, v) in gvs {
        let Some(doc) = group_version(registry, &g, &v) else {
            continue;
        };
        let hash: String = Sha256::digest(serde_json::to_vec(&doc).unwrap_or_default())
            .iter()
            .take(16)
            .map(|b| format!("{b:02X}"))
            .collect();
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({ "paths": paths })
}
