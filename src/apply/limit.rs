//! How hard one agent may press one cluster: at most `concurrency` requests in
//! flight and at most `qps` requests a second on average (bursts of `burst`), shared by
//! every request to the cluster that goes through [`super::retry::with_retries`]. It
//! lets the reconciler send requests side by side (one request after another waits on
//! round trips and leaves the API server idle) without swamping an API server that
//! other clients need too, as client-go's `QPS`/`Burst` do for controllers.
//!
//! Watches and their lists are not counted: there is one per kind, not per object.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits of one agent's requests to one cluster (agent.yaml `apply:`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests in flight at once; also how many apps are reconciled side by side.
    pub concurrency: usize,
    /// Requests a second on average; 0: no limit.
    pub qps: f64,
    /// Requests that may go out at once after a quiet spell, above `qps`.
    pub burst: u32,
}

impl Default for Limits {
    /// 32 in flight, 500 a second, bursts of 1,000: enough to apply a thousand apps in
    /// seconds, little beside what an API server's priority and fairness lets one
    /// client have.
    fn default() -> Self {
        Limits {
            concurrency: 32,
            qps: 500.0,
            burst: 1000,
        }
    }
}

/// A token bucket: `qps` tokens a second up to `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter of one cluster's requests; clones share it.
#[derive(Debug, Clone)]
pub struct RequestLimiter {
    limits: Limits,
    in_flight: Arc<Semaphore>,
    bucket: Arc<Mutex<Bucket>>,
}

impl Default for RequestLimiter {
    fn default() -> Self {
        RequestLimiter::new(Limits::default())
    }
}

/// Leave to send one request; the request counts as in flight until it is dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
}

impl RequestLimiter {
    /// A limiter enforcing `limits` (a concurrency of 0 is taken as 1).
    pub fn new(limits: Limits) -> RequestLimiter {
        RequestLimiter {
            limits,
            in_flight: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(limits.burst.max(1)),
                last: Instant::now(),
            })),
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Waits for a slot in flight and a token of the rate, in that order (a request
    /// waiting for its slot does not hold a token meanwhile).
    pub async fn acquire(&self) -> Permit {
        // The semaphore is never closed; if it were, requests would go unlimited
        // rather than fail.
        let slot = self.in_flight.clone().acquire_owned().await.ok();
        while let Some(wait) = self.take_token() {
            tokio::time::sleep(wait).await;
        }
        Permit { _slot: slot }
    }

    /// Takes a token if there is one (`None`), else says how long until there is.
    fn take_token(&self) -> Option<Duration> {
        let qps = self.limits.qps;
        if qps <= 0.0 {
            return None;
        }
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let burst = f64::from(self.limits.burst.max(1));
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * qps).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - b.tokens) / qps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_burst_goes_out_at_once_and_the_rest_at_the_rate() {
        let l = RequestLimiter::new(Limits {
            concurrency: 100,
            qps: 100.0,
            burst: 5,
        });
        for _ in 0..5 {
            assert_eq!(l.take_token(), None, "the burst needs no wait");
        }
        let wait = l.take_token().expect("past the burst, a request waits");
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        let start = Instant::now();
        for _ in 0..10 {
            drop(l.acquire().await);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(90),
            "ten more at 100 a second wait for their tokens: {:?}",
            start.elapsed()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_more_than_the_concurrency_is_in_flight() {
        let l = RequestLimiter::new(Limits {
            concurrency: 2,
            qps: 0.0,
            burst: 1,
        });
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), l.acquire()).await;
        assert!(third.is_err(), "a third waits while two are in flight");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(5), l.acquire()).await;
        assert!(third.is_ok(), "and goes once one ends");
    }
}
