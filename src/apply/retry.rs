//! Which API failures are worth another try, and the backoff between tries:
//! exponential with full jitter, honouring `Retry-After` on 429. Permanent failures
//! (400, 403, 404, 422, and apply conflicts) return at once so they are reported with
//! the object instead of retried forever.

use std::future::Future;
use std::time::Duration;

/// How hard to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Backoff before the second try; doubles after each.
    pub base: Duration,
    /// Longest single backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
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

/// The backoff before try `n` (1-based, n >= 2): full jitter over an exponential cap.
pub fn backoff(policy: &RetryPolicy, n: u32, floor: Option<Duration>) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32 << (n.saturating_sub(2)).min(16))
        .min(policy.max);
    let jittered = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    floor.map_or(jittered, |f| jittered.max(f))
}

/// Runs `op` until it succeeds, fails permanently, or the tries run out; returns the
/// last error and how many tries were made.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut op: F,
) -> Result<T, (kube::Error, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut n = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => match classify(&e) {
                Verdict::Retry(after) if n < policy.attempts => {
                    n += 1;
                    tracing::debug!(error = %e, attempt = n, "retrying");
                    tokio::time::sleep(backoff(policy, n, after)).await;
                }
                _ => return Err((e, n)),
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
}
