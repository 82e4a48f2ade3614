//! What makes the agent's loop start passes, besides the passes themselves: wakes
//! (the poll, a webhook, a local commit, a gate another cluster opened), drift of
//! managed objects, apps still Progressing, measurements of a running analysis and
//! bakes that end (a timed gate), peers' changes on the hub, and the status pushes a round of passes waits to make
//! together. [`Timers`] owns them; the loop asks it which clusters are due and waits
//! for [`Timers::next`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

/// Longest a finished pass's status waits for the other clusters' passes of its round
/// before it is pushed without them.
pub const STATUS_BATCH_WAIT: Duration = Duration::from_secs(5);

/// How soon a cluster with an app still Progressing makes another pass.
const PROGRESS_RECHECK: Duration = Duration::from_secs(3);

/// Shortest time between passes started by peers' changes on the status hub.
pub const PEER_WAKE_GAP: Duration = Duration::from_secs(1);

/// A timer that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// The round's finished statuses waited long enough: push them.
    StatusBatch,
    /// A running analysis has a measurement due, or a bake ends.
    Analysis,
    /// A cluster with an app still Progressing looks again.
    Recheck,
    /// Managed objects changed `drift_interval` ago.
    Drift,
    /// Peers changed on the hub a moment ago.
    Peers,
}

/// The loop's wakes and timers.
#[derive(Debug)]
pub struct Timers {
    /// Wakes so far (the start counts as one); a cluster whose last pass started
    /// before the latest wake is due another.
    wakes: u64,
    /// The next round asks the Git server again (the poll, a webhook, a local commit,
    /// the start); other wakes read what the last fetch brought.
    fetch_due: bool,
    /// Drift passes are rate-limited: the first change starts the clock, the pass
    /// follows `drift_interval` later.
    drift_interval: Duration,
    drift_at: Option<Instant>,
    /// Clusters whose managed objects changed, waiting for `drift_at`.
    drifting: BTreeSet<String>,
    /// Clusters due a pass for drift or a recheck (until it starts).
    drifted: BTreeSet<String>,
    /// Clusters with an app still Progressing, and when they look again.
    rechecks: BTreeMap<String, Instant>,
    /// When the next measurement of a running analysis is due or a bake ends.
    analysis_at: Option<Instant>,
    /// Since when a finished pass's status waits for the others of its round.
    waiting_since: Option<Instant>,
    /// When peers' changes on the hub start a pass.
    peers_at: Option<Instant>,
}

impl Timers {
    /// The timers at the start: one wake, with a fetch.
    pub fn new(drift_interval: Duration) -> Timers {
        Timers {
            wakes: 1,
            fetch_due: true,
            drift_interval,
            drift_at: None,
            drifting: BTreeSet::new(),
            drifted: BTreeSet::new(),
            rechecks: BTreeMap::new(),
            analysis_at: None,
            waiting_since: None,
            peers_at: None,
        }
    }

    /// Whether a cluster whose last pass started at wake `seen` is due a pass.
    pub fn is_due(&self, cluster: &str, seen: u64) -> bool {
        seen < self.wakes || self.drifted.contains(cluster)
    }

    /// `cluster`'s pass starts: the wake it saw, to give back to [`Timers::is_due`].
    pub fn starting(&mut self, cluster: &str) -> u64 {
        self.drifted.remove(cluster);
        self.wakes
    }

    /// Whether this round must fetch; asking clears it.
    pub fn take_fetch_due(&mut self) -> bool {
        std::mem::take(&mut self.fetch_due)
    }

    /// The poll, a webhook or a local commit: every cluster, after a fetch.
    pub fn woken(&mut self) {
        self.wakes += 1;
        self.fetch_due = true;
    }

    /// Every cluster again without a fetch (a gate opened by one of the agent's own
    /// clusters); the wake the cluster that opened it counts as seen.
    pub fn rewake(&mut self) -> u64 {
        self.wakes += 1;
        self.wakes
    }

    /// `cluster` has an app still Progressing: it looks again soon.
    pub fn recheck(&mut self, cluster: &str) {
        self.rechecks
            .entry(cluster.to_string())
            .or_insert_with(|| Instant::now() + PROGRESS_RECHECK);
    }

    /// A running analysis has a measurement due, or an earlier wave's bake ends, after
    /// `wait`.
    pub fn analysis_in(&mut self, wait: Duration) {
        let at = Instant::now() + wait;
        self.analysis_at = Some(self.analysis_at.map_or(at, |a| a.min(at)));
    }

    /// A pass finished with others of its round still running: whether its status
    /// has waited long enough ([`STATUS_BATCH_WAIT`]) to be pushed without them.
    pub fn batch_waited_enough(&mut self) -> bool {
        self.waiting_since
            .get_or_insert_with(Instant::now)
            .elapsed()
            >= STATUS_BATCH_WAIT
    }

    /// The round's statuses were pushed.
    pub fn batch_pushed(&mut self) {
        self.waiting_since = None;
    }

    /// Managed objects of `cluster` changed.
    pub fn drift_seen(&mut self, cluster: String) {
        self.drifting.insert(cluster);
        self.drift_at = Some(Instant::now() + self.drift_interval);
    }

    /// Whether drift is not waiting already (the loop then listens for more).
    pub fn drift_idle(&self) -> bool {
        self.drift_at.is_none()
    }

    /// A peer changed on the hub: a pass [`PEER_WAKE_GAP`] later.
    pub fn peer_changed(&mut self) {
        self.peers_at = Some(Instant::now() + PEER_WAKE_GAP);
    }

    /// Whether no pass for peers' changes is pending (the loop then listens for more).
    pub fn peers_idle(&self) -> bool {
        self.peers_at.is_none()
    }

    /// Waits for the earliest timer; forever when none is set.
    pub async fn next(&self) -> Fired {
        let recheck = self.rechecks.values().min().copied();
        let timers = [
            (
                self.waiting_since.map(|s| s + STATUS_BATCH_WAIT),
                Fired::StatusBatch,
            ),
            (self.analysis_at, Fired::Analysis),
            (recheck, Fired::Recheck),
            (self.drift_at, Fired::Drift),
            (self.peers_at, Fired::Peers),
        ];
        match timers
            .into_iter()
            .filter_map(|(at, fired)| Some((at?, fired)))
            .min_by_key(|(at, _)| *at)
        {
            Some((at, fired)) => {
                sleep_until(at).await;
                fired
            }
            None => std::future::pending().await,
        }
    }

    /// Does what `fired` starts (the loop pushes statuses for
    /// [`Fired::StatusBatch`] itself, then calls this).
    pub fn fire(&mut self, fired: Fired) {
        match fired {
            Fired::StatusBatch => self.waiting_since = None,
            Fired::Analysis => {
                self.analysis_at = None;
                self.wakes += 1;
            }
            Fired::Recheck => {
                let now = Instant::now();
                let due: Vec<String> = self
                    .rechecks
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(c, _)| c.clone())
                    .collect();
                for c in due {
                    self.rechecks.remove(&c);
                    self.drifted.insert(c);
                }
            }
            Fired::Drift => {
                self.drift_at = None;
                // Only the clusters whose objects changed make a pass.
                self.drifted.append(&mut self.drifting);
            }
            Fired::Peers => {
                self.peers_at = None;
                self.wakes += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_earliest_timer_fires_and_each_wakes_what_it_should() {
        let mut t = Timers::new(Duration::from_secs(2));
        assert!(t.take_fetch_due(), "the start fetches");
        assert!(t.is_due("a", 0));
        let seen = t.starting("a");
        assert!(!t.is_due("a", seen));
        t.drift_seen("a".into());
        t.recheck("b");
        assert_eq!(t.next().await, Fired::Drift, "2 s before the recheck's 3 s");
        t.fire(Fired::Drift);
        assert!(t.is_due("a", seen) && !t.is_due("b", seen));
        assert_eq!(t.next().await, Fired::Recheck);
        t.fire(Fired::Recheck);
        assert!(t.is_due("b", seen));
        // An analysis wakes every cluster, without a fetch.
        t.analysis_in(Duration::from_secs(1));
        assert_eq!(t.next().await, Fired::Analysis);
        t.fire(Fired::Analysis);
        assert!(t.is_due("c", seen) && !t.take_fetch_due());
        t.woken();
        assert!(t.take_fetch_due());
    }
}
