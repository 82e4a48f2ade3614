//! Render throughput against real kustomize, measured in the same run.
//!
//! `cargo bench --bench render` prints a table; docs/performance.md
//! quotes it. Three measurements:
//! 1. `rollwave build` vs `kubectl kustomize` as whole processes on a small 3-level
//!    overlay (median wall time of several runs, peak RSS from wait4);
//! 2. both on a generated overlay of 4,000 objects (namespace, namePrefix,
//!    commonLabels, images and a JSON patch on every Deployment), checking that the
//!    outputs are identical;
//! 3. in-process rendering of every app x cluster of a generated 1,000-cluster x
//!    20-app fleet on all cores.
//!
//! 4. a `replacements`-heavy overlay (500 Deployments taking their image tag, a label
//!    and an env value from one ConfigMap, with select/reject and delimiter options),
//!    against kustomize, checking the outputs are identical;
//! 5. a kustomization inflating a Helm chart (`helmCharts`: the test chart `greeter`
//!    with a subchart, under a namePrefix and labels), `rollwave build` against
//!    `kubectl kustomize --enable-helm`, with `helm template` of the same chart timed
//!    alone so Helm's own share is reported apart from rollwave's (the `helm` of
//!    `tests/helm/build`, built from its pinned module on first use).
//!
//! Set `ROLLWAVE_BENCH_SKIP_KUSTOMIZE_LARGE=1` to skip kustomize on the large overlay
//! (it takes minutes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rollwave::fleet;
use rollwave::render;
use rollwave::tree::{FileTree, MemTree};

struct Run {
    wall: Duration,
    max_rss_kib: i64,
    stdout: Vec<u8>,
}

/// Runs a command to completion and reads its own peak RSS with wait4 (which also
/// reaps the child, hence the lint exception).
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout {
        use std::io::Read;
        out.read_to_end(&mut stdout).expect("read stdout");
    }
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let wall = start.elapsed();
    assert!(
        std::process::ExitStatus::from_raw(status).success(),
        "{cmd:?} failed"
    );
    Run {
        wall,
        max_rss_kib: usage.ru_maxrss,
        stdout,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn small_overlay(root: &Path) -> PathBuf {
    write(
        root,
        "base/kustomization.yaml",
        "resources: [app.yaml]\nconfigMapGenerator:\n- name: conf\n  literals: [A=1, B=2]\ncommonLabels: {app: web}\n",
    );
    write(
        root,
        "base/app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n        envFrom: [{configMapRef: {name: conf}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    );
    write(
        root,
        "mid/kustomization.yaml",
        "resources: [../base]\nnamespace: shop\nnamePrefix: mid-\nimages: [{name: nginx, newTag: '1.27'}]\n",
    );
    write(
        root,
        "top/kustomization.yaml",
        "resources: [../mid]\nnameSuffix: -prod\ncommonAnnotations: {owner: team}\npatches:\n- target: {kind: Deployment}\n  patch: |-\n    - op: add\n      path: /spec/replicas\n      value: 3\n",
    );
    root.join("top")
}

/// 500 Deployments whose image tag, a label and an env value come from one ConfigMap
/// through `replacements` (three replacements, each selecting every Deployment by
/// kind with a labelSelector and a reject, one with a delimiter/index option).
fn replacements_overlay(root: &Path) -> PathBuf {
    let mut base = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: release}\ndata: {tag: '3.2.1', tier: gold, region: eu-west}\n",
    );
    for i in 0..500 {
        let name = format!("svc{i:03}");
        base.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, labels: {{team: shop, tier: none}}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: app\n        image: example/app:1.0\n        env: [{{name: REGION, value: unset}}]\n"
        ));
    }
    base.push_str("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pinned, labels: {team: shop, tier: none}}\nspec:\n  selector: {matchLabels: {app: pinned}}\n  template:\n    metadata: {labels: {app: pinned}}\n    spec:\n      containers:\n      - name: app\n        image: example/app:0.9\n        env: [{name: REGION, value: unset}]\n");
    write(root, "base/all.yaml", &base);
    write(
        root,
        "base/kustomization.yaml",
        "resources: [all.yaml]\nreplacements:\n- source: {kind: ConfigMap, name: release, fieldPath: data.tag}\n  targets:\n  - select: {kind: Deployment, labelSelector: team=shop}\n    reject: [{name: pinned}]\n    fieldPaths:\n    - spec.template.spec.containers.[name=app].image\n    options: {delimiter: ':', index: 1}\n- source: {kind: ConfigMap, name: release, fieldPath: data.tier}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - metadata.labels.tier\n- source: {kind: ConfigMap, name: release, fieldPath: data.region}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.template.spec.containers.[name=app].env.[name=REGION].value\n",
    );
    write(
        root,
        "overlay/kustomization.yaml",
        "resources: [../base]\nnamespace: shop\nnamePrefix: prod-\n",
    );
    root.join("overlay")
}

fn large_overlay(root: &Path) -> PathBuf {
    let mut resources = String::from("resources:\n");
    for i in 0..1000 {
        let name = format!("svc{i:04}");
        resources.push_str(&format!("- {name}.yaml\n"));
        write(
            root,
            &format!("base/{name}.yaml"),
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      serviceAccountName: {name}\n      containers:\n      - name: app\n        image: example/app:1.0\n        envFrom: [{{configMapRef: {{name: {name}}}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{LEVEL: info}}\n"
            ),
        );
    }
    write(root, "base/kustomization.yaml", &resources);
    write(
        root,
        "overlay/kustomization.yaml",
        "resources: [../base]\nnamespace: big\nnamePrefix: prod-\ncommonLabels: {env: prod}\nimages: [{name: example/app, newTag: '2.0'}]\npatches:\n- target: {kind: Deployment}\n  patch: |-\n    - op: add\n      path: /spec/replicas\n      value: 2\n",
    );
    root.join("overlay")
}

fn rollwave_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/render-xxxx -> target/release/rollwave
    let bin = exe.parent().unwrap().parent().unwrap().join("rollwave");
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release"
    );
    bin
}

fn bench_processes(name: &str, dir: &Path, runs: usize, with_kustomize: bool) {
    let bin = rollwave_bin();
    let mut ours = Vec::new();
    let mut our_rss = 0;
    let mut our_out = Vec::new();
    for _ in 0..runs {
        let r = run_measured(Command::new(&bin).arg("build").arg(dir));
        ours.push(r.wall);
        our_rss = our_rss.max(r.max_rss_kib);
        our_out = r.stdout;
    }
    let ours_med = median(ours);
    if !with_kustomize {
        println!(
            "{name:<28} rollwave {:>9.1} ms {:>7.1} MiB   kustomize skipped",
            ours_med.as_secs_f64() * 1e3,
            our_rss as f64 / 1024.0
        );
        return;
    }
    let kruns = if runs > 3 { runs } else { 1 };
    let mut theirs = Vec::new();
    let mut their_rss = 0;
    let mut their_out = Vec::new();
    for _ in 0..kruns {
        let r = run_measured(Command::new("kubectl").arg("kustomize").arg(dir));
        theirs.push(r.wall);
        their_rss = their_rss.max(r.max_rss_kib);
        their_out = r.stdout;
    }
    let theirs_med = median(theirs);
    let same = rollwave::yaml::parse_documents("a", &String::from_utf8_lossy(&our_out)).unwrap()
        == rollwave::yaml::parse_documents("b", &String::from_utf8_lossy(&their_out)).unwrap();
    println!(
        "{name:<28} rollwave {:>9.1} ms {:>7.1} MiB | kustomize {:>9.1} ms {:>7.1} MiB | {:>6.1}x faster | output identical: {same}",
        ours_med.as_secs_f64() * 1e3,
        our_rss as f64 / 1024.0,
        theirs_med.as_secs_f64() * 1e3,
        their_rss as f64 / 1024.0,
        theirs_med.as_secs_f64() / ours_med.as_secs_f64(),
    );
}

/// The `helm` of `tests/helm/build` (built on first use).
fn helm_bin() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm/build");
    let out = Command::new(script).output().expect("run tests/helm/build");
    assert!(
        out.status.success(),
        "tests/helm/build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn bench_helm(root: &Path, runs: usize) {
    let helm = helm_bin();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm/charts/greeter");
    copy_dir(&chart, &root.join("charts/greeter"));
    write(
        root,
        "kustomization.yaml",
        "helmCharts:\n- name: greeter\n  releaseName: bench\n  includeCRDs: true\n  valuesInline: {replicaCount: 3}\nnamePrefix: team-\ncommonLabels: {team: blue}\n",
    );
    let path = format!(
        "{}:{}",
        helm.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let timed = |cmd: &mut Command| {
        let mut walls = Vec::new();
        let mut rss = 0;
        let mut out = Vec::new();
        for _ in 0..runs {
            let r = run_measured(cmd);
            walls.push(r.wall);
            rss = rss.max(r.max_rss_kib);
            out = r.stdout;
        }
        (median(walls), rss, out)
    };
    let (ours, our_rss, our_out) = timed(
        Command::new(rollwave_bin())
            .arg("build")
            .arg(root)
            .env("PATH", &path),
    );
    let (helm_alone, _, _) = timed(
        Command::new(&helm)
            .args(["template", "bench", "--include-crds"])
            .arg(root.join("charts/greeter")),
    );
    let (theirs, their_rss, their_out) = timed(
        Command::new("kubectl")
            .args(["kustomize", "--enable-helm", "--helm-command"])
            .arg(&helm)
            .arg(root),
    );
    let same = rollwave::yaml::parse_documents("a", &String::from_utf8_lossy(&our_out)).unwrap()
        == rollwave::yaml::parse_documents("b", &String::from_utf8_lossy(&their_out)).unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<28} rollwave {:>9.1} ms {:>7.1} MiB (helm template alone {:.1} ms, rollwave's own {:.1} ms) | kustomize {:>9.1} ms {:>7.1} MiB | output identical: {same}",
        "Helm chart via helmCharts",
        ms(ours),
        our_rss as f64 / 1024.0,
        ms(helm_alone),
        ms(ours.saturating_sub(helm_alone)),
        ms(theirs),
        their_rss as f64 / 1024.0,
    );
}

fn generated_fleet(clusters: usize, apps: usize) -> MemTree {
    let mut t = MemTree::new();
    t.insert("fleet.yaml", "stages: [test, pre, prod]\nrollout: {batches: [1, 2, 7]}\nvalues: {registry: reg.example.com}\n");
    let regions = ["bj", "sh", "gz", "sz"];
    for i in 0..clusters {
        let stage = if i < clusters / 50 {
            "test"
        } else if i < clusters / 10 {
            "pre"
        } else {
            "prod"
        };
        t.insert(
            &format!("clusters/c{i:04}.yaml"),
            format!(
                "name: c{i:04}\nstage: {stage}\nlabels: {{region: {}}}\nvalues: {{replicas: {}}}\n",
                regions[i % 4],
                1 + i % 3
            ),
        );
    }
    for a in 0..apps {
        let app = format!("app{a:02}");
        t.insert(&format!("apps/{app}/app.yaml"), format!("namespace: {app}\ntargets: {{stages: [test, pre, prod]}}\noverlays:\n- {{stage: prod, path: overlays/prod}}\n- {{selector: {{region: bj}}, path: overlays/bj}}\nvalues: {{tag: v{a}}}\n"));
        t.insert(&format!("apps/{app}/base/kustomization.yaml"), "resources: [deploy.yaml, svc.yaml]\nconfigMapGenerator:\n- name: conf\n  literals: [A=1]\n");
        t.insert(
            &format!("apps/{app}/base/deploy.yaml.hbs"),
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}}}\nspec:\n  replicas: {{{{values.replicas}}}}\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      containers:\n      - name: app\n        image: \"{{{{values.registry}}}}/{app}:{{{{values.tag}}}}\"\n        env: [{{name: CLUSTER, value: \"{{{{cluster.name}}}}\"}}]\n        envFrom: [{{configMapRef: {{name: conf}}}}]\n"),
        );
        t.insert(&format!("apps/{app}/base/svc.yaml"), format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {app}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{port: 80}}]\n"));
        t.insert(&format!("apps/{app}/overlays/prod/kustomization.yaml"), "resources: [../../base]\ncommonLabels: {env: prod}\npatches:\n- target: {kind: Deployment}\n  patch: |-\n    - op: add\n      path: /spec/template/spec/containers/0/resources\n      value: {requests: {cpu: 100m}}\n");
        t.insert(
            &format!("apps/{app}/overlays/bj/kustomization.yaml"),
            "resources: [../prod]\ncommonAnnotations: {region: bj}\n",
        );
    }
    t
}

fn bench_fleet(clusters: usize, apps: usize) {
    let tree = generated_fleet(clusters, apps);
    let fleet = fleet::load(&tree as &dyn FileTree).unwrap();
    let pairs: Vec<(usize, usize)> = (0..fleet.apps.len())
        .flat_map(|a| (0..fleet.clusters.len()).map(move |c| (a, c)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let start = Instant::now();
    let objects: usize = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(pairs.len().div_ceil(threads))
            .map(|chunk| {
                let (tree, fleet) = (&tree, &fleet);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(a, c)| {
                            render::render(tree, fleet, &fleet.apps[*a], &fleet.clusters[*c])
                                .unwrap()
                                .objects
                                .len()
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let wall = start.elapsed();
    println!(
        "fleet {clusters} clusters x {apps} apps: {} renderings, {objects} objects in {:.2} s on {threads} threads ({:.0} renderings/s)",
        pairs.len(),
        wall.as_secs_f64(),
        pairs.len() as f64 / wall.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let tmp = tempfile::tempdir().unwrap();
    let small = small_overlay(&tmp.path().join("small"));
    bench_processes("3-level overlay (3 objects)", &small, 31, true);
    let large = large_overlay(&tmp.path().join("large"));
    let skip = std::env::var_os("ROLLWAVE_BENCH_SKIP_KUSTOMIZE_LARGE").is_some();
    bench_processes("overlay of 4,000 objects", &large, 3, !skip);
    let replaced = replacements_overlay(&tmp.path().join("replacements"));
    bench_processes("replacements, 501 objects", &replaced, 5, true);
    bench_helm(&tmp.path().join("helm"), 11);
    bench_fleet(1000, 20);
}
