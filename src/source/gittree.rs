//! [`FileTree`] over a Git commit: any commit renders straight from the object store,
//! with no working tree and no checkout, and two commits can be read side by side.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository};

use super::SourceError;
use crate::tree::{
    DirState, EntryKind, FileTree, RawKind, RawTree, RepoPath, Resolved, TreeError, entry_kind,
    resolve_in, resolved_dir, resolved_file,
};
use crate::yaml::MAX_FILE_BYTES;

/// The tree of one commit. Symlinks are followed by the same rules as in a working
/// tree (see [`resolve_in`]): a checkout and the object store agree on every path.
///
/// Each Git tree object is parsed once and kept, keyed by its id, and every directory
/// path resolved is kept too, so resolving a path starts from its parent directory
/// (one entry lookup, whatever the depth) and listing a directory costs its entries:
/// reading n files of one directory, or n nested roots, is linear in n.
pub struct GitTree {
    repo: Mutex<Repository>,
    tree: Oid,
    commit: Oid,
    resolved: Mutex<HashMap<String, DirState<Oid>>>,
}

/// One parsed tree object: name -> (kind, object id).
type Dir = BTreeMap<String, (RawKind, Oid)>;

/// Tree objects already parsed, by object id, shared by every [`GitTree`] of the
/// process. A tree object never changes, so an entry is always right, in any
/// repository. An agent opens a tree per app and pass, and the render cache resolves
/// each app's paths from the root: without sharing, every app parsed the fleet's
/// root and `apps/` again (at 1,250 apps, 1,250 entries per app per pass, most of a
/// steady-state pass's CPU).
struct SharedDirs {
    dirs: HashMap<Oid, Arc<Dir>>,
    /// Entries in all of them: the measure of the memory held.
    entries: usize,
}

/// At most this many entries are kept in [`SharedDirs`]; past it, it starts again.
/// About 20 MB at the most, far less for usual trees.
const SHARED_DIR_ENTRIES: usize = 200_000;

fn shared_dirs() -> &'static Mutex<SharedDirs> {
    static DIRS: std::sync::OnceLock<Mutex<SharedDirs>> = std::sync::OnceLock::new();
    DIRS.get_or_init(|| {
        Mutex::new(SharedDirs {
            dirs: HashMap::new(),
            entries: 0,
        })
    })
}

const TREE_MODE: i32 = 0o040000;
const BLOB_MODE: i32 = 0o100644;
const EXEC_MODE: i32 = 0o100755;
const GROUP_WRITABLE_MODE: i32 = 0o100664;
const SYMLINK_MODE: i32 = 0o120000;
const COMMIT_MODE: i32 = 0o160000;

fn io(path: &RepoPath, e: git2::Error) -> TreeError {
    TreeError::Io {
        path: path.to_string(),
        message: e.message().to_string(),
    }
}

fn poisoned(path: &RepoPath) -> TreeError {
    TreeError::Io {
        path: path.to_string(),
        message: "repository lock poisoned".into(),
    }
}

impl GitTree {
    /// Opens the tree of `commit` in the repository at `repo_path`.
    pub fn open(repo_path: &Path, commit: Oid) -> Result<Self, SourceError> {
        Self::open_in(repo_path, commit, &RepoPath::default())
    }

    /// Opens the directory `dir` of `commit` as a tree of its own: a fleet kept in a
    /// subdirectory of a larger repository (a monorepo) reads as if it were the root.
    pub fn open_in(repo_path: &Path, commit: Oid, dir: &RepoPath) -> Result<Self, SourceError> {
        let repo = Repository::open(repo_path).map_err(|e| SourceError::Local {
            path: repo_path.display().to_string(),
            message: e.message().to_string(),
        })?;
        let tree = Self::dir_tree(&repo, commit, dir)?;
        Ok(GitTree {
            repo: Mutex::new(repo),
            tree,
            commit,
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// The id of the tree object of `dir` in `commit`.
    fn dir_tree(repo: &Repository, commit: Oid, dir: &RepoPath) -> Result<Oid, SourceError> {
        let root = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| SourceError::Revision {
                rev: commit.to_string(),
                message: e.message().to_string(),
            })?;
        Ok(if dir.as_str().is_empty() {
            root.id()
        } else {
            let missing = |what: &str| SourceError::Revision {
                rev: commit.to_string(),
                message: format!(
                    "the fleet path '{dir}' {what} at this commit; check `repo.path` or `--path`"
                ),
            };
            let entry = root
                .get_path(Path::new(dir.as_str()))
                .map_err(|_| missing("does not exist"))?;
            if entry.kind() != Some(git2::ObjectType::Tree) {
                return Err(missing("is not a directory"));
            }
            entry.id()
        })
    }

    /// The commit this tree belongs to.
    pub fn commit(&self) -> Oid {
        self.commit
    }

    /// The parsed tree object `oid`, from the cache or parsed now (symlink targets
    /// included).
    fn dir(&self, oid: Oid, path: &RepoPath) -> Result<Arc<Dir>, TreeError> {
        if let Some(d) = shared_dirs()
            .lock()
            .map_err(|_| poisoned(path))?
            .dirs
            .get(&oid)
        {
            return Ok(d.clone());
        }
        let repo = self.repo.lock().map_err(|_| poisoned(path))?;
        let tree = repo.find_tree(oid).map_err(|e| io(path, e))?;
        let mut dir = Dir::new();
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            let kind = match entry.filemode() {
                TREE_MODE => RawKind::Dir,
                BLOB_MODE | GROUP_WRITABLE_MODE | EXEC_MODE => RawKind::File,
                SYMLINK_MODE => {
                    let blob = repo.find_blob(entry.id()).map_err(|e| io(path, e))?;
                    RawKind::Symlink(String::from_utf8_lossy(blob.content()).into_owned())
                }
                COMMIT_MODE => RawKind::Special("a Git submodule (commit entry)"),
                _ => RawKind::Special("an unknown kind of Git tree entry"),
            };
            dir.insert(name.to_string(), (kind, entry.id()));
        }
        let dir = Arc::new(dir);
        drop(tree);
        drop(repo);
        let mut shared = shared_dirs().lock().map_err(|_| poisoned(path))?;
        if shared.entries + dir.len() + 1 > SHARED_DIR_ENTRIES {
            shared.dirs.clear();
            shared.entries = 0;
        }
        if shared.dirs.insert(oid, dir.clone()).is_none() {
            shared.entries += dir.len() + 1;
        }
        Ok(dir)
    }

    fn resolve(&self, path: &RepoPath) -> Result<Option<Resolved<Oid>>, TreeError> {
        resolve_in(self, path)
    }
}

impl RawTree for GitTree {
    type Id = Oid;

    fn root_id(&self) -> Oid {
        self.tree
    }

    fn entry(
        &self,
        dir: &Oid,
        name: &str,
        path: &RepoPath,
    ) -> Result<Option<(RawKind, Oid)>, TreeError> {
        Ok(self.dir(*dir, path)?.get(name).cloned())
    }

    fn cached_dir(&self, logical: &str) -> Option<DirState<Oid>> {
        self.resolved.lock().ok()?.get(logical).cloned()
    }

    fn cache_dir(&self, logical: &str, state: &DirState<Oid>) {
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(logical.to_string(), state.clone());
        }
    }
}

impl FileTree for GitTree {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        Ok(self.resolve(path)?.map(|r| entry_kind(&r.kind)))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        let dir = resolved_dir(self.resolve(path)?, path)?;
        // A BTreeMap iterates in byte order, the order DirTree sorts its names in.
        Ok(self.dir(dir, path)?.keys().cloned().collect())
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        let file = resolved_file(self.resolve(path)?, path)?;
        let repo = self.repo.lock().map_err(|_| poisoned(path))?;
        let odb = repo.odb().map_err(|e| io(path, e))?;
        let (size, _) = odb.read_header(file).map_err(|e| io(path, e))?;
        if size as u64 > MAX_FILE_BYTES {
            return Err(TreeError::TooLarge {
                path: path.to_string(),
                size: size as u64,
            });
        }
        let blob = repo.find_blob(file).map_err(|e| io(path, e))?;
        Ok(blob.content().to_vec())
    }

    fn real_path(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        Ok(self.resolve(path)?.map(|r| r.real))
    }
}
