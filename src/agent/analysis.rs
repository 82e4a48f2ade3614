//! The agent's side of the analysis of a bake (DESIGN §4.7): while an app is Healthy
//! at a release whose policy has metrics, the pass measures the metrics that are due
//! against the cluster's Prometheus and turns the verdict of
//! [`crate::plan::analysis`] into the app's phase: Degraded on too many failures,
//! Inconclusive on too many query errors (or no data, when `noData` says so), and
//! `verified` once the analysis passed, which is what the peers' gates wait for.
//!
//! A rendering already known good on the cluster (a revert, say) is verified when it
//! turns Healthy, without measurements: its analysis passed here before, and the
//! traffic right after it replaces a bad release still carries the bad release's
//! errors.
//!
//! No Prometheus configured for the cluster: the analysis is *skipped*, not failed.
//! The release is marked verified when it turns Healthy, the status message says
//! `analysis skipped: no prometheus configured for this cluster`, and the agent logs
//! it once per app. The bake time still applies. This keeps fleets (and the demo)
//! working where some environments have no Prometheus; an operator who wants
//! analysis everywhere configures one for every cluster. A Prometheus that is
//! configured but fails is never skipped: its errors count against `errorLimit`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::Value;

use crate::fleet::AnalysisSpec;
use crate::metrics::Metrics;
use crate::plan::analysis::{
    Measurement, Verdict, due_metrics, query_context, record, render_query, verdict,
};
use crate::prometheus::Prometheus;
use crate::status::{AppStatus, MetricResult, Phase, rfc3339};

/// The message of an app whose analysis was skipped.
pub const SKIPPED: &str = "analysis skipped: no prometheus configured for this cluster";

/// What the analysis makes of one pass of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The phase to report (the health phase, or Degraded / Inconclusive).
    pub phase: Phase,
    /// The message replacing the health message, if any.
    pub message: Option<String>,
    /// The measurements of the release so far.
    pub results: BTreeMap<String, MetricResult>,
    /// When the analysis passed, if it did.
    pub verified: Option<String>,
    /// When the next measurement (or the end of the bake) is due, while it runs.
    pub next: Option<SystemTime>,
}

/// Everything one analysis step needs.
pub struct Step<'a> {
    /// The cluster (for metrics).
    pub cluster: &'a str,
    /// The app.
    pub app: &'a str,
    /// The policy's analysis.
    pub spec: &'a AnalysisSpec,
    /// The policy's bake time.
    pub bake: std::time::Duration,
    /// The release applied.
    pub release: &'a str,
    /// Its content hash.
    pub hash: &'a str,
    /// The phase health gives.
    pub phase: Phase,
    /// The app's status before this pass.
    pub previous: Option<&'a AppStatus>,
    /// The render context of the release on this cluster (`cluster`, `app`, `values`).
    pub context: &'a Value,
    /// The cluster's Prometheus, if one is configured.
    pub prometheus: Option<&'a Prometheus>,
    /// The agent's metrics.
    pub metrics: Option<&'a Metrics>,
    /// Now.
    pub now: SystemTime,
}

/// One analysis step; `None` when the policy has no analysis.
pub async fn step(s: Step<'_>) -> Option<Outcome> {
    if !s.spec.enabled() {
        return None;
    }
    let same = s
        .previous
        .filter(|p| p.release == s.release && p.hash == s.hash);
    let results = same.map(|p| p.analysis.clone()).unwrap_or_default();
    let verified = same.and_then(|p| p.verified.clone());
    let mut out = Outcome {
        phase: s.phase,
        message: None,
        results,
        verified,
        next: None,
    };
    // A verdict already given at this release stands (a person decides what next),
    // unless health has something worse to say.
    if let Some(p) = same
        && matches!(p.phase, Phase::Degraded | Phase::Inconclusive)
        && !out.results.is_empty()
        && matches!(s.phase, Phase::Healthy | Phase::Progressing)
    {
        let since = humantime::parse_rfc3339(&p.since).unwrap_or(s.now);
        if let Verdict::Failed(_) | Verdict::Inconclusive(_) =
            verdict(s.spec, &out.results, since, s.bake, s.now)
        {
            out.phase = p.phase;
            out.message = Some(p.message.clone());
            return Some(out);
        }
    }
    // A rendering this cluster already ran through a passed analysis (a revert, a
    // rollback target) is not measured again: like the revert fast path, it is known
    // good here. Measuring it would read the traffic of the release it replaces.
    if s.phase == Phase::Healthy
        && out.verified.is_none()
        && s.previous
            .is_some_and(|p| p.known_good.iter().any(|h| h == s.hash))
    {
        out.verified = Some(rfc3339(s.now));
        return Some(out);
    }
    if s.phase != Phase::Healthy || out.verified.is_some() {
        // Measured only while Healthy, and not again once passed.
        if out.verified.is_some() && s.prometheus.is_none() {
            out.message = Some(SKIPPED.into());
        }
        return Some(out);
    }
    let Some(prometheus) = s.prometheus else {
        out.verified = Some(rfc3339(s.now));
        out.message = Some(SKIPPED.into());
        return Some(out);
    };
    let healthy_since = same
        .filter(|p| p.phase == Phase::Healthy)
        .and_then(|p| humantime::parse_rfc3339(&p.since).ok())
        .unwrap_or(s.now);
    let context = query_context(s.context, s.release);
    for metric in due_metrics(s.spec, &out.results, healthy_since, s.now) {
        let measurement = match render_query(metric, &context) {
            Ok(query) => prometheus.measure(&query).await,
            Err(e) => Measurement::Error(e.0),
        };
        if let Measurement::Error(e) = &measurement {
            tracing::warn!(cluster = %s.cluster, app = %s.app, metric = %metric.name, error = %e, "analysis query failed");
        }
        let before = out.results.get(&metric.name);
        let failures_before = before.map_or(0, |r| r.failures);
        let r = record(s.spec, metric, before, measurement, s.now);
        if let Some(m) = s.metrics {
            m.record_measurement(
                s.cluster,
                s.app,
                &metric.name,
                r.value,
                r.failures > failures_before,
            );
        }
        out.results.insert(metric.name.clone(), r);
    }
    match verdict(s.spec, &out.results, healthy_since, s.bake, s.now) {
        Verdict::Passed => out.verified = Some(rfc3339(s.now)),
        Verdict::Running { next } => out.next = Some(next),
        Verdict::Failed(m) => {
            out.phase = Phase::Degraded;
            out.message = Some(m);
        }
        Verdict::Inconclusive(m) => {
            out.phase = Phase::Inconclusive;
            out.message = Some(m);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::MetricSpec;
    use std::time::Duration;

    fn spec() -> AnalysisSpec {
        AnalysisSpec {
            interval: Duration::from_secs(1),
            metrics: vec![MetricSpec {
                name: "error-ratio".into(),
                query: "q".into(),
                min: None,
                max: Some(0.01),
                source: "fleet.yaml:9".into(),
            }],
            ..AnalysisSpec::default()
        }
    }

    fn status(release: &str, hash: &str, phase: Phase) -> AppStatus {
        AppStatus {
            release: release.into(),
            hash: hash.into(),
            phase,
            since: "2026-11-23T10:00:00Z".into(),
            message: String::new(),
            known_good: vec!["h0".into()],
            poisoned: vec![],
            history: vec![],
            analysis: BTreeMap::new(),
            verified: None,
        }
    }

    fn step_for<'a>(
        spec: &'a AnalysisSpec,
        previous: Option<&'a AppStatus>,
        hash: &'a str,
        phase: Phase,
        context: &'a Value,
    ) -> Step<'a> {
        Step {
            cluster: "c",
            app: "web",
            spec,
            bake: Duration::from_secs(60),
            release: "r1",
            hash,
            phase,
            previous,
            context,
            prometheus: None,
            metrics: None,
            now: humantime::parse_rfc3339("2026-11-23T10:05:00Z").unwrap(),
        }
    }

    #[tokio::test]
    async fn without_prometheus_the_analysis_is_skipped_and_says_so() {
        let (spec, ctx) = (spec(), serde_json::json!({}));
        let o = step(step_for(&spec, None, "h1", Phase::Healthy, &ctx))
            .await
            .unwrap();
        assert_eq!(o.phase, Phase::Healthy);
        assert_eq!(o.message.as_deref(), Some(SKIPPED));
        assert!(o.verified.is_some());
        let none = AnalysisSpec::default();
        assert_eq!(
            step(step_for(&none, None, "h1", Phase::Healthy, &ctx)).await,
            None
        );
    }

    #[tokio::test]
    async fn a_known_good_rendering_is_verified_without_measuring() {
        let (spec, ctx) = (spec(), serde_json::json!({}));
        let previous = status("r0", "h0", Phase::Healthy);
        let o = step(step_for(&spec, Some(&previous), "h0", Phase::Healthy, &ctx))
            .await
            .unwrap();
        assert!(o.verified.is_some());
        assert_eq!(o.message, None);
        assert!(o.results.is_empty());
    }

    #[tokio::test]
    async fn a_verdict_stands_for_the_release_unless_health_is_worse() {
        let (spec, ctx) = (spec(), serde_json::json!({}));
        let mut previous = status("r1", "h1", Phase::Inconclusive);
        previous.message = "analysis error-ratio: 4 consecutive query errors".into();
        previous.analysis.insert(
            "error-ratio".into(),
            MetricResult {
                value: None,
                failures: 0,
                errors: 4,
                measurements: 1,
                at: "2026-11-23T10:04:00Z".into(),
                note: "refused".into(),
            },
        );
        let o = step(step_for(&spec, Some(&previous), "h1", Phase::Healthy, &ctx))
            .await
            .unwrap();
        assert_eq!(o.phase, Phase::Inconclusive);
        assert_eq!(o.message.as_deref(), Some(previous.message.as_str()));
        let o = step(step_for(
            &spec,
            Some(&previous),
            "h1",
            Phase::Degraded,
            &ctx,
        ))
        .await
        .unwrap();
        assert_eq!(o.phase, Phase::Degraded, "health's verdict is worse");
    }
}
