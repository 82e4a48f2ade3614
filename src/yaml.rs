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
    options_with(serde_saphyr::DuplicateKeyPolicy::Error)
}

fn options_with(duplicate_keys: serde_saphyr::DuplicateKeyPolicy) -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: duplicate_keys,
        with_snippet: false,
        // YAML 1.2 core schema booleans only, like the Go YAML library kustomize uses.
        strict_booleans: true,
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
    Ok(docs
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|mut d| {
            integral_floats_to_ints(&mut d);
            d
        })
        .collect())
}

/// Parses the first YAML document into a JSON value where a repeated key keeps its
/// last value instead of failing, as the YAML reader kustomize uses for
/// kustomization files does.
pub fn parse_value_last_key_wins(file: &str, text: &str) -> Result<Value, YamlError> {
    check_size(file, text.len() as u64)?;
    let opts = options_with(serde_saphyr::DuplicateKeyPolicy::LastWins);
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, opts)
        .map_err(|e| from_saphyr(file, None, &e))?;
    let mut doc = docs
        .into_iter()
        .find(|d| !d.is_null())
        .unwrap_or(Value::Null);
    integral_floats_to_ints(&mut doc);
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

/// Prints one value as a YAML document (no leading `---`).
pub fn to_yaml(value: &Value) -> String {
    // Serializing a serde_json::Value cannot fail: every key is a string.
    serde_saphyr::to_string(value).unwrap_or_default()
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
    fn quoted_scalars_survive_a_round_trip() {
        let docs = parse_documents("x.yaml", "a: '8080'\nb: 'true'\nc: 1\n").unwrap();
        let back = parse_documents("y.yaml", &to_yaml_stream(&docs)).unwrap();
        assert_eq!(docs, back);
    }
}
