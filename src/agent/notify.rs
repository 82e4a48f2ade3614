//! Notifications (agent config `notify:`, DESIGN §7): the agent tells people when an
//! app on one of its own clusters starts a release (Progressing), becomes Healthy,
//! Degraded, Inconclusive or RolledBack, or when a release is Halted before the
//! cluster's wave by a failure in an earlier wave.
//!
//! - **What is sent** is derived from the state a pass wrote, not from transitions:
//!   each (cluster, app, release, event) is sent once, whenever it is first seen, so a
//!   restarted agent sends what it had not delivered and nothing twice. What was
//!   delivered is remembered in the cluster's status (`notified`), which survives
//!   restarts like the rest of the status.
//! - **Never blocking a pass:** a pass only puts events on a bounded queue; a
//!   background task delivers them, retrying with backoff. A full queue drops the
//!   event for now; the next pass derives it again.
//! - **Where:** one or more HTTP endpoints, each with a `format`: `json` (every field,
//!   plus a Slack-style `text`) or `slack` (an incoming-webhook message). With a
//!   `secret`, the body is signed: `X-Rollwave-Signature: sha256=<hex HMAC-SHA256 of
//!   the body>`, as GitHub signs its webhooks. URLs and secrets come from the
//!   environment or a file when they hold a token; they are never logged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::{Request, header};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::plan::{AppPlan, GateState};
use crate::status::{AppStatus, ClusterStatus, Phase};

/// Events remembered per app in the status: the newest, enough for the releases an
/// app moves through between two restarts.
const REMEMBERED: usize = 32;

/// Events waiting for delivery; more are dropped until the queue drains (the next
/// pass derives them again).
const QUEUE: usize = 256;

/// Deliveries running at once.
const CONCURRENT: usize = 8;

/// Attempts per event and endpoint before it is left to the next pass.
pub const ATTEMPTS: u32 = 5;

/// Bound of one attempt (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(10);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// The cluster started applying a release.
    Progressing,
    /// The release is Healthy on the cluster.
    Healthy,
    /// The release failed its health rules, progress deadline or analysis.
    Degraded,
    /// The analysis could not decide; a person does.
    Inconclusive,
    /// The last known-good rendering was re-applied after a failure.
    RolledBack,
    /// The release stopped before this cluster's wave: an earlier wave failed.
    Halted,
    /// A `freeze` in fleet.yaml stopped the line (fleet-wide: `app` is empty and
    /// `release` names the freeze).
    Frozen,
    /// That freeze was lifted or ended.
    Unfrozen,
}

impl EventKind {
    /// All of them, the default of `notify[].events`.
    pub const ALL: [EventKind; 8] = [
        EventKind::Progressing,
        EventKind::Healthy,
        EventKind::Degraded,
        EventKind::Inconclusive,
        EventKind::RolledBack,
        EventKind::Halted,
        EventKind::Frozen,
        EventKind::Unfrozen,
    ];

    /// Its name, as in the config and the payload.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Progressing => "Progressing",
            EventKind::Healthy => "Healthy",
            EventKind::Degraded => "Degraded",
            EventKind::Inconclusive => "Inconclusive",
            EventKind::RolledBack => "RolledBack",
            EventKind::Halted => "Halted",
            EventKind::Frozen => "Frozen",
            EventKind::Unfrozen => "Unfrozen",
        }
    }

    /// The event a phase is, if any (Suspended and Error are not notified).
    fn of(phase: Phase) -> Option<EventKind> {
        match phase {
            Phase::Progressing => Some(EventKind::Progressing),
            Phase::Healthy => Some(EventKind::Healthy),
            Phase::Degraded => Some(EventKind::Degraded),
            Phase::Inconclusive => Some(EventKind::Inconclusive),
            Phase::RolledBack => Some(EventKind::RolledBack),
            Phase::Suspended | Phase::Error => None,
        }
    }
}

/// The body an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Every field of the event, plus `text` for Slack-compatible receivers.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` only).
    Slack,
}

/// One endpoint, from the agent config, its secrets already read.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to POST.
    pub url: String,
    /// The body's shape.
    pub format: Format,
    /// The HMAC key, when the body is signed.
    pub secret: Option<String>,
    /// The events sent here.
    pub events: BTreeSet<EventKind>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a token (Slack's do): only its scheme and host are shown.
        write!(f, "Endpoint({}, {:?})", redacted(&self.url), self.format)
    }
}

/// `scheme://host[:port]` of a URL: what may be logged of it.
pub fn redacted(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(u) => format!(
            "{}://{}",
            u.scheme_str().unwrap_or("http"),
            u.authority().map(|a| a.host()).unwrap_or("?")
        ),
        Err(_) => "<url>".into(),
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The cluster (as in clusters/).
    pub cluster: String,
    /// The app.
    pub app: String,
    /// The release (full commit sha).
    pub release: String,
    /// The app's phase on the cluster now.
    pub phase: Option<Phase>,
    /// Why (the status message, or what halted the release).
    pub message: String,
    /// When the phase began, or when the halt was seen (RFC 3339).
    pub at: String,
}

impl Event {
    /// How the status remembers it: `Healthy@<release>`.
    fn memory(&self) -> String {
        format!("{}@{}", self.event.name(), self.release)
    }

    /// One line for people (Slack's `text`).
    pub fn text(&self) -> String {
        let short = &self.release[..self.release.len().min(8)];
        let mark = match self.event {
            EventKind::Healthy => ":large_green_circle:",
            EventKind::Progressing => ":large_blue_circle:",
            EventKind::Degraded | EventKind::Halted => ":red_circle:",
            EventKind::Inconclusive => ":large_yellow_circle:",
            EventKind::RolledBack => ":leftwards_arrow_with_hook:",
            EventKind::Frozen => ":octagonal_sign:",
            EventKind::Unfrozen => ":white_check_mark:",
        };
        let what = match self.event {
            EventKind::Halted => format!("release `{short}` halted before this cluster's wave"),
            EventKind::Frozen => {
                return format!(
                    "{mark} *fleet frozen* (seen by {}): {}",
                    self.cluster, self.message
                );
            }
            EventKind::Unfrozen => {
                return format!(
                    "{mark} *fleet unfrozen* (seen by {}): {}",
                    self.cluster, self.message
                );
            }
            e => format!("{} at `{short}`", e.name()),
        };
        let mut text = format!("{mark} *{}* on *{}*: {what}", self.app, self.cluster);
        if !self.message.is_empty() {
            text.push_str(&format!(" ({})", self.message));
        }
        text
    }

    /// The body for `format`.
    pub fn body(&self, format: Format) -> Vec<u8> {
        let v = match format {
            Format::Json => serde_json::json!({
                "event": self.event,
                "cluster": self.cluster,
                "app": self.app,
                "release": self.release,
                "phase": self.phase,
                "message": self.message,
                "at": self.at,
                "agent": format!("rollwave/{}", env!("CARGO_PKG_VERSION")),
                "text": self.text(),
            }),
            Format::Slack => serde_json::json!({"text": self.text()}),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`, for
/// `X-Rollwave-Signature`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The releases of `plan` halted right before `cluster`'s wave: its wave's gate is
/// blocked by a Degraded or Inconclusive cluster while every earlier gate is open.
/// (release, why) pairs. Only the first blocked wave's clusters report a halt, so a
/// halt is told by a few agents, not by every later cluster.
pub fn halted(plan: &AppPlan, cluster: &str) -> Vec<(String, String)> {
    let Some(decision) = plan.decisions.get(cluster) else {
        return Vec::new();
    };
    let w = decision.wave;
    plan.pending
        .iter()
        .filter_map(|p| {
            let earlier_open = p.waves[..w.min(p.waves.len())]
                .iter()
                .all(|g| *g == GateState::Open);
            let why = match p.waves.get(w)? {
                GateState::Degraded { cluster } => format!("{cluster} is Degraded"),
                GateState::Inconclusive { cluster, .. } => format!("{cluster} is Inconclusive"),
                _ => return None,
            };
            earlier_open.then(|| (p.release.clone(), why))
        })
        .collect()
}

/// The events the state of `apps` on `cluster` (and the `halts` the pass found, by
/// app) calls for, in a stable order, including those already sent: the caller
/// filters with what it remembers.
fn events_of(
    cluster: &str,
    apps: &BTreeMap<String, AppStatus>,
    halts: &[(String, String, String)],
    now: SystemTime,
) -> Vec<Event> {
    let mut out: Vec<Event> = apps
        .iter()
        .filter_map(|(app, s)| {
            Some(Event {
                event: EventKind::of(s.phase)?,
                cluster: cluster.to_string(),
                app: app.clone(),
                release: s.release.clone(),
                phase: Some(s.phase),
                message: s.message.clone(),
                at: s.since.clone(),
            })
        })
        .collect();
    for (app, release, why) in halts {
        out.push(Event {
            event: EventKind::Halted,
            cluster: cluster.to_string(),
            app: app.clone(),
            release: release.clone(),
            phase: apps.get(app).map(|s| s.phase),
            message: why.clone(),
            at: humantime::format_rfc3339_seconds(now).to_string(),
        });
    }
    out
}

/// The app key under which a cluster's status remembers fleet-wide events (Frozen,
/// Unfrozen): no app is named so.
pub const FLEET: &str = "";

/// The freeze of fleet.yaml as notifications see it: an identity that stays the same
/// while the freeze does (its reason and end), and what to tell people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeNotice {
    /// A short hash of the reason and the end.
    pub id: String,
    /// "INC-4411: payment errors (alice) until 2026-12-08T06:00:00Z".
    pub message: String,
}

impl FreezeNotice {
    /// The notice of `freeze` if it holds at `now`.
    pub fn of(freeze: Option<&crate::fleet::Freeze>, now: SystemTime) -> Option<FreezeNotice> {
        use sha2::Digest;
        let f = freeze.filter(|f| f.until.is_none_or(|u| now < u))?;
        let until = f
            .until
            .map(|u| humantime::format_rfc3339_seconds(u).to_string());
        let digest = Sha256::digest(format!("{}\n{}", f.reason, until.as_deref().unwrap_or("")));
        let id: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let message = match until {
            Some(u) => format!("{} until {u}", f.reason),
            None => f.reason.clone(),
        };
        Some(FreezeNotice {
            id: format!("freeze-{id}"),
            message,
        })
    }
}

/// The fleet-wide events `freeze` (the one holding now, if any) calls for, given what
/// was delivered before (`remembered`, as `Frozen@<id>`): Frozen for a freeze not yet
/// told, Unfrozen for every told freeze that is no longer the one holding.
fn freeze_events(
    cluster: &str,
    freeze: Option<&FreezeNotice>,
    remembered: &[String],
    now: SystemTime,
) -> Vec<Event> {
    let at = humantime::format_rfc3339_seconds(now).to_string();
    let event = |kind: EventKind, id: &str, message: String| Event {
        event: kind,
        cluster: cluster.to_string(),
        app: FLEET.to_string(),
        release: id.to_string(),
        phase: None,
        message,
        at: at.clone(),
    };
    let mut out: Vec<Event> = freeze
        .map(|f| event(EventKind::Frozen, &f.id, f.message.clone()))
        .into_iter()
        .collect();
    for id in remembered.iter().filter_map(|m| m.strip_prefix("Frozen@")) {
        let lifted = freeze.is_none_or(|f| f.id != id);
        if lifted && !remembered.iter().any(|m| m == &format!("Unfrozen@{id}")) {
            out.push(event(
                EventKind::Unfrozen,
                id,
                "the line runs again: new releases roll out".into(),
            ));
        }
    }
    out
}

/// What has been delivered, by cluster and app (`Healthy@<release>`, oldest first).
type Delivered = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// The agent's notifier: shared by its clusters, fed by their passes.
pub struct Notifier {
    queue: tokio::sync::mpsc::Sender<Event>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Delivered to every endpoint that wants it.
    delivered: Delivered,
    /// Clusters whose memory was loaded from their status.
    seeded: HashSet<String>,
    /// Queued or being delivered (not derived again meanwhile).
    in_flight: HashSet<(String, String, String)>,
    /// Per endpoint, what it received (so a retry skips those that have it).
    received: HashMap<usize, HashSet<(String, String, String)>>,
}

fn key(e: &Event) -> (String, String, String) {
    (e.cluster.clone(), e.app.clone(), e.memory())
}

impl Notifier {
    /// Starts the delivery task on the current tokio runtime. Fails when an endpoint
    /// URL is not http(s) (the config check names the line; this is the last guard).
    pub fn start(endpoints: Vec<Endpoint>) -> Result<Arc<Notifier>, NotifyError> {
        let mut clients = Vec::new();
        for e in &endpoints {
            clients.push(Client::new(&e.url)?);
        }
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(deliver_all(
            rx,
            Arc::new(endpoints.into_iter().zip(clients).collect()),
            state.clone(),
        ));
        Ok(Arc::new(Notifier { queue, state }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the status of `cluster` should remember (`notified`): the delivered
    /// events, by app.
    pub fn memory(&self, cluster: &str) -> BTreeMap<String, Vec<String>> {
        self.lock()
            .delivered
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// When a pass of `cluster` is about to write `written` (the status it held
    /// before is `previous`, read once to learn what was delivered before a restart):
    /// queues every event not delivered yet. Never waits.
    pub fn observe(
        &self,
        cluster: &str,
        previous: Option<&ClusterStatus>,
        written: &BTreeMap<String, AppStatus>,
        halts: &[(String, String, String)],
        freeze: Option<Option<&FreezeNotice>>,
        now: SystemTime,
    ) {
        let mut events = events_of(cluster, written, halts, now);
        let mut state = self.lock();
        if state.seeded.insert(cluster.to_string())
            && let Some(p) = previous
        {
            let mine = state.delivered.entry(cluster.to_string()).or_default();
            for (app, list) in &p.notified {
                let kept = mine.entry(app.clone()).or_default();
                for m in list {
                    if !kept.contains(m) {
                        kept.push(m.clone());
                    }
                }
            }
        }
        // Fleet-wide events, from the one cluster of the agent that tells them.
        if let Some(freeze) = freeze {
            let remembered = state
                .delivered
                .get(cluster)
                .and_then(|a| a.get(FLEET))
                .cloned()
                .unwrap_or_default();
            events.extend(freeze_events(cluster, freeze, &remembered, now));
        }
        for e in events {
            let k = key(&e);
            let done = state
                .delivered
                .get(&e.cluster)
                .and_then(|a| a.get(&e.app))
                .is_some_and(|l| l.contains(&k.2));
            if done || state.in_flight.contains(&k) {
                continue;
            }
            match self.queue.try_send(e) {
                Ok(()) => {
                    state.in_flight.insert(k);
                }
                Err(_) => {
                    tracing::warn!(
                        cluster,
                        "notification queue full; the event is sent after a later pass"
                    );
                    break;
                }
            }
        }
    }
}

/// Takes events off the queue and delivers each (at most [`CONCURRENT`] at once).
async fn deliver_all(
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    endpoints: Arc<Vec<(Endpoint, Client)>>,
    state: Arc<Mutex<State>>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    while let Some(event) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (endpoints, state) = (endpoints.clone(), state.clone());
        tokio::spawn(async move {
            deliver(&event, &endpoints, &state).await;
            drop(permit);
        });
    }
}

/// Sends `event` to every endpoint that wants it and has not received it, retrying
/// each with backoff; remembers it as delivered when all have it, else lets the next
/// pass queue it again.
async fn deliver(event: &Event, endpoints: &[(Endpoint, Client)], state: &Mutex<State>) {
    let k = key(event);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = true;
    for (i, (endpoint, client)) in endpoints.iter().enumerate() {
        if !endpoint.events.contains(&event.event)
            || lock().received.get(&i).is_some_and(|r| r.contains(&k))
        {
            continue;
        }
        let body = event.body(endpoint.format);
        let signature = endpoint.secret.as_deref().map(|s| signature(s, &body));
        let mut sent = false;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            match client.post(&body, signature.as_deref()).await {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => tracing::warn!(
                    endpoint = %redacted(&endpoint.url),
                    cluster = %event.cluster,
                    app = %event.app,
                    event = event.event.name(),
                    attempt = attempt + 1,
                    error = %e,
                    "notification not delivered"
                ),
            }
        }
        if sent {
            lock().received.entry(i).or_default().insert(k.clone());
        } else {
            all = false;
        }
    }
    let mut s = lock();
    s.in_flight.remove(&k);
    if all {
        for r in s.received.values_mut() {
            r.remove(&k);
        }
        let list = s
            .delivered
            .entry(event.cluster.clone())
            .or_default()
            .entry(event.app.clone())
            .or_default();
        list.push(k.2);
        if list.len() > REMEMBERED {
            list.drain(..list.len() - REMEMBERED);
        }
    }
}

/// The pause before attempt `n` (1-based retries): 1 s, 2 s, 4 s, ... at most 30 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// An HTTP client for one endpoint (kube's HTTP stack, as for Prometheus: OpenSSL TLS
/// with the system's CAs).
struct Client {
    client: kube::Client,
    path: String,
}

/// Why notifications could not start: an endpoint the agent cannot send to (the
/// URL is shown without its credentials).
#[derive(Debug, thiserror::Error)]
#[error("notify url {url}: {reason}")]
pub struct NotifyError {
    /// The endpoint's URL, redacted.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Client {
    fn new(url: &str) -> Result<Client, NotifyError> {
        let refused = |reason: String| NotifyError {
            url: redacted(url),
            reason,
        };
        let uri: axum::http::Uri = url.parse().map_err(|_| refused("not a URL".into()))?;
        let (Some(scheme @ ("http" | "https")), Some(authority)) =
            (uri.scheme_str(), uri.authority())
        else {
            return Err(refused("must be an http:// or https:// URL".into()));
        };
        let base: axum::http::Uri = format!("{scheme}://{authority}")
            .parse()
            .map_err(|e| refused(format!("{e}")))?;
        let mut kc = kube::Config::new(base);
        kc.connect_timeout = Some(TIMEOUT);
        kc.read_timeout = Some(TIMEOUT);
        kc.write_timeout = Some(TIMEOUT);
        kc.default_retry = false;
        let client = kube::Client::try_from(kc)
            .map_err(|e| refused(format!("cannot make a client for it: {e}")))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Client { client, path })
    }

    /// One POST; Ok on a 2xx answer.
    async fn post(&self, body: &[u8], signature: Option<&str>) -> Result<(), String> {
        let mut request = Request::post(self.path.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("rollwave/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(s) = signature {
            request = request.header("X-Rollwave-Signature", s);
        }
        let request = request
            .body(kube::client::Body::from(body.to_vec()))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        let exchange = async {
            // An error that quoted the request's path would log a URL's token.
            let response =
                self.client
                    .send(request)
                    .await
                    .map_err(|e| match self.path.as_str() {
                        "/" => e.to_string(),
                        path => e.to_string().replace(path, "<path>"),
                    })?;
            let status = response.status();
            // The answer is drained so the connection can be reused; its content
            // does not matter.
            let _ = response.into_body().collect_bytes().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(release: &str, phase: Phase, message: &str) -> AppStatus {
        AppStatus {
            release: release.into(),
            hash: "h".into(),
            phase,
            since: "2026-11-23T10:00:00Z".into(),
            message: message.into(),
            known_good: vec![],
            poisoned: vec![],
            history: vec![],
            analysis: Default::default(),
            verified: None,
        }
    }

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn phases_are_events_and_halts_are_added() {
        let mut apps = BTreeMap::new();
        apps.insert(
            "web".to_string(),
            app(
                "abcdef1234",
                Phase::Degraded,
                "Deployment web/web: image broken",
            ),
        );
        apps.insert("api".to_string(), app("abcdef1234", Phase::Suspended, ""));
        let halts = vec![(
            "db".to_string(),
            "0123456789".to_string(),
            "test-1 is Degraded".to_string(),
        )];
        let events = events_of("prod-1", &apps, &halts, SystemTime::UNIX_EPOCH);
        let got: Vec<(&str, EventKind)> =
            events.iter().map(|e| (e.app.as_str(), e.event)).collect();
        assert_eq!(
            got,
            [("web", EventKind::Degraded), ("db", EventKind::Halted)]
        );
        assert_eq!(
            events[0].text(),
            ":red_circle: *web* on *prod-1*: Degraded at `abcdef12` (Deployment web/web: image broken)"
        );
        assert_eq!(
            events[1].text(),
            ":red_circle: *db* on *prod-1*: release `01234567` halted before this cluster's wave (test-1 is Degraded)"
        );
        let slack: serde_json::Value =
            serde_json::from_slice(&events[0].body(Format::Slack)).unwrap();
        assert_eq!(slack, serde_json::json!({"text": events[0].text()}));
        let json: serde_json::Value =
            serde_json::from_slice(&events[0].body(Format::Json)).unwrap();
        assert_eq!(json["event"], "Degraded");
        assert_eq!(json["release"], "abcdef1234");
        assert_eq!(json["phase"], "Degraded");
    }

    #[test]
    fn a_logged_endpoint_shows_no_path_or_token() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com"
        );
        let e = Endpoint {
            url: "https://hooks.slack.com/services/T000/B000/XXXX".into(),
            format: Format::Slack,
            secret: Some("s3cret".into()),
            events: EventKind::ALL.into_iter().collect(),
        };
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("XXXX") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_30_seconds() {
        let got: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
    }
}
