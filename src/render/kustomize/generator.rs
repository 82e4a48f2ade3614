//! configMapGenerator and secretGenerator: building the objects and the content-hash
//! name suffix kustomize computes for them.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::kustomization::{GeneratorEntry, GeneratorOptions};
use super::resource::Resource;
use super::{KustomizeError, Loader};
use crate::tree::RepoPath;

/// Which generator is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratedKind {
    /// configMapGenerator.
    ConfigMap,
    /// secretGenerator.
    Secret,
}

/// Builds one generated object from its entry in the kustomization at `dir`.
pub fn generate(
    loader: &Loader<'_>,
    dir: &RepoPath,
    kind: GeneratedKind,
    entry: &GeneratorEntry,
    global: Option<&GeneratorOptions>,
) -> Result<Resource, KustomizeError> {
    let name = entry.name.clone().unwrap_or_default();
    let err = |message: String| KustomizeError::Generator {
        dir: dir.to_string(),
        name: name.clone(),
        message,
    };
    if name.is_empty() {
        return Err(err("generator has no 'name'; add one".into()));
    }
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut envs = entry.envs.clone();
    if let Some(e) = &entry.env {
        envs.push(e.clone());
    }
    for env in &envs {
        let path = loader.file_in(dir, env)?;
        let text = loader.read_text(&path)?;
        // Lines as kustomize scans them: split at '\n', one '\r' before it (or at the
        // end of the file) dropped, a byte order mark skipped on the first line only;
        // a lone '\r' elsewhere stays in the value.
        let text = text.strip_suffix('\n').unwrap_or(&text);
        for (lineno, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = if lineno == 0 {
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(err(format!(
                    "{path}:{}: line '{line}' is not KEY=value (rollwave does not read values from its own environment)",
                    lineno + 1
                )));
            };
            pairs.push((k.to_string(), v.as_bytes().to_vec()));
        }
    }
    for lit in &entry.literals {
        let Some((k, v)) = lit.split_once('=') else {
            return Err(err(format!("literal '{lit}' is not KEY=value")));
        };
        pairs.push((k.to_string(), strip_quotes(v).as_bytes().to_vec()));
    }
    for file in &entry.files {
        let (key, rel) = match file.split_once('=') {
            Some((k, p)) => (k.to_string(), p.to_string()),
            None => (
                file.rsplit('/').next().unwrap_or(file).to_string(),
                file.clone(),
            ),
        };
        let path = loader.file_in(dir, &rel)?;
        let bytes = loader.read_bytes(&path)?;
        pairs.push((key, bytes));
    }
    let mut data: BTreeMap<String, Value> = BTreeMap::new();
    let mut binary: BTreeMap<String, Value> = BTreeMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (k, v) in pairs {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(format!(
                "key '{k}' is not a valid ConfigMap/Secret key (letters, digits, '-', '_', '.')"
            )));
        }
        if data.contains_key(&k) || binary.contains_key(&k) {
            return Err(err(format!(
                "key '{k}' is defined twice; each key may appear once"
            )));
        }
        match kind {
            GeneratedKind::Secret => {
                data.insert(k, Value::String(wrapped_base64(&b64.encode(&v))));
            }
            GeneratedKind::ConfigMap => match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::String(s));
                }
                Err(e) => {
                    binary.insert(k, Value::String(wrapped_base64(&b64.encode(e.as_bytes()))));
                }
            },
        }
    }
    let opts = GeneratorOptions::merged(global, entry.options.as_ref());
    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(name.clone()));
    if let Some(ns) = &entry.namespace {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    if !opts.labels.is_empty() {
        meta.insert("labels".into(), json!(opts.labels));
    }
    if !opts.annotations.is_empty() {
        meta.insert("annotations".into(), json!(opts.annotations));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert(
        "kind".into(),
        json!(match kind {
            GeneratedKind::ConfigMap => "ConfigMap",
            GeneratedKind::Secret => "Secret",
        }),
    );
    obj.insert("metadata".into(), Value::Object(meta));
    // kustomize creates a Secret's `data` map before filling it, so a Secret with no
    // sources prints `data: {}` (and hashes it); a ConfigMap gets `data` per key.
    if !data.is_empty() || kind == GeneratedKind::Secret {
        obj.insert("data".into(), json!(data));
    }
    if !binary.is_empty() {
        obj.insert("binaryData".into(), json!(binary));
    }
    if kind == GeneratedKind::Secret {
        obj.insert(
            "type".into(),
            json!(entry.secret_type.clone().unwrap_or_else(|| "Opaque".into())),
        );
    }
    if opts.immutable == Some(true) {
        obj.insert("immutable".into(), json!(true));
    }
    let mut res = Resource::new(obj, format!("{dir} (generator '{name}')"));
    res.needs_hash = opts.disable_name_suffix_hash != Some(true);
    res.behavior = Some(entry.behavior.unwrap_or_default());
    Ok(res)
}

/// kustomize breaks generated base64 into lines of 70 characters, each ending in a
/// newline, once the text reaches 70 characters (shorter text stays one line). The
/// name hash sees the same text, so this decides generated names too.
fn wrapped_base64(encoded: &str) -> String {
    const LINE: usize = 70;
    if encoded.len() < LINE {
        return encoded.to_string();
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 1);
    for chunk in encoded.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

fn strip_quotes(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Go's `encoding/json` escapes these characters; the hash must see the same bytes.
fn go_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The ten-character suffix kustomize appends to generated names: sha256 over a JSON
/// encoding of the kind, type and data, with some hex digits swapped for letters so
/// the suffix never looks like a number.
pub fn name_hash(obj: &Map<String, Value>) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let field = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => json!(""),
        Some(v) => v.clone(),
    };
    // kustomize looks the name up with a path its YAML library does not resolve, so the
    // name always hashes as "" (kept for output compatibility).
    let mut m = Map::new();
    m.insert("kind".into(), json!(kind));
    m.insert("name".into(), json!(""));
    m.insert("data".into(), field("data"));
    match kind {
        "Secret" => {
            m.insert("type".into(), field("type"));
            if let Some(sd @ Value::Object(_)) = obj.get("stringData") {
                m.insert("stringData".into(), sd.clone());
            }
        }
        _ => {
            if let Some(bd @ Value::Object(_)) = obj.get("binaryData") {
                m.insert("binaryData".into(), bd.clone());
            }
        }
    }
    let encoded = go_json(&Value::Object(m));
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn config_map_hash_matches_kustomize() {
        // `kubectl kustomize` names a ConfigMap with data {a: b} g-4h2mbtbbt6.
        let cm = obj(json!({"kind": "ConfigMap", "metadata": {"name": "g"}, "data": {"a": "b"}}));
        assert_eq!(name_hash(&cm), "4h2mbtbbt6");
    }

    #[test]
    fn hash_ignores_labels_but_not_data() {
        let a = obj(
            json!({"kind": "ConfigMap", "metadata": {"labels": {"x": "y"}}, "data": {"a": "b"}}),
        );
        let b = obj(json!({"kind": "ConfigMap", "data": {"a": "b"}}));
        let c = obj(json!({"kind": "ConfigMap", "data": {"a": "c"}}));
        assert_eq!(name_hash(&a), name_hash(&b));
        assert_ne!(name_hash(&b), name_hash(&c));
    }

    #[test]
    fn long_base64_is_wrapped_at_70_columns_as_kustomize_does() {
        let short = "a".repeat(69);
        assert_eq!(wrapped_base64(&short), short);
        let exact = "b".repeat(70);
        assert_eq!(wrapped_base64(&exact), format!("{exact}\n"));
        let long = "c".repeat(150);
        assert_eq!(
            wrapped_base64(&long),
            format!(
                "{}\n{}\n{}\n",
                "c".repeat(70),
                "c".repeat(70),
                "c".repeat(10)
            )
        );
    }

    proptest::proptest! {
        #[test]
        fn hash_is_ten_chars_and_never_all_digits(k in "[a-z]{1,8}", v in ".{0,40}") {
            let cm = obj(json!({"kind": "ConfigMap", "data": {k: v}}));
            let h = name_hash(&cm);
            proptest::prop_assert_eq!(h.len(), 10);
            proptest::prop_assert!(!h.chars().any(|c| matches!(c, '0' | '1' | '3' | 'a' | 'e')));
        }
    }
}
