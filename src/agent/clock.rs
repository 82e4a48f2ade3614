//! The agent's clock: the system's, or one a test moves. Every decision of a pass
//! (gates, bakes, windows, freezes' ends, heartbeats) reads the time from here, so a
//! scenario can show a change window closing and opening without waiting hours.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// The time the agent decides by: the system clock plus an offset that only an
/// [`Clock::adjustable`] clock lets anyone change.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Nanoseconds added to the system clock; `None`: the system clock itself.
    offset_ns: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// A clock that starts at the system's time and [`Clock::set`] moves; its clones
    /// move with it.
    pub fn adjustable() -> Clock {
        Clock {
            offset_ns: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        let real = SystemTime::now();
        let Some(offset) = &self.offset_ns else {
            return real;
        };
        let ns = offset.load(Ordering::SeqCst);
        let shift = Duration::from_nanos(ns.unsigned_abs());
        let moved = if ns >= 0 {
            real.checked_add(shift)
        } else {
            real.checked_sub(shift)
        };
        moved.unwrap_or(real)
    }

    /// Makes it `at` now (it runs on from there). Has no effect on the system clock.
    pub fn set(&self, at: SystemTime) {
        let Some(offset) = &self.offset_ns else {
            return;
        };
        let real = SystemTime::now();
        // i64 nanoseconds reach 292 years either way: far enough for any test.
        let ns = match at.duration_since(real) {
            Ok(ahead) => i64::try_from(ahead.as_nanos()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        offset.store(ns, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_runs_on_from_where_it_is_set_and_its_clones_follow() {
        let clock = Clock::adjustable();
        let other = clock.clone();
        let at = humantime::parse_rfc3339("2030-01-07T08:59:00Z").unwrap();
        clock.set(at);
        let now = other.now();
        assert!(now >= at && now < at + Duration::from_secs(60), "{now:?}");
        let past = humantime::parse_rfc3339("2001-01-01T00:00:00Z").unwrap();
        clock.set(past);
        assert!(other.now() < past + Duration::from_secs(60));
        // The default is the system clock, which set does not move.
        let system = Clock::default();
        system.set(past);
        assert!(system.now() > at - Duration::from_secs(365 * 86_400 * 10));
    }
}
