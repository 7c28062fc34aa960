//! A bypass list (`--bypass-list`, `inputs.bypass_list`): the names the
//! site lets past its inspecting proxy, one per line, as proxies keep them
//! (`bank.example`, `*.apple.com`); blank lines and `#` comments are
//! skipped. They join `detections.bypass_domains`.

use super::leases::Errors;
use super::{LoadError, Loaded, read_text};
use crate::detect::names::DomainPattern;
use std::path::Path;

pub fn load(path: &Path) -> Result<Loaded<DomainPattern>, LoadError> {
    let text = read_text(path)?;
    Ok(parse_str(&text, &path.display().to_string()))
}

/// Parses the text of the file; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Loaded<DomainPattern> {
    let mut out = Loaded::default();
    let mut errs = Errors::new(file);
    for (i, raw) in super::jsondoc::strip_bom(text).lines().enumerate() {
        // A comment may follow the name on its line.
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match DomainPattern::parse(line) {
            Ok(p) => out.items.push(p),
            Err(e) => errs.push(i + 1, format!("not a domain name: {e}")),
        }
    }
    out.errors = errs.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_comments_and_bad_lines() {
        let got = parse_str(
            "# bypass list\nbank.example\n\n*.apple.com  # Apple services\nbad name\n",
            "b.txt",
        );
        let names: Vec<String> = got.items.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(got.items[0].matches("bank.example"));
        assert!(got.items[1].matches("push.apple.com"));
        assert!(!got.items[1].matches("apple.com.evil.example"));
        let errs: Vec<String> = got.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("b.txt:5: not a domain name"),
            "{}",
            errs[0]
        );
    }
}
