//! The reconciler: brings one cluster to exactly the rendered state of an app and says
//! how it is doing. The pipeline, in named stages that each fail with their own error:
//! resolve kinds (discovery) → check every object against the app's tenancy policy
//! (nothing is read or written when one breaks it) → read the inventory and the live
//! objects (as the app's ServiceAccount when its policy names one) → decide what
//! differs ([`diff`]) → create the app's namespace when missing → dry-run every
//! changed object (nothing is written unless all pass) → record the inventory → apply
//! in order (CRDs, Namespaces, other cluster-scoped, ClusterRoleBindings, namespaced,
//! RoleBindings) with server-side apply → prune what left the repository ([`prune`]) →
//! record the final inventory → health ([`health`]).
//!
//! Requests go out side by side within a stage, within the cluster's [`limit`]s. Live
//! objects come from the watch cache ([`drift`]: one list per kind) and inventories
//! from one list of them all, so a cold apply costs an object one dry run and one
//! apply, and an unchanged one nothing.
//!
//! A steady state costs no write: objects already as desired are not applied ([`diff`]
//! follows what the API server does to what it stores, and the dry run settles the
//! rest), and an unchanged inventory is not rewritten.
//!
//! One API behind the API server never stops the cluster: a group-version whose
//! discovery fails (an aggregated API whose service does not answer) and a webhook
//! that cannot be called stop only the apps whose objects need them.

pub mod diff;
pub mod drift;
pub mod health;
pub mod inventory;
pub mod limit;
pub use preview::{Preview, comparable};
mod preview;
pub mod prune;
pub mod retry;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio::sync::RwLock;

use self::diff::{FIELD_MANAGER, Sync, sync_state};
use self::drift::LiveCache;
use self::health::{Health, health_of, health_with};
use self::inventory::{Inventory, InventoryError, ObjectKey, configmap_name};
use self::retry::{RetryPolicy, with_retries};
use crate::fleet::tenancy::{Policy, check_objects, namespaced_offline};
use crate::vocab::RECONCILE_ANNOTATION;

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
    /// The rendering's content hash.
    pub content_hash: &'a str,
    /// The rendered objects.
    pub objects: &'a [Value],
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
    /// Every object and what was done to it.
    pub changes: Vec<Change>,
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

/// Ordering stage of a kind: CRDs, Namespaces, other cluster-scoped, ClusterRoleBindings,
/// namespaced, RoleBindings. A binding comes after the roles it may refer to: the
/// apiserver checks that its writer holds the role's permissions (unless it may `bind`
/// the role), and answers 404 while the role does not exist yet.
fn stage(key: &ObjectKey, namespaced: bool) -> u8 {
    match (key.group.as_str(), key.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 0,
        ("", "Namespace") => 1,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => 3,
        ("rbac.authorization.k8s.io", "RoleBinding") => 5,
        _ if !namespaced => 2,
        _ => 4,
    }
}

/// The stage in which kinds whose CRD the revision creates are resolved: the first
/// namespaced one (such a kind is taken as namespaced until it is served).
const FIRST_NAMESPACED_STAGE: u8 = 4;
/// The last stage.
const LAST_STAGE: u8 = 5;

/// Whether `binding` (a RoleBinding or ClusterRoleBinding) refers to a role `objects`
/// create: the apiserver cannot check the binding before that role exists.
fn binds_a_role_of<'a>(binding: &Value, objects: impl IntoIterator<Item = &'a Value>) -> bool {
    let kind = binding["kind"].as_str().unwrap_or("");
    if binding["apiVersion"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .next()
        != Some("rbac.authorization.k8s.io")
        || !matches!(kind, "RoleBinding" | "ClusterRoleBinding")
    {
        return false;
    }
    let role = &binding["roleRef"];
    let namespace = binding["metadata"]["namespace"].as_str().unwrap_or("");
    objects.into_iter().any(|o| {
        o["apiVersion"].as_str().unwrap_or("").split('/').next()
            == Some("rbac.authorization.k8s.io")
            && o["kind"] == role["kind"]
            && o["metadata"]["name"] == role["name"]
            && (o["kind"] == "ClusterRole"
                || o["metadata"]["namespace"].as_str().unwrap_or("") == namespace)
    })
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

/// Checks `objects` against the app's policy; `namespaced` per object from discovery
/// (`None`: a kind the revision's own CRD defines, judged from that CRD).
// ApplyError is this module's one error, returned the same way by the async stages.
#[allow(clippy::result_large_err)]
fn enforce_policy(
    rev: &AppRevision<'_>,
    objects: &[Value],
    namespaced: &[Option<bool>],
) -> Result<(), ApplyError> {
    let Some(policy) = rev.policy else {
        return Ok(());
    };
    let scope = |o: &Value| {
        objects
            .iter()
            .position(|x| std::ptr::eq(x, o))
            .and_then(|i| namespaced[i])
            .unwrap_or_else(|| namespaced_offline(o, objects))
    };
    let violations = check_objects(policy, rev.namespace, objects, &scope);
    if violations.is_empty() {
        return Ok(());
    }
    Err(ApplyError::Policy {
        app: rev.app.to_string(),
        violations: violations.iter().map(ToString::to_string).collect(),
    })
}

/// Whether a dry-run apply's answer shows an object that exists: a dry-run create
/// is never stored, so it comes back without a resourceVersion.
fn exists_per_dry_run(answer: &Value) -> bool {
    answer["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty())
}

/// How [`diff::Verified`] names an object.
fn verified_id(key: &ObjectKey) -> String {
    let (g, kind, ns, name) = key.identity();
    format!("{g}/{kind}/{ns}/{name}")
}

/// Leaves out the namespace of cluster-scoped objects rendered with one (a kustomize
/// `namespace:` or the app's namespace reaches kinds it cannot know are
/// cluster-scoped), with a warning, as kubectl does: the API server ignores it, so
/// keeping it would make the object look changed on every pass. Kinds whose CRD is
/// in the same revision are judged from that CRD.
fn strip_stray_namespaces(objects: &mut [Value], resources: &[Option<(ApiResource, bool)>]) {
    let cluster_scoped: Vec<usize> = (0..objects.len())
        .filter(|&i| {
            objects[i]["metadata"]["namespace"]
                .as_str()
                .is_some_and(|ns| !ns.is_empty())
                && !resources[i]
                    .as_ref()
                    .map_or_else(|| namespaced_offline(&objects[i], objects), |r| r.1)
        })
        .collect();
    for i in cluster_scoped {
        let key = ObjectKey::of(&objects[i]);
        if let Some(meta) = objects[i]["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        tracing::warn!(object = %key, "cluster-scoped object rendered with a namespace: applied without it, as kubectl does; remove the namespace from the rendering");
    }
}

/// Runs futures with at most `limit` in flight; results in completion order.
async fn bounded<F: std::future::Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    futures_util::stream::iter(futures)
        .buffer_unordered(limit.max(1))
        .collect()
        .await
}

/// The kinds a cluster serves: (group, version, kind) to resource and scope.
#[derive(Debug, Default)]
struct Kinds {
    map: HashMap<(String, String, String), (ApiResource, bool)>,
    /// Group-versions the cluster lists but could not describe, with why (the
    /// APIService's condition when it is an aggregated API), and the pass in which
    /// that was found: the next pass asks again.
    failed: HashMap<(String, String), (String, u64)>,
}

struct Planned {
    key: ObjectKey,
    obj: Value,
    resource: Option<(ApiResource, bool)>,
    sync: Sync,
    skipped: Option<String>,
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

    /// Reads every served kind, each discovery request retried on its own (one
    /// flaky response among dozens must not fail the whole read). A group-version that
    /// cannot be described (an aggregated API whose service does not answer) is
    /// recorded as unavailable, with its APIService's condition, and stops only the
    /// apps that use it: kubectl, the garbage collector and the namespace controller
    /// carry on with partial discovery the same way.
    async fn refresh_discovery(&self) -> Result<(), ApplyError> {
        let err = |(e, _): (kube::Error, u32)| ApplyError::Discovery(message_of(&e));
        let c = &self.client;
        let mut kinds = Kinds::default();
        let core = with_retries(&self.retry, || c.list_core_api_versions())
            .await
            .map_err(err)?;
        let mut lists = Vec::new();
        for v in &core.versions {
            let list = with_retries(&self.retry, || c.list_core_api_resources(v))
                .await
                .map_err(err)?;
            lists.push((String::new(), v.clone(), list));
        }
        let groups = with_retries(&self.retry, || c.list_api_groups())
            .await
            .map_err(err)?;
        // One group-version's API is not the API server: a few tries, and its failure
        // does not trip the cluster's breaker.
        let one_api = RetryPolicy {
            attempts: retry::LOCAL_ATTEMPTS,
            deadline: DISCOVERY_DEADLINE,
            breaker: retry::Breaker::default(),
            ..self.retry.clone()
        };
        let mut described = Vec::new();
        for g in &groups.groups {
            for v in &g.versions {
                let one_api = &one_api;
                described.push(async move {
                    let r = with_retries(one_api, || c.list_api_group_resources(&v.group_version))
                        .await;
                    (g.name.clone(), v.version.clone(), r)
                });
            }
        }
        let pass = self.retry.breaker.pass();
        for (group, version, r) in bounded(described, self.concurrency).await {
            match r {
                Ok(list) => lists.push((group, version, list)),
                // Listed a moment ago and gone now (a CRD just deleted): not served.
                Err((kube::Error::Api(s), _)) if s.code == 404 => {}
                Err((e, _)) => {
                    let reason = self.apiservice_condition(&group, &version).await;
                    let reason = reason.unwrap_or_else(|| message_of(&e));
                    tracing::warn!(
                        group,
                        version,
                        reason,
                        "API unavailable: the apps that use it wait, the others are applied"
                    );
                    kinds.failed.insert((group, version), (reason, pass));
                }
            }
        }
        for (group, version, list) in lists {
            for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
                let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
                kinds.map.insert(
                    (group.clone(), version.clone(), r.kind.clone()),
                    (
                        ApiResource::from_gvk_with_plural(&gvk, &r.name),
                        r.namespaced,
                    ),
                );
            }
        }
        *self.discovery.write().await = Some(kinds);
        self.refreshed
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Why an aggregated API is not served, from its APIService's `Available`
    /// condition (`None` when there is no APIService or it cannot be read).
    async fn apiservice_condition(&self, group: &str, version: &str) -> Option<String> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
            "apiservices",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let name = format!("{version}.{group}");
        let svc = serde_json::to_value(api.get_opt(&name).await.ok()??).ok()?;
        let cond = svc["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Available")?
            .clone();
        Some(format!(
            "APIService {name} is Available={} ({}: {})",
            cond["status"].as_str().unwrap_or("Unknown"),
            cond["reason"].as_str().unwrap_or(""),
            cond["message"].as_str().unwrap_or("")
        ))
    }

    /// The resource serving a group/version/kind, refreshing discovery once when it is
    /// not known, or when its group-version was unavailable in an earlier pass.
    async fn resolve(&self, key: &ObjectKey) -> Result<Option<(ApiResource, bool)>, ApplyError> {
        let id = (key.group.clone(), key.version.clone(), key.kind.clone());
        let gv = (key.group.clone(), key.version.clone());
        let pass = self.retry.breaker.pass();
        let seen = self.refreshed.load(std::sync::atomic::Ordering::Acquire);
        {
            let kinds = self.discovery.read().await;
            if let Some(kinds) = kinds.as_ref() {
                if let Some(found) = kinds.map.get(&id) {
                    return Ok(Some(found.clone()));
                }
                if let Some((reason, when)) = kinds.failed.get(&gv)
                    && *when == pass
                {
                    return Err(self.unavailable(key, reason));
                }
            }
        }
        {
            let _one = self.refreshing.lock().await;
            // Read again by another app while this one waited: that answer is as new.
            if self.refreshed.load(std::sync::atomic::Ordering::Acquire) == seen {
                self.refresh_discovery().await?;
            }
        }
        let kinds = self.discovery.read().await;
        let Some(kinds) = kinds.as_ref() else {
            return Ok(None);
        };
        if let Some((reason, _)) = kinds.failed.get(&gv) {
            return Err(self.unavailable(key, reason));
        }
        Ok(kinds.map.get(&id).cloned())
    }

    fn unavailable(&self, key: &ObjectKey, reason: &str) -> ApplyError {
        ApplyError::Unavailable {
            object: key.clone(),
            group_version: format!("{}/{}", key.group, key.version),
            apiservice: format!("{}.{}", key.version, key.group),
            reason: reason.to_string(),
        }
    }

    fn api(&self, ar: &ApiResource, namespaced: bool, ns: &str) -> Api<DynamicObject> {
        api_with(&self.client, ar, namespaced, ns)
    }

    fn inventory_api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        );
        Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
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

    /// Reads an app's inventory (empty when there is none); after the first read,
    /// from memory, since this agent is its only writer.
    pub async fn read_inventory(&self, app: &str) -> Result<Inventory, ApplyError> {
        if let Some(inv) = self
            .inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app)
        {
            return Ok(inv.clone());
        }
        if let Some(listed) = self.inventory_from_list(app).await {
            return Ok(listed);
        }
        let name = configmap_name(app);
        let read = match self.get_json(&self.inventory_api(), &name).await {
            Ok(Some(cm)) => Inventory::from_configmap(&cm)?,
            Ok(None) => Inventory {
                app: app.to_string(),
                ..Default::default()
            },
            Err(e) => {
                return Err(ApplyError::InventoryRead {
                    name,
                    message: message_of(&e),
                });
            }
        };
        self.inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.to_string(), read.clone());
        Ok(read)
    }

    /// An app's inventory from one list of them all (made once, by the first app that
    /// asks): a pass over a thousand apps reads one list instead of a thousand
    /// ConfigMaps. `None` when the list failed or the app's ConfigMap could not be
    /// parsed from it: the caller reads it alone, which reports why.
    async fn inventory_from_list(&self, app: &str) -> Option<Inventory> {
        {
            let _listing = self.listing.lock().await;
            let listed = self
                .known_apps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
            if !listed {
                self.inventoried_apps().await.ok()?;
            }
        }
        let known = self
            .known_apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|k| k.contains(app))?;
        let mut held = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        if known {
            return held.get(app).cloned();
        }
        let empty = Inventory {
            app: app.to_string(),
            ..Default::default()
        };
        held.insert(app.to_string(), empty.clone());
        Some(empty)
    }

    /// Keeps the inventories of a list of them, except those already held (which are
    /// newer: this agent wrote them) and those that do not parse (read alone later,
    /// so that the error is reported for its app).
    fn remember_listed(&self, configmaps: &[DynamicObject]) {
        let mut held = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        for cm in configmaps {
            let Ok(value) = serde_json::to_value(cm) else {
                continue;
            };
            let Ok(inv) = Inventory::from_configmap(&value) else {
                continue;
            };
            if !inv.app.is_empty() && !held.contains_key(&inv.app) {
                held.insert(inv.app.clone(), inv);
            }
        }
    }

    fn remember_inventory(&self, inv: Option<&Inventory>, app: &str) {
        let mut m = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = self.known_apps.lock().unwrap_or_else(|e| e.into_inner());
        match inv {
            Some(i) => {
                m.insert(app.to_string(), i.clone());
                if let Some(k) = known.as_mut() {
                    k.insert(app.to_string());
                }
            }
            None => {
                m.remove(app);
                if let Some(k) = known.as_mut() {
                    k.remove(app);
                }
            }
        }
    }

    async fn write_inventory(&self, inv: &Inventory) -> Result<(), ApplyError> {
        self.ensure_namespace().await?;
        let name = configmap_name(&inv.app);
        let cm = inv.to_configmap(&self.namespace);
        let api = self.inventory_api();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&cm);
        // Forget the remembered copy first: if this write is interrupted, the next
        // reconcile must read what the server has, not what it had (and so must not
        // take the app for one without an inventory, which the list would say).
        self.inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&inv.app);
        if let Some(known) = self
            .known_apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            known.insert(inv.app.clone());
        }
        let r = with_retries(&self.retry, || api.patch(&name, &pp, &patch))
            .await
            .map(|_| ())
            .map_err(|(e, _)| ApplyError::InventoryWrite {
                name,
                message: message_of(&e),
            });
        match &r {
            Ok(()) => self.remember_inventory(Some(inv), &inv.app),
            // Perhaps the namespace went away: look again next time.
            Err(_) => *self.namespace_exists.lock().await = false,
        }
        r
    }

    async fn delete_inventory(&self, app: &str) -> Result<(), ApplyError> {
        let name = configmap_name(app);
        let api = self.inventory_api();
        let dp = Default::default();
        match with_retries(&self.retry, || api.delete(&name, &dp)).await {
            Ok(_) => {
                self.remember_inventory(None, app);
                Ok(())
            }
            Err((kube::Error::Api(s), _)) if s.code == 404 => {
                self.remember_inventory(None, app);
                Ok(())
            }
            Err((e, _)) => Err(ApplyError::InventoryWrite {
                name,
                message: message_of(&e),
            }),
        }
    }

    /// Creates the agent's namespace when it does not exist, once for the life of the
    /// reconciler: every inventory write would otherwise read it again. A namespace
    /// deleted behind the agent's back makes the next inventory write fail, which
    /// forgets it (see [`Reconciler::write_inventory`]), so the pass after creates it.
    async fn ensure_namespace(&self) -> Result<(), ApplyError> {
        // Held across the read, so apps reconciled side by side read it once.
        let mut seen = self.namespace_exists.lock().await;
        if !*seen {
            self.ensure_namespace_named(&self.namespace.clone()).await?;
            *seen = true;
        }
        Ok(())
    }

    /// Creates a namespace when it does not exist: nothing when the watch cache has
    /// it (one rollwave made), else one create, which the server answers with 409
    /// when it exists already. A namespace someone else made is left as it is (never
    /// applied, so rollwave takes no field of it). An identity that may not create
    /// namespaces gets 403 even for one that exists, so a 403 is followed by a read.
    async fn ensure_namespace_named(&self, name: &str) -> Result<(), ApplyError> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        );
        let id: drift::KindId = (String::new(), "v1".into(), "Namespace".into());
        if let Some(cache) = &self.cache {
            cache.watch(&id, &ar);
            if cache.wait_synced(&id).await && cache.get(&id, "", name).flatten().is_some() {
                return Ok(());
            }
        }
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let err = |e: kube::Error| ApplyError::Write {
            object: ObjectKey {
                group: String::new(),
                version: "v1".into(),
                kind: "Namespace".into(),
                namespace: String::new(),
                name: name.to_string(),
            },
            retryable: retry::classify(&e) != retry::Verdict::Permanent,
            message: message_of(&e),
            attempts: self.retry.attempts,
        };
        let mut ns = DynamicObject::new(name, &ar);
        ns.metadata.labels = Some(
            [(
                crate::vocab::MANAGED_BY_LABEL.to_string(),
                crate::vocab::MANAGED_BY_VALUE.to_string(),
            )]
            .into(),
        );
        let pp = kube::api::PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        match with_retries(&self.retry, || api.create(&pp, &ns)).await {
            Ok(created) => {
                if let (Some(cache), Ok(v)) = (&self.cache, serde_json::to_value(&created)) {
                    cache.record(&id, &v);
                }
                Ok(())
            }
            Err((kube::Error::Api(s), _)) if s.code == 409 => Ok(()),
            Err((kube::Error::Api(s), _)) if s.code == 403 => {
                match self.get_json(&api, name).await.map_err(err)? {
                    Some(_) => Ok(()),
                    None => Err(err(kube::Error::Api(s))),
                }
            }
            Err((e, _)) => Err(err(e)),
        }
    }

    /// Applies one object; `dry_run` only validates. Conflicts with imperative
    /// writers are taken back (drift); conflicts with other appliers need `force`.
    async fn apply_one(
        &self,
        client: &Client,
        p: &Planned,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, (kube::Error, u32)> {
        let (ar, namespaced) = p.resource.clone().expect("resolved before applying");
        let api = api_with(client, &ar, namespaced, &p.key.namespace);
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = force;
        pp.dry_run = dry_run;
        let patch = Patch::Apply(&p.obj);
        let r = with_retries(&self.retry, || api.patch(&p.key.name, &pp, &patch)).await;
        let r = match r {
            Err((e, n)) if !force && conflicts_only_with_updates(&e) => {
                pp.force = true;
                with_retries(&self.retry, || api.patch(&p.key.name, &pp, &patch))
                    .await
                    .map_err(|(e, m)| (e, n + m))
            }
            other => other,
        };
        r.map(|o| serde_json::to_value(o).unwrap_or_default())
    }

    /// Brings the cluster to `rev`: see the module documentation for the stages.
    pub async fn reconcile(&self, rev: &AppRevision<'_>) -> Result<Applied, ApplyError> {
        let mut objects = prepare(rev.objects);
        let crd_kinds: BTreeSet<(String, String)> = objects
            .iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .map(|c| {
                (
                    c["spec"]["group"].as_str().unwrap_or("").to_string(),
                    c["spec"]["names"]["kind"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        let revision_namespaces: BTreeSet<String> = objects
            .iter()
            .filter(|o| o["kind"] == "Namespace" && o["apiVersion"] == "v1")
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .collect();
        // An app applied as a ServiceAccount of its namespace lives in a namespace the
        // platform made (with that ServiceAccount); the agent does not create it.
        let app_client = &self.client_for(rev)?;
        let create_namespace = rev.namespace.filter(|ns| {
            !ns.is_empty() && !revision_namespaces.contains(*ns) && impersonated_user(rev).is_none()
        });

        // Resolve kinds; check the tenancy policy; read live objects.
        let mut resources = Vec::with_capacity(objects.len());
        for obj in &objects {
            resources.push(self.resolve(&ObjectKey::of(obj)).await?);
        }
        strip_stray_namespaces(&mut objects, &resources);
        let scopes: Vec<Option<bool>> = resources.iter().map(|r| r.as_ref().map(|r| r.1)).collect();
        enforce_policy(rev, &objects, &scopes)?;
        let mut planned = Vec::with_capacity(objects.len());
        for (obj, resource) in objects.into_iter().zip(resources) {
            let key = ObjectKey::of(&obj);
            if resource.is_none() && !crd_kinds.contains(&(key.group.clone(), key.kind.clone())) {
                return Err(ApplyError::UnknownKind {
                    api_version: obj["apiVersion"].as_str().unwrap_or("").to_string(),
                    kind: key.kind.clone(),
                    object: key,
                });
            }
            planned.push(Planned {
                key,
                obj,
                resource,
                sync: Sync::Missing,
                skipped: None,
            });
        }
        let inventory = self.read_inventory(rev.app).await?;
        // The watch cache reads as the agent: an app applied as its ServiceAccount reads
        // its objects (and so their health) as that ServiceAccount too, directly; the
        // agent's watch still notices drift on them.
        let impersonated = impersonated_user(rev).is_some();
        let mut reads = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            reads.push(async move {
                let Some((ar, namespaced)) = &p.resource else {
                    return (i, Ok(None));
                };
                if let Some(cache) = &self.cache {
                    let id = (
                        p.key.group.clone(),
                        p.key.version.clone(),
                        p.key.kind.clone(),
                    );
                    cache.watch(&id, ar);
                    if !impersonated
                        && cache.wait_synced(&id).await
                        && let Some(state) = cache.get(&id, &p.key.namespace, &p.key.name)
                    {
                        return (i, Ok(state));
                    }
                }
                let api = api_with(app_client, ar, *namespaced, &p.key.namespace);
                (i, self.get_json(&api, &p.key.name).await)
            });
        }
        let reads = bounded(reads, self.concurrency).await;
        let mut live: HashMap<usize, Value> = HashMap::new();
        for (i, r) in reads {
            match r {
                Ok(Some(v)) => {
                    live.insert(i, v);
                }
                Ok(None) => {}
                // A namespace that does not exist yet reads as 404 too (no object).
                Err(e) => return Err(app_read_error(rev, planned[i].key.clone(), &e)),
            }
        }
        for (i, p) in planned.iter_mut().enumerate() {
            let l = live.get(&i);
            if l.is_some_and(|l| l["metadata"]["annotations"][RECONCILE_ANNOTATION] == "disabled") {
                p.skipped = Some(format!("annotated {RECONCILE_ANNOTATION}: disabled"));
                continue;
            }
            p.sync = sync_state(&p.obj, l);
            if matches!(p.sync, Sync::Differs(_) | Sync::Ownership)
                && l.is_some_and(|l| self.verified.holds(&verified_id(&p.key), &p.obj, l))
            {
                p.sync = Sync::InSync;
            }
            if p.sync != Sync::InSync {
                tracing::debug!(object = %p.key, sync = ?p.sync, "live object differs from the rendering");
            }
        }

        // Dry run everything that would be written; nothing is written unless all pass.
        let mut pending: Vec<usize> = (0..planned.len())
            .filter(|&i| planned[i].skipped.is_none() && planned[i].sync != Sync::InSync)
            .collect();
        // The app's namespace comes first: in a namespace that does not exist the API
        // server answers a dry run with 404 before it validates anything, so without it
        // a revision it would refuse could get halfway written. It is not part of the
        // revision (never pruned), so making it is not a write of the revision.
        let mut namespace_made = false;
        if let Some(ns) = create_namespace.filter(|_| !pending.is_empty()) {
            self.ensure_namespace_named(ns).await?;
            namespace_made = true;
        }
        let mut checks = Vec::new();
        for &i in &pending {
            let p = &planned[i];
            if p.resource.is_some() {
                checks
                    .push(async move { (i, self.apply_one(app_client, p, rev.force, true).await) });
            }
        }
        let mut checks = bounded(checks, self.concurrency).await;
        checks.sort_by_key(|(i, _)| *i);
        let mut confirmed = BTreeSet::new();
        let mut existing = BTreeSet::new();
        for (i, r) in checks {
            let p = &planned[i];
            if let Ok(after) = &r
                && p.sync == Sync::Missing
                && exists_per_dry_run(after)
            {
                existing.insert(i);
            }
            // The comparison saw a difference the server does not: the apply would
            // change nothing, so it is not sent (and the answer is remembered).
            if let (Ok(after), Some(l)) = (&r, live.get(&i))
                && diff::dry_run_changes_nothing(after, l)
            {
                self.verified.remember(&verified_id(&p.key), &p.obj, l);
                confirmed.insert(i);
                continue;
            }
            if let Err((e, attempts)) = r {
                if let Some(w) = webhook_error(&p.key, &e) {
                    return Err(w);
                }
                let ns_pending = matches!(&e, kube::Error::Api(s) if s.code == 404
                    && revision_namespaces.contains(&p.key.namespace)
                    && s.message.starts_with("namespaces "));
                // A writer that may not `bind` a role must hold its permissions, which
                // the apiserver reads from the role: 404 until this revision creates it.
                let role_pending = matches!(&e, kube::Error::Api(s) if s.code == 404)
                    && binds_a_role_of(&p.obj, planned.iter().map(|q| &q.obj));
                if ns_pending || role_pending {
                    continue;
                }
                return Err(match &e {
                    kube::Error::Api(s)
                        if s.code == 409 && s.message.starts_with("Apply failed") =>
                    {
                        ApplyError::Conflict {
                            object: p.key.clone(),
                            message: s.message.clone(),
                        }
                    }
                    kube::Error::Api(s) if s.code < 500 && s.code != 429 => ApplyError::Rejected {
                        object: p.key.clone(),
                        message: s.message.clone(),
                    },
                    other => ApplyError::Write {
                        object: p.key.clone(),
                        message: message_of(other),
                        attempts,
                        retryable: true,
                    },
                });
            }
        }

        for &i in &confirmed {
            planned[i].sync = Sync::InSync;
        }
        // The watch lists only objects labelled as rollwave's: one whose label someone
        // took away reads as missing there, and is reported as taken back, not created.
        for &i in &existing {
            planned[i].sync = Sync::Ownership;
        }
        pending.retain(|i| !confirmed.contains(i));
        let desired: BTreeSet<ObjectKey> = planned.iter().map(|p| p.key.clone()).collect();
        let desired_ids: BTreeSet<(&str, &str, &str, &str)> =
            desired.iter().map(ObjectKey::identity).collect();
        // An inventory may name a cluster-scoped object with the namespace it was
        // rendered with: it is the same object, never one to prune.
        let absent: Vec<ObjectKey> = inventory
            .objects
            .iter()
            .filter(|k| {
                let (g, kind, ns, name) = k.identity();
                !desired_ids.contains(&(g, kind, ns, name))
                    && (ns.is_empty() || !desired_ids.contains(&(g, kind, "", name)))
            })
            .cloned()
            .collect();
        let applied_as = impersonated_user(rev);
        let unchanged_inventory = pending.is_empty()
            && absent.is_empty()
            && inventory.applying.is_none()
            && inventory.release == rev.release
            && inventory.content_hash == rev.content_hash
            && inventory.removal == rev.removal
            && inventory.applied_as == applied_as
            && inventory.objects == desired;

        let mut changes = Vec::new();
        let mut results: HashMap<usize, Value> = HashMap::new();
        if !unchanged_inventory {
            // Record every object that may exist before creating any.
            if let Some(ns) = create_namespace.filter(|_| !namespace_made) {
                self.ensure_namespace_named(ns).await?;
            }
            let mut recording = inventory.clone();
            recording.objects.extend(desired.iter().cloned());
            recording.applying = Some(rev.release.to_string());
            recording.removal = rev.removal;
            recording.applied_as = applied_as.clone();
            if recording != inventory {
                self.write_inventory(&recording).await?;
            }
            for s in 0..=LAST_STAGE {
                let batch: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let p = &planned[i];
                        let namespaced = p.resource.as_ref().map(|r| r.1).unwrap_or(true);
                        stage(&p.key, namespaced) == s
                    })
                    .collect();
                if s == FIRST_NAMESPACED_STAGE {
                    // Kinds from CRDs applied in this revision are served now.
                    for &i in &batch {
                        if planned[i].resource.is_none() {
                            let r = self.resolve(&planned[i].key).await?;
                            if r.is_none() {
                                let p = &planned[i];
                                return Err(ApplyError::UnknownKind {
                                    api_version: p.obj["apiVersion"]
                                        .as_str()
                                        .unwrap_or("")
                                        .to_string(),
                                    kind: p.key.kind.clone(),
                                    object: p.key.clone(),
                                });
                            }
                            planned[i].resource = r;
                        }
                    }
                }
                let mut applying = Vec::new();
                for &i in &batch {
                    let p = &planned[i];
                    applying.push(async move {
                        (i, self.apply_one(app_client, p, rev.force, false).await)
                    });
                }
                let applied = bounded(applying, self.concurrency).await;
                let mut failure = None;
                for (i, r) in applied {
                    match r {
                        Ok(v) => {
                            let p = &planned[i];
                            // What the server made of the rendering is as desired by
                            // definition, whatever the comparison makes of it.
                            if sync_state(&p.obj, Some(&v)) != Sync::InSync {
                                self.verified.remember(&verified_id(&p.key), &p.obj, &v);
                            }
                            if let Some(cache) = &self.cache {
                                let k = &planned[i].key;
                                cache.record(
                                    &(k.group.clone(), k.version.clone(), k.kind.clone()),
                                    &v,
                                );
                            }
                            results.insert(i, v);
                        }
                        Err((e, attempts)) => {
                            let retryable = retry::classify(&e) != retry::Verdict::Permanent;
                            let key = &planned[i].key;
                            failure.get_or_insert(webhook_error(key, &e).unwrap_or_else(|| {
                                ApplyError::Write {
                                    object: key.clone(),
                                    message: message_of(&e),
                                    attempts,
                                    retryable,
                                }
                            }));
                        }
                    }
                }
                if let Some(f) = failure {
                    return Err(f);
                }
                if s == 0 && !batch.is_empty() {
                    self.wait_established(
                        &batch
                            .iter()
                            .map(|&i| planned[i].key.name.clone())
                            .collect::<Vec<_>>(),
                    )
                    .await?;
                    self.refresh_discovery().await?;
                }
            }
            let pruned = self.prune_absent(app_client, rev.app, &absent).await;
            let mut kept: BTreeSet<ObjectKey> = desired.clone();
            let mut prune_error = None;
            for (key, outcome) in pruned {
                match outcome {
                    Ok(action) => changes.push(Change {
                        object: key,
                        action,
                    }),
                    Err(e) => {
                        kept.insert(key);
                        prune_error.get_or_insert(e);
                    }
                }
            }
            let mut done = inventory.clone();
            done.objects = kept;
            done.release = rev.release.to_string();
            done.content_hash = rev.content_hash.to_string();
            done.applying = None;
            done.removal = rev.removal;
            done.applied_as = applied_as;
            self.write_inventory(&done).await?;
            if let Some(e) = prune_error {
                return Err(e);
            }
        }

        // Health from what the apply returned, or a read for unchanged objects.
        let rules = self.health_rules();
        let mut worst = Health::Healthy;
        let mut unhealthy = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            let action = if let Some(reason) = &p.skipped {
                Action::Skipped(reason.clone())
            } else if results.contains_key(&i) {
                if p.sync == Sync::Missing {
                    Action::Created
                } else {
                    Action::Configured
                }
            } else {
                Action::Unchanged
            };
            let obj = results.get(&i).or(live.get(&i));
            if let Some(obj) = obj {
                let v = health_with(obj, &rules);
                if v.health > Health::Healthy {
                    unhealthy.push((p.key.clone(), v.reason.clone()));
                }
                worst = worst.max(v.health);
            }
            changes.push(Change {
                object: p.key.clone(),
                action,
            });
        }
        let same_release =
            inventory.release == rev.release && inventory.content_hash == rev.content_hash;
        let drift_corrections = if same_release {
            changes
                .iter()
                .filter(|c| c.action == Action::Configured || c.action == Action::Created)
                .count()
        } else {
            0
        };
        Ok(Applied {
            changes,
            health: worst,
            unhealthy,
            drift_corrections,
        })
    }

    /// Waits until the named CRDs are established.
    async fn wait_established(&self, names: &[String]) -> Result<(), ApplyError> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let limit = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + limit;
        for name in names {
            loop {
                let crd = self.get_json(&api, name).await.ok().flatten();
                if crd
                    .as_ref()
                    .is_some_and(|c| health_of(c).health == Health::Healthy)
                {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(ApplyError::NotEstablished {
                        name: name.clone(),
                        seconds: limit.as_secs(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The health of an app's objects as they are now (reads each one).
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(group: &str, kind: &str, namespace: &str) -> ObjectKey {
        ObjectKey {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: "x".into(),
        }
    }

    #[test]
    fn bindings_are_applied_after_the_roles_they_may_refer_to() {
        let rbac = "rbac.authorization.k8s.io";
        let cluster_role = stage(&key(rbac, "ClusterRole", ""), false);
        let cluster_binding = stage(&key(rbac, "ClusterRoleBinding", ""), false);
        let role = stage(&key(rbac, "Role", "a"), true);
        let binding = stage(&key(rbac, "RoleBinding", "a"), true);
        assert!(cluster_role < cluster_binding);
        assert!(
            cluster_binding < role,
            "a RoleBinding may refer to a ClusterRole"
        );
        assert!(role < binding);
        assert_eq!(role, FIRST_NAMESPACED_STAGE);
        assert_eq!(binding, LAST_STAGE);
    }

    #[test]
    fn a_binding_waits_for_a_role_of_the_same_revision_only() {
        let objects = vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "reader"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "writer", "namespace": "a"}}),
        ];
        let binding = |kind: &str, ns: &str, role_kind: &str, role: &str| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": {"name": "b", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}})
        };
        let of = |b: &Value| binds_a_role_of(b, &objects);
        assert!(of(&binding(
            "ClusterRoleBinding",
            "",
            "ClusterRole",
            "reader"
        )));
        assert!(of(&binding("RoleBinding", "a", "ClusterRole", "reader")));
        assert!(of(&binding("RoleBinding", "a", "Role", "writer")));
        assert!(
            !of(&binding("RoleBinding", "b", "Role", "writer")),
            "another namespace"
        );
        assert!(!of(&binding(
            "ClusterRoleBinding",
            "",
            "ClusterRole",
            "admin"
        )));
        assert!(!of(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "roleRef": {"kind": "ClusterRole", "name": "reader"}})));
    }
}
