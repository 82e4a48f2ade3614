//! The documentation's links lead somewhere. README.md, CONTRIBUTING.md, every Markdown
//! file under docs/, deploy/README.md and examples/README.md are read; every relative
//! link in them must open a file of the repository and, when it names a `#heading` of
//! a Markdown file, a heading of that file; and every document under docs/ must be
//! reachable from README.md by following links, so none is written and then lost.
//!
//! The README grew to two thousand lines and was split into a book under docs/;
//! sections that move leave `README.md#...` links and "see the README" anchors behind,
//! and this test names each with its file and line instead of a reader finding it.
//!
//! A link is `[text](target)` (images too) outside fenced code blocks and inline code
//! spans; http, https and mailto targets are not followed. An anchor is GitHub's slug
//! of a heading: lower case, every character but letters, digits, spaces, hyphens and
//! underscores removed, spaces turned into hyphens, and `-1`, `-2`, ... appended to
//! repeated headings.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documents checked, as paths relative to the root with `/` separators.
fn documents() -> Vec<String> {
    let mut docs: Vec<String> = [
        "README.md",
        "CONTRIBUTING.md",
        "deploy/README.md",
        "examples/README.md",
    ]
    .iter()
    .filter(|doc| root().join(doc).is_file())
    .map(|doc| doc.to_string())
    .collect();
    collect_markdown(&root().join("docs"), &mut docs);
    docs.sort();
    docs.dedup();
    docs
}

fn collect_markdown(dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_markdown(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "md") {
            let relative = path.strip_prefix(root()).unwrap();
            let parts: Vec<_> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect();
            out.push(parts.join("/"));
        }
    }
}

fn read(doc: &str) -> String {
    std::fs::read_to_string(root().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

/// The text with every line of a fenced code block (fences included) emptied; line
/// numbers stay as they were.
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(u8, usize)> = None;
    for line in text.split('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.bytes().next().filter(|b| *b == b'`' || *b == b'~');
        let run = marker.map_or(0, |m| trimmed.bytes().take_while(|b| *b == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => fence = Some((m, run)),
            (None, _) => out.push_str(line),
            (Some((m, n)), Some(found))
                if found == m && run >= n && trimmed[run..].trim().is_empty() =>
            {
                fence = None
            }
            (Some(_), _) => {}
        }
        out.push('\n');
    }
    out
}

/// The bytes of the text with every inline code span blanked out (line breaks kept),
/// so that a link written as code is not taken for one.
fn without_code_spans(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = backticks_at(&bytes, i);
        match closing_run(&bytes, i + run, run) {
            Some(close) => {
                for byte in &mut bytes[i..close + run] {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
                i = close + run;
            }
            None => i += run,
        }
    }
    bytes
}

fn backticks_at(bytes: &[u8], at: usize) -> usize {
    bytes[at..].iter().take_while(|b| **b == b'`').count()
}

/// Where the next run of exactly `run` backticks starts, from `from` on.
fn closing_run(bytes: &[u8], from: usize, run: usize) -> Option<usize> {
    let mut k = from;
    while k < bytes.len() {
        if bytes[k] == b'`' {
            let n = backticks_at(bytes, k);
            if n == run {
                return Some(k);
            }
            k += n;
        } else {
            k += 1;
        }
    }
    None
}

#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// Every `[text](target)` outside code, with the line its text starts on.
fn links(text: &str) -> Vec<Link> {
    let prose = without_code_spans(&without_fences(text));
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = prose[from..].windows(2).position(|w| w == b"](") {
        let close = from + offset;
        from = close + 2;
        let Some(open) = opening_bracket(&prose, close) else {
            continue;
        };
        let Some(len) = prose[close + 2..].iter().position(|b| *b == b')') else {
            continue;
        };
        let target = String::from_utf8_lossy(&prose[close + 2..close + 2 + len])
            .trim()
            .to_string();
        if target.is_empty() || target.contains(char::is_whitespace) {
            continue;
        }
        let line = prose[..open].iter().filter(|b| **b == b'\n').count() + 1;
        found.push(Link { line, target });
    }
    found
}

/// The `[` that opens the link text whose `]` is at `close`, within one paragraph.
fn opening_bracket(prose: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, byte) in prose[..=close].iter().enumerate().rev() {
        match *byte {
            b']' => depth += 1,
            b'[' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            b'\n' if j > 0 && prose[j - 1] == b'\n' => return None,
            _ => {}
        }
    }
    None
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every ATX heading (`#` to `######`) outside code blocks.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut found = BTreeSet::new();
    for line in without_fences(text).lines() {
        let level = line.bytes().take_while(|b| *b == b'#').count();
        let rest = &line[level..];
        if level == 0 || level > 6 || !(rest.is_empty() || rest.starts_with(' ')) {
            continue;
        }
        let base = slug(rest.trim().trim_end_matches('#').trim());
        let repeats = seen.entry(base.clone()).or_insert(0);
        found.insert(if *repeats == 0 {
            base
        } else {
            format!("{base}-{repeats}")
        });
        *repeats += 1;
    }
    found
}

/// A relative link target as a path from the root, or None when it leaves the
/// repository.
fn resolve(from: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

struct Survey {
    documents: Vec<String>,
    /// `FILE:LINE: link TARGET: what is wrong`, one per broken link.
    problems: Vec<String>,
    /// The Markdown files each document links to.
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn survey() -> Survey {
    let documents = documents();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut headings: HashMap<String, BTreeSet<String>> = HashMap::new();
    for doc in &documents {
        for Link { line, target } in links(&read(doc)) {
            if ["http://", "https://", "mailto:"]
                .iter()
                .any(|scheme| target.starts_with(scheme))
            {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let dest = if path.is_empty() {
                doc.clone()
            } else {
                match resolve(doc, path) {
                    None => {
                        problems.push(format!(
                            "{doc}:{line}: link {target}: leaves the repository"
                        ));
                        continue;
                    }
                    Some(dest) if !root().join(&dest).exists() => {
                        problems.push(format!("{doc}:{line}: link {target}: no file {dest}"));
                        continue;
                    }
                    Some(dest) => dest,
                }
            };
            if !dest.ends_with(".md") {
                continue;
            }
            edges.entry(doc.clone()).or_default().insert(dest.clone());
            if anchor.is_empty() {
                continue;
            }
            let known = headings
                .entry(dest.clone())
                .or_insert_with(|| anchors(&read(&dest)));
            if !known.contains(anchor) {
                problems.push(format!(
                    "{doc}:{line}: link {target}: no heading of {dest} has the anchor #{anchor}"
                ));
            }
        }
    }
    Survey {
        documents,
        problems,
        edges,
    }
}

#[test]
fn every_relative_link_in_the_docs_opens_a_file_and_heading() {
    let survey = survey();
    assert!(
        survey.problems.is_empty(),
        "{} broken links:\n{}",
        survey.problems.len(),
        survey.problems.join("\n")
    );
}

#[test]
fn every_document_is_reachable_from_the_readme() {
    let survey = survey();
    let start = "README.md".to_string();
    let mut reached = BTreeSet::from([start.clone()]);
    let mut queue = VecDeque::from([start]);
    while let Some(doc) = queue.pop_front() {
        for next in survey.edges.get(&doc).into_iter().flatten() {
            if reached.insert(next.clone()) {
                queue.push_back(next.clone());
            }
        }
    }
    let lost: Vec<String> = survey
        .documents
        .iter()
        .filter(|doc| doc.starts_with("docs/") && !reached.contains(*doc))
        .map(|doc| format!("{doc}: no chain of links from README.md leads here; link it from the README's table of contents"))
        .collect();
    assert!(
        lost.is_empty(),
        "{} documents cannot be reached:\n{}",
        lost.len(),
        lost.join("\n")
    );
}

#[test]
fn links_written_as_code_are_not_followed() {
    let text = "[a](a.md) `[b](b.md)` ``x `[c](c.md)` y``\n\n```\n[d](d.md)\n```\n[e\nf](e.md)\n";
    let found = links(text);
    let targets: Vec<(usize, &str)> = found
        .iter()
        .map(|link| (link.line, link.target.as_str()))
        .collect();
    assert_eq!(targets, [(1, "a.md"), (6, "e.md")]);
}

#[test]
fn anchors_are_github_slugs_with_repeats_numbered() {
    let text = "# rollwave\n## What `cargo test` needs\n## Status: the Git store\n## Looking at it\n### Looking at it\n```\n# not a heading\n```\n";
    let expected = [
        "rollwave",
        "what-cargo-test-needs",
        "status-the-git-store",
        "looking-at-it",
        "looking-at-it-1",
    ];
    assert_eq!(
        anchors(text),
        expected
            .iter()
            .map(|a| a.to_string())
            .collect::<BTreeSet<_>>()
    );
}
