//! Bounds on what one app's templates may cost: handlebars itself has none, so a
//! template could loop (nested `#each` over large lists) or write without end, and every
//! agent of the fleet would spin on the same commit.
//!
//! The budget counts `#each` iterations and bytes written, and watches a wall-clock
//! deadline as a last resort. The counts are deterministic, so every agent refuses the
//! same commit for the same reason; the deadline only guards a slow path the counts do
//! not see.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use handlebars::{
    BlockContext, BlockParams, Context, Handlebars, Helper, HelperDef, HelperResult, JsonValue,
    Output, RenderContext, RenderError, RenderErrorReason, Renderable,
};

/// `#each` iterations allowed while rendering one app's templates: far above what a
/// manifest needs (a list of a thousand hosts nested twice is a million), far below what
/// keeps an agent busy for long.
const MAX_EACH_ITERATIONS: u64 = 1_000_000;

/// Bytes one template file may render to: the same cap as any repository file, since
/// the output is read as one.
pub const MAX_OUTPUT_BYTES: u64 = crate::yaml::MAX_FILE_BYTES;

/// Wall-clock time one app's templates may take, checked at every iteration and write.
const TIME_BUDGET: Duration = Duration::from_secs(10);

/// What is left of one app's budget; shared by its files.
#[derive(Debug, Clone)]
pub struct Budget {
    iterations: Arc<AtomicU64>,
    deadline: Instant,
}

/// Which bound was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// Too many `#each` iterations.
    Iterations,
    /// The output of one file grew too large.
    Output,
    /// The time budget ran out.
    Time,
}

impl Exceeded {
    /// The message, with what to do.
    pub fn message(self) -> String {
        match self {
            Exceeded::Iterations => format!(
                "template loops more than {MAX_EACH_ITERATIONS} times (#each iterations); \
                 loop over smaller lists or split the template"
            ),
            Exceeded::Output => {
                format!("template output exceeds {MAX_OUTPUT_BYTES} bytes; render less per file")
            }
            Exceeded::Time => format!(
                "template took longer than {} s to render; simplify it",
                TIME_BUDGET.as_secs()
            ),
        }
    }

    fn io_error(self) -> std::io::Error {
        std::io::Error::other(BudgetError(self))
    }
}

/// Carries an [`Exceeded`] through handlebars' error types.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message())]
struct BudgetError(pub Exceeded);

impl Budget {
    /// A fresh budget starting now.
    pub fn new() -> Self {
        Budget {
            iterations: Arc::new(AtomicU64::new(0)),
            deadline: Instant::now() + TIME_BUDGET,
        }
    }

    fn spend_iteration(&self) -> Result<(), Exceeded> {
        let n = self.iterations.fetch_add(1, Ordering::Relaxed) + 1;
        if n > MAX_EACH_ITERATIONS {
            return Err(Exceeded::Iterations);
        }
        if n.is_multiple_of(1024) && Instant::now() > self.deadline {
            return Err(Exceeded::Time);
        }
        Ok(())
    }

    /// A writer of one file's output that stops at [`MAX_OUTPUT_BYTES`] and at the
    /// deadline.
    pub fn writer(&self) -> CappedWriter {
        CappedWriter {
            bytes: Vec::new(),
            deadline: self.deadline,
        }
    }

    /// The `#each` helper, counting against this budget.
    pub fn each_helper(&self) -> CountedEach {
        CountedEach {
            budget: self.clone(),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// Collects one file's output, refusing to grow past [`MAX_OUTPUT_BYTES`].
pub struct CappedWriter {
    bytes: Vec<u8>,
    deadline: Instant,
}

impl CappedWriter {
    /// What was written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.bytes.len() + buf.len()) as u64 > MAX_OUTPUT_BYTES {
            return Err(Exceeded::Output.io_error());
        }
        if Instant::now() > self.deadline {
            return Err(Exceeded::Time.io_error());
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Finds a budget error inside a render error, if that is what stopped the render.
pub fn exceeded(e: &RenderError) -> Option<Exceeded> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    if let RenderErrorReason::IOError(io) = e.reason()
        && let Some(b) = io.get_ref().and_then(|r| r.downcast_ref::<BudgetError>())
    {
        return Some(b.0);
    }
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<BudgetError>() {
            return Some(b.0);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && let Some(b) = io.get_ref().and_then(|r| r.downcast_ref::<BudgetError>())
        {
            return Some(b.0);
        }
        source = s.source();
    }
    None
}

/// handlebars' `#each` with the same semantics (arrays and objects, `@index`, `@key`,
/// `@first`, `@last`, block parameters, `{{else}}` for empty or missing values, strict
/// mode), each iteration charged to the budget. It replaces the built-in, which cannot
/// be interrupted.
#[derive(Clone)]
pub struct CountedEach {
    budget: Budget,
}

fn budget_error(e: Exceeded) -> RenderError {
    RenderErrorReason::NestedError(Box::new(BudgetError(e))).into()
}

fn set_iteration<'rc>(
    block: &mut BlockContext<'rc>,
    h: &Helper<'rc>,
    base_path: Option<&Vec<String>>,
    step: (&str, usize, usize),
    key: Option<&JsonValue>,
    value: &JsonValue,
) -> Result<(), RenderError> {
    let (segment, i, len) = step;
    block.set_local_var("first", JsonValue::Bool(i == 0));
    block.set_local_var("last", JsonValue::Bool(i + 1 == len));
    block.set_local_var("index", JsonValue::from(i));
    if let Some(k) = key {
        block.set_local_var("key", k.clone());
    }
    match base_path {
        Some(p) => {
            let mut path = p.clone();
            path.push(segment.to_string());
            *block.base_path_mut() = path;
        }
        None => block.set_base_value(value.clone()),
    }
    let second = key.cloned().unwrap_or_else(|| JsonValue::from(i));
    let mut params = BlockParams::new();
    let mut any = false;
    if let Some(name) = h.block_param() {
        any = true;
        add_block_value(&mut params, name, base_path, value)?;
    } else if let Some((name, key_name)) = h.block_param_pair() {
        any = true;
        add_block_value(&mut params, name, base_path, value)?;
        params.add_value(key_name, second)?;
    }
    if any {
        block.set_block_params(params);
    }
    Ok(())
}

fn add_block_value<'a>(
    params: &mut BlockParams<'a>,
    name: &'a str,
    base_path: Option<&Vec<String>>,
    value: &JsonValue,
) -> Result<(), RenderError> {
    if base_path.is_some() {
        params.add_path(name, Vec::new())
    } else {
        params.add_value(name, value.clone())
    }
}

impl HelperDef for CountedEach {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("each", 0))?;
        let Some(t) = h.template() else {
            return Ok(());
        };
        let new_block = || {
            let mut block = BlockContext::new();
            match value.context_path() {
                Some(p) => block.base_path_mut().clone_from(p),
                None => block.set_base_value(value.value().clone()),
            }
            block
        };
        let base_path = value.context_path();
        match value.value() {
            JsonValue::Array(list) if !list.is_empty() || h.inverse().is_none() => {
                rc.push_block(new_block());
                for (i, v) in list.iter().enumerate() {
                    self.budget.spend_iteration().map_err(budget_error)?;
                    if let Some(block) = rc.block_mut() {
                        let segment = i.to_string();
                        set_iteration(block, h, base_path, (&segment, i, list.len()), None, v)?;
                    }
                    t.render(r, ctx, rc, out)?;
                }
                rc.pop_block();
                Ok(())
            }
            JsonValue::Object(map) if !map.is_empty() || h.inverse().is_none() => {
                rc.push_block(new_block());
                for (i, (k, v)) in map.iter().enumerate() {
                    self.budget.spend_iteration().map_err(budget_error)?;
                    if let Some(block) = rc.block_mut() {
                        let key = JsonValue::String(k.clone());
                        set_iteration(block, h, base_path, (k, i, map.len()), Some(&key), v)?;
                    }
                    t.render(r, ctx, rc, out)?;
                }
                rc.pop_block();
                Ok(())
            }
            _ => match h.inverse() {
                Some(else_template) => else_template.render(r, ctx, rc, out),
                None if r.strict_mode() => Err(RenderError::strict_error(value.relative_path())),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(hb: &Handlebars<'_>, template: &str, data: &JsonValue) -> Result<String, String> {
        hb.render_template(template, data)
            .map_err(|e| e.reason().to_string())
    }

    /// The counted `#each` must be indistinguishable from handlebars' own.
    #[test]
    fn counted_each_renders_exactly_as_the_built_in_one() {
        let data = json!({
            "list": ["a", "b", "c"],
            "map": {"x": 1, "y": {"z": [true, false]}},
            "nested": [{"name": "n1", "items": [1, 2]}, {"name": "n2", "items": []}],
            "empty": [],
            "emptymap": {},
            "scalar": 7,
            "top": "T"
        });
        let templates = [
            "{{#each list}}{{@index}}{{this}}{{@first}}{{@last}},{{/each}}",
            "{{#each map}}{{@key}}={{@index}}:{{@first}}{{@last}};{{/each}}",
            "{{#each map as |v k|}}{{k}}->{{v}}|{{/each}}",
            "{{#each list as |v i|}}{{i}}:{{v}}:{{../top}} {{/each}}",
            "{{#each nested}}{{name}}[{{#each items}}{{this}}@{{@index}}/{{../name}}{{else}}none{{/each}}]{{/each}}",
            "{{#each empty}}x{{else}}empty{{/each}}",
            "{{#each emptymap}}x{{else}}emptymap{{/each}}",
            "{{#each empty}}x{{/each}}|",
            "{{#each scalar}}x{{else}}not a list{{/each}}",
            "{{#each missing}}x{{else}}missing{{/each}}",
            "{{#each list}}{{#each ../list}}{{../this}}{{this}} {{/each}}{{/each}}",
            "{{#each map.y.z}}{{this}}{{/each}}",
            "{{#each nested as |n|}}{{n.name}}{{#each n.items as |i|}}{{i}}{{/each}}{{/each}}",
            "{{#each list}}{{lookup ../map @key}}{{/each}}",
        ];
        for strict in [false, true] {
            let mut stock = Handlebars::new();
            stock.set_strict_mode(strict);
            let mut counted = Handlebars::new();
            counted.set_strict_mode(strict);
            counted.register_helper("each", Box::new(Budget::new().each_helper()));
            for t in templates {
                assert_eq!(
                    render(&counted, t, &data),
                    render(&stock, t, &data),
                    "template {t} (strict: {strict})"
                );
            }
            assert_eq!(
                render(&counted, "{{#each missing}}x{{/each}}", &data).is_err(),
                render(&stock, "{{#each missing}}x{{/each}}", &data).is_err(),
            );
        }
    }

    #[test]
    fn iterations_are_counted_across_the_files_of_one_budget() {
        let budget = Budget::new();
        let mut hb = Handlebars::new();
        hb.register_helper("each", Box::new(budget.each_helper()));
        let data = json!({"l": (0..1000).collect::<Vec<u32>>()});
        for _ in 0..1000 {
            hb.render_template("{{#each l}}{{/each}}", &data).unwrap();
        }
        let e = hb
            .render_template("{{#each l}}{{/each}}", &data)
            .unwrap_err();
        assert_eq!(exceeded(&e), Some(Exceeded::Iterations));
    }
}
