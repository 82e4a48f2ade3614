//! The first hour with rollwave, as a new user meets it: every message here is what
//! the real binary prints for a common first mistake, checked word for word where the
//! wording is the point (one line, the cause once, the fix).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ScratchRepo;
use common::git::{commit_files, git};

fn rollwave(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rollwave"));
    c.current_dir(dir)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("ROLLWAVE_REPO")
        .env("HOME", dir)
        .env("ROLLWAVE_CACHE", dir.join("cache"));
    if let Some(path) = common::helm::path_if_built() {
        c.env("PATH", path);
    }
    c
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = rollwave(dir, args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The example fleet committed in a Git work tree `<tmp>/fleet`.
fn example_repo(tmp: &Path) -> PathBuf {
    let work = tmp.join("fleet");
    common::copy_dir(&common::example_fleet(), &work);
    git(&work, &["init", "-q", "-b", "main"]);
    commit_files(&work, &[], "the example fleet");
    work
}

#[test]
fn build_of_a_base_with_templates_says_to_use_render() {
    let tmp = tempfile::tempdir().unwrap();
    let work = example_repo(tmp.path());
    let (code, _, err) = run(tmp.path(), &["build", "fleet/apps/web/base"], &[]);
    assert_eq!(code, 1);
    let root = work.canonicalize().unwrap();
    let expected = format!(
        "error: fleet/apps/web/base has handlebars templates (deployment.yaml.hbs, ingress.yaml.hbs), which `rollwave build` does not fill in (they need a cluster's values): use `rollwave render --repo {} --cluster NAME --app web`",
        root.display()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn plan_status_and_diff_outside_a_git_repository_say_so_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let dir = plain.to_str().unwrap();
    for args in [
        vec!["plan", "--repo", dir],
        vec!["status", "--repo", dir],
        vec!["diff", "--repo", dir, "--from", "HEAD~1", "--to", "HEAD"],
        vec!["render", "--repo", dir, "--cluster", "a", "--rev", "HEAD"],
    ] {
        let (code, _, err) = run(tmp.path(), &args, &[]);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(
            err,
            format!(
                "error: {dir} is not a Git repository (run `git init` there, or pass the repository's root)\n"
            ),
            "{args:?}"
        );
    }
    let missing = tmp.path().join("missing");
    let (_, _, err) = run(
        tmp.path(),
        &["plan", "--repo", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        err,
        format!("error: {}: no such directory\n", missing.display())
    );
}

#[test]
fn diff_live_on_a_bare_repository_reads_its_default_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let work = example_repo(tmp.path());
    let bare = tmp.path().join("fleet.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let cluster = common::sim::TestCluster::start("test-sh-1");
    let (code, out, err) = run(
        tmp.path(),
        &[
            "diff",
            "--repo",
            bare.to_str().unwrap(),
            "--live",
            "--cluster",
            "test-sh-1",
            "--kubeconfig",
            cluster.kubeconfig.to_str().unwrap(),
            "--app",
            "web",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // Nothing is applied yet: every object of web is new.
    assert!(out.contains("+++ rendered web/"), "{out}");
    assert!(out.contains("+kind: Deployment"), "{out}");
}

#[test]
fn kubeconfig_and_in_cluster_errors_are_one_sentence_with_the_fix() {
    let repo = ScratchRepo::new(common::MINIMAL);
    let tmp = tempfile::tempdir().unwrap();
    let dir = repo.path().to_str().unwrap();
    let live = ["diff", "--repo", dir, "--live", "--cluster", "test-1"];
    let missing = tmp.path().join("nope");
    let missing = missing.to_str().unwrap();
    // (arguments, environment, stderr)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);
    let cases: [Case; 3] = [
        (
            [&live[..], &["--kubeconfig", missing]].concat(),
            vec![],
            format!(
                "error: cannot read kubeconfig {missing}: No such file or directory (os error 2); give the path of an existing kubeconfig file\n"
            ),
        ),
        (
            live.to_vec(),
            vec![("KUBECONFIG", missing)],
            format!(
                "error: no cluster configured: KUBECONFIG={missing} cannot be used (No such file or directory (os error 2)); pass --kubeconfig FILE or set KUBECONFIG (`rollwave sim --kubeconfig FILE` writes one for simulated clusters)\n"
            ),
        ),
        (
            live.to_vec(),
            vec![],
            "error: no cluster configured: KUBECONFIG is not set, there is no ~/.kube/config, and this is not a Kubernetes pod; pass --kubeconfig FILE or set KUBECONFIG (`rollwave sim --kubeconfig FILE` writes one for simulated clusters)\n".into(),
        ),
    ];
    for (args, env, expected) in cases {
        let (code, _, err) = run(tmp.path(), &args, &env);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(err, expected, "{args:?}");
    }
    let config = tmp.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!("repo: {{url: {dir}}}\nclusters:\n- name: test-1\n  inCluster: true\n"),
    )
    .unwrap();
    let (code, _, err) = run(
        tmp.path(),
        &["agent", "--once", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: cluster 'test-1': inCluster: not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set); run the agent in a pod, or give this cluster a kubeconfig and context instead\n"
    );
}

#[test]
fn plan_prints_the_policy_as_the_file_spells_it_and_help_describes_json() {
    let tmp = tempfile::tempdir().unwrap();
    let work = example_repo(tmp.path());
    let (code, out, err) = run(tmp.path(), &["plan", "--repo", work.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("app api  (batches 1:2:7, bake 10m, gate health, onFailure halt)\n"),
        "{out}"
    );
    let (code, help, _) = run(tmp.path(), &["plan", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        help.contains("per app its waves, targets, decisions, pending releases"),
        "{help}"
    );
    assert!(!help.contains("every app's hash and objects"), "{help}");
    // The old spelling of the default still works.
    let (code, _, err) = run(
        tmp.path(),
        &["plan", "--repo", work.to_str().unwrap(), "-o", "yaml"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
}

/// Waits until `rollwave sim` has written a kubeconfig naming every cluster of `names`.
fn wait_for_kubeconfig(path: &Path, names: &[&str]) {
    common::sim::eventually(Duration::from_secs(60), "the sim's kubeconfig", || {
        std::fs::read_to_string(path)
            .is_ok_and(|t| names.iter().all(|n| t.contains(&format!("name: {n}"))))
    });
}

/// examples/agent/laptop.yaml, run as examples/README.md says: the example fleet in a
/// local repository, `rollwave sim` for its clusters, one pass; then `status` shows
/// the canary's release and the next wave waiting (not `-`).
#[test]
fn the_laptop_example_runs_against_rollwave_sim_and_status_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    example_repo(tmp.path());
    let mut sim = rollwave(
        tmp.path(),
        &["sim", "--fleet", "fleet", "--kubeconfig", "sim-kubeconfig"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let kubeconfig = tmp.path().join("sim-kubeconfig");
    wait_for_kubeconfig(&kubeconfig, &["test-sh-1", "test-bj-1"]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent/laptop.yaml");
    let (code, out, err) = run(
        tmp.path(),
        &["agent", "--once", "--config", example.to_str().unwrap()],
        &[],
    );
    let (_, status, status_err) = run(tmp.path(), &["status", "--repo", "fleet"], &[]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("# cluster test-sh-1\n"), "{out}");
    assert!(out.contains("web\tapplied\trelease "), "{out}");
    assert!(out.contains("web\twaiting\t"), "{out}");
    let row = |cluster: &str| {
        status
            .lines()
            .find(|l| l.starts_with("web ") && l.contains(&format!(" {cluster} ")))
            .unwrap_or_else(|| panic!("no row for {cluster}:\n{status}\n{status_err}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let canary = row("test-sh-1");
    assert_eq!(canary[3].len(), 8, "{status}");
    assert!(
        canary[4] == "Progressing" || canary[4] == "Healthy",
        "{status}"
    );
    let next = row("test-bj-1");
    assert_eq!(&next[3..6], ["-", "Waiting", "-"], "{status}");
    let later = row("prod-bj-1");
    assert_eq!(later[4], "Unknown", "{status}");
}

/// The README's quickstart says what a first build costs and what `cargo test` needs,
/// and its link to the design opens a file of the repository.
#[test]
fn the_readme_quickstart_lists_what_the_tests_need_and_links_the_design() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quickstart = &readme
        [readme.find("## Quickstart").unwrap()..readme.find("## The fleet repository").unwrap()];
    for needed in [
        "several minutes on a 2-core machine",
        "`kubectl`",
        "`sshd`",
        "`gpg`",
        "Go 1.26 or newer",
        "`prometheus`",
        "`python3-venv`",
        "apt-get install -y openssh-server openssh-client",
        "`.ci/run`",
        // The two commands a newcomer runs: the demo, and every test with its set-up.
        "```sh\ncargo run --release -- demo\n```",
        "```sh\n./test\n```",
    ] {
        assert!(
            quickstart.contains(needed),
            "the quickstart does not mention {needed}"
        );
    }
    assert!(readme.contains("[docs/DESIGN.md](docs/DESIGN.md)"));
    assert!(root.join("docs/DESIGN.md").is_file());
    assert!(
        !readme.contains("../shared/"),
        "a link leaves the repository"
    );
}

/// `./test` on a machine without the tools names each missing one with the Debian
/// packages to install, and stops before compiling anything (here no `apt-get` is on
/// PATH, as on a machine that is not Debian, so it cannot install them itself).
#[test]
fn the_test_script_names_the_missing_tools_and_stops_before_compiling() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // Only what the script itself runs: no cargo, no apt-get, none of the test tools.
    for tool in ["bash", "env", "id", "dirname", "cat"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not on PATH"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("test");
    let out = Command::new(&script)
        .args(["--test", "render"])
        .env("PATH", &bin)
        .env("CHROMIUM", tmp.path().join("no-chromium"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for line in [
        "error: the tests need these tools, which are missing:",
        "  git (real Git servers)",
        "  prometheus (the analysis of bakes)",
        "  chromium, or CHROMIUM=path (the web view's page)",
        "  npm (installs playwright-core)",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "no {line:?} in:\n{stderr}"
        );
    }
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("install them with the system's package manager (Debian packages: git ")
            && last.contains(" prometheus ")
            && last.contains(" python3 python3-venv ")
            && last.contains(" nodejs npm ")
            && last.ends_with("), then re-run ./test"),
        "{last}"
    );
}
