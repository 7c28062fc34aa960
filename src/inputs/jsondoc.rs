//! Where things start in a JSON document, for the loaders' error lines.
//!
//! serde_json reports a line for a syntax error but not where a value
//! starts. The inventory loaders first check the whole text with serde_json
//! (syntax and its recursion limit of 128), then use these helpers, which
//! only ever run on text serde_json accepted, to find the members of the
//! root object and the elements of one array. Each element is then handed
//! to serde_json on its own, so a bad entry is reported at the line where it
//! starts and the others still load. One forward pass over the bytes, no
//! recursion: nesting is a counter.

use super::leases::Errors;
use super::{LoadError, Loaded};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use std::ops::Range;

/// Maps byte offsets to 1-based line numbers.
pub(crate) struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        LineIndex { newlines }
    }

    /// The 1-based line holding byte `at`.
    pub(crate) fn line(&self, at: usize) -> usize {
        self.newlines.partition_point(|&n| n < at) + 1
    }
}

/// One `"key": value` of an object.
pub(crate) struct Member {
    pub key: String,
    pub key_at: usize,
    pub value: Range<usize>,
}

/// The text without a leading UTF-8 byte order mark (Windows PowerShell
/// writes one); the mark is on line 1, so lines do not move.
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Checks that `text` is one JSON value, within serde_json's nesting limit.
pub(crate) fn check_syntax(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<IgnoredAny>(text).map(|_| ())
}

/// serde_json's message without its trailing `at line L column C`.
pub(crate) fn bare_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    match s.strip_suffix(&tail) {
        Some(head) => head.to_string(),
        None => s,
    }
}

/// Deserializes the value at `range` of `text`; an error message names the
/// absolute line serde_json stopped at.
pub(crate) fn parse_at<T: DeserializeOwned>(
    text: &str,
    range: Range<usize>,
    lines: &LineIndex,
) -> Result<T, String> {
    let part = text.get(range.clone()).unwrap_or("");
    serde_json::from_str::<T>(part).map_err(|e| {
        if e.line() == 0 {
            bare_message(&e)
        } else {
            let line = lines.line(range.start) + e.line() - 1;
            format!("{} (line {line})", bare_message(&e))
        }
    })
}

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// From the opening quote at `i` to just past the closing one.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// From the first byte of a value at `i` to just past its end.
pub(crate) fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The members of the object whose `{` is at `at`, in document order.
pub(crate) fn members(text: &str, at: usize) -> Option<Vec<Member>> {
    let b = text.as_bytes();
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_at = i;
        let key_end = skip_string(b, i)?;
        let key: String = serde_json::from_str(text.get(key_at..key_end)?).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = value_end(b, start)?;
        out.push(Member {
            key,
            key_at,
            value: start..end,
        });
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The byte ranges of the elements of the array whose `[` is at `at`.
pub(crate) fn elements(text: &str, at: usize) -> Option<Vec<Range<usize>>> {
    let b = text.as_bytes();
    if b.get(at) != Some(&b'[') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, at + 1);
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let end = value_end(b, i)?;
        out.push(i..end);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

/// The top of a JSON document, located.
pub(crate) enum Root {
    Object(Vec<Member>),
    Array(Vec<Range<usize>>),
    /// A string, number, boolean or null.
    Scalar,
}

/// A checked JSON document with its top level located.
pub(crate) struct Doc<'a> {
    pub text: &'a str,
    pub lines: LineIndex,
    pub root: Root,
}

impl Doc<'_> {
    /// The 1-based line where byte `at` is.
    pub(crate) fn line(&self, at: usize) -> usize {
        self.lines.line(at)
    }

    pub(crate) fn parse<T: DeserializeOwned>(&self, range: Range<usize>) -> Result<T, String> {
        parse_at(self.text, range, &self.lines)
    }
}

/// Checks `text` with serde_json and locates its top level. The error is a
/// line (when serde_json gives one) and a message.
pub(crate) fn open(text: &str) -> Result<Doc<'_>, (Option<usize>, String)> {
    let text = strip_bom(text);
    if let Err(e) = check_syntax(text) {
        let line = (e.line() > 0).then_some(e.line());
        return Err((line, format!("not valid JSON: {}", bare_message(&e))));
    }
    let lines = LineIndex::new(text);
    let at = skip_ws(text.as_bytes(), 0);
    let located = match text.as_bytes().get(at) {
        Some(b'{') => members(text, at).map(Root::Object),
        Some(b'[') => elements(text, at).map(Root::Array),
        _ => Some(Root::Scalar),
    };
    match located {
        Some(root) => Ok(Doc { text, lines, root }),
        None => Err((
            None,
            "could not locate the top level of the JSON document".into(),
        )),
    }
}

/// A kind of JSON document (MDM inventory, app catalog): its shapes and
/// how one entry of each is read. [`load`] is the rest, the same for all.
pub(crate) trait DocKind {
    type Shape: Copy;
    type Item;
    /// The shapes accepted, for the error line of a document that is none.
    const SHAPES: &'static str;
    /// What an entry is called in error lines ("device", "app").
    const NOUN: &'static str;
    /// What the document is, for the line refusing a scalar ("an MDM inventory").
    const WHAT: &'static str;
    /// The document's shape and its entries (an object, or a non-empty
    /// array: [`load`] answers a scalar and an empty array itself).
    /// Problems at the top level that do not stop the load go to `errs`.
    fn sniff(doc: &Doc<'_>, errs: &mut Errors) -> Sniffed<Self::Shape>;
    /// One entry: the item and what was wrong inside it but not fatal;
    /// unknown keys are warned about through `errs`.
    fn entry(
        doc: &Doc<'_>,
        shape: Self::Shape,
        range: Range<usize>,
        errs: &mut Errors,
    ) -> Result<(Self::Item, Vec<String>), String>;
}

/// What [`DocKind::sniff`] found: a shape and its entries, nothing, or why
/// the document is refused (a line and a message).
pub(crate) type Sniffed<S> = Result<Option<(S, Vec<Range<usize>>)>, (Option<usize>, String)>;

/// Loads a JSON document of kind `K`: the syntax checked whole, the shape
/// sniffed, then each entry parsed on its own, so a bad one is reported at
/// its line (at most `MAX_ERRORS` listed) and the others still load.
pub(crate) fn load<K: DocKind>(text: &str, file: &str) -> Result<Loaded<K::Item>, LoadError> {
    let fail = |line: Option<usize>, message: String| LoadError {
        file: file.to_string(),
        line,
        message,
    };
    let doc = open(text).map_err(|(line, m)| fail(line, format!("{m}; {}", K::SHAPES)))?;
    let mut out = Loaded::default();
    let mut errs = Errors::new(file);
    match &doc.root {
        Root::Array(elements) if elements.is_empty() => return Ok(out),
        Root::Scalar => {
            return Err(fail(
                Some(1),
                format!("a JSON scalar, not {}; {}", K::WHAT, K::SHAPES),
            ));
        }
        _ => {}
    }
    let Some((shape, entries)) = K::sniff(&doc, &mut errs).map_err(|(l, m)| fail(l, m))? else {
        out.warnings = errs.take_warnings();
        return Ok(out);
    };
    for (n, range) in entries.into_iter().enumerate() {
        let line = doc.line(range.start);
        match K::entry(&doc, shape, range, &mut errs) {
            Ok((item, warnings)) => {
                for m in warnings {
                    errs.push(line, format!("{} {}: {m}", K::NOUN, n + 1));
                }
                out.items.push(item);
            }
            Err(m) => errs.push(line, format!("{} {} skipped: {m}", K::NOUN, n + 1)),
        }
    }
    out.warnings = errs.take_warnings();
    // In line order: the top level's are found first.
    out.warnings.sort_by_key(|w| w.line);
    out.errors = errs.finish();
    Ok(out)
}

/// The last member named `key` (serde_json keeps the last of duplicates).
pub(crate) fn find<'m>(members: &'m [Member], key: &str) -> Option<&'m Member> {
    members.iter().rev().find(|m| m.key == key)
}

/// A trimmed string; empty is `None`.
pub(crate) fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A value for an error message: quoted, escaped, at most 64 characters.
pub(crate) fn shown(s: &str) -> String {
    let mut cut: String = s.chars().take(64).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// What a JSON value is, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A trimmed, non-empty string (a number is taken as its text); absent,
/// null and empty are `None`.
pub(crate) fn text(v: Option<&Value>, what: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(nonempty(Some(s.clone()))),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{what} is {}, expected a string", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_and_elements_with_their_lines() {
        let text = "{\n \"a\": [1, {\"x\": \"]}\\\"\"},\n  [2]\n ],\n \"b\\u0041\": {}\n}";
        check_syntax(text).unwrap();
        let lines = LineIndex::new(text);
        let m = members(text, 0).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].key, "a");
        assert_eq!(m[1].key, "bA");
        assert_eq!(lines.line(m[1].key_at), 5);
        let el = elements(text, m[0].value.start).unwrap();
        assert_eq!(el.len(), 3);
        assert_eq!(&text[el[0].clone()], "1");
        assert_eq!(&text[el[1].clone()], "{\"x\": \"]}\\\"\"}");
        assert_eq!(lines.line(el[2].start), 3);
        assert_eq!(elements(text, m[1].value.start), None);
        assert_eq!(elements("[ ]", 0).unwrap().len(), 0);
        assert_eq!(members("{ }", 0).unwrap().len(), 0);
    }

    #[test]
    fn parse_errors_name_the_absolute_line() {
        let text = "[\n1,\n{\n\"a\": x\n}]";
        let lines = LineIndex::new(text);
        let el = elements(text, 0).unwrap();
        let e = parse_at::<serde_json::Value>(text, el[1].clone(), &lines).unwrap_err();
        assert!(e.ends_with("(line 4)"), "{e}");
    }

    #[test]
    fn unbalanced_text_gives_none_not_a_panic() {
        for t in [
            "[",
            "{\"a\"",
            "{\"a\":",
            "[1,",
            "{\"a\":1,",
            "\"abc",
            "[\"\\",
        ] {
            let _ = elements(t, 0);
            let _ = members(t, 0);
        }
    }
}
