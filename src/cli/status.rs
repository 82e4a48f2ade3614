//! `rollwave status --repo R`: the fleet table (app x wave x cluster: release, phase,
//! since, and the analysis of the bake: its verdict, or the last value of each metric)
//! from the status refs or the status hub. A cluster whose agent reports but has not
//! applied the app yet shows `Waiting`; one with no recent status shows `Unknown`. An
//! app deleted from the repository that an agent still reports (its release there has
//! not finished) is listed after the others, with wave `-`.

use std::io::Write;
use std::process::ExitCode;

use super::{HubArgs, RepoArgs};
use std::time::SystemTime;

use crate::plan::waves_for;
use crate::source::repo::GitRepo;

/// Prints the table.
pub fn run(source: &RepoArgs, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let g = GitRepo::open(
        &source.repo,
        source.path.as_deref(),
        source.rev.as_deref(),
        &source.branch,
    )?;
    let (_, fleet) = g.fleet(g.head)?;
    let statuses = super::statuses::fleet_statuses(&g, &fleet, hub)?;
    let now = SystemTime::now();
    let is_fresh = |s: &crate::status::ClusterStatus| s.is_fresh(now);
    let mut out = format!(
        "{:<12} {:<5} {:<16} {:<9} {:<12} {:<24} {}\n",
        "APP", "WAVE", "CLUSTER", "RELEASE", "PHASE", "SINCE", "ANALYSIS"
    );
    for app in &fleet.apps {
        for (w, wave) in waves_for(&fleet, app).iter().enumerate() {
            for c in wave {
                let s = statuses.get(c);
                let fresh = s.is_some_and(is_fresh);
                let analysis = s
                    .and_then(|s| s.apps.get(&app.name))
                    .map_or_else(|| "-".to_string(), crate::plan::analysis::cell);
                let (release, phase, since) = match s.and_then(|s| s.apps.get(&app.name)) {
                    Some(a) => (
                        a.release[..a.release.len().min(8)].to_string(),
                        if fresh {
                            format!("{:?}", a.phase)
                        } else {
                            "Unknown".into()
                        },
                        // Statuses carry milliseconds (bakes are measured from them);
                        // a table shows seconds.
                        match a.since.split_once('.') {
                            Some((seconds, _)) => format!("{seconds}Z"),
                            None => a.since.clone(),
                        },
                    ),
                    // The cluster's agent reports, but has applied no release of
                    // this app yet: its wave has not opened (`plan` says why).
                    None => (
                        "-".into(),
                        if s.is_some() && fresh {
                            "Waiting".into()
                        } else {
                            "Unknown".into()
                        },
                        "-".into(),
                    ),
                };
                out.push_str(&format!(
                    "{:<12} {:<5} {:<16} {:<9} {:<12} {:<24} {}\n",
                    app.name, w, c, release, phase, since, analysis
                ));
            }
        }
    }
    // Apps deleted from the repository that an agent still reports: their release has
    // not finished there (objects or inventory left; the agent's status says why).
    for (cluster, s) in &statuses {
        for (app, a) in &s.apps {
            if fleet.app(app).is_some() {
                continue;
            }
            out.push_str(&format!(
                "{:<12} {:<5} {:<16} {:<9} {:<12} {:<24} {}\n",
                app,
                "-",
                cluster,
                &a.release[..a.release.len().min(8)],
                if is_fresh(s) {
                    format!("{:?}", a.phase)
                } else {
                    "Unknown".into()
                },
                a.since
                    .split_once('.')
                    .map_or(a.since.clone(), |(s, _)| format!("{s}Z")),
                "-"
            ));
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
