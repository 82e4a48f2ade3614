//! Which API failures are worth another try, and the backoff between tries:
//! exponential with full jitter, honouring `Retry-After` on 429. Permanent failures
//! (400, 403, 404, 422, and apply conflicts) return at once so they are reported with
//! the object instead of retried forever.
//!
//! Every call has a deadline ([`CALL_DEADLINE`] by default), the tries and the waits
//! between them included, so an API server that accepts connections and never
//! answers, or answers 429 to everything, costs one call at most that long. The first
//! call that gives up trips the cluster's [`Breaker`]: the later calls of the same pass
//! fail at once with the same reason instead of each waiting out its own deadline.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limit::RequestLimiter;

/// The longest one API call may take, its retries included.
pub const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// How hard to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Backoff before the second try; doubles after each.
    pub base: Duration,
    /// Longest single backoff.
    pub max: Duration,
    /// The longest a call may take, every try and wait included; a try still running
    /// then is abandoned.
    pub deadline: Duration,
    /// Shared by every call to one cluster (clones share it).
    pub breaker: Breaker,
    /// How many calls to the cluster may be in flight and how fast they may go out;
    /// shared by every call to one cluster (clones share it). Each try takes its turn,
    /// and the wait for it does not count against the deadline.
    pub limiter: RequestLimiter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(50),
            max: Duration::from_secs(5),
            deadline: CALL_DEADLINE,
            breaker: Breaker::default(),
            limiter: RequestLimiter::default(),
        }
    }
}

/// Why a cluster's calls stopped being tried: set by the first call that gave up on a
/// failure retrying could have fixed (no answer, 429, 5xx), cleared by
/// [`Breaker::reset`] at the start of the next pass, which also counts the passes
/// (what failed in one pass, such as one API's discovery, is asked again in the next).
#[derive(Debug, Clone, Default)]
pub struct Breaker(Arc<Mutex<BreakerState>>);

#[derive(Debug, Default)]
struct BreakerState {
    tripped: Option<Tripped>,
    pass: u64,
}

#[derive(Debug, Clone)]
struct Tripped {
    /// The API's answer, when there was one (kept so callers still see its code).
    status: Option<kube::core::Status>,
    message: String,
}

impl Breaker {
    /// Lets calls through again.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.tripped = None;
        s.pass += 1;
    }

    /// How many passes have started ([`Breaker::reset`] calls).
    pub fn pass(&self) -> u64 {
        self.lock().pass
    }

    /// Why calls are refused, when they are.
    pub fn tripped(&self) -> Option<String> {
        self.lock().tripped.as_ref().map(|t| t.message.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trip(&self, e: &kube::Error) {
        let mut s = self.lock();
        let t = &mut s.tripped;
        if t.is_none() {
            *t = Some(Tripped {
                status: match e {
                    kube::Error::Api(s) => Some((**s).clone()),
                    _ => None,
                },
                message: match e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                },
            });
        }
    }

    /// The error a call refused by the open breaker returns: the earlier failure,
    /// said to be that (a refused inventory list must not read as if listing had
    /// failed with a Service's error).
    fn error(&self) -> Option<kube::Error> {
        let s = self.lock();
        let t = s.tripped.as_ref()?;
        let message = format!(
            "not sent: an earlier request to this cluster gave up in this pass: {}",
            t.message
        );
        Some(match &t.status {
            Some(s) => {
                let mut s = s.clone();
                s.message = message;
                kube::Error::Api(Box::new(s))
            }
            None => transport_error(message),
        })
    }
}

fn transport_error(message: String) -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        message,
    )))
}

/// The last error of a call that gave up, saying so.
fn gave_up(e: kube::Error, tries: u32, started: Instant) -> kube::Error {
    let why = format!(
        "gave up after {tries} tries in {}s",
        started.elapsed().as_secs()
    );
    match e {
        kube::Error::Api(mut s) => {
            s.message = format!("{} (HTTP {}; {why})", s.message, s.code);
            kube::Error::Api(s)
        }
        other => transport_error(format!("{other} ({why})")),
    }
}

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again, after at least this long when the server said so.
    Retry(Option<Duration>),
    /// Give up: the request itself is wrong.
    Permanent,
}

/// Classifies a kube-rs error.
pub fn classify(e: &kube::Error) -> Verdict {
    match e {
        kube::Error::Api(status) => match status.code {
            429 => Verdict::Retry(
                status
                    .details
                    .as_ref()
                    .and_then(|d| (d.retry_after_seconds > 0).then_some(d.retry_after_seconds))
                    .map(|s| Duration::from_secs(s as u64)),
            ),
            // A 409 from apply is a field conflict (permanent); from anything else a
            // stale resourceVersion, which a fresh try fixes.
            409 if status.message.starts_with("Apply failed") => Verdict::Permanent,
            // A create of an object that exists never succeeds by trying again.
            409 if status.reason == "AlreadyExists" => Verdict::Permanent,
            409 => Verdict::Retry(None),
            500..=599 => Verdict::Retry(None),
            _ => Verdict::Permanent,
        },
        // Transport failures: refused or dropped connections, timeouts, bodies cut off.
        kube::Error::HyperError(_)
        | kube::Error::Service(_)
        | kube::Error::ReadEvents(_)
        | kube::Error::HttpError(_) => Verdict::Retry(None),
        kube::Error::SerdeError(_) => Verdict::Retry(None),
        _ => Verdict::Permanent,
    }
}

/// Tries in all for a failure of one API behind the API server ([`is_local`]).
pub const LOCAL_ATTEMPTS: u32 = 3;

/// Whether a failure is one API's behind the API server rather than the API server's
/// own: an admission webhook or a CRD's conversion webhook that does not answer. It
/// stops the objects that need that webhook, never the cluster's other requests, so it
/// is tried [`LOCAL_ATTEMPTS`] times and never trips the [`Breaker`].
pub fn is_local(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 500
        && (s.message.contains("failed calling webhook")
            || s.message.contains("conversion webhook for")))
}

/// The backoff before try `n` (1-based, n >= 2): full jitter over an exponential cap.
pub fn backoff(policy: &RetryPolicy, n: u32, floor: Option<Duration>) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32 << (n.saturating_sub(2)).min(16))
        .min(policy.max);
    let jittered = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    floor.map_or(jittered, |f| jittered.max(f))
}

/// Runs `op` until it succeeds, fails permanently, or the tries or the deadline run
/// out; returns the last error and how many tries were made (0 when the breaker was
/// open and nothing was tried).
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut op: F,
) -> Result<T, (kube::Error, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    if let Some(e) = policy.breaker.error() {
        return Err((e, 0));
    }
    let mut started = Instant::now();
    let mut n = 1;
    loop {
        let queued = Instant::now();
        let permit = policy.limiter.acquire().await;
        // Waiting for a turn is the agent's own pacing, not the server's slowness.
        started += queued.elapsed();
        let left = policy.deadline.saturating_sub(started.elapsed());
        let result = tokio::time::timeout(left, op()).await;
        drop(permit);
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                let e = transport_error(format!(
                    "the API server did not answer within {} ({n} tries)",
                    humantime::format_duration(policy.deadline)
                ));
                policy.breaker.trip(&e);
                return Err((e, n));
            }
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) => match classify(&e) {
                Verdict::Retry(after) => {
                    let wait = backoff(policy, n + 1, after);
                    let local = is_local(&e);
                    let attempts = if local {
                        policy.attempts.min(LOCAL_ATTEMPTS)
                    } else {
                        policy.attempts
                    };
                    if n >= attempts || started.elapsed() + wait >= policy.deadline {
                        let e = gave_up(e, n, started);
                        if !local {
                            policy.breaker.trip(&e);
                        }
                        return Err((e, n));
                    }
                    n += 1;
                    tracing::debug!(error = %e, attempt = n, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Verdict::Permanent => return Err((e, n)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn transient_failures_retry_and_request_errors_do_not() {
        assert_eq!(classify(&api(500, "x")), Verdict::Retry(None));
        assert_eq!(classify(&api(503, "x")), Verdict::Retry(None));
        assert_eq!(
            classify(&api(409, "the object has been modified")),
            Verdict::Retry(None)
        );
        assert_eq!(
            classify(&api(409, "Apply failed with 1 conflict")),
            Verdict::Permanent
        );
        for code in [400, 403, 404, 422] {
            assert_eq!(classify(&api(code, "x")), Verdict::Permanent, "{code}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy::default();
        assert!(backoff(&p, 2, None) <= p.base);
        assert!(backoff(&p, 30, None) <= p.max);
        assert!(backoff(&p, 2, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    fn fast(deadline: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: 100,
            base: Duration::from_millis(1),
            max: Duration::from_millis(20),
            deadline,
            breaker: Breaker::default(),
            limiter: RequestLimiter::default(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_never_answers_gives_up_at_the_deadline_and_trips_the_breaker() {
        let p = fast(Duration::from_millis(300));
        let started = Instant::now();
        let r: Result<(), _> = with_retries(&p, std::future::pending).await;
        let (e, tries) = r.unwrap_err();
        assert_eq!(tries, 1);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(
            e.to_string()
                .contains("the API server did not answer within 300ms"),
            "{e}"
        );
        assert!(p.breaker.tripped().is_some());
        // Later calls of the pass fail at once, without trying.
        let started = Instant::now();
        let mut called = false;
        let r: Result<(), _> = with_retries(&p, || {
            called = true;
            async { Ok(()) }
        })
        .await;
        assert_eq!(r.unwrap_err().1, 0);
        assert!(!called);
        assert!(started.elapsed() < Duration::from_millis(100));
        p.breaker.reset();
        let r: Result<(), _> = with_retries(&p, || async { Ok(()) }).await;
        assert!(r.is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn too_many_requests_are_retried_until_the_deadline_and_keep_their_code() {
        let p = fast(Duration::from_millis(500));
        let started = Instant::now();
        let mut tries = 0;
        let r: Result<(), _> = with_retries(&p, || {
            tries += 1;
            async { Err(api(429, "slow down")) }
        })
        .await;
        let (e, n) = r.unwrap_err();
        assert_eq!(n, tries);
        assert!(tries > 10, "{tries}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let kube::Error::Api(s) = &e else {
            panic!("{e}")
        };
        assert_eq!(s.code, 429);
        assert!(
            s.message.starts_with("slow down (HTTP 429; gave up after"),
            "{}",
            s.message
        );
        // The breaker keeps the code for callers that look at it.
        let r: Result<(), _> = with_retries(&p, || async { Ok(()) }).await;
        assert!(matches!(r.unwrap_err().0, kube::Error::Api(s) if s.code == 429));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_webhook_that_does_not_answer_is_tried_a_few_times_and_stops_nothing_else() {
        let p = fast(Duration::from_secs(5));
        for message in [
            r#"Internal error occurred: failed calling webhook "check.example.com": failed to call webhook: Post "https://check.hooks.svc:443/validate?timeout=10s": dial tcp 10.0.0.1:443: connect: connection refused"#,
            r#"conversion webhook for example.com/v1beta1, Kind=Widget failed: Post "https://conv.hooks.svc:443/convert?timeout=30s": service "conv" not found"#,
        ] {
            let mut tries = 0;
            let r: Result<(), _> = with_retries(&p, || {
                tries += 1;
                async { Err(api(500, message)) }
            })
            .await;
            assert_eq!(r.unwrap_err().1, LOCAL_ATTEMPTS);
            assert_eq!(tries, LOCAL_ATTEMPTS);
            assert!(p.breaker.tripped().is_none(), "{message}");
        }
        // Any other 500 is the API server's: retried in full, and it trips the breaker.
        let r: Result<(), _> = with_retries(&p, || async { Err(api(500, "etcd is down")) }).await;
        assert!(r.unwrap_err().1 > LOCAL_ATTEMPTS);
        assert!(p.breaker.tripped().is_some());
    }

    #[test]
    fn each_reset_starts_a_new_pass() {
        let b = Breaker::default();
        let first = b.pass();
        b.reset();
        b.reset();
        assert_eq!(b.pass(), first + 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn permanent_failures_do_not_trip_the_breaker() {
        let p = fast(Duration::from_secs(2));
        let r: Result<(), _> = with_retries(&p, || async { Err(api(422, "invalid")) }).await;
        assert_eq!(r.unwrap_err().1, 1);
        assert!(p.breaker.tripped().is_none());
    }
}
