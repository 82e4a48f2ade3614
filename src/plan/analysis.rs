//! Verification by metrics (DESIGN §4.7) as pure functions of the policy, the results
//! so far and the time: when each metric is measured next, how one measurement counts,
//! and what the analysis of a release concludes. The agent makes the queries and keeps
//! the results in its status; peers read them from there.
//!
//! Timing, where the design leaves room: measurement `k` (1, 2, ...) of a metric is due
//! `initialDelay + k × interval` after the app turned Healthy at the release (a later
//! pass takes it late, never early, and the next one is due `interval` after it), so
//! every measurement covers at least one interval of the release's traffic after the
//! delay, and the analysis never completes before `initialDelay + interval`. It
//! completes when the bake time has passed too and every metric has been measured;
//! it is not measured again afterwards.
//!
//! Counting: a value above `max` or below `min` is a failure; more than `failureLimit`
//! failures of any metric make the app Degraded. NaN is no data (never a pass); `+Inf`
//! and `-Inf` are values compared with the bounds. No data counts as `noData` says:
//! a pass, a failure, or an Inconclusive analysis at once. A query that fails (after
//! the client's retries, or a timeout) is an error; `errorLimit` consecutive errors of
//! a metric make the analysis Inconclusive. A successful query resets the count, and
//! the analysis does not pass while the last query of a metric failed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::fleet::{AnalysisSpec, MetricSpec, NoData};
use crate::status::{MetricResult, rfc3339};

/// The note of a measurement that returned no data.
const NO_DATA: &str = "no data";

/// What one query returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// A number (an instant vector of one sample, or a scalar).
    Value(f64),
    /// An empty vector, or NaN.
    NoData,
    /// The query failed: unreachable, timed out, refused, or an answer that is not one
    /// number (several series, say).
    Error(String),
}

/// What the analysis of a release concludes so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Still measuring; the next measurement (or the end of the bake) is due then.
    Running {
        /// When a pass has something to do.
        next: SystemTime,
    },
    /// Every metric measured, the bake time over, no more failures than allowed.
    Passed,
    /// More than `failureLimit` failures: the app is Degraded with this message.
    Failed(String),
    /// Too many query errors, or no data with `noData: inconclusive`.
    Inconclusive(String),
}

/// A number for people: three significant digits, without trailing zeros.
pub fn show_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// When the first measurement of every metric is due.
fn first_due(spec: &AnalysisSpec, healthy_since: SystemTime) -> SystemTime {
    healthy_since + spec.initial_delay + spec.interval
}

/// When `metric` is due next, given its results so far (`None`: never measured).
fn next_due(
    spec: &AnalysisSpec,
    healthy_since: SystemTime,
    result: Option<&MetricResult>,
) -> SystemTime {
    let first = first_due(spec, healthy_since);
    match result.and_then(|r| humantime::parse_rfc3339(&r.at).ok()) {
        Some(at) => (at + spec.interval).max(first),
        None => first,
    }
}

/// Whether `value` breaks a bound of `metric`, and which (`0.31 > 0.01`).
fn broken_bound(metric: &MetricSpec, value: f64) -> Option<String> {
    if let Some(max) = metric.max
        && value > max
    {
        return Some(format!("{} > {}", show_value(value), show_value(max)));
    }
    if let Some(min) = metric.min
        && value < min
    {
        return Some(format!("{} < {}", show_value(value), show_value(min)));
    }
    None
}

/// The results of `metric` after one more measurement taken at `now`.
pub fn record(
    spec: &AnalysisSpec,
    metric: &MetricSpec,
    previous: Option<&MetricResult>,
    measurement: Measurement,
    now: SystemTime,
) -> MetricResult {
    let mut r = previous.cloned().unwrap_or(MetricResult {
        value: None,
        failures: 0,
        errors: 0,
        measurements: 0,
        at: String::new(),
        note: String::new(),
    });
    r.at = rfc3339(now);
    let measurement = match measurement {
        Measurement::Value(v) if v.is_nan() => Measurement::NoData,
        m => m,
    };
    match measurement {
        Measurement::Value(v) => {
            r.value = Some(v);
            r.errors = 0;
            r.measurements += 1;
            r.note = String::new();
            if broken_bound(metric, v).is_some() {
                r.failures += 1;
            }
        }
        Measurement::NoData => {
            r.value = None;
            r.errors = 0;
            r.measurements += 1;
            r.note = NO_DATA.into();
            if spec.no_data == NoData::Fail {
                r.failures += 1;
            }
        }
        Measurement::Error(e) => {
            r.value = None;
            r.errors += 1;
            r.note = e;
        }
    }
    r
}

/// What the analysis concludes at `now`, for an app Healthy at the release since
/// `healthy_since` with a bake of `bake`.
pub fn verdict(
    spec: &AnalysisSpec,
    results: &BTreeMap<String, MetricResult>,
    healthy_since: SystemTime,
    bake: Duration,
    now: SystemTime,
) -> Verdict {
    for m in &spec.metrics {
        let Some(r) = results.get(&m.name) else {
            continue;
        };
        if r.failures > spec.failure_limit {
            let why = match r.value {
                Some(v) => broken_bound(m, v).unwrap_or_else(|| show_value(v)),
                None => format!("{NO_DATA} (noData: fail)"),
            };
            let mut message = format!("analysis {}: {why}", m.name);
            if spec.failure_limit > 0 {
                message.push_str(&format!(
                    " ({} failed measurements, failureLimit {})",
                    r.failures, spec.failure_limit
                ));
            }
            return Verdict::Failed(message);
        }
    }
    for m in &spec.metrics {
        let Some(r) = results.get(&m.name) else {
            continue;
        };
        if r.errors >= spec.error_limit.max(1) {
            return Verdict::Inconclusive(format!(
                "analysis {}: {} consecutive query errors (errorLimit {}), last: {}",
                m.name, r.errors, spec.error_limit, r.note
            ));
        }
        if r.errors == 0 && r.note == NO_DATA && spec.no_data == NoData::Inconclusive {
            return Verdict::Inconclusive(format!(
                "analysis {}: the query returned no data (noData: inconclusive)",
                m.name
            ));
        }
    }
    let bake_over = healthy_since + bake;
    let mut next: Option<SystemTime> = None;
    for m in &spec.metrics {
        let r = results.get(&m.name);
        // Not passed while a metric has no measurement, or its last query failed.
        if r.is_none_or(|r| r.measurements == 0 || r.errors > 0) {
            let due = next_due(spec, healthy_since, r);
            next = Some(next.map_or(due, |n| n.min(due)));
        }
    }
    match next {
        None if now >= bake_over => Verdict::Passed,
        None => {
            // Measured while the bake runs.
            let due = spec
                .metrics
                .iter()
                .map(|m| next_due(spec, healthy_since, results.get(&m.name)))
                .min()
                .unwrap_or(bake_over);
            Verdict::Running {
                next: due.min(bake_over),
            }
        }
        Some(n) => Verdict::Running { next: n },
    }
}

/// The metrics due for a measurement at `now`.
pub fn due_metrics<'a>(
    spec: &'a AnalysisSpec,
    results: &BTreeMap<String, MetricResult>,
    healthy_since: SystemTime,
    now: SystemTime,
) -> Vec<&'a MetricSpec> {
    spec.metrics
        .iter()
        .filter(|m| now >= next_due(spec, healthy_since, results.get(&m.name)))
        .collect()
}

/// The context of a query template: the render context (`cluster`, `app`, `values`)
/// and `release`, the commit being verified.
pub fn query_context(render_context: &Value, release: &str) -> Value {
    let mut ctx = render_context.clone();
    if let Some(map) = ctx.as_object_mut() {
        map.insert("release".into(), json!(release));
    }
    ctx
}

/// Why a metric's query could not be rendered: the template error, naming where the query was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Renders a metric's query (strict handlebars: a missing variable is an error naming
/// where the query was written).
pub fn render_query(metric: &MetricSpec, context: &Value) -> Result<String, QueryError> {
    render_query_text(metric, context).map_err(QueryError)
}

fn render_query_text(metric: &MetricSpec, context: &Value) -> Result<String, String> {
    let what = format!("{} (metric {})", metric.source, metric.name);
    let budget = crate::render::template::Budget::new();
    crate::render::template::render_file(&what, &metric.query, context, &budget)
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .map_err(|e| e.to_string())
}

/// One line per metric for people: `error-ratio 0.002 (3 measurements, 0 failures)`.
pub fn summary(spec: &AnalysisSpec, results: &BTreeMap<String, MetricResult>) -> String {
    spec.metrics
        .iter()
        .map(|m| match results.get(&m.name) {
            None => format!("{} not measured yet", m.name),
            Some(r) => {
                let value = match r.value {
                    Some(v) => show_value(v),
                    None if r.note.is_empty() => "-".into(),
                    None => r.note.clone(),
                };
                let mut s = format!(
                    "{} {value} ({} measurement{}, {} failure{}",
                    m.name,
                    r.measurements,
                    if r.measurements == 1 { "" } else { "s" },
                    r.failures,
                    if r.failures == 1 { "" } else { "s" },
                );
                if r.errors > 0 {
                    s.push_str(&format!(", {} errors in a row", r.errors));
                }
                s.push(')');
                s
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One cell for the fleet table: the verdict's message when the analysis decided,
/// else `metric=value` per metric (`passed:` once it passed).
pub fn cell(status: &crate::status::AppStatus) -> String {
    let decided = matches!(
        status.phase,
        crate::status::Phase::Degraded | crate::status::Phase::Inconclusive
    ) && status.message.starts_with("analysis ");
    if decided || status.message.starts_with("analysis skipped") {
        return status.message.clone();
    }
    if status.analysis.is_empty() {
        return "-".into();
    }
    let values = status
        .analysis
        .iter()
        .map(|(name, r)| {
            let v = r.value.map(show_value).unwrap_or_else(|| {
                if r.errors > 0 {
                    "error".into()
                } else if r.note == NO_DATA {
                    "no-data".into()
                } else {
                    "-".into()
                }
            });
            if r.failures > 0 {
                format!("{name}={v}({} failed)", r.failures)
            } else {
                format!("{name}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if status.verified.is_some() {
        format!("passed: {values}")
    } else {
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(initial: u64, interval: u64) -> AnalysisSpec {
        AnalysisSpec {
            interval: Duration::from_secs(interval),
            initial_delay: Duration::from_secs(initial),
            failure_limit: 0,
            error_limit: 2,
            no_data: NoData::Inconclusive,
            metrics: vec![
                MetricSpec {
                    name: "error-ratio".into(),
                    query: "q".into(),
                    min: None,
                    max: Some(0.01),
                    source: "fleet.yaml:5".into(),
                },
                MetricSpec {
                    name: "p99".into(),
                    query: "q".into(),
                    min: Some(0.0),
                    max: Some(0.5),
                    source: "fleet.yaml:9".into(),
                },
            ],
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    /// Measures every due metric with `value` at `now`.
    fn measure_all(
        spec: &AnalysisSpec,
        results: &mut BTreeMap<String, MetricResult>,
        since: SystemTime,
        now: SystemTime,
        value: &dyn Fn(&str) -> Measurement,
    ) {
        for m in due_metrics(spec, results, since, now) {
            let r = record(spec, m, results.get(&m.name), value(&m.name), now);
            results.insert(m.name.clone(), r);
        }
    }

    #[test]
    fn values_show_three_significant_digits() {
        assert_eq!(show_value(0.30994152), "0.31");
        assert_eq!(show_value(0.01), "0.01");
        assert_eq!(show_value(2.04), "2.04");
        assert_eq!(show_value(1234.4), "1234");
        assert_eq!(show_value(0.0), "0");
        assert_eq!(show_value(f64::INFINITY), "+Inf");
    }

    #[test]
    fn the_first_measurement_waits_for_the_delay_and_one_interval() {
        let s = spec(10, 5);
        let mut r = BTreeMap::new();
        assert!(due_metrics(&s, &r, t(0), t(14)).is_empty());
        assert_eq!(due_metrics(&s, &r, t(0), t(15)).len(), 2);
        measure_all(&s, &mut r, t(0), t(16), &|_| Measurement::Value(0.0));
        assert!(
            due_metrics(&s, &r, t(0), t(20)).is_empty(),
            "interval after the last"
        );
        assert_eq!(due_metrics(&s, &r, t(0), t(21)).len(), 2);
    }

    #[test]
    fn a_value_over_the_bound_fails_with_the_metric_value_and_bound_in_the_message() {
        let s = spec(0, 1);
        let mut r = BTreeMap::new();
        measure_all(&s, &mut r, t(0), t(1), &|m| {
            Measurement::Value(if m == "error-ratio" { 0.31 } else { 0.05 })
        });
        assert_eq!(
            verdict(&s, &r, t(0), Duration::from_secs(60), t(1)),
            Verdict::Failed("analysis error-ratio: 0.31 > 0.01".into())
        );
        let mut r = BTreeMap::new();
        measure_all(&s, &mut r, t(0), t(1), &|_| Measurement::Value(-1.0));
        assert_eq!(
            verdict(&s, &r, t(0), Duration::from_secs(60), t(1)),
            Verdict::Failed("analysis p99: -1 < 0".into())
        );
    }

    #[test]
    fn failures_up_to_the_limit_are_tolerated() {
        let s = AnalysisSpec {
            failure_limit: 1,
            ..spec(0, 1)
        };
        let mut r = BTreeMap::new();
        measure_all(&s, &mut r, t(0), t(1), &|_| Measurement::Value(0.2));
        assert!(matches!(
            verdict(&s, &r, t(0), Duration::from_secs(60), t(1)),
            Verdict::Running { .. }
        ));
        measure_all(&s, &mut r, t(0), t(2), &|_| Measurement::Value(0.2));
        assert_eq!(
            verdict(&s, &r, t(0), Duration::from_secs(60), t(2)),
            Verdict::Failed(
                "analysis error-ratio: 0.2 > 0.01 (2 failed measurements, failureLimit 1)".into()
            )
        );
    }

    #[test]
    fn nan_is_no_data_and_no_data_counts_as_no_data_says() {
        for (no_data, expect) in [
            (NoData::Pass, "passed"),
            (NoData::Fail, "failed"),
            (NoData::Inconclusive, "inconclusive"),
        ] {
            let s = AnalysisSpec {
                no_data,
                ..spec(0, 1)
            };
            let mut r = BTreeMap::new();
            measure_all(&s, &mut r, t(0), t(1), &|m| {
                if m == "p99" {
                    Measurement::Value(f64::NAN)
                } else {
                    Measurement::NoData
                }
            });
            let v = verdict(&s, &r, t(0), Duration::from_secs(1), t(1));
            let got = match &v {
                Verdict::Passed => "passed",
                Verdict::Failed(m) => {
                    assert_eq!(m, "analysis error-ratio: no data (noData: fail)");
                    "failed"
                }
                Verdict::Inconclusive(m) => {
                    assert_eq!(
                        m,
                        "analysis error-ratio: the query returned no data (noData: inconclusive)"
                    );
                    "inconclusive"
                }
                Verdict::Running { .. } => "running",
            };
            assert_eq!(got, expect, "{no_data:?}: {v:?}");
            assert_eq!(r["p99"].value, None, "NaN is recorded as no value");
        }
    }

    #[test]
    fn infinity_is_a_value_compared_with_the_bounds() {
        let s = spec(0, 1);
        let mut r = BTreeMap::new();
        measure_all(&s, &mut r, t(0), t(1), &|m| {
            Measurement::Value(if m == "p99" { f64::INFINITY } else { 0.0 })
        });
        assert_eq!(
            verdict(&s, &r, t(0), Duration::ZERO, t(1)),
            Verdict::Failed("analysis p99: +Inf > 0.5".into())
        );
    }

    #[test]
    fn consecutive_errors_up_to_the_limit_are_inconclusive_and_a_success_resets_them() {
        let s = spec(0, 1);
        let mut r = BTreeMap::new();
        let err = |_: &str| Measurement::Error("connection refused".into());
        measure_all(&s, &mut r, t(0), t(1), &err);
        assert!(matches!(
            verdict(&s, &r, t(0), Duration::ZERO, t(1)),
            Verdict::Running { .. }
        ));
        measure_all(&s, &mut r, t(0), t(2), &|_| Measurement::Value(0.0));
        assert_eq!(r["p99"].errors, 0);
        measure_all(&s, &mut r, t(0), t(3), &err);
        measure_all(&s, &mut r, t(0), t(4), &err);
        assert_eq!(
            verdict(&s, &r, t(0), Duration::ZERO, t(4)),
            Verdict::Inconclusive(
                "analysis error-ratio: 2 consecutive query errors (errorLimit 2), last: connection refused"
                    .into()
            )
        );
    }

    #[test]
    fn the_analysis_passes_when_every_metric_was_measured_and_the_bake_is_over() {
        let s = spec(0, 1);
        let mut r = BTreeMap::new();
        measure_all(&s, &mut r, t(0), t(1), &|_| Measurement::Value(0.001));
        assert_eq!(
            verdict(&s, &r, t(0), Duration::from_secs(3), t(1)),
            Verdict::Running { next: t(2) }
        );
        measure_all(&s, &mut r, t(0), t(3), &|_| Measurement::Value(0.001));
        assert_eq!(
            verdict(&s, &r, t(0), Duration::from_secs(3), t(3)),
            Verdict::Passed
        );
        assert_eq!(r["error-ratio"].measurements, 2);
    }

    #[test]
    fn queries_render_strictly_with_the_release() {
        let m = MetricSpec {
            name: "e".into(),
            query: "up{cluster=\"{{cluster.name}}\",release=\"{{release}}\"}".into(),
            min: None,
            max: Some(1.0),
            source: "apps/web/app.yaml:7".into(),
        };
        let ctx = query_context(&json!({"cluster": {"name": "prod-1"}}), "abc");
        assert_eq!(
            render_query(&m, &ctx).unwrap(),
            "up{cluster=\"prod-1\",release=\"abc\"}"
        );
        let bad = MetricSpec {
            query: "{{values.nope}}".into(),
            ..m
        };
        let e = render_query(&bad, &ctx).unwrap_err().0;
        assert!(
            e.starts_with("apps/web/app.yaml:7 (metric e)") && e.contains("'values.nope'"),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn the_bake_never_completes_before_the_initial_delay_plus_one_interval(
            initial in 0u64..120,
            interval in 1u64..60,
            bake in 0u64..300,
            steps in proptest::collection::vec(1u64..40, 1..200),
        ) {
            let s = spec(initial, interval);
            let since = t(0);
            let mut results = BTreeMap::new();
            let mut now = since;
            for step in steps {
                now += Duration::from_secs(step);
                measure_all(&s, &mut results, since, now, &|_| Measurement::Value(0.0));
                if verdict(&s, &results, since, Duration::from_secs(bake), now) == Verdict::Passed {
                    prop_assert!(now >= since + Duration::from_secs(initial + interval));
                    prop_assert!(now >= since + Duration::from_secs(bake));
                    break;
                }
            }
        }
    }
}
