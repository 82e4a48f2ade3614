//! The review tools on a real Git repository with status refs: `plan -o json` (a
//! stable interface), `diff` and `status`.

mod common;

use std::time::SystemTime;

use common::git::{commit_files, git};
use rollwave::status::{AppStatus, ClusterStatus, Phase};

/// The example fleet in a Git repository with two commits; every cluster reports the
/// first commit Healthy for an hour.
fn example_with_history() -> (tempfile::TempDir, std::path::PathBuf, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    common::copy_dir(&common::example_fleet(), &work);
    git(&work, &["init", "-q", "-b", "main"]);
    let first = commit_files(&work, &[], "initial");
    let app = std::fs::read_to_string(work.join("apps/web/app.yaml"))
        .unwrap()
        .replace("tag: \"1.4.2\"", "tag: \"1.5.0\"");
    let second = commit_files(&work, &[("apps/web/app.yaml", &app)], "web 1.5.0");
    let repo = git2::Repository::open(&work).unwrap();
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let hour_ago =
        humantime::format_rfc3339_seconds(SystemTime::now() - std::time::Duration::from_secs(3600))
            .to_string();
    let tree =
        rollwave::source::GitTree::open(&work.join(".git"), git2::Oid::from_str(&first).unwrap())
            .unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    for c in &fleet.clusters {
        let mut apps = std::collections::BTreeMap::new();
        for a in fleet
            .apps
            .iter()
            .filter(|a| rollwave::fleet::targets_cluster(a, c))
        {
            let r = rollwave::render::render(&tree, &fleet, a, c).unwrap();
            apps.insert(
                a.name.clone(),
                AppStatus {
                    release: first.clone(),
                    hash: r.content_hash.clone(),
                    phase: Phase::Healthy,
                    since: hour_ago.clone(),
                    message: String::new(),
                    known_good: vec![r.content_hash],
                    poisoned: vec![],
                    history: vec![],
                    analysis: Default::default(),
                    verified: None,
                },
            );
        }
        let s = ClusterStatus {
            notified: Default::default(),
            cluster: c.name.clone(),
            agent: "test".into(),
            heartbeat: now.clone(),
            interval: 60,
            apps,
        };
        rollwave::status::refs::write_status(&repo, &s).unwrap();
    }
    (tmp, work, first, second)
}

#[test]
fn plan_json_names_waves_and_the_commit_each_cluster_should_run() {
    let (_tmp, work, first, second) = example_with_history();
    let path = work.to_string_lossy().into_owned();
    let (code, out, err) = common::run_cli(&["plan", "--repo", &path, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["head"], second);
    let web = &v["apps"]["web"];
    let waves: Vec<Vec<String>> = serde_json::from_value(web["waves"].clone()).unwrap();
    assert_eq!(
        waves[0],
        vec!["test-sh-1"],
        "the canary whitelist is wave 0"
    );
    assert_eq!(waves.iter().map(Vec::len).sum::<usize>(), 14);
    assert_eq!(
        web["targets"]["test-sh-1"], second,
        "the canary takes the new release at once"
    );
    assert_eq!(
        web["targets"]["prod-bj-1"], first,
        "later waves wait for the canary's bake"
    );
    assert_eq!(web["pending"][0]["waves"][1]["state"], "waitingForBake");
    // api did not change in the second commit: every cluster stays on the first.
    assert_eq!(v["apps"]["api"]["targets"]["test-sh-1"], first);
    // Each app's tenancy policy, as fleet.yaml maps it.
    assert_eq!(web["policy"], "restricted");
    assert_eq!(v["apps"]["platform"]["policy"], "platform");
    let (code, text, err) = common::run_cli(&["plan", "--repo", &path]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "app web  (batches 1:2:7, bake 5m, gate health, onFailure halt)\n  policy: restricted (namespaces [self], clusterScoped [Namespace], deny [ClusterRoleBinding, RoleBinding/kube-system])\n",
        "  policy: platform (namespaces [*], clusterScoped [*])\n",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }
}

#[test]
fn plan_at_a_later_time_after_the_canary_baked_opens_wave_1() {
    let (_tmp, work, first, second) = example_with_history();
    let repo = git2::Repository::open(&work).unwrap();
    let (statuses, _) = rollwave::status::refs::read_statuses(&repo);
    let mut canary = statuses["test-sh-1"].clone();
    let now = SystemTime::now();
    let later = now + std::time::Duration::from_secs(301);
    let fmt = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    // The canary moved to the new release now and has been Healthy since; its agent is
    // still beating at the later time.
    let web = canary.apps.get_mut("web").unwrap();
    web.history.insert(
        0,
        rollwave::status::HistoryEntry {
            release: first.clone(),
            hash: web.hash.clone(),
            phase: Phase::Healthy,
            since: web.since.clone(),
            until: fmt(now),
            verified: None,
        },
    );
    web.release = second.clone();
    web.hash = "new".into();
    web.since = fmt(now);
    canary.heartbeat = fmt(later);
    rollwave::status::refs::write_status(&repo, &canary).unwrap();
    let path = work.to_string_lossy().into_owned();
    let plan_at = |t: SystemTime| {
        let (code, out, err) =
            common::run_cli(&["plan", "--repo", &path, "--at", &fmt(t), "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    // web bakes for 5 minutes.
    let early = plan_at(now + std::time::Duration::from_secs(240));
    assert_eq!(early["apps"]["web"]["targets"]["test-bj-1"], first);
    assert_eq!(
        early["apps"]["web"]["pending"][0]["waves"][1]["state"],
        "waitingForBake"
    );
    // The bake time is over; web's analysis (error-ratio, latency-p99) is not.
    let measuring = plan_at(later);
    assert_eq!(
        measuring["apps"]["web"]["pending"][0]["waves"][1]["state"],
        "waitingForAnalysis"
    );
    assert_eq!(measuring["apps"]["web"]["targets"]["test-bj-1"], first);
    let (code, text, err) = common::run_cli(&["plan", "--repo", &path, "--at", &fmt(later)]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "  analysis: error-ratio, latency-p99 every 30s after 1m (failureLimit 0, errorLimit 4, noData inconclusive)\n",
        "    wave 1: waiting for the analysis of test-sh-1: error-ratio not measured yet; latency-p99 not measured yet\n",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }
    let web = canary.apps.get_mut("web").unwrap();
    web.verified = Some(fmt(now + std::time::Duration::from_secs(200)));
    rollwave::status::refs::write_status(&repo, &canary).unwrap();
    let baked = plan_at(later);
    assert_eq!(
        baked["apps"]["web"]["pending"][0]["waves"][1]["state"],
        "open"
    );
    assert_eq!(baked["apps"]["web"]["targets"]["test-bj-1"], second);
    assert_eq!(
        baked["apps"]["web"]["targets"]["pre-bj-1"], first,
        "wave 2 waits for wave 1"
    );
}

#[test]
fn diff_shows_the_rendered_change_and_summarises_by_wave() {
    let (_tmp, work, _first, _second) = example_with_history();
    let path = work.to_string_lossy().into_owned();
    let (code, out, err) =
        common::run_cli(&["diff", "--repo", &path, "--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("--- web/prod-bj-1 @ HEAD~1\n+++ web/prod-bj-1 @ HEAD\n"),
        "{out}"
    );
    assert!(out.contains("-        image: registry.example.com/example/web:1.4.2\n+        image: registry.example.com/example/web:1.5.0\n"));
    assert!(
        out.contains("  web: changes on 14 cluster(s) in wave(s) 0, 1, 2, 3, 4, 5, 6\n"),
        "{out}"
    );
    assert!(!out.contains("api/"), "unchanged apps are not listed");
    assert!(!out.contains('\x1b'), "no colours when not on a terminal");
    let (code, out, _) = common::run_cli(&[
        "diff",
        "--repo",
        &path,
        "--from",
        "HEAD~1",
        "--to",
        "HEAD",
        "--cluster",
        "test-sh-1",
        "--app",
        "web",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("  web: changes on 1 cluster(s) in wave(s) 0\n"),
        "{out}"
    );
}

#[test]
fn status_prints_the_fleet_table() {
    let (_tmp, work, first, _second) = example_with_history();
    let path = work.to_string_lossy().into_owned();
    let (code, out, err) = common::run_cli(&["status", "--repo", &path]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("APP"), "{header}");
    let row = out
        .lines()
        .find(|l| l.starts_with("web") && l.contains("test-sh-1"))
        .unwrap();
    assert!(
        row.contains(&first[..8]) && row.contains("Healthy"),
        "{row}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("web ")).count(), 14);
}

#[test]
fn render_json_reports_each_apps_own_release_and_the_hash_statuses_carry() {
    let (_tmp, work, first, second) = example_with_history();
    let path = work.to_string_lossy().into_owned();
    let (code, out, err) = common::run_cli(&[
        "render",
        "--repo",
        &path,
        "--rev",
        "HEAD",
        "--cluster",
        "prod-bj-1",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["commit"], second);
    assert_eq!(
        v["apps"]["web"]["release"], second,
        "web changed in the second commit"
    );
    assert_eq!(
        v["apps"]["api"]["release"], first,
        "api's release is the commit that last changed its inputs"
    );
    // The hash equals what an agent that rendered the first commit put in its status.
    let repo = git2::Repository::open(&work).unwrap();
    let (statuses, _) = rollwave::status::refs::read_statuses(&repo);
    assert_eq!(
        v["apps"]["api"]["hash"],
        statuses["prod-bj-1"].apps["api"].hash
    );
}

/// The example fleet with a Secret in web's base, then its value and a ConfigMap
/// literal changed: (temp dir, work tree).
fn example_with_a_secret_change() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    common::copy_dir(&common::example_fleet(), &work);
    git(&work, &["init", "-q", "-b", "main"]);
    let kustomization = std::fs::read_to_string(work.join("apps/web/base/kustomization.yaml"))
        .unwrap()
        .replace("- hpa.yaml\n", "- hpa.yaml\n- secret.yaml\n");
    let secret = |password: &str, token: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-db\nstringData:\n  password: {password}\n  user: web\ndata:\n  token: {token}\n"
        )
    };
    commit_files(
        &work,
        &[
            ("apps/web/base/kustomization.yaml", &kustomization),
            (
                "apps/web/base/secret.yaml",
                &secret("hunter2", "c2VjcmV0LTE="),
            ),
        ],
        "web: a database secret",
    );
    let changed = kustomization.replace("LOG_LEVEL=info", "LOG_LEVEL=debug");
    commit_files(
        &work,
        &[
            ("apps/web/base/kustomization.yaml", &changed),
            (
                "apps/web/base/secret.yaml",
                &secret("swordfish", "c2VjcmV0LTI="),
            ),
        ],
        "web: new password, debug logs",
    );
    (tmp, work)
}

#[test]
fn diff_masks_secret_values_in_every_format_and_groups_clusters_for_review() {
    let (_tmp, work) = example_with_a_secret_change();
    let path = work.to_string_lossy().into_owned();
    let diff = |format: &str| {
        let (code, out, err) = common::run_cli(&[
            "diff", "--repo", &path, "--from", "HEAD~1", "--to", "HEAD", "--format", format,
        ]);
        assert_eq!(code, 0, "{err}");
        for secret in [
            "hunter2",
            "swordfish",
            "c2VjcmV0LTE=",
            "c2VjcmV0LTI=",
            "aHVudGVyMg==",
        ] {
            assert!(
                !out.contains(secret),
                "{format} shows a secret value {secret}:\n{out}"
            );
        }
        out
    };
    let text = diff("text");
    assert!(
        text.contains("-  password: '*** (before)'")
            || text.contains("-  password: \"*** (before)\""),
        "{text}"
    );
    assert!(text.contains("  web: changes on 14 cluster(s)"), "{text}");

    let markdown = diff("markdown");
    assert!(
        markdown.starts_with("<!-- rollwave diff -->\n"),
        "{markdown}"
    );
    assert!(markdown.contains("#### web"), "{markdown}");
    assert!(
        markdown.contains("`Secret web/web-db`: changed")
            || markdown.contains("`Secret web-db`: changed"),
        "{markdown}"
    );
    assert!(markdown.contains("*** (after)"), "{markdown}");
    assert!(
        markdown.contains("Rolls out in wave 0 (1 cluster)"),
        "{markdown}"
    );
    assert!(
        !markdown.contains("#### api"),
        "unchanged apps are left out:\n{markdown}"
    );

    let json: serde_json::Value = serde_json::from_str(&diff("json")).unwrap();
    let web = json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "web")
        .unwrap();
    let groups = web["groups"].as_array().unwrap();
    let clusters: usize = groups
        .iter()
        .map(|g| g["clusters"].as_array().unwrap().len())
        .sum();
    assert_eq!(clusters, 14, "every cluster of web, each in one group");
    assert!(
        groups.len() < 14,
        "clusters with the same difference share a group"
    );
    // Every cluster's Secret changes; the ConfigMap's literal only where web's overlay
    // keeps the base's generator, renaming the generated ConfigMap.
    let secret_changed = |g: &serde_json::Value| {
        g["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["object"] == "Secret web/web-db" && o["change"] == "changed")
    };
    assert!(groups.iter().all(secret_changed), "{groups:?}");
    assert!(
        groups.iter().any(|g| g["added"] == 1 && g["removed"] == 1),
        "the renamed ConfigMap counts as added and removed: {groups:?}"
    );
}

#[test]
fn codeowners_follows_the_owners_of_the_fleet_and_of_each_app_and_validate_warns_without() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    common::copy_dir(&common::example_fleet(), &work);
    // The example names owners everywhere: replace them, and take api's away.
    let without_owners = |path: &str| {
        let text = std::fs::read_to_string(work.join(path)).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("owners:")).collect();
        std::fs::write(work.join(path), format!("{}\n", kept.join("\n"))).unwrap();
        format!("{}\n", kept.join("\n"))
    };
    let fleet_yaml = without_owners("fleet.yaml");
    without_owners("apps/api/app.yaml");
    std::fs::write(
        work.join("fleet.yaml"),
        format!("owners: [\"@acme/platform\", ops@example.com]\n{fleet_yaml}"),
    )
    .unwrap();
    let web = without_owners("apps/web/app.yaml");
    std::fs::write(
        work.join("apps/web/app.yaml"),
        format!("{web}owners:\n- \"@acme/web\"\n- \"@alice\"\n"),
    )
    .unwrap();
    let path = work.to_string_lossy().into_owned();

    let (code, out, err) = common::run_cli(&["codeowners", "--repo", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\n* @acme/platform ops@example.com\n"),
        "{out}"
    );
    assert!(out.contains("\n/apps/web/ @acme/web @alice\n"), "{out}");
    assert!(
        out.contains("# /apps/api/ names no owners: fleet.yaml's review it.\n"),
        "{out}"
    );
    let web_at = out.find("/apps/web/").unwrap();
    assert!(
        out.find("* @acme").unwrap() < web_at,
        "the catch-all comes first"
    );

    let (_, _, err) = common::run_cli(&["validate", "--repo", &path]);
    assert!(
        err.contains("warning: app 'api' has no owners")
            && !err.contains("app 'web' has no owners"),
        "{err}"
    );

    // An owner CODEOWNERS would not take is refused with its file and line.
    std::fs::write(
        work.join("apps/web/app.yaml"),
        format!("{web}owners:\n- \"@acme/web\"\n- alice\n"),
    )
    .unwrap();
    let (code, _, err) = common::run_cli(&["codeowners", "--repo", &path]);
    assert_eq!(code, 1);
    let line = web.lines().count() + 3;
    assert!(
        err.contains(&format!("apps/web/app.yaml:{line}"))
            && err.contains("owners: 'alice' is not an owner CODEOWNERS takes"),
        "{err}"
    );
}
