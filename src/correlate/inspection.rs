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
