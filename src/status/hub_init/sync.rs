//! `hub init --check` and `--apply`: the only part of `hub init` that talks to the
//! hub. Both first read what the hub holds, a few requests whatever the fleet's size
//! (one list per kind in the namespace; status objects by their metadata only, since
//! they may hold a megabyte of status each), and compare it with the objects
//! ([`super::compare`]). `--apply` then writes what is missing or differs, with
//! server-side apply, and nothing else: a second run writes nothing.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

use super::HubInitError;
use super::compare::{Difference, compare};
use super::objects::HubObjects;
use crate::status::object::LABEL;

/// The field manager of `hub init`'s writes (the agents write their statuses as
/// [`crate::status::object::FIELD_MANAGER`]).
const FIELD_MANAGER: &str = "rollwave-hub-init";
/// Writes in flight at once: a fleet of a thousand clusters is about five thousand
/// objects.
const WRITES_AT_ONCE: usize = 8;

/// The kinds `hub init` makes: (kind, group, version, plural, namespaced).
const KINDS: [(&str, &str, &str, &str, bool); 5] = [
    ("Namespace", "", "v1", "namespaces", false),
    ("ServiceAccount", "", "v1", "serviceaccounts", true),
    ("ConfigMap", "", "v1", "configmaps", true),
    ("Role", "rbac.authorization.k8s.io", "v1", "roles", true),
    (
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        true,
    ),
];

/// What the hub has of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// As `hub init` makes it.
    InSync,
    /// Absent, or a field differs.
    Differs(Difference),
    /// A status object of no cluster of the fleet (reported, never deleted: its
    /// cluster may be on its way into the fleet, or out of it with its history).
    Extra,
}

/// One object `--check` looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `Kind namespace/name` (`Kind name` for the namespace).
    pub object: String,
    /// What the hub has.
    pub state: State,
}

impl Finding {
    /// Whether the hub lacks something `hub init --apply` would make.
    pub fn fails(&self) -> bool {
        matches!(self.state, State::Differs(_))
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::InSync => write!(f, "ok         {}", self.object),
            State::Differs(Difference::Missing) => write!(f, "missing    {}", self.object),
            State::Differs(d) => write!(f, "different  {}: {d}", self.object),
            State::Extra => write!(
                f,
                "extra      {}: the status object of no cluster of the fleet (left alone; delete it once that cluster is gone for good)",
                self.object
            ),
        }
    }
}

/// What `--apply` did with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was missing.
    Created,
    /// A field differed.
    Configured,
    /// It was as `hub init` makes it: nothing sent.
    Unchanged,
}

/// One object `--apply` looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `Kind namespace/name`.
    pub object: String,
    /// What was done.
    pub outcome: Outcome,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.outcome {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        };
        write!(f, "{what:<10} {}", self.object)
    }
}

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

/// `Kind namespace/name`, as the findings name objects.
fn describe(o: &Value) -> String {
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{} {ns}/{}", kind_of(o), name_of(o)),
        None => format!("{} {}", kind_of(o), name_of(o)),
    }
}

/// The API of `kind` on the hub, and whether it is namespaced.
fn api(client: &kube::Client, kind: &str, namespace: &str) -> Option<(Api<DynamicObject>, bool)> {
    let (kind, group, version, plural, namespaced) = KINDS.iter().find(|k| k.0 == kind)?;
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Some(if *namespaced {
        (Api::namespaced_with(client.clone(), namespace, &ar), true)
    } else {
        (Api::all_with(client.clone(), &ar), false)
    })
}

/// The API's answer, with what to do for the usual ones.
fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "{} (hub init needs an administrator of the hub: it reads and writes the namespace, Roles, RoleBindings, ServiceAccounts and ConfigMaps; pass --hub-kubeconfig and --hub-context of one)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 401 => format!(
            "{} (the hub did not accept the credentials of --hub-kubeconfig/--hub-context)",
            s.message
        ),
        kube::Error::Api(s) => s.message.clone(),
        e => {
            let mut cur: &dyn std::error::Error = e;
            while let Some(next) = cur.source() {
                cur = next;
            }
            format!("{e}: {cur}")
        }
    }
}

fn api_error(operation: String) -> impl FnOnce(kube::Error) -> HubInitError {
    move |e| HubInitError::Api {
        operation,
        message: message(&e),
    }
}

/// Whether `o` has nothing but metadata for `hub init` to compare.
fn metadata_only(o: &Value) -> bool {
    o.as_object().is_some_and(|m| {
        m.keys()
            .all(|k| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
    })
}

/// What the hub holds of the kinds of `hub`, by (kind, name).
async fn read_live(
    client: &kube::Client,
    hub: &HubObjects,
) -> Result<BTreeMap<(String, String), Value>, HubInitError> {
    let mut live = BTreeMap::new();
    let mut kinds: Vec<&str> = hub.objects.iter().map(kind_of).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let Some((api, namespaced)) = api(client, kind, &hub.namespace) else {
            continue;
        };
        let wanted: Vec<&Value> = hub.objects.iter().filter(|o| kind_of(o) == kind).collect();
        let metadata = wanted.iter().all(|o| metadata_only(o));
        let read = if namespaced {
            format!("list {kind}s in namespace {}", hub.namespace)
        } else {
            format!("read {kind}s")
        };
        let found: Vec<Value> = match (namespaced, metadata) {
            (true, true) => api
                .list_metadata(&ListParams::default())
                .await
                .map_err(api_error(read))?
                .items
                .iter()
                .map(|o| serde_json::to_value(o).unwrap_or_default())
                .collect(),
            (true, false) => api
                .list(&ListParams::default())
                .await
                .map_err(api_error(read))?
                .items
                .iter()
                .map(|o| serde_json::to_value(o).unwrap_or_default())
                .collect(),
            (false, _) => {
                let mut found = Vec::new();
                for o in &wanted {
                    let got = api
                        .get_metadata_opt(name_of(o))
                        .await
                        .map_err(api_error(format!("read {}", describe(o))))?;
                    found.extend(got.map(|g| serde_json::to_value(g).unwrap_or_default()));
                }
                found
            }
        };
        for mut o in found {
            // List items of a real API server carry no kind.
            o["kind"] = Value::from(kind);
            live.insert((kind.to_string(), name_of(&o).to_string()), o);
        }
    }
    Ok(live)
}

/// What the hub lacks of `hub`, one finding per object in order, then the status
/// objects of clusters `hub` does not know ([`State::Extra`]). Reads only.
pub async fn check(client: &kube::Client, hub: &HubObjects) -> Result<Vec<Finding>, HubInitError> {
    let live = read_live(client, hub).await?;
    let mut findings: Vec<Finding> = hub
        .objects
        .iter()
        .map(|o| Finding {
            object: describe(o),
            state: match compare(
                o,
                live.get(&(kind_of(o).to_string(), name_of(o).to_string())),
            ) {
                None => State::InSync,
                Some(d) => State::Differs(d),
            },
        })
        .collect();
    let known = |name: &str| {
        hub.objects
            .iter()
            .any(|o| kind_of(o) == "ConfigMap" && name_of(o) == name)
    };
    for ((kind, name), o) in &live {
        if kind == "ConfigMap" && o["metadata"]["labels"][LABEL] == "true" && !known(name) {
            findings.push(Finding {
                object: format!("ConfigMap {}/{name}", hub.namespace),
                state: State::Extra,
            });
        }
    }
    Ok(findings)
}

/// Makes the hub hold `hub`: writes each object that is missing or differs with
/// server-side apply (conflicts forced: these objects are `hub init`'s), the
/// namespace first; sends nothing for the others. Never deletes.
pub async fn apply(client: &kube::Client, hub: &HubObjects) -> Result<Vec<Applied>, HubInitError> {
    let live = read_live(client, hub).await?;
    let write = |o: &Value| {
        let outcome = match compare(
            o,
            live.get(&(kind_of(o).to_string(), name_of(o).to_string())),
        ) {
            None => Outcome::Unchanged,
            Some(Difference::Missing) => Outcome::Created,
            Some(_) => Outcome::Configured,
        };
        let o = o.clone();
        async move {
            let object = describe(&o);
            if outcome != Outcome::Unchanged
                && let Some((api, _)) = api(client, kind_of(&o), &hub.namespace)
            {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                api.patch(name_of(&o), &params, &Patch::Apply(&o))
                    .await
                    .map_err(api_error(format!("apply {object}")))?;
            }
            Ok::<_, HubInitError>(Applied { object, outcome })
        }
    };
    // The namespace before what lives in it.
    let (first, rest): (Vec<&Value>, Vec<&Value>) =
        hub.objects.iter().partition(|o| kind_of(o) == "Namespace");
    let mut done = Vec::new();
    for o in first {
        done.push(write(o).await?);
    }
    let rest: Vec<Applied> = futures_util::stream::iter(rest.into_iter().map(write))
        .buffered(WRITES_AT_ONCE)
        .try_collect()
        .await?;
    done.extend(rest);
    Ok(done)
}
