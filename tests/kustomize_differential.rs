//! Differential test: the inputs of every golden case under tests/kustomize/ are
//! rewritten in other YAML shapes (comments, scalar styles, flow and block
//! collections, key order, null and empty fields, document markers) and each mutant is
//! built by rollwave and by real kustomize (`kubectl kustomize`). The two must agree:
//! both succeed with the same output (compared as parsed data, document by document,
//! in order), or both fail. The reference decides what a mutant means; the mutations
//! are chosen so that it usually means what the golden input means.
//!
//! A mutant is described by a tape of choices where 0 is always the least reshaping
//! choice; a failing tape is minimised by zeroing as much of it as keeps the
//! difference, and the mutant is printed and written to
//! `$CARGO_TARGET_TMPDIR/kustomize-differential/` (`target/tmp/...`), ready to become a
//! golden case.
//!
//! Knobs (all optional):
//! - `ROLLWAVE_DIFF_CASES`: number of mutants (default 160, about 10 s);
//! - `ROLLWAVE_DIFF_MINIMISE`: builds spent minimising a difference (default 200);
//! - `ROLLWAVE_DIFF_SEED`: proptest's seed (default fixed, so CI runs are repeatable);
//! - `ROLLWAVE_DIFF_SECONDS`: stop building mutants after this many seconds;
//! - `ROLLWAVE_DIFF_KEEP_GOING=1`: record every difference (one directory each) and
//!   fail at the end instead of stopping at the first one;
//! - `ROLLWAVE_DIFF_ONLY=116,164`: mutate only the golden cases whose names start with
//!   one of these prefixes (to chase one difference).
//!
//! Long run by hand: `ROLLWAVE_DIFF_CASES=1000000 ROLLWAVE_DIFF_SECONDS=600
//! ROLLWAVE_DIFF_SEED=$RANDOM ROLLWAVE_DIFF_KEEP_GOING=1 cargo test --test
//! kustomize_differential -- --nocapture`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use rollwave::render::kustomize;
use rollwave::tree::{DirTree, RepoPath};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------
// The tape of choices

/// The choices that make one mutant. Every decision reads one byte; past the end of
/// the tape every byte is 0, and 0 always means "the plainest shape", so shrinking the
/// tape toward zeros shrinks the mutation.
struct Tape<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Tape<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// One of `n` options; 0 is the default.
    fn pick(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }

    /// True with probability `per256`/256 (never for a zero byte).
    fn chance(&mut self, per256: u8) -> bool {
        let b = self.byte();
        b != 0 && b <= per256
    }
}

// ---------------------------------------------------------------------------
// Data-level mutations: fields kustomize reads as absent written as null or empty

#[derive(Clone, Copy)]
enum Shape {
    List,
    Map,
    /// A string field: only null stands for "absent".
    Str,
}

/// Kustomization fields that may be written as null or empty in place of being absent.
const KUSTOMIZATION_FIELDS: &[(&str, Shape)] = &[
    ("resources", Shape::List),
    ("bases", Shape::List),
    ("components", Shape::List),
    ("patches", Shape::List),
    ("patchesStrategicMerge", Shape::List),
    ("patchesJson6902", Shape::List),
    ("images", Shape::List),
    ("replicas", Shape::List),
    ("configMapGenerator", Shape::List),
    ("secretGenerator", Shape::List),
    ("vars", Shape::List),
    ("replacements", Shape::List),
    ("configurations", Shape::List),
    ("crds", Shape::List),
    ("generators", Shape::List),
    ("transformers", Shape::List),
    ("labels", Shape::List),
    ("buildMetadata", Shape::List),
    ("imageTags", Shape::List),
    ("helmCharts", Shape::List),
    ("validators", Shape::List),
    ("sortOptions", Shape::Map),
    ("openapi", Shape::Map),
    ("helmGlobals", Shape::Map),
    ("commonLabels", Shape::Map),
    ("commonAnnotations", Shape::Map),
    ("generatorOptions", Shape::Map),
    ("namePrefix", Shape::Str),
    ("nameSuffix", Shape::Str),
    ("namespace", Shape::Str),
];

/// Fields of a generator entry (configMapGenerator, secretGenerator).
const GENERATOR_FIELDS: &[(&str, Shape)] = &[
    ("literals", Shape::List),
    ("files", Shape::List),
    ("envs", Shape::List),
    ("options", Shape::Map),
    ("behavior", Shape::Str),
    ("namespace", Shape::Str),
];

const METADATA_FIELDS: &[(&str, Shape)] = &[
    ("labels", Shape::Map),
    ("annotations", Shape::Map),
    ("namespace", Shape::Str),
];

const CONTAINER_FIELDS: &[(&str, Shape)] = &[
    ("env", Shape::List),
    ("envFrom", Shape::List),
    ("ports", Shape::List),
    ("volumeMounts", Shape::List),
    ("command", Shape::List),
    ("args", Shape::List),
];

const POD_SPEC_FIELDS: &[(&str, Shape)] = &[
    ("volumes", Shape::List),
    ("imagePullSecrets", Shape::List),
    ("initContainers", Shape::List),
    ("tolerations", Shape::List),
    ("nodeSelector", Shape::Map),
];

fn empty_value(shape: Shape, tape: &mut Tape) -> Value {
    match (shape, tape.pick(2)) {
        (Shape::List, 1) => Value::Array(Vec::new()),
        (Shape::Map, 1) => Value::Object(Map::new()),
        _ => Value::Null,
    }
}

/// Adds, with a small chance, one of `fields` the map lacks, null or empty.
fn insert_absent(map: &mut Map<String, Value>, fields: &[(&str, Shape)], tape: &mut Tape) {
    if !tape.chance(40) {
        return;
    }
    let (name, shape) = fields[tape.pick(fields.len())];
    if !map.contains_key(name) {
        let v = empty_value(shape, tape);
        map.insert(name.to_string(), v);
    }
}

fn mutate_kustomization(doc: &mut Value, tape: &mut Tape) {
    let Value::Object(top) = doc else { return };
    for _ in 0..3 {
        insert_absent(top, KUSTOMIZATION_FIELDS, tape);
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        if let Some(Value::Array(entries)) = top.get_mut(field) {
            for e in entries.iter_mut() {
                if let Value::Object(m) = e {
                    insert_absent(m, GENERATOR_FIELDS, tape);
                }
            }
        }
    }
    empty_to_null(doc, tape);
}

/// Rewrites, with a small chance, an empty list or map as null (`key:`).
fn empty_to_null(v: &mut Value, tape: &mut Tape) {
    let empty = match v {
        Value::Array(items) => items.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    match v {
        _ if empty && tape.chance(30) => *v = Value::Null,
        _ if empty => {}
        Value::Array(items) => items.iter_mut().for_each(|i| empty_to_null(i, tape)),
        Value::Object(m) => m.values_mut().for_each(|i| empty_to_null(i, tape)),
        _ => {}
    }
}

/// Null and empty optional fields in objects (resources and patches): metadata,
/// containers, pod specs.
fn mutate_object(v: &mut Value, tape: &mut Tape) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                insert_absent(meta, METADATA_FIELDS, tape);
            }
            if m.contains_key("image") {
                insert_absent(m, CONTAINER_FIELDS, tape);
            }
            if m.contains_key("containers") {
                insert_absent(m, POD_SPEC_FIELDS, tape);
            }
            m.values_mut().for_each(|i| mutate_object(i, tape));
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mutate_object(i, tape)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Writing YAML in chosen shapes

const COMMENTS: &[&str] = &[
    "#",
    "# a comment",
    "# key: value",
    "# - item",
    "#---",
    "# ...",
    "# |",
    "# {{ not a template }}",
    "# resources:\n#   - commented-out.yaml",
    "## TODO(someone): a long commented-out block follows, as scaffolds write them",
];

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// A map value or a sequence entry in block style (may be empty for null).
    Block,
    /// Inside a flow collection.
    Flow,
}

/// A string YAML 1.1 and 1.2 both read back as the same string when written plain.
fn plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let lower = s.to_ascii_lowercase();
    first_ok
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            lower.as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        )
}

/// A character written as itself inside quotes and block scalars.
fn printable(c: char) -> bool {
    match c {
        ' '..='~' => true,
        '\u{a0}'..='\u{d7ff}' => c != '\u{2028}' && c != '\u{2029}',
        '\u{e000}'..='\u{fffd}' => c != '\u{feff}',
        c => c >= '\u{10000}',
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn single_quoted_ok(s: &str) -> bool {
    s.chars().all(printable)
}

/// Whether a multi-line string can be a literal block scalar (`|`, `|-`, `|+`).
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && s.chars().all(|c| c == '\n' || c == '\t' || printable(c))
        && s.lines().next().is_some_and(|l| {
            !l.is_empty() && !l.starts_with(' ') && !l.starts_with('\t') && !l.starts_with('#')
        })
}

struct Emitter<'t, 'b> {
    tape: &'t mut Tape<'b>,
    unit: usize,
    out: String,
}

impl Emitter<'_, '_> {
    fn indent(&mut self, n: usize) {
        self.out.push_str(&" ".repeat(n));
    }

    fn comment_text(&mut self) -> &'static str {
        COMMENTS[self.tape.pick(COMMENTS.len())]
    }

    /// Whole-line comments (sometimes a long run) before an entry.
    fn comments(&mut self, indent: usize) {
        if !self.tape.chance(24) {
            return;
        }
        let n = if self.tape.chance(40) {
            self.tape.byte() as usize
        } else {
            1 + self.tape.pick(3)
        };
        for _ in 0..n {
            let at = if self.tape.chance(80) { 0 } else { indent };
            let text = self.comment_text();
            for line in text.lines() {
                self.indent(at);
                self.out.push_str(line);
                self.out.push('\n');
            }
        }
    }

    /// A comment after a value on its line, then the line break.
    fn end_line(&mut self) {
        if self.tape.chance(24) {
            let text = self.comment_text().lines().next().unwrap_or("#");
            self.out.push(' ');
            self.out.push_str(text);
        }
        self.out.push('\n');
    }

    fn null_text(&mut self, ctx: Ctx) -> &'static str {
        let spellings: &[&str] = if ctx == Ctx::Block {
            &["null", "~", "", "Null", "NULL"]
        } else {
            &["null", "~", "Null", "NULL"]
        };
        spellings[self.tape.pick(spellings.len())]
    }

    /// A string on one line: plain, single-quoted or double-quoted.
    fn inline_string(&mut self, s: &str) -> String {
        let mut styles = Vec::new();
        if plain_safe(s) {
            styles.push(0);
        }
        if single_quoted_ok(s) {
            styles.push(1);
        }
        styles.push(2);
        match styles[self.tape.pick(styles.len())] {
            0 => s.to_string(),
            1 => format!("'{}'", s.replace('\'', "''")),
            _ => double_quoted(s),
        }
    }

    /// A scalar on one line (never a literal block).
    fn inline_scalar(&mut self, v: &Value, ctx: Ctx) -> String {
        match v {
            Value::Null => self.null_text(ctx).to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => self.inline_string(s),
            Value::Array(_) | Value::Object(_) => self.flow(v),
        }
    }

    fn flow(&mut self, v: &Value) -> String {
        match v {
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| self.inline_scalar(i, Ctx::Flow))
                    .collect();
                format!("[{}]", parts.join(", "))
            }
            Value::Object(m) => {
                let entries = self.ordered(m);
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| {
                        let key = self.inline_string(k);
                        let value = self.inline_scalar(v, Ctx::Flow);
                        format!("{key}: {value}")
                    })
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            other => self.inline_scalar(other, Ctx::Flow),
        }
    }

    /// The map's entries, sometimes shuffled.
    fn ordered<'m>(&mut self, m: &'m Map<String, Value>) -> Vec<(&'m String, &'m Value)> {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        if self.tape.chance(64) {
            for i in (1..entries.len()).rev() {
                let j = self.tape.pick(i + 1);
                entries.swap(i, j);
            }
        }
        entries
    }

    /// Writes a value after `key:` or `-` (the cursor is right after the indicator).
    fn block_value(&mut self, v: &Value, indent: usize, map_value: bool) {
        match v {
            Value::String(s) if literal_ok(s) && self.tape.chance(128) => {
                let trailing = s.len() - s.trim_end_matches('\n').len();
                let chomp = match trailing {
                    0 => "-",
                    1 => "",
                    _ => "+",
                };
                self.out.push_str(" |");
                self.out.push_str(chomp);
                self.end_line();
                let body = &s[..s.len() - trailing];
                for line in body.split('\n') {
                    if !line.is_empty() {
                        self.indent(indent + self.unit);
                        self.out.push_str(line);
                    }
                    self.out.push('\n');
                }
                for _ in 1..trailing {
                    self.out.push('\n');
                }
            }
            Value::Array(items) if !items.is_empty() && !self.tape.chance(48) => {
                if map_value {
                    self.end_line();
                } else {
                    self.out.push('\n');
                }
                let seq_indent = if map_value && self.tape.chance(96) {
                    indent
                } else {
                    indent + self.unit
                };
                self.block_seq(items, seq_indent);
            }
            Value::Object(m) if !m.is_empty() && !self.tape.chance(48) => {
                if map_value {
                    self.end_line();
                } else {
                    self.out.push('\n');
                }
                self.block_map(m, indent + self.unit, false);
            }
            other => {
                let text = self.inline_scalar(other, Ctx::Block);
                if !text.is_empty() {
                    self.out.push(' ');
                    self.out.push_str(&text);
                }
                self.end_line();
            }
        }
    }

    fn block_map(&mut self, m: &Map<String, Value>, indent: usize, inline_first: bool) {
        for (i, (k, v)) in self.ordered(m).into_iter().enumerate() {
            if !(inline_first && i == 0) {
                self.comments(indent);
                self.indent(indent);
            }
            let key = self.inline_string(k);
            self.out.push_str(&key);
            self.out.push(':');
            self.block_value(v, indent, true);
        }
    }

    fn block_seq(&mut self, items: &[Value], indent: usize) {
        for item in items {
            self.comments(indent);
            self.indent(indent);
            self.out.push('-');
            match item {
                Value::Object(m) if !m.is_empty() && self.tape.pick(4) != 3 => {
                    self.out.push(' ');
                    self.block_map(m, indent + 2, true);
                }
                _ => self.block_value(item, indent, false),
            }
        }
    }

    fn document(&mut self, doc: &Value) {
        match doc {
            Value::Object(m) if !m.is_empty() && !self.tape.chance(24) => {
                self.block_map(m, 0, false)
            }
            Value::Array(items) if !items.is_empty() && !self.tape.chance(24) => {
                self.block_seq(items, 0)
            }
            other => {
                let text = self.inline_scalar(other, Ctx::Flow);
                self.out.push_str(&text);
                self.end_line();
            }
        }
    }
}

/// The text of a YAML stream holding `docs`, in shapes the tape chooses. A
/// kustomization file keeps one document (kustomize reads only that).
fn write_stream(docs: &[Value], kustomization: bool, tape: &mut Tape) -> String {
    let unit = [2, 4, 3][tape.pick(3)];
    let mut e = Emitter {
        tape,
        unit,
        out: String::new(),
    };
    e.comments(0);
    for (i, doc) in docs.iter().enumerate() {
        let mut separated = false;
        if !kustomization && e.tape.chance(24) {
            // Empty documents, which kustomize skips.
            for _ in 0..=e.tape.pick(2) {
                e.out.push_str("---");
                e.end_line();
                e.comments(0);
            }
            separated = true;
        }
        if i > 0 || separated || e.tape.chance(64) {
            e.out.push_str("---");
            e.end_line();
        }
        e.document(doc);
        if e.tape.chance(40) {
            e.out.push_str("...");
            e.end_line();
        }
        e.comments(0);
    }
    if e.tape.chance(24) {
        // No line break at the end of the file.
        while e.out.ends_with('\n') {
            e.out.pop();
        }
    }
    e.out
}

// ---------------------------------------------------------------------------
// Mutating a case

fn cases_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kustomize")
}

/// Every YAML input of a case (never the expected outputs), in a stable order.
fn yaml_inputs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            yaml_inputs(&path, out);
        } else if name.starts_with("expected") {
            continue;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization" {
            out.push(path);
        }
    }
}

fn is_kustomization(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
    )
}

/// Rewrites the case's YAML inputs under `dir`; returns the files changed. A file the
/// YAML reader refuses (a case about malformed input) is left as it is.
fn mutate_case(dir: &Path, tape: &mut Tape) -> Vec<PathBuf> {
    let mut files = Vec::new();
    yaml_inputs(dir, &mut files);
    let mut changed = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.display().to_string();
        let new_text = if is_kustomization(&file) {
            match rollwave::yaml::parse_value_yaml11_last_key_wins(&name, &text) {
                Ok(mut doc) if doc.is_object() => {
                    mutate_kustomization(&mut doc, tape);
                    write_stream(&[doc], true, tape)
                }
                _ => continue,
            }
        } else {
            match rollwave::yaml::parse_documents(&name, &text) {
                Ok(mut docs) if !docs.is_empty() => {
                    // No `empty_to_null` here: see `insert_absent` for why objects
                    // keep their empty fields empty.
                    for doc in docs.iter_mut() {
                        mutate_object(doc, tape);
                    }
                    write_stream(&docs, false, tape)
                }
                _ => continue,
            }
        };
        std::fs::write(&file, new_text).unwrap();
        changed.push(file);
    }
    changed
}

// ---------------------------------------------------------------------------
// Comparing rollwave with kustomize on a mutant

enum Outcome {
    Built(Vec<Value>),
    Failed(String),
}

fn kustomize_outcome(dir: &Path) -> Outcome {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is required by the tests (kubectl kustomize is the reference renderer)");
    if !out.status.success() {
        return Outcome::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match rollwave::yaml::parse_documents("kustomize output", &text) {
        Ok(docs) => Outcome::Built(docs),
        Err(e) => Outcome::Failed(format!("kustomize's output does not parse: {e}")),
    }
}

fn rollwave_outcome(root: &Path, case: &str) -> Outcome {
    let tree = match DirTree::open(root) {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match kustomize::build(&tree, &RepoPath::new(case).unwrap()) {
        // Through a YAML round trip, so both sides are typed by the same parser.
        Ok(objects) => match rollwave::yaml::parse_documents(
            "rollwave output",
            &rollwave::yaml::to_yaml_stream(&objects),
        ) {
            Ok(docs) => Outcome::Built(docs),
            Err(e) => Outcome::Failed(format!("rollwave's output does not parse: {e}")),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Mutants kustomize built but could not print (see `fails_writing_its_output`).
static UNWRITABLE: AtomicUsize = AtomicUsize::new(0);

/// Whether kustomize built every object and then failed to print one. Its YAML
/// writer emits text it cannot read back when a comment sits next to a collection it
/// emptied, wrote in flow style or merged into a flow-style parent (`labels: #` whose
/// every entry a patch removes); printing then fails with the object (as a Go map)
/// and the YAML reader's complaint. That is a defect of kustomize's output, not a
/// refusal of the input: rollwave builds such inputs, and docs/guide/rendering.md says so.
fn fails_writing_its_output(kustomize_error: &str) -> bool {
    kustomize_error.contains("err=\"map[string]interface {}{")
        && (kustomize_error.contains("}: yaml: line ")
            || kustomize_error.contains("}: yaml: invalid map key"))
}

/// `None` when the two agree, else what differs.
fn difference(kustomize: &Outcome, rollwave: &Outcome) -> Option<String> {
    match (kustomize, rollwave) {
        (Outcome::Built(k), Outcome::Built(r)) if k == r => None,
        (Outcome::Failed(_), Outcome::Failed(_)) => None,
        (Outcome::Failed(k), Outcome::Built(_)) if fails_writing_its_output(k) => {
            UNWRITABLE.fetch_add(1, Ordering::Relaxed);
            None
        }
        (Outcome::Built(k), Outcome::Built(r)) => {
            let k = rollwave::yaml::to_yaml_stream(k);
            let r = rollwave::yaml::to_yaml_stream(r);
            let diff = similar::TextDiff::from_lines(&k, &r)
                .unified_diff()
                .header("kustomize", "rollwave")
                .to_string();
            Some(format!("output differs from kustomize:\n{diff}"))
        }
        (Outcome::Failed(k), Outcome::Built(_)) => {
            Some(format!("rollwave builds it, kustomize refuses it: {k}"))
        }
        (Outcome::Built(_), Outcome::Failed(r)) => {
            Some(format!("kustomize builds it, rollwave refuses it: {r}"))
        }
    }
}

/// Where differences are written, one directory each, ready to become golden cases.
fn findings_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kustomize-differential")
}

static FINDINGS: AtomicUsize = AtomicUsize::new(0);
static BUILT: AtomicUsize = AtomicUsize::new(0);

/// One mutant of a case, written into a temporary directory and built both ways.
struct Mutant {
    tmp: tempfile::TempDir,
    changed: Vec<PathBuf>,
    difference: Option<String>,
}

fn build_mutant(case: &str, bytes: &[u8]) -> Mutant {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(case);
    common::copy_dir(&cases_root().join(case), &dir);
    for expected in ["expected.yaml", "expected-error.txt"] {
        let _ = std::fs::remove_file(dir.join(expected));
    }
    let mut tape = Tape { bytes, at: 0 };
    let changed = mutate_case(&dir, &mut tape);
    let kustomize = kustomize_outcome(&dir);
    let rollwave = rollwave_outcome(tmp.path(), case);
    BUILT.fetch_add(1, Ordering::Relaxed);
    let difference = difference(&kustomize, &rollwave)
        .map(|d| d.replace(&format!("{}/", tmp.path().display()), ""));
    Mutant {
        tmp,
        changed,
        difference,
    }
}

/// Zeroes as much of a failing tape as keeps the difference (runs at most `budget`
/// builds), so the mutant reported is reshaped only where it matters.
fn minimise(case: &str, mut bytes: Vec<u8>, mut failing: Mutant, budget: u64) -> Mutant {
    let mut runs = 0;
    let mut chunk = bytes.len().next_power_of_two();
    while chunk >= 1 && runs < budget {
        let mut start = 0;
        while start < bytes.len() && runs < budget {
            let end = (start + chunk).min(bytes.len());
            if bytes[start..end].iter().any(|b| *b != 0) {
                let mut trial = bytes.clone();
                trial[start..end].iter_mut().for_each(|b| *b = 0);
                runs += 1;
                let m = build_mutant(case, &trial);
                if m.difference.is_some() {
                    bytes = trial;
                    failing = m;
                }
            }
            start = end;
        }
        chunk /= 2;
    }
    failing
}

/// Builds one mutant of `case` both ways; `Err` describes a difference (minimised).
fn check_mutant(case: &str, bytes: &[u8], keep_going: bool) -> Result<(), String> {
    let first = build_mutant(case, bytes);
    if first.difference.is_none() {
        return Ok(());
    }
    let m = minimise(
        case,
        bytes.to_vec(),
        first,
        env_number("ROLLWAVE_DIFF_MINIMISE", 200),
    );
    let what = m.difference.clone().unwrap_or_default();
    let keep = if keep_going {
        let n = FINDINGS.fetch_add(1, Ordering::Relaxed);
        findings_dir().join(format!("{n:03}-{case}"))
    } else {
        findings_dir().join(case)
    };
    let _ = std::fs::remove_dir_all(&keep);
    common::copy_dir(&m.tmp.path().join(case), &keep);
    std::fs::write(keep.join("difference.txt"), &what).unwrap();
    let mut report = format!(
        "case {case}: {what}\nthe mutant is kept in {}\n",
        keep.display()
    );
    for file in &m.changed {
        let rel = file.strip_prefix(m.tmp.path()).unwrap_or(file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        report.push_str(&format!("----- {}\n{text}\n", rel.display()));
    }
    Err(report)
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn rollwave_agrees_with_kustomize_on_golden_inputs_written_in_other_yaml_shapes() {
    let mut cases = common::golden_cases();
    assert!(cases.len() >= 150, "expected the golden cases");
    if let Ok(only) = std::env::var("ROLLWAVE_DIFF_ONLY") {
        let prefixes: Vec<&str> = only.split(',').map(str::trim).collect();
        cases.retain(|c| prefixes.iter().any(|p| c.starts_with(p)));
        assert!(
            !cases.is_empty(),
            "ROLLWAVE_DIFF_ONLY={only} names no golden case"
        );
    }
    let keep_going = std::env::var("ROLLWAVE_DIFF_KEEP_GOING").is_ok_and(|v| v == "1");
    let deadline = std::env::var("ROLLWAVE_DIFF_SECONDS")
        .ok()
        .map(|_| Instant::now() + Duration::from_secs(env_number("ROLLWAVE_DIFF_SECONDS", 0)));
    let seed = env_number("ROLLWAVE_DIFF_SEED", 0x6b75_7374_6f6d_697a);
    let config = Config {
        cases: env_number("ROLLWAVE_DIFF_CASES", 160) as u32,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        // A failing mutant is minimised by zeroing its tape (see `minimise`), which
        // shrinks far better than proptest's removal of choices that shifts the rest.
        max_shrink_iters: 0,
        ..Config::default()
    };
    let started = Instant::now();
    let strategy = (
        any::<u64>().no_shrink(),
        prop::collection::vec(any::<u8>(), 0..1024),
    );
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(which, bytes)| {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Ok(());
        }
        let case = &cases[(which % cases.len() as u64) as usize];
        match check_mutant(case, &bytes, keep_going) {
            Err(report) if !keep_going => Err(TestCaseError::fail(report)),
            Err(report) => {
                let summary: Vec<&str> = report.lines().take(2).collect();
                eprintln!("{}", summary.join("\n"));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    });
    eprintln!(
        "{} mutants of {} cases built by rollwave and kustomize in {:.0?} (seed {seed}); \
         kustomize could not print its output for {}",
        BUILT.load(Ordering::Relaxed),
        cases.len(),
        started.elapsed(),
        UNWRITABLE.load(Ordering::Relaxed),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(report, (_, bytes))) => panic!(
            "rollwave and kustomize differ on a reshaped golden input (seed {seed}, \
             tape of {} choices):\n{report}",
            bytes.len()
        ),
        Err(TestError::Abort(why)) => panic!("the differential test aborted: {why}"),
    }
    let found = FINDINGS.load(Ordering::Relaxed);
    assert!(
        found == 0,
        "{found} differences, each kept under {}",
        findings_dir().display()
    );
}
