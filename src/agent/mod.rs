//! The agent: the only place that does I/O in sequence. One pass over a cluster
//! renders every app the fleet targets at it, asks the rollout planner which release
//! each app should run there (from the history and the peers' statuses,
//! [`rollout`]), reconciles each (apply, prune, health), lets go of apps that no
//! longer target it, and publishes the cluster's status. [`daemon`] runs passes on a
//! timer, on webhooks and on watch events.

pub mod analysis;
pub mod clock;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod error;
pub mod listener;
pub mod notify;
pub mod rollout;
pub mod timers;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use futures_util::StreamExt;

use crate::apply::health::Health;
use crate::apply::health::with_deadline;
use crate::apply::{AppRevision, Applied, ApplyError, Reconciler};
use crate::fleet::{Fleet, Removal, targets_cluster};
use crate::metrics::Metrics;
use crate::render::render;
use crate::tree::FileTree;

/// How one app ended up.
#[derive(Debug, Clone)]
pub enum AppResult {
    /// Applied (possibly with nothing to change).
    Applied {
        /// The release applied.
        release: String,
        /// Objects created, configured, unchanged, pruned, skipped.
        counts: [usize; 5],
        /// Health right after the apply.
        health: Health,
        /// Why objects are not healthy.
        unhealthy: Vec<String>,
    },
    /// `suspend: true`: left alone.
    Suspended,
    /// The rollout has not reached this cluster yet (or it is halted before it).
    Waiting(String),
    /// The app does not target the cluster any more: its objects were orphaned or
    /// deleted.
    Released {
        /// What happened to the objects.
        removal: Removal,
        /// How many objects the inventory held.
        objects: usize,
    },
    /// Rendering failed; nothing was applied.
    RenderFailed(String),
    /// Applying failed.
    ApplyFailed {
        /// The status reason (ApplyFailed, PruneFailed).
        reason: &'static str,
        /// The error.
        message: String,
        /// Whether trying again later may help.
        retryable: bool,
    },
}

impl AppResult {
    /// An applied app: the change counts and health of `applied`.
    pub fn applied(release: String, applied: &Applied, health: Health) -> AppResult {
        AppResult::Applied {
            release,
            counts: applied.counts(),
            health,
            unhealthy: applied
                .unhealthy
                .iter()
                .map(|(k, r)| format!("{k}: {r}"))
                .collect(),
        }
    }

    /// A failed apply.
    pub fn failed(e: &ApplyError) -> AppResult {
        AppResult::ApplyFailed {
            reason: e.reason(),
            message: e.to_string(),
            retryable: e.retryable(),
        }
    }

    /// Whether the pass did what the repository asks for this app.
    pub fn ok(&self) -> bool {
        !matches!(
            self,
            AppResult::RenderFailed(_) | AppResult::ApplyFailed { .. }
        )
    }
}

/// The outcome of one pass over one cluster.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Per app, in fleet order.
    pub apps: Vec<(String, AppResult)>,
}

impl PassReport {
    /// Whether every app applied.
    pub fn ok(&self) -> bool {
        self.apps.iter().all(|(_, r)| r.ok())
    }

    /// A table for people.
    pub fn table(&self) -> String {
        let mut out = String::from("APP\tRESULT\tDETAIL\n");
        for (app, r) in &self.apps {
            let (result, detail) = match r {
                AppResult::Applied {
                    release,
                    counts,
                    health,
                    unhealthy,
                } => {
                    let short = &release[..release.len().min(12)];
                    let mut d = format!(
                        "release {short}: {} created, {} configured, {} unchanged, {} pruned",
                        counts[0], counts[1], counts[2], counts[3]
                    );
                    if counts[4] > 0 {
                        let _ = write!(d, ", {} skipped", counts[4]);
                    }
                    let _ = write!(d, "; {health:?}");
                    if !unhealthy.is_empty() {
                        let _ = write!(d, " ({})", unhealthy.join("; "));
                    }
                    ("applied", d)
                }
                AppResult::Suspended => ("suspended", "suspend: true in app.yaml".to_string()),
                AppResult::Waiting(why) => ("waiting", why.clone()),
                AppResult::Released { removal, objects } => (
                    "released",
                    match removal {
                        Removal::Orphan => {
                            format!("no longer targeted: {objects} object(s) left running")
                        }
                        Removal::Delete => {
                            format!("no longer targeted: {objects} object(s) deleted")
                        }
                    },
                ),
                AppResult::RenderFailed(m) => ("RenderFailed", m.clone()),
                AppResult::ApplyFailed {
                    reason, message, ..
                } => (*reason, message.clone()),
            };
            let _ = writeln!(out, "{app}\t{result}\t{detail}");
        }
        out
    }
}

/// What a pass needs from the source: the files, and each app's release.
pub struct Source<'a> {
    /// The repository's files at the commit applied.
    pub tree: &'a dyn FileTree,
    /// The fleet read from them.
    pub fleet: &'a Fleet,
    /// The release (commit) of an app, given the files its rendering read; `None`
    /// outside Git, where the content hash stands in.
    pub release_of:
        &'a dyn Fn(&str, &std::collections::BTreeSet<crate::tree::RepoPath>) -> Option<String>,
}

/// What the agent remembers between passes.
#[derive(Debug, Default)]
pub struct Memory {
    /// Since when each app has been progressing, for its release.
    progressing: HashMap<String, (String, Instant)>,
}

impl Memory {
    /// `health` with the progress deadline applied: an app Progressing on the same
    /// release for longer than `deadline` is Degraded.
    pub fn with_deadline(
        &mut self,
        app: &str,
        release: &str,
        health: Health,
        deadline: std::time::Duration,
    ) -> Health {
        if health != Health::Progressing {
            self.progressing.remove(app);
            return health;
        }
        let since = self
            .progressing
            .entry(app.to_string())
            .or_insert_with(|| (release.to_string(), Instant::now()));
        if since.0 != release {
            *since = (release.to_string(), Instant::now());
        }
        with_deadline(health, since.1.elapsed(), deadline)
    }
}

/// One pass: every app targeting `cluster` reconciled, apps that left it released.
pub async fn reconcile_cluster(
    source: &Source<'_>,
    cluster: &str,
    reconciler: &Reconciler,
) -> Result<PassReport, ApplyError> {
    reconcile_cluster_with(source, cluster, reconciler, &mut Memory::default(), None).await
}

/// [`reconcile_cluster`] with memory across passes (progress deadlines) and metrics.
pub async fn reconcile_cluster_with(
    source: &Source<'_>,
    cluster: &str,
    reconciler: &Reconciler,
    memory: &mut Memory,
    metrics: Option<&Metrics>,
) -> Result<PassReport, ApplyError> {
    let fleet = source.fleet;
    reconciler.set_health_rules(&fleet.settings.health);
    let Some(c) = fleet.cluster(cluster) else {
        return Ok(PassReport {
            apps: vec![(
                "-".into(),
                AppResult::RenderFailed(format!("cluster '{cluster}' is not in clusters/")),
            )],
        });
    };
    let mut targeted = Vec::new();
    let mut results: HashMap<String, AppResult> = HashMap::new();
    // Apps that define kinds or namespaces other apps may use go first, one after
    // another in fleet order as before; the rest go side by side (kind order within an
    // app is the reconciler's).
    let mut foundations = Vec::new();
    let mut others = Vec::new();
    for app in &fleet.apps {
        if !targets_cluster(app, c) {
            continue;
        }
        targeted.push(app.name.clone());
        if app.suspend {
            results.insert(app.name.clone(), AppResult::Suspended);
            continue;
        }
        match render(source.tree, fleet, app, c) {
            Ok(rendered) => {
                let release = (source.release_of)(&app.name, &rendered.files_read)
                    .unwrap_or_else(|| rendered.content_hash.clone());
                let ready = (app, release, rendered);
                if ready.2.objects.any_kind(defines_what_others_use) {
                    foundations.push(ready);
                } else {
                    others.push(ready);
                }
            }
            Err(e) => {
                results.insert(app.name.clone(), AppResult::RenderFailed(e.to_string()));
            }
        }
    }
    let mut record = |app: &crate::fleet::App, release: String, outcome, took| {
        let result = judge(cluster, app, release, outcome, took, memory, metrics);
        results.insert(app.name.clone(), result);
    };
    for (app, release, rendered) in &foundations {
        let (outcome, took) = reconcile_app(reconciler, app, release, rendered).await;
        record(app, release.clone(), outcome, took);
    }
    let mut side_by_side = futures_util::stream::iter(others.iter())
        .map(|(app, release, rendered)| async move {
            let (outcome, took) = reconcile_app(reconciler, app, release, rendered).await;
            (*app, release.clone(), outcome, took)
        })
        // In completion order: a slow app must not hold back the start of the next
        // ones (the report is put back in fleet order below).
        .buffer_unordered(reconciler.concurrency());
    while let Some((app, release, outcome, took)) = side_by_side.next().await {
        record(app, release, outcome, took);
    }
    drop(side_by_side);
    let mut report = PassReport::default();
    for name in &targeted {
        if let Some(result) = results.remove(name) {
            report.apps.push((name.clone(), result));
        }
    }
    release_untargeted(reconciler, fleet, &targeted, &mut report).await?;
    Ok(report)
}

/// Whether an object defines what objects of other apps may need to exist first, or
/// changes how the API server serves and admits them: a CustomResourceDefinition, a
/// Namespace, an APIService, an admission webhook configuration or an admission
/// policy. Apps holding one go first, one after another in fleet order, so the apps
/// after them meet the API as it will be (a webhook that refuses them refuses their
/// dry run, not a write after it). Asked of an object's apiVersion and kind, which a
/// rendering answers without parsing its objects.
pub(super) fn defines_what_others_use(api_version: &str, kind: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    matches!(
        (group, kind),
        ("", "Namespace")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
                    | "ValidatingWebhookConfiguration"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
                    | "MutatingAdmissionPolicy"
                    | "MutatingAdmissionPolicyBinding"
            )
    )
}

/// Reconciles one rendered app; returns the outcome and how long it took.
pub(super) async fn reconcile_app(
    reconciler: &Reconciler,
    app: &crate::fleet::App,
    release: &str,
    rendered: &crate::render::Rendered,
) -> (Result<Applied, ApplyError>, std::time::Duration) {
    let rev = AppRevision {
        removal: app.removal_in_app,
        app: &app.name,
        release,
        content_hash: &rendered.content_hash,
        objects: &rendered.objects,
        force: app.force,
        namespace: app.namespace.as_deref(),
        policy: app.policy.as_ref(),
    };
    let started = Instant::now();
    let outcome = reconciler.reconcile(&rev).await;
    (outcome, started.elapsed())
}

/// What one app's reconcile comes to, with its progress deadline applied and its
/// metrics recorded.
fn judge(
    cluster: &str,
    app: &crate::fleet::App,
    release: String,
    outcome: Result<Applied, ApplyError>,
    took: std::time::Duration,
    memory: &mut Memory,
    metrics: Option<&Metrics>,
) -> AppResult {
    let health = outcome.as_ref().ok().map(|applied| {
        memory.with_deadline(
            &app.name,
            &release,
            applied.health,
            app.rollout.progress_deadline,
        )
    });
    if let Some(m) = metrics {
        m.record_reconcile(
            cluster,
            &app.name,
            &release,
            took,
            outcome.as_ref().ok().zip(health),
        );
    }
    match outcome {
        Ok(applied) => {
            let health = health.unwrap_or(applied.health);
            AppResult::applied(release, &applied, health)
        }
        Err(e) => AppResult::failed(&e),
    }
}

/// Lets go of the apps with an inventory on the cluster that no longer target it:
/// orphaned or deleted by their `removal`. A failure is reported for that app; the
/// others are still released.
pub async fn release_untargeted(
    reconciler: &Reconciler,
    fleet: &Fleet,
    targeted: &[String],
    report: &mut PassReport,
) -> Result<(), ApplyError> {
    // A set: every app of a big fleet is both inventoried and targeted, and a scan
    // of the list per app was a quadratic share of an idle pass.
    let targeted: std::collections::HashSet<&str> = targeted.iter().map(String::as_str).collect();
    for app in reconciler.inventoried_apps().await? {
        if targeted.contains(app.as_str()) {
            continue;
        }
        // An app still in the repository says what happens; a deleted one follows its
        // own setting from when it existed, else the fleet default (docs/rollout.md).
        let decide = |remembered: Option<Removal>| match fleet.app(&app) {
            Some(a) => a.removal,
            None => remembered.unwrap_or(fleet.settings.removal),
        };
        // Deleted as the app's ServiceAccount: the one its policy names while the
        // repository still has the app, else the one recorded in its inventory when it
        // was applied (fleet.yaml cannot say which ServiceAccount a deleted app had).
        let app_in_repo = fleet.app(&app);
        let user = |recorded: Option<&str>| match app_in_repo {
            Some(a) => crate::apply::impersonated_user(&AppRevision {
                app: &a.name,
                release: "",
                content_hash: "",
                objects: &crate::render::Objects::default(),
                force: false,
                namespace: a.namespace.as_deref(),
                removal: None,
                policy: a.policy.as_ref(),
            }),
            None => recorded.map(String::from),
        };
        let result = match reconciler.forget(&app, decide, user).await {
            Ok((removal, objects)) => AppResult::Released {
                removal,
                objects: objects.len(),
            },
            Err(e) => AppResult::failed(&e),
        };
        report.apps.push((app, result));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_that_change_what_the_api_serves_or_admits_go_first() {
        for (api, kind) in [
            ("v1", "Namespace"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("apiregistration.k8s.io/v1", "APIService"),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
            ),
            (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
            ),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingAdmissionPolicy",
            ),
        ] {
            assert!(defines_what_others_use(api, kind), "{api} {kind}");
        }
        for (api, kind) in [
            ("v1", "ConfigMap"),
            ("apps/v1", "Deployment"),
            ("example.com/v1", "Namespace"),
        ] {
            assert!(!defines_what_others_use(api, kind), "{api} {kind}");
        }
    }
}
