//! [`Reconciler::reconcile`]: one app's revision brought to one cluster, as a short
//! list of stages, each a function whose result is data for the next: resolve and
//! check (kinds and the tenancy policy) → read live → compare → the app's namespace →
//! dry run → record the intent in the inventory → the first new object, alone →
//! apply the rest in kind order → prune → record what was done (unless the intent
//! already was: nothing to prune) → report (changes and health). The first error ends
//! the reconcile; before the intent is recorded nothing has been written, and a
//! refusal of a new app's first object (the one write not dry-run: see
//! [`unverified_first`]) deletes the inventory again.

use std::collections::{BTreeSet, HashMap};

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;
use std::time::Duration;

use super::diff::{self, FIELD_MANAGER, Sync, sync_state};
use super::health::{Health, health_of, health_with};
use super::inventory::{Inventory, ObjectKey};
use super::retry::{self, with_retries};
use super::{
    Action, AppRevision, Applied, ApplyError, Change, Reconciler, api_with, app_read_error,
    bounded, conflicts_only_with_updates, drift, impersonated_user, message_of, prepare,
    webhook_error,
};
use crate::fleet::health::HealthRule;
use crate::fleet::tenancy::{check_objects, namespaced_offline};
use crate::vocab::RECONCILE_ANNOTATION;

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

/// Checks `objects` against the app's policy; `namespaced` per object from discovery
/// (`None`: a kind the revision's own CRD defines, judged from that CRD).
// ApplyError is this module's one error, returned the same way by the async stages.
#[allow(clippy::result_large_err)]
pub(super) fn enforce_policy(
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

/// Whether a real apply's answer shows an object that existed before it: one that
/// server-side apply creates has a single field manager, this one; an object someone
/// else made (or took the label of) has theirs too.
fn existed_before(answer: &Value) -> bool {
    answer["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|fields| fields.iter().any(|f| f["manager"] != FIELD_MANAGER))
}

/// The object a new app's reconcile writes without a dry run, if any: of the objects
/// to create, one of the first kind stage to be written, alone and before every other
/// object. Its own apply is all-or-nothing: if the server refuses it, no other object
/// has been written yet (every other one passed its dry run), so a refused revision
/// still writes none of its objects, and a cold apply costs one request less per app.
/// Only for an app without an inventory: for one that has objects, an object missing
/// from the watch may be one whose label someone took away, which only a dry run
/// tells before the write, and a refusal would have to put an inventory back.
/// None when the first stage to write holds CRDs (they are waited for as a batch) or
/// no object to create; of several, a ServiceAccount, ConfigMap or Secret first (the
/// API server validates little of them beyond their name), then the first in order.
fn unverified_first(planned: &[Planned], pending: &[usize]) -> Option<usize> {
    let stage_of = |i: usize| {
        let p = &planned[i];
        stage(&p.key, p.resource.as_ref().is_none_or(|r| r.1))
    };
    let first_stage = pending.iter().map(|&i| stage_of(i)).min()?;
    let little_to_validate = |p: &Planned| {
        p.key.group.is_empty()
            && matches!(
                p.key.kind.as_str(),
                "ServiceAccount" | "ConfigMap" | "Secret"
            )
    };
    let candidates = pending.iter().copied().filter(|&i| {
        let p = &planned[i];
        stage_of(i) == first_stage
            && p.sync == Sync::Missing
            && p.resource.is_some()
            && p.skipped.is_none()
    });
    (first_stage > 0)
        .then(|| candidates.min_by_key(|&i| !little_to_validate(&planned[i])))
        .flatten()
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

/// One object of the revision on its way through the stages.
pub(super) struct Planned {
    pub(super) key: ObjectKey,
    pub(super) obj: Value,
    /// Its kind's resource and scope; `None` until a CRD of the revision serves it.
    pub(super) resource: Option<(ApiResource, bool)>,
    pub(super) sync: Sync,
    /// Why it is left alone, when it is.
    pub(super) skipped: Option<String>,
}

/// The revision after the first stage: its objects resolved and checked.
struct Revision {
    planned: Vec<Planned>,
    /// Namespaces the revision itself creates.
    namespaces: BTreeSet<String>,
}

/// What the dry run found besides refusals, by index into the planned objects.
#[derive(Default)]
struct DryRun {
    /// The server would change nothing: not to be applied.
    unchanged: BTreeSet<usize>,
    /// Missing from the watch (which lists only objects labelled as rollwave's) but
    /// existing on the server: someone took the label away.
    existing: BTreeSet<usize>,
}

impl DryRun {
    /// Takes what the dry run found into the plan: objects the server would not
    /// change are in sync and leave `pending`; existing ones are taken back, not
    /// created.
    fn settle(&self, planned: &mut [Planned], pending: &mut Vec<usize>) {
        for &i in &self.unchanged {
            planned[i].sync = Sync::InSync;
        }
        for &i in &self.existing {
            planned[i].sync = Sync::Ownership;
        }
        pending.retain(|i| !self.unchanged.contains(i));
    }
}

/// What the reconcile is about to make of the app's inventory.
struct Intent {
    /// Every object of the revision.
    desired: BTreeSet<ObjectKey>,
    /// Objects of the inventory the revision no longer has: to prune.
    absent: Vec<ObjectKey>,
    /// The identity the app is applied as ([`impersonated_user`]).
    applied_as: Option<String>,
    /// Nothing to write, nothing to prune, and the inventory already says so: the
    /// reconcile writes nothing at all.
    unchanged: bool,
}

impl Intent {
    fn of(
        rev: &AppRevision<'_>,
        inventory: &Inventory,
        planned: &[Planned],
        pending: &[usize],
    ) -> Intent {
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
        let unchanged = pending.is_empty()
            && absent.is_empty()
            && inventory.applying.is_none()
            && inventory.release == rev.release
            && inventory.content_hash == rev.content_hash
            && inventory.removal == rev.removal
            && inventory.applied_as == applied_as
            && inventory.objects == desired;
        Intent {
            desired,
            absent,
            applied_as,
            unchanged,
        }
    }
}

/// What stage 5 recorded in the inventory.
enum Recorded {
    /// The intent (old and new objects, `applying`): stage 8 records what was done.
    Intent,
    /// What the inventory says once the writes are done (nothing to prune): stage 8
    /// has nothing to write. `unfinished` is what to record should a write fail, when
    /// the release is not the one the inventory had as applied.
    Final { unfinished: Option<Inventory> },
}

impl Recorded {
    fn is_final(&self) -> bool {
        matches!(self, Recorded::Final { .. })
    }
}

/// What prune did.
#[derive(Default)]
struct Pruned {
    /// One change per deleted (or kept) object.
    changes: Vec<Change>,
    /// The objects the inventory must keep naming: the revision's and those that
    /// could not be deleted.
    kept: BTreeSet<ObjectKey>,
    /// The first failure.
    error: Option<ApplyError>,
}

/// The objects to write: neither skipped nor in sync.
fn changed(planned: &[Planned]) -> Vec<usize> {
    (0..planned.len())
        .filter(|&i| planned[i].skipped.is_none() && planned[i].sync != Sync::InSync)
        .collect()
}

/// The app's namespace the agent makes (app.yaml `namespace`), unless the revision
/// makes it itself. An app applied as a ServiceAccount of its namespace lives in a
/// namespace the platform made (with that ServiceAccount); the agent does not make it.
fn app_namespace<'a>(rev: &AppRevision<'a>, of_revision: &BTreeSet<String>) -> Option<&'a str> {
    rev.namespace.filter(|ns| {
        !ns.is_empty() && !of_revision.contains(*ns) && impersonated_user(rev).is_none()
    })
}

/// The (group, kind) of every CRD among `objects`: kinds the revision brings.
fn kinds_of_crds(objects: &[Value]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            (text(&c["spec"]["group"]), text(&c["spec"]["names"]["kind"]))
        })
        .collect()
}

fn unknown_kind(obj: &Value, object: ObjectKey) -> ApplyError {
    ApplyError::UnknownKind {
        api_version: obj["apiVersion"].as_str().unwrap_or("").to_string(),
        kind: object.kind.clone(),
        object,
    }
}

/// The error of a refused dry run, or `None` when the refusal only says that the
/// revision creates what the object needs first: its namespace, or (for a binding
/// written by an identity that may not `bind`) the role it refers to, which the
/// apiserver reads to check the writer holds its permissions.
fn dry_run_refusal(
    p: &Planned,
    e: &kube::Error,
    attempts: u32,
    revision: &Revision,
) -> Option<ApplyError> {
    if let Some(w) = webhook_error(&p.key, e) {
        return Some(w);
    }
    let kube::Error::Api(s) = e else {
        return Some(ApplyError::Write {
            object: p.key.clone(),
            message: message_of(e),
            attempts,
            retryable: true,
        });
    };
    let namespace_pending = s.code == 404
        && revision.namespaces.contains(&p.key.namespace)
        && s.message.starts_with("namespaces ");
    let role_pending =
        s.code == 404 && binds_a_role_of(&p.obj, revision.planned.iter().map(|q| &q.obj));
    if namespace_pending || role_pending {
        return None;
    }
    Some(if s.code == 409 && s.message.starts_with("Apply failed") {
        ApplyError::Conflict {
            object: p.key.clone(),
            message: s.message.clone(),
        }
    } else if s.code < 500 && s.code != 429 {
        ApplyError::Rejected {
            object: p.key.clone(),
            message: s.message.clone(),
        }
    } else {
        ApplyError::Write {
            object: p.key.clone(),
            message: s.message.clone(),
            attempts,
            retryable: true,
        }
    })
}

/// The error of a failed write (after retries).
fn write_error(key: &ObjectKey, e: &kube::Error, attempts: u32) -> ApplyError {
    webhook_error(key, e).unwrap_or_else(|| ApplyError::Write {
        object: key.clone(),
        message: message_of(e),
        attempts,
        retryable: retry::classify(e) != retry::Verdict::Permanent,
    })
}

/// Stage 9, the report: what was done to each object (after what prune did) and the
/// app's health, from what the apply returned or the live state.
fn report(
    inventory: &Inventory,
    rev: &AppRevision<'_>,
    planned: &[Planned],
    written: &HashMap<usize, Value>,
    live: &HashMap<usize, Value>,
    rules: &[HealthRule],
    mut changes: Vec<Change>,
) -> Applied {
    let mut worst = Health::Healthy;
    let mut unhealthy = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        let action = match (&p.skipped, written.contains_key(&i)) {
            (Some(reason), _) => Action::Skipped(reason.clone()),
            (None, true) if p.sync == Sync::Missing => Action::Created,
            (None, true) => Action::Configured,
            (None, false) => Action::Unchanged,
        };
        if let Some(obj) = written.get(&i).or(live.get(&i)) {
            let v = health_with(obj, rules);
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
    let same_release = inventory.applying.is_none()
        && inventory.release == rev.release
        && inventory.content_hash == rev.content_hash;
    let drift_corrections = if same_release {
        changes
            .iter()
            .filter(|c| c.action == Action::Configured || c.action == Action::Created)
            .count()
    } else {
        0
    };
    Applied {
        changes: changes.into(),
        health: worst,
        unhealthy,
        drift_corrections,
    }
}

impl Reconciler {
    /// Brings the cluster to `rev`, stage after stage (see the module documentation):
    /// nothing is written before every object has passed the policy and the dry run
    /// (but a new app's one object written alone, before the others: see
    /// `unverified_first`), and the inventory names every object before any is
    /// created.
    pub async fn reconcile(&self, rev: &AppRevision<'_>) -> Result<Applied, ApplyError> {
        if let Some(applied) = self.still_settled(rev) {
            return Ok(applied);
        }
        self.settled.forget(rev.app);
        let client = &self.client_for(rev)?;
        let mut revision = self.resolve_and_check(rev).await?;
        let inventory = self.read_inventory(rev.app).await?;
        let live = self.read_live(client, rev, &revision.planned).await?;
        self.compare(&mut revision.planned, &live);
        let mut pending = changed(&revision.planned);
        let namespace = app_namespace(rev, &revision.namespaces);
        let namespace_made = !pending.is_empty() && self.make_app_namespace(namespace).await?;
        let unverified = (inventory == Inventory::none(rev.app) && !self.first_write_refused(rev))
            .then(|| unverified_first(&revision.planned, &pending))
            .flatten();
        let to_check: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| Some(i) != unverified)
            .collect();
        let dry_run = self
            .dry_run(client, rev, &revision, &to_check, &live)
            .await?;
        dry_run.settle(&mut revision.planned, &mut pending);
        let intent = Intent::of(rev, &inventory, &revision.planned, &pending);
        if intent.unchanged {
            let rules = self.health_rules();
            let applied = report(
                &inventory,
                rev,
                &revision.planned,
                &HashMap::new(),
                &live,
                &rules,
                Vec::new(),
            );
            if self.cache.is_some() && intent.applied_as.is_none() {
                let compared =
                    (revision.planned.iter().enumerate()).map(|(i, p)| (&p.key, live.get(&i)));
                self.settled.remember(rev, rules, compared, &applied);
            }
            return Ok(applied);
        }
        if !namespace_made {
            self.make_app_namespace(namespace).await?;
        }
        let recorded = self.record_intent(rev, &inventory, &intent).await?;
        let mut results = HashMap::new();
        if let Some(i) = unverified {
            match self.write_first(client, rev, &mut revision, i).await {
                Ok(answer) => {
                    results.insert(i, answer);
                    pending.retain(|&j| j != i);
                }
                Err(refused) => {
                    self.undo_intent(rev).await;
                    return Err(refused);
                }
            }
        }
        match self
            .apply_in_kind_order(client, rev, &mut revision.planned, &pending)
            .await
        {
            Ok(written) => results.extend(written),
            Err(e) => {
                self.mark_unfinished(&recorded).await;
                return Err(e);
            }
        };
        let pruned = self.prune_stage(client, rev.app, &intent).await;
        if !recorded.is_final() {
            self.record_done(rev, &inventory, &intent, &pruned.kept)
                .await?;
        }
        if let Some(e) = pruned.error {
            return Err(e);
        }
        Ok(report(
            &inventory,
            rev,
            &revision.planned,
            &results,
            &live,
            &self.health_rules(),
            pruned.changes,
        ))
    }

    /// The report of the app's last reconcile, when it wrote nothing and nothing it was
    /// judged from changed since ([`super::settled`]): an app applied as itself, with
    /// the watch cache answering for its objects.
    fn still_settled(&self, rev: &AppRevision<'_>) -> Option<Applied> {
        let cache = self.cache.as_ref()?;
        if impersonated_user(rev).is_some() {
            return None;
        }
        let inventory_held =
            (self.inventories.lock().unwrap_or_else(|e| e.into_inner())).contains_key(rev.app);
        self.settled
            .unchanged(rev, &self.health_rules(), inventory_held, cache)
    }

    /// Stage 1, the render check and the policy: resolves every object's kind (a kind
    /// neither served nor defined by a CRD of the revision is refused), leaves out
    /// the namespace of cluster-scoped objects, and checks the app's tenancy policy.
    async fn resolve_and_check(&self, rev: &AppRevision<'_>) -> Result<Revision, ApplyError> {
        let mut objects = prepare(rev.objects);
        let crd_kinds = kinds_of_crds(&objects);
        let namespaces: BTreeSet<String> = objects
            .iter()
            .filter(|o| o["kind"] == "Namespace" && o["apiVersion"] == "v1")
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .collect();
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
                return Err(unknown_kind(&obj, key));
            }
            planned.push(Planned {
                key,
                obj,
                resource,
                sync: Sync::Missing,
                skipped: None,
            });
        }
        Ok(Revision {
            planned,
            namespaces,
        })
    }

    /// Stage 2, the live objects, by index into `planned`: from the watch cache when it
    /// has them, else one read each. The watch reads as the agent, so an app applied
    /// as its ServiceAccount reads its objects (and so their health) as that
    /// ServiceAccount, directly; the agent's watch still notices drift on them.
    async fn read_live(
        &self,
        client: &Client,
        rev: &AppRevision<'_>,
        planned: &[Planned],
    ) -> Result<HashMap<usize, Value>, ApplyError> {
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
                let api = api_with(client, ar, *namespaced, &p.key.namespace);
                (i, self.get_json(&api, &p.key.name).await)
            });
        }
        let mut live = HashMap::new();
        for (i, r) in bounded(reads, self.concurrency).await {
            match r {
                Ok(Some(v)) => {
                    live.insert(i, v);
                }
                // A namespace that does not exist yet reads as 404 too (no object).
                Ok(None) => {}
                Err(e) => return Err(app_read_error(rev, planned[i].key.clone(), &e)),
            }
        }
        Ok(live)
    }

    /// Stage 3, the comparison: each object's [`Sync`] against its live state, or why
    /// it is left alone. A difference an earlier dry run or apply showed to be none
    /// counts as in sync.
    fn compare(&self, planned: &mut [Planned], live: &HashMap<usize, Value>) {
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
    }

    /// Makes the app's namespace when it has one to make; whether it did. It comes
    /// before the dry run: in a namespace that does not exist the API server answers
    /// a dry run with 404 before it validates anything, so without it a revision it
    /// would refuse could get halfway written. It is not part of the revision (never
    /// pruned), so making it is not a write of the revision.
    async fn make_app_namespace(&self, namespace: Option<&str>) -> Result<bool, ApplyError> {
        match namespace {
            Some(ns) => self.ensure_namespace_named(ns).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Stage 4, the dry run of every object to be written: the first refusal is the
    /// reconcile's error, and nothing has been written.
    async fn dry_run(
        &self,
        client: &Client,
        rev: &AppRevision<'_>,
        revision: &Revision,
        pending: &[usize],
        live: &HashMap<usize, Value>,
    ) -> Result<DryRun, ApplyError> {
        let planned = &revision.planned;
        let mut checks = Vec::new();
        for &i in pending {
            let p = &planned[i];
            if p.resource.is_some() {
                checks.push(async move { (i, self.apply_one(client, p, rev.force, true).await) });
            }
        }
        let mut checks = bounded(checks, self.concurrency).await;
        checks.sort_by_key(|(i, _)| *i);
        let mut found = DryRun::default();
        for (i, answer) in checks {
            let p = &planned[i];
            match answer {
                Ok(after) => {
                    if p.sync == Sync::Missing && exists_per_dry_run(&after) {
                        found.existing.insert(i);
                    }
                    // The comparison saw a difference the server does not: the apply
                    // would change nothing, so it is not sent (and the answer is
                    // remembered).
                    if let Some(l) = live.get(&i)
                        && diff::dry_run_changes_nothing(&after, l)
                    {
                        self.verified.remember(&verified_id(&p.key), &p.obj, l);
                        found.unchanged.insert(i);
                    }
                }
                Err((e, attempts)) => {
                    if let Some(refused) = dry_run_refusal(p, &e, attempts, revision) {
                        return Err(refused);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Stage 5, the inventory before any write: it names every object that may exist
    /// after this reconcile, and the release being applied. When nothing is to be
    /// pruned, what it must say once the writes are done is known now (the revision's
    /// objects, the release applied), so that is what is written, and stage 8 writes
    /// nothing: a cold apply, or any change that removes no object, costs the inventory
    /// one write instead of two. Should a write then fail, [`Self::mark_unfinished`]
    /// says so; an agent killed mid-apply leaves an inventory that names objects not
    /// written yet, which the next reconcile finds different from the live ones and
    /// writes (it only counts them as drift corrections).
    async fn record_intent(
        &self,
        rev: &AppRevision<'_>,
        inventory: &Inventory,
        intent: &Intent,
    ) -> Result<Recorded, ApplyError> {
        let mut recording = inventory.clone();
        recording.removal = rev.removal;
        recording.applied_as = intent.applied_as.clone();
        if intent.absent.is_empty() {
            recording.objects = intent.desired.clone();
            recording.release = rev.release.to_string();
            recording.content_hash = rev.content_hash.to_string();
            recording.applying = None;
        } else {
            recording.objects.extend(intent.desired.iter().cloned());
            recording.applying = Some(rev.release.to_string());
        }
        if recording != *inventory {
            self.write_inventory(&recording).await?;
        }
        if !intent.absent.is_empty() {
            return Ok(Recorded::Intent);
        }
        let another_release = inventory.applying.is_some()
            || inventory.release != rev.release
            || inventory.content_hash != rev.content_hash;
        Ok(Recorded::Final {
            unfinished: another_release.then(|| Inventory {
                applying: Some(recording.release.clone()),
                ..recording
            }),
        })
    }

    /// After a write of stage 6 failed, an inventory recorded as final for another
    /// release says that the release is still being applied, so that the next
    /// reconcile counts what it writes as the release's, not as drift. Best effort:
    /// the reconcile reports the write's error either way.
    async fn mark_unfinished(&self, recorded: &Recorded) {
        if let Recorded::Final {
            unfinished: Some(inventory),
        } = recorded
            && let Err(e) = self.write_inventory(inventory).await
        {
            tracing::warn!(app = %inventory.app, error = %e, "could not mark the inventory as still applying");
        }
    }

    /// Stage 6a, the object [`unverified_first`] chose, applied alone: its answer, or
    /// its refusal as a dry run's would be (nothing of the revision is written).
    /// Should it be refused, the revision's next reconciles dry-run every object
    /// ([`Self::first_write_refused`]), so a new app the server keeps refusing costs
    /// the inventory's write and delete once, not at every pass.
    async fn write_first(
        &self,
        client: &Client,
        rev: &AppRevision<'_>,
        revision: &mut Revision,
        i: usize,
    ) -> Result<Value, ApplyError> {
        let p = &revision.planned[i];
        match self.apply_one(client, p, rev.force, false).await {
            Ok(answer) => {
                self.took(p, &answer);
                if existed_before(&answer) {
                    revision.planned[i].sync = Sync::Ownership;
                }
                Ok(answer)
            }
            Err((e, attempts)) => {
                self.refused_first
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(rev.app.to_string(), rev.content_hash.to_string());
                Err(dry_run_refusal(p, &e, attempts, revision)
                    .unwrap_or_else(|| write_error(&p.key, &e, attempts)))
            }
        }
    }

    /// Whether this revision's first object was refused before: then every object is
    /// dry-run again.
    fn first_write_refused(&self, rev: &AppRevision<'_>) -> bool {
        let refused = self.refused_first.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .get(rev.app)
            .is_some_and(|hash| hash == rev.content_hash)
    }

    /// After the first object of a new app was refused: no inventory, as before stage
    /// 5, so that the refused revision leaves none, as a refused dry run does. Best
    /// effort: the reconcile reports the refusal either way, and an inventory left
    /// behind names objects that do not exist, which prune takes as gone.
    async fn undo_intent(&self, rev: &AppRevision<'_>) {
        if let Err(e) = self.delete_inventory(rev.app).await {
            tracing::warn!(app = rev.app, error = %e, "could not delete the inventory again after the app's first object was refused");
        }
    }

    /// Stage 6b, the other writes: server-side apply of the changed objects, kind stage by
    /// kind stage ([`stage`]). CRDs are waited for until established, and kinds they
    /// define are resolved before the first namespaced stage. The server's answers,
    /// by index into `planned`.
    async fn apply_in_kind_order(
        &self,
        client: &Client,
        rev: &AppRevision<'_>,
        planned: &mut [Planned],
        pending: &[usize],
    ) -> Result<HashMap<usize, Value>, ApplyError> {
        let mut results = HashMap::new();
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
                self.resolve_new_kinds(planned, &batch).await?;
            }
            results.extend(self.apply_batch(client, rev, planned, &batch).await?);
            if s == 0 && !batch.is_empty() {
                let crds: Vec<String> =
                    batch.iter().map(|&i| planned[i].key.name.clone()).collect();
                self.wait_established(&crds).await?;
                self.refresh_discovery().await?;
            }
        }
        Ok(results)
    }

    /// Resolves the kinds of `batch` that CRDs of this revision define, served now.
    async fn resolve_new_kinds(
        &self,
        planned: &mut [Planned],
        batch: &[usize],
    ) -> Result<(), ApplyError> {
        for &i in batch {
            if planned[i].resource.is_none() {
                let Some(resource) = self.resolve(&planned[i].key).await? else {
                    return Err(unknown_kind(&planned[i].obj, planned[i].key.clone()));
                };
                planned[i].resource = Some(resource);
            }
        }
        Ok(())
    }

    /// Applies one kind stage's objects side by side; the first failure is the error.
    /// What the server made of each rendering is remembered as desired (whatever the
    /// comparison makes of it) and recorded in the watch cache.
    async fn apply_batch(
        &self,
        client: &Client,
        rev: &AppRevision<'_>,
        planned: &[Planned],
        batch: &[usize],
    ) -> Result<Vec<(usize, Value)>, ApplyError> {
        let applying = batch.iter().map(|&i| {
            let p = &planned[i];
            async move { (i, self.apply_one(client, p, rev.force, false).await) }
        });
        let mut written = Vec::with_capacity(batch.len());
        let mut failure = None;
        for (i, r) in bounded(applying.collect(), self.concurrency).await {
            let p = &planned[i];
            match r {
                Ok(v) => {
                    self.took(p, &v);
                    written.push((i, v));
                }
                Err((e, attempts)) => {
                    failure.get_or_insert_with(|| write_error(&p.key, &e, attempts));
                }
            }
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(written),
        }
    }

    /// What the server made of a written rendering: remembered as desired (whatever
    /// the comparison makes of it) and recorded in the watch cache.
    fn took(&self, p: &Planned, answer: &Value) {
        if sync_state(&p.obj, Some(answer)) != Sync::InSync {
            self.verified.remember(&verified_id(&p.key), &p.obj, answer);
        }
        if let Some(cache) = &self.cache {
            let k = &p.key;
            cache.record(
                &(k.group.clone(), k.version.clone(), k.kind.clone()),
                answer,
            );
        }
    }

    /// Stage 7, prune: deletes what the inventory names and the revision does not. An
    /// object that could not be deleted stays in the inventory.
    async fn prune_stage(&self, client: &Client, app: &str, intent: &Intent) -> Pruned {
        let mut pruned = Pruned {
            kept: intent.desired.clone(),
            ..Pruned::default()
        };
        for (key, outcome) in self.prune_absent(client, app, &intent.absent).await {
            match outcome {
                Ok(action) => pruned.changes.push(Change {
                    object: key,
                    action,
                }),
                Err(e) => {
                    pruned.kept.insert(key);
                    pruned.error.get_or_insert(e);
                }
            }
        }
        pruned
    }

    /// Stage 8, the inventory after the writes: the release applied, and the objects
    /// that exist now.
    async fn record_done(
        &self,
        rev: &AppRevision<'_>,
        inventory: &Inventory,
        intent: &Intent,
        kept: &BTreeSet<ObjectKey>,
    ) -> Result<(), ApplyError> {
        let mut done = inventory.clone();
        done.objects = kept.clone();
        done.release = rev.release.to_string();
        done.content_hash = rev.content_hash.to_string();
        done.applying = None;
        done.removal = rev.removal;
        done.applied_as = intent.applied_as.clone();
        self.write_inventory(&done).await
    }

    /// Creates a namespace when it does not exist: nothing when the watch cache has
    /// it (one rollwave made), else one create, which the server answers with 409
    /// when it exists already. A namespace someone else made is left as it is (never
    /// applied, so rollwave takes no field of it). An identity that may not create
    /// namespaces gets 403 even for one that exists, so a 403 is followed by a read.
    pub(super) async fn ensure_namespace_named(&self, name: &str) -> Result<(), ApplyError> {
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
    pub(super) async fn apply_one(
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

    /// A planned object of `kind` (core group unless `group/kind`), `namespaced` or
    /// not, in `sync`.
    fn planned(kind: &str, sync: Sync) -> Planned {
        let (group, kind) = kind.split_once('/').unwrap_or(("", kind));
        let namespaced = !matches!(
            kind,
            "Namespace" | "ClusterRole" | "CustomResourceDefinition"
        );
        let k = ObjectKey {
            name: kind.to_lowercase(),
            ..key(group, kind, if namespaced { "a" } else { "" })
        };
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        Planned {
            key: k,
            obj: json!({}),
            resource: Some((ApiResource::from_gvk(&gvk), namespaced)),
            sync,
            skipped: None,
        }
    }

    #[test]
    fn the_unverified_object_is_one_to_create_of_the_first_stage_written() {
        let first = |objects: &[Planned]| {
            let pending: Vec<usize> = (0..objects.len()).collect();
            unverified_first(objects, &pending).map(|i| objects[i].key.kind.clone())
        };
        let missing = Sync::Missing;
        let changed = Sync::Differs(String::new());
        // Of several to create in the first stage, the one with little to validate.
        let app = [
            planned("apps/Deployment", missing.clone()),
            planned("Service", missing.clone()),
            planned("ServiceAccount", missing.clone()),
        ];
        assert_eq!(first(&app).as_deref(), Some("ServiceAccount"));
        // Else the first in order.
        let app = [
            planned("apps/Deployment", missing.clone()),
            planned("Service", missing.clone()),
        ];
        assert_eq!(first(&app).as_deref(), Some("Deployment"));
        // Written alone before every other object: never one of a later stage.
        let app = [
            planned("ServiceAccount", missing.clone()),
            planned("ClusterRole", changed.clone()),
        ];
        assert_eq!(
            first(&app),
            None,
            "the ClusterRole goes first, and it exists"
        );
        let app = [
            planned("ServiceAccount", missing.clone()),
            planned("Namespace", missing.clone()),
        ];
        assert_eq!(first(&app).as_deref(), Some("Namespace"));
        // Nothing to create, or CRDs first (waited for as a batch): every object is
        // dry-run.
        let app = [planned("ConfigMap", changed.clone())];
        assert_eq!(first(&app), None);
        let app = [
            planned(
                "apiextensions.k8s.io/CustomResourceDefinition",
                missing.clone(),
            ),
            planned("ConfigMap", missing.clone()),
        ];
        assert_eq!(first(&app), None);
        // A kind a CRD of the revision defines is not served yet: never unverified.
        let mut widget = planned("example.com/Widget", missing.clone());
        widget.resource = None;
        assert_eq!(first(&[widget]), None);
        // Only the pending objects count.
        let app = [
            planned("ServiceAccount", missing.clone()),
            planned("Service", missing),
        ];
        assert_eq!(
            unverified_first(&app, &[1])
                .map(|i| app[i].key.kind.clone())
                .as_deref(),
            Some("Service")
        );
    }

    #[test]
    fn an_answer_with_another_field_manager_shows_an_object_that_existed() {
        let answer = |managers: &[&str]| {
            let fields: Vec<Value> = managers.iter().map(|m| json!({"manager": m})).collect();
            json!({"metadata": {"managedFields": fields}})
        };
        assert!(!existed_before(&answer(&[FIELD_MANAGER])));
        assert!(existed_before(&answer(&[FIELD_MANAGER, "kubectl-edit"])));
        assert!(!existed_before(&json!({"metadata": {}})));
    }
}
