//! The status an agent publishes for its cluster (DESIGN §5): what each app runs, its
//! phase and history, known-good and poisoned renderings. Agents coordinate only
//! through these documents, stored as `status.json` in commits under
//! `refs/rollwave/status/<cluster>` ([`crate::source::statusref`]), or in one object
//! per cluster on a hub cluster ([`hub`], [`object`]) when fleet.yaml says
//! `status: {store: kubernetes}` ([`StoreKind`]).

mod compact;
pub mod hub;
pub mod hub_init;
pub mod object;
pub mod publish;
mod ref_targets;
pub mod refs;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a fleet's statuses live (fleet.yaml `status.store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Status refs in the fleet repository: nothing more to run, fine for tens of
    /// clusters (DESIGN §5).
    #[default]
    Git,
    /// One object per cluster on a hub cluster, read by a watch: for fleets whose
    /// pushes and fetches would exceed what the Git host allows (DESIGN §5.1).
    Kubernetes,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Git => "git",
            StoreKind::Kubernetes => "kubernetes",
        })
    }
}

/// Default heartbeat interval in seconds when a status does not say.
const DEFAULT_INTERVAL_SECS: u64 = 60;

/// Most history entries kept per app.
pub const MAX_HISTORY: usize = 20;

/// The phase of an app on a cluster, in order from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Applied and healthy.
    Healthy,
    /// Left alone on purpose (suspended).
    Suspended,
    /// Being applied or waiting for workloads to become ready.
    Progressing,
    /// Healthy, but the analysis could not decide (query errors, or no data with
    /// `noData: inconclusive`): closes the gate like Degraded, never rolls back; an
    /// approval or a new release moves on.
    Inconclusive,
    /// Re-applied the last known-good rendering after a failure.
    RolledBack,
    /// Failed its health rules or its progress deadline.
    Degraded,
    /// Could not be rendered or applied.
    Error,
}

/// One earlier (release, phase) interval of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The commit.
    pub release: String,
    /// The content hash of its rendering.
    pub hash: String,
    /// The phase during the interval.
    pub phase: Phase,
    /// Start (RFC 3339).
    pub since: String,
    /// End (RFC 3339).
    pub until: String,
    /// When the analysis of this release completed on the cluster (RFC 3339), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}

/// The measurements of one metric of the analysis, for the release an app runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The last value measured; `None` when the last query returned no data or failed.
    /// Infinite values are written as the strings `+Inf` and `-Inf` (JSON has no
    /// infinity).
    #[serde(default, with = "value_serde")]
    pub value: Option<f64>,
    /// Measurements that failed their bound (or returned nothing with `noData: fail`).
    #[serde(default)]
    pub failures: u32,
    /// Consecutive query errors (reset by a successful query).
    #[serde(default)]
    pub errors: u32,
    /// Measurements taken (errors excluded).
    #[serde(default)]
    pub measurements: u32,
    /// When the last query was made (RFC 3339).
    pub at: String,
    /// What the last query said, when it was not a number (an error, no data).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

mod value_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(x) if x.is_nan() => s.serialize_none(),
            Some(x) if *x == f64::INFINITY => s.serialize_str("+Inf"),
            Some(x) if *x == f64::NEG_INFINITY => s.serialize_str("-Inf"),
            Some(x) => s.serialize_f64(*x),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(match Option::<Written>::deserialize(d)? {
            None => None,
            Some(Written::Number(x)) => Some(x),
            Some(Written::Text(t)) => match t.as_str() {
                "+Inf" | "Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                _ => None,
            },
        })
    }
}

/// A time as statuses write it: RFC 3339 with milliseconds. Peers measure bakes from
/// `since`, and a time cut to the second could shorten a bake by up to a second (RFC
/// 3339 allows the fraction, and readers of second-precision statuses still parse them).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The state of one app on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The commit applied.
    pub release: String,
    /// Its content hash.
    pub hash: String,
    /// The current phase.
    pub phase: Phase,
    /// When the phase began (RFC 3339).
    pub since: String,
    /// Why, for Error/Degraded/RolledBack/Suspended.
    #[serde(default)]
    pub message: String,
    /// Content hashes this cluster has run Healthy.
    #[serde(default)]
    pub known_good: Vec<String>,
    /// Content hashes reported Degraded.
    #[serde(default)]
    pub poisoned: Vec<String>,
    /// Earlier intervals, newest first, at most [`MAX_HISTORY`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The analysis of the current release, by metric (absent without analysis).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analysis: BTreeMap<String, MetricResult>,
    /// When the analysis of the current release completed (RFC 3339): a peer's gate
    /// needs it, besides the bake time, when the policy has analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}

impl AppStatus {
    /// A status of `release` (content hash `hash`) in `phase` since `since` (RFC 3339),
    /// with no message, history or analysis yet.
    pub fn new(release: &str, hash: &str, phase: Phase, since: String) -> AppStatus {
        AppStatus {
            release: release.to_string(),
            hash: hash.to_string(),
            phase,
            since,
            message: String::new(),
            known_good: Vec::new(),
            poisoned: Vec::new(),
            history: Vec::new(),
            analysis: BTreeMap::new(),
            verified: None,
        }
    }
}

/// The whole status document of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster.
    pub cluster: String,
    /// Agent version.
    pub agent: String,
    /// Last heartbeat (RFC 3339).
    pub heartbeat: String,
    /// Heartbeat interval in seconds.
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// Per app.
    #[serde(default)]
    pub apps: BTreeMap<String, AppStatus>,
    /// Notifications delivered, by app (`Healthy@<release>`, oldest first; see
    /// [`crate::agent::notify`]): kept here so a restarted agent sends each once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notified: BTreeMap<String, Vec<String>>,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECS
}

/// Why a peer's status could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status of cluster '{cluster}': {message}")]
pub struct StatusError {
    /// The cluster whose ref it is.
    pub cluster: String,
    /// What is wrong.
    pub message: String,
}

impl ClusterStatus {
    /// Parses `status.json` found under `refs/rollwave/status/<cluster>`, checking that
    /// it describes that cluster and that its timestamps parse.
    pub fn parse(cluster: &str, bytes: &[u8]) -> Result<Self, StatusError> {
        let err = |message: String| StatusError {
            cluster: cluster.to_string(),
            message,
        };
        if bytes.len() > 4 * 1024 * 1024 {
            return Err(err("status.json is larger than 4 MiB".into()));
        }
        let s: ClusterStatus =
            serde_json::from_slice(bytes).map_err(|e| err(format!("status.json: {e}")))?;
        if s.cluster != cluster {
            return Err(err(format!(
                "status.json names cluster '{}', not the cluster of its ref",
                s.cluster
            )));
        }
        humantime::parse_rfc3339(&s.heartbeat)
            .map_err(|e| err(format!("heartbeat '{}': {e}", s.heartbeat)))?;
        for (app, a) in &s.apps {
            humantime::parse_rfc3339(&a.since)
                .map_err(|e| err(format!("apps.{app}.since '{}': {e}", a.since)))?;
        }
        Ok(s)
    }

    /// Whether the status is recent enough to be believed at `now`: its heartbeat is
    /// at most three intervals old (DESIGN §4; an older one reads as Unknown, which
    /// closes the gates that depend on it).
    pub fn is_fresh(&self, now: std::time::SystemTime) -> bool {
        humantime::parse_rfc3339(&self.heartbeat).is_ok_and(|beat| {
            now.duration_since(beat).map_or(true, |age| {
                age <= std::time::Duration::from_secs(self.interval.max(1).saturating_mul(3))
            })
        })
    }

    /// Serialises to pretty JSON for `status.json`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Clusters of a fleet whose store is the hub that still publish fresh status refs
/// newer than their hub object (or have none there): each one's agent writes where
/// no peer reads, so the fleet would be split in silence. One message per cluster.
pub fn split_between_stores(
    hub: &BTreeMap<String, ClusterStatus>,
    refs: &BTreeMap<String, ClusterStatus>,
    now: std::time::SystemTime,
) -> Vec<String> {
    let beat = |s: &ClusterStatus| humantime::parse_rfc3339(&s.heartbeat).ok();
    refs.values()
        .filter(|r| r.is_fresh(now))
        .filter(|r| hub.get(&r.cluster).is_none_or(|h| beat(h) < beat(r)))
        .map(|r| {
            format!(
                "cluster '{}' publishes its status to the Git status refs (heartbeat {}) but fleet.yaml keeps statuses on the hub (status: {{store: kubernetes}}): its agent needs `hub:` in its config (or a newer version); until then its peers see it as Unknown",
                r.cluster, r.heartbeat
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_still_publishing_to_git_is_reported_once_its_hub_copy_is_older() {
        let at = |c: &str, beat: &str| ClusterStatus {
            cluster: c.into(),
            agent: "rollwave/0.1.0".into(),
            heartbeat: beat.into(),
            interval: 60,
            apps: BTreeMap::new(),
            notified: BTreeMap::new(),
        };
        let now = humantime::parse_rfc3339("2026-11-23T10:01:00Z").unwrap();
        let hub: BTreeMap<_, _> = [
            ("a".to_string(), at("a", "2026-11-23T10:00:30Z")),
            ("b".to_string(), at("b", "2026-11-23T09:00:00Z")),
        ]
        .into();
        let refs: BTreeMap<_, _> = [
            // Moved to the hub: its last ref is older than its object.
            ("a".to_string(), at("a", "2026-11-23T10:00:00Z")),
            // Still writing refs, its hub object stale.
            ("b".to_string(), at("b", "2026-11-23T10:00:50Z")),
            // Never on the hub.
            ("c".to_string(), at("c", "2026-11-23T10:00:40Z")),
            // Stopped long ago: nothing to report.
            ("d".to_string(), at("d", "2026-11-22T10:00:00Z")),
        ]
        .into();
        let w = split_between_stores(&hub, &refs, now);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("cluster 'b' publishes") && w[1].starts_with("cluster 'c'"),
            "{w:?}"
        );
        assert!(w[0].contains("needs `hub:`"), "{w:?}");
    }

    #[test]
    fn parses_the_documented_example_and_defaults_the_interval() {
        let json = br#"{"cluster": "prod-bj-1", "agent": "0.1.0", "heartbeat": "2026-11-23T10:00:00Z",
          "apps": {"web": {"release": "abc", "hash": "h1", "phase": "Healthy", "since": "2026-11-23T09:51:00Z",
                  "message": "", "knownGood": ["h1"], "poisoned": [],
                  "history": [{"release": "old", "hash": "h0", "phase": "Healthy",
                               "since": "2026-11-23T09:20:00Z", "until": "2026-11-23T09:50:00Z"}]}}}"#;
        let s = ClusterStatus::parse("prod-bj-1", json).unwrap();
        assert_eq!(s.interval, 60);
        assert_eq!(s.apps["web"].phase, Phase::Healthy);
        assert_eq!(s.apps["web"].history.len(), 1);
        let back = ClusterStatus::parse("prod-bj-1", &s.to_json()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_status_for_another_cluster_or_with_bad_times_is_refused() {
        let json = br#"{"cluster": "x", "agent": "0.1.0", "heartbeat": "2026-11-23T10:00:00Z"}"#;
        assert!(
            ClusterStatus::parse("y", json)
                .unwrap_err()
                .message
                .contains("names cluster 'x'")
        );
        let json = br#"{"cluster": "x", "agent": "0.1.0", "heartbeat": "yesterday"}"#;
        assert!(
            ClusterStatus::parse("x", json)
                .unwrap_err()
                .message
                .contains("heartbeat")
        );
    }

    #[test]
    fn analysis_results_round_trip_and_old_statuses_without_them_still_parse() {
        let json = br#"{"cluster": "c", "agent": "0.1.0", "heartbeat": "2026-11-23T10:00:00Z",
          "apps": {"web": {"release": "abc", "hash": "h1", "phase": "Inconclusive", "since": "2026-11-23T09:51:00Z",
                  "verified": "2026-11-23T09:55:00Z",
                  "analysis": {"error-ratio": {"value": 0.31, "failures": 1, "errors": 0, "measurements": 1, "at": "2026-11-23T09:52:00Z"},
                               "p99": {"value": "+Inf", "failures": 0, "errors": 2, "at": "2026-11-23T09:52:00Z", "note": "timeout"},
                               "empty": {"value": null, "at": "2026-11-23T09:52:00Z"}}}}}"#;
        let s = ClusterStatus::parse("c", json).unwrap();
        let a = &s.apps["web"];
        assert_eq!(a.phase, Phase::Inconclusive);
        assert_eq!(a.analysis["error-ratio"].value, Some(0.31));
        assert_eq!(a.analysis["p99"].value, Some(f64::INFINITY));
        assert_eq!(a.analysis["empty"].value, None);
        assert_eq!(a.verified.as_deref(), Some("2026-11-23T09:55:00Z"));
        let back = ClusterStatus::parse("c", &s.to_json()).unwrap();
        assert_eq!(back, s);
        let text = String::from_utf8(s.to_json()).unwrap();
        assert!(text.contains("\"value\": \"+Inf\""), "{text}");
        // Written by an agent without analysis: no `analysis`, no `verified`.
        let old = br#"{"cluster": "c", "agent": "0.1.0", "heartbeat": "2026-11-23T10:00:00Z",
          "apps": {"web": {"release": "abc", "hash": "h1", "phase": "Healthy", "since": "2026-11-23T09:51:00Z"}}}"#;
        let s = ClusterStatus::parse("c", old).unwrap();
        assert!(s.apps["web"].analysis.is_empty());
        assert_eq!(s.apps["web"].verified, None);
        let text = String::from_utf8(s.to_json()).unwrap();
        assert!(
            !text.contains("analysis") && !text.contains("verified"),
            "{text}"
        );
    }

    #[test]
    fn phases_order_from_best_to_worst() {
        assert!(Phase::Healthy < Phase::Progressing);
        assert!(Phase::Progressing < Phase::Degraded);
        assert!(Phase::Degraded < Phase::Error);
    }
}
