//! Static checks of a template before it runs: handlebars renders recursively, so a
//! partial that calls itself (directly or through others) or a template nested
//! thousands of blocks deep would overflow the stack and take the whole process down,
//! canary or not. Both are refused with the file and line, before anything renders.

use std::collections::{BTreeMap, BTreeSet};

use handlebars::template::{Parameter, Template, TemplateElement};

/// Blocks (`{{#...}}`) and subexpressions (`(...)`) nested deeper than this are
/// refused before parsing: the parser and the renderer recurse once per level, and no
/// manifest template needs more than a handful.
pub const MAX_NESTING: usize = 64;

/// A problem found, with its 1-based line when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Line in the template.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Refuses templates whose blocks or subexpressions nest deeper than [`MAX_NESTING`].
/// It reads the source as text, since the parser itself is what must be protected.
pub fn check_nesting(source: &str) -> Result<(), Finding> {
    let mut blocks = 0usize;
    let mut parens = 0usize;
    let mut in_tag = false;
    let mut line = 1usize;
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line += 1;
        }
        if !in_tag {
            if bytes[i..].starts_with(b"{{") {
                in_tag = true;
                i += 2;
                while i < bytes.len() && (bytes[i] == b'{' || bytes[i] == b'~') {
                    i += 1;
                }
                match bytes.get(i) {
                    Some(b'#') => blocks += 1,
                    Some(b'/') => blocks = blocks.saturating_sub(1),
                    _ => {}
                }
                if blocks > MAX_NESTING {
                    return Err(too_deep(line, "blocks"));
                }
                continue;
            }
        } else if bytes[i..].starts_with(b"}}") {
            in_tag = false;
            parens = 0;
            i += 2;
            continue;
        } else if b == b'(' {
            parens += 1;
            if parens > MAX_NESTING {
                return Err(too_deep(line, "subexpressions"));
            }
        } else if b == b')' {
            parens = parens.saturating_sub(1);
        }
        i += 1;
    }
    Ok(())
}

fn too_deep(line: usize, what: &str) -> Finding {
    Finding {
        line: Some(line),
        message: format!(
            "template {what} nest more than {MAX_NESTING} levels deep; flatten the template"
        ),
    }
}

/// Partial calls: from each inline partial (and the template itself, as "") to the
/// partials it calls, with the line of the first call.
type CallGraph = BTreeMap<String, BTreeMap<String, Option<usize>>>;

/// Refuses partials that call themselves, directly or through others, and partials
/// named by an expression (which could not be checked).
pub fn check_partials(template: &Template) -> Result<(), Finding> {
    let mut graph = CallGraph::new();
    graph.insert(String::new(), BTreeMap::new());
    collect(template, "", &mut graph)?;
    let defined: BTreeSet<&String> = graph.keys().filter(|k| !k.is_empty()).collect();
    for start in &defined {
        let mut path = vec![(*start).clone()];
        if let Some((cycle, line)) = find_cycle(&graph, &mut path, &mut BTreeSet::new()) {
            return Err(Finding {
                line,
                message: format!(
                    "partial '{start}' calls itself ({}); recursive partials are not supported, unroll the recursion",
                    cycle.join(" -> ")
                ),
            });
        }
    }
    Ok(())
}

fn find_cycle(
    graph: &CallGraph,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<(Vec<String>, Option<usize>)> {
    let current = path.last()?.clone();
    for (callee, line) in graph.get(&current)? {
        if !graph.contains_key(callee) || done.contains(callee) {
            continue;
        }
        if path.first() == Some(callee) {
            let mut cycle = path.clone();
            cycle.push(callee.clone());
            return Some((cycle, *line));
        }
        if path.contains(callee) {
            continue;
        }
        path.push(callee.clone());
        if let Some(found) = find_cycle(graph, path, done) {
            return Some(found);
        }
        path.pop();
    }
    done.insert(current);
    None
}

fn static_name(p: &Parameter) -> Option<String> {
    match p {
        Parameter::Name(_) | Parameter::Path(_) => p.as_name().map(String::from),
        Parameter::Literal(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn collect(template: &Template, caller: &str, graph: &mut CallGraph) -> Result<(), Finding> {
    for (i, element) in template.elements.iter().enumerate() {
        let line = template.mapping.get(i).map(|m| m.0);
        match element {
            TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d)
                if d.name.as_name() == Some("inline") =>
            {
                let Some(name) = d.params.first().and_then(static_name) else {
                    continue;
                };
                graph.entry(name.clone()).or_default();
                if let Some(body) = &d.template {
                    collect(body, &name, graph)?;
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                let Some(name) = static_name(&d.name) else {
                    return Err(Finding {
                        line,
                        message:
                            "partial named by an expression; name partials literally (`{{> name}}`)"
                                .into(),
                    });
                };
                if name != "@partial-block" {
                    graph
                        .entry(caller.to_string())
                        .or_default()
                        .entry(name)
                        .or_insert(line);
                }
                if let Some(body) = &d.template {
                    collect(body, caller, graph)?;
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(body) = &d.template {
                    collect(body, caller, graph)?;
                }
            }
            TemplateElement::HelperBlock(h) => {
                for body in [&h.template, &h.inverse].into_iter().flatten() {
                    collect(body, caller, graph)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
