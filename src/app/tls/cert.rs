//! The server's certificate chain, from a cleartext Certificate message
//! (TLS <= 1.2; TLS 1.3 encrypts it), parsed with `x509-parser`.
//!
//! Every certificate is fingerprinted (SHA-256 of the DER, and of the
//! SubjectPublicKeyInfo) so that the correlator can tell whether a chain was
//! issued by a configured inspection CA (`inspected`). A certificate that
//! does not parse is still fingerprinted and counted; its fields are `null`.

pub use crate::record::hex;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Certificates read per chain (real chains have 2–4); the rest are counted.
pub const MAX_CERTS: usize = 8;
/// SAN entries kept for the leaf; the rest are counted in `san_more`.
pub const MAX_SANS: usize = 32;
/// Longest subject / issuer / SAN string kept (bytes); longer ones are cut.
const MAX_NAME: usize = 256;

/// One certificate of the chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CertInfo {
    pub sha256: String,
    pub spki_sha256: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// Hex of the authorityKeyIdentifier's keyIdentifier, when present.
    pub authority_key_id: Option<String>,
    /// Hex of the subjectKeyIdentifier, when present.
    pub subject_key_id: Option<String>,
}

/// The leaf in detail, and the chain as the server sent it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Chain {
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub san: Vec<String>,
    pub san_more: u32,
    /// Serial number, upper-case hex without leading zero bytes (as Zeek's
    /// x509.log and `openssl x509 -serial` print it).
    pub serial: Option<String>,
    /// Validity, Unix seconds.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// The same validity as RFC 3339 UTC (`2025-01-31T00:00:00Z`).
    pub not_before_rfc3339: Option<String>,
    pub not_after_rfc3339: Option<String>,
    pub sha256: String,
    /// Certificates in the message (all of them, also past [`MAX_CERTS`]).
    pub chain_length: u32,
    /// The certificates after the leaf, in the order sent.
    pub chain: Vec<CertInfo>,
    /// Certificates whose DER did not parse as X.509.
    pub unparsed: u32,
    #[serde(skip)]
    pub leaf: CertInfo,
}

impl Chain {
    /// From the body of a Certificate handshake message (after the 4-byte
    /// message header): `certificate_list<0..2^24-1>` of `opaque<1..2^24-1>`.
    pub fn parse(body: &[u8]) -> Option<Chain> {
        let list_len = u24(body)?;
        let mut list = body.get(3..3 + list_len.min(body.len() - 3))?;
        let mut chain = Chain::default();
        let mut first = true;
        while let Some(len) = u24(list) {
            let Some(der) = list.get(3..3 + len) else {
                break;
            };
            list = &list[3 + len..];
            chain.chain_length += 1;
            if chain.chain_length as usize > MAX_CERTS {
                continue;
            }
            let parsed = X509Certificate::from_der(der).ok().map(|(_, c)| c);
            if parsed.is_none() {
                chain.unparsed += 1;
            }
            let info = info(der, parsed.as_ref());
            if first {
                first = false;
                if let Some(c) = &parsed {
                    chain.serial = Some(serial_hex(c.raw_serial()));
                    chain.not_before = Some(c.validity().not_before.timestamp());
                    chain.not_after = Some(c.validity().not_after.timestamp());
                    chain.not_before_rfc3339 = chain.not_before.map(crate::time::rfc3339_secs);
                    chain.not_after_rfc3339 = chain.not_after.map(crate::time::rfc3339_secs);
                    if let Ok(Some(san)) = c.subject_alternative_name() {
                        for n in &san.value.general_names {
                            let s = match n {
                                GeneralName::DNSName(d) => clip(d),
                                GeneralName::IPAddress(b) => ip_string(b),
                                _ => continue,
                            };
                            if chain.san.len() < MAX_SANS {
                                chain.san.push(s);
                            } else {
                                chain.san_more += 1;
                            }
                        }
                    }
                }
                chain.subject = info.subject.clone();
                chain.issuer = info.issuer.clone();
                chain.sha256 = info.sha256.clone();
                chain.leaf = info;
            } else {
                chain.chain.push(info);
            }
        }
        (chain.chain_length > 0).then_some(chain)
    }

    /// The leaf first, then the rest of the chain.
    pub fn all(&self) -> impl Iterator<Item = &CertInfo> {
        std::iter::once(&self.leaf).chain(self.chain.iter())
    }
}

/// The chain of a Certificate message body, parsed or from the worker's
/// cache, keyed by the SHA-256 of the whole certificate list: servers present
/// the same chain to every client, so most connections skip X.509 parsing.
pub fn cached_chain(
    cache: &mut super::BoundedCache<[u8; 32], Option<Arc<Chain>>>,
    body: &[u8],
) -> Option<Arc<Chain>> {
    let key: [u8; 32] = Sha256::digest(body).into();
    cache.get_or_insert_with(key, || Chain::parse(body).map(Arc::new))
}

fn info(der: &[u8], c: Option<&X509Certificate<'_>>) -> CertInfo {
    let mut i = CertInfo {
        sha256: sha256_hex(der),
        ..CertInfo::default()
    };
    if let Some(c) = c {
        i.spki_sha256 = Some(sha256_hex(c.public_key().raw));
        i.subject = Some(clip(&c.subject().to_string()));
        i.issuer = Some(clip(&c.issuer().to_string()));
        for ext in c.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    i.authority_key_id = a.key_identifier.as_ref().map(|k| hex(k.0));
                }
                ParsedExtension::SubjectKeyIdentifier(k) => i.subject_key_id = Some(hex(k.0)),
                _ => {}
            }
        }
    }
    i
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex(&raw[start..]).to_ascii_uppercase()
}

fn u24(b: &[u8]) -> Option<usize> {
    let b = b.get(..3)?;
    Some(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_NAME {
        return s.to_string();
    }
    let mut end = MAX_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn ip_string(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).expect("4 bytes")).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")).to_string(),
        _ => hex(b),
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_lists_do_not_panic() {
        for body in [
            &[][..],
            &[0, 0],
            &[0, 0, 0],
            &[0, 0, 9, 0, 0, 6, 1, 2],
            &[0xff, 0xff, 0xff, 0, 0, 1, 0x30],
        ] {
            let c = Chain::parse(body);
            if let Some(c) = c {
                assert_eq!(c.unparsed, c.chain_length.min(MAX_CERTS as u32));
            }
        }
    }
}
