//! Patch targets: anchored regular expressions on GVK, name and namespace, plus
//! Kubernetes label-selector syntax on labels and annotations.

use regex::bytes::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::kustomization::Selector;
use super::resource::Resource;

/// A compiled [`Selector`].
pub struct CompiledSelector {
    group: Option<Regex>,
    version: Option<Regex>,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Vec<Requirement>,
    annotations: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
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

impl CompiledSelector {
    /// Compiles a selector, failing on bad regular expressions or selector syntax.
    pub fn new(s: &Selector) -> Result<Self, String> {
        Ok(CompiledSelector {
            group: anchored("group", &s.group)?,
            version: anchored("version", &s.version)?,
            kind: anchored("kind", &s.kind)?,
            name: anchored("name", &s.name)?,
            namespace: anchored("namespace", &s.namespace)?,
            labels: parse_requirements(s.label_selector.as_deref().unwrap_or(""))
                .map_err(|e| format!("target.labelSelector: {e}"))?,
            annotations: parse_requirements(s.annotation_selector.as_deref().unwrap_or(""))
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
        requirements_hold(&self.labels, &r.meta_map("labels"))
            && requirements_hold(&self.annotations, &r.meta_map("annotations"))
    }
}

fn requirements_hold(reqs: &[Requirement], map: &Map<String, Value>) -> bool {
    let get = |k: &str| map.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        Requirement::Exists(k) => map.contains_key(k),
        Requirement::NotExists(k) => !map.contains_key(k),
    })
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("expected '(values)' in '{s}'"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_requirements(s: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for part in split_top(s) {
        let p = part.trim();
        if p.is_empty() {
            return Err(format!("empty requirement in '{s}'"));
        }
        if let Some(k) = p.strip_prefix('!') {
            out.push(Requirement::NotExists(k.trim().to_string()));
        } else if let Some((k, v)) = p.split_once("!=") {
            out.push(Requirement::NotEquals(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once("==") {
            out.push(Requirement::Equals(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once('=') {
            out.push(Requirement::Equals(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once(" notin ") {
            out.push(Requirement::NotIn(k.trim().into(), parse_set(v)?));
        } else if let Some((k, v)) = p.split_once(" in ") {
            out.push(Requirement::In(k.trim().into(), parse_set(v)?));
        } else if p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            out.push(Requirement::Exists(p.to_string()));
        } else {
            return Err(format!("cannot parse requirement '{p}'"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_label_selector_forms() {
        let r = parse_requirements("a=b, c!=d,e in (x, y),f notin (z),g,!h").unwrap();
        assert_eq!(r.len(), 6);
        assert_eq!(
            r[2],
            Requirement::In("e".into(), vec!["x".into(), "y".into()])
        );
        assert_eq!(r[5], Requirement::NotExists("h".into()));
    }
}
