//! QuicState against the RFC vectors and against Initials sealed here the
//! way clients split them (the RFC's ClientHello cut into pieces).

use super::initial::tests::{A2_FRAMES, A2_V1, A2_V2, A3_V1, A3_V2, DCID, unhex};
use super::initial::{Keys, VERSION_1, VERSION_2, Version, initial_header, seal};
use super::*;

const CLIENT: Direction = Direction::ToServer;
const SERVER: Direction = Direction::ToClient;

fn ts(ms: u64) -> Timestamp {
    Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000)
}

/// The RFC's ClientHello message (the CRYPTO frame's data of A.2).
fn rfc_client_hello() -> Vec<u8> {
    // CRYPTO frame: type 06, offset 00, length 40f1, then the message.
    unhex(A2_FRAMES)[4..].to_vec()
}

/// An Initial with `frames`, padded to 1200 bytes when `pad`.
fn initial(
    v: Version,
    keys: &Keys,
    dcid: &[u8],
    scid: &[u8],
    pn: u64,
    frames: &[u8],
    pad: bool,
) -> Vec<u8> {
    let mut payload = frames.to_vec();
    let hlen = 7 + dcid.len() + scid.len() + 1 + 2 + 2;
    if pad && hlen + payload.len() + 16 < 1200 {
        payload.resize(1200 - hlen - 16, 0);
    }
    let h = initial_header(v, dcid, scid, pn, 2, payload.len());
    seal(keys, &h, pn, 2, &payload)
}

/// A Handshake packet of version `number` (its payload is never opened).
fn handshake_packet(number: u32) -> Vec<u8> {
    let v = Version::of(number).unwrap();
    let first = [0xe0u8, 0xf0]
        .into_iter()
        .find(|f| v.packet_type(*f) == PacketType::Handshake)
        .unwrap();
    let mut p = vec![first];
    p.extend_from_slice(&number.to_be_bytes());
    // Empty DCID and SCID, length 20, then the (protected) rest.
    p.extend_from_slice(&[0, 0, 20]);
    p.extend_from_slice(&[0x5a; 20]);
    p
}

fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06, 0x80, 0, 0, 0];
    f[1..5].copy_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[test]
fn rfc_vectors_give_both_hellos() {
    for (a2, a3) in [(A2_V1, A3_V1), (A2_V2, A3_V2)] {
        let (c, s) = (unhex(a2), unhex(a3));
        assert!(QuicState::probe(&c));
        let mut q = QuicState::default();
        q.feed(CLIENT, &c, ts(0));
        let ch = q.client_hello().expect("client hello");
        assert_eq!(ch.sni.as_deref(), Some("example.com"));
        assert_eq!(ch.alpn, ["alpn"]);
        // RFC 9001 A.2's transport parameters, by id.
        assert_eq!(
            ch.quic_transport_parameters,
            [0x04, 0x05, 0x07, 0x08, 0x01, 0x09, 0x0f, 0x06]
        );
        assert!(!q.wants(CLIENT) && q.wants(SERVER));
        q.feed(SERVER, &s, ts(5));
        let sh = q.server_hello().expect("server hello");
        assert_eq!((sh.version, sh.cipher), (0x0304, 0x1301));
        // The server's Handshake flight is still wanted.
        assert!(q.wants(SERVER));
        let number = u32::from_be_bytes(unhex(a2)[1..5].try_into().unwrap());
        q.feed(SERVER, &handshake_packet(number), ts(6));
        assert!(!q.wants(SERVER));
        // Silent client: aborted once the flow times out.
        assert_eq!(q.outcome(true).name(), "client_aborted");
        assert_eq!(q.outcome(false).name(), "incomplete");
        // A 1-RTT packet before the client's Handshake packets does not
        // complete it; its Handshake packet and 1-RTT (coalesced) do.
        assert!(q.wants(CLIENT));
        q.feed(CLIENT, &[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9], ts(7));
        assert_eq!(q.outcome(true).name(), "client_aborted");
        let mut d = handshake_packet(number);
        d.extend_from_slice(&[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        q.feed(CLIENT, &d, ts(9));
        assert!(!q.wants(CLIENT));
        assert_eq!(q.not_parsed(), None);
        assert_eq!(q.outcome(false).name(), "established");
        assert_eq!(q.outcome(true).name(), "established");
        assert_eq!(
            q.cid[1].map(|c| c.get().to_vec()),
            Some(unhex("f067a5502a4262b5"))
        );
    }
}

/// A ClientHello over three Initials: pieces out of order, among PING and
/// PADDING, the last two Initials coalesced in one datagram and sent to the
/// server's new connection ID (keys stay those of the first DCID).
#[test]
fn hello_over_several_initials_out_of_order() {
    let v = Version::of(VERSION_1).unwrap();
    let dcid = unhex(DCID);
    let keys = Keys::initial(v, &dcid);
    let hello = rfc_client_hello();
    let (a, b) = (80, 170);
    let scid = [7u8; 8];
    let p1 = initial(
        v,
        &keys[0],
        &dcid,
        &scid,
        0,
        &[&[1u8, 0, 0][..], &crypto_frame(b, &hello[b..]), &[1]].concat(),
        true,
    );
    let new_dcid = [9u8; 8];
    let p2 = initial(
        v,
        &keys[0],
        &new_dcid,
        &scid,
        1,
        &[crypto_frame(a, &hello[a..b]), vec![1, 0, 0, 1]].concat(),
        false,
    );
    let p3 = initial(
        v,
        &keys[0],
        &new_dcid,
        &scid,
        2,
        &crypto_frame(0, &hello[..a]),
        false,
    );
    let mut q = QuicState::default();
    q.feed(CLIENT, &p1, ts(0));
    assert!(q.client_hello().is_none());
    q.feed(CLIENT, &[p2, p3].concat(), ts(1));
    assert_eq!(q.initials[0], 3);
    assert_eq!(
        q.client_hello().and_then(|h| h.sni.as_deref()),
        Some("example.com")
    );
    assert!(q.heap_bytes() < 4096, "crypto buffer released");
}

/// After a Retry the client's Initials use keys of the new DCID.
#[test]
fn retry_rekeys() {
    let v = Version::of(VERSION_2).unwrap();
    let first = [1u8; 8];
    let k1 = Keys::initial(v, &first);
    let hello = rfc_client_hello();
    let mut q = QuicState::default();
    q.feed(
        CLIENT,
        &initial(
            v,
            &k1[0],
            &first,
            &[2; 4],
            0,
            &crypto_frame(0, &hello[..50]),
            true,
        ),
        ts(0),
    );
    // Retry (v2 type bits 00), then the client again with the new DCID.
    let mut retry = vec![0xc0];
    retry.extend_from_slice(&VERSION_2.to_be_bytes());
    retry.extend_from_slice(&[4, 2, 2, 2, 2, 8, 5, 5, 5, 5, 5, 5, 5, 5]);
    retry.extend_from_slice(&[0xaa; 40]);
    q.feed(SERVER, &retry, ts(1));
    assert!(q.retry);
    let second = [5u8; 8];
    let k2 = Keys::initial(v, &second);
    q.feed(
        CLIENT,
        &initial(
            v,
            &k2[0],
            &second,
            &[2; 4],
            1,
            &crypto_frame(0, &hello),
            true,
        ),
        ts(2),
    );
    assert!(q.client_hello().is_some());
    assert_eq!(
        q.original_dcid.map(|c| c.get().to_vec()),
        Some(second.to_vec())
    );
}

/// A server that refuses the ALPN closes in its Initial with crypto error
/// 0x178 (alert 120, no_application_protocol).
#[test]
fn close_in_initial_is_a_rejection() {
    let v = Version::of(VERSION_1).unwrap();
    let dcid = unhex(DCID);
    let keys = Keys::initial(v, &dcid);
    let mut q = QuicState::default();
    q.feed(CLIENT, &unhex(A2_V1), ts(0));
    q.feed(
        SERVER,
        &initial(
            v,
            &keys[1],
            &[],
            &[3; 8],
            0,
            &[0x1c, 0x41, 0x78, 0x06, 0],
            false,
        ),
        ts(1),
    );
    assert_eq!(q.outcome(true).name(), "server_rejected");
    let t = q.tls_state();
    assert_eq!(t.alerts[0].description, Some(120));
    assert!(!q.wants(CLIENT) && !q.wants(SERVER));
    // A transport error (PROTOCOL_VIOLATION, 0x0a) is no TLS alert (the
    // fuzzer's first find: the code was reduced by 0x100 before the check).
    let mut q = QuicState::default();
    q.feed(CLIENT, &unhex(A2_V1), ts(0));
    q.feed(
        SERVER,
        &initial(v, &keys[1], &[], &[3; 8], 0, &[0x1c, 0x0a, 0x06, 0], false),
        ts(1),
    );
    let t = q.tls_state();
    assert_eq!((t.alerts[0].level, t.alerts[0].description), (None, None));
}

#[test]
fn reasons_for_not_parsing() {
    // Server's Initial first: no client DCID to derive keys from.
    let mut q = QuicState::default();
    q.feed(SERVER, &unhex(A3_V1), ts(0));
    assert_eq!(q.not_parsed(), Some(NotParsed::ClientInitialNotSeen));
    assert!(!q.wants(CLIENT));
    // An unknown version.
    let mut q = QuicState::default();
    let mut p = unhex(A2_V1);
    p[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
    assert!(QuicState::probe(&p));
    q.feed(CLIENT, &p, ts(0));
    assert_eq!(q.not_parsed(), Some(NotParsed::UnknownVersion));
    // A damaged tag, eight times.
    let mut q = QuicState::default();
    let mut p = unhex(A2_V1);
    let n = p.len();
    p[n - 1] ^= 1;
    for i in 0..MAX_FAILURES as u64 {
        assert!(q.wants(CLIENT));
        q.feed(CLIENT, &p, ts(i));
    }
    assert_eq!(q.not_parsed(), Some(NotParsed::DecryptionFailed));
    assert!(!q.wants(CLIENT));
    // Half a hello.
    let v = Version::of(VERSION_1).unwrap();
    let keys = Keys::initial(v, &[1; 8]);
    let mut q = QuicState::default();
    let hello = rfc_client_hello();
    q.feed(
        CLIENT,
        &initial(
            v,
            &keys[0],
            &[1; 8],
            &[],
            0,
            &crypto_frame(0, &hello[..100]),
            true,
        ),
        ts(0),
    );
    assert_eq!(q.not_parsed(), Some(NotParsed::CryptoIncomplete));
    // A CRYPTO frame far past the cap.
    let mut q = QuicState::default();
    q.feed(
        CLIENT,
        &initial(
            v,
            &keys[0],
            &[1; 8],
            &[],
            0,
            &crypto_frame(20_000, b"x"),
            true,
        ),
        ts(0),
    );
    assert_eq!(q.not_parsed(), Some(NotParsed::CryptoOverflow));
}

/// Cut and flipped copies of real Initials never panic, and the state
/// stays within its caps.
#[test]
fn damaged_initials_do_not_panic() {
    let pkts = [unhex(A2_V1), unhex(A3_V1), unhex(A2_V2)];
    for p in &pkts {
        for cut in (0..p.len()).step_by(7) {
            let mut q = QuicState::default();
            q.feed(CLIENT, &p[..cut], ts(0));
            q.feed(SERVER, &p[..cut], ts(1));
        }
        for at in (0..60).chain((60..p.len()).step_by(13)) {
            let mut d = p.clone();
            d[at] ^= 0x5a;
            let mut q = QuicState::default();
            q.feed(CLIENT, &d, ts(0));
            q.feed(CLIENT, &[d.clone(), d.clone()].concat(), ts(0));
            assert!(q.heap_bytes() < 64 << 10);
        }
    }
}
