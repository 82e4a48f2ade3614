//! What wakes the fetch loop: polling with jitter, a push webhook (GitHub
//! `X-Hub-Signature-256` or GitLab `X-Gitlab-Token`, verified), and a file watch on a
//! local repository ([`super::watch`]). Each trigger only wakes the loop; the loop
//! decides what to do.
//!
//! The webhook bounds what a client can make the agent hold: a request without the
//! header its secret is checked with is refused before its body is read; a body is at
//! most [`MAX_WEBHOOK_BODY`], must arrive within [`BODY_READ_TIMEOUT`], and at most
//! [`MAX_BODIES`] bodies holding at most [`MAX_BUFFERED`] bytes together are read at
//! once (more are answered 503 at once). When the last one is done the freed memory is
//! handed back to the system.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};

/// Largest webhook body accepted (push events are a few KiB to a few hundred KiB).
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
/// The most webhook body bytes held at once, all requests together.
pub const MAX_BUFFERED: usize = 8 * MAX_WEBHOOK_BODY;
/// The most webhook bodies read at once, however small: a request reading its body
/// holds its connection's slot of the listener ([`crate::agent::listener`]), and
/// this stays far below the slots so the probes always find one. A Git host sends
/// one push event at a time per hook.
pub const MAX_BODIES: usize = 16;
/// How long a webhook body may take to arrive (a Git host sends it at once; GitHub
/// gives up on a delivery after 10 s).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle that wakes the fetch loop.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// A new, unsignalled handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the loop (coalesced: many wakes before the loop runs count once).
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Waits until woken.
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// `interval` plus or minus up to `fraction` of it, so a fleet of agents does not poll
/// in lockstep.
pub fn jittered(interval: Duration, fraction: f64) -> Duration {
    let f = fraction.clamp(0.0, 1.0);
    let r: f64 = rand::rng().random_range(-f..=f);
    interval.mul_f64((1.0 + r).max(0.0))
}

/// Longest wait between two fetches after failures (unless the poll interval is longer).
pub const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(300);

/// The fetches that failed in a row (a Git server that is down, or answers 429 to a
/// fleet polling too often), shared by the poller and whoever fetches: after `n`
/// failures the next fetch waits `interval × 2^n` (at most [`MAX_FETCH_BACKOFF`]),
/// and wakes before then (drift, a peer's change) use the mirror's last state instead
/// of asking the server again. One success resets it.
#[derive(Clone, Default, Debug)]
pub struct FetchBackoff(Arc<std::sync::Mutex<(u32, Option<std::time::Instant>)>>);

impl FetchBackoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u32, Option<std::time::Instant>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long to wait before the next poll, `interval` being the configured one.
    pub fn delay(&self, interval: Duration) -> Duration {
        let failures = self.lock().0;
        if failures == 0 {
            return interval;
        }
        interval
            .saturating_mul(1 << failures.min(10))
            .min(MAX_FETCH_BACKOFF.max(interval))
    }

    /// A fetch failed: the next one waits longer.
    pub fn failed(&self, interval: Duration) {
        let mut g = self.lock();
        g.0 = g.0.saturating_add(1);
        let failures = g.0;
        drop(g);
        let next = std::time::Instant::now() + jittered(self.delay(interval), 0.1);
        self.lock().1 = Some(next);
        tracing::debug!(failures, "fetch failed; backing off");
    }

    /// A fetch succeeded.
    pub fn succeeded(&self) {
        *self.lock() = (0, None);
    }

    /// Whether a fetch may be made now (no backoff running).
    pub fn may_fetch(&self) -> bool {
        self.lock()
            .1
            .is_none_or(|next| std::time::Instant::now() >= next)
    }

    /// Fetches failed in a row.
    pub fn failures(&self) -> u32 {
        self.lock().0
    }
}

/// Wakes `wake` every `interval` (jittered by 10%) forever, waiting longer while
/// `backoff` counts failed fetches.
pub async fn poll(interval: Duration, wake: Wake, backoff: FetchBackoff) {
    loop {
        tokio::time::sleep(jittered(backoff.delay(interval), 0.1)).await;
        wake.wake();
    }
}

/// Secrets the webhook checks. At least one must be set for the route to exist.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// GitHub webhook secret (HMAC-SHA256 of the body).
    pub github: Option<String>,
    /// GitLab secret token (compared in constant time).
    pub gitlab: Option<String>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("github", &self.github.as_ref().map(|_| "<redacted>"))
            .field("gitlab", &self.gitlab.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Whether a request carries the header one of the configured secrets is checked
/// with (a request without it is refused before its body is read).
fn signed(secrets: &WebhookSecrets, headers: &HeaderMap) -> bool {
    (usable(&secrets.github) && headers.contains_key("x-hub-signature-256"))
        || (usable(&secrets.gitlab) && headers.contains_key("x-gitlab-token"))
}

/// An empty secret verifies anything signed with the empty key: never used.
fn usable(secret: &Option<String>) -> bool {
    secret.as_ref().is_some_and(|s| !s.is_empty())
}

/// Whether a request carries a valid GitHub signature or GitLab token.
pub fn verify_webhook(secrets: &WebhookSecrets, headers: &HeaderMap, body: &[u8]) -> bool {
    if !usable(&secrets.github) && !usable(&secrets.gitlab) {
        return false;
    }
    if let (Some(secret), Some(sig)) = (
        secrets.github.as_ref().filter(|s| !s.is_empty()),
        headers.get("x-hub-signature-256"),
    ) {
        let Some(expected) = sig
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("sha256="))
            .and_then(hex_decode)
        else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        return mac.verify_slice(&expected).is_ok();
    }
    if let (Some(token), Some(given)) = (
        secrets.gitlab.as_ref().filter(|s| !s.is_empty()),
        headers.get("x-gitlab-token"),
    ) {
        return constant_time_eq(token.as_bytes(), given.as_bytes());
    }
    false
}

#[derive(Clone)]
struct HookState {
    secrets: Arc<WebhookSecrets>,
    wake: Wake,
    /// One permit per body byte that may be held; see [`MAX_BUFFERED`].
    buffered: Arc<Semaphore>,
    /// One permit per body being read; see [`MAX_BODIES`].
    reading: Arc<Semaphore>,
}

/// Hands freed memory back when the last body in flight is dropped, so a burst of
/// uploads does not leave the agent at its peak size.
struct Held<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    buffered: &'a Semaphore,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // This permit is still counted as taken here.
        if self.buffered.available_permits() + self._permit.num_permits() == MAX_BUFFERED {
            release_freed_memory();
        }
    }
}

fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn hook(State(state): State<HookState>, headers: HeaderMap, body: Body) -> StatusCode {
    if !signed(&state.secrets, &headers) {
        tracing::warn!("webhook request without a signature refused");
        return StatusCode::UNAUTHORIZED;
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_WEBHOOK_BODY) {
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    let Ok(_reading) = state.reading.try_acquire() else {
        tracing::warn!("webhook request refused: too many bodies being received");
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    // Without a length, the most a body may hold is reserved.
    let reserve = declared.unwrap_or(MAX_WEBHOOK_BODY).max(1);
    let Ok(permit) = state.buffered.try_acquire_many(reserve as u32) else {
        tracing::warn!("webhook request refused: too many bodies being received");
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let _held = Held {
        _permit: permit,
        buffered: &state.buffered,
    };
    let body = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, reserve.min(MAX_WEBHOOK_BODY)),
    )
    .await
    {
        Err(_) => return StatusCode::REQUEST_TIMEOUT,
        Ok(Err(_)) => return StatusCode::PAYLOAD_TOO_LARGE,
        Ok(Ok(b)) => b,
    };
    if verify_webhook(&state.secrets, &headers, &body) {
        state.wake.wake();
        StatusCode::ACCEPTED
    } else {
        tracing::warn!("webhook request with a missing or invalid signature refused");
        StatusCode::UNAUTHORIZED
    }
}

/// The `POST /hooks/git` route: 202 and a wake for a verified request, 401 for a bad
/// or missing signature, 413 for a body over [`MAX_WEBHOOK_BODY`], 408 for a body
/// slower than [`BODY_READ_TIMEOUT`], 503 when [`MAX_BODIES`] bodies or
/// [`MAX_BUFFERED`] bytes are already being received.
pub fn webhook_router(secrets: WebhookSecrets, wake: Wake) -> Router {
    Router::new()
        .route("/hooks/git", post(hook))
        // The body is read by the handler, under the limits above.
        .layer(DefaultBodyLimit::disable())
        .with_state(HookState {
            secrets: Arc::new(secrets),
            wake,
            buffered: Arc::new(Semaphore::new(MAX_BUFFERED)),
            reading: Arc::new(Semaphore::new(MAX_BODIES)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fetches_double_the_wait_up_to_the_cap_and_one_success_resets_it() {
        let b = FetchBackoff::default();
        let interval = Duration::from_secs(30);
        assert_eq!(b.delay(interval), interval);
        assert!(b.may_fetch());
        b.failed(interval);
        assert_eq!(b.delay(interval), Duration::from_secs(60));
        assert!(!b.may_fetch(), "wakes before the next poll use the mirror");
        b.failed(interval);
        b.failed(interval);
        assert_eq!(b.delay(interval), Duration::from_secs(240));
        for _ in 0..20 {
            b.failed(interval);
        }
        assert_eq!(b.delay(interval), MAX_FETCH_BACKOFF);
        assert_eq!(b.failures(), 23);
        // A poll interval longer than the cap is never shortened.
        assert_eq!(b.delay(Duration::from_secs(600)), Duration::from_secs(600));
        b.succeeded();
        assert_eq!(b.delay(interval), interval);
        assert!(b.may_fetch());
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(60), 0.1);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
    }

    #[test]
    fn github_signatures_are_checked() {
        let secrets = WebhookSecrets {
            github: Some("s3cret".into()),
            gitlab: None,
        };
        let body = b"{\"ref\":\"refs/heads/main\"}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            format!("sha256={hex}").parse().unwrap(),
        );
        assert!(verify_webhook(&secrets, &h, body));
        assert!(!verify_webhook(&secrets, &h, b"tampered"));
        h.insert("x-hub-signature-256", "sha256=00".parse().unwrap());
        assert!(!verify_webhook(&secrets, &h, body));
    }

    #[test]
    fn gitlab_tokens_are_checked() {
        let secrets = WebhookSecrets {
            github: None,
            gitlab: Some("tok".into()),
        };
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", "tok".parse().unwrap());
        assert!(verify_webhook(&secrets, &h, b""));
        h.insert("x-gitlab-token", "nope".parse().unwrap());
        assert!(!verify_webhook(&secrets, &h, b""));
    }
}
