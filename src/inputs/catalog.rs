//! App catalog from static analysis: blindspot's own JSON shape and MobSF's
//! iOS report JSON.
//!
//! # How the shape is told
//!
//! The file is one JSON document. An object with `apps` is blindspot's own
//! shape. An object with `bundle_id` and at least one other key of a MobSF
//! iOS report (`app_name`, `file_name`, `info_plist`, `ats_analysis`,
//! `md5`, `app_type`, `appsec`) is one MobSF report; an array whose first
//! object is one is several. Anything else, and text that is not JSON, is an
//! `Err` naming the shapes accepted.
//!
//! # blindspot's shape
//!
//! `{"apps": [{"bundle_id", "name", "version", "background_modes",
//! "entitlements", "pinned_domains": [{"domain", "include_subdomains"}],
//! "ats_exceptions", "domains"}]}`; only `bundle_id` is required and any other
//! key is an error naming it.
//!
//! # MobSF
//!
//! The report is the JSON of `POST /api/v1/report_json` for an IPA, i.e. the
//! static-analysis context built in MobSF's
//! `mobsf/StaticAnalyzer/views/ios/db_interaction.py` (plus `appsec`,
//! `virus_total`, `average_cvss`). Mapped:
//!
//! - `bundle_id` → bundle ID (required), `app_name` → name, `app_version`
//!   (CFBundleShortVersionString; else `build`) → version;
//! - `info_plist`, the app's Info.plist re-serialised by MobSF as XML text,
//!   is read with a small bounded plist reader for `UIBackgroundModes`,
//!   `NSAppTransportSecurity` → `NSPinnedDomains` (each domain with its
//!   `NSIncludesSubdomains`), `NSExceptionDomains` and
//!   `NSAllowsArbitraryLoads`;
//! - `ats_analysis` (MobSF ≥ 3.7: `{"ats_findings": [...], "ats_summary"}`,
//!   before: a list of findings) adds the exception domains MobSF lists in
//!   its `NSExceptionDomains` finding and `NSAllowsArbitraryLoads` from its
//!   "AllowsArbitraryLoads is allowed" finding, for reports without
//!   `info_plist`;
//! - `domains` (MobSF's object of domain → malware/geolocation verdict) →
//!   the domain names.
//!
//! Left empty: **entitlements** (MobSF's iOS analysis does not extract the
//! code-signing entitlements), and pinning done in code rather than by
//! NSPinnedDomains (MobSF's `binary_analysis`/`code_analysis` findings are
//! free text, not domain lists).
//!
//! Domain names are trimmed, lower-cased and lose a trailing dot.
//! `ats_exceptions` holds domains and, when arbitrary loads are allowed, the
//! token `NSAllowsArbitraryLoads`.

use super::jsondoc::{self, Doc, Root, kind, nonempty, text};
use super::leases::Errors;
use super::{LoadError, Loaded, read_text};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinnedDomain {
    pub domain: String,
    pub include_subdomains: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppProfile {
    pub bundle_id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    /// UIBackgroundModes (`audio`, `voip`, `fetch`, `remote-notification`, ...).
    pub background_modes: Vec<String>,
    /// Entitlement keys the app is signed with.
    pub entitlements: Vec<String>,
    /// NSPinnedDomains: pinning by design.
    pub pinned_domains: Vec<PinnedDomain>,
    /// NSAppTransportSecurity exception domains (and `NSAllowsArbitraryLoads`).
    pub ats_exceptions: Vec<String>,
    /// Destination domains the app is known to use.
    pub domains: Vec<String>,
    /// `"blindspot"` or `"mobsf"`.
    pub source: &'static str,
}

const SHAPES: &str = "accepted: blindspot's {\"apps\": [...]}; \
    a MobSF iOS report (POST /api/v1/report_json) {\"bundle_id\": ..., \"app_name\": ..., \"info_plist\": ...}; \
    or a JSON array of MobSF iOS reports";

/// Keys that mark a MobSF iOS report (besides `bundle_id`).
const MOBSF_KEYS: [&str; 7] = [
    "app_name",
    "file_name",
    "info_plist",
    "ats_analysis",
    "md5",
    "app_type",
    "appsec",
];

/// The ATS token kept verbatim in `ats_exceptions`.
const ARBITRARY_LOADS: &str = "NSAllowsArbitraryLoads";

pub fn load(path: &Path) -> Result<Loaded<AppProfile>, LoadError> {
    let text = read_text(path)?;
    parse_str(&text, &path.display().to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Blindspot,
    Mobsf,
}

/// Parses the text of the file; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Loaded<AppProfile>, LoadError> {
    jsondoc::load::<Catalog>(text, file)
}

/// The app documents blindspot reads, for [`jsondoc::load`].
struct Catalog;

impl jsondoc::DocKind for Catalog {
    type Shape = Shape;
    type Item = AppProfile;
    const SHAPES: &'static str = SHAPES;
    const NOUN: &'static str = "app";
    const WHAT: &'static str = "an app catalog";

    fn sniff(doc: &Doc<'_>, errs: &mut Errors) -> jsondoc::Sniffed<Shape> {
        Ok(Some(match &doc.root {
            Root::Object(members) => {
                let apps_key = ["apps", "managed_apps"]
                    .into_iter()
                    .find(|k| jsondoc::find(members, k).is_some());
                if let Some(apps) = apps_key.and_then(|k| jsondoc::find(members, k)) {
                    for m in members.iter().filter(|m| Some(m.key.as_str()) != apps_key) {
                        errs.unknown_key(doc.line(m.key_at), "the top level", &m.key);
                    }
                    let at = apps.value.start;
                    let elements = match doc.text.as_bytes().get(at) {
                        Some(b'[') => jsondoc::elements(doc.text, at),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        (
                            Some(doc.line(at)),
                            "\"apps\" is not an array of apps".into(),
                        )
                    })?;
                    (Shape::Blindspot, elements)
                } else if is_mobsf(members.iter().map(|m| m.key.as_str())) {
                    let start = jsondoc::skip_ws(doc.text.as_bytes(), 0);
                    let whole = start..doc.text.len();
                    (Shape::Mobsf, vec![whole])
                } else {
                    return Err((
                        Some(1),
                        format!(
                            "not an app catalog: an object with neither \"apps\" nor a MobSF iOS report's \"bundle_id\"; {SHAPES}"
                        ),
                    ));
                }
            }
            Root::Array(elements) => {
                let first = elements
                    .iter()
                    .find(|r| doc.text.as_bytes().get(r.start) == Some(&b'{'));
                match first {
                    Some(r) if first_is_mobsf(doc, r.clone()) => (Shape::Mobsf, elements.clone()),
                    _ => {
                        return Err((
                            Some(1),
                            format!(
                                "an array, but its first object is not a MobSF iOS report; {SHAPES}"
                            ),
                        ));
                    }
                }
            }
            // Refused by `jsondoc::load` before it asks.
            Root::Scalar => return Ok(None),
        }))
    }

    fn entry(
        doc: &Doc<'_>,
        shape: Shape,
        range: Range<usize>,
        errs: &mut Errors,
    ) -> Result<(AppProfile, Vec<String>), String> {
        let app = match shape {
            Shape::Blindspot => own_app(doc, range, errs),
            Shape::Mobsf => doc.parse::<Value>(range).and_then(|v| mobsf(&v)),
        }?;
        Ok((app, Vec::new()))
    }
}

fn is_mobsf<'k>(mut keys: impl Iterator<Item = &'k str> + Clone) -> bool {
    keys.clone().any(|k| k == "bundle_id") && keys.any(|k| MOBSF_KEYS.contains(&k))
}

fn first_is_mobsf(doc: &Doc<'_>, range: Range<usize>) -> bool {
    match doc.parse::<Value>(range) {
        Ok(Value::Object(o)) => is_mobsf(o.keys().map(String::as_str)),
        _ => false,
    }
}

// ---- blindspot's own shape ------------------------------------------------

/// Keys not in the shape: warned about once per file, then ignored.
type Other = std::collections::BTreeMap<String, serde::de::IgnoredAny>;

#[derive(Deserialize)]
struct OwnApp {
    bundle_id: String,
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    background_modes: Vec<String>,
    #[serde(default)]
    entitlements: Vec<String>,
    #[serde(default)]
    pinned_domains: Vec<OwnPin>,
    #[serde(default)]
    ats_exceptions: Vec<String>,
    #[serde(default, alias = "known_domains")]
    domains: Vec<String>,
    #[serde(flatten)]
    other: Other,
}

/// A pinned domain: `{"domain", "include_subdomains"}`, or a plain name
/// (`*.example.com` for the domain and its subdomains).
#[derive(Deserialize)]
#[serde(untagged)]
enum OwnPin {
    Name(String),
    Full {
        domain: String,
        #[serde(default)]
        include_subdomains: bool,
        #[serde(flatten)]
        other: Other,
    },
}

fn own_app(doc: &Doc<'_>, range: Range<usize>, errs: &mut Errors) -> Result<AppProfile, String> {
    let line = doc.line(range.start);
    let a: OwnApp = doc.parse(range)?;
    for k in a.other.keys() {
        errs.unknown_key(line, "an app", k);
    }
    let bundle_id = nonempty(Some(a.bundle_id)).ok_or("bundle_id is empty")?;
    let names = |list: Vec<String>,
                 what: &str,
                 norm: fn(&str) -> Option<String>|
     -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            out.push(norm(&s).ok_or_else(|| format!("{what} has an empty entry"))?);
        }
        Ok(dedup(out))
    };
    let word = |s: &str| nonempty(Some(s.to_string()));
    let mut pinned = Vec::with_capacity(a.pinned_domains.len());
    for p in a.pinned_domains {
        let (domain, include_subdomains) = match p {
            OwnPin::Name(n) => match n.trim().strip_prefix("*.") {
                Some(parent) => (parent.to_string(), true),
                None => (n, false),
            },
            OwnPin::Full {
                domain,
                include_subdomains,
                other,
            } => {
                for k in other.keys() {
                    errs.unknown_key(line, "a pinned domain", k);
                }
                (domain, include_subdomains)
            }
        };
        pinned.push(PinnedDomain {
            domain: domain_name(&domain).ok_or("pinned_domains has an empty domain")?,
            include_subdomains,
        });
    }
    Ok(AppProfile {
        bundle_id,
        name: nonempty(a.name),
        version: nonempty(a.version),
        background_modes: names(a.background_modes, "background_modes", word)?,
        entitlements: names(a.entitlements, "entitlements", word)?,
        pinned_domains: dedup_pins(pinned),
        ats_exceptions: names(a.ats_exceptions, "ats_exceptions", ats_entry)?,
        domains: names(a.domains, "domains", domain_name)?,
        source: "blindspot",
    })
}

// ---- MobSF --------------------------------------------------------------------

fn mobsf(v: &Value) -> Result<AppProfile, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("the report is {}, expected an object", kind(v)))?;
    let bundle_id = text(o.get("bundle_id"), "bundle_id")?
        .ok_or("no bundle_id (MobSF leaves it empty when it found no Info.plist)")?;
    let version = match text(o.get("app_version"), "app_version")? {
        Some(v) => Some(v),
        None => text(o.get("build"), "build")?,
    };
    let facts = match o.get("info_plist") {
        None | Some(Value::Null) => PlistFacts::default(),
        Some(Value::String(xml)) => plist_facts(xml),
        Some(other) => return Err(format!("info_plist is {}, expected XML text", kind(other))),
    };
    let mut ats = facts.exception_domains;
    let mut arbitrary = facts.arbitrary_loads;
    ats_findings(o.get("ats_analysis"), &mut ats, &mut arbitrary)?;
    if arbitrary {
        ats.push(ARBITRARY_LOADS.to_string());
    }
    let domains = match o.get("domains") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(d)) => d.keys().filter_map(|k| domain_name(k)).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter_map(domain_name)
            .collect(),
        Some(other) => return Err(format!("domains is {}, expected an object", kind(other))),
    };
    Ok(AppProfile {
        bundle_id,
        name: text(o.get("app_name"), "app_name")?,
        version,
        background_modes: dedup(facts.background_modes),
        entitlements: Vec::new(),
        pinned_domains: dedup_pins(facts.pinned),
        ats_exceptions: dedup(ats),
        domains: dedup(domains),
        source: "mobsf",
    })
}

/// What MobSF's ATS findings say about exception domains and arbitrary loads.
fn ats_findings(
    v: Option<&Value>,
    domains: &mut Vec<String>,
    arbitrary: &mut bool,
) -> Result<(), String> {
    let findings = match v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(a)) => a,
        Some(Value::Object(o)) => match o.get("ats_findings") {
            Some(Value::Array(a)) => a,
            _ => return Ok(()),
        },
        Some(other) => {
            return Err(format!(
                "ats_analysis is {}, expected an object",
                kind(other)
            ));
        }
    };
    for f in findings.iter().filter_map(Value::as_object) {
        let issue = f.get("issue").and_then(Value::as_str).unwrap_or("");
        if issue == "NSExceptionDomains" {
            let listed = f.get("description").and_then(Value::as_str).unwrap_or("");
            domains.extend(listed.split(',').filter_map(domain_name));
        } else if issue.contains("AllowsArbitraryLoads is allowed") {
            *arbitrary = true;
        }
    }
    Ok(())
}

// ---- names --------------------------------------------------------------------

/// Trimmed, lower-case, without a trailing dot; empty is `None`.
fn domain_name(s: &str) -> Option<String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// A domain, or the `NSAllowsArbitraryLoads` token in any case.
fn ats_entry(s: &str) -> Option<String> {
    if s.trim().eq_ignore_ascii_case(ARBITRARY_LOADS) {
        Some(ARBITRARY_LOADS.to_string())
    } else {
        domain_name(s)
    }
}

/// Drops repeats, keeping the first of each.
fn dedup<T: Clone + Eq + std::hash::Hash>(v: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::with_capacity(v.len());
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

/// One entry per pinned domain; a repeat that includes subdomains widens
/// the first.
fn dedup_pins(v: Vec<PinnedDomain>) -> Vec<PinnedDomain> {
    let mut at: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(v.len());
    let mut out: Vec<PinnedDomain> = Vec::with_capacity(v.len());
    for p in v {
        match at.get(&p.domain) {
            Some(&i) => out[i].include_subdomains |= p.include_subdomains,
            None => {
                at.insert(p.domain.clone(), out.len());
                out.push(p);
            }
        }
    }
    out
}

// ---- Info.plist XML -------------------------------------------------------------

/// What blindspot takes from an Info.plist.
#[derive(Default)]
struct PlistFacts {
    background_modes: Vec<String>,
    pinned: Vec<PinnedDomain>,
    exception_domains: Vec<String>,
    arbitrary_loads: bool,
}

fn plist_facts(xml: &str) -> PlistFacts {
    let mut facts = PlistFacts::default();
    let Some(Plist::Dict(root)) = read_plist(xml) else {
        return facts;
    };
    if let Some(Plist::Array(modes)) = dict_get(&root, "UIBackgroundModes") {
        facts.background_modes = modes
            .iter()
            .filter_map(|m| match m {
                Plist::Str(s) => nonempty(Some(s.clone())),
                _ => None,
            })
            .collect();
    }
    if let Some(Plist::Dict(ats)) = dict_get(&root, "NSAppTransportSecurity") {
        facts.arbitrary_loads = matches!(dict_get(ats, ARBITRARY_LOADS), Some(Plist::Bool(true)));
        if let Some(Plist::Dict(ex)) = dict_get(ats, "NSExceptionDomains") {
            facts.exception_domains = ex.iter().filter_map(|(k, _)| domain_name(k)).collect();
        }
        if let Some(Plist::Dict(pins)) = dict_get(ats, "NSPinnedDomains") {
            for (domain, cfg) in pins {
                let include_subdomains = match cfg {
                    Plist::Dict(c) => {
                        matches!(dict_get(c, "NSIncludesSubdomains"), Some(Plist::Bool(true)))
                    }
                    _ => false,
                };
                if let Some(domain) = domain_name(domain) {
                    facts.pinned.push(PinnedDomain {
                        domain,
                        include_subdomains,
                    });
                }
            }
        }
    }
    facts
}

/// A property-list value, as far as blindspot needs one.
enum Plist {
    Dict(Vec<(String, Plist)>),
    Array(Vec<Plist>),
    Str(String),
    Bool(bool),
    /// integer, real, date, data.
    Other,
}

/// Deepest nesting read; a deeper plist is not read at all.
const PLIST_MAX_DEPTH: usize = 64;

fn dict_get<'p>(d: &'p [(String, Plist)], key: &str) -> Option<&'p Plist> {
    d.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Reads an XML property list (as Python's `plistlib.dumps` writes it) into
/// its top value. One forward pass with an explicit stack, at most
/// [`PLIST_MAX_DEPTH`] deep; `None` when it is not a plist it understands.
fn read_plist(xml: &str) -> Option<Plist> {
    enum Open {
        Dict(Vec<(String, Plist)>, Option<String>),
        Array(Vec<Plist>),
    }
    fn put(stack: &mut [Open], root: &mut Option<Plist>, v: Plist) {
        match stack.last_mut() {
            Some(Open::Dict(entries, key)) => {
                if let Some(k) = key.take() {
                    entries.push((k, v));
                }
            }
            Some(Open::Array(items)) => items.push(v),
            None => {
                if root.is_none() {
                    *root = Some(v);
                }
            }
        }
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    let mut i = 0;
    while let Some(lt) = xml.get(i..).and_then(|r| r.find('<')) {
        let start = i + lt;
        let rest = &xml[start..];
        if rest.starts_with("<!--") {
            i = start + 4 + rest.get(4..)?.find("-->")? + 3;
            continue;
        }
        let gt = rest.find('>')?;
        let tag = &rest[1..gt];
        i = start + gt + 1;
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let closing = tag.starts_with('/');
        let empty = tag.ends_with('/');
        let name = tag
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split_ascii_whitespace()
            .next()
            .unwrap_or("");
        match (name, closing, empty) {
            ("plist", _, _) => {}
            ("dict" | "array", false, false) => {
                if stack.len() >= PLIST_MAX_DEPTH {
                    return None;
                }
                stack.push(if name == "dict" {
                    Open::Dict(Vec::new(), None)
                } else {
                    Open::Array(Vec::new())
                });
            }
            ("dict", false, true) => put(&mut stack, &mut root, Plist::Dict(Vec::new())),
            ("array", false, true) => put(&mut stack, &mut root, Plist::Array(Vec::new())),
            ("dict" | "array", true, _) => {
                let v = match stack.pop()? {
                    Open::Dict(entries, _) if name == "dict" => Plist::Dict(entries),
                    Open::Array(items) if name == "array" => Plist::Array(items),
                    _ => return None,
                };
                put(&mut stack, &mut root, v);
            }
            ("true", false, true) => put(&mut stack, &mut root, Plist::Bool(true)),
            ("false", false, true) => put(&mut stack, &mut root, Plist::Bool(false)),
            ("string", false, true) => put(&mut stack, &mut root, Plist::Str(String::new())),
            ("key" | "string" | "integer" | "real" | "date" | "data", false, false) => {
                let close = format!("</{name}>");
                let len = xml.get(i..)?.find(&close)?;
                let body = &xml[i..i + len];
                i += len + close.len();
                match name {
                    "key" => {
                        if let Some(Open::Dict(_, key)) = stack.last_mut() {
                            *key = Some(unescape(body));
                        }
                    }
                    "string" => put(&mut stack, &mut root, Plist::Str(unescape(body))),
                    _ => put(&mut stack, &mut root, Plist::Other),
                }
            }
            _ => {}
        }
    }
    root
}

/// XML character references: the five named ones and numeric ones.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let mut window = rest.len().min(12);
        while !rest.is_char_boundary(window) {
            window -= 1;
        }
        let Some(semi) = rest[..window].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Loaded<AppProfile>, LoadError> {
        parse_str(text, "c.json")
    }

    #[test]
    fn site_aliases_and_plain_string_pins_load() {
        let text = r#"{"managed_apps": [
  {"bundle_id": "com.example.bank", "known_domains": ["api.bank.example"],
   "pinned_domains": ["auth.bank.example", "*.pay.example",
                      {"domain": "x.example", "include_subdomains": true}]}
]}"#;
        let got = load_str(text).unwrap();
        assert_eq!((got.errors.len(), got.warnings.len()), (0, 0));
        let a = &got.items[0];
        assert_eq!(a.domains, ["api.bank.example"]);
        let pins: Vec<_> = a
            .pinned_domains
            .iter()
            .map(|p| (p.domain.as_str(), p.include_subdomains))
            .collect();
        assert_eq!(
            pins,
            [
                ("auth.bank.example", false),
                ("pay.example", true),
                ("x.example", true)
            ]
        );
    }

    const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CFBundleIdentifier</key>
	<string>com.example.bank</string>
	<!-- a <comment> -->
	<key>NSAppTransportSecurity</key>
	<dict>
		<key>NSAllowsArbitraryLoads</key>
		<false/>
		<key>NSExceptionDomains</key>
		<dict>
			<key>Legacy.Bank.Example.</key>
			<dict/>
		</dict>
		<key>NSPinnedDomains</key>
		<dict>
			<key>api.bank.example</key>
			<dict>
				<key>NSIncludesSubdomains</key>
				<true/>
				<key>NSPinnedLeafIdentities</key>
				<array>
					<dict>
						<key>SPKI-SHA256-BASE64</key>
						<string>r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E=</string>
					</dict>
				</array>
			</dict>
			<key>auth.bank.example</key>
			<dict>
				<key>NSPinnedCAIdentities</key>
				<array/>
			</dict>
		</dict>
	</dict>
	<key>UIBackgroundModes</key>
	<array>
		<string>fetch</string>
		<string>remote-notification</string>
	</array>
	<key>Odd</key>
	<string>a &amp; b &#x41;&#66; &bogus; &</string>
</dict>
</plist>
"#;

    #[test]
    fn reads_pinning_and_background_modes_from_plist_xml() {
        let f = plist_facts(PLIST);
        assert_eq!(f.background_modes, ["fetch", "remote-notification"]);
        assert_eq!(
            f.pinned,
            [
                PinnedDomain {
                    domain: "api.bank.example".into(),
                    include_subdomains: true
                },
                PinnedDomain {
                    domain: "auth.bank.example".into(),
                    include_subdomains: false
                },
            ]
        );
        assert_eq!(f.exception_domains, ["legacy.bank.example"]);
        assert!(!f.arbitrary_loads);
        let Some(Plist::Dict(root)) = read_plist(PLIST) else {
            panic!()
        };
        let Some(Plist::Str(odd)) = dict_get(&root, "Odd") else {
            panic!()
        };
        assert_eq!(odd, "a & b AB &bogus; &");
    }

    #[test]
    fn own_shape_names_unknown_keys_and_lines() {
        let text = "{\"apps\": [\n {\"bundle_id\": \"a\", \"domains\": [\"API.Example.COM.\"]},\n {\"bundle_id\": \"b\",\n  \"pinned\": []},\n {\"bundle_id\": \" \"},\n {\"bundle_id\": \"c\", \"pinned\": 1}\n], \"source\": \"mobsf\"}";
        let got = load_str(text).unwrap();
        assert_eq!(got.items.len(), 3);
        assert_eq!(got.items[0].domains, ["api.example.com"]);
        let msgs: Vec<String> = got.errors.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(
            msgs[0].starts_with("c.json:5: app 3 skipped: bundle_id is empty"),
            "{}",
            msgs[0]
        );
        // Each unknown key once per file, at its first entry: the app
        // with it still loads.
        let warned: Vec<String> = got.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warned,
            [
                "c.json:3: unknown key \"pinned\" in an app ignored (warned once per file)",
                "c.json:7: unknown key \"source\" in the top level ignored (warned once per file)",
            ]
        );
    }

    #[test]
    fn mobsf_without_plist_uses_ats_findings() {
        let text = r#"{"bundle_id": "com.x", "app_name": "X", "build": "7",
            "ats_analysis": [{"issue": "App Transport Security AllowsArbitraryLoads is allowed", "status": "high"},
                             {"issue": "NSExceptionDomains", "status": "info", "description": "a.example, B.example"}],
            "domains": {"cdn.x.example": {"bad": "no"}}}"#;
        let got = load_str(text).unwrap();
        assert_eq!(got.errors, []);
        let a = &got.items[0];
        assert_eq!(a.version.as_deref(), Some("7"));
        assert_eq!(
            a.ats_exceptions,
            ["a.example", "b.example", "NSAllowsArbitraryLoads"]
        );
        assert_eq!(a.domains, ["cdn.x.example"]);
        assert_eq!(a.source, "mobsf");
    }

    #[test]
    fn skipped_apps_are_listed_up_to_the_cap() {
        use super::super::leases::MAX_ERRORS;
        let apps = vec!["{\"name\": \"no id\"}"; MAX_ERRORS + 10].join(",\n");
        let got = parse_str(&format!("{{\"apps\": [\n{apps}\n]}}"), "c.json").unwrap();
        assert!(got.items.is_empty());
        assert_eq!(got.errors.len(), MAX_ERRORS + 1);
        assert_eq!(got.errors[0].line, Some(2));
        assert!(
            got.errors[MAX_ERRORS].message.starts_with("10 more"),
            "{}",
            got.errors[MAX_ERRORS]
        );
    }

    #[test]
    fn unknown_shapes_are_errors() {
        for text in [
            "",
            "[1]",
            "{\"bundle_id\": \"x\"}",
            "{\"package_name\": \"a\", \"app_name\": \"b\"}",
            "\"x\"",
            "{\"apps\": {}}",
        ] {
            let e = load_str(text).unwrap_err();
            assert!(e.to_string().starts_with("c.json"), "{e}");
        }
        assert!(load_str("[]").unwrap().items.is_empty());
    }

    #[test]
    fn hostile_plists_and_reports_do_not_panic() {
        let deep = "<array>".repeat(10_000);
        let cases = [
            deep.as_str(),
            "<dict><key>a</key>",
            "</dict></array><key>",
            "<string>&#xFFFFFFFF;&#99999999999;&#x;&#;&</string>",
            "<!-- unterminated",
            "<dict><key>NSAppTransportSecurity</key><dict><key>NSPinnedDomains</key><array/></dict></dict>",
            "<<<>>>",
            "<string>\u{1F600}&amp</string>",
        ];
        for c in cases {
            let _ = plist_facts(c);
        }
        for i in 0..PLIST.len() {
            if PLIST.is_char_boundary(i) {
                let _ = plist_facts(&PLIST[..i]);
            }
        }
        let report =
            serde_json::json!({"bundle_id": "b", "app_name": "n", "info_plist": PLIST}).to_string();
        for i in 0..report.len() {
            let _ = load_str(&report[..i]);
        }
        for text in [
            "{\"bundle_id\": 5, \"app_name\": []}",
            "{\"bundle_id\": \"b\", \"md5\": \"x\", \"info_plist\": 3}",
            "{\"bundle_id\": \"b\", \"md5\": \"x\", \"ats_analysis\": \"no\", \"domains\": 4}",
            "[{\"bundle_id\": \"b\", \"md5\": \"x\"}, 7, null, {\"app_name\": \"no id\"}]",
        ] {
            let _ = load_str(text);
        }
    }
    const FIXTURES: [&str; 2] = [
        include_str!("../../fixtures/inventory/catalog-blindspot.json"),
        include_str!("../../fixtures/inventory/catalog-mobsf.json"),
    ];

    /// Byte flips, insertions and cuts of the example files: never a panic.
    #[test]
    fn mutated_examples_do_not_panic() {
        for original in FIXTURES {
            crate::inputs::for_each_mutation(original, |text| {
                let _ = parse_str(text, "f");
            });
        }
    }
}
