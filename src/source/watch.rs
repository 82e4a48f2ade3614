//! Watching a local repository for new commits and peers' statuses: a change to its
//! refs (or `packed-refs`) wakes the fetch loop at once instead of at the next poll.
//!
//! On Linux the watch is inotify's, asked only for the events that change a ref: a
//! file created, written and closed, renamed or removed. Reads raise nothing. That
//! matters to an agent serving many clusters from one local repository: every pass
//! reads the refs, and a watch that also reports opens (as the general file-watching
//! library does, with no way to turn it off) made the kernel queue, and the agent
//! read and drop, an event for every ref read, about a fifth of an idle agent's CPU
//! at 200 clusters. Git writes a ref through a lock file renamed over it, so every write
//! shows as a `MOVED_TO` of the ref's name; a ref written in place shows as a
//! `CLOSE_WRITE`. Directories created under `refs/` later (a new branch namespace,
//! the first status ref) are watched as they appear. Elsewhere the general library's
//! watch is used, with the same filter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::trigger::Wake;

/// The repositories of this process under a watch that is running, by canonical git
/// directory: how many watches, the generation of its refs, and whether every
/// directory of refs is watched (a watch that had to leave some out cannot vouch for
/// them).
type Registry = HashMap<PathBuf, (usize, Arc<AtomicU64>, Arc<AtomicBool>)>;

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// A new generation, never given before in this process: a watch that ends and a new
/// one that starts cannot hand out the same number for different states.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The generation of the refs of the local repository at `git_dir` while a watch of
/// this process runs on it (None otherwise): it changes, before the loop is woken,
/// whenever a ref that is not one of the watch's own changes. So a reader that read
/// every ref at one generation and finds it unchanged knows that only the process's
/// own refs can have moved since (this process is their only writer, and knows what
/// it wrote), and need not look at each ref file again. An event the
/// kernel queued and the watch has not read yet is seen a moment later, as a hub's
/// watch event is.
pub fn ref_generation(git_dir: &Path) -> Option<u64> {
    let registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    if registry.is_empty() {
        return None;
    }
    let key = std::fs::canonicalize(git_dir).ok()?;
    let (_, generation, complete) = registry.get(&key)?;
    complete
        .load(Ordering::Acquire)
        .then(|| generation.load(Ordering::Acquire))
}

/// A running watch's entry in the registry; dropping it (the watch ended or failed)
/// takes the entry away. (Only the inotify watch keeps a generation.)
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Registration {
    key: PathBuf,
    generation: Arc<AtomicU64>,
    complete: Arc<AtomicBool>,
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl Registration {
    fn new(git_dir: &Path) -> std::io::Result<Registration> {
        let key = std::fs::canonicalize(git_dir)?;
        let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
        let (count, generation, complete) = registry.entry(key.clone()).or_insert_with(|| {
            (
                0,
                Arc::new(AtomicU64::new(next_generation())),
                Arc::new(AtomicBool::new(true)),
            )
        });
        *count += 1;
        let (generation, complete) = (generation.clone(), complete.clone());
        // Whatever was read before this watch started is not known to be current.
        generation.store(next_generation(), Ordering::Release);
        Ok(Registration {
            key,
            generation,
            complete,
        })
    }

    /// Some directories of refs are not watched: readers look at the refs again.
    fn incomplete(&self) {
        self.complete.store(false, Ordering::Release);
    }

    /// A ref changed.
    fn changed(&self) {
        self.generation.store(next_generation(), Ordering::Release);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, _, _)) = registry.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                registry.remove(&self.key);
            }
        }
    }
}

/// The git directory of the repository at `path` (its work tree or the git directory
/// itself).
fn git_dir(path: &Path) -> PathBuf {
    if path.join(".git").is_dir() {
        path.join(".git")
    } else {
        path.to_path_buf()
    }
}

/// Whether a change to `name` (a path relative to the git directory, such as
/// `refs/heads/main`) starts a pass. A lock file does not: the ref changes when the
/// lock is renamed over it, and a pass started before that would read the old ref.
/// Nor do the refs in `own_refs`: the agent's own status refs, which it writes at
/// every pass; waking on them would start a pass per pass and per cluster. A peer's
/// status ref or a commit on a branch does.
fn wakes_the_loop(name: &Path, own_refs: &[String]) -> bool {
    let name = name.to_string_lossy();
    !name.ends_with(".lock") && !own_refs.iter().any(|r| *r == name)
}

#[cfg(target_os = "linux")]
pub use linux::{RepositoryWatch, watch_repository};

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};

    use futures_util::StreamExt;
    use inotify::{EventMask, EventOwned, Inotify, WatchMask, Watches};

    use super::{Registration, Wake, git_dir, wakes_the_loop};

    /// The most directories under `refs/` watched: far more than any repository's
    /// ref namespaces, and far below the kernel's default limit of watches.
    const MAX_WATCHED_DIRS: usize = 4096;

    /// Events that change what a directory of refs holds.
    fn refs_mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW
            | WatchMask::EXCL_UNLINK
    }

    /// A running watch; dropping it ends the watch.
    pub struct RepositoryWatch {
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for RepositoryWatch {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Watches the local repository at `path` (its refs and `packed-refs`) and wakes
    /// the loop on a change, except one to a ref in `own_refs` (see
    /// `wakes_the_loop`). Must be called within a Tokio runtime, which reads the
    /// events. Keep the returned watch alive as long as the watch should last.
    pub fn watch_repository(
        path: &Path,
        wake: Wake,
        own_refs: &[String],
    ) -> io::Result<RepositoryWatch> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let git_dir = git_dir(path);
        let registration = Registration::new(&git_dir)?;
        let inotify = Inotify::init()?;
        let mut watched = Watched {
            registration,
            git_dir,
            dirs: HashMap::new(),
            watches: inotify.watches(),
            own_refs: own_refs.to_vec(),
        };
        // The git directory itself, for `packed-refs` (rewritten through a lock file).
        let root = watched.watches.add(
            &watched.git_dir,
            WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE | WatchMask::DELETE | WatchMask::ONLYDIR,
        )?;
        watched
            .dirs
            .insert(root.get_watch_descriptor_id(), PathBuf::new());
        watched.add_tree(Path::new("refs"))?;
        let _guard = runtime.enter();
        let mut events = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
        let task = runtime.spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        if watched.changes_a_ref(event) {
                            watched.registration.changed();
                            wake.wake();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the repository watch failed; polling only");
                        break;
                    }
                }
            }
        });
        Ok(RepositoryWatch { task })
    }

    /// The watched directories and what decides which changes wake the loop.
    struct Watched {
        /// Dropped with the watch, so readers stop trusting it when it ends.
        registration: Registration,
        git_dir: PathBuf,
        /// Each watch's directory, relative to the git directory ("" for itself).
        dirs: HashMap<i32, PathBuf>,
        watches: Watches,
        own_refs: Vec<String>,
    }

    impl Watched {
        /// Watches `rel` (relative to the git directory) and every directory below it.
        fn add_tree(&mut self, rel: &Path) -> io::Result<()> {
            let mut pending = vec![rel.to_path_buf()];
            while let Some(dir) = pending.pop() {
                if self.dirs.len() >= MAX_WATCHED_DIRS {
                    self.registration.incomplete();
                    tracing::warn!(
                        dir = %dir.display(),
                        "more than {MAX_WATCHED_DIRS} directories of refs; changes below this one wake the agent only at the next poll"
                    );
                    return Ok(());
                }
                // A directory removed before it is watched or listed has nothing to
                // watch (its removal was reported to its parent).
                let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
                let wd = match self.watches.add(self.git_dir.join(&dir), refs_mask()) {
                    Ok(wd) => wd,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                };
                self.dirs.insert(wd.get_watch_descriptor_id(), dir.clone());
                // Listed after the watch is set, so a directory created in between is
                // either listed here or reported by the watch.
                let entries = match std::fs::read_dir(self.git_dir.join(&dir)) {
                    Ok(entries) => entries,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        pending.push(dir.join(entry.file_name()));
                    }
                }
            }
            Ok(())
        }

        /// Whether `event` may have changed a ref that is not the agent's own;
        /// watches a directory that appeared.
        fn changes_a_ref(&mut self, event: EventOwned) -> bool {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                // Events were lost: one of them may have mattered.
                return true;
            }
            let id = event.wd.get_watch_descriptor_id();
            if event.mask.contains(EventMask::IGNORED) {
                // The directory is gone (its removal was reported to its parent).
                self.dirs.remove(&id);
                return false;
            }
            let (Some(dir), Some(name)) = (self.dirs.get(&id), event.name) else {
                return false;
            };
            if dir.as_os_str().is_empty() {
                return name == "packed-refs";
            }
            let rel = dir.join(name);
            if event.mask.contains(EventMask::ISDIR) {
                if event
                    .mask
                    .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                    && let Err(e) = self.add_tree(&rel)
                {
                    self.registration.incomplete();
                    tracing::warn!(dir = %rel.display(), error = %e, "cannot watch a new directory of refs; it wakes the agent only at the next poll");
                }
                return true;
            }
            wakes_the_loop(&rel, &self.own_refs)
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub use portable::{RepositoryWatch, watch_repository};

/// The general file-watching library's watch, where inotify is not available.
#[cfg(not(target_os = "linux"))]
mod portable {
    use std::io;
    use std::path::Path;

    use notify::Watcher;

    use super::{Wake, git_dir, wakes_the_loop};

    /// A running watch; dropping it ends the watch.
    pub struct RepositoryWatch {
        _watcher: notify::RecommendedWatcher,
    }

    /// Watches the local repository at `path` (its refs and `packed-refs`) and wakes
    /// the loop on a change, except one to a ref in `own_refs`.
    pub fn watch_repository(
        path: &Path,
        wake: Wake,
        own_refs: &[String],
    ) -> io::Result<RepositoryWatch> {
        let git_dir = git_dir(path);
        let (dir, own) = (git_dir.clone(), own_refs.to_vec());
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let wakes = event.paths.is_empty()
                || event.paths.iter().any(|p| {
                    p.strip_prefix(&dir)
                        .map_or(true, |rel| wakes_the_loop(rel, &own))
                });
            if wakes {
                wake.wake();
            }
        })
        .map_err(io::Error::other)?;
        watcher
            .watch(&git_dir.join("refs"), notify::RecursiveMode::Recursive)
            .map_err(io::Error::other)?;
        if git_dir.join("packed-refs").exists() {
            watcher
                .watch(
                    &git_dir.join("packed-refs"),
                    notify::RecursiveMode::NonRecursive,
                )
                .map_err(io::Error::other)?;
        }
        Ok(RepositoryWatch { _watcher: watcher })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_watch_gives_a_generation_that_a_peers_ref_changes() {
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path().join("fleet.git");
        git2::Repository::init_bare(&git_dir).unwrap();
        let status_dir = git_dir.join("refs/rollwave/status");
        std::fs::create_dir_all(&status_dir).unwrap();
        assert_eq!(ref_generation(&git_dir), None, "no watch, no generation");

        let wake = Wake::new();
        let own = vec!["refs/rollwave/status/own".to_string()];
        let watch = watch_repository(&git_dir, wake.clone(), &own).unwrap();
        let before = ref_generation(&git_dir).expect("a generation while watched");
        // A peer writes its ref as Git does: a lock file renamed over the ref.
        let oid = "0123456789abcdef0123456789abcdef01234567\n";
        std::fs::write(status_dir.join("peer.lock"), oid).unwrap();
        std::fs::rename(status_dir.join("peer.lock"), status_dir.join("peer")).unwrap();
        tokio::time::timeout(Duration::from_secs(20), wake.woken())
            .await
            .expect("the peer's ref wakes the loop");
        assert_ne!(ref_generation(&git_dir), Some(before));

        // A watch that ended vouches for nothing.
        drop(watch);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ref_generation(&git_dir).is_some() {
            assert!(
                Instant::now() < deadline,
                "the ended watch is still registered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn the_agents_own_status_refs_do_not_wake_it_but_a_peers_and_a_commit_do() {
        let own = vec!["refs/rollwave/status/prod-1".to_string()];
        for (name, wakes) in [
            ("refs/rollwave/status/prod-1", false),
            ("refs/rollwave/status/prod-1.lock", false),
            ("refs/rollwave/status/prod-2", true),
            ("refs/rollwave/status/prod-2.lock", false),
            ("refs/heads/main.lock", false),
            ("refs/heads/main", true),
        ] {
            assert_eq!(wakes_the_loop(Path::new(name), &own), wakes, "{name}");
        }
    }
}
