//! Was a TLS session inspected? A chain certificate matches a configured
//! inspection CA by the SHA-256 of its DER or of its SubjectPublicKeyInfo,
//! or (for CAs given as PEM files) a chain certificate names the CA as its
//! issuer with the CA's key identifier — proxies often send only the leaf
//! they minted, not their CA.

use crate::app::tls::cert::{Chain, hex, sha256_hex};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct InspectionCa {
    /// How the record names it: the subject of a PEM CA, else `sha256:<hex>`.
    pub name: String,
    /// Fingerprints that identify it (certificate and/or SPKI SHA-256).
    pub hashes: Vec<String>,
    /// For PEM CAs: subject (as x509-parser prints it) and subjectKeyIdentifier.
    pub subject: Option<String>,
    pub key_id: Option<String>,
}

impl InspectionCa {
    pub fn from_hash(h: String) -> Self {
        InspectionCa {
            name: format!("sha256:{h}"),
            hashes: vec![h],
            ..Self::default()
        }
    }

    /// Every certificate of a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for p in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let p = p.map_err(|e| format!("not a PEM certificate file ({e})"))?;
            let (_, c) = x509_parser::certificate::X509Certificate::from_der(&p.contents)
                .map_err(|e| format!("certificate {} does not parse: {e}", out.len() + 1))?;
            let mut ca = InspectionCa {
                name: c.subject().to_string(),
                hashes: vec![sha256_hex(&p.contents), sha256_hex(c.public_key().raw)],
                subject: Some(c.subject().to_string()),
                key_id: None,
            };
            for ext in c.extensions() {
                if let ParsedExtension::SubjectKeyIdentifier(k) = ext.parsed_extension() {
                    ca.key_id = Some(hex(k.0));
                }
            }
            out.push(ca);
        }
        if out.is_empty() {
            return Err("no PEM certificate in the file".into());
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inspection {
    pub cas: Vec<InspectionCa>,
}

impl Inspection {
    /// The configured CA this chain was issued by or contains, if any.
    pub fn matches(&self, chain: &Chain) -> Option<&InspectionCa> {
        self.cas.iter().find(|ca| {
            chain.all().any(|c| {
                ca.hashes
                    .iter()
                    .any(|h| *h == c.sha256 || Some(h) == c.spki_sha256.as_ref())
                    || (ca.subject.is_some()
                        && c.issuer == ca.subject
                        && match (&ca.key_id, &c.authority_key_id) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        })
            })
        })
    }
}

/// Subjects (as x509-parser prints them) of the public roots (Mozilla's
/// list, from `webpki-root-certs`), each with its subjectKeyIdentifiers.
fn public_roots() -> &'static hashbrown::HashMap<String, Vec<Option<String>>> {
    static ROOTS: std::sync::OnceLock<hashbrown::HashMap<String, Vec<Option<String>>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut m: hashbrown::HashMap<String, Vec<Option<String>>> = Default::default();
        for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let Ok((_, c)) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
            else {
                continue;
            };
            let ski = c
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(hex(k.0)),
                    _ => None,
                });
            m.entry(c.subject().to_string()).or_default().push(ski);
        }
        m
    })
}

/// Does a certificate whose issuer is `issuer` (with authorityKeyIdentifier
/// `aki`) chain to a public root? By name, and by key identifier when both
/// sides carry one.
fn issued_by_public_root(issuer: &str, aki: Option<&str>) -> bool {
    public_roots().get(issuer).is_some_and(|skis| {
        skis.iter().any(|ski| match (ski.as_deref(), aki) {
            (Some(s), Some(a)) => s == a,
            _ => true,
        })
    })
}

/// Candidate CAs tracked at once; more are counted, not tracked.
pub const MAX_CANDIDATE_CAS: usize = 4096;
/// Registrable domains remembered per candidate CA.
const MAX_CA_DOMAINS: usize = 64;

/// A CA outside the public roots that signed leaves on the wire.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its subject (the leaves' issuer), as x509-parser prints it.
    pub subject: String,
    /// Its key identifier (hex), when the certificates carry one.
    pub key_id: Option<String>,
    /// SHA-256 of the CA's own certificate, when a chain carried it.
    pub sha256: Option<String>,
    pub first_seen: crate::time::Timestamp,
    /// When it reached the threshold (`None`: not an inspection CA, yet).
    pub learnt: Option<crate::time::Timestamp>,
    /// Registrable domains (public suffix list) of the leaves it signed.
    pub domains: std::collections::BTreeSet<String>,
}

/// Inspection CAs learnt from the wire, with no configuration: a CA whose
/// certificates do not chain to a public root and that signs leaves for at
/// least `threshold` unrelated registrable domains (`inspection.learn_ca_domains`)
/// is an inspecting proxy's; an enterprise CA that signs only its own
/// domains, or a self-signed server, is not.
#[derive(Debug, Default)]
pub struct Learner {
    pub threshold: usize,
    /// CAs the site trusts as public besides Mozilla's (subject, key id):
    /// `inspection.public_ca_files`.
    extra_public: Vec<(String, Option<String>)>,
    cas: hashbrown::HashMap<(String, Option<String>), Candidate>,
    /// Intermediates seen chaining to a public root (a server that sends
    /// only its leaf names one as its issuer): public too. At most
    /// [`MAX_CANDIDATE_CAS`].
    public_seen: hashbrown::HashSet<String>,
    /// Candidates not tracked because [`MAX_CANDIDATE_CAS`] were.
    pub over_cap: u64,
    /// Moves whenever the set of learnt CAs may have changed (one learnt,
    /// or candidates dropped as public): the detector on its own thread is
    /// sent [`Learner::learnt_keys`] again (`run::detector`).
    pub generation: u64,
    /// Fleet mode (`fleet/state.rs`): keys of the candidates that changed
    /// since [`Learner::take_changed`]; `None`: not tracked.
    changed: Option<hashbrown::HashSet<(String, Option<String>)>>,
}

impl Learner {
    pub fn new(threshold: usize, extra_public: Vec<(String, Option<String>)>) -> Self {
        Learner {
            threshold,
            extra_public,
            ..Learner::default()
        }
    }

    fn public(&self, issuer: &str, aki: Option<&str>) -> bool {
        self.public_seen.contains(issuer)
            || issued_by_public_root(issuer, aki)
            || self.extra_public.iter().any(|(s, k)| {
                s == issuer
                    && match (k.as_deref(), aki) {
                        (Some(k), Some(a)) => k == a,
                        _ => true,
                    }
            })
    }

    /// Notes the chain of a session at `ts`. `None` when it chains to a
    /// public root (or learning is off); else the key of its CA and, once
    /// that CA is learnt, the CA.
    pub fn observe(
        &mut self,
        chain: &Chain,
        ts: crate::time::Timestamp,
    ) -> Option<(u64, Option<&Candidate>)> {
        if self.threshold == 0 {
            return None;
        }
        // Intermediates sent that chain to a public root are public.
        for c in chain.chain.iter().rev() {
            let (Some(subject), Some(issuer)) = (c.subject.as_deref(), c.issuer.as_deref()) else {
                continue;
            };
            if subject != issuer
                && self.public(issuer, c.authority_key_id.as_deref())
                && !self.public_seen.contains(subject)
                && self.public_seen.len() < MAX_CANDIDATE_CAS
            {
                self.public_seen.insert(subject.to_string());
                // A leaf-only server seen before made it a candidate.
                let before = self.cas.len();
                self.cas.retain(|(s, _), _| s != subject);
                if self.cas.len() != before {
                    self.generation += 1;
                }
            }
        }
        // An inspecting proxy sends the leaf it minted, alone or with its
        // own CA (Squid sends its CA twice); two or more different CA
        // certificates are a PKI's hierarchy (an old capture's root that
        // left Mozilla's list is not a proxy).
        if chain
            .chain
            .iter()
            .any(|c| c.subject != chain.chain[0].subject || c.issuer != chain.chain[0].issuer)
        {
            return None;
        }
        // The top of what was sent: the CA itself (self-signed), or the
        // leaf alone, whose issuer is the CA.
        let top = chain.chain.last().unwrap_or(&chain.leaf);
        let issuer = top.issuer.as_deref()?;
        if self.public(issuer, top.authority_key_id.as_deref()) {
            return None;
        }
        let self_signed = top.subject.as_deref() == Some(issuer) && !chain.chain.is_empty();
        let key_id = if self_signed {
            top.subject_key_id.clone().or(top.authority_key_id.clone())
        } else {
            top.authority_key_id.clone()
        };
        let key = (issuer.to_string(), key_id);
        let hash = ca_key(&key.0, key.1.as_deref());
        if !self.cas.contains_key(&key) {
            if self.cas.len() >= MAX_CANDIDATE_CAS {
                self.over_cap += 1;
                return Some((hash, None));
            }
            self.cas.insert(
                key.clone(),
                Candidate {
                    subject: key.0.clone(),
                    key_id: key.1.clone(),
                    sha256: None,
                    first_seen: ts,
                    learnt: None,
                    domains: Default::default(),
                },
            );
        }
        let c = self.cas.get_mut(&key)?;
        if self_signed && c.sha256.is_none() {
            c.sha256 = Some(top.sha256.clone());
        }
        if c.learnt.is_none() {
            // One domain per leaf, its first DNS name: a proxy mints a leaf
            // per site, while one public certificate may name dozens of a
            // company's domains.
            if c.domains.len() < MAX_CA_DOMAINS
                && let Some(d) = chain.san.iter().find_map(|n| registrable(n))
                && c.domains.insert(d)
                && let Some(ch) = &mut self.changed
            {
                ch.insert(key);
            }
            if c.domains.len() >= self.threshold {
                c.learnt = Some(ts);
                self.generation += 1;
            }
        }
        let learnt = c.learnt.is_some();
        Some((hash, learnt.then_some(&*c)))
    }

    /// The keys of the learnt CAs (what [`Learner::is_learnt`] is true of).
    pub fn learnt_keys(&self) -> Vec<u64> {
        let mut k: Vec<u64> = self
            .cas
            .values()
            .filter(|c| c.learnt.is_some())
            .map(|c| ca_key(&c.subject, c.key_id.as_deref()))
            .collect();
        k.sort_unstable();
        k
    }

    /// Is the CA of this key learnt?
    pub fn is_learnt(&self, key: u64) -> bool {
        // Few CAs are learnt; the keys are hashed again rather than stored twice.
        self.cas
            .values()
            .any(|c| c.learnt.is_some() && ca_key(&c.subject, c.key_id.as_deref()) == key)
    }

    /// Fleet mode: from now on, note which candidates change.
    pub fn track_changes(&mut self) {
        self.changed.get_or_insert_with(Default::default);
    }

    /// The candidates that gained a domain since the last call.
    pub fn take_changed(&mut self) -> Vec<Candidate> {
        let Some(ch) = &mut self.changed else {
            return Vec::new();
        };
        let keys: Vec<_> = ch.drain().collect();
        keys.iter()
            .filter_map(|k| self.cas.get(k).cloned())
            .collect()
    }

    /// What the fleet learnt of a CA (`fleet/state.rs`): its domains join
    /// this learner's (the union, at most 64), and it is learnt once they
    /// reach the threshold (at `learnt`, the fleet's time). A CA this
    /// sensor takes as public stays public. False when it is not tracked
    /// (learning off, public, or [`MAX_CANDIDATE_CAS`] reached).
    pub fn seed(&mut self, fleet: &Candidate) -> bool {
        if self.threshold == 0 || self.public(&fleet.subject, fleet.key_id.as_deref()) {
            return false;
        }
        let key = (fleet.subject.clone(), fleet.key_id.clone());
        if !self.cas.contains_key(&key) {
            if self.cas.len() >= MAX_CANDIDATE_CAS {
                self.over_cap += 1;
                return false;
            }
            let mut c = fleet.clone();
            c.domains.clear();
            c.learnt = None;
            self.cas.insert(key.clone(), c);
        }
        let Some(c) = self.cas.get_mut(&key) else {
            return false;
        };
        c.first_seen = c.first_seen.min(fleet.first_seen);
        if c.sha256.is_none() {
            c.sha256.clone_from(&fleet.sha256);
        }
        if c.learnt.is_none() {
            for d in &fleet.domains {
                if c.domains.len() >= MAX_CA_DOMAINS {
                    break;
                }
                c.domains.insert(d.clone());
            }
            if c.domains.len() >= self.threshold {
                c.learnt = Some(fleet.learnt.unwrap_or(fleet.first_seen));
                self.generation += 1;
            }
        }
        true
    }

    /// The learnt CAs, in the order they were first seen.
    pub fn learnt(&self) -> impl Iterator<Item = &Candidate> {
        let mut v: Vec<&Candidate> = self.cas.values().filter(|c| c.learnt.is_some()).collect();
        v.sort_by(|a, b| (a.first_seen, &a.subject).cmp(&(b.first_seen, &b.subject)));
        v.into_iter()
    }
}

/// The key a session keeps of its chain's CA (fixed hasher keys: the same
/// in every run).
fn ca_key(subject: &str, key_id: Option<&str>) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::detect::fixed_hasher();
    h.write(subject.as_bytes());
    h.write(key_id.unwrap_or("").as_bytes());
    h.finish()
}

/// The registrable domain (public suffix + 1 label) of a DNS name; `None`
/// for an address.
fn registrable(name: &str) -> Option<String> {
    let n = name
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if n.parse::<std::net::IpAddr>().is_ok() || !n.contains('.') {
        return None;
    }
    psl::domain_str(&n).map(str::to_string)
}

#[cfg(test)]
mod learner_tests {
    use super::*;
    use crate::app::tls::cert::CertInfo;
    use crate::time::Timestamp;

    fn leaf(issuer: &str, aki: &str, san: &[&str]) -> Chain {
        Chain {
            san: san.iter().map(|s| s.to_string()).collect(),
            leaf: CertInfo {
                issuer: Some(issuer.into()),
                authority_key_id: (!aki.is_empty()).then(|| aki.into()),
                ..CertInfo::default()
            },
            ..Chain::default()
        }
    }

    #[test]
    fn public_roots_load_and_are_never_learnt() {
        assert!(public_roots().len() > 100, "{}", public_roots().len());
        let isrg = public_roots()
            .keys()
            .find(|s| s.contains("ISRG Root X1"))
            .expect("ISRG Root X1 is a public root")
            .clone();
        let mut l = Learner::new(2, Vec::new());
        for n in ["a.example.com", "b.example.org", "c.example.net"] {
            assert!(l.observe(&leaf(&isrg, "", &[n]), Timestamp(1)).is_none());
        }
        // Servers that send only their leaf, issued by a public
        // intermediate: candidates until one server sends the intermediate,
        // then public.
        let r10 = "C=US, O=Let's Encrypt, CN=R10";
        for n in ["a.one.example", "b.two.example"] {
            assert!(l.observe(&leaf(r10, "", &[n]), Timestamp(2)).is_some());
        }
        assert_eq!(l.learnt().count(), 1);
        let mut full = leaf(r10, "", &["c.three.example"]);
        full.chain.push(CertInfo {
            subject: Some(r10.into()),
            issuer: Some(isrg.clone()),
            ..CertInfo::default()
        });
        assert!(l.observe(&full, Timestamp(3)).is_none());
        assert!(
            l.observe(&leaf(r10, "", &["d.four.example"]), Timestamp(4))
                .is_none()
        );
        assert_eq!(l.learnt().count(), 0);
    }

    #[test]
    fn a_private_ca_over_many_registrable_domains_is_learnt_not_one_over_its_own() {
        let mut l = Learner::new(3, Vec::new());
        let proxy = "CN=mitmproxy, O=mitmproxy";
        let corp = "CN=Corp Issuing CA, O=Corp";
        let mut learnt_at = None;
        for (i, n) in [
            "api.pinned.example",
            "www.bank.example",
            "x.bank.example",
            "mail.corp.example",
            "cdn.tracker.example",
        ]
        .iter()
        .enumerate()
        {
            let (_, ca) = l
                .observe(&leaf(proxy, "aa", &[n]), Timestamp(i as u64))
                .unwrap();
            if ca.is_some() && learnt_at.is_none() {
                learnt_at = Some(i);
            }
            // The enterprise CA signs many hosts of one domain.
            let host = format!("host{i}.corp.example");
            let (_, ca) = l
                .observe(&leaf(corp, "bb", &[&host]), Timestamp(i as u64))
                .unwrap();
            assert!(ca.is_none());
        }
        // pinned.example, bank.example, corp.example: learnt at the 4th leaf.
        assert_eq!(learnt_at, Some(3));
        let learnt: Vec<_> = l.learnt().map(|c| c.subject.clone()).collect();
        assert_eq!(learnt, [proxy]);
        let (key, _) = l
            .observe(&leaf(proxy, "aa", &["z.example"]), Timestamp(9))
            .unwrap();
        assert!(l.is_learnt(key));
        let (key, _) = l
            .observe(&leaf(corp, "bb", &["z.corp.example"]), Timestamp(9))
            .unwrap();
        assert!(!l.is_learnt(key));
    }
}

#[cfg(test)]
mod learner_hierarchy_tests {
    use super::*;
    use crate::app::tls::cert::CertInfo;
    use crate::time::Timestamp;

    /// A public certificate naming many domains, under a root that left
    /// Mozilla's list (an old capture's Google chain): never learnt.
    #[test]
    fn one_multi_domain_leaf_or_a_long_chain_is_not_a_proxy() {
        let mut l = Learner::new(3, Vec::new());
        let san: Vec<String> = [
            "*.google.com",
            "*.android.com",
            "youtube.com",
            "*.gstatic.com",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let old_root = "C=US, O=Equifax, OU=Equifax Secure Certificate Authority";
        // Leaf only, issued by the old root: one leaf is one domain.
        let leaf_only = Chain {
            san: san.clone(),
            leaf: CertInfo {
                issuer: Some(old_root.into()),
                ..CertInfo::default()
            },
            ..Chain::default()
        };
        for i in 0..5 {
            l.observe(&leaf_only, Timestamp(i));
        }
        assert_eq!(l.learnt().count(), 0);
        // Leaf, intermediate, intermediate: a hierarchy, not a candidate.
        let mut long = leaf_only.clone();
        long.leaf.issuer = Some("CN=Google Internet Authority G2".into());
        long.chain = vec![
            CertInfo {
                subject: Some("CN=Google Internet Authority G2".into()),
                issuer: Some("CN=GeoTrust Global CA".into()),
                ..CertInfo::default()
            },
            CertInfo {
                subject: Some("CN=GeoTrust Global CA".into()),
                issuer: Some(old_root.into()),
                ..CertInfo::default()
            },
        ];
        for (i, n) in [
            "a.one.example",
            "b.two.example",
            "c.three.example",
            "d.four.example",
        ]
        .iter()
        .enumerate()
        {
            long.san = vec![n.to_string()];
            assert!(l.observe(&long, Timestamp(10 + i as u64)).is_none());
        }
        assert_eq!(l.learnt().count(), 0);
        // Squid sends its CA twice after the leaf: one CA, a candidate.
        let squid = "CN=Example Corp Squid Inspection CA";
        let ca = CertInfo {
            subject: Some(squid.into()),
            issuer: Some(squid.into()),
            ..CertInfo::default()
        };
        for (i, n) in ["a.one.example", "b.two.example", "c.three.example"]
            .iter()
            .enumerate()
        {
            let c = Chain {
                san: vec![n.to_string()],
                leaf: CertInfo {
                    issuer: Some(squid.into()),
                    ..CertInfo::default()
                },
                chain: vec![ca.clone(), ca.clone()],
                ..Chain::default()
            };
            assert!(l.observe(&c, Timestamp(20 + i as u64)).is_some());
        }
        assert_eq!(
            l.learnt().map(|c| c.subject.as_str()).collect::<Vec<_>>(),
            [squid]
        );
    }
}
