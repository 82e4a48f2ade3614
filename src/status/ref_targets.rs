//! Where every status ref points, without opening the ref files that have not changed.
//!
//! An agent serving many clusters reads every status ref at every pass of every
//! cluster. Opening each loose ref file costs a path walk, a read and a close, and in
//! a local repository that the agent watches for commits, each open also raises an
//! event on that watch (inotify reports opens) which the agent reads and drops: with
//! 200 clusters that was most of an idle agent's CPU. So the targets are remembered
//! per repository with the file's stamp (inode, size, modification and change
//! times), taken with a `stat` (which raises no event), and a file is read again only
//! when its stamp differs.
//!
//! Why a stamp is enough: Git and libgit2 write a ref through a lock file renamed over
//! it, so every write makes a new inode, while the old file still exists (the two
//! cannot share a number). A file changed in place keeps its inode, so, as Git does
//! for its index ("racily clean" entries), a stamp whose modification time is less
//! than [`RACY`] before the read is not trusted: a write in the same clock tick could
//! leave it unchanged. Refs packed into `packed-refs` are read again, with libgit2,
//! whenever that file's stamp changes; a loose ref overrides a packed one, as in Git.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use git2::{Oid, Repository};

use super::refs::STATUS_REF_PREFIX;

/// How long after a file's modification its stamp is trusted: past the coarsest
/// timestamp a filesystem keeps (one second on some), with a margin.
const RACY: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a change after `read_at` could have left this stamp as it is: the
    /// file changed less than [`RACY`] before (by its change time, which no one can
    /// set back).
    fn racy(&self, read_at: SystemTime) -> bool {
        let (secs, nanos) = self.changed;
        let at = std::time::UNIX_EPOCH
            + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        match read_at.duration_since(at) {
            Ok(age) => age < RACY,
            Err(_) => true,
        }
    }
}

/// A status ref's target as last read: the commit, or why it could not be read.
pub type Target = Result<Oid, String>;

/// One repository's status refs as last read.
#[derive(Default)]
struct Known {
    /// Loose refs by cluster: the stamp read (None: not to be trusted) and target.
    loose: HashMap<String, (Option<Stamp>, Target)>,
    /// `packed-refs`'s stamp when its status refs were read, and those refs.
    packed: Option<(Stamp, BTreeMap<String, Oid>)>,
    /// How many loose ref files were read: what the stamps save.
    reads: u64,
    /// How many times the refs were looked at.
    scans: u64,
}

/// Every repository's, by the directory that holds its refs.
fn known() -> &'static Mutex<HashMap<PathBuf, Known>> {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, Known>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Each cluster with a status ref in `repo` and the commit it points to, sorted by
/// cluster; a ref that cannot be read comes with the reason.
pub fn status_ref_targets(repo: &Repository) -> BTreeMap<String, Target> {
    targets_read_at(repo, SystemTime::now())
}

/// [`status_ref_targets`] as if read at `read_at`.
fn targets_read_at(repo: &Repository, read_at: SystemTime) -> BTreeMap<String, Target> {
    let refs_home = repo.commondir().to_path_buf();
    let mut all = known().lock().unwrap_or_else(|e| e.into_inner());
    let known = all.entry(refs_home.clone()).or_default();
    known.scans += 1;
    let mut out: BTreeMap<String, Target> = packed(repo, &refs_home, known, read_at)
        .into_iter()
        .map(|(cluster, oid)| (cluster, Ok(oid)))
        .collect();
    let dir = refs_home.join(STATUS_REF_PREFIX);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".lock") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let stamp = Stamp::of(&meta);
        let target = match known.loose.get(&name) {
            Some((Some(was), target)) if *was == stamp => target.clone(),
            _ => {
                let target = read_loose(repo, &name);
                known.reads += 1;
                let trusted = (!stamp.racy(read_at)).then_some(stamp);
                known.loose.insert(name.clone(), (trusted, target.clone()));
                target
            }
        };
        out.insert(name.clone(), target);
        seen.push(name);
    }
    known.loose.retain(|name, _| seen.contains(name));
    out
}

/// How many times the status refs of `repo` were looked at: what a watch saves.
#[cfg(test)]
pub(crate) fn scans(repo: &Repository) -> u64 {
    let all = known().lock().unwrap_or_else(|e| e.into_inner());
    all.get(repo.commondir()).map_or(0, |k| k.scans)
}

/// The ref of `cluster` read through libgit2.
fn read_loose(repo: &Repository, cluster: &str) -> Target {
    let name = format!("{STATUS_REF_PREFIX}{cluster}");
    repo.find_reference(&name)
        .and_then(|r| r.resolve())
        .map_err(|e| e.message().to_string())?
        .target()
        .ok_or_else(|| format!("{name} points to no commit"))
}

/// The status refs in `packed-refs`, read again when the file changed.
fn packed(
    repo: &Repository,
    refs_home: &Path,
    known: &mut Known,
    read_at: SystemTime,
) -> BTreeMap<String, Oid> {
    let Ok(meta) = std::fs::metadata(refs_home.join("packed-refs")) else {
        known.packed = None;
        return BTreeMap::new();
    };
    let stamp = Stamp::of(&meta);
    if let Some((was, refs)) = &known.packed
        && *was == stamp
    {
        return refs.clone();
    }
    // libgit2 lists loose and packed refs together; the loose ones are read again
    // by the caller, which overrides these with them.
    let mut refs = BTreeMap::new();
    if let Ok(all) = repo.references_glob(&format!("{STATUS_REF_PREFIX}*")) {
        for r in all.flatten() {
            if let (Ok(name), Some(oid)) = (r.name(), r.target()) {
                refs.insert(name.trim_start_matches(STATUS_REF_PREFIX).to_string(), oid);
            }
        }
    }
    known.packed = if stamp.racy(read_at) {
        None
    } else {
        Some((stamp, refs.clone()))
    };
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &Repository, n: u8) -> Oid {
        let blob = repo.blob(&[n]).unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert("status.json", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        repo.commit(None, &sig, &sig, "s", &tree, &[]).unwrap()
    }

    /// A read a minute from now, when every file written so far is old.
    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_ref_moved_by_git_or_edited_in_place_is_read_again_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let (a, b, c) = (commit(&repo, 1), commit(&repo, 2), commit(&repo, 3));
        repo.reference("refs/rollwave/status/x", a, true, "t")
            .unwrap();
        repo.reference("refs/rollwave/status/y", b, true, "t")
            .unwrap();
        let status_dir = dir.path().join("refs/rollwave/status");
        let targets = targets_read_at(&repo, later());
        assert_eq!(targets["x"], Ok(a));
        assert_eq!(targets["y"], Ok(b));

        // Unchanged files are not read again.
        let reads = || known().lock().unwrap()[repo.commondir()].reads;
        assert_eq!(reads(), 2);
        assert_eq!(targets_read_at(&repo, later())["y"], Ok(b));
        assert_eq!(reads(), 2);

        // Moved by libgit2 (a new file renamed over the old one): seen at once.
        repo.reference("refs/rollwave/status/x", c, true, "t")
            .unwrap();
        assert_eq!(targets_read_at(&repo, later())["x"], Ok(c));
        assert_eq!(reads(), 3, "only x is read again");

        // Rewritten in place, its modification time put back: the change time moved,
        // so it is read again.
        let path = status_dir.join("y");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, format!("{c}\n")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(targets_read_at(&repo, later())["y"], Ok(c));

        // A deleted ref is gone; an unreadable one is reported; lock files are not
        // refs.
        std::fs::remove_file(status_dir.join("x")).unwrap();
        std::fs::write(status_dir.join("z"), "not a ref\n").unwrap();
        std::fs::write(status_dir.join("w.lock"), format!("{a}\n")).unwrap();
        let targets = targets_read_at(&repo, later());
        assert!(!targets.contains_key("x"));
        assert!(targets["z"].is_err(), "{targets:?}");
        assert!(!targets.contains_key("w.lock"));
        assert!(!targets.contains_key("w"));
    }

    #[test]
    fn a_stamp_from_less_than_the_racy_margin_before_the_read_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = commit(&repo, 1);
        repo.reference("refs/rollwave/status/r", a, true, "t")
            .unwrap();
        let meta = std::fs::metadata(dir.path().join("refs/rollwave/status/r")).unwrap();
        let stamp = Stamp::of(&meta);
        let changed =
            std::time::UNIX_EPOCH + Duration::new(stamp.changed.0 as u64, stamp.changed.1 as u32);
        assert!(stamp.racy(changed));
        assert!(stamp.racy(changed + RACY - Duration::from_millis(1)));
        assert!(!stamp.racy(changed + RACY));
        assert!(
            stamp.racy(changed - Duration::from_secs(1)),
            "a clock set back"
        );
        // Read just after the write: remembered without its stamp, so read again.
        targets_read_at(&repo, SystemTime::now());
        targets_read_at(&repo, SystemTime::now());
        let all = known().lock().unwrap();
        assert_eq!(all[repo.commondir()].loose["r"].0, None);
        assert_eq!(all[repo.commondir()].reads, 2);
    }

    #[test]
    fn packed_refs_are_read_and_a_loose_ref_overrides_its_packed_copy() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let (a, b) = (commit(&repo, 1), commit(&repo, 2));
        std::fs::write(
            dir.path().join("packed-refs"),
            format!(
                "# pack-refs with: peeled fully-peeled sorted \n{a} refs/heads/main\n{a} refs/rollwave/status/p\n{a} refs/rollwave/status/q\n"
            ),
        )
        .unwrap();
        let targets = status_ref_targets(&repo);
        assert_eq!(targets.len(), 2, "{targets:?}");
        assert_eq!(targets["p"], Ok(a));
        repo.reference("refs/rollwave/status/q", b, true, "t")
            .unwrap();
        let targets = status_ref_targets(&repo);
        assert_eq!((&targets["p"], &targets["q"]), (&Ok(a), &Ok(b)));
    }
}
