//! Growth of render time with the size of the input, read from the Git object store
//! as an agent reads it.
//!
//! `cargo bench --bench scaling` doubles the input four times for each case and prints
//! the time of one render and the growth factor per doubling (2.0 is linear; 4.0 would
//! be quadratic). docs/performance.md quotes it. The largest input of each case
//! is at the build limit ([`MAX_BUILD_FILES`], [`MAX_KUSTOMIZATION_DEPTH`]).
//! 1. files in one base: one kustomization listing n ConfigMap files;
//! 2. nested kustomization roots: n roots, each a directory inside the previous one,
//!    each with one ConfigMap.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{git, write};
use rollwave::fleet;
use rollwave::render;
use rollwave::render::kustomize::{MAX_BUILD_FILES, MAX_KUSTOMIZATION_DEPTH};
use rollwave::source::GitTree;

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// A one-app fleet whose `apps/web/base` is written by `base`, committed.
fn fleet_repo(root: &Path, base: impl FnOnce(&Path)) -> git2::Oid {
    write(root, "fleet.yaml", "stages: [prod]\n");
    write(root, "clusters/prod-1.yaml", "name: prod-1\nstage: prod\n");
    write(
        root,
        "apps/web/app.yaml",
        "namespace: web\ntargets:\n  stages: [prod]\n",
    );
    base(&root.join("apps/web/base"));
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "fleet"]);
    // Packed, as in an agent's mirror after a fetch.
    git(root, &["gc", "-q"]);
    git2::Oid::from_str(&git(root, &["rev-parse", "HEAD"])).unwrap()
}

/// n files: the kustomization and n - 1 ConfigMaps.
fn files_in_one_base(root: &Path, n: usize) -> (git2::Oid, usize) {
    let commit = fleet_repo(root, |base| {
        let mut k = String::from("resources:\n");
        for i in 0..n - 1 {
            k.push_str(&format!("- cm-{i}.yaml\n"));
            std::fs::create_dir_all(base).unwrap();
            std::fs::write(
                base.join(format!("cm-{i}.yaml")),
                config_map(&format!("cm-{i}")),
            )
            .unwrap();
        }
        std::fs::write(base.join("kustomization.yaml"), k).unwrap();
    });
    (commit, n - 1)
}

fn nested_roots(root: &Path, n: usize) -> (git2::Oid, usize) {
    let commit = fleet_repo(root, |base| {
        let mut dir = base.to_path_buf();
        for i in 0..n {
            let inner = if i + 1 < n { "- d\n" } else { "" };
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("kustomization.yaml"),
                format!("resources:\n- cm.yaml\n{inner}"),
            )
            .unwrap();
            std::fs::write(dir.join("cm.yaml"), config_map(&format!("cm-{i}"))).unwrap();
            dir = dir.join("d");
        }
    });
    (commit, n)
}

/// Median time of one render from a fresh GitTree (nothing cached, as for each new
/// commit an agent sees), over runs adding up to about a second.
fn time_render(root: &Path, commit: git2::Oid, expect: usize) -> Duration {
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || (started.elapsed() < Duration::from_secs(1) && times.len() < 50) {
        let t = Instant::now();
        let tree = GitTree::open(&root.join(".git"), commit).unwrap();
        let fleet = fleet::load(&tree).unwrap();
        let r = render::render(
            &tree,
            &fleet,
            fleet.app("web").unwrap(),
            fleet.cluster("prod-1").unwrap(),
        )
        .unwrap();
        times.push(t.elapsed());
        assert_eq!(r.objects.len(), expect);
    }
    times.sort();
    times[times.len() / 2]
}

fn case(name: &str, sizes: &[usize], make: fn(&Path, usize) -> (git2::Oid, usize)) {
    println!("{name}");
    println!("{:>8} {:>12} {:>8}", "n", "render", "growth");
    let mut previous: Option<Duration> = None;
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let (commit, objects) = make(dir.path(), n);
        let t = time_render(dir.path(), commit, objects);
        let growth = previous.map_or("-".to_string(), |p| {
            format!("x{:.2}", t.as_secs_f64() / p.as_secs_f64())
        });
        println!("{n:>8} {:>9.2} ms {growth:>8}", t.as_secs_f64() * 1000.0);
        previous = Some(t);
    }
}

fn main() {
    // `cargo bench --bench scaling -- nested` runs only the cases whose name contains
    // "nested".
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    // One file read per ConfigMap plus the kustomization: the largest case reads
    // exactly MAX_BUILD_FILES files.
    let top = MAX_BUILD_FILES;
    let files: Vec<usize> = (0..5).map(|i| top >> (4 - i)).collect();
    let name = "files in one base (GitTree)";
    if name.contains(&filter) {
        case(name, &files, files_in_one_base);
    }
    let top = MAX_KUSTOMIZATION_DEPTH;
    let roots: Vec<usize> = (0..5).map(|i| top >> (4 - i)).collect();
    let name = "nested kustomization roots (GitTree)";
    if name.contains(&filter) {
        case(name, &roots, nested_roots);
    }
}
