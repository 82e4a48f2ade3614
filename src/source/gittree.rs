//! [`FileTree`] over a Git commit: any commit renders straight from the object store,
//! with no working tree and no checkout, and two commits can be read side by side.

use std::path::Path;
use std::sync::Mutex;

use git2::{ObjectType, Oid, Repository};

use super::SourceError;
use crate::tree::{EntryKind, FileTree, RepoPath, TreeError};
use crate::yaml::MAX_FILE_BYTES;

/// The tree of one commit. Symlinks are followed while they stay inside the tree.
pub struct GitTree {
    repo: Mutex<Repository>,
    tree: Oid,
    commit: Oid,
}

const SYMLINK_MODE: i32 = 0o120000;

fn io(path: &RepoPath, e: git2::Error) -> TreeError {
    TreeError::Io {
        path: path.to_string(),
        message: e.message().to_string(),
    }
}

impl GitTree {
    /// Opens the tree of `commit` in the repository at `repo_path`.
    pub fn open(repo_path: &Path, commit: Oid) -> Result<Self, SourceError> {
        let repo = Repository::open(repo_path).map_err(|e| SourceError::Local {
            path: repo_path.display().to_string(),
            message: e.message().to_string(),
        })?;
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map(|t| t.id())
            .map_err(|e| SourceError::Revision {
                rev: commit.to_string(),
                message: e.message().to_string(),
            })?;
        Ok(GitTree {
            repo: Mutex::new(repo),
            tree,
            commit,
        })
    }

    /// The commit this tree belongs to.
    pub fn commit(&self) -> Oid {
        self.commit
    }

    /// Finds the entry at `path`, following symlinks (at most 8) inside the tree.
    /// Returns the object id, its kind and its size for blobs.
    fn lookup(&self, path: &RepoPath) -> Result<Option<(Oid, ObjectType)>, TreeError> {
        let repo = self.repo.lock().map_err(|_| TreeError::Io {
            path: path.to_string(),
            message: "repository lock poisoned".into(),
        })?;
        let root = repo.find_tree(self.tree).map_err(|e| io(path, e))?;
        let mut current = path.clone();
        for _ in 0..8 {
            if current.as_str().is_empty() {
                return Ok(Some((root.id(), ObjectType::Tree)));
            }
            let entry = match root.get_path(Path::new(current.as_str())) {
                Ok(e) => e,
                Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
                Err(e) => return Err(io(path, e)),
            };
            if entry.filemode() == SYMLINK_MODE {
                let blob = repo.find_blob(entry.id()).map_err(|e| io(path, e))?;
                let target = String::from_utf8_lossy(blob.content()).into_owned();
                current = current
                    .parent()
                    .join(&target)
                    .map_err(|_| TreeError::SymlinkEscapes(path.to_string()))?;
                continue;
            }
            return Ok(match entry.kind() {
                Some(ObjectType::Tree) => Some((entry.id(), ObjectType::Tree)),
                Some(ObjectType::Blob) => Some((entry.id(), ObjectType::Blob)),
                _ => None, // submodules are not part of the fleet
            });
        }
        Err(TreeError::Io {
            path: path.to_string(),
            message: "too many levels of symbolic links".into(),
        })
    }
}

impl FileTree for GitTree {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        Ok(self.lookup(path)?.map(|(_, t)| {
            if t == ObjectType::Tree {
                EntryKind::Dir
            } else {
                EntryKind::File
            }
        }))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        let Some((oid, ObjectType::Tree)) = self.lookup(path)? else {
            return Err(TreeError::NotFound(path.to_string()));
        };
        let repo = self
            .repo
            .lock()
            .map_err(|_| TreeError::NotFound(path.to_string()))?;
        let tree = repo.find_tree(oid).map_err(|e| io(path, e))?;
        let mut names: Vec<String> = tree
            .iter()
            .filter_map(|e| e.name().ok().map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        match self.lookup(path)? {
            None => Err(TreeError::NotFound(path.to_string())),
            Some((_, ObjectType::Tree)) => Err(TreeError::WrongKind {
                path: path.to_string(),
                message: "is a directory, expected a file".into(),
            }),
            Some((oid, _)) => {
                let repo = self
                    .repo
                    .lock()
                    .map_err(|_| TreeError::NotFound(path.to_string()))?;
                let odb = repo.odb().map_err(|e| io(path, e))?;
                let (size, _) = odb.read_header(oid).map_err(|e| io(path, e))?;
                if size as u64 > MAX_FILE_BYTES {
                    return Err(TreeError::TooLarge {
                        path: path.to_string(),
                        size: size as u64,
                    });
                }
                let blob = repo.find_blob(oid).map_err(|e| io(path, e))?;
                Ok(blob.content().to_vec())
            }
        }
    }
}
