//! The Kubernetes status store (DESIGN §5.1): every cluster's status in a ConfigMap
//! of the hub cluster ([`super::object`]), written by its own agent with server-side
//! apply and read by a watch, so a fleet of a thousand clusters costs the Git server
//! fetches of the branch only.
//!
//! The hub holds status only. When it cannot be reached, writes fail and are retried
//! at the next pass, and the statuses last seen stay as they were: they go stale by
//! their heartbeat like a status ref that stopped moving, so the gates that depend on
//! them close (Unknown) while every cluster keeps running what it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use super::object::{self, FIELD_MANAGER, LABEL, ObjectError};
use super::{ClusterStatus, StatusError};

/// Why the hub could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The status cannot be stored (its size, its cluster's name).
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The hub's API answered with an error or could not be reached.
    #[error("status hub, {operation} in namespace {namespace}: {message}")]
    Api {
        /// What was attempted (`write status of prod-1`, `list statuses`).
        operation: String,
        /// The namespace.
        namespace: String,
        /// The API's answer, with what to do for the usual ones.
        message: String,
    },
}

/// Statuses as the watch last saw them.
#[derive(Default)]
struct View {
    statuses: BTreeMap<String, ClusterStatus>,
    errors: BTreeMap<String, StatusError>,
    /// The watch has listed every object once.
    synced: bool,
    /// Counts the watch's events: a [`Merged`] read at the same count is current.
    generation: u64,
}

/// This process's own clusters' statuses as last written ([`Hub::remember`]).
#[derive(Default)]
struct Written {
    statuses: BTreeMap<String, ClusterStatus>,
    /// Counts the writes: a [`Merged`] read at the same count is current.
    generation: u64,
}

impl Written {
    /// Puts these statuses over `statuses` read from the hub: this process's own
    /// writes are newer than what the hub answered or its watch has seen.
    fn overlay(&self, statuses: &mut BTreeMap<String, ClusterStatus>) {
        for (cluster, s) in &self.statuses {
            statuses.insert(cluster.clone(), s.clone());
        }
    }
}

/// What [`Hub::read`] answered last, and at which generations of the view and of
/// the written statuses: every read until either changes shares it, so the passes
/// of an agent's clusters read one copy of the fleet's statuses rather than one each.
struct Merged {
    view: u64,
    written: u64,
    statuses: Arc<BTreeMap<String, ClusterStatus>>,
    errors: Vec<StatusError>,
}

/// A connection to the status hub: writes this agent's statuses, reads everyone's.
pub struct Hub {
    api: Api<ConfigMap>,
    namespace: String,
    view: Arc<Mutex<View>>,
    /// Signalled when a peer's status changed in a way its gates read (not on a
    /// heartbeat alone, and never for this agent's own clusters).
    changed: Arc<Notify>,
    /// The clusters this agent writes: their changes wake no one.
    own: BTreeSet<String>,
    /// This process's own clusters' statuses as last written, before the hub has
    /// them: its other clusters read them at once ([`Hub::read`]).
    written: Mutex<Written>,
    /// The last answer of [`Hub::read`] once the watch is synced.
    merged: Mutex<Option<Merged>>,
    watch: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(task) = self.watch.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// What a peer's gates read from its status: a change here wakes the agent.
fn gate_view(s: &ClusterStatus) -> Vec<(&str, &str, &str, super::Phase, Option<&str>)> {
    s.apps
        .iter()
        .map(|(app, a)| {
            (
                app.as_str(),
                a.release.as_str(),
                a.hash.as_str(),
                a.phase,
                a.verified.as_deref(),
            )
        })
        .collect()
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "{} (the agent's hub credentials need list and watch on configmaps there, and patch on its own clusters' objects, which must exist unless it may create them: `rollwave hub init` makes both)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 404 && s.message.contains("namespace") => format!(
            "{} (create the namespace on the hub: kubectl create namespace {})",
            s.message,
            object::NAMESPACE
        ),
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

impl Hub {
    /// A hub reached through `client`, its statuses in `namespace` (normally
    /// [`object::NAMESPACE`]). `own`: the clusters whose statuses this process writes.
    pub fn new(client: kube::Client, namespace: &str, own: BTreeSet<String>) -> Hub {
        Hub {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            view: Arc::default(),
            changed: Arc::new(Notify::new()),
            own,
            written: Mutex::default(),
            merged: Mutex::default(),
            watch: Mutex::new(None),
        }
    }

    fn api_error(&self, operation: String, e: &kube::Error) -> HubError {
        HubError::Api {
            operation,
            namespace: self.namespace.clone(),
            message: api_message(e),
        }
    }

    /// Writes `status` to its cluster's object (created when missing; the agent owns
    /// it, so conflicts are forced).
    pub async fn write(&self, status: &ClusterStatus) -> Result<(), HubError> {
        let body = object::to_object(status, &self.namespace)?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&status.cluster, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| self.api_error(format!("write status of {}", status.cluster), &e))?;
        Ok(())
    }

    /// Every status on the hub now, read once (the one-shot commands), with the
    /// objects that could not be read.
    pub async fn list(
        &self,
    ) -> Result<(BTreeMap<String, ClusterStatus>, Vec<StatusError>), HubError> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{LABEL}=true")))
            .await
            .map_err(|e| self.api_error("list statuses".into(), &e))?;
        let mut statuses = BTreeMap::new();
        let mut errors = Vec::new();
        for cm in list.items {
            match read(&cm) {
                Some(Ok(s)) => {
                    statuses.insert(s.cluster.clone(), s);
                }
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
        Ok((statuses, errors))
    }

    /// Starts watching the hub's statuses in the background (retried with backoff
    /// while the hub is away); [`Hub::read`] then reads what it saw, and
    /// [`Hub::changed`] waits for a peer's change.
    pub fn watch(&self) {
        let mut slot = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let config = watcher::Config::default().labels(&format!("{LABEL}=true"));
        let stream = watcher(self.api.clone(), config).default_backoff();
        let (view, changed, own) = (self.view.clone(), self.changed.clone(), self.own.clone());
        let namespace = self.namespace.clone();
        *slot = Some(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut buffer: Option<Vec<ConfigMap>> = None;
            let mut failing = false;
            while let Some(event) = stream.next().await {
                let woke = match event {
                    Ok(watcher::Event::Init) => {
                        buffer = Some(Vec::new());
                        false
                    }
                    Ok(watcher::Event::InitApply(cm)) => {
                        buffer.get_or_insert_with(Vec::new).push(cm);
                        false
                    }
                    Ok(watcher::Event::InitDone) => {
                        let fresh = buffer.take().unwrap_or_default();
                        let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
                        let before = std::mem::take(&mut *v);
                        v.synced = true;
                        v.generation = before.generation + 1;
                        let mut woke = false;
                        for cm in &fresh {
                            woke |= apply(&mut v, cm, &own);
                        }
                        woke |= before
                            .statuses
                            .keys()
                            .any(|c| !own.contains(c) && !v.statuses.contains_key(c));
                        if failing {
                            tracing::info!(%namespace, "status hub reachable again");
                            failing = false;
                        }
                        woke
                    }
                    Ok(watcher::Event::Apply(cm)) => apply(
                        &mut view.lock().unwrap_or_else(|e| e.into_inner()),
                        &cm,
                        &own,
                    ),
                    Ok(watcher::Event::Delete(cm)) => {
                        let name = cm.metadata.name.unwrap_or_default();
                        let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
                        v.generation += 1;
                        v.errors.remove(&name);
                        v.statuses.remove(&name).is_some() && !own.contains(&name)
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(%namespace, error = %e, "status hub watch failed; peers' statuses go stale until it is back");
                            failing = true;
                        }
                        false
                    }
                };
                if woke {
                    changed.notify_one();
                }
            }
        }));
    }

    /// Every status: what the watch saw ([`Hub::watch`]) once it has listed them
    /// all, else read from the hub now, with this process's own clusters' statuses
    /// as they were last written ([`Hub::remember`]). A hub that stopped answering
    /// leaves the others as last seen, to go stale by their heartbeats. Reads with
    /// no event and no write between them share one map.
    pub async fn read(
        &self,
    ) -> Result<(Arc<BTreeMap<String, ClusterStatus>>, Vec<StatusError>), HubError> {
        let synced = self.view.lock().unwrap_or_else(|e| e.into_inner()).synced;
        if !synced {
            let (mut statuses, errors) = self.list().await?;
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.overlay(&mut statuses);
            return Ok((Arc::new(statuses), errors));
        }
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut merged = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = &*merged
            && m.view == view.generation
            && m.written == written.generation
        {
            return Ok((m.statuses.clone(), m.errors.clone()));
        }
        let mut statuses = view.statuses.clone();
        written.overlay(&mut statuses);
        let m = merged.insert(Merged {
            view: view.generation,
            written: written.generation,
            statuses: Arc::new(statuses),
            errors: view.errors.values().cloned().collect(),
        });
        Ok((m.statuses.clone(), m.errors.clone()))
    }

    /// Records `status`, written by this process for one of its own clusters: the
    /// process's other clusters read it from now on, before it reaches the hub (a
    /// wave of the same agent opens without waiting for the write and its watch
    /// event).
    pub fn remember(&self, status: &ClusterStatus) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.generation += 1;
        written
            .statuses
            .insert(status.cluster.clone(), status.clone());
    }

    /// What the watch has seen so far ([`Hub::watch`]), without waiting: for
    /// readers that cannot wait, such as the web view's refresh.
    pub fn snapshot(&self) -> (BTreeMap<String, ClusterStatus>, Vec<StatusError>) {
        let v = self.view.lock().unwrap_or_else(|e| e.into_inner());
        (v.statuses.clone(), v.errors.values().cloned().collect())
    }

    /// Waits until a peer's status changed in what gates read.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// The status in `cm`; `None` for a placeholder created ahead of its agent.
fn read(cm: &ConfigMap) -> Option<Result<ClusterStatus, StatusError>> {
    let value = serde_json::to_value(cm).unwrap_or_default();
    (!object::is_placeholder(&value)).then(|| object::from_object(&value))
}

/// Records `cm` in the view; whether a peer's gates may read something new.
fn apply(view: &mut View, cm: &ConfigMap, own: &BTreeSet<String>) -> bool {
    view.generation += 1;
    let name = cm.metadata.name.clone().unwrap_or_default();
    match read(cm) {
        None => {
            view.errors.remove(&name);
            view.statuses.remove(&name).is_some() && !own.contains(&name)
        }
        Some(Ok(s)) => {
            view.errors.remove(&name);
            let changed = view
                .statuses
                .get(&name)
                .is_none_or(|old| gate_view(old) != gate_view(&s));
            view.statuses.insert(name.clone(), s);
            changed && !own.contains(&name)
        }
        Some(Err(e)) => {
            tracing::warn!(cluster = %name, error = %e, "ignoring unreadable status on the hub");
            view.statuses.remove(&name);
            view.errors.insert(name, e);
            false
        }
    }
}
