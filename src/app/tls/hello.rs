//! ClientHello / ServerHello summaries and their fingerprints.
//!
//! The message structure is parsed by `tls-parser`; the extension list is
//! walked here by type and length (so one malformed extension body cannot
//! hide the others), and the bodies that fingerprints need are read with
//! `tls-parser`'s extension parser. GREASE values (RFC 8701) are kept in the
//! "as sent" lists and left out of the fingerprints.
//!
//! - JA3 / JA3S: Salesforce's definition (decimal values, `-` and `,`).
//! - JA4: FoxIO's specification (BSD-3-Clause), `technical_details/JA4.md`.

use md5::{Digest as _, Md5};
use serde::Serialize;
use tls_parser::{TlsMessage, TlsMessageHandshake};

pub const EXT_SNI: u16 = 0x0000;
pub const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
pub const EXT_EC_POINT_FORMATS: u16 = 0x000b;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
pub const EXT_ALPN: u16 = 0x0010;
pub const EXT_SESSION_TICKET: u16 = 0x0023;
pub const EXT_PRE_SHARED_KEY: u16 = 0x0029;
pub const EXT_EARLY_DATA: u16 = 0x002a;
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
pub const EXT_KEY_SHARE: u16 = 0x0033;
pub const EXT_ECH: u16 = 0xfe0d;
/// QUIC transport parameters (RFC 9001 §8.2), and the drafts' code point.
pub const EXT_QUIC_TRANSPORT_PARAMETERS: u16 = 0x0039;
pub const EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT: u16 = 0xffa5;
/// Transport parameter ids kept from one ClientHello.
pub const MAX_TRANSPORT_PARAMETERS: usize = 64;

/// The ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// Walks `type(2) len(2) body` extension entries; stops at the first one
/// that does not fit.
fn walk_extensions(mut ext: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while ext.len() >= 4 {
        let t = u16::from_be_bytes([ext[0], ext[1]]);
        let l = u16::from_be_bytes([ext[2], ext[3]]) as usize;
        if ext.len() < 4 + l {
            break;
        }
        out.push((t, &ext[4..4 + l]));
        ext = &ext[4 + l..];
    }
    out
}

/// What a ClientHello offered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientHello {
    pub record_version: u16,
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// legacy_session_id (up to 32 bytes; resumption in TLS <= 1.2).
    pub session_id: Vec<u8>,
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    #[serde(skip)]
    pub alpn_first_raw: Option<Vec<u8>>,
    pub supported_versions: Vec<u16>,
    pub supported_groups: Vec<u16>,
    pub ec_point_formats: Vec<u8>,
    pub signature_algorithms: Vec<u16>,
    pub key_share_groups: Vec<u16>,
    pub session_ticket: bool,
    pub psk: bool,
    pub early_data: bool,
    pub ech: bool,
    /// QUIC: the ids of the client's transport parameters, in order (the
    /// first [`MAX_TRANSPORT_PARAMETERS`]).
    pub quic_transport_parameters: Vec<u64>,
}

fn be16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// A list prefixed by its length in `n` bytes, clamped to what is there.
fn prefixed(b: &[u8], n: usize) -> &[u8] {
    if b.len() < n {
        return &[];
    }
    let len = b[..n].iter().fold(0usize, |a, x| (a << 8) | *x as usize);
    &b[n..(n + len).min(b.len())]
}

impl ClientHello {
    /// From a whole handshake message (type 1, with its 4-byte header).
    pub fn parse(msg: &[u8], record_version: u16) -> Option<ClientHello> {
        let (_, m) = tls_parser::parse_tls_message_handshake(msg).ok()?;
        let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = m else {
            return None;
        };
        let mut h = ClientHello {
            record_version,
            legacy_version: ch.version.0,
            ciphers: ch.ciphers.iter().map(|c| c.0).collect(),
            session_id: ch.session_id.map(|s| s.to_vec()).unwrap_or_default(),
            ..ClientHello::default()
        };
        for (t, body) in walk_extensions(ch.ext.unwrap_or(&[])) {
            h.extensions.push(t);
            match t {
                EXT_SNI => {
                    // server_name_list: len(2) { type(1) len(2) name }
                    let list = prefixed(body, 2);
                    if list.len() >= 3 && list[0] == 0 {
                        let name = prefixed(&list[1..], 2);
                        h.sni = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
                EXT_ALPN => {
                    let mut list = prefixed(body, 2);
                    while !list.is_empty() {
                        let l = list[0] as usize;
                        let v = &list[1..(1 + l).min(list.len())];
                        if h.alpn_first_raw.is_none() {
                            h.alpn_first_raw = Some(v.to_vec());
                        }
                        h.alpn.push(String::from_utf8_lossy(v).into_owned());
                        list = &list[(1 + l).min(list.len())..];
                    }
                }
                EXT_SUPPORTED_VERSIONS => h.supported_versions = be16s(prefixed(body, 1)),
                EXT_SUPPORTED_GROUPS => h.supported_groups = be16s(prefixed(body, 2)),
                EXT_EC_POINT_FORMATS => h.ec_point_formats = prefixed(body, 1).to_vec(),
                EXT_SIGNATURE_ALGORITHMS => h.signature_algorithms = be16s(prefixed(body, 2)),
                EXT_KEY_SHARE => {
                    let mut list = prefixed(body, 2);
                    while list.len() >= 4 {
                        h.key_share_groups
                            .push(u16::from_be_bytes([list[0], list[1]]));
                        let l = u16::from_be_bytes([list[2], list[3]]) as usize;
                        list = &list[(4 + l).min(list.len())..];
                    }
                }
                EXT_SESSION_TICKET => h.session_ticket = true,
                EXT_PRE_SHARED_KEY => h.psk = true,
                EXT_EARLY_DATA => h.early_data = true,
                EXT_ECH => h.ech = true,
                EXT_QUIC_TRANSPORT_PARAMETERS | EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT => {
                    h.quic_transport_parameters = transport_parameter_ids(body)
                }
                _ => {}
            }
        }
        Some(h)
    }

    /// Everything JA3 and JA4 read, as one sequence (each list length-prefixed).
    fn fingerprint_key(&self) -> Vec<u16> {
        let lists: [&[u16]; 5] = [
            &self.ciphers,
            &self.extensions,
            &self.supported_groups,
            &self.supported_versions,
            &self.signature_algorithms,
        ];
        let mut k = Vec::with_capacity(8 + lists.iter().map(|l| l.len()).sum::<usize>());
        k.push(self.legacy_version);
        for l in lists {
            k.push(l.len() as u16);
            k.extend_from_slice(l);
        }
        k.push(self.ec_point_formats.len() as u16);
        k.extend(self.ec_point_formats.iter().map(|x| *x as u16));
        let alpn = self.alpn_first_raw.as_deref().unwrap_or_default();
        k.push(
            self.alpn_first_raw
                .as_ref()
                .map_or(u16::MAX, |a| a.len() as u16),
        );
        k.extend(alpn.iter().map(|x| *x as u16));
        k
    }

    /// Highest version offered: the largest non-GREASE supported_versions
    /// entry, else the legacy version.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    pub fn ja3_string(&self) -> String {
        let mut out = String::with_capacity(256);
        push_dec(&mut out, self.legacy_version);
        for list in [&self.ciphers, &self.extensions, &self.supported_groups] {
            out.push(',');
            push_dec_list(&mut out, list.iter().copied().filter(|c| !is_grease(*c)));
        }
        out.push(',');
        push_dec_list(&mut out, self.ec_point_formats.iter().map(|x| *x as u16));
        out
    }

    pub fn ja3(&self) -> String {
        md5_hex(self.ja3_string().as_bytes())
    }

    /// JA4 and its raw form, for a hello seen over TCP (`t`) or QUIC (`q`).
    pub fn ja4(&self, transport: char) -> (String, String) {
        let version = match self.max_version() {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        };
        let sni = if self.extensions.contains(&EXT_SNI) {
            'd'
        } else {
            'i'
        };
        let ciphers: Vec<u16> = self
            .ciphers
            .iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .collect();
        let exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .collect();
        let alpn = match &self.alpn_first_raw {
            Some(v) if !v.is_empty() => {
                let (f, l) = (v[0], v[v.len() - 1]);
                if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                    format!("{}{}", f as char, l as char)
                } else {
                    let hex = hex_bytes(v);
                    let b = hex.as_bytes();
                    format!("{}{}", b[0] as char, b[b.len() - 1] as char)
                }
            }
            _ => "00".to_string(),
        };
        let a = format!(
            "{transport}{version}{sni}{:02}{:02}{alpn}",
            ciphers.len().min(99),
            exts.len().min(99)
        );
        let mut sc = ciphers.clone();
        sc.sort_unstable();
        let cipher_list = hex_list(&sc);
        let mut se: Vec<u16> = exts
            .iter()
            .copied()
            .filter(|e| *e != EXT_SNI && *e != EXT_ALPN)
            .collect();
        se.sort_unstable();
        let ext_list = hex_list(&se);
        let sig_list = hex_list(&self.signature_algorithms);
        let c_input = if sig_list.is_empty() {
            ext_list.clone()
        } else {
            format!("{ext_list}_{sig_list}")
        };
        let b = if sc.is_empty() {
            "000000000000".to_string()
        } else {
            sha256_12(&cipher_list)
        };
        let c = if se.is_empty() {
            "000000000000".to_string()
        } else {
            sha256_12(&c_input)
        };
        let ja4 = format!("{a}_{b}_{c}");
        let raw = if sig_list.is_empty() {
            format!("{a}_{cipher_list}_{ext_list}")
        } else {
            format!("{a}_{cipher_list}_{ext_list}_{sig_list}")
        };
        (ja4, raw)
    }
}

/// The ids of a transport_parameters body: `id(varint) len(varint) value`
/// entries (RFC 9000 §18); stops at the first that does not fit.
fn transport_parameter_ids(mut b: &[u8]) -> Vec<u64> {
    use crate::app::quic::initial::varint;
    let mut ids = Vec::new();
    while ids.len() < MAX_TRANSPORT_PARAMETERS
        && let Some((id, a)) = varint(b)
        && let Some((len, c)) = varint(&b[a..])
        && let Some(rest) = usize::try_from(len).ok().and_then(|l| b.get(a + c + l..))
    {
        ids.push(id);
        b = rest;
    }
    ids
}

/// What a ServerHello (or HelloRetryRequest) chose.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerHello {
    pub legacy_version: u16,
    /// The supported_versions selection when present, else the legacy version.
    pub version: u16,
    pub cipher: u16,
    pub session_id: Vec<u8>,
    pub extensions: Vec<u16>,
    pub alpn: Option<String>,
    pub hello_retry_request: bool,
}

impl ServerHello {
    pub fn parse(msg: &[u8]) -> Option<ServerHello> {
        // type(1) len(3) version(2) random(32) session_id(1+n) cipher(2) compression(1) ext
        if msg.len() < 4 + 2 + 32 + 1 || msg[0] != 2 {
            return None;
        }
        let body = &msg[4..];
        let legacy = u16::from_be_bytes([body[0], body[1]]);
        let random = &body[2..34];
        // TLS 1.3 drafts up to 21 name the draft in this field and send
        // neither session id nor compression method (draft-ietf-tls-tls13-21
        // §4.1.3); draft 22 moved to the final layout.
        // `rest`: cipher(2), then compression(1) unless a draft.
        let (session_id, rest, ext_at) = if is_draft_before_22(legacy) {
            (&[][..], &body[34..], 2)
        } else {
            let sid_len = body[34] as usize;
            (body.get(35..35 + sid_len)?, body.get(35 + sid_len..)?, 3)
        };
        if rest.len() < ext_at {
            return None;
        }
        let cipher = u16::from_be_bytes([rest[0], rest[1]]);
        let ext = prefixed(&rest[ext_at..], 2);
        let mut s = ServerHello {
            legacy_version: legacy,
            version: legacy,
            cipher,
            session_id: session_id.to_vec(),
            hello_retry_request: random == HRR_RANDOM,
            ..ServerHello::default()
        };
        for (t, b) in walk_extensions(ext) {
            s.extensions.push(t);
            match t {
                EXT_SUPPORTED_VERSIONS if b.len() >= 2 => {
                    s.version = u16::from_be_bytes([b[0], b[1]])
                }
                EXT_ALPN => {
                    let list = prefixed(b, 2);
                    if !list.is_empty() {
                        let l = list[0] as usize;
                        s.alpn = Some(
                            String::from_utf8_lossy(&list[1..(1 + l).min(list.len())]).into_owned(),
                        );
                    }
                }
                _ => {}
            }
        }
        Some(s)
    }

    pub fn ja3s_string(&self) -> String {
        let mut out = String::with_capacity(64);
        push_dec(&mut out, self.legacy_version);
        out.push(',');
        push_dec(&mut out, self.cipher);
        out.push(',');
        push_dec_list(&mut out, self.extensions.iter().copied());
        out
    }

    pub fn ja3s(&self) -> String {
        md5_hex(self.ja3s_string().as_bytes())
    }
}

use crate::record::{HEX, hex as hex_bytes};

/// Decimal, without the fmt machinery (fingerprints are built per connection).
fn push_dec(out: &mut String, v: u16) {
    let mut buf = [0u8; 5];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(*b as char);
    }
}

fn push_dec_list(out: &mut String, v: impl Iterator<Item = u16>) {
    for (i, x) in v.enumerate() {
        if i > 0 {
            out.push('-');
        }
        push_dec(out, x);
    }
}

/// `0a0b,1301,...`: four lower-case hex digits each, comma-separated.
fn hex_list(v: &[u16]) -> String {
    let mut out = String::with_capacity(v.len() * 5);
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for shift in [12, 8, 4, 0] {
            out.push(HEX[((x >> shift) & 15) as usize] as char);
        }
    }
    out
}

fn md5_hex(b: &[u8]) -> String {
    hex_bytes(&Md5::digest(b))
}

fn sha256_12(s: &str) -> String {
    let mut h = super::cert::sha256_hex(s.as_bytes());
    h.truncate(12);
    h
}

/// A TLS 1.3 draft version (`0x7f00 | n`) before draft 22, whose
/// ServerHello has the draft layout.
pub fn is_draft_before_22(v: u16) -> bool {
    v >> 8 == 0x7f && v & 0xff < 22
}

/// `TLS 1.3`, `TLS 1.3 draft 23`, … as the expected values and tshark name versions.
pub fn version_name(v: u16) -> String {
    match v {
        0x0304 => "TLS 1.3".into(),
        0x0303 => "TLS 1.2".into(),
        0x0302 => "TLS 1.1".into(),
        0x0301 => "TLS 1.0".into(),
        0x0300 => "SSL 3.0".into(),
        0x0002 => "SSL 2.0".into(),
        v if v >> 8 == 0x7f => format!("TLS 1.3 draft {}", v & 0xff),
        v => format!("0x{v:04x}"),
    }
}

/// A ClientHello's JA3 and JA4 (over TCP).
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprints {
    pub ja3: String,
    pub ja3_string: String,
    pub ja4: String,
    pub ja4_r: String,
}

impl ClientHello {
    /// JA3 and JA4, computed or from the worker's cache, keyed by everything
    /// they are computed from: a device repeats the same ClientHello shape
    /// on every connection.
    pub fn fingerprints(
        &self,
        cache: &mut super::BoundedCache<Vec<u16>, std::sync::Arc<Fingerprints>>,
    ) -> std::sync::Arc<Fingerprints> {
        cache.get_or_insert_with(self.fingerprint_key(), || {
            let ja3_string = self.ja3_string();
            let (ja4, ja4_r) = self.ja4('t');
            std::sync::Arc::new(Fingerprints {
                ja3: md5_hex(ja3_string.as_bytes()),
                ja3_string,
                ja4,
                ja4_r,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tls::tests::unhex;

    /// tlslite-ng's draft 26 ServerHello (`fixtures/tcpedge/
    /// tls13-draft26-tlslite.pcap`, frame 6; tshark: `TLS 1.3 draft 26`,
    /// JA3S string `771,4866,51-43`).
    const DRAFT26: &str = "02000097030334267dc97005c6f55fadf986c8bb80d091941aba661a3990ab33\
        5821f9b222ea20044ec68b4d2baeb004b522c6becfe73a3b6e1d141e0a3c332161\
        ce90f727fe44130200004f0033004500170041040a7fa92a3053bb62dacffa50f5\
        cc8502baa1dfc0e1c48d15ca92fa5bfe26aa1c8e54ff783b8665bb9bc3b91296a2\
        64b155d75ab98c9059971ec4d3ab4555865e002b00027f1a";

    #[test]
    fn draft_26_server_hello_names_the_draft() {
        let h = ServerHello::parse(&unhex(&DRAFT26.replace(' ', ""))).unwrap();
        assert_eq!(version_name(h.version), "TLS 1.3 draft 26");
        assert_eq!(h.cipher, 0x1302);
        assert_eq!(h.ja3s_string(), "771,4866,51-43");
    }

    /// Drafts before 22 put the draft in the legacy version field and send
    /// neither session id nor compression method (issue 19.4). No software
    /// here speaks one, so the bytes are the draft 26 hello above laid out
    /// as draft 21 (draft-ietf-tls-tls13-21 §4.1.3): version 0x7f15, its
    /// random, its cipher, and its key share under draft 21's code (40).
    #[test]
    fn draft_21_server_hello_is_read_in_the_draft_layout() {
        let d26 = unhex(&DRAFT26.replace(' ', ""));
        let random = &d26[6..38];
        assert_eq!(d26[76..80], [0x00, 0x33, 0x00, 0x45]); // key_share, 69 bytes
        let key_share = &d26[80..80 + 0x45];
        let mut body = vec![0x7f, 0x15];
        body.extend_from_slice(random);
        body.extend_from_slice(&[0x13, 0x02]);
        let ext_len = 4 + key_share.len() as u16;
        body.extend_from_slice(&ext_len.to_be_bytes());
        body.extend_from_slice(&[0, 40]);
        body.extend_from_slice(&(key_share.len() as u16).to_be_bytes());
        body.extend_from_slice(key_share);
        let mut msg = vec![2, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        let h = ServerHello::parse(&msg).unwrap();
        assert_eq!(version_name(h.version), "TLS 1.3 draft 21");
        assert_eq!((h.cipher, h.extensions.as_slice()), (0x1302, &[40][..]));
        assert!(h.session_id.is_empty());
        assert_eq!(h.ja3s_string(), "32533,4866,40");
        // Draft 22 and later are read in the final layout.
        assert!(!is_draft_before_22(0x7f16) && is_draft_before_22(0x7f12));
        // Cut anywhere: never a panic.
        for n in 0..msg.len() {
            let _ = ServerHello::parse(&msg[..n]);
        }
    }
}
