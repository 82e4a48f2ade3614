//! `rollwave pause`/`resume` and `freeze`/`unfreeze` on a real Git work tree: the
//! change is a commit (on the checked-out branch, or on a new branch for a pull
//! request), the work tree stays clean, the plan shows the waves held with the reason,
//! and what would break the fleet or does nothing is refused without a commit.

mod common;

use std::path::Path;

use common::git::{commit_files, git};
use common::run_cli;

const APP: &str = "namespace: web   # the web team's\ntargets:\n  stages: [test, prod]\n";

/// A fleet of one app on two clusters, committed on `main`, then a second release of
/// the app (so the plan has a pending release to gate).
fn fleet(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    let config = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\ndata: {{v: '{v}'}}\n")
    };
    commit_files(
        dir,
        &[
            ("fleet.yaml", "stages: [test, prod]\n"),
            ("clusters/test-1.yaml", "name: test-1\nstage: test\n"),
            ("clusters/prod-1.yaml", "name: prod-1\nstage: prod\n"),
            ("apps/web/app.yaml", APP),
            (
                "apps/web/base/kustomization.yaml",
                "resources: [config.yaml]\n",
            ),
            ("apps/web/base/config.yaml", &config("1")),
        ],
        "fleet",
    );
    commit_files(
        dir,
        &[("apps/web/base/config.yaml", &config("2"))],
        "web v2",
    );
}

fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

fn plan_gates(dir: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = run_cli(&["plan", "--repo", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["apps"]["web"]["pending"][0]["waves"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn pause_and_resume_are_commits_that_every_wave_of_the_plan_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fleet(dir);
    let before = head(dir);
    assert!(plan_gates(dir).iter().all(|g| g["state"] != "paused"));

    let (code, out, err) = run_cli(&[
        "pause",
        "web",
        "--reason",
        "incident 4711: checkout errors",
        "--repo",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pause web: incident 4711: checkout errors: commit "),
        "{out}"
    );
    assert_eq!(git(dir, &["rev-parse", "HEAD~1"]).trim(), before);
    assert_eq!(
        git(dir, &["log", "-1", "--format=%s"]).trim(),
        "pause web: incident 4711: checkout errors"
    );
    assert_eq!(
        git(dir, &["status", "--porcelain"]),
        "",
        "the work tree follows"
    );
    let text = std::fs::read_to_string(dir.join("apps/web/app.yaml")).unwrap();
    assert_eq!(
        text,
        format!("{APP}paused: true\npauseReason: \"incident 4711: checkout errors\"\n")
    );
    let gates = plan_gates(dir);
    assert!(!gates.is_empty());
    for g in &gates {
        assert_eq!(g["state"], "paused", "{gates:?}");
        assert_eq!(g["reason"], "incident 4711: checkout errors");
    }
    let (_, out, _) = run_cli(&["plan", "--repo", dir.to_str().unwrap()]);
    assert!(
        out.contains("paused: incident 4711: checkout errors"),
        "{out}"
    );

    // Pausing again for the same reason changes nothing: refused, no commit.
    let paused_at = head(dir);
    let (code, _, err) = run_cli(&[
        "pause",
        "web",
        "--reason",
        "incident 4711: checkout errors",
        "--repo",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("already says that"), "{err}");
    assert_eq!(head(dir), paused_at);

    let (code, out, err) = run_cli(&["resume", "web", "--repo", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resume web: commit "), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("apps/web/app.yaml")).unwrap(),
        APP
    );
    assert!(plan_gates(dir).iter().all(|g| g["state"] != "paused"));
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
}

#[test]
fn pause_on_a_branch_leaves_the_checkout_alone_for_a_pull_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fleet(dir);
    let before = head(dir);
    let (code, out, err) = run_cli(&[
        "pause",
        "web",
        "--reason",
        "freeze for the sale",
        "--branch",
        "pause-web",
        "--repo",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("on branch pause-web") && out.contains("git push origin pause-web"),
        "{out}"
    );
    assert_eq!(head(dir), before, "the checked-out branch did not move");
    assert_eq!(
        std::fs::read_to_string(dir.join("apps/web/app.yaml")).unwrap(),
        APP
    );
    let on_branch = git(dir, &["show", "pause-web:apps/web/app.yaml"]);
    assert!(
        on_branch
            .trim_end()
            .ends_with("pauseReason: \"freeze for the sale\""),
        "{on_branch}"
    );
    // The same branch twice is refused.
    let (code, _, err) = run_cli(&[
        "pause",
        "web",
        "--reason",
        "again",
        "--branch",
        "pause-web",
        "--repo",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("branch 'pause-web' exists already"), "{err}");
}

#[test]
fn pause_refuses_what_it_cannot_do_cleanly_and_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fleet(dir);
    let before = head(dir);
    let repo = dir.to_str().unwrap();
    let (code, _, err) = run_cli(&["pause", "shop", "--reason", "x", "--repo", repo]);
    assert_eq!(code, 1);
    assert!(
        err.contains("apps/shop/app.yaml is not in the repository's head"),
        "{err}"
    );
    let (code, _, err) = run_cli(&["pause", "web", "--reason", " ", "--repo", repo]);
    assert_eq!(code, 1);
    assert!(err.contains("--reason: say why"), "{err}");
    let (code, _, err) = run_cli(&["resume", "web", "--repo", repo]);
    assert_eq!(code, 1);
    assert!(err.contains("already says that"), "{err}");
    // Uncommitted edits of the file are not swept into the commit.
    std::fs::write(dir.join("apps/web/app.yaml"), format!("{APP}# editing\n")).unwrap();
    let (code, _, err) = run_cli(&["pause", "web", "--reason", "x", "--repo", repo]);
    assert_eq!(code, 1);
    assert!(
        err.contains("apps/web/app.yaml has changes that are not committed"),
        "{err}"
    );
    assert_eq!(head(dir), before);

    // By hand, a pause without its reason is refused where it is written.
    std::fs::write(
        dir.join("apps/web/app.yaml"),
        format!("{APP}paused: true\n"),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["validate", "--repo", repo]);
    assert_eq!(code, 1);
    assert!(
        err.contains("apps/web/app.yaml:4: paused: true needs pauseReason"),
        "{err}"
    );
}

#[test]
fn freeze_and_unfreeze_are_commits_that_hold_the_waves_in_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fleet(dir);
    let repo = dir.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "freeze",
        "--reason",
        "holiday freeze",
        "--by",
        "alice",
        "--stage",
        "prod",
        "--until",
        "2099-01-01T00:00:00Z",
        "--repo",
        repo,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("freeze: holiday freeze: commit "), "{out}");
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
    let fleet_yaml = std::fs::read_to_string(dir.join("fleet.yaml")).unwrap();
    assert!(
        fleet_yaml.starts_with("stages: [test, prod]\nfreeze:\n"),
        "{fleet_yaml}"
    );
    // test-1 is wave 0 (stage test): open; prod-1 is frozen until 2099.
    let gates = plan_gates(dir);
    assert_eq!(gates[0]["state"], "open", "{gates:?}");
    assert_eq!(gates[1]["state"], "frozen", "{gates:?}");
    assert_eq!(gates[1]["reason"], "holiday freeze (alice)");
    assert_eq!(gates[1]["until"], "2099-01-01T00:00:00Z");
    let (_, out, _) = run_cli(&["plan", "--repo", repo]);
    assert!(
        out.contains("frozen: holiday freeze (alice); until 2099-01-01T00:00:00Z"),
        "{out}"
    );

    // Bad input is refused before anything is written.
    let at = head(dir);
    let (code, _, err) = run_cli(&[
        "freeze", "--reason", "x", "--until", "tomorrow", "--repo", repo,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--until 'tomorrow': expected a time"), "{err}");
    let (code, _, err) = run_cli(&["freeze", "--reason", "x", "--app", "shop", "--repo", repo]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the change would break the fleet")
            && err.contains("freeze.apps: 'shop' is not an app"),
        "{err}"
    );
    assert_eq!(head(dir), at);

    let (code, out, err) = run_cli(&["unfreeze", "--repo", repo]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unfreeze: commit "), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("fleet.yaml")).unwrap(),
        "stages: [test, prod]\n"
    );
    assert!(plan_gates(dir).iter().all(|g| g["state"] != "frozen"));
}
