//! Publishing one cluster's status: deciding when a status is due (it changed, or the
//! heartbeat fell due), recording it in the fleet's [`Store`], and remembering what is
//! still to be sent (the status ref to push, the hub object to write) until it is. The
//! agent computes statuses; everything about getting them out lives here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::hub::Hub;
use super::store::{Store, StoreError};
use super::{AppStatus, ClusterStatus, Phase, StoreKind, rfc3339};

/// One cluster's status as published, and what is still to send.
#[derive(Debug)]
pub struct Publisher {
    cluster: String,
    /// The status is written at least this often.
    heartbeat: Duration,
    /// Whether the status leaves this process (false: a read-only agent, for fleets
    /// whose policy is `gate: time`; the status is still recorded locally, where the
    /// agent's memory of known-good renderings lives).
    push: bool,
    /// Whoever runs the agent sends the status (with other clusters' in one push)
    /// instead of each pass sending its own: see [`Publisher::defer`].
    deferred: bool,
    /// Where the fleet keeps statuses, as the last pass found.
    store: Store,
    /// The last status recorded and when. While the agent runs it is the authority
    /// on its own state: a fetch replaces the local status ref with the remote's,
    /// which lacks what was recorded while the remote was unreachable.
    last: Option<(Instant, ClusterStatus)>,
    /// A status is recorded and not yet sent (or the last send failed).
    pending: bool,
    /// Record the next status even if nothing changed.
    beat_now: bool,
    /// A status recorded since the last [`Publisher::take_opened_gate`] opened a gate.
    opened_gate: bool,
}

impl Publisher {
    /// A publisher for `cluster` writing at least every `heartbeat`, to the status
    /// refs until [`Publisher::open`] says otherwise.
    pub fn new(cluster: &str, heartbeat: Duration) -> Publisher {
        Publisher {
            cluster: cluster.to_string(),
            heartbeat,
            push: true,
            deferred: false,
            store: Store::Refs,
            last: None,
            pending: false,
            beat_now: false,
            opened_gate: false,
        }
    }

    /// Keeps statuses in this process (a read-only agent) when `push` is false.
    pub fn set_push(&mut self, push: bool) {
        self.push = push;
    }

    /// Leaves sending the recorded status to the caller, which sends the statuses of
    /// every cluster it runs at once (one push of their refs) and then calls
    /// [`Publisher::sent`]: an agent serving many clusters costs the Git server one
    /// push per pass.
    pub fn defer(&mut self) {
        self.deferred = true;
    }

    /// Whether the caller sends the status ([`Publisher::defer`]).
    pub fn deferred(&self) -> bool {
        self.deferred
    }

    /// Opens the store fleet.yaml names (`status.store`), reached through `hub` when
    /// it is the hub.
    pub fn open(&mut self, kind: StoreKind, hub: Option<&Arc<Hub>>) -> Result<(), StoreError> {
        self.store = Store::open(kind, hub)?;
        Ok(())
    }

    /// The store the last pass found.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The status recorded last.
    pub fn last(&self) -> Option<&ClusterStatus> {
        self.last.as_ref().map(|(_, s)| s)
    }

    /// Records a status of `apps` (with the notification memory `notified`) when it
    /// differs from the last, the heartbeat is due, or a beat was asked for; whether
    /// it did.
    pub fn record(
        &mut self,
        repo: &git2::Repository,
        apps: BTreeMap<String, AppStatus>,
        notified: BTreeMap<String, Vec<String>>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let due = std::mem::take(&mut self.beat_now)
            || self.last.as_ref().is_none_or(|(at, last)| {
                last.apps != apps || last.notified != notified || at.elapsed() >= self.heartbeat
            });
        if !due {
            return Ok(false);
        }
        self.opened_gate |= opens_a_gate(self.last().map(|l| &l.apps), &apps);
        let status = ClusterStatus {
            notified,
            cluster: self.cluster.clone(),
            agent: format!("rollwave/{}", env!("CARGO_PKG_VERSION")),
            heartbeat: rfc3339(now),
            interval: self.heartbeat.as_secs().max(1),
            apps,
        };
        self.store.record(repo, &status)?;
        self.last = Some((Instant::now(), status));
        self.pending = true;
        Ok(true)
    }

    /// Records the last status again at the next [`Publisher::record`], with a fresh
    /// heartbeat.
    pub fn beat_next(&mut self) {
        self.beat_now = true;
    }

    /// Whether half of the heartbeat interval has passed since the last status, with
    /// nothing pending: a beat now joins a push made for another cluster anyway, so
    /// the heartbeats of an agent's clusters fall due together.
    pub fn half_beat_due(&self) -> bool {
        self.last
            .as_ref()
            .is_some_and(|(at, _)| !self.pending && at.elapsed() >= self.heartbeat / 2)
    }

    /// Whether a recorded status is still to be sent.
    pub fn pending(&self) -> bool {
        self.push && self.pending
    }

    /// Whether this publisher pushes the status ref itself, now: a status is
    /// pending, the fleet keeps statuses in refs, and nobody else sends it.
    pub fn ref_push_due(&self) -> bool {
        self.pending() && !self.deferred && self.store.kind() == StoreKind::Git
    }

    /// The recorded status is on the server (or there is no server to send it to).
    pub fn sent(&mut self) {
        self.pending = false;
    }

    /// Writes the pending status to the hub, when the fleet's statuses live there;
    /// a failure is logged and the status stays pending for the next pass.
    pub async fn publish_to_hub(&mut self) {
        if self.store.kind() != StoreKind::Kubernetes || !self.pending() {
            return;
        }
        let Some((_, status)) = &self.last else {
            return;
        };
        match self.store.publish(status).await {
            Ok(()) => self.pending = false,
            Err(e) => tracing::warn!(
                cluster = %self.cluster,
                error = %e,
                "status not written to the hub; trying again at the next pass"
            ),
        }
    }

    /// Whether the statuses recorded since the last call opened a gate (an app
    /// turned Healthy at a release, or its analysis passed).
    pub fn take_opened_gate(&mut self) -> bool {
        std::mem::take(&mut self.opened_gate)
    }
}

/// Whether `apps`, replacing `before`, opens a gate: an app turned Healthy (or
/// Healthy at a new release), or its analysis was verified.
fn opens_a_gate(
    before: Option<&BTreeMap<String, AppStatus>>,
    apps: &BTreeMap<String, AppStatus>,
) -> bool {
    apps.iter().any(|(name, a)| {
        let was = before.and_then(|b| b.get(name));
        let healthy_now = a.phase == Phase::Healthy
            && was.is_none_or(|w| w.phase != Phase::Healthy || w.release != a.release);
        let verified_now = a.verified.is_some() && was.is_none_or(|w| w.verified != a.verified);
        healthy_now || verified_now
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(phase: Phase, release: &str) -> AppStatus {
        let hash = format!("h-{release}");
        AppStatus::new(release, &hash, phase, "2026-12-07T00:00:00.000Z".into())
    }

    fn apps(list: &[(&str, AppStatus)]) -> BTreeMap<String, AppStatus> {
        list.iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect()
    }

    fn repo() -> (tempfile::TempDir, git2::Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    #[test]
    fn a_status_is_recorded_when_it_changes_and_not_when_it_does_not() {
        let (_dir, repo) = repo();
        let mut p = Publisher::new("c1", Duration::from_secs(3600));
        let now = SystemTime::now();
        let first = apps(&[("web", app(Phase::Progressing, "r1"))]);
        assert!(
            p.record(&repo, first.clone(), BTreeMap::new(), now)
                .unwrap()
        );
        assert!(p.pending() && p.ref_push_due());
        p.sent();
        assert!(!p.record(&repo, first, BTreeMap::new(), now).unwrap());
        assert!(
            !p.pending(),
            "an unchanged status is neither recorded nor sent"
        );
        let read = super::super::refs::read_statuses(&repo).0;
        assert_eq!(read["c1"].apps["web"].phase, Phase::Progressing);
    }

    #[test]
    fn a_beat_asked_for_records_the_same_status_again() {
        let (_dir, repo) = repo();
        let mut p = Publisher::new("c1", Duration::from_secs(3600));
        let same = apps(&[("web", app(Phase::Healthy, "r1"))]);
        p.record(&repo, same.clone(), BTreeMap::new(), SystemTime::now())
            .unwrap();
        p.sent();
        p.beat_next();
        assert!(
            p.record(&repo, same, BTreeMap::new(), SystemTime::now())
                .unwrap()
        );
    }

    #[test]
    fn a_deferred_or_read_only_publisher_does_not_push_itself() {
        let (_dir, repo) = repo();
        let mut deferred = Publisher::new("c1", Duration::from_secs(60));
        deferred.defer();
        let a = apps(&[("web", app(Phase::Healthy, "r1"))]);
        deferred
            .record(&repo, a.clone(), BTreeMap::new(), SystemTime::now())
            .unwrap();
        assert!(deferred.pending() && !deferred.ref_push_due());
        let mut read_only = Publisher::new("c2", Duration::from_secs(60));
        read_only.set_push(false);
        read_only
            .record(&repo, a, BTreeMap::new(), SystemTime::now())
            .unwrap();
        assert!(!read_only.pending() && !read_only.ref_push_due());
    }

    #[test]
    fn turning_healthy_or_verified_opens_a_gate_and_staying_so_does_not() {
        let progressing = apps(&[("web", app(Phase::Progressing, "r1"))]);
        let healthy = apps(&[("web", app(Phase::Healthy, "r1"))]);
        let healthy_r2 = apps(&[("web", app(Phase::Healthy, "r2"))]);
        assert!(opens_a_gate(Some(&progressing), &healthy));
        assert!(opens_a_gate(Some(&healthy), &healthy_r2));
        assert!(!opens_a_gate(Some(&healthy), &healthy));
        let mut verified = healthy.clone();
        verified.get_mut("web").unwrap().verified = Some("r1".into());
        assert!(opens_a_gate(Some(&healthy), &verified));
    }
}
