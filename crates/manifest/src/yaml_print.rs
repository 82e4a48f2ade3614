//! The YAML printer: writes a JSON value the way kustomize prints a built resource.
//!
//! kustomize turns every resource into JSON and prints that with the YAML library it
//! bundles for JSON-to-YAML conversion (go-yaml's v2 line, a port of libyaml's
//! emitter). Nothing of how the input was written survives that trip, so the bytes
//! follow from the data alone, by these rules:
//!
//! - Map keys are sorted in a natural order: runs of digits compare as numbers, and
//!   at the first difference a letter sorts after any other character.
//! - A string goes out plain unless a plain scalar would read back as something
//!   else (a number, `true`, `yes`, `on`, `null`, `~`, a date, a base-60 number such
//!   as `1:20`), in which case it is double-quoted. A string holding a line break
//!   is a literal block (`|`).
//! - The emitter may still refuse the chosen style: a plain scalar starting with an
//!   indicator (`*`, `&`, `'`, `- `, ...) or holding `: ` or ` #`, leading or trailing
//!   spaces, becomes single-quoted; text that cannot be single-quoted or put in a
//!   block (tabs, control characters, a space before a line break, characters
//!   beyond the Basic Multilingual Plane) becomes double-quoted with escapes.
//! - Plain and quoted scalars are folded at the first single space once a line is
//!   longer than 80 columns; continuation lines are indented two more than the key.
//! - Lists inside maps are not indented (`key:` then `- item` at the key's column);
//!   empty lists and maps are written `[]` and `{}`.

use std::cmp::Ordering;

use serde_json::Value;

/// The width past which plain and quoted scalars are folded.
const BEST_WIDTH: usize = 80;
/// Spaces per indentation level.
const BEST_INDENT: i64 = 2;
/// Longest key (in bytes) written as a simple `key: value`; longer ones use `? key`.
const MAX_SIMPLE_KEY: usize = 128;

/// Prints one value as a YAML document ending in a line break (no leading `---`).
pub(crate) fn document(value: &Value) -> String {
    let mut e = Emitter::default();
    e.node(value, Context::ROOT);
    // The document end: a line break unless one was just written. (A final kept
    // break does not make the library end the document with `...`.)
    e.write_indent();
    e.out
}

/// Where a node is written.
#[derive(Clone, Copy)]
struct Context {
    mapping: bool,
    simple_key: bool,
}

impl Context {
    const ROOT: Context = Context {
        mapping: false,
        simple_key: false,
    };
    const SEQUENCE: Context = Context {
        mapping: false,
        simple_key: false,
    };
    const MAPPING: Context = Context {
        mapping: true,
        simple_key: false,
    };
    const KEY: Context = Context {
        mapping: true,
        simple_key: true,
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Emitter {
    out: String,
    /// Characters on the current line.
    column: usize,
    indent: i64,
    indents: Vec<i64>,
    /// The last character written is a blank (or nothing was written yet).
    whitespace: bool,
    /// Only indentation is on the current line so far.
    indention: bool,
}

impl Default for Emitter {
    fn default() -> Self {
        Emitter {
            out: String::new(),
            column: 0,
            indent: -1,
            indents: Vec::new(),
            whitespace: true,
            indention: true,
        }
    }
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn restore_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn indicator(
        &mut self,
        text: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in text.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn node(&mut self, value: &Value, ctx: Context) {
        match value {
            Value::Null => self.scalar("null", Style::Plain, ctx),
            Value::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain, ctx),
            Value::Number(n) => self.scalar(&number(n), Style::Plain, ctx),
            Value::String(s) => self.scalar(s, string_style(s), ctx),
            Value::Array(items) if items.is_empty() => self.empty_flow("[", "]"),
            Value::Object(map) if map.is_empty() => self.empty_flow("{", "}"),
            Value::Array(items) => {
                self.increase_indent(false, ctx.mapping && !self.indention);
                for item in items {
                    self.write_indent();
                    self.indicator("-", true, false, true);
                    self.node(item, Context::SEQUENCE);
                }
                self.restore_indent();
            }
            Value::Object(map) => {
                let keys = sorted_keys(map.keys().map(String::as_str).collect());
                self.increase_indent(false, false);
                for key in keys {
                    self.write_indent();
                    let simple = key.len() <= MAX_SIMPLE_KEY && !key.chars().any(is_break);
                    if simple {
                        self.scalar(key, string_style(key), Context::KEY);
                        self.indicator(":", false, false, false);
                    } else {
                        self.indicator("?", true, false, true);
                        self.scalar(key, string_style(key), Context::MAPPING);
                        self.write_indent();
                        self.indicator(":", true, false, true);
                    }
                    self.node(&map[key], Context::MAPPING);
                }
                self.restore_indent();
            }
        }
    }

    fn empty_flow(&mut self, open: &str, close: &str) {
        self.indicator(open, true, true, false);
        self.indicator(close, false, false, false);
    }

    fn scalar(&mut self, text: &str, requested: Style, ctx: Context) {
        let style = select_style(text, requested, ctx.simple_key);
        self.increase_indent(true, false);
        let allow_breaks = !ctx.simple_key;
        match style {
            Style::Plain => self.plain(text, allow_breaks),
            Style::Single => self.single_quoted(text, allow_breaks),
            Style::Double => self.double_quoted(text, allow_breaks),
            Style::Literal => self.literal(text),
        }
        self.restore_indent();
    }

    fn plain(&mut self, text: &str, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_is_space {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                // A plain scalar never holds a line break: the style is refused first.
                self.put(c);
                self.indention = false;
                spaces = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn single_quoted(&mut self, text: &str, allow_breaks: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        let last = chars.len().saturating_sub(1);
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < last
                    && !next_is_space
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                // Single quotes are refused for text holding line breaks.
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
            }
        }
        self.indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn double_quoted(&mut self, text: &str, allow_breaks: bool) {
        self.indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        // libyaml looks for a byte order mark at the start of the value, not at the
        // character at hand: a value starting with one has every character escaped.
        let starts_with_bom = chars.first() == Some(&'\u{feff}');
        let last = chars.len().saturating_sub(1);
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || starts_with_bom || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{07}' => self.put('a'),
                    '\u{08}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{0b}' => self.put('v'),
                    '\u{0c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    _ => {
                        let v = c as u32;
                        let (letter, digits) = if v <= 0xff {
                            ('x', 2)
                        } else if v <= 0xffff {
                            ('u', 4)
                        } else {
                            ('U', 8)
                        };
                        self.put(letter);
                        for k in (0..digits).rev() {
                            let digit = (v >> (k * 4)) & 0xf;
                            self.put(
                                char::from_digit(digit, 16).map_or('0', |d| d.to_ascii_uppercase()),
                            );
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i > 0 && i < last {
                    self.write_indent();
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn literal(&mut self, text: &str) {
        self.indicator("|", true, false, false);
        // Block scalar hints: an indentation indicator when the text starts with a
        // blank line or a space, `-` without a final break, `+` with several.
        if text.starts_with(' ') || text.starts_with(is_break) {
            self.indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let mut rev = text.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some("-"),
            (Some(c), _) if !is_break(c) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(c)) if is_break(c) => Some("+"),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.indicator(chomp, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in text.chars() {
            if is_break(c) {
                if c == '\n' {
                    self.put_break();
                } else {
                    self.out.push(c);
                    self.column = 0;
                }
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The characters libyaml writes as they are: line feed, printable ASCII and the rest
/// of the Basic Multilingual Plane but surrogates, the byte order mark, U+FFFE/U+FFFF.
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~' | '\u{a0}'..='\u{d7ff}')
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

/// The style the JSON-to-YAML conversion asks for a string: literal when it holds a
/// line feed, plain when a plain scalar reads back as the same string, else double
/// quotes.
fn string_style(s: &str) -> Style {
    if s.contains('\n') {
        Style::Literal
    } else if plain_reads_as_string(s) {
        Style::Plain
    } else {
        Style::Double
    }
}

/// What the emitter allows a scalar, from its characters.
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = value.chars().collect();
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let mut line_breaks = false;
    let mut special_characters = false;
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let last = chars.len() - 1;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = chars.get(i + 1).is_none_or(|&n| is_blank(n));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special_characters = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank(c) || is_break(c) || c == '\0';
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space || space_break || special_characters {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// The style the emitter writes: the requested one unless the text or the place
/// refuses it (always in block context: flow collections are only ever empty here).
fn select_style(value: &str, requested: Style, simple_key: bool) -> Style {
    let a = analyze(value);
    let mut style = requested;
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.block_plain_allowed || (value.is_empty() && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    style
}

/// Whether `s` written plain reads back as the string `s` under the YAML 1.1 rules of
/// the library kustomize prints with: not null, a boolean (`yes`, `on`, `y`, ...), a
/// number (decimal, `0x`, `0o`-less octal, `0b`, `_` separators, floats, `.inf`,
/// `.nan`), a date or time, or a base-60 number. Only text starting with a sign, a
/// digit, a point or one of `yYnNtTfFoO~` is looked at (so `<<` stays plain).
pub(crate) fn plain_reads_as_string(s: &str) -> bool {
    const OTHER_TYPES: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no",
        "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null", "Null",
        "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF",
    ];
    let Some(first) = s.bytes().next() else {
        return false;
    };
    let hinted =
        matches!(first, b'+' | b'-' | b'0'..=b'9' | b'.') || b"yYnNtTfFoO~".contains(&first);
    if !hinted {
        return true;
    }
    if OTHER_TYPES.contains(&s) {
        return false;
    }
    match first {
        b'.' => !go_parses_float(s),
        b'+' | b'-' | b'0'..=b'9' => {
            if is_timestamp(s) {
                return false;
            }
            let plain = s.replace('_', "");
            if go_parses_int(&plain) || is_yaml_float(&plain) && go_parses_float(&plain) {
                return false;
            }
            if let Some(bits) = plain
                .strip_prefix("-0b")
                .or_else(|| plain.strip_prefix("0b"))
                && !bits.is_empty()
                && bits.bytes().all(|b| b == b'0' || b == b'1')
            {
                return false;
            }
            !is_base60_float(s)
        }
        _ => true,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeds: an optional
/// sign (for the signed reading), then decimal, `0x` hex, `0o`/`0` octal or `0b`
/// binary digits (underscores are removed before), within 64 bits.
fn go_parses_int(s: &str) -> bool {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) if negative => v <= 1u128 << 63,
        Ok(v) => v <= u64::MAX as u128,
        Err(_) => false,
    }
}

/// The YAML float pattern go-yaml checks before parsing: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` succeeds: decimal or hexadecimal floats, `inf`,
/// `infinity` and `nan` in any case, and no result out of range.
fn go_parses_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity") {
        return true;
    }
    if lower == "nan" {
        return s == body;
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        // Hexadecimal floats need a `p` exponent.
        let Some((mantissa, exp)) = hex.split_once('p') else {
            return false;
        };
        let mantissa_ok = {
            let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            !(int.is_empty() && frac.is_empty())
                && int
                    .chars()
                    .chain(frac.chars())
                    .all(|c| c.is_ascii_hexdigit())
        };
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        return mantissa_ok && !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit());
    }
    // Decimal: digits with at most one point, an optional exponent.
    let (mantissa, exp) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return false;
    }
    if let Some(exp) = exp {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    // Out of range is an error in Go (a too small value rounds to zero, no error).
    s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// go-yaml's base-60 float pattern (`1:20`, `-1:30:00.5`), quoted for other readers.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) && i - start < 2 {
            i += 1;
        }
        let group = &b[start..i];
        let ok = match group {
            [d] => d.is_ascii_digit(),
            [a, _] => (b'0'..=b'5').contains(a),
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// A date (`2001-12-14`) or date and time as go-yaml reads them: four digits and a
/// dash first, then one of its layouts with one- or two-digit fields.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some((b[i], &s[i + 1..]))),
        None => (s, None),
    };
    let Some((month, day)) = date[5..].split_once('-') else {
        return false;
    };
    let in_range = |f: &str, lo: u32, hi: u32| {
        (1..=2).contains(&f.len())
            && f.chars().all(|c| c.is_ascii_digit())
            && f.parse::<u32>().is_ok_and(|v| (lo..=hi).contains(&v))
    };
    if !in_range(month, 1, 12) || !in_range(day, 1, 31) {
        return false;
    }
    let Some((sep, time)) = rest else {
        return true;
    };
    // Time: h:m:s with an optional fraction; a zone (`Z` or ±hh:mm) after `T`/`t`, none
    // after a space.
    let (clock, zone) = if sep == b' ' {
        (time, "")
    } else {
        match time.find(['Z', '+', '-']) {
            Some(i) => (&time[..i], &time[i..]),
            None => return false,
        }
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let fields: Vec<&str> = hms.split(':').collect();
    let [h, m, sec] = fields[..] else {
        return false;
    };
    if !in_range(h, 0, 23) || !in_range(m, 0, 59) || !in_range(sec, 0, 59) {
        return false;
    }
    if clock.contains('.') && (frac.is_empty() || !frac.chars().all(|c| c.is_ascii_digit())) {
        return false;
    }
    if sep == b' ' {
        return true;
    }
    if zone == "Z" {
        return true;
    }
    let Some((zh, zm)) = zone[1..].split_once(':') else {
        return false;
    };
    zh.len() == 2 && zm.len() == 2 && in_range(zh, 0, 23) && in_range(zm, 0, 59)
}

/// A number as kustomize prints it after its JSON round trip: integers in decimal;
/// a float that Go's JSON encoder writes without a point or exponent (a whole number
/// below 1e21) reads back as an integer when it fits 64 bits; any other float is
/// written as Go's `%g` writes it (shortest digits, exponent from 1e+06 or below 1e-04).
fn number(n: &serde_json::Number) -> String {
    let Some(f) = n.as_f64().filter(|_| n.is_f64()) else {
        return n.to_string();
    };
    if f.fract() == 0.0 && f.abs() < 1e21 {
        // Go writes the shortest digits that read back, padded with zeros, as Rust does.
        let text = format!("{f}");
        let fits = text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok();
        if fits {
            return text;
        }
    }
    go_format_g(f)
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`.
fn go_format_g(f: f64) -> String {
    // Rust's `{:e}` gives the shortest digits that read back: `d.ddde<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() && f != 0.0 {
        "-"
    } else {
        ""
    };
    if !(-4..6).contains(&exp) {
        let mut out = format!("{sign}{}", &digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{exp_sign}{:02}", exp.abs()));
        return out;
    }
    // Positional: the point after exp+1 digits.
    let point = exp + 1;
    let mut out = String::from(sign);
    if point <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-point) as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// The keys in [`natural_order`], by a merge sort that tolerates an order that is not
/// total (the library's is not on every input) where the standard sort may panic.
fn sorted_keys(keys: Vec<&str>) -> Vec<&str> {
    if keys.len() <= 1 {
        return keys;
    }
    let mut right = keys;
    let left = right.drain(..right.len() / 2).collect();
    let (left, right) = (sorted_keys(left), sorted_keys(right));
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        if natural_order(b, a) == Ordering::Less {
            out.extend(r.next());
        } else {
            out.extend(l.next());
        }
    }
    out.extend(l);
    out.extend(r);
    out
}

/// go-yaml's order of map keys: character by character; at the first difference, two
/// letters compare as characters, a letter sorts after a non-letter, and otherwise
/// the runs of digits starting there compare as numbers (then by length).
pub(crate) fn natural_order(a: &str, b: &str) -> Ordering {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let digit = |c: char| c.is_ascii_digit();
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            // A zero after a nonzero digit is part of a number already running.
            for j in (0..i).rev() {
                if !digit(ar[j]) {
                    break;
                }
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_quoted_only_where_a_plain_scalar_reads_as_another_type() {
        for s in [
            "1.29.1",
            "v1",
            "10.0.0.1",
            "yes please",
            "0xZZ",
            "2024-01-15-x",
            "1:75",
        ] {
            assert!(plain_reads_as_string(s), "{s}");
        }
        for s in [
            "",
            "~",
            "null",
            "yes",
            "On",
            "n",
            "TRUE",
            "1",
            "-1",
            "+1",
            "08",
            "0755",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "1.5",
            ".5",
            "1e3",
            "-.inf",
            ".NaN",
            "1:20",
            "-1:30:00.5",
            "2024-01-15",
            "2024-1-5",
            "2024-01-15T10:00:00Z",
            "2024-01-15 10:00:00",
            "18446744073709551615",
            "99999999999999999999",
        ] {
            assert!(!plain_reads_as_string(s), "{s}");
        }
    }

    #[test]
    fn numbers_print_as_go_prints_them_after_a_json_round_trip() {
        let n = |v: Value| number(v.as_number().unwrap());
        assert_eq!(n(json!(3)), "3");
        assert_eq!(n(json!(1.5)), "1.5");
        assert_eq!(n(json!(100000.5)), "100000.5");
        assert_eq!(n(json!(1234567.5)), "1.2345675e+06");
        assert_eq!(n(json!(0.0001)), "0.0001");
        assert_eq!(n(json!(0.00001)), "1e-05");
        assert_eq!(n(json!(-2.5e-300)), "-2.5e-300");
        assert_eq!(n(json!(1e20)), "1e+20");
        assert_eq!(n(json!(1e18)), "1000000000000000000");
        assert_eq!(n(json!(9007199254740993.0)), "9007199254740992");
    }

    #[test]
    fn keys_sort_in_natural_order() {
        let mut keys = vec!["a10", "a9", "A", "_x", "1", "10", "9", "b01", "b1", "", "Z"];
        keys = sorted_keys(keys);
        assert_eq!(
            keys,
            ["", "_x", "1", "9", "10", "A", "Z", "a9", "a10", "b1", "b01"]
        );
    }

    #[test]
    fn long_scalars_fold_after_the_eightieth_column() {
        let words = vec!["word"; 30].join(" ");
        let out =
            document(&json!({ "k": words, "q": format!("*{words}"), "d": format!("\t{words}") }));
        for line in out.lines() {
            assert!(line.len() <= 86, "{line}");
        }
        assert!(out.contains("\nq: '*word"), "{out}");
        assert!(out.starts_with("d: \"\\tword"), "{out}");
        let back: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(back["k"], json!(words));
        assert_eq!(back["q"], json!(format!("*{words}")));
        assert_eq!(back["d"], json!(format!("\t{words}")));
    }
}
