//! Read-only file trees: the one way the fleet model and the renderer see files.
//!
//! The renderer reads through [`FileTree`] so the same code renders from a directory
//! on disk today and from a Git tree object later. Paths are [`RepoPath`]s: relative,
//! normalised, and unable to leave the tree, so `..` escapes, absolute paths and
//! symlinks pointing outside are errors before any byte is read.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::yaml::MAX_FILE_BYTES;

/// A normalised path inside a tree: no leading `/`, no `.` or `..` parts, `/` separated.
/// The empty path is the tree's root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RepoPath(String);

/// Why a path or a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The path climbs above the root with `..` or is absolute.
    #[error("{path}: path '{given}' leaves the repository; use a path inside it")]
    Escapes {
        /// Where the path was written (the referring file or directory).
        path: String,
        /// The path as written.
        given: String,
    },
    /// A symlink inside the tree points outside it.
    #[error("{0}: symlink points outside the repository; replace it with the file itself")]
    SymlinkEscapes(String),
    /// Nothing exists at the path.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// A file was expected but the path is a directory, or the reverse.
    #[error("{path}: {message}")]
    WrongKind {
        /// The path.
        path: String,
        /// What was expected.
        message: String,
    },
    /// The file is larger than the parse cap.
    #[error(
        "{path}: file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for repository files"
    )]
    TooLarge {
        /// The path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{0}: file is not UTF-8 text")]
    NotText(String),
    /// An I/O error from the backing store.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error, as text.
        message: String,
    },
}

impl RepoPath {
    /// The root of the tree.
    pub fn root() -> Self {
        RepoPath(String::new())
    }

    /// Parses a path written relative to the tree root.
    pub fn new(given: &str) -> Result<Self, TreeError> {
        RepoPath::root().join(given)
    }

    /// Resolves `rel` against this directory. Absolute paths and `..` above the root are
    /// refused.
    pub fn join(&self, rel: &str) -> Result<Self, TreeError> {
        let escape = || TreeError::Escapes {
            path: self.display_dir(),
            given: rel.to_string(),
        };
        if rel.starts_with('/') || rel.starts_with('\\') || rel.contains('\0') {
            return Err(escape());
        }
        let mut parts: Vec<&str> = if self.0.is_empty() {
            Vec::new()
        } else {
            self.0.split('/').collect()
        };
        for part in rel.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(escape());
                    }
                }
                p => parts.push(p),
            }
        }
        Ok(RepoPath(parts.join("/")))
    }

    /// The path as a string (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> RepoPath {
        match self.0.rfind('/') {
            Some(i) => RepoPath(self.0[..i].to_string()),
            None => RepoPath::root(),
        }
    }

    /// The last component (empty for the root).
    pub fn file_name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RepoPath) -> bool {
        other.0.is_empty()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    fn display_dir(&self) -> String {
        if self.0.is_empty() {
            ".".into()
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_dir())
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (or a symlink to one inside the tree).
    File,
    /// A directory.
    Dir,
}

/// A read-only tree of files: a directory on disk or a Git tree object.
pub trait FileTree: Send + Sync {
    /// What `path` is, or `None` if nothing is there.
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError>;
    /// The names in directory `path`, sorted.
    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError>;
    /// The bytes of file `path`, refusing files over [`MAX_FILE_BYTES`].
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError>;

    /// The file as UTF-8 text.
    fn read_text(&self, path: &RepoPath) -> Result<String, TreeError> {
        String::from_utf8(self.read(path)?).map_err(|_| TreeError::NotText(path.to_string()))
    }
}

/// A directory on disk, seen as a tree. Symlinks are followed only while they stay
/// inside the directory.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    /// Opens `root`, which must be an existing directory.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, TreeError> {
        let given = root.as_ref();
        let root = given.canonicalize().map_err(|e| TreeError::Io {
            path: given.display().to_string(),
            message: e.to_string(),
        })?;
        if !root.is_dir() {
            return Err(TreeError::WrongKind {
                path: given.display().to_string(),
                message: "not a directory".into(),
            });
        }
        Ok(DirTree { root })
    }

    /// Resolves a repository path to a real path, refusing symlinks that leave the root.
    fn resolve(&self, path: &RepoPath) -> Result<Option<PathBuf>, TreeError> {
        let joined = if path.as_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(path.as_str())
        };
        match joined.canonicalize() {
            Ok(real) => {
                if real.starts_with(&self.root) {
                    Ok(Some(real))
                } else {
                    Err(TreeError::SymlinkEscapes(path.to_string()))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink whose target would be outside is still an escape.
                if let Ok(target) = std::fs::read_link(&joined) {
                    let abs = joined.parent().unwrap_or(&self.root).join(target);
                    if !abs.starts_with(&self.root) {
                        return Err(TreeError::SymlinkEscapes(path.to_string()));
                    }
                }
                Ok(None)
            }
            Err(e) => Err(TreeError::Io {
                path: path.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

impl FileTree for DirTree {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        Ok(self.resolve(path)?.map(|p| {
            if p.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            }
        }))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        let real = self
            .resolve(path)?
            .ok_or_else(|| TreeError::NotFound(path.to_string()))?;
        let io = |e: std::io::Error| TreeError::Io {
            path: path.to_string(),
            message: e.to_string(),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&real).map_err(io)? {
            let entry = entry.map_err(io)?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        let real = self
            .resolve(path)?
            .ok_or_else(|| TreeError::NotFound(path.to_string()))?;
        let io = |e: std::io::Error| TreeError::Io {
            path: path.to_string(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(&real).map_err(io)?;
        if meta.is_dir() {
            return Err(TreeError::WrongKind {
                path: path.to_string(),
                message: "is a directory, expected a file".into(),
            });
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(TreeError::TooLarge {
                path: path.to_string(),
                size: meta.len(),
            });
        }
        std::fs::read(&real).map_err(io)
    }
}

/// Wraps a tree and records every file read through it, so a release of an app can be
/// found later by diffing only the paths its rendering depended on.
pub struct RecordingTree<'a> {
    inner: &'a dyn FileTree,
    read: Mutex<BTreeSet<RepoPath>>,
}

impl<'a> RecordingTree<'a> {
    /// Starts recording reads of `inner`.
    pub fn new(inner: &'a dyn FileTree) -> Self {
        RecordingTree {
            inner,
            read: Mutex::new(BTreeSet::new()),
        }
    }

    /// The files read so far.
    pub fn files_read(&self) -> BTreeSet<RepoPath> {
        self.read.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl FileTree for RecordingTree<'_> {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        self.inner.kind(path)
    }
    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        self.inner.list(path)
    }
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        if let Ok(mut set) = self.read.lock() {
            set.insert(path.clone());
        }
        self.inner.read(path)
    }
}

/// An in-memory tree, for tests and for rendering generated inputs without touching disk.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    files: std::collections::BTreeMap<RepoPath, Vec<u8>>,
}

impl MemTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file; its parent directories exist implicitly.
    pub fn insert(&mut self, path: &str, content: impl Into<Vec<u8>>) -> &mut Self {
        if let Ok(p) = RepoPath::new(path) {
            self.files.insert(p, content.into());
        }
        self
    }
}

impl FileTree for MemTree {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        if self.files.contains_key(path) {
            return Ok(Some(EntryKind::File));
        }
        let is_dir = self.files.keys().any(|k| k != path && k.starts_with(path));
        Ok(is_dir.then_some(EntryKind::Dir))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        let mut names = BTreeSet::new();
        for k in self.files.keys() {
            if k != path && k.starts_with(path) {
                let rest = if path.as_str().is_empty() {
                    k.as_str()
                } else {
                    &k.as_str()[path.as_str().len() + 1..]
                };
                if let Some(first) = rest.split('/').next() {
                    names.insert(first.to_string());
                }
            }
        }
        if names.is_empty() && !path.as_str().is_empty() {
            return Err(TreeError::NotFound(path.to_string()));
        }
        Ok(names.into_iter().collect())
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        match self.files.get(path) {
            Some(b) if b.len() as u64 > MAX_FILE_BYTES => Err(TreeError::TooLarge {
                path: path.to_string(),
                size: b.len() as u64,
            }),
            Some(b) => Ok(b.clone()),
            None => match self.kind(path)? {
                Some(EntryKind::Dir) => Err(TreeError::WrongKind {
                    path: path.to_string(),
                    message: "is a directory, expected a file".into(),
                }),
                _ => Err(TreeError::NotFound(path.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_normalises_and_refuses_escapes() {
        let base = RepoPath::new("apps/web/overlays/prod").unwrap();
        assert_eq!(base.join("../../base").unwrap().as_str(), "apps/web/base");
        assert_eq!(
            base.join("./a//b").unwrap().as_str(),
            "apps/web/overlays/prod/a/b"
        );
        assert!(base.join("../../../../../etc").is_err());
        assert!(base.join("/etc/passwd").is_err());
    }

    #[test]
    fn mem_tree_lists_directories() {
        let mut t = MemTree::new();
        t.insert("a/b.yaml", "x").insert("a/c/d.yaml", "y");
        assert_eq!(
            t.list(&RepoPath::new("a").unwrap()).unwrap(),
            vec!["b.yaml", "c"]
        );
        assert_eq!(
            t.kind(&RepoPath::new("a/c").unwrap()).unwrap(),
            Some(EntryKind::Dir)
        );
    }
}
