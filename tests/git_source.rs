//! The Git source against real Git servers started on loopback: clone and incremental
//! fetch, force-push, authentication, status refs between agents, signatures, triggers.

mod common;

use std::path::Path;
use std::time::Duration;

use common::git::{
    GitDaemon, HttpAuth, HttpGit, commit_files, git, git_cmd, publish, signed_commit, ssh_keygen,
    within, work_repo,
};
use git2::Oid;
use rollwave::source::history::{Inputs, first_parent_history, releases};
use rollwave::source::statusref::push_status;
use rollwave::source::verify::TrustPolicy;
use rollwave::source::{Auth, Mirror, Secret};
use rollwave::status::refs::{read_statuses, write_status};
use rollwave::status::{AppStatus, ClusterStatus, Phase};

fn fleet_files() -> Vec<(&'static str, &'static str)> {
    common::MINIMAL.to_vec()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    work: std::path::PathBuf,
    base: std::path::PathBuf,
    root: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base).unwrap();
    work_repo(&work, &fleet_files());
    publish(&work, &base, "fleet");
    Fixture {
        root: tmp.path().to_path_buf(),
        _tmp: tmp,
        work,
        base,
    }
}

/// Fetches branch `main` of `url` with `auth` into a mirror under `cache`, failing the
/// test if it takes longer than 30 s (a hang is a failure, not a stuck suite).
fn fetch_head_within(
    cache: std::path::PathBuf,
    url: String,
    auth: Auth,
) -> Result<Oid, rollwave::source::SourceError> {
    within(Duration::from_secs(30), move || {
        Mirror::open(&cache, &url, "main", auth)
            .unwrap()
            .fetch()
            .map(|o| o.head)
    })
}

/// An anonymous mirror of branch `main` of `url`, cached under `cache`.
fn anon_mirror(cache: &Path, url: &str) -> Mirror {
    Mirror::open(cache, url, "main", Auth::None).unwrap()
}

fn status(cluster: &str, release: &str) -> ClusterStatus {
    let mut s = ClusterStatus {
        notified: Default::default(),
        cluster: cluster.into(),
        agent: "0.1.0".into(),
        heartbeat: "2026-11-23T10:00:00Z".into(),
        interval: 60,
        apps: Default::default(),
    };
    s.apps.insert(
        "web".into(),
        AppStatus {
            release: release.into(),
            hash: "h".into(),
            phase: Phase::Healthy,
            since: "2026-11-23T09:00:00Z".into(),
            message: String::new(),
            known_good: vec!["h".into()],
            poisoned: vec![],
            history: vec![],
            analysis: Default::default(),
            verified: None,
        },
    );
    s
}

#[test]
fn clone_then_fetch_only_transfers_what_is_new_over_git_daemon() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let mirror = anon_mirror(&f.root.join("cache"), &daemon.url("fleet"));
    let first = mirror.fetch().unwrap();
    assert_eq!(first.head.to_string(), git(&f.work, &["rev-parse", "HEAD"]));
    assert!(first.received_objects >= 8, "{first:?}");
    assert_eq!(first.previous, None);

    let new = commit_files(&f.work, &[("apps/web/base/extra.txt", "x")], "add a file");
    git(&f.work, &["push", "-q", "origin", "main"]);
    let second = mirror.fetch().unwrap();
    assert_eq!(second.head.to_string(), new);
    assert_eq!(second.previous, Some(first.head));
    assert!(!second.rewritten);
    assert!(
        second.received_objects > 0 && second.received_objects <= 6,
        "only the new commit's objects: {second:?}"
    );

    let third = mirror.fetch().unwrap();
    assert_eq!(third.head, second.head);
    assert_eq!(third.received_objects, 0, "a no-op fetch transfers nothing");
}

#[test]
fn force_push_is_detected_and_the_old_commit_leaves_history() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let mirror = anon_mirror(&f.root.join("cache"), &daemon.url("fleet"));
    let bad = commit_files(&f.work, &[("apps/web/base/x.txt", "bad")], "bad");
    git(&f.work, &["push", "-q", "origin", "main"]);
    mirror.fetch().unwrap();
    git(&f.work, &["reset", "-q", "--hard", "HEAD~1"]);
    let good = commit_files(&f.work, &[("apps/web/base/x.txt", "good")], "good");
    git(&f.work, &["push", "-q", "--force", "origin", "main"]);
    let out = mirror.fetch().unwrap();
    assert!(out.rewritten);
    assert_eq!(out.head.to_string(), good);
    let history = first_parent_history(mirror.repo(), out.head, 100).unwrap();
    assert!(!history.iter().any(|o| o.to_string() == bad));
}

#[test]
fn http_basic_auth_works_and_a_wrong_password_fails_fast_with_a_clear_error() {
    let f = fixture();
    let server = HttpGit::start(&f.base, HttpAuth::Basic("alice".into(), "right".into()));
    let url = server.url("fleet");
    let cache = f.root.join("cache-ok");
    let ok = fetch_head_within(
        cache,
        url,
        Auth::Basic {
            username: "alice".into(),
            password: Secret::Value("right".into()),
        },
    );
    assert!(ok.is_ok(), "{ok:?}");
    let url = server.url("fleet");
    let cache = f.root.join("cache-bad");
    let err = fetch_head_within(
        cache,
        url,
        Auth::Basic {
            username: "alice".into(),
            password: Secret::Value("wrong".into()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "http://127.0.0.1:{}/fleet.git: fetch failed:",
            server.port
        )),
        "{err}"
    );
    assert!(err.contains("authentication"), "{err}");
    assert!(!err.contains("wrong"), "the password never appears: {err}");
}

#[test]
fn http_bearer_token_is_sent() {
    let f = fixture();
    let server = HttpGit::start(&f.base, HttpAuth::Bearer("t0ken".into()));
    let url = server.url("fleet");
    let cache = f.root.join("cache");
    let head = fetch_head_within(
        cache,
        url,
        Auth::Bearer {
            token: Secret::Value("t0ken".into()),
        },
    )
    .unwrap();
    assert_eq!(head.to_string(), git(&f.work, &["rev-parse", "HEAD"]));
}

#[test]
fn status_refs_travel_between_two_agents_through_the_repository() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let a = anon_mirror(&f.root.join("a"), &daemon.url("fleet"));
    let b = anon_mirror(&f.root.join("b"), &daemon.url("fleet"));
    a.fetch().unwrap();
    b.fetch().unwrap();
    let first = write_status(a.repo(), &status("test-1", "r1")).unwrap();
    push_status(&a, "test-1", 3).unwrap();
    b.fetch().unwrap();
    let (seen, errors) = read_statuses(b.repo());
    assert!(errors.is_empty());
    assert_eq!(seen["test-1"].apps["web"].release, "r1");

    write_status(b.repo(), &status("prod-1", "r1")).unwrap();
    push_status(&b, "prod-1", 3).unwrap();
    let second = write_status(a.repo(), &status("test-1", "r2")).unwrap();
    push_status(&a, "test-1", 3).unwrap();
    let parent = a.repo().find_commit(second).unwrap().parent_id(0).unwrap();
    assert_eq!(parent, first, "each status commit extends the previous one");
    a.fetch().unwrap();
    let (seen, _) = read_statuses(a.repo());
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec!["prod-1", "test-1"]
    );
    assert_eq!(seen["test-1"].apps["web"].release, "r2");
}

#[test]
fn concurrent_pushes_of_different_clusters_all_land() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let url = daemon.url("fleet");
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (url, cache) = (url.clone(), f.root.join(format!("agent-{i}")));
            std::thread::spawn(move || {
                let m = anon_mirror(&cache, &url);
                m.fetch().unwrap();
                let cluster = format!("c{i}");
                write_status(m.repo(), &status(&cluster, "r")).unwrap();
                push_status(&m, &cluster, 5).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let reader = anon_mirror(&f.root.join("reader"), &url);
    reader.fetch().unwrap();
    let (seen, errors) = read_statuses(reader.repo());
    assert!(errors.is_empty());
    assert_eq!(seen.len(), 6);
}

#[test]
fn a_malformed_peer_status_is_reported_and_ignored() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let m = anon_mirror(&f.root.join("m"), &daemon.url("fleet"));
    m.fetch().unwrap();
    write_status(m.repo(), &status("good", "r")).unwrap();
    push_status(&m, "good", 3).unwrap();
    // A peer publishes garbage with plain git.
    let peer = f.root.join("peer");
    std::fs::create_dir_all(&peer).unwrap();
    git(&peer, &["init", "-q"]);
    std::fs::write(peer.join("status.json"), "{not json").unwrap();
    git(&peer, &["add", "status.json"]);
    git(&peer, &["commit", "-q", "-m", "broken"]);
    git(
        &peer,
        &[
            "push",
            "-q",
            &daemon.url("fleet"),
            "HEAD:refs/rollwave/status/broken",
        ],
    );
    m.fetch().unwrap();
    let (seen, errors) = read_statuses(m.repo());
    assert!(seen.contains_key("good"));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].cluster, "broken");
    assert!(
        errors[0]
            .to_string()
            .starts_with("status of cluster 'broken': status.json:"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_commit_renders_from_the_object_store_like_the_directory() {
    let f = fixture();
    let old = git(&f.work, &["rev-parse", "HEAD"]);
    commit_files(
        &f.work,
        &[(
            "apps/web/base/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx:2}]}\n",
        )],
        "bump",
    );
    let repo = git2::Repository::open(&f.work).unwrap();
    let head = repo.head().unwrap().target().unwrap();
    let render_at = |oid: Oid| {
        let tree = rollwave::source::GitTree::open(&f.work.join(".git"), oid).unwrap();
        let fleet = rollwave::fleet::load(&tree).unwrap();
        rollwave::render::render(
            &tree,
            &fleet,
            fleet.app("web").unwrap(),
            fleet.cluster("prod-1").unwrap(),
        )
        .unwrap()
    };
    let from_git = render_at(head);
    let dir = rollwave::tree::DirTree::open(&f.work).unwrap();
    let fleet = rollwave::fleet::load(&dir).unwrap();
    let from_dir = rollwave::render::render(
        &dir,
        &fleet,
        fleet.app("web").unwrap(),
        fleet.cluster("prod-1").unwrap(),
    )
    .unwrap();
    assert_eq!(from_git.content_hash, from_dir.content_hash);
    let older = render_at(Oid::from_str(&old).unwrap());
    assert_ne!(
        older.content_hash, from_git.content_hash,
        "two commits side by side"
    );
}

#[test]
fn a_symlink_leaving_the_tree_in_a_commit_is_refused() {
    let f = fixture();
    std::os::unix::fs::symlink(
        "../../../../etc/passwd",
        f.work.join("apps/web/base/link.yaml"),
    )
    .unwrap();
    commit_files(
        &f.work,
        &[(
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- link.yaml\n",
        )],
        "link",
    );
    let repo = git2::Repository::open(&f.work).unwrap();
    let head = repo.head().unwrap().target().unwrap();
    let tree = rollwave::source::GitTree::open(&f.work.join(".git"), head).unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let err = rollwave::render::render(
        &tree,
        &fleet,
        fleet.app("web").unwrap(),
        fleet.cluster("prod-1").unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "apps/web/base/link.yaml: symlink points outside the repository; replace it with the file itself"
    );
}

#[test]
fn releases_are_the_commits_that_touch_an_apps_inputs() {
    let f = fixture();
    let initial = git(&f.work, &["rev-parse", "HEAD"]);
    let web = commit_files(
        &f.work,
        &[(
            "apps/web/base/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
        )],
        "web",
    );
    let _other = commit_files(&f.work, &[("docs/readme.md", "hello")], "docs");
    let fleet_change = commit_files(
        &f.work,
        &[("fleet.yaml", "stages: [test, prod]\n")],
        "fleet",
    );
    let repo = git2::Repository::open(&f.work).unwrap();
    let head = repo.head().unwrap().target().unwrap();
    let history = first_parent_history(&repo, head, 100).unwrap();
    let files: std::collections::BTreeSet<_> = [
        "apps/web/base/deployment.yaml",
        "apps/web/base/kustomization.yaml",
    ]
    .iter()
    .map(|p| rollwave::tree::RepoPath::new(p).unwrap())
    .collect();
    let rel: Vec<String> = releases(&repo, &history, &Inputs::for_app("web", &files))
        .unwrap()
        .iter()
        .map(Oid::to_string)
        .collect();
    assert_eq!(rel, vec![fleet_change, web, initial]);
}

#[test]
fn ssh_signed_commits_are_trusted_only_with_an_allowed_key() {
    let f = fixture();
    let (key, public) = ssh_keygen(&f.root, "trusted");
    let (_other, other_public) = ssh_keygen(&f.root, "other");
    let signed = signed_commit(&f.work, &key, &[("f.txt", "signed")], "signed");
    let unsigned = commit_files(&f.work, &[("g.txt", "unsigned")], "unsigned");
    let repo = git2::Repository::open(&f.work).unwrap();
    let allowed = f.root.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("test@example.com namespaces=\"git\" {public}\n"),
    )
    .unwrap();
    let policy = TrustPolicy::load(Some(&allowed), None).unwrap();
    let signer = policy
        .verify_commit(&repo, Oid::from_str(&signed).unwrap())
        .unwrap();
    assert_eq!(signer.method, "ssh");
    assert_eq!(signer.identity, "test@example.com");
    let e = policy
        .verify_commit(&repo, Oid::from_str(&unsigned).unwrap())
        .unwrap_err();
    assert_eq!(e.to_string(), format!("commit {unsigned} is not signed"));
    // The unsigned tip leaves the agent on the last trusted commit.
    let history = first_parent_history(&repo, Oid::from_str(&unsigned).unwrap(), 10).unwrap();
    let (trusted, refused) = policy.newest_trusted(&repo, &history);
    assert_eq!(trusted.unwrap().to_string(), signed);
    assert_eq!(refused.len(), 1);
    // Another key is not trusted.
    std::fs::write(&allowed, format!("someone@example.com {other_public}\n")).unwrap();
    let policy = TrustPolicy::load(Some(&allowed), None).unwrap();
    let e = policy
        .verify_commit(&repo, Oid::from_str(&signed).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("SSH key is not in the allowed signers"),
        "{e}"
    );
}

#[test]
fn openpgp_signed_commits_are_trusted_only_with_a_known_key() {
    let f = fixture();
    let gnupg = f.root.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = std::process::Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg is installed");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    gpg(&[
        "--quick-gen-key",
        "Signer <signer@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    gpg(&[
        "--quick-gen-key",
        "Stranger <stranger@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    let keyring = f.root.join("trusted.asc");
    std::fs::write(
        &keyring,
        gpg(&["--armor", "--export", "signer@example.com"]),
    )
    .unwrap();
    let commit_signed_by = |who: &str, file: &str| {
        std::fs::write(f.work.join(file), who).unwrap();
        git(&f.work, &["add", "-A"]);
        let out = git_cmd(&f.work)
            .env("GNUPGHOME", &gnupg)
            .args([
                "-c",
                "gpg.program=gpg",
                "-c",
                &format!("user.signingkey={who}"),
                "commit",
                "-q",
                &format!("-S{who}"),
                "-m",
                who,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(&f.work, &["rev-parse", "HEAD"])
    };
    let trusted = commit_signed_by("signer@example.com", "a.txt");
    let untrusted = commit_signed_by("stranger@example.com", "b.txt");
    let repo = git2::Repository::open(&f.work).unwrap();
    let policy = TrustPolicy::load(None, Some(&keyring)).unwrap();
    assert_eq!(
        policy
            .verify_commit(&repo, Oid::from_str(&trusted).unwrap())
            .unwrap()
            .method,
        "openpgp"
    );
    let e = policy
        .verify_commit(&repo, Oid::from_str(&untrusted).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("not by a trusted key"), "{e}");
}

#[test]
fn cli_renders_from_a_git_url_and_from_a_revision_of_a_path() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let cache = f.root.join("cli-cache");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .env("ROLLWAVE_CACHE", &cache)
        .args([
            "render",
            "--repo",
            &daemon.url("fleet"),
            "--cluster",
            "prod-1",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["commit"], git(&f.work, &["rev-parse", "HEAD"]));
    let first = git(&f.work, &["rev-parse", "HEAD"]);
    commit_files(
        &f.work,
        &[(
            "apps/web/base/kustomization.yaml",
            "resources:\n- missing.yaml\n",
        )],
        "break it",
    );
    let work = f.work.to_string_lossy().into_owned();
    let (code, _, _) = common::run_cli(&["validate", "--repo", &work, "--rev", "HEAD"]);
    assert_eq!(code, 1, "the broken head fails validation");
    let (code, out, err) = common::run_cli(&["validate", "--repo", &work, "--rev", "HEAD~1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 errors"));
    let (code, _, err) = common::run_cli(&[
        "render",
        "--repo",
        &work,
        "--rev",
        "nope",
        "--cluster",
        "prod-1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("revision 'nope' not found"), "{err}");
    let _ = first;
}

#[test]
fn local_paths_and_file_urls_are_remotes_too() {
    let f = fixture();
    let bare = f.base.join("fleet.git");
    let head = git(&f.work, &["rev-parse", "HEAD"]);
    for url in [
        bare.to_string_lossy().into_owned(),
        format!("file://{}", bare.display()),
    ] {
        let m = Mirror::open(
            &f.root.join(format!("cache-{}", url.len())),
            &url,
            "main",
            Auth::None,
        )
        .unwrap();
        assert_eq!(m.fetch().unwrap().head.to_string(), head, "{url}");
    }
}

#[test]
fn a_missing_branch_is_a_clear_error() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.base);
    let m = Mirror::open(
        &f.root.join("c"),
        &daemon.url("fleet"),
        "release",
        Auth::None,
    )
    .unwrap();
    let e = m.fetch().unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: fetch failed:", daemon.url("fleet"))),
        "{e}"
    );
}

/// A real `sshd` on a free loopback port that accepts one client key.
struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an RSA key pair in PEM form (readable by libssh2) at `key` and `key.pub`.
fn rsa_keygen(key: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
        .arg(key)
        .output()
        .expect("ssh-keygen is installed");
    assert!(out.status.success());
    std::fs::read_to_string(key.with_extension("pub")).unwrap()
}

fn start_sshd(dir: &Path, client_pub: &str) -> (Sshd, String) {
    let host_key = dir.join("host_rsa");
    let host_pub = rsa_keygen(&host_key);
    std::fs::write(dir.join("authorized_keys"), format!("{client_pub}\n")).unwrap();
    let port = common::git::free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {}\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").ok();
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "sshd is required for this test (apt-get install -y openssh-server; ./test does as root)"
    );
    let child = std::process::Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "sshd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut parts = host_pub.split_whitespace();
    let known = format!(
        "[127.0.0.1]:{port} {} {}\n",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    (Sshd { child, port }, known)
}

#[test]
fn ssh_remotes_need_the_key_and_a_known_host_key() {
    let f = fixture();
    let client = f.root.join("client_rsa");
    let client_pub = rsa_keygen(&client);
    let (sshd, known) = start_sshd(&f.root, client_pub.trim());
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let url = format!(
        "ssh://{user}@127.0.0.1:{}{}",
        sshd.port,
        f.base.join("fleet.git").display()
    );
    let known_hosts = f.root.join("known_hosts");
    std::fs::write(&known_hosts, &known).unwrap();
    let auth = |known_hosts: &Path| Auth::Ssh {
        username: user.clone(),
        private_key: client.clone(),
        passphrase: None,
        known_hosts: known_hosts.to_path_buf(),
    };
    let (u, a, c) = (url.clone(), auth(&known_hosts), f.root.join("ssh-ok"));
    let head = fetch_head_within(c, u, a).unwrap();
    assert_eq!(head.to_string(), git(&f.work, &["rev-parse", "HEAD"]));
    // A host key that is not in known_hosts is refused.
    let empty = f.root.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let (u, a, c) = (url.clone(), auth(&empty), f.root.join("ssh-unknown"));
    let err = fetch_head_within(c, u, a).unwrap_err().to_string();
    assert!(
        err.contains("host key must be listed in the configured known_hosts"),
        "{err}"
    );
}
