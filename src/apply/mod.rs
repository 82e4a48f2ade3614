//! The reconciler: brings one cluster to exactly the rendered state of an app and says
//! how it is doing. [`Reconciler::reconcile`] is a list of named stages (in
//! `reconcile.rs`), each failing with its own error: resolve kinds (`discovery.rs`) and
//! check every object against the app's tenancy policy (nothing is read or written
//! when one breaks it) → read the live objects (as the app's ServiceAccount when its
//! policy names one) → decide what differs ([`diff`]) → create the app's namespace
//! when missing → dry-run every changed object (nothing is written unless all pass) →
//! record the intent in the [`inventory`] (already the final record when nothing is to
//! be pruned) → apply in kind order (CRDs, Namespaces, other cluster-scoped,
//! ClusterRoleBindings, namespaced, RoleBindings) with server-side apply → prune what
//! left the repository ([`prune`]) → record the final inventory (when prune changed
//! it) → report changes and [`health`].
//!
//! Requests go out side by side within a stage, within the cluster's [`limit`]s. Live
//! objects come from the watch cache ([`drift`]: one list per kind) and inventories
//! from one list of them all, so a cold apply costs an object one dry run and one
//! apply (and the app one write of its inventory), and an unchanged one nothing.
//!
//! A steady state costs no write: objects already as desired are not applied ([`diff`]
//! follows what the API server does to what it stores, and the dry run settles the
//! rest), and an unchanged inventory is not rewritten.
//!
//! One API behind the API server never stops the cluster: a group-version whose
//! discovery fails (an aggregated API whose service does not answer) and a webhook
//! that cannot be called stop only the apps whose objects need them.

pub mod diff;
mod discovery;
pub mod drift;
pub mod health;
pub mod inventory;
pub mod limit;
pub use preview::{Preview, comparable};
mod preview;
pub mod prune;
mod reconcile;
pub mod retry;
mod settled;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio::sync::RwLock;

use self::discovery::Kinds;
use self::drift::LiveCache;
use self::health::{Health, health_with};
use self::inventory::{Inventory, InventoryError, ObjectKey};
use self::retry::{RetryPolicy, with_retries};
use crate::fleet::tenancy::Policy;

/// The longest the discovery of one group-version may take, its tries included: an
/// aggregated API that does not answer costs a pass no more than this.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(10);

/// The default namespace for inventories (the agent's own).
pub const DEFAULT_NAMESPACE: &str = "rollwave-system";

/// One app's rendering to bring about.
#[derive(Debug, Clone)]
pub struct AppRevision<'a> {
    /// The app.
    pub app: &'a str,
    /// The release (commit) being applied.
    pub release: &'a str,
    /// The rendering's content hash ([`crate::render::content_hash`] of `objects`): two
    /// revisions of an app with the same hash are taken to have the same objects (an
    /// app found in sync is not compared again while its hash and live objects stay).
    pub content_hash: &'a str,
    /// The rendered objects (an app found in sync is judged by their count and
    /// `content_hash`, without reading them).
    pub objects: &'a crate::render::Objects,
    /// Take fields owned by other appliers on conflict.
    pub force: bool,
    /// The app's namespace (app.yaml `namespace`), created when missing, as Argo CD's
    /// `CreateNamespace` and Fleet's `defaultNamespace` do. It is not part of the
    /// inventory and so never pruned: other apps and people may use it too.
    pub namespace: Option<&'a str>,
    /// The app's own `removal` from app.yaml (not the fleet default), remembered in the
    /// inventory so that deleting the app's directory still honours it.
    pub removal: Option<crate::fleet::Removal>,
    /// The tenancy policy the app runs under (fleet.yaml `tenancy`): every object is
    /// checked against it before the dry run, and with its `serviceAccount` the app's
    /// reads, dry runs, applies and prunes go out as that ServiceAccount.
    pub policy: Option<&'a Policy>,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It differed and was applied.
    Configured,
    /// It was already as desired.
    Unchanged,
    /// It left the repository and was deleted.
    Pruned,
    /// Left alone, with the reason.
    Skipped(String),
}

/// One line of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object.
    pub object: ObjectKey,
    /// What was done.
    pub action: Action,
}

/// The result of a reconcile: the change set and the app's health.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Every object and what was done to it. Shared: an app found still in sync hands
    /// out its last report again at every pass, and copying every key was a twentieth
    /// of an idle agent's CPU at 1,250 apps.
    pub changes: std::sync::Arc<[Change]>,
    /// The worst health of the app's objects.
    pub health: Health,
    /// Objects that are not healthy, with the reason.
    pub unhealthy: Vec<(ObjectKey, String)>,
    /// Objects re-applied although the release did not change: drift corrected.
    pub drift_corrections: usize,
}

impl Applied {
    /// Number of objects with `action`.
    pub fn count(&self, action: &Action) -> usize {
        self.changes.iter().filter(|c| &c.action == action).count()
    }

    /// Objects created, configured, unchanged, pruned and skipped, in that order.
    pub fn counts(&self) -> [usize; 5] {
        [
            self.count(&Action::Created),
            self.count(&Action::Configured),
            self.count(&Action::Unchanged),
            self.count(&Action::Pruned),
            self.changes
                .iter()
                .filter(|c| matches!(c.action, Action::Skipped(_)))
                .count(),
        ]
    }
}

/// Why a reconcile failed. Nothing was written when the failure is one of the
/// before-write stages (unknown kind, rejected by dry run, conflict).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// Listing the cluster's kinds failed.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The cluster lists the object's group-version but cannot serve it now: an
    /// aggregated API whose service does not answer (its APIService not Available).
    /// Only the apps using it wait; the others are applied as usual.
    #[error(
        "{object}: the cluster cannot serve {group_version} now: {reason}; this app waits until it can (`kubectl get apiservice {apiservice}` shows why), the cluster's other apps are applied as usual"
    )]
    Unavailable {
        /// The object.
        object: ObjectKey,
        /// `group/version`.
        group_version: String,
        /// The APIService's name (`version.group`).
        apiservice: String,
        /// The APIService's condition, or the discovery error.
        reason: String,
    },
    /// A webhook the write needs does not answer: an admission webhook with
    /// `failurePolicy: Fail`, or the conversion webhook of a CRD.
    #[error("{object}: {message}")]
    Webhook {
        /// The object.
        object: ObjectKey,
        /// Which webhook, the server's words and what to do.
        message: String,
    },
    /// The cluster does not serve the object's kind.
    #[error(
        "{object}: the cluster does not serve {api_version} {kind}; install its CRD (or add it to the app) or fix the apiVersion"
    )]
    UnknownKind {
        /// The object.
        object: ObjectKey,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// The server refused the object in the dry run; nothing was written.
    #[error("{object}: rejected by the server, nothing applied: {message}")]
    Rejected {
        /// The object.
        object: ObjectKey,
        /// The server's message.
        message: String,
    },
    /// Another applier owns fields this app sets.
    #[error("{object}: {message}; set `force: true` in the app's app.yaml to take these fields")]
    Conflict {
        /// The object.
        object: ObjectKey,
        /// The server's conflict message.
        message: String,
    },
    /// A write failed after retries.
    #[error("{object}: apply failed after {attempts} attempt(s): {message}")]
    Write {
        /// The object.
        object: ObjectKey,
        /// The last error.
        message: String,
        /// Tries made.
        attempts: u32,
        /// Whether a later reconcile may succeed (transient API errors).
        retryable: bool,
    },
    /// A live object could not be read.
    #[error("{object}: read failed: {message}")]
    Read {
        /// The object.
        object: ObjectKey,
        /// The last error.
        message: String,
        /// Whether a later reconcile may succeed (transient API errors).
        retryable: bool,
    },
    /// A delete failed after retries.
    #[error("{object}: prune failed: {message}")]
    Prune {
        /// The object.
        object: ObjectKey,
        /// The last error.
        message: String,
    },
    /// Deleting the objects of an app that no longer targets the cluster failed
    /// (`removal: delete`); its inventory is kept, so the next pass tries again.
    #[error(
        "apps/{app}: no longer targets this cluster and is deleted as {user}: {message}; its inventory is kept and the next pass tries again (give {user} back the right to read and delete these objects, or delete the inventory ConfigMap to leave them running)"
    )]
    Release {
        /// The app.
        app: String,
        /// Who the deletes went out as.
        user: String,
        /// The failed delete (the object and the server's answer).
        message: String,
    },
    /// The inventory could not be read.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The inventory could not be read.
    #[error("inventory ConfigMap {name}: read failed: {message}")]
    InventoryRead {
        /// The ConfigMap.
        name: String,
        /// The last error.
        message: String,
    },
    /// The inventories could not be listed.
    #[error("inventory ConfigMaps in namespace {namespace}: list failed: {message}")]
    InventoryList {
        /// The agent namespace.
        namespace: String,
        /// The last error.
        message: String,
    },
    /// The inventory could not be written.
    #[error("inventory ConfigMap {name}: write failed: {message}")]
    InventoryWrite {
        /// The ConfigMap.
        name: String,
        /// The last error.
        message: String,
    },
    /// Objects of the revision break the app's tenancy policy; nothing was applied.
    #[error("apps/{app}: {}", violations.join("; "))]
    Policy {
        /// The app.
        app: String,
        /// Each object refused, with the rule (`ClusterRoleBinding/x: ...`).
        violations: Vec<String>,
    },
    /// The policy asks for impersonation this connection cannot do.
    #[error("apps/{app}: {message}")]
    Impersonation {
        /// The app.
        app: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A CRD applied by the app did not become established in time.
    #[error("CustomResourceDefinition {name}: not established after {seconds} s")]
    NotEstablished {
        /// The CRD.
        name: String,
        /// How long was waited.
        seconds: u64,
    },
}

impl ApplyError {
    /// The status reason this error maps to.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Prune { .. } | ApplyError::Release { .. } => "PruneFailed",
            ApplyError::Policy { .. } => "PolicyViolation",
            _ => "ApplyFailed",
        }
    }

    /// Whether retrying later can help without a change in the repository.
    pub fn retryable(&self) -> bool {
        match self {
            ApplyError::Write { retryable, .. } | ApplyError::Read { retryable, .. } => *retryable,
            ApplyError::Discovery(_)
            | ApplyError::Unavailable { .. }
            | ApplyError::Webhook { .. }
            | ApplyError::Prune { .. }
            | ApplyError::Release { .. }
            | ApplyError::InventoryRead { .. }
            | ApplyError::InventoryList { .. }
            | ApplyError::InventoryWrite { .. }
            | ApplyError::NotEstablished { .. } => true,
            _ => false,
        }
    }
}

/// Brings apps to their rendered state on one cluster.
pub struct Reconciler {
    client: Client,
    /// The connection's configuration, from which clients that impersonate an app's
    /// ServiceAccount are made; `None`: impersonation is not possible.
    impersonation: Option<kube::Config>,
    /// Those clients, by user name.
    clients_as: Mutex<HashMap<String, Client>>,
    namespace: String,
    discovery: RwLock<Option<Kinds>>,
    retry: RetryPolicy,
    concurrency: usize,
    cache: Option<Arc<LiveCache>>,
    inventories: Mutex<HashMap<String, Inventory>>,
    known_apps: Mutex<Option<BTreeSet<String>>>,
    /// Objects a dry run or an apply showed to be as rendered where the comparison
    /// saw a difference.
    verified: diff::Verified,
    /// Apps whose last reconcile wrote nothing, with what they were compared against.
    settled: settled::Settled,
    /// Per app, the content hash of a revision whose first object (the one write not
    /// dry-run) the server refused: its next reconciles dry-run every object.
    refused_first: Mutex<HashMap<String, String>>,
    /// Whether the agent's namespace is known to exist (read or created once).
    namespace_exists: tokio::sync::Mutex<bool>,
    /// Held while discovery is read again, and how many times it was: apps reconciled
    /// side by side that miss the same kind read discovery once, not once each.
    refreshing: tokio::sync::Mutex<()>,
    refreshed: std::sync::atomic::AtomicU64,
    /// Held while the inventories are listed, so apps reconciled side by side list
    /// them once.
    listing: tokio::sync::Mutex<()>,
    /// The fleet's `health` rules, set by the agent at each pass.
    health_rules: std::sync::RwLock<Arc<Vec<crate::fleet::health::HealthRule>>>,
}

/// A failed read of a live object (after retries).
fn read_error(object: ObjectKey, e: &kube::Error) -> ApplyError {
    if let Some(w) = webhook_error(&object, e) {
        return w;
    }
    ApplyError::Read {
        object,
        message: message_of(e),
        retryable: retry::classify(e) != retry::Verdict::Permanent,
    }
}

/// Why an app's read failed: as [`read_error`], except that the apiserver refusing the
/// impersonation itself (403 "cannot impersonate", before the read is even
/// authorized) names what to grant, since the 403 alone reads as if the app's
/// ServiceAccount lacked a right.
fn app_read_error(rev: &AppRevision<'_>, object: ObjectKey, e: &kube::Error) -> ApplyError {
    match (e, rev.policy.and_then(|p| p.service_account.as_deref())) {
        (kube::Error::Api(s), Some(sa))
            if s.code == 403 && s.message.contains("cannot impersonate") =>
        {
            let ns = rev.namespace.unwrap_or("");
            ApplyError::Impersonation {
                app: rev.app.to_string(),
                message: format!(
                    "its policy reads and applies it as system:serviceaccount:{ns}:{sa}, and this connection's user may not impersonate it: {}; grant that user `impersonate` on serviceaccounts/{sa} in namespace {ns} (the agent's identity has it under deploy/impersonating/)",
                    s.message
                ),
            }
        }
        _ => read_error(object, e),
    }
}

/// The error of a request refused because a webhook does not answer ([`retry::is_local`]),
/// naming the webhook and what to do.
fn webhook_error(object: &ObjectKey, e: &kube::Error) -> Option<ApplyError> {
    if !retry::is_local(e) {
        return None;
    }
    let said = message_of(e);
    let quoted = |after: &str| {
        let rest = &said[said.find(after)? + after.len()..];
        let rest = rest.strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_string())
    };
    let message = if let Some(name) = quoted("failed calling webhook ") {
        format!(
            "the admission webhook {name} cannot be called and its failurePolicy is Fail, so the API server refuses this object: {said}; start the webhook's service or fix its clientConfig (or set its failurePolicy to Ignore); the cluster's other apps are applied as usual"
        )
    } else {
        format!(
            "the conversion webhook of its CustomResourceDefinition cannot be called, so the API server can neither read nor write it: {said}; start the webhook's service or fix the CRD's spec.conversion; the cluster's other apps are applied as usual"
        )
    };
    Some(ApplyError::Webhook {
        object: object.clone(),
        message,
    })
}

fn message_of(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether every field conflict of a 409 is with an imperative writer (an Update
/// operation such as `kubectl edit` or `kubectl scale`): that is drift, which rollwave
/// takes back; a conflict with another applier is not.
fn conflicts_only_with_updates(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else { return false };
    if s.code != 409 || !s.message.starts_with("Apply failed") {
        return false;
    }
    let causes: Vec<&str> = s
        .details
        .as_ref()
        .map(|d| d.causes.iter().map(|c| c.message.as_str()).collect())
        .unwrap_or_default();
    !causes.is_empty() && causes.iter().all(|m| m.contains(" using "))
}

/// Workloads an HorizontalPodAutoscaler of the app scales: their `spec.replicas` is
/// left to the autoscaler.
fn autoscaled(objects: &[Value]) -> BTreeSet<(String, String, String)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "HorizontalPodAutoscaler")
        .filter_map(|h| {
            let t = &h["spec"]["scaleTargetRef"];
            Some((
                h["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                t["kind"].as_str()?.to_string(),
                t["name"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The objects as they will be applied: replicas dropped from autoscaled workloads.
pub fn prepare(objects: &[Value]) -> Vec<Value> {
    let scaled = autoscaled(objects);
    objects
        .iter()
        .map(|o| {
            let id = (
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                o["kind"].as_str().unwrap_or("").to_string(),
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
            );
            let mut o = o.clone();
            if scaled.contains(&id)
                && let Some(spec) = o["spec"].as_object_mut()
            {
                spec.remove("replicas");
            }
            o
        })
        .collect()
}

/// An API of `ar` for `client`.
fn api_with(client: &Client, ar: &ApiResource, namespaced: bool, ns: &str) -> Api<DynamicObject> {
    if namespaced {
        Api::namespaced_with(client.clone(), ns, ar)
    } else {
        Api::all_with(client.clone(), ar)
    }
}

/// The user an app's requests impersonate: its policy's ServiceAccount in the app's
/// namespace, as Kubernetes names ServiceAccounts (`system:serviceaccount:<ns>:<name>`).
pub fn impersonated_user(rev: &AppRevision<'_>) -> Option<String> {
    let sa = rev.policy?.service_account.as_ref()?;
    let ns = rev.namespace.filter(|n| !n.is_empty())?;
    Some(format!("system:serviceaccount:{ns}:{sa}"))
}

/// Runs futures with at most `limit` in flight; results in completion order.
async fn bounded<F: std::future::Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    futures_util::stream::iter(futures)
        .buffer_unordered(limit.max(1))
        .collect()
        .await
}

impl Reconciler {
    /// A reconciler for the cluster `client` reaches, keeping inventories in
    /// `namespace`.
    pub fn new(client: Client, namespace: &str) -> Reconciler {
        Reconciler {
            client,
            impersonation: None,
            clients_as: Mutex::new(HashMap::new()),
            namespace: namespace.to_string(),
            discovery: RwLock::new(None),
            retry: RetryPolicy::default(),
            concurrency: 8,
            cache: None,
            inventories: Mutex::new(HashMap::new()),
            known_apps: Mutex::new(None),
            verified: diff::Verified::default(),
            settled: settled::Settled::default(),
            refused_first: Mutex::new(HashMap::new()),
            namespace_exists: tokio::sync::Mutex::new(false),
            listing: tokio::sync::Mutex::new(()),
            refreshing: tokio::sync::Mutex::new(()),
            refreshed: std::sync::atomic::AtomicU64::new(0),
            health_rules: std::sync::RwLock::default(),
        }
    }

    /// Judges the health of the kinds they name by the fleet's `health` rules from now
    /// on (the agent sets them from fleet.yaml at each pass).
    pub fn set_health_rules(&self, rules: &[crate::fleet::health::HealthRule]) {
        let mut held = self
            .health_rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.as_slice() != rules {
            *held = Arc::new(rules.to_vec());
        }
    }

    fn health_rules(&self) -> Arc<Vec<crate::fleet::health::HealthRule>> {
        self.health_rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads live objects from watches instead of the API server once they are
    /// synced (the long-running agent); see [`drift`].
    pub fn with_cache(mut self, cache: Arc<LiveCache>) -> Reconciler {
        self.cache = Some(cache);
        self
    }

    /// The live cache, when watching.
    pub fn cache(&self) -> Option<&Arc<LiveCache>> {
        self.cache.as_ref()
    }

    /// Lets apps whose policy has a `serviceAccount` be applied as that ServiceAccount:
    /// `config` is the configuration `client` was made from.
    pub fn with_impersonation(mut self, config: kube::Config) -> Reconciler {
        self.impersonation = Some(config);
        self
    }

    /// The client the app's own requests go out with: the agent's, or one that
    /// impersonates the ServiceAccount of the app's namespace its policy names.
    #[allow(clippy::result_large_err)] // ApplyError, as every stage returns
    fn client_for(&self, rev: &AppRevision<'_>) -> Result<Client, ApplyError> {
        let Some(user) = impersonated_user(rev) else {
            return Ok(self.client.clone());
        };
        self.client_as(rev.app, &user)
    }

    /// A client that impersonates `user` (made once, then reused).
    #[allow(clippy::result_large_err)] // ApplyError, as every stage returns
    fn client_as(&self, app: &str, user: &str) -> Result<Client, ApplyError> {
        let mut clients = self.clients_as.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(user) {
            return Ok(c.clone());
        }
        let Some(base) = &self.impersonation else {
            return Err(ApplyError::Impersonation {
                app: app.to_string(),
                message: format!(
                    "its policy applies it as {user}, but this connection cannot impersonate; run it under the agent (rollwave agent), which can"
                ),
            });
        };
        let mut config = base.clone();
        config.auth_info.impersonate = Some(user.to_string());
        let client = Client::try_from(config).map_err(|e| ApplyError::Impersonation {
            app: app.to_string(),
            message: format!("cannot make a client impersonating {user}: {e}"),
        })?;
        clients.insert(user.to_string(), client.clone());
        Ok(client)
    }

    /// Replaces the retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Reconciler {
        self.retry = retry;
        self
    }

    /// Sends requests to the cluster within `limits` (agent.yaml `apply:`): at most
    /// `concurrency` in flight (and as many per stage of one app), at most `qps` a
    /// second. Call it after [`Reconciler::with_retry`], which brings a limiter of its
    /// own.
    pub fn with_limits(mut self, limits: limit::Limits) -> Reconciler {
        self.retry.limiter = limit::RequestLimiter::new(limits);
        self.concurrency = limits.concurrency.max(1);
        self
    }

    /// How many requests may be in flight at once, and so how many apps are worth
    /// reconciling side by side.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The client in use.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api(&self, ar: &ApiResource, namespaced: bool, ns: &str) -> Api<DynamicObject> {
        api_with(&self.client, ar, namespaced, ns)
    }

    async fn get_json(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
    ) -> Result<Option<Value>, kube::Error> {
        let api = api.clone();
        let name = name.to_string();
        let r = with_retries(&self.retry, || {
            let api = api.clone();
            let name = name.clone();
            async move { api.get_opt(&name).await }
        })
        .await
        .map_err(|(e, _)| e)?;
        Ok(r.map(|o| serde_json::to_value(o).unwrap_or_default()))
    }

    pub async fn health(
        &self,
        objects: &[Value],
    ) -> Result<(Health, Vec<(ObjectKey, String)>), ApplyError> {
        let rules = self.health_rules();
        let mut worst = Health::Healthy;
        let mut unhealthy = Vec::new();
        for obj in prepare(objects) {
            let key = ObjectKey::of(&obj);
            let Some((ar, namespaced)) = self.resolve(&key).await? else {
                worst = worst.max(Health::Progressing);
                unhealthy.push((key, "kind not served yet".into()));
                continue;
            };
            let api = self.api(&ar, namespaced, &key.namespace);
            match self.get_json(&api, &key.name).await {
                Ok(Some(live)) => {
                    let v = health_with(&live, &rules);
                    if v.health > Health::Healthy {
                        unhealthy.push((key, v.reason));
                    }
                    worst = worst.max(v.health);
                }
                Ok(None) => {
                    worst = worst.max(Health::Progressing);
                    unhealthy.push((key, "not created yet".into()));
                }
                Err(e) => return Err(read_error(key, &e)),
            }
        }
        Ok((worst, unhealthy))
    }
}
