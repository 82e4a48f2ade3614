//! One quirk of the YAML reader kustomize uses, reproduced: a keep-chomped block
//! scalar (`|+`, `>+`) that ends a document, followed by an empty line and then only
//! comments up to the end of the document, reads with one line break more than YAML
//! says (`x`, an empty line and `#` give `"x\n\n\n"`, not `"x\n\n"`). With content
//! after the comment, or no empty line before it, the value is as YAML says. Found by
//! the differential test against `kubectl kustomize` (golden case 199).

use std::borrow::Cow;

/// `text` with one empty line added after every keep-chomped block scalar that the
/// quirk lengthens, so that a YAML reader gives kustomize's value; `text` itself when
/// there is none (almost always).
pub fn as_kustomize_reads(text: &str) -> Cow<'_, str> {
    if !text.contains('+') {
        return Cow::Borrowed(text);
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut lengthen = Vec::new();
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        if is_document_marker(line) {
            lengthen.extend(scalar_to_lengthen(&lines[start..i]).map(|k| start + k));
            start = i + 1;
        }
    }
    lengthen.extend(scalar_to_lengthen(&lines[start..]).map(|k| start + k));
    if lengthen.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + lengthen.len() * 2);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        if lengthen.contains(&i) {
            out.push_str(if line.ends_with("\r\n") { "\r\n" } else { "\n" });
        }
    }
    Cow::Owned(out)
}

fn is_document_marker(line: &str) -> bool {
    let l = line.trim_end_matches(['\r', '\n']);
    (l.starts_with("---") || l.starts_with("...")) && l[3..].chars().all(char::is_whitespace)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The line of `doc` after which an empty line is to be added: the last content line
/// of a keep-chomped block scalar that ends the document, when an empty line and then
/// only comments and empty lines follow it.
fn scalar_to_lengthen(doc: &[&str]) -> Option<usize> {
    let last = doc.iter().rposition(|l| !is_blank(l) && !is_comment(l))?;
    let trailing = &doc[last + 1..];
    if !trailing.first().is_some_and(|l| is_blank(l)) || !trailing.iter().any(|l| is_comment(l)) {
        return None;
    }
    // The scalar's header: the nearest line above that is indented less.
    let content_indent = indent(doc[last]);
    let header = doc[..last]
        .iter()
        .rposition(|l| !is_blank(l) && indent(l) < content_indent)?;
    let body_indent = doc[header + 1..=last]
        .iter()
        .filter(|l| !is_blank(l))
        .map(|l| indent(l))
        .min()?;
    // A comment indented as deep as the content would be content, not a comment.
    if trailing
        .iter()
        .any(|l| is_comment(l) && indent(l) >= body_indent)
    {
        return None;
    }
    keeps_final_breaks(doc[header]).then_some(last)
}

/// Whether `line` ends with a keep-chomped block scalar header (`|+`, `>+`, with an
/// optional indentation digit on either side of the `+`, and an optional comment).
fn keeps_final_breaks(line: &str) -> bool {
    let body = line.trim_end_matches(['\r', '\n']);
    let body = match body.find(" #") {
        Some(i) => &body[..i],
        None => body,
    }
    .trim_end();
    let token = body.rsplit([' ', '\t']).next().unwrap_or(body);
    let indicator = token.strip_prefix(['|', '>']);
    indicator.is_some_and(|rest| {
        rest.contains('+')
            && rest.chars().all(|c| c == '+' || c.is_ascii_digit())
            && rest.len() <= 2
    }) && (body.len() == token.len()
        || body[..body.len() - token.len()]
            .trim_end()
            .ends_with([':', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> String {
        as_kustomize_reads(text).into_owned()
    }

    #[test]
    fn a_keep_chomped_scalar_ending_a_document_before_an_empty_line_and_a_comment_gains_a_break() {
        let text = "a: |+\n  x\n\n#\n";
        assert_eq!(read(text), "a: |+\n  x\n\n\n#\n");
        let folded = "b:\n  c: >+2\n    x\n\n  # note\n---\nd: 1\n";
        assert_eq!(
            read(folded),
            "b:\n  c: >+2\n    x\n\n\n  # note\n---\nd: 1\n"
        );
    }

    #[test]
    fn other_shapes_read_as_written() {
        for text in [
            "a: |+\n  x\n#\n",           // no empty line before the comment
            "a: |+\n  x\n\n# c\nb: 1\n", // content after the comment
            "a: |\n  x\n\n#\n",          // clipped
            "a: |+\n  x\n\n\n",          // no comment
            "a: |+\n  x\n\n  # c\n",     // indented as content: it is content
            "a: b\n\n#\n",               // not a block scalar
            "a: '|+'\n  \n#\n",
        ] {
            assert_eq!(read(text), text, "{text:?}");
        }
    }
}
