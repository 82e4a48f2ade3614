//! Keeps a repository that an agent writes statuses into from growing without bound.
//!
//! Each status is three new objects (the status blob, its tree, the commit), written
//! loose: 200 clusters with a heartbeat a minute make 36,000 files an hour. A status
//! ref keeps its last [`STATUS_HISTORY`](super::refs::STATUS_HISTORY) statuses and
//! then starts a new chain, so most of those objects soon become unreachable, but
//! nothing removes them: libgit2 has no garbage collection, and `git gc` keeps
//! unreachable objects for two weeks.
//!
//! So the process that wrote them compacts them. Once it has written as many status
//! objects as its last compaction packed (and at least [`AT_LEAST`]), it packs every
//! object its own status refs reach into one pack, then deletes the loose objects it
//! wrote up to then (each one is now in the pack, or unreachable) and the pack it made
//! the last time (what that one held and the refs still reach is in the new one). The
//! work per status written stays constant, and the repository holds at most about
//! twice the statuses its refs keep. It runs on a thread of its own, off the passes.
//!
//! Only what this process wrote is touched: other agents' refs and objects, branches
//! and their objects, and packs made by `git gc` are left alone. A reader that holds
//! a ref read before a compaction finds the object in the new pack (libgit2 and Git
//! look for new packs when an object is missing). A pack made by an earlier run of the
//! process is not known to this one and stays until `git gc` consolidates it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use git2::{Oid, Repository};

use super::refs::status_ref;

/// The fewest objects written between two compactions.
const AT_LEAST: usize = 3_000;

/// What this process wrote into one repository since its last compaction.
#[derive(Default)]
struct Written {
    /// The status objects, loose unless they existed already.
    objects: Vec<Oid>,
    /// The clusters whose status refs it writes.
    clusters: BTreeSet<String>,
    /// How many objects the last compaction packed.
    packed: usize,
    /// The pack it made, by name (`pack-<name>.pack`).
    pack: Option<String>,
    /// Whether a compaction is running.
    running: bool,
}

fn written() -> &'static Mutex<HashMap<PathBuf, Written>> {
    static WRITTEN: OnceLock<Mutex<HashMap<PathBuf, Written>>> = OnceLock::new();
    WRITTEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Notes the objects of a status of `cluster` written into `repo`, and starts a
/// compaction on a thread of its own when one is due.
pub fn note(repo: &Repository, cluster: &str, objects: [Oid; 3]) {
    let home = repo.commondir().to_path_buf();
    let due = {
        let mut all = written().lock().unwrap_or_else(|e| e.into_inner());
        let w = all.entry(home.clone()).or_default();
        w.objects.extend(objects);
        if !w.clusters.contains(cluster) {
            w.clusters.insert(cluster.to_string());
        }
        let due = !w.running && w.objects.len() >= w.packed.max(AT_LEAST);
        w.running |= due;
        due
    };
    if due {
        let thread_home = home.clone();
        let spawned = std::thread::Builder::new()
            .name("status-compact".into())
            .spawn(move || {
                let home = thread_home;
                match compact(&home) {
                    Ok(c) => tracing::debug!(
                        repository = %home.display(),
                        packed = c.packed,
                        removed = c.removed,
                        "status objects compacted"
                    ),
                    Err(e) => tracing::warn!(
                        repository = %home.display(),
                        error = %e,
                        "status objects not compacted; they stay loose until the next try"
                    ),
                }
            });
        if spawned.is_err() {
            not_started(&home);
        }
    }
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Objects in the new pack.
    pub packed: usize,
    /// Loose objects and old pack files removed.
    pub removed: usize,
}

/// Packs what this process's status refs in the repository whose refs live in
/// `home` reach, and removes what it wrote before and no longer needs.
pub fn compact(home: &Path) -> Result<Compacted, git2::Error> {
    // Take the list first: every object in it was written before its ref moved, so
    // the tips read after this reach each one that is still reachable.
    let (objects, clusters, old_pack) = {
        let mut all = written().lock().unwrap_or_else(|e| e.into_inner());
        let w = all.entry(home.to_path_buf()).or_default();
        w.running = true;
        (
            std::mem::take(&mut w.objects),
            w.clusters.clone(),
            w.pack.clone(),
        )
    };
    let result = pack_and_remove(home, &objects, &clusters, old_pack);
    let mut all = written().lock().unwrap_or_else(|e| e.into_inner());
    let w = all.entry(home.to_path_buf()).or_default();
    w.running = false;
    match &result {
        Ok((c, name)) => {
            w.packed = c.packed;
            w.pack = Some(name.clone());
        }
        Err(_) => {
            // Kept for the next try, which waits for as many objects again.
            w.objects.extend(objects);
            w.packed = w.objects.len() * 2;
        }
    }
    result.map(|(c, _)| c)
}

/// Lets the next status try again after a compaction that could not start.
fn not_started(home: &Path) {
    let mut all = written().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = all.get_mut(home) {
        w.running = false;
        w.packed = w.objects.len() * 2;
    }
}

fn pack_and_remove(
    home: &Path,
    objects: &[Oid],
    clusters: &BTreeSet<String>,
    old_pack: Option<String>,
) -> Result<(Compacted, String), git2::Error> {
    let repo = Repository::open(home)?;
    let mut walk = repo.revwalk()?;
    for cluster in clusters {
        if let Ok(tip) = repo.refname_to_id(&status_ref(cluster)) {
            walk.push(tip)?;
        }
    }
    let mut pack = repo.packbuilder()?;
    pack.insert_walk(&mut walk)?;
    let packed = pack.object_count();
    let pack_dir = home.join("objects").join("pack");
    pack.write(&pack_dir, 0o444)?;
    let name = pack.name()?.map(str::to_string).unwrap_or_default();
    let objects_dir = home.join("objects");
    let mut removed = 0;
    for oid in objects {
        let hex = oid.to_string();
        if std::fs::remove_file(objects_dir.join(&hex[..2]).join(&hex[2..])).is_ok() {
            removed += 1;
        }
    }
    if let Some(old) = old_pack.filter(|old| *old != name) {
        for ext in ["pack", "idx", "rev"] {
            if std::fs::remove_file(pack_dir.join(format!("pack-{old}.{ext}"))).is_ok() {
                removed += 1;
            }
        }
    }
    Ok((Compacted { packed, removed }, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::refs::{numbered_status as status, read_statuses, write_status};

    fn loose(home: &Path) -> usize {
        std::fs::read_dir(home.join("objects"))
            .unwrap()
            .flatten()
            .filter(|d| d.file_name().len() == 2)
            .map(|d| std::fs::read_dir(d.path()).unwrap().count())
            .sum()
    }

    fn packs(home: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(home.join("objects/pack"))
            .unwrap()
            .flatten()
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pack"))
            .collect();
        names.sort();
        names
    }

    fn chain(repo: &Repository, cluster: &str) -> usize {
        let mut walk = repo.revwalk().unwrap();
        walk.push(repo.refname_to_id(&status_ref(cluster)).unwrap())
            .unwrap();
        walk.count()
    }

    #[test]
    fn compacting_packs_what_the_refs_reach_and_removes_the_rest_of_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let home = repo.commondir().to_path_buf();
        // Someone else's object: never touched.
        let theirs = repo.blob(b"a branch's file").unwrap();
        // 150 statuses of one cluster (a full chain of 100, then 50 more) and 20 of
        // another: a compaction may start on its own after 3,000 objects, not before.
        for n in 0..150 {
            write_status(&repo, &status("east", n)).unwrap();
        }
        for n in 0..20 {
            write_status(&repo, &status("west", n)).unwrap();
        }
        assert_eq!(loose(&home), 3 * 170 + 1);

        let c = compact(&home).unwrap();
        // The chains the refs keep: 50 and 20 statuses, three objects each.
        assert_eq!(c.packed, 3 * 70);
        assert_eq!(c.removed, 3 * 170);
        assert_eq!(loose(&home), 1, "only the other object stays loose");
        assert!(repo.find_blob(theirs).is_ok());
        let first = packs(&home);
        assert_eq!(first.len(), 1);

        // Everything still reads, from the pack.
        let repo = Repository::open(&home).unwrap();
        let (read, errors) = read_statuses(&repo);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(read["east"], status("east", 149));
        assert_eq!(read["west"], status("west", 19));
        assert_eq!((chain(&repo, "east"), chain(&repo, "west")), (50, 20));

        // The next compaction replaces the pack it made.
        for n in 150..160 {
            write_status(&repo, &status("east", n)).unwrap();
        }
        let c = compact(&home).unwrap();
        assert_eq!(c.packed, 3 * 80);
        assert_eq!(
            c.removed,
            3 * 10 + 2,
            "the new loose objects and the old pack"
        );
        let second = packs(&home);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
        let repo = Repository::open(&home).unwrap();
        assert_eq!(read_statuses(&repo).0["east"], status("east", 159));
        assert_eq!(chain(&repo, "east"), 60);
    }

    #[test]
    fn a_compaction_starts_on_its_own_once_enough_objects_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let home = repo.commondir().to_path_buf();
        // 3,000 objects: 200 statuses of each of five clusters.
        for n in 0..200 {
            for c in ["a", "b", "c", "d", "e"] {
                write_status(&repo, &status(c, n)).unwrap();
            }
        }
        // Wait for the compaction's thread to finish (the deadline only ends a hang).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let packed = loop {
            let packed = {
                let all = written().lock().unwrap();
                let w = &all[&home];
                (!w.running).then_some(w.packed)
            };
            match packed {
                Some(p) if p > 0 => break p,
                _ if std::time::Instant::now() > deadline => panic!("no compaction"),
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        assert_eq!(packed, 5 * 100 * 3, "five full chains");
        assert_eq!(loose(&home), 0);
        assert_eq!(packs(&home).len(), 1);
        let repo = Repository::open(&home).unwrap();
        assert_eq!(read_statuses(&repo).0["e"], status("e", 199));
        // The next one waits for as many objects as this one packed.
        write_status(&repo, &status("a", 200)).unwrap();
        assert!(!written().lock().unwrap()[&home].running);
    }
}
