//! Read-only file trees: the one way the fleet model and the renderer see files.
//!
//! The renderer reads through [`FileTree`] so the same code renders from a directory
//! on disk today and from a Git tree object later. Paths are [`RepoPath`]s: relative,
//! normalised, and unable to leave the tree, so `..` escapes, absolute paths and
//! symlinks pointing outside are errors before any byte is read.
//!
//! Symlinks are resolved here, once, by [`resolve_in`] for every backing store: a
//! working tree ([`DirTree`]) and a Git commit (`source::GitTree`) only tell it what
//! each directory entry is, so a checkout and the object store agree on every path
//! (directory links, chains, loops, dangling links and links leaving the tree). Only
//! regular files are ever opened: FIFOs, devices, sockets and Git submodules are
//! refused by name before any read, so none can block a build.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Resolving the path followed more than [`MAX_SYMLINK_HOPS`] symlinks: a loop, or
    /// a chain too long to be anything else.
    #[error(
        "{0}: too many levels of symbolic links (more than {MAX_SYMLINK_HOPS}); break the symlink loop or shorten the chain"
    )]
    SymlinkLoop(String),
    /// A symlink read on behalf of one directory (an app) resolves outside it.
    #[error(
        "{path}: symlink leaves the app: it resolves to {real}, outside {dir}; copy the file into {dir} instead"
    )]
    SymlinkLeaves {
        /// The path as given.
        path: String,
        /// Where its symlinks lead.
        real: String,
        /// The directory it must stay in.
        dir: String,
    },
    /// The path names something that is neither a regular file nor a directory.
    #[error(
        "{path}: is {what}, not a regular file; only regular files are read, replace it with one"
    )]
    NotRegular {
        /// The path.
        path: String,
        /// What it is (`a FIFO (named pipe)`, `a Git submodule`, ...).
        what: String,
    },
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
        // The common case, a plain relative name: no need to re-split `self`, whose
        // length grows with the depth of the tree.
        if !rel.is_empty() && rel.split('/').all(|p| !matches!(p, "" | "." | "..")) {
            return Ok(RepoPath(if self.0.is_empty() {
                rel.to_string()
            } else {
                format!("{}/{rel}", self.0)
            }));
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
    /// Anything but a directory, after symlinks are followed. Only regular files can be
    /// read: a FIFO, device, socket or submodule is a `File` here so the reader names
    /// it, and [`FileTree::read`] refuses it with [`TreeError::NotRegular`].
    File,
    /// A directory.
    Dir,
}

/// Most symlinks followed while resolving one path. The same value as Linux's
/// `MAXSYMLINKS` (40), so a checkout and the Git object store refuse the same chains,
/// and a loop ends with an error instead of spinning.
pub const MAX_SYMLINK_HOPS: usize = 40;

/// One directory entry as stored, before symlinks are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink and its target, as written.
    Symlink(String),
    /// Anything else, described for an error message (`a FIFO (named pipe)`).
    Special(&'static str),
}

/// A backing store seen one directory entry at a time: all [`resolve_in`] needs, so
/// every store resolves symlinks with the same code.
pub trait RawTree {
    /// How the store names a directory or file it has found (a real path on disk, an
    /// object id in Git).
    type Id: Clone;
    /// The tree's root directory.
    fn root_id(&self) -> Self::Id;
    /// The entry `name` of directory `dir`, or `None` if there is none. `path` is the
    /// path being resolved, for error messages.
    fn entry(
        &self,
        dir: &Self::Id,
        name: &str,
        path: &RepoPath,
    ) -> Result<Option<(RawKind, Self::Id)>, TreeError>;

    /// The state [`resolve_in`] reached after the directory `logical` (a path as given,
    /// not yet resolved), if the store keeps one. Stores that cannot change (a Git
    /// commit) keep them, so a lookup starts from its parent directory instead of the
    /// root: resolving costs O(1) entry lookups, not one per component.
    fn cached_dir(&self, logical: &str) -> Option<DirState<Self::Id>> {
        let _ = logical;
        None
    }

    /// Offers the state reached after the directory `logical` for [`RawTree::cached_dir`].
    fn cache_dir(&self, logical: &str, state: &DirState<Self::Id>) {
        let _ = (logical, state);
    }
}

/// One real directory on the way of a resolution, linked to its parent so `..` and
/// caching cost nothing.
#[derive(Debug)]
struct RealDir<Id> {
    id: Id,
    real: String,
    parent: Option<Arc<RealDir<Id>>>,
}

/// Where [`resolve_in`] stands after a directory: the real directory (`None` for the
/// root) and how many symlinks it followed to get there.
#[derive(Debug)]
pub struct DirState<Id> {
    dir: Option<Arc<RealDir<Id>>>,
    hops: usize,
}

impl<Id> Clone for DirState<Id> {
    fn clone(&self) -> Self {
        DirState {
            dir: self.dir.clone(),
            hops: self.hops,
        }
    }
}

/// A path with every symlink followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<Id> {
    /// The symlink-free path.
    pub real: RepoPath,
    /// What is there: never [`RawKind::Symlink`].
    pub kind: RawKind,
    /// The store's id for it.
    pub id: Id,
}

/// Resolves `path` in `tree` as the kernel would, with the tree as root: symlink
/// targets are read relative to the link's directory (`..` in a target climbs the real
/// directory), at most [`MAX_SYMLINK_HOPS`] links are followed, and a target that is
/// absolute or climbs above the root is [`TreeError::SymlinkEscapes`], even when
/// dangling. Nothing there (a missing entry, a dangling link, a file used as a
/// directory) is `Ok(None)`. Costs one entry lookup per component.
pub fn resolve_in<T: RawTree + ?Sized>(
    tree: &T,
    path: &RepoPath,
) -> Result<Option<Resolved<T::Id>>, TreeError> {
    let root = tree.root_id();
    let given = path.as_str();
    if given.is_empty() {
        return Ok(Some(Resolved {
            real: RepoPath::root(),
            kind: RawKind::Dir,
            id: root,
        }));
    }
    // Start from the deepest cached directory on the way: usually the parent, found
    // without scanning the rest of the path.
    let mut state = DirState { dir: None, hops: 0 };
    let mut start = 0;
    let mut end = given.len();
    while let Some(slash) = given[..end].rfind('/') {
        if let Some(cached) = tree.cached_dir(&given[..slash]) {
            state = cached;
            start = slash + 1;
            break;
        }
        end = slash;
    }
    // Components still to walk, last first, each with the byte offset where it ends in
    // `given` (symlink target components, pushed above them, have none).
    let mut pending: Vec<(String, Option<usize>)> = Vec::new();
    let mut at = given.len();
    for part in given[start..].rsplit('/') {
        pending.push((part.to_string(), Some(at)));
        at = at.saturating_sub(part.len() + 1);
    }
    // The given prefix whose state is reached when the pending targets run out.
    let mut boundary: Option<usize> = None;
    loop {
        if let Some(b) = boundary
            && pending.last().is_none_or(|(_, end)| end.is_some())
        {
            // A given component is fully resolved, and it is a directory.
            tree.cache_dir(&given[..b], &state);
            boundary = None;
        }
        let Some((part, end)) = pending.pop() else {
            break;
        };
        if end.is_some() {
            boundary = end;
        }
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                let Some(dir) = state.dir.take() else {
                    return Err(TreeError::SymlinkEscapes(path.to_string()));
                };
                state.dir = dir.parent.clone();
                continue;
            }
            _ => {}
        }
        let dir_id = state.dir.as_ref().map_or(&root, |d| &d.id);
        let Some((kind, id)) = tree.entry(dir_id, &part, path)? else {
            return Ok(None);
        };
        let real_of = |dir: &Option<Arc<RealDir<T::Id>>>| match dir {
            Some(d) => format!("{}/{part}", d.real),
            None => part.clone(),
        };
        match kind {
            RawKind::Dir => {
                let real = real_of(&state.dir);
                state.dir = Some(Arc::new(RealDir {
                    id,
                    real,
                    parent: state.dir.take(),
                }));
            }
            RawKind::Symlink(target) => {
                state.hops += 1;
                if state.hops > MAX_SYMLINK_HOPS {
                    return Err(TreeError::SymlinkLoop(path.to_string()));
                }
                if target.starts_with('/') || target.starts_with('\\') {
                    return Err(TreeError::SymlinkEscapes(path.to_string()));
                }
                if target.is_empty() || target.contains('\0') {
                    return Ok(None);
                }
                pending.extend(target.rsplit('/').map(|t| (t.to_string(), None)));
            }
            kind => {
                // A file used as a directory (`file/x`, or a link target `file/`).
                if !pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Resolved {
                    real: RepoPath(real_of(&state.dir)),
                    kind,
                    id,
                }));
            }
        }
    }
    Ok(Some(match state.dir {
        Some(d) => Resolved {
            real: RepoPath(d.real.clone()),
            kind: RawKind::Dir,
            id: d.id.clone(),
        },
        None => Resolved {
            real: RepoPath::root(),
            kind: RawKind::Dir,
            id: root,
        },
    }))
}

/// The store's id of the directory at `path`, resolved as `found`: what every tree's
/// `list` needs before it reads the directory.
pub fn resolved_dir<Id>(found: Option<Resolved<Id>>, path: &RepoPath) -> Result<Id, TreeError> {
    let r = found.ok_or_else(|| TreeError::NotFound(path.to_string()))?;
    if r.kind != RawKind::Dir {
        return Err(TreeError::WrongKind {
            path: path.to_string(),
            message: "is a file, expected a directory".into(),
        });
    }
    Ok(r.id)
}

/// The store's id of the regular file at `path`, resolved as `found`: what every
/// tree's `read` needs before it reads the bytes.
pub fn resolved_file<Id>(found: Option<Resolved<Id>>, path: &RepoPath) -> Result<Id, TreeError> {
    let r = found.ok_or_else(|| TreeError::NotFound(path.to_string()))?;
    check_readable(path, &r.kind)?;
    Ok(r.id)
}

/// The [`EntryKind`] of a resolved entry.
pub fn entry_kind(kind: &RawKind) -> EntryKind {
    match kind {
        RawKind::Dir => EntryKind::Dir,
        _ => EntryKind::File,
    }
}

/// The error for reading something that is not a regular file, if it is not one.
fn check_readable(path: &RepoPath, kind: &RawKind) -> Result<(), TreeError> {
    match kind {
        RawKind::File => Ok(()),
        RawKind::Dir => Err(TreeError::WrongKind {
            path: path.to_string(),
            message: "is a directory, expected a file".into(),
        }),
        RawKind::Special(what) => Err(TreeError::NotRegular {
            path: path.to_string(),
            what: what.to_string(),
        }),
        RawKind::Symlink(_) => Err(TreeError::SymlinkLoop(path.to_string())),
    }
}

/// A read-only tree of files: a directory on disk or a Git tree object.
pub trait FileTree: Send + Sync {
    /// What `path` is, or `None` if nothing is there.
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError>;
    /// The names in directory `path`, sorted.
    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError>;
    /// The bytes of file `path`, refusing files over [`MAX_FILE_BYTES`] and anything
    /// that is not a regular file.
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError>;

    /// `path` with every symlink followed (`None` when nothing is there). Trees without
    /// symlinks return the path itself.
    fn real_path(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        Ok(self.kind(path)?.map(|_| path.clone()))
    }

    /// The file as UTF-8 text.
    fn read_text(&self, path: &RepoPath) -> Result<String, TreeError> {
        String::from_utf8(self.read(path)?).map_err(|_| TreeError::NotText(path.to_string()))
    }
}

/// A directory on disk, seen as a tree. Symlinks are followed only while they stay
/// inside the directory, exactly as [`resolve_in`] says (the same rules as for a Git
/// commit), and only regular files are opened.
///
/// A `DirTree` is a view for one command (`validate`, `render`, `build`): the
/// directories it has resolved are kept for its lifetime, so a lookup starts from its
/// parent directory and a deep tree costs linear time, as from Git. Open a new one to
/// see later changes to the directory structure (file contents are always read fresh).
#[derive(Debug)]
pub struct DirTree {
    root: PathBuf,
    resolved: Mutex<std::collections::HashMap<String, DirState<PathBuf>>>,
}

impl Clone for DirTree {
    fn clone(&self) -> Self {
        DirTree {
            root: self.root.clone(),
            resolved: Mutex::new(std::collections::HashMap::new()),
        }
    }
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
        Ok(DirTree {
            root,
            resolved: Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn resolve(&self, path: &RepoPath) -> Result<Option<Resolved<PathBuf>>, TreeError> {
        resolve_in(self, path)
    }
}

fn special_kind(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    let _ = ft;
    "a special file"
}

impl RawTree for DirTree {
    type Id = PathBuf;

    fn root_id(&self) -> PathBuf {
        self.root.clone()
    }

    fn entry(
        &self,
        dir: &PathBuf,
        name: &str,
        path: &RepoPath,
    ) -> Result<Option<(RawKind, PathBuf)>, TreeError> {
        let full = dir.join(name);
        // lstat, never stat or open: the type is known before anything is opened.
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(TreeError::Io {
                    path: path.to_string(),
                    message: e.to_string(),
                });
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            let target = std::fs::read_link(&full).map_err(|e| TreeError::Io {
                path: path.to_string(),
                message: e.to_string(),
            })?;
            RawKind::Symlink(target.to_string_lossy().into_owned())
        } else if ft.is_dir() {
            RawKind::Dir
        } else if ft.is_file() {
            RawKind::File
        } else {
            RawKind::Special(special_kind(&ft))
        };
        Ok(Some((kind, full)))
    }

    fn cached_dir(&self, logical: &str) -> Option<DirState<PathBuf>> {
        self.resolved.lock().ok()?.get(logical).cloned()
    }

    fn cache_dir(&self, logical: &str, state: &DirState<PathBuf>) {
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(logical.to_string(), state.clone());
        }
    }
}

/// Opens a file known to be regular without following a link and without blocking
/// (a file swapped for a FIFO after the check must not hang the read), checks again
/// that it is regular, and reads at most [`MAX_FILE_BYTES`].
fn read_regular(real: &Path, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
    use std::io::Read;
    let io = |e: std::io::Error| TreeError::Io {
        path: path.to_string(),
        message: e.to_string(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    let file = opts.open(real).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(TreeError::NotRegular {
            path: path.to_string(),
            what: special_kind(&meta.file_type()).into(),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(TreeError::TooLarge {
            path: path.to_string(),
            size: meta.len(),
        });
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(io)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(TreeError::TooLarge {
            path: path.to_string(),
            size: out.len() as u64,
        });
    }
    Ok(out)
}

impl FileTree for DirTree {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        Ok(self.resolve(path)?.map(|r| entry_kind(&r.kind)))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        let dir = resolved_dir(self.resolve(path)?, path)?;
        let io = |e: std::io::Error| TreeError::Io {
            path: path.to_string(),
            message: e.to_string(),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        let file = resolved_file(self.resolve(path)?, path)?;
        read_regular(&file, path)
    }

    fn real_path(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        Ok(self.resolve(path)?.map(|r| r.real))
    }
}

/// A tree whose symlinks may not lead out of one directory (an app's): any path whose
/// symlinks resolve outside `dir` is [`TreeError::SymlinkLeaves`], so one app can never
/// read another app's files (its secrets included) through a link. Paths without
/// symlinks are passed through unchanged: where plain paths may go is the kustomize
/// loader's business.
pub struct ConfinedTree<'a> {
    inner: &'a dyn FileTree,
    dir: RepoPath,
}

impl<'a> ConfinedTree<'a> {
    /// Confines the symlinks of `inner` to `dir`.
    pub fn new(inner: &'a dyn FileTree, dir: RepoPath) -> Self {
        ConfinedTree { inner, dir }
    }

    fn check(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        let real = self.inner.real_path(path)?;
        if let Some(r) = &real
            && r != path
            && !r.starts_with(&self.dir)
        {
            return Err(TreeError::SymlinkLeaves {
                path: path.to_string(),
                real: r.to_string(),
                dir: self.dir.to_string(),
            });
        }
        Ok(real)
    }
}

impl FileTree for ConfinedTree<'_> {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        self.check(path)?;
        self.inner.kind(path)
    }
    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        self.check(path)?;
        self.inner.list(path)
    }
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        self.check(path)?;
        self.inner.read(path)
    }
    fn real_path(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        self.check(path)
    }
}

/// Wraps a tree and records every file read through it, so a release of an app can be
/// found later by diffing only the paths its rendering depended on, and every path asked
/// about in any way (read, kind, listing, real path), so a rendering can be found again
/// by what those paths hold ([`crate::render::cache`]).
pub struct RecordingTree<'a> {
    inner: &'a dyn FileTree,
    read: Mutex<BTreeSet<RepoPath>>,
    queried: Mutex<BTreeSet<RepoPath>>,
}

impl<'a> RecordingTree<'a> {
    /// Starts recording reads of `inner`.
    pub fn new(inner: &'a dyn FileTree) -> Self {
        RecordingTree {
            inner,
            read: Mutex::new(BTreeSet::new()),
            queried: Mutex::new(BTreeSet::new()),
        }
    }

    /// The files read so far.
    pub fn files_read(&self) -> BTreeSet<RepoPath> {
        self.read.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every path asked about so far, whatever the answer (a missing file's path too:
    /// its appearance would change what the caller does).
    pub fn paths_queried(&self) -> BTreeSet<RepoPath> {
        self.queried.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn note(&self, path: &RepoPath) {
        if let Ok(mut set) = self.queried.lock()
            && !set.contains(path)
        {
            set.insert(path.clone());
        }
    }
}

impl FileTree for RecordingTree<'_> {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        self.note(path);
        self.inner.kind(path)
    }
    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        self.note(path);
        self.inner.list(path)
    }
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        self.note(path);
        if let Ok(mut set) = self.read.lock() {
            set.insert(path.clone());
        }
        self.inner.read(path)
    }
    fn real_path(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        self.note(path);
        self.inner.real_path(path)
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
