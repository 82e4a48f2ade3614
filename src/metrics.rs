//! Prometheus metrics of the agent, served at `/metrics`: how long reconciles take,
//! how applies end, drift corrections, prunes, and one info series per app with its
//! release and phase.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::apply::Applied;
use crate::apply::health::Health;

/// Labels of per-app series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    /// The cluster (an agent may manage several).
    pub cluster: String,
    /// The app.
    pub app: String,
}

/// Labels of `rollwave_apply_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success`, `failure`, or `noop` (nothing to write).
    pub result: String,
}

/// Labels of `rollwave_app_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppInfoLabels {
    /// The cluster.
    pub cluster: String,
    /// The app.
    pub app: String,
    /// The release applied.
    pub release: String,
    /// Its phase.
    pub phase: String,
}

/// Labels of the analysis series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysisLabels {
    /// The cluster.
    pub cluster: String,
    /// The app.
    pub app: String,
    /// The metric of `rollout.analysis`.
    pub metric: String,
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Seconds per app reconcile.
    pub reconcile_duration: Family<AppLabels, Histogram>,
    /// Applies by result.
    pub apply_total: Family<ResultLabels, Counter>,
    /// Objects re-applied because someone else changed them.
    pub drift_corrections: Counter,
    /// Objects deleted by prune.
    pub prune_total: Counter,
    /// 1 for each app's current (release, phase).
    pub app_info: Family<AppInfoLabels, Gauge>,
    /// The last value measured by the analysis of each (cluster, app, metric).
    pub analysis_value: Family<AnalysisLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Failed measurements of the analysis.
    pub analysis_failures: Family<AnalysisLabels, Counter>,
    /// Rendering lookups by result (`hit`: found by its inputs, `miss`: rendered).
    render_cache: Family<ResultLabels, Counter>,
    /// Each app's series by cluster, then app: looked up by `&str`, so that a pass
    /// recording what it recorded before allocates nothing (it records every app).
    per_app: Mutex<HashMap<String, HashMap<String, AppSeries>>>,
}

/// One app's series on one cluster, as last recorded.
struct AppSeries {
    /// Its (cluster, app).
    labels: AppLabels,
    /// Its reconcile duration histogram (shared with the family).
    duration: Histogram,
    /// The labels of its current `rollwave_app_info` series, once there is one.
    info: Option<AppInfoLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconcile_duration = Family::<AppLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let apply_total = Family::<ResultLabels, Counter>::default();
        let drift_corrections = Counter::default();
        let prune_total = Counter::default();
        let app_info = Family::<AppInfoLabels, Gauge>::default();
        let analysis_value =
            Family::<AnalysisLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let analysis_failures = Family::<AnalysisLabels, Counter>::default();
        let render_cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rollwave_render_cache",
            "Renderings looked up by their inputs, by result: hit (found, not rendered) or miss (rendered)",
            render_cache.clone(),
        );
        registry.register(
            "rollwave_analysis_value",
            "The last value measured by the analysis of a bake (NaN: no data or a query error)",
            analysis_value.clone(),
        );
        registry.register(
            "rollwave_analysis_failures",
            "Measurements of the analysis of a bake that failed their bound",
            analysis_failures.clone(),
        );
        registry.register(
            "rollwave_reconcile_duration_seconds",
            "Time to reconcile one app on one cluster",
            reconcile_duration.clone(),
        );
        registry.register(
            "rollwave_apply",
            "App applies by result",
            apply_total.clone(),
        );
        registry.register(
            "rollwave_drift_corrections",
            "Objects re-applied after a change by someone else",
            drift_corrections.clone(),
        );
        registry.register(
            "rollwave_prune",
            "Objects deleted by prune",
            prune_total.clone(),
        );
        registry.register(
            "rollwave_git_operations",
            "Fetches and pushes made to the Git server, by operation (Git hosts limit them per repository)",
            crate::source::git_operations().clone(),
        );
        registry.register(
            "rollwave_app_info",
            "The release and phase of each app (value 1)",
            app_info.clone(),
        );
        Metrics {
            registry,
            reconcile_duration,
            apply_total,
            drift_corrections,
            prune_total,
            app_info,
            analysis_value,
            analysis_failures,
            render_cache,
            per_app: Mutex::new(HashMap::new()),
        }
    }

    /// The counter of rendering lookups with `result` (`hit` or `miss`), for the
    /// agent's [`crate::render::cache::RenderCache`] to count into.
    pub fn render_cache_counter(&self, result: &str) -> Counter {
        self.render_cache
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .clone()
    }

    /// Counts one apply.
    fn count_apply(&self, result: &str) {
        self.apply_total
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Records one app reconcile on `cluster`: its duration, how it ended (the changes
    /// and health of a successful apply, or `None` for a failure), and the app's
    /// (release, phase) series.
    pub fn record_reconcile(
        &self,
        cluster: &str,
        app: &str,
        release: &str,
        took: std::time::Duration,
        outcome: Option<(&Applied, Health)>,
    ) {
        let phase = match outcome {
            Some((applied, health)) => {
                let counts = applied.counts();
                let writes = counts[0] + counts[1] + counts[3];
                self.count_apply(if writes == 0 { "noop" } else { "success" });
                self.prune_total.inc_by(counts[3] as u64);
                self.drift_corrections
                    .inc_by(applied.drift_corrections as u64);
                health.name()
            }
            None => {
                self.count_apply("failure");
                "Error"
            }
        };
        self.with_app(cluster, app, |series| {
            series.duration.observe(took.as_secs_f64());
            self.set_info(series, release, phase);
        });
    }

    /// Sets an app's (release, phase) series to 1, removing its previous one.
    #[cfg(test)]
    fn set_app(&self, cluster: &str, app: &str, release: &str, phase: &str) {
        self.with_app(cluster, app, |series| self.set_info(series, release, phase));
    }

    /// Calls `f` with the series of `app` on `cluster`, made on first use.
    fn with_app(&self, cluster: &str, app: &str, f: impl FnOnce(&mut AppSeries)) {
        let mut per_app = self.per_app.lock().unwrap_or_else(|e| e.into_inner());
        if !per_app.contains_key(cluster) {
            per_app.insert(cluster.to_string(), HashMap::new());
        }
        let apps = per_app.get_mut(cluster).expect("inserted above");
        if let Some(series) = apps.get_mut(app) {
            return f(series);
        }
        let labels = AppLabels {
            cluster: cluster.into(),
            app: app.into(),
        };
        let mut series = AppSeries {
            duration: self.reconcile_duration.get_or_create_owned(&labels),
            labels,
            info: None,
        };
        f(&mut series);
        apps.insert(app.to_string(), series);
    }

    /// Points `series`' info at (`release`, `phase`): the old series goes, the new one
    /// is 1. Unchanged, it touches nothing.
    fn set_info(&self, series: &mut AppSeries, release: &str, phase: &str) {
        let labels = match &mut series.info {
            Some(info) if info.release == release && info.phase == phase => return,
            Some(info) => {
                self.app_info.remove(info);
                info.release = release.to_string();
                info.phase = phase.to_string();
                info
            }
            None => series.info.insert(AppInfoLabels {
                cluster: series.labels.cluster.clone(),
                app: series.labels.app.clone(),
                release: release.to_string(),
                phase: phase.to_string(),
            }),
        };
        self.app_info.get_or_create(labels).set(1);
    }

    /// Records one measurement of the analysis: its value (`None`: no data or an
    /// error, exported as NaN) and whether it failed.
    pub fn record_measurement(
        &self,
        cluster: &str,
        app: &str,
        metric: &str,
        value: Option<f64>,
        failed: bool,
    ) {
        let labels = AnalysisLabels {
            cluster: cluster.into(),
            app: app.into(),
            metric: metric.into(),
        };
        self.analysis_value
            .get_or_create(&labels)
            .set(value.unwrap_or(f64::NAN));
        let failures = self.analysis_failures.get_or_create(&labels);
        if failed {
            failures.inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_recorded_again_count_their_durations_and_move_the_info_series() {
        let m = Metrics::new();
        let in_sync = Applied {
            changes: Vec::new().into(),
            health: Health::Healthy,
            unhealthy: Vec::new(),
            drift_corrections: 0,
        };
        let took = std::time::Duration::from_millis(20);
        for _ in 0..2 {
            let in_sync = Some((&in_sync, Health::Healthy));
            m.record_reconcile("prod-1", "web", "abc", took, in_sync);
        }
        m.record_reconcile("prod-1", "api", "abc", took, None);
        m.record_reconcile("prod-1", "web", "def", took, None);
        let text = m.encode();
        for line in [
            "rollwave_reconcile_duration_seconds_count{cluster=\"prod-1\",app=\"web\"} 3",
            "rollwave_reconcile_duration_seconds_count{cluster=\"prod-1\",app=\"api\"} 1",
            "rollwave_app_info{cluster=\"prod-1\",app=\"web\",release=\"def\",phase=\"Error\"} 1",
            "rollwave_app_info{cluster=\"prod-1\",app=\"api\",release=\"abc\",phase=\"Error\"} 1",
            "rollwave_apply_total{result=\"noop\"} 2",
            "rollwave_apply_total{result=\"failure\"} 2",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            !text.contains("app=\"web\",release=\"abc\""),
            "the web app's old series is gone: {text}"
        );
    }

    #[test]
    fn the_exposition_names_every_metric_and_keeps_one_info_series_per_app() {
        let m = Metrics::new();
        m.count_apply("success");
        m.set_app("prod-1", "web", "abc", "Progressing");
        m.set_app("prod-1", "web", "abc", "Healthy");
        m.set_app("prod-2", "web", "abc", "Progressing");
        m.drift_corrections.inc();
        m.reconcile_duration
            .get_or_create(&AppLabels {
                cluster: "prod-1".into(),
                app: "web".into(),
            })
            .observe(0.02);
        let text = m.encode();
        assert!(
            text.contains("rollwave_apply_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "rollwave_app_info{cluster=\"prod-1\",app=\"web\",release=\"abc\",phase=\"Healthy\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("cluster=\"prod-1\",app=\"web\",release=\"abc\",phase=\"Progressing\""),
            "{text}"
        );
        assert!(
            text.contains("cluster=\"prod-2\",app=\"web\",release=\"abc\",phase=\"Progressing\""),
            "{text}"
        );
        assert!(
            text.contains("rollwave_drift_corrections_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "rollwave_reconcile_duration_seconds_count{cluster=\"prod-1\",app=\"web\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("rollwave_prune_total 0"), "{text}");
        m.record_measurement("prod-1", "web", "error-ratio", Some(0.31), true);
        m.record_measurement("prod-1", "web", "p99", None, false);
        let text = m.encode();
        assert!(
            text.contains(
                "rollwave_analysis_value{cluster=\"prod-1\",app=\"web\",metric=\"error-ratio\"} 0.31"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rollwave_analysis_failures_total{cluster=\"prod-1\",app=\"web\",metric=\"error-ratio\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rollwave_analysis_value{cluster=\"prod-1\",app=\"web\",metric=\"p99\"} NaN"
            ),
            "{text}"
        );
    }

    #[test]
    fn render_cache_lookups_are_counted_by_result() {
        let m = Metrics::new();
        let cache = crate::render::cache::RenderCache::new(0).counting_into(
            m.render_cache_counter("hit"),
            m.render_cache_counter("miss"),
        );
        m.render_cache_counter("miss").inc();
        assert_eq!(
            cache.lookups().misses,
            1,
            "the cache counts into the metric"
        );
        let text = m.encode();
        assert!(
            text.contains("rollwave_render_cache_total{result=\"miss\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rollwave_render_cache_total{result=\"hit\"} 0"),
            "{text}"
        );
    }
}
