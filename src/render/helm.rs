//! Helm charts, inflated by the `helm` binary (`helm template`), as Argo CD, Flux and
//! kustomize's `helmCharts` do: rollwave does not reimplement Helm's template language.
//!
//! A chart is read from the repository tree like every other input (so a chart in a Git
//! commit renders the same as in a working tree, and its files count as read for
//! release detection), copied into a private temporary directory with the values, and
//! rendered there by `helm template` in a sandbox: an empty environment (no kubeconfig,
//! no proxy settings, Helm's config, cache and data homes in the temporary directory),
//! so Helm cannot reach a cluster (`lookup` returns nothing) and has no repositories to
//! pull from. A chart that needs anything from outside the repository fails with Helm's
//! own message. The run is bounded: 30 s, 64 MiB of output, the chart's size and file
//! count.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tree::{EntryKind, FileTree, RepoPath, TreeError};

/// How long one `helm template` may run.
const HELM_TIMEOUT: Duration = Duration::from_secs(30);
/// How much output one `helm template` may print.
const MAX_HELM_OUTPUT: usize = 64 << 20;
/// Files one chart may hold (subcharts included).
const MAX_CHART_FILES: usize = 5_000;
/// Bytes one chart may hold (subcharts included).
const MAX_CHART_BYTES: usize = 64 << 20;

static HELM_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Names the `helm` binary to run (the agent config's `helm`); without it, `helm` is
/// looked up on `PATH`. Set once, at startup; later calls are ignored.
pub fn set_helm_binary(path: PathBuf) {
    let _ = HELM_BINARY.set(path);
}

/// Why a chart could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelmError {
    /// No `helm` to run.
    #[error(
        "{origin}: rendering the Helm chart {chart} needs the `helm` binary (Helm 3), and {looked}; install Helm 3 or name it in the agent config (`helm: /path/to/helm`)"
    )]
    NoBinary {
        origin: String,
        chart: String,
        looked: String,
    },
    /// The chart directory is missing or is not a chart.
    #[error("{origin}: {message}")]
    Chart { origin: String, message: String },
    /// `helm template` failed; `stderr` is Helm's own message.
    #[error("{origin}: helm template of {chart} failed: {stderr}")]
    Failed {
        origin: String,
        chart: String,
        stderr: String,
    },
    /// A bound was exceeded (time, output, chart size).
    #[error("{origin}: helm template of {chart}: {message}")]
    Limit {
        origin: String,
        chart: String,
        message: String,
    },
    /// Reading the chart from the repository failed.
    #[error(transparent)]
    Read(#[from] TreeError),
    /// The temporary directory could not be written.
    #[error("{origin}: preparing the chart for helm: {message}")]
    Io { origin: String, message: String },
}

/// One inflation: what `helm template` is asked to render.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartRun {
    /// The chart's directory in the repository (holding `Chart.yaml`).
    pub chart_dir: RepoPath,
    /// The release name (`.Release.Name`).
    pub release_name: String,
    /// Helm's `--name-template`, which names the release instead of `release_name`.
    pub name_template: Option<String>,
    /// The release namespace (`.Release.Namespace`), when one is given.
    pub namespace: Option<String>,
    /// Values files in the repository, in order (later ones win).
    pub values_files: Vec<RepoPath>,
    /// Values given inline, applied after every file.
    pub values: Option<Value>,
    /// Render the chart's `crds/` too.
    pub include_crds: bool,
    /// Leave out objects annotated as hooks.
    pub skip_hooks: bool,
    /// Leave out test hooks (`helm.sh/hook: test`).
    pub skip_tests: bool,
    /// `.Capabilities.KubeVersion` (Helm's default when unset).
    pub kube_version: Option<String>,
    /// Extra `.Capabilities.APIVersions`.
    pub api_versions: Vec<String>,
}

/// Renders `run` with `helm template`; returns the manifests Helm printed (YAML, many
/// documents). `origin` names what asked (`apps/web/app.yaml`, a kustomization) for
/// errors.
pub fn inflate(tree: &dyn FileTree, run: &ChartRun, origin: &str) -> Result<String, HelmError> {
    let chart = run.chart_dir.to_string();
    let io = |e: std::io::Error| HelmError::Io {
        origin: origin.to_string(),
        message: e.to_string(),
    };
    if tree.kind(&run.chart_dir.join("Chart.yaml")?)? != Some(EntryKind::File) {
        return Err(HelmError::Chart {
            origin: origin.to_string(),
            message: format!(
                "no Helm chart at {chart} (no Chart.yaml there); vendor the chart into the repository (`helm pull --untar`)"
            ),
        });
    }
    let helm = helm_binary(origin, &chart)?;
    let scratch = tempfile::Builder::new()
        .prefix("rollwave-helm-")
        .tempdir()
        .map_err(io)?;
    let chart_copy = scratch.path().join("chart");
    let mut budget = Budget::default();
    copy_tree(tree, &run.chart_dir, &chart_copy, &mut budget).map_err(|e| match e {
        CopyError::Tree(e) => HelmError::Read(e),
        CopyError::Io(e) => io(e),
        CopyError::Limit(message) => HelmError::Limit {
            origin: origin.to_string(),
            chart: chart.clone(),
            message,
        },
    })?;

    let mut args: Vec<String> = vec!["template".into()];
    match &run.name_template {
        Some(template) => args.extend(["--name-template".into(), template.clone()]),
        None => args.push(run.release_name.clone()),
    }
    args.push(chart_copy.to_string_lossy().into_owned());
    if let Some(ns) = &run.namespace {
        args.extend(["--namespace".into(), ns.clone()]);
    }
    for (i, file) in run.values_files.iter().enumerate() {
        let copy = scratch.path().join(format!("values-{i}.yaml"));
        std::fs::write(&copy, tree.read(file)?).map_err(io)?;
        args.extend(["--values".into(), copy.to_string_lossy().into_owned()]);
    }
    if let Some(values) = &run.values {
        // JSON is YAML: Helm reads it as a values file.
        let copy = scratch.path().join("values-inline.yaml");
        std::fs::write(&copy, values.to_string()).map_err(io)?;
        args.extend(["--values".into(), copy.to_string_lossy().into_owned()]);
    }
    if run.include_crds {
        args.push("--include-crds".into());
    }
    if run.skip_hooks {
        args.push("--no-hooks".into());
    }
    if run.skip_tests {
        args.push("--skip-tests".into());
    }
    if let Some(v) = &run.kube_version {
        args.extend(["--kube-version".into(), v.clone()]);
    }
    for v in &run.api_versions {
        args.extend(["--api-versions".into(), v.clone()]);
    }

    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).map_err(io)?;
    let mut cmd = Command::new(&helm);
    cmd.args(&args)
        .current_dir(scratch.path())
        .env_clear()
        .env("HOME", &home)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let out = run_bounded(cmd).map_err(|e| match e {
        RunError::Io(e) => HelmError::Io {
            origin: origin.to_string(),
            message: format!("running {}: {e}", helm.display()),
        },
        RunError::Limit(message) => HelmError::Limit {
            origin: origin.to_string(),
            chart: chart.clone(),
            message,
        },
    })?;
    if !out.success {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Helm names the copy's temporary path; say the repository's path instead.
        let stderr = stderr
            .replace(&*chart_copy.to_string_lossy(), &chart)
            .trim()
            .to_string();
        return Err(HelmError::Failed {
            origin: origin.to_string(),
            chart,
            stderr,
        });
    }
    String::from_utf8(out.stdout).map_err(|_| HelmError::Failed {
        origin: origin.to_string(),
        chart,
        stderr: "its output is not UTF-8".into(),
    })
}

/// The `helm` to run: the configured one, else the first `helm` on `PATH`.
/// The `helm` this process would run (the configured binary, else the first on PATH),
/// or `None`: for callers that can leave a Helm app out and say so (the demo) instead of
/// failing it.
pub fn installed_helm() -> Option<PathBuf> {
    helm_binary("", "").ok()
}

fn helm_binary(origin: &str, chart: &str) -> Result<PathBuf, HelmError> {
    let missing = |looked: String| HelmError::NoBinary {
        origin: origin.to_string(),
        chart: chart.to_string(),
        looked,
    };
    if let Some(path) = HELM_BINARY.get() {
        return if path.is_file() {
            Ok(path.clone())
        } else {
            Err(missing(format!(
                "the configured {} does not exist",
                path.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("helm"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| missing("none was found on PATH".into()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[derive(Default)]
struct Budget {
    files: usize,
    bytes: usize,
}

enum CopyError {
    Tree(TreeError),
    Io(std::io::Error),
    Limit(String),
}

impl From<TreeError> for CopyError {
    fn from(e: TreeError) -> Self {
        CopyError::Tree(e)
    }
}

impl From<std::io::Error> for CopyError {
    fn from(e: std::io::Error) -> Self {
        CopyError::Io(e)
    }
}

/// Copies the directory `from` of the tree to `to` on disk, within the chart bounds.
fn copy_tree(
    tree: &dyn FileTree,
    from: &RepoPath,
    to: &Path,
    budget: &mut Budget,
) -> Result<(), CopyError> {
    std::fs::create_dir_all(to)?;
    for name in tree.list(from)? {
        let path = from.join(&name)?;
        match tree.kind(&path)? {
            Some(EntryKind::Dir) => copy_tree(tree, &path, &to.join(&name), budget)?,
            Some(EntryKind::File) => {
                budget.files += 1;
                if budget.files > MAX_CHART_FILES {
                    return Err(CopyError::Limit(format!(
                        "the chart holds more than {MAX_CHART_FILES} files"
                    )));
                }
                let bytes = tree.read(&path)?;
                budget.bytes += bytes.len();
                if budget.bytes > MAX_CHART_BYTES {
                    return Err(CopyError::Limit(format!(
                        "the chart holds more than {} MiB",
                        MAX_CHART_BYTES >> 20
                    )));
                }
                std::fs::write(to.join(&name), bytes)?;
            }
            None => {}
        }
    }
    Ok(())
}

struct Finished {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Io(std::io::Error),
    Limit(String),
}

/// Runs `cmd` for at most [`HELM_TIMEOUT`], keeping at most [`MAX_HELM_OUTPUT`] of
/// its output; a process over either bound is killed.
fn run_bounded(mut cmd: Command) -> Result<Finished, RunError> {
    let mut child = cmd.spawn().map_err(RunError::Io)?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read_capped = |mut r: Box<dyn Read + Send>, cap: usize| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            let mut over = false;
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if buf.len() + n <= cap => buf.extend_from_slice(&chunk[..n]),
                    Ok(_) => over = true,
                }
            }
            (buf, over)
        })
    };
    let out = read_capped(Box::new(stdout), MAX_HELM_OUTPUT);
    let err = read_capped(Box::new(stderr), 64 * 1024);
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(RunError::Io)? {
            Some(status) => break status,
            None if started.elapsed() > HELM_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Limit(format!(
                    "did not finish within {} s",
                    HELM_TIMEOUT.as_secs()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let (stdout, over) = out.join().unwrap_or_default();
    let (stderr, _) = err.join().unwrap_or_default();
    if over {
        return Err(RunError::Limit(format!(
            "printed more than {} MiB",
            MAX_HELM_OUTPUT >> 20
        )));
    }
    Ok(Finished {
        success: status.success(),
        stdout,
        stderr,
    })
}
