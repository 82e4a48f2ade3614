//! Renderings kept by their inputs, so nothing is rendered twice for the same inputs:
//! an agent's pass over an unchanged repository, and the planner's renders of every
//! release, find what an earlier pass rendered instead of rendering again.
//!
//! Rendering is a pure function of what the tree answers when asked about a path
//! (its bytes, its kind, a directory's names, where its symlinks lead) and of the
//! fleet model's values (`fleet.yaml`'s settings, the app's `app.yaml`, the cluster's
//! file), plus the `helm` binary for charts. The key of a rendering is made of exactly
//! those, without reading any file's content:
//!
//! - **the model**: sha256 of the fleet's settings and the app as loaded (their whole
//!   `Debug` form: every field, whether or not today's renderer uses it, so a field a
//!   later renderer reads cannot be forgotten here), and of what the rendering reads of
//!   the cluster ([`super::cluster_inputs`]): all of it when the rendering has
//!   templates, otherwise the overlay it chooses and a chart's values and version;
//! - **the files**: the paths an earlier rendering of the app from the same overlay
//!   asked about in any way ([`crate::tree::RecordingTree::paths_queried`]), each with
//!   what it resolves to at the commit now: its real path (symlinks followed), its kind
//!   and its Git object id (a blob for a file, a tree for a directory, so a directory's
//!   listing is covered), or that nothing is there;
//! - **helm**: the path, size, modification time and inode of the `helm` binary a
//!   chart would be rendered with, looked at again at most once a second.
//!
//! Why that is complete: the renderer sees the repository only through the tree it is
//! given, and the cluster only through what [`super::cluster_inputs`] writes out (a
//! rendering finds whether it has templates by asking the tree, so one that had none
//! has none again while its paths answer the same). Given the same model and helm, its
//! first question about the tree is the same;
//! if every path it asked last time answers the same now, each next question is the
//! same too, and so is the result. A path it did not ask about cannot have changed its
//! result, and a path it would ask only because an earlier answer changed is reached
//! only through a path whose id changed, which changes the key. Object ids are the
//! content (a blob id is the hash of the bytes, a tree id that of the names, modes and
//! ids below it), so equal ids are equal answers.
//!
//! A key is remembered by what it was made from (the tree's root id, the model's part
//! and the trace), so a pass over the commit of the last pass resolves no path again:
//! a Git tree id is the whole content below it.
//!
//! So a rendering is shared by the clusters it is the same for: an app without
//! templates, on clusters that choose the same overlay, is rendered once for all of
//! them, by the agent serving them, by the planner looking at every cluster's release
//! and by the web view.
//!
//! What is not cached: renderings from a tree without Git ids (a plain directory: its
//! files could only be keyed by reading them), failed renderings (a failure may be
//! transient, such as a template's time budget on a loaded machine), and any lookup
//! whose key cannot be made (an unreadable object): those render as before.
//!
//! Memory is bounded: a rendering's objects are kept packed as JSON
//! ([`super::objects`]), parsed again only in the copy handed out and only when read,
//! so an app found in sync costs its JSON and no more; entries are weighed (a
//! rendering by its JSON, a hash-only entry by its paths) and the least recently used
//! are dropped past the budget. Planner lookups keep only the content hash and the
//! files read (what release detection needs), never the objects, so rendering history
//! does not grow the cache by the size of every release.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use git2::Oid;
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};

use super::{Asked, Objects, RenderError, Rendered, cluster_inputs, render_traced};
use crate::fleet::{App, Cluster, Fleet, choose_overlay};
use crate::tree::{FileTree, RawKind, RawTree, RepoPath, resolve_in};

/// The budget the agent gives its cache: the JSON size of the renderings kept (how
/// they are kept; a rendering whose JSON would not read back exactly is kept parsed,
/// a few times that size).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// How many different sets of paths are remembered per [`Slot`]: a release that adds
/// or removes a file asks about other paths than its neighbours.
const TRACES_PER_SLOT: usize = 8;

/// How many keys [`State::keys`] remembers before it starts again (about 100 bytes
/// each): the apps and clusters an agent serves, at a dozen commits of 1,250 apps. Past
/// it, the next pass makes its keys again.
const KEYS_KEPT: usize = 1 << 14;

/// What a lookup needs kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The content hash and files read only (the planner): [`Rendered::objects`] of
    /// the result is empty.
    Hash,
    /// The objects too (the agent applies them).
    Objects,
    /// The head's rendering for the planner: as [`Keep::Hash`], except for a cluster
    /// whose objects were asked for before (an agent's own cluster), where the
    /// objects are kept too, so the apply that follows in the same pass renders
    /// nothing again. Renderings of older commits stay [`Keep::Hash`].
    Head,
}

/// Hits and misses of a [`RenderCache`] so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookups {
    /// Renderings found.
    pub hits: u64,
    /// Renderings made (the lookups that could not be keyed included).
    pub misses: u64,
}

/// Renderings by their inputs, shared by the clusters of one agent process. See the
/// module documentation for the key.
pub struct RenderCache {
    max_bytes: usize,
    state: Mutex<State>,
    hits: Counter,
    misses: Counter,
}

/// Where the traces of renderings are kept: (app, overlay, cluster) for renderings
/// with templates, whose questions may differ from cluster to cluster, and (app,
/// overlay, "") for the others, the same questions for every cluster choosing the
/// overlay.
type Slot = (String, String, String);

/// What one rendering asked, with a number no other trace of this cache has (a key
/// made from it is remembered by that number).
struct Trace {
    serial: u64,
    asked: Asked,
}

/// What a key is remembered by: the tree's root (a Git tree id, which is its whole
/// content), the model's part of the key and the trace's serial. Those give the same
/// key every time, so a pass over an unchanged commit resolves no path.
type KeyInputs = (Oid, [u8; 32], u64);

#[derive(Default)]
struct State {
    /// What recent renderings asked, newest first, by [`Slot`].
    traces: HashMap<Slot, Vec<Arc<Trace>>>,
    /// The serial of the next trace.
    next_serial: u64,
    /// Keys made, by what they were made from (at most [`KEYS_KEPT`]).
    keys: HashMap<KeyInputs, [u8; 32]>,
    entries: HashMap<[u8; 32], Entry>,
    /// Entries by last use (a tick), oldest first.
    by_use: BTreeMap<u64, [u8; 32]>,
    tick: u64,
    bytes: usize,
    /// Renderings made, by app.
    misses_by_app: HashMap<String, u64>,
    /// The clusters whose renderings were looked up with their objects (the ones the
    /// agent applies to): a rendering for them keeps its objects even when the
    /// planner made it, so the apply that follows in the same pass finds it.
    applied_to: HashSet<String>,
}

struct Entry {
    rendered: Arc<Rendered>,
    /// Whether `rendered.objects` holds the objects ([`Keep::Objects`]).
    objects: bool,
    weight: usize,
    used: u64,
}

impl RenderCache {
    /// A cache keeping at most about `max_bytes` of renderings (0 keeps nothing: every
    /// lookup renders).
    pub fn new(max_bytes: usize) -> RenderCache {
        RenderCache {
            max_bytes,
            state: Mutex::new(State::default()),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    /// Counts hits and misses in `hits` and `misses` (the agent's metrics) instead of
    /// counters of its own.
    pub fn counting_into(mut self, hits: Counter, misses: Counter) -> RenderCache {
        self.hits = hits;
        self.misses = misses;
        self
    }

    /// Hits and misses so far.
    pub fn lookups(&self) -> Lookups {
        Lookups {
            hits: self.hits.get(),
            misses: self.misses.get(),
        }
    }

    /// How many times `app` was rendered by this cache (for any cluster): what a test
    /// asserts to show which apps a change made the agent render.
    pub fn misses_of(&self, app: &str) -> u64 {
        self.lock().misses_by_app.get(app).copied().unwrap_or(0)
    }

    /// `app` rendered for `cluster` from `tree` (a tree whose ids are Git object ids),
    /// from the cache when the same inputs were rendered before, otherwise rendered now
    /// and kept. With [`Keep::Hash`] the result's objects are empty, and with
    /// [`Keep::Head`] too unless the cluster's objects were asked for before.
    pub fn render<T>(
        &self,
        tree: &T,
        fleet: &Fleet,
        app: &App,
        cluster: &Cluster,
        keep: Keep,
    ) -> Result<Arc<Rendered>, RenderError>
    where
        T: FileTree + RawTree<Id = Oid>,
    {
        let model = ModelDigest::of(fleet, app, cluster);
        let overlay = choose_overlay(app, cluster);
        // Traces of renderings with templates are the cluster's own (a template may
        // change what is asked, cluster by cluster); the others serve every cluster
        // that chooses the overlay.
        let own_slot: Slot = (app.name.clone(), overlay.to_string(), cluster.name.clone());
        let shared_slot: Slot = (app.name.clone(), overlay.to_string(), String::new());
        let keep = {
            let mut state = self.lock();
            if keep == Keep::Objects {
                if !state.applied_to.contains(&cluster.name) {
                    state.applied_to.insert(cluster.name.clone());
                }
                Keep::Objects
            } else if keep == Keep::Head && state.applied_to.contains(&cluster.name) {
                Keep::Objects
            } else {
                Keep::Hash
            }
        };
        if self.max_bytes > 0 {
            let traces: Vec<Arc<Trace>> = {
                let state = self.lock();
                [&own_slot, &shared_slot]
                    .into_iter()
                    .filter_map(|slot| state.traces.get(slot))
                    .flatten()
                    .cloned()
                    .collect()
            };
            for trace in traces {
                let Some(key) = self.key(tree, &model, &trace) else {
                    continue;
                };
                if let Some(found) = self.find(&key, keep) {
                    self.hits.inc();
                    return Ok(found);
                }
            }
        }
        self.misses.inc();
        *self
            .lock()
            .misses_by_app
            .entry(app.name.clone())
            .or_default() += 1;
        let (mut rendered, asked) = render_traced(tree, fleet, app, cluster)?;
        if keep == Keep::Hash {
            rendered.objects = Objects::default();
        }
        if self.max_bytes == 0 {
            return Ok(Arc::new(rendered));
        }
        let trace = {
            let mut state = self.lock();
            state.next_serial += 1;
            Arc::new(Trace {
                serial: state.next_serial,
                asked,
            })
        };
        let slot = if trace.asked.templates {
            own_slot
        } else {
            shared_slot
        };
        let Some(key) = self.key(tree, &model, &trace) else {
            return Ok(Arc::new(rendered));
        };
        let objects = keep == Keep::Objects;
        let paths: usize = rendered.files_read.iter().map(|p| p.as_str().len()).sum();
        let mut weight = 256 + paths;
        // The cache keeps the objects packed, and the caller gets a copy of what is
        // kept: the parsed objects go now, not when the caller is done (a first pass
        // renders every app before it applies them).
        let kept = Arc::new(Rendered {
            objects: rendered.objects.packed(),
            ..rendered
        });
        if objects {
            weight += kept.objects.weight();
        }
        let handed_out = Arc::new((*kept).clone());
        self.insert(slot, trace, key, kept, objects, weight);
        Ok(handed_out)
    }

    /// The key of a rendering of `model` that asked `trace`, at `tree`: remembered by
    /// [`KeyInputs`], made by [`key_of`] the first time.
    fn key<T>(&self, tree: &T, model: &ModelDigest<'_>, trace: &Trace) -> Option<[u8; 32]>
    where
        T: FileTree + RawTree<Id = Oid>,
    {
        let model = model.with(trace.asked.templates);
        let inputs = (tree.root_id(), model, trace.serial);
        if let Some(key) = self.lock().keys.get(&inputs) {
            return Some(*key);
        }
        let key = key_of(tree, &model, &trace.asked.paths)?;
        let mut state = self.lock();
        if state.keys.len() >= KEYS_KEPT {
            state.keys.clear();
        }
        state.keys.insert(inputs, key);
        Some(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry under `key` if it holds what `keep` needs, marked as just used.
    fn find(&self, key: &[u8; 32], keep: Keep) -> Option<Arc<Rendered>> {
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        let entry = state.entries.get_mut(key)?;
        if keep == Keep::Objects && !entry.objects {
            return None;
        }
        let old = std::mem::replace(&mut entry.used, tick);
        // A rendering with objects is handed out as a copy of its own, so that the
        // objects it parses when read go when the caller is done with them.
        let found = if entry.objects {
            Arc::new((*entry.rendered).clone())
        } else {
            entry.rendered.clone()
        };
        state.by_use.remove(&old);
        state.by_use.insert(tick, *key);
        Some(found)
    }

    fn insert(
        &self,
        slot: Slot,
        trace: Arc<Trace>,
        key: [u8; 32],
        rendered: Arc<Rendered>,
        objects: bool,
        weight: usize,
    ) {
        if weight > self.max_bytes {
            return;
        }
        let mut state = self.lock();
        let traces = state.traces.entry(slot).or_default();
        traces.retain(|t| t.asked != trace.asked);
        traces.insert(0, trace);
        traces.truncate(TRACES_PER_SLOT);
        state.tick += 1;
        let tick = state.tick;
        if let Some(old) = state.entries.remove(&key) {
            state.by_use.remove(&old.used);
            state.bytes -= old.weight;
        }
        state.entries.insert(
            key,
            Entry {
                rendered,
                objects,
                weight,
                used: tick,
            },
        );
        state.by_use.insert(tick, key);
        state.bytes += weight;
        while state.bytes > self.max_bytes {
            let Some((_, oldest)) = state.by_use.pop_first() else {
                break;
            };
            if let Some(e) = state.entries.remove(&oldest) {
                state.bytes -= e.weight;
            }
        }
    }
}

/// The model's part of a key: the fleet's settings, the app and the helm binary hashed
/// once per lookup, finished with what a rendering reads of the cluster, which depends
/// on whether it has templates.
struct ModelDigest<'a> {
    settings_app_helm: Sha256,
    app: &'a App,
    cluster: &'a Cluster,
}

impl<'a> ModelDigest<'a> {
    fn of(fleet: &Fleet, app: &'a App, cluster: &'a Cluster) -> ModelDigest<'a> {
        let settings_and_app = fleet.app_digest(app, || {
            let mut h = Sha256::new();
            h.update(format!("{:?}\0{app:?}\0", fleet.settings).as_bytes());
            h.finalize().into()
        });
        let mut h = Sha256::new();
        h.update(settings_and_app);
        h.update(helm_identity());
        ModelDigest {
            settings_app_helm: h,
            app,
            cluster,
        }
    }

    /// sha256 of everything of the model a rendering with or without templates uses.
    fn with(&self, templates: bool) -> [u8; 32] {
        let mut h = self.settings_app_helm.clone();
        h.update(cluster_inputs(self.app, self.cluster, templates).as_bytes());
        h.finalize().into()
    }
}

/// How long [`helm_identity`] trusts its last look at the helm binary: a pass looks up
/// every app, and one look per second is enough to see an upgrade.
const HELM_LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// sha256 of the helm binary a chart would be rendered with, as the file it is now
/// (path, size, modification time, inode): replacing it (an upgrade) changes the key,
/// within a second (`HELM_LOOK_EVERY`). Also what a release history records, so that
/// hashes rendered with another helm are not reused.
pub fn helm_identity() -> [u8; 32] {
    static LAST: Mutex<Option<(std::time::Instant, [u8; 32])>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    match *last {
        Some((at, identity)) if now.duration_since(at) < HELM_LOOK_EVERY => identity,
        _ => {
            let identity = Sha256::digest(helm_file().as_bytes()).into();
            *last = Some((now, identity));
            identity
        }
    }
}

/// The helm binary's path and what [`helm_identity`] knows it by.
fn helm_file() -> String {
    use std::os::unix::fs::MetadataExt;
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let Some(path) = FOUND.get_or_init(super::helm::installed_helm) else {
        return "no helm".into();
    };
    match path.metadata() {
        Ok(m) => format!(
            "{} {} {} {} {}",
            path.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        ),
        Err(e) => format!("{}: {e}", path.display()),
    }
}

/// The key of a rendering of this model that asks about `trace`, at `tree`; `None`
/// when a path cannot be resolved for a reason that may not last (an I/O error).
fn key_of<T>(tree: &T, model: &[u8; 32], trace: &BTreeSet<RepoPath>) -> Option<[u8; 32]>
where
    T: FileTree + RawTree<Id = Oid>,
{
    let mut h = Sha256::new();
    h.update(model);
    for path in trace {
        h.update(path.as_str().as_bytes());
        h.update([0]);
        match resolve_in(tree, path) {
            Ok(None) => h.update(b"-"),
            Ok(Some(r)) => {
                match &r.kind {
                    RawKind::File => h.update(b"f"),
                    RawKind::Dir => h.update(b"d"),
                    RawKind::Symlink(t) => {
                        h.update(b"l");
                        h.update(t.as_bytes());
                    }
                    RawKind::Special(what) => {
                        h.update(b"s");
                        h.update(what.as_bytes());
                    }
                }
                h.update([0]);
                h.update(r.real.as_str().as_bytes());
                h.update([0]);
                h.update(r.id.as_bytes());
            }
            // Symlinks that loop or escape are refused the same way every time.
            Err(crate::tree::TreeError::Io { .. }) => return None,
            Err(e) => h.update(format!("!{e}").as_bytes()),
        }
        h.update([0]);
    }
    Some(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::GitTree;

    const BASE: &[(&str, &str)] = &[
        ("fleet.yaml", "stages: [prod]\nvalues: {tier: bronze}\n"),
        ("clusters/prod.yaml", "name: prod\nstage: prod\n"),
        (
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [prod]\n",
        ),
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/web/base/cm.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  tier: '{{values.tier}}'\n",
        ),
        (
            "apps/api/app.yaml",
            "namespace: api\ntargets:\n  stages: [prod]\n",
        ),
        (
            "apps/api/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/api/base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api\n",
        ),
        ("README.md", "the fleet\n"),
    ];

    /// A repository with one commit of `BASE` changed by `changes` (`None`: removed).
    fn commit(dir: &std::path::Path, changes: &[(&str, Option<&str>)]) -> GitTree {
        let repo = git2::Repository::init_bare(dir).unwrap();
        let mut files: std::collections::BTreeMap<&str, &str> = BASE.iter().copied().collect();
        for (path, content) in changes {
            match content {
                Some(c) => files.insert(path, c),
                None => files.remove(path),
            };
        }
        let mut index = git2::Index::new().unwrap();
        for (path, content) in &files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            let entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: path.len() as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).unwrap();
        }
        let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let oid = repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        GitTree::open(dir, oid).unwrap()
    }

    /// The key of `app` on `prod` at `changes`, for the paths its rendering at `BASE`
    /// asked about (what a lookup computes).
    fn key(app: &str, changes: &[(&str, Option<&str>)]) -> [u8; 32] {
        let base_dir = tempfile::tempdir().unwrap();
        let base = commit(base_dir.path(), &[]);
        let fleet = crate::fleet::load(&base).unwrap();
        let (a, c) = (fleet.app(app).unwrap(), fleet.cluster("prod").unwrap());
        let (_, trace) = render_traced(&base, &fleet, a, c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = commit(dir.path(), changes);
        let fleet = crate::fleet::load(&tree).unwrap();
        let (a, c) = (fleet.app(app).unwrap(), fleet.cluster("prod").unwrap());
        key_of(
            &tree,
            &ModelDigest::of(&fleet, a, c).with(trace.templates),
            &trace.paths,
        )
        .unwrap()
    }

    #[test]
    fn the_key_changes_with_every_input_and_not_with_other_files() {
        let same = key("web", &[]);
        assert_eq!(key("web", &[]), same, "the key is stable");
        let changed = [
            (
                "apps/web/base/cm.yaml.hbs",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web2\n"),
            ),
            (
                "apps/web/base/kustomization.yaml",
                Some("resources:\n- cm.yaml\nnamePrefix: x-\n"),
            ),
            (
                "clusters/prod.yaml",
                Some("name: prod\nstage: prod\nvalues: {tier: gold}\n"),
            ),
            (
                "apps/web/app.yaml",
                Some("namespace: web2\ntargets:\n  stages: [prod]\n"),
            ),
            (
                "fleet.yaml",
                Some("stages: [prod]\nvalues: {tier: silver}\n"),
            ),
            // A new file where the rendering looks (a template beside the others).
            ("apps/web/base/other.yaml.hbs", Some("x: 1\n")),
        ];
        for (path, content) in changed {
            assert_ne!(key("web", &[(path, content)]), same, "a change to {path}");
        }
        for (path, content) in [
            ("README.md", Some("changed\n")),
            (
                "apps/api/base/cm.yaml",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api2\n"),
            ),
            ("approvals/web.yaml", Some("[]\n")),
        ] {
            assert_eq!(key("web", &[(path, content)]), same, "a change to {path}");
        }
    }

    #[test]
    fn a_second_lookup_finds_the_rendering_and_hash_only_entries_keep_no_objects() {
        let dir = tempfile::tempdir().unwrap();
        let tree = commit(dir.path(), &[]);
        let fleet = crate::fleet::load(&tree).unwrap();
        let (a, c) = (fleet.app("web").unwrap(), fleet.cluster("prod").unwrap());
        let cache = RenderCache::new(DEFAULT_MAX_BYTES);
        let first = cache.render(&tree, &fleet, a, c, Keep::Hash).unwrap();
        assert!(first.objects.is_empty());
        let again = cache.render(&tree, &fleet, a, c, Keep::Hash).unwrap();
        assert_eq!(cache.lookups(), Lookups { hits: 1, misses: 1 });
        assert_eq!(again.content_hash, first.content_hash);
        // The objects were not kept: the agent's lookup renders them once.
        let full = cache.render(&tree, &fleet, a, c, Keep::Objects).unwrap();
        let rendered = crate::render::render(&tree, &fleet, a, c).unwrap();
        assert_eq!(*full, rendered);
        let full_again = cache.render(&tree, &fleet, a, c, Keep::Objects).unwrap();
        // Kept packed: the copy handed out knows its count and kinds unparsed, and
        // parses on its first read.
        assert_eq!(full_again.objects.packed_and_parsed(), (true, false));
        assert_eq!(full_again.objects.len(), rendered.objects.len());
        assert!(full_again.objects.any_kind(|_, k| k == "ConfigMap"));
        assert_eq!(full_again.objects.packed_and_parsed(), (true, false));
        assert_eq!(*full_again, rendered);
        assert_eq!(full_again.objects.packed_and_parsed(), (true, true));
        assert_eq!(cache.lookups(), Lookups { hits: 2, misses: 2 });
        assert_eq!((cache.misses_of("web"), cache.misses_of("api")), (2, 0));
    }

    #[test]
    fn a_key_is_made_once_per_tree_and_another_tree_is_looked_at_again() {
        let cache = RenderCache::new(DEFAULT_MAX_BYTES);
        let lookup = |changes: &[(&str, Option<&str>)]| {
            let dir = tempfile::tempdir().unwrap();
            let tree = commit(dir.path(), changes);
            let fleet = crate::fleet::load(&tree).unwrap();
            let (a, c) = (fleet.app("web").unwrap(), fleet.cluster("prod").unwrap());
            cache.render(&tree, &fleet, a, c, Keep::Objects).unwrap()
        };
        let first = lookup(&[]);
        lookup(&[]);
        assert_eq!(cache.lookups(), Lookups { hits: 1, misses: 1 });
        assert_eq!(cache.lock().keys.len(), 1, "the second lookup made no key");
        // A file the rendering read changed: another tree, whose key is made.
        let changed = lookup(&[(
            "apps/web/base/cm.yaml.hbs",
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n"),
        )]);
        assert_ne!(changed.content_hash, first.content_hash);
        assert_eq!(cache.lookups(), Lookups { hits: 1, misses: 2 });
        // A file it did not read changed: another tree too, found by its key.
        let same = lookup(&[("README.md", Some("changed\n"))]);
        assert_eq!(same.content_hash, first.content_hash);
        assert_eq!(cache.lookups(), Lookups { hits: 2, misses: 2 });
    }

    #[test]
    fn clusters_that_render_an_app_alike_share_one_rendering_and_no_others_do() {
        let dir = tempfile::tempdir().unwrap();
        let tree = commit(
            dir.path(),
            &[
                // Another prod cluster with values and labels of its own, and one whose
                // labels choose another overlay of api.
                (
                    "clusters/prod-2.yaml",
                    Some("name: prod-2\nstage: prod\nlabels: {region: bj}\nvalues: {tier: gold}\n"),
                ),
                (
                    "clusters/prod-3.yaml",
                    Some("name: prod-3\nstage: prod\nlabels: {region: sh}\n"),
                ),
                (
                    "apps/api/app.yaml",
                    Some(
                        "namespace: api\ntargets:\n  stages: [prod]\noverlays:\n  - {selector: {region: sh}, path: overlays/sh}\n",
                    ),
                ),
                (
                    "apps/api/overlays/sh/kustomization.yaml",
                    Some("resources:\n- ../../base\nnamePrefix: sh-\n"),
                ),
            ],
        );
        let fleet = crate::fleet::load(&tree).unwrap();
        let cluster = |name: &str| fleet.cluster(name).unwrap();
        let (web, api) = (fleet.app("web").unwrap(), fleet.app("api").unwrap());
        let cache = RenderCache::new(DEFAULT_MAX_BYTES);

        // api has no templates: prod and prod-2 choose its base and render it alike,
        // whatever their values and labels; prod-3 chooses another overlay.
        let on_prod = cache
            .render(&tree, &fleet, api, cluster("prod"), Keep::Objects)
            .unwrap();
        let on_prod_2 = cache
            .render(&tree, &fleet, api, cluster("prod-2"), Keep::Objects)
            .unwrap();
        assert_eq!(cache.lookups(), Lookups { hits: 1, misses: 1 });
        assert_eq!(
            *on_prod_2,
            crate::render::render(&tree, &fleet, api, cluster("prod-2")).unwrap()
        );
        assert_eq!(on_prod.content_hash, on_prod_2.content_hash);
        let on_prod_3 = cache
            .render(&tree, &fleet, api, cluster("prod-3"), Keep::Objects)
            .unwrap();
        assert_eq!(cache.lookups(), Lookups { hits: 1, misses: 2 });
        assert_eq!(on_prod_3.root, "apps/api/overlays/sh");
        assert_ne!(on_prod_3.content_hash, on_prod.content_hash);

        // web has a template: each cluster's rendering is its own, even where the
        // result would be equal (prod and prod-3 both see tier bronze).
        for name in ["prod", "prod-2", "prod-3"] {
            let cached = cache
                .render(&tree, &fleet, web, cluster(name), Keep::Objects)
                .unwrap();
            assert_eq!(
                *cached,
                crate::render::render(&tree, &fleet, web, cluster(name)).unwrap(),
                "{name}"
            );
        }
        assert_eq!(cache.misses_of("web"), 3);
        // Found again, each from its own.
        for name in ["prod", "prod-2", "prod-3"] {
            cache
                .render(&tree, &fleet, web, cluster(name), Keep::Objects)
                .unwrap();
        }
        assert_eq!(cache.misses_of("web"), 3);
    }

    #[test]
    fn past_its_budget_the_least_recently_used_rendering_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let tree = commit(dir.path(), &[]);
        let fleet = crate::fleet::load(&tree).unwrap();
        let c = fleet.cluster("prod").unwrap();
        let (web, api) = (fleet.app("web").unwrap(), fleet.app("api").unwrap());
        // Room for about one rendering.
        let cache = RenderCache::new(900);
        cache.render(&tree, &fleet, web, c, Keep::Objects).unwrap();
        cache.render(&tree, &fleet, api, c, Keep::Objects).unwrap();
        cache.render(&tree, &fleet, api, c, Keep::Objects).unwrap();
        assert_eq!(cache.lookups(), Lookups { hits: 1, misses: 2 });
        cache.render(&tree, &fleet, web, c, Keep::Objects).unwrap();
        assert_eq!(
            cache.lookups(),
            Lookups { hits: 1, misses: 3 },
            "web was dropped"
        );
        assert!(cache.lock().bytes <= 900);
        // No budget, no entries.
        let none = RenderCache::new(0);
        none.render(&tree, &fleet, web, c, Keep::Objects).unwrap();
        none.render(&tree, &fleet, web, c, Keep::Objects).unwrap();
        assert_eq!(none.lookups(), Lookups { hits: 0, misses: 2 });
    }
}
