//! The fleet files as written (serde types) and as validated (the model the rest of
//! rollwave uses).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::FleetError;

/// A name as written in a file, with its line for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAt {
    /// The name.
    pub value: String,
    /// Its line.
    pub line: u64,
}

fn name_at(s: &Spanned<String>) -> NameAt {
    NameAt {
        value: s.value.clone(),
        line: s.referenced.line(),
    }
}

/// What happens to an app's objects on a cluster the app stops targeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Removal {
    /// Stop managing them and leave them running (the default).
    #[default]
    Orphan,
    /// Delete them.
    Delete,
}

/// What a failed release does to later waves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop later waves and leave the failed cluster as it is.
    #[default]
    Halt,
    /// Stop later waves and re-apply the last known-good rendering on the failed cluster.
    Rollback,
}

/// What opens the gate between waves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// Earlier waves healthy for the bake time.
    #[default]
    Health,
    /// A reviewed approval in `approvals/<app>.yaml`.
    Manual,
    /// The bake time after the previous wave opened.
    Time,
}

/// A rollout policy as written; every field optional so apps can override any of them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RolloutFile {
    #[serde(default)]
    canary: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    batches: Option<Spanned<Vec<u64>>>,
    #[serde(default)]
    bake: Option<Spanned<String>>,
    #[serde(default)]
    progress_deadline: Option<Spanned<String>>,
    #[serde(default)]
    on_failure: Option<OnFailure>,
    #[serde(default)]
    gate: Option<Gate>,
    #[serde(default)]
    analysis: Option<Spanned<AnalysisFile>>,
}

/// What a measurement that returns nothing counts as (`rollout.analysis.noData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// A passing measurement.
    Pass,
    /// A failed measurement.
    Fail,
    /// The analysis is `Inconclusive`: a person decides (the default).
    #[default]
    Inconclusive,
}

/// `rollout.analysis` as written; every field optional so an app overrides fleet.yaml's
/// field by field (`metrics` is one field: an app's list replaces the fleet's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnalysisFile {
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    initial_delay: Option<Spanned<String>>,
    #[serde(default)]
    failure_limit: Option<u32>,
    #[serde(default)]
    error_limit: Option<Spanned<u32>>,
    #[serde(default)]
    no_data: Option<NoData>,
    #[serde(default)]
    metrics: Option<Spanned<Vec<MetricFile>>>,
}

/// One `rollout.analysis.metrics` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricFile {
    name: Spanned<String>,
    query: Spanned<String>,
    #[serde(default)]
    min: Option<Spanned<f64>>,
    #[serde(default)]
    max: Option<Spanned<f64>>,
}

/// Verification by metrics during the bake (DESIGN §4.7); no metrics: no analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisSpec {
    /// Time between measurements of a metric.
    pub interval: Duration,
    /// After the app turns Healthy, before measurements start.
    pub initial_delay: Duration,
    /// Failed measurements tolerated; one more makes the app Degraded.
    pub failure_limit: u32,
    /// Consecutive query errors that make the analysis Inconclusive (at least 1).
    pub error_limit: u32,
    /// What a query that returns nothing counts as.
    pub no_data: NoData,
    /// The checks.
    pub metrics: Vec<MetricSpec>,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            interval: Duration::from_secs(30),
            initial_delay: Duration::ZERO,
            failure_limit: 0,
            error_limit: 4,
            no_data: NoData::Inconclusive,
            metrics: Vec::new(),
        }
    }
}

impl AnalysisSpec {
    /// Whether there is anything to measure.
    pub fn enabled(&self) -> bool {
        !self.metrics.is_empty()
    }
}

/// One metric check.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// Its name (the key of the status' `analysis` map).
    pub name: String,
    /// A handlebars template of a PromQL query (context: cluster, app, values, release).
    pub query: String,
    /// Fails when the value is below.
    pub min: Option<f64>,
    /// Fails when the value is above.
    pub max: Option<f64>,
    /// Where the query was written (`apps/web/app.yaml:12`), for errors when rendering it.
    pub source: String,
}

/// Most metrics one analysis may have.
pub const MAX_METRICS: usize = 20;

/// Longest rendered-or-written query accepted.
const MAX_QUERY_BYTES: usize = 16 * 1024;

/// A validated rollout policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// Clusters that always go first (wave 0), with the line they were named on.
    pub canary: Vec<NameAt>,
    /// Batch ratio within each stage.
    pub batches: Vec<u64>,
    /// Continuous health required before the next wave opens.
    pub bake: Duration,
    /// Progressing longer than this counts as Degraded.
    pub progress_deadline: Duration,
    /// What a failure does.
    pub on_failure: OnFailure,
    /// What opens the next wave.
    pub gate: Gate,
    /// Verification by metrics during the bake.
    pub analysis: AnalysisSpec,
    /// Why the app is paused (`paused: true` with `pauseReason` in app.yaml): no wave
    /// takes a new release; what a cluster runs stays, reverts still go through.
    pub paused: Option<String>,
    /// The fleet's `freeze` as it applies to this app (set when the fleet is loaded).
    pub freeze: Option<FreezeScope>,
    /// The change windows that apply to this app: the fleet's and its own (DESIGN
    /// §4.8), each with the clusters it covers.
    pub windows: super::windows::AppWindows,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            canary: Vec::new(),
            batches: vec![1],
            bake: Duration::from_secs(600),
            progress_deadline: Duration::from_secs(600),
            on_failure: OnFailure::Halt,
            gate: Gate::Health,
            analysis: AnalysisSpec::default(),
            paused: None,
            freeze: None,
            windows: super::windows::AppWindows::default(),
        }
    }
}

/// Largest share one batch may have in `rollout.batches`: ratios describe fractions
/// of a stage, and with at most [`MAX_BATCHES`] entries of this size the arithmetic of
/// the waves stays far from overflow.
const MAX_BATCH_RATIO: u64 = 1000;

/// Most entries `rollout.batches` may have: every entry is a wave per stage.
const MAX_BATCHES: usize = 100;

/// Longest `bake` or `progressDeadline`: a week. Longer is a typo (`100d`), and
/// Kubernetes keeps deadlines in 32-bit seconds.
const MAX_ROLLOUT_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// Why a duration could not be read, with the forms that are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(pub String);

/// Parses `90s`, `10m`, `1h`, `1h30m` or `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    parse_duration_text(s).map_err(DurationError)
}

fn parse_duration_text(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 90s, 10m or 1h".into());
    }
    if s.starts_with('-') {
        return Err(format!("duration '{s}' is negative"));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "duration '{s}' has unknown unit '{c}'; use s, m, h or d"
                ));
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("duration '{s}' is not a number followed by s, m, h or d"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("duration '{s}' needs a unit (s, m, h or d)"));
    }
    Ok(Duration::from_secs(total))
}

impl RolloutFile {
    /// Applies this (partial) policy over `base`, validating as it goes.
    fn apply_over(&self, base: &RolloutSpec, file: &str) -> Result<RolloutSpec, FleetError> {
        let mut out = base.clone();
        let invalid = |line: u64, message: String| FleetError::Invalid {
            file: file.to_string(),
            line: Some(line),
            message,
        };
        if let Some(c) = &self.canary {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = c.iter().find(|n| !seen.insert(&n.value)) {
                return Err(invalid(
                    dup.referenced.line(),
                    format!("rollout.canary: '{}' is listed twice", dup.value),
                ));
            }
            out.canary = c.iter().map(name_at).collect();
        }
        if let Some(b) = &self.batches {
            if b.value.is_empty() {
                return Err(invalid(
                    b.referenced.line(),
                    "rollout.batches: needs at least one ratio, e.g. [1, 2, 7]".into(),
                ));
            }
            if b.value.contains(&0) {
                return Err(invalid(b.referenced.line(), "rollout.batches: a ratio of 0 is not allowed; every batch needs a positive share".into()));
            }
            if let Some(big) = b.value.iter().find(|r| **r > MAX_BATCH_RATIO) {
                return Err(invalid(
                    b.referenced.line(),
                    format!(
                        "rollout.batches: ratio {big} is over the limit of {MAX_BATCH_RATIO}; ratios are shares, e.g. [1, 2, 7]"
                    ),
                ));
            }
            if b.value.len() > MAX_BATCHES {
                return Err(invalid(
                    b.referenced.line(),
                    format!(
                        "rollout.batches: {} entries is over the limit of {MAX_BATCHES}",
                        b.value.len()
                    ),
                ));
            }
            out.batches = b.value.clone();
        }
        let duration = |d: &Spanned<String>, field: &str, min: Duration| {
            let parsed = parse_duration(&d.value)
                .map_err(|m| invalid(d.referenced.line(), format!("{field}: {m}")))?;
            if parsed > MAX_ROLLOUT_DURATION {
                return Err(invalid(
                    d.referenced.line(),
                    format!(
                        "{field}: '{}' is longer than the limit of 7d",
                        d.value.trim()
                    ),
                ));
            }
            if parsed < min {
                return Err(invalid(
                    d.referenced.line(),
                    format!("{field}: must be at least {}s", min.as_secs()),
                ));
            }
            Ok(parsed)
        };
        if let Some(d) = &self.bake {
            out.bake = duration(d, "rollout.bake", Duration::ZERO)?;
        }
        if let Some(d) = &self.progress_deadline {
            out.progress_deadline =
                duration(d, "rollout.progressDeadline", Duration::from_secs(1))?;
        }
        if let Some(f) = self.on_failure {
            out.on_failure = f;
        }
        if let Some(g) = self.gate {
            out.gate = g;
        }
        if let Some(a) = &self.analysis {
            out.analysis = a.value.apply_over(&base.analysis, file)?;
        }
        Ok(out)
    }
}

impl AnalysisFile {
    /// Applies this (partial) analysis over `base`, validating as it goes.
    fn apply_over(&self, base: &AnalysisSpec, file: &str) -> Result<AnalysisSpec, FleetError> {
        let mut out = base.clone();
        let invalid = |line: u64, message: String| FleetError::Invalid {
            file: file.to_string(),
            line: Some(line),
            message,
        };
        let duration = |d: &Spanned<String>, field: &str, min: Duration| {
            let parsed = parse_duration(&d.value)
                .map_err(|m| invalid(d.referenced.line(), format!("{field}: {m}")))?;
            if parsed > MAX_ROLLOUT_DURATION {
                return Err(invalid(
                    d.referenced.line(),
                    format!(
                        "{field}: '{}' is longer than the limit of 7d",
                        d.value.trim()
                    ),
                ));
            }
            if parsed < min {
                return Err(invalid(
                    d.referenced.line(),
                    format!("{field}: must be at least {}s", min.as_secs()),
                ));
            }
            Ok(parsed)
        };
        if let Some(d) = &self.interval {
            out.interval = duration(d, "rollout.analysis.interval", Duration::from_secs(1))?;
        }
        if let Some(d) = &self.initial_delay {
            out.initial_delay = duration(d, "rollout.analysis.initialDelay", Duration::ZERO)?;
        }
        if let Some(f) = self.failure_limit {
            out.failure_limit = f;
        }
        if let Some(e) = &self.error_limit {
            if e.value == 0 {
                return Err(invalid(
                    e.referenced.line(),
                    "rollout.analysis.errorLimit: must be at least 1 (the number of consecutive query errors that make the analysis Inconclusive)".into(),
                ));
            }
            out.error_limit = e.value;
        }
        if let Some(n) = self.no_data {
            out.no_data = n;
        }
        if let Some(list) = &self.metrics {
            if list.value.len() > MAX_METRICS {
                return Err(invalid(
                    list.referenced.line(),
                    format!(
                        "rollout.analysis.metrics: {} entries is over the limit of {MAX_METRICS}",
                        list.value.len()
                    ),
                ));
            }
            let mut metrics: Vec<MetricSpec> = Vec::new();
            for (i, m) in list.value.iter().enumerate() {
                metrics.push(m.validate(i, file, &metrics)?);
            }
            out.metrics = metrics;
        }
        Ok(out)
    }
}

impl MetricFile {
    /// Checks one metric: a unique name, a query that compiles as a template, a bound.
    fn validate(
        &self,
        index: usize,
        file: &str,
        earlier: &[MetricSpec],
    ) -> Result<MetricSpec, FleetError> {
        let invalid = |line: u64, message: String| FleetError::Invalid {
            file: file.to_string(),
            line: Some(line),
            message,
        };
        let field = format!("rollout.analysis.metrics[{index}]");
        let name = &self.name.value;
        let name_line = self.name.referenced.line();
        if !crate::names::is_dns_label(name) {
            return Err(invalid(
                name_line,
                format!(
                    "{field}.name: '{name}' must be lower-case letters, digits and '-' (at most 63), e.g. error-ratio"
                ),
            ));
        }
        if earlier.iter().any(|m| m.name == *name) {
            return Err(invalid(
                name_line,
                format!("{field}.name: '{name}' is listed twice"),
            ));
        }
        let query = &self.query.value;
        let query_line = self.query.referenced.line();
        if query.trim().is_empty() {
            return Err(invalid(
                query_line,
                format!("{field}.query: empty; write a PromQL query that returns one number"),
            ));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(invalid(
                query_line,
                format!("{field}.query: longer than the limit of {MAX_QUERY_BYTES} bytes"),
            ));
        }
        if let Err(e) = handlebars::template::Template::compile(query) {
            return Err(invalid(
                query_line,
                format!("{field}.query: template syntax error: {}", e.reason()),
            ));
        }
        let bound = |b: &Option<Spanned<f64>>, which: &str| -> Result<Option<f64>, FleetError> {
            match b {
                Some(v) if !v.value.is_finite() => Err(invalid(
                    v.referenced.line(),
                    format!("{field}.{which}: must be a finite number"),
                )),
                Some(v) => Ok(Some(v.value)),
                None => Ok(None),
            }
        };
        let min = bound(&self.min, "min")?;
        let max = bound(&self.max, "max")?;
        match (min, max) {
            (None, None) => {
                return Err(invalid(
                    name_line,
                    format!(
                        "{field} ({name}): give max (fails when the value is above) or min (fails when below), or both"
                    ),
                ));
            }
            (Some(lo), Some(hi)) if lo > hi => {
                return Err(invalid(
                    name_line,
                    format!("{field} ({name}): min {lo} is above max {hi}; no value could pass"),
                ));
            }
            _ => {}
        }
        Ok(MetricSpec {
            name: name.clone(),
            query: query.clone(),
            min,
            max,
            source: format!("{file}:{query_line}"),
        })
    }
}

/// `fleet.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetFile {
    stages: Spanned<Vec<String>>,
    #[serde(default)]
    rollout: RolloutFile,
    #[serde(default)]
    removal: Removal,
    #[serde(default)]
    values: Map<String, Value>,
    #[serde(default)]
    tenancy: Option<Spanned<super::tenancy::TenancyFile>>,
    #[serde(default)]
    status: StatusFile,
    /// Who reviews changes to the fleet as a whole (`rollwave codeowners`).
    #[serde(default)]
    owners: Vec<Spanned<String>>,
    /// Health rules for kinds without one of rollwave's own (DESIGN §6.2).
    #[serde(default)]
    health: Vec<super::health::HealthRuleFile>,
    /// Stop the line: no new wave opens in the freeze's scope (DESIGN §4.8).
    #[serde(default)]
    freeze: Option<Spanned<FreezeFile>>,
    /// Change windows: when waves may open (DESIGN §4.8).
    #[serde(default)]
    windows: Vec<Spanned<super::windows::WindowFile>>,
}

/// `freeze:` in fleet.yaml as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeFile {
    reason: Spanned<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    until: Option<Spanned<String>>,
    #[serde(default)]
    stages: Vec<Spanned<String>>,
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(default)]
    apps: Vec<Spanned<String>>,
}

/// A validated `freeze:` (stop the line): while it holds, no wave opens for a new
/// release in its scope; reverts still go through.
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    /// Why, and who said so: "holiday freeze (alice)".
    pub reason: String,
    /// When it ends by itself; `None`: until a commit removes it.
    pub until: Option<std::time::SystemTime>,
    /// Only clusters of these stages (empty: every stage).
    pub stages: Vec<String>,
    /// Only clusters with these labels (empty: every cluster).
    pub selector: BTreeMap<String, String>,
    /// Only these apps (empty: every app), with the line each is named on.
    pub apps: Vec<NameAt>,
    /// The line of `freeze:` in fleet.yaml.
    pub line: u64,
}

/// A freeze as one app's planner sees it: the reason, the end, and which of the
/// app's clusters it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FreezeScope {
    /// Why, and who said so.
    pub reason: String,
    /// When it ends by itself.
    pub until: Option<std::time::SystemTime>,
    /// The clusters it holds; `None`: every cluster.
    pub clusters: Option<std::collections::BTreeSet<String>>,
}

impl FreezeScope {
    /// Whether the freeze holds `cluster` at `now`.
    pub fn holds(&self, cluster: &str, now: std::time::SystemTime) -> bool {
        self.until.is_none_or(|u| now < u)
            && self.clusters.as_ref().is_none_or(|c| c.contains(cluster))
    }
}

/// `status:` in fleet.yaml: where the fleet's statuses live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusFile {
    #[serde(default)]
    store: crate::status::StoreKind,
}

/// Validated `fleet.yaml`.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Stage order.
    pub stages: Vec<String>,
    /// Default rollout policy.
    pub rollout: RolloutSpec,
    /// Default removal behaviour.
    pub removal: Removal,
    /// Fleet-wide template values.
    pub values: Map<String, Value>,
    /// What each app may touch (DESIGN §6.1); `None`: every app may do everything.
    pub tenancy: Option<super::tenancy::Tenancy>,
    /// Where the agents publish and read statuses (`status.store`; DESIGN §5.1).
    pub status_store: crate::status::StoreKind,
    /// `owners`: who reviews fleet.yaml, clusters/ and apps without owners of their
    /// own (`@user`, `@org/team` or an email, as CODEOWNERS takes them).
    pub owners: Vec<String>,
    /// `health`: CEL health rules per apiVersion and kind (DESIGN §6.2).
    pub health: Vec<super::health::HealthRule>,
    /// `freeze`: stop the line (DESIGN §4.8).
    pub freeze: Option<Freeze>,
    /// `windows`: when waves may open, for every app in their scope (DESIGN §4.8).
    pub windows: Vec<std::sync::Arc<super::windows::Window>>,
}

/// Checks `freeze:`: a reason, an RFC 3339 `until`, known stages (apps are checked
/// once they are loaded).
fn validate_freeze(f: Spanned<FreezeFile>) -> Result<Freeze, FleetError> {
    let line = f.referenced.line();
    let f = f.value;
    let invalid = |line: u64, message: String| FleetError::Invalid {
        file: "fleet.yaml".into(),
        line: Some(line),
        message,
    };
    if f.reason.value.trim().is_empty() {
        return Err(invalid(
            f.reason.referenced.line(),
            "freeze.reason: say why the line is stopped".into(),
        ));
    }
    let until = f
        .until
        .map(|u| {
            humantime::parse_rfc3339_weak(&u.value).map_err(|_| {
                invalid(
                    u.referenced.line(),
                    format!(
                        "freeze.until: '{}' is not a time; write it like 2026-12-27T00:00:00Z",
                        u.value
                    ),
                )
            })
        })
        .transpose()?;
    Ok(Freeze {
        reason: match f.by {
            Some(by) if !by.trim().is_empty() => format!("{} ({by})", f.reason.value),
            _ => f.reason.value,
        },
        until,
        stages: f.stages.into_iter().map(|s| s.value).collect(),
        selector: f.selector,
        apps: f.apps.iter().map(name_at).collect(),
        line,
    })
}

/// `owners` entries, each checked to be something CODEOWNERS accepts.
fn checked_owners(file: &str, owners: Vec<Spanned<String>>) -> Result<Vec<String>, FleetError> {
    owners
        .into_iter()
        .map(|o| {
            if crate::review::codeowners::is_owner(&o.value) {
                Ok(o.value)
            } else {
                Err(FleetError::Invalid {
                    file: file.to_string(),
                    line: Some(o.referenced.line()),
                    message: format!(
                        "owners: '{}' is not an owner CODEOWNERS takes: write a user as @name, a team as @org/team, or an email address",
                        o.value
                    ),
                })
            }
        })
        .collect()
}

impl FleetFile {
    /// Checks stages and the default policy.
    pub fn validate(self) -> Result<FleetSettings, FleetError> {
        let line = self.stages.referenced.line();
        if self.stages.value.is_empty() {
            return Err(FleetError::Invalid {
                file: "fleet.yaml".into(),
                line: Some(line),
                message: "stages: list at least one stage, e.g. [test, pre, prod]".into(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.stages.value {
            if !seen.insert(s) {
                return Err(FleetError::Invalid {
                    file: "fleet.yaml".into(),
                    line: Some(line),
                    message: format!("stages: '{s}' is listed twice"),
                });
            }
        }
        let rollout = self
            .rollout
            .apply_over(&RolloutSpec::default(), "fleet.yaml")?;
        let tenancy = match &self.tenancy {
            Some(t) => Some(t.value.validate(t.referenced.line())?),
            None => None,
        };
        let owners = checked_owners("fleet.yaml", self.owners)?;
        let windows =
            super::windows::validate("fleet.yaml", self.windows, &self.stages.value, true)?
                .into_iter()
                .map(std::sync::Arc::new)
                .collect();
        Ok(FleetSettings {
            stages: self.stages.value,
            rollout,
            removal: self.removal,
            values: self.values,
            tenancy,
            status_store: self.status.store,
            owners,
            health: super::health::validate(self.health)?,
            freeze: self.freeze.map(validate_freeze).transpose()?,
            windows,
        })
    }
}

/// `clusters/<name>.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    name: Spanned<String>,
    stage: Spanned<String>,
    #[serde(default)]
    labels: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    values: Map<String, Value>,
    #[serde(default, rename = "kubeVersion")]
    kube_version: Option<Spanned<String>>,
}

/// One cluster of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Its name (equal to its file name).
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// Labels for targeting and overlay selection.
    pub labels: BTreeMap<String, String>,
    /// Cluster template values.
    pub values: Map<String, Value>,
    /// Its Kubernetes version (`kubeVersion: "1.31"`), which Helm charts see as
    /// `.Capabilities.KubeVersion`. Written in the file rather than asked of the
    /// cluster, so every agent and `rollwave validate` render the same objects.
    pub kube_version: Option<String>,
}

/// Whether `v` reads as a Kubernetes version: `1.31`, `v1.31.2`.
fn is_kube_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks every key and value of a label map as Kubernetes would.
fn check_labels(labels: &BTreeMap<String, String>, field: &str) -> Result<(), String> {
    for (k, v) in labels {
        if let Some(problem) = crate::names::label_problem(k, v) {
            return Err(format!("{field}: {problem}"));
        }
    }
    Ok(())
}

impl ClusterFile {
    /// Checks the name against the file name and the stage against fleet.yaml.
    pub fn validate(
        self,
        file: &str,
        stem: &str,
        fleet: &FleetSettings,
    ) -> Result<Cluster, FleetError> {
        let invalid = |line: u64, message: String| FleetError::Invalid {
            file: file.to_string(),
            line: Some(line),
            message,
        };
        if self.name.value != stem {
            return Err(invalid(
                self.name.referenced.line(),
                format!(
                    "name: '{}' must equal the file name '{stem}'",
                    self.name.value
                ),
            ));
        }
        if !crate::names::is_dns_label(stem) {
            return Err(invalid(
                self.name.referenced.line(),
                format!("name: '{stem}' must be lower-case letters, digits and '-' (at most 63)"),
            ));
        }
        if !fleet.stages.contains(&self.stage.value) {
            return Err(invalid(
                self.stage.referenced.line(),
                format!(
                    "stage: '{}' is not one of the stages in fleet.yaml ({})",
                    self.stage.value,
                    fleet.stages.join(", ")
                ),
            ));
        }
        let labels = match self.labels {
            Some(l) => {
                check_labels(&l.value, "labels").map_err(|m| invalid(l.referenced.line(), m))?;
                l.value
            }
            None => BTreeMap::new(),
        };
        if let Some(v) = &self.kube_version
            && !is_kube_version(&v.value)
        {
            return Err(invalid(
                v.referenced.line(),
                format!(
                    "kubeVersion: '{}' is not a Kubernetes version; write it as major.minor, like \"1.31\"",
                    v.value
                ),
            ));
        }
        Ok(Cluster {
            name: self.name.value,
            stage: self.stage.value,
            labels,
            values: self.values,
            kube_version: self.kube_version.map(|v| v.value),
        })
    }
}

/// `targets` of app.yaml as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(default)]
    stages: Vec<Spanned<String>>,
    #[serde(default)]
    selector: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    clusters: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
}

/// Which clusters an app runs on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Targets {
    /// Stages whose clusters are targeted (all stages when empty and a selector is set).
    pub stages: Vec<String>,
    /// Labels that must all match.
    pub selector: BTreeMap<String, String>,
    /// Clusters added by name.
    pub clusters: Vec<String>,
    /// Clusters removed by name.
    pub exclude: Vec<String>,
}

/// One `overlays` rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlayFile {
    #[serde(default)]
    cluster: Option<Spanned<String>>,
    #[serde(default)]
    selector: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    stage: Option<Spanned<String>>,
    path: Spanned<String>,
}

/// Which kustomization root renders the app for the clusters a rule matches.
#[derive(Debug, Clone, PartialEq)]
pub enum OverlayRule {
    /// One cluster by name (most specific).
    Cluster {
        /// Cluster name.
        name: String,
        /// Root, relative to the app directory.
        path: String,
    },
    /// Clusters whose labels include all of these.
    Selector {
        /// Labels.
        labels: BTreeMap<String, String>,
        /// Root, relative to the app directory.
        path: String,
    },
    /// Every cluster of a stage (least specific).
    Stage {
        /// Stage name.
        stage: String,
        /// Root, relative to the app directory.
        path: String,
    },
}

/// `app.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppFile {
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    targets: TargetsFile,
    #[serde(default)]
    overlays: Vec<OverlayFile>,
    #[serde(default)]
    values: Map<String, Value>,
    #[serde(default)]
    rollout: Option<RolloutFile>,
    #[serde(default)]
    removal: Option<Removal>,
    #[serde(default)]
    suspend: bool,
    /// No new release rolls out while true; reverts still do (`rollwave pause`).
    #[serde(default)]
    paused: Option<Spanned<bool>>,
    /// Why the app is paused: required with `paused: true`.
    #[serde(default, rename = "pauseReason")]
    pause_reason: Option<Spanned<String>>,
    /// The app's own change windows, narrowing the fleet's (DESIGN §4.8).
    #[serde(default)]
    windows: Vec<Spanned<super::windows::WindowFile>>,
    /// Apps that must be Healthy on a cluster before a new release of this one is
    /// applied there (DESIGN §4.9).
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    force: bool,
    #[serde(default, rename = "allowEmpty")]
    allow_empty: bool,
    #[serde(default)]
    helm: Option<HelmFile>,
    /// Read only to refuse it with a clear message: an app cannot choose its policy.
    #[serde(default)]
    policy: Option<Spanned<serde::de::IgnoredAny>>,
    /// Read only to refuse it with a clear message, as `policy`.
    #[serde(default)]
    tenancy: Option<Spanned<serde::de::IgnoredAny>>,
    /// Who reviews changes to the app (`rollwave codeowners`).
    #[serde(default)]
    owners: Vec<Spanned<String>>,
}

/// `helm` of app.yaml as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HelmFile {
    chart: Spanned<String>,
    #[serde(default)]
    release_name: Option<Spanned<String>>,
    #[serde(default)]
    values: Map<String, Value>,
    #[serde(default)]
    values_files: Vec<Spanned<String>>,
    #[serde(default, rename = "includeCRDs")]
    include_crds: Option<bool>,
    #[serde(default)]
    skip_tests: Option<bool>,
    #[serde(default)]
    skip_hooks: bool,
}

/// An app deployed from a Helm chart (app.yaml `helm`, DESIGN §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AppHelm {
    /// The chart directory, relative to the app directory.
    pub chart: String,
    /// The release name (default: the app name).
    pub release_name: String,
    /// Values over the chart's defaults and the values files.
    pub values: Map<String, Value>,
    /// Values files relative to the app directory (templates allowed), in order.
    pub values_files: Vec<String>,
    /// Render the chart's `crds/` (default true, as `helm install` installs them).
    pub include_crds: bool,
    /// Leave out test hooks (default true: they run only under `helm test`).
    pub skip_tests: bool,
    /// Leave out every hook.
    pub skip_hooks: bool,
}

/// One app of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The directory name under apps/.
    pub name: String,
    /// Default namespace for namespaced objects.
    pub namespace: Option<String>,
    /// Which clusters run it.
    pub targets: Targets,
    /// Overlay rules, in file order.
    pub overlays: Vec<OverlayRule>,
    /// App template values.
    pub values: Map<String, Value>,
    /// The effective rollout policy (fleet default with the app's overrides).
    pub rollout: RolloutSpec,
    /// What happens when it stops targeting a cluster.
    pub removal: Removal,
    /// The app's own `removal` line, if it has one: remembered in the inventory so that
    /// deleting the app's directory still follows it.
    pub removal_in_app: Option<Removal>,
    /// A rendering with no objects is applied (pruning everything the app had) only
    /// when app.yaml says `allowEmpty: true`; otherwise it is refused, so an emptied
    /// kustomization cannot delete an app across the fleet.
    pub allow_empty: bool,
    /// Leave the app alone entirely.
    pub suspend: bool,
    /// Take ownership of fields other managers own (server-side apply force).
    pub force: bool,
    /// Deployed from a Helm chart.
    pub helm: Option<AppHelm>,
    /// The tenancy policy it runs under (fleet.yaml `tenancy`); `None` without
    /// tenancy.
    pub policy: Option<super::tenancy::Policy>,
    /// `owners`: who reviews changes to `apps/<name>/` (empty: fleet.yaml's owners).
    pub owners: Vec<String>,
    /// Apps that must be Healthy on a cluster, at the release the planner wants for
    /// them, before a new release of this one is applied there (`dependsOn`, DESIGN
    /// §4.9), with the line each is named on.
    pub depends_on: Vec<NameAt>,
}

/// What checking one app.yaml needs to know, and how it reports: every error names
/// the file and the line, and names checked against the fleet say what exists.
struct AppCheck<'a> {
    file: &'a str,
    name: &'a str,
    fleet: &'a FleetSettings,
    clusters: &'a [Cluster],
}

impl AppCheck<'_> {
    fn invalid(&self, line: Option<u64>, message: String) -> FleetError {
        FleetError::Invalid {
            file: self.file.to_string(),
            line,
            message,
        }
    }

    /// `s` names a stage of fleet.yaml.
    fn stage(&self, s: &Spanned<String>, field: &str) -> Result<(), FleetError> {
        if self.fleet.stages.contains(&s.value) {
            return Ok(());
        }
        Err(self.invalid(
            Some(s.referenced.line()),
            format!(
                "{field}: '{}' is not a stage in fleet.yaml ({})",
                s.value,
                self.fleet.stages.join(", ")
            ),
        ))
    }

    /// `s` names a cluster of clusters/.
    fn cluster(&self, s: &Spanned<String>, field: &str) -> Result<(), FleetError> {
        if self.clusters.iter().any(|c| c.name == s.value) {
            return Ok(());
        }
        Err(self.invalid(
            Some(s.referenced.line()),
            format!("{field}: '{}' is not a cluster in clusters/", s.value),
        ))
    }

    /// `p` is a relative path that stays inside the app directory.
    fn inside_app(&self, p: &Spanned<String>, field: &str) -> Result<String, FleetError> {
        let path = &p.value;
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|x| x == "..") {
            return Err(self.invalid(
                Some(p.referenced.line()),
                format!("{field}: '{path}' must be a path inside the app directory"),
            ));
        }
        Ok(path.clone())
    }

    /// The directory name, the refused `policy`/`tenancy` fields and the namespace;
    /// the tenancy policy the app runs under.
    fn identity(&self, app: &AppFile) -> Result<Option<super::tenancy::Policy>, FleetError> {
        let name = self.name;
        if !crate::names::is_dns_label(name) {
            return Err(self.invalid(
                None,
                format!("app directory name '{name}' must be lower-case letters, digits and '-'"),
            ));
        }
        for (field, at) in [("policy", &app.policy), ("tenancy", &app.tenancy)] {
            if let Some(at) = at {
                return Err(self.invalid(
                    Some(at.referenced.line()),
                    format!(
                        "{field}: an app cannot choose its tenancy policy; fleet.yaml's tenancy.apps maps apps to policies (the platform team's file)"
                    ),
                ));
            }
        }
        let policy = self
            .fleet
            .tenancy
            .as_ref()
            .map(|t| t.policy_of(name).clone());
        if let Some(p) = &policy
            && let Some(sa) = &p.service_account
            && app.namespace.is_none()
        {
            return Err(self.invalid(
                None,
                format!(
                    "namespace: required: policy '{}' applies the app as ServiceAccount {sa} of the app's namespace",
                    p.name
                ),
            ));
        }
        if let Some(ns) = &app.namespace
            && !crate::names::is_dns_label(&ns.value)
        {
            return Err(self.invalid(
                Some(ns.referenced.line()),
                format!(
                    "namespace: '{}' is not a valid namespace name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
                    ns.value
                ),
            ));
        }
        Ok(policy)
    }

    /// `targets`, every name checked.
    fn targets(&self, t: TargetsFile) -> Result<Targets, FleetError> {
        if let Some(sel) = &t.selector {
            check_labels(&sel.value, "targets.selector")
                .map_err(|m| self.invalid(Some(sel.referenced.line()), m))?;
        }
        for s in &t.stages {
            self.stage(s, "targets.stages")?;
        }
        for c in &t.clusters {
            self.cluster(c, "targets.clusters")?;
        }
        for c in &t.exclude {
            self.cluster(c, "targets.exclude")?;
        }
        Ok(Targets {
            stages: t.stages.into_iter().map(|s| s.value).collect(),
            selector: t.selector.map(|s| s.value).unwrap_or_default(),
            clusters: t.clusters.into_iter().map(|s| s.value).collect(),
            exclude: t.exclude.into_iter().map(|s| s.value).collect(),
        })
    }

    /// One `overlays` rule: exactly one of cluster, selector or stage, and a path
    /// inside the app directory.
    fn overlay(&self, o: OverlayFile) -> Result<OverlayRule, FleetError> {
        let path = o.path.value.clone();
        let line = Some(o.path.referenced.line());
        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(self.invalid(
                line,
                format!("overlays.path: '{path}' must stay inside the app directory"),
            ));
        }
        match (o.cluster, o.selector, o.stage) {
            (Some(c), None, None) => {
                self.cluster(&c, "overlays.cluster")?;
                Ok(OverlayRule::Cluster {
                    name: c.value,
                    path,
                })
            }
            (None, Some(labels), None) => {
                check_labels(&labels.value, "overlays.selector")
                    .map_err(|m| self.invalid(Some(labels.referenced.line()), m))?;
                Ok(OverlayRule::Selector {
                    labels: labels.value,
                    path,
                })
            }
            (None, None, Some(s)) => {
                self.stage(&s, "overlays.stage")?;
                Ok(OverlayRule::Stage {
                    stage: s.value,
                    path,
                })
            }
            _ => Err(self.invalid(
                line,
                "overlays: each rule needs exactly one of 'cluster', 'selector' or 'stage'".into(),
            )),
        }
    }

    /// `helm`: the chart and values files inside the app directory, a valid release
    /// name (default: the app's name).
    fn helm(&self, h: HelmFile) -> Result<AppHelm, FleetError> {
        let release_name = match h.release_name {
            Some(r) => {
                let ok = r.value.len() <= 53 && crate::names::is_dns_subdomain(&r.value);
                if !ok {
                    return Err(self.invalid(
                        Some(r.referenced.line()),
                        format!(
                            "helm.releaseName: '{}' is not a valid release name: at most 53 lower-case letters, digits, '-' and '.'",
                            r.value
                        ),
                    ));
                }
                r.value
            }
            None => self.name.to_string(),
        };
        let values_files = h
            .values_files
            .iter()
            .map(|f| self.inside_app(f, "helm.valuesFiles"))
            .collect::<Result<_, _>>()?;
        Ok(AppHelm {
            chart: self.inside_app(&h.chart, "helm.chart")?,
            release_name,
            values: h.values,
            values_files,
            include_crds: h.include_crds.unwrap_or(true),
            skip_tests: h.skip_tests.unwrap_or(true),
            skip_hooks: h.skip_hooks,
        })
    }

    /// The rollout policy over the fleet's: its own canary checked (an inherited one
    /// was checked against fleet.yaml), the pause, and the windows in force for it.
    fn rollout(
        &self,
        own: Option<&RolloutFile>,
        pause: (Option<Spanned<bool>>, Option<Spanned<String>>),
        windows: Vec<Spanned<super::windows::WindowFile>>,
    ) -> Result<RolloutSpec, FleetError> {
        let mut rollout = match own {
            Some(r) => r.apply_over(&self.fleet.rollout, self.file)?,
            None => self.fleet.rollout.clone(),
        };
        if own.is_some_and(|r| r.canary.is_some())
            && let Some(c) = rollout
                .canary
                .iter()
                .find(|c| !self.clusters.iter().any(|x| x.name == c.value))
        {
            return Err(self.invalid(
                Some(c.line),
                format!(
                    "rollout.canary: '{}' is not a cluster in clusters/",
                    c.value
                ),
            ));
        }
        rollout.paused = match pause {
            (Some(p), reason) if p.value => match reason {
                Some(r) if !r.value.trim().is_empty() => Some(r.value),
                _ => {
                    return Err(self.invalid(
                        Some(p.referenced.line()),
                        "paused: true needs pauseReason: say why, for the people who see the rollout stop (rollwave pause APP --reason writes both)".into(),
                    ));
                }
            },
            (_, Some(r)) => {
                return Err(self.invalid(
                    Some(r.referenced.line()),
                    "pauseReason without paused: true; remove it, or pause the app".into(),
                ));
            }
            _ => None,
        };
        let own_windows: Vec<_> =
            super::windows::validate(self.file, windows, &self.fleet.stages, false)?
                .into_iter()
                .map(std::sync::Arc::new)
                .collect();
        rollout.windows = super::windows::AppWindows::scoped(
            &self.fleet.windows,
            &own_windows,
            self.name,
            self.clusters,
        );
        Ok(rollout)
    }

    /// `dependsOn`: no app twice, not the app itself (names and cycles are checked
    /// once every app is loaded).
    fn depends_on(&self, names: &[Spanned<String>]) -> Result<Vec<NameAt>, FleetError> {
        let mut seen = std::collections::BTreeSet::new();
        for d in names {
            if d.value == self.name {
                return Err(self.invalid(
                    Some(d.referenced.line()),
                    format!("dependsOn: '{}' cannot depend on itself", self.name),
                ));
            }
            if !seen.insert(&d.value) {
                return Err(self.invalid(
                    Some(d.referenced.line()),
                    format!("dependsOn: '{}' is listed twice", d.value),
                ));
            }
        }
        Ok(names.iter().map(name_at).collect())
    }
}

impl AppFile {
    /// Checks names against the fleet and resolves the rollout policy.
    pub fn validate(
        self,
        file: &str,
        name: &str,
        fleet: &FleetSettings,
        clusters: &[Cluster],
    ) -> Result<App, FleetError> {
        let check = AppCheck {
            file,
            name,
            fleet,
            clusters,
        };
        let policy = check.identity(&self)?;
        let targets = check.targets(self.targets)?;
        let overlays = self
            .overlays
            .into_iter()
            .map(|o| check.overlay(o))
            .collect::<Result<_, _>>()?;
        let helm = self.helm.map(|h| check.helm(h)).transpose()?;
        let rollout = check.rollout(
            self.rollout.as_ref(),
            (self.paused, self.pause_reason),
            self.windows,
        )?;
        Ok(App {
            owners: checked_owners(file, self.owners)?,
            depends_on: check.depends_on(&self.depends_on)?,
            name: name.to_string(),
            namespace: self.namespace.map(|n| n.value),
            targets,
            overlays,
            values: self.values,
            rollout,
            removal: self.removal.unwrap_or(fleet.removal),
            removal_in_app: self.removal,
            allow_empty: self.allow_empty,
            suspend: self.suspend,
            force: self.force,
            helm,
            policy,
        })
    }
}

/// The item of `items` named `name`, for items sorted by name; a list built out of order
/// by hand is still searched right, by a scan when the search misses.
fn by_name<'a, T>(items: &'a [T], name: &str, name_of: impl Fn(&T) -> &String) -> Option<&'a T> {
    match items.binary_search_by(|i| name_of(i).as_str().cmp(name)) {
        Ok(at) => Some(&items[at]),
        Err(_) => items.iter().find(|i| name_of(i) == name),
    }
}

/// The validated fleet. It is read, never changed, once loaded: the digests the
/// render cache keeps of it ([`Fleet::app_digest`]) would not follow a change.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// fleet.yaml.
    pub settings: FleetSettings,
    /// Clusters, sorted by name.
    pub clusters: Vec<Cluster>,
    /// Apps, sorted by name.
    pub apps: Vec<App>,
    /// One digest per app, by its index in `apps`, made on first use.
    app_digests: AppDigests,
}

/// The digests of [`Fleet::app_digest`]: a fleet is loaded once per commit and read by
/// every pass at that commit, so each app's is made once.
#[derive(Clone, Default)]
struct AppDigests(Vec<std::sync::OnceLock<[u8; 32]>>);

impl std::fmt::Debug for AppDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.0.iter().filter(|d| d.get().is_some()).count();
        write!(f, "{made} of {} app digests made", self.0.len())
    }
}

impl Fleet {
    /// The fleet of `settings`, `clusters` and `apps`, each list sorted by name.
    pub fn new(settings: FleetSettings, clusters: Vec<Cluster>, apps: Vec<App>) -> Fleet {
        let app_digests = AppDigests(apps.iter().map(|_| Default::default()).collect());
        Fleet {
            settings,
            clusters,
            apps,
            app_digests,
        }
    }

    /// `digest` of the fleet and `app`, made once per app of this fleet: the render
    /// cache's key of an app's model (its settings and the app, formatted in full),
    /// which every pass at a commit would otherwise make again for every app. An `app`
    /// that is not one of this fleet's own is digested every time. The first `digest`
    /// given for an app is the one kept, so every caller must pass the same function
    /// (the render cache is the only one).
    pub fn app_digest(&self, app: &App, digest: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
        // Its index from its address (an app of `apps` lies inside the vector), checked.
        let size = std::mem::size_of::<App>().max(1);
        let index = (app as *const App as usize)
            .checked_sub(self.apps.as_ptr() as usize)
            .map(|offset| offset / size)
            .filter(|&i| self.apps.get(i).is_some_and(|a| std::ptr::eq(a, app)));
        match index.and_then(|i| self.app_digests.0.get(i)) {
            Some(memo) => *memo.get_or_init(digest),
            None => digest(),
        }
    }

    /// The cluster named `name`: a binary search, as clusters are sorted by name (a
    /// pass looks up its cluster once per app).
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        by_name(&self.clusters, name, |c| &c.name)
    }

    /// The app named `name`: a binary search, as apps are sorted by name (a pass looks
    /// up every app several times, so a scan made a thousand apps cost a million
    /// comparisons).
    pub fn app(&self, name: &str) -> Option<&App> {
        by_name(&self.apps, name, |a| &a.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_reject_bad_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("-5m").unwrap_err().0.contains("negative"));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("10").is_err());
    }

    const FLEET: &str = "stages: [test]
rollout:
  bake: 1m
  analysis:
    interval: 10s
    initialDelay: 30s
    errorLimit: 2
    metrics:
    - name: error-ratio
      query: |
        sum(rate(x{cluster=\"{{cluster.name}}\"}[1m]))
      max: 0.01
";

    fn fleet(text: &str) -> Result<FleetSettings, FleetError> {
        let f: FleetFile = crate::yaml::parse_typed("fleet.yaml", text)?;
        f.validate()
    }

    fn app(fleet: &FleetSettings, text: &str) -> Result<App, FleetError> {
        let f: AppFile = crate::yaml::parse_typed("apps/web/app.yaml", text)?;
        f.validate("apps/web/app.yaml", "web", fleet, &[])
    }

    #[test]
    fn an_app_digest_is_made_once_per_app_of_the_fleet_and_every_time_for_another() {
        let settings = fleet("stages: [prod]\n").unwrap();
        let web = app(&settings, "targets:\n  stages: [prod]\n").unwrap();
        let mut api = web.clone();
        api.name = "api".into();
        let fleet = Fleet::new(settings, Vec::new(), vec![api, web]);
        let made = std::cell::Cell::new(0);
        let digest = |n: u8| {
            let made = &made;
            move || {
                made.set(made.get() + 1);
                [n; 32]
            }
        };
        assert_eq!(fleet.app_digest(&fleet.apps[1], digest(1)), [1; 32]);
        assert_eq!(fleet.app_digest(&fleet.apps[1], digest(2)), [1; 32], "kept");
        assert_eq!(
            fleet.app_digest(&fleet.apps[0], digest(3)),
            [3; 32],
            "its own"
        );
        let copy = fleet.apps[1].clone();
        assert_eq!(
            fleet.app_digest(&copy, digest(4)),
            [4; 32],
            "not the fleet's"
        );
        assert_eq!(fleet.app_digest(&copy, digest(5)), [5; 32], "not kept");
        assert_eq!(made.get(), 4);
    }

    #[test]
    fn a_freeze_is_read_with_who_and_until_and_a_bad_one_is_refused_with_its_line() {
        let f = fleet("stages: [test, prod]\nfreeze:\n  reason: holiday\n  by: alice\n  until: 2026-12-27T00:00:00Z\n  stages: [prod]\n").unwrap();
        let freeze = f.freeze.unwrap();
        assert_eq!(freeze.reason, "holiday (alice)");
        assert_eq!(freeze.stages, vec!["prod"]);
        assert_eq!(freeze.line, 3);
        assert!(freeze.until.is_some());
        for (text, want) in [
            (
                "stages: [prod]\nfreeze:\n  reason: ''\n",
                "fleet.yaml:3: freeze.reason: say why",
            ),
            (
                "stages: [prod]\nfreeze:\n  reason: x\n  until: soon\n",
                "fleet.yaml:4: freeze.until: 'soon' is not a time",
            ),
            (
                "stages: [prod]\nfreeze:\n  reason: x\n  when: now\n",
                "unknown field",
            ),
        ] {
            let e = fleet(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
    }

    #[test]
    fn health_rules_are_read_and_a_bad_expression_is_refused_with_its_line() {
        let f = fleet(
            "stages: [test]\nhealth:\n- apiVersion: postgresql.cnpg.io/v1\n  kind: Cluster\n  current: status.readyInstances == spec.instances\n  failed: \"status.phase == 'Failed'\"\n",
        )
        .unwrap();
        assert_eq!(f.health.len(), 1);
        assert_eq!(f.health[0].kind, "Cluster");
        assert_eq!(f.health[0].current.source, "fleet.yaml:5 current");
        assert_eq!(f.health[0].in_progress, None);
        let cases = [
            (
                "stages: [test]\nhealth:\n- apiVersion: example.com/v1\n  kind: Db\n  current: status.ready ==\n",
                "fleet.yaml:5: current: not a CEL expression",
            ),
            (
                "stages: [test]\nhealth:\n- apiVersion: example.com/v1\n  kind: Db\n  current: 'true'\n  inProgress: ''\n",
                "fleet.yaml:6: inProgress: empty",
            ),
            (
                "stages: [test]\nhealth:\n- {apiVersion: example.com/v1, kind: Db, current: 'true'}\n- {apiVersion: example.com/v1, kind: Db, current: 'false'}\n",
                "fleet.yaml:4: health: a second rule for example.com/v1 Db",
            ),
            (
                "stages: [test]\nhealth:\n- {apiVersion: example.com/v1, kind: Db, ready: 'true'}\n",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = fleet(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
        let deep = format!(
            "stages: [test]\nhealth:\n- {{apiVersion: example.com/v1, kind: Db, current: '{}true{}'}}\n",
            "(".repeat(100),
            ")".repeat(100)
        );
        let e = fleet(&deep).unwrap_err().to_string();
        assert!(e.contains("nested 100 deep"), "{e}");
    }

    #[test]
    fn analysis_in_fleet_yaml_is_read_with_defaults_for_what_is_left_out() {
        let f = fleet(FLEET).unwrap();
        let a = &f.rollout.analysis;
        assert_eq!(a.interval, Duration::from_secs(10));
        assert_eq!(a.initial_delay, Duration::from_secs(30));
        assert_eq!(a.failure_limit, 0);
        assert_eq!(a.error_limit, 2);
        assert_eq!(a.no_data, NoData::Inconclusive);
        assert_eq!(a.metrics.len(), 1);
        assert_eq!(a.metrics[0].name, "error-ratio");
        assert_eq!(a.metrics[0].max, Some(0.01));
        assert_eq!(a.metrics[0].min, None);
        assert_eq!(
            a.metrics[0].source, "fleet.yaml:11",
            "the first line of the query"
        );
        assert!(
            !fleet("stages: [test]\n")
                .unwrap()
                .rollout
                .analysis
                .enabled()
        );
    }

    #[test]
    fn an_app_overrides_analysis_field_by_field_and_metrics_as_a_whole() {
        let f = fleet(FLEET).unwrap();
        let a = app(
            &f,
            "targets: {stages: [test]}\nrollout:\n  analysis: {interval: 2s, noData: pass}\n",
        )
        .unwrap();
        let an = &a.rollout.analysis;
        assert_eq!(an.interval, Duration::from_secs(2));
        assert_eq!(an.no_data, NoData::Pass);
        assert_eq!(an.initial_delay, Duration::from_secs(30), "inherited");
        assert_eq!(an.error_limit, 2, "inherited");
        assert_eq!(an.metrics.len(), 1, "inherited");
        assert_eq!(a.rollout.bake, Duration::from_secs(60), "inherited");
        let off = app(
            &f,
            "targets: {stages: [test]}\nrollout:\n  analysis: {metrics: []}\n",
        )
        .unwrap();
        assert!(!off.rollout.analysis.enabled());
        let own = app(
            &f,
            "targets: {stages: [test]}\nrollout:\n  analysis:\n    metrics:\n    - {name: p99, query: 'q', min: 0, max: 2}\n",
        )
        .unwrap();
        assert_eq!(own.rollout.analysis.metrics[0].name, "p99");
        assert_eq!(own.rollout.analysis.metrics.len(), 1);
        assert_eq!(
            own.rollout.analysis.metrics[0].source,
            "apps/web/app.yaml:5"
        );
    }

    #[test]
    fn analysis_mistakes_name_the_file_line_and_field() {
        let e = |text: &str| fleet(text).unwrap_err().to_string();
        assert_eq!(
            e("stages: [t]\nrollout:\n  analysis:\n    interval: 0s\n"),
            "fleet.yaml:4: rollout.analysis.interval: must be at least 1s"
        );
        assert_eq!(
            e("stages: [t]\nrollout:\n  analysis:\n    errorLimit: 0\n"),
            "fleet.yaml:4: rollout.analysis.errorLimit: must be at least 1 (the number of consecutive query errors that make the analysis Inconclusive)"
        );
        assert_eq!(
            e("stages: [t]\nrollout:\n  analysis:\n    metrics:\n    - {name: a, query: q}\n"),
            "fleet.yaml:5: rollout.analysis.metrics[0] (a): give max (fails when the value is above) or min (fails when below), or both"
        );
        assert_eq!(
            e(
                "stages: [t]\nrollout:\n  analysis:\n    metrics:\n    - {name: a, query: q, max: 1}\n    - {name: a, query: q, max: 1}\n"
            ),
            "fleet.yaml:6: rollout.analysis.metrics[1].name: 'a' is listed twice"
        );
        let syntax = e(
            "stages: [t]\nrollout:\n  analysis:\n    metrics:\n    - name: a\n      query: 'x{{#if}'\n      max: 1\n",
        );
        assert!(
            syntax.starts_with(
                "fleet.yaml:6: rollout.analysis.metrics[0].query: template syntax error"
            ),
            "{syntax}"
        );
        assert_eq!(
            e(
                "stages: [t]\nrollout:\n  analysis:\n    metrics:\n    - {name: a, query: q, min: 2, max: 1}\n"
            ),
            "fleet.yaml:5: rollout.analysis.metrics[0] (a): min 2 is above max 1; no value could pass"
        );
        assert_eq!(
            e(
                "stages: [t]\nrollout:\n  analysis:\n    metrics:\n    - {name: Error Ratio, query: q, max: 1}\n"
            ),
            "fleet.yaml:5: rollout.analysis.metrics[0].name: 'Error Ratio' must be lower-case letters, digits and '-' (at most 63), e.g. error-ratio"
        );
        assert!(
            e("stages: [t]\nrollout:\n  analysis:\n    nodata: pass\n").starts_with("fleet.yaml:4"),
            "unknown fields are refused with their line"
        );
        assert!(
            e("stages: [t]\nrollout:\n  analysis:\n    noData: maybe\n")
                .starts_with("fleet.yaml:4"),
        );
    }

    #[test]
    fn an_app_cannot_choose_its_policy_and_impersonation_needs_its_namespace() {
        let f = fleet(
            "stages: [test]\ntenancy:\n  defaultPolicy: r\n  policies:\n    r: {serviceAccount: deployer}\n    wide: {namespaces: ['*'], clusterScoped: ['*']}\n",
        )
        .unwrap();
        let e = |text: &str| app(&f, text).unwrap_err().to_string();
        assert_eq!(
            e("namespace: web\ntargets: {stages: [test]}\npolicy: wide\n"),
            "apps/web/app.yaml:3: policy: an app cannot choose its tenancy policy; fleet.yaml's tenancy.apps maps apps to policies (the platform team's file)"
        );
        assert_eq!(
            e("namespace: web\ntargets: {stages: [test]}\ntenancy: {policies: {}}\n"),
            "apps/web/app.yaml:3: tenancy: an app cannot choose its tenancy policy; fleet.yaml's tenancy.apps maps apps to policies (the platform team's file)"
        );
        assert_eq!(
            e("targets: {stages: [test]}\n"),
            "apps/web/app.yaml: namespace: required: policy 'r' applies the app as ServiceAccount deployer of the app's namespace"
        );
        let a = app(&f, "namespace: web\ntargets: {stages: [test]}\n").unwrap();
        assert_eq!(a.policy.unwrap().name, "r");
        let none = fleet("stages: [test]\n").unwrap();
        assert!(
            app(&none, "targets: {stages: [test]}\n")
                .unwrap()
                .policy
                .is_none()
        );
    }
}
