//! What protocol a flow speaks, from its first payload bytes and ports —
//! the `service` field of the `flow` record, named as Zeek's conn.log
//! names them. AN1717's `opaque_encrypted_channel` applies only to flows
//! with no service: a recognised protocol is never "opaque".
//!
//! Each rule looks at the first bytes of each direction (what the
//! first-payload sampler kept); no rule needs more than 24 bytes.

/// HTTP/1.x request methods (RFC 9110 §9, plus WebDAV's common ones).
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"PROPFIND ",
];

/// QUIC versions whose long header is recognised: v1 (RFC 9000), v2
/// (RFC 9369), the IETF drafts (0xff0000xx) and mvfst's draft 27 (0xfaceb002).
fn quic_version(v: u32) -> bool {
    v == 1 || v == 0x6b33_43cf || (v & 0xffff_ff00) == 0xff00_0000 || v == 0xface_b002
}

/// `orig`/`resp`: the first payload bytes of each direction (TCP stream
/// or first datagram), for flows no parser recognised.
pub fn identify(
    tcp: bool,
    sport: u16,
    dport: u16,
    orig: &[u8],
    resp: &[u8],
) -> Option<&'static str> {
    let port = |p: u16| sport == p || dport == p;
    if tcp {
        // A CONNECT that opened no TLS tunnel is still HTTP.
        if METHODS.iter().any(|m| orig.starts_with(m)) || resp.starts_with(b"HTTP/1.") {
            return Some("http");
        }
        if orig.starts_with(b"PRI * HTTP/2.0\r\n") {
            return Some("http2");
        }
        if orig.starts_with(b"SSH-") || resp.starts_with(b"SSH-") {
            return Some("ssh");
        }
        if port(53) && dns_tcp(orig) {
            return Some("dns");
        }
        if resp.starts_with(b"220 ") || resp.starts_with(b"220-") {
            // SMTP, FTP and other greeting protocols.
            return Some(if port(21) { "ftp" } else { "smtp" });
        }
        return None;
    }
    if (port(53) || port(5353) || port(5355)) && dns_header(orig) {
        return Some("dns");
    }
    if port(67) || port(68) {
        return Some("dhcp");
    }
    if port(546) || port(547) {
        return Some("dhcpv6");
    }
    if port(123) && orig.len() >= 48 {
        return Some("ntp");
    }
    if orig.len() >= 5 && orig[0] & 0xc0 == 0xc0 {
        let v = u32::from_be_bytes([orig[1], orig[2], orig[3], orig[4]]);
        if quic_version(v) {
            return Some("quic");
        }
    }
    // A QUIC connection picked up after its handshake shows only short
    // headers: the fixed bit (0x40) set, the rest protected. On UDP 443
    // that is QUIC, as far as anyone can tell from outside.
    let short = |b: &[u8]| b.first().is_none_or(|x| x & 0xc0 == 0x40);
    if port(443) && !orig.is_empty() && short(orig) && short(resp) {
        return Some("quic");
    }
    None
}

/// A DNS message header: 12 bytes, opcode 0–6, at most a few questions.
pub(crate) fn dns_header(b: &[u8]) -> bool {
    b.len() >= 12 && (b[2] >> 3) & 0x0f <= 6 && u16::from_be_bytes([b[4], b[5]]) <= 16
}

/// DNS over TCP: a two-byte length, then a DNS header.
fn dns_tcp(b: &[u8]) -> bool {
    b.len() >= 14 && dns_header(&b[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_common_protocols() {
        assert_eq!(
            identify(true, 5, 80, b"GET / HTTP/1.1\r\n", b""),
            Some("http")
        );
        assert_eq!(
            identify(true, 5, 8080, b"", b"HTTP/1.1 200 OK"),
            Some("http")
        );
        assert_eq!(identify(true, 5, 9, b"SSH-2.0-OpenSSH", b""), Some("ssh"));
        // TLS is the TLS parser's word (`ssl` once it recognised a record).
        assert_eq!(identify(true, 5, 443, b"\x16\x03\x01", b""), None);
        let q = [0xc3, 0, 0, 0, 1, 8, 1, 2];
        assert_eq!(identify(false, 5, 443, &q, b""), Some("quic"));
        let dns = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w'];
        assert_eq!(identify(false, 5, 53, &dns, b""), Some("dns"));
        assert_eq!(identify(false, 68, 67, b"", b""), Some("dhcp"));
    }

    #[test]
    fn random_bytes_are_no_service() {
        let r = [0x9f, 0x11, 0x02, 0x7a, 0x55, 0xe0, 0x31, 0x08];
        assert_eq!(identify(true, 40000, 8443, &r, &r), None);
        // A QUIC-looking first byte with an unknown version is not QUIC.
        let q = [0xc3, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(identify(false, 5, 443, &q, b""), None);
        // Short headers on UDP 443 are QUIC; elsewhere, or without the fixed bit, not.
        let s = [0x55, 0xe1, 0x11, 0x1d];
        assert_eq!(identify(false, 5, 443, &s, &[0x40, 1]), Some("quic"));
        assert_eq!(identify(false, 5, 4443, &s, &[0x40, 1]), None);
        assert_eq!(identify(false, 5, 443, &[0x15, 1], b""), None);
    }
}
