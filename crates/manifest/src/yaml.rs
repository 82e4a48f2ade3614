//! Bounded YAML parsing and printing.
//!
//! Every byte of YAML rollwave reads comes from a repository someone else controls, so
//! parsing is budgeted: files are capped in size, alias expansion and node counts are
//! limited (a nine-level alias bomb is refused in milliseconds), and every error carries
//! the line, column and field path so callers can prefix the file name. This module
//! owns no file access; callers hand it text.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest file rollwave will parse (8 MiB). Real manifests are far smaller; the cap
/// keeps a hostile repository from exhausting memory before the parser's own budget
/// applies.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A YAML problem at a position in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct YamlError {
    /// The file, as a repository-relative path.
    pub file: String,
    /// 1-based line, when the parser knows it.
    pub line: Option<u64>,
    /// 1-based column, when the parser knows it.
    pub column: Option<u64>,
    /// Dotted field path (`targets.selector`), when the error concerns a field.
    pub field: Option<String>,
    /// What is wrong, in lower case.
    pub message: String,
}

impl YamlError {
    fn render(&self) -> String {
        let mut out = self.file.clone();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
            if let Some(col) = self.column {
                out.push_str(&format!(":{col}"));
            }
        }
        out.push_str(": ");
        if let Some(field) = &self.field {
            out.push_str(&format!("field '{field}': "));
        }
        out.push_str(&self.message);
        out
    }
}

fn options() -> serde_saphyr::Options {
    options_with(serde_saphyr::DuplicateKeyPolicy::Error, true)
}

fn options_with(
    duplicate_keys: serde_saphyr::DuplicateKeyPolicy,
    strict_booleans: bool,
) -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: duplicate_keys,
        with_snippet: false,
        // YAML 1.2 core schema booleans only, like the Go YAML library kustomize reads
        // manifests with (its kustomization reader keeps YAML 1.1's `yes`/`no`/`on`/`off`).
        strict_booleans: strict_booleans,
        // 0755 is octal (493), as the YAML 1.1 rules kustomize's parser keeps for
        // compatibility read it: `defaultMode: 0644` must reach the API as a number.
        legacy_octal_numbers: true,
        // rollwave never reads comments. Emitting them makes the parser buffer every
        // comment between a key and its value while it looks ahead, and refuse more
        // than a few dozen ("too many buffered comments"): kubebuilder's scaffolds
        // comment out whole blocks of a kustomization. Comments are still scanned and
        // validated, and count against the file size cap like any other byte.
        emit_comments: false,
        budget: serde_saphyr::budget! {
            max_depth: 200,
            max_nodes: 2_000_000,
            max_aliases: 10_000,
            max_documents: 100_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 1_000,
        },
    }
}

/// Splits serde-saphyr's message ("... at line 3, column 1") into text and position.
fn from_saphyr(file: &str, field: Option<String>, err: &serde_saphyr::Error) -> YamlError {
    let loc = err.location();
    let text = err.to_string();
    let message = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let message = humanize(&message);
    // serde names the unknown field in the message already; a path would repeat it.
    let field = if message.starts_with("unknown field") {
        field.and_then(|f| f.rsplit_once('.').map(|(parent, _)| parent.to_string()))
    } else {
        field
    };
    YamlError {
        file: file.to_string(),
        line: loc.as_ref().map(|l| l.line()).filter(|l| *l > 0),
        column: loc.as_ref().map(|l| l.column()).filter(|c| *c > 0),
        field: field.filter(|f| !f.is_empty() && f != "."),
        message,
    }
}

fn humanize(message: &str) -> String {
    let m = message.replace('`', "'");
    if m.starts_with("budget breached") || m.contains("alias") && m.contains("limit") {
        return format!(
            "{m}: the document expands beyond rollwave's parse budget (too many nodes or \
             aliases); remove the YAML anchors/aliases or split the file"
        );
    }
    m.replace("expected mapping start", "expected a map")
        .replace("expected sequence start", "expected a list")
}

/// Checks a file's size against [`MAX_FILE_BYTES`] before it is read or parsed.
pub fn check_size(file: &str, len: u64) -> Result<(), YamlError> {
    if len > MAX_FILE_BYTES {
        return Err(YamlError {
            file: file.to_string(),
            line: None,
            column: None,
            field: None,
            message: format!(
                "file is {len} bytes, over the {MAX_FILE_BYTES}-byte limit for repository files"
            ),
        });
    }
    Ok(())
}

/// A field path as the user wrote it: fields read with their position are wrapped in
/// a `value` the file does not have (`rollout.batches.value[1]` is `rollout.batches[1]`).
fn without_span_wrappers(path: &str) -> String {
    let cleaned = path.replace(".value[", "[").replace(".value.", ".");
    cleaned
        .strip_suffix(".value")
        .map(String::from)
        .unwrap_or(cleaned)
}

/// Parses one YAML document into `T`, reporting the field path of type errors.
pub fn parse_typed<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, YamlError> {
    check_size(file, text.len() as u64)?;
    let mut path_hint: Option<String> = None;
    let res = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(v),
            Err(e) => {
                path_hint = Some(without_span_wrappers(&e.path().to_string()));
                Err(e.into_inner())
            }
        }
    });
    res.map_err(|e| from_saphyr(file, path_hint, &e))
}

/// Parses a multi-document YAML stream into JSON values, skipping empty documents.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Value>, YamlError> {
    check_size(file, text.len() as u64)?;
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| from_saphyr(file, None, &e))?;
    let mut docs: Vec<Value> = docs
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|mut d| {
            integral_floats_to_ints(&mut d);
            d
        })
        .collect();
    block_scalar_at_eof_without_line_break(text, &mut docs);
    Ok(docs)
}

/// Whether a stream starts with an empty document (`---` followed by another `---` or
/// `...` with only comments between) or holds no document at all. kustomize reads some
/// files (configurations, the JSON 6902 reading of a patch) with a reader that sees
/// only the first document, so such a file reads as null there whatever documents
/// follow, while [`parse_documents`] skips empty documents.
pub fn first_document_is_empty(text: &str) -> bool {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let mut started = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || (!started && line.starts_with('%')) {
            continue;
        }
        if marker(line, "---") {
            if started {
                return true;
            }
            let rest = line[3..].trim();
            if !(rest.is_empty() || rest.starts_with('#')) {
                return false;
            }
            started = true;
        } else if marker(line, "...") {
            if started {
                return true;
            }
        } else {
            return false;
        }
    }
    true
}

/// Parses a multi-document stream of Kubernetes manifests (resources and patches) as
/// kustomize reads them: [`parse_documents`], and then every folded block scalar (`>`)
/// holds what kustomize's own round trip through its YAML writer and reader leaves in
/// it. That writer emits an extra empty line after every line break that follows a
/// line not starting with a blank, as long as the value does not itself start with a
/// blank; read back, that empty line survives wherever the next line is more indented
/// (`"a\n  b\n"` becomes `"a\n\n  b\n"`) or the value keeps its trailing breaks
/// (`>+`). kustomize rewrites an object's own `metadata.annotations`, so their values
/// keep their first reading.
pub fn parse_manifests(file: &str, text: &str) -> Result<Vec<Value>, YamlError> {
    let mut docs = parse_documents(file, text)?;
    for doc in &docs {
        if let Some((field, c)) = find_unwritable_char(doc, &mut Vec::new()) {
            let escaped = format!("\\x{:02x}", c as u32);
            let line = text
                .lines()
                .position(|l| l.to_ascii_lowercase().contains(&escaped) || l.contains(c))
                .map(|i| i as u64 + 1);
            return Err(YamlError {
                file: file.to_string(),
                line,
                column: None,
                field: Some(field),
                message: format!(
                    "the text holds the control character U+{:04X}, which kustomize's YAML writer cannot write back (kustomize refuses it too); remove it",
                    c as u32
                ),
            });
        }
    }
    if text.contains('>') {
        for scalar in block_scalars(text, docs.len()) {
            if scalar.folded && !scalar.is_object_annotation() {
                let round_trip = kustomize_folded_round_trip(&scalar.value);
                set_string(&mut docs, &scalar, &scalar.value, round_trip);
            }
        }
    }
    Ok(docs)
}

/// The first key or string value holding a character kustomize's YAML library writes
/// unescaped but refuses to read (U+007F to U+009F but U+0085, U+FFFE, U+FFFF): written
/// as an escape in quotes it parses, then fails kustomize's own round trip. Returns
/// the field path and the character.
fn find_unwritable_char(v: &Value, path: &mut Vec<String>) -> Option<(String, char)> {
    let bad = |s: &str| {
        s.chars().find(|&c| {
            (('\u{7f}'..='\u{9f}').contains(&c) && c != '\u{85}')
                || c == '\u{fffe}'
                || c == '\u{ffff}'
        })
    };
    match v {
        Value::String(s) => bad(s).map(|c| (path.join("."), c)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(format!("[{i}]"));
            let found = find_unwritable_char(item, path);
            path.pop();
            found
        }),
        Value::Object(m) => m.iter().find_map(|(k, item)| {
            path.push(k.clone());
            let found = bad(k)
                .map(|c| (path.join("."), c))
                .or_else(|| find_unwritable_char(item, path));
            path.pop();
            found
        }),
        _ => None,
    }
}

/// One step of the path from a document's root to a node.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where the event walk of [`block_scalars`] is inside a collection.
enum Frame {
    /// In a map: the key just read, or `None` while a key is expected.
    Map(Option<String>),
    /// In a list, at this index.
    List(usize),
}

/// A literal or folded block scalar read as a value, where it is and what libyaml's
/// rules (kustomize's YAML library) read in it.
struct BlockScalar {
    /// Index among the stream's non-empty documents.
    doc: usize,
    path: Vec<Step>,
    folded: bool,
    value: String,
}

impl BlockScalar {
    /// Whether this is a value of an object's own `metadata.annotations` (of a
    /// document, or of an item of a `List`).
    fn is_object_annotation(&self) -> bool {
        let p = &self.path;
        let annotation_at = |i: usize| {
            matches!(&p[i], Step::Key(k) if k == "metadata")
                && matches!(&p[i + 1], Step::Key(k) if k == "annotations")
        };
        (p.len() == 3 && annotation_at(0))
            || (p.len() == 5
                && matches!(&p[0], Step::Key(k) if k == "items")
                && matches!(&p[1], Step::Index(_))
                && annotation_at(2))
    }
}

/// Walks the scalars of a stream whose non-empty documents number `docs` that are
/// values (not keys), calling `visit(document index, path, text, style, empty)` with
/// `empty` true for a value written as nothing (`key:`). Returns false, having visited
/// nothing certain, when the walk cannot be matched with the parsed documents (a
/// collection used as a key, a different document count).
fn walk_value_scalars(
    text: &str,
    docs: usize,
    visit: impl FnMut(usize, &[Step], &str, serde_saphyr::granit_parser::ScalarStyle, bool),
) -> bool {
    walk_values(text, docs, visit, |_, _| {})
}

/// [`walk_value_scalars`], also calling `flow(document index, path)` for every map or
/// list written in flow style (`[a]`, `{a: b}`) that is a value.
fn walk_values(
    text: &str,
    docs: usize,
    mut visit: impl FnMut(usize, &[Step], &str, serde_saphyr::granit_parser::ScalarStyle, bool),
    mut flow: impl FnMut(usize, &[Step]),
) -> bool {
    use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, StructureStyle};
    let mut opts = Options::default();
    opts.block_scalar_eof_without_line_feed = true;
    opts.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(text, opts);
    let mut stack: Vec<Frame> = Vec::new();
    // Documents seen, and whether the current one has content.
    let mut seen = 0usize;
    let mut root_seen = false;
    fn in_key_position(stack: &[Frame]) -> bool {
        matches!(stack.last(), Some(Frame::Map(None)))
    }
    fn advance(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map(key)) => *key = None,
            Some(Frame::List(i)) => *i += 1,
            None => {}
        }
    }
    fn path_of(stack: &[Frame]) -> Vec<Step> {
        stack
            .iter()
            .map(|f| match f {
                Frame::Map(k) => Step::Key(k.clone().unwrap_or_default()),
                Frame::List(i) => Step::Index(*i),
            })
            .collect()
    }
    let is_null = |v: &str| matches!(v, "" | "~" | "null" | "Null" | "NULL");
    while let Some(event) = parser.next_event() {
        let Ok((event, span)) = event else {
            return false;
        };
        if !root_seen
            && matches!(
                &event,
                Event::MappingStart(..) | Event::SequenceStart(..) | Event::Alias(..)
            )
        {
            root_seen = true;
            seen += 1;
        }
        if let Event::Scalar(v, style, ..) = &event
            && !root_seen
            && !(matches!(style, ScalarStyle::Plain) && is_null(v))
        {
            root_seen = true;
            seen += 1;
        }
        match event {
            Event::DocumentStart(..) => {
                stack.clear();
                root_seen = false;
            }
            Event::MappingStart(style, ..) | Event::SequenceStart(style, ..) => {
                if in_key_position(&stack) {
                    return false;
                }
                if matches!(style, StructureStyle::Flow) && seen > 0 {
                    flow(seen - 1, &path_of(&stack));
                }
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map(None)
                } else {
                    Frame::List(0)
                });
            }
            Event::Scalar(value, style, ..) => {
                if in_key_position(&stack) {
                    if let Some(Frame::Map(key)) = stack.last_mut() {
                        *key = Some(value.into_owned());
                    }
                    continue;
                }
                if seen > 0 && !stack.is_empty() {
                    visit(seen - 1, &path_of(&stack), &value, style, span.is_empty());
                }
                advance(&mut stack);
            }
            Event::Alias(..) => {
                if in_key_position(&stack) {
                    return false;
                }
                advance(&mut stack);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
    }
    seen == docs
}

/// The block scalars of a stream whose non-empty documents number `docs`, read with
/// libyaml's rules. Nothing is returned when the walk cannot be matched with the
/// parsed documents.
fn block_scalars(text: &str, docs: usize) -> Vec<BlockScalar> {
    use serde_saphyr::granit_parser::ScalarStyle;
    let mut out = Vec::new();
    let matched = walk_value_scalars(text, docs, |doc, path, value, style, _| {
        if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
            out.push(BlockScalar {
                doc,
                path: path.to_vec(),
                folded: matches!(style, ScalarStyle::Folded),
                value: value.to_string(),
            });
        }
    });
    if matched { out } else { Vec::new() }
}

/// A path as a JSON pointer.
fn pointer(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => format!("/{i}"),
        })
        .collect()
}

/// Where each map or list written in flow style (`[a]`, `{a: b}`) sits in a stream
/// whose non-empty documents number `docs`: (document index, JSON pointer). kustomize
/// writes an object out with the styles it was read with and reads it back before it
/// prints it, and inside a flow collection a null written as nothing goes out as `''`
/// and comes back as an empty string. Empty when the walk cannot be matched with the
/// parsed documents.
pub fn flow_collections(text: &str, docs: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let matched = walk_values(
        text,
        docs,
        |_, _, _, _, _| {},
        |doc, path| {
            out.push((doc, pointer(path)));
        },
    );
    if matched { out } else { Vec::new() }
}

/// Where each value written as nothing (`key:` or `- `) sits in a stream whose
/// non-empty documents number `docs`: (document index, JSON pointer). Parsed, such a
/// value is a null like `null` or `~`, but kustomize's strategic merge keeps a spelled
/// null of the object it patches and drops an unspelled one. Empty when the walk
/// cannot be matched with the parsed documents.
pub fn unspelled_nulls(text: &str, docs: usize) -> Vec<(usize, String)> {
    use serde_saphyr::granit_parser::ScalarStyle;
    let mut out = Vec::new();
    let matched = walk_value_scalars(text, docs, |doc, path, _, style, empty| {
        if empty && matches!(style, ScalarStyle::Plain) {
            out.push((doc, pointer(path)));
        }
    });
    if matched { out } else { Vec::new() }
}

/// How each null written as a value of `metadata.labels` or `metadata.annotations`
/// in a stream is spelled (`~`, an empty value, `Null`, ...): `(field, key, text)` for
/// every such plain scalar of any document. Parsed values cannot tell the spellings
/// apart, and kustomize, where it reads those maps as strings, keeps the text.
pub fn metadata_null_spellings(text: &str) -> Vec<(String, String, String)> {
    use serde_saphyr::granit_parser::ScalarStyle;
    let mut out = Vec::new();
    let is_null = |v: &str| matches!(v, "" | "~" | "null" | "Null" | "NULL");
    // The document count is not checked: only the path matters here.
    walk_value_scalars(text, usize::MAX, |_, path, value, style, empty| {
        if let [Step::Key(m), Step::Key(field), Step::Key(key)] = path
            && m == "metadata"
            && (field == "labels" || field == "annotations")
            && matches!(style, ScalarStyle::Plain)
            && is_null(value)
        {
            let written = if empty {
                String::new()
            } else {
                value.to_string()
            };
            out.push((field.clone(), key.clone(), written));
        }
    });
    out
}

/// Replaces the string at `scalar`'s place with `new` when it still holds `old`.
fn set_string(docs: &mut [Value], scalar: &BlockScalar, old: &str, new: String) {
    let Some(mut node) = docs.get_mut(scalar.doc) else {
        return;
    };
    for step in &scalar.path {
        let next = match (step, node) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k),
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Value::String(s) = node
        && s == old
    {
        *s = new;
    }
}

/// Reads a literal or folded block scalar (`|`, `|+`, `>`) on the last line of a file
/// that ends without a line break as kustomize's YAML library (libyaml's rules) reads
/// it: without a final line break. serde-saphyr follows the YAML test suite and adds
/// one, which would change a ConfigMap's data. Only a file not ending in a line break
/// is walked again.
fn block_scalar_at_eof_without_line_break(text: &str, docs: &mut [Value]) {
    if text.is_empty() || text.ends_with(['\n', '\r']) {
        return;
    }
    for scalar in block_scalars(text, docs.len()) {
        let with_break = format!("{}\n", scalar.value);
        let value = scalar.value.clone();
        set_string(docs, &scalar, &with_break, value);
    }
}

/// What a folded scalar's value becomes when kustomize writes it as a folded scalar
/// (go-yaml's emitter) and reads it back (libyaml's rules). Values the writer cannot
/// put in block style (a space before a line break or at the end, control
/// characters) are written quoted and come back unchanged.
fn kustomize_folded_round_trip(value: &str) -> String {
    use serde_saphyr::granit_parser::{Event, Options, Parser};
    let blank = |c: char| c == ' ' || c == '\t';
    if !value.contains('\n')
        || value.ends_with(' ')
        || value.contains(" \n")
        || value
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}')
    {
        return value.to_string();
    }
    let mut text = String::from("v: >");
    if value.starts_with([' ', '\n']) {
        text.push('2');
    }
    let mut rev = value.chars().rev();
    let chomp = match (rev.next(), rev.next()) {
        (Some('\n'), None) | (Some('\n'), Some('\n')) => "+",
        (Some('\n'), _) => "",
        _ => "-",
    };
    text.push_str(chomp);
    text.push('\n');
    // go-yaml decides whether to add the empty line by looking at the value's first
    // character rather than the next line's.
    let extra_breaks = !value.starts_with(|c: char| blank(c) || c == '\n');
    let mut breaks = true;
    let mut leading_spaces = true;
    for c in value.chars() {
        if c == '\n' {
            if !breaks && !leading_spaces && extra_breaks {
                text.push('\n');
            }
            text.push('\n');
            breaks = true;
        } else {
            if breaks {
                text.push_str("  ");
                leading_spaces = blank(c);
            }
            text.push(c);
            breaks = false;
        }
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut opts = Options::default();
    opts.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(&text, opts);
    let mut seen_key = false;
    while let Some(Ok((event, _))) = parser.next_event() {
        if let Event::Scalar(v, ..) = event {
            if seen_key {
                return v.into_owned();
            }
            seen_key = true;
        }
    }
    value.to_string()
}

/// Parses the first YAML document into a JSON value where a repeated key keeps its
/// last value instead of failing, as the YAML reader kustomize uses for
/// kustomization files does.
pub fn parse_value_last_key_wins(file: &str, text: &str) -> Result<Value, YamlError> {
    parse_value_last_key_wins_with(file, text, true)
}

/// [`parse_value_last_key_wins`] with YAML 1.1's booleans (`yes`, `no`, `on`, `off`,
/// `y`, `n` in their spellings), as the reader kustomize decodes kustomization files
/// with reads them.
pub fn parse_value_yaml11_last_key_wins(file: &str, text: &str) -> Result<Value, YamlError> {
    parse_value_last_key_wins_with(file, text, false)
}

fn parse_value_last_key_wins_with(
    file: &str,
    text: &str,
    strict_booleans: bool,
) -> Result<Value, YamlError> {
    check_size(file, text.len() as u64)?;
    let opts = options_with(serde_saphyr::DuplicateKeyPolicy::LastWins, strict_booleans);
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, opts)
        .map_err(|e| from_saphyr(file, None, &e))?;
    let only_one = docs.iter().filter(|d| !d.is_null()).count() == 1;
    let mut doc = docs
        .into_iter()
        .find(|d| !d.is_null())
        .unwrap_or(Value::Null);
    integral_floats_to_ints(&mut doc);
    if only_one {
        block_scalar_at_eof_without_line_break(text, std::slice::from_mut(&mut doc));
    }
    Ok(doc)
}

/// Writes whole-number floats (`1.0`, `1e3`) as integers, as kustomize does: it
/// carries every number as a float64 and prints `1` for `1.0`. Only values exactly
/// representable as integers (below 2^53) change.
fn integral_floats_to_ints(v: &mut Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < EXACT
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_ints),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_ints),
        _ => {}
    }
}

/// Prints one value as a YAML document (no leading `---`), byte for byte as kustomize
/// prints a resource: go-yaml v2's choice of quotes, folding at 80 columns and key
/// order, from the data alone.
pub fn to_yaml(value: &Value) -> String {
    crate::yaml_print::document(value)
}

/// Prints values as a multi-document YAML stream separated by `---`, as kustomize does.
pub fn to_yaml_stream(values: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let doc = to_yaml(v);
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_document_is_empty_only_when_the_stream_starts_with_an_empty_one() {
        let null = first_document_is_empty;
        assert!(null(""));
        assert!(null("# only a comment\n"));
        assert!(null("---\n---\na: 1\n"));
        assert!(null("--- # c\n# c\n---\na: 1\n"));
        assert!(null("---\n...\n---\na: 1\n"));
        assert!(!null("a: 1\n"));
        assert!(!null("--- {a: 1}\n---\n"));
        assert!(!null("---\n  # c\n- a\n"));
        assert!(!null("---\na: 1\n"));
        assert!(!null("# c\n---\na: 1\n"));
        assert!(!null("a: 1\n...\n---\n---\n"));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let err = parse_typed::<Sample>("x.yaml", "name: a\noverlay: 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml:2:1: unknown field 'overlay', expected one of name, labels"
        );
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let err = parse_typed::<Sample>("x.yaml", "name: a\nlabels: [1]\n").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("labels"));
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let (prev, next) = (w[0], w[1]);
            let items = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{next}: &{next} [{items}]\n"));
        }
        let err = parse_documents("bomb.yaml", &text).unwrap_err();
        assert!(err.message.contains("parse budget"), "{err}");
    }

    #[test]
    fn numbers_read_as_kustomize_reads_them() {
        let docs = parse_documents(
            "a.yaml",
            "mode: 0644\nw: 1.0\nu: 1e3\nv: 2.50\nhex: 0x1F\nquoted: '0755'\nbig: 12345678901234567890\n",
        )
        .unwrap();
        let d = &docs[0];
        assert_eq!(d["mode"], 420);
        assert_eq!(d["w"], 1);
        assert_eq!(d["u"], 1000);
        assert_eq!(d["v"], 2.5);
        assert_eq!(d["hex"], 31);
        assert_eq!(d["quoted"], "0755");
        assert!(d["big"].is_number(), "{}", d["big"]);
    }

    #[test]
    fn hundreds_of_commented_out_lines_between_a_key_and_its_value_parse() {
        let mut text = String::from("resources:\n");
        for i in 0..300 {
            text.push_str(&format!("#- ../component{i}\n"));
        }
        text.push_str("- app.yaml\npatches:\n");
        for i in 0..300 {
            text.push_str(&format!("# - path: patch{i}.yaml\n"));
        }
        text.push_str("namePrefix: x-\n");
        let doc = parse_value_last_key_wins("kustomization.yaml", &text).unwrap();
        assert_eq!(doc["resources"][0], "app.yaml");
        assert!(doc["patches"].is_null());
        let docs = parse_documents("kustomization.yaml", &text).unwrap();
        assert_eq!(docs[0]["namePrefix"], "x-");
    }

    #[test]
    fn a_block_scalar_ending_the_file_without_a_line_break_has_none() {
        let docs = parse_documents(
            "a.yaml",
            "a: |\n  x\n---\nb:\n- c: |+\n    kept\n\n- d: >\n    folded\n    end",
        )
        .unwrap();
        assert_eq!(docs[0]["a"], "x\n");
        assert_eq!(docs[1]["b"][0]["c"], "kept\n\n");
        assert_eq!(docs[1]["b"][1]["d"], "folded end");
        let with_break = parse_documents("b.yaml", "d: >\n  folded\n  end\n").unwrap();
        assert_eq!(with_break[0]["d"], "folded end\n");
        let plain = parse_documents("c.yaml", "e: |\n  x\nf: plain").unwrap();
        assert_eq!(plain[0]["e"], "x\n");
    }

    #[test]
    fn folded_scalars_in_manifests_read_as_kustomize_leaves_them() {
        let text = "data:\n  f: >\n    a\n      b\n    c\n  g: >\n    x\n    y\n  s: >\n    a  \n      b\nmetadata:\n  annotations:\n    n: >\n      a\n        b\n";
        let docs = parse_manifests("m.yaml", text).unwrap();
        assert_eq!(docs[0]["data"]["f"], "a\n\n  b\nc\n");
        assert_eq!(docs[0]["data"]["g"], "x y\n");
        assert_eq!(docs[0]["data"]["s"], "a  \n  b\n");
        assert_eq!(docs[0]["metadata"]["annotations"]["n"], "a\n  b\n");
        let plain = parse_documents("m.yaml", text).unwrap();
        assert_eq!(plain[0]["data"]["f"], "a\n  b\nc\n");
    }

    #[test]
    fn nulls_in_labels_and_annotations_keep_their_spelling() {
        let text = "kind: A\nmetadata:\n  name: a\n  labels:\n    a: ~\n    b:\n    c: null\n    \
                    d: x\n  annotations: {e: Null, f: 'null'}\nspec:\n  labels: {g: ~}\n";
        let found = metadata_null_spellings(text);
        let want = [
            ("labels", "a", "~"),
            ("labels", "b", ""),
            ("labels", "c", "null"),
            ("annotations", "e", "Null"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(f, k, t)| (f.to_string(), k.to_string(), t.to_string()))
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn quoted_scalars_survive_a_round_trip() {
        let docs = parse_documents("x.yaml", "a: '8080'\nb: 'true'\nc: 1\n").unwrap();
        let back = parse_documents("y.yaml", &to_yaml_stream(&docs)).unwrap();
        assert_eq!(docs, back);
    }
}
