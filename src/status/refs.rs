//! Status refs: the Git store of statuses. Each agent writes
//! `refs/rollwave/status/<cluster>` as a commit whose tree holds `status.json` and
//! whose parent is its previous status, and reads every peer's ref (fetched with the
//! repository; [`crate::source::statusref`] pushes). A malformed peer status is
//! reported and skipped, never fatal.
//!
//! A ref keeps at most [`STATUS_HISTORY`] statuses: the next one starts a new chain
//! (a commit without parent, pushed with force: the agent is the ref's only writer),
//! so the statuses a repository can reach stay bounded however long agents run, and
//! the old ones become unreachable for the server's garbage collection.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use git2::{Oid, Repository, Signature};

use super::ref_targets::Target;
use super::store::SharedStatuses;
use super::{ClusterStatus, StatusError};

/// Where status refs live: `refs/rollwave/status/<cluster>`.
pub const STATUS_REF_PREFIX: &str = "refs/rollwave/status/";

/// How many statuses one status ref keeps reachable (its chain of commits).
pub const STATUS_HISTORY: usize = 100;

/// The trailer of a status commit's message that counts its place in its chain.
const DEPTH_TRAILER: &str = "Status-Depth: ";

/// Why a status could not be recorded in the repository.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot record the status of {cluster} in the repository's status ref: {message}; check that the agent's mirror directory is writable and not corrupt"
)]
pub struct RefError {
    /// The cluster.
    pub cluster: String,
    /// What libgit2 said.
    pub message: String,
}

/// The ref of `cluster`'s status.
pub fn status_ref(cluster: &str) -> String {
    format!("{STATUS_REF_PREFIX}{cluster}")
}

/// Records `status` as a new commit on its cluster's status ref (locally).
pub fn write_status(repo: &Repository, status: &ClusterStatus) -> Result<Oid, RefError> {
    let local = |e: git2::Error| RefError {
        cluster: status.cluster.clone(),
        message: e.message().to_string(),
    };
    let refname = status_ref(&status.cluster);
    let blob = repo.blob(&status.to_json()).map_err(local)?;
    let mut tb = repo.treebuilder(None).map_err(local)?;
    tb.insert("status.json", blob, 0o100644).map_err(local)?;
    let tree_id = tb.write().map_err(local)?;
    let tree = repo.find_tree(tree_id).map_err(local)?;
    let previous = repo
        .refname_to_id(&refname)
        .ok()
        .and_then(|id| repo.find_commit(id).ok());
    // A chain that is full (or written before chains were counted) ends here.
    let (parent, depth) = match previous.as_ref().and_then(|p| Some((p, depth_of(p)?))) {
        Some((p, d)) if d < STATUS_HISTORY => (Some(p), d + 1),
        _ => (None, 1),
    };
    let sig = Signature::now("rollwave", "rollwave@localhost").map_err(local)?;
    let parents: Vec<&git2::Commit> = parent.into_iter().collect();
    let message = format!(
        "status of {} at {}\n\n{DEPTH_TRAILER}{depth}\n",
        status.cluster, status.heartbeat
    );
    let oid = repo
        .commit(None, &sig, &sig, &message, &tree, &parents)
        .map_err(local)?;
    repo.reference(&refname, oid, true, "rollwave status")
        .map_err(local)?;
    wrote(repo, status, oid);
    super::compact::note(repo, &status.cluster, [blob, tree_id, oid]);
    Ok(oid)
}

/// The place of a status commit in its chain, from its message's trailer.
fn depth_of(commit: &git2::Commit<'_>) -> Option<usize> {
    commit
        .message()
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(DEPTH_TRAILER))?
        .trim()
        .parse()
        .ok()
}

/// Statuses already parsed, by cluster and status commit, shared by every reader in
/// the process (at most [`PARSED_STATUSES`] of them; past that it starts again).
struct ParsedStatuses(std::sync::Mutex<std::collections::HashMap<(String, Oid), ClusterStatus>>);

/// How many parsed statuses [`ParsedStatuses`] keeps: a few rounds of a large fleet.
const PARSED_STATUSES: usize = 8192;

impl ParsedStatuses {
    fn get(&self, cluster: &str, commit: Oid) -> Option<ClusterStatus> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(cluster.to_string(), commit)).cloned()
    }

    fn put(&self, cluster: &str, commit: Oid, status: &ClusterStatus) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PARSED_STATUSES {
            map.clear();
        }
        map.insert((cluster.to_string(), commit), status.clone());
    }
}

fn parsed_statuses() -> &'static ParsedStatuses {
    static PARSED: std::sync::OnceLock<ParsedStatuses> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| ParsedStatuses(std::sync::Mutex::new(std::collections::HashMap::new())))
}

/// Every cluster's status found under the status refs, and the problems with those
/// that could not be read.
pub fn read_statuses(repo: &Repository) -> (BTreeMap<String, ClusterStatus>, Vec<StatusError>) {
    statuses_at(repo, super::ref_targets::status_ref_targets(repo))
}

/// What [`read_statuses_shared`] read last in one repository, and where the refs
/// pointed then.
struct LastRead {
    targets: BTreeMap<String, Target>,
    statuses: Arc<BTreeMap<String, ClusterStatus>>,
    errors: Vec<StatusError>,
    /// The watch's generation of the refs when they were read (None: no watch).
    generation: Option<u64>,
    /// Statuses this process wrote since, not yet in `statuses`.
    own: BTreeMap<String, ClusterStatus>,
    /// How many statuses this process wrote into the repository since it started
    /// (a read that overlapped a write does not trust its generation).
    own_writes: u64,
}

impl LastRead {
    /// Takes the statuses this process wrote since into `statuses` (a new map).
    fn take_own(&mut self) {
        if self.own.is_empty() {
            return;
        }
        let own = std::mem::take(&mut self.own);
        self.errors.retain(|e| !own.contains_key(&e.cluster));
        // The new map copies only the peers' statuses: an agent's own status (every
        // app with its history) is replaced, and copying it too was a tenth of an idle
        // agent's CPU at 1,250 apps.
        let mut statuses: BTreeMap<String, ClusterStatus> = self
            .statuses
            .iter()
            .filter(|(cluster, _)| !own.contains_key(*cluster))
            .map(|(cluster, status)| (cluster.clone(), status.clone()))
            .collect();
        statuses.extend(own);
        self.statuses = Arc::new(statuses);
    }
}

/// How many repositories [`read_statuses_shared`] remembers a read of (past that it
/// starts again): one per fleet an agent serves.
const LAST_READS: usize = 64;

fn last_reads() -> &'static Mutex<HashMap<PathBuf, LastRead>> {
    static LAST: OnceLock<Mutex<HashMap<PathBuf, LastRead>>> = OnceLock::new();
    LAST.get_or_init(Mutex::default)
}

/// [`read_statuses`] behind an `Arc`, the same one for every read until a status ref
/// moves: the passes of an agent's clusters then share one map, and with it one plan
/// per app ([`crate::agent::rollout`]).
///
/// Whether a ref moved is known two ways. In a local repository this process watches
/// ([`crate::source::watch::ref_generation`]), from the watch: while its generation
/// stays, only this process's own status refs can have moved, and those it wrote
/// itself ([`write_status`] hands them over), so no ref file is looked at. Otherwise
/// every ref file's stamp is compared with the last read's (the status module's
/// `ref_targets`): an agent serving 200 clusters from a local repository
/// spent a sixth of its idle CPU on those 200 stamps at each pass.
pub fn read_statuses_shared(repo: &Repository) -> SharedStatuses {
    let home = repo.commondir().to_path_buf();
    let generation = crate::source::watch::ref_generation(&home);
    let own_writes = {
        let mut all = last_reads().lock().unwrap_or_else(|e| e.into_inner());
        match all.get_mut(&home) {
            Some(read) => {
                read.take_own();
                if generation.is_some() && read.generation == generation {
                    return (read.statuses.clone(), read.errors.clone());
                }
                read.own_writes
            }
            None => 0,
        }
    };
    let targets = super::ref_targets::status_ref_targets(repo);
    let mut all = last_reads().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(read) = all.get_mut(&home) {
        read.take_own();
        if read.targets == targets {
            // A write while the refs were read may be missing from them.
            read.generation = generation.filter(|_| read.own_writes == own_writes);
            return (read.statuses.clone(), read.errors.clone());
        }
    }
    drop(all);
    let (statuses, errors) = statuses_at(repo, targets.clone());
    let statuses = Arc::new(statuses);
    let mut all = last_reads().lock().unwrap_or_else(|e| e.into_inner());
    let writes_now = all.get(&home).map_or(0, |r| r.own_writes);
    if all.len() >= LAST_READS && !all.contains_key(&home) {
        all.clear();
    }
    all.insert(
        home,
        LastRead {
            targets,
            statuses: statuses.clone(),
            errors: errors.clone(),
            generation: generation.filter(|_| writes_now == own_writes),
            own: BTreeMap::new(),
            own_writes: writes_now,
        },
    );
    (statuses, errors)
}

/// Hands a status this process wrote (`status` at `commit`) to the last read of
/// `repo`'s statuses, so the next read has it without looking at the refs.
fn wrote(repo: &Repository, status: &ClusterStatus, commit: Oid) {
    let mut all = last_reads().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(read) = all.get_mut(repo.commondir()) {
        read.targets.insert(status.cluster.clone(), Ok(commit));
        read.own.insert(status.cluster.clone(), status.clone());
        read.own_writes += 1;
    }
    drop(all);
    parsed_statuses().put(&status.cluster, commit, status);
}

/// The statuses the status refs point at (`targets`).
fn statuses_at(
    repo: &Repository,
    targets: BTreeMap<String, Target>,
) -> (BTreeMap<String, ClusterStatus>, Vec<StatusError>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (cluster, target) in targets {
        // A status commit never changes: one read already parsed is taken from memory
        // (every cluster's pass reads every peer's status, so an agent serving many
        // clusters would otherwise read and parse each one once per cluster per round).
        if let Some(known) = target
            .as_ref()
            .ok()
            .and_then(|oid| parsed_statuses().get(&cluster, *oid))
        {
            out.insert(cluster, known);
            continue;
        }
        let parsed = target.and_then(|oid| {
            let commit = repo.find_commit(oid).map_err(|e| e.message().to_string())?;
            let tree = commit.tree().map_err(|e| e.message().to_string())?;
            let entry = tree
                .get_name("status.json")
                .ok_or_else(|| "no status.json in the status commit".to_string())?;
            let blob = repo
                .find_blob(entry.id())
                .map_err(|e| e.message().to_string())?;
            let status = ClusterStatus::parse(&cluster, blob.content()).map_err(|e| e.message)?;
            parsed_statuses().put(&cluster, oid, &status);
            Ok(status)
        });
        match parsed {
            Ok(s) => {
                out.insert(cluster, s);
            }
            Err(message) => {
                tracing::warn!(%cluster, %message, "ignoring unreadable peer status");
                errors.push(StatusError { cluster, message });
            }
        }
    }
    (out, errors)
}

/// A status of `cluster` whose heartbeat tells the `n`th (up to a day of minutes)
/// apart from the others: distinct statuses for tests.
#[cfg(test)]
pub(crate) fn numbered_status(cluster: &str, n: usize) -> ClusterStatus {
    ClusterStatus {
        cluster: cluster.into(),
        agent: "rollwave/test".into(),
        heartbeat: format!("2026-12-07T{:02}:{:02}:00.000Z", n / 60 % 24, n % 60),
        interval: 60,
        apps: BTreeMap::new(),
        notified: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::numbered_status as status;
    use super::*;

    #[test]
    fn statuses_read_again_come_from_memory_until_a_ref_moves() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let first = write_status(&repo, &status("memo-1", 1)).unwrap();
        assert_eq!(read_statuses(&repo).0["memo-1"], status("memo-1", 1));
        assert!(parsed_statuses().get("memo-1", first).is_some());
        // The same commit under another cluster's name is not taken for it.
        assert!(parsed_statuses().get("memo-2", first).is_none());
        // A new status is a new commit: read, not remembered.
        write_status(&repo, &status("memo-1", 2)).unwrap();
        assert_eq!(read_statuses(&repo).0["memo-1"], status("memo-1", 2));
    }

    #[test]
    fn reads_share_one_map_until_a_status_ref_moves() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        write_status(&repo, &status("shared-1", 1)).unwrap();
        let (first, _) = read_statuses_shared(&repo);
        let (again, _) = read_statuses_shared(&repo);
        assert!(Arc::ptr_eq(&first, &again));
        write_status(&repo, &status("shared-2", 1)).unwrap();
        let (after_a_new_ref, _) = read_statuses_shared(&repo);
        assert_eq!(after_a_new_ref.len(), 2);
        write_status(&repo, &status("shared-1", 2)).unwrap();
        let (after_a_move, _) = read_statuses_shared(&repo);
        assert_eq!(after_a_move["shared-1"], status("shared-1", 2));
        // Another repository's statuses are its own.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Repository::init_bare(other_dir.path()).unwrap();
        assert!(read_statuses_shared(&other).0.is_empty());
        assert!(Arc::ptr_eq(&read_statuses_shared(&repo).0, &after_a_move));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_a_watch_reads_look_at_no_ref_until_a_peer_moves_one() {
        use crate::source::trigger::Wake;
        use crate::source::watch::watch_repository;
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("fleet.git");
        let repo = Repository::init_bare(&git_dir).unwrap();
        // The directories a first status would create raise events of their own.
        std::fs::create_dir_all(git_dir.join(STATUS_REF_PREFIX)).unwrap();
        let wake = Wake::new();
        let _watch = watch_repository(&git_dir, wake.clone(), &[status_ref("own-1")]).unwrap();
        write_status(&repo, &status("own-1", 1)).unwrap();
        let (first, _) = read_statuses_shared(&repo);
        assert_eq!(first["own-1"], status("own-1", 1));
        let scans = super::super::ref_targets::scans(&repo);

        // The process's own write is in the next read at once, without a look at the
        // refs; reads share one map until something moves.
        write_status(&repo, &status("own-1", 2)).unwrap();
        let (after_own, _) = read_statuses_shared(&repo);
        assert_eq!(after_own["own-1"], status("own-1", 2));
        let (again, _) = read_statuses_shared(&repo);
        assert!(Arc::ptr_eq(&after_own, &again));
        assert_eq!(super::super::ref_targets::scans(&repo), scans);

        // A peer: another process, here a handle opened through another path, which
        // this process's reads do not hear of.
        let link = dir.path().join("same-fleet.git");
        std::os::unix::fs::symlink(&git_dir, &link).unwrap();
        let peer = Repository::open_bare(&link).unwrap();
        write_status(&peer, &status("peer-1", 1)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(20), wake.woken())
            .await
            .expect("the peer's status wakes the loop");
        let (after_peer, _) = read_statuses_shared(&repo);
        assert_eq!(after_peer["peer-1"], status("peer-1", 1));
        assert_eq!(after_peer["own-1"], status("own-1", 2));
        assert!(super::super::ref_targets::scans(&repo) > scans);
    }

    fn chain_length(repo: &Repository, cluster: &str) -> usize {
        let tip = repo.refname_to_id(&status_ref(cluster)).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push(tip).unwrap();
        walk.count()
    }

    #[test]
    fn a_status_ref_keeps_a_bounded_chain_and_the_newest_status() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        for n in 0..STATUS_HISTORY {
            write_status(&repo, &status("c1", n)).unwrap();
        }
        assert_eq!(chain_length(&repo, "c1"), STATUS_HISTORY);
        let newest = status("c1", STATUS_HISTORY);
        write_status(&repo, &newest).unwrap();
        assert_eq!(chain_length(&repo, "c1"), 1, "a full chain starts anew");
        write_status(&repo, &status("c1", STATUS_HISTORY + 1)).unwrap();
        assert_eq!(chain_length(&repo, "c1"), 2);
        let (read, errors) = read_statuses(&repo);
        assert!(errors.is_empty());
        assert_eq!(
            read["c1"].heartbeat,
            status("c1", STATUS_HISTORY + 1).heartbeat
        );
    }

    #[test]
    fn a_chain_written_without_depths_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let first = write_status(&repo, &status("c1", 0)).unwrap();
        // An earlier version's commit: the same tree, no trailer.
        let commit = repo.find_commit(first).unwrap();
        let sig = Signature::now("rollwave", "rollwave@localhost").unwrap();
        let old = repo
            .commit(
                None,
                &sig,
                &sig,
                "status of c1",
                &commit.tree().unwrap(),
                &[],
            )
            .unwrap();
        repo.reference(&status_ref("c1"), old, true, "old").unwrap();
        write_status(&repo, &status("c1", 1)).unwrap();
        assert_eq!(chain_length(&repo, "c1"), 1);
    }
}
