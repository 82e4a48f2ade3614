//! The state of one simulated cluster: objects by resource type, the global
//! resourceVersion, the watch history, and every write verb with the semantics of a
//! real API server (preconditions, generation, namespaces, finalizers, garbage
//! collection, CRD registration, dry runs). Pure with respect to I/O: the HTTP layer
//! parses requests and calls in here under one lock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::apiserver::api_error::{ApiError, qualified};
use crate::apiserver::defaults::{self, Allocator};
use crate::apiserver::kinds::{Registry, ResourceType, api_version, type_from_crd};
use crate::apiserver::ssa::{self, Scope, Writer};
use crate::apiserver::validate::{FieldValidation, validate};
use manifest::fieldset::ListShapes;
use manifest::labels::LabelSelector;

mod gc;

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created (or newly matching a selector).
    Added,
    /// Changed.
    Modified,
    /// Deleted (or no longer matching a selector).
    Deleted,
}

impl EventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watchers that resume from a resourceVersion.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventKind,
    /// API group of the object.
    pub group: String,
    /// Resource (plural) of the object.
    pub plural: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// The object after the change (before it, for deletions).
    pub object: Arc<Stored>,
    /// The labels before a modification, to tell selector watchers it left.
    pub previous_labels: Option<Map<String, Value>>,
}

/// An object as kept in memory: its compact JSON (what responses carry) and the few
/// fields lists, selectors and garbage collection look at, so that neither needs to
/// parse it. Parsed trees would take about ten times the memory.
#[derive(Debug)]
pub struct Stored {
    /// The object, serialized.
    pub json: bytes::Bytes,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Map<String, Value>,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// uids of `metadata.ownerReferences`.
    pub owners: Vec<String>,
    /// `metadata.resourceVersion`.
    pub rv: u64,
}

impl Stored {
    /// Serializes an object for storage.
    pub fn from_value(v: &Value) -> Stored {
        let meta = &v["metadata"];
        Stored {
            json: bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            namespace: meta["namespace"].as_str().unwrap_or("").to_string(),
            name: meta["name"].as_str().unwrap_or("").to_string(),
            labels: meta["labels"].as_object().cloned().unwrap_or_default(),
            uid: meta["uid"].as_str().unwrap_or("").to_string(),
            generation: meta["generation"].as_i64().unwrap_or(1),
            owners: meta["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect(),
            rv: meta["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
        }
    }

    /// The object as a JSON tree.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// Which objects a list or watch selects besides the resource type.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this name (`fieldSelector=metadata.name=...`).
    pub fields: Vec<(String, bool, String)>,
    /// `labelSelector`.
    pub labels: LabelSelector,
}

impl Filter {
    /// Parses a `fieldSelector`: `a=b`, `a==b` and `a!=b` joined by commas, on any
    /// dotted field path (metadata.name and metadata.namespace are the common ones).
    pub fn parse_fields(s: &str) -> Result<Vec<(String, bool, String)>, ApiError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: '{part}': expected field=value or field!=value"
                )));
            };
            out.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(out)
    }

    /// Refuses a field selector on a field the kind cannot be selected by, as a real
    /// server does (it indexes only `metadata.name`, `metadata.namespace` and a few
    /// fields per kind), with its wording.
    pub fn check_fields(&self, rt: &ResourceType) -> Result<(), ApiError> {
        let extra: &[&str] = match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Pod") => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            ("", "Secret") => &["type"],
            ("", "Namespace") => &["status.phase"],
            ("", "Node") => &["spec.unschedulable"],
            ("", "Event") => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
            ("batch", "Job") => &["status.successful"],
            _ => &[],
        };
        for (k, _, _) in &self.fields {
            if k == "metadata.name" || k == "metadata.namespace" || extra.contains(&k.as_str()) {
                continue;
            }
            return Err(ApiError::bad_request(if extra.is_empty() {
                format!(
                    "\"{k}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )
            } else {
                format!("field label not supported: {k}")
            }));
        }
        Ok(())
    }

    /// Whether a stored object passes the filter; only field selectors on fields other
    /// than name and namespace parse the object.
    pub fn matches(&self, obj: &Stored) -> bool {
        self.matches_with_labels(obj, &obj.labels)
    }

    /// Like [`Filter::matches`] with other labels (an object's labels before a change).
    pub fn matches_with_labels(&self, obj: &Stored, labels: &Map<String, Value>) -> bool {
        if let Some(ns) = &self.namespace
            && obj.namespace != *ns
        {
            return false;
        }
        let mut parsed: Option<Value> = None;
        for (k, eq, v) in &self.fields {
            let actual = match k.as_str() {
                "metadata.name" => obj.name.clone(),
                "metadata.namespace" => obj.namespace.clone(),
                path => {
                    let whole = parsed.get_or_insert_with(|| obj.value());
                    let mut cur = &*whole;
                    for part in path.split('.') {
                        cur = &cur[part];
                    }
                    match cur {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    }
                }
            };
            if (actual == *v) != *eq {
                return false;
            }
        }
        self.labels.matches(labels)
    }
}

/// How a write request asks to be carried out.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `fieldManager` (or a name derived from the user agent).
    pub manager: String,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `force=true` on server-side apply.
    pub force: bool,
    /// `fieldValidation`.
    pub validation: FieldValidation,
    /// Whether the request is for the `/status` subresource.
    pub status: bool,
}

/// The patch formats of `PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/merge-patch+json`: RFC 7386.
    Merge,
    /// `application/json-patch+json`: RFC 6902.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

/// `DELETE` options.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Orphan`, `Background` (default) or `Foreground`.
    pub propagation: String,
    /// Only delete this uid.
    pub uid: Option<String>,
    /// Only delete at this resourceVersion.
    pub resource_version: Option<String>,
    /// Validate only.
    pub dry_run: bool,
}

/// The ConfigMap with the cluster's CA in every namespace.
const ROOT_CA: &str = "kube-root-ca.crt";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// A stand-in: the simulated cluster serves plain HTTP and has no CA.
const ROOT_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nc2ltdWxhdGVkIGNsdXN0ZXI6IHBsYWluIEhUVFAsIG5vIENBCg==\n-----END CERTIFICATE-----\n";

/// The default watch history length: watchers further behind get 410 Gone.
pub const DEFAULT_HISTORY: usize = 20_000;

type Key = (String, String);

/// The retained events after a resourceVersion, and a receiver for later ones.
pub type Subscription = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// All objects of one cluster.
pub struct Store {
    /// Types served (built-ins and established CRDs).
    pub registry: Registry,
    objects: BTreeMap<Key, BTreeMap<Key, Arc<Stored>>>,
    rv: u64,
    history: VecDeque<Arc<WatchEvent>>,
    history_cap: usize,
    compacted: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    alloc: Allocator,
    /// Objects deleted in the foreground, waiting for the garbage collector to delete
    /// their dependents: (group, plural, key).
    foreground: BTreeSet<(String, String, Key)>,
}

/// The finalizer a foreground deletion puts on the owner until its dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The current time as the API server writes it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn meta_str<'v>(obj: &'v Value, field: &str) -> &'v str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn spec_part(obj: &Value) -> Value {
    let mut c = obj.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

impl Store {
    /// An empty cluster with the default namespaces.
    pub fn new(history_cap: usize) -> Store {
        let (tx, _) = broadcast::channel(16_384);
        let mut s = Store {
            registry: Registry::builtin(),
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 1,
            tx,
            alloc: Allocator::default(),
            foreground: BTreeSet::new(),
        };
        let ns_type = s
            .registry
            .by_kind("", "Namespace")
            .cloned()
            .expect("built-in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let opts = WriteOptions {
                manager: "kube-apiserver".into(),
                dry_run: false,
                force: false,
                validation: FieldValidation::Strict,
                status: false,
            };
            s.create(&ns_type, "v1", None, body, &opts)
                .expect("default namespaces are valid");
        }
        s
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Forgets the watch history, so any watch resuming from an older
    /// resourceVersion gets 410 Gone (what etcd compaction does to a real server).
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn table(&self, rt: &ResourceType) -> Option<&BTreeMap<Key, Arc<Stored>>> {
        self.objects.get(&(rt.group.clone(), rt.plural.clone()))
    }

    fn key_of(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        (ns.to_string(), name.to_string())
    }

    /// One object.
    pub fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.table(rt)
            .and_then(|t| t.get(&Self::key_of(rt, ns, name)))
            .map(|s| Arc::new(s.value()))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Whether an object exists, without parsing it.
    pub fn exists(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> bool {
        self.table(rt)
            .is_some_and(|t| t.contains_key(&Self::key_of(rt, ns, name)))
    }

    /// Objects of a type passing `filter`, in (namespace, name) order, starting after
    /// `after` and at most `limit`; also returns the key to continue from and how many
    /// remain.
    pub fn list(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        after: Option<&Key>,
        limit: Option<usize>,
    ) -> (Vec<Arc<Stored>>, Option<Key>, usize) {
        let Some(table) = self.table(rt) else {
            return (Vec::new(), None, 0);
        };
        let range: Box<dyn Iterator<Item = (&Key, &Arc<Stored>)>> = match after {
            Some(k) => Box::new(table.range(k.clone()..).filter(move |(key, _)| *key != k)),
            None => Box::new(table.iter()),
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0;
        for (key, obj) in range {
            if !filter.matches(obj) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                if next.is_none() {
                    next = items
                        .last()
                        .map(|o: &Arc<Stored>| (o.namespace.clone(), o.name.clone()));
                }
                remaining += 1;
                continue;
            }
            let _ = key;
            items.push(obj.clone());
        }
        (items, next, remaining)
    }

    /// Starts a watch: the retained events after `from` (when given) and a receiver
    /// for everything later, or 410 Gone when `from` is older than the history.
    pub fn subscribe(&self, rt: &ResourceType, from: u64) -> Result<Subscription, ApiError> {
        if from < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {from} ({})",
                self.compacted + 1
            )));
        }
        let rx = self.tx.subscribe();
        let replay = self
            .history
            .iter()
            .filter(|e| e.rv > from && e.group == rt.group && e.plural == rt.plural)
            .cloned()
            .collect();
        Ok((replay, rx))
    }

    fn emit(
        &mut self,
        rt: &ResourceType,
        kind: EventKind,
        object: Arc<Stored>,
        previous: Option<&Value>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            kind,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: object.namespace.clone(),
            object,
            previous_labels: previous.map(|p| {
                p["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            }),
        });
        if self.history.len() >= self.history_cap
            && let Some(old) = self.history.pop_front()
        {
            self.compacted = old.rv;
        }
        self.history.push_back(ev.clone());
        let _ = self.tx.send(ev);
    }

    fn check_namespace(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        creating: bool,
    ) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or("");
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource: a namespace is required for namespaced resources",
            ));
        }
        let nst = self.registry.by_kind("", "Namespace").expect("built-in");
        let namespace = self.get(nst, None, ns)?;
        if creating && !namespace["metadata"]["deletionTimestamp"].is_null() {
            let mut e = ApiError::bad_request(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(&rt.group, &rt.plural),
                ""
            ));
            e.code = 403;
            e.reason = "Forbidden";
            return Err(e);
        }
        Ok(())
    }

    fn check_body_type(rt: &ResourceType, version: &str, body: &Value) -> Result<(), ApiError> {
        let want = api_version(&rt.group, version);
        let av = body["apiVersion"].as_str().unwrap_or("");
        let kind = body["kind"].as_str().unwrap_or("");
        if kind != rt.kind && !kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        if av != want && !av.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Ok(())
    }

    fn check_body_namespace(
        rt: &ResourceType,
        ns: Option<&str>,
        body: &Value,
    ) -> Result<(), ApiError> {
        let body_ns = meta_str(body, "namespace");
        if rt.namespaced && !body_ns.is_empty() && Some(body_ns) != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Ok(())
    }

    fn shapes(rt: &ResourceType) -> ListShapes<'_> {
        ListShapes::new(
            &rt.group,
            &rt.kind,
            if rt.list_keys.is_empty() {
                None
            } else {
                Some(&rt.list_keys)
            },
        )
    }

    fn scope(rt: &ResourceType, opts: &WriteOptions) -> Scope {
        if opts.status {
            Scope::Status
        } else {
            Scope::Main {
                status_subresource: rt.status_subresource,
            }
        }
    }

    /// `POST`: creates an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        Self::check_body_type(rt, version, &body)?;
        Self::check_body_namespace(rt, ns, &body)?;
        if !meta_str(&body, "resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = meta_str(&body, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&body, "generateName");
            if !prefix.is_empty() {
                let suffix: String = (0..5)
                    .map(|_| {
                        let c = b"bcdfghjklmnpqrstvwxz2456789"[rand::random_range(0..27)];
                        c as char
                    })
                    .collect();
                name = format!("{prefix}{suffix}");
            }
        }
        self.check_namespace(rt, ns, true)?;
        if self.exists(rt, ns, &name) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        {
            let obj = body.as_object_mut().expect("checked above");
            obj.insert("apiVersion".into(), json!(rt.api_version()));
            obj.insert("kind".into(), json!(rt.kind));
            let meta = obj
                .entry("metadata")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(ns.unwrap_or("")));
            } else {
                meta.remove("namespace");
            }
            meta.remove("managedFields");
            if rt.status_subresource && !opts.status {
                obj.remove("status");
            }
        }
        Self::decode(rt, &mut body);
        let writer = Writer {
            manager: &opts.manager,
            api_version: &api_version(&rt.group, version),
            scope: Self::scope(rt, opts),
            now: &now_rfc3339(),
        };
        // The writer of a create owns every field it caused, compared with the kind's
        // empty object, as a real server's field manager records it.
        let empty = defaults::empty_object(&rt.group, &rt.kind);
        ssa::record_update(Some(&empty), &mut body, &writer, &Self::shapes(rt));
        self.commit(rt, ns, &name, None, body, opts)
    }

    /// `PUT`: replaces an object (or its status).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        Self::check_body_type(rt, version, &body)?;
        Self::check_body_namespace(rt, ns, &body)?;
        let body_name = meta_str(&body, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let old = self.get(rt, ns, name)?;
        let rv = meta_str(&body, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        let mut new = self.replace_scoped(rt, &old, body, opts);
        Self::decode(rt, &mut new);
        self.write_update(rt, version, ns, name, old, new, opts)
    }

    /// What decoding a request body does on a real server before its field manager
    /// sees the object: a Secret's `stringData` folded into `data`, then API defaults.
    fn decode(rt: &ResourceType, obj: &mut Value) {
        if rt.group.is_empty() && rt.kind == "Secret" {
            fold_string_data(obj);
        }
        // Empty metadata maps and lists are omitted by a real server's types.
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, v| {
                !(matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                ) && (v.as_object().is_some_and(Map::is_empty)
                    || v.as_array().is_some_and(Vec::is_empty)))
            });
        }
        defaults::default_object(&rt.group, &rt.kind, obj);
    }

    /// The stored object after writing `body` within the request's scope: the main
    /// resource keeps the old status (with a status subresource), the status
    /// subresource keeps everything but status.
    fn replace_scoped(
        &self,
        rt: &ResourceType,
        old: &Value,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Value {
        if opts.status {
            let mut new = old.clone();
            new["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            if new["status"].is_null() {
                new.as_object_mut().map(|m| m.remove("status"));
            }
            return new;
        }
        let obj = body.as_object_mut().expect("checked by check_body_type");
        obj.insert("apiVersion".into(), json!(rt.api_version()));
        obj.insert("kind".into(), json!(rt.kind));
        if rt.status_subresource {
            match old.get("status") {
                Some(s) => obj.insert("status".into(), s.clone()),
                None => obj.remove("status"),
            };
        }
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old["metadata"].get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            match old["metadata"].get("managedFields") {
                Some(v) => meta.insert("managedFields".into(), v.clone()),
                None => meta.remove("managedFields"),
            };
        }
        body
    }

    #[allow(clippy::too_many_arguments)]
    fn write_update(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        old: Arc<Value>,
        mut new: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let writer = Writer {
            manager: &opts.manager,
            api_version: &api_version(&rt.group, version),
            scope: Self::scope(rt, opts),
            now: &now_rfc3339(),
        };
        ssa::record_update(Some(&old), &mut new, &writer, &Self::shapes(rt));
        self.commit(rt, ns, name, Some(old), new, opts)
    }

    /// `PATCH` in any of the four formats; server-side apply creates missing objects.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let existing = self.get(rt, ns, name).ok();
        if kind == PatchKind::Apply {
            return self.apply(rt, version, ns, name, existing, body, opts);
        }
        let Some(old) = existing else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        let mut doc = (*old).clone();
        match kind {
            PatchKind::Merge => json_patch::merge(&mut doc, body),
            PatchKind::Json => {
                let ops: json_patch::Patch = serde_json::from_value(body.clone())
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                // A real server hides the failed operation from the message and sends
                // empty details.
                json_patch::patch(&mut doc, &ops).map_err(|_| {
                    let mut err = ApiError::internal(
                        "the server rejected our request due to an error in our request",
                    );
                    err.code = 422;
                    err.reason = "Invalid";
                    err.details = Some(json!({}));
                    err
                })?;
            }
            PatchKind::Strategic => {
                if !manifest::schema::is_builtin_group(&rt.group) {
                    let mut e = ApiError::bad_request(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    );
                    e.code = 415;
                    e.reason = "UnsupportedMediaType";
                    return Err(e);
                }
                doc = crate::apiserver::smp::apply_patch(&rt.group, &rt.kind, &doc, body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
            }
            PatchKind::Apply => unreachable!("handled above"),
        }
        let rv = meta_str(&doc, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        if !doc.is_object() {
            return Err(ApiError::bad_request("the patch did not produce an object"));
        }
        let mut new = self.replace_scoped(rt, &old, doc, opts);
        Self::decode(rt, &mut new);
        self.write_update(rt, version, ns, name, old, new, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        existing: Option<Arc<Value>>,
        config: &Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        let av = config["apiVersion"].as_str().unwrap_or("");
        let kind = config["kind"].as_str().unwrap_or("");
        if av.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request(
                "invalid object type: apiVersion and kind must be set in an applied configuration",
            ));
        }
        Self::check_body_type(rt, version, config)?;
        Self::check_body_namespace(rt, ns, config)?;
        let cfg_name = meta_str(config, "name");
        if cfg_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({cfg_name}) does not match the name on the URL ({name})"
            )));
        }
        if !config["metadata"]["managedFields"].is_null() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let live = match &existing {
            Some(o) => {
                let rv = meta_str(config, "resourceVersion");
                if !rv.is_empty() && rv != meta_str(o, "resourceVersion") {
                    return Err(ApiError::stale(&rt.group, &rt.plural, name));
                }
                (**o).clone()
            }
            None => {
                if opts.status {
                    return Err(ApiError::not_found(&rt.group, &rt.plural, name));
                }
                self.check_namespace(rt, ns, true)?;
                let mut skeleton = json!({"apiVersion": rt.api_version(), "kind": rt.kind,
                    "metadata": {"name": name}});
                if rt.namespaced {
                    skeleton["metadata"]["namespace"] = json!(ns.unwrap_or(""));
                }
                skeleton
            }
        };
        let writer = Writer {
            manager: &opts.manager,
            api_version: &api_version(&rt.group, version),
            scope: Self::scope(rt, opts),
            now: &now_rfc3339(),
        };
        let mut merged = ssa::apply(&live, config, &writer, opts.force, &Self::shapes(rt))?;
        // Defaults come after the applied configuration is recorded: the applier owns
        // only what it sent.
        Self::decode(rt, &mut merged);
        merged["apiVersion"] = json!(rt.api_version());
        if let Some(m) = merged["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            if let Some(rv) = live["metadata"].get("resourceVersion") {
                m.insert("resourceVersion".into(), rv.clone());
            }
        }
        self.commit(rt, ns, name, existing, merged, opts)
    }

    /// Validates, fills server fields and stores (unless dry run) one write.
    fn commit(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        old: Option<Arc<Value>>,
        mut new: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        if rt.group.is_empty() && rt.kind == "Secret" {
            fold_string_data(&mut new);
        }
        let mut new = validate(rt, new, opts.validation)?;
        let crd_type = if rt.kind == "CustomResourceDefinition" {
            let t = type_from_crd(&new)
                .map_err(|errs| ApiError::invalid(&rt.kind, &rt.group, name, errs))?;
            if let Some(o) = &old
                && let Ok(prev) = type_from_crd(o)
                && (prev.group != t.group || prev.plural != t.plural)
            {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    name,
                    vec![(
                        "spec.names.plural".into(),
                        "Invalid value: field is immutable".into(),
                    )],
                ));
            }
            Some(t)
        } else {
            None
        };
        {
            let meta = new["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            match &old {
                Some(o) => {
                    for f in ["uid", "creationTimestamp"] {
                        if let Some(v) = o["metadata"].get(f) {
                            meta.insert(f.into(), v.clone());
                        }
                    }
                    if has_generation(rt) {
                        let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
                        meta.insert("generation".into(), json!(generation));
                    } else {
                        meta.remove("generation");
                    }
                    meta.insert(
                        "resourceVersion".into(),
                        o["metadata"]["resourceVersion"].clone(),
                    );
                }
                None => {
                    meta.insert("uid".into(), json!(new_uid()));
                    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                    if has_generation(rt) {
                        meta.insert("generation".into(), json!(1));
                    } else {
                        meta.remove("generation");
                    }
                    meta.remove("resourceVersion");
                }
            }
        }
        if let Some(o) = &old {
            defaults::prepare_for_update(&rt.group, &rt.kind, o, &mut new, &mut self.alloc);
            if has_generation(rt) && spec_part(o) != spec_part(&new) {
                let g = o["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                new["metadata"]["generation"] = json!(g);
            }
            if **o == new {
                return Ok(o.clone()); // nothing changed: no write, no event
            }
        } else {
            defaults::prepare_for_create(&rt.group, &rt.kind, &mut new, &mut self.alloc);
        }
        if let Some(t) = &crd_type {
            set_crd_status(&mut new, t);
        }
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        // An object being deleted goes away once its last finalizer is removed.
        let finalizing = !new["metadata"]["deletionTimestamp"].is_null()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = Self::key_of(rt, ns, name);
        if finalizing {
            self.remove(rt, &key, &new);
            return Ok(Arc::new(new));
        }
        let stored = Arc::new(Stored::from_value(&new));
        self.objects
            .entry((rt.group.clone(), rt.plural.clone()))
            .or_default()
            .insert(key, stored.clone());
        let kind = if old.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.emit(rt, kind, stored, old.as_deref());
        if let Some(t) = crd_type {
            self.registry.insert(t);
        }
        if old.is_none() && rt.group.is_empty() && rt.kind == "Namespace" {
            self.fill_namespace(name);
        }
        Ok(Arc::new(new))
    }

    /// What a real cluster's namespace controllers put in every namespace: the
    /// `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap. Done as the
    /// namespace is created (a client never finds it without them) and again by the
    /// simulated controllers' passes, which put back one that was deleted.
    fn fill_namespace(&mut self, ns: &str) {
        let (Some(sa), Some(cm)) = (
            self.registry.by_kind("", "ServiceAccount").cloned(),
            self.registry.by_kind("", "ConfigMap").cloned(),
        ) else {
            return;
        };
        let opts = WriteOptions {
            manager: "kube-controller-manager".into(),
            dry_run: false,
            force: false,
            validation: FieldValidation::Ignore,
            status: false,
        };
        if !self.exists(&sa, Some(ns), "default") {
            let body = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default"}});
            let _ = self.create(&sa, "v1", Some(ns), body, &opts);
        }
        if !self.exists(&cm, Some(ns), ROOT_CA) {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA, "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                "data": {"ca.crt": ROOT_CA_PEM}});
            let _ = self.create(&cm, "v1", Some(ns), body, &opts);
        }
    }

    /// Puts the `default` ServiceAccount and `kube-root-ca.crt` ConfigMap back into
    /// every namespace that lost one and is not terminating.
    pub fn fill_namespaces(&mut self) {
        let Some(nst) = self.registry.by_kind("", "Namespace").cloned() else {
            return;
        };
        let (namespaces, _, _) = self.list(&nst, &Filter::default(), None, None);
        for ns in namespaces {
            let Some(sa) = self.registry.by_kind("", "ServiceAccount") else {
                return;
            };
            let Some(cm) = self.registry.by_kind("", "ConfigMap") else {
                return;
            };
            if self.exists(sa, Some(&ns.name), "default")
                && self.exists(cm, Some(&ns.name), ROOT_CA)
            {
                continue;
            }
            if ns.value()["metadata"]["deletionTimestamp"].is_null() {
                self.fill_namespace(&ns.name);
            }
        }
    }

    fn remove(&mut self, rt: &ResourceType, key: &Key, last: &Value) {
        if let Some(t) = self.objects.get_mut(&(rt.group.clone(), rt.plural.clone())) {
            t.remove(key);
        }
        self.emit(
            rt,
            EventKind::Deleted,
            Arc::new(Stored::from_value(last)),
            None,
        );
        if rt.kind == "CustomResourceDefinition"
            && let Ok(t) = type_from_crd(last)
        {
            self.drop_type(&t);
        }
        let ns = meta_str(last, "namespace").to_string();
        if !ns.is_empty() {
            self.finish_namespace(&ns);
        }
    }

    /// Removes a CRD's objects and stops serving its type.
    fn drop_type(&mut self, t: &ResourceType) {
        if let Some(objs) = self.objects.remove(&(t.group.clone(), t.plural.clone())) {
            for (_, o) in objs {
                self.rv += 1;
                self.emit(t, EventKind::Deleted, o, None);
            }
        }
        self.registry.remove(&t.group, &t.plural);
    }

    /// A terminating namespace disappears when nothing is left in it.
    fn finish_namespace(&mut self, ns: &str) {
        let nst = self
            .registry
            .by_kind("", "Namespace")
            .cloned()
            .expect("built-in");
        let Ok(namespace) = self.get(&nst, None, ns) else {
            return;
        };
        if namespace["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let empty = self
            .objects
            .values()
            .all(|t| t.keys().all(|(n, _)| n != ns));
        if empty {
            self.rv += 1;
            let mut last = (*namespace).clone();
            last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.remove(&nst, &(String::new(), ns.to_string()), &last);
        }
    }

    /// `DELETE` of one object: immediate without finalizers, otherwise marked with a
    /// deletionTimestamp; dependents are collected unless orphaned.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self.get(rt, ns, name)?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&old, "uid")
        {
            return Err(precondition_failed(
                rt,
                name,
                "UID",
                uid,
                meta_str(&old, "uid"),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(precondition_failed(
                rt,
                name,
                "ResourceVersion",
                rv,
                meta_str(&old, "resourceVersion"),
            ));
        }
        if opts.dry_run {
            return Ok(old);
        }
        Ok(self.delete_now(rt, &old, &opts.propagation))
    }

    fn delete_now(&mut self, rt: &ResourceType, old: &Arc<Value>, propagation: &str) -> Arc<Value> {
        let ns = meta_str(old, "namespace").to_string();
        let name = meta_str(old, "name").to_string();
        let key = Self::key_of(rt, Some(&ns), &name);
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let is_namespace = rt.group.is_empty() && rt.kind == "Namespace";
        // As a real server: a foreground deletion marks the owner with the
        // `foregroundDeletion` finalizer, which the garbage collector removes once the
        // dependents that block it are gone.
        let foreground = propagation == "Foreground" && !is_namespace;
        let result = if has_finalizers || is_namespace || foreground {
            let mut marked = (**old).clone();
            if marked["metadata"]["deletionTimestamp"].is_null() {
                marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                if is_namespace {
                    marked["status"] = json!({"phase": "Terminating"});
                } else {
                    marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                }
            }
            if foreground {
                let finalizers = marked["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                    let mut finalizers = finalizers;
                    finalizers.push(json!(FOREGROUND_FINALIZER));
                    marked["metadata"]["finalizers"] = json!(finalizers);
                }
                self.foreground
                    .insert((rt.group.clone(), rt.plural.clone(), key.clone()));
            }
            if marked == **old {
                old.clone()
            } else {
                self.rv += 1;
                marked["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                let stored = Arc::new(Stored::from_value(&marked));
                self.objects
                    .entry((rt.group.clone(), rt.plural.clone()))
                    .or_default()
                    .insert(key.clone(), stored.clone());
                self.emit(rt, EventKind::Modified, stored, Some(old));
                Arc::new(marked)
            }
        } else {
            self.rv += 1;
            let mut last = (**old).clone();
            last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.remove(rt, &key, &last);
            Arc::new(last)
        };
        if is_namespace {
            self.empty_namespace(&name);
        }
        let uid = meta_str(old, "uid").to_string();
        match propagation {
            "Orphan" => self.orphan_dependents(&uid),
            // The garbage collector's next pass deletes them, owner last.
            "Foreground" if foreground => {}
            _ => self.collect_dependents(&uid),
        }
        result
    }

    /// `DELETE` on a collection: every object passing the filter.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        filter: &Filter,
        opts: &DeleteOptions,
    ) -> Vec<Arc<Value>> {
        let (items, _, _) = self.list(rt, filter, None, None);
        let items: Vec<Arc<Value>> = items.iter().map(|o| Arc::new(o.value())).collect();
        if opts.dry_run {
            return items;
        }
        items
            .iter()
            .map(|o| self.delete_now(rt, o, &opts.propagation))
            .collect()
    }
}

/// Whether objects of a type carry `metadata.generation`: a real server sets it only
/// for kinds whose controllers report an observedGeneration (workloads, Pods, policy
/// objects, CRDs and custom resources), never for ConfigMaps, Secrets, Services or
/// Namespaces.
fn has_generation(rt: &ResourceType) -> bool {
    match rt.group.as_str() {
        "apps" => rt.kind != "ControllerRevision",
        "batch" | "apiextensions.k8s.io" | "admissionregistration.k8s.io" | "discovery.k8s.io" => {
            true
        }
        "" => rt.kind == "Pod",
        "networking.k8s.io" => matches!(rt.kind.as_str(), "Ingress" | "NetworkPolicy"),
        "policy" => rt.kind == "PodDisruptionBudget",
        "autoscaling" => rt.kind == "HorizontalPodAutoscaler",
        g => !manifest::schema::is_builtin_group(g),
    }
}

fn precondition_failed(
    rt: &ResourceType,
    name: &str,
    what: &str,
    want: &str,
    have: &str,
) -> ApiError {
    let mut e = ApiError::stale(&rt.group, &rt.plural, name);
    e.message = format!(
        "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
    );
    e
}

/// A Secret's `stringData` is written into `data`, base64-encoded, as the API server
/// does; `stringData` itself is never stored.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(obj) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(sd)) = obj.remove("stringData") else {
        return;
    };
    let data = obj.entry("data").or_insert_with(|| json!({}));
    if let Some(d) = data.as_object_mut() {
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                d.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

fn set_crd_status(crd: &mut Value, t: &ResourceType) {
    let now = now_rfc3339();
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": [t.versions[0]],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(100)
    }

    fn rt(s: &Store, group: &str, kind: &str) -> ResourceType {
        s.registry.by_kind(group, kind).cloned().unwrap()
    }

    fn opts(manager: &str) -> WriteOptions {
        WriteOptions {
            manager: manager.into(),
            dry_run: false,
            force: false,
            validation: FieldValidation::Strict,
            status: false,
        }
    }

    fn deployment(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    #[test]
    fn generation_moves_with_the_spec_only_and_status_only_through_its_subresource() {
        let mut s = store();
        let d = rt(&s, "apps", "Deployment");
        let created = s
            .create(&d, "v1", Some("default"), deployment("a"), &opts("t"))
            .unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        let mut labelled = (*created).clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        labelled["status"] = json!({"replicas": 9});
        let after = s
            .update(&d, "v1", Some("default"), "web", labelled, &opts("t"))
            .unwrap();
        assert_eq!(
            after["metadata"]["generation"], 1,
            "metadata changes keep the generation"
        );
        assert_eq!(
            after["status"],
            json!({}),
            "status is ignored on the main resource"
        );
        let mut status = (*after).clone();
        status["status"] = json!({"replicas": 2});
        status["spec"]["paused"] = json!(true);
        let mut st = opts("controller");
        st.status = true;
        let after = s
            .update(&d, "v1", Some("default"), "web", status, &st)
            .unwrap();
        assert_eq!(after["status"]["replicas"], 2);
        assert!(
            after["spec"].get("paused").is_none(),
            "spec is ignored on the status subresource"
        );
        let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}});
        let changed = s
            .patch(
                &d,
                "v1",
                Some("default"),
                "web",
                PatchKind::Strategic,
                &image,
                &opts("t"),
            )
            .unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
    }

    #[test]
    fn finalizers_hold_a_deleted_object_until_they_are_removed() {
        let mut s = store();
        let cm = rt(&s, "", "ConfigMap");
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}});
        s.create(&cm, "v1", Some("default"), body, &opts("t"))
            .unwrap();
        let marked = s
            .delete(&cm, Some("default"), "held", &DeleteOptions::default())
            .unwrap();
        assert!(!marked["metadata"]["deletionTimestamp"].is_null());
        assert!(s.exists(&cm, Some("default"), "held"));
        let release = json!({"metadata": {"finalizers": null}});
        s.patch(
            &cm,
            "v1",
            Some("default"),
            "held",
            PatchKind::Merge,
            &release,
            &opts("t"),
        )
        .unwrap();
        assert!(!s.exists(&cm, Some("default"), "held"));
    }

    #[test]
    fn deleting_an_owner_collects_its_dependents_unless_orphaned() {
        let mut s = store();
        let cm = rt(&s, "", "ConfigMap");
        let owner = s
            .create(
                &cm,
                "v1",
                Some("default"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
                &opts("t"),
            )
            .unwrap();
        let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
        for name in ["a", "b"] {
            let dep = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name,
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
            s.create(&cm, "v1", Some("default"), dep, &opts("t"))
                .unwrap();
        }
        s.delete(
            &cm,
            Some("default"),
            "owner",
            &DeleteOptions {
                propagation: "Background".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!s.exists(&cm, Some("default"), "a") && !s.exists(&cm, Some("default"), "b"));
    }

    #[test]
    fn a_foreground_delete_marks_the_owner_until_its_blocking_dependents_are_gone() {
        let mut s = store();
        let cm = rt(&s, "", "ConfigMap");
        let owner = s
            .create(
                &cm,
                "v1",
                Some("default"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
                &opts("t"),
            )
            .unwrap();
        let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
        let dep = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dep",
            "finalizers": ["example.com/hold"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": uid, "blockOwnerDeletion": true}]}});
        s.create(&cm, "v1", Some("default"), dep, &opts("t"))
            .unwrap();
        let foreground = DeleteOptions {
            propagation: "Foreground".into(),
            ..Default::default()
        };
        let marked = s
            .delete(&cm, Some("default"), "owner", &foreground)
            .unwrap();
        assert_eq!(
            marked["metadata"]["finalizers"],
            json!(["foregroundDeletion"])
        );
        assert!(!marked["metadata"]["deletionTimestamp"].is_null());
        // The dependent is deleted by the collector, not by the request.
        assert!(
            s.get(&cm, Some("default"), "dep").unwrap()["metadata"]["deletionTimestamp"].is_null()
        );
        s.collect_foreground();
        let dep = s.get(&cm, Some("default"), "dep").unwrap();
        assert!(!dep["metadata"]["deletionTimestamp"].is_null(), "{dep}");
        assert!(
            s.exists(&cm, Some("default"), "owner"),
            "held by its dependent"
        );
        let release = json!({"metadata": {"finalizers": null}});
        s.patch(
            &cm,
            "v1",
            Some("default"),
            "dep",
            PatchKind::Merge,
            &release,
            &opts("t"),
        )
        .unwrap();
        s.collect_foreground();
        assert!(!s.exists(&cm, Some("default"), "owner"));
    }

    #[test]
    fn an_orphaning_delete_strips_the_owner_reference_and_keeps_the_dependent() {
        let mut s = store();
        let cm = rt(&s, "", "ConfigMap");
        let owner = s
            .create(
                &cm,
                "v1",
                Some("default"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
                &opts("t"),
            )
            .unwrap();
        let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
        let dep = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dep",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
        s.create(&cm, "v1", Some("default"), dep, &opts("t"))
            .unwrap();
        let orphan = DeleteOptions {
            propagation: "Orphan".into(),
            ..Default::default()
        };
        s.delete(&cm, Some("default"), "owner", &orphan).unwrap();
        let left = s.get(&cm, Some("default"), "dep").unwrap();
        assert!(left["metadata"].get("ownerReferences").is_none(), "{left}");
    }

    #[test]
    fn a_new_namespace_gets_its_service_account_and_root_ca_at_once() {
        let mut s = store();
        let ns = rt(&s, "", "Namespace");
        s.create(
            &ns,
            "v1",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
            &opts("t"),
        )
        .unwrap();
        assert!(s.exists(&rt(&s, "", "ServiceAccount"), Some("team"), "default"));
        assert!(s.exists(&rt(&s, "", "ConfigMap"), Some("team"), "kube-root-ca.crt"));
    }

    #[test]
    fn a_dry_run_stores_nothing_and_emits_nothing() {
        let mut s = store();
        let cm = rt(&s, "", "ConfigMap");
        let rv = s.resource_version();
        let mut dry = opts("t");
        dry.dry_run = true;
        let out = s
            .create(
                &cm,
                "v1",
                Some("default"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
                &dry,
            )
            .unwrap();
        assert_eq!(out["metadata"]["name"], "x");
        assert!(!s.exists(&cm, Some("default"), "x"));
        assert_eq!(s.resource_version(), rv);
    }

    #[test]
    fn deleting_a_namespace_deletes_what_it_contains() {
        let mut s = store();
        let ns = rt(&s, "", "Namespace");
        let cm = rt(&s, "", "ConfigMap");
        s.create(
            &ns,
            "v1",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
            &opts("t"),
        )
        .unwrap();
        s.create(
            &cm,
            "v1",
            Some("team"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            &opts("t"),
        )
        .unwrap();
        s.delete(&ns, None, "team", &DeleteOptions::default())
            .unwrap();
        assert!(!s.exists(&cm, Some("team"), "x"));
        assert!(!s.exists(&ns, None, "team"));
        let err = s
            .create(
                &cm,
                "v1",
                Some("team"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}}),
                &opts("t"),
            )
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (404, "namespaces \"team\" not found")
        );
    }
}
