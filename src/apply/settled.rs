//! Apps found in sync, remembered with what they were compared against, so that the
//! next reconcile of the same revision costs a lookup per object instead of every
//! stage again.
//!
//! A steady-state pass reconciles every app although nothing changed: each object
//! was parsed from the watch cache, normalized and compared with its rendering,
//! which at a thousand apps was most of the pass. An app whose last reconcile wrote
//! nothing is remembered here with its revision, the fleet's health rules and the
//! resource version of each live object it was compared with. While all of those are
//! the same (the watch bumps a resource version on any change,
//! including a deletion or the loss of rollwave's label), the comparison, the dry run
//! and the report would come out the same, so the remembered report is the answer.
//! Anything else (a new rendering, a changed object, a kind whose watch is not
//! synced, an app applied as its ServiceAccount, which reads past the watch) takes
//! the whole reconcile.
//!
//! The app's inventory is not compared: it changes only through the app's own
//! reconcile or its removal ([`super::Reconciler::forget`]), and both forget the
//! app here before they write. Only its presence in memory is checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::drift::{KindId, LiveCache};
use super::inventory::ObjectKey;
use super::{AppRevision, Applied};
use crate::fleet::health::HealthRule;
use crate::fleet::tenancy::Policy;

/// What of an [`AppRevision`] decides the outcome of a reconcile that writes nothing.
/// The objects are known by their content hash ([`AppRevision::content_hash`]).
#[derive(PartialEq)]
struct RevisionStamp {
    release: String,
    content_hash: String,
    objects: usize,
    force: bool,
    namespace: Option<String>,
    removal: Option<crate::fleet::Removal>,
    policy: Option<Policy>,
}

impl RevisionStamp {
    fn of(rev: &AppRevision<'_>) -> RevisionStamp {
        RevisionStamp {
            release: rev.release.to_string(),
            content_hash: rev.content_hash.to_string(),
            objects: rev.objects.len(),
            force: rev.force,
            namespace: rev.namespace.map(String::from),
            removal: rev.removal,
            policy: rev.policy.cloned(),
        }
    }

    fn is(&self, rev: &AppRevision<'_>) -> bool {
        self.release == rev.release
            && self.content_hash == rev.content_hash
            && self.objects == rev.objects.len()
            && self.force == rev.force
            && self.namespace.as_deref() == rev.namespace
            && self.removal == rev.removal
            && self.policy.as_ref() == rev.policy
    }
}

/// One live object as it was compared: its kind, (namespace, name) and resource
/// version.
struct LiveStamp {
    kind: KindId,
    place: (String, String),
    version: String,
}

/// An app whose last reconcile wrote nothing, and what it was compared against.
struct SettledApp {
    revision: RevisionStamp,
    rules: Arc<Vec<HealthRule>>,
    live: Vec<LiveStamp>,
    applied: Applied,
}

/// The apps of one reconciler found in sync.
#[derive(Default)]
pub(super) struct Settled {
    apps: Mutex<HashMap<String, SettledApp>>,
}

impl Settled {
    /// The report of `rev`'s last reconcile when nothing it was judged from has
    /// changed since: the same revision and health rules, its inventory still held
    /// (`inventory_held`), and every live object still at the version it was compared
    /// at in `cache`.
    pub(super) fn unchanged(
        &self,
        rev: &AppRevision<'_>,
        rules: &Arc<Vec<HealthRule>>,
        inventory_held: bool,
        cache: &LiveCache,
    ) -> Option<Applied> {
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let s = apps.get(rev.app)?;
        let same = inventory_held
            && s.revision.is(rev)
            && Arc::ptr_eq(&s.rules, rules)
            && (s.live.iter()).all(|l| cache.holds_version(&l.kind, &l.place, &l.version));
        same.then(|| s.applied.clone())
    }

    /// Remembers a reconcile of `rev` that wrote nothing: `compared` are its objects
    /// with the live state each was compared with. Not remembered when an object had
    /// no live state with a resource version (nothing to tell a change by).
    pub(super) fn remember<'a>(
        &self,
        rev: &AppRevision<'_>,
        rules: Arc<Vec<HealthRule>>,
        compared: impl IntoIterator<Item = (&'a ObjectKey, Option<&'a Value>)>,
        applied: &Applied,
    ) {
        let mut live = Vec::new();
        for (key, state) in compared {
            let Some(version) = state
                .and_then(|v| v["metadata"]["resourceVersion"].as_str())
                .filter(|v| !v.is_empty())
            else {
                self.forget(rev.app);
                return;
            };
            live.push(LiveStamp {
                kind: (key.group.clone(), key.version.clone(), key.kind.clone()),
                place: (key.namespace.clone(), key.name.clone()),
                version: version.to_string(),
            });
        }
        let settled = SettledApp {
            revision: RevisionStamp::of(rev),
            rules,
            live,
            applied: applied.clone(),
        };
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rev.app.to_string(), settled);
    }

    /// Forgets an app: its next reconcile takes every stage.
    pub(super) fn forget(&self, app: &str) {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app);
    }
}
