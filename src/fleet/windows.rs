//! Change windows (DESIGN §4.8): `windows:` in fleet.yaml, narrowed per app in its
//! app.yaml. Each entry is an `allow` or a `deny` window: a cron expression for its
//! start, a duration and an IANA time zone, scoped by stages, a cluster selector and
//! (in fleet.yaml) apps. Pure: the clock is an argument.
//!
//! The rules, as the planner applies them to one cluster at one instant:
//! - inside any deny window that covers the cluster: closed;
//! - when fleet.yaml has allow windows that cover the cluster, it must be inside one
//!   of them; when the app.yaml has allow windows that cover it, it must also be inside
//!   one of those. An app's windows can therefore only narrow the fleet's, never widen
//!   them (two lists, both must agree);
//! - otherwise open.
//!
//! Schedules are evaluated in their own zone, so a window at 22:00 in Europe/Berlin
//! starts at 21:00 UTC in winter and 20:00 UTC in summer. A start that falls into a
//! daylight-saving gap happens at the first instant after the gap; a start in a
//! repeated hour happens once, at its first pass (the cron library's rules, the ones
//! Vixie cron follows).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::FleetError;
use super::model::{Cluster, NameAt};

/// Longest window: a year and a day. A deny window over the holidays is weeks; a
/// longer one is a typo better refused.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

/// Most windows fleet.yaml or one app.yaml may have: every pass evaluates each.
const MAX_WINDOWS: usize = 64;

/// Longest schedule expression accepted.
const MAX_SCHEDULE_BYTES: usize = 256;

/// How many window edges the search for the next opening steps over before it gives
/// up (and says "not within the search"): enough for any real calendar.
const OPENING_SEARCH_STEPS: usize = 256;

/// One entry of `windows:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    #[serde(default)]
    allow: Option<Spanned<ScheduleFile>>,
    #[serde(default)]
    deny: Option<Spanned<ScheduleFile>>,
    #[serde(default)]
    stages: Vec<Spanned<String>>,
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(default)]
    apps: Vec<Spanned<String>>,
    #[serde(default, rename = "blockReverts")]
    block_reverts: bool,
}

/// `{schedule, duration, timeZone}` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    schedule: Spanned<String>,
    duration: Spanned<String>,
    #[serde(default, rename = "timeZone")]
    time_zone: Option<Spanned<String>>,
}

/// Whether a window lets waves open or holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Waves open only inside it (when any allow window covers the cluster).
    Allow,
    /// No wave opens inside it.
    Deny,
}

/// A validated window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Allow or deny.
    pub kind: WindowKind,
    /// The cron expression of its start, as written.
    pub schedule: String,
    cron: Cron,
    /// How long it lasts from each start.
    pub duration: Duration,
    /// The duration as written (`408h`), for messages.
    pub duration_text: String,
    /// The zone its schedule is read in.
    pub zone: Tz,
    /// Only clusters of these stages (empty: every stage).
    pub stages: Vec<String>,
    /// Only clusters with these labels (empty: every cluster).
    pub selector: BTreeMap<String, String>,
    /// Only these apps (empty: every app; fleet.yaml only).
    pub apps: Vec<NameAt>,
    /// Whether reverts and rollbacks wait for it too (default: they go through).
    pub block_reverts: bool,
    /// The file and line of the entry, for messages.
    pub file: String,
    /// The line of the entry.
    pub line: u64,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        // The parsed cron follows from the text.
        self.kind == other.kind
            && self.schedule == other.schedule
            && self.duration == other.duration
            && self.zone == other.zone
            && self.stages == other.stages
            && self.selector == other.selector
            && self.apps == other.apps
            && self.block_reverts == other.block_reverts
            && self.file == other.file
            && self.line == other.line
    }
}

impl Window {
    /// Says which window this is, for people: "deny window '0 0 20 12 *' for 408h
    /// (UTC) at fleet.yaml:12".
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            WindowKind::Allow => "allow",
            WindowKind::Deny => "deny",
        };
        format!(
            "{kind} window '{}' for {} ({}) at {}:{}",
            self.schedule,
            self.duration_text,
            self.zone.name(),
            self.file,
            self.line
        )
    }

    /// When the occurrence covering `t` ends, if `t` is inside the window. The latest
    /// start at or before `t` has the latest end, as every occurrence lasts as long.
    fn end_if_inside(&self, t: SystemTime) -> Option<SystemTime> {
        let local = DateTime::<Utc>::from(t).with_timezone(&self.zone);
        let start = self.cron.find_previous_occurrence(&local, true).ok()?;
        let end = SystemTime::from(start.with_timezone(&Utc)).checked_add(self.duration)?;
        (t < end).then_some(end)
    }

    /// The first start strictly after `t`.
    fn next_start(&self, t: SystemTime) -> Option<SystemTime> {
        let local = DateTime::<Utc>::from(t).with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(SystemTime::from(next.with_timezone(&Utc)))
    }

    /// Whether the window covers `cluster` (its stage and labels).
    fn covers(&self, cluster: &Cluster) -> bool {
        (self.stages.is_empty() || self.stages.contains(&cluster.stage))
            && self
                .selector
                .iter()
                .all(|(k, v)| cluster.labels.get(k) == Some(v))
    }
}

/// Parses and checks `windows:` of `file` (fleet.yaml or an app.yaml): the schedule,
/// duration and zone of each, its stages against the fleet's. `apps` is allowed only
/// in fleet.yaml; names are checked once every app is loaded.
pub fn validate(
    file: &str,
    entries: Vec<Spanned<WindowFile>>,
    stages: &[String],
    apps_allowed: bool,
) -> Result<Vec<Window>, FleetError> {
    let invalid = |line: u64, message: String| FleetError::Invalid {
        file: file.to_string(),
        line: Some(line),
        message,
    };
    if let Some(extra) = entries.get(MAX_WINDOWS) {
        return Err(invalid(
            extra.referenced.line(),
            format!("windows: at most {MAX_WINDOWS} entries; merge windows with one schedule"),
        ));
    }
    entries
        .into_iter()
        .map(|entry| {
            let line = entry.referenced.line();
            let w = entry.value;
            let (kind, spec) = match (w.allow, w.deny) {
                (Some(a), None) => (WindowKind::Allow, a),
                (None, Some(d)) => (WindowKind::Deny, d),
                _ => {
                    return Err(invalid(
                        line,
                        "windows: each entry is either allow: {schedule, duration, timeZone} or deny: {...}, not both and not neither".into(),
                    ));
                }
            };
            if !apps_allowed && let Some(a) = w.apps.first() {
                return Err(invalid(
                    a.referenced.line(),
                    "windows.apps: an app.yaml's windows are the app's own; scope them by stages or selector".into(),
                ));
            }
            for s in &w.stages {
                if !stages.contains(&s.value) {
                    return Err(invalid(
                        s.referenced.line(),
                        format!("windows.stages: '{}' is not one of stages {stages:?}", s.value),
                    ));
                }
            }
            let spec = spec.value;
            let cron = parse_schedule(&spec.schedule.value)
                .map_err(|m| invalid(spec.schedule.referenced.line(), m))?;
            let duration = super::parse_duration(&spec.duration.value)
                .map_err(|m| invalid(spec.duration.referenced.line(), format!("windows.duration: {m}")))?;
            if duration.is_zero() || duration > MAX_WINDOW {
                return Err(invalid(
                    spec.duration.referenced.line(),
                    format!(
                        "windows.duration: '{}' must be more than 0 and at most 366d",
                        spec.duration.value
                    ),
                ));
            }
            let zone = match &spec.time_zone {
                None => Tz::UTC,
                Some(z) => z.value.parse::<Tz>().map_err(|_| {
                    invalid(
                        z.referenced.line(),
                        format!(
                            "windows.timeZone: '{}' is not an IANA time zone; write e.g. Europe/Berlin, Asia/Shanghai or UTC",
                            z.value
                        ),
                    )
                })?,
            };
            Ok(Window {
                kind,
                schedule: spec.schedule.value.clone(),
                cron,
                duration,
                duration_text: spec.duration.value.trim().to_string(),
                zone,
                stages: w.stages.into_iter().map(|s| s.value).collect(),
                selector: w.selector,
                apps: w
                    .apps
                    .iter()
                    .map(|a| NameAt {
                        value: a.value.clone(),
                        line: a.referenced.line(),
                    })
                    .collect(),
                block_reverts: w.block_reverts,
                file: file.to_string(),
                line,
            })
        })
        .collect()
}

/// Parses a YAML document holding `windows:` alone, as fleet.yaml writes it: for
/// tools and tests that consider windows apart from a whole fleet.
pub fn parse(file: &str, text: &str, stages: &[String]) -> Result<Vec<Arc<Window>>, FleetError> {
    #[derive(Deserialize)]
    struct WindowsOnly {
        windows: Vec<Spanned<WindowFile>>,
    }
    let doc: WindowsOnly = crate::yaml::parse_typed(file, text)?;
    Ok(validate(file, doc.windows, stages, true)?
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// A five-field cron expression (minute hour day-of-month month day-of-week) that
/// matches at least once in a leap cycle.
fn parse_schedule(text: &str) -> Result<Cron, String> {
    if text.len() > MAX_SCHEDULE_BYTES {
        return Err(format!(
            "windows.schedule: longer than {MAX_SCHEDULE_BYTES} bytes"
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| {
            format!(
                "windows.schedule: '{text}' is not a cron expression ({e}); write five fields: minute hour day-of-month month day-of-week, e.g. '0 22 * * 1-4'"
            )
        })?;
    // A date that never comes (30 February) would make the window never open.
    let reference = DateTime::<Utc>::from(SystemTime::UNIX_EPOCH);
    let mut from = reference;
    for _ in 0..4 {
        match cron.find_next_occurrence(&from, true) {
            Ok(_) => return Ok(cron),
            Err(_) => from += chrono::Duration::days(366),
        }
    }
    Err(format!(
        "windows.schedule: '{text}' never matches a date; check the day and month"
    ))
}

/// A window as one app sees it, with the clusters it covers.
#[derive(Debug, Clone, PartialEq)]
struct ScopedWindow {
    window: Arc<Window>,
    /// Whether it comes from the app's own app.yaml.
    from_app: bool,
    clusters: BTreeSet<String>,
}

/// The windows that apply to one app: the fleet's (scoped to it) and its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppWindows {
    windows: Vec<ScopedWindow>,
}

impl AppWindows {
    /// The windows of `fleet` that name `app` (or no app) and those of the app, each
    /// with the clusters of `clusters` it covers.
    pub fn scoped(
        fleet: &[Arc<Window>],
        own: &[Arc<Window>],
        app: &str,
        clusters: &[Cluster],
    ) -> Self {
        let scope = |w: &Arc<Window>, from_app: bool| ScopedWindow {
            window: w.clone(),
            from_app,
            clusters: clusters
                .iter()
                .filter(|c| w.covers(c))
                .map(|c| c.name.clone())
                .collect(),
        };
        let windows = fleet
            .iter()
            .filter(|w| w.apps.is_empty() || w.apps.iter().any(|a| a.value == app))
            .map(|w| scope(w, false))
            .chain(own.iter().map(|w| scope(w, true)))
            .collect();
        AppWindows { windows }
    }

    /// Whether there are none (the common case: nothing to evaluate).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Evaluates every window at `now` once, for the many questions one plan asks.
    pub fn at(&self, now: SystemTime) -> WindowsAt<'_> {
        WindowsAt {
            windows: self,
            now,
            inside: self
                .windows
                .iter()
                .map(|w| w.window.end_if_inside(now).is_some())
                .collect(),
        }
    }

    /// Why `cluster` is closed at `t`, given which windows are inside at `t`.
    fn closed_by(&self, cluster: &str, inside: impl Fn(usize) -> bool) -> Option<Closed> {
        let covering = || {
            self.windows
                .iter()
                .enumerate()
                .filter(|(_, w)| w.clusters.contains(cluster))
        };
        if let Some((_, w)) =
            covering().find(|(i, w)| w.window.kind == WindowKind::Deny && inside(*i))
        {
            return Some(Closed {
                why: format!("inside the {}", w.window.describe()),
                blocks_reverts: w.window.block_reverts,
            });
        }
        for from_app in [false, true] {
            let mut allows = covering()
                .filter(|(_, w)| w.window.kind == WindowKind::Allow && w.from_app == from_app)
                .peekable();
            let Some((_, first)) = allows.peek().copied() else {
                continue;
            };
            let first = first.window.clone();
            let mut any_inside = false;
            let mut blocks = false;
            for (i, w) in allows {
                any_inside |= inside(i);
                blocks |= w.window.block_reverts;
            }
            if !any_inside {
                return Some(Closed {
                    why: format!("outside the {}", first.describe()),
                    blocks_reverts: blocks,
                });
            }
        }
        None
    }
}

/// Why windows hold a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Which window, for people.
    pub why: String,
    /// Whether reverts and rollbacks wait too (`blockReverts: true`).
    pub blocks_reverts: bool,
}

/// An app's windows evaluated at one instant.
pub struct WindowsAt<'a> {
    windows: &'a AppWindows,
    now: SystemTime,
    inside: Vec<bool>,
}

impl WindowsAt<'_> {
    /// Why no wave may open on `cluster` now, or `None` when windows let it.
    pub fn closed(&self, cluster: &str) -> Option<Closed> {
        self.windows.closed_by(cluster, |i| self.inside[i])
    }

    /// The earliest [`WindowsAt::next_opening`] of `clusters`. Clusters covered by the
    /// same windows open at the same instant, so the search runs once per distinct set
    /// of covering windows, not once per cluster.
    pub fn earliest_opening<'c>(
        &self,
        clusters: impl IntoIterator<Item = &'c String>,
    ) -> Option<SystemTime> {
        let mut searched = std::collections::HashSet::new();
        clusters
            .into_iter()
            .filter(|c| searched.insert(self.covering(c)))
            .filter_map(|c| self.next_opening(c))
            .min()
    }

    /// Which windows cover `cluster`.
    fn covering(&self, cluster: &str) -> Vec<bool> {
        self.windows
            .windows
            .iter()
            .map(|w| w.clusters.contains(cluster))
            .collect()
    }

    /// When `cluster` next may take a new release: the first instant from now, stepping
    /// over window edges, where no deny window holds it and its allow windows let it.
    /// `None` when no opening comes within the search (a deny window that never ends).
    pub fn next_opening(&self, cluster: &str) -> Option<SystemTime> {
        let scoped = &self.windows.windows;
        let mut t = self.now;
        for _ in 0..OPENING_SEARCH_STEPS {
            let ends: Vec<Option<SystemTime>> =
                scoped.iter().map(|w| w.window.end_if_inside(t)).collect();
            if self
                .windows
                .closed_by(cluster, |i| ends[i].is_some())
                .is_none()
            {
                return Some(t);
            }
            // The next instant anything about this cluster changes: a covering window
            // that holds now ends, or a covering allow window starts.
            t = scoped
                .iter()
                .zip(&ends)
                .filter(|(w, _)| w.clusters.contains(cluster))
                .filter_map(|(w, end)| match (w.window.kind, end) {
                    (WindowKind::Deny, Some(end)) => Some(*end),
                    (WindowKind::Allow, None) => w.window.next_start(t),
                    _ => None,
                })
                .min()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    fn cluster(name: &str, stage: &str) -> Cluster {
        Cluster {
            name: name.into(),
            stage: stage.into(),
            labels: BTreeMap::new(),
            values: serde_json::Map::new(),
            kube_version: None,
        }
    }

    fn windows(yaml: &str) -> Result<Vec<Arc<Window>>, FleetError> {
        parse("fleet.yaml", yaml, &["test".into(), "prod".into()])
    }

    fn app_windows(yaml: &str) -> AppWindows {
        let clusters = [cluster("t1", "test"), cluster("p1", "prod")];
        AppWindows::scoped(&windows(yaml).unwrap(), &[], "web", &clusters)
    }

    #[test]
    fn an_allow_window_in_its_zone_opens_prod_only_at_night() {
        let w = app_windows(
            "windows:\n- allow: {schedule: '0 22 * * 1-4', duration: 6h, timeZone: Asia/Shanghai}\n  stages: [prod]\n",
        );
        // Monday 2026-12-07 13:59 UTC is 21:59 in Shanghai: closed; 14:00 UTC opens.
        let before = w.at(at("2026-12-07T13:59:00Z"));
        let closed = before.closed("p1").unwrap();
        assert!(
            closed
                .why
                .contains("outside the allow window '0 22 * * 1-4'"),
            "{}",
            closed.why
        );
        assert_eq!(before.next_opening("p1"), Some(at("2026-12-07T14:00:00Z")));
        assert_eq!(
            before.closed("t1"),
            None,
            "test is not in the window's scope"
        );
        assert_eq!(w.at(at("2026-12-07T14:00:00Z")).closed("p1"), None);
        assert_eq!(w.at(at("2026-12-07T19:59:59Z")).closed("p1"), None);
        assert!(w.at(at("2026-12-07T20:00:00Z")).closed("p1").is_some());
        // Thursday night's window runs into Friday; Friday 22:00 opens nothing.
        let friday = w.at(at("2026-12-11T15:00:00Z"));
        assert!(friday.closed("p1").is_some());
        assert_eq!(friday.next_opening("p1"), Some(at("2026-12-14T14:00:00Z")));
    }

    #[test]
    fn a_deny_window_inside_an_allow_window_closes_it_and_the_opening_is_after_it() {
        let w = app_windows(
            "windows:\n- allow: {schedule: '0 8 * * *', duration: 10h}\n- deny: {schedule: '0 12 * * *', duration: 1h}\n",
        );
        assert_eq!(w.at(at("2026-12-07T11:59:00Z")).closed("t1"), None);
        let lunch = w.at(at("2026-12-07T12:30:00Z"));
        assert!(
            lunch
                .closed("t1")
                .unwrap()
                .why
                .contains("inside the deny window")
        );
        assert_eq!(lunch.next_opening("t1"), Some(at("2026-12-07T13:00:00Z")));
        // After the allow window, the next opening is the next morning.
        let evening = w.at(at("2026-12-07T19:00:00Z"));
        assert_eq!(evening.next_opening("t1"), Some(at("2026-12-08T08:00:00Z")));
    }

    #[test]
    fn a_schedule_follows_daylight_saving_time_in_its_zone() {
        let w = app_windows(
            "windows:\n- allow: {schedule: '0 22 * * *', duration: 1h, timeZone: Europe/Berlin}\n",
        );
        // Winter: 22:00 CET is 21:00 UTC. Summer (from 29 March 2026): 20:00 UTC.
        assert_eq!(
            w.at(at("2026-03-28T12:00:00Z")).next_opening("t1"),
            Some(at("2026-03-28T21:00:00Z"))
        );
        assert_eq!(
            w.at(at("2026-03-29T12:00:00Z")).next_opening("t1"),
            Some(at("2026-03-29T20:00:00Z"))
        );
        assert!(w.at(at("2026-03-29T21:30:00Z")).closed("t1").is_some());
        // And back on 25 October.
        assert_eq!(
            w.at(at("2026-10-25T12:00:00Z")).next_opening("t1"),
            Some(at("2026-10-25T21:00:00Z"))
        );
    }

    #[test]
    fn a_start_in_the_spring_gap_happens_once_right_after_it() {
        // 02:30 does not exist in Berlin on 29 March 2026 (02:00 jumps to 03:00).
        let w = app_windows(
            "windows:\n- allow: {schedule: '30 2 * * *', duration: 30m, timeZone: Europe/Berlin}\n",
        );
        let opening = w.at(at("2026-03-28T12:00:00Z")).next_opening("t1").unwrap();
        assert!(
            opening >= at("2026-03-29T01:00:00Z") && opening <= at("2026-03-29T01:30:00Z"),
            "{}",
            humantime::format_rfc3339(opening)
        );
    }

    #[test]
    fn the_year_end_deny_window_spans_the_new_year_and_an_app_cannot_widen_the_fleet() {
        let fleet = windows(
            "windows:\n- deny: {schedule: '0 0 20 12 *', duration: 408h}\n- allow: {schedule: '0 8 * * 1-5', duration: 9h}\n",
        )
        .unwrap();
        let own = windows("windows:\n- allow: {schedule: '0 0 * * *', duration: 24h}\n").unwrap();
        let clusters = [cluster("t1", "test")];
        let w = AppWindows::scoped(&fleet, &own, "web", &clusters);
        let holiday = w.at(at("2026-12-31T10:00:00Z"));
        assert!(
            holiday
                .closed("t1")
                .unwrap()
                .why
                .contains("deny window '0 0 20 12 *'")
        );
        assert!(!holiday.closed("t1").unwrap().blocks_reverts);
        // 408 h from 20 Dec is 6 Jan 00:00, a Wednesday: the fleet's allow window opens at 08:00.
        assert_eq!(holiday.next_opening("t1"), Some(at("2027-01-06T08:00:00Z")));
        // The app's all-day allow window does not open Saturday, outside the fleet's.
        assert!(w.at(at("2026-12-05T10:00:00Z")).closed("t1").is_some());
    }

    #[test]
    fn windows_scoped_to_other_apps_or_labels_do_not_apply() {
        let fleet = windows(
            "windows:\n- deny: {schedule: '0 0 * * *', duration: 24h}\n  apps: [api]\n- deny: {schedule: '0 0 * * *', duration: 24h}\n  selector: {region: eu}\n",
        )
        .unwrap();
        let w = AppWindows::scoped(&fleet, &[], "web", &[cluster("t1", "test")]);
        assert_eq!(w.at(at("2026-12-07T10:00:00Z")).closed("t1"), None);
    }

    #[test]
    fn bad_windows_are_refused_with_their_line() {
        for (yaml, expected) in [
            (
                "windows:\n- allow: {schedule: '0 25 * * *', duration: 1h}\n",
                "fleet.yaml:2: windows.schedule: '0 25 * * *' is not a cron expression",
            ),
            (
                "windows:\n- allow: {schedule: '0 0 30 2 *', duration: 1h}\n",
                "fleet.yaml:2: windows.schedule: '0 0 30 2 *' never matches",
            ),
            (
                "windows:\n- allow:\n    schedule: '0 1 * * *'\n    duration: 1h\n    timeZone: Mars/Olympus\n",
                "fleet.yaml:5: windows.timeZone: 'Mars/Olympus' is not an IANA time zone",
            ),
            (
                "windows:\n- deny: {schedule: '0 1 * * *', duration: 2y}\n",
                "fleet.yaml:2: windows.duration: duration '2y' has unknown unit",
            ),
            (
                "windows:\n- deny: {schedule: '0 1 * * *', duration: 400d}\n",
                "at most 366d",
            ),
            (
                "windows:\n- deny: {schedule: '0 1 * * *', duration: 1h}\n  stages: [staging]\n",
                "fleet.yaml:3: windows.stages: 'staging' is not one of stages",
            ),
            (
                "windows:\n- {stages: [prod]}\n",
                "fleet.yaml:2: windows: each entry is either allow",
            ),
        ] {
            let e = windows(yaml).unwrap_err().to_string();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
    }
}
