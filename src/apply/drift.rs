//! Drift: one watch per managed kind (objects labelled `managed-by: rollwave`, all
//! namespaces) keeps a cache of the live objects, so a steady-state reconcile reads
//! nothing from the API server, and tells the agent which apps someone else changed so
//! it re-applies them (self-heal). The reconciler writes what it applies through the
//! cache, so its own writes are not mistaken for drift.
//!
//! Objects are cached as their serialized JSON (parsed when compared) to keep the
//! agent's memory small with thousands of managed objects.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::Notify;

use crate::vocab::{APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// How long the API server keeps one watch request open before the watch is renewed
/// from its last resource version: shorter than the client's read timeout
/// (`agent::daemon::READ_TIMEOUT`, 30 s), so a kind where nothing changes for a while
/// ends its watch cleanly instead of having it cut as a dead connection.
pub const WATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// The longest a reader waits for a kind's first list before reading its objects one by
/// one from the server instead: long enough for a list of thousands of objects on a
/// busy API server, short enough that a kind the agent may not list costs a pass little.
pub const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// (group, version, kind) of a watched type.
pub type KindId = (String, String, String);

struct Entry {
    json: Vec<u8>,
    rv: String,
    app: String,
}

#[derive(Default)]
struct KindCache {
    synced: AtomicBool,
    /// The watch was refused, or its first list did not come within
    /// [`SYNC_WAIT`]: readers stop waiting for it and read from the server.
    stalled: AtomicBool,
    objects: RwLock<HashMap<(String, String), Entry>>,
}

/// Live managed objects by kind, fed by watches.
pub struct LiveCache {
    client: Client,
    kinds: Mutex<HashMap<KindId, Arc<KindCache>>>,
    drifted: Mutex<BTreeSet<String>>,
    notify: Notify,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn entry_of(v: &Value) -> Entry {
    Entry {
        json: serde_json::to_vec(v).unwrap_or_default(),
        rv: v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        app: v["metadata"]["labels"][APP_LABEL]
            .as_str()
            .unwrap_or("")
            .to_string(),
    }
}

/// Whether an object at resource version `new` may replace the cache's copy at `old`:
/// not when `old` is newer. The reconciler records the server's answer to its write
/// and the watch delivers events in its own time, so on a busy machine the answer to
/// an apply can arrive after the event of a later change (a controller's status
/// update), and the watch can deliver an earlier change after the answer; either way
/// the older copy must not win, or health is judged from a status that is gone.
/// Resource versions are opaque to clients but numbers on etcd and in the simulator;
/// ones that are not numbers always replace.
fn replaces(old: &str, new: &str) -> bool {
    match (old.parse::<u64>(), new.parse::<u64>()) {
        (Ok(old), Ok(new)) => new >= old,
        _ => true,
    }
}

fn key_of(v: &Value) -> (String, String) {
    (
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// The apiserver's message when it refuses a watch (401 or 403): the agent's identity
/// may not list or watch the kind, which retrying does not change.
fn refusal(e: &watcher::Error) -> Option<&str> {
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => &**s,
        _ => return None,
    };
    matches!(status.code, 401 | 403).then_some(status.message.as_str())
}

impl LiveCache {
    /// An empty cache watching nothing yet.
    pub fn new(client: Client) -> Arc<LiveCache> {
        Arc::new(LiveCache {
            client,
            kinds: Mutex::new(HashMap::new()),
            drifted: Mutex::new(BTreeSet::new()),
            notify: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn kind(&self, id: &KindId) -> Option<Arc<KindCache>> {
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Starts watching a kind (once; later calls do nothing).
    pub fn watch(self: &Arc<Self>, id: &KindId, ar: &ApiResource) {
        let cache = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
            if kinds.contains_key(id) {
                return;
            }
            let c = Arc::new(KindCache::default());
            kinds.insert(id.clone(), c.clone());
            c
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), ar);
        let config = watcher::Config::default()
            .timeout(WATCH_TIMEOUT.as_secs() as u32)
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
        let me = Arc::downgrade(self);
        let kind = id.2.clone();
        // A real apiserver leaves apiVersion and kind out of list items; without them
        // every cached object would differ from its rendering and be applied again.
        let types = kube::core::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        };
        let typed = move |mut o: DynamicObject| {
            if o.types.is_none() {
                o.types = Some(types.clone());
            }
            o
        };
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config).default_backoff().boxed();
            let mut buffer: Option<HashMap<(String, String), Entry>> = None;
            // A refusal is said once until the watch works again (it is retried with
            // backoff, and RBAC may be fixed while the agent runs).
            let mut refused = false;
            while let Some(event) = stream.next().await {
                let Some(this) = me.upgrade() else { return };
                match event {
                    Ok(watcher::Event::Init) => buffer = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(o)) => {
                        let v = serde_json::to_value(typed(o)).unwrap_or_default();
                        if let Some(b) = buffer.as_mut() {
                            b.insert(key_of(&v), entry_of(&v));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let fresh = buffer.take().unwrap_or_default();
                        // Changes made while the watch was down show up as differences.
                        let mut apps = BTreeSet::new();
                        {
                            let mut objects =
                                cache.objects.write().unwrap_or_else(|e| e.into_inner());
                            if cache.synced.load(Ordering::Acquire) {
                                for (k, e) in &fresh {
                                    if objects.get(k).is_none_or(|old| old.rv != e.rv) {
                                        apps.insert(e.app.clone());
                                    }
                                }
                                for (k, e) in objects.iter() {
                                    if !fresh.contains_key(k) {
                                        apps.insert(e.app.clone());
                                    }
                                }
                            }
                            *objects = fresh;
                        }
                        cache.synced.store(true, Ordering::Release);
                        refused = false;
                        this.mark(apps);
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        let v = serde_json::to_value(typed(o)).unwrap_or_default();
                        let e = entry_of(&v);
                        let mut objects = cache.objects.write().unwrap_or_else(|e| e.into_inner());
                        let known = objects
                            .get(&key_of(&v))
                            .is_some_and(|old| old.rv == e.rv || !replaces(&old.rv, &e.rv));
                        if !known {
                            let app = e.app.clone();
                            objects.insert(key_of(&v), e);
                            drop(objects);
                            this.mark([app].into());
                        }
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        let v = serde_json::to_value(&o).unwrap_or_default();
                        let removed = cache
                            .objects
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key_of(&v));
                        if let Some(e) = removed {
                            this.mark([e.app].into());
                        }
                    }
                    Err(e) => match refusal(&e) {
                        Some(message) if !refused => {
                            refused = true;
                            cache.stalled.store(true, Ordering::Release);
                            tracing::warn!(
                                kind,
                                error = %message,
                                "cannot watch this kind: a change made behind the agent's back is found only by the next timed pass; grant list and watch on it"
                            );
                        }
                        _ => tracing::debug!(kind, error = %e, "watch interrupted; resuming"),
                    },
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    fn mark(&self, apps: BTreeSet<String>) {
        let apps: BTreeSet<String> = apps.into_iter().filter(|a| !a.is_empty()).collect();
        if apps.is_empty() {
            return;
        }
        self.drifted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(apps);
        self.notify.notify_one();
    }

    /// The live object from the cache: `None` when the kind is not watched or not
    /// synced yet (read it from the server), `Some(None)` when it does not exist (or
    /// does not carry rollwave's label).
    pub fn get(&self, id: &KindId, namespace: &str, name: &str) -> Option<Option<Value>> {
        let cache = self.kind(id)?;
        if !cache.synced.load(Ordering::Acquire) {
            return None;
        }
        let objects = cache.objects.read().unwrap_or_else(|e| e.into_inner());
        Some(
            objects
                .get(&(namespace.to_string(), name.to_string()))
                .and_then(|e| serde_json::from_slice(&e.json).ok()),
        )
    }

    /// Whether the cache holds the object `(namespace, name)` at resource version
    /// `version`, told without parsing it: `false` also when the cache cannot answer
    /// for its kind (not watched or not synced). Enough to know that an object
    /// compared earlier has not changed since.
    pub fn holds_version(&self, id: &KindId, place: &(String, String), version: &str) -> bool {
        let Some(cache) = self.kind(id) else {
            return false;
        };
        if !cache.synced.load(Ordering::Acquire) {
            return false;
        }
        let objects = cache.objects.read().unwrap_or_else(|e| e.into_inner());
        objects.get(place).is_some_and(|e| e.rv == version)
    }

    /// Waits until a watched kind has completed its first list, so that its objects are
    /// read from one list instead of one request each (a cold apply of thousands of
    /// objects would otherwise read every one of them). Returns whether the cache can
    /// answer; `false` at once for a kind that is not watched, whose watch was refused,
    /// or that did not sync within [`SYNC_WAIT`] once already.
    pub async fn wait_synced(&self, id: &KindId) -> bool {
        let Some(cache) = self.kind(id) else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            if cache.synced.load(Ordering::Acquire) {
                return true;
            }
            if cache.stalled.load(Ordering::Acquire) {
                return false;
            }
            if tokio::time::Instant::now() >= deadline {
                cache.stalled.store(true, Ordering::Release);
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Records an object the reconciler just wrote, so its own watch event is not
    /// taken for drift.
    pub fn record(&self, id: &KindId, obj: &Value) {
        if let Some(cache) = self.kind(id) {
            if obj["metadata"]["labels"][MANAGED_BY_LABEL] != MANAGED_BY_VALUE {
                return;
            }
            let entry = entry_of(obj);
            let mut objects = cache.objects.write().unwrap_or_else(|e| e.into_inner());
            match objects.get(&key_of(obj)) {
                Some(old) if !replaces(&old.rv, &entry.rv) => {}
                _ => {
                    objects.insert(key_of(obj), entry);
                }
            }
        }
    }

    /// Forgets an object the reconciler just deleted.
    pub fn forget(&self, id: &KindId, namespace: &str, name: &str) {
        if let Some(cache) = self.kind(id) {
            cache
                .objects
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(namespace.to_string(), name.to_string()));
        }
    }

    /// Whether every watched kind has completed its first list.
    pub fn synced(&self) -> bool {
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .all(|k| k.synced.load(Ordering::Acquire))
    }

    /// Waits until someone else changes a managed object; returns the apps affected.
    pub async fn drifted(&self) -> BTreeSet<String> {
        loop {
            {
                let mut d = self.drifted.lock().unwrap_or_else(|e| e.into_inner());
                if !d.is_empty() {
                    return std::mem::take(&mut *d);
                }
            }
            self.notify.notified().await;
        }
    }

    /// Number of cached objects (for memory figures).
    pub fn len(&self) -> usize {
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|k| k.objects.read().map(|o| o.len()).unwrap_or(0))
            .sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LiveCache {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_resource_version_never_replaces_a_newer_one() {
        assert!(replaces("32", "33"));
        assert!(replaces("33", "33"));
        assert!(!replaces("33", "32"));
        // Not numbers: the newest write wins, as before.
        assert!(replaces("a", "b"));
        assert!(replaces("", "7"));
    }

    #[tokio::test]
    async fn the_answer_to_an_apply_arriving_after_a_later_change_does_not_hide_it() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let cache = LiveCache::new(Client::try_from(config).unwrap());
        let id: KindId = ("apps".into(), "v1".into(), "Deployment".into());
        let kind = Arc::new(KindCache::default());
        kind.synced.store(true, Ordering::Release);
        cache.kinds.lock().unwrap().insert(id.clone(), kind);
        let object = |rv: &str, observed: u64| {
            serde_json::json!({
                "metadata": {"name": "web", "namespace": "web", "resourceVersion": rv,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
                "status": {"observedGeneration": observed}
            })
        };
        // The controller's status update (33) was seen before the answer to the apply
        // that came before it (32).
        cache.record(&id, &object("33", 1));
        cache.record(&id, &object("32", 0));
        let live = cache.get(&id, "web", "web").flatten().unwrap();
        assert_eq!(live["metadata"]["resourceVersion"], "33");
        assert_eq!(live["status"]["observedGeneration"], 1);
    }
}
