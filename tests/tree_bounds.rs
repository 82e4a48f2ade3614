//! Bounds on what a build may read: only regular files, symlinks that resolve the same
//! from a checkout and from Git and never leave the app, kustomize's empty-file rule, and
//! the nesting, file-count and byte limits of one build.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ScratchRepo;
use common::git::{git, within};
use rollwave::fleet;
use rollwave::render::{self, kustomize};
use rollwave::source::GitTree;
use rollwave::tree::{DirTree, FileTree, MemTree, RepoPath};
use serde_json::Value;

fn symlink(target: &str, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Commits the whole directory `dir` (made a repository if needed) and opens the commit.
fn commit_all(dir: &Path) -> GitTree {
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q", "-b", "main"]);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", "tree"]);
    let head = git2::Oid::from_str(&git(dir, &["rev-parse", "HEAD"])).unwrap();
    GitTree::open(&dir.join(".git"), head).unwrap()
}

fn render_with(tree: &dyn FileTree) -> Result<Vec<Value>, String> {
    let fleet = fleet::load(tree).map_err(|e| e.to_string())?;
    let app = fleet.app("web").ok_or("no app web")?;
    let cluster = fleet.cluster("prod-1").ok_or("no cluster")?;
    render::render(tree, &fleet, app, cluster)
        .map(|r| r.objects.into_vec())
        .map_err(|e| e.to_string())
}

/// Renders web/prod-1 from the working tree and from a commit of it, asserts both agree,
/// and returns the result.
fn render_both_ways(repo: &ScratchRepo) -> Result<Vec<Value>, String> {
    let from_dir = render_with(&DirTree::open(repo.path()).unwrap());
    let from_git = render_with(&commit_all(repo.path()));
    assert_eq!(from_dir, from_git, "working tree and Git disagree");
    from_dir
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n";

#[test]
fn a_fifo_listed_as_a_resource_is_refused_without_opening_it() {
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- pipe.yaml\n",
    )]);
    let fifo = std::ffi::CString::new(
        repo.path()
            .join("apps/web/base/pipe.yaml")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let path = repo.path_buf();
    let e = within(Duration::from_secs(20), move || {
        render_with(&DirTree::open(&path).unwrap()).unwrap_err()
    });
    assert_eq!(
        e,
        "apps/web/base/pipe.yaml: is a FIFO (named pipe), not a regular file; only regular files are read, replace it with one"
    );
}

#[test]
fn a_socket_is_refused_by_name_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let tree = DirTree::open(dir.path()).unwrap();
    let e = tree.read(&RepoPath::new("sock").unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sock: is a socket, not a regular file; only regular files are read, replace it with one"
    );
}

#[test]
fn a_submodule_in_a_commit_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let blob = repo.blob(CM.as_bytes()).unwrap();
    let mut base = repo.treebuilder(None).unwrap();
    base.insert("cm.yaml", blob, 0o100644).unwrap();
    // A gitlink: the commit of another repository.
    base.insert("vendored", blob, 0o160000).unwrap();
    let base = base.write().unwrap();
    let mut root = repo.treebuilder(None).unwrap();
    root.insert("base", base, 0o040000).unwrap();
    let root = repo.find_tree(root.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let commit = repo.commit(None, &sig, &sig, "sub", &root, &[]).unwrap();
    let tree = GitTree::open(&dir.path().join(".git"), commit).unwrap();
    assert_eq!(
        tree.list(&RepoPath::new("base").unwrap()).unwrap(),
        vec!["cm.yaml", "vendored"]
    );
    let e = tree
        .read(&RepoPath::new("base/vendored").unwrap())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "base/vendored: is a Git submodule (commit entry), not a regular file; only regular files are read, replace it with one"
    );
}

#[test]
fn an_in_repository_directory_symlink_builds_the_same_from_a_checkout_and_from_git() {
    let repo = ScratchRepo::minimal_with(&[
        (
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [test, prod]\noverlays:\n  - {stage: prod, path: overlays/prod}\n",
        ),
        (
            "apps/web/overlays/prod/kustomization.yaml",
            "resources:\n- shared/extra\nnamePrefix: prod-\n",
        ),
        // `..` is relative to where the link leads, as in kustomize.
        (
            "apps/web/common/extra/kustomization.yaml",
            "resources:\n- cm.yaml\n- ../../base\n",
        ),
        ("apps/web/common/extra/cm.yaml", CM),
    ]);
    // overlays/prod/shared -> ../../common, a directory link in the middle of a path.
    symlink(
        "../../common",
        &repo.path().join("apps/web/overlays/prod/shared"),
    );
    let objects = render_both_ways(&repo).unwrap();
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["prod-cm", "prod-web"]);
}

#[test]
fn a_template_read_through_a_directory_symlink_is_rendered_both_ways() {
    let repo = ScratchRepo::minimal_with(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- linked/cm.yaml\n",
        ),
        (
            "apps/web/base/real/cm.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  image: {{values.image}}\n",
        ),
    ]);
    symlink("real", &repo.path().join("apps/web/base/linked"));
    let objects = render_both_ways(&repo).unwrap();
    assert_eq!(objects[0]["data"]["image"], "nginx");
}

#[test]
fn a_symlink_loop_is_the_same_error_from_a_checkout_and_from_git() {
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- loop.yaml\n",
    )]);
    symlink("loop2.yaml", &repo.path().join("apps/web/base/loop.yaml"));
    symlink("loop.yaml", &repo.path().join("apps/web/base/loop2.yaml"));
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "apps/web/base/loop.yaml: too many levels of symbolic links (more than 40); break the symlink loop or shorten the chain"
    );
}

#[test]
fn a_directory_symlink_back_to_its_root_is_a_cycle_not_a_hang() {
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- self\n",
    )]);
    symlink(".", &repo.path().join("apps/web/base/self"));
    symlink("..", &repo.path().join("apps/web/base/up"));
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "cycle in kustomizations: apps/web/base -> apps/web/base/self"
    );
}

#[test]
fn a_dangling_symlink_is_missing_both_ways() {
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- gone.yaml\n",
    )]);
    symlink(
        "nothing-here.yaml",
        &repo.path().join("apps/web/base/gone.yaml"),
    );
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "apps/web/base/kustomization.yaml: resource 'gone.yaml' does not exist (looked for apps/web/base/gone.yaml)"
    );
}

#[test]
fn a_symlink_leaving_the_repository_is_refused_both_ways() {
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- passwd.yaml\n",
    )]);
    symlink(
        "../../../../../../../../etc/passwd",
        &repo.path().join("apps/web/base/passwd.yaml"),
    );
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "apps/web/base/passwd.yaml: symlink points outside the repository; replace it with the file itself"
    );
}

fn two_apps(extra: &[(&str, &str)]) -> ScratchRepo {
    let mut files = vec![
        (
            "apps/db/app.yaml",
            "namespace: db\ntargets:\n  stages: [prod]\n",
        ),
        (
            "apps/db/base/kustomization.yaml",
            "resources:\n- secret.yaml\n",
        ),
        (
            "apps/db/base/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-password\nstringData:\n  password: hunter2\n",
        ),
    ];
    files.extend_from_slice(extra);
    ScratchRepo::minimal_with(&files)
}

#[test]
fn a_resource_symlinked_into_another_app_is_refused() {
    let repo = two_apps(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- secret.yaml\n",
    )]);
    symlink(
        "../../db/base/secret.yaml",
        &repo.path().join("apps/web/base/secret.yaml"),
    );
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "apps/web/base/secret.yaml: symlink leaves the app: it resolves to apps/db/base/secret.yaml, outside apps/web; copy the file into apps/web instead"
    );
}

#[test]
fn an_overlay_path_through_a_symlink_into_another_app_is_refused() {
    let repo = two_apps(&[(
        "apps/web/app.yaml",
        "namespace: web\ntargets:\n  stages: [test, prod]\noverlays:\n  - {stage: prod, path: overlays/db}\n",
    )]);
    symlink("../../db/base", &repo.path().join("apps/web/overlays/db"));
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "apps/web/overlays/db: symlink leaves the app: it resolves to apps/db/base, outside apps/web; copy the file into apps/web instead"
    );
}

#[test]
fn a_file_symlinked_out_of_its_kustomization_root_is_refused_as_by_kustomize() {
    // kustomize: "security; file '.../overlays/prod/cm.yaml' is not in or below
    // '.../overlays/prod'"; a directory link to a base stays allowed (tested above).
    let repo = ScratchRepo::minimal_with(&[
        (
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [test, prod]\noverlays:\n  - {stage: prod, path: overlays/prod}\n",
        ),
        (
            "apps/web/overlays/prod/kustomization.yaml",
            "resources:\n- ../../base\n- cm.yaml\n",
        ),
        ("apps/web/extra/cm.yaml", CM),
    ]);
    symlink(
        "../../extra/cm.yaml",
        &repo.path().join("apps/web/overlays/prod/cm.yaml"),
    );
    let e = render_both_ways(&repo).unwrap_err();
    assert_eq!(
        e,
        "apps/web/overlays/prod: file 'cm.yaml' is a symlink to apps/web/extra/cm.yaml, outside this kustomization's directory (kustomize refuses it too); move the file in, or make its directory a kustomization and list that directory instead"
    );
    // A plain `..` file path is refused by the same restrictor.
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- ../extra.yaml\n",
    )]);
    repo.write("apps/web/extra.yaml", CM);
    assert_eq!(
        render_both_ways(&repo).unwrap_err(),
        "apps/web/base: file '../extra.yaml' is outside this kustomization's directory; move it in, or make its directory a kustomization and list that directory instead"
    );
}

/// A chain of `n` kustomization roots, each listing the next as `d` (not `n`, which a
/// YAML 1.1 reader such as kustomize's takes for `false`).
fn nested_chain(tree: &mut MemTree, base: &str, n: usize) -> String {
    let mut dir = base.to_string();
    for i in 0..n {
        let inner = if i + 1 < n { "- d\n" } else { "" };
        tree.insert(
            &format!("{dir}/kustomization.yaml"),
            format!("resources:\n- cm.yaml\n{inner}"),
        );
        tree.insert(
            &format!("{dir}/cm.yaml"),
            CM.replace("name: cm", &format!("name: cm-{i}")),
        );
        dir.push_str("/d");
    }
    dir
}

#[test]
fn kustomization_roots_nested_past_the_limit_are_refused_quickly() {
    let limit = kustomize::MAX_KUSTOMIZATION_DEPTH;
    let mut tree = MemTree::new();
    nested_chain(&mut tree, "ok", limit);
    let built = kustomize::build(&tree, &RepoPath::new("ok").unwrap()).unwrap();
    assert_eq!(built.len(), limit);

    let mut tree = MemTree::new();
    nested_chain(&mut tree, "deep", 1_500);
    let started = Instant::now();
    let e = kustomize::build(&tree, &RepoPath::new("deep").unwrap()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let refused = format!("deep{}", "/d".repeat(limit));
    assert_eq!(
        e.to_string(),
        format!(
            "{refused}: kustomization roots nest more than 100 deep (the limit for one build), counting from deep; flatten the chain of bases"
        )
    );
}

#[test]
fn ten_thousand_files_in_one_base_are_refused_quickly() {
    let mut tree = MemTree::new();
    let mut k = String::from("resources:\n");
    for i in 0..10_000 {
        k.push_str(&format!("- cm-{i}.yaml\n"));
        tree.insert(
            &format!("big/cm-{i}.yaml"),
            CM.replace("name: cm", &format!("name: cm-{i}")),
        );
    }
    tree.insert("big/kustomization.yaml", k);
    let started = Instant::now();
    let e = kustomize::build(&tree, &RepoPath::new("big").unwrap()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        e.to_string(),
        "big: the build reads more than 5000 files, the limit for one build; merge small files into multi-document files or split the app"
    );
}

#[test]
fn a_commit_with_1500_nested_roots_is_refused_quickly_from_a_checkout_and_from_git() {
    let repo = ScratchRepo::minimal_with(&[]);
    let mut dir = "apps/web/base".to_string();
    for i in 0..1_500 {
        let inner = if i + 1 < 1_500 { "- d\n" } else { "" };
        let first = if i == 0 { "- deployment.yaml\n" } else { "" };
        repo.write(
            &format!("{dir}/kustomization.yaml"),
            format!("resources:\n{first}- cm.yaml\n{inner}"),
        );
        repo.write(
            &format!("{dir}/cm.yaml"),
            CM.replace("name: cm", &format!("name: cm-{i}")),
        );
        dir.push_str("/d");
    }
    let path = repo.path_buf();
    let e = within(Duration::from_secs(60), move || {
        let started = Instant::now();
        let from_dir = render_with(&DirTree::open(&path).unwrap());
        let dir_time = started.elapsed();
        let git = commit_all(&path);
        let started = Instant::now();
        let from_git = render_with(&git);
        let git_time = started.elapsed();
        eprintln!("refused from the checkout in {dir_time:?}, from Git in {git_time:?}");
        assert!(dir_time < Duration::from_secs(10), "{dir_time:?}");
        assert!(git_time < Duration::from_secs(10), "{git_time:?}");
        assert_eq!(from_dir, from_git);
        from_dir.unwrap_err()
    });
    let refused = format!(
        "apps/web/base{}",
        "/d".repeat(kustomize::MAX_KUSTOMIZATION_DEPTH)
    );
    assert_eq!(
        e,
        format!(
            "{refused}: kustomization roots nest more than 100 deep (the limit for one build), counting from apps/web/base; flatten the chain of bases"
        )
    );
}

#[test]
fn a_commit_with_10000_files_in_one_base_is_refused_quickly_from_git() {
    let repo = ScratchRepo::minimal_with(&[]);
    let mut k = String::from("resources:\n- deployment.yaml\n");
    for i in 0..10_000 {
        k.push_str(&format!("- cm-{i}.yaml\n"));
        repo.write(
            &format!("apps/web/base/cm-{i}.yaml"),
            CM.replace("name: cm", &format!("name: cm-{i}")),
        );
    }
    repo.write("apps/web/base/kustomization.yaml", k);
    let path = repo.path_buf();
    let e = within(Duration::from_secs(120), move || {
        let git = commit_all(&path);
        let started = Instant::now();
        let e = render_with(&git).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        e
    });
    assert_eq!(
        e,
        "apps/web/base: the build reads more than 5000 files, the limit for one build; merge small files into multi-document files or split the app"
    );
}

#[test]
fn a_build_reading_more_than_64_mib_is_refused() {
    let mut tree = MemTree::new();
    let big = "x".repeat(7 * 1024 * 1024 + 512 * 1024);
    let mut k = String::from("configMapGenerator:\n- name: blobs\n  files:\n");
    for i in 0..9 {
        k.push_str(&format!("  - b{i}.txt\n"));
        tree.insert(&format!("fat/b{i}.txt"), big.clone());
    }
    tree.insert("fat/kustomization.yaml", k);
    let e = kustomize::build(&tree, &RepoPath::new("fat").unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "fat: the build reads more than 67108864 bytes (64 MiB), the limit for one build; split the app"
    );
}

/// Which kustomization files kustomize v5.5 refuses as empty ("kustomization.yaml is
/// empty"), as recorded from `kubectl kustomize`; checked against kubectl again when it
/// is installed.
const EMPTY_CASES: &[(&str, bool)] = &[
    ("", true),
    ("\n   \n\n", true),
    ("# only a comment\n\n", true),
    ("{}\n", true),
    ("null\n", true),
    ("---\n", true),
    ("kind: Kustomization\n", true),
    (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
        true,
    ),
    ("metadata:\n", true),
    ("commonLabels:\n", true),
    ("namespace: \"\"\n", true),
    ("namePrefix: \"\"\n", true),
    ("bases: []\n", true),
    ("resources:\n", true),
    ("resources: []\n", false),
    ("metadata: {}\n", false),
    ("metadata:\n  name: x\n", false),
    ("commonLabels: {}\n", false),
    ("namespace: web\n", false),
];

#[test]
fn an_empty_kustomization_is_refused_exactly_as_kustomize_refuses_it() {
    let kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    for (text, empty) in EMPTY_CASES {
        let mut tree = MemTree::new();
        tree.insert("k/kustomization.yaml", *text);
        let got = kustomize::build(&tree, &RepoPath::new("k").unwrap());
        if *empty {
            assert_eq!(
                got.unwrap_err().to_string(),
                "k/kustomization.yaml: kustomization is empty; list the app's resources in it (to remove an app, drop it from its targets or delete its directory)",
                "{text:?}"
            );
        } else {
            assert_eq!(got.unwrap(), Vec::<Value>::new(), "{text:?}");
        }
        if kubectl {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
            let out = std::process::Command::new("kubectl")
                .arg("kustomize")
                .arg(dir.path())
                .output()
                .unwrap();
            let refused =
                String::from_utf8_lossy(&out.stderr).contains("kustomization.yaml is empty");
            assert_eq!(refused, *empty, "kustomize disagrees on {text:?}");
        }
    }
}

#[test]
fn an_emptied_kustomization_fails_the_render_instead_of_pruning_the_app() {
    let repo = ScratchRepo::minimal_with(&[("apps/web/base/kustomization.yaml", "# emptied\n")]);
    assert_eq!(
        render_both_ways(&repo).unwrap_err(),
        "apps/web/base/kustomization.yaml: kustomization is empty; list the app's resources in it (to remove an app, drop it from its targets or delete its directory)"
    );
}

mod symlink_property {
    //! Random small trees of files, directories and symlinks (loops, escapes, dangling
    //! links included) are written to disk and committed; every path must read the same
    //! from the working tree and from Git, and rendering must give the same result.

    use super::*;
    use proptest::prelude::*;

    const NAMES: &[&str] = &["a", "b", "x.yaml", "kustomization.yaml"];
    const TARGETS: &[&str] = &[
        ".",
        "..",
        "../..",
        "a",
        "b",
        "x.yaml",
        "a/x.yaml",
        "../a",
        "../x.yaml",
        "a/../b",
        "missing",
        "x.yaml/",
        "../../base",
        "../../other/base/x.yaml",
        "../../../apps/other/base",
        "../../../../fleet.yaml",
        "../../../../..",
        "/etc/passwd",
    ];
    const KUSTOMIZATIONS: &[&str] = &[
        "resources:\n- x.yaml\n",
        "resources:\n- a\n",
        "resources:\n- b\n- x.yaml\n",
        "resources:\n- ../x.yaml\n",
        "resources:\n- a/x.yaml\n",
        "",
    ];

    #[derive(Debug, Clone)]
    enum Node {
        Dir,
        File(usize),
        Link(usize),
    }

    fn entry() -> impl Strategy<Value = (Vec<usize>, Node)> {
        (
            proptest::collection::vec(0..NAMES.len(), 1..4),
            prop_oneof![
                2 => Just(Node::Dir),
                2 => (0..KUSTOMIZATIONS.len()).prop_map(Node::File),
                3 => (0..TARGETS.len()).prop_map(Node::Link),
            ],
        )
    }

    /// Writes the entries under apps/web/base, skipping those whose parent is not a real
    /// directory or whose path is taken. Every directory gets a file, since Git stores
    /// no empty directory.
    fn write_tree(root: &Path, entries: &[(Vec<usize>, Node)]) {
        let base = root.join("apps/web/base");
        for (i, (parts, node)) in entries.iter().enumerate() {
            let rel: Vec<&str> = parts.iter().map(|p| NAMES[*p]).collect();
            let path = base.join(rel.join("/"));
            let parent_ok =
                std::fs::symlink_metadata(path.parent().unwrap()).is_ok_and(|m| m.is_dir());
            if !parent_ok || std::fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            let name = *rel.last().unwrap();
            match node {
                Node::Dir => {
                    std::fs::create_dir(&path).unwrap();
                    std::fs::write(path.join("keep"), "").unwrap();
                }
                Node::File(k) if name == "kustomization.yaml" => {
                    std::fs::write(&path, KUSTOMIZATIONS[*k]).unwrap();
                }
                Node::File(_) => {
                    std::fs::write(&path, CM.replace("name: cm", &format!("name: cm-{i}")))
                        .unwrap();
                }
                Node::Link(t) => std::os::unix::fs::symlink(TARGETS[*t], &path).unwrap(),
            }
        }
    }

    /// Every path of up to three names below apps/web/base, and the base itself.
    fn probes() -> Vec<String> {
        let mut out = vec!["apps/web/base".to_string()];
        let mut level = vec!["apps/web/base".to_string()];
        for _ in 0..3 {
            let next: Vec<String> = level
                .iter()
                .flat_map(|p| NAMES.iter().map(move |n| format!("{p}/{n}")))
                .collect();
            out.extend(next.iter().cloned());
            level = next;
        }
        out
    }

    fn observe(tree: &dyn FileTree, p: &RepoPath) -> String {
        let s = |r: Result<String, rollwave::tree::TreeError>| match r {
            Ok(v) => v,
            Err(e) => format!("error: {e}"),
        };
        format!(
            "kind {} | list {} | read {} | real {}",
            s(tree.kind(p).map(|k| format!("{k:?}"))),
            s(tree.list(p).map(|l| l.join(","))),
            s(tree
                .read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())),
            s(tree.real_path(p).map(|r| format!("{r:?}"))),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn a_checkout_and_its_commit_read_and_render_identically(
            entries in proptest::collection::vec(entry(), 0..14),
            top in proptest::collection::vec(0..NAMES.len(), 0..4),
        ) {
            let mut resources = String::from("resources:\n");
            for t in &top {
                resources.push_str(&format!("- {}\n", NAMES[*t]));
            }
            let repo = ScratchRepo::minimal_with(&[
                ("apps/web/base/kustomization.yaml", resources.as_str()),
                ("apps/other/app.yaml", "targets:\n  stages: [prod]\n"),
                ("apps/other/base/kustomization.yaml", "resources:\n- x.yaml\n"),
                ("apps/other/base/x.yaml", CM),
            ]);
            repo.remove("apps/web/base/deployment.yaml");
            write_tree(repo.path(), &entries);
            let dir = DirTree::open(repo.path()).unwrap();
            let git = commit_all(repo.path());
            for p in probes() {
                let p = RepoPath::new(&p).unwrap();
                let expected = observe(&dir, &p);
                prop_assert_eq!(&expected, &observe(&git, &p), "at {}", p);
                // Both trees keep resolved directories; a fresh tree resolves from the
                // root, and must agree with them.
                let fresh = DirTree::open(repo.path()).unwrap();
                prop_assert_eq!(&expected, &observe(&fresh, &p), "uncached, at {}", p);
            }
            prop_assert_eq!(render_with(&dir), render_with(&git));
        }
    }
}
