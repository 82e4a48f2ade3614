//! Patch targets: anchored regular expressions on GVK, name and namespace, plus
//! Kubernetes label-selector syntax on labels and annotations.

use crate::labels::LabelSelector;
use regex::bytes::{Regex, RegexBuilder};

use super::kustomization::Selector;
use super::resource::Resource;

/// A compiled [`Selector`].
pub struct CompiledSelector {
    group: Option<Regex>,
    version: Option<Regex>,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: LabelSelector,
    annotations: LabelSelector,
}

fn anchored(field: &str, s: &Option<String>) -> Result<Option<Regex>, String> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        // Kubernetes names are ASCII; skipping Unicode tables keeps compilation cheap.
        Some(p) => RegexBuilder::new(&format!("^(?:{p})$"))
            .unicode(false)
            .build()
            .map(Some)
            .map_err(|e| format!("target.{field} '{p}' is not a valid regular expression: {e}")),
    }
}

/// Why a patch or replacement target's selector does not compile: a bad regular
/// expression or label selector, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl CompiledSelector {
    /// Compiles a selector, failing on bad regular expressions or selector syntax.
    pub fn new(s: &Selector) -> Result<Self, SelectorError> {
        Self::compile(s).map_err(SelectorError)
    }

    fn compile(s: &Selector) -> Result<Self, String> {
        Ok(CompiledSelector {
            group: anchored("group", &s.group)?,
            version: anchored("version", &s.version)?,
            kind: anchored("kind", &s.kind)?,
            name: anchored("name", &s.name)?,
            namespace: anchored("namespace", &s.namespace)?,
            labels: LabelSelector::parse(s.label_selector.as_deref().unwrap_or(""))
                .map_err(|e| format!("target.labelSelector: {e}"))?,
            annotations: LabelSelector::parse(s.annotation_selector.as_deref().unwrap_or(""))
                .map_err(|e| format!("target.annotationSelector: {e}"))?,
        })
    }

    /// Whether the selector picks `r` (by original or current name and namespace).
    pub fn matches(&self, r: &Resource) -> bool {
        let cur = r.cur_id();
        let org = r.org_id();
        let m = |re: &Option<Regex>, a: &str, b: &str| {
            re.as_ref()
                .is_none_or(|re| re.is_match(a.as_bytes()) || re.is_match(b.as_bytes()))
        };
        if !m(
            &self.namespace,
            org.effective_namespace(),
            cur.effective_namespace(),
        ) {
            return false;
        }
        if !m(&self.name, &org.name, &cur.name) {
            return false;
        }
        let gvk = r.gvk();
        let one =
            |re: &Option<Regex>, a: &str| re.as_ref().is_none_or(|re| re.is_match(a.as_bytes()));
        if !(one(&self.group, &gvk.group)
            && one(&self.version, &gvk.version)
            && one(&self.kind, &gvk.kind))
        {
            return false;
        }
        self.labels.matches(&r.meta_map("labels"))
            && self.annotations.matches(&r.meta_map("annotations"))
    }
}
