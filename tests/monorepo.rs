//! A fleet kept in a subdirectory of a larger repository (a monorepo): every command
//! that takes `--repo` reads it with `--path` or from a directory inside the work
//! tree, releases come only from changes under that directory, and the agent applies
//! it with `repo.path`.

mod common;

use std::path::{Path, PathBuf};

use common::git::{commit_files, git, work_repo};
use common::sim::{TestCluster, require_kubectl};
use common::{copy_dir, run_cli};
use serde_json::Value;

const FLEET_DIR: &str = "deploy/fleet";

/// A repository with application code at its root and the example fleet under
/// `deploy/fleet`, in one commit. Returns (work tree, that commit).
fn monorepo(dir: &Path) -> (PathBuf, String) {
    let work = dir.join("mono");
    work_repo(
        &work,
        &[
            ("README.md", "# a monorepo\n"),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    copy_dir(&common::example_fleet(), &work.join(FLEET_DIR));
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "the fleet"]);
    let head = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    (work, head)
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run_cli(args);
    assert_eq!(code, 0, "rollwave {}:\n{out}{err}", args.join(" "));
    out
}

/// `web`'s pending release on its canary, from `plan -o json`.
fn canary_target(plan: &str) -> String {
    let v: Value = serde_json::from_str(plan).unwrap();
    v["apps"]["web"]["decisions"]["test-sh-1"]["target"]
        .as_str()
        .unwrap_or_else(|| panic!("no target in {plan}"))
        .to_string()
}

#[test]
fn every_command_reads_a_fleet_in_a_subdirectory_by_path_or_from_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (work, head) = monorepo(dir.path());
    let root = work.to_str().unwrap();
    let inside = work.join(FLEET_DIR);
    let inside = inside.to_str().unwrap();

    // plan: the same answer either way, with the history of the enclosing repository.
    let by_path = ok(&["plan", "--repo", root, "--path", FLEET_DIR, "-o", "json"]);
    let from_inside = ok(&["plan", "--repo", inside, "-o", "json"]);
    let without_time = |plan: &str| {
        let mut v: Value = serde_json::from_str(plan).unwrap();
        v.as_object_mut().unwrap().remove("at");
        v
    };
    assert!(
        without_time(&by_path) == without_time(&from_inside),
        "plans differ"
    );
    assert_eq!(canary_target(&by_path), head);

    // Commits outside the fleet's directory are no release; one inside is.
    commit_files(
        &work,
        &[("src/main.rs", "fn main() { println!(\"hi\"); }\n")],
        "code",
    );
    assert_eq!(
        canary_target(&ok(&[
            "plan", "--repo", root, "--path", FLEET_DIR, "-o", "json"
        ])),
        head,
        "a change to the application code is not a release of the fleet's apps"
    );
    let web = work.join(FLEET_DIR).join("apps/web/app.yaml");
    let text = std::fs::read_to_string(&web)
        .unwrap()
        .replace("1.4.2", "1.4.3");
    commit_files(
        &work,
        &[(&format!("{FLEET_DIR}/apps/web/app.yaml"), &text)],
        "web 1.4.3",
    );
    let release = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(
        canary_target(&ok(&["plan", "--repo", inside, "-o", "json"])),
        release
    );

    // render, validate, status and diff, each both ways.
    for args in [
        vec!["render", "--cluster", "test-sh-1", "--app", "web"],
        vec![
            "render",
            "--cluster",
            "test-sh-1",
            "--app",
            "web",
            "--rev",
            "HEAD~1",
        ],
        vec!["validate"],
        vec!["status"],
        vec!["diff", "--from", "HEAD~2", "--to", "HEAD"],
    ] {
        let mut with_path = args.clone();
        with_path.extend(["--repo", root, "--path", FLEET_DIR]);
        let mut with_dir = args.clone();
        with_dir.extend(["--repo", inside]);
        assert!(ok(&with_path) == ok(&with_dir), "{args:?} differ");
    }
    let rendered = ok(&[
        "render",
        "--repo",
        root,
        "--path",
        FLEET_DIR,
        "--cluster",
        "test-sh-1",
        "--app",
        "web",
    ]);
    assert!(
        rendered.contains("image: registry.example.com/example/web:1.4.3"),
        "{rendered}"
    );
    let diff = ok(&["diff", "--repo", inside, "--from", "HEAD~2", "--to", "HEAD"]);
    assert!(
        diff.contains("1.4.3") && !diff.contains("src/main.rs"),
        "{diff}"
    );

    // A path that is not in the repository says so.
    let (code, _, err) = run_cli(&["plan", "--repo", root, "--path", "deploy/nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the fleet path 'deploy/nope' does not exist at this commit"),
        "{err}"
    );
}

#[test]
fn this_projects_own_example_fleet_plans_from_its_checkout() {
    let example = common::example_fleet();
    let out = ok(&["plan", "--repo", example.to_str().unwrap()]);
    assert!(out.contains("app web"), "{out}");
}

#[test]
fn the_agent_applies_a_fleet_in_a_subdirectory_with_repo_path() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let (work, _) = monorepo(dir.path());
    let cluster = TestCluster::start("test-sh-1");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  path: {FLEET_DIR}/\nclusters:\n  - name: test-sh-1\n    kubeconfig: {}\n",
            work.display(),
            cluster.kubeconfig.display()
        ),
    )
    .unwrap();
    let out = ok(&["agent", "--once", "--config", config.to_str().unwrap()]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("web\t") && l.contains("\tapplied\t")),
        "{out}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "repo:\n  url: /srv/fleet\n  path: ../outside\nclusters: [{name: x}]\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["agent", "--once", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yaml:3") && err.contains("repo.path") && err.contains("'../outside'"),
        "{err}"
    );
}
