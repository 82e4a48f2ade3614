//! `rollwave freeze --reason R [--until T] [--stage S]... [--app A]... [--branch B]` and
//! `rollwave unfreeze [--branch B]`: write a `freeze:` entry into fleet.yaml (or take
//! it out) as a commit, on the checked-out branch or on a new branch for a pull
//! request. At their next fetch the agents open no new wave in the freeze's scope;
//! reverts still go through.

use std::process::ExitCode;

use anyhow::Context;

use super::fleet_commit::{CommitTarget, commit_fleet_change};
use crate::fleet::edit::{FreezeEntry, set_freeze};

/// Writes `entry`, or with `None` removes the freeze.
pub fn run(target: &CommitTarget, entry: Option<FreezeEntry>) -> anyhow::Result<ExitCode> {
    if let Some(e) = &entry {
        if e.reason.trim().is_empty() {
            anyhow::bail!("--reason: say why the line is stopped");
        }
        if let Some(u) = &e.until {
            humantime::parse_rfc3339_weak(u).with_context(|| {
                format!("--until '{u}': expected a time like 2026-12-27T00:00:00Z")
            })?;
        }
    }
    let message = match &entry {
        Some(e) => format!("freeze: {}", e.reason),
        None => "unfreeze".to_string(),
    };
    commit_fleet_change(
        target,
        "fleet.yaml",
        &message,
        &|text| set_freeze(text, entry.as_ref()),
        &|fleet| {
            if fleet.settings.freeze.is_some() == entry.is_some() {
                Ok(())
            } else {
                Err("fleet.yaml does not read as intended after the edit".into())
            }
        },
    )
}
