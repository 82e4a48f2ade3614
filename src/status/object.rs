//! A cluster's status as a ConfigMap on the hub (`status: {store: kubernetes}` in
//! fleet.yaml, DESIGN §5.1): the same document as a status ref's `status.json`, in an
//! object named after the cluster in namespace [`NAMESPACE`]. Pure: status in, object
//! out, and back; [`super::hub`] does the I/O.
//!
//! A ConfigMap is a built-in kind every cluster has (no CRD to install on the hub) and
//! RBAC can name it (`resourceNames: [<cluster>]`), so each agent can be allowed to
//! write its own clusters' objects only. Kubernetes keeps an object under 1 MiB: a
//! status whose JSON is larger than [`COMPRESS_ABOVE`] is stored gzip-compressed under
//! `binaryData`, and one still too large compressed is refused with
//! [`ObjectError::TooLarge`] (a cluster with 500 apps and their full histories needs
//! about a fifth of the limit compressed).

use std::io::{Read, Write};

use base64::Engine;
use serde_json::{Value, json};

use super::{ClusterStatus, StatusError};
use crate::vocab::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// The hub namespace that holds every cluster's status.
pub const NAMESPACE: &str = "rollwave-status";
/// The label every status object carries (value `"true"`): what agents watch.
pub const LABEL: &str = "rollwave.io/status";
/// The key of an uncompressed status under `data`.
pub const KEY: &str = "status.json";
/// The key of a compressed status under `binaryData`.
const KEY_GZIP: &str = "status.json.gz";
/// The field manager of status writes.
pub const FIELD_MANAGER: &str = "rollwave-status";
/// A status whose JSON is larger than this is compressed.
pub const COMPRESS_ABOVE: usize = 64 * 1024;
/// Largest stored status (compressed, base64-encoded as the API carries it): the API
/// server refuses objects over 1 MiB, and metadata needs room.
pub const MAX_STORED_BYTES: usize = 1_000_000;
/// Largest status a hub object may expand to (a zip bomb stops here).
const MAX_EXPANDED_BYTES: usize = 4 * 1024 * 1024;

/// Why a status cannot be stored on the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// The cluster's name cannot name a ConfigMap.
    #[error(
        "cluster '{0}': its name cannot name an object on the hub (lowercase letters, digits, '-' and '.', at most 253 characters); rename clusters/{0}.yaml or use the Git status store"
    )]
    Name(String),
    /// Too large even compressed.
    #[error(
        "status of cluster '{cluster}' is {bytes} bytes compressed, over the hub's limit of {limit} bytes for one object; fewer apps per cluster, or the Git status store"
    )]
    TooLarge {
        /// The cluster.
        cluster: String,
        /// Its compressed, encoded size.
        bytes: usize,
        /// [`MAX_STORED_BYTES`].
        limit: usize,
    },
}

/// The name of `cluster`'s status object, checked.
pub fn object_name(cluster: &str) -> Result<&str, ObjectError> {
    if crate::names::is_dns_subdomain(cluster) {
        Ok(cluster)
    } else {
        Err(ObjectError::Name(cluster.to_string()))
    }
}

/// The ConfigMap of `cluster` with no status in it: name, namespace and labels, which
/// the agent's writes and `rollwave hub init` ([`placeholder`]) share, so neither
/// takes away what the other set.
fn empty_object(cluster: &str, namespace: &str) -> Result<Value, ObjectError> {
    let name = object_name(cluster)?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL: "true", MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
    }))
}

/// The ConfigMap holding `status`, as a server-side apply body.
pub fn to_object(status: &ClusterStatus, namespace: &str) -> Result<Value, ObjectError> {
    let mut object = empty_object(&status.cluster, namespace)?;
    let text = serde_json::to_vec(status).unwrap_or_default();
    if text.len() <= COMPRESS_ABOVE {
        object["data"] = json!({ KEY: String::from_utf8_lossy(&text) });
        return Ok(object);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = gz
        .write_all(&text)
        .and_then(|()| gz.finish())
        .unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(compressed);
    if encoded.len() > MAX_STORED_BYTES {
        return Err(ObjectError::TooLarge {
            cluster: status.cluster.clone(),
            bytes: encoded.len(),
            limit: MAX_STORED_BYTES,
        });
    }
    object["binaryData"] = json!({ KEY_GZIP: encoded });
    Ok(object)
}

/// The empty status object of `cluster`, created on the hub ahead of its agent
/// (`rollwave hub init`): the agent's watch finds it by its label, reads it as "no
/// status yet" ([`is_placeholder`]), and the agent then needs only `patch` on it.
pub fn placeholder(cluster: &str, namespace: &str) -> Result<Value, ObjectError> {
    empty_object(cluster, namespace)
}

/// Whether `object` holds no status yet: the empty object an administrator creates
/// for each cluster so that its agent needs only `patch` on that one name (RBAC
/// cannot limit `create` to a name; see [`placeholder`]).
pub fn is_placeholder(object: &Value) -> bool {
    let empty = |v: &Value| v.as_object().is_none_or(|m| m.is_empty());
    empty(&object["data"]) && empty(&object["binaryData"])
}

/// The status in a hub object, checked as a status ref's is
/// ([`ClusterStatus::parse`]): it must describe the cluster the object is named after.
pub fn from_object(object: &Value) -> Result<ClusterStatus, StatusError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let err = |message: String| StatusError {
        cluster: name.to_string(),
        message: format!("hub object {NAMESPACE}/{name}: {message}"),
    };
    if let Some(text) = object["data"][KEY].as_str() {
        return ClusterStatus::parse(name, text.as_bytes());
    }
    let Some(encoded) = object["binaryData"][KEY_GZIP].as_str() else {
        return Err(err(format!("neither data.{KEY} nor binaryData.{KEY_GZIP}")));
    };
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| err(format!("binaryData.{KEY_GZIP}: {e}")))?;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(MAX_EXPANDED_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| err(format!("binaryData.{KEY_GZIP}: not gzip: {e}")))?;
    if text.len() > MAX_EXPANDED_BYTES {
        return Err(err(format!(
            "binaryData.{KEY_GZIP} expands to more than {MAX_EXPANDED_BYTES} bytes"
        )));
    }
    ClusterStatus::parse(name, &text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::status::{AppStatus, HistoryEntry, Phase};

    fn status(cluster: &str, apps: usize, history: usize) -> ClusterStatus {
        let entry = |i: usize| HistoryEntry {
            release: format!("{:040x}", i * 7919),
            hash: format!("{:064x}", i * 104729),
            phase: Phase::Healthy,
            since: "2026-11-23T09:20:00.123Z".into(),
            until: "2026-11-23T09:50:00.456Z".into(),
            verified: None,
        };
        let app = |i: usize| AppStatus {
            release: format!("{:040x}", i),
            hash: format!("{:064x}", i * 31),
            phase: Phase::Healthy,
            since: "2026-11-23T09:51:00.000Z".into(),
            message: String::new(),
            known_good: (0..3).map(|k| format!("{:064x}", i * 97 + k)).collect(),
            poisoned: Vec::new(),
            history: (0..history).map(entry).collect(),
            analysis: BTreeMap::new(),
            verified: None,
        };
        ClusterStatus {
            cluster: cluster.into(),
            agent: "rollwave/0.1.0".into(),
            heartbeat: "2026-11-23T10:00:00.000Z".into(),
            interval: 60,
            apps: (0..apps).map(|i| (format!("app-{i}"), app(i))).collect(),
            notified: BTreeMap::new(),
        }
    }

    #[test]
    fn a_small_status_is_plain_json_and_reads_back() {
        let s = status("prod-bj-1", 3, 2);
        let o = to_object(&s, NAMESPACE).unwrap();
        assert_eq!(o["metadata"]["name"], "prod-bj-1");
        assert_eq!(o["metadata"]["labels"][LABEL], "true");
        assert!(o["data"][KEY].is_string() && o.get("binaryData").is_none());
        assert_eq!(from_object(&o).unwrap(), s);
    }

    #[test]
    fn five_hundred_apps_with_full_histories_fit_compressed() {
        let s = status("big", 500, crate::status::MAX_HISTORY);
        let o = to_object(&s, NAMESPACE).unwrap();
        let stored = o["binaryData"][KEY_GZIP].as_str().unwrap().len();
        assert!(stored < MAX_STORED_BYTES, "{stored}");
        assert!(o.get("data").is_none());
        assert_eq!(from_object(&o).unwrap(), s);
    }

    #[test]
    fn a_status_too_large_compressed_is_refused_with_its_size() {
        let mut s = status("huge", 1, 0);
        // Incompressible messages: pseudo-random hex.
        let mut x: u64 = 88172645463325252;
        for i in 0..3000 {
            let mut m = String::new();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                m.push_str(&format!("{x:016x}"));
            }
            let mut a = s.apps["app-0"].clone();
            a.message = m;
            s.apps.insert(format!("app-{i}"), a);
        }
        match to_object(&s, NAMESPACE).unwrap_err() {
            ObjectError::TooLarge {
                cluster,
                bytes,
                limit,
            } => {
                assert_eq!(cluster, "huge");
                assert!(bytes > limit);
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_name_that_cannot_name_an_object_is_refused() {
        let s = status("Prod_1", 1, 0);
        let e = to_object(&s, NAMESPACE).unwrap_err().to_string();
        assert!(
            e.contains("cluster 'Prod_1'") && e.contains("Git status store"),
            "{e}"
        );
    }

    #[test]
    fn an_object_for_another_cluster_or_a_broken_one_is_an_error_not_a_status() {
        let mut o = to_object(&status("a", 1, 0), NAMESPACE).unwrap();
        o["metadata"]["name"] = json!("b");
        assert!(
            from_object(&o)
                .unwrap_err()
                .message
                .contains("names cluster 'a'")
        );
        let o = json!({"metadata": {"name": "c"}, "data": {"other": "x"}});
        assert!(from_object(&o).unwrap_err().message.contains("neither"));
        assert!(!is_placeholder(&o));
        assert!(is_placeholder(&json!({"metadata": {"name": "c"}})));
        assert!(is_placeholder(
            &json!({"metadata": {"name": "c"}, "data": {}})
        ));
        let o = json!({"metadata": {"name": "c"}, "binaryData": {KEY_GZIP: "bm90IGd6aXA="}});
        assert!(from_object(&o).unwrap_err().message.contains("not gzip"));
    }

    #[test]
    fn a_zip_bomb_stops_at_the_expansion_limit() {
        let zeros = vec![b' '; MAX_EXPANDED_BYTES + 10];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let o = json!({"metadata": {"name": "c"}, "binaryData": {KEY_GZIP: encoded}});
        assert!(
            from_object(&o)
                .unwrap_err()
                .message
                .contains("expands to more than")
        );
    }
}
