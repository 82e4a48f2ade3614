//! Simulated traffic (DESIGN §8), for the analysis of bakes: every Deployment serves 10
//! requests a second per available replica, and `GET /sim/metrics` exports what it
//! served in the Prometheus text format, so a real Prometheus can scrape each simulated
//! cluster:
//! - `sim_http_requests_total{namespace,deployment,code}`: about 0.1% answered 500;
//! - `sim_http_request_duration_seconds{namespace,deployment}`: a histogram around
//!   50 ms (p99 about 0.24 s).
//!
//! A pod template whose image tag is `errors` answers 30% of requests with 500 while
//! its pods are Ready; one tagged `slow` answers in about 2 s (p99 about 4.8 s). The
//! traffic is deterministic: counts are the expected values, accumulated between two
//! scrapes from the Deployment's available replicas and template at the scrape, and
//! written as they are, with fractions (counters only ever grow). Whole requests would
//! make the 0.1% of errors arrive one at a time, every thousand requests: a rate over a
//! short window that happens to hold one of them (5 s of one replica: 50 requests, one
//! error) reads 2%, and an analysis with a 1% limit would fail a healthy release.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde_json::Value;

use crate::apiserver::store::{Filter, Store};

/// Requests a second per available replica.
pub const REQUESTS_PER_REPLICA: f64 = 10.0;

/// Histogram bucket bounds (seconds).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a Deployment's template makes it answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Errors,
    Slow,
}

impl Mode {
    fn error_ratio(self) -> f64 {
        match self {
            Mode::Errors => 0.3,
            _ => 0.001,
        }
    }

    fn mean_latency(self) -> f64 {
        match self {
            Mode::Slow => 2.0,
            _ => 0.05,
        }
    }

    /// Fraction of requests at or under each bound of [`BUCKETS`].
    fn cumulative(self) -> [f64; 11] {
        match self {
            Mode::Slow => [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.8, 1.0, 1.0],
            _ => [0.0, 0.0, 0.1, 0.6, 0.95, 0.995, 1.0, 1.0, 1.0, 1.0, 1.0],
        }
    }
}

/// The tag of an image reference (`registry:5000/web:errors` → `errors`).
pub fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let without_digest = last.split('@').next().unwrap_or(last);
    without_digest.rsplit_once(':').map(|(_, tag)| tag)
}

fn mode_of(deployment: &Value) -> Mode {
    let spec = &deployment["spec"]["template"]["spec"];
    let tags: Vec<&str> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str().and_then(image_tag))
        .collect();
    if tags.contains(&"errors") {
        Mode::Errors
    } else if tags.contains(&"slow") {
        Mode::Slow
    } else {
        Mode::Normal
    }
}

/// What one Deployment has served so far (expected values, not rounded).
#[derive(Debug, Default, Clone)]
struct Served {
    ok: f64,
    errors: f64,
    buckets: [f64; 11],
    count: f64,
    seconds: f64,
}

/// The traffic of one simulated cluster.
#[derive(Debug)]
pub struct Traffic {
    last: Instant,
    served: BTreeMap<(String, String), Served>,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            last: Instant::now(),
            served: BTreeMap::new(),
        }
    }
}

impl Traffic {
    /// Adds what every Deployment served since the last call, as of `now`.
    pub fn advance(&mut self, store: &Store, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let Some(rt) = store.registry.by_kind("apps", "Deployment").cloned() else {
            return;
        };
        let (objects, _, _) = store.list(&rt, &Filter::default(), None, None);
        let mut live = BTreeMap::new();
        for stored in objects {
            let obj = stored.value();
            let key = (stored.namespace.clone(), stored.name.clone());
            let mut served = self.served.remove(&key).unwrap_or_default();
            let available = obj["status"]["availableReplicas"].as_f64().unwrap_or(0.0);
            let requests = REQUESTS_PER_REPLICA * available.max(0.0) * dt;
            let mode = mode_of(&obj);
            served.errors += requests * mode.error_ratio();
            served.ok += requests * (1.0 - mode.error_ratio());
            for (b, fraction) in served.buckets.iter_mut().zip(mode.cumulative()) {
                *b += requests * fraction;
            }
            served.count += requests;
            served.seconds += requests * mode.mean_latency();
            live.insert(key, served);
        }
        self.served = live;
    }

    /// The Prometheus text exposition of what was served.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP sim_http_requests_total Requests served by a simulated Deployment.\n");
        out.push_str("# TYPE sim_http_requests_total counter\n");
        for ((ns, name), s) in &self.served {
            for (code, n) in [("200", s.ok), ("500", s.errors)] {
                let _ = writeln!(
                    out,
                    "sim_http_requests_total{{namespace=\"{ns}\",deployment=\"{name}\",code=\"{code}\"}} {n:.3}"
                );
            }
        }
        out.push_str("# HELP sim_http_request_duration_seconds Latency of the requests a simulated Deployment served.\n");
        out.push_str("# TYPE sim_http_request_duration_seconds histogram\n");
        for ((ns, name), s) in &self.served {
            let labels = format!("namespace=\"{ns}\",deployment=\"{name}\"");
            for (le, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "sim_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n:.3}"
                );
            }
            let count = format!("{:.3}", s.count);
            let _ = writeln!(
                out,
                "sim_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "sim_http_request_duration_seconds_sum{{{labels}}} {:.3}",
                s.seconds
            );
            let _ = writeln!(
                out,
                "sim_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_decide_the_mode() {
        let d = |image: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": image}]}}}});
        assert_eq!(mode_of(&d("nginx:1.27")), Mode::Normal);
        assert_eq!(mode_of(&d("registry:5000/web:errors")), Mode::Errors);
        assert_eq!(mode_of(&d("web:slow")), Mode::Slow);
        assert_eq!(mode_of(&d("errors")), Mode::Normal);
        assert_eq!(image_tag("r:5000/a/b:c@sha256:00"), Some("c"));
    }

    #[test]
    fn cumulative_buckets_never_decrease() {
        for m in [Mode::Normal, Mode::Errors, Mode::Slow] {
            let c = m.cumulative();
            assert!(c.windows(2).all(|w| w[0] <= w[1]) && c[10] == 1.0, "{m:?}");
        }
    }
}
