//! kustomize's `helmCharts` and `helmGlobals` fields: charts vendored under the
//! kustomization's chart home, inflated by `helm template` ([`crate::render::helm`])
//! into resources that the kustomization's transformers then see, as kustomize's
//! HelmChartInflationGenerator does (kustomize needs `--enable-helm`; rollwave always
//! renders charts, with the `helm` binary on PATH or named in the agent config).
//!
//! Pulling a chart from a repository (`repo:` with no vendored copy) is refused: rollwave
//! renders only what is in the fleet repository.

use serde::Deserialize;
use serde_json::Value;

use super::kustomization::null_as_default;
use super::{KustomizeError, Loader, Resource, resources_from_text};
use crate::render::deep_merge;
use crate::render::helm::{ChartRun, inflate};
use crate::tree::{EntryKind, RepoPath};

/// One entry of `helmCharts` (kustomize's `HelmChart`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmChartEntry {
    /// The chart's name: its directory under the chart home.
    pub name: String,
    /// The chart version (only for pulling; a vendored chart is used as it is).
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: Option<String>,
    /// Where the chart would be pulled from; refused unless the chart is vendored.
    #[serde(default, deserialize_with = "null_as_default")]
    pub repo: Option<String>,
    /// `.Release.Name`; kustomize's default is Helm's `release-name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub release_name: Option<String>,
    /// `.Release.Namespace`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: Option<String>,
    /// Helm's `--name-template`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name_template: Option<String>,
    /// More values files, after `valuesFile`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub additional_values_files: Vec<String>,
    /// The values file; default: the chart's own `values.yaml`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values_file: Option<String>,
    /// Values given inline, combined with `valuesFile` as `valuesMerge` says.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values_inline: Option<Value>,
    /// `override` (default: inline wins), `merge` (the file wins) or `replace` (inline
    /// only).
    #[serde(default, deserialize_with = "null_as_default")]
    pub values_merge: Option<String>,
    /// Render the chart's `crds/` too.
    #[serde(default, deserialize_with = "null_as_default", rename = "includeCRDs")]
    pub include_crds: bool,
    /// Leave out hooks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub skip_hooks: bool,
    /// Leave out test hooks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub skip_tests: bool,
    /// `.Capabilities.APIVersions` additions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_versions: Vec<String>,
    /// `.Capabilities.KubeVersion`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kube_version: Option<String>,
}

/// `helmGlobals`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmGlobals {
    /// Where charts are vendored, relative to the kustomization (default `charts`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub chart_home: Option<String>,
    /// Helm's config home; rollwave always uses a private, empty one.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config_home: Option<String>,
}

/// Inflates every chart of `charts` for the kustomization at `dir`.
pub(super) fn inflate_charts(
    loader: &Loader<'_>,
    dir: &RepoPath,
    file: &str,
    charts: &[HelmChartEntry],
    globals: Option<&HelmGlobals>,
) -> Result<Vec<Resource>, KustomizeError> {
    let home = globals
        .and_then(|g| g.chart_home.as_deref())
        .unwrap_or("charts");
    let mut out = Vec::new();
    for (i, chart) in charts.iter().enumerate() {
        let field = format!("{file}: helmCharts[{i}] '{}'", chart.name);
        let invalid = |message: String| KustomizeError::Kustomization {
            dir: dir.to_string(),
            message: format!("helmCharts[{i}] '{}': {message}", chart.name),
        };
        if chart.name.is_empty() {
            return Err(invalid("chart name cannot be empty".into()));
        }
        let chart_dir = dir.join(home)?.join(&chart.name)?;
        if loader.kind(&chart_dir)? != Some(EntryKind::Dir) {
            return Err(invalid(match &chart.repo {
                Some(repo) => format!(
                    "no chart at {chart_dir}, and pulling it from {repo} is refused: rollwave renders only what is in the fleet repository; vendor it with `helm pull {} --repo {repo}{} --untar --untardir {}`",
                    chart.name,
                    chart
                        .version
                        .as_deref()
                        .map(|v| format!(" --version {v}"))
                        .unwrap_or_default(),
                    dir.join(home)?
                ),
                None => format!("no repo specified for pull, no chart found at '{chart_dir}'"),
            }));
        }
        let merge = chart.values_merge.as_deref().unwrap_or("override");
        if !["override", "merge", "replace"].contains(&merge) {
            return Err(invalid(format!(
                "valuesMerge must be one of [merge override replace], not '{merge}'"
            )));
        }
        let values_path = match &chart.values_file {
            Some(f) => loader.file_in(dir, f)?,
            None => chart_dir.join("values.yaml")?,
        };
        let file_values = || -> Result<Value, KustomizeError> {
            if loader.kind(&values_path)?.is_none() {
                return Ok(Value::Object(Default::default()));
            }
            let text = loader.read_text(&values_path)?;
            let docs = crate::yaml::parse_documents(values_path.as_str(), &text)?;
            Ok(docs
                .into_iter()
                .next()
                .unwrap_or(Value::Object(Default::default())))
        };
        let inline = chart
            .values_inline
            .clone()
            .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
        // One values file, as kustomize writes it: the file's values combined with the
        // inline ones.
        let values = match (inline, merge) {
            (None, _) => file_values()?,
            (Some(inline), "replace") => inline,
            (Some(inline), "merge") => {
                let mut merged = inline;
                deep_merge(&mut merged, &file_values()?);
                merged
            }
            (Some(inline), _) => {
                let mut merged = file_values()?;
                deep_merge(&mut merged, &inline);
                merged
            }
        };
        let mut extra_values = Vec::new();
        for f in &chart.additional_values_files {
            let path = loader.file_in(dir, f)?;
            // Read through the loader so the build's limits count it.
            let text = loader.read_text(&path)?;
            extra_values.push(crate::yaml::parse_documents(path.as_str(), &text)?);
        }
        let mut run = ChartRun {
            chart_dir,
            release_name: chart
                .release_name
                .clone()
                .unwrap_or_else(|| "release-name".into()),
            name_template: chart.name_template.clone(),
            namespace: chart.namespace.clone(),
            values_files: Vec::new(),
            values: Some(values),
            include_crds: chart.include_crds,
            skip_hooks: chart.skip_hooks,
            skip_tests: chart.skip_tests,
            kube_version: chart.kube_version.clone(),
            api_versions: chart.api_versions.clone(),
        };
        // Additional files come after the main values, later ones winning.
        let mut combined = run.values.take().unwrap_or(Value::Null);
        for docs in extra_values {
            if let Some(doc) = docs.into_iter().next() {
                deep_merge(&mut combined, &doc);
            }
        }
        run.values = Some(combined);
        let text = inflate(loader.tree, &run, &field)?;
        out.extend(helm_output_resources(&field, &text)?);
    }
    Ok(out)
}

/// The objects `helm template` printed. Each document is parsed on its own, so a
/// large chart is bounded per manifest rather than as one file.
pub(super) fn helm_output_resources(
    origin: &str,
    text: &str,
) -> Result<Vec<Resource>, KustomizeError> {
    let mut out = Vec::new();
    let mut doc = String::new();
    let mut flush = |doc: &mut String| -> Result<(), KustomizeError> {
        if !doc.trim().is_empty() {
            out.extend(resources_from_text(origin, doc)?);
        }
        doc.clear();
        Ok(())
    };
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            flush(&mut doc)?;
        } else {
            doc.push_str(line);
        }
    }
    flush(&mut doc)?;
    Ok(out)
}
