//! `health:` in fleet.yaml (DESIGN §6.2): health rules for kinds rollwave has no rule
//! of its own for (a database operator's cluster, a Certificate), as CEL expressions
//! over the object, in the shape Flux uses:
//!
//! ```yaml
//! health:
//! - apiVersion: postgresql.cnpg.io/v1
//!   kind: Cluster
//!   current: "status.readyInstances == spec.instances"
//!   inProgress: "status.phase != 'Cluster in healthy state'"
//!   failed: "status.phase == 'Failed'"
//! ```
//!
//! Each expression is parsed when fleet.yaml is loaded, so `validate` names the line of
//! one that is not CEL; [`crate::apply::health`] evaluates them.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::FleetError;

/// Most `health` entries fleet.yaml may have.
pub const MAX_HEALTH_RULES: usize = 200;

/// Longest expression accepted: rules are one-line conditions, and a bound keeps a
/// hostile fleet.yaml from handing the parser megabytes.
const MAX_EXPRESSION_BYTES: usize = 2048;

/// Deepest nesting of parentheses, brackets and braces accepted in an expression (the
/// parser recurses once per level).
const MAX_EXPRESSION_DEPTH: usize = 32;

/// One `health` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthRuleFile {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    current: Spanned<String>,
    #[serde(default)]
    in_progress: Option<Spanned<String>>,
    #[serde(default)]
    failed: Option<Spanned<String>>,
}

/// A CEL expression of a health rule, checked to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    /// The expression as written.
    pub text: String,
    /// Where it was written and which field (`fleet.yaml:12 current`), for errors
    /// when it is evaluated.
    pub source: String,
}

/// The health rule of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRule {
    /// The objects' `apiVersion`, as written in them (`group/version`).
    pub api_version: String,
    /// Their kind.
    pub kind: String,
    /// True when the object is Healthy.
    pub current: Expression,
    /// True while it is still getting there (Progressing); checked first.
    pub in_progress: Option<Expression>,
    /// True when it failed (Degraded); checked before `current`.
    pub failed: Option<Expression>,
}

fn invalid(line: u64, message: String) -> FleetError {
    FleetError::Invalid {
        file: "fleet.yaml".into(),
        line: Some(line),
        message,
    }
}

/// Checks that `text` is a CEL expression of bounded size and nesting.
fn expression(field: &str, text: &Spanned<String>) -> Result<Expression, FleetError> {
    let line = text.referenced.line();
    let source = format!("fleet.yaml:{line} {field}");
    if text.value.trim().is_empty() {
        return Err(invalid(
            line,
            format!(
                "{field}: empty; write a CEL condition over the object, e.g. \"status.phase == 'Ready'\""
            ),
        ));
    }
    if text.value.len() > MAX_EXPRESSION_BYTES {
        return Err(invalid(
            line,
            format!(
                "{field}: {} bytes, over the limit of {MAX_EXPRESSION_BYTES}; a health rule is a short condition",
                text.value.len()
            ),
        ));
    }
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for c in text.value.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_EXPRESSION_DEPTH {
        return Err(invalid(
            line,
            format!("{field}: nested {deepest} deep, over the limit of {MAX_EXPRESSION_DEPTH}"),
        ));
    }
    cel::Program::compile(&text.value).map_err(|e| {
        invalid(
            line,
            format!(
                "{field}: not a CEL expression: {}",
                e.to_string().lines().next().unwrap_or("")
            ),
        )
    })?;
    Ok(Expression {
        text: text.value.clone(),
        source,
    })
}

/// Validates the `health` entries: every field present and CEL, at most one rule per
/// apiVersion and kind, at most [`MAX_HEALTH_RULES`].
pub fn validate(rules: Vec<HealthRuleFile>) -> Result<Vec<HealthRule>, FleetError> {
    let mut out: Vec<HealthRule> = Vec::new();
    for r in rules {
        let line = r.kind.referenced.line();
        if out.len() == MAX_HEALTH_RULES {
            return Err(invalid(
                line,
                format!("health: more than {MAX_HEALTH_RULES} rules"),
            ));
        }
        if r.api_version.value.trim().is_empty() || r.kind.value.trim().is_empty() {
            return Err(invalid(
                line,
                "health: apiVersion and kind name the objects a rule is for, e.g. apiVersion: cert-manager.io/v1, kind: Certificate".into(),
            ));
        }
        if out
            .iter()
            .any(|o| o.api_version == r.api_version.value && o.kind == r.kind.value)
        {
            return Err(invalid(
                line,
                format!(
                    "health: a second rule for {} {}; keep one per kind",
                    r.api_version.value, r.kind.value
                ),
            ));
        }
        out.push(HealthRule {
            current: expression("current", &r.current)?,
            in_progress: r
                .in_progress
                .as_ref()
                .map(|e| expression("inProgress", e))
                .transpose()?,
            failed: r
                .failed
                .as_ref()
                .map(|e| expression("failed", e))
                .transpose()?,
            api_version: r.api_version.value,
            kind: r.kind.value,
        });
    }
    Ok(out)
}
