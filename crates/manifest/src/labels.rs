//! Kubernetes label-selector syntax, shared by kustomize patch targets and the simulated
//! API server's `labelSelector` query parameter.

use serde_json::{Map, Value};

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Why a label selector does not parse, naming the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorSyntaxError(pub String);

impl LabelSelector {
    /// Parses the selector syntax (`a=b,c!=d,e in (x,y),f notin (z),g,!h`); the empty
    /// string selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorSyntaxError> {
        parse_requirements(s)
            .map(LabelSelector)
            .map_err(SelectorSyntaxError)
    }

    /// Whether the selector has no requirement (selects everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a label (or annotation) map satisfies every requirement.
    pub fn matches(&self, map: &Map<String, Value>) -> bool {
        let reqs = &self.0;
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

    #[test]
    fn matches_set_based_requirements_against_labels() {
        let labels: Map<String, Value> =
            serde_json::from_str(r#"{"app":"web","tier":"front"}"#).unwrap();
        let yes = LabelSelector::parse("app in (web,api),tier,!canary").unwrap();
        let no = LabelSelector::parse("app notin (web)").unwrap();
        assert!(yes.matches(&labels));
        assert!(!no.matches(&labels));
        assert!(LabelSelector::parse("").unwrap().matches(&labels));
        assert!(LabelSelector::parse("a in x").is_err());
    }
}
