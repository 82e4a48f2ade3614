//! Garbage collection, as the API server and kube-controller-manager's garbage
//! collector do it together: dependents found by owner reference, deleted in the
//! background, held for a foreground deletion (the owner keeps its
//! `foregroundDeletion` finalizer until its blocking dependents are gone) or orphaned
//! (their owner reference stripped); a deleted namespace takes what it contains.
//! A child of [`super`] so it works on the store's own indexes.

use super::*;

impl Store {
    /// Every object with an ownerReference to `uid`.
    pub(super) fn dependents_of(&self, uid: &str) -> Vec<(ResourceType, Arc<Stored>)> {
        let mut out = Vec::new();
        if uid.is_empty() {
            return out;
        }
        for ((g, p), t) in &self.objects {
            for o in t.values() {
                if o.owners.iter().any(|u| u == uid)
                    && let Some(rt) = self
                        .registry
                        .all()
                        .find(|r| &r.group == g && &r.plural == p)
                {
                    out.push((rt.clone(), o.clone()));
                }
            }
        }
        out
    }

    /// The garbage collector's part of foreground deletions, as a real one does it:
    /// each dependent of an owner marked `foregroundDeletion` is deleted (in the
    /// foreground itself when it has dependents of its own), and once no dependent
    /// with `blockOwnerDeletion` is left the finalizer comes off and the owner goes.
    /// A dependent held by a finalizer of its own holds its owners too.
    pub fn collect_foreground(&mut self) {
        // Rounds until nothing moves: each finished dependent may free its owner.
        for _ in 0..16 {
            let pending: Vec<(String, String, Key)> = self.foreground.iter().cloned().collect();
            let mut moved = false;
            for entry in pending {
                if self.collect_foreground_one(&entry) {
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// One owner of [`Store::collect_foreground`]; whether anything was written.
    pub(super) fn collect_foreground_one(&mut self, entry: &(String, String, Key)) -> bool {
        let (group, plural, key) = entry;
        let owner = self
            .objects
            .get(&(group.clone(), plural.clone()))
            .and_then(|t| t.get(key))
            .cloned();
        let rt = self
            .registry
            .all()
            .find(|r| &r.group == group && &r.plural == plural)
            .cloned();
        let (Some(owner), Some(rt)) = (owner, rt) else {
            self.foreground.remove(entry);
            return false;
        };
        let mut value = owner.value();
        let finalizers: Vec<Value> = value["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if value["metadata"]["deletionTimestamp"].is_null()
            || !finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
        {
            self.foreground.remove(entry);
            return false;
        }
        let mut moved = false;
        let mut blocked = false;
        for (drt, dependent) in self.dependents_of(&owner.uid) {
            let d = dependent.value();
            let blocks = d["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == owner.uid.as_str() && r["blockOwnerDeletion"] == true);
            if d["metadata"]["deletionTimestamp"].is_null() {
                let policy = if self.dependents_of(&dependent.uid).is_empty() {
                    "Background"
                } else {
                    "Foreground"
                };
                self.delete_now(&drt, &Arc::new(d), policy);
                moved = true;
            }
            let dkey = Self::key_of(&drt, Some(&dependent.namespace), &dependent.name);
            let still_there = self
                .objects
                .get(&(drt.group.clone(), drt.plural.clone()))
                .is_some_and(|t| t.contains_key(&dkey));
            blocked |= blocks && still_there;
        }
        if blocked {
            return moved;
        }
        let kept: Vec<Value> = finalizers
            .into_iter()
            .filter(|f| f != FOREGROUND_FINALIZER)
            .collect();
        if kept.is_empty() {
            if let Some(m) = value["metadata"].as_object_mut() {
                m.remove("finalizers");
            }
        } else {
            value["metadata"]["finalizers"] = json!(kept);
        }
        self.foreground.remove(entry);
        let ns = (!owner.namespace.is_empty()).then_some(owner.namespace.as_str());
        let version = rt.versions[0].clone();
        let opts = WriteOptions {
            manager: "kube-controller-manager".into(),
            dry_run: false,
            force: false,
            validation: FieldValidation::Ignore,
            status: false,
        };
        if let Err(e) = self.update(&rt, &version, ns, &owner.name, value, &opts) {
            tracing::warn!(name = %owner.name, error = %e.message, "simulated garbage collector could not finish a foreground deletion");
        }
        true
    }

    /// Orphan deletion: the garbage collector removes the owner's reference from
    /// each dependent, which then stays.
    pub(super) fn orphan_dependents(&mut self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        let mut dependents = Vec::new();
        for ((g, p), t) in &self.objects {
            for o in t.values() {
                if o.owners.iter().any(|u| u == uid)
                    && let Some(rt) = self
                        .registry
                        .all()
                        .find(|r| &r.group == g && &r.plural == p)
                {
                    dependents.push((rt.clone(), o.clone()));
                }
            }
        }
        let opts = WriteOptions {
            manager: "kube-controller-manager".into(),
            dry_run: false,
            force: false,
            validation: FieldValidation::Ignore,
            status: false,
        };
        for (rt, o) in dependents {
            let obj = o.value();
            let kept: Vec<Value> = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["uid"] != uid)
                .cloned()
                .collect();
            let refs = if kept.is_empty() {
                Value::Null
            } else {
                json!(kept)
            };
            let patch = json!({"metadata": {"ownerReferences": refs}});
            let ns = (!o.namespace.is_empty()).then_some(o.namespace.as_str());
            let version = rt.versions[0].clone();
            if let Err(e) = self.patch(&rt, &version, ns, &o.name, PatchKind::Merge, &patch, &opts)
            {
                tracing::warn!(name = %o.name, error = %e.message, "simulated garbage collector could not orphan");
            }
        }
    }

    /// Deletes everything in a terminating namespace, then the namespace itself.
    pub(super) fn empty_namespace(&mut self, ns: &str) {
        let victims: Vec<(ResourceType, Arc<Stored>)> = self
            .objects
            .iter()
            .filter_map(|((g, p), t)| {
                let rt = self
                    .registry
                    .all()
                    .find(|r| &r.group == g && &r.plural == p)?
                    .clone();
                Some(
                    t.iter()
                        .filter(|((n, _), _)| n == ns)
                        .map(|(_, o)| (rt.clone(), o.clone()))
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        for (rt, o) in victims {
            self.delete_now(&rt, &Arc::new(o.value()), "Background");
        }
        self.finish_namespace(ns);
    }

    /// Garbage collection: objects owned by `uid` go too.
    pub(super) fn collect_dependents(&mut self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        let mut victims = Vec::new();
        for ((g, p), t) in &self.objects {
            for o in t.values() {
                let owned = o.owners.iter().any(|u| u == uid);
                if owned
                    && let Some(rt) = self
                        .registry
                        .all()
                        .find(|r| &r.group == g && &r.plural == p)
                {
                    victims.push((rt.clone(), o.clone()));
                }
            }
        }
        for (rt, o) in victims {
            self.delete_now(&rt, &Arc::new(o.value()), "Background");
        }
    }
}
